-- Replica identities: what UPDATE and DELETE records carry.
SET client_min_messages = warning;
CREATE TABLE ri_default (id int PRIMARY KEY, a text, b int);
CREATE TABLE ri_full (id int, a text, b int);
ALTER TABLE ri_full REPLICA IDENTITY FULL;
CREATE TABLE ri_index (id int NOT NULL, code text NOT NULL, a text);
CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;
CREATE TABLE ri_nothing (id int PRIMARY KEY, a text);
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE ri_nothing_ins (id int, a text);
ALTER TABLE ri_nothing_ins REPLICA IDENTITY NOTHING;
CREATE PUBLICATION ri_pub FOR TABLE ri_default, ri_full, ri_index, ri_nothing;
CREATE PUBLICATION ri_pub_ins FOR TABLE ri_nothing_ins WITH (publish = 'insert');
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('ri_slot', 'zerobus');

-- DEFAULT: the old key only when it changes; deletes carry the key
INSERT INTO ri_default VALUES (1, 'x', 1), (2, 'y', 2);
UPDATE ri_default SET b = 10 WHERE id = 1;
UPDATE ri_default SET id = 20 WHERE id = 2;
DELETE FROM ri_default WHERE id = 1;
-- FULL: every update has a preimage, deletes carry the whole row
INSERT INTO ri_full VALUES (1, 'x', 1);
UPDATE ri_full SET b = 10;
DELETE FROM ri_full;
-- INDEX: the key is the index's columns
INSERT INTO ri_index VALUES (1, 'c1', 'x');
UPDATE ri_index SET a = 'y';
UPDATE ri_index SET code = 'c2';
DELETE FROM ri_index;
-- NOTHING: PostgreSQL refuses updates and deletes of a table published for them
INSERT INTO ri_nothing VALUES (1, 'x');
UPDATE ri_nothing SET a = 'y';
DELETE FROM ri_nothing;
-- ... but allows them when only inserts are published; nothing is sent for them
INSERT INTO ri_nothing_ins VALUES (1, 'x');
UPDATE ri_nothing_ins SET a = 'y';
DELETE FROM ri_nothing_ins;

SELECT data FROM pg_logical_slot_get_changes('ri_slot', NULL, NULL,
	'publication_names', 'ri_pub,ri_pub_ins', 'format', 'text', 'include_volatile', 'off');

-- the Relation message carries the identity and its key columns
INSERT INTO ri_default VALUES (3, 'z', 3);
INSERT INTO ri_full VALUES (3, 'z', 3);
INSERT INTO ri_index VALUES (3, 'c3', 'z');
INSERT INTO ri_nothing VALUES (3, 'z');
SELECT data::jsonb ->> 'table' AS tab, data::jsonb ->> 'replica_identity' AS ri,
	jsonb_path_query_array(data::jsonb, '$.columns[*] ? (@.is_key == true).name') AS keys
FROM pg_logical_slot_get_changes('ri_slot', NULL, NULL,
	'publication_names', 'ri_pub', 'format', 'json', 'include_volatile', 'off')
WHERE data::jsonb ->> 'action' = 'R';

SELECT pg_drop_replication_slot('ri_slot');
DROP PUBLICATION ri_pub, ri_pub_ins;
DROP TABLE ri_default, ri_full, ri_index, ri_nothing, ri_nothing_ins;
