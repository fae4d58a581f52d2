#!/usr/bin/env bash
#
# decode_bench.sh
#	  Decode benchmark of the zerobus logical decoding output plugin against
#	  pgoutput, wal2json and decoderbufs on the very same WAL.
#
# The script builds a throwaway cluster (initdb in a temporary directory, a
# free port, the unix socket inside that directory), creates the bench table,
# the publication "bench" and one replication slot per plugin and repetition
# BEFORE generating the workload, so every slot decodes identical WAL:
#
#	  1,000,000 inserted rows of ~200 bytes in 1,000-row transactions
#		200,000 updated rows in 1,000-row transactions
#		200,000 deleted rows in 1,000-row transactions
#		 10,000 one-row transactions (one insert each)
#
# (--rows N scales all four parts from the 1,000,000 inserts.)  It then
# decodes every slot with pg_recvlogical --start --no-loop --endpos, one run
# at a time, and prints seconds, rows/s, output bytes, bytes/row and the
# ratio of each plugin to zerobus, with the checks the project targets:
# zerobus at no less than 0.8x pgoutput's rate, faster than wal2json and
# decoderbufs.  The report is also written to bench/out/decode-<date>.txt.
#
# Rows are the row changes the workload made (computed from its sizes, not
# parsed from the plugins' output).  Output bytes are the size of the file
# pg_recvlogical writes, which includes one newline after each message for
# every plugin alike.  Timings include pg_recvlogical's connection and
# shutdown.  Plugins whose shared library is not installed are skipped.
#
# Usage: bench/decode_bench.sh [--rows N] [--repeat N] [--plugins LIST]
#							   [--keep]
#
# Needs PostgreSQL 15 binaries (found through pg_config, or PG_BINDIR) and
# the plugins installed.  When run as root, the server runs as the OS user
# named by BENCH_OS_USER (default postgres), since initdb refuses root.
#
# bench/decode_bench.sh
#

set -euo pipefail

usage()
{
	sed -n 's/^# Usage: //p' "$0"
	cat <<'EOF'

  --rows N        inserted rows (default 1000000); updates and deletes are
                  N/5 each, one-row transactions N/100
  --repeat N      decode each plugin N times (one slot per run), print the
                  best (default 1)
  --plugins LIST  comma-separated plugins (default
                  zerobus,pgoutput,wal2json,decoderbufs)
  --keep          keep the temporary cluster directory (for debugging)
EOF
}

ROWS=1000000
REPEAT=1
PLUGINS="zerobus,pgoutput,wal2json,decoderbufs"
KEEP=0

while [ $# -gt 0 ]; do
	case "$1" in
		--rows) ROWS=${2:?--rows needs a value}; shift 2 ;;
		--rows=*) ROWS=${1#*=}; shift ;;
		--repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
		--repeat=*) REPEAT=${1#*=}; shift ;;
		--plugins) PLUGINS=${2:?--plugins needs a value}; shift 2 ;;
		--plugins=*) PLUGINS=${1#*=}; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "decode_bench: unknown argument \"$1\"" >&2; usage >&2; exit 2 ;;
	esac
done

case "$ROWS" in ''|*[!0-9]*) echo "decode_bench: --rows must be a positive integer" >&2; exit 2 ;; esac
case "$REPEAT" in ''|*[!0-9]*) echo "decode_bench: --repeat must be a positive integer" >&2; exit 2 ;; esac
if [ "$ROWS" -lt 100 ] || [ "$REPEAT" -lt 1 ]; then
	echo "decode_bench: --rows must be at least 100 and --repeat at least 1" >&2
	exit 2
fi

# Workload sizes, all derived from the inserted row count.
BATCH=1000
N_INSERT=$ROWS
N_UPDATE=$((ROWS / 5))
N_DELETE=$((ROWS / 5))
N_SINGLE=$((ROWS / 100))
N_CHANGES=$((N_INSERT + N_UPDATE + N_DELETE + N_SINGLE))

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"

PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}
PKGLIBDIR=$(pg_config --pkglibdir)
for b in initdb pg_ctl postgres psql pg_recvlogical; do
	if [ ! -x "$PG_BINDIR/$b" ]; then
		echo "decode_bench: $PG_BINDIR/$b not found (set PG_BINDIR)" >&2
		exit 1
	fi
done

# Run server-side programs as a non-root user when we are root.
AS_SERVER=()
SERVER_USER=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
	SERVER_USER=${BENCH_OS_USER:-postgres}
	AS_SERVER=(runuser -u "$SERVER_USER" --)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/decode_bench.XXXXXX")
