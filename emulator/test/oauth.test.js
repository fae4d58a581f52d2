'use strict';
/*
 * OAuth: the client-credentials endpoint (secrets, form fields, scope by
 * authorization_details), token expiry (natural and injected), and tokens
 * staying valid across an emulator restart.
 */

const test = require('node:test');
const assert = require('node:assert');
const grpc = require('@grpc/grpc-js');
const H = require('./helpers');

const T1 = 'main.auth.one';
const T2 = 'main.auth.two';
let emu, cli;

test.before(async () => {
	emu = await H.startEmulator({ args: ['--token-ttl-s', '2'] });
	for (const t of [T1, T2])
		await emu.http('PUT', `/admin/tables/${t}`, { columns: [{ name: 'a', type: 'INT' }] });
	await emu.http('POST', '/admin/clients', { client_id: 'alice', client_secret: 'a-secret', tables: [T1] });
	await emu.http('POST', '/admin/clients', { client_id: 'bob', client_secret: 'b-secret', tables: [T1, T2] });
	cli = H.client(emu.ports.grpc_port);
});

test.after(async () => {
	cli.close();
	await emu.stop();
});

function post(headers, body) {
	return fetch(`${emu.base}/oidc/v1/token`, { method: 'POST', headers, body })
		.then(async r => ({ status: r.status, body: await r.json() }));
}
const basic = (id, s) => 'Basic ' + Buffer.from(`${id}:${s}`).toString('base64');
const FORM = 'application/x-www-form-urlencoded';

/* Status of a stream opened (JSON, no records) with this token. */
async function streamStatus(token, table = T1) {
	const c = H.openCall(cli, { token, table, headerTable: table });
	c.call.write({ create_stream: { table_name: table, record_type: 'JSON' } });
	await Promise.race([c.status, c.waitFor(() => c.responses.length > 0)]);
	if (c.responses.length) {
		c.call.end();
		await c.status;
		return 'OPEN';
	}
	return (await c.status).code;
}

test('good credentials get a bearer token with expires_in', async () => {
	const r = await H.getToken(emu, 'alice', 'a-secret', T1);
	assert.strictEqual(r.status, 200);
	assert.strictEqual(r.body.token_type, 'Bearer');
	assert.strictEqual(r.body.expires_in, 2);
	assert.ok(r.body.access_token.length > 20);
	assert.strictEqual(await streamStatus(r.body.access_token), 'OPEN');
});

test('wrong secret, unknown client, no Basic auth: 401', async () => {
	assert.strictEqual((await H.getToken(emu, 'alice', 'wrong', T1)).status, 401);
	assert.strictEqual((await H.getToken(emu, 'mallory', 'a-secret', T1)).status, 401);
	const r = await post({ 'content-type': FORM }, H.tokenForm(T1));
	assert.strictEqual(r.status, 401);
	assert.strictEqual(r.body.error, 'invalid_client');
});

test('malformed requests: 400', async () => {
	const h = { 'content-type': FORM, authorization: basic('alice', 'a-secret') };
	const form = new URLSearchParams(H.tokenForm(T1));
	const variant = (k, v) => {
		const f = new URLSearchParams(form);
		if (v === undefined)
			f.delete(k);
		else
			f.set(k, v);
		return f.toString();
	};
	assert.strictEqual((await post(h, variant('grant_type', 'password'))).status, 400);
	assert.strictEqual((await post(h, variant('scope', 'sql'))).status, 400);
	assert.strictEqual((await post(h, variant('resource', 'api://other'))).status, 400);
	assert.strictEqual((await post(h, variant('authorization_details'))).status, 400);
	assert.strictEqual((await post(h, variant('authorization_details', '[{"type":"unity_catalog_privileges"}]'))).status, 400);
	const noModify = JSON.parse(form.get('authorization_details'));
	noModify[2].privileges = ['SELECT'];
	assert.strictEqual((await post(h, variant('authorization_details', JSON.stringify(noModify)))).status, 400);
	assert.strictEqual((await post({ ...h, 'content-type': 'application/json' }, form.toString())).status, 400);
});

