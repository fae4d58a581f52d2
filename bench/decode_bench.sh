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
# Usage: bench/decode_bench.sh [--rows N] [--repeat N] [--plugins LIST] [--keep]
#
# A quick check of the script itself: bench/decode_bench.sh --rows 10000.
# Figures are only meaningful on an otherwise idle machine.
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
	sed -n 's/^# Usage: /usage: /p' "$0"
	cat <<'EOF'

  --rows N        inserted rows (default 1000000); updates and deletes are
                  N/5 each, one-row transactions N/100
  --repeat N      decode each plugin N times (one slot per run), print the
                  best (default 1)
  --plugins LIST  comma-separated plugins (default
                  zerobus,pgoutput,wal2json,decoderbufs)
  --keep          keep the temporary directory (server log, decoded output)
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

# note: progress on stderr, kept in the report too
note()
{
	echo "decode_bench: $*" >&2
	printf '%s\n' "$*" >>"$REPORT"
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

GUCS=$("${AS_SERVER[@]}" "$PG_BINDIR/postgres" --describe-config 2>/dev/null || true)
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
	# Not "postgres ... | grep -q": with pipefail, grep's early exit would
	# make the pipeline fail through SIGPIPE.
	if grep -q '^output_plugin_libraries' <<<"$GUCS"; then
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
"${PSQL[@]}" -f "$BENCH_DIR/workload.sql"

SLOT_SQL="SET client_min_messages = warning;"$'\n'
# A deployment has the extension's SQL objects too; create them if installed.
if [[ " ${ACTIVE[*]} " == *" zerobus "* ]] &&
	[ -f "$(pg_config --sharedir)/extension/zerobus.control" ]; then
	SLOT_SQL+="CREATE EXTENSION zerobus;"$'\n'
fi
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
START_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
# Updates hit ids [1, N_UPDATE], deletes the next N_DELETE ids, the one-row
# transactions insert ids after the bulk inserts.
"${PSQL[@]}" -c "CALL bench_workload($N_INSERT, $N_UPDATE, $N_DELETE, $N_SINGLE, $BATCH)"
# The insert position, not pg_current_wal_lsn(): with synchronous_commit off
# the write position can lag behind the last commits, which would then fall
# after endpos and go undecoded.
END_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
WAL_BYTES=$("${PSQL[@]}" -Atc "SELECT pg_wal_lsn_diff('$END_LSN', '$START_LSN')::bigint")
ROW_BYTES=$("${PSQL[@]}" -Atc "SELECT round(avg(pg_column_size(b.*))) FROM bench b")
ROWS_LEFT=$("${PSQL[@]}" -Atc "SELECT count(*) FROM bench")
# With synchronous_commit off the last commits may not be flushed yet, and a
# walsender only decodes flushed WAL: the first decode would wait for the WAL
# writer.  A checkpoint flushes it, and keeps checkpoints out of the timings.
"${PSQL[@]}" -c "CHECKPOINT"
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
CLK_TCK=$(getconf CLK_TCK)

# plugin_version PLUGIN: where the plugin under test comes from
plugin_version()
{
	case "$1" in
		zerobus) echo "zerobus (this tree, $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo "?"))" ;;
		pgoutput) echo "pgoutput (built in)" ;;
		*) echo "$1 $(dpkg-query -W -f='${Version}' "postgresql-15-$1" 2>/dev/null || echo "?")" ;;
	esac
}
VERSIONS=""
for p in "${ACTIVE[@]}"; do
	VERSIONS+="${VERSIONS:+, }$(plugin_version "$p")"
done

say "zerobus decode benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host: $(uname -n), $(nproc) CPUs, PostgreSQL $PG_VERSION"
say "plugins: $VERSIONS"
say "workload: $N_INSERT inserts in $BATCH-row transactions, $N_UPDATE updates and $N_DELETE deletes in $BATCH-row transactions, $N_SINGLE one-row insert transactions"
say "          = $N_CHANGES row changes, avg row $ROW_BYTES bytes, $((WAL_BYTES / 1048576)) MiB of WAL, generated in ${GEN_SECS}s"
say "          (generation with fsync=off, synchronous_commit=off, autovacuum=off; decoding with logical_decoding_work_mem at its default)"
say "decoding: pg_recvlogical --start --no-loop --endpos=$END_LSN, sequential, best of $REPEAT run(s) per plugin"
if [ "$ROWS" -lt 1000000 ]; then
	say "NOTE: scaled-down workload (--rows $ROWS): fixed start-up costs and the"
	say "      $((1000 / CLK_TCK)) ms CPU clock tick weigh on the figures; use the full size to compare."
