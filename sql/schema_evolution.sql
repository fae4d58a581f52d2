-- Schema evolution and recovery from the SQL side: target_ddl's ALTER form
-- (from the columns a stream's target accepted to the source table now),
-- the schema_policy setting, and recover_stream.  The launcher serves
-- database "postgres", not this one, so no worker runs: the accepted
-- columns are written here as the worker would write them.
\pset format unaligned
SET client_min_messages = error;
CREATE TABLE se_t (id int PRIMARY KEY, a int4, b text, c text, d int4);
CREATE TABLE se_other (id int PRIMARY KEY, v text, hidden text);
CREATE PUBLICATION se_pub FOR TABLE se_t, se_other (id, v);
SELECT zerobus.create_stream('se', 'se_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', 'cdc',
	table_map => '{"public.se_other": "main.other.se_o"}') > 0 AS created;
RESET client_min_messages;

-- schema_policy: validated, stored, changed
SELECT schema_policy FROM zerobus.streams WHERE name = 'se';
SELECT zerobus.alter_stream('se', schema_policy => 'drop_missing_columns');
SELECT schema_policy FROM zerobus.streams WHERE name = 'se';
SELECT zerobus.alter_stream('se', schema_policy => 'ignore');
SELECT zerobus.alter_stream('se', schema_policy => 'pause');

-- array_nulls: validated, stored, reset
SELECT array_nulls FROM zerobus.streams WHERE name = 'se';
SELECT zerobus.alter_stream('se', array_nulls => 'drop');
SELECT zerobus.alter_stream('se', array_nulls => 'pause');
SELECT array_nulls FROM zerobus.streams WHERE name = 'se';
SELECT zerobus.alter_stream('se', reset => '{array_nulls}');
SELECT array_nulls FROM zerobus.streams WHERE name = 'se';

-- no accepted columns yet: the ALTER form cannot know the target
SELECT zerobus.target_ddl('se_t', stream => 'se', form => 'alter');
-- the CREATE form takes the target name from the stream
SELECT zerobus.target_ddl('se_other', stream => 'se');
-- misuse
SELECT zerobus.target_ddl('se_t');
SELECT zerobus.target_ddl('se_t', 'main.cdc.se_t', form => 'alter');
SELECT zerobus.target_ddl('se_t', 'main.cdc.se_t', form => 'drop');
SELECT zerobus.target_ddl('se_t', stream => 'nosuch', form => 'alter');

-- what the target accepted: id, a, b, c, d as created
INSERT INTO zerobus.stream_tables (stream_id, relid, schema_name, table_name,
	snapshot_state, accepted_columns)
SELECT s.id, 'se_t'::regclass, 'public', 'se_t', 'done',
	'[{"name": "id", "field_number": 1, "delta_type": "INT"},
	  {"name": "a", "field_number": 2, "delta_type": "INT"},
	  {"name": "b", "field_number": 3, "delta_type": "STRING"},
	  {"name": "c", "field_number": 4, "delta_type": "STRING"},
	  {"name": "d", "field_number": 5, "delta_type": "INT"}]'
FROM zerobus.streams s WHERE s.name = 'se'
ON CONFLICT (stream_id, relid) DO UPDATE SET accepted_columns = excluded.accepted_columns;
-- nothing changed: no statement
SELECT zerobus.target_ddl('se_t', stream => 'se', form => 'alter') = '' AS up_to_date;

-- every kind of change at once: a type change (int4 -> int8), a rename, a
-- new column (with a reserved name), a dropped column, and a column
-- dropped and added again under its name with another type
ALTER TABLE se_t ALTER COLUMN a TYPE int8;
ALTER TABLE se_t RENAME COLUMN b TO b2;
ALTER TABLE se_t ADD COLUMN "order" numeric(10,2), ADD COLUMN e bool;
ALTER TABLE se_t DROP COLUMN c;
ALTER TABLE se_t DROP COLUMN d;
ALTER TABLE se_t ADD COLUMN d text;
SELECT zerobus.target_ddl('se_t', stream => 'se', form => 'alter');
-- an explicit target name wins
SELECT zerobus.target_ddl('se_t', 'main.elsewhere.t', 'se', 'alter');

-- the ALTER form only knows columns of the publication's column list
INSERT INTO zerobus.stream_tables (stream_id, relid, schema_name, table_name,
	snapshot_state, accepted_columns)
SELECT s.id, 'se_other'::regclass, 'public', 'se_other', 'done',
	'[{"name": "id", "field_number": 1, "delta_type": "INT"}]'
FROM zerobus.streams s WHERE s.name = 'se'
ON CONFLICT (stream_id, relid) DO UPDATE SET accepted_columns = excluded.accepted_columns;
SELECT zerobus.target_ddl('se_other', stream => 'se', form => 'alter');

-- recover_stream: the slot is not lost
SELECT zerobus.recover_stream('se');
SELECT zerobus.recover_stream('nosuch');
-- forced: a new slot, every table snapshotted again
UPDATE zerobus.streams SET paused_reason = 'lost', enabled = false WHERE name = 'se';
SELECT zerobus.recover_stream('se', force => true);
SELECT enabled, paused_reason IS NULL AS cleared FROM zerobus.streams WHERE name = 'se';
SELECT table_name, snapshot_state, snapshot_key IS NULL AS from_start, snapshot_rows,
	accepted_columns IS NOT NULL AS keeps_accepted
FROM zerobus.stream_tables ORDER BY table_name;
SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'zerobus_se';
-- not after a write in the same transaction
BEGIN;
UPDATE zerobus.streams SET paused_reason = NULL WHERE name = 'se';
SELECT zerobus.recover_stream('se', force => true);
ROLLBACK;
-- the owner only
CREATE ROLE se_other_role;
GRANT USAGE ON SCHEMA zerobus TO se_other_role;
SET ROLE se_other_role;
SELECT zerobus.recover_stream('se', force => true);
RESET ROLE;
REVOKE USAGE ON SCHEMA zerobus FROM se_other_role;
DROP ROLE se_other_role;

SELECT zerobus.drop_stream('se');
DROP PUBLICATION se_pub;
DROP TABLE se_t, se_other;
