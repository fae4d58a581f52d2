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

-- a NULL source gives NULL
SELECT zerobus.target_ddl(NULL, 'main.sales.orders') IS NULL AS is_null;

DROP TABLE ddl_src;
DROP TYPE ddl_outer, ddl_inner, ddl_mood;
DROP DOMAIN ddl_posint;
