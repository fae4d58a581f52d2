'use strict';
/*
 * helpers.js
 *    Shared test helpers: start an emulator process, talk to its admin API,
 *    open gRPC streams with a grpc-js client generated from the shared proto,
 *    or make a gRPC call with node:http2 itself to see the HTTP/2 layer.
 */

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http2 = require('node:http2');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');
const { loadService, defaultProtoPath } = require('../lib/server');

const BIN = path.join(__dirname, '..', 'bin', 'zerobus-emulator.js');
const READ = path.join(__dirname, '..', 'bin', 'zerobus-read.js');

function tmpDir(tag) {
	return fs.mkdtempSync(path.join(os.tmpdir(), `zbemu-${tag}-`));
}

/*
 * Spawn the emulator; resolves with {proc, ports, dataDir, http(), stop(),
 * kill9()} once it printed its ready line.
 */
function startEmulator({ dataDir = tmpDir('data'), args = [], env = {} } = {}) {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, [BIN, '--data-dir', dataDir, '--publish-interval-ms', '500', ...args], {
			stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
		});
		let stderr = '';
		proc.stderr.on('data', (d) => {
			stderr += d;
			if (process.env.ZBEMU_DEBUG)
				process.stderr.write(d);
		});
		const rl = readline.createInterface({ input: proc.stdout });
		rl.once('line', (line) => {
			const ports = JSON.parse(line);
			const base = `http://127.0.0.1:${ports.http_port}`;
			const emu = {
				proc, ports, dataDir, base, stderr: () => stderr,
				http: (method, p, body) => httpJson(base, method, p, body),
				stop: () => new Promise((res) => {
					if (proc.exitCode !== null)
						return res();
					proc.once('exit', res);
					proc.kill('SIGTERM');
				}),
				kill9: () => new Promise((res) => {
					proc.once('exit', res);
					proc.kill('SIGKILL');
				}),
			};
			resolve(emu);
		});
		proc.once('exit', (code) => reject(new Error(`emulator exited with ${code}: ${stderr}`)));
	});
}

