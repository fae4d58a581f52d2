'use strict';
/*
 * Conformance with a client nobody here wrote: the official Databricks
 * Zerobus SDK (npm @databricks/zerobus-ingest-sdk-linux-x64-gnu, the native
 * addon of the TypeScript SDK, loaded directly) ingests into the emulator
 * over h2c and over TLS with a test CA made at test time.
 */

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, execFile } = require('node:child_process');
const H = require('./helpers');

const TABLE = 'main.sdk.events';
const COLUMNS = [{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'name', type: 'STRING' }];

/* Why the SDK cannot run here, or null when it can. */
function sdkUnavailable() {
	let file;
	try {
		file = require.resolve('@databricks/zerobus-ingest-sdk-linux-x64-gnu/zerobus-ingest-sdk.linux-x64-gnu.node');
	} catch (e) {
		return 'npm package @databricks/zerobus-ingest-sdk-linux-x64-gnu is not installed (optional dependency)';
	}
	if (process.platform !== 'linux' || process.arch !== 'x64')
		return `the SDK addon is built for linux-x64-gnu, this is ${process.platform}-${process.arch}`;
	try {
		execFileSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'pipe' });
	} catch (e) {
		return `the SDK addon does not load: ${String(e.stderr).split('\n').find(l => /Error/.test(l)) || e.message}`;
	}
	return null;
}

function runClient(cfg, env = {}) {
	return new Promise((resolve) => {
		execFile(process.execPath, [path.join(__dirname, 'fixtures', 'sdk-client.js'), JSON.stringify(cfg)],
			{ env: { ...process.env, no_proxy: '127.0.0.1,localhost', NO_PROXY: '127.0.0.1,localhost', ...env },
				timeout: 60000 },
			(err, stdout, stderr) => {
				const line = stdout.trim().split('\n').pop();
				let out;
				try {
					out = JSON.parse(line);
				} catch (e) {
					out = { error: `no result (${err && err.message}): ${stderr}` };
				}
				resolve(out);
			});
	});
}

async function setup(emu) {
	assert.strictEqual((await emu.http('PUT', `/admin/tables/${TABLE}`, { columns: COLUMNS })).status, 200);
	assert.strictEqual((await emu.http('POST', '/admin/clients',
		{ client_id: 'sdk-client', client_secret: 'sdk-secret', tables: [TABLE] })).status, 200);
}

async function expectRows(emu, count, batch, json) {
	assert.strictEqual((await emu.http('POST', '/admin/flush')).status, 200);
	const rows = await H.readTable(emu.dataDir, TABLE);
	const ids = new Set(rows.map(r => r.id));
	for (let i = 0; i < count; i++)
		assert.ok(ids.has(i), `row ${i} missing`);
	for (let i = 0; i < batch; i++)
		assert.ok(ids.has(100000 + i), `batch row ${i} missing`);
	if (json)
		assert.ok(rows.some(r => r.id === 900000 && r.name === 'sdk-json'));
	return rows;
}

const reason = sdkUnavailable();

test('official SDK ingests over h2c with OAuth (PROTO single, batch, JSON)', { skip: reason || false }, async () => {
	const emu = await H.startEmulator();
	try {
		await setup(emu);
		const out = await runClient({ endpoint: `http://127.0.0.1:${emu.ports.grpc_port}`,
			ucUrl: `http://127.0.0.1:${emu.ports.http_port}`, table: TABLE, clientId: 'sdk-client',
			clientSecret: 'sdk-secret', count: 50, batch: 20, json: true });
		assert.strictEqual(out.error, undefined, out.error);
		assert.strictEqual(out.lastOffset, '50');
		const rows = await expectRows(emu, 50, 20, true);
		assert.strictEqual(rows.length, 71);
		const stats = (await emu.http('GET', '/admin/stats')).body;
		assert.strictEqual(stats.records_durable, 71);
		assert.strictEqual(stats.tokens_issued, 2);
	} finally {
		await emu.stop();
	}
});

test('official SDK ingests over TLS (ALPN h2) trusting a test CA', { skip: reason || false }, async () => {
	const dir = H.tmpDir('tls');
	const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
	o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1',
		'-subj', '/CN=zerobus emulator test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
		'-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
	o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
	fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' +
		'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
	o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
		'-out', 'server.pem', '-days', '1', '-extfile', 'ext.cnf']);
	const emu = await H.startEmulator({ args: ['--tls-cert', path.join(dir, 'server.pem'),
		'--tls-key', path.join(dir, 'server.key')] });
	try {
		assert.ok(emu.ports.grpc_tls_port > 0);
		await setup(emu);
		const cfg = { endpoint: `https://127.0.0.1:${emu.ports.grpc_tls_port}`,
			ucUrl: `http://127.0.0.1:${emu.ports.http_port}`, table: TABLE, clientId: 'sdk-client',
			clientSecret: 'sdk-secret', count: 30, batch: 10 };
		const out = await runClient(cfg, { SSL_CERT_FILE: path.join(dir, 'ca.pem') });
		assert.strictEqual(out.error, undefined, out.error);
		await expectRows(emu, 30, 10, false);
		/* The same client without the CA must fail the TLS handshake. */
		const bad = await runClient({ ...cfg, options: { recovery: false } },
			{ SSL_CERT_FILE: path.join(dir, 'server.pem') });
		assert.ok(bad.error, 'TLS with an untrusted server certificate must fail');
	} finally {
		await emu.stop();
	}
});

test('official SDK recovers from a dropped connection', { skip: reason || false }, async () => {
	const emu = await H.startEmulator();
	try {
		await setup(emu);
		await emu.http('POST', '/admin/faults', { table: TABLE, drop_after_records: 25 });
		const run = runClient({ endpoint: `http://127.0.0.1:${emu.ports.grpc_port}`,
			ucUrl: `http://127.0.0.1:${emu.ports.http_port}`, table: TABLE, clientId: 'sdk-client',
			clientSecret: 'sdk-secret', count: 60, batch: 0, pauseEvery: 10 });
		await H.until(async () => (await emu.http('GET', '/admin/stats')).body.connections_dropped >= 1);
		await emu.http('DELETE', `/admin/faults?table=${TABLE}`);
		const out = await run;
		assert.strictEqual(out.error, undefined, out.error);
		await expectRows(emu, 60, 0, false);
		const stats = (await emu.http('GET', '/admin/stats')).body;
		assert.ok(stats.streams_opened >= 2, 'the SDK must have reconnected');
	} finally {
		await emu.stop();
	}
});

test('official SDK moves to a new stream after CloseStreamSignal', { skip: reason || false }, async () => {
	const emu = await H.startEmulator();
	try {
		await setup(emu);
		const run = runClient({ endpoint: `http://127.0.0.1:${emu.ports.grpc_port}`,
			ucUrl: `http://127.0.0.1:${emu.ports.http_port}`, table: TABLE, clientId: 'sdk-client',
			clientSecret: 'sdk-secret', count: 400, batch: 0, pauseEvery: 10 });
		const streams = await H.until(async () => {
			const l = (await emu.http('GET', '/admin/streams')).body;
			return l.length ? l : null;
		});
		await emu.http('POST', '/admin/faults', { stream_id: streams[0].stream_id, close_stream_signal_ms: 300 });
		const out = await run;
		assert.strictEqual(out.error, undefined, out.error);
		await expectRows(emu, 400, 0, false);
		const stats = (await emu.http('GET', '/admin/stats')).body;
		assert.strictEqual(stats.close_signals_sent, 1);
		assert.ok(stats.streams_opened >= 2, 'the SDK must have opened a new stream');
	} finally {
		await emu.stop();
	}
});
