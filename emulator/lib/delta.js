'use strict';
/*
 * delta.js
 *    Delta Lake tables on the local file system: commits, Parquet data
 *    files written by DuckDB, and a reader that uses only the log and the
 *    Parquet files.
 *
 * A table lives at <data-dir>/tables/<catalog>/<schema>/<table>/ with
 * _delta_log/NNNNNNNNNNNNNNNNNNNN.json commits (protocol, metaData, add,
 * commitInfo actions).  Each data commit's commitInfo carries
 * "zerobusLogPosition": every durable record up to that emulator log
 * position is in the table, which is how a restart knows what is left to
 * publish.  Rejected records (the table changed incompatibly after they were
 * acked) go to _zerobus/table_rejected_parquets/ and into no commit.
 */

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const N = require('@duckdb/node-api');
const T = require('./types');
const { fsyncDir } = require('./wal');

let duckPromise = null;

/*
 * Register `name`(from) -> to: the same integer, unchecked, as a DATE (days)
 * or a TIMESTAMP / TIMESTAMPTZ (microseconds).  A Delta DATE (Parquet INT32
 * DATE) holds any int32 and a TIMESTAMP (Parquet INT64 TIMESTAMP(MICROS))
 * any int64, but DuckDB's own conversions refuse values beyond its range
 * (make_timestamp(), date + n, casts from text) and none can make INT64_MIN
 * or the four hours above it; text staging also tied the emulator to the
 * years JavaScript formats.  These functions put the integer into the
 * result vector as it is, and DuckDB's Parquet writer copies it into the
 * file: INT64_MAX, INT64_MIN + 1 (DuckDB's own infinity and -infinity) and
 * INT64_MIN included.
 */
function registerRaw(conn, name, from, to, Value) {
	conn.registerScalarFunction(N.DuckDBScalarFunction.create({
		name, returnType: to, parameterTypes: [from], specialHandling: true,
		mainFunction: (info, input, out) => {
			const v = input.getColumnVector(0);
			for (let i = 0, n = input.rowCount; i < n; i++) {
				const x = v.getItem(i);
				out.setItem(i, x === null ? null : new Value(x));
			}
			out.flush();
		},
	}));
}

/* One in-process DuckDB connection, created on first use. */
function duck() {
	if (!duckPromise)
		duckPromise = (async () => {
			const inst = await N.DuckDBInstance.create(':memory:', { threads: '2' });
			const conn = await inst.connect();
			await conn.run("SET TimeZone='UTC'");
			registerRaw(conn, 'zb_date', N.INTEGER, N.DATE, N.DuckDBDateValue);
			registerRaw(conn, 'zb_timestamp', N.BIGINT, N.TIMESTAMP, N.DuckDBTimestampValue);
			registerRaw(conn, 'zb_timestamptz', N.BIGINT, N.TIMESTAMPTZ, N.DuckDBTimestampTZValue);
			return conn;
		})();
	return duckPromise;
}

