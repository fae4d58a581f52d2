/*
 * log.js
 *    Replays a Delta table's _delta_log on our own: the JSON commits in
 *    version order, their add / remove / metaData / protocol actions, giving
 *    the live data files (in the order they were added) and the latest
 *    metaData.  Shares no code with the emulator, so that a mistake in its
 *    writer or its reader cannot hide itself.
 *
 * Checkpoints: the emulator writes none.  A checkpoint is only a summary of
 * the JSON commits before it, so while every commit from version 0 on is
 * there this replay ignores checkpoints; a log whose JSON commits do not run
 * 0, 1, 2, ... without a gap (as after a cleanup that kept only a
 * checkpoint) is refused, since checkpoints are not read here.
 */

import fs from 'node:fs';
import path from 'node:path';

const COMMIT = /^(\d{20})\.json$/;
const CHECKPOINT = /^\d{20}\.checkpoint(\.\d+\.\d+|\.[0-9a-f-]+)?\.(parquet|json)$/;

/* Reader features this reader knows how to honour. */
const READER_FEATURES = new Set(['columnMapping', 'timestampNtz', 'typeWidening', 'typeWidening-preview']);

export class LogError extends Error {}

/* The actions of one commit file, one JSON object per non-blank line. */
function readCommit(file) {
	const text = fs.readFileSync(file, 'utf8');
	return text.split('\n').filter(l => l.trim() !== '').map((l, i) => {
		try {
			return JSON.parse(l);
		} catch (e) {
			throw new LogError(`${file}: line ${i + 1} is not JSON: ${e.message}`);
		}
	});
}

function checkProtocol(p) {
	if (p.minReaderVersion > 3)
		throw new LogError(`protocol minReaderVersion ${p.minReaderVersion} is not supported`);
	for (const f of p.readerFeatures || [])
		if (!READER_FEATURES.has(f))
			throw new LogError(`reader feature "${f}" is not supported`);
}

/*
 * Replay <tableDir>/_delta_log.  Returns {version, protocol, metaData,
 * files: [{path, absPath, add}]}; throws LogError when the log cannot be
 * read faithfully.
 */
export function replayLog(tableDir) {
	const dir = path.join(tableDir, '_delta_log');
	let names;
	try {
		names = fs.readdirSync(dir);
	} catch (e) {
		throw new LogError(`cannot list ${dir}: ${e.message}`);
	}
	const commits = names.filter(n => COMMIT.test(n)).sort();
	const checkpoints = names.filter(n => CHECKPOINT.test(n) || n === '_last_checkpoint');
	if (commits.length === 0)
		throw new LogError(`no commits in ${dir}`);
	commits.forEach((n, i) => {
		if (Number(COMMIT.exec(n)[1]) !== i)
			throw new LogError(`${dir}: commit ${n} where version ${i} was expected` +
				(checkpoints.length ? ` (checkpoints ${checkpoints.join(', ')} are not read)` : ''));
	});

	let protocol = null, metaData = null;
	const live = new Map();
	for (const n of commits)
		for (const a of readCommit(path.join(dir, n))) {
			if (a.protocol) {
				checkProtocol(a.protocol);
				protocol = a.protocol;
			}
			if (a.metaData)
				metaData = a.metaData;
			if (a.add) {
				if (a.add.deletionVector)
					throw new LogError(`${n}: add of ${a.add.path} has a deletion vector (not supported)`);
				live.delete(a.add.path);	/* a re-add goes to the end */
				live.set(a.add.path, a.add);
			}
			if (a.remove)
				live.delete(a.remove.path);
		}
	if (!protocol)
		throw new LogError(`${dir}: no protocol action`);
	if (!metaData)
		throw new LogError(`${dir}: no metaData action`);
	if ((metaData.partitionColumns || []).length)
		throw new LogError(`partition columns ${metaData.partitionColumns.join(', ')} are not supported`);
	if (metaData.format && metaData.format.provider !== 'parquet')
		throw new LogError(`data file format "${metaData.format.provider}" is not supported`);

	const files = [...live.values()].map(add => {
		if (/^[a-z][a-z0-9+.-]*:/i.test(add.path))
			throw new LogError(`absolute data file path ${add.path} is not supported`);
		return { path: add.path, absPath: path.join(tableDir, decodeURIComponent(add.path)), add };
	});
	return { version: commits.length - 1, protocol, metaData, files };
}
