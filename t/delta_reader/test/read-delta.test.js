/*
 * read-delta.test.js
 *    Fidelity of the emulator's Delta output, checked with read-delta.js (an
 *    independent reader): a table with a column of every type the emulator
 *    supports, fed edge values over gRPC (PROTO and JSON records), published,
 *    and every value read back in canonical form.  Also: a column added
 *    later reads as null in older files; older files of a column whose type
 *    was widened read promoted; a log rewritten as Delta's RENAME
 *    COLUMN would write it (column mapping by name, at every depth); a
 *    remove action; refusals (unknown type, gap in the log, a Parquet type
 *    that does not fit the Delta type).
 *
 * The emulator runs as its own process (emulator/bin via its test helpers),
 * and the records are encoded with its test encoder: that only produces the
 * input.  Reading uses nothing of the emulator.  Needs the emulator's npm
 * modules (scripts/node-modules.sh).
 */

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const READER = path.join(here, '..', 'read-delta.js');
const require = createRequire(import.meta.url);
const H = require('../../../emulator/test/helpers.js');
const E = require('../../../emulator/lib/encode.js');

const I64_MIN = -(2n ** 63n), I64_MAX = 2n ** 63n - 1n;
const I32_MIN = -(2 ** 31), I32_MAX = 2 ** 31 - 1;
const N38 = '9'.repeat(38);

/* IEEE bits of doubles (and of floats widened), written out by hand. */
const BITS = {
	inf: '7ff0000000000000', ninf: 'fff0000000000000', nan: '7ff8000000000000',
	zero: '0000000000000000', nzero: '8000000000000000',
	dmax: '7fefffffffffffff', ndmax: 'ffefffffffffffff', dmin: '0000000000000001', d01: '3fb999999999999a',
	fmax: '47efffffe0000000', fmin: '36a0000000000000', f01: '3fb99999a0000000', one: '3ff0000000000000',
};
const F = (k) => ({ f64: BITS[k] });

const COLUMNS = [
	{ name: 'id', type: 'BIGINT', nullable: false },
	{ name: 'b', type: 'BOOLEAN' },
	{ name: 'i8', type: 'TINYINT' },
	{ name: 'i16', type: 'SMALLINT' },
	{ name: 'i32', type: 'INT' },
	{ name: 'i64', type: 'BIGINT' },
	{ name: 'f32', type: 'FLOAT' },
	{ name: 'f64', type: 'DOUBLE' },
	{ name: 's', type: 'STRING' },
	{ name: 'bin', type: 'BINARY' },
	{ name: 'd', type: 'DATE' },
	{ name: 'ts', type: 'TIMESTAMP' },
	{ name: 'ntz', type: 'TIMESTAMP_NTZ' },
	{ name: 'v', type: 'VARIANT' },
	{ name: 'dec38', type: 'DECIMAL(38,10)' },
	{ name: 'dec38_0', type: 'DECIMAL(38,0)' },
	{ name: 'dec38_38', type: 'DECIMAL(38,38)' },
	{ name: 'dec9', type: 'DECIMAL(9,2)' },
	{ name: 'dec18', type: 'DECIMAL(18,4)' },
	{ name: 'arr', type: 'ARRAY<BIGINT>' },
	{ name: 'arr_nn', type: 'ARRAY<STRING>', nullable: false },
	{ name: 'arr_f', type: 'ARRAY<FLOAT>' },
	{ name: 'arr_ts', type: 'ARRAY<TIMESTAMP_NTZ>' },
	{ name: 'arr_dec', type: 'ARRAY<DECIMAL(38,2)>' },
	{ name: 'arr_st', type: 'ARRAY<STRUCT<x:INT,y:STRING,z:DOUBLE>>' },
	{ name: 'm', type: 'MAP<STRING,BIGINT>' },
	{ name: 'm_int', type: 'MAP<INT,DOUBLE>' },
	{ name: 'm_st', type: 'MAP<BIGINT,STRUCT<p:BOOLEAN,q:BINARY>>' },
	{ name: 'st', type: 'STRUCT<a:INT,s:STRING,inner:STRUCT<c:DECIMAL(10,2),l:ARRAY<TIMESTAMP>,dd:DATE>,bs:BINARY,n:BIGINT NOT NULL>' },
];

