'use strict';
/*
 * The service model of lib/settings.js: the admin settings API and the
 * command line, time to durability, per-stream quotas, the server's stream
 * lifetime, RST_STREAM after trailers, the message size limit, the
 * zerobuswrite operation, and the user-agents the emulator records.  Each
 * test puts back the fast profile.
 */

const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const H = require('./helpers');

const S = grpc.status;
const COLUMNS = [{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'payload', type: 'STRING' }];
let emu, cli, seq = 0;
const tokens = {};

async function freshTable() {
	const t = `main.model.t${++seq}`;
	await emu.http('PUT', `/admin/tables/${t}`, { columns: COLUMNS });
	tokens[t] = (await H.getToken(emu, 'w', 'w', t, { operations: ['zerobuswrite'] })).body.access_token;
	return t;
}

function open(t, token = tokens[t], client = cli) {
	const c = H.openCall(client, { token, table: t, headerTable: t });
	c.call.write({ create_stream: { table_name: t, record_type: 'JSON' } });
	return c;
}
const created = (c) => c.waitFor(() => c.responses.some(r => r.payload === 'create_stream_response'));
const batch = (c, off, n, payload = '') => c.call.write({ ingest_record_batch: { offset_id: off, json_batch: {
	records: Array.from({ length: n }, (_, k) => JSON.stringify({ id: off * n + k, payload })) } } });
const settings = async (body) => {
	const r = await emu.http('PUT', '/admin/settings', body);
	assert.strictEqual(r.status, 200, JSON.stringify(r.body));
	return r.body;
};
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];

test.before(async () => {
	emu = await H.startEmulator();
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
	cli = H.client(emu.ports.grpc_port);
});

test.afterEach(async () => {
	await settings({ profile: 'fast' });
});

test.after(async () => {
	cli.close();
	await emu.stop();
});

