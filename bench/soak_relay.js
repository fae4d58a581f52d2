#!/usr/bin/env node
'use strict';
/*
 * soak_relay.js
 *    A TCP relay between the zerobus worker and the emulator's gRPC port,
 *    for the chaos soak (bench/soak.pl): it forwards bytes both ways until
 *    told to break the network, without any routing change on the machine.
 *
 *    node bench/soak_relay.js --target-port N [--port 0]
 *
 * Prints {"event":"ready","port":N,"control_port":M} on stdout.  Control
 * (HTTP, POST, on 127.0.0.1:control_port):
 *    /blackhole  stop forwarding: bytes are left unread in both directions
 *                and new connections are accepted but not connected on, so
 *                the worker sees neither data nor a reset (a network that
 *                drops packets, as a dead route or a firewall DROP rule)
 *    /forward    forward again, what was held included
 *    /drop       reset every connection now (RST), as a failing middlebox
 * Each answers {"connections": live connection count}.
 */

const net = require('node:net');
const http = require('node:http');

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
	(a.startsWith('--') ? acc.concat([[a.slice(2), all[i + 1]]]) : acc), []));
const targetPort = Number(args['target-port']);
if (!Number.isInteger(targetPort) || targetPort <= 0) {
	process.stderr.write('soak_relay: --target-port N is required\n');
	process.exit(2);
}

let blackhole = false;
const pairs = new Set();	/* {client, server} live */
const waiting = [];			/* client sockets accepted during a blackhole */

function connect(client) {
	const server = net.connect(targetPort, '127.0.0.1');
	const pair = { client, server };
	pairs.add(pair);
	const end = () => {
		client.destroy();
		server.destroy();
		pairs.delete(pair);
	};
	client.on('error', end).on('close', end);
	server.on('error', end).on('close', end);
	client.pipe(server);
	server.pipe(client);
}

const relay = net.createServer({ pauseOnConnect: true }, (client) => {
	if (blackhole) {
		waiting.push(client);
		client.on('error', () => client.destroy());
		return;
	}
	connect(client);
	client.resume();
});

const control = http.createServer((req, res) => {
	if (req.method !== 'POST' || !['/blackhole', '/forward', '/drop'].includes(req.url)) {
		res.writeHead(404).end();
		return;
	}
	if (req.url === '/blackhole') {
		blackhole = true;
		for (const p of pairs) {
			/* unpipe too: a pipe resumes its source when the sink drains */
			p.client.unpipe(p.server);
			p.server.unpipe(p.client);
			p.client.pause();
			p.server.pause();
		}
	} else if (req.url === '/forward') {
		blackhole = false;
		for (const p of pairs) {
			p.client.pipe(p.server);
			p.server.pipe(p.client);
		}
		for (const c of waiting.splice(0))
			if (!c.destroyed) {
				connect(c);
				c.resume();
			}
	} else {
		for (const p of [...pairs]) {
			p.client.resetAndDestroy();
			p.server.resetAndDestroy();
		}
		for (const c of waiting.splice(0))
			c.resetAndDestroy();
	}
	res.writeHead(200, { 'content-type': 'application/json' })
		.end(JSON.stringify({ connections: pairs.size + waiting.length }));
});

relay.listen(Number(args.port || 0), '127.0.0.1', () => {
	control.listen(0, '127.0.0.1', () => {
		process.stdout.write(JSON.stringify({ event: 'ready', port: relay.address().port,
			control_port: control.address().port }) + '\n');
	});
});
