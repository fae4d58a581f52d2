'use strict';
/*
 * timestamps.test.js
 *    TIMESTAMP / TIMESTAMP_NTZ (int64 µs) and DATE (int32 days) at the ends
 *    of their integer ranges, as a client sends PostgreSQL's -infinity and
 *    infinity (INT64_MIN / INT64_MAX, INT32_MIN / INT32_MAX), and beyond the
 *    years 0001-9999: every integer is accepted, acked, stored in the
 *    Parquet file as exactly that integer and read back as it; normal values
 *    in the same batch are unaffected.  Also: a table whose publication
 *    fails keeps its records pending and holds up no other table, and the
 *    reader's DATE forms.
 */

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const { DuckDBInstance } = require('@duckdb/node-api');
const H = require('./helpers');
const E = require('../lib/encode');
const T = require('../lib/types');
const D = require('../lib/delta');

const S = grpc.status;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

const COLUMNS = [
	{ name: 'id', type: 'BIGINT', nullable: false },
	{ name: 'ts', type: 'TIMESTAMP' },
	{ name: 'ntz', type: 'TIMESTAMP_NTZ' },
	{ name: 'd', type: 'DATE' },
	{ name: 'tss', type: 'ARRAY<TIMESTAMP>' },
	{ name: 'ds', type: 'ARRAY<DATE>' },
	{ name: 'st', type: 'STRUCT<at:TIMESTAMP_NTZ,on:DATE>' },
	{ name: 'm', type: 'MAP<STRING,TIMESTAMP>' },
];
const ST = { name: 'St', typeName: 'St', fields: [
	{ name: 'at', number: 1, type: 'int64' },
	{ name: 'on', number: 2, type: 'int32' },
] };
const SPEC = { name: 'Row', fields: [
	{ name: 'id', number: 1, type: 'int64' },
	{ name: 'ts', number: 2, type: 'int64' },
	{ name: 'ntz', number: 3, type: 'int64' },
	{ name: 'd', number: 4, type: 'int32' },
	{ name: 'tss', number: 5, type: 'int64', label: 'repeated' },
	{ name: 'ds', number: 6, type: 'int32', label: 'repeated' },
	{ ...ST, name: 'st', number: 7, type: 'message' },
	{ name: 'm', number: 8, type: 'map', key: 'string', value: 'int64' },
] };

/* [what, µs] and [what, days, how the reader prints it]. */
const TS = [
	['INT64_MIN (-infinity)', INT64_MIN],
	['INT64_MIN + 1 (DuckDB\'s -infinity)', INT64_MIN + 1n],
	['INT64_MAX (infinity)', INT64_MAX],
	['INT64_MAX - 1', INT64_MAX - 1n],
	['0000-12-31 23:59:59.999999', -62135596800000001n],
	['0001-01-01 00:00:00', -62135596800000000n],
	['9999-12-31 23:59:59.999999', 253402300799999999n],
	['10000-01-01 00:00:00', 253402300800000000n],
	['beyond JavaScript Date', 8640000000000000001n],
	['before JavaScript Date', -8640000000000000001n],
];
const DAYS = [
	['INT32_MIN (-infinity)', INT32_MIN, INT32_MIN],
	['INT32_MIN + 1', INT32_MIN + 1, INT32_MIN + 1],
	['INT32_MAX (infinity)', INT32_MAX, INT32_MAX],
	['10000-01-01', 2932897, 2932897],
	['0000-12-31', -719163, -719163],
	['0001-01-01', -719162, '0001-01-01'],
	['9999-12-31', 2932896, '9999-12-31'],
];
const NORMAL_US = 1700000000123456n;		/* 2023-11-14 22:13:20.123456 UTC */
const NORMAL_DAY = 19675;				/* 2023-11-14 */

/* Reader form of a µs value: Number when exact, else BigInt. */
const us = (b) => (Number.isSafeInteger(Number(b)) ? Number(b) : b);

