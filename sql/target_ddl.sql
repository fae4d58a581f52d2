--
-- target_ddl: the Databricks CREATE TABLE for the Delta table that receives
-- a source table's changes.  Its columns are those of the record descriptor,
-- in the same order: source columns by attribute number, then metadata.
--
\pset format unaligned

CREATE TYPE ddl_mood AS ENUM ('sad', 'happy');
CREATE DOMAIN ddl_posint AS int4 CHECK (VALUE > 0);
CREATE TYPE ddl_inner AS (x int4, "select" text[]);
CREATE TYPE ddl_outer AS (name text, inner_value ddl_inner, at point);

CREATE TABLE ddl_src (
	id int8 PRIMARY KEY,
	b bool, i2 int2, i4 int4, f4 float4, f8 float8,
	n numeric(12,3), n_wide numeric(39,0), n_any numeric,
	t text, vc varchar(10), bc char(3), by bytea,
	d date, ts timestamp, tstz timestamptz, tm time, iv interval,
	u uuid, j json, jb jsonb, m ddl_mood, p ddl_posint,
	ia int4[], ta text[], o ddl_outer, oa ddl_inner[],
	"order" int4, "CamelCase" text,
	pt point, ip inet,
	dropped int4,
	gen int8 GENERATED ALWAYS AS (id * 2) STORED
);
ALTER TABLE ddl_src DROP COLUMN dropped;

SELECT zerobus.target_ddl('ddl_src', 'main.sales.orders');

-- reserved words and leading digits are backquoted in the target name too
SELECT zerobus.target_ddl('ddl_src'::regclass, 'main.default.1st_table');

-- partitioned tables have a target table; the comment quotes odd names
CREATE TABLE "odd'name" (id int4, v text) PARTITION BY RANGE (id);
SELECT zerobus.target_ddl('"odd''name"', 'c.s.t');
DROP TABLE "odd'name";

-- invalid target names
SELECT zerobus.target_ddl('ddl_src', 'orders');
SELECT zerobus.target_ddl('ddl_src', 'sales.orders');
SELECT zerobus.target_ddl('ddl_src', 'main.sales.orders.extra');
SELECT zerobus.target_ddl('ddl_src', 'main..orders');
SELECT zerobus.target_ddl('ddl_src', 'main.sales.');
SELECT zerobus.target_ddl('ddl_src', 'main.sales.ord-ers');
SELECT zerobus.target_ddl('ddl_src', 'main.sales.`orders`');
SELECT zerobus.target_ddl('ddl_src', 'main.sales.tablé');
SELECT zerobus.target_ddl('ddl_src', '');

-- only tables
CREATE VIEW ddl_view AS SELECT 1 AS one;
SELECT zerobus.target_ddl('ddl_view', 'main.sales.v');
DROP VIEW ddl_view;

-- columns that cannot become record fields
CREATE TABLE ddl_meta (id int4, _seq int8);
SELECT zerobus.target_ddl('ddl_meta', 'main.sales.t');
DROP TABLE ddl_meta;
CREATE TABLE ddl_meta (id int4, "_Change_Type" text);
SELECT zerobus.target_ddl('ddl_meta', 'main.sales.t');
DROP TABLE ddl_meta;
CREATE TABLE ddl_badname (id int4, "two words" text);
SELECT zerobus.target_ddl('ddl_badname', 'main.sales.t');
DROP TABLE ddl_badname;
CREATE TABLE ddl_badname (id int4, "été" text);
SELECT zerobus.target_ddl('ddl_badname', 'main.sales.t');
DROP TABLE ddl_badname;
CREATE TYPE ddl_badtype AS ("1st" int4);
CREATE TABLE ddl_badname (id int4, v ddl_badtype);
SELECT zerobus.target_ddl('ddl_badname', 'main.sales.t');
DROP TABLE ddl_badname;
DROP TYPE ddl_badtype;

-- a table without columns still gets the metadata columns
CREATE TABLE ddl_empty ();
SELECT zerobus.target_ddl('ddl_empty', 'main.sales.empty');
DROP TABLE ddl_empty;

