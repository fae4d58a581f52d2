#!/usr/bin/env bash
#
# e2e_bench.sh
#	  End-to-end benchmark of zerobus: PostgreSQL commit -> slot -> worker ->
#	  gRPC -> the local Zerobus emulator's durable ack.
#
# It starts a throwaway cluster (initdb in a temporary directory, reachable
# only through a unix socket there; zerobus preloaded) and the emulator
# (emulator/, which fsyncs its log before each ack and has no faults set),
# declares the target tables from zerobus.target_ddl() and measures:
#
#  (a) throughput: the workload of bench/decode_bench.sh (bench/workload.sql:
#	   1,000,000 inserted ~200-byte rows in 1,000-row transactions, 200,000
#	   updates and 200,000 deletes in 1,000-row transactions, 10,000 one-row
#	   transactions) is generated while the stream is paused; then
#	   zerobus.resume_stream() and the time until the stream's acked LSN
#	   reaches the end of the workload: rows/s from commit to durable ack.
#	   The emulator does not publish to Delta during that window (see
#	   --publish-ms): the ack path alone shares the two cores.
#	   The stream is made without an initial snapshot (its tables are empty
#	   then), so the workload arrives as changes.  Once the emulator has
#	   published the workload to Delta (POST /admin/flush; its publication
#	   would otherwise share the two cores with the next step), the same
#	   WAL is decoded by pg_recvlogical through zerobus alone (a second slot
#	   made before the workload, as decode_bench.sh does), and the ratio of
#	   the two rates is checked (targets: >= 50,000 rows/s and >= 0.7x the
#	   decode-only rate).
#  (b) latency: once the emulator has published everything and one commit
#	   into a second published table has been acked (the worker opens that
#	   table's Zerobus stream at its first change: that first commit's
#	   latency is printed on its own), pgbench commits one-row transactions
#	   at a steady rate (default 1,000/s for 20 s) into that table while a
#	   server-side loop samples the stream's acked LSN (shared memory, every
#	   1 ms) and records when each new value is first seen.  A transaction's
#	   latency is the first sample whose acked LSN is past its commit LSN
#	   minus its commit timestamp, both read back from the Delta table
#	   (_commit_lsn, _commit_timestamp), both taken from the server's clock.
#	   It is commit to "the worker has the durable ack" and overstates by at
#	   most one sampling interval.  Prints p50/p99/max (target p50 < 50 ms;
#	   with --profile real, within 20 ms of the emulator's own time to
#	   durability over the window, which it reports).
#  (c) memory: the worker is restarted (pause + resume, so its VmHWM starts
#	   afresh) and one transaction inserts 1,000,000 rows; the worker's peak
#	   RSS (VmHWM from /proc) once it is acked (target < 100 MB).
#
# --rows N scales (a) and (c) (the workload as decode_bench.sh scales it).
# --profile real runs the emulator as a model of the real service (150-500 ms
# to durability, a per-stream quota of 15,000 records/s, see
# emulator/README.md), where one table needs several Zerobus streams; the
# throughput target is then 150,000 rows/s (ten streams' quota), and the
# number of streams used is printed.
# The report is printed and written to bench/out/e2e-<date>.txt.
#
# Usage: bench/e2e_bench.sh [--profile fast|real] [--rows N] [--rate R] [--seconds S] [--publish-ms MS] [--skip-throughput] [--skip-latency] [--skip-memory] [--set zerobus.NAME=VALUE]... [--keep]
#
# Needs the extension installed (make install), PostgreSQL 15 binaries
# (through pg_config or PG_BINDIR) with pgbench and pg_recvlogical, and node
# (the emulator's npm modules are installed when missing).  When run as root,
# the server runs as BENCH_OS_USER (default postgres).  Figures are only
# meaningful on an otherwise idle machine.  The cluster and the emulator
# come from scripts/lib/pgcluster.sh and scripts/lib/emulator.sh.
#
# bench/e2e_bench.sh
#

