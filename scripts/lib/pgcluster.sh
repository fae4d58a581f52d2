# The variables this sets are for the scripts that source it:
# shellcheck shell=bash disable=SC2034
#
# pgcluster.sh
#	  A throwaway PostgreSQL cluster for the project's scripts
#	  (scripts/quickstart.sh, bench/decode_bench.sh, bench/e2e_bench.sh).
#
# The cluster lives in a new temporary directory: data in $DATA, the server
# log in $PG_LOG, and the only way in is the unix socket in $SOCK (no TCP
# listener), so it cannot collide with another server on this machine.  When
# run as root, the server programs run as the OS user PGC_OS_USER (default
# postgres), since initdb refuses root.
#
# Source it from a bash script running under "set -euo pipefail" after
# setting PROG, the name its messages start with.  Then, in this order:
#
#   pgc_find_binaries PROGRAM...
#       sets PG_BINDIR (the environment's, or pg_config --bindir); exits
#       unless initdb, pg_ctl, postgres, psql and each PROGRAM are there
#   pgc_make_workdir
#       makes the directories; sets WORK, DATA, SOCK, PG_LOG, PORT,
#       SERVER_USER, AS_SERVER (the command prefix that runs a server
#       program as SERVER_USER), PGC_CONN (a client's connection options,
#       without the database) and PSQL (psql on database postgres, stopping
#       at the first error)
#   pgc_initdb PLUGINS
#       initdb and the common settings; exits on failure
#   pgc_conf LINE...
#       more postgresql.conf lines
#   pgc_start
#       starts the server; non-zero on failure (the reason is in $PG_LOG)
#
# and from the caller's EXIT trap: pgc_stop MODE, then pgc_remove_workdir KEEP.
#
# scripts/lib/pgcluster.sh
#

# pgc_find_binaries PROGRAM...: locate the PostgreSQL programs this script
# runs; exits when one is missing, before anything is created.
pgc_find_binaries()
{
	local b

	PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}
	for b in initdb pg_ctl postgres psql "$@"; do
		if [ ! -x "$PG_BINDIR/$b" ]; then
			echo "$PROG: $PG_BINDIR/$b not found (set PG_BINDIR)" >&2
			exit 1
		fi
	done
}

# pgc_make_workdir: the temporary directory and the variables naming the
# cluster's parts (see the top of this file).  The data and socket
# directories belong to the server's OS user; the rest stays the caller's.
pgc_make_workdir()
{
	SERVER_USER=$(id -un)
	AS_SERVER=()
	if [ "$(id -u)" -eq 0 ]; then
		SERVER_USER=${PGC_OS_USER:-postgres}
		AS_SERVER=(runuser -u "$SERVER_USER" --)
	fi

	WORK=$(mktemp -d "${TMPDIR:-/tmp}/zerobus-$PROG.XXXXXX")
	chmod 755 "$WORK"
	DATA="$WORK/data"
	SOCK="$WORK/sock"
	PG_LOG="$WORK/postgresql.log"
	mkdir -p "$DATA" "$SOCK"
	touch "$PG_LOG"
	if [ "$(id -u)" -eq 0 ]; then
		chown "$SERVER_USER:" "$DATA" "$SOCK" "$PG_LOG"
	fi
	chmod 700 "$DATA"

	# Nothing listens on TCP and the socket directory is ours alone, so the
	# port only names the socket file and cannot collide.
	PORT=5432
	PGC_CONN=(-h "$SOCK" -p "$PORT" -U postgres)
	PSQL=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "${PGC_CONN[@]}" -d postgres)
}

# pgc_initdb PLUGINS: create the cluster with superuser postgres and trust
# authentication, and configure it for logical decoding on the socket only.
# PLUGINS is the value for output_plugin_libraries, the list of output
# plugins PostgreSQL 15.20 and later agree to run; older servers have no
# such setting, and get none.
pgc_initdb()
{
	local plugins=$1 gucs

	"${AS_SERVER[@]}" "$PG_BINDIR/initdb" -D "$DATA" -U postgres -A trust -E UTF8 \
		--locale=C >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
	gucs=$("${AS_SERVER[@]}" "$PG_BINDIR/postgres" --describe-config 2>/dev/null || true)
	pgc_conf "# $PROG" \
		"listen_addresses = ''" \
		"port = $PORT" \
		"unix_socket_directories = '$SOCK'" \
		"wal_level = logical"
	# Not "postgres ... | grep -q": with pipefail, grep's early exit would
	# fail the pipeline through SIGPIPE.
	if grep -q '^output_plugin_libraries' <<<"$gucs"; then
		pgc_conf "output_plugin_libraries = '$plugins'"
	fi
}

# pgc_conf LINE...: append LINEs to the cluster's postgresql.conf
pgc_conf()
{
	printf '%s\n' "$@" >>"$DATA/postgresql.conf"
}

# pgc_start: start the server and wait until it accepts connections
pgc_start()
{
	"${AS_SERVER[@]}" "$PG_BINDIR/pg_ctl" -D "$DATA" -l "$PG_LOG" -w start >/dev/null
}

# pgc_stop MODE: stop the server (pg_ctl's shutdown MODE) if it runs.  For
# EXIT traps: it never fails, and does nothing before the cluster exists.
pgc_stop()
{
	if [ -n "${DATA:-}" ] && [ -f "$DATA/postmaster.pid" ]; then
		"${AS_SERVER[@]}" "$PG_BINDIR/pg_ctl" -D "$DATA" -m "$1" -w stop >/dev/null 2>&1 || true
	fi
}

# pgc_remove_workdir KEEP: remove the temporary directory, or with KEEP 1
# say where it was kept.  The server must be stopped first.
pgc_remove_workdir()
{
	if [ "$1" -eq 1 ]; then
		echo "$PROG: kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
