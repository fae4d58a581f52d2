'use strict';
/*
 * Protocol conformance with our own grpc-js client: stream lifecycle,
 * single and batch records, JSON and PROTO, cumulative acks, and the gRPC
 * status of each validation failure.
 */

const test = require('node:test');
const assert = require('node:assert');
const grpc = require('@grpc/grpc-js');
const H = require('./helpers');
const E = require('../lib/encode');

const S = grpc.status;
const ALL = 'main.proto.alltypes';
const SMALL = 'main.proto.small';
const ALL_COLUMNS = [
	{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'name', type: 'STRING' },
	{ name: 'ts', type: 'TIMESTAMP' }, { name: 'ntz', type: 'TIMESTAMP_NTZ' }, { name: 'd', type: 'DATE' },
	{ name: 'amt', type: 'DECIMAL(10,2)' }, { name: 'tags', type: 'ARRAY<STRING>' }, { name: 'b', type: 'BINARY' },
	{ name: 'st', type: 'STRUCT<x:INT,y:BINARY,z:ARRAY<BIGINT>>' }, { name: 'm', type: 'MAP<STRING,INT>' },
	{ name: 'v', type: 'VARIANT' }, { name: 'f', type: 'FLOAT' }, { name: 'dbl', type: 'DOUBLE' },
	{ name: 'ok', type: 'BOOLEAN' }, { name: 'sm', type: 'SMALLINT' }, { name: 'tiny', type: 'TINYINT' },
	{ name: 'i', type: 'INT' },
];
const ALL_SPEC = { name: 'AllTypes', fields: [
	{ name: 'id', number: 1, type: 'int64', label: 'required' }, { name: 'name', number: 2, type: 'string' },
	{ name: 'ts', number: 3, type: 'int64' }, { name: 'ntz', number: 4, type: 'int64' },
	{ name: 'd', number: 5, type: 'int32' }, { name: 'amt', number: 6, type: 'string' },
	{ name: 'tags', number: 7, type: 'string', label: 'repeated' }, { name: 'b', number: 8, type: 'bytes' },
	{ name: 'st', number: 9, type: 'message', typeName: 'St', fields: [
		{ name: 'x', number: 1, type: 'int32' }, { name: 'y', number: 2, type: 'bytes' },
		{ name: 'z', number: 3, type: 'int64', label: 'repeated' }] },
	{ name: 'm', number: 10, type: 'map', key: 'string', value: 'int32' },
	{ name: 'v', number: 11, type: 'string' }, { name: 'f', number: 12, type: 'float' },
	{ name: 'dbl', number: 13, type: 'double' }, { name: 'ok', number: 14, type: 'bool' },
	{ name: 'sm', number: 15, type: 'int32' }, { name: 'tiny', number: 16, type: 'int32' },
	{ name: 'i', number: 17, type: 'int32' },
] };
const SMALL_COLUMNS = [{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'name', type: 'STRING' },
	{ name: 'tiny', type: 'TINYINT' }, { name: 'amt', type: 'DECIMAL(5,2)' }, { name: 'v', type: 'VARIANT' },
	{ name: 'ts', type: 'TIMESTAMP' }, { name: 'd', type: 'DATE' }];
const SMALL_SPEC = { name: 'Small', fields: [
	{ name: 'id', number: 1, type: 'int64', label: 'required' }, { name: 'name', number: 2, type: 'string' },
	{ name: 'tiny', number: 3, type: 'int32' }, { name: 'amt', number: 4, type: 'string' },
	{ name: 'v', number: 5, type: 'string' }] };

let emu, cli;
const tokens = {};

test.before(async () => {
	emu = await H.startEmulator();
	for (const [t, c] of [[ALL, ALL_COLUMNS], [SMALL, SMALL_COLUMNS]])
		assert.strictEqual((await emu.http('PUT', `/admin/tables/${t}`, { columns: c })).status, 200);
	await emu.http('POST', '/admin/clients', { client_id: 'writer', client_secret: 'w-secret', tables: [ALL, SMALL] });
	await emu.http('POST', '/admin/tables', { name: 'main.proto.missing_soon', columns: [{ name: 'a', type: 'INT' }] });
	await emu.http('POST', '/admin/clients', { client_id: 'anyone', client_secret: 'a-secret', tables: ['*'] });
	for (const t of [ALL, SMALL])
		tokens[t] = (await H.getToken(emu, 'writer', 'w-secret', t)).body.access_token;
	tokens.nonexistent = (await H.getToken(emu, 'anyone', 'a-secret', 'main.proto.nonexistent')).body.access_token;
	cli = H.client(emu.ports.grpc_port);
});