async function httpJson(base, method, p, body) {
	const res = await fetch(base + p, {
		method, headers: body === undefined ? {} : { 'content-type': 'application/json' },
		body: body === undefined ? undefined : JSON.stringify(body),
	});
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

/*
 * OAuth form body the SDKs send for a table; operations (e.g.
 * ["zerobuswrite"], as the SDKs send it from 2.2.0) goes into the TABLE entry.
 */
function tokenForm(table, { workspace = '1234', operations } = {}) {
	const [c, s] = table.split('.');
	return new URLSearchParams({
		grant_type: 'client_credentials', scope: 'all-apis',
		resource: `api://databricks/workspaces/${workspace}/zerobusDirectWriteApi`,
		authorization_details: JSON.stringify([
			{ type: 'unity_catalog_privileges', privileges: ['USE CATALOG'], object_type: 'CATALOG', object_full_path: c },
			{ type: 'unity_catalog_privileges', privileges: ['USE SCHEMA'], object_type: 'SCHEMA', object_full_path: `${c}.${s}` },
			{ type: 'unity_catalog_privileges', privileges: ['SELECT', 'MODIFY'], object_type: 'TABLE', object_full_path: table,
				...(operations === undefined ? {} : { operations }) },
		]),
	}).toString();
}

/* opts: operations (see tokenForm), userAgent (the request's user-agent header). */
async function getToken(emu, clientId, secret, table, { operations, userAgent } = {}) {
	const res = await fetch(`${emu.base}/oidc/v1/token`, {
		method: 'POST',
		headers: { authorization: 'Basic ' + Buffer.from(`${clientId}:${secret}`).toString('base64'),
			'content-type': 'application/x-www-form-urlencoded', ...(userAgent ? { 'user-agent': userAgent } : {}) },
		body: tokenForm(table, { operations }),
	});
	return { status: res.status, body: await res.json() };
}

let service = null;
function client(port, creds = grpc.credentials.createInsecure(), options = {}) {
	service = service || loadService(defaultProtoPath());
	return new service.Zerobus(`127.0.0.1:${port}`, creds, options);
}

/*
 * Open an EphemeralStream call and collect its responses.  Returns
 * {call, responses, acks(), status (promise of the final status), waitFor(pred)}.
 */
function openCall(cli, { token, table, headerTable }) {
	const md = new grpc.Metadata();
	if (token !== undefined)
		md.set('authorization', `Bearer ${token}`);
	if (headerTable !== undefined)
		md.set('x-databricks-zerobus-table-name', headerTable);
	const call = cli.EphemeralStream(md);
	const responses = [];
	const waiters = [];
	const check = () => {
		for (let i = waiters.length - 1; i >= 0; i--)
			if (waiters[i].pred()) {
				waiters[i].resolve();
				waiters.splice(i, 1);
			}
	};
	call.on('data', (m) => {
		responses.push(m);
		check();
	});
	const status = new Promise((resolve) => {
		call.on('status', (s) => {
			result.final = s;
			check();
			resolve(s);
		});
		call.on('error', () => {});
	});
	const result = {
		call, responses, status, final: null,
		acks: () => responses.filter(r => r.payload === 'ingest_record_response')
			.map(r => Number(r.ingest_record_response.durability_ack_up_to_offset)),
		lastAck: () => {
			const a = result.acks();
			return a.length ? a[a.length - 1] : -1;
		},
		/* The timer is unref'd: a wait that lost a race (Promise.race with the status) does not hold the process. */
		waitFor: (pred, ms = 10000) => new Promise((resolve, reject) => {
			if (pred())
				return resolve();
			const t = setTimeout(() => reject(new Error('timed out waiting: ' + pred.toString())), ms);
			t.unref();
			waiters.push({ pred, resolve: () => { clearTimeout(t); resolve(); } });
		}),
	};
	return result;
}

/*
 * An EphemeralStream call made with node:http2 (h2c), to see what grpc-js
 * clients hide: the HTTP status, trailers and whether the server resets the
 * stream.  Returns {session, req, send(msg), ping(), response (promise of
 * the response headers), trailers (promise), closed (promise of {rstCode,
 * aborted}; aborted: the stream closed while this side was still open, i.e.
 * by the server's RST_STREAM)}.  Close session when done.
 */
function rawCall(port, { token, table } = {}) {
	service = service || loadService(defaultProtoPath());
	const session = http2.connect(`http://127.0.0.1:${port}`);
	session.on('error', () => {});
	const req = session.request({
		':method': 'POST', ':path': '/databricks.zerobus.Zerobus/EphemeralStream',
		'content-type': 'application/grpc', te: 'trailers',
		...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
		...(table === undefined ? {} : { 'x-databricks-zerobus-table-name': table }),
	});
	req.on('error', () => {});
	let aborted = false;
	req.on('aborted', () => { aborted = true; });
	req.resume();
	return {
		session, req,
		send: (msg) => {
			const body = service.Zerobus.service.EphemeralStream.requestSerialize(msg);
			const head = Buffer.alloc(5);
			head.writeUInt32BE(body.length, 1);
			req.write(Buffer.concat([head, body]));
		},
		ping: () => new Promise((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve()))),
		response: new Promise(resolve => req.once('response', resolve)),
		trailers: new Promise(resolve => req.once('trailers', resolve)),
		closed: new Promise(resolve => req.once('close', () => resolve({ rstCode: req.rstCode, aborted }))),
	};
}

async function readTable(dataDir, table) {
	const { execFileSync } = require('node:child_process');
	const out = execFileSync(process.execPath, [READ, '--data-dir', dataDir, '--table', table], { encoding: 'utf8' });
	return out.split('\n').filter(Boolean).map(l => JSON.parse(l));
}

/* Poll fn until it returns a truthy value. */
async function until(fn, ms = 10000, step = 25) {
	const end = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v)
			return v;
		if (Date.now() > end)
			throw new Error('condition not met in time: ' + fn.toString());
		await new Promise(r => setTimeout(r, step));
	}
}

module.exports = { startEmulator, tmpDir, httpJson, getToken, tokenForm, client, openCall, rawCall, readTable, until,
	READ, BIN };