const sqlString = (s) => "'" + String(s).replace(/'/g, "''") + "'";

function tableRoot(dataDir, name) {
	const [c, s, t] = name.split('.');
	return path.join(dataDir, 'tables', c, s, t);
}

const versionFile = (v) => String(v).padStart(20, '0') + '.json';

function writeDurable(file, text) {
	const tmp = file + '.tmp';
	const fd = fs.openSync(tmp, 'w');
	fs.writeSync(fd, text);
	fs.fsyncSync(fd);
	fs.closeSync(fd);
	fs.renameSync(tmp, file);
	fsyncDir(path.dirname(file));
}

/* All commits of a table in order, each as an array of actions. */
function readLog(root) {
	const dir = path.join(root, '_delta_log');
	if (!fs.existsSync(dir))
		return [];
	return fs.readdirSync(dir)
		.filter(f => /^\d{20}\.json$/.test(f))
		.sort()
		.map(f => ({
			version: Number(f.slice(0, 20)),
			actions: fs.readFileSync(path.join(dir, f), 'utf8').split('\n')
				.filter(l => l.trim()).map(l => JSON.parse(l)),
		}));
}

/*
 * Replay the log: latest protocol and metaData, the active files in commit
 * order, and the highest emulator log position published.
 */
function tableState(root) {
	const commits = readLog(root);
	let metaData = null, protocol = null, position = 0;
	const files = new Map();
	for (const c of commits)
		for (const a of c.actions) {
			if (a.metaData)
				metaData = a.metaData;
			else if (a.protocol)
				protocol = a.protocol;
			else if (a.add)
				files.set(a.add.path, a.add);
			else if (a.remove)
				files.delete(a.remove.path);
			else if (a.commitInfo && a.commitInfo.zerobusLogPosition !== undefined)
				position = Math.max(position, a.commitInfo.zerobusLogPosition);
		}
	return {
		version: commits.length ? commits[commits.length - 1].version : -1,
		metaData, protocol, files: [...files.values()], position,
	};
}

/*
 * The protocol a table needs: table features (reader 3, writer 7) for
 * TIMESTAMP_NTZ, and with column mapping the columnMapping feature then, or
 * else reader 2 / writer 5, the versions that introduced it.
 */
function protocolFor(columns, properties) {
	const ntz = columns.some(c => T.usesKind(c.type, 'TIMESTAMP_NTZ'));
	const mapped = (properties || {})['delta.columnMapping.mode'] === 'name';
	if (ntz) {
		const features = mapped ? ['timestampNtz', 'columnMapping'] : ['timestampNtz'];
		return { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: features, writerFeatures: features };
	}
	return mapped ? { minReaderVersion: 2, minWriterVersion: 5 } : { minReaderVersion: 1, minWriterVersion: 2 };
}

/* The table's configuration: its properties, and the highest column id. */
function configurationFor(columns, properties) {
	const conf = { ...(properties || {}) };
	if (conf['delta.columnMapping.mode'] === 'name')
		conf['delta.columnMapping.maxColumnId'] = String(Math.max(0, ...columns.map(c => c.id || 0)));
	return conf;
}

function schemaString(columns) {
	return JSON.stringify(T.deltaStruct(columns));
}

/*
 * Make the Delta table match `columns`: create version 0 when there is no
 * log, or commit a new metaData (and protocol) when the schema changed.
 * Returns the table's current version.
 */
function ensureTable(root, columns, tableName, properties) {
	fs.mkdirSync(path.join(root, '_delta_log'), { recursive: true });
	const st = tableState(root);
	const schema = schemaString(columns);
	const configuration = configurationFor(columns, properties);
	if (st.metaData && st.metaData.schemaString === schema &&
		JSON.stringify(st.metaData.configuration || {}) === JSON.stringify(configuration))
		return st.version;
	const now = Date.now();
	const actions = [
		{ commitInfo: { timestamp: now, operation: !st.metaData ? 'CREATE TABLE'
			: st.metaData.schemaString === schema ? 'SET TBLPROPERTIES' : 'CHANGE COLUMN',
			engineInfo: 'zerobus-emulator' } },
		{ protocol: protocolFor(columns, properties) },
		{ metaData: {
			id: st.metaData ? st.metaData.id : crypto.randomUUID(),
			name: tableName,
			format: { provider: 'parquet', options: {} },
			schemaString: schema,
			partitionColumns: [],
			configuration,
			createdTime: st.metaData ? st.metaData.createdTime : now,
		} },
	];
	const v = st.version + 1;
	writeDurable(path.join(root, '_delta_log', versionFile(v)),
		actions.map(a => JSON.stringify(a)).join('\n') + '\n');
	return v;
}

/* Kinds that are staged as something else (see stagedType()). */
const RESTAGED = ['BINARY', 'DATE', 'TIMESTAMP', 'TIMESTAMP_NTZ'];
const restaged = (t) => RESTAGED.some(k => T.usesKind(t, k));

/*
 * SQL turning a staged column (BINARY staged as base64 text, DATE and
 * TIMESTAMP(_NTZ) as their integers) into its type.
 */
function castExpr(expr, t) {
	if (!restaged(t))
		return expr;
	switch (t.kind) {
		case 'BINARY':
			return `from_base64(${expr})`;
		case 'DATE':
			return `zb_date(${expr})`;
		case 'TIMESTAMP':
			return `zb_timestamptz(${expr})`;
		case 'TIMESTAMP_NTZ':
			return `zb_timestamp(${expr})`;
		case 'ARRAY':
			return `list_transform(${expr}, x -> ${castExpr('x', t.element)})`;
		case 'MAP':
			return `map_from_entries(list_transform(map_entries(${expr}), e -> ` +
				`{'key': ${castExpr('e.key', t.key)}, 'value': ${castExpr('e.value', t.value)}}))`;
		case 'STRUCT':
			return `CASE WHEN ${expr} IS NULL THEN NULL ELSE struct_pack(` +
				t.fields.map(f => `${T.quoteIdent(f.name)} := ${castExpr(`${expr}.${T.quoteIdent(f.name)}`, f.type)}`).join(', ') +
				') END';
		default:
			return expr;
	}
}

/*
 * The type DuckDB reads from staging text: BINARY arrives as base64 text,
 * DATE as its day count (INTEGER), TIMESTAMP and TIMESTAMP_NTZ as their
 * microseconds (BIGINT), so that every value of the column's Parquet type
 * gets through exactly.
 */
function stagedType(t) {
	switch (t.kind) {
		case 'BINARY': return { kind: 'STRING' };
		case 'DATE': return { kind: 'INT' };
		case 'TIMESTAMP':
		case 'TIMESTAMP_NTZ': return { kind: 'BIGINT' };
		case 'ARRAY': return { kind: 'ARRAY', element: stagedType(t.element) };
		case 'MAP': return { kind: 'MAP', key: stagedType(t.key), value: stagedType(t.value) };
		case 'STRUCT': return { kind: 'STRUCT', fields: t.fields.map(f => ({ ...f, type: stagedType(f.type) })) };
		default: return t;
	}
}

/*
 * Staging JSON for one value: BINARY as base64 text, DATE and TIMESTAMP*
 * as integers (T.duckJson()), nested types recursively.
 */
function stageValue(v, t) {
	if (v === null || v === undefined)
		return 'null';
	switch (t.kind) {
		case 'BINARY':
			return JSON.stringify(v.toString('base64'));
		case 'ARRAY':
			return '[' + v.map(e => stageValue(e, t.element)).join(',') + ']';
		case 'MAP':
			return '{' + v.map(([k, val]) => JSON.stringify(String(k)) + ':' + stageValue(val, t.value)).join(',') + '}';
		case 'STRUCT':
			return '{' + t.fields.map(f => JSON.stringify(f.name) + ':' + stageValue(v[f.name], f.type)).join(',') + '}';
		default:
			return T.duckJson(v, t);
	}
}

/*
 * Staging JSON for one row; keys[i] is the text before column i's value
 * ('{"name":' or ',"name":'), built once per file by stagingKeys().
 */
function stageRow(row, columns, keys) {
	let s = '';
	for (let i = 0; i < columns.length; i++)
		s += keys[i] + stageValue(row[columns[i].name], columns[i].type);
	return s + '}';
}

function stagingKeys(columns) {
	return columns.map((c, i) => (i ? ',' : '{') + JSON.stringify(c.name) + ':');
}

/*
 * Write rows to one new Parquet file at `file` with the column types of
 * `columns`.  Rows are staged as NDJSON and converted by DuckDB's typed
 * JSON reader, which keeps 64-bit integers, decimals and timestamps exact.
 */
async function writeParquet(file, rows, columns) {
	const conn = await duck();
	const staging = file + '.ndjson';
	const fd = fs.openSync(staging, 'w');
	const keys = stagingKeys(columns);
	let buf = '';
	for (const r of rows) {
		buf += stageRow(r, columns, keys) + '\n';
		if (buf.length > 1 << 20) {
			fs.writeSync(fd, buf);
			buf = '';
		}
	}
	fs.writeSync(fd, buf);
	fs.closeSync(fd);
	const cols = '{' + columns.map(c => `${sqlString(c.name)}: ${sqlString(T.duckType(stagedType(c.type)))}`).join(', ') + '}';
	/* a mapped column's Parquet name is its physical name */
	const select = columns.map(c => `${castExpr(T.quoteIdent(c.name), c.type)}::${T.duckType(c.type)} AS ` +
		T.quoteIdent(c.physical || c.name)).join(', ');
	try {
		await conn.run(`COPY (SELECT ${select} FROM read_json(${sqlString(staging)}, ` +
			`format='newline_delimited', columns=${cols}, maximum_object_size=67108864)) ` +
			`TO ${sqlString(file)} (FORMAT parquet, COMPRESSION snappy)`);
	} finally {
		fs.rmSync(staging, { force: true });
	}
	const fdp = fs.openSync(file, 'r');
	fs.fsyncSync(fdp);
	fs.closeSync(fdp);
	return fs.statSync(file).size;
}

/*
 * Append rows to the table as one new data file and one commit numbered
 * `version` (the caller is the table's only writer and knows the next
 * version).  `position` is the emulator log position the commit covers.
 */
async function appendRows(root, rows, columns, position, version) {
	const name = `part-00000-${crypto.randomUUID()}-c000.snappy.parquet`;
	const size = await writeParquet(path.join(root, name), rows, columns);
	const now = Date.now();
	const actions = [
		{ commitInfo: { timestamp: now, operation: 'STREAMING UPDATE', engineInfo: 'zerobus-emulator',
			operationMetrics: { numOutputRows: String(rows.length) }, zerobusLogPosition: position } },
		{ add: { path: name, partitionValues: {}, size, modificationTime: now, dataChange: true,
			stats: JSON.stringify({ numRecords: rows.length }) } },
	];
	writeDurable(path.join(root, '_delta_log', versionFile(version)),
		actions.map(a => JSON.stringify(a)).join('\n') + '\n');
	return version;
}

/* Commit only a log position (all records up to it were rejected or none). */
function commitPosition(root, position, version) {
	writeDurable(path.join(root, '_delta_log', versionFile(version)), JSON.stringify({ commitInfo: {
		timestamp: Date.now(), operation: 'STREAMING UPDATE', engineInfo: 'zerobus-emulator',
		operationMetrics: { numOutputRows: '0' }, zerobusLogPosition: position } }) + '\n');
	return version;
}

/* Write records the table can no longer take, as the service does. */
async function writeRejected(root, rows, columns) {
	const dir = path.join(root, '_zerobus', 'table_rejected_parquets');
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `part-${crypto.randomUUID()}.parquet`);
	await writeParquet(file, rows, columns);
	return file;
}