const XYZ = { name: 'Xyz', typeName: 'Xyz', fields: [
	{ name: 'x', number: 1, type: 'int32' }, { name: 'y', number: 2, type: 'string' }, { name: 'z', number: 3, type: 'double' }] };
const PQ = { name: 'Pq', fields: [{ name: 'p', number: 1, type: 'bool' }, { name: 'q', number: 2, type: 'bytes' }] };
const INNER = { name: 'Inner', typeName: 'Inner', fields: [
	{ name: 'c', number: 1, type: 'string' }, { name: 'l', number: 2, type: 'int64', label: 'repeated' },
	{ name: 'dd', number: 3, type: 'int32' }] };
const ST = { name: 'St', typeName: 'St', fields: [
	{ name: 'a', number: 1, type: 'int32' }, { name: 's', number: 2, type: 'string' },
	{ ...INNER, name: 'inner', number: 3, type: 'message' }, { name: 'bs', number: 4, type: 'bytes' },
	{ name: 'n', number: 5, type: 'int64' }] };
const SPEC = { name: 'Row', fields: [
	['id', 'int64'], ['b', 'bool'], ['i8', 'int32'], ['i16', 'int32'], ['i32', 'int32'], ['i64', 'int64'],
	['f32', 'float'], ['f64', 'double'], ['s', 'string'], ['bin', 'bytes'], ['d', 'int32'], ['ts', 'int64'],
	['ntz', 'int64'], ['v', 'string'], ['dec38', 'string'], ['dec38_0', 'string'], ['dec38_38', 'string'],
	['dec9', 'string'], ['dec18', 'string'],
].map(([name, type], i) => ({ name, type, number: i + 1 })).concat([
	{ name: 'arr', number: 20, type: 'int64', label: 'repeated' },
	{ name: 'arr_nn', number: 21, type: 'string', label: 'repeated' },
	{ name: 'arr_f', number: 22, type: 'float', label: 'repeated' },
	{ name: 'arr_ts', number: 23, type: 'int64', label: 'repeated' },
	{ name: 'arr_dec', number: 24, type: 'string', label: 'repeated' },
	{ ...XYZ, name: 'arr_st', number: 25, type: 'message', label: 'repeated' },
	{ name: 'm', number: 26, type: 'map', key: 'string', value: 'int64' },
	{ name: 'm_int', number: 27, type: 'map', key: 'int32', value: 'double' },
	{ name: 'm_st', number: 28, type: 'map', key: 'int64', value: PQ },
	{ ...ST, name: 'st', number: 29, type: 'message' },
]) };

const NULLS = Object.fromEntries(COLUMNS.map(c => [c.name, null]));
const MULTI = 'h\u00e9llo \u{1F600} \u65e5\u672c\u8a9e \u0000 nul';

