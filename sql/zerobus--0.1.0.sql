/* zerobus--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION zerobus" to load this file. \quit

CREATE FUNCTION target_ddl(source regclass, target_table text DEFAULT NULL,
	stream text DEFAULT NULL, form text DEFAULT 'create')
RETURNS text
AS 'MODULE_PATHNAME', 'zerobus_target_ddl'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION target_ddl(regclass, text, text, text) IS
'Databricks SQL for the Delta table that receives the changes of a source table: its CREATE TABLE (form ''create''), or the ALTER TABLE statements that bring it from the columns it accepted in a stream to the source table''s columns (form ''alter'')';

-- Streams: a publication + a logical slot + a Zerobus endpoint + a workspace
-- + credentials + the mapping of source tables to target tables.  Readable by
-- everyone but paused_reason (see the grants below).  The NULL option
-- columns take the value of the zerobus.* setting of the same name.
CREATE TABLE streams (
	id serial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	owner regrole NOT NULL,
	publication text NOT NULL,
	slot_name name NOT NULL UNIQUE,
	endpoint text NOT NULL,
	workspace_url text NOT NULL,
	workspace_id text,
	target_catalog text NOT NULL,
	target_schema text,
	table_map jsonb NOT NULL DEFAULT '{}',
	insecure bool NOT NULL DEFAULT false,
	ca_file text,
	batch_max_records int,
	batch_max_bytes int,
	batch_max_delay int,
	max_inflight_bytes int,
	ack_timeout int,
	snapshot bool NOT NULL DEFAULT true,
	shared_connection bool NOT NULL DEFAULT false,
	schema_policy text NOT NULL DEFAULT 'pause'
		CHECK (schema_policy IN ('pause', 'drop_missing_columns')),
	array_nulls text NOT NULL DEFAULT 'mark'
		CHECK (array_nulls IN ('mark', 'pause')),
	failover bool NOT NULL
		DEFAULT (pg_catalog.current_setting('server_version_num')::int >= 170000),
	enabled bool NOT NULL DEFAULT true,
	paused_reason text,
	paused_at timestamptz,
	config_version int NOT NULL DEFAULT 1,
	created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE streams IS
'zerobus streams; change them only through the zerobus functions';
COMMENT ON COLUMN streams.table_map IS
'source table (schema.table, quoted as needed) -> target table (catalog.schema.table)';
COMMENT ON COLUMN streams.batch_max_delay IS 'milliseconds';
COMMENT ON COLUMN streams.failover IS
'the slot is a failover slot (PostgreSQL 17+): standbys that synchronize slots keep a copy a promoted standby goes on from';
COMMENT ON COLUMN streams.array_nulls IS
'an array with NULL elements: mark (sent without them, positions in _array_nulls) or pause (its table pauses)';
COMMENT ON COLUMN streams.ack_timeout IS 'milliseconds';
COMMENT ON COLUMN streams.paused_reason IS
'why the stream stopped on a permanent error; zerobus.resume_stream() clears it';

-- Credentials and the replication conninfo (which may hold a password):
-- superusers only.  A stream's owner reads them with stream_credentials().
CREATE TABLE stream_secrets (
	stream_id int PRIMARY KEY REFERENCES streams (id) ON DELETE CASCADE,
	client_id text NOT NULL,
	client_secret text NOT NULL,
	conninfo text
);

-- One row per source table a stream publishes (the partition root when the
-- publication publishes via the root): the state of its initial snapshot
-- and the columns the target table last accepted.  Written by the stream's
-- worker and by the zerobus functions.
CREATE TABLE stream_tables (
	stream_id int NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
	relid oid NOT NULL,
	schema_name name NOT NULL,
	table_name name NOT NULL,
	snapshot_state text NOT NULL DEFAULT 'pending'
		CHECK (snapshot_state IN ('pending', 'running', 'done', 'skipped')),
	snapshot_key text[],
	snapshot_rows int8 NOT NULL DEFAULT 0,
	snapshot_rows_estimated int8,
	snapshot_lsn pg_lsn,
	snapshot_started_at timestamptz,
	snapshot_finished_at timestamptz,
	accepted_columns jsonb,
	schema_notice text,
	paused_reason text,
	paused_at timestamptz,
	PRIMARY KEY (stream_id, relid)
);

COMMENT ON TABLE stream_tables IS
'per source table of a stream: initial snapshot progress and the schema the target accepted';
COMMENT ON COLUMN stream_tables.snapshot_key IS
'primary key (text form) of the last row of the last acked snapshot chunk; NULL = start';
COMMENT ON COLUMN stream_tables.snapshot_lsn IS
'watermark LSN of the last acked snapshot chunk (the _commit_lsn of its records)';
COMMENT ON COLUMN stream_tables.accepted_columns IS
'columns of the last descriptor the target accepted: [{"name", "field_number", "delta_type"}]';
COMMENT ON COLUMN stream_tables.schema_notice IS
'columns left out of the records because the target lacks them (schema_policy drop_missing_columns)';
COMMENT ON COLUMN stream_tables.paused_reason IS
'why the table''s target stopped taking records (the other tables flow on); zerobus.resume_stream() clears it';

-- Everybody reads the streams and their tables, but for the columns that
-- may hold data or a server's words: paused_reason (an error text) and
-- snapshot_key (primary-key values), which stat_streams and stat_snapshots
-- show to the stream's owner and superusers only.
GRANT SELECT (id, name, owner, publication, slot_name, endpoint, workspace_url,
	workspace_id, target_catalog, target_schema, table_map, insecure, ca_file,
	batch_max_records, batch_max_bytes, batch_max_delay, max_inflight_bytes,
	ack_timeout, snapshot, shared_connection, schema_policy, array_nulls,
	failover, enabled, paused_at, config_version, created_at) ON streams TO PUBLIC;
GRANT SELECT (stream_id, relid, schema_name, table_name, snapshot_state,
	snapshot_rows, snapshot_rows_estimated, snapshot_lsn, snapshot_started_at,
	snapshot_finished_at, accepted_columns, schema_notice, paused_at)
	ON stream_tables TO PUBLIC;
REVOKE ALL ON stream_secrets FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('streams', '');
SELECT pg_catalog.pg_extension_config_dump('streams_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stream_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('stream_tables', '');

-- The management functions check the caller's privileges themselves
-- (creating a stream takes a superuser; changing one, its owner) and then
-- act on the catalog as the bootstrap superuser.
CREATE FUNCTION create_stream(
	name text,
	publication text,
	endpoint text,
	workspace_url text,
	client_id text,
	client_secret text,
	target_catalog text,
	target_schema text DEFAULT NULL,
	table_map jsonb DEFAULT '{}',
	insecure bool DEFAULT false,
	conninfo text DEFAULT NULL,
	enabled bool DEFAULT true,
	batch_max_records int DEFAULT NULL,
	batch_max_bytes int DEFAULT NULL,
	batch_max_delay int DEFAULT NULL,
	max_inflight_bytes int DEFAULT NULL,
	ack_timeout int DEFAULT NULL,
	workspace_id text DEFAULT NULL,
	ca_file text DEFAULT NULL,
	owner regrole DEFAULT NULL,
	schema_policy text DEFAULT NULL,
	snapshot bool DEFAULT NULL,
	shared_connection bool DEFAULT NULL,
	array_nulls text DEFAULT NULL,
	failover bool DEFAULT NULL)
RETURNS int
AS 'MODULE_PATHNAME', 'zerobus_create_stream'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
-- the call's text holds the secret: keep it out of the server log, where
-- the LOG of the slot's creation (or an error) would otherwise copy it
SET log_min_error_statement = panic;

COMMENT ON FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool) IS
'create a stream and its logical replication slot; returns the stream id';

CREATE FUNCTION alter_stream(
	name text,
	publication text DEFAULT NULL,
	endpoint text DEFAULT NULL,
	workspace_url text DEFAULT NULL,
	client_id text DEFAULT NULL,
	client_secret text DEFAULT NULL,
	target_catalog text DEFAULT NULL,
	target_schema text DEFAULT NULL,
	table_map jsonb DEFAULT NULL,
	insecure bool DEFAULT NULL,
	conninfo text DEFAULT NULL,
	batch_max_records int DEFAULT NULL,
	batch_max_bytes int DEFAULT NULL,
	batch_max_delay int DEFAULT NULL,
	max_inflight_bytes int DEFAULT NULL,
	ack_timeout int DEFAULT NULL,
	workspace_id text DEFAULT NULL,
	ca_file text DEFAULT NULL,
	owner regrole DEFAULT NULL,
	schema_policy text DEFAULT NULL,
	shared_connection bool DEFAULT NULL,
	array_nulls text DEFAULT NULL,
	reset text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_alter_stream'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION alter_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, int, int, int, int, int, text, text, regrole, text, bool, text, text[]) IS
'change the given settings of a stream, and put those named in reset back to their defaults; its worker restarts with them';

CREATE FUNCTION drop_stream(name text, if_exists bool DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_drop_stream'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION drop_stream(text, bool) IS
'stop a stream''s worker and drop the stream and its replication slot';

CREATE FUNCTION pause_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_pause_stream'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION pause_stream(text) IS
'stop a stream''s worker until zerobus.resume_stream(); the slot keeps the WAL';

CREATE FUNCTION resume_stream(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_resume_stream'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION resume_stream(text) IS
'restart a stream paused by the user or by an error';

CREATE FUNCTION recover_stream(name text, force bool DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_recover_stream'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION recover_stream(text, bool) IS
'replace a stream''s lost replication slot with a new one and snapshot every table again';

CREATE FUNCTION stream_credentials(name text,
	OUT client_id text, OUT client_secret text, OUT conninfo text)
RETURNS record
AS 'MODULE_PATHNAME', 'zerobus_stream_credentials'
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION stream_credentials(text) IS
'the credentials of a stream, for its owner and superusers; the conninfo''s password is redacted';

CREATE FUNCTION stream_shared_state(
	OUT stream_id int, OUT pid int, OUT state text,
	OUT received_lsn pg_lsn, OUT acked_lsn pg_lsn, OUT confirmed_lsn pg_lsn,
	OUT acked_commit_time timestamptz,
	OUT oldest_unacked_commit_time timestamptz,
	OUT last_ack_time timestamptz,
	OUT records_sent int8, OUT bytes_sent int8,
	OUT records_acked int8, OUT bytes_acked int8, OUT reconnects int8,
	OUT last_error text, OUT last_error_time timestamptz,
	OUT started_at timestamptz, OUT truncates int8, OUT stream_reopens int8,
	OUT array_nulls int8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zerobus_stream_shared_state'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION stream_shared_state() IS
'the live state of the stream workers, from shared memory; last_error for the stream''s owner and superusers only';

CREATE VIEW stat_streams AS
SELECT s.name,
	CASE WHEN s.paused_reason IS NOT NULL THEN 'failed'
		WHEN NOT s.enabled THEN 'paused'
		ELSE coalesce(w.state, 'stopped') END AS state,
	CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE')
		THEN coalesce(w.last_error, s.paused_reason) END AS last_error,
	coalesce(w.last_error_time, s.paused_at) AS last_error_time,
	w.pid,
	r.confirmed_flush_lsn AS confirmed_lsn,
	w.acked_lsn,
	pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
							   r.confirmed_flush_lsn)::int8 AS lag_bytes,
	coalesce(extract(epoch FROM pg_catalog.clock_timestamp() -
					 w.oldest_unacked_commit_time), 0)::float8 AS lag_seconds,
	coalesce(w.records_sent, 0) AS records_sent,
	coalesce(w.bytes_sent, 0) AS bytes_sent,
	coalesce(w.records_acked, 0) AS records_acked,
	coalesce(w.bytes_acked, 0) AS bytes_acked,
	coalesce(w.reconnects, 0) AS reconnects,
	coalesce(w.stream_reopens, 0) AS stream_reopens,
	coalesce(w.truncates, 0) AS truncates,
	coalesce(w.array_nulls, 0) AS array_nulls,
	w.last_ack_time,
	CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE')
		THEN s.paused_reason END AS paused_reason,
	s.slot_name,
	r.active AS slot_active,
	r.wal_status,
	coalesce(t.snapshot_state, 'none') AS snapshot_state,
	coalesce(t.snapshot_rows, 0) AS snapshot_rows,
	t.snapshot_rows_estimated,
	t.schema_notice,
	t.paused_tables
FROM streams s
	LEFT JOIN stream_shared_state() w ON w.stream_id = s.id
	LEFT JOIN pg_catalog.pg_replication_slots r ON r.slot_name = s.slot_name
	LEFT JOIN LATERAL (
		SELECT CASE WHEN bool_or(st.snapshot_state = 'running') THEN 'running'
				WHEN bool_or(st.snapshot_state = 'pending') THEN 'pending'
				WHEN bool_or(st.snapshot_state = 'done') THEN 'done' END
				AS snapshot_state,
			sum(st.snapshot_rows)::int8 AS snapshot_rows,
			sum(st.snapshot_rows_estimated)
				FILTER (WHERE st.snapshot_state <> 'skipped')::int8
				AS snapshot_rows_estimated,
			string_agg(st.schema_notice, '; ' ORDER BY st.schema_name, st.table_name)
				AS schema_notice,
			coalesce(array_agg(pg_catalog.quote_ident(st.schema_name) || '.' ||
							   pg_catalog.quote_ident(st.table_name)
							   ORDER BY st.schema_name, st.table_name)
					 FILTER (WHERE st.paused_reason IS NOT NULL),
					 '{}')::text[] AS paused_tables
		FROM stream_tables st WHERE st.stream_id = s.id) t ON true;

COMMENT ON VIEW stat_streams IS 'one row per stream: its state, positions, lag and counters; last_error and paused_reason for the stream''s owner and superusers only';

GRANT SELECT ON stat_streams TO PUBLIC;

-- Initial snapshots, one row per table of a stream.
CREATE VIEW stat_snapshots AS
SELECT s.name AS stream,
	pg_catalog.quote_ident(st.schema_name) || '.' ||
		pg_catalog.quote_ident(st.table_name) AS source_table,
	st.snapshot_state AS state,
	st.snapshot_rows AS rows,
	st.snapshot_rows_estimated AS rows_estimated,
	CASE WHEN st.snapshot_state = 'done' THEN 100
		WHEN st.snapshot_rows_estimated > 0
		THEN least(99, round(100.0 * st.snapshot_rows /
							  st.snapshot_rows_estimated, 1)) END::numeric
		AS percent,
	CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE')
		THEN st.snapshot_key END AS last_key,
	st.snapshot_lsn AS last_lsn,
	st.snapshot_started_at AS started_at,
	st.snapshot_finished_at AS finished_at,
	CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE')
		THEN st.paused_reason END AS paused_reason,
	st.paused_at
FROM streams s JOIN stream_tables st ON st.stream_id = s.id;

COMMENT ON VIEW stat_snapshots IS
'one row per table of a stream: the progress of its initial snapshot, and why its target is paused';

GRANT SELECT ON stat_snapshots TO PUBLIC;

CREATE FUNCTION snapshot_table(stream text, source regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'zerobus_snapshot_table'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION snapshot_table(text, regclass) IS
'send the rows of one table of a stream again, from a new snapshot';

REVOKE ALL ON FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Target tables created and altered by zerobus (create_stream's
-- create_targets, schema_policy evolve): the stream's warehouse and choice,
-- the record of the SQL statements run in Databricks, and create_stream
-- with the two new arguments.
-- ---------------------------------------------------------------------

ALTER TABLE streams ADD COLUMN warehouse_id text;
ALTER TABLE streams ADD COLUMN create_targets bool NOT NULL DEFAULT false;
COMMENT ON COLUMN streams.warehouse_id IS
'the Databricks SQL warehouse that runs the statements creating the target tables';
COMMENT ON COLUMN streams.create_targets IS
'create_stream (and resume_stream, for the tables it paused) creates the missing target tables';
GRANT SELECT (warehouse_id, create_targets) ON streams TO PUBLIC;

-- schema_policy evolve: the worker alters the target through the warehouse
ALTER TABLE streams DROP CONSTRAINT streams_schema_policy_check;
ALTER TABLE streams ADD CONSTRAINT streams_schema_policy_check
	CHECK (schema_policy IN ('pause', 'drop_missing_columns', 'evolve'));

-- Every SQL statement run in Databricks for a stream.  The error may quote
-- the warehouse's words: the view shows it to the stream's owner and
-- superusers only.
CREATE TABLE statement_log (
	id bigserial PRIMARY KEY,
	stream_id int NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
	relid oid NOT NULL,
	target_table text NOT NULL,
	statement_id text,
	statement text NOT NULL,
	state text NOT NULL,
	error text,
	started_at timestamptz NOT NULL,
	finished_at timestamptz NOT NULL
);

COMMENT ON TABLE statement_log IS
'the SQL statements zerobus ran in Databricks; read it through zerobus.statements';
COMMENT ON COLUMN statement_log.statement_id IS
'the id the warehouse gave the statement; NULL when it never answered';
COMMENT ON COLUMN statement_log.state IS
'SUCCEEDED or CLOSED; FAILED or CANCELED (as the warehouse said), TIMED OUT (canceled after zerobus.statement_timeout), ERROR (not run: HTTP or network)';

REVOKE ALL ON statement_log FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('statement_log', '');
SELECT pg_catalog.pg_extension_config_dump('statement_log_id_seq', '');

CREATE VIEW statements AS
SELECT s.name AS stream,
	l.relid::pg_catalog.regclass AS source,
	l.target_table,
	l.started_at,
	l.finished_at,
	l.statement_id,
	l.state,
	l.statement,
	CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN l.error END AS error
FROM statement_log l
	JOIN streams s ON s.id = l.stream_id;

COMMENT ON VIEW statements IS
'the SQL statements zerobus ran in Databricks for each stream (which table, when, the SQL, the outcome); error for the stream''s owner and superusers only';

GRANT SELECT ON statements TO PUBLIC;

DROP FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool);

CREATE FUNCTION create_stream(
	name text,
	publication text,
	endpoint text,
	workspace_url text,
	client_id text,
	client_secret text,
	target_catalog text,
	target_schema text DEFAULT NULL,
	table_map jsonb DEFAULT '{}',
	insecure bool DEFAULT false,
	conninfo text DEFAULT NULL,
	enabled bool DEFAULT true,
	batch_max_records int DEFAULT NULL,
	batch_max_bytes int DEFAULT NULL,
	batch_max_delay int DEFAULT NULL,
	max_inflight_bytes int DEFAULT NULL,
	ack_timeout int DEFAULT NULL,
	workspace_id text DEFAULT NULL,
	ca_file text DEFAULT NULL,
	owner regrole DEFAULT NULL,
	schema_policy text DEFAULT NULL,
	snapshot bool DEFAULT NULL,
	shared_connection bool DEFAULT NULL,
	array_nulls text DEFAULT NULL,
	failover bool DEFAULT NULL,
	warehouse_id text DEFAULT NULL,
	create_targets bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'zerobus_create_stream'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
-- the call's text holds the secret: keep it out of the server log, where
-- the LOG of the slot's creation (or an error) would otherwise copy it
SET log_min_error_statement = panic;

COMMENT ON FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool, text, bool) IS
'create a stream and its logical replication slot (and, with create_targets, its missing target tables in Databricks); returns the stream id';

REVOKE ALL ON FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool, text, bool) FROM PUBLIC;
