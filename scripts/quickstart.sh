#!/usr/bin/env bash
#
# quickstart.sh
#	  See zerobus stream changes from PostgreSQL into a Delta table, on this
#	  machine, in one command.
#
# Installs the dependencies (scripts/install-deps.sh), builds and installs the
# extension, then starts a throwaway PostgreSQL 15 (a new cluster in a
# temporary directory, reachable only through a unix socket in that directory)
# and the local Zerobus emulator (emulator/, with
# emulator/examples/quickstart.json declaring the target table
# main.demo.orders and an OAuth client).  It creates a demo table holding two
# rows, a publication and a zerobus stream, waits for the stream's initial
# snapshot of those rows, writes inserts, updates and deletes, waits until
# zerobus.stat_streams shows them durably acknowledged, has the emulator
# publish to Delta, and prints the Delta table's rows, its _delta_log and the
# stream's statistics.  It exits non-zero unless the Delta table, folded by
# key in (_commit_lsn, _seq) order, equals the source table.
#
# Everything is stopped and removed at the end, unless --keep is given: then
# both keep running and the script prints how to connect and how to stop them.
#
# Usage: scripts/quickstart.sh [--keep]
#
# Run it as root or as a user with sudo (installing packages and the
# extension needs it).  As root, PostgreSQL runs as the "postgres" system
# user, since initdb refuses root.  The cluster and the emulator come from
# scripts/lib/pgcluster.sh and scripts/lib/emulator.sh.
#
# scripts/quickstart.sh
#

set -euo pipefail

PROG=quickstart
TOP=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/pgcluster.sh
. "$TOP/scripts/lib/pgcluster.sh"
# shellcheck source=SCRIPTDIR/lib/emulator.sh
. "$TOP/scripts/lib/emulator.sh"

usage()
{
	sed -n 's/^# Usage: /usage: /p' "$0"
	echo "  --keep    leave PostgreSQL and the emulator running at the end"
}

KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "quickstart: unknown argument \"$1\"" >&2; usage >&2; exit 2 ;;
	esac
done

CONFIG="$TOP/emulator/examples/quickstart.json"
TARGET=main.demo.orders
CLIENT_ID=quickstart
CLIENT_SECRET=quickstart-secret

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	SUDO=(sudo)
fi

# step: a heading for what happens next (bold on a terminal)
BOLD=""
PLAIN=""
if [ -t 1 ]; then
	BOLD=$'\033[1m'
	PLAIN=$'\033[0m'
fi
step()
{
	printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"
}

die()
{
	echo "quickstart: $*" >&2
	exit 1
}

# ---------------------------------------------------------------------------
# Dependencies and the extension
# ---------------------------------------------------------------------------
step "Installing dependencies (Debian packages, the emulator's npm modules)"
"$TOP/scripts/install-deps.sh"

step "Building and installing the extension"
make -s -C "$TOP" >/dev/null
"${SUDO[@]}" make -s -C "$TOP" install >/dev/null
echo "installed into $(pg_config --pkglibdir)"

pgc_find_binaries

# ---------------------------------------------------------------------------
# Throwaway PostgreSQL and emulator; the trap stops them
# ---------------------------------------------------------------------------
pgc_make_workdir
DONE=0

cleanup()
{
	if [ "$DONE" -eq 0 ]; then
		echo "" >&2
		echo "quickstart: FAILED.  Last lines of the PostgreSQL log:" >&2
		tail -n 15 "$PG_LOG" >&2 2>/dev/null || true
		echo "quickstart: last lines of the emulator log:" >&2
		tail -n 15 "$WORK/emulator.log" >&2 2>/dev/null || true
	fi
	if [ "$KEEP" -eq 1 ]; then
		[ "$DONE" -eq 1 ] || echo "quickstart: left running; logs in $WORK (stop: $WORK/stop.sh)" >&2
		return
	fi
	pgc_stop fast
	emu_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Starting a throwaway PostgreSQL in $WORK"
pgc_initdb "pgoutput, test_decoding, zerobus"
pgc_conf "shared_preload_libraries = 'zerobus'" \
	"zerobus.database = 'postgres'"
pgc_start || die "PostgreSQL did not start"
echo "PostgreSQL $("${PSQL[@]}" -Atc 'SHOW server_version'), wal_level=logical, shared_preload_libraries='zerobus'"

step "Starting the Zerobus emulator (config: emulator/examples/quickstart.json)"
emu_start --config "$CONFIG" || exit 1
echo "gRPC (h2c) on 127.0.0.1:$GRPC_PORT, OAuth and admin API on http://127.0.0.1:$HTTP_PORT"
echo "target table $TARGET, OAuth client \"$CLIENT_ID\""

# emulator_post PATH: POST to the emulator's admin API, print the reply
emulator_post()
{
	node -e 'fetch(process.argv[1], {method: "POST"}).then(async r => {
		const t = await r.text();
		if (!r.ok) { console.error(r.status + " " + t); process.exit(1); }
		console.log(t);
	})' "http://127.0.0.1:$HTTP_PORT$1"
}

