#!/usr/bin/env bash
#
# snapshot_bench.sh
#	  Initial snapshot throughput: rows/s from zerobus.create_stream() on a
#	  table that already holds ROWS rows (bench/workload.sql's ~200-byte
#	  rows) until every snapshot chunk is durably acked by the local Zerobus
#	  emulator and recorded (stream_tables.snapshot_finished_at).
#
# It starts a throwaway cluster and the emulator (as bench/e2e_bench.sh
# does), loads the rows, declares the target from zerobus.target_ddl(),
# creates the stream (snapshot on, the default) and waits for the snapshot
# to be done.  Both instants come from the server's clock, so the polling
# interval does not enter the figure.  The rate includes the worker's start
# (slot connection, token, opening the Zerobus stream).  The emulator's
# Delta publication is deferred past the run, as in e2e_bench.sh: it is
# not on the ack path.  Prints the rate
# next to the 100,000 rows/s target, the chunk count, the CPU seconds of
# the worker and of the emulator, the worker's memory and checks that the
# emulator holds ROWS durable records.  Memory is judged on the worker's
# peak private memory (RssAnon, sampled every 0.1 s) against a 100 MB
# bound; its peak RSS (VmHWM) is printed too, but it also counts every page
# of shared_buffers the worker touched while reading the table, which is
# shared memory bounded by shared_buffers (1 GB here), not the worker's.
#
# --profile real runs the emulator as a model of the real service (150-500 ms
# to durability, 15,000 records/s per stream; see emulator/README.md), so
# that the rate shows how the snapshot spreads over Zerobus streams; the
# target is then 250,000 rows/s (issue 11), else 100,000.
#
# Usage: bench/snapshot_bench.sh [--profile fast|real] [--rows N] [--chunk-rows N] [--set zerobus.NAME=VALUE]... [--keep]
#
# Needs the extension installed (make install), PostgreSQL 15 binaries and
# node (the emulator's npm modules are installed when missing).  The report
# is printed and written to bench/out/snapshot-<date>.txt.
#
# bench/snapshot_bench.sh
#

set -euo pipefail

PROG=snapshot_bench
TOP=$(cd "$(dirname "$0")/.." && pwd)
PGC_OS_USER=${BENCH_OS_USER:-postgres}
# shellcheck source=SCRIPTDIR/../scripts/lib/pgcluster.sh
. "$TOP/scripts/lib/pgcluster.sh"
# shellcheck source=SCRIPTDIR/../scripts/lib/emulator.sh
. "$TOP/scripts/lib/emulator.sh"
# shellcheck source=SCRIPTDIR/../scripts/lib/bench.sh
. "$TOP/scripts/lib/bench.sh"

usage()
{
	sed -n 's/^# Usage: /usage: /p' "$0"
	cat <<'EOF'

  --profile P      the emulator's profile: fast (default) or real
  --rows N         rows in the table before the stream is created
                   (default 1000000)
  --chunk-rows N   zerobus.snapshot_chunk_rows (default: the setting's default)
  --set NAME=VALUE a zerobus.* setting of the cluster (repeatable), e.g.
                   --set zerobus.max_streams_per_table=32
  --keep           keep the temporary directory (logs)
EOF
}

ROWS=1000000
PROFILE=fast
CHUNK_ROWS=""
KEEP=0

while [ $# -gt 0 ]; do
	case "$1" in
		--profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
		--profile=*) PROFILE=${1#*=}; shift ;;
		--rows) ROWS=${2:?--rows needs a value}; shift 2 ;;
		--rows=*) ROWS=${1#*=}; shift ;;
		--chunk-rows) CHUNK_ROWS=${2:?--chunk-rows needs a value}; shift 2 ;;
		--chunk-rows=*) CHUNK_ROWS=${1#*=}; shift ;;
		--set) bench_set "${2:?--set needs NAME=VALUE}"; shift 2 ;;
		--set=*) bench_set "${1#*=}"; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "$PROG: unknown argument \"$1\"" >&2; usage >&2; exit 2 ;;
	esac
done
case "$PROFILE" in
	fast) MIN_RATE=100000 ;;
	real) MIN_RATE=250000 ;;
	*) echo "$PROG: --profile must be fast or real" >&2; exit 2 ;;
esac
bench_need_int --rows "$ROWS" 100
[ -z "$CHUNK_ROWS" ] || bench_need_int --chunk-rows "$CHUNK_ROWS" 100

pgc_find_binaries
bench_stream_start

note()
{
	echo "$PROG: $*" >&2
}

pgc_initdb "pgoutput, test_decoding, zerobus"
pgc_conf "shared_preload_libraries = 'zerobus'" \
	"zerobus.database = 'postgres'" \
	"shared_buffers = 1GB" \
	"max_wal_size = 32GB" \
	"checkpoint_timeout = 1h" \
	"autovacuum = off" \
	"${BENCH_SETTINGS[@]}" \
	${CHUNK_ROWS:+"zerobus.snapshot_chunk_rows = $CHUNK_ROWS"}
pgc_start || { tail "$PG_LOG" >&2; exit 1; }

emu_start --profile "$PROFILE" --publish-interval-ms 600000 || { cat "$WORK/emulator.log" >&2; exit 1; }

note "loading $ROWS rows..."
"${PSQL[@]}" -q -f "$TOP/bench/workload.sql"
"${PSQL[@]}" -q <<EOF
SET client_min_messages = warning;
CREATE EXTENSION zerobus;
INSERT INTO bench SELECT * FROM bench_rows(1, $ROWS);
VACUUM ANALYZE bench;
CHECKPOINT;
EOF
"${PSQL[@]}" -Atc "SELECT zerobus.target_ddl('bench', 'main.bench.bench')" |
	node "$TOP/bench/e2e_emulator.js" declare "$HTTP_PORT" main.bench.bench bench bench-secret