test.after(async () => {
	cli.close();
	await emu.stop();
});

function open(table, opts = {}) {
	const { spec = table === ALL ? ALL_SPEC : SMALL_SPEC, recordType = 'PROTO', descriptor,
		createTable = table } = opts;
	const token = 'token' in opts ? opts.token : tokens[table];
	const headerTable = 'headerTable' in opts ? opts.headerTable : table;
	const c = H.openCall(cli, { token, table, headerTable });
	const cs = { table_name: createTable, record_type: recordType };
	if (recordType === 'PROTO' || recordType === null || descriptor)
		cs.descriptor_proto = descriptor || E.encodeDescriptor(spec);
	if (recordType === null)
		delete cs.record_type;
	c.call.write({ create_stream: cs });
	return c;
}

async function expectStatus(c, code, re) {
	const st = await c.status;
	assert.strictEqual(st.code, code, `expected status ${code}, got ${st.code}: ${st.details}`);
	if (re)
		assert.match(st.details, re);
	return st;
}

const created = (c) => c.waitFor(() => c.responses.some(r => r.payload === 'create_stream_response'));
const small = (o) => E.encodeMessage(SMALL_SPEC, o);

test('response headers come before create_stream; it answers a UUID stream id', async () => {
	const c = H.openCall(cli, { token: tokens[SMALL], table: SMALL, headerTable: SMALL });
	await new Promise(r => c.call.once('metadata', r));
	assert.strictEqual(c.responses.length, 0);
	c.call.write({ create_stream: { table_name: SMALL, record_type: 'PROTO', descriptor_proto: E.encodeDescriptor(SMALL_SPEC) } });
	await created(c);
	assert.match(c.responses[0].create_stream_response.stream_id, /^[0-9a-f-]{36}$/);
	c.call.end();
	await expectStatus(c, S.OK);
});

test('the record shape of our C plugin: attnum field numbers, metadata columns from 2001', async () => {
	const table = 'main.proto.cdc';
	await emu.http('PUT', `/admin/tables/${table}`, { columns: [
		{ name: 'id', type: 'INT', nullable: false }, { name: 'note', type: 'STRING' },
		{ name: 'addr', type: 'STRUCT<street:STRING,zip:INT>' },
		{ name: '_change_type', type: 'STRING', nullable: false }, { name: '_commit_lsn', type: 'BIGINT', nullable: false },
		{ name: '_commit_timestamp', type: 'TIMESTAMP', nullable: false }, { name: '_xid', type: 'BIGINT', nullable: false },
		{ name: '_seq', type: 'BIGINT', nullable: false }, { name: '_unchanged_columns', type: 'ARRAY<STRING>' }] });
	await emu.http('PUT', '/admin/clients/writer', { client_secret: 'w-secret', tables: [ALL, SMALL, table] });
	const tok = (await H.getToken(emu, 'writer', 'w-secret', table)).body.access_token;
	const spec = { name: 'public_items', fields: [
		{ name: 'id', number: 1, type: 'int32' }, { name: 'note', number: 3, type: 'string' },
		{ name: 'addr', number: 4, type: 'message', typeName: 'address', fields: [
			{ name: 'street', number: 1, type: 'string' }, { name: 'zip', number: 2, type: 'int32' }] },
		{ name: '_change_type', number: 2001, type: 'string', label: 'required' },
		{ name: '_commit_lsn', number: 2002, type: 'int64', label: 'required' },
		{ name: '_commit_timestamp', number: 2003, type: 'int64', label: 'required' },
		{ name: '_xid', number: 2004, type: 'int64', label: 'required' },
		{ name: '_seq', number: 2005, type: 'int64', label: 'required' },
		{ name: '_unchanged_columns', number: 2006, type: 'string', label: 'repeated' }] };
	const c = open(table, { token: tok, spec });
	await created(c);
	const meta = { _change_type: 'update', _commit_lsn: 23456789n, _commit_timestamp: 1700000000000001, _xid: 750, _seq: 0 };
	c.call.write({ ingest_record_batch: { offset_id: 0, proto_encoded_batch: { records: [
		E.encodeMessage(spec, { id: 1, note: 'n', addr: { street: 'Main', zip: 1234 }, ...meta }),
		E.encodeMessage(spec, { id: 2, ...meta, _seq: 1, _unchanged_columns: ['note'] })] } } });
	await c.waitFor(() => c.lastAck() === 0);
	c.call.end();
	await expectStatus(c, S.OK);
	await emu.http('POST', '/admin/flush');
	assert.deepStrictEqual(await H.readTable(emu.dataDir, table), [
		{ id: 1, note: 'n', addr: { street: 'Main', zip: 1234 }, _change_type: 'update', _commit_lsn: 23456789,
			_commit_timestamp: 1700000000000001, _xid: 750, _seq: 0, _unchanged_columns: null },
		{ id: 2, note: null, addr: null, _change_type: 'update', _commit_lsn: 23456789,
			_commit_timestamp: 1700000000000001, _xid: 750, _seq: 1, _unchanged_columns: ['note'] }]);
});