test('admin settings: effective values, merge, profiles, validation', async () => {
	const fast = (await emu.http('GET', '/admin/settings')).body;
	assert.deepStrictEqual(fast, { profile: 'fast', ttd_p50_ms: 0, ttd_p95_ms: 0, ttd_correlation_ms: 0, stream_records_per_s: 0,
		stream_bytes_per_s: 0, stream_lifetime_ms: 0, stream_close_signal_ms: 0, stream_end_status: 'unavailable',
		rst_after_trailers: true, max_message_bytes: 10485760, require_write_operation: false });
	const real = await settings({ profile: 'real', stream_records_per_s: 100000 });
	assert.deepStrictEqual(real, { ...fast, profile: 'real', ttd_p50_ms: 175, ttd_p95_ms: 500, ttd_correlation_ms: 1000,
		stream_records_per_s: 100000, stream_bytes_per_s: 100000000, stream_lifetime_ms: 300000,
		require_write_operation: true });
	assert.strictEqual((await settings({ ttd_p50_ms: 100 })).ttd_p50_ms, 100, 'a merge keeps the rest');
	assert.deepStrictEqual((await emu.http('GET', '/admin/settings')).body, { ...real, ttd_p50_ms: 100 });
	const bad = async (body, re) => {
		const r = await emu.http('PUT', '/admin/settings', body);
		assert.strictEqual(r.status, 400, JSON.stringify(body));
		assert.match(r.body.message, re);
	};
	await bad({ ttd_p50: 1 }, /unknown setting "ttd_p50" \(known: profile, ttd_p50_ms, /);
	await bad({ profile: 'slow' }, /unknown profile "slow"/);
	await bad({ stream_records_per_s: -1 }, /bad value for stream_records_per_s: -1 \(expected an integer/);
	await bad({ stream_lifetime_ms: '10' }, /bad value for stream_lifetime_ms/);
	await bad({ rst_after_trailers: 'no' }, /true or false/);
	await bad({ stream_end_status: 'cancelled' }, /"unavailable" or "ok"/);
	await bad({ max_message_bytes: 0 }, /from 1 to 67108864/);
	await bad({ ttd_p95_ms: 50 }, /ttd_p95_ms \(50\) must be >= ttd_p50_ms \(100\)/);
	await bad({ ttd_p50_ms: 0 }, /0 when ttd_p50_ms is 0/);
	await bad([1], /JSON object/);
	assert.deepStrictEqual((await emu.http('GET', '/admin/settings')).body, { ...real, ttd_p50_ms: 100 },
		'a refused update changes nothing');
});

test('command line: --profile and a knob overriding it, in either order; bad values refused', async () => {
	const e = await H.startEmulator({ args: ['--stream-records-per-s', '100000', '--profile', 'real',
		'--rst-after-trailers=false', '--stream-end-status', 'ok'] });
	try {
		const s = (await e.http('GET', '/admin/settings')).body;
		assert.deepStrictEqual([s.profile, s.stream_records_per_s, s.ttd_p50_ms, s.rst_after_trailers, s.stream_end_status],
			['real', 100000, 175, false, 'ok']);
	} finally {
		await e.stop();
	}
	for (const [args, re] of [[['--ttd-p95-ms', 'soon'], /bad value for ttd_p95_ms: "soon"/],
		[['--require-write-operation', 'yes'], /true or false/], [['--profile', 'slow'], /unknown profile/]]) {
		const r = spawnSync(process.execPath, [H.BIN, '--data-dir', H.tmpDir('cli'), ...args], { encoding: 'utf8' });
		assert.strictEqual(r.status, 2, r.stderr);
		assert.match(r.stderr, re);
	}
});

test('time to durability: log-normal percentiles; acks cumulative, never decreasing', async () => {
	const t = await freshTable();
	await settings({ ttd_p50_ms: 40, ttd_p95_ms: 120 });
	assert.strictEqual((await emu.http('DELETE', '/admin/stats/ack_latency')).status, 200);
	/* One request at a time per stream, so each ack times one request; independent draws. */
	const lat = [];
	await Promise.all(Array.from({ length: 16 }, async () => {
		const c = open(t);
		await created(c);
		for (let off = 0; off < 25; off++) {
			const t0 = performance.now();
			batch(c, off, 1);
			await c.waitFor(() => c.lastAck() === off);
			lat.push(performance.now() - t0);
		}
		c.call.end();
		assert.strictEqual((await c.status).code, S.OK);
	}));
	const p50 = quantile(lat, 0.5), p95 = quantile(lat, 0.95);
	assert.ok(p50 >= 30 && p50 <= 65, `median ${p50.toFixed(1)} ms (model 40)`);
	assert.ok(p95 >= 80 && p95 <= 240, `95th percentile ${p95.toFixed(1)} ms (model 120)`);
	/* The emulator's own measure of the same acks agrees with the client's. */
	const own = (await emu.http('GET', '/admin/stats')).body.ack_latency_ms;
	assert.strictEqual(own.samples, 400);
	assert.ok(Math.abs(own.p50 - p50) < 10, `emulator's median ${own.p50} ms, client's ${p50.toFixed(1)} ms`);

	/* Pipelined: the ack waits for the slowest request below it. */
	const c = open(t);
	await created(c);
	for (let off = 0; off < 200; off++)
		batch(c, off, 1);
	await c.waitFor(() => c.lastAck() === 199);
	const acks = c.acks();
	assert.deepStrictEqual([...acks].sort((a, b) => a - b), acks, 'acks never decrease');
	assert.ok(acks.length < 200, `acks are coalesced (${acks.length} for 200 requests)`);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);
});

/*
 * Pipeline `requests` one-record requests on each of `streams` streams, one
 * every `gapMs`; resolves with each request's time from its send to the
 * first ack that covers it.
 */
async function pipelined(t, streams, requests, gapMs) {
	const lat = [];
	await Promise.all(Array.from({ length: streams }, async () => {
		const c = open(t);
		await created(c);
		const sentAt = [];
		let timed = 0;
		c.call.on('data', (m) => {
			if (m.payload !== 'ingest_record_response')
				return;
			const upTo = Number(m.ingest_record_response.durability_ack_up_to_offset);
			const now = performance.now();
			for (; timed <= upTo; timed++)
				lat.push(now - sentAt[timed]);
		});
		for (let off = 0; off < requests; off++) {
			sentAt.push(performance.now());
			batch(c, off, 1);
			await new Promise(r => setTimeout(r, gapMs));
		}
		await c.waitFor(() => c.lastAck() === requests - 1);
		c.call.end();
		assert.strictEqual((await c.status).code, S.OK);
	}));
	return lat;
}

test('time to durability: correlated within a stream, so a pipelined client sees the model', async () => {
	const t = await freshTable();
	/* Independent draws: each ack waits for the slowest request below it. */
	await settings({ ttd_p50_ms: 40, ttd_p95_ms: 120, ttd_correlation_ms: 0 });
	const independent = quantile(await pipelined(t, 16, 100, 10), 0.5);
	/* Drifting draws: neighbours fare alike, the visible median is the model's. */
	await settings({ ttd_correlation_ms: 1000 });
	const correlated = quantile(await pipelined(t, 32, 300, 10), 0.5);
	assert.ok(independent > 62, `independent draws: visible median ${independent.toFixed(1)} ms (about 80 expected)`);
	assert.ok(correlated >= 25 && correlated < 58, `correlated draws: visible median ${correlated.toFixed(1)} ms (model 40)`);
});

/* Send `requests` batches of `n` records, at most `window` unacked; resolves with the seconds taken. */
async function paced(c, requests, n, payload, window) {
	const t0 = performance.now();
	let sent = 0;
	const pump = () => {
		while (sent < requests && sent - c.lastAck() <= window)
			batch(c, sent++, n, payload);
	};
	c.call.on('data', pump);
	pump();
	await c.waitFor(() => c.lastAck() === requests - 1);
	c.call.off('data', pump);
	return (performance.now() - t0) / 1000;
}

test('stream quota: records/s and bytes/s pace the acks of a client with a bounded window', async () => {
	const t = await freshTable();
	const c = open(t);
	await created(c);
	/* Set on the live stream: it applies to its next requests. */
	await settings({ stream_records_per_s: 2000 });
	let s = await paced(c, 30, 100, '', 5);
	assert.ok(s >= 1.3 && s <= 2.5, `3000 records at 2000/s took ${s.toFixed(2)} s (model 1.45)`);
	c.call.end();
	assert.strictEqual((await c.status).code, S.OK);

	await settings({ stream_records_per_s: 0, stream_bytes_per_s: 200000 });
	const d = open(t);
	await created(d);
	const payload = 'x'.repeat(1000 - JSON.stringify({ id: 100, payload: '' }).length);
	s = await paced(d, 30, 10, payload, 5);
	assert.ok(s >= 1.3 && s <= 2.5, `300 kB at 200 kB/s took ${s.toFixed(2)} s (model 1.45)`);
	d.call.end();
	assert.strictEqual((await d.status).code, S.OK);
});

test('stream lifetime: with CloseStreamSignal then UNAVAILABLE 6002; without, OK; new streams only', async () => {
	const t = await freshTable();
	const old = open(t);
	await created(old);
	const before = (await emu.http('GET', '/admin/stats')).body.tables[t];
	await settings({ stream_lifetime_ms: 600, stream_close_signal_ms: 400 });
	let t0 = performance.now();
	const c = open(t);
	await created(c);
	await c.waitFor(() => c.responses.some(r => r.payload === 'close_stream_signal'));
	assert.ok(performance.now() - t0 >= 180, 'the signal comes 400 ms before the end');
	const sig = c.responses.find(r => r.payload === 'close_stream_signal').close_stream_signal;
	assert.deepStrictEqual({ s: Number(sig.duration.seconds), n: sig.duration.nanos }, { s: 0, n: 400000000 });
	let st = await c.status;
	assert.strictEqual(st.code, S.UNAVAILABLE);
	assert.match(st.details, /Stream timeout reached\. .*Error Code: 6002/);
	assert.ok(performance.now() - t0 >= 580, `ended after ${performance.now() - t0} ms`);

	await settings({ stream_lifetime_ms: 300, stream_close_signal_ms: 0, stream_end_status: 'ok' });
	t0 = performance.now();
	const d = open(t);
	st = await d.status;
	assert.strictEqual(st.code, S.OK);
	assert.ok(performance.now() - t0 >= 280);
	assert.deepStrictEqual(d.responses.map(r => r.payload), ['create_stream_response'], 'no signal');

	const after = (await emu.http('GET', '/admin/stats')).body.tables[t];
	assert.strictEqual(after.streams_expired - before.streams_expired, 2);
	assert.strictEqual(after.close_signals_sent - before.close_signals_sent, 1);
	assert.strictEqual(old.final, null, 'a stream opened before the change keeps its lifetime');
	old.call.end();
	assert.strictEqual((await old.status).code, S.OK);
});

/*
 * A create_stream without a token ends with UNAUTHENTICATED trailers while
 * the client still sends; then either the server resets the stream, or it
 * stays half-open until the client ends its side (two pings answered
 * without a reset: none was on its way).
 */
async function resetAfterTrailers(table) {
	const raw = H.rawCall(emu.ports.grpc_port, { table });
	raw.send({ create_stream: { table_name: table, record_type: 'JSON' } });
	assert.strictEqual((await raw.trailers)['grpc-status'], String(S.UNAUTHENTICATED));
	await raw.ping();
	await raw.ping();
	const reset = raw.req.closed;
	raw.req.end();
	const closed = await raw.closed;
	raw.session.close();
	assert.strictEqual(closed.aborted, reset);
	assert.strictEqual(closed.rstCode, 0);
	return reset;
}

test('rst_after_trailers: RST_STREAM(NO_ERROR) after the trailers, or END_STREAM only; per table as a fault', async () => {
	const t = await freshTable();
	const other = await freshTable();
	assert.strictEqual(await resetAfterTrailers(t), true);
	await settings({ rst_after_trailers: false });
	assert.strictEqual(await resetAfterTrailers(t), false);
	const f = await emu.http('POST', '/admin/faults', { table: other, rst_after_trailers: true });
	assert.strictEqual(f.status, 200);
	assert.strictEqual(await resetAfterTrailers(other), true);
	assert.strictEqual(await resetAfterTrailers(t), false);
	await settings({ rst_after_trailers: true });
	await emu.http('POST', '/admin/faults', { table: other, rst_after_trailers: false });
	assert.deepStrictEqual((await emu.http('GET', '/admin/faults')).body.tables[other], { rst_after_trailers: false });
	assert.strictEqual(await resetAfterTrailers(other), false);
	assert.strictEqual(await resetAfterTrailers(t), true);
	await emu.http('DELETE', `/admin/faults?table=${other}`);
});

test('max_message_bytes: 10 MiB by default; a larger request ends the call with INVALID_ARGUMENT', async () => {
	const t = await freshTable();
	const c = open(t);
	await created(c);
	batch(c, 0, 1, 'x'.repeat(5 * 1024 * 1024));	/* beyond grpc-js's 4 MiB default */
	await c.waitFor(() => c.lastAck() === 0);
	batch(c, 1, 1, 'x'.repeat(10 * 1024 * 1024));
	const st = await c.status;
	assert.strictEqual(st.code, S.INVALID_ARGUMENT);
	assert.match(st.details,
		/^Batch size exceeds maximum allowed size: request with offset_id 1 is \d+ bytes, the limit is 10485760 bytes$/);
	assert.strictEqual((await emu.http('GET', '/admin/stats')).body.tables[t].invalid_requests, 1);

	await settings({ max_message_bytes: 2000 });
	const d = open(t);
	await created(d);
	batch(d, 0, 1, 'x'.repeat(1500));
	await d.waitFor(() => d.lastAck() === 0);
	batch(d, 1, 2, 'x'.repeat(1500));
	assert.strictEqual((await d.status).code, S.INVALID_ARGUMENT);
});

test('require_write_operation: create_stream refuses a token without the zerobuswrite operation', async () => {
	const t = await freshTable();
	const plain = (await H.getToken(emu, 'w', 'w', t)).body.access_token;
	const status = async (token) => {
		const c = open(t, token);
		await Promise.race([c.status, created(c)]);
		c.call.cancel();
		return c.final && c.final.code !== S.CANCELLED ? c.final : 'OPEN';
	};
	assert.strictEqual(await status(plain), 'OPEN', 'not required in the fast profile');
	await settings({ require_write_operation: true });
	const st = await status(plain);
	assert.strictEqual(st.code, S.PERMISSION_DENIED);
	assert.match(st.details, /"operations": \["zerobuswrite"\]/);
	assert.strictEqual(await status(tokens[t]), 'OPEN');
	const other = (await H.getToken(emu, 'w', 'w', t, { operations: ['read'] })).body.access_token;
	assert.strictEqual((await status(other)).code, S.PERMISSION_DENIED);
	for (const operations of ['zerobuswrite', [1], {}]) {
		const r = await H.getToken(emu, 'w', 'w', t, { operations });
		assert.strictEqual(r.status, 400, JSON.stringify(operations));
		assert.match(r.body.error_description, /"operations" of the TABLE entry must be an array of strings/);
	}
});

test('user-agent: recorded per stream and for the token endpoint', async () => {
	const t = await freshTable();
	await H.getToken(emu, 'w', 'w', t, { userAgent: 'zerobus-pg/9.9 (test)' });
	assert.strictEqual((await emu.http('GET', '/admin/stats')).body.token_user_agent, 'zerobus-pg/9.9 (test)');
	const ua = H.client(emu.ports.grpc_port, undefined, { 'grpc.primary_user_agent': 'zerobus-pg/9.9' });
	const c = open(t, tokens[t], ua);
	await created(c);
	const streams = (await emu.http('GET', '/admin/streams')).body;
	assert.match(streams.find(s => s.stream_id === c.responses[0].create_stream_response.stream_id).user_agent,
		/^zerobus-pg\/9\.9 grpc-node-js\//);
	c.call.end();
	await c.status;
	ua.close();
});
