-- Option validation of the zerobus output plugin: every bad option fails
-- with a clear error when decoding starts.
SET client_min_messages = warning;
CREATE TABLE opt_t (id int PRIMARY KEY);
CREATE PUBLICATION opt_pub FOR TABLE opt_t;
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('opt_slot', 'zerobus');

-- publication_names is required
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL, 'format', 'text');
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', '', 'format', 'text');
-- the publications must exist
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub,no_such_pub', 'format', 'text');
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub,"unterminated', 'format', 'text');
-- format
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'xml');
-- booleans
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'text', 'messages', 'maybe');
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'text', 'include_volatile', '2');
-- proto_version
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'text', 'proto_version', '2');
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'text', 'proto_version', 'one');
-- unknown and repeated options
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'text', 'include_xids', 'true');
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'text', 'format', 'json');
-- text and json need the textual functions, binary the binary ones
SELECT data FROM pg_logical_slot_peek_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'binary');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub', 'format', 'json');

-- every option at once, valid; publication names are identifiers
INSERT INTO opt_t VALUES (1);
SELECT data FROM pg_logical_slot_get_changes('opt_slot', NULL, NULL,
	'publication_names', ' OPT_PUB ', 'format', 'text', 'messages', 'off',
	'proto_version', '1', 'include_volatile', 'off');

-- the publications are read as of each change's position in the WAL: a
-- publication that did not exist then (dropped and created again here) is
-- skipped with a warning, not an error, so the slot can move on
SET client_min_messages = warning;
CREATE PUBLICATION opt_pub2 FOR TABLE opt_t;
RESET client_min_messages;
INSERT INTO opt_t VALUES (2);
DROP PUBLICATION opt_pub2;
INSERT INTO opt_t VALUES (3);
SET client_min_messages = warning;
CREATE PUBLICATION opt_pub2 FOR TABLE opt_t;
RESET client_min_messages;
INSERT INTO opt_t VALUES (4);
SELECT data FROM pg_logical_slot_get_changes('opt_slot', NULL, NULL,
	'publication_names', 'opt_pub2', 'format', 'text', 'include_volatile', 'off');

SELECT pg_drop_replication_slot('opt_slot');
DROP PUBLICATION opt_pub, opt_pub2;
DROP TABLE opt_t;
