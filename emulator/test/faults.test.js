'use strict';
/*
 * Fault injection knobs, per table and per stream, switched at run time
 * through the admin API, and the counters that show them.
 */

const test = require('node:test');
const assert = require('node:assert');
const grpc = require('@grpc/grpc-js');
const H = require('./helpers');

const S = grpc.status;
let emu, cli, seq = 0;
const tokens = {};

/* Each test gets its own table so table-scoped faults do not leak. */
async function freshTable() {
	const t = `main.faults.t${++seq}`;
	await emu.http('PUT', `/admin/tables/${t}`, { columns: [{ name: 'id', type: 'BIGINT', nullable: false }] });
	tokens[t] = (await H.getToken(emu, 'w', 'w', t)).body.access_token;
	return t;
}

function open(t) {
	const c = H.openCall(cli, { token: tokens[t], table: t, headerTable: t });
	c.call.write({ create_stream: { table_name: t, record_type: 'JSON' } });
	return c;
}
const created = (c) => c.waitFor(() => c.responses.some(r => r.payload === 'create_stream_response'));
const rec = (c, off, id = off) => c.call.write({ ingest_record: { offset_id: off, json_record: JSON.stringify({ id }) } });
const stats = async (t) => (await emu.http('GET', '/admin/stats')).body.tables[t];
const fault = async (body) => {
	const r = await emu.http('POST', '/admin/faults', body);
	assert.strictEqual(r.status, 200, JSON.stringify(r.body));
};

test.before(async () => {
	emu = await H.startEmulator();
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
	cli = H.client(emu.ports.grpc_port);
});

test.after(async () => {
	cli.close();
	await emu.stop();
});

test('ack_delay_ms delays acks', async () => {
	const t = await freshTable();
	await fault({ table: t, ack_delay_ms: 400 });
	const c = open(t);
	await created(c);
	const t0 = Date.now();
	rec(c, 0);
	await c.waitFor(() => c.lastAck() === 0);
	assert.ok(Date.now() - t0 >= 390, `ack came after ${Date.now() - t0} ms`);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);
});

test('withhold_acks sends no ack until cleared (per stream)', async () => {
	const t = await freshTable();
	const c = open(t);
	await created(c);
	const id = c.responses[0].create_stream_response.stream_id;
	await fault({ stream_id: id, withhold_acks: true });
	rec(c, 0);
	rec(c, 1);
	await H.until(async () => (await stats(t)).records_durable === 2);
	assert.deepStrictEqual(c.acks(), [], 'no ack while withheld');
	const other = open(t);
	await created(other);
	rec(other, 0);
	await other.waitFor(() => other.lastAck() === 0);
	assert.strictEqual((await emu.http('DELETE', `/admin/faults?stream_id=${id}`)).status, 200);
	await c.waitFor(() => c.lastAck() === 1);
	c.call.end();
	other.call.end();
	assert.strictEqual((await c.status).code, S.OK);
});

test('drop_after_records resets the connection', async () => {
	const t = await freshTable();
	await fault({ table: t, drop_after_records: 3 });
	const c = open(t);
	await created(c);
	for (let i = 0; i < 5; i++)
		rec(c, i);
	const st = await c.status;
	assert.strictEqual(st.code, S.UNAVAILABLE, st.details);
	const s = await stats(t);
	assert.strictEqual(s.connections_dropped, 1);
	assert.strictEqual(s.records_received, 3);
});

test('close_stream_signal_ms sends CloseStreamSignal, then UNAVAILABLE after the duration', async () => {
	const t = await freshTable();
	const c = open(t);
	await created(c);
	rec(c, 0);
	await c.waitFor(() => c.lastAck() === 0);
	const id = c.responses[0].create_stream_response.stream_id;
	const t0 = Date.now();
	await fault({ stream_id: id, close_stream_signal_ms: 1500 });
	await c.waitFor(() => c.responses.some(r => r.payload === 'close_stream_signal'));
	const sig = c.responses.find(r => r.payload === 'close_stream_signal').close_stream_signal;
	assert.deepStrictEqual({ s: Number(sig.duration.seconds), n: sig.duration.nanos }, { s: 1, n: 500000000 });
	rec(c, 1);
	await c.waitFor(() => c.lastAck() === 1);
	const st = await c.status;
	assert.strictEqual(st.code, S.UNAVAILABLE);
	assert.match(st.details, /Error Code: 6002/);
	assert.ok(Date.now() - t0 >= 1400);
});