set -euo pipefail

PROG=e2e_bench
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

  --profile P         the emulator's profile: fast (default) or real
  --rows N            inserted rows of the workload and rows of the big
                      transaction (default 1000000)
  --rate R            latency phase: one-row commits per second (default 1000)
  --seconds S         latency phase: duration (default 20)
  --publish-ms MS     the emulator's --publish-interval-ms (default 600000):
                      how often it writes Delta files, in the same process
                      that acks.  The real Zerobus publishes on its own
                      machines; here publication would take CPU from the
                      three processes of the ack path on the same 2 cores,
                      so by default it runs only when the bench asks for it
                      (POST /admin/flush, after each measured window) and is
                      timed apart.  --publish-ms 2000 (the emulator's own
                      default) measures with publication running alongside
  --skip-throughput   skip (a)
  --skip-latency      skip (b)
  --skip-memory       skip (c)
  --set NAME=VALUE    a zerobus.* setting of the cluster (repeatable), e.g.
                      --set zerobus.max_streams_per_table=32
  --keep              keep the temporary directory (logs)
EOF
}

PROFILE=fast
ROWS=1000000
RATE=1000
SECONDS_LAT=20
PUBLISH_MS=600000
DO_THROUGHPUT=1
DO_LATENCY=1
DO_MEMORY=1
KEEP=0

while [ $# -gt 0 ]; do
	case "$1" in
		--profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
		--profile=*) PROFILE=${1#*=}; shift ;;
		--rows) ROWS=${2:?--rows needs a value}; shift 2 ;;
		--rows=*) ROWS=${1#*=}; shift ;;
		--rate) RATE=${2:?--rate needs a value}; shift 2 ;;
		--rate=*) RATE=${1#*=}; shift ;;
		--seconds) SECONDS_LAT=${2:?--seconds needs a value}; shift 2 ;;
		--seconds=*) SECONDS_LAT=${1#*=}; shift ;;
		--publish-ms) PUBLISH_MS=${2:?--publish-ms needs a value}; shift 2 ;;
		--publish-ms=*) PUBLISH_MS=${1#*=}; shift ;;
		--skip-throughput) DO_THROUGHPUT=0; shift ;;
		--skip-latency) DO_LATENCY=0; shift ;;
		--skip-memory) DO_MEMORY=0; shift ;;
		--set) bench_set "${2:?--set needs NAME=VALUE}"; shift 2 ;;
		--set=*) bench_set "${1#*=}"; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "e2e_bench: unknown argument \"$1\"" >&2; usage >&2; exit 2 ;;
	esac
done
case "$PROFILE" in
	fast) MIN_RATE=50000 ;;
	real) MIN_RATE=150000 ;;
	*) echo "e2e_bench: --profile must be fast or real" >&2; exit 2 ;;
esac
bench_need_int --rows "$ROWS" 100
bench_need_int --rate "$RATE" 1
bench_need_int --seconds "$SECONDS_LAT" 1
bench_need_int --publish-ms "$PUBLISH_MS" 1
bench_workload_sizes "$ROWS"

pgc_find_binaries pg_recvlogical pgbench
bench_stream_start

# note: progress on stderr
note()
{
	echo "e2e_bench: $*" >&2
}

# verdict OK: PASS or FAIL
verdict()
{
	if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi
}

emulator()
{
	node "$TOP/bench/e2e_emulator.js" "$@"
}

# worker_pid: the stream worker's pid (empty when it has none)
worker_pid()
{
	"${PSQL[@]}" -Atc "SELECT pid FROM zerobus.stat_streams WHERE name = 'bench'"
}

# worker_mem PID: "VmHWM VmRSS RssAnon RssShmem" in kB (the peak counts
# the shared memory pages the process touched too)
worker_mem()
{
	awk '/^VmHWM:/ { h = $2 } /^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 }
		/^RssShmem:/ { s = $2 } END { print h, r, a, s }' "/proc/$1/status"
}

