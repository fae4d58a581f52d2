#!/usr/bin/env bash
#
# decode_bench.sh
#	  Decode benchmark of the zerobus logical decoding output plugin against
#	  pgoutput, wal2json and decoderbufs on the very same WAL.
#
# The script builds a throwaway cluster (initdb in a temporary directory,
# reachable only through a unix socket there), creates the bench table,
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
# The cluster comes from scripts/lib/pgcluster.sh.
#
# bench/decode_bench.sh
#

set -euo pipefail

PROG=decode_bench
TOP=$(cd "$(dirname "$0")/.." && pwd)
PGC_OS_USER=${BENCH_OS_USER:-postgres}
# shellcheck source=SCRIPTDIR/../scripts/lib/pgcluster.sh
. "$TOP/scripts/lib/pgcluster.sh"
# shellcheck source=SCRIPTDIR/../scripts/lib/bench.sh
. "$TOP/scripts/lib/bench.sh"

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

bench_need_int --rows "$ROWS" 100
bench_need_int --repeat "$REPEAT" 1
bench_workload_sizes "$ROWS"

PKGLIBDIR=$(pg_config --pkglibdir)
pgc_find_binaries pg_recvlogical
pgc_make_workdir
DEC="$WORK/decoded"
mkdir -p "$DEC"

cleanup()
{
	pgc_stop immediate
	pgc_remove_workdir "$KEEP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_report_start

# note: progress on stderr, kept in the report too
note()
{
	echo "decode_bench: $*" >&2
	printf '%s\n' "$*" >>"$REPORT"
}

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

# plugin_options PLUGIN: set OPTS to the pg_recvlogical -o options of PLUGIN
plugin_options()
{
	case "$1" in
		zerobus) OPTS=(-o publication_names=bench) ;;
		pgoutput) OPTS=(-o proto_version=1 -o publication_names=bench) ;;
		wal2json|decoderbufs) OPTS=() ;;
	esac
}

# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------
pgc_initdb "pgoutput, test_decoding, zerobus, wal2json, decoderbufs"
pgc_conf "max_replication_slots = $((${#ACTIVE[@]} * REPEAT + 4))" \
	"max_wal_senders = 4" \
	"shared_buffers = 1GB" \
	"max_wal_size = 32GB" \
	"checkpoint_timeout = 1h" \
	"fsync = off" \
	"synchronous_commit = off" \
	"autovacuum = off"
pgc_start || { cat "$PG_LOG" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Schema, publication, slots (before any row exists)
# ---------------------------------------------------------------------------
"${PSQL[@]}" -f "$TOP/bench/workload.sql"

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

# Each repetition starts with the next plugin, so none is always first.
NACTIVE=${#ACTIVE[@]}
for r in $(seq 1 "$REPEAT"); do
	for i in $(seq 0 $((NACTIVE - 1))); do
		p=${ACTIVE[$(((i + r - 1) % NACTIVE))]}
		slot="bench_${p}_$r"
		out="$DEC/$slot.out"
		load=$(cut -d' ' -f1-3 /proc/loadavg)
		plugin_options "$p"
		bench_decode "$slot" "$END_LSN" "$out" "${OPTS[@]}"
		RUN_CPU=""
		if [ -n "$RUN_TICKS" ]; then
			RUN_CPU=$(awk -v t="$RUN_TICKS" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
		fi
		if [ "$RUN_RC" -ne 0 ]; then
			STATUS[$p]="pg_recvlogical failed: $(head -c 300 "$out.err" | tr '\n' ' ')"
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

bench_report_save decode