chmod 755 "$WORK"
DATA="$WORK/data"
SOCK="$WORK/sock"
DEC="$WORK/decoded"
mkdir -p "$DATA" "$SOCK" "$DEC"
if [ "$(id -u)" -eq 0 ]; then
	chown "$SERVER_USER" "$DATA" "$SOCK"
fi
chmod 700 "$DATA"

cleanup()
{
	if [ -f "$DATA/postmaster.pid" ]; then
		"${AS_SERVER[@]}" "$PG_BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ "$KEEP" -eq 1 ]; then
		echo "decode_bench: kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REPORT=$(mktemp "$WORK/report.XXXXXX")
chmod 644 "$REPORT"

# say: print to the terminal and to the report
say()
{
	printf '%s\n' "$*" | tee -a "$REPORT"
}

# A TCP port nobody listens on (the server still needs one to compute the
# socket name; it listens on the unix socket only).
free_port()
{
	local p
	for p in $(seq 54330 54430); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			[ ! -e "/tmp/.s.PGSQL.$p" ]; then
			echo "$p"
			return 0
		fi
	done
	echo "decode_bench: no free port in 54330-54430" >&2
	return 1
}
PORT=$(free_port)

PSQL=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d bench)

# Keep only the plugins whose library is installed.
ACTIVE=()
IFS=',' read -r -a WANTED <<<"$PLUGINS"
for p in "${WANTED[@]}"; do
	case "$p" in
		zerobus|pgoutput|wal2json|decoderbufs) ;;
		*) echo "decode_bench: unknown plugin \"$p\"" >&2; exit 2 ;;
	esac
	if [ -f "$PKGLIBDIR/$p.so" ]; then
		ACTIVE+=("$p")
	else
		echo "decode_bench: $PKGLIBDIR/$p.so not installed, skipping $p" >&2
	fi
done
if [ "${#ACTIVE[@]}" -eq 0 ]; then
	echo "decode_bench: no plugin to benchmark" >&2
	exit 1
fi

# pg_recvlogical -o options of each plugin.
plugin_options()
{
	case "$1" in
		zerobus) echo "-o publication_names=bench" ;;
		pgoutput) echo "-o proto_version=1 -o publication_names=bench" ;;
		wal2json|decoderbufs) echo "" ;;
	esac
}

# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------
"${AS_SERVER[@]}" "$PG_BINDIR/initdb" -D "$DATA" -U postgres -A trust -E UTF8 \
	--locale=C >"$WORK/initdb.log" 2>&1 ||
	{ cat "$WORK/initdb.log" >&2; exit 1; }