/* ---- reading ---- */

function jsonText(v) {
	if (v === null || v === undefined)
		return 'null';
	if (typeof v === 'bigint')
		return v.toString();
	if (Array.isArray(v))
		return '[' + v.map(jsonText).join(',') + ']';
	if (typeof v === 'object')
		return '{' + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ':' + jsonText(x)).join(',') + '}';
	if (typeof v === 'number' && !Number.isFinite(v))
		return JSON.stringify(String(v));
	return JSON.stringify(v);
}

function decimalText(d) {
	const neg = d.value < 0n;
	let digits = (neg ? -d.value : d.value).toString();
	if (d.scale > 0) {
		digits = digits.padStart(d.scale + 1, '0');
		digits = digits.slice(0, -d.scale) + '.' + digits.slice(-d.scale);
	}
	return (neg ? '-' : '') + digits;
}

/*
 * DuckDB value to the reader's output form: BIGINT and TIMESTAMP* as exact
 * integers (microseconds, whatever the int64: the value's raw micros, never
 * DuckDB's text, which calls INT64_MAX "infinity"), DATE as "YYYY-MM-DD"
 * from 0001-01-01 to 9999-12-31 and as the integer day count otherwise
 * (T.dateOut()), DECIMAL as text, BINARY as base64, VARIANT as its JSON
 * text, MAP as an object.
 */