/* The records of the edge batch: a normal one first and last, edges between. */
function edgeRecords() {
	const recs = [{ id: 0, ts: NORMAL_US, ntz: NORMAL_US, d: NORMAL_DAY, tss: [NORMAL_US], ds: [NORMAL_DAY],
		st: { at: NORMAL_US, on: NORMAL_DAY }, m: { k: NORMAL_US } }];
	const n = Math.max(TS.length, DAYS.length);
	for (let i = 0; i < n; i++) {
		const t = TS[i % TS.length][1], dd = DAYS[i % DAYS.length][1];
		recs.push({ id: i + 1, ts: t, ntz: t, d: dd, tss: [t, NORMAL_US, t], ds: [dd, NORMAL_DAY],
			st: { at: t, on: dd }, m: { a: t, b: NORMAL_US } });
	}
	recs.push({ ...recs[0], id: 99 });
	return recs;
}

/* How the reader prints a record of edgeRecords(). */
function expectedRow(r) {
	const day = (x) => (x === NORMAL_DAY ? '2023-11-14' : DAYS.find(e => e[1] === x)[2]);
	return { id: r.id, ts: us(r.ts), ntz: us(r.ntz), d: day(r.d), tss: r.tss.map(us), ds: r.ds.map(day),
		st: { at: us(r.st.at), on: day(r.st.on) }, m: Object.fromEntries(Object.entries(r.m).map(([k, v]) => [k, us(v)])) };
}

async function writer(emu, table, recordType = 'PROTO') {
	const tok = (await H.getToken(emu, 'w', 'w', table)).body.access_token;
	const cli = H.client(emu.ports.grpc_port);
	const c = H.openCall(cli, { token: tok, table, headerTable: table });
	const cs = { table_name: table, record_type: recordType };
	if (recordType === 'PROTO')
		cs.descriptor_proto = E.encodeDescriptor(SPEC);
	c.call.write({ create_stream: cs });
	await c.waitFor(() => c.responses.length > 0);
	c.cli = cli;
	return c;
}

async function done(c) {
	c.call.end();
	await c.status;
	c.cli.close();
}

const tableDir = (emu, table) => path.join(emu.dataDir, 'tables', ...table.split('.'));

test('reader DATE forms: "YYYY-MM-DD" from 0001-01-01 to 9999-12-31, the day count beyond', () => {
	assert.strictEqual(T.dateOut(0), '1970-01-01');
	assert.strictEqual(T.dateOut(-719162), '0001-01-01');
	assert.strictEqual(T.dateOut(2932896), '9999-12-31');
	assert.strictEqual(T.dateOut(-719163), -719163);
	assert.strictEqual(T.dateOut(2932897), 2932897);
	assert.strictEqual(T.dateOut(INT32_MIN), INT32_MIN);
	assert.strictEqual(T.dateOut(INT32_MAX), INT32_MAX);
	assert.strictEqual(T.DATE_TEXT_MIN, T.parseDateText('0001-01-01'));
	assert.strictEqual(T.DATE_TEXT_MAX, T.parseDateText('9999-12-31'));
});

