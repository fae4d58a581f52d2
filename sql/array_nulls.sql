--
-- array_nulls: a protobuf repeated field cannot hold a NULL element, nor
-- tell a NULL array from an empty one.  Such arrays are sent without their
-- NULL elements and named in the record's _array_nulls column with the
-- 1-based positions of the NULL elements in the flattened array (none for
-- a NULL array), at any depth: "col", "col.member", "col[2].member".
--
\pset format unaligned

CREATE TYPE tagged AS (x int4, tags text[]);
CREATE TABLE arr (
	id int4 PRIMARY KEY,
	ia int4[], ta text[], md int4[], o tagged, oa tagged[], note text
);
CREATE TABLE plain (id int4 PRIMARY KEY, t text);
CREATE PUBLICATION arr_pub FOR TABLE arr, plain;
SELECT 'init' FROM pg_create_logical_replication_slot('arr_slot', 'zerobus');

-- the column is in the target only for tables with arrays
SELECT zerobus.target_ddl('arr', 'main.s.arr');
SELECT zerobus.target_ddl('plain', 'main.s.plain');

INSERT INTO arr VALUES
	-- NULL elements first, last, everywhere; a multidimensional array and
	-- one with another lower bound count positions in the flattened order
	(1, '{NULL,2,NULL}', '{a,NULL}', '{{1,NULL},{NULL,4}}', NULL, NULL, 'nulls'),
	(2, '{NULL,NULL}', '{NULL}', '[0:2]={NULL,1,2}', NULL, NULL, 'all null'),
	-- empty arrays are not NULL: not named
	(3, '{}', '{}', '{}', ROW(1, '{}'), '{}', 'empty'),
	-- no array at all: every array column named, with no positions
	(4, NULL, NULL, NULL, NULL, NULL, 'null arrays'),
	-- inside composites and arrays of composites
	(5, '{1}', '{b}', '{1}', ROW(2, '{x,NULL,z}'),
	 ARRAY[ROW(3, NULL), NULL, ROW(4, '{NULL}')]::tagged[], 'nested');
INSERT INTO plain VALUES (1, 'no arrays, no _array_nulls');
SELECT data FROM pg_logical_slot_get_changes('arr_slot', NULL, NULL,
	'publication_names', 'arr_pub', 'format', 'text', 'include_volatile', 'off');

-- the postimage carries the whole row; a delete carries the key alone, so
-- its absent arrays are not named, unless the replica identity is FULL
UPDATE arr SET note = 'updated' WHERE id = 1;
DELETE FROM arr WHERE id = 4;
ALTER TABLE arr REPLICA IDENTITY FULL;
DELETE FROM arr WHERE id = 2;
SELECT data FROM pg_logical_slot_get_changes('arr_slot', NULL, NULL,
	'publication_names', 'arr_pub', 'format', 'text', 'include_volatile', 'off');

-- the same in the json form
INSERT INTO arr (id, ia) VALUES (6, '{7,NULL}');
SELECT data FROM pg_logical_slot_get_changes('arr_slot', NULL, NULL,
	'publication_names', 'arr_pub', 'format', 'json', 'include_volatile', 'off')
WHERE data LIKE '{"action":"I"%';

-- a source column cannot take the metadata column's name
CREATE TABLE clash (id int4, _array_nulls text);
SELECT zerobus.target_ddl('clash', 'main.s.clash');

SELECT 'drop' FROM pg_drop_replication_slot('arr_slot');
DROP PUBLICATION arr_pub;
DROP TABLE arr, plain, clash;
DROP TYPE tagged;
