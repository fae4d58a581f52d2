#!/usr/bin/env node
'use strict';
/*
 * emulator_throughput.js
 *    Sustained ack throughput of the local Zerobus emulator.
 *
 *    node bench/emulator_throughput.js [--records 1000000] [--batch 1000]
 *        [--inflight 32] [--streams 1]
 *
 * Starts the emulator on a fresh data directory (port 0), declares a table,
 * then pushes ~200-byte PROTO records in ingest_record_batch requests from
 * this process (a separate process from the emulator) and counts records
 * covered by the emulator's cumulative durability acks.  Prints acked
 * records/s and MB/s (record payload bytes), plus the emulator's counters.
 * Needs `npm ci --prefix emulator` first.
 */

const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { createRequire } = require('node:module');
const { spawn } = require('node:child_process');
const readline = require('node:readline');

const emuDir = path.join(__dirname, '..', 'emulator');
const emuRequire = createRequire(path.join(emuDir, 'package.json'));
const grpc = emuRequire('@grpc/grpc-js');
const { loadService, defaultProtoPath } = emuRequire('./lib/server');
const { encodeDescriptor } = emuRequire('./lib/encode');

function args() {
	const o = { records: 1000000, batch: 1000, inflight: 32, streams: 1 };
	const a = process.argv.slice(2);
	for (let i = 0; i < a.length; i += 2) {
		const k = a[i].replace(/^--/, '');
		if (!(k in o))
			throw new Error(`unknown option ${a[i]}`);
		o[k] = Number(a[i + 1]);
	}
	return o;
}

const TABLE = 'bench.zerobus.events';
const COLUMNS = [
	{ name: 'id', type: 'BIGINT', nullable: false },
	{ name: 'ts', type: 'TIMESTAMP', nullable: false },
	{ name: 'kind', type: 'STRING' },
	{ name: 'amount', type: 'DOUBLE' },
	{ name: 'qty', type: 'INT' },
	{ name: 'payload', type: 'STRING' },
];
const SPEC = { name: 'Event', fields: [
	{ name: 'id', number: 1, type: 'int64', label: 'required' },
	{ name: 'ts', number: 2, type: 'int64', label: 'required' },
	{ name: 'kind', number: 3, type: 'string' },
	{ name: 'amount', number: 4, type: 'double' },
	{ name: 'qty', number: 5, type: 'int32' },
	{ name: 'payload', number: 6, type: 'string' },
] };

/* Fast fixed-layout encoder for the bench record (~200 bytes). */
const FILL = Buffer.from('x'.repeat(150));
function varint(buf, off, v) {
	while (v >= 0x80) {
		buf[off++] = (v % 128) | 0x80;
		v = Math.floor(v / 128);
	}
	buf[off++] = v;
	return off;
}
function record(i, t0) {
	const b = Buffer.allocUnsafe(220);
	let o = 0;
	b[o++] = 0x08;
	o = varint(b, o, i);
	b[o++] = 0x10;
	o = varint(b, o, t0 + i);
	b[o++] = 0x1a;
	b[o++] = 8;
	o += b.write(`kind-${String(i % 1000).padStart(3, '0')}`, o, 'latin1');
	b[o++] = 0x21;
	b.writeDoubleLE(i * 0.25, o);
	o += 8;
	b[o++] = 0x28;
	o = varint(b, o, i % 100000);
	b[o++] = 0x32;
	b[o++] = 0x96;
	b[o++] = 0x01;
	FILL.copy(b, o);
	o += 150;
	return b.subarray(0, o);
}

function startEmulator(dataDir, extra) {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, [path.join(emuDir, 'bin', 'zerobus-emulator.js'), '--data-dir', dataDir,
			...extra.split(' ').filter(Boolean)],
			{ stdio: ['ignore', 'pipe', 'inherit'] });
		readline.createInterface({ input: proc.stdout }).once('line', l => resolve({ proc, ports: JSON.parse(l) }));
		proc.once('exit', c => reject(new Error(`emulator exited with ${c}`)));
	});
}

