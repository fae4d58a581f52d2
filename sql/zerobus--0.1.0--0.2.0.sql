/* zerobus--0.1.0--0.2.0.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION zerobus UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------
-- Target tables created and altered by zerobus (create_stream's
-- create_targets, schema_policy evolve): the stream's warehouse and choice,
-- the record of the SQL statements run in Databricks, and create_stream
-- with the three new arguments.
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
	create_targets bool DEFAULT false,
	create_mirrors bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'zerobus_create_stream'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
-- the call's text holds the secret: keep it out of the server log, where
-- the LOG of the slot's creation (or an error) would otherwise copy it
SET log_min_error_statement = panic;

COMMENT ON FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool, text, bool, bool) IS
'create a stream and its logical replication slot (and, with create_targets, its missing target tables in Databricks, with create_mirrors their mirror tables too); returns the stream id';

REVOKE ALL ON FUNCTION create_stream(text, text, text, text, text, text, text, text, jsonb, bool, text, bool, int, int, int, int, int, text, text, regrole, text, bool, bool, text, bool, text, bool, bool) FROM PUBLIC;

COMMENT ON FUNCTION target_ddl(regclass, text, text, text) IS
'Databricks SQL for the Delta table that receives the changes of a source table: its CREATE TABLE (form ''create''), the ALTER TABLE statements that bring it from the columns it accepted in a stream to the source table''s columns (form ''alter''), or the AUTO CDC flow and the MERGE that keep a mirror table equal to the source table from it (form ''mirror'')';