NSLOTS=$((${#ACTIVE[@]} * REPEAT))
{
	echo "# decode_bench.sh"
	echo "listen_addresses = ''"
	echo "port = $PORT"
	echo "unix_socket_directories = '$SOCK'"
	echo "wal_level = logical"
	echo "max_replication_slots = $((NSLOTS + 4))"
	echo "max_wal_senders = 4"
	echo "shared_buffers = 1GB"
	echo "max_wal_size = 32GB"
	echo "checkpoint_timeout = 1h"
	echo "fsync = off"
	echo "synchronous_commit = off"
	echo "autovacuum = off"
	if "${AS_SERVER[@]}" "$PG_BINDIR/postgres" --describe-config 2>/dev/null |
		grep -q '^output_plugin_libraries'; then
		echo "output_plugin_libraries = 'pgoutput, test_decoding, zerobus, wal2json, decoderbufs'"
	fi
} >>"$DATA/postgresql.conf"

"${AS_SERVER[@]}" "$PG_BINDIR/pg_ctl" -D "$DATA" -l "$SOCK/server.log" -w start >/dev/null ||
	{ cat "$SOCK/server.log" >&2; exit 1; }
"$PG_BINDIR/psql" -X -q -h "$SOCK" -p "$PORT" -U postgres -d postgres \
	-c "CREATE DATABASE bench" >/dev/null

# ---------------------------------------------------------------------------
# Schema, publication, slots (before any row exists)
# ---------------------------------------------------------------------------
"${PSQL[@]}" <<'EOF'
CREATE TABLE bench (
	id bigint PRIMARY KEY,
	account int NOT NULL,
	branch int NOT NULL,
	qty int NOT NULL,
	amount numeric(12, 2) NOT NULL,
	created timestamptz NOT NULL,
	status text NOT NULL,
	note text NOT NULL
);
CREATE PUBLICATION bench FOR TABLE bench;

-- Rows of ~200 bytes: 8 + 3 * 4 + numeric + 8 + short text + 140 chars.
CREATE FUNCTION decode_bench_rows(first bigint, last bigint)
RETURNS SETOF bench LANGUAGE sql AS $$
	SELECT i, (i % 100000)::int, (i % 100)::int, (i % 1000)::int,
		   ((i % 1000000) / 100.0)::numeric(12, 2),
		   timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second',
		   'new-' || (i % 7),
		   substr(repeat(md5(i::text), 5), 1, 140)
	FROM generate_series(first, last) AS i
$$;

-- One transaction per batch of ids in [first, first + total).
CREATE PROCEDURE decode_bench_batches(op text, first bigint, total bigint, batch int)
LANGUAGE plpgsql AS $$
DECLARE
	lo bigint := first;
	hi bigint;
BEGIN
	WHILE lo < first + total LOOP
		hi := least(lo + batch, first + total) - 1;
		IF op = 'insert' THEN
			INSERT INTO bench SELECT * FROM decode_bench_rows(lo, hi);
		ELSIF op = 'update' THEN
			UPDATE bench SET qty = qty + 1, amount = amount + 1,
				status = 'updated'
			WHERE id BETWEEN lo AND hi;
		ELSE
			DELETE FROM bench WHERE id BETWEEN lo AND hi;
		END IF;
		COMMIT;
		lo := hi + 1;
	END LOOP;
END
$$;
EOF

SLOT_SQL=""
for p in "${ACTIVE[@]}"; do
	for r in $(seq 1 "$REPEAT"); do
		SLOT_SQL+="SELECT pg_create_logical_replication_slot('bench_${p}_$r', '$p');"$'\n'
	done
done
"${PSQL[@]}" <<<"$SLOT_SQL" >/dev/null

# ---------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------
echo "decode_bench: generating the workload ($N_CHANGES row changes)..." >&2
t0=$EPOCHREALTIME
START_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_lsn()")
# Updates hit ids [1, N_UPDATE], deletes the next N_DELETE ids, the one-row
# transactions insert ids after the bulk inserts.
"${PSQL[@]}" <<EOF
CALL decode_bench_batches('insert', 1, $N_INSERT, $BATCH);
CALL decode_bench_batches('update', 1, $N_UPDATE, $BATCH);
CALL decode_bench_batches('delete', $((N_UPDATE + 1)), $N_DELETE, $BATCH);
CALL decode_bench_batches('insert', $((N_INSERT + 1)), $N_SINGLE, 1);
EOF
END_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_lsn()")
WAL_BYTES=$("${PSQL[@]}" -Atc "SELECT pg_wal_lsn_diff('$END_LSN', '$START_LSN')::bigint")
ROW_BYTES=$("${PSQL[@]}" -Atc "SELECT round(avg(pg_column_size(b.*))) FROM bench b")
ROWS_LEFT=$("${PSQL[@]}" -Atc "SELECT count(*) FROM bench")
t1=$EPOCHREALTIME
GEN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

EXPECT_LEFT=$((N_INSERT - N_DELETE + N_SINGLE))
if [ "$ROWS_LEFT" -ne "$EXPECT_LEFT" ]; then
	echo "decode_bench: workload left $ROWS_LEFT rows, expected $EXPECT_LEFT" >&2
	exit 1
fi

# ---------------------------------------------------------------------------
# Header of the report
# ---------------------------------------------------------------------------
PG_VERSION=$("${PSQL[@]}" -Atc "SHOW server_version")
pkg_version()
{
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"
}
ZB_REV=$(git -C "$TOP" describe --always --dirty 2>/dev/null || echo "?")

say "zerobus decode benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host: $(uname -n), $(nproc) CPUs, PostgreSQL $PG_VERSION"
say "plugins: zerobus $ZB_REV, wal2json $(pkg_version postgresql-15-wal2json), decoderbufs $(pkg_version postgresql-15-decoderbufs)"
say "workload: $N_INSERT inserts in $BATCH-row transactions, $N_UPDATE updates and $N_DELETE deletes in $BATCH-row transactions, $N_SINGLE one-row insert transactions"
say "          = $N_CHANGES row changes, avg row $ROW_BYTES bytes, $((WAL_BYTES / 1048576)) MiB of WAL, generated in ${GEN_SECS}s"
say "          (generation with fsync=off, synchronous_commit=off, autovacuum=off; decoding with logical_decoding_work_mem at its default)"
say "decoding: pg_recvlogical --start --no-loop --endpos=$END_LSN, sequential, best of $REPEAT run(s) per plugin"
say ""

# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------
declare -A BEST_SECS BEST_BYTES STATUS

for r in $(seq 1 "$REPEAT"); do
	for p in "${ACTIVE[@]}"; do
		slot="bench_${p}_$r"
		out="$DEC/$slot.out"
		load=$(cut -d' ' -f1-3 /proc/loadavg)
		t0=$EPOCHREALTIME
		# plugin_options is split into words on purpose.
		# shellcheck disable=SC2046
		if "$PG_BINDIR/pg_recvlogical" -h "$SOCK" -p "$PORT" -U postgres -d bench \
			--slot="$slot" --start --no-loop --endpos="$END_LSN" -F 0 \
			$(plugin_options "$p") -f "$out" 2>"$DEC/$slot.err"; then
			t1=$EPOCHREALTIME
			secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
			bytes=$(stat -c %s "$out")
			echo "decode_bench: run $r $p: ${secs}s, $bytes bytes (load average before: $load)" >&2
			if [ "$bytes" -eq 0 ]; then
				STATUS[$p]="empty output"
			elif [ -z "${BEST_SECS[$p]:-}" ] ||
				awk -v a="$secs" -v b="${BEST_SECS[$p]}" 'BEGIN { exit !(a < b) }'; then
				BEST_SECS[$p]=$secs
				BEST_BYTES[$p]=$bytes
			fi
		else
			STATUS[$p]="pg_recvlogical failed: $(head -c 300 "$DEC/$slot.err" | tr '\n' ' ')"
			echo "decode_bench: run $r $p: ${STATUS[$p]}" >&2
		fi
		rm -f "$out"
	done
done

# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------
rate_of()
{
	awk -v n="$N_CHANGES" -v s="$1" 'BEGIN { printf "%.0f", n / s }'
}

ZB_RATE=""
ZB_BPR=""
if [ -n "${BEST_SECS[zerobus]:-}" ] && [ -z "${STATUS[zerobus]:-}" ]; then
	ZB_RATE=$(rate_of "${BEST_SECS[zerobus]}")
	ZB_BPR=$(awk -v b="${BEST_BYTES[zerobus]}" -v n="$N_CHANGES" 'BEGIN { printf "%.1f", b / n }')
fi

say "$(printf '%-12s %9s %11s %14s %9s %12s %13s' plugin seconds rows/s 'output bytes' bytes/row 'rate/zerobus' 'bytes/zerobus')"
for p in "${ACTIVE[@]}"; do
	if [ -n "${STATUS[$p]:-}" ] || [ -z "${BEST_SECS[$p]:-}" ]; then
		say "$(printf '%-12s %s' "$p" "${STATUS[$p]:-no result}")"
		continue
	fi
	secs=${BEST_SECS[$p]}
	bytes=${BEST_BYTES[$p]}
	rate=$(rate_of "$secs")
	bpr=$(awk -v b="$bytes" -v n="$N_CHANGES" 'BEGIN { printf "%.1f", b / n }')
	if [ -n "$ZB_RATE" ]; then
		rr=$(awk -v a="$rate" -v b="$ZB_RATE" 'BEGIN { printf "%.2fx", a / b }')
		br=$(awk -v a="$bpr" -v b="$ZB_BPR" 'BEGIN { printf "%.2fx", a / b }')
	else
		rr="n/a"
		br="n/a"
	fi
	say "$(printf '%-12s %9s %11s %14s %9s %12s %13s' "$p" "$secs" "$rate" "$bytes" "$bpr" "$rr" "$br")"
done
say ""

# check LABEL OTHER LIMIT OP: PASS when (zerobus rate / OTHER rate) OP LIMIT,
# OP being ">=" or ">".
check()
{
	local label=$1 other=$2 min=$3 op=$4
	if [ -z "$ZB_RATE" ]; then
		say "check $label: SKIP (no zerobus result)"
		return
	fi
	if [ -z "${BEST_SECS[$other]:-}" ] || [ -n "${STATUS[$other]:-}" ]; then
		say "check $label: SKIP (no $other result)"
		return
	fi
	local ratio verdict
	ratio=$(awk -v a="$ZB_RATE" -v b="$(rate_of "${BEST_SECS[$other]}")" 'BEGIN { printf "%.3f", a / b }')
	if awk -v r="$ratio" -v m="$min" -v op="$op" 'BEGIN { exit !(op == ">=" ? r >= m : r > m) }'; then
		verdict=PASS
	else
		verdict=FAIL
	fi
	say "check $label: zerobus/$other rate = $ratio: $verdict"
}
check "zerobus >= 0.8x pgoutput" pgoutput 0.8 ">="
check "zerobus faster than wal2json" wal2json 1 ">"
check "zerobus faster than decoderbufs" decoderbufs 1 ">"

mkdir -p "$OUT_DIR"
dest="$OUT_DIR/decode-$(date -u +%Y%m%d-%H%M%S).txt"
cp "$REPORT" "$dest"
echo "decode_bench: report written to $dest" >&2
