'use strict';
/*
 * The SQL Statement Execution API subset: workspace tokens, request
 * checks, states and waiting, CREATE TABLE and ALTER TABLE applied to the
 * catalog and the Delta log (column mapping by name through a rename),
 * privileges, slow statements, cancel, warehouse errors.
 */

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const H = require('./helpers');
const D = require('../lib/delta');

let emu, token;

async function workspaceToken(id, secret) {
	const res = await fetch(`${emu.base}/oidc/v1/token`, {
		method: 'POST',
		headers: { authorization: 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64'),
			'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'all-apis' }).toString(),
	});
	assert.strictEqual(res.status, 200);
	return (await res.json()).access_token;
}

async function api(method, p, body, tok = token) {
	const res = await fetch(emu.base + p, {
		method, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
		body: body === undefined ? undefined : JSON.stringify(body),
	});
	return { status: res.status, body: await res.json() };
}

/* Runs a statement to its end (polling, as the extension does). */
async function run(sql, tok = token) {
	const r = await api('POST', '/api/2.0/sql/statements', { statement: sql, warehouse_id: 'wh1', wait_timeout: '0s' }, tok);
	assert.strictEqual(r.status, 200, JSON.stringify(r.body));
	return H.until(async () => {
		const g = await api('GET', `/api/2.0/sql/statements/${r.body.statement_id}`, undefined, tok);
		return ['PENDING', 'RUNNING'].includes(g.body.status.state) ? null : g.body;
	});
}

test.before(async () => {
	emu = await H.startEmulator();
	await emu.http('POST', '/admin/clients', { client_id: 'sp', client_secret: 's', tables: ['*'], create_schemas: ['main.cdc'] });
	await emu.http('POST', '/admin/clients', { client_id: 'reader', client_secret: 'r', tables: [] });
	token = await workspaceToken('sp', 's');
});

test.after(async () => {
	await emu.stop();
});

test('requests are checked: token, statement, warehouse, wait_timeout', async () => {
	const bad = await fetch(`${emu.base}/api/2.0/sql/statements`, { method: 'POST', body: '{}' });
	assert.strictEqual(bad.status, 401);
	assert.strictEqual((await bad.json()).error_code, 'UNAUTHENTICATED');
	const scoped = (await H.getToken(emu, 'sp', 's', 'main.cdc.x')).body.access_token;
	const r = await api('POST', '/api/2.0/sql/statements', { statement: 'SELECT 1', warehouse_id: 'w' }, scoped);
	assert.strictEqual(r.status, 403);
	assert.strictEqual(r.body.error_code, 'PERMISSION_DENIED');
	for (const [body, what] of [[{ warehouse_id: 'w' }, /statement is required/],
		[{ statement: 'x' }, /warehouse_id is required/],
		[{ statement: 'x', warehouse_id: 'w', wait_timeout: '3s' }, /wait_timeout/],
		[{ statement: 'x', warehouse_id: 'w', on_wait_timeout: 'STOP' }, /on_wait_timeout/]]) {
		const e = await api('POST', '/api/2.0/sql/statements', body);
		assert.strictEqual(e.status, 400);
		assert.strictEqual(e.body.error_code, 'INVALID_PARAMETER_VALUE');
		assert.match(e.body.message, what);
	}
	await emu.http('PUT', '/admin/sql', { warehouses: ['wh1'] });
	const w = await api('POST', '/api/2.0/sql/statements', { statement: 'x', warehouse_id: 'nope' });
	assert.strictEqual(w.status, 404);
	assert.strictEqual(w.body.error_code, 'RESOURCE_DOES_NOT_EXIST');
	await emu.http('PUT', '/admin/sql', { warehouses: null });
	const g = await api('GET', '/api/2.0/sql/statements/nope');
	assert.strictEqual(g.status, 404);
});

test('CREATE TABLE with column mapping, then ADD, RENAME, widen, properties', async () => {
	const t = 'main.cdc.orders';
	let s = await run(`CREATE TABLE IF NOT EXISTS main.cdc.orders (
  id BIGINT, -- a comment
  note STRING,
  qty INT,
  _seq BIGINT NOT NULL
) USING DELTA COMMENT 'x' TBLPROPERTIES ('delta.columnMapping.mode' = 'name', 'delta.enableTypeWidening' = 'true');`);
	assert.strictEqual(s.status.state, 'SUCCEEDED', JSON.stringify(s));
	assert.strictEqual(s.manifest.total_row_count, 0);
	const root = D.tableRoot(emu.dataDir, t);
	let st = D.tableState(root);
	assert.deepStrictEqual(st.protocol, { minReaderVersion: 2, minWriterVersion: 5 });
	assert.strictEqual(st.metaData.configuration['delta.columnMapping.mode'], 'name');
	assert.strictEqual(st.metaData.configuration['delta.columnMapping.maxColumnId'], '4');
	assert.deepStrictEqual(D.columnsOf(st.metaData).map(c => [c.name, c.physical, c.id]),
		[['id', 'id', 1], ['note', 'note', 2], ['qty', 'qty', 3], ['_seq', '_seq', 4]]);
	/* again: IF NOT EXISTS leaves it alone; without it, the real error */
	assert.strictEqual((await run('CREATE TABLE IF NOT EXISTS main.cdc.orders (a INT)')).status.state, 'SUCCEEDED');
	s = await run('CREATE TABLE main.cdc.orders (a INT)');
	assert.strictEqual(s.status.state, 'FAILED');
	assert.strictEqual(s.status.error.error_code, 'BAD_REQUEST');
	assert.match(s.status.error.message, /^\[TABLE_OR_VIEW_ALREADY_EXISTS\]/);
	assert.strictEqual(s.status.sql_state, '42P07');

	for (const sql of ['ALTER TABLE main.cdc.orders ADD COLUMNS (extra STRING, more DOUBLE)',
		'ALTER TABLE main.cdc.orders RENAME COLUMN note TO remark',
		'ALTER TABLE main.cdc.orders ALTER COLUMN qty TYPE BIGINT',
		'ALTER TABLE main.cdc.orders ALTER COLUMN _seq DROP NOT NULL',
		"ALTER TABLE main.cdc.orders SET TBLPROPERTIES ('delta.appendOnly' = 'true')"]) {
		s = await run(sql);
		assert.strictEqual(s.status.state, 'SUCCEEDED', `${sql}: ${JSON.stringify(s)}`);
	}
	const admin = (await emu.http('GET', `/admin/tables/${t}`)).body;
	assert.deepStrictEqual(admin.columns.map(c => `${c.name} ${c.type}${c.nullable ? '' : ' NOT NULL'}`),
		['id BIGINT', 'remark STRING', 'qty BIGINT', '_seq BIGINT', 'extra STRING', 'more DOUBLE']);
	assert.strictEqual(admin.properties['delta.appendOnly'], 'true');
	assert.strictEqual(admin.owner, 'sp');
	st = D.tableState(root);
	const cols = D.columnsOf(st.metaData);
	assert.deepStrictEqual(cols.find(c => c.name === 'remark'), { name: 'remark', type: { kind: 'STRING' },
		nullable: true, physical: 'note', id: 2 });
	assert.strictEqual(cols.find(c => c.name === 'more').id, 6);
	const ops = D.readLog(root).map(c => c.actions[0].commitInfo.operation);
	assert.deepStrictEqual(ops, ['CREATE TABLE', 'CHANGE COLUMN', 'CHANGE COLUMN', 'CHANGE COLUMN', 'CHANGE COLUMN',
		'SET TBLPROPERTIES']);

	/* what Delta cannot do fails with its error, and changes nothing */
	for (const [sql, err] of [['ALTER TABLE main.cdc.orders ALTER COLUMN qty TYPE INT', 'NOT_SUPPORTED_CHANGE_COLUMN'],
		['ALTER TABLE main.cdc.orders ALTER COLUMN remark TYPE INT', 'NOT_SUPPORTED_CHANGE_COLUMN'],
		['ALTER TABLE main.cdc.orders ADD COLUMNS (id INT)', 'FIELDS_ALREADY_EXISTS'],
		['ALTER TABLE main.cdc.orders RENAME COLUMN nope TO x', 'UNRESOLVED_COLUMN'],
		['ALTER TABLE main.cdc.none ADD COLUMNS (x INT)', 'TABLE_OR_VIEW_NOT_FOUND'],
		['DROP TABLE main.cdc.orders', 'UNSUPPORTED_FEATURE'],
		['CREATE TABLE main.cdc.p (a INT', 'PARSE_SYNTAX_ERROR']]) {
		s = await run(sql);
		assert.strictEqual(s.status.state, 'FAILED', sql);
		assert.match(s.status.error.message, new RegExp(`^\\[${err}\\]`), sql);
	}
	assert.strictEqual(D.readLog(root).length, 6);
});

test('a rename without column mapping fails as in Delta', async () => {
	assert.strictEqual((await run('CREATE TABLE main.cdc.plain (a INT)')).status.state, 'SUCCEEDED');
	const s = await run('ALTER TABLE main.cdc.plain RENAME COLUMN a TO b');
	assert.match(s.status.error.message, /^\[DELTA_UNSUPPORTED_RENAME_COLUMN\]/);
	/* enabling column mapping maps the existing columns by their names */
	assert.strictEqual((await run("ALTER TABLE main.cdc.plain SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name')"))
		.status.state, 'SUCCEEDED');
	assert.strictEqual((await run('ALTER TABLE main.cdc.plain RENAME COLUMN a TO b')).status.state, 'SUCCEEDED');
});

test('privileges: CREATE TABLE in the schema, MODIFY or ownership to alter', async () => {
	const other = await workspaceToken('reader', 'r');
	let s = await run('CREATE TABLE IF NOT EXISTS main.cdc.orders (a INT)', other);
	assert.strictEqual(s.status.state, 'FAILED');
	assert.strictEqual(s.status.error.message,
		"[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have CREATE TABLE on Schema 'main.cdc'. SQLSTATE: 42501");
	assert.strictEqual(s.status.sql_state, '42501');
	s = await run('CREATE TABLE main.other.t (a INT)');
	assert.match(s.status.error.message, /CREATE TABLE on Schema 'main.other'/);
	s = await run('ALTER TABLE main.cdc.orders ADD COLUMNS (x INT)', other);
	assert.match(s.status.error.message, /User does not have MODIFY on Table 'main.cdc.orders'/);
	/* another principal's statement cannot be read */
	const r = await api('POST', '/api/2.0/sql/statements', { statement: 'x', warehouse_id: 'w', wait_timeout: '0s' });
	assert.strictEqual((await api('GET', `/api/2.0/sql/statements/${r.body.statement_id}`, undefined, other)).status, 404);
});

test('privileges: MODIFY alters columns, a rename needs the owner (SET OWNER through the admin API)', async () => {
	await emu.http('POST', '/admin/clients', { client_id: 'writer', client_secret: 'w', tables: ['main.cdc.owned'] });
	const writer = await workspaceToken('writer', 'w');
	assert.strictEqual((await run("CREATE TABLE main.cdc.owned (a INT) TBLPROPERTIES ('delta.columnMapping.mode' = 'name')"))
		.status.state, 'SUCCEEDED');
	assert.strictEqual((await run('ALTER TABLE main.cdc.owned ADD COLUMNS (b INT)', writer)).status.state, 'SUCCEEDED');
	let s = await run('ALTER TABLE main.cdc.owned RENAME COLUMN a TO c', writer);
	assert.strictEqual(s.status.error.message,
		"[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User is not an owner of Table 'main.cdc.owned'. SQLSTATE: 42501");
	const r = await emu.http('PUT', '/admin/tables/main.cdc.owned/owner', { owner: 'writer' });
	assert.deepStrictEqual(r.body, { name: 'main.cdc.owned', owner: 'writer' });
	assert.strictEqual((await run('ALTER TABLE main.cdc.owned RENAME COLUMN a TO c', writer)).status.state, 'SUCCEEDED');
	s = await run('ALTER TABLE main.cdc.owned RENAME COLUMN c TO d');
	assert.match(s.status.error.message, /User is not an owner of Table 'main.cdc.owned'/, 'the creator no longer owns it');
	assert.strictEqual((await emu.http('PUT', '/admin/tables/main.cdc.nope/owner', { owner: 'writer' })).status, 404);
});

test('slow statements: PENDING, RUNNING, wait_timeout with CONTINUE and CANCEL, cancel', async () => {
	await emu.http('PUT', '/admin/sql', { statement_delay_ms: 1200 });
	let r = await api('POST', '/api/2.0/sql/statements', { statement: 'CREATE TABLE main.cdc.slow (a INT)',
		warehouse_id: 'w', wait_timeout: '0s' });
	assert.strictEqual(r.body.status.state, 'PENDING');
	const id = r.body.statement_id;
	await H.until(async () => (await api('GET', `/api/2.0/sql/statements/${id}`)).body.status.state === 'RUNNING');
	assert.strictEqual((await api('POST', `/api/2.0/sql/statements/${id}/cancel`)).status, 200);
	assert.strictEqual((await api('GET', `/api/2.0/sql/statements/${id}`)).body.status.state, 'CANCELED');
	await new Promise(resolve => setTimeout(resolve, 1300));
	assert.strictEqual((await emu.http('GET', '/admin/tables/main.cdc.slow')).status, 404);

	await emu.http('PUT', '/admin/sql', { statement_delay_ms: 7000 });
	r = await api('POST', '/api/2.0/sql/statements', { statement: 'CREATE TABLE main.cdc.slow (a INT)',
		warehouse_id: 'w', wait_timeout: '5s', on_wait_timeout: 'CANCEL' });
	assert.strictEqual(r.body.status.state, 'CANCELED');
	await emu.http('PUT', '/admin/sql', { statement_delay_ms: 200 });
	r = await api('POST', '/api/2.0/sql/statements', { statement: 'CREATE TABLE main.cdc.slow (a INT)',
		warehouse_id: 'w', wait_timeout: '5s' });
	assert.strictEqual(r.body.status.state, 'SUCCEEDED');
	/* with statement_delay_match, only the statements containing it are slow */
	await emu.http('PUT', '/admin/sql', { statement_delay_ms: 7000, statement_delay_match: 'ADD COLUMNS' });
	r = await api('POST', '/api/2.0/sql/statements', { statement: 'CREATE TABLE main.cdc.fast (a INT)',
		warehouse_id: 'w', wait_timeout: '5s' });
	assert.strictEqual(r.body.status.state, 'SUCCEEDED');
	r = await api('POST', '/api/2.0/sql/statements', { statement: 'ALTER TABLE main.cdc.fast ADD COLUMNS (b INT)',
		warehouse_id: 'w', wait_timeout: '0s' });
	assert.strictEqual(r.body.status.state, 'PENDING');
	assert.strictEqual((await api('POST', `/api/2.0/sql/statements/${r.body.statement_id}/cancel`)).status, 200);
	assert.strictEqual((await emu.http('PUT', '/admin/sql', { statement_delay_match: 5 })).status, 400);
	await emu.http('PUT', '/admin/sql', { statement_delay_ms: 0, statement_delay_match: null });
});

test('warehouse errors: the next N statements (matching) fail with the given error', async () => {
	const k = await emu.http('PUT', '/admin/sql', { warehouse_error: { error_code: 'TEMPORARILY_UNAVAILABLE',
		message: 'warehouse wh1 failed to start', count: 1 } });
	assert.strictEqual(k.status, 200);
	let s = await run('CREATE TABLE main.cdc.w (a INT)');
	assert.deepStrictEqual(s.status, { state: 'FAILED', error: { error_code: 'TEMPORARILY_UNAVAILABLE',
		message: 'warehouse wh1 failed to start' } });
	s = await run('CREATE TABLE main.cdc.w (a INT)');
	assert.strictEqual(s.status.state, 'SUCCEEDED');
	const list = (await emu.http('GET', '/admin/sql/statements')).body;
	assert.deepStrictEqual(list.filter(x => x.statement === 'CREATE TABLE main.cdc.w (a INT)').map(x => x.state),
		['FAILED', 'SUCCEEDED']);
	assert.strictEqual((await emu.http('PUT', '/admin/sql', { nope: 1 })).status, 400);
	/* with match, only statements containing it fail, and count only them */
	await emu.http('PUT', '/admin/sql', { warehouse_error: { message: 'no', match: 'w_mirror', count: 1 } });
	s = await run('CREATE TABLE main.cdc.w2 (a INT)');
	assert.strictEqual(s.status.state, 'SUCCEEDED');
	s = await run('CREATE TABLE main.cdc.w_mirror (a INT)');
	assert.strictEqual(s.status.state, 'FAILED');
	assert.strictEqual((await emu.http('GET', '/admin/sql')).body.warehouse_error, null);
	assert.strictEqual((await emu.http('PUT', '/admin/sql', { warehouse_error: { message: 'no', match: 1 } })).status, 400);
});

test('poll errors: the next N polls answer an HTTP error', async () => {
	assert.strictEqual((await emu.http('PUT', '/admin/sql', { poll_errors: { status: 503, count: 2 } })).status, 200);
	const r = await api('POST', '/api/2.0/sql/statements', { statement: 'CREATE TABLE main.cdc.p (a INT)',
		warehouse_id: 'w', wait_timeout: '0s' });
	const url = `/api/2.0/sql/statements/${r.body.statement_id}`;
	for (let i = 0; i < 2; i++) {
		const g = await api('GET', url);
		assert.strictEqual(g.status, 503);
		assert.strictEqual(g.body.error_code, 'TEMPORARILY_UNAVAILABLE');
	}
	assert.strictEqual((await api('GET', url)).status, 200);
	assert.strictEqual((await emu.http('GET', '/admin/sql')).body.poll_errors, null);
	assert.strictEqual((await emu.http('PUT', '/admin/sql', { poll_errors: { status: 200, count: 1 } })).status, 400);
});

test('the catalog keeps mapped columns and properties across a restart', async () => {
	await emu.stop();
	const dataDir = emu.dataDir;
	emu = await H.startEmulator({ dataDir });
	const t = (await emu.http('GET', '/admin/tables/main.cdc.orders')).body;
	assert.strictEqual(t.properties['delta.columnMapping.mode'], 'name');
	assert.ok(fs.existsSync(path.join(D.tableRoot(dataDir, 'main.cdc.orders'), '_delta_log')));
	assert.strictEqual(D.readLog(D.tableRoot(dataDir, 'main.cdc.orders')).length, 6);
});
