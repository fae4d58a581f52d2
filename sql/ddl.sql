-- Schema changes mid-stream: a new Relation message precedes the first
-- change made under the new schema.
SET client_min_messages = warning;
CREATE TYPE ddl_pair AS (x int, y text);
CREATE TABLE ddl_t (id int PRIMARY KEY, a text, p ddl_pair);
CREATE PUBLICATION ddl_pub FOR TABLE ddl_t;
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('ddl_slot', 'zerobus');

INSERT INTO ddl_t VALUES (1, 'a', ROW(1, 'one'));
ALTER TABLE ddl_t ADD COLUMN b int;
INSERT INTO ddl_t VALUES (2, 'b', NULL, 2);
ALTER TABLE ddl_t ALTER COLUMN b TYPE bigint;
INSERT INTO ddl_t VALUES (3, 'c', NULL, 3);
ALTER TABLE ddl_t RENAME COLUMN a TO a_renamed;
INSERT INTO ddl_t VALUES (4, 'd', NULL, 4);
ALTER TABLE ddl_t DROP COLUMN b;
INSERT INTO ddl_t VALUES (5, 'e');
ALTER TYPE ddl_pair ADD ATTRIBUTE z bool;
INSERT INTO ddl_t VALUES (6, 'f', ROW(6, 'six', true));
ALTER TABLE ddl_t RENAME TO ddl_t2;
INSERT INTO ddl_t2 VALUES (7, 'g');
-- DDL that does not change the schema sends no new Relation
CREATE INDEX ON ddl_t2 (a_renamed);
CREATE TABLE ddl_unrelated (id int);
INSERT INTO ddl_t2 VALUES (8, 'h');

SELECT data FROM pg_logical_slot_get_changes('ddl_slot', NULL, NULL,
	'publication_names', 'ddl_pub', 'format', 'text', 'include_volatile', 'off');

SELECT pg_drop_replication_slot('ddl_slot');
DROP PUBLICATION ddl_pub;
DROP TABLE ddl_t2, ddl_unrelated;
DROP TYPE ddl_pair;
