-- Unchanged TOAST values are never faked: they are left out of the record
-- and named in _unchanged_columns; changed ones are sent in full.
SET client_min_messages = warning;
CREATE TABLE toast_t (id int PRIMARY KEY, big text, small int, other text);
ALTER TABLE toast_t ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE toast_t ALTER COLUMN other SET STORAGE EXTERNAL;
CREATE PUBLICATION toast_pub FOR TABLE toast_t;
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('toast_slot', 'zerobus');

-- a value big enough to be stored out of line (above 2kB, uncompressed)
INSERT INTO toast_t VALUES (1, repeat('a', 3000), 1, repeat('o', 3000));
-- big and other unchanged: both absent from the postimage
UPDATE toast_t SET small = 2;
-- big changed: sent in full; other still unchanged
UPDATE toast_t SET big = repeat('b', 3000);
DELETE FROM toast_t;

SELECT r ->> '_change_type' AS change, r -> '_unchanged_columns' AS unchanged,
	length(r ->> 'big') AS big_len, length(r ->> 'other') AS other_len,
	r ->> 'small' AS small
FROM (SELECT data::jsonb -> 'record' AS r
	FROM pg_logical_slot_get_changes('toast_slot', NULL, NULL,
		'publication_names', 'toast_pub', 'format', 'json', 'include_volatile', 'off')
	WHERE data::jsonb ? 'record') s;

SELECT pg_drop_replication_slot('toast_slot');
DROP PUBLICATION toast_pub;
DROP TABLE toast_t;
