-- One big transaction: PostgreSQL spills it to disk (the test
-- configuration sets logical_decoding_work_mem = 64kB) and the plugin's
-- memory stays bounded; every row arrives, in order.
SET client_min_messages = warning;
CREATE TABLE big_t (id int PRIMARY KEY, pad text);
CREATE PUBLICATION big_pub FOR TABLE big_t;
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('big_slot', 'zerobus');

INSERT INTO big_t SELECT g, repeat('x', 20) FROM generate_series(1, 200000) g;

SELECT count(*) FILTER (WHERE data::jsonb ->> 'action' = 'I') AS inserts,
	count(*) FILTER (WHERE data::jsonb ->> 'action' = 'B') AS begins,
	max((data::jsonb ->> 'changes')::int) AS commit_changes
FROM pg_logical_slot_peek_changes('big_slot', NULL, NULL,
	'publication_names', 'big_pub', 'format', 'json', 'include_volatile', 'off');

-- the binary stream of the same transaction
SELECT count(*) AS messages, sum(length(data)) > 200000 * 10 AS plausible_size
FROM pg_logical_slot_get_binary_changes('big_slot', NULL, NULL,
	'publication_names', 'big_pub');

SELECT pg_drop_replication_slot('big_slot');
DROP PUBLICATION big_pub;
DROP TABLE big_t;
