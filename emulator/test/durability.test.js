'use strict';
/*
 * Durability before ack: kill -9 the emulator while a client streams, then
 * restart it on the same data directory; every record acked before the kill
 * must be in the Delta table exactly once, including records published
 * before the kill (no double publication on replay).
 */

const test = require('node:test');
const assert = require('node:assert');
const H = require('./helpers');

const TABLE = 'main.durable.events';
const BATCH = 50;

async function streamUntilKilled(emu, first, batches, killAfterAck) {
	const tok = (await H.getToken(emu, 'w', 'w', TABLE)).body.access_token;
	const cli = H.client(emu.ports.grpc_port);
	const c = H.openCall(cli, { token: tok, table: TABLE, headerTable: TABLE });
	c.call.write({ create_stream: { table_name: TABLE, record_type: 'JSON' } });
	await c.waitFor(() => c.responses.length > 0);
	const ids = (b) => Array.from({ length: BATCH }, (_, k) => first + b * BATCH + k);
	let sent = 0;
	const pump = () => {
		while (sent < batches && sent - c.lastAck() <= 8) {
			const recs = ids(sent).map(id => JSON.stringify({ id, payload: `record ${id}` }));
			c.call.write({ ingest_record_batch: { offset_id: sent, json_batch: { records: recs } } });
			sent++;
		}
	};
	c.call.on('data', pump);
	pump();
	await c.waitFor(() => c.lastAck() >= killAfterAck, 20000);
	if (killAfterAck < batches - 1)
		await emu.kill9();
	const acked = [];
	for (let b = 0; b <= c.lastAck(); b++)
		acked.push(...ids(b));
	cli.close();
	return { acked, sent };
}

test('kill -9 loses no acked record; restart publishes what was durable', async () => {
	const emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	await emu.http('PUT', `/admin/tables/${TABLE}`, { columns: [
		{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'payload', type: 'STRING' }] });
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: [TABLE] });

	/* Phase 1: ingested and published before the crash. */
	const p1 = await streamUntilKilled(emu, 0, 10, 9);
	await emu.http('POST', '/admin/flush');
	assert.strictEqual((await H.readTable(emu.dataDir, TABLE)).length, 10 * BATCH);

	/* Phase 2: kill -9 while records are in flight. */
	const p2 = await streamUntilKilled(emu, 1000000, 400, 150);
	assert.ok(p2.sent > 150, 'requests were still in flight at the kill');

	const again = await H.startEmulator({ dataDir: emu.dataDir });
	try {
		assert.match(again.stderr(), /recovered \d+ durable records not yet published/);
		await again.http('POST', '/admin/flush');
		const rows = await H.readTable(again.dataDir, TABLE);
		const count = new Map();
		for (const r of rows)
			count.set(r.id, (count.get(r.id) || 0) + 1);
		for (const id of p1.acked.concat(p2.acked))
			assert.strictEqual(count.get(id), 1, `acked record ${id} must be in the table exactly once`);
		assert.ok(rows.every(r => r.payload === `record ${r.id}`));
		const st = (await again.http('GET', '/admin/stats')).body;
		assert.ok(st.tables[TABLE].delta_version >= 2);
	} finally {
		await again.stop();
	}
});

test('a torn log tail is cut off at restart', async () => {
	const fs = require('node:fs');
	const path = require('node:path');
	const emu = await H.startEmulator();
	await emu.http('PUT', `/admin/tables/${TABLE}`, { columns: [{ name: 'id', type: 'BIGINT', nullable: false },
		{ name: 'payload', type: 'STRING' }] });
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: [TABLE] });
	const p = await streamUntilKilled(emu, 0, 5, 4);
	await emu.kill9();
	const wal = path.join(emu.dataDir, 'emulator.wal');
	fs.appendFileSync(wal, Buffer.from([200, 0, 0, 0, 1, 2, 3]));
	const again = await H.startEmulator({ dataDir: emu.dataDir });
	try {
		await again.http('POST', '/admin/flush');
		const ids = new Set((await H.readTable(again.dataDir, TABLE)).map(r => r.id));
		assert.ok(p.acked.every(id => ids.has(id)));
		assert.ok(fs.statSync(wal).size > 16);
	} finally {
		await again.stop();
	}
});