# ---------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------
step "Creating the extension, a table and a publication"
"${PSQL[@]}" -e <<'EOF'
CREATE EXTENSION zerobus;
CREATE TABLE orders (
	id bigint PRIMARY KEY,
	customer text NOT NULL,
	amount numeric(10, 2),
	status text,
	created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (id, customer, amount, status) VALUES
	(10, 'erin', 12.00, 'paid'), (11, 'frank', 3.10, 'new');
CREATE PUBLICATION demo FOR TABLE orders;
EOF

step "The Delta table this needs (zerobus.target_ddl; the emulator config declares it)"
"${PSQL[@]}" -At -c "SELECT zerobus.target_ddl('orders', '$TARGET')"

step "Creating the stream"
echo "SELECT zerobus.create_stream('demo', 'demo', endpoint => 'http://127.0.0.1:$GRPC_PORT',"
echo "       workspace_url => 'http://127.0.0.1:$HTTP_PORT', client_id => '$CLIENT_ID', client_secret => '...',"
echo "       target_catalog => 'main', target_schema => 'demo', insecure => true);"
emu_create_stream demo demo demo "$CLIENT_ID" "$CLIENT_SECRET"

step "Waiting for the initial snapshot of the two existing rows (stat_streams.snapshot_state = done)"
snap=
for _ in $(seq 1 600); do
	snap=$("${PSQL[@]}" -Atc "SELECT CASE WHEN state = 'failed' THEN 'failed'
		ELSE snapshot_state END FROM zerobus.stat_streams WHERE name = 'demo'")
	[ "$snap" = done ] || [ "$snap" = failed ] && break
	sleep 0.1
done
"${PSQL[@]}" -x -c "SELECT name, state, last_error, snapshot_state, snapshot_rows FROM zerobus.stat_streams"
[ "$snap" = done ] || die "the initial snapshot did not finish within 60 s"

step "Writing changes"
"${PSQL[@]}" -e <<'EOF'
INSERT INTO orders (id, customer, amount, status) VALUES
	(1, 'alice', 19.99, 'new'), (2, 'bob', 5.00, 'new'), (3, 'carol', 42.50, 'new');
UPDATE orders SET status = 'shipped' WHERE id = 1;
DELETE FROM orders WHERE id = 2;
BEGIN;
INSERT INTO orders (id, customer, amount, status) VALUES (4, 'dave', 7.25, 'new');
UPDATE orders SET amount = amount + 1, status = 'paid' WHERE id = 3;
COMMIT;
EOF
END_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_lsn()")
EXPECTED_RECORDS=9	# 2 snapshot records, then 7 change records

step "Waiting until the stream has them acknowledged (acked_lsn >= $END_LSN)"
acked=f
for _ in $(seq 1 600); do
	acked=$("${PSQL[@]}" -Atc "SELECT CASE WHEN state = 'failed' THEN 'failed'
		ELSE coalesce(acked_lsn >= '$END_LSN', false)::text END
		FROM zerobus.stat_streams WHERE name = 'demo'")
	[ "$acked" = true ] || [ "$acked" = failed ] && break
	sleep 0.1
done
if [ "$acked" != true ]; then
	"${PSQL[@]}" -x -c "SELECT name, state, last_error, acked_lsn, records_sent, records_acked FROM zerobus.stat_streams"
	if [ "$acked" = failed ]; then
		die "the stream stopped on an error (last_error above)"
	fi
	die "the changes were not acknowledged within 60 s"
fi
"${PSQL[@]}" -At -F ' ' -c "SELECT 'acked by Zerobus: ' || records_acked || ' records, acked_lsn ' || acked_lsn FROM zerobus.stat_streams WHERE name = 'demo'"

step "Publishing to Delta (POST /admin/flush) and reading the table back"
emulator_post /admin/flush
node "$TOP/emulator/bin/zerobus-read.js" --data-dir "$EMU_DIR" --table "$TARGET" \
	>"$WORK/delta.jsonl" || die "could not read the Delta table"

# with_delta SQL...: run SQL in psql with table "delta" (one jsonb per row
# read back from the Delta table) in place
with_delta()
{
	{
		echo "CREATE TEMP TABLE delta (j jsonb);"
		# csv with quote and delimiter characters JSON text never holds
		printf '%s\n' "COPY delta FROM STDIN WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02');"
		cat "$WORK/delta.jsonl"
		echo '\.'
		printf '%s\n' "$@"
	} | "${PSQL[@]}"
}

echo "Rows of Delta table $TARGET (read by emulator/bin/zerobus-read.js from Parquet + _delta_log):"
with_delta "SELECT '0/0'::pg_lsn + (j->>'_commit_lsn')::numeric AS _commit_lsn,
	(j->>'_seq')::int AS _seq, j->>'_change_type' AS _change_type,
	(j->>'id')::bigint AS id, j->>'customer' AS customer,
	j->>'amount' AS amount, j->>'status' AS status,
	to_char(to_timestamp((j->>'_commit_timestamp')::numeric / 1e6), 'HH24:MI:SS.MS') AS committed
FROM delta ORDER BY (j->>'_commit_lsn')::numeric, (j->>'_seq')::int;"

echo "$TARGET/_delta_log:"
ls -l "$EMU_DIR/tables/main/demo/orders/_delta_log" | sed 1d

step "zerobus.stat_streams"
"${PSQL[@]}" -x -c "SELECT name, state, last_error, confirmed_lsn, acked_lsn, lag_bytes,
	records_sent, records_acked, bytes_acked, reconnects, last_ack_time FROM zerobus.stat_streams"

# ---------------------------------------------------------------------------
# Verdict: the change records, applied in (_commit_lsn, _seq) order, must
# give back the source table
# ---------------------------------------------------------------------------
NRECORDS=$(grep -c . "$WORK/delta.jsonl" || true)
SAME=$(with_delta "\\pset tuples_only on" "\\pset format unaligned" "
WITH latest AS (
	SELECT DISTINCT ON (j->>'id') j FROM delta
	ORDER BY j->>'id', (j->>'_commit_lsn')::numeric DESC, (j->>'_seq')::int DESC
), folded AS (
	SELECT (j->>'id')::bigint, j->>'customer', (j->>'amount')::numeric,
		j->>'status', (j->>'created_at')::bigint
	FROM latest WHERE j->>'_change_type' IN ('snapshot', 'insert', 'update_postimage')
), source AS (
	SELECT id, customer, amount, status,
		(extract(epoch FROM created_at) * 1000000)::bigint FROM orders
)
SELECT NOT EXISTS (SELECT * FROM folded EXCEPT SELECT * FROM source)
	AND NOT EXISTS (SELECT * FROM source EXCEPT SELECT * FROM folded);")
if [ "$NRECORDS" -ne "$EXPECTED_RECORDS" ] || [ "$SAME" != t ]; then
	die "the Delta table has $NRECORDS records (expected $EXPECTED_RECORDS) and folded equals the source table: $SAME"
fi
step "OK: $NRECORDS snapshot and change records landed in $TARGET; applied in (_commit_lsn, _seq) order they equal table orders"

DONE=1
if [ "$KEEP" -eq 1 ]; then
	cat >"$WORK/stop.sh" <<EOF
#!/bin/sh
# Stops the quick start's PostgreSQL and emulator and removes $WORK.
${AS_SERVER[*]} "$PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop
kill $EMU_PID
rm -rf "$WORK"
EOF
	chmod 755 "$WORK/stop.sh"
	cat <<EOF

Still running (--keep):
  psql:        $PG_BINDIR/psql -h $SOCK -U postgres postgres
               (try: INSERT INTO orders (id, customer) VALUES (5, 'erin');
                     SELECT * FROM zerobus.stat_streams;)
  Delta rows:  curl -X POST http://127.0.0.1:$HTTP_PORT/admin/flush
               node $TOP/emulator/bin/zerobus-read.js --data-dir $EMU_DIR --table $TARGET
  logs:        $PG_LOG, $WORK/emulator.log
  stop:        $WORK/stop.sh
EOF
fi