function outValue(v, t) {
	if (v === null || v === undefined)
		return null;
	switch (t.kind) {
		case 'TIMESTAMP':
		case 'TIMESTAMP_NTZ': {
			const us = v.micros;
			return Number.isSafeInteger(Number(us)) ? Number(us) : us;
		}
		case 'BIGINT':
			return Number.isSafeInteger(Number(v)) ? Number(v) : v;
		case 'DATE':
			return T.dateOut(v.days);
		case 'DECIMAL':
			return decimalText(v);
		case 'BINARY':
			return Buffer.from(v.bytes).toString('base64');
		case 'ARRAY':
			return v.items.map(e => outValue(e, t.element));
		case 'MAP': {
			const o = {};
			for (const e of v.entries)
				o[String(outValue(e.key, t.key))] = outValue(e.value, t.value);
			return o;
		}
		case 'STRUCT': {
			const o = {};
			for (const f of t.fields)
				o[f.name] = outValue(v.entries[f.name], f.type);
			return o;
		}
		default:
			return v;
	}
}

function columnsOf(metaData) {
	return JSON.parse(metaData.schemaString).fields.map(f => ({
		name: f.name, type: T.fromDeltaType(f.type, f.metadata), nullable: f.nullable,
		...(f.metadata && f.metadata['delta.columnMapping.physicalName'] !== undefined
			? { physical: f.metadata['delta.columnMapping.physicalName'], id: f.metadata['delta.columnMapping.id'] } : {}),
	}));
}

