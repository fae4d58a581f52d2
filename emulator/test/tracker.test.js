'use strict';
/*
 * The oracle's hooks (--track-transactions): GET /admin/durable reports the
 * durable (_xid, _seq) records per table and transaction, resent records
 * counted once, and a restarted emulator reports again everything its log
 * holds; POST /admin/streams/expire_idle ends the streams that owe nothing.
 */

const test = require('node:test');
const assert = require('node:assert');
const grpc = require('@grpc/grpc-js');
const E = require('../lib/encode');
const H = require('./helpers');

const S = grpc.status;
const TABLE = 'main.cdc.tracked';
const SPEC = { name: 'Tracked', fields: [
	{ name: 'id', number: 1, type: 'int64' },
	{ name: '_xid', number: 2004, type: 'int64' },
	{ name: '_seq', number: 2005, type: 'int64' },
] };
const ARGS = ['--track-transactions', 'true', '--compact-bytes', String(2 ** 40)];

async function setup(emu) {
	await emu.http('PUT', `/admin/tables/${TABLE}`, { columns: [
		{ name: 'id', type: 'BIGINT' },
		{ name: '_xid', type: 'BIGINT', nullable: false },
		{ name: '_seq', type: 'BIGINT', nullable: false },
	] });
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
}

async function open(emu, cli) {
	const token = (await H.getToken(emu, 'w', 'w', TABLE)).body.access_token;
	const c = H.openCall(cli, { token, table: TABLE, headerTable: TABLE });
	c.call.write({ create_stream: { table_name: TABLE, record_type: 'PROTO',
		descriptor_proto: E.encodeDescriptor(SPEC) } });
	await c.waitFor(() => c.responses.some(r => r.payload === 'create_stream_response'));
	return c;
}

/* Sends one request of records [xid, seq] at offset off; waits for its ack. */
async function send(c, off, records) {
	c.call.write({ ingest_record_batch: { offset_id: off, proto_encoded_batch: {
		records: records.map(([xid, seq]) => E.encodeMessage(SPEC, { id: seq, _xid: xid, _seq: seq })) } } });
	await c.waitFor(() => c.lastAck() === off);
}

/* The feed folded into {xid: count}, from a generation and index. */
async function held(emu, from = 0, generation = '') {
	const r = await emu.http('GET', `/admin/durable?from=${from}&generation=${generation}`);
	assert.strictEqual(r.status, 200, JSON.stringify(r.body));
	const counts = {};
	for (const [table, xid, n] of r.body.changes) {
		assert.strictEqual(table, TABLE);
		counts[xid] = n;
	}
	return { counts, ...r.body };
}

test('durable records per transaction, across a kill -9', async () => {
	let emu = await H.startEmulator({ args: ARGS });
	await setup(emu);
	let cli = H.client(emu.ports.grpc_port);
	const c = await open(emu, cli);
	await send(c, 0, [[700, 0], [700, 1], [701, 0]]);
	const first = await held(emu);
	assert.deepStrictEqual(first.counts, { 700: 2, 701: 1 });

	/* resent records count once; the feed goes on from where it was read */
	await send(c, 1, [[700, 1], [700, 2], [701, 0]]);
	const second = await held(emu, first.next, first.generation);
	assert.deepStrictEqual(second.counts, { 700: 3, 701: 1 });
	assert.strictEqual(second.generation, first.generation);
	assert.strictEqual((await held(emu, second.next, second.generation)).changes.length, 0,
		'entries read are dropped');

	/* a restart reports everything the log holds, under a new generation */
	c.call.cancel();
	cli.close();
	const dataDir = emu.dataDir;
	await emu.kill9();
	emu = await H.startEmulator({ dataDir, args: ARGS });
	const after = await held(emu, second.next, second.generation);
	assert.notStrictEqual(after.generation, first.generation);
	assert.deepStrictEqual(after.counts, { 700: 3, 701: 1 });
	await emu.stop();
});

test('expire_idle ends the streams that owe nothing and were idle that long', async () => {
	const emu = await H.startEmulator({ args: ARGS });
	await setup(emu);
	const cli = H.client(emu.ports.grpc_port);
	const c = await open(emu, cli);
	await send(c, 0, [[1, 0]]);
	let r = await emu.http('POST', '/admin/streams/expire_idle', { idle_ms: 60000 });
	assert.deepStrictEqual(r.body, { expired: 0 }, 'not idle for a minute');
	r = await emu.http('POST', '/admin/streams/expire_idle', { idle_ms: 0 });
	assert.deepStrictEqual(r.body, { expired: 1 });
	const st = await c.status;
	assert.strictEqual(st.code, S.UNAVAILABLE);
	assert.match(st.details, /Stream timeout reached/);
	assert.strictEqual((await emu.http('GET', '/admin/stats')).body.streams_expired, 1);
	cli.close();
	await emu.stop();
});