test('single and batch records are acked cumulatively, in order, and land in order', async () => {
	const c = open(ALL);
	await created(c);
	const rec = (i) => E.encodeMessage(ALL_SPEC, { id: 9007199254740993n + BigInt(i), name: `r${i}`,
		ts: 1700000000123456, ntz: -1, d: -1, amt: '-12345678.90', tags: ['a', 'b'], b: Buffer.from([0, 255]),
		st: { x: -7, y: Buffer.from('hi'), z: [1, -2, 9007199254740993n] }, m: { k: -1 }, v: '{"a":[1,null]}',
		f: 0.1, dbl: -2.5e300, ok: true, sm: -32768, tiny: 127, i: -2147483648 });
	c.call.write({ ingest_record: { offset_id: 0, proto_encoded_record: rec(0) } });
	c.call.write({ ingest_record_batch: { offset_id: 1, proto_encoded_batch: { records: [rec(1), rec(2), rec(3)] } } });
	for (let k = 2; k < 10; k++)
		c.call.write({ ingest_record: { offset_id: k, proto_encoded_record: rec(k + 2) } });
	await c.waitFor(() => c.lastAck() === 9);
	const acks = c.acks();
	assert.deepStrictEqual([...acks].sort((a, b) => a - b), acks, 'acks never decrease');
	c.call.end();
	await expectStatus(c, S.OK);
	await emu.http('POST', '/admin/flush');
	const { execFileSync } = require('node:child_process');
	const lines = execFileSync(process.execPath, [H.READ, '--data-dir', emu.dataDir, '--table', ALL],
		{ encoding: 'utf8' }).trim().split('\n');
	assert.strictEqual(lines.length, 12);
	assert.strictEqual(lines[0], '{"id":9007199254740993,"name":"r0","ts":1700000000123456,"ntz":-1,' +
		'"d":"1969-12-31","amt":"-12345678.90","tags":["a","b"],"b":"AP8=","st":{"x":-7,"y":"aGk=",' +
		'"z":[1,-2,9007199254740993]},"m":{"k":-1},"v":"{\\"a\\":[1,null]}","f":0.10000000149011612,' +
		'"dbl":-2.5e+300,"ok":true,"sm":-32768,"tiny":127,"i":-2147483648}');
	assert.deepStrictEqual(lines.map(l => JSON.parse(l).name), Array.from({ length: 12 }, (_, i) => `r${i}`));
});

test('JSON records, single and batch', async () => {
	const c = open(SMALL, { recordType: 'JSON' });
	await created(c);
	c.call.write({ ingest_record: { offset_id: 0, json_record: JSON.stringify({ id: 1, name: 'j', amt: '1.5', v: { a: 1 }, ts: '2024-01-02T03:04:05.123456Z', d: '2024-02-29' }) } });
	c.call.write({ ingest_record_batch: { offset_id: 1, json_batch: { records: [
		JSON.stringify({ id: '9223372036854775807', tiny: -128 }), JSON.stringify({ id: 3, ts: 1, d: 2 })] } } });
	await c.waitFor(() => c.lastAck() === 1);
	c.call.end();
	await expectStatus(c, S.OK);
	await emu.http('POST', '/admin/flush');
	const rows = await H.readTable(emu.dataDir, SMALL);
	const j = rows.find(r => r.name === 'j');
	assert.deepStrictEqual(j, { id: 1, name: 'j', tiny: null, amt: '1.50', v: '{"a":1}', ts: 1704164645123456, d: '2024-02-29' });
	assert.ok(rows.some(r => r.tiny === -128));
	assert.ok(rows.some(r => r.id === 3 && r.ts === 1 && r.d === '1970-01-03'));
});