fi
say ""

# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------
declare -A BEST_SECS BEST_CPU BEST_BYTES STATUS

# decode_one SLOT PLUGIN OUT: decode SLOT into OUT with pg_recvlogical and
# set RUN_RC, RUN_SECS (wall clock of pg_recvlogical, connection included),
# RUN_CPU (user + system CPU seconds of the walsender that decoded, read from
# /proc every 20 ms while it runs, so at most that much low; empty if it
# could not be read) and RUN_CLIENT_CPU (the same for pg_recvlogical).  The
# walsender's CPU is the plugin's cost with little influence from other load
# on the machine; the client's shows when pg_recvlogical is the bottleneck.
decode_one()
{
	local slot=$1 plugin=$2 out=$3 bg wpid="" ticks="" stat

	(
		rc=0
		t0=$EPOCHREALTIME
		# plugin_options is split into words on purpose.
		# shellcheck disable=SC2046
		"$PG_BINDIR/pg_recvlogical" -h "$SOCK" -p "$PORT" -U postgres -d bench \
			--slot="$slot" --start --no-loop --endpos="$END_LSN" -F 0 \
			$(plugin_options "$plugin") -f "$out" 2>"$DEC/$slot.err" || rc=$?
		t1=$EPOCHREALTIME
		echo "$rc $t0 $t1" >"$DEC/$slot.time"
		# The second line of "times" is the CPU time of this subshell's
		# children (not in a $(...), whose children would be others).
		times >"$DEC/$slot.times"
	) &
	bg=$!
	while kill -0 "$bg" 2>/dev/null; do
		if [ -z "$wpid" ]; then
			wpid=$("${PSQL[@]}" -Atc "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot' AND active_pid IS NOT NULL" 2>/dev/null || true)
		fi
		if [ -n "$wpid" ] && read -r -a stat <"/proc/$wpid/stat" 2>/dev/null; then
			ticks=$((stat[13] + stat[14]))
		fi
		sleep 0.02
	done
	wait "$bg" || true
	read -r RUN_RC t0 t1 <"$DEC/$slot.time"
	read -r cu cs < <(sed -n 2p "$DEC/$slot.times")
	RUN_CLIENT_CPU=$(awk -v u="$cu" -v s="$cs" 'function sec(t) { split(t, a, "m"); return a[1] * 60 + a[2] }
		BEGIN { printf "%.2f", sec(u) + sec(s) }')
	RUN_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	RUN_CPU=""
	if [ -n "$ticks" ]; then
		RUN_CPU=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
	fi
}

# Each repetition starts with the next plugin, so none is always first.
NACTIVE=${#ACTIVE[@]}
for r in $(seq 1 "$REPEAT"); do
	for i in $(seq 0 $((NACTIVE - 1))); do
		p=${ACTIVE[$(((i + r - 1) % NACTIVE))]}
		slot="bench_${p}_$r"
		out="$DEC/$slot.out"
		load=$(cut -d' ' -f1-3 /proc/loadavg)
		decode_one "$slot" "$p" "$out"
		if [ "$RUN_RC" -ne 0 ]; then
			STATUS[$p]="pg_recvlogical failed: $(head -c 300 "$DEC/$slot.err" | tr '\n' ' ')"
			note "run $r $p: ${STATUS[$p]}"
			rm -f "$out"
			continue
		fi
		bytes=$(stat -c %s "$out")
		note "run $r $p: ${RUN_SECS}s, walsender CPU ${RUN_CPU:-?}s, pg_recvlogical CPU ${RUN_CLIENT_CPU}s, $bytes bytes (load average before: $load)"
		# pg_recvlogical confirms endpos once it got there; less means
		# the run stopped early and its figures would flatter it.
		done_lsn=$("${PSQL[@]}" -Atc "SELECT confirmed_flush_lsn >= '$END_LSN' FROM pg_replication_slots WHERE slot_name = '$slot'")
		if [ "$bytes" -eq 0 ]; then
			STATUS[$p]="empty output"
		elif [ "$done_lsn" != "t" ]; then
			STATUS[$p]="decoding stopped before $END_LSN"
		fi
		if [ -z "${BEST_SECS[$p]:-}" ] ||
			awk -v a="$RUN_SECS" -v b="${BEST_SECS[$p]}" 'BEGIN { exit !(a < b) }'; then
			BEST_SECS[$p]=$RUN_SECS
			BEST_BYTES[$p]=$bytes
		fi
		if [ -n "$RUN_CPU" ] && { [ -z "${BEST_CPU[$p]:-}" ] ||
			awk -v a="$RUN_CPU" -v b="${BEST_CPU[$p]}" 'BEGIN { exit !(a < b) }'; }; then
			BEST_CPU[$p]=$RUN_CPU
		fi
		if [ "$KEEP" -eq 0 ]; then
			rm -f "$out"
		fi
	done
done
say ""

# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------
# ratio A B: A / B with two decimals, or n/a when either is missing
ratio()
{
	if [ -z "$1" ] || [ -z "$2" ]; then
		echo "n/a"
	else
		awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
	fi
}

# Per plugin: rows/s on the wall clock, rows per walsender CPU second,
# bytes/row; empty when the plugin has no valid result.
declare -A RATE CPU_RATE BPR
for p in "${ACTIVE[@]}"; do
	if [ -n "${STATUS[$p]:-}" ] || [ -z "${BEST_SECS[$p]:-}" ]; then
		continue
	fi
	RATE[$p]=$(awk -v n="$N_CHANGES" -v s="${BEST_SECS[$p]}" 'BEGIN { printf "%.0f", n / s }')
	if [ -n "${BEST_CPU[$p]:-}" ] && [ "${BEST_CPU[$p]}" != "0.00" ]; then
		CPU_RATE[$p]=$(awk -v n="$N_CHANGES" -v s="${BEST_CPU[$p]}" 'BEGIN { printf "%.0f", n / s }')
	fi
	BPR[$p]=$(awk -v b="${BEST_BYTES[$p]}" -v n="$N_CHANGES" 'BEGIN { printf "%.1f", b / n }')
done

FMT='%-12s %8s %9s %8s %10s %11s %9s %7s %9s %8s\n'
say "Best of $REPEAT; cpu = user+system seconds of the decoding walsender; x/zb = ratio to zerobus."
# shellcheck disable=SC2059
say "$(printf "$FMT" plugin seconds rows/s 'cpu s' 'rows/cpu-s' 'out bytes' bytes/row 'rate/zb' 'cpu-rt/zb' 'bytes/zb')"
for p in "${ACTIVE[@]}"; do
	if [ -z "${RATE[$p]:-}" ]; then
		say "$(printf '%-12s %s' "$p" "${STATUS[$p]:-no result}")"
		continue
	fi
	# shellcheck disable=SC2059
	say "$(printf "$FMT" "$p" "${BEST_SECS[$p]}" "${RATE[$p]}" "${BEST_CPU[$p]:-?}" \
		"${CPU_RATE[$p]:-?}" "${BEST_BYTES[$p]}" "${BPR[$p]}" \
		"$(ratio "${RATE[$p]}" "${RATE[zerobus]:-}")" \
		"$(ratio "${CPU_RATE[$p]:-}" "${CPU_RATE[zerobus]:-}")" \
		"$(ratio "${BPR[$p]}" "${BPR[zerobus]:-}")")"
done
say ""

# check LABEL OTHER LIMIT OP: PASS when zerobus's rows/s divided by OTHER's
# satisfies OP LIMIT (OP ">=" or ">").  The verdict uses the wall-clock rate,
# as the target is stated; the CPU ratio is shown beside it because on a
# busy machine it is the steadier figure.
check()
{
	local label=$1 other=$2 limit=$3 op=$4 r verdict
	if [ -z "${RATE[zerobus]:-}" ] || [ -z "${RATE[$other]:-}" ]; then
		say "check $label: SKIP (no result for $([ -z "${RATE[zerobus]:-}" ] && echo zerobus || echo "$other"))"
		return
	fi
	r=$(ratio "${RATE[zerobus]}" "${RATE[$other]}")
	if awk -v r="$r" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == ">=" ? r >= l : r > l) }'; then
		verdict=PASS
	else
		verdict=FAIL
	fi
	say "check $label: zerobus/$other rate $r (walsender CPU $(ratio "${CPU_RATE[zerobus]:-}" "${CPU_RATE[$other]:-}")): $verdict"
}
check "zerobus >= 0.8x pgoutput" pgoutput 0.8 ">="
check "zerobus faster than wal2json" wal2json 1 ">"
check "zerobus faster than decoderbufs" decoderbufs 1 ">"

mkdir -p "$OUT_DIR"
dest="$OUT_DIR/decode-$(date -u +%Y%m%d-%H%M%S).txt"
cp "$REPORT" "$dest"
echo "decode_bench: report written to $dest" >&2