test('delay_next_create_ms answers the next create late, once: a later stream is created first', async () => {
	const t = await freshTable();
	await fault({ table: t, delay_next_create_ms: 600 });
	const order = [];
	const slow = open(t);
	const fast = open(t);
	const t0 = Date.now();
	await Promise.all([created(fast).then(() => order.push('fast')), created(slow).then(() => order.push('slow'))]);
	assert.deepStrictEqual(order, ['fast', 'slow']);
	assert.ok(Date.now() - t0 >= 550, `the slow create came after ${Date.now() - t0} ms`);
	assert.deepStrictEqual((await emu.http('GET', '/admin/faults')).body.tables[t], undefined, 'the knob is cleared once used');
	for (const c of [slow, fast]) {
		rec(c, 0);
		await c.waitFor(() => c.lastAck() === 0);
		c.call.end();
		assert.strictEqual((await c.status).code, S.OK);
	}
});

test('unavailable_on_create answers UNAVAILABLE N times', async () => {
	const t = await freshTable();
	await fault({ table: t, unavailable_on_create: 2 });
	assert.strictEqual((await open(t).status).code, S.UNAVAILABLE);
	assert.strictEqual((await open(t).status).code, S.UNAVAILABLE);
	const c = open(t);
	await created(c);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);
});

test('permission_denied_on_create answers PERMISSION_DENIED N times', async () => {
	const t = await freshTable();
	await fault({ table: t, permission_denied_on_create: 2 });
	for (let i = 0; i < 2; i++) {
		const st = await open(t).status;
		assert.strictEqual(st.code, S.PERMISSION_DENIED);
		assert.match(st.details, /injected fault/);
	}
	const c = open(t);
	await created(c);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);
});

test('http_status_on_create: a proxy\'s HTTP status, no grpc-status, then the stream ends', async () => {
	const t = await freshTable();
	const other = await freshTable();
	await fault({ table: t, http_status_on_create: 503 });
	const raw = H.rawCall(emu.ports.grpc_port, { token: tokens[t], table: t });
	const res = await raw.response;
	assert.strictEqual(res[':status'], 503);
	assert.strictEqual(res['grpc-status'], undefined);
	assert.deepStrictEqual(await raw.closed, { rstCode: 0, aborted: true }, 'RST_STREAM(NO_ERROR) while the client still sends');
	raw.session.close();
	/* what a gRPC client makes of it; another table is served as usual */
	assert.strictEqual((await open(t).status).code, S.UNAVAILABLE);
	const c = open(other);
	await created(c);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);
	await fault({ table: t, http_status_on_create: 401 });
	assert.strictEqual((await open(t).status).code, S.UNAUTHENTICATED);
	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: t, http_status_on_create: 99 })).status, 400);
	await fault({ table: t, http_status_on_create: null });
	assert.deepStrictEqual((await emu.http('GET', '/admin/faults')).body.tables[t], undefined, 'null clears the knob');
	const d = open(t);
	await created(d);
	d.call.end();
	assert.strictEqual((await d.status).code, S.OK);
});

test('unavailable ends a live stream at its next request', async () => {
	const t = await freshTable();
	const c = open(t);
	await created(c);
	rec(c, 0);
	await c.waitFor(() => c.lastAck() === 0);
	await fault({ stream_id: c.responses[0].create_stream_response.stream_id, unavailable: true });
	rec(c, 1);
	assert.strictEqual((await c.status).code, S.UNAVAILABLE);
});

test('unauthenticated answers UNAUTHENTICATED once', async () => {
	const t = await freshTable();
	await fault({ table: t, unauthenticated: 1 });
	assert.strictEqual((await open(t).status).code, S.UNAUTHENTICATED);
	const c = open(t);
	await created(c);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);
});