async function http(base, method, p, body, headers = {}) {
	const res = await fetch(base + p, { method, headers: { 'content-type': 'application/json', ...headers },
		body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
	const json = await res.json();
	if (res.status !== 200)
		throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(json)}`);
	return json;
}

async function token(base) {
	const [c, s] = TABLE.split('.');
	const form = new URLSearchParams({ grant_type: 'client_credentials', scope: 'all-apis',
		resource: 'api://databricks/workspaces/1/zerobusDirectWriteApi',
		authorization_details: JSON.stringify([
			{ type: 'unity_catalog_privileges', privileges: ['USE CATALOG'], object_type: 'CATALOG', object_full_path: c },
			{ type: 'unity_catalog_privileges', privileges: ['USE SCHEMA'], object_type: 'SCHEMA', object_full_path: `${c}.${s}` },
			{ type: 'unity_catalog_privileges', privileges: ['SELECT', 'MODIFY'], object_type: 'TABLE', object_full_path: TABLE },
		]) }).toString();
	return (await http(base, 'POST', '/oidc/v1/token', form, {
		'content-type': 'application/x-www-form-urlencoded',
		authorization: 'Basic ' + Buffer.from('bench:bench-secret').toString('base64') })).access_token;
}

/* Push `count` records starting at id `first` on one stream; resolves when all are acked. */
function runStream(cli, tok, first, count, o, t0, progress) {
	return new Promise((resolve, reject) => {
		const md = new grpc.Metadata();
		md.set('authorization', `Bearer ${tok}`);
		md.set('x-databricks-zerobus-table-name', TABLE);
		const call = cli.EphemeralStream(md);
		const batches = Math.ceil(count / o.batch);
		const sizes = [];
		let sent = 0, acked = -1, bytes = 0;
		const pump = () => {
			while (sent < batches && sent - acked - 1 < o.inflight) {
				const n = Math.min(o.batch, count - sent * o.batch);
				const recs = new Array(n);
				for (let k = 0; k < n; k++) {
					recs[k] = record(first + sent * o.batch + k, t0);
					bytes += recs[k].length;
				}
				sizes.push(n);
				call.write({ ingest_record_batch: { offset_id: sent, proto_encoded_batch: { records: recs } } });
				sent++;
			}
		};
		call.on('data', (m) => {
			if (m.payload === 'create_stream_response')
				pump();
			else if (m.payload === 'ingest_record_response') {
				const a = Number(m.ingest_record_response.durability_ack_up_to_offset);
				for (let k = acked + 1; k <= a; k++)
					progress(sizes[k]);
				acked = a;
				if (acked === batches - 1) {
					call.end();
					resolve(bytes);
				} else
					pump();
			}
		});
		call.on('error', reject);
		call.write({ create_stream: { table_name: TABLE, descriptor_proto: encodeDescriptor(SPEC), record_type: 'PROTO' } });
	});
}

async function main() {
	const o = args();
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zbemu-bench-'));
	const { proc, ports } = await startEmulator(dataDir, process.env.ZBEMU_BENCH_ARGS || '');
	const base = `http://127.0.0.1:${ports.http_port}`;
	try {
		await http(base, 'PUT', `/admin/tables/${TABLE}`, { columns: COLUMNS });
		await http(base, 'POST', '/admin/clients', { client_id: 'bench', client_secret: 'bench-secret', tables: [TABLE] });
		const tok = await token(base);
		const service = loadService(defaultProtoPath());
		const cli = new service.Zerobus(`127.0.0.1:${ports.grpc_port}`, grpc.credentials.createInsecure(),
			{ 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
		const t0 = Date.now() * 1000;
		let acked = 0;
		const start = process.hrtime.bigint();
		const per = Math.ceil(o.records / o.streams);
		const runs = [];
		for (let s = 0; s < o.streams; s++)
			runs.push(runStream(cli, tok, s * per, Math.min(per, o.records - s * per), o, t0, (n) => { acked += n; }));
		const bytes = (await Promise.all(runs)).reduce((a, b) => a + b, 0);
		const secs = Number(process.hrtime.bigint() - start) / 1e9;
		const stats = await http(base, 'GET', '/admin/stats');
		const flushStart = Date.now();
		await http(base, 'POST', '/admin/flush');
		const flushSecs = (Date.now() - flushStart) / 1000;
		const result = {
			records: acked, batch: o.batch, inflight: o.inflight, streams: o.streams,
			seconds: Number(secs.toFixed(3)),
			records_per_s: Math.round(acked / secs),
			mb_per_s: Number((bytes / secs / 1e6).toFixed(1)),
			avg_record_bytes: Math.round(bytes / acked),
			log_syncs: stats.log_syncs,
			published_during_run: stats.records_published,
			final_flush_s: flushSecs,
		};
		console.log(`acked ${acked} records in ${result.seconds} s: ${result.records_per_s} records/s, ` +
			`${result.mb_per_s} MB/s (avg ${result.avg_record_bytes} B/record, ${stats.log_syncs} fsyncs)`);
		console.log(JSON.stringify(result));
		cli.close();
	} finally {
		proc.kill('SIGTERM');
		await new Promise(r => proc.once('exit', r));
		fs.rmSync(dataDir, { recursive: true, force: true });
	}
}

main().catch((e) => {
	console.error(e);
	process.exit(1);
});
