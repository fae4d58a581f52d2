-- The stream API: create, alter, pause, resume, drop, credentials and
-- zerobus.stat_streams, with every misuse.  The launchers serve database
-- "postgres" (zerobus.databases), not this one, so no worker ever starts
-- here and the states shown are deterministic.
CREATE TABLE api_t1 (id int PRIMARY KEY, v text);
CREATE TABLE api_t2 (id int PRIMARY KEY, v text);
CREATE PUBLICATION api_pub FOR TABLE api_t1, api_t2;
CREATE ROLE api_owner;
CREATE ROLE api_other;
GRANT USAGE ON SCHEMA zerobus TO api_owner, api_other;
-- a stream's owner must be able to read its tables (sql/security.sql)
GRANT SELECT ON api_t1, api_t2 TO api_owner;

-- settings
SHOW zerobus.databases;
SHOW zerobus.database;
SHOW zerobus.max_streams;
SHOW zerobus.batch_max_records;
SHOW zerobus.batch_max_bytes;
SHOW zerobus.batch_max_delay;
SHOW zerobus.max_inflight_bytes;
SHOW zerobus.ack_timeout;
SHOW zerobus.restart_backoff_max;
SET zerobus.batch_max_records = 10;

-- misuse
SELECT zerobus.create_stream(NULL, 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('Bad-Name', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream(repeat('n', 56), 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'no_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'ftp://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com/path',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com:99999',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'http://127.0.0.1:5000',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'http://e.example.com',
	'http://e.example.com', 'id', 'secret', 'main', insecure => true);
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'w.example.com', 'id', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', '', 'secret', 'main');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main catalog');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', target_schema => 'a.b');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main',
	table_map => '{"public.missing": "main.x.y"}');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main',
	table_map => '{"api_t1": "main.x.y"}');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main',
	table_map => '{"public.api_t1": "main.x"}');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main',
	table_map => '{"public.api_t1": 1}');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', table_map => '[]');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', batch_max_bytes => 10485760);
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', ack_timeout => 0);
-- creating the targets takes a warehouse, whose id is letters and digits
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', create_targets => true);
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', warehouse_id => 'ab"c',
	create_targets => true);
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', warehouse_id => '');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', schema_policy => 'evolve');
SET output_plugin_libraries = 'pgoutput';
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
RESET output_plugin_libraries;
-- a logical slot cannot be created once the transaction has written
BEGIN;
INSERT INTO api_t1 VALUES (0, 'x');
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
ROLLBACK;
SET ROLE api_owner;
SELECT zerobus.create_stream('s', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
RESET ROLE;
-- nothing was left behind
SELECT count(*) FROM zerobus.streams;
SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'zerobus%';

-- create
SELECT zerobus.create_stream('orders', 'api_pub', 'https://1234.zerobus.us-west-2.cloud.databricks.com',
	'https://dbc-1234.cloud.databricks.com/', 'client-1', 'super-secret-1', 'main',
	table_map => '{"public.API_T1": "main.sales.t_one", "public . \"api_t2\"": "main.sales.t_two"}',
	enabled => false, batch_max_records => 500, owner => 'api_owner') AS id;
SELECT zerobus.create_stream('local', 'api_pub', 'http://127.0.0.1:50051',
	'http://localhost:8080', 'client-2', 'super-secret-2', 'dev', target_schema => 'cdc',
	insecure => true, conninfo => 'host=/tmp password=pw') AS id;
SELECT zerobus.create_stream('orders', 'api_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main');
SELECT name, owner, publication, slot_name, endpoint, workspace_url, target_catalog,
	target_schema, table_map, insecure, batch_max_records, batch_max_bytes, enabled,
	paused_reason, config_version
FROM zerobus.streams ORDER BY id;
SELECT slot_name, plugin, slot_type, database = current_database() AS here
FROM pg_replication_slots ORDER BY slot_name;
SELECT name, state, last_error, pid, confirmed_lsn IS NOT NULL AS has_confirmed_lsn,
	acked_lsn, lag_bytes >= 0 AS lag_bytes_ok, lag_seconds, records_sent, bytes_sent,
	records_acked, bytes_acked, reconnects, last_ack_time, paused_reason, slot_name,
	slot_active, wal_status
FROM zerobus.stat_streams ORDER BY name;

-- secrets: superusers and the stream's owner only
SELECT s.name, c.client_id, c.client_secret, c.conninfo
FROM zerobus.stream_secrets c JOIN zerobus.streams s ON s.id = c.stream_id ORDER BY 1;
SET ROLE api_owner;
SELECT * FROM zerobus.stream_secrets;
SELECT * FROM zerobus.stream_credentials('orders');
SELECT * FROM zerobus.stream_credentials('local');
SELECT count(*) FROM zerobus.streams;
SELECT name, state FROM zerobus.stat_streams ORDER BY name;
RESET ROLE;
SET ROLE api_other;
SELECT * FROM zerobus.stream_credentials('orders');
SELECT zerobus.alter_stream('orders', batch_max_records => 1);
SELECT zerobus.pause_stream('orders');
SELECT zerobus.resume_stream('orders');
SELECT zerobus.drop_stream('orders');
RESET ROLE;

-- alter
SET ROLE api_owner;
SELECT zerobus.alter_stream('orders', client_secret => 'super-secret-3',
	batch_max_delay => 50, target_schema => 'other',
	table_map => '{"public.api_t2": "main.sales.t2"}');
SELECT zerobus.alter_stream('orders', owner => 'api_other');
SELECT client_secret FROM zerobus.stream_credentials('orders');
RESET ROLE;
SELECT zerobus.alter_stream('orders');
SELECT zerobus.alter_stream('local', endpoint => 'http://10.0.0.1:1');
SELECT zerobus.alter_stream('local', insecure => false);
SELECT zerobus.alter_stream('local', batch_max_records => 0);
SELECT zerobus.alter_stream('local', publication => 'no_pub');
SELECT zerobus.alter_stream('nope', batch_max_records => 1);
SELECT name, target_schema, table_map, batch_max_delay, config_version
FROM zerobus.streams ORDER BY id;

-- reset: settings back to their defaults (NULL: the zerobus.* setting)
SELECT zerobus.alter_stream('orders', conninfo => 'host=elsewhere');
SELECT zerobus.alter_stream('orders',
	reset => '{batch_max_delay, target_schema, table_map, conninfo}');
SELECT name, target_schema, table_map, batch_max_delay, config_version
FROM zerobus.streams ORDER BY id;
SELECT conninfo FROM zerobus.stream_credentials('orders');
SELECT zerobus.alter_stream('orders', reset => '{batch_max_dealy}');
SELECT zerobus.alter_stream('orders', reset => '{endpoint}');
SELECT zerobus.alter_stream('orders', reset => '{owner}');
SELECT zerobus.alter_stream('orders', reset => '{enabled}');
SELECT zerobus.alter_stream('orders', reset => ARRAY[NULL]);
SELECT zerobus.alter_stream('orders', batch_max_delay => 5, reset => '{batch_max_delay}');
SELECT zerobus.alter_stream('local', reset => '{insecure}');
SELECT name, insecure, batch_max_delay, config_version FROM zerobus.streams ORDER BY id;

-- pause and resume; an error pauses a stream with its reason
SELECT zerobus.pause_stream('local');
SELECT name, enabled FROM zerobus.streams ORDER BY id;
SELECT name, state FROM zerobus.stat_streams ORDER BY name;
UPDATE zerobus.streams SET paused_reason = 'target table rejected', paused_at = now()
WHERE name = 'orders';
SELECT name, state, last_error, last_error_time IS NOT NULL AS has_time
FROM zerobus.stat_streams ORDER BY name;
SELECT zerobus.resume_stream('orders');
SELECT zerobus.resume_stream('local');
SELECT name, state, last_error, paused_reason FROM zerobus.stat_streams ORDER BY name;

-- drop: the slot goes with the stream, when the transaction commits
BEGIN;
SELECT zerobus.drop_stream('orders');
SELECT name FROM zerobus.streams ORDER BY id;
SELECT slot_name FROM pg_replication_slots ORDER BY slot_name;
ROLLBACK;
SELECT name FROM zerobus.streams ORDER BY id;
SELECT slot_name FROM pg_replication_slots ORDER BY slot_name;
BEGIN;
SAVEPOINT before_drop;
SELECT zerobus.drop_stream('orders');
ROLLBACK TO SAVEPOINT before_drop;
COMMIT;
SELECT name FROM zerobus.streams ORDER BY id;
SELECT slot_name FROM pg_replication_slots ORDER BY slot_name;
SELECT zerobus.drop_stream('orders');
SELECT zerobus.drop_stream('orders');
SELECT zerobus.drop_stream('orders', if_exists => true);
SELECT slot_name FROM pg_replication_slots ORDER BY slot_name;
SELECT zerobus.drop_stream('local');
SELECT count(*) FROM zerobus.streams;
SELECT count(*) FROM zerobus.stream_secrets;
SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'zerobus%';

DROP PUBLICATION api_pub;
DROP TABLE api_t1, api_t2;
REVOKE USAGE ON SCHEMA zerobus FROM api_owner, api_other;
DROP ROLE api_owner;
DROP ROLE api_other;