test('log compaction keeps live streams and loses nothing across kill -9', async () => {
	const emu = await H.startEmulator({ args: ['--compact-bytes', '1', '--publish-interval-ms', '3600000'] });
	await emu.http('PUT', `/admin/tables/${TABLE}`, { columns: [{ name: 'id', type: 'BIGINT', nullable: false },
		{ name: 'payload', type: 'STRING' }] });
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: [TABLE] });
	const tok = (await H.getToken(emu, 'w', 'w', TABLE)).body.access_token;
	const cli = H.client(emu.ports.grpc_port);
	const c = H.openCall(cli, { token: tok, table: TABLE, headerTable: TABLE });
	c.call.write({ create_stream: { table_name: TABLE, record_type: 'JSON' } });
	const send = (off, id) => c.call.write({ ingest_record: { offset_id: off,
		json_record: JSON.stringify({ id, payload: `record ${id}` }) } });
	for (let i = 0; i < 5; i++)
		send(i, i);
	await c.waitFor(() => c.lastAck() === 4);
	await emu.http('POST', '/admin/flush');
	await H.until(() => /log compacted/.test(emu.stderr()));
	/* The live stream goes on after compaction; its records must survive a crash. */
	for (let i = 5; i < 10; i++)
		send(i, i);
	await c.waitFor(() => c.lastAck() === 9);
	await emu.kill9();
	cli.close();
	const again = await H.startEmulator({ dataDir: emu.dataDir });
	try {
		assert.match(again.stderr(), /recovered 5 durable records not yet published/);
		await again.http('POST', '/admin/flush');
		const ids = (await H.readTable(again.dataDir, TABLE)).map(r => r.id);
		assert.deepStrictEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
	} finally {
		await again.stop();
	}
});

/*
 * Regression guard for a report of a stream stalling "right after log
 * compacted": compaction runs between bursts of pipelined requests on a live
 * stream (flushes race the requests in flight), and the stream must stay
 * registered, get every request acked and end with OK at half-close.
 */
test('repeated compaction between pipelined bursts keeps the live stream acking', async () => {
	const emu = await H.startEmulator({ args: ['--compact-bytes', '1', '--publish-interval-ms', '3600000'] });
	try {
		await emu.http('PUT', `/admin/tables/${TABLE}`, { columns: [{ name: 'id', type: 'BIGINT', nullable: false },
			{ name: 'payload', type: 'STRING' }] });
		await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: [TABLE] });
		const tok = (await H.getToken(emu, 'w', 'w', TABLE)).body.access_token;
		const cli = H.client(emu.ports.grpc_port);
		const c = H.openCall(cli, { token: tok, table: TABLE, headerTable: TABLE });
		c.call.write({ create_stream: { table_name: TABLE, record_type: 'JSON' } });
		await c.waitFor(() => c.responses.length > 0);
		const ROUNDS = 6, BURST = 20, N = 25;
		let off = 0;
		for (let r = 0; r < ROUNDS; r++) {
			const before = (emu.stderr().match(/log compacted/g) || []).length;
			const flushes = [];
			for (let b = 0; b < BURST; b++, off++) {
				const recs = Array.from({ length: N }, (_, k) => JSON.stringify({ id: off * N + k, payload: `r${off}` }));
				c.call.write({ ingest_record_batch: { offset_id: off, json_batch: { records: recs } } });
				if (b % 5 === 0)
					flushes.push(emu.http('POST', '/admin/flush'));
			}
			await Promise.all(flushes);
			await c.waitFor(() => c.lastAck() === off - 1);
			await emu.http('POST', '/admin/flush');
			await H.until(() => (emu.stderr().match(/log compacted/g) || []).length > before);
			const live = (await emu.http('GET', '/admin/streams')).body;
			assert.strictEqual(live.length, 1, `round ${r}: the stream stays registered after compaction`);
			assert.strictEqual(live[0].acked_up_to, off - 1);
		}
		c.call.end();
		assert.strictEqual((await c.status).code, 0);
		assert.deepStrictEqual(c.acks().slice(-1), [ROUNDS * BURST - 1]);
		await emu.http('POST', '/admin/flush');
		const ids = (await H.readTable(emu.dataDir, TABLE)).map(r => r.id).sort((a, b) => a - b);
		assert.deepStrictEqual(ids, Array.from({ length: ROUNDS * BURST * N }, (_, i) => i));
		cli.close();
	} finally {
		await emu.stop();
	}
});
