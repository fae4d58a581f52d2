-- Table selection by publications, as pgoutput does it in PostgreSQL 15.
SET client_min_messages = warning;
CREATE SCHEMA pub_s;
CREATE TABLE pub_t1 (id int PRIMARY KEY, a text, b int);
CREATE TABLE pub_t2 (id int PRIMARY KEY, a text);
CREATE TABLE pub_s.t3 (id int PRIMARY KEY, a text);
CREATE TABLE pub_other (id int PRIMARY KEY);
-- row filters on updates and deletes may only use replica identity columns
CREATE TABLE pub_rf (id int PRIMARY KEY, a text, b int);
ALTER TABLE pub_rf REPLICA IDENTITY FULL;
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('pub_slot', 'zerobus');

-- FOR TABLE, TABLES IN SCHEMA, FOR ALL TABLES
SET client_min_messages = warning;
CREATE PUBLICATION pub_table FOR TABLE pub_t1;
CREATE PUBLICATION pub_schema FOR TABLES IN SCHEMA pub_s;
CREATE PUBLICATION pub_all FOR ALL TABLES;
RESET client_min_messages;
INSERT INTO pub_t1 VALUES (1, 'a', 1);
INSERT INTO pub_t2 VALUES (1, 'a');
INSERT INTO pub_s.t3 VALUES (1, 'a');
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_table', 'format', 'text', 'include_volatile', 'off');
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_schema', 'format', 'text', 'include_volatile', 'off');
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_table,pub_schema', 'format', 'text', 'include_volatile', 'off');
SELECT data FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_all', 'format', 'text', 'include_volatile', 'off');
DROP PUBLICATION pub_all, pub_schema;

-- publish flags
SET client_min_messages = warning;
CREATE PUBLICATION pub_ins FOR TABLE pub_t2 WITH (publish = 'insert');
CREATE PUBLICATION pub_upd_trunc FOR TABLE pub_t2 WITH (publish = 'update, truncate');
RESET client_min_messages;
INSERT INTO pub_t2 VALUES (2, 'b');
UPDATE pub_t2 SET a = 'c' WHERE id = 2;
DELETE FROM pub_t2 WHERE id = 2;
TRUNCATE pub_t2;
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_ins', 'format', 'text', 'include_volatile', 'off');
SELECT data FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_upd_trunc', 'format', 'text', 'include_volatile', 'off');
DROP PUBLICATION pub_ins, pub_upd_trunc;

-- row filters, with UPDATE turned into INSERT or DELETE when the row
-- enters or leaves the filter
SET client_min_messages = warning;
CREATE PUBLICATION pub_filter FOR TABLE pub_rf WHERE (b > 10);
RESET client_min_messages;
INSERT INTO pub_rf VALUES (2, 'low', 5), (3, 'high', 50);
UPDATE pub_rf SET b = 6 WHERE id = 2;	-- out -> out: nothing
UPDATE pub_rf SET b = 60 WHERE id = 2;	-- out -> in: INSERT
UPDATE pub_rf SET b = 70 WHERE id = 2;	-- in -> in: UPDATE
UPDATE pub_rf SET b = 7 WHERE id = 3;	-- in -> out: DELETE
DELETE FROM pub_rf WHERE id = 2;	-- in: DELETE
DELETE FROM pub_rf WHERE id = 3;	-- out: nothing
SELECT data FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_filter', 'format', 'text', 'include_volatile', 'off');
-- two publications: filters are OR'ed, and no filter wins
SET client_min_messages = warning;
CREATE PUBLICATION pub_filter2 FOR TABLE pub_rf WHERE (a = 'special');
CREATE PUBLICATION pub_all_rf FOR TABLE pub_rf;
RESET client_min_messages;
INSERT INTO pub_rf VALUES (4, 'special', 1), (5, 'plain', 1), (6, 'plain', 99);
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_filter,pub_filter2', 'format', 'text', 'include_volatile', 'off');
SELECT count(*) AS inserts FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_filter,pub_all_rf', 'format', 'json', 'include_volatile', 'off')
WHERE data::jsonb ->> 'action' = 'I';
DROP PUBLICATION pub_filter, pub_filter2, pub_all_rf;