const cases = [
	['no authorization header', () => open(SMALL, { token: undefined }), S.UNAUTHENTICATED, /authorization/],
	['token not from the emulator', () => open(SMALL, { token: 'abc' }), S.UNAUTHENTICATED, /not issued/],
	['tampered token', () => open(SMALL, { token: tokens[SMALL].slice(0, -2) + 'xx' }), S.UNAUTHENTICATED, /signature/],
	['table header missing', () => open(SMALL, { headerTable: undefined }), S.INVALID_ARGUMENT, /x-databricks-zerobus-table-name/],
	['table header differs from table_name', () => open(SMALL, { headerTable: ALL }), S.INVALID_ARGUMENT, /differs/],
	['token scoped to another table', () => open(SMALL, { token: tokens[ALL] }), S.PERMISSION_DENIED, /scoped to table/],
	['table does not exist', () => open('main.proto.nonexistent', { token: tokens.nonexistent, spec: SMALL_SPEC }), S.NOT_FOUND, /does not exist/],
	['table name not three parts', () => open('main.small', { token: tokens[SMALL] }), S.INVALID_ARGUMENT, /catalog\.schema\.table/],
	['record_type unspecified', () => open(SMALL, { recordType: 'RECORD_TYPE_UNSPECIFIED' }), S.INVALID_ARGUMENT, /record_type/],
	['PROTO without descriptor', () => open(SMALL, { descriptor: Buffer.alloc(0) }), S.INVALID_ARGUMENT, /requires descriptor_proto/],
	['descriptor is garbage', () => open(SMALL, { descriptor: Buffer.from([0x0a, 0x20, 1]) }), S.INVALID_ARGUMENT, /not a valid DescriptorProto/],
	['unknown column', () => open(SMALL, { spec: { name: 'X', fields: [...SMALL_SPEC.fields, { name: 'nope', number: 9, type: 'string' }] } }),
		S.INVALID_ARGUMENT, /"nope" is not a column/],
	['mismatched type', () => open(SMALL, { spec: { name: 'X', fields: [{ name: 'id', number: 1, type: 'string' }] } }),
		S.INVALID_ARGUMENT, /column "id" is BIGINT and must be int64, descriptor has string/],
	['NOT NULL column missing from descriptor', () => open(SMALL, { spec: { name: 'X', fields: [{ name: 'name', number: 2, type: 'string' }] } }),
		S.INVALID_ARGUMENT, /lacks NOT NULL column\(s\) "id"/],
	['not self-contained', () => open(ALL, { spec: { name: 'X', fields: [{ name: 'id', number: 1, type: 'int64' },
		{ name: 'ts', number: 3, type: 'message', typeName: '.google.protobuf.Timestamp', fields: [] }] },
	descriptor: (() => {
		const w = new E.Writer();
		w.lenDelim(1, Buffer.from('X'));
		const f1 = new E.Writer(); f1.lenDelim(1, Buffer.from('id')); f1.tag(3, 0); f1.varint(1); f1.tag(4, 0); f1.varint(1); f1.tag(5, 0); f1.varint(3);
		const f2 = new E.Writer(); f2.lenDelim(1, Buffer.from('st')); f2.tag(3, 0); f2.varint(9); f2.tag(4, 0); f2.varint(1); f2.tag(5, 0); f2.varint(11);
		f2.lenDelim(6, Buffer.from('.google.protobuf.Struct'));
		w.lenDelim(2, f1.finish());
		w.lenDelim(2, f2.finish());
		return w.finish();
	})() }), S.INVALID_ARGUMENT, /not self-contained/],
	['array column not repeated', () => open(ALL, { spec: { name: 'X', fields: [{ name: 'id', number: 1, type: 'int64' }, { name: 'tags', number: 7, type: 'string' }] } }),
		S.INVALID_ARGUMENT, /must be repeated/],
];

for (const [name, mk, code, re] of cases)
	test(`create fails: ${name}`, async () => {
		await expectStatus(mk(), code, re);
	});

async function ingestFails(reqs, code, re, opts = {}) {
	const c = open(SMALL, opts);
	await created(c);
	for (const r of reqs)
		c.call.write(r);
	return expectStatus(c, code, re);
}