/*
 * Our type for a DuckDB result column's type, for Parquet files whose Delta
 * schema is not at hand (rejected files): TIMESTAMP WITH TIME ZONE is
 * TIMESTAMP, TIMESTAMP is TIMESTAMP_NTZ, VARIANT reads as STRING.
 */
const FROM_DUCK = { BOOLEAN: 'BOOLEAN', TINYINT: 'TINYINT', SMALLINT: 'SMALLINT', INTEGER: 'INT',
	BIGINT: 'BIGINT', FLOAT: 'FLOAT', DOUBLE: 'DOUBLE', VARCHAR: 'STRING', BLOB: 'BINARY', DATE: 'DATE',
	TIMESTAMP: 'TIMESTAMP_NTZ', TIMESTAMP_TZ: 'TIMESTAMP' };

function fromDuckType(d) {
	const id = N.DuckDBTypeId[d.typeId];
	switch (id) {
		case 'DECIMAL': return { kind: 'DECIMAL', p: d.width, s: d.scale };
		case 'LIST': return { kind: 'ARRAY', element: fromDuckType(d.valueType) };
		case 'MAP': return { kind: 'MAP', key: fromDuckType(d.keyType), value: fromDuckType(d.valueType) };
		case 'STRUCT': return { kind: 'STRUCT', fields: d.entryNames.map((name, i) => ({
			name, type: fromDuckType(d.entryTypes[i]), nullable: true })) };
		default:
			if (!FROM_DUCK[id])
				throw new Error(`unexpected Parquet column type ${d}`);
			return { kind: FROM_DUCK[id] };
	}
}

/*
 * Rows of Parquet files with the given columns, or without columns with
 * the types each file has (rejected files, tests), in the reader's forms.
 */
async function readParquetFiles(files, columns) {
	const conn = await duck();
	const rows = [];
	for (const f of files) {
		const res = await conn.runAndReadAll(`SELECT * FROM read_parquet(${sqlString(f)})`);
		const cols = columns || res.columnNames().map((name, i) => ({ name, type: fromDuckType(res.columnTypes()[i]) }));
		for (const r of res.getRowObjects()) {
			const o = {};
			for (const c of cols) {
				const v = r[c.physical || c.name];
				o[c.name] = outValue(v === undefined ? null : v, c.type);
			}
			rows.push(o);
		}
	}
	return rows;
}

/*
 * Rows of a Delta table, in commit order, from _delta_log and the Parquet
 * files only.  Columns the table gained after a file was written read as null.
 */
async function readTable(root) {
	const st = tableState(root);
	if (!st.metaData)
		throw new Error(`no Delta table at ${root}`);
	const columns = columnsOf(st.metaData);
	const rows = await readParquetFiles(st.files.map(a => path.join(root, decodeURIComponent(a.path))), columns);
	return { columns, rows, version: st.version };
}

module.exports = {
	duck, tableRoot, tableState, ensureTable, appendRows, commitPosition, writeRejected,
	readTable, readParquetFiles, columnsOf, jsonText, outValue, readLog,
};