test('TIMESTAMP, TIMESTAMP_NTZ and DATE at and beyond their integer ranges: acked, published and read back exactly', { timeout: 60000 }, async () => {
	const emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	const table = 'main.edge.values';
	try {
		await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
		assert.strictEqual((await emu.http('PUT', `/admin/tables/${table}`, { columns: COLUMNS })).status, 200);
		const recs = edgeRecords();
		const c = await writer(emu, table);
		c.call.write({ ingest_record_batch: { offset_id: 0, proto_encoded_batch: {
			records: recs.slice(0, -1).map(r => E.encodeMessage(SPEC, r)) } } });
		c.call.write({ ingest_record: { offset_id: 1, proto_encoded_record: E.encodeMessage(SPEC, recs[recs.length - 1]) } });
		await c.waitFor(() => c.lastAck() === 1);
		await done(c);
		assert.strictEqual(c.final.code, S.OK);

		const f = await emu.http('POST', '/admin/flush');
		assert.deepStrictEqual(f.body, { versions: { [table]: 1 } });
		const stats = (await emu.http('GET', '/admin/stats')).body.tables[table];
		assert.strictEqual(stats.records_published, recs.length);
		assert.strictEqual(stats.records_rejected_parquet, 0);
		assert.strictEqual(stats.publish_failures, 0);

		/* lib/delta.js readTable: every value exactly, normal rows unaffected. */
		const root = tableDir(emu, table);
		const { rows } = await D.readTable(root);
		assert.deepStrictEqual(rows, recs.map(expectedRow));
		assert.ok(!fs.existsSync(path.join(root, '_zerobus')), 'no rejected files');

		/* zerobus-read.js prints the integers as JSON numbers, digit for digit. */
		const lines = execFileSync(process.execPath, [H.READ, '--data-dir', emu.dataDir, '--table', table],
			{ encoding: 'utf8' }).trim().split('\n');
		assert.strictEqual(lines.length, recs.length);
		assert.strictEqual(lines[0], '{"id":0,"ts":1700000000123456,"ntz":1700000000123456,"d":"2023-11-14",' +
			'"tss":[1700000000123456],"ds":["2023-11-14"],"st":{"at":1700000000123456,"on":"2023-11-14"},' +
			'"m":{"k":1700000000123456}}');
		assert.strictEqual(lines[1], '{"id":1,"ts":-9223372036854775808,"ntz":-9223372036854775808,"d":-2147483648,' +
			'"tss":[-9223372036854775808,1700000000123456,-9223372036854775808],"ds":[-2147483648,"2023-11-14"],' +
			'"st":{"at":-9223372036854775808,"on":-2147483648},"m":{"a":-9223372036854775808,"b":1700000000123456}}');
		assert.match(lines[3], /^\{"id":3,"ts":9223372036854775807,"ntz":9223372036854775807,"d":2147483647,/);
		assert.match(lines[5], /^\{"id":5,"ts":-62135596800000001,"ntz":-62135596800000001,"d":-719163,/);
		assert.match(lines[6], /^\{"id":6,"ts":-62135596800000000,"ntz":-62135596800000000,"d":"0001-01-01",/);

		/* The Parquet file itself, read by a DuckDB of its own: the raw integers. */
		const add = D.tableState(root).files[0];
		const file = path.join(root, add.path).replace(/'/g, "''");
		const db = await (await DuckDBInstance.create(':memory:')).connect();
		const raw = (await db.runAndReadAll(`SELECT id, ts, ntz, d, d - DATE '1970-01-01' AS days, st, ` +
			`epoch_us(ts) AS epoch FROM read_parquet('${file}')`)).getRowObjects();
		assert.strictEqual(raw.length, recs.length);
		for (const [i, r] of recs.entries()) {
			const got = raw[i];
			assert.strictEqual(got.id, BigInt(r.id));
			assert.strictEqual(got.ts.micros, BigInt(r.ts), `ts of record ${r.id}`);
			assert.strictEqual(got.ntz.micros, BigInt(r.ntz), `ntz of record ${r.id}`);
			assert.strictEqual(got.d.days, r.d, `d of record ${r.id}`);
			assert.strictEqual(got.days, BigInt(r.d));
			assert.strictEqual(got.st.entries.at.micros, BigInt(r.st.at));
			assert.strictEqual(got.st.entries.on.days, r.st.on);
			/* DuckDB takes INT64_MAX and INT64_MIN + 1 for its infinities: epoch_us() is NULL there. */
			const inf = BigInt(r.ts) === INT64_MAX || BigInt(r.ts) === INT64_MIN + 1n;
			assert.strictEqual(got.epoch, inf ? null : BigInt(r.ts), `epoch_us of record ${r.id}`);
		}
		const schema = (await db.runAndReadAll(`SELECT name, type, converted_type, logical_type FROM parquet_schema('${file}')`))
			.getRowObjectsJson();
		const col = (n) => schema.find(x => x.name === n);
		assert.strictEqual(col('ts').type, 'INT64');
		assert.match(col('ts').logical_type, /isAdjustedToUTC=1, unit=TimeUnit\(.*MICROS=MicroSeconds/);
		assert.strictEqual(col('ntz').type, 'INT64');
		assert.match(col('ntz').logical_type, /isAdjustedToUTC=0/);
		assert.strictEqual(col('d').type, 'INT32');
		assert.strictEqual(col('d').converted_type, 'DATE');
	} finally {
		await emu.stop();
	}
});

test('JSON records: DATE days beyond 32 bits are refused at ingest, int32 and µs limits published, years below 100 parsed as such', { timeout: 60000 }, async () => {
	const emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	const table = 'main.edge.json';
	try {
		await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
		await emu.http('PUT', `/admin/tables/${table}`, { columns: COLUMNS.slice(0, 4) });
		const c = await writer(emu, table, 'JSON');
		c.call.write({ ingest_record_batch: { offset_id: 0, json_batch: { records: [
			'{"id":1,"ts":"2023-11-14T22:13:20.123456Z","ntz":"2023-11-14 22:13:20.123456","d":"2023-11-14"}',
			`{"id":2,"ts":${Number.MIN_SAFE_INTEGER},"ntz":${Number.MAX_SAFE_INTEGER},"d":${INT32_MIN}}`,
			`{"id":3,"ts":0,"ntz":0,"d":${INT32_MAX}}`,
			'{"id":4,"ts":"0001-01-01T00:00:00Z","ntz":"0099-12-31 23:59:59.999999","d":"0001-01-01"}'] } } });
		await c.waitFor(() => c.lastAck() === 0);
		c.call.write({ ingest_record: { offset_id: 1, json_record: `{"id":4,"d":${INT32_MAX + 1}}` } });
		const st = await c.status;
		c.cli.close();
		assert.strictEqual(st.code, S.INVALID_ARGUMENT);
		assert.match(st.details, /column "d" is DATE: value 2147483648 out of range/);
		await emu.http('POST', '/admin/flush');
		assert.deepStrictEqual((await D.readTable(tableDir(emu, table))).rows, [
			{ id: 1, ts: 1700000000123456, ntz: 1700000000123456, d: '2023-11-14' },
			{ id: 2, ts: Number.MIN_SAFE_INTEGER, ntz: Number.MAX_SAFE_INTEGER, d: INT32_MIN },
			{ id: 3, ts: 0, ntz: 0, d: INT32_MAX },
			{ id: 4, ts: -62135596800000000n, ntz: -59011459200000001n, d: '0001-01-01' },
		]);
	} finally {
		await emu.stop();
	}
});

test('edge values diverted to table_rejected_parquets keep their exact integers (--rejected)', { timeout: 60000 }, async () => {
	const emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	const table = 'main.edge.altered';
	try {
		await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
		await emu.http('PUT', `/admin/tables/${table}`, { columns: COLUMNS });
		const recs = edgeRecords().slice(0, 4);
		const c = await writer(emu, table);
		c.call.write({ ingest_record_batch: { offset_id: 0, proto_encoded_batch: {
			records: recs.map(r => E.encodeMessage(SPEC, r)) } } });
		await c.waitFor(() => c.lastAck() === 0);
		/* id BIGINT -> STRING: the durable records no longer fit the table. */
		await emu.http('PUT', `/admin/tables/${table}`, { columns: [{ name: 'id', type: 'STRING' }, ...COLUMNS.slice(1)] });
		await c.status;
		c.cli.close();
		await emu.http('POST', '/admin/flush');
		assert.deepStrictEqual(await H.readTable(emu.dataDir, table), []);
		const out = execFileSync(process.execPath, [H.READ, '--data-dir', emu.dataDir, '--table', table, '--rejected'],
			{ encoding: 'utf8' }).trim().split('\n');
		assert.strictEqual(out.length, recs.length);
		assert.strictEqual(out[1], '{"id":1,"ts":-9223372036854775808,"ntz":-9223372036854775808,"d":-2147483648,' +
			'"tss":[-9223372036854775808,1700000000123456,-9223372036854775808],"ds":[-2147483648,"2023-11-14"],' +
			'"st":{"at":-9223372036854775808,"on":-2147483648},"m":{"a":-9223372036854775808,"b":1700000000123456}}');
		const files = fs.readdirSync(path.join(tableDir(emu, table), '_zerobus', 'table_rejected_parquets'))
			.map(f => path.join(tableDir(emu, table), '_zerobus', 'table_rejected_parquets', f));
		assert.deepStrictEqual(await D.readParquetFiles(files, T.parseColumns(COLUMNS)), recs.map(expectedRow));
	} finally {
		await emu.stop();
	}
});

test('a table whose publication fails keeps its records pending, in order; other tables publish', { timeout: 60000 }, async () => {
	const emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	const A = 'main.edge.stuck', B = 'main.edge.free';
	const rec = (id) => E.encodeMessage(SPEC, { id, ts: BigInt(id) - 2n ** 63n, d: id });
	try {
		await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
		for (const t of [A, B])
			await emu.http('PUT', `/admin/tables/${t}`, { columns: COLUMNS });
		const a = await writer(emu, A), b = await writer(emu, B);
		a.call.write({ ingest_record: { offset_id: 0, proto_encoded_record: rec(1) } });
		b.call.write({ ingest_record: { offset_id: 0, proto_encoded_record: rec(1) } });
		await a.waitFor(() => a.lastAck() === 0);
		await b.waitFor(() => b.lastAck() === 0);
		/* A's next commit (version 1) cannot be written: a directory holds its temporary file's name. */
		const blocker = path.join(tableDir(emu, A), '_delta_log', '00000000000000000001.json.tmp');
		fs.mkdirSync(blocker);
		let f = await emu.http('POST', '/admin/flush');
		assert.strictEqual(f.status, 200);
		assert.deepStrictEqual(Object.keys(f.body.errors), [A]);
		assert.deepStrictEqual(f.body.versions, { [A]: 0, [B]: 1 });
		assert.strictEqual((await H.readTable(emu.dataDir, B)).length, 1);
		/* More records for both while A is stuck. */
		a.call.write({ ingest_record_batch: { offset_id: 1, proto_encoded_batch: { records: [rec(2), rec(3)] } } });
		b.call.write({ ingest_record: { offset_id: 1, proto_encoded_record: rec(2) } });
		await a.waitFor(() => a.lastAck() === 1);
		await b.waitFor(() => b.lastAck() === 1);
		f = await emu.http('POST', '/admin/flush');
		assert.deepStrictEqual(Object.keys(f.body.errors), [A]);
		assert.deepStrictEqual(f.body.versions, { [A]: 0, [B]: 2 });
		let stats = (await emu.http('GET', '/admin/stats')).body.tables;
		assert.strictEqual(stats[A].publish_failures, 2);
		assert.strictEqual(stats[A].records_published, 0);
		assert.strictEqual(stats[B].records_published, 2);
		assert.match(emu.stderr(), /publication of table main\.edge\.stuck failed, its durable records stay pending/);
		/* Once the commit can be written, everything A acked is published, in order, once. */
		fs.rmdirSync(blocker);
		f = await emu.http('POST', '/admin/flush');
		assert.deepStrictEqual(f.body, { versions: { [A]: 1, [B]: 2 } });
		const expect = [1, 2, 3].map(id => ({ id, ts: BigInt(id) - 2n ** 63n, d: T.dateOut(id) }));
		const pick = (rows) => rows.map(r => ({ id: r.id, ts: BigInt(r.ts), d: r.d }));
		const rowsA = (await D.readTable(tableDir(emu, A))).rows;
		assert.deepStrictEqual(pick(rowsA), expect);
		/* Absent nullable columns (NULL through the staging functions too). */
		assert.deepStrictEqual({ ...rowsA[0], ts: null, d: null },
			{ id: 1, ts: null, ntz: null, d: null, tss: null, ds: null, st: null, m: null });
		stats = (await emu.http('GET', '/admin/stats')).body.tables;
		assert.strictEqual(stats[A].records_published, 3);
		for (const c of [a, b])
			await done(c);
	} finally {
		await emu.stop();
	}
	/* A restart publishes nothing twice. */
	const emu2 = await H.startEmulator({ dataDir: emu.dataDir, args: ['--publish-interval-ms', '3600000'] });
	try {
		await emu2.http('POST', '/admin/flush');
		assert.deepStrictEqual((await D.readTable(tableDir(emu2, A))).rows.map(r => r.id), [1, 2, 3]);
		assert.deepStrictEqual((await D.readTable(tableDir(emu2, B))).rows.map(r => r.id), [1, 2]);
	} finally {
		await emu2.stop();
	}
});
