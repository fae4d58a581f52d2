# The variables this sets are for the scripts that source it:
# shellcheck shell=bash disable=SC2034
#
# emulator.sh
#	  Runs the local Zerobus emulator (emulator/) beside a throwaway cluster
#	  of scripts/lib/pgcluster.sh, for scripts/quickstart.sh and
#	  bench/e2e_bench.sh.
#
# Needs PROG, TOP (the top of the tree) and WORK (pgc_make_workdir) set.
# emu_start starts it, emu_create_stream points a zerobus stream at it;
# the caller's EXIT trap calls emu_stop.
#
# scripts/lib/emulator.sh
#

EMU_PID=""

# emu_start ARG...: start the emulator with its data in $WORK/emulator, on
# loopback ports of its choosing, with the extra command-line ARGs; wait
# (30 s at most) until it is ready.  Sets EMU_DIR, EMU_PID, GRPC_PORT and
# HTTP_PORT.  Its stdout and stderr go to $WORK/emulator.out and
# $WORK/emulator.log.  Non-zero, with a message, when it does not come up.
emu_start()
{
	local ready

	EMU_DIR="$WORK/emulator"
	mkdir -p "$EMU_DIR"
	"$TOP/scripts/node-modules.sh" || {
		echo "$PROG: could not install the npm modules" >&2
		return 1
	}
	# setsid: it must be able to outlive this terminal session (quickstart.sh
	# --keep); disown: no job notice when it is stopped.
	setsid node "$TOP/emulator/bin/zerobus-emulator.js" --data-dir "$EMU_DIR" \
		--grpc-port 0 --http-port 0 "$@" \
		>"$WORK/emulator.out" 2>"$WORK/emulator.log" </dev/null &
	EMU_PID=$!
	disown "$EMU_PID"
	for _ in $(seq 1 300); do
		grep -q '"event":"ready"' "$WORK/emulator.out" 2>/dev/null && break
		if ! kill -0 "$EMU_PID" 2>/dev/null; then
			echo "$PROG: the emulator exited" >&2
			return 1
		fi
		sleep 0.1
	done
	if ! ready=$(grep '"event":"ready"' "$WORK/emulator.out"); then
		echo "$PROG: the emulator did not start within 30 s" >&2
		return 1
	fi
	GRPC_PORT=$(sed 's/.*"grpc_port":\([0-9]*\).*/\1/' <<<"$ready")
	HTTP_PORT=$(sed 's/.*"http_port":\([0-9]*\).*/\1/' <<<"$ready")
}

# emu_stop: stop the emulator if it runs, waiting up to 10 s before killing
# it.  For EXIT traps: it never fails.
emu_stop()
{
	if [ -n "$EMU_PID" ] && kill -0 "$EMU_PID" 2>/dev/null; then
		kill "$EMU_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$EMU_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$EMU_PID" 2>/dev/null || true
	fi
}

# emu_create_stream NAME PUBLICATION SCHEMA CLIENT_ID CLIENT_SECRET [ARGS]:
# create zerobus stream NAME of PUBLICATION into catalog main, schema SCHEMA
# of the running emulator, over plain h2c, with the OAuth client
# CLIENT_ID/CLIENT_SECRET; ARGS, if given, are more named arguments of
# zerobus.create_stream() in SQL (e.g. "enabled => false").  Needs PSQL.
emu_create_stream()
{
	"${PSQL[@]}" >/dev/null <<SQL
SELECT zerobus.create_stream('$1', '$2',
	endpoint => 'http://127.0.0.1:$GRPC_PORT',
	workspace_url => 'http://127.0.0.1:$HTTP_PORT',
	client_id => '$4', client_secret => '$5',
	target_catalog => 'main', target_schema => '$3',
	insecure => true${6:+, $6});
SQL
}
