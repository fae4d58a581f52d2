--
-- types: every PostgreSQL type mapping, decoded through the plugin and
-- rendered from the protobuf bytes that would be sent to Zerobus (dates as
-- days since 1970, timestamps as microseconds since 1970 UTC).
--
-- The rendering must not depend on session settings: decode under unusual
-- ones.
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SET TimeZone = 'Asia/Kolkata';
SET extra_float_digits = -3;
-- one row per line, without padding
\pset format unaligned

CREATE TYPE mood AS ENUM ('sad', 'happy', 'très bien');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE DOMAIN money2 AS numeric(10,2);
CREATE TYPE inner_t AS (x int4, tags text[]);
CREATE TYPE outer_t AS (name text, "in" inner_t, ins inner_t[], at timestamptz);

CREATE TABLE types (
	id int4 PRIMARY KEY,
	b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
	n numeric(38,10), n_big numeric(40,2), n_any numeric, n_neg numeric(5,-2),
	t text, vc varchar(5), bc char(5), nm name, ch "char",
	by bytea, d date, ts timestamp, tstz timestamptz,
	tm time, tmtz timetz, iv interval, u uuid, j json, jb jsonb,
	m mood, p posint, mo money2,
	ia int4[], ia2 int4[], fa float8[], ta text[], ba bool[], da date[],
	ja jsonb[], ma mood[],
	o outer_t, oa outer_t[],
	pt point, ip inet, rng int4range, tsr tstzrange
);

CREATE PUBLICATION types_pub FOR TABLE types;
SELECT 'init' FROM pg_create_logical_replication_slot('types_slot', 'zerobus');

-- ordinary values, non-ASCII text, multi-dimensional arrays, nested composites
INSERT INTO types VALUES (1,
	true, 12, 123, 1234567890123, 1.5, 3.141592653589793,
	'1234567890123456789012345678.0123456789', 12.5, '0.000000000000000000001', 12300,
	'héllo ☃ wörld', 'abc', 'ab', 'nm', 'c',
	'\x00ff10', '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.5+05:30',
	'12:34:56.789', '23:59:59.5-03:30', '1 year 2 mons 3 days 04:05:06.5', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
	'{"b": 1, "a": [true, null]}', '{"b": 1, "a": [true, null]}',
	'très bien', 7, 12.30,
	'{1,2,-3}', '{{1,2},{3,4}}', '{1.5,-0.25}', '{"a","b c","ünï"}', '{t,f}', '{2000-01-01,1970-01-02}',
	ARRAY['{"k": 1}'::jsonb, '[]'], '{sad,happy}',
	ROW('outer', ROW(1, '{x,y}'), ARRAY[ROW(2, '{z}')::inner_t, ROW(3, NULL)::inner_t], '2000-01-01 00:00:00+00'),
	ARRAY[ROW('o1', NULL, NULL, NULL)::outer_t],
	'(1.5,-2)', '192.168.0.1/24', '[1,10)', '[2024-01-01 00:00+00,2024-01-02 00:00+00)');

-- NULLs everywhere, empty arrays and an empty composite
INSERT INTO types (id, ia, ta, o) VALUES (2, '{}', '{}', ROW(NULL, NULL, NULL, NULL));

-- extreme and special values
INSERT INTO types (id, b, i2, i4, i8, f4, f8, n, n_any, t, bc, by, d, ts, tstz, tm, tmtz, iv)
VALUES (3, false, -32768, -2147483648, -9223372036854775808, 'NaN', 'Infinity',
	'NaN', 'Infinity', '', '', '', '-infinity', 'infinity', '-infinity',
	'24:00:00', '00:00:00+15:59', '-1 year -2 mons +3 days -04:05:06.000001'),
(4, true, 32767, 2147483647, 9223372036854775807, '-Infinity', '-0',
	'-0.0000000001', '-Infinity', E'quote'' "dq" \\ tab\t nl\n', 'x', '\x', '4713-01-01 BC', '294246-12-31 23:59:59.999999',
	'1970-01-01 00:00:00+00', '00:00:00', '12:00:00+00', '0'),
(5, NULL, 0, 0, 0, 1e-45, 1e-320,
	0, '-0', NULL, NULL, NULL, '5874897-12-31', '1969-12-31 23:59:59.999999', '1999-12-31 23:59:59.999999-08',
	'00:00:00.000001', '01:02:03+01:02:03', '1 day -00:00:00.5');

SELECT data FROM pg_logical_slot_get_changes('types_slot', NULL, NULL,
	'publication_names', 'types_pub', 'format', 'text', 'include_volatile', 'off');

-- the same changes in the json form
UPDATE types SET i4 = i4 WHERE id IN (1, 3, 4);
SELECT data FROM pg_logical_slot_get_changes('types_slot', NULL, NULL,
	'publication_names', 'types_pub', 'format', 'json', 'include_volatile', 'off');

-- decoding left the session's settings alone
SHOW DateStyle;
SHOW TimeZone;
SHOW extra_float_digits;

-- a timestamp beyond int64 microseconds since 1970 cannot be sent: the
-- decoding fails, naming the column (the error context shows an LSN, which
-- varies)
\set SHOW_CONTEXT never
INSERT INTO types (id, ts) VALUES (8, '294247-01-11 00:00:00');
SELECT data FROM pg_logical_slot_get_changes('types_slot', NULL, NULL,
	'publication_names', 'types_pub', 'format', 'text', 'include_volatile', 'off');
SELECT 'skip' FROM pg_replication_slot_advance('types_slot', pg_current_wal_lsn());

\set SHOW_CONTEXT errors

-- a domain over an array inside an array cannot be a repeated field: text
CREATE DOMAIN intpair AS int4[];
CREATE TABLE nested_arrays (id int4 PRIMARY KEY, pairs intpair[], pair intpair);
ALTER PUBLICATION types_pub ADD TABLE nested_arrays;
INSERT INTO nested_arrays VALUES (1, '{"{1,2}","{3}"}', '{4,5}');
SELECT data FROM pg_logical_slot_get_changes('types_slot', NULL, NULL,
	'publication_names', 'types_pub', 'format', 'text', 'include_volatile', 'off');

SELECT 'drop' FROM pg_drop_replication_slot('types_slot');
DROP PUBLICATION types_pub;
DROP TABLE types, nested_arrays;
DROP TYPE outer_t, inner_t, mood;
DROP DOMAIN posint, money2, intpair;