/* [record sent, row expected from read-delta.js (only what is not null)]. */
const PROTO_ROWS = [
	/* 1: everything absent: NULL, but an absent NOT NULL array is empty. */
	[{ id: 1 }, { id: '1', arr_nn: [] }],
	/* 2: maxima. */
	[{ id: 2, b: true, i8: 127, i16: 32767, i32: I32_MAX, i64: I64_MAX, f32: Infinity, f64: Number.MAX_VALUE,
		s: MULTI, bin: Buffer.from([0, 0, 255, 0, 1]), d: I32_MAX, ts: I64_MAX, ntz: I64_MAX,
		v: '{"a":[1,2.5,"x"],"b":null,"c":{"d":true}}',
		dec38: '9999999999999999999999999999.9999999999', dec38_0: N38, dec38_38: '0.' + N38,
		dec9: '9999999.99', dec18: '99999999999999.9999',
		arr: [I64_MAX, I64_MIN, 0], arr_nn: ['', 'a\u0000b', '\u20ac'], arr_f: [3.4028234663852886e38, Infinity],
		arr_ts: [I64_MAX, I64_MIN, 0], arr_dec: ['999999999999999999999999999999999999.99', '-0.01'],
		arr_st: [{ x: 1, y: 'p', z: 0.1 }, {}, { x: I32_MIN }],
		m: { k1: I64_MIN, '': 0, '\u00fc': 1 }, m_int: new Map([[7, 1], [I32_MAX, NaN], [I32_MIN, -Infinity]]),
		m_st: new Map([[I64_MAX, { p: true, q: Buffer.from([0]) }], [I64_MIN, {}]]),
		st: { a: I32_MAX, s: '', inner: { c: '-99999999.99', l: [I64_MIN, I64_MAX], dd: I32_MIN },
			bs: Buffer.alloc(0), n: I64_MAX } },
	{ id: '2', b: true, i8: 127, i16: 32767, i32: I32_MAX, i64: String(I64_MAX), f32: F('inf'), f64: F('dmax'),
		s: MULTI, bin: '0000ff0001', d: I32_MAX, ts: String(I64_MAX), ntz: String(I64_MAX),
		v: '{"a":[1,2.5,"x"],"b":null,"c":{"d":true}}',
		dec38: '9999999999999999999999999999.9999999999', dec38_0: N38, dec38_38: '0.' + N38,
		dec9: '9999999.99', dec18: '99999999999999.9999',
		arr: [String(I64_MAX), String(I64_MIN), '0'], arr_nn: ['', 'a\u0000b', '\u20ac'], arr_f: [F('fmax'), F('inf')],
		arr_ts: [String(I64_MAX), String(I64_MIN), '0'], arr_dec: ['999999999999999999999999999999999999.99', '-0.01'],
		arr_st: [{ x: 1, y: 'p', z: F('d01') }, { x: null, y: null, z: null }, { x: I32_MIN, y: null, z: null }],
		m: [['k1', String(I64_MIN)], ['', '0'], ['\u00fc', '1']], m_int: [[7, F('one')], [I32_MAX, F('nan')], [I32_MIN, F('ninf')]],
		m_st: [[String(I64_MAX), { p: true, q: '00' }], [String(I64_MIN), { p: null, q: null }]],
		st: { a: I32_MAX, s: '', inner: { c: '-99999999.99', l: [String(I64_MIN), String(I64_MAX)], dd: I32_MIN },
			bs: '', n: String(I64_MAX) } }],
	/* 3: minima. */
	[{ id: 3, b: false, i8: -128, i16: -32768, i32: I32_MIN, i64: I64_MIN, f32: -Infinity, f64: -Number.MAX_VALUE,
		s: '\ufeffbom first', bin: Buffer.alloc(0), d: I32_MIN, ts: I64_MIN, ntz: I64_MIN, v: '"just a string"',
		dec38: '-9999999999999999999999999999.9999999999', dec38_0: '-' + N38, dec38_38: '-0.' + N38,
		dec9: '-9999999.99', dec18: '-99999999999999.9999', arr: [I64_MIN], arr_nn: ['x'],
		st: { n: I64_MIN } },
	{ id: '3', b: false, i8: -128, i16: -32768, i32: I32_MIN, i64: String(I64_MIN), f32: F('ninf'), f64: F('ndmax'),
		s: '\ufeffbom first', bin: '', d: I32_MIN, ts: String(I64_MIN), ntz: String(I64_MIN), v: '"just a string"',
		dec38: '-9999999999999999999999999999.9999999999', dec38_0: '-' + N38, dec38_38: '-0.' + N38,
		dec9: '-9999999.99', dec18: '-99999999999999.9999', arr: [String(I64_MIN)], arr_nn: ['x'],
		st: { a: null, s: null, inner: null, bs: null, n: String(I64_MIN) } }],
	/* 4: small and short values; decimal text padded to the scale. */
	[{ id: 4, i8: 0, f32: 1.401298464324817e-45, f64: 5e-324, d: 0, ts: 0, ntz: -1, v: 'null',
		dec38: '0.0000000001', dec38_0: '0', dec38_38: '0.00000000000000000000000000000000000001',
		dec9: '-0.01', dec18: '7', arr_f: [0.1], arr_dec: ['1.5', '-2'],
		st: { inner: {}, n: 0 } },
	{ id: '4', i8: 0, f32: F('fmin'), f64: F('dmin'), d: 0, ts: '0', ntz: '-1', v: 'null',
		dec38: '0.0000000001', dec38_0: '0', dec38_38: '0.00000000000000000000000000000000000001',
		dec9: '-0.01', dec18: '7.0000', arr_nn: [], arr_f: [F('f01')], arr_dec: ['1.50', '-2.00'],
		st: { a: null, s: null, inner: { c: null, l: null, dd: null }, bs: null, n: '0' } }],
	/* 5: NaN in both widths, 0.1. */
	[{ id: 5, f32: NaN, f64: NaN, dec9: '.5', dec18: '-.0001', arr_st: [{ z: -Infinity }] },
	{ id: '5', f32: F('nan'), f64: F('nan'), dec9: '0.50', dec18: '-0.0001', arr_nn: [],
		arr_st: [{ x: null, y: null, z: F('ninf') }] }],
	/* 6: -0.0 (checked on its own). */
	[{ id: 6, f32: -0, f64: -0, arr_f: [-0], m_int: new Map([[0, -0]]) },
	{ id: '6', f32: F('nzero'), f64: F('nzero'), arr_nn: [], arr_f: [F('nzero')], m_int: [[0, F('nzero')]] }],
];