-- column lists: only the listed columns, in the record and the Relation
SET client_min_messages = warning;
CREATE PUBLICATION pub_cols FOR TABLE pub_t1 (id, b);
RESET client_min_messages;
INSERT INTO pub_t1 VALUES (7, 'hidden', 7);
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_cols', 'format', 'json', 'include_volatile', 'off');
-- different column lists for one table cannot be combined
\set VERBOSITY terse
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_cols,pub_table', 'format', 'text', 'include_volatile', 'off');
\set VERBOSITY default
SELECT count(*) > 0 AS consumed FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_cols', 'format', 'text');

-- a publication altered mid-stream takes effect at its position in the WAL
INSERT INTO pub_t2 VALUES (10, 'before add');
ALTER PUBLICATION pub_cols ADD TABLE pub_t2;
INSERT INTO pub_t2 VALUES (11, 'after add');
ALTER PUBLICATION pub_cols SET (publish = 'insert, delete');
UPDATE pub_t2 SET a = 'not published' WHERE id = 11;
DELETE FROM pub_t2 WHERE id = 11;
ALTER PUBLICATION pub_cols DROP TABLE pub_t2;
INSERT INTO pub_t2 VALUES (12, 'after drop');
SELECT data FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_cols', 'format', 'text', 'include_volatile', 'off');
DROP PUBLICATION pub_cols;

-- partitions, without and with publish_via_partition_root
SET client_min_messages = warning;
CREATE TABLE pub_parent (id int, region text, v text, PRIMARY KEY (id, region))
	PARTITION BY LIST (region);
CREATE TABLE pub_part_eu PARTITION OF pub_parent FOR VALUES IN ('eu');
-- a partition with another column order needs its tuples converted
CREATE TABLE pub_part_us (v text, region text NOT NULL, id int NOT NULL);
ALTER TABLE pub_parent ATTACH PARTITION pub_part_us FOR VALUES IN ('us');
CREATE PUBLICATION pub_leaf FOR TABLE pub_parent;
CREATE PUBLICATION pub_root FOR TABLE pub_parent WITH (publish_via_partition_root = true);
RESET client_min_messages;
INSERT INTO pub_parent VALUES (1, 'eu', 'x'), (2, 'us', 'y');
UPDATE pub_parent SET v = 'z' WHERE id = 2;
TRUNCATE pub_parent;
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_leaf', 'format', 'text', 'include_volatile', 'off');
SELECT data FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_root', 'format', 'text', 'include_volatile', 'off');

-- the extension's own tables are never published, not even by FOR ALL
-- TABLES or TABLES IN SCHEMA zerobus: a stream's bookkeeping (streams,
-- stream_secrets, stream_tables rows written by create_stream, by the
-- UPDATE standing in for the worker's snapshot progress and by
-- drop_stream) does not come out, pub_t1's insert does
SET client_min_messages = warning;
CREATE PUBLICATION pub_every FOR ALL TABLES;
CREATE PUBLICATION pub_zerobus FOR TABLES IN SCHEMA zerobus;
SET client_min_messages = error;	-- not the launcher's database: a warning
SELECT zerobus.create_stream('pub_own', 'pub_every', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', enabled => false) > 0;
RESET client_min_messages;
-- ... nor are they in a snapshot's table list
SELECT schema_name, table_name, snapshot_state FROM zerobus.stream_tables
	ORDER BY 1, 2;
UPDATE zerobus.stream_tables SET snapshot_state = 'done', snapshot_rows = 1;
INSERT INTO pub_t1 VALUES (3, 'c', 3);
SELECT zerobus.drop_stream('pub_own');
SELECT data FROM pg_logical_slot_peek_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_zerobus', 'format', 'text', 'include_volatile', 'off');
SELECT data FROM pg_logical_slot_get_changes('pub_slot', NULL, NULL,
	'publication_names', 'pub_every', 'format', 'text', 'include_volatile', 'off');
DROP PUBLICATION pub_every, pub_zerobus;

SELECT pg_drop_replication_slot('pub_slot');
DROP PUBLICATION pub_table, pub_leaf, pub_root;
DROP TABLE pub_t1, pub_t2, pub_s.t3, pub_other, pub_rf, pub_parent;
DROP SCHEMA pub_s;
