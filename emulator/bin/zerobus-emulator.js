#!/usr/bin/env node
'use strict';
/*
 * zerobus-emulator.js
 *    Start the local Zerobus Ingest emulator.
 *
 *    node emulator/bin/zerobus-emulator.js --data-dir DIR [--config tables.json]
 *        [--grpc-port N] [--http-port N] [--tls-cert F --tls-key F [--grpc-tls-port N]]
 *        [--host 127.0.0.1] [--publish-interval-ms 2000] [--token-ttl-s 3600]
 *        [--compact-bytes 67108864] [--proto FILE] [--track-transactions true]
 *        [--profile fast|real] [--ttd-p50-ms N] [--ttd-p95-ms N]
 *        [--ttd-correlation-ms N]
 *        [--stream-records-per-s N] [--stream-bytes-per-s N] [--stream-lifetime-ms N]
 *        [--stream-close-signal-ms N] [--stream-end-status unavailable|ok]
 *        [--rst-after-trailers true|false] [--max-message-bytes N]
 *        [--require-write-operation true|false]
 *
 * The profile sets the service model (lib/settings.js, README "Profiles");
 * each of the options after it overrides one of its settings, whatever
 * their order.  Prints one JSON line on stdout when ready (the ports
 * actually bound, so 0 works); logs go to stderr.  SIGTERM/SIGINT stop it
 * after publishing.
 */

const fs = require('node:fs');
const { Emulator } = require('../lib/server');
const { startHttp } = require('../lib/http');
const { Settings, KNOBS, cliName, fromText } = require('../lib/settings');

function parseArgs(argv) {
	const opts = { host: '127.0.0.1', grpcPort: 0, httpPort: 0, publishIntervalMs: 2000, tokenTtlS: 3600 };
	const names = {
		'--data-dir': 'dataDir', '--config': 'config', '--grpc-port': 'grpcPort', '--http-port': 'httpPort',
		'--tls-cert': 'tlsCert', '--tls-key': 'tlsKey', '--grpc-tls-port': 'tlsPort', '--host': 'host',
		'--publish-interval-ms': 'publishIntervalMs', '--token-ttl-s': 'tokenTtlS', '--proto': 'protoFile',
		'--compact-bytes': 'compactBytes', '--profile': 'profile', '--track-transactions': 'trackTransactions',
	};
	const knobs = Object.fromEntries(Object.keys(KNOBS).map(k => [cliName(k), k]));
	const numeric = new Set(['grpcPort', 'httpPort', 'tlsPort', 'publishIntervalMs', 'tokenTtlS', 'compactBytes']);
	const overrides = {};
	for (let i = 0; i < argv.length; i++) {
		let a = argv[i], v;
		if (a === '-h' || a === '--help') {
			const head = /\/\*\n([\s\S]*?)\n \*\//.exec(fs.readFileSync(__filename, 'utf8'))[1];
			process.stdout.write(head.split('\n').slice(1).map(l => l.replace(/^ \*/, '')).join('\n') + '\n');
			process.exit(0);
		}
		const eq = a.indexOf('=');
		if (eq > 0) {
			v = a.slice(eq + 1);
			a = a.slice(0, eq);
		} else
			v = argv[++i];
		const key = names[a];
		if (!(key || knobs[a]) || v === undefined)
			throw new Error(`unknown option or missing value: ${a}`);
		if (knobs[a]) {
			overrides[knobs[a]] = fromText(knobs[a], v);
			continue;
		}
		opts[key] = numeric.has(key) ? Number(v) : key === 'trackTransactions' ? v === 'true' : v;
		if (numeric.has(key) && !Number.isInteger(opts[key]))
			throw new Error(`${a} needs an integer`);
	}
	if (!opts.dataDir)
		throw new Error('--data-dir is required');
	if (!!opts.tlsCert !== !!opts.tlsKey)
		throw new Error('--tls-cert and --tls-key go together');
	opts.settings = new Settings(opts.profile, overrides);
	return opts;
}

/* Apply a config file: {"tables": [...], "clients": [...]}. */
function applyConfig(emu, file) {
	const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
	for (const t of cfg.tables || [])
		emu.catalog.putTable(t.name, t.columns);
	for (const c of cfg.clients || [])
		emu.catalog.putClient(c.client_id, c.client_secret, c.tables || ['*'], c.create_schemas);
}

async function main() {
	let opts;
	try {
		opts = parseArgs(process.argv.slice(2));
	} catch (e) {
		process.stderr.write(`zerobus-emulator: ${e.message}\n`);
		process.exit(2);
	}
	const log = (m) => process.stderr.write(`${new Date().toISOString()} zerobus-emulator: ${m}\n`);
	const emu = new Emulator({ ...opts, log });
	if (opts.config)
		applyConfig(emu, opts.config);
	await emu.recover();
	const ports = await emu.listen(opts);
	const { port: httpPort } = await startHttp(emu, opts.host, opts.httpPort);
	const ready = { event: 'ready', host: opts.host, ...ports, http_port: httpPort,
		data_dir: emu.dataDir, pid: process.pid };
	process.stdout.write(JSON.stringify(ready) + '\n');
	log(`ready: ${JSON.stringify(ready)}`);
	let stopping = false;
	const stop = async () => {
		if (stopping)
			return;
		stopping = true;
		log('stopping');
		await emu.close();
		process.exit(0);
	};
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main().catch((e) => {
	process.stderr.write(`zerobus-emulator: ${e.stack || e}\n`);
	process.exit(1);
});