/*
 * PROTO records the test encoder cannot write, as bytes: a repeated field
 * present with no elements (a packed field of length 0) and a map entry
 * without its value field.
 */
function rawRecord() {
	const w = new E.Writer();
	w.raw(E.encodeMessage(SPEC, { id: 9 }));
	w.lenDelim(20, Buffer.alloc(0));				/* arr: packed, no elements */
	const entry = new E.Writer();
	entry.tag(1, 0);
	entry.varint(3);
	w.lenDelim(27, entry.finish());				/* m_int: {key 3}, no value */
	return w.finish();
}
const RAW_ROWS = [[rawRecord(), { id: '9', arr: [], arr_nn: [], m_int: [[3, null]] }]];

/* JSON records, published in a second data file. */
const JSON_ROWS = [
	/* Empty (not NULL) array and map in nullable columns, a NULL map value, a NULL inner struct. */
	['{"id":7,"arr_nn":[],"arr":[],"m":{},"m_int":{"5":null},"arr_st":[],"st":{"n":1,"inner":null},"v":{"k":[1,"2"]}}',
		{ id: '7', arr: [], arr_nn: [], m: [], m_int: [[5, null]], arr_st: [],
			st: { a: null, s: null, inner: null, bs: null, n: '1' }, v: '{"k":[1,"2"]}' }],
	['{"id":8,"arr_nn":[],"i64":"-9223372036854775808","f64":0.5,"d":"0001-01-01","ts":"1970-01-01T00:00:00.000001Z","bin":"AP8A"}',
		{ id: '8', i64: String(I64_MIN), f64: { f64: '3fe0000000000000' }, d: -719162, ts: '1', bin: '00ff00', arr_nn: [] }],
];

const full = (r) => ({ ...NULLS, ...r });

function tmpDir(tag) {
	return fs.mkdtempSync(path.join(os.tmpdir(), `zbdr-${tag}-`));
}

/* Run read-delta.js on dir: {status, rows (parsed JSON lines), stderr}. */
function readDelta(dir) {
	const r = spawnSync(process.execPath, [READER, dir], { encoding: 'utf8' });
	const rows = r.status === 0 ? r.stdout.split('\n').filter(Boolean).map(l => JSON.parse(l)) : null;
	return { status: r.status, rows, stdout: r.stdout, stderr: r.stderr };
}

async function stream(emu, table, recordType, descriptor) {
	const tok = (await H.getToken(emu, 'w', 'w', table)).body.access_token;
	const cli = H.client(emu.ports.grpc_port);
	const c = H.openCall(cli, { token: tok, table, headerTable: table });
	c.call.write({ create_stream: { table_name: table, record_type: recordType,
		...(descriptor ? { descriptor_proto: descriptor } : {}) } });
	await c.waitFor(() => c.responses.length > 0);
	c.close = async () => {
		c.call.end();
		await c.status;
		cli.close();
		assert.equal(c.final.code, 0, `stream ended with ${JSON.stringify(c.final)}`);
	};
	return c;
}

