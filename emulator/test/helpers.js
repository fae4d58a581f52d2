'use strict';
/*
 * helpers.js
 *    Shared test helpers: start an emulator process, talk to its admin API,
 *    open gRPC streams with a grpc-js client generated from the shared proto.
 */

const { spawn } = require('node:child_process');
const fs = require('node:fs');
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

/* OAuth form body the SDKs send for a table. */
function tokenForm(table, workspace = '1234') {
	const [c, s] = table.split('.');
	return new URLSearchParams({
		grant_type: 'client_credentials', scope: 'all-apis',
		resource: `api://databricks/workspaces/${workspace}/zerobusDirectWriteApi`,
		authorization_details: JSON.stringify([
			{ type: 'unity_catalog_privileges', privileges: ['USE CATALOG'], object_type: 'CATALOG', object_full_path: c },
			{ type: 'unity_catalog_privileges', privileges: ['USE SCHEMA'], object_type: 'SCHEMA', object_full_path: `${c}.${s}` },
			{ type: 'unity_catalog_privileges', privileges: ['SELECT', 'MODIFY'], object_type: 'TABLE', object_full_path: table },
		]),
	}).toString();
}

async function getToken(emu, clientId, secret, table) {
	const res = await fetch(`${emu.base}/oidc/v1/token`, {
		method: 'POST',
		headers: { authorization: 'Basic ' + Buffer.from(`${clientId}:${secret}`).toString('base64'),
			'content-type': 'application/x-www-form-urlencoded' },
		body: tokenForm(table),
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
		waitFor: (pred, ms = 10000) => new Promise((resolve, reject) => {
			if (pred())
				return resolve();
			const t = setTimeout(() => reject(new Error('timed out waiting: ' + pred.toString())), ms);
			waiters.push({ pred, resolve: () => { clearTimeout(t); resolve(); } });
		}),
	};
	return result;
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

module.exports = { startEmulator, tmpDir, httpJson, getToken, tokenForm, client, openCall, readTable, until, READ, BIN };