SETTINGS=$("${PSQL[@]}" -Atc "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('zerobus.batch_max_records', 'zerobus.batch_max_bytes',
		'zerobus.max_inflight_bytes', 'zerobus.snapshot_chunk_rows', 'zerobus.max_streams_per_table',
		'zerobus.stream_max_records_per_second')")
TABLE_MB=$("${PSQL[@]}" -Atc "SELECT pg_table_size('bench') / 1048576")
say "zerobus snapshot benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host: $(uname -n), $(nproc) CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
say "PostgreSQL $("${PSQL[@]}" -Atc 'SHOW server_version'), zerobus $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo "?"), node $(node --version)"
say "stream: plain h2c to the emulator on loopback, $SETTINGS"
say "emulator: profile $PROFILE ($(node "$TOP/bench/e2e_emulator.js" api "$HTTP_PORT" GET /admin/settings)); its Delta publication deferred (not on the ack path; Databricks runs it on its own machines, here it would take CPU from the worker and the acks)"
say "table: $ROWS rows of bench/workload.sql, $TABLE_MB MiB"
say ""

# worker_mem PID: "VmHWM RssAnon RssShmem" in kB
worker_mem()
{
	awk '/^VmHWM:/ { h = $2 } /^RssAnon:/ { a = $2 } /^RssShmem:/ { s = $2 }
		END { print h, a, s }' "/proc/$1/status"
}

note "creating the stream, waiting for the snapshot..."
EMU_TICKS0=$(cpu_ticks "$EMU_PID")
T0=$("${PSQL[@]}" -Atc "SELECT clock_timestamp()")
emu_create_stream bench bench bench bench bench-secret
WPID=""
ANON_PEAK=0
for _ in $(seq 1 36000); do
	[ -n "$WPID" ] || WPID=$("${PSQL[@]}" -Atc "SELECT pid FROM zerobus.stat_streams WHERE name = 'bench'")
	if [ -n "$WPID" ]; then
		read -r _ ANON _ < <(worker_mem "$WPID")
		[ "$ANON" -le "$ANON_PEAK" ] || ANON_PEAK=$ANON
	fi
	STATE=$("${PSQL[@]}" -Atc "SELECT snapshot_state || ' ' || state FROM zerobus.stat_streams WHERE name = 'bench'")
	case "$STATE" in
		done*) break ;;
		*failed*) echo "$PROG: the stream failed:" >&2
			"${PSQL[@]}" -c "SELECT * FROM zerobus.stat_streams" >&2
			exit 1 ;;
	esac
	sleep 0.1
done
[ "${STATE%% *}" = done ] || { echo "$PROG: the snapshot did not finish within an hour" >&2; exit 1; }
WORKER_TICKS=$(cpu_ticks "$WPID")
read -r HWM ANON SHMEM < <(worker_mem "$WPID")
[ "$ANON" -le "$ANON_PEAK" ] || ANON_PEAK=$ANON
EMU_TICKS=$(($(cpu_ticks "$EMU_PID") - EMU_TICKS0))

read -r SNAP_ROWS SNAP_SECS < <("${PSQL[@]}" -At -F ' ' -c "SELECT snapshot_rows,
	round(extract(epoch FROM snapshot_finished_at - '$T0'::timestamptz), 3)
	FROM zerobus.stream_tables")
read -r REC_DURABLE REC_DUPS STREAMS_OPENED STREAMS_OPEN < <(node "$TOP/bench/e2e_emulator.js" durable "$HTTP_PORT" main.bench.bench)
CHUNKS=$(( (ROWS + $("${PSQL[@]}" -Atc "SHOW zerobus.snapshot_chunk_rows") - 1) / $("${PSQL[@]}" -Atc "SHOW zerobus.snapshot_chunk_rows") ))
RATE=$(awk -v n="$SNAP_ROWS" -v s="$SNAP_SECS" 'BEGIN { printf "%.0f", n / s }')
HZ=$(getconf CLK_TCK)

say "snapshot of $SNAP_ROWS rows in $CHUNKS chunks (by the row bound): ${SNAP_SECS} s (create_stream -> last chunk acked and recorded), $RATE rows/s"
say "    CPU seconds: worker $(awk -v t="$WORKER_TICKS" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }'), emulator $(awk -v t="$EMU_TICKS" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }') (of $(nproc) x ${SNAP_SECS} s)"
say "    emulator durable records $REC_DURABLE (duplicates $REC_DUPS)"
say "    Zerobus streams of the table: $STREAMS_OPENED opened, $STREAMS_OPEN open at the end"
say "    worker peak private memory (RssAnon, sampled every 0.1 s) $((ANON_PEAK / 1024)) MB"
say "    worker peak RSS (VmHWM) $((HWM / 1024)) MB, not judged: it also counts the shared buffers the worker touched (at the end $((ANON / 1024)) MB private + $((SHMEM / 1024)) MB shared, bounded by shared_buffers)"
say "    check $RATE rows/s >= $MIN_RATE rows/s: $(if [ "$RATE" -ge "$MIN_RATE" ]; then echo PASS; else echo FAIL; fi)"
say "    check durable records = $ROWS: $(if [ "$REC_DURABLE" -eq "$ROWS" ]; then echo PASS; else echo FAIL; fi)"
say "    check peak private memory (RssAnon) < 100 MB: $(if [ "$ANON_PEAK" -lt $((100 * 1024)) ]; then echo PASS; else echo FAIL; fi)"
if [ "$ROWS" -lt 1000000 ]; then
	say "    NOTE: scaled down (--rows $ROWS): start-up costs weigh on the rate"
fi
say "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
bench_report_save snapshot