/* Rewrite the log of a copy of the table: append a commit of these actions. */
function appendCommit(dir, actions) {
	const log = path.join(dir, '_delta_log');
	const v = fs.readdirSync(log).filter(f => /^\d{20}\.json$/.test(f)).length;
	fs.writeFileSync(path.join(log, String(v).padStart(20, '0') + '.json'),
		actions.map(a => JSON.stringify(a)).join('\n') + '\n');
}

function lastMetaData(dir) {
	const log = path.join(dir, '_delta_log');
	let md = null;
	for (const f of fs.readdirSync(log).sort())
		for (const l of fs.readFileSync(path.join(log, f), 'utf8').split('\n').filter(Boolean))
			md = JSON.parse(l).metaData || md;
	return md;
}

let emu = null;
let tableDir = null;
let expected = null;
let workDir = null;

test.before(async () => {
	workDir = tmpDir('work');
	emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	const table = 'main.fidelity.every_type';
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
	const put = await emu.http('PUT', `/admin/tables/${table}`, { columns: COLUMNS });
	assert.equal(put.status, 200, JSON.stringify(put.body));

	const p = await stream(emu, table, 'PROTO', E.encodeDescriptor(SPEC));
	p.call.write({ ingest_record_batch: { offset_id: 0, proto_encoded_batch: {
		records: [...PROTO_ROWS.map(([r]) => E.encodeMessage(SPEC, r)), ...RAW_ROWS.map(([r]) => r)] } } });
	await p.waitFor(() => p.lastAck() === 0 || p.final !== null);
	await p.close();
	let f = await emu.http('POST', '/admin/flush');
	assert.deepEqual(f.body, { versions: { [table]: 1 } });

	const j = await stream(emu, table, 'JSON');
	j.call.write({ ingest_record_batch: { offset_id: 0, json_batch: { records: JSON_ROWS.map(([r]) => r) } } });
	await j.waitFor(() => j.lastAck() === 0 || j.final !== null);
	await j.close();
	f = await emu.http('POST', '/admin/flush');
	assert.deepEqual(f.body, { versions: { [table]: 2 } });

	/* A nullable column added later: older files lack it. */
	const alter = await emu.http('PUT', `/admin/tables/${table}`,
		{ columns: [...COLUMNS, { name: 'added', type: 'STRING' }] });
	assert.equal(alter.status, 200, JSON.stringify(alter.body));
	f = await emu.http('POST', '/admin/flush');
	assert.deepEqual(f.body, { versions: { [table]: 3 } });

	tableDir = path.join(emu.dataDir, 'tables', 'main', 'fidelity', 'every_type');
	expected = [...PROTO_ROWS, ...RAW_ROWS, ...JSON_ROWS].map(([, e]) => ({ ...full(e), added: null }));
});

test.after(async () => {
	if (emu) {
		await emu.stop();
		fs.rmSync(emu.dataDir, { recursive: true, force: true });
	}
	if (workDir)
		fs.rmSync(workDir, { recursive: true, force: true });
});

/* -0.0 is checked on its own (the test below). */
function withoutNegZero(rows, sfx = '') {
	const drop = Object.fromEntries(['f32', 'f64', 'arr_f', 'm_int'].map(k => [k + sfx, null]));
	return rows.map(r => (r['id' + sfx] === '6' ? { ...r, ...drop } : r));
}

test('every type, edge values: read back exactly', () => {
	const r = readDelta(tableDir);
	assert.equal(r.status, 0, r.stderr);
	assert.equal(r.rows.length, expected.length);
	assert.deepEqual(withoutNegZero(r.rows), withoutNegZero(expected));
	/* Keys in schema order, logical names. */
	assert.deepEqual(Object.keys(r.rows[0]), [...COLUMNS.map(c => c.name), 'added']);
});