# ticks_secs TICKS: clock ticks as seconds
ticks_secs()
{
	awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'
}

# cpu_us_per_row TICKS: CPU microseconds per row change of the workload
cpu_us_per_row()
{
	if [ -z "$1" ]; then
		echo "?"
	else
		awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$N_CHANGES" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'
	fi
}

# wait_new_worker OLD_PID: wait (30 s at most) for a worker other than OLD_PID
wait_new_worker()
{
	local pid
	for _ in $(seq 1 300); do
		pid=$(worker_pid)
		if [ -n "$pid" ] && [ "$pid" != "$1" ]; then
			echo "$pid"
			return 0
		fi
		sleep 0.1
	done
	echo "e2e_bench: no stream worker started" >&2
	return 1
}

# ---------------------------------------------------------------------------
# Cluster and emulator
# ---------------------------------------------------------------------------
pgc_initdb "pgoutput, test_decoding, zerobus"
pgc_conf "shared_preload_libraries = 'zerobus'" \
	"zerobus.database = 'postgres'" \
	"max_replication_slots = 8" \
	"max_wal_senders = 8" \
	"shared_buffers = 1GB" \
	"max_wal_size = 32GB" \
	"checkpoint_timeout = 1h" \
	"autovacuum = off" \
	"${BENCH_SETTINGS[@]}"
pgc_start || { tail "$PG_LOG" >&2; exit 1; }

emu_start --publish-interval-ms "$PUBLISH_MS" --profile "$PROFILE" ||
	{ cat "$WORK/emulator.log" >&2; exit 1; }

# The workload's table and publication, a twin table for the latency phase,
# the helpers; the targets in the emulator; the stream (paused) and the
# decode-only slot, both before any row exists.
"${PSQL[@]}" -f "$TOP/bench/workload.sql"
"${PSQL[@]}" >/dev/null <<'EOF'
SET client_min_messages = warning;
CREATE EXTENSION zerobus;
CREATE TABLE bench_lat (LIKE bench INCLUDING ALL);
CREATE SEQUENCE bench_lat_ids;
ALTER PUBLICATION bench ADD TABLE bench_lat;
SELECT pg_create_logical_replication_slot('bench_decode', 'zerobus');
EOF
"${PSQL[@]}" -f "$TOP/bench/e2e_functions.sql"
for t in bench bench_lat; do
	"${PSQL[@]}" -Atc "SELECT zerobus.target_ddl('$t', 'main.bench.$t')" |
		emulator declare "$HTTP_PORT" "main.bench.$t" bench bench-secret
done
# No initial snapshot: the tables are empty when the stream is made, and the
# workload generated while it is paused must come as changes, which is what
# (a) measures.
emu_create_stream bench bench bench bench bench-secret "enabled => false, snapshot => false"

# ---------------------------------------------------------------------------
# Header
# ---------------------------------------------------------------------------
SETTINGS=$("${PSQL[@]}" -Atc "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('zerobus.batch_max_records', 'zerobus.batch_max_bytes',
		'zerobus.batch_max_delay', 'zerobus.max_inflight_bytes', 'zerobus.max_streams_per_table',
		'zerobus.stream_max_records_per_second')")
say "zerobus end-to-end benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host: $(uname -n), $(nproc) CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
say "PostgreSQL $("${PSQL[@]}" -Atc 'SHOW server_version'), zerobus $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo "?"), node $(node --version)"
say "stream: plain h2c to the emulator on loopback, defaults $SETTINGS"
say "emulator: profile $PROFILE ($(emulator api "$HTTP_PORT" GET /admin/settings)); no faults; acks after fdatasync of its log (group commit); publishes to Delta every $PUBLISH_MS ms and when the bench flushes it after each window (publication is not on the ack path)"
say "PostgreSQL: fsync on (the workload of (a) is generated with synchronous_commit off, as decode_bench.sh does)"
say ""

