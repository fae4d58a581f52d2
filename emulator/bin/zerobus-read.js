#!/usr/bin/env node
'use strict';
/*
 * zerobus-read.js
 *    Print the rows of an emulator Delta table, read from its _delta_log and
 *    Parquet files only (never from the emulator's own log).
 *
 *    node emulator/bin/zerobus-read.js --data-dir DIR --table c.s.t [--format jsonl|json]
 *
 * One JSON object per row (jsonl, the default), in commit order.  BIGINT and
 * TIMESTAMP/TIMESTAMP_NTZ values are exact integers (microseconds since
 * 1970-01-01 UTC for timestamps, any int64), DATE is "YYYY-MM-DD" from
 * 0001-01-01 to 9999-12-31 and the integer day count (days since 1970-01-01)
 * beyond, DECIMAL is its text, BINARY is base64, VARIANT is its JSON text,
 * MAP is an object.  --rejected prints the rows of
 * _zerobus/table_rejected_parquets/ instead, in the same forms (typed by the
 * Parquet files: VARIANT reads as its text).
 */

const fs = require('node:fs');
const path = require('node:path');
const D = require('../lib/delta');

async function main() {
	const args = process.argv.slice(2);
	const opt = {};
	for (let i = 0; i < args.length; i++) {
		if (args[i] === '--rejected')
			opt.rejected = true;
		else
			opt[args[i].replace(/^--/, '')] = args[++i];
	}
	if (!opt['data-dir'] || !opt.table) {
		process.stderr.write('usage: zerobus-read.js --data-dir DIR --table catalog.schema.table [--format jsonl|json] [--rejected]\n');
		process.exit(2);
	}
	const root = D.tableRoot(opt['data-dir'], opt.table);
	let rows;
	if (opt.rejected) {
		const dir = path.join(root, '_zerobus', 'table_rejected_parquets');
		const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter(f => f.endsWith('.parquet')).sort()
			.map(f => path.join(dir, f)) : [];
		rows = await D.readParquetFiles(files);
	} else
		rows = (await D.readTable(root)).rows;
	if (opt.format === 'json')
		process.stdout.write(D.jsonText(rows) + '\n');
	else
		process.stdout.write(rows.map(r => D.jsonText(r) + '\n').join(''));
}

main().catch((e) => {
	process.stderr.write(`zerobus-read: ${e.message}\n`);
	process.exit(1);
});