test('-0.0 survives in FLOAT and DOUBLE (columns, array elements, map values)', () => {
	const r = readDelta(tableDir);
	assert.equal(r.status, 0, r.stderr);
	const row = r.rows.find(x => x.id === '6');
	assert.deepEqual({ f32: row.f32, f64: row.f64, arr_f: row.arr_f, m_int: row.m_int },
		{ f32: F('nzero'), f64: F('nzero'), arr_f: [F('nzero')], m_int: [[0, F('nzero')]] });
});

test('column mapping by name (a RENAME COLUMN commit), at every depth; a later remove action', () => {
	const dir = path.join(workDir, 'renamed');
	fs.cpSync(tableDir, dir, { recursive: true });
	const md = lastMetaData(dir);
	const schema = JSON.parse(md.schemaString);
	let id = 0;
	/* Every struct field gets logical name "<name>_r" and keeps its Parquet name as physical name. */
	const rename = (t) => {
		if (typeof t !== 'object')
			return t;
		if (t.type === 'array')
			return { ...t, elementType: rename(t.elementType) };
		if (t.type === 'map')
			return { ...t, keyType: rename(t.keyType), valueType: rename(t.valueType) };
		return { ...t, fields: t.fields.map(f => ({ ...f, name: f.name + '_r', type: rename(f.type),
			metadata: { ...f.metadata, 'delta.columnMapping.id': ++id, 'delta.columnMapping.physicalName': f.name } })) };
	};
	appendCommit(dir, [
		{ commitInfo: { operation: 'RENAME COLUMN' } },
		{ protocol: { minReaderVersion: 2, minWriterVersion: 5 } },
		{ metaData: { ...md, schemaString: JSON.stringify(rename(schema)),
			configuration: { 'delta.columnMapping.mode': 'name', 'delta.columnMapping.maxColumnId': String(id) } } },
	]);
	const renameValue = (v, t) => {
		if (v === null)
			return null;
		switch (t.kind) {
			case 'struct':
				return Object.fromEntries(t.fields.map(f => [f.name + '_r', renameValue(v[f.name], f.type)]));
			case 'array':
				return v.map(e => renameValue(e, t.element));
			case 'map':
				return v.map(([k, x]) => [k, renameValue(x, t.value)]);
			default:
				return v;
		}
	};
	/* The struct types of the columns, enough for renameValue(). */
	const S = (...names) => ({ kind: 'struct', fields: names.map(n => (typeof n === 'string' ? { name: n, type: {} } : n)) });
	const inner = { name: 'inner', type: S('c', 'l', 'dd') };
	const rowType = S(...COLUMNS.map(c => c.name), 'added');
	rowType.fields.find(f => f.name === 'arr_st').type = { kind: 'array', element: S('x', 'y', 'z') };
	rowType.fields.find(f => f.name === 'm_st').type = { kind: 'map', value: S('p', 'q') };
	rowType.fields.find(f => f.name === 'st').type = S('a', 's', inner, 'bs', 'n');
	const want = expected.map(r => renameValue(r, rowType));

	let r = readDelta(dir);
	assert.equal(r.status, 0, r.stderr);
	assert.deepEqual(withoutNegZero(r.rows, '_r'), withoutNegZero(want, '_r'));
	assert.deepEqual(r.rows[1].st_r.inner_r, { c_r: '-99999999.99', l_r: [String(I64_MIN), String(I64_MAX)], dd_r: I32_MIN });

	/* Removing the first data file leaves the JSON records only. */
	const first = fs.readFileSync(path.join(dir, '_delta_log', '00000000000000000001.json'), 'utf8')
		.split('\n').filter(Boolean).map(l => JSON.parse(l)).find(a => a.add).add;
	appendCommit(dir, [{ remove: { path: first.path, dataChange: true, deletionTimestamp: 0 } }]);
	r = readDelta(dir);
	assert.equal(r.status, 0, r.stderr);
	assert.deepEqual(r.rows.map(x => x.id_r), ['7', '8']);
});