-- privileges: the owner or a role with SELECT only
CREATE ROLE ddl_reader;
GRANT USAGE ON SCHEMA zerobus TO ddl_reader;
SET ROLE ddl_reader;
SELECT zerobus.target_ddl('ddl_src', 'main.sales.orders');
RESET ROLE;
GRANT SELECT ON ddl_src TO ddl_reader;
SET ROLE ddl_reader;
SELECT length(zerobus.target_ddl('ddl_src', 'main.sales.orders')) > 0 AS allowed;
RESET ROLE;
REVOKE SELECT ON ddl_src FROM ddl_reader;
REVOKE USAGE ON SCHEMA zerobus FROM ddl_reader;
DROP ROLE ddl_reader;

-- form 'mirror': the SQL that keeps a current-state mirror of a source
-- table from its stream's change table, by the replica identity key
CREATE TABLE ddl_pair (a int4, "order" text, v text, PRIMARY KEY (a, "order"));
CREATE TABLE ddl_full (id int4 PRIMARY KEY, v text);
ALTER TABLE ddl_full REPLICA IDENTITY FULL;
CREATE TABLE ddl_ident (id int4, code text NOT NULL, v text);
CREATE UNIQUE INDEX ddl_ident_code ON ddl_ident (code);
ALTER TABLE ddl_ident REPLICA IDENTITY USING INDEX ddl_ident_code;
CREATE TABLE ddl_nokey (id int4, v text);
CREATE TABLE ddl_fullnokey (id int4, v text);
ALTER TABLE ddl_fullnokey REPLICA IDENTITY FULL;
CREATE TABLE ddl_hidden (id int4 PRIMARY KEY, v text);
SET client_min_messages = error;
CREATE PUBLICATION ddl_pub FOR TABLE ddl_src, ddl_pair, ddl_full, ddl_ident,
	ddl_nokey, ddl_fullnokey;
CREATE PUBLICATION ddl_inserts FOR TABLE ddl_hidden (v) WITH (publish = 'insert');
SELECT zerobus.create_stream('ddl_s', 'ddl_pub', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', 'cdc',
	table_map => '{"public.ddl_pair": "main.other.pairs"}') > 0 AS created;
SELECT zerobus.create_stream('ddl_ins', 'ddl_inserts', 'https://e.example.com',
	'https://w.example.com', 'id', 'secret', 'main', 'cdc') > 0 AS created;
RESET client_min_messages;
SELECT zerobus.target_ddl('ddl_src', stream => 'ddl_s', form => 'mirror');
-- a composite key with a reserved word, the mirror named
SELECT zerobus.target_ddl('ddl_pair', 'main.current.pairs', 'ddl_s', 'mirror');
-- REPLICA IDENTITY FULL: the primary key
SELECT zerobus.target_ddl('ddl_full', stream => 'ddl_s', form => 'mirror');
-- REPLICA IDENTITY USING INDEX: the index's columns
SELECT zerobus.target_ddl('ddl_ident', stream => 'ddl_s', form => 'mirror');
-- no key to mirror by
SELECT zerobus.target_ddl('ddl_nokey', stream => 'ddl_s', form => 'mirror');
SELECT zerobus.target_ddl('ddl_fullnokey', stream => 'ddl_s', form => 'mirror');
SELECT zerobus.target_ddl('ddl_hidden', stream => 'ddl_ins', form => 'mirror');
-- the mirror form needs a stream; the forms
SELECT zerobus.target_ddl('ddl_src', 'main.sales.orders', form => 'mirror');
SELECT zerobus.target_ddl('ddl_src', 'main.sales.orders', form => 'mirrors');
SELECT zerobus.drop_stream('ddl_s');
SELECT zerobus.drop_stream('ddl_ins');
DROP PUBLICATION ddl_pub, ddl_inserts;
DROP TABLE ddl_pair, ddl_full, ddl_ident, ddl_nokey, ddl_fullnokey, ddl_hidden;

-- a NULL source gives NULL
SELECT zerobus.target_ddl(NULL, 'main.sales.orders') IS NULL AS is_null;

DROP TABLE ddl_src;
DROP TYPE ddl_outer, ddl_inner, ddl_mood;
DROP DOMAIN ddl_posint;