test('first message must be create_stream', async () => {
	const c = H.openCall(cli, { token: tokens[SMALL], table: SMALL, headerTable: SMALL });
	c.call.write({ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1 }) } });
	await expectStatus(c, S.INVALID_ARGUMENT, /first message must be create_stream/);
});

test('offset gap ends the call', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1 }) } },
	{ ingest_record: { offset_id: 2, proto_encoded_record: small({ id: 2 }) } },
], S.INVALID_ARGUMENT, /offset_id 2 out of sequence: expected 1/));

test('offset regression ends the call', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1 }) } },
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 2 }) } },
], S.INVALID_ARGUMENT, /offset_id 0 out of sequence: expected 1/));

test('first offset must be 0', () => ingestFails([
	{ ingest_record: { offset_id: 5, proto_encoded_record: small({ id: 1 }) } },
], S.INVALID_ARGUMENT, /expected 0/));

test('record that does not parse', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: Buffer.from([0x08, 0xff]) } },
], S.INVALID_ARGUMENT, /record 0 of request offset_id 0: record does not parse/));

test('record lacking a NOT NULL column', () => ingestFails([
	{ ingest_record_batch: { offset_id: 0, proto_encoded_batch: { records: [small({ id: 1 }), small({ name: 'x' })] } } },
], S.INVALID_ARGUMENT, /record 1 of request offset_id 0: record lacks NOT NULL column "id"/));

test('TINYINT out of range', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1, tiny: 128 }) } },
], S.INVALID_ARGUMENT, /value 128 out of range for TINYINT column "tiny"/));

test('DECIMAL that does not fit', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1, amt: '1234.5' }) } },
], S.INVALID_ARGUMENT, /"1234.5" does not fit DECIMAL\(5,2\)/));

test('DECIMAL with too many fraction digits', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1, amt: '1.234' }) } },
], S.INVALID_ARGUMENT, /does not fit DECIMAL\(5,2\)/));

test('VARIANT that is not JSON', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 1, v: '{bad' }) } },
], S.INVALID_ARGUMENT, /VARIANT and needs JSON text/));

test('field number not in the descriptor', () => ingestFails([
	{ ingest_record: { offset_id: 0, proto_encoded_record: Buffer.concat([small({ id: 1 }), Buffer.from([0x48, 1])]) } },
], S.INVALID_ARGUMENT, /field number 9/));

test('JSON record on a PROTO stream', () => ingestFails([
	{ ingest_record: { offset_id: 0, json_record: '{"id":1}' } },
], S.INVALID_ARGUMENT, /carries JSON records on a PROTO stream/));

test('empty batch', () => ingestFails([
	{ ingest_record_batch: { offset_id: 0, proto_encoded_batch: { records: [] } } },
], S.INVALID_ARGUMENT, /is empty/));

test('JSON: unknown column, wrong type, missing NOT NULL, bad JSON', async () => {
	const j = { recordType: 'JSON' };
	await ingestFails([{ ingest_record: { offset_id: 0, json_record: '{"id":1,"zzz":2}' } }],
		S.INVALID_ARGUMENT, /"zzz", which is not a column/, j);
	await ingestFails([{ ingest_record: { offset_id: 0, json_record: '{"id":"one"}' } }],
		S.INVALID_ARGUMENT, /column "id" is BIGINT/, j);
	await ingestFails([{ ingest_record: { offset_id: 0, json_record: '{"name":"x"}' } }],
		S.INVALID_ARGUMENT, /lacks NOT NULL column "id"/, j);
	await ingestFails([{ ingest_record: { offset_id: 0, json_record: '{"id":' } }],
		S.INVALID_ARGUMENT, /JSON record does not parse/, j);
	await ingestFails([{ ingest_record: { offset_id: 0, json_record: '{"id":null}' } }],
		S.INVALID_ARGUMENT, /NOT NULL column "id" is null/, j);
});

test('rejected requests are counted, invalid streams do not write', async () => {
	const stats = (await emu.http('GET', '/admin/stats')).body;
	assert.ok(stats.tables[SMALL].invalid_requests >= 10);
});

test('record_type absent defaults to PROTO', async () => {
	const c = open(SMALL, { recordType: null });
	await created(c);
	c.call.write({ ingest_record: { offset_id: 0, proto_encoded_record: small({ id: 77 }) } });
	await c.waitFor(() => c.lastAck() === 0);
	c.call.end();
	await expectStatus(c, S.OK);
});
