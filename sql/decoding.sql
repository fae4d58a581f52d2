-- Every change kind through the zerobus output plugin, in text and json.
SET client_min_messages = warning;
CREATE TABLE dec_a (id int PRIMARY KEY, name text, qty int);
CREATE TABLE dec_b (k bigint PRIMARY KEY, v text);
CREATE TABLE dec_unpublished (id int PRIMARY KEY);
CREATE PUBLICATION dec_pub FOR TABLE dec_a, dec_b;
RESET client_min_messages;

SELECT 'init' FROM pg_create_logical_replication_slot('dec_slot', 'zerobus');

-- insert, update (key unchanged, then key changed), delete
INSERT INTO dec_a VALUES (1, 'one', 10), (2, 'two', 20);
UPDATE dec_a SET qty = 11 WHERE id = 1;
UPDATE dec_a SET id = 3 WHERE id = 2;
DELETE FROM dec_a WHERE id = 1;

-- a multi-table transaction: one Begin/Commit, _seq counts across tables
BEGIN;
INSERT INTO dec_a VALUES (4, 'four', 40);
INSERT INTO dec_b VALUES (100, 'hundred');
UPDATE dec_b SET v = 'cent' WHERE k = 100;
COMMIT;

-- transactions without published changes produce nothing
INSERT INTO dec_unpublished VALUES (1);
BEGIN;
INSERT INTO dec_a VALUES (5, 'rolled back', 0);
ROLLBACK;

SELECT data FROM pg_logical_slot_get_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'text', 'include_volatile', 'false');

-- the same kinds in json
INSERT INTO dec_b VALUES (200, 'two hundred');
UPDATE dec_b SET k = 201 WHERE k = 200;
DELETE FROM dec_b WHERE k = 201;
TRUNCATE dec_a;

SELECT data FROM pg_logical_slot_get_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'json', 'include_volatile', 'false');

-- logical messages: only with messages=true; transactional ones open their
-- transaction, non-transactional ones stand alone
SELECT 'msg' FROM pg_logical_emit_message(false, 'zb', 'outside');
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'zb', 'inside');
COMMIT;
SELECT data FROM pg_logical_slot_peek_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'text', 'include_volatile', 'false');
SELECT data FROM pg_logical_slot_get_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'json', 'include_volatile', 'false',
	'messages', 'true');

-- volatile fields are there by default
INSERT INTO dec_b VALUES (300, 'x');
SELECT data ~ '^BEGIN xid [0-9]+ final_lsn [0-9A-F]+/[0-9A-F]+ commit_time ' AS begin_ok
FROM pg_logical_slot_peek_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'text') LIMIT 1;
SELECT data::json ->> 'action' AS action, (data::json ->> 'changes') AS changes,
	data::jsonb ? 'commit_lsn' AS has_lsn, data::jsonb ? 'end_lsn' AS has_end
FROM pg_logical_slot_peek_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'json')
WHERE data::json ->> 'action' = 'C';

-- binary format: one zerobus.output.Message per row; the first byte is the
-- tag of the Message field (0x0a Begin, 0x12 Commit, 0x1a Relation,
-- 0x22 Change, 0x2a Truncate, 0x32 LogicalMessage)
SELECT count(*) FROM pg_logical_slot_get_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'text');
SELECT 'msg' FROM pg_logical_emit_message(false, 'zb', 'bin');
INSERT INTO dec_b VALUES (400, 'y'), (401, 'z');
SELECT get_byte(data, 0) AS tag, length(data) > 2 AS has_body
FROM pg_logical_slot_peek_binary_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'messages', 'true');
-- binary output needs the binary functions
SELECT data FROM pg_logical_slot_peek_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub');
SELECT count(*) FROM pg_logical_slot_get_binary_changes('dec_slot', NULL, NULL,
	'publication_names', 'dec_pub', 'format', 'binary', 'proto_version', '1');

SELECT pg_drop_replication_slot('dec_slot');
DROP PUBLICATION dec_pub;
DROP TABLE dec_a, dec_b, dec_unpublished;
