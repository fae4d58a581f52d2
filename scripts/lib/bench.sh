# The variables this sets are for the scripts that source it:
# shellcheck shell=bash disable=SC2034
#
# bench.sh
#	  What the benches (bench/decode_bench.sh, e2e_bench.sh,
#	  snapshot_bench.sh) share beyond the cluster (scripts/lib/pgcluster.sh):
#	  option checks, the sizes of the workload of bench/workload.sql, the
#	  setup and cleanup of a bench that runs a stream, the report, and
#	  decoding a slot with pg_recvlogical while measuring the walsender's
#	  CPU time.
#
# Needs PROG and TOP (the top of the tree) set; bench_report_start and
# bench_decode need the cluster of pgcluster.sh made.
#
# scripts/lib/bench.sh
#

# bench_need_int OPTION VALUE MIN: exit with status 2 unless VALUE, given to
# OPTION, is a decimal integer (no leading zero) of at least MIN
bench_need_int()
{
	case "$2" in
		''|*[!0-9]*|0?*) ;;
		*) [ "$2" -lt "$3" ] || return 0 ;;
	esac
	echo "$PROG: $1 takes an integer of at least $3" >&2
	exit 2
}

# bench_set NAME=VALUE: a zerobus.* setting for the bench's cluster (the
# --set option), added to BENCH_SETTINGS as a postgresql.conf line.
BENCH_SETTINGS=()
bench_set()
{
	case "$1" in
		zerobus.*=*) ;;
		*) echo "$PROG: --set takes zerobus.NAME=VALUE" >&2; exit 2 ;;
	esac
	case "${1#*=}" in
		*\'*|*\\*) echo "$PROG: --set: the value may not hold quotes or backslashes" >&2; exit 2 ;;
	esac
	BENCH_SETTINGS+=("${1%%=*} = '${1#*=}'")
}

# bench_workload_sizes ROWS: the sizes of the workload, all derived from
# ROWS inserted rows: BATCH rows per transaction, N_INSERT, N_UPDATE,
# N_DELETE, N_SINGLE (one-row transactions) and their sum N_CHANGES
bench_workload_sizes()
{
	BATCH=1000
	N_INSERT=$1
	N_UPDATE=$(($1 / 5))
	N_DELETE=$(($1 / 5))
	N_SINGLE=$(($1 / 100))
	N_CHANGES=$((N_INSERT + N_UPDATE + N_DELETE + N_SINGLE))
}

# bench_report_start: a new empty report, $REPORT in $WORK
bench_report_start()
{
	REPORT="$WORK/report.txt"
	: >"$REPORT"
}

# bench_stream_start: for the benches that run a zerobus stream against the
# emulator: checks that the extension is installed, makes $WORK, stops
# PostgreSQL and the emulator and removes $WORK on exit (kept with --keep,
# $KEEP) and starts the report.  Needs $PROG, pgcluster.sh and emulator.sh.
bench_stream_start()
{
	if [ ! -f "$(pg_config --sharedir)/extension/zerobus.control" ]; then
		echo "$PROG: the extension is not installed (make && make install)" >&2
		exit 1
	fi
	pgc_make_workdir
	trap bench_stream_stop EXIT
	trap 'exit 130' INT TERM
	bench_report_start
}

bench_stream_stop()
{
	pgc_stop immediate
	emu_stop
	pgc_remove_workdir "$KEEP"
}

# say: print to the terminal and to the report
say()
{
	printf '%s\n' "$*" | tee -a "$REPORT"
}

# bench_report_save KIND: copy the report to bench/out/KIND-<date>.txt
bench_report_save()
{
	local dest

	mkdir -p "$TOP/bench/out"
	dest="$TOP/bench/out/$1-$(date -u +%Y%m%d-%H%M%S).txt"
	cp "$REPORT" "$dest"
	echo "$PROG: report written to $dest" >&2
}

# secs A B: B - A (instants from $EPOCHREALTIME) with three decimals
secs()
{
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

# cpu_ticks PID: user + system CPU clock ticks PID has used
cpu_ticks()
{
	local stat

	read -r -a stat <"/proc/$1/stat" || return 1
	echo $((stat[13] + stat[14]))
}

# bench_decode SLOT ENDPOS OUT [OPTION...]: decode SLOT up to ENDPOS into the
# file OUT with pg_recvlogical (its stderr in OUT.err, plugin OPTIONs as
# "-o name=value"), and set RUN_RC (pg_recvlogical's exit status), RUN_SECS
# (its wall clock time, connection and shutdown included), RUN_TICKS (CPU
# clock ticks of the walsender that decoded, read from /proc every 20 ms
# while it runs, so at most that much low; empty if it could not be read)
# and RUN_CLIENT_CPU (user + system CPU seconds of pg_recvlogical).  The
# walsender's CPU is the plugin's cost with little influence from other
# load on the machine; the client's shows when pg_recvlogical is the
# bottleneck.
bench_decode()
{
	local slot=$1 endpos=$2 out=$3 bg wpid="" t0 t1 cu cs
	shift 3

	RUN_TICKS=""
	(
		rc=0
		t0=$EPOCHREALTIME
		"$PG_BINDIR/pg_recvlogical" "${PGC_CONN[@]}" -d postgres \
			--slot="$slot" --start --no-loop --endpos="$endpos" -F 0 \
			"$@" -f "$out" 2>"$out.err" || rc=$?
		t1=$EPOCHREALTIME
		echo "$rc $t0 $t1" >"$out.time"
		# The second line of "times" is the CPU time of this subshell's
		# children (not in a $(...), whose children would be others).
		times >"$out.times"
	) &
	bg=$!
	while kill -0 "$bg" 2>/dev/null; do
		if [ -z "$wpid" ]; then
			wpid=$("${PSQL[@]}" -Atc "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot' AND active_pid IS NOT NULL" 2>/dev/null || true)
		fi
		if [ -n "$wpid" ]; then
			RUN_TICKS=$(cpu_ticks "$wpid" 2>/dev/null || echo "$RUN_TICKS")
		fi
		sleep 0.02
	done
	wait "$bg" || true
	read -r RUN_RC t0 t1 <"$out.time"
	read -r cu cs < <(sed -n 2p "$out.times")
	rm -f "$out.time" "$out.times"
	RUN_CLIENT_CPU=$(awk -v u="$cu" -v s="$cs" 'function sec(t) { split(t, a, "m"); return a[1] * 60 + a[2] }
		BEGIN { printf "%.2f", sec(u) + sec(s) }')
	RUN_SECS=$(secs "$t0" "$t1")
}