# ---------------------------------------------------------------------------
# (a) Throughput
# ---------------------------------------------------------------------------
if [ "$DO_THROUGHPUT" -eq 1 ]; then
	note "(a) generating the workload ($N_CHANGES row changes) with the stream paused..."
	START_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
	PGOPTIONS="-c synchronous_commit=off" "${PSQL[@]}" \
		-c "CALL bench_workload($N_INSERT, $N_UPDATE, $N_DELETE, $N_SINGLE, $BATCH)"
	END_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
	WAL_MB=$("${PSQL[@]}" -Atc "SELECT pg_wal_lsn_diff('$END_LSN', '$START_LSN')::bigint / 1048576")
	# Flushes the WAL (a walsender sends only flushed WAL) and keeps the
	# checkpoint out of the timings.
	"${PSQL[@]}" -c "CHECKPOINT"

	note "(a) resuming the stream, waiting for acked_lsn >= $END_LSN..."
	EMU_TICKS0=$(cpu_ticks "$EMU_PID")
	# Both instants from the server's clock, in one session.
	E2E_SECS=$("${PSQL[@]}" -At <<EOF
SELECT clock_timestamp() AS t0 \gset
SELECT zerobus.resume_stream('bench') \g /dev/null
SELECT round(extract(epoch FROM e2e_wait_acked('bench', '$END_LSN', 3600) - :'t0'::timestamptz), 3);
EOF
	)
	EMU_TICKS=$(($(cpu_ticks "$EMU_PID") - EMU_TICKS0))
	WPID=$(worker_pid)
	WALSND=$("${PSQL[@]}" -Atc "SELECT active_pid FROM pg_replication_slots
		WHERE slot_name = (SELECT slot_name FROM zerobus.streams WHERE name = 'bench')")
	# Both started at the resume: their whole CPU time is this run's.
	WORKER_TICKS=$(cpu_ticks "$WPID")
	WALSND_TICKS=$(cpu_ticks "$WALSND")
	read -r A_HWM A_RSS A_ANON A_SHM < <(worker_mem "$WPID")
	read -r RECS_ACKED RECONNECTS < <("${PSQL[@]}" -At -F ' ' -c "SELECT records_acked, reconnects FROM zerobus.stat_streams WHERE name = 'bench'")
	read -r REC_DURABLE REC_DUPS STREAMS_OPENED STREAMS_OPEN < <(emulator durable "$HTTP_PORT" main.bench.bench)

	# The emulator is still publishing the workload to Delta (at a low
	# priority, but on the same two cores): the decode-only run must not
	# share the machine with it, or its rate (and so the ratio) depends on
	# how much of that work overlaps it.
	note "(a) waiting for the emulator to publish the workload to Delta..."
	t0=$EPOCHREALTIME
	emulator api "$HTTP_PORT" POST /admin/flush >/dev/null
	PUB_SECS=$(secs "$t0" "$EPOCHREALTIME")

	note "(a) decode-only: pg_recvlogical through zerobus on the same WAL..."
	# The decoding walsender's CPU as bench/decode_bench.sh measures it.
	bench_decode bench_decode "$END_LSN" "$WORK/decode.out" -o publication_names=bench
	if [ "$RUN_RC" -ne 0 ]; then
		cat "$WORK/decode.out.err" >&2
		exit 1
	fi
	DEC_SECS=$RUN_SECS
	DEC_TICKS=$RUN_TICKS
	DEC_BYTES=$(stat -c %s "$WORK/decode.out")
	rm -f "$WORK/decode.out"
	"${PSQL[@]}" -c "SELECT pg_drop_replication_slot('bench_decode')" >/dev/null

	E2E_RATE=$(awk -v n="$N_CHANGES" -v s="$E2E_SECS" 'BEGIN { printf "%.0f", n / s }')
	DEC_RATE=$(awk -v n="$N_CHANGES" -v s="$DEC_SECS" 'BEGIN { printf "%.0f", n / s }')
	RATIO=$(awk -v a="$E2E_RATE" -v b="$DEC_RATE" 'BEGIN { printf "%.3f", a / b }')

	say "(a) throughput: $N_INSERT inserts, $N_UPDATE updates, $N_DELETE deletes in $BATCH-row transactions, $N_SINGLE one-row transactions"
	say "    = $N_CHANGES row changes, $WAL_MB MiB of WAL, generated while the stream was paused"
	say "    end to end (resume -> acked_lsn >= $END_LSN): ${E2E_SECS} s, $E2E_RATE rows/s"
	say "    CPU seconds used meanwhile: walsender $(ticks_secs "$WALSND_TICKS"), worker $(ticks_secs "$WORKER_TICKS"), emulator $(ticks_secs "$EMU_TICKS") (of $(nproc) x ${E2E_SECS} s)"
	say "    records acked $RECS_ACKED, emulator durable $REC_DURABLE (duplicates $REC_DUPS), reconnects $RECONNECTS"
	say "    Zerobus streams of the table: $STREAMS_OPENED opened, $STREAMS_OPEN open at the end"
	say "    the emulator's Delta publication of the workload ended ${PUB_SECS} s after the last ack (not in the rate)"
	say "    worker peak RSS (VmHWM) $((A_HWM / 1024)) MB; at the end RSS $((A_RSS / 1024)) MB = $((A_ANON / 1024)) MB private + $((A_SHM / 1024)) MB shared memory + files"
	say "    decode only (pg_recvlogical through zerobus, same WAL, after that publication): ${DEC_SECS} s, $DEC_RATE rows/s, $DEC_BYTES bytes,"
	say "    walsender CPU ${DEC_TICKS:+$(ticks_secs "$DEC_TICKS")} s"
	say "    zerobus's own CPU per row: end to end (walsender + worker) $(cpu_us_per_row $((WALSND_TICKS + WORKER_TICKS))) us, decode only (walsender) $(cpu_us_per_row "${DEC_TICKS:-}") us"
	say "    check end to end >= $MIN_RATE rows/s: $(verdict "$(awk -v r="$E2E_RATE" -v m="$MIN_RATE" 'BEGIN { print (r >= m) }')")"
	say "    check end to end >= 0.7x decode only: ratio $RATIO: $(verdict "$(awk -v a="$E2E_RATE" -v b="$DEC_RATE" 'BEGIN { print (a >= 0.7 * b) }')")"
	if [ "$ROWS" -lt 1000000 ]; then
		say "    NOTE: scaled down (--rows $ROWS): start-up costs weigh on the rates"
	fi
	say ""
else
	"${PSQL[@]}" -c "SELECT zerobus.resume_stream('bench')" >/dev/null
	"${PSQL[@]}" -c "SELECT pg_drop_replication_slot('bench_decode')" >/dev/null
fi

# ---------------------------------------------------------------------------
# (b) Latency
# ---------------------------------------------------------------------------
if [ "$DO_LATENCY" -eq 1 ]; then
	# Idle, caught up and published first, so the phase starts from a
	# steady state.
	CUR=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
	"${PSQL[@]}" -Atc "SELECT e2e_wait_acked('bench', '$CUR', 600)" >/dev/null
	emulator api "$HTTP_PORT" POST /admin/flush >/dev/null
	# The worker opens a table's Zerobus stream at the table's first change
	# (a token and a create_stream round trip): one commit first, timed on
	# its own, so that the measured window is the steady state.
	COLD_MS=$("${PSQL[@]}" -At <<'EOF'
SELECT clock_timestamp() AS t0 \gset
INSERT INTO bench_lat SELECT * FROM bench_rows(nextval('bench_lat_ids'), currval('bench_lat_ids'));
SELECT round((extract(epoch FROM e2e_wait_acked('bench', pg_current_wal_insert_lsn(), 60) - :'t0'::timestamptz) * 1000)::numeric, 1);
EOF
	)
	N_WARM=$("${PSQL[@]}" -Atc "SELECT count(*) FROM bench_lat")
	note "(b) $RATE one-row commits/s for $SECONDS_LAT s, sampling acked_lsn about every 1 ms..."
	echo "INSERT INTO bench_lat SELECT * FROM bench_rows(nextval('bench_lat_ids'), currval('bench_lat_ids'));" \
		>"$WORK/lat.sql"
	LAT_START=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
	emulator api "$HTTP_PORT" DELETE /admin/stats/ack_latency >/dev/null
	"${PSQL[@]}" -At -F $'\t' \
		-c "SELECT seen, acked, looks FROM e2e_ack_samples('bench', $((SECONDS_LAT + 10)), 0.001)" \
		>"$WORK/samples.tsv" &
	SAMPLER=$!
	"$PG_BINDIR/pgbench" -n "${PGC_CONN[@]}" -c 4 -j 1 \
		-R "$RATE" -T "$SECONDS_LAT" -f "$WORK/lat.sql" postgres >"$WORK/pgbench.out" 2>&1 ||
		{ cat "$WORK/pgbench.out" >&2; exit 1; }
	LAT_END=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
	wait "$SAMPLER"
	N_LAT=$(($("${PSQL[@]}" -Atc "SELECT count(*) FROM bench_lat") - N_WARM))
	PGB_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out")
	PGB_LAT=$(sed -n 's/^latency average = \(.*\)$/\1/p' "$WORK/pgbench.out")
	# the emulator's own arrival -> ack time over the window
	EMU_TTD=$(emulator api "$HTTP_PORT" GET /admin/stats |
		node -e 'const s = JSON.parse(require("fs").readFileSync(0)).ack_latency_ms; console.log(`${s.p50} ${s.p99}`)')
	read -r EMU_P50 EMU_P99 <<<"$EMU_TTD"

	emulator api "$HTTP_PORT" POST /admin/flush >/dev/null
	node "$TOP/emulator/bin/zerobus-read.js" --data-dir "$EMU_DIR" --table main.bench.bench_lat \
		>"$WORK/lat.jsonl"
	LAT=$(
		{
			echo "CREATE TEMP TABLE samples (seen timestamptz, acked pg_lsn, looks bigint);"
			echo "COPY samples FROM STDIN;"
			cat "$WORK/samples.tsv"
			echo '\.'
			echo "CREATE INDEX ON samples (acked);"
			echo "CREATE TEMP TABLE delta (j jsonb);"
			printf '%s\n' "COPY delta FROM STDIN WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02');"
			cat "$WORK/lat.jsonl"
			echo '\.'
			cat <<EOF
\\pset tuples_only on
\\pset format unaligned
\\pset fieldsep ' '
WITH commits AS (
	SELECT DISTINCT '0/0'::pg_lsn + (j->>'_commit_lsn')::numeric AS lsn,
		to_timestamp((j->>'_commit_timestamp')::numeric / 1e6) AS at
	FROM delta
), lat AS (
	SELECT extract(epoch FROM (SELECT s.seen FROM samples s WHERE s.acked > c.lsn
							   ORDER BY s.acked LIMIT 1) - c.at) * 1000 AS ms
	FROM commits c
	WHERE c.lsn >= '$LAT_START' AND c.lsn < '$LAT_END'
)
SELECT count(*), count(ms),
	round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
	round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
	round(max(ms)::numeric, 1),
	(SELECT count(*) FROM samples),
	(SELECT round((extract(epoch FROM max(seen) - min(seen)) * 1000 / greatest(max(looks) - min(looks), 1))::numeric, 2) FROM samples)
FROM lat;
EOF
		} | "${PSQL[@]}"
	)
	read -r L_TXNS L_MATCHED L_P50 L_P99 L_MAX L_SAMPLES L_GAP <<<"$LAT"
	say "(b) latency: pgbench -R $RATE -T $SECONDS_LAT -c 4, one-row inserts (~200 bytes) into bench_lat, synchronous_commit on"
	say "    pgbench: $N_LAT transactions, tps $PGB_TPS, client latency average $PGB_LAT"
	say "    method: a server-side loop looked at acked_lsn in shared memory every $L_GAP ms on average"
	say "    ($L_SAMPLES changes seen); latency = first look past the commit LSN - commit timestamp"
	say "    (both from the Delta rows), so it includes up to one sampling interval"
	say "    transactions in Delta $L_TXNS, with an ack seen $L_MATCHED"
	say "    commit -> ack: p50 $L_P50 ms, p99 $L_P99 ms, max $L_MAX ms"
	say "    before the window: the table's first commit (its Zerobus stream opens then) -> ack ${COLD_MS} ms"
	say "    the emulator's own time to durability (request arrival -> its ack) over the window: p50 $EMU_P50 ms, p99 $EMU_P99 ms"
	if [ "$PROFILE" = real ]; then
		say "    check p50 within 20 ms of the emulator's own: $(verdict "$(awk -v p="$L_P50" -v e="$EMU_P50" 'BEGIN { print (p != "" && p - e < 20) }')")"
	else
		say "    check p50 < 50 ms: $(verdict "$(awk -v p="$L_P50" 'BEGIN { print (p != "" && p < 50) }')")"
	fi
	if [ "$L_TXNS" != "$N_LAT" ] || [ "$L_MATCHED" != "$L_TXNS" ]; then
		say "    WARNING: not every transaction was seen acked within the sampling window"
	fi
	say ""
fi

# ---------------------------------------------------------------------------
# (c) Worker memory during one big transaction
# ---------------------------------------------------------------------------
if [ "$DO_MEMORY" -eq 1 ]; then
	OLD=$(worker_pid)
	"${PSQL[@]}" -c "SELECT zerobus.pause_stream('bench')" >/dev/null
	"${PSQL[@]}" -c "SELECT zerobus.resume_stream('bench')" >/dev/null
	PID=$(wait_new_worker "$OLD")
	note "(c) one transaction of $ROWS inserted rows, worker pid $PID..."
	read -r C_HWM0 _ _ _ < <(worker_mem "$PID")
	MAXID=$("${PSQL[@]}" -Atc "SELECT coalesce(max(id), 0) FROM bench")
	FIRST=$((MAXID + 1))
	t0=$EPOCHREALTIME
	"${PSQL[@]}" -c "INSERT INTO bench SELECT * FROM bench_rows($FIRST, $((FIRST + ROWS - 1)))"
	t1=$EPOCHREALTIME
	BIG_END=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
	"${PSQL[@]}" -Atc "SELECT e2e_wait_acked('bench', '$BIG_END', 3600)" >/dev/null
	t2=$EPOCHREALTIME
	[ "$(worker_pid)" = "$PID" ] || note "(c) WARNING: the worker restarted during the transaction"
	read -r C_HWM C_RSS C_ANON C_SHM < <(worker_mem "$PID")
	say "(c) memory: one transaction inserting $ROWS rows (~200 bytes), worker restarted before it"
	say "    insert $(secs "$t0" "$t1") s; commit -> acked $(secs "$t1" "$t2") s"
	say "    worker VmHWM before $((C_HWM0 / 1024)) MB, peak (VmHWM) $((C_HWM / 1024)) MB"
	say "    at the end RSS $((C_RSS / 1024)) MB = $((C_ANON / 1024)) MB private + $((C_SHM / 1024)) MB shared memory + files"
	say "    check peak RSS < 100 MB: $(verdict "$((C_HWM < 100 * 1024))")"
	if [ "$ROWS" -lt 1000000 ]; then
		say "    NOTE: scaled down (--rows $ROWS)"
	fi
	say ""
fi

bench_report_save e2e