test('a table the client may not write: 403', async () => {
	const r = await H.getToken(emu, 'alice', 'a-secret', T2);
	assert.strictEqual(r.status, 403);
	assert.match(r.body.error_description, /no MODIFY privilege/);
});

test('a token is scoped to the table of its authorization_details', async () => {
	const tok = (await H.getToken(emu, 'bob', 'b-secret', T2)).body.access_token;
	assert.strictEqual(await streamStatus(tok, T2), 'OPEN');
	assert.strictEqual(await streamStatus(tok, T1), grpc.status.PERMISSION_DENIED);
});

test('tokens expire after expires_in', async () => {
	const tok = (await H.getToken(emu, 'alice', 'a-secret', T1)).body.access_token;
	assert.strictEqual(await streamStatus(tok), 'OPEN');
	await H.until(async () => (await streamStatus(tok)) === grpc.status.UNAUTHENTICATED, 10000, 200);
});

test('expire tokens early: one client, then all', async () => {
	const a = (await H.getToken(emu, 'alice', 'a-secret', T1)).body.access_token;
	const b = (await H.getToken(emu, 'bob', 'b-secret', T1)).body.access_token;
	assert.strictEqual((await emu.http('POST', '/admin/tokens/expire', { client_id: 'alice' })).status, 200);
	assert.strictEqual(await streamStatus(a), grpc.status.UNAUTHENTICATED);
	assert.strictEqual(await streamStatus(b), 'OPEN');
	const a2 = (await H.getToken(emu, 'alice', 'a-secret', T1)).body.access_token;
	assert.strictEqual(await streamStatus(a2), 'OPEN', 'a token minted after the expiry works');
	await emu.http('POST', '/admin/tokens/expire', {});
	assert.strictEqual(await streamStatus(b), grpc.status.UNAUTHENTICATED);
	assert.strictEqual(await streamStatus(a2), grpc.status.UNAUTHENTICATED);
});

test('expire the tokens in use: one fetched and not used yet stays valid', async () => {
	const used = (await H.getToken(emu, 'alice', 'a-secret', T1)).body.access_token;
	assert.strictEqual(await streamStatus(used), 'OPEN');
	const unused = (await H.getToken(emu, 'bob', 'b-secret', T1)).body.access_token;
	assert.deepStrictEqual((await emu.http('POST', '/admin/tokens/expire', { used: true })).body,
		{ expired: 'used' });
	assert.strictEqual(await streamStatus(used), grpc.status.UNAUTHENTICATED);
	assert.strictEqual(await streamStatus(unused), 'OPEN');
});

test('tokens stay valid across a restart; a dropped client loses its tokens', async () => {
	const e2 = await H.startEmulator();
	try {
		await e2.http('PUT', `/admin/tables/${T1}`, { columns: [{ name: 'a', type: 'INT' }] });
		await e2.http('POST', '/admin/clients', { client_id: 'carol', client_secret: 'c', tables: ['*'] });
		const tok = (await H.getToken(e2, 'carol', 'c', T1)).body.access_token;
		await e2.stop();
		const e3 = await H.startEmulator({ dataDir: e2.dataDir });
		const c3 = H.client(e3.ports.grpc_port);
		try {
			const st = async () => {
				const c = H.openCall(c3, { token: tok, table: T1, headerTable: T1 });
				c.call.write({ create_stream: { table_name: T1, record_type: 'JSON' } });
				await Promise.race([c.status, c.waitFor(() => c.responses.length > 0)]);
				c.call.cancel();
				return c.responses.length ? 'OPEN' : (await c.status).code;
			};
			assert.strictEqual(await st(), 'OPEN');
			await e3.http('DELETE', '/admin/clients/carol');
			assert.strictEqual(await st(), grpc.status.UNAUTHENTICATED);
		} finally {
			c3.close();
			await e3.stop();
		}
	} finally {
		await e2.stop();
	}
});
