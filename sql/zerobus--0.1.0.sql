/* zerobus--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION zerobus" to load this file. \quit

CREATE FUNCTION target_ddl(source regclass, target_table text)
RETURNS text
AS 'MODULE_PATHNAME', 'zerobus_target_ddl'
LANGUAGE C STRICT STABLE;

COMMENT ON FUNCTION target_ddl(regclass, text) IS
'Databricks SQL CREATE TABLE for the Delta table that receives the changes of a source table';
