#!/usr/bin/env node
'use strict';
/*
 * soak_fold.js
 *    The end of the chaos soak (bench/soak.pl): folds an emulator Delta
 *    table's change records and compares the result with its source table,
 *    every row, every column.
 *
 *    node bench/soak_fold.js --data-dir DIR --table c.s.t --key col[,col...]
 *        --source FILE
 *
 * FILE holds the source table's rows, one JSON object a line, every value
 * as text (or null), as PostgreSQL writes them for the soak.  The Delta
 * table is read from its _delta_log and Parquet files only, in DuckDB,
 * streamed in (_commit_lsn, _seq) order, and its values are put in the
 * forms of zerobus-read.js, as text.  The fold is that of fold_records in
 * t/lib/ZerobusTest.pm, which the tests use on small tables: inserts,
 * update postimages and snapshot rows upsert by key, deletes and update
 * preimages delete by key, and a postimage's _unchanged_columns keep the
 * values of the row of its key, or else of the preimage just removed.  The
 * Perl fold decodes every record's JSON in Perl, minutes for a long soak;
 * this one takes seconds.
 *
 * Prints one JSON object: records, duplicates (records whose
 * (_commit_lsn, _seq, _change_type) came before), the row counts of both
 * sides, how many keys differ and the first few differences, both sides.
 */

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const D = require('../emulator/lib/delta');

const EXAMPLES = 10;

function quoteIdent(name) {
	return '"' + name.replace(/"/g, '""') + '"';
}

function sqlString(s) {
	return "'" + s.replace(/'/g, "''") + "'";
}

/* A value in the reader's form, as the source's text. */
function text(v) {
	if (v === null || v === undefined)
		return null;
	if (typeof v === 'string')
		return v;
	if (typeof v === 'object')
		return D.jsonText(v);
	return String(v);
}

async function readSource(file, keys) {
	const rows = new Map();
	const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
	for await (const line of lines) {
		if (line === '')
			continue;
		const r = JSON.parse(line);
		rows.set(keys.map(k => r[k] ?? '').join('\0'), r);
	}
	return rows;
}

async function main() {
	const args = process.argv.slice(2);
	const opt = {};
	for (let i = 0; i < args.length; i += 2)
		opt[args[i].replace(/^--/, '')] = args[i + 1];
	for (const k of ['data-dir', 'table', 'key', 'source'])
		if (!opt[k])
			throw new Error(`--${k} is required`);
	const keys = opt.key.split(',');

	const root = D.tableRoot(opt['data-dir'], opt.table);
	const st = D.tableState(root);
	if (!st.metaData)
		throw new Error(`no Delta table at ${root}`);
	const columns = D.columnsOf(st.metaData);
	const data = columns.filter(c => !c.name.startsWith('_'));
	const files = st.files.map(a => sqlString(path.join(root, decodeURIComponent(a.path))));
	const col = (name) => {
		const c = columns.find(x => x.name === name);
		return quoteIdent(c.physical || c.name);
	};

	const table = new Map();
	let before = null;	/* the row the last record, a preimage, removed */
	let records = 0, duplicates = 0, last = null;
	if (files.length > 0) {
		const conn = await D.duck();
		const result = await conn.stream(`SELECT ${columns.map(c => quoteIdent(c.physical || c.name)).join(', ')}
			FROM read_parquet([${files.join(', ')}], union_by_name = true)
			ORDER BY ${col('_commit_lsn')}, ${col('_seq')}, ${col('_change_type')}`);
		for await (const chunk of result.yieldRows()) {
			for (const values of chunk) {
				const r = {};
				columns.forEach((c, i) => { r[c.name] = D.outValue(values[i] ?? null, c.type); });
				records++;
				const id = `${r._commit_lsn}/${r._seq}/${r._change_type}`;
				if (id === last)
					duplicates++;
				last = id;
				const row = {};
				for (const c of data)
					row[c.name] = text(r[c.name]);
				const key = keys.map(k => row[k] ?? '').join('\0');
				let removed = null;
				switch (r._change_type) {
					case 'insert':
					case 'update_postimage':
					case 'snapshot': {
						const old = table.get(key) ?? before;
						if (old)
							for (const u of r._unchanged_columns ?? [])
								row[u] = old[u];
						table.set(key, row);
						break;
					}
					case 'update_preimage':
						removed = table.get(key) ?? row;
						table.delete(key);
						break;
					case 'delete':
						table.delete(key);
						break;
					default:
						throw new Error(`unknown _change_type ${r._change_type}`);
				}
				before = removed;
			}
		}
	}

	const source = await readSource(opt.source, keys);
	const differ = [];
	let ndiffer = 0;
	for (const key of new Set([...table.keys(), ...source.keys()])) {
		const d = table.get(key), s = source.get(key);
		const same = d && s && Object.keys(s).every(c => (d[c] ?? null) === (s[c] ?? null))
			&& Object.keys(d).every(c => c in s);
		if (same)
			continue;
		if (ndiffer++ < EXAMPLES)
			differ.push({ key: key.split('\0'), delta: d ?? null, source: s ?? null });
	}
	process.stdout.write(JSON.stringify({
		records, duplicates, delta_rows: table.size, source_rows: source.size,
		keys_differ: ndiffer, differences: differ,
	}) + '\n');
}

main().catch((e) => {
	process.stderr.write(`soak_fold: ${e.stack}\n`);
	process.exit(1);
});
