#!/usr/bin/env node
'use strict';
/*
 * mirror_sql.js
 *    Runs the MERGE form of zerobus.target_ddl(form => 'mirror') on an
 *    emulator change table, in DuckDB, and prints the mirror's rows.
 *
 *    node t/lib/mirror_sql.js --data-dir DIR --db FILE --change c.s.t --mirror c.s.m < sql
 *
 * The emulator has no MERGE, so the statements run in the DuckDB the
 * emulator writes its Parquet files with (MERGE INTO since DuckDB 1.4).
 * The database file --db holds the mirror from one run to the next, under
 * the change table's catalog (DuckDB reserves "main": use another).  Each
 * run first copies the change table's current Delta snapshot (its _delta_log
 * and Parquet files, logical column names) into a DuckDB table of the same
 * name, then runs the statements read from stdin, translated as little as
 * the dialects need: backquoted identifiers become double-quoted,
 * named_struct('v', x) becomes struct_pack(v := x), last_value(x) IGNORE
 * NULLS becomes last_value(x IGNORE NULLS), and the CREATE TABLE
 * loses its Delta clauses (USING DELTA, COMMENT, TBLPROPERTIES).  The rest, MERGE included, runs as Databricks would get
 * it.  Prints the mirror's rows, one JSON object a line.
 */

const path = require('node:path');
const D = require('../../emulator/lib/delta');

function quoteIdent(name) {
	return '"' + name.replace(/"/g, '""') + '"';
}

function sqlString(s) {
	return "'" + s.replace(/'/g, "''") + "'";
}

/* Databricks SQL to DuckDB's: the only differences these statements have. */
function toDuckDB(statement) {
	return statement
		.replace(/\)\s*USING DELTA\b[\s\S]*$/, ')')
		.replace(/named_struct\('(\w+)', /g, 'struct_pack($1 := ')
		.replace(/last_value\(([\s\S]*?)\) IGNORE NULLS OVER/g, 'last_value($1 IGNORE NULLS) OVER')
		.replace(/`((?:[^`]|``)*)`/g, (m, name) => quoteIdent(name.replace(/``/g, '`')));
}

async function main() {
	const args = process.argv.slice(2);
	const opt = {};
	for (let i = 0; i < args.length; i += 2)
		opt[args[i].replace(/^--/, '')] = args[i + 1];
	for (const k of ['data-dir', 'db', 'change', 'mirror'])
		if (!opt[k])
			throw new Error(`--${k} is required`);
	const sql = require('node:fs').readFileSync(0, 'utf8');
	const [catalog, schema] = opt.change.split('.');

	const conn = await D.duck();
	await conn.run(`ATTACH ${sqlString(opt.db)} AS ${quoteIdent(catalog)}`);
	await conn.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(catalog)}.${quoteIdent(schema)}`);

	const root = D.tableRoot(opt['data-dir'], opt.change);
	const st = D.tableState(root);
	const files = st.files.map(a => sqlString(path.join(root, decodeURIComponent(a.path))));
	const select = D.columnsOf(st.metaData)
		.map(c => `${quoteIdent(c.physical || c.name)} AS ${quoteIdent(c.name)}`).join(', ');
	await conn.run(`CREATE OR REPLACE TABLE ${opt.change} AS SELECT ${select}
		FROM read_parquet([${files.join(', ')}], union_by_name = true)`);

	for (const statement of sql.split(/;\s*(?:\n|$)/))
		if (statement.replace(/--.*$/gm, '').trim() !== '')
			await conn.run(toDuckDB(statement));

	const res = await conn.runAndReadAll(`SELECT to_json(m)::VARCHAR AS j FROM ${opt.mirror} m`);
	for (const r of res.getRowObjects())
		process.stdout.write(r.j + '\n');
	await conn.run(`DETACH ${quoteIdent(catalog)}`);
}

main().catch((e) => {
	process.stderr.write(`mirror_sql: ${e.message}\n`);
	process.exit(1);
});