test('type widening: files written before a type change read promoted to the new type', () => {
	const dir = path.join(workDir, 'widened');
	fs.cpSync(tableDir, dir, { recursive: true });
	const md = lastMetaData(dir);
	const schema = JSON.parse(md.schemaString);
	const widen = { i8: 'short', i16: 'long', i32: 'decimal(12,2)', f32: 'double', d: 'timestamp_ntz', dec9: 'decimal(11,4)' };
	for (const f of schema.fields)
		if (widen[f.name])
			f.type = widen[f.name];
	appendCommit(dir, [
		{ commitInfo: { operation: 'CHANGE COLUMN' } },
		{ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['typeWidening'], writerFeatures: ['typeWidening'] } },
		{ metaData: { ...md, schemaString: JSON.stringify(schema) } },
	]);
	const promoted = (v, f) => (v === null ? null : f(v));
	const want = expected.map(r => ({ ...r,
		i16: promoted(r.i16, v => String(v)),
		i32: promoted(r.i32, v => `${v}.00`),
		d: promoted(r.d, v => String(BigInt(v) * 86400000000n)),
		dec9: promoted(r.dec9, v => `${v}00`) }));
	const r = readDelta(dir);
	assert.equal(r.status, 0, r.stderr);
	assert.deepEqual(withoutNegZero(r.rows), withoutNegZero(want));
	assert.equal(r.rows.find(x => x.i32 !== null && x.i32.startsWith('-')).i32, `${I32_MIN}.00`);
});

test('refusals: exit 1 with a message on stderr', () => {
	const bad = (tag, edit) => {
		const dir = path.join(workDir, tag);
		fs.cpSync(tableDir, dir, { recursive: true });
		edit(dir);
		const r = readDelta(dir);
		assert.equal(r.status, 1, `${tag}: ${r.stdout}`);
		assert.equal(r.stdout, '');
		return r.stderr;
	};
	const withType = (dir, name, type) => {
		const md = lastMetaData(dir);
		const schema = JSON.parse(md.schemaString);
		schema.fields.find(f => f.name === name).type = type;
		appendCommit(dir, [{ metaData: { ...md, schemaString: JSON.stringify(schema) } }]);
	};
	assert.match(bad('unknown', (d) => withType(d, 'v', 'variant')), /v: unknown Delta type "variant"/);
	assert.match(bad('mismatch', (d) => withType(d, 'i64', 'integer')), /i64: Delta type integer is stored as Parquet INT64/);
	assert.match(bad('scale', (d) => withType(d, 'dec9', 'decimal(9,3)')), /dec9: Delta type decimal\(9,3\) is stored as Parquet INT32 DECIMAL/);
	assert.match(bad('ntz', (d) => withType(d, 'ts', 'timestamp_ntz')), /ts: Delta type timestamp_ntz is stored as Parquet INT64/);
	assert.match(bad('narrowing', (d) => withType(d, 'dec18', 'decimal(18,5)')), /dec18: Delta type decimal\(18,5\) is stored as Parquet INT64 DECIMAL/);
	assert.match(bad('intdec', (d) => withType(d, 'i32', 'decimal(9,0)')), /i32: Delta type decimal\(9,0\) is stored as Parquet INT32/);
	assert.match(bad('gap', (d) => fs.rmSync(path.join(d, '_delta_log', '00000000000000000001.json'))),
		/commit 00000000000000000002\.json where version 1 was expected/);
	assert.match(bad('nolog', (d) => fs.rmSync(path.join(d, '_delta_log'), { recursive: true })), /cannot list/);
	assert.match(bad('garbled', (d) => fs.appendFileSync(path.join(d, '_delta_log', '00000000000000000002.json'), '{oops\n')),
		/line 3 is not JSON/);
	assert.match(bad('idmode', (d) => {
		const md = lastMetaData(d);
		appendCommit(d, [{ metaData: { ...md, configuration: { 'delta.columnMapping.mode': 'id' } } }]);
	}), /column mapping mode "id" is not supported/);
});

test('the Parquet files: DuckDB writes them, snappy, and the emulator writes no checkpoint', () => {
	const log = fs.readdirSync(path.join(tableDir, '_delta_log'));
	assert.deepEqual(log.filter(f => !/^\d{20}\.json$/.test(f)), []);
	const data = fs.readdirSync(tableDir).filter(f => f.endsWith('.parquet'));
	assert.equal(data.length, 2);
	assert.ok(data.every(f => f.endsWith('.snappy.parquet')));
});
