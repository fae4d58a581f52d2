#!/usr/bin/env node
'use strict';
/*
 * e2e_emulator.js
 *    The emulator admin calls bench/e2e_bench.sh needs.
 *
 *    node bench/e2e_emulator.js declare HTTP_PORT TABLE CLIENT SECRET < ddl
 *        declares TABLE with the columns of the zerobus.target_ddl() text on
 *        stdin and an OAuth client allowed to write every table
 *    node bench/e2e_emulator.js api HTTP_PORT METHOD PATH [JSON]
 *        one admin API call; prints the JSON reply
 *    node bench/e2e_emulator.js durable HTTP_PORT TABLE
 *        prints TABLE's records_durable, duplicates, streams_opened and
 *        streams_active counters
 *
 * Exits non-zero (with the emulator's answer on stderr) unless it answers
 * 2xx.
 */

async function api(port, method, path, body) {
	const res = await fetch(`http://127.0.0.1:${port}${path}`, {
		method,
		headers: {'content-type': 'application/json'},
		body: body === undefined ? undefined : JSON.stringify(body),
	});
	const text = await res.text();
	if (!res.ok)
		throw new Error(`${method} ${path}: ${res.status} ${text}`);
	return text ? JSON.parse(text) : {};
}

/* The column lines of target_ddl: "  name TYPE[ NOT NULL],[ -- comment]". */
function ddlColumns(ddl) {
	const columns = [];
	for (const line of ddl.split('\n')) {
		const m = /^ {2}(`(?:[^`]|``)+`|\S+) (.*?)( NOT NULL)?,?(?: -- .*)?$/.exec(line);
		if (!m)
			continue;
		let name = m[1];
		if (name.startsWith('`'))
			name = name.slice(1, -1).replace(/``/g, '`');
		columns.push({name, type: m[2], nullable: !m[3]});
	}
	if (columns.length === 0)
		throw new Error(`no columns in target_ddl output:\n${ddl}`);
	return columns;
}

async function main() {
	const [cmd, port, ...rest] = process.argv.slice(2);
	if (cmd === 'declare' && rest.length === 3) {
		const [table, client, secret] = rest;
		const chunks = [];
		for await (const c of process.stdin)
			chunks.push(c);
		const columns = ddlColumns(Buffer.concat(chunks).toString());
		await api(port, 'PUT', `/admin/tables/${table}`, {columns});
		await api(port, 'POST', '/admin/clients',
			{client_id: client, client_secret: secret, tables: ['*']});
	} else if (cmd === 'api' && (rest.length === 2 || rest.length === 3)) {
		const [method, path, body] = rest;
		const reply = await api(port, method, path,
			body === undefined ? undefined : JSON.parse(body));
		process.stdout.write(JSON.stringify(reply) + '\n');
	} else if (cmd === 'durable' && rest.length === 1) {
		const stats = await api(port, 'GET', '/admin/stats');
		const t = (stats.tables || {})[rest[0]];
		if (!t)
			throw new Error(`no table ${rest[0]} in the emulator's stats`);
		process.stdout.write(`${t.records_durable} ${t.duplicates} ${t.streams_opened} ${t.streams_active}\n`);
	} else {
		process.stderr.write('usage: e2e_emulator.js declare HTTP_PORT TABLE CLIENT SECRET < ddl\n' +
			'       e2e_emulator.js api HTTP_PORT METHOD PATH [JSON]\n' +
			'       e2e_emulator.js durable HTTP_PORT TABLE\n');
		process.exit(2);
	}
}

main().catch((e) => {
	process.stderr.write(`e2e_emulator: ${e.message}\n`);
	process.exit(1);
});
