'use strict';
/*
 * Delta output: the log's actions, Parquet files read independently with
 * DuckDB's Parquet reader, schema changes (compatible ones publish,
 * incompatible ones divert durable records to table_rejected_parquets),
 * dropping a table, and the config file.
 */

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const { DuckDBInstance } = require('@duckdb/node-api');
const H = require('./helpers');

const S = grpc.status;

async function writer(emu, table) {
	await emu.http('POST', '/admin/clients', { client_id: 'w', client_secret: 'w', tables: ['*'] });
	const tok = (await H.getToken(emu, 'w', 'w', table)).body.access_token;
	const cli = H.client(emu.ports.grpc_port);
	const c = H.openCall(cli, { token: tok, table, headerTable: table });
	c.call.write({ create_stream: { table_name: table, record_type: 'JSON' } });
	await c.waitFor(() => c.responses.length > 0);
	c.cli = cli;
	return c;
}

function logActions(root) {
	const dir = path.join(root, '_delta_log');
	return fs.readdirSync(dir).sort().map(f => fs.readFileSync(path.join(dir, f), 'utf8').trim().split('\n').map(l => JSON.parse(l)));
}

test('Delta log and Parquet files, read back by DuckDB directly', async () => {
	const emu = await H.startEmulator();
	const table = 'main.delta.events';
	try {
		await emu.http('PUT', `/admin/tables/${table}`, { columns: [
			{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'ts', type: 'TIMESTAMP' },
			{ name: 'ntz', type: 'TIMESTAMP_NTZ' }, { name: 'amt', type: 'DECIMAL(12,3)' }] });
		const c = await writer(emu, table);
		for (let i = 0; i < 10; i++)
			c.call.write({ ingest_record: { offset_id: i, json_record: JSON.stringify({ id: i, ts: i, ntz: -i, amt: `${i}.125` }) } });
		await c.waitFor(() => c.lastAck() === 9);
		c.call.end();
		await c.status;
		c.cli.close();
		const f = await emu.http('POST', '/admin/flush');
		assert.strictEqual(f.body.versions[table], 1);
		const root = path.join(emu.dataDir, 'tables', 'main', 'delta', 'events');
		const commits = logActions(root);
		assert.strictEqual(commits.length, 2);
		const meta = commits[0].find(a => a.metaData).metaData;
		assert.deepStrictEqual(JSON.parse(meta.schemaString).fields.map(x => x.type),
			['long', 'timestamp', 'timestamp_ntz', 'decimal(12,3)']);
		assert.deepStrictEqual(commits[0].find(a => a.protocol).protocol.readerFeatures, ['timestampNtz']);
		const add = commits[1].find(a => a.add).add;
		assert.strictEqual(JSON.parse(add.stats).numRecords, 10);
		assert.strictEqual(add.size, fs.statSync(path.join(root, add.path)).size);

		const db = await (await DuckDBInstance.create(':memory:')).connect();
		const file = path.join(root, add.path).replace(/'/g, "''");
		const rows = (await db.runAndReadAll(`SELECT id, epoch_us(ts) AS ts, epoch_us(ntz) AS ntz, amt::VARCHAR AS amt FROM read_parquet('${file}') ORDER BY id`)).getRowObjectsJson();
		assert.deepStrictEqual(rows[3], { id: '3', ts: '3', ntz: '-3', amt: '3.125' });
		const schema = (await db.runAndReadAll(`SELECT name, logical_type FROM parquet_schema('${file}')`)).getRowObjectsJson();
		assert.match(schema.find(x => x.name === 'ts').logical_type, /isAdjustedToUTC=1/);
		assert.match(schema.find(x => x.name === 'ntz').logical_type, /isAdjustedToUTC=0/);
		assert.match(schema.find(x => x.name === 'amt').logical_type, /DecimalType\(scale=3, precision=12\)/);

		const out = execFileSync(process.execPath, [H.READ, '--data-dir', emu.dataDir, '--table', table], { encoding: 'utf8' });
		assert.strictEqual(out.split('\n')[3], '{"id":3,"ts":3,"ntz":-3,"amt":"3.125"}');
	} finally {
		await emu.stop();
	}
});

test('schema changes: compatible ones publish, incompatible ones go to table_rejected_parquets', async () => {
	const emu = await H.startEmulator({ args: ['--publish-interval-ms', '3600000'] });
	const table = 'main.delta.changing';
	try {
		await emu.http('PUT', `/admin/tables/${table}`, { columns: [
			{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'name', type: 'STRING' }] });
		let c = await writer(emu, table);
		c.call.write({ ingest_record_batch: { offset_id: 0, json_batch: { records: ['{"id":1,"name":"a"}', '{"id":2}'] } } });
		await c.waitFor(() => c.lastAck() === 0);
		/* Adding a nullable column keeps durable records publishable. */
		const r1 = await emu.http('PUT', `/admin/tables/${table}`, { columns: [
			{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'name', type: 'STRING' }, { name: 'extra', type: 'INT' }] });
		assert.strictEqual(r1.status, 200);
		assert.strictEqual((await c.status).code, S.FAILED_PRECONDITION, 'a schema change ends the table\'s streams');
		c.cli.close();
		await emu.http('POST', '/admin/flush');
		assert.deepStrictEqual(await H.readTable(emu.dataDir, table),
			[{ id: 1, name: 'a', extra: null }, { id: 2, name: null, extra: null }]);

		c = await writer(emu, table);
		c.call.write({ ingest_record: { offset_id: 0, json_record: '{"id":3,"name":"kept as durable","extra":7}' } });
		await c.waitFor(() => c.lastAck() === 0);
		/* Changing a column's type makes them unpublishable. */
		await emu.http('PUT', `/admin/tables/${table}`, { columns: [
			{ name: 'id', type: 'BIGINT', nullable: false }, { name: 'name', type: 'INT' }] });
		c.cli.close();
		await emu.http('POST', '/admin/flush');
		assert.strictEqual((await H.readTable(emu.dataDir, table)).length, 2);
		const dir = path.join(emu.dataDir, 'tables', 'main', 'delta', 'changing', '_zerobus', 'table_rejected_parquets');
		assert.strictEqual(fs.readdirSync(dir).filter(f => f.endsWith('.parquet')).length, 1);
		const out = execFileSync(process.execPath, [H.READ, '--data-dir', emu.dataDir, '--table', table, '--rejected'],
			{ encoding: 'utf8' }).trim();
		assert.deepStrictEqual(JSON.parse(out), { id: 3, name: 'kept as durable', extra: 7 });
		const stats = (await emu.http('GET', '/admin/stats')).body.tables[table];
		assert.strictEqual(stats.records_rejected_parquet, 1);
		assert.strictEqual(stats.records_published, 2);
	} finally {
		await emu.stop();
	}
});

test('drop table removes it; streams to it get NOT_FOUND', async () => {
	const emu = await H.startEmulator();
	const table = 'main.delta.dropme';
	try {
		await emu.http('PUT', `/admin/tables/${table}`, { columns: [{ name: 'id', type: 'INT' }] });
		const root = path.join(emu.dataDir, 'tables', 'main', 'delta', 'dropme');
		assert.ok(fs.existsSync(path.join(root, '_delta_log')));
		const c = await writer(emu, table);
		assert.strictEqual((await emu.http('DELETE', `/admin/tables/${table}`)).status, 200);
		assert.strictEqual((await c.status).code, S.FAILED_PRECONDITION);
		assert.ok(!fs.existsSync(root));
		const tok = (await H.getToken(emu, 'w', 'w', table)).body.access_token;
		const c2 = H.openCall(c.cli, { token: tok, table, headerTable: table });
		c2.call.write({ create_stream: { table_name: table, record_type: 'JSON' } });
		assert.strictEqual((await c2.status).code, S.NOT_FOUND);
		assert.strictEqual((await emu.http('GET', `/admin/tables/${table}`)).status, 404);
		assert.strictEqual((await emu.http('PUT', '/admin/tables/bad', { columns: [{ name: 'a', type: 'INT' }] })).status, 400);
		assert.strictEqual((await emu.http('PUT', '/admin/tables/a.b.c', { columns: [{ name: 'a', type: 'INTERVAL' }] })).status, 400);
		c.cli.close();
	} finally {
		await emu.stop();
	}
});

test('a config file declares tables and clients (quick start)', async () => {
	const dir = H.tmpDir('cfg');
	const cfg = path.join(dir, 'tables.json');
	fs.writeFileSync(cfg, JSON.stringify({
		tables: [{ name: 'quick.start.t', columns: [{ name: 'id', type: 'BIGINT', nullable: false },
			{ name: 'tags', type: 'MAP<STRING,ARRAY<INT>>' }] }],
		clients: [{ client_id: 'qs', client_secret: 'qs-secret', tables: ['quick.start.t'] }],
	}));
	const emu = await H.startEmulator({ args: ['--config', cfg] });
	try {
		const t = (await emu.http('GET', '/admin/tables/quick.start.t')).body;
		assert.deepStrictEqual(t.columns[1], { name: 'tags', type: 'MAP<STRING,ARRAY<INT>>', nullable: true });
		assert.strictEqual((await H.getToken(emu, 'qs', 'qs-secret', 'quick.start.t')).status, 200);
		const uc = await emu.http('GET', '/api/2.1/unity-catalog/tables/quick.start.t');
		assert.strictEqual(uc.body.columns[0].type_text, 'bigint');
	} finally {
		await emu.stop();
	}
});
