#!/usr/bin/env node
/*
 * read-delta.js
 *    node t/delta_reader/read-delta.js <table_dir>
 *
 * Prints the rows of the Delta table at <table_dir>, one JSON object per
 * line, in the canonical lossless forms of lib/values.js, with the logical
 * column names.  Rows come file by file in the order the files were added
 * to the table, each file's rows in file order.
 *
 * An independent reader for fidelity tests of the emulator's Delta output:
 * it replays _delta_log itself (lib/log.js) and reads the Parquet files with
 * hyparquet (lib/parquet.js); nothing is shared with the emulator, which
 * writes with DuckDB.  Any error (an unreadable log, an unknown type, a
 * Parquet type that does not match the Delta type) goes to stderr and the
 * exit status is 1; usage errors exit with 2.  Rows are printed a file at a
 * time, so after an error stdout may hold the rows of earlier files: only
 * exit status 0 means the output is the whole table.
 */

import { replayLog } from './lib/log.js';
import { tableType } from './lib/schema.js';
import { readParquetRaw } from './lib/parquet.js';
import { bind } from './lib/values.js';

async function main(argv) {
	if (argv.length !== 1 || argv[0].startsWith('-')) {
		process.stderr.write('usage: read-delta.js <table_dir>\n');
		return 2;
	}
	const log = replayLog(argv[0]);
	const rowType = tableType(log.metaData);
	for (const f of log.files) {
		let file;
		try {
			file = await readParquetRaw(f.absPath);
		} catch (e) {
			throw new Error(`${f.path}: ${e.message}`);
		}
		const toText = bind(rowType, file.tree, '');
		let out = '';
		for (const row of file.rows)
			out += toText(row) + '\n';
		if (!process.stdout.write(out))
			await new Promise(resolve => process.stdout.once('drain', resolve));
	}
	return 0;
}

/* A reader that stops early (| head) is not an error. */
process.stdout.on('error', (e) => {
	if (e.code !== 'EPIPE')
		throw e;
	process.exit(0);
});

main(process.argv.slice(2)).then(
	(code) => { process.exitCode = code; },
	(e) => {
		process.stderr.write(`read-delta.js: ${e.message}\n`);
		process.exitCode = 1;
	});