test('resent records are counted as duplicates', async () => {
	const t = await freshTable();
	const c = open(t);
	await created(c);
	rec(c, 0, 1);
	rec(c, 1, 2);
	rec(c, 2, 1);
	await c.waitFor(() => c.lastAck() === 2);
	c.call.end();
	await c.status;
	assert.strictEqual((await stats(t)).duplicates, 1);
});

test('bad fault requests are refused', async () => {
	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: 'main.faults.x', explode: 1 })).status, 400);
	assert.strictEqual((await emu.http('POST', '/admin/faults', { ack_delay_ms: 1 })).status, 400);
	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: 'main.faults.x', ack_delay_ms: -1 })).status, 400);
});

test('lie: the protocol violations of a hostile server, for client tests', async () => {
	const payloads = (c) => c.responses.map(r => r.payload);
	const ahead = await freshTable();
	await fault({ table: ahead, lie: 'ack_ahead' });
	let c = open(ahead);
	await created(c);
	rec(c, 0);
	await c.waitFor(() => c.acks().length === 1);
	assert.deepStrictEqual(c.acks(), [1000000], 'ack claims offsets never sent');
	c.call.cancel();

	const back = await freshTable();
	await fault({ table: back, lie: 'ack_backwards' });
	c = open(back);
	await created(c);
	rec(c, 0);
	await c.waitFor(() => c.acks().length === 1);
	rec(c, 1);
	await c.waitFor(() => c.acks().length === 2);
	assert.deepStrictEqual(c.acks(), [0, -1], 'second ack goes back');
	c.call.cancel();

	const early = await freshTable();
	await fault({ table: early, lie: 'ack_before_create' });
	c = open(early);
	await created(c);
	assert.deepStrictEqual(payloads(c), ['ingest_record_response', 'create_stream_response']);
	c.call.cancel();

	const twice = await freshTable();
	await fault({ table: twice, lie: 'second_create' });
	c = open(twice);
	await c.waitFor(() => c.responses.length === 2);
	assert.deepStrictEqual(payloads(c), ['create_stream_response', 'create_stream_response']);
	c.call.cancel();

	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: twice, lie: 'nonsense' })).status, 400);
});

test('token_hold: the token endpoint holds a table\'s requests until cleared', async () => {
	const t = await freshTable();
	const other = await freshTable();
	await fault({ table: t, token_hold: true });
	const before = (await emu.http('GET', '/admin/stats')).body.token_requests_held;
	let answered = false;
	const held = H.getToken(emu, 'w', 'w', t).then(r => { answered = true; return r; });
	await H.until(async () => (await emu.http('GET', '/admin/stats')).body.token_requests_held > before);
	/* another table's token comes at once while the first is held */
	assert.strictEqual((await H.getToken(emu, 'w', 'w', other)).status, 200);
	assert.strictEqual(answered, false);
	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: t, token_hold: 1 })).status, 400);
	await fault({ table: t, token_hold: false });
	assert.strictEqual((await held).status, 200);
});

test('token_body_b64: the token endpoint answers with raw bytes', async () => {
	const t = await freshTable();
	const raw = Buffer.from([0x7b, 0xff, 0xfe, 0x0d, 0x0a, 0x7d]);
	await fault({ table: t, token_body_b64: raw.toString('base64') });
	const res = await fetch(`${emu.base}/oidc/v1/token`, {
		method: 'POST',
		headers: { authorization: 'Basic ' + Buffer.from('w:w').toString('base64'),
			'content-type': 'application/x-www-form-urlencoded' },
		body: H.tokenForm(t),
	});
	assert.strictEqual(res.status, 400);
	assert.deepStrictEqual(Buffer.from(await res.arrayBuffer()), raw);
	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: t, token_body_b64: 'not base64!' })).status, 400);
	assert.strictEqual((await emu.http('POST', '/admin/faults', { table: t, token_status: 42 })).status, 400);
	await fault({ table: t, token_body_b64: false });
	assert.strictEqual((await H.getToken(emu, 'w', 'w', t)).status, 200);
});
