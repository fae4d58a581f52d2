'use strict';
/*
 * http.js
 *    The emulator's HTTP side: the OAuth token endpoint the SDKs call
 *    (POST /oidc/v1/token), the Unity Catalog table lookup the SDK schema
 *    tools use, the SQL statements API (statements.js), and the admin/test
 *    API (JSON) under /admin/: tables, clients, faults, settings, tokens,
 *    flush, stats, streams, sql.
 */

const http = require('node:http');
const { CatalogError, checkTableName } = require('./catalog');
const { FaultError } = require('./faults');
const { SettingsError } = require('./settings');
const { StatementHttpError } = require('./statements');
const T = require('./types');

class HttpError extends Error {
	constructor(status, message, code) {
		super(message);
		this.status = status;
		this.code = code;
	}
}

/* A reply sent as it is: raw bytes, for a fault that imitates a broken server. */
class RawReply extends Error {
	constructor(status, body) {
		super('raw reply');
		this.status = status;
		this.body = body;
	}
}

function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;
		req.on('data', (c) => {
			size += c.length;
			if (size > 16 * 1024 * 1024) {
				reject(new HttpError(413, 'request body too large'));
				req.destroy();
			} else
				chunks.push(c);
		});
		req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
		req.on('error', reject);
	});
}

function parseJson(text) {
	if (!text.trim())
		return {};
	try {
		return JSON.parse(text);
	} catch (e) {
		throw new HttpError(400, `request body is not JSON: ${e.message}`);
	}
}

/*
 * OAuth client-credentials grant.  Checks Basic auth, the form fields the
 * SDKs send, and derives the token's table from authorization_details, and
 * from the "operations" of its TABLE entry whether it grants zerobuswrite
 * (which create_stream requires when the require_write_operation setting
 * is on: the token itself is issued either way, as the operation only
 * matters to writes).
 */
async function oauthToken(emu, req, body) {
	emu.tokenUserAgent = req.headers['user-agent'] || '';
	const auth = req.headers.authorization || '';
	const m = /^Basic\s+(\S+)$/i.exec(auth);
	if (!m)
		throw new HttpError(401, 'missing HTTP Basic authorization', 'invalid_client');
	const dec = Buffer.from(m[1], 'base64').toString('utf8');
	const colon = dec.indexOf(':');
	if (colon < 0)
		throw new HttpError(401, 'malformed HTTP Basic authorization', 'invalid_client');
	const id = decodeURIComponent(dec.slice(0, colon));
	const secret = decodeURIComponent(dec.slice(colon + 1));
	if (!(req.headers['content-type'] || '').startsWith('application/x-www-form-urlencoded'))
		throw new HttpError(400, 'content type must be application/x-www-form-urlencoded', 'invalid_request');
	const form = new URLSearchParams(body);
	if (form.get('grant_type') !== 'client_credentials')
		throw new HttpError(400, `unsupported grant_type "${form.get('grant_type')}"`, 'unsupported_grant_type');
	if (!emu.catalog.checkSecret(id, secret))
		throw new HttpError(401, 'invalid client_id or client_secret', 'invalid_client');
	if (form.get('scope') !== 'all-apis')
		throw new HttpError(400, `scope must be "all-apis", got "${form.get('scope')}"`, 'invalid_scope');
	/* no resource and no authorization_details: a workspace token, for the
	 * workspace's REST APIs (the SQL statements), good for no Zerobus write */
	if (!form.has('resource') && !form.has('authorization_details')) {
		const { token, expiresIn } = emu.catalog.mintToken(id, null, false);
		emu.counters.tokens_issued = (emu.counters.tokens_issued || 0) + 1;
		return { access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope: 'all-apis' };
	}
	const resource = form.get('resource') || '';
	if (!/^api:\/\/databricks\/workspaces\/[^/]+\/zerobusDirectWriteApi$/.test(resource))
		throw new HttpError(400, `resource must be api://databricks/workspaces/<workspace-id>/zerobusDirectWriteApi, got "${resource}"`, 'invalid_request');
	let details;
	try {
		details = JSON.parse(form.get('authorization_details') || '');
	} catch (e) {
		throw new HttpError(400, 'authorization_details must be a JSON array', 'invalid_request');
	}
	if (!Array.isArray(details))
		throw new HttpError(400, 'authorization_details must be a JSON array', 'invalid_request');
	const find = (type) => details.find(d => d && d.type === 'unity_catalog_privileges' && d.object_type === type);
	const tbl = find('TABLE'), sch = find('SCHEMA'), cat = find('CATALOG');
	if (!tbl || !sch || !cat)
		throw new HttpError(400, 'authorization_details needs unity_catalog_privileges on a CATALOG, SCHEMA and TABLE', 'invalid_request');
	const table = tbl.object_full_path;
	try {
		checkTableName(table);
	} catch (e) {
		throw new HttpError(400, e.message, 'invalid_request');
	}
	const ops = tbl.operations;
	if (ops !== undefined && !(Array.isArray(ops) && ops.every(o => typeof o === 'string')))
		throw new HttpError(400, 'authorization_details: "operations" of the TABLE entry must be an array of strings',
			'invalid_request');
	const write = !!ops && ops.includes('zerobuswrite');
	const [c, s] = table.split('.');
	const has = (d, privs) => Array.isArray(d.privileges) && privs.every(p => d.privileges.includes(p));
	if (cat.object_full_path !== c || sch.object_full_path !== `${c}.${s}` ||
		!has(cat, ['USE CATALOG']) || !has(sch, ['USE SCHEMA']) || !has(tbl, ['SELECT', 'MODIFY']))
		throw new HttpError(400, 'authorization_details must grant USE CATALOG, USE SCHEMA and SELECT+MODIFY on the table and its parents', 'invalid_request');
	const held = () => (emu.faults.forStream(null, table) || {}).token_hold;
	if (held()) {
		emu.counters.token_requests_held++;
		while (held())
			await new Promise(resolve => setTimeout(resolve, 20));
	}
	const fault = emu.faults.forStream(null, table);
	if (fault && fault.token_body_b64 !== undefined) {
		let body = Buffer.from(fault.token_body_b64, 'base64');
		const mark = body.indexOf('{{token}}');
		if (mark >= 0)
			body = Buffer.concat([body.subarray(0, mark), Buffer.from(emu.catalog.mintToken(id, table, write).token),
				body.subarray(mark + 9)]);
		throw new RawReply(fault.token_status || 400, body);
	}
	if (!emu.catalog.clientMayWrite(id, table))
		throw new HttpError(403, `client "${id}" has no MODIFY privilege on "${table}"`, 'access_denied');
	const { token, expiresIn } = emu.catalog.mintToken(id, table, write);
	emu.counters.tokens_issued = (emu.counters.tokens_issued || 0) + 1;
	return { access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope: 'all-apis' };
}

function tableJson(emu, t) {
	return {
		name: t.name, schema_version: t.schemaVersion, delta_version: emu.versions.get(t.name),
		properties: t.properties, owner: t.owner,
		columns: t.columns.map(c => ({ name: c.name, type: T.typeText(c.type), nullable: c.nullable })),
	};
}

/* Declare or alter a table; alters end the table's live streams. */
async function putTable(emu, name, body) {
	return tableJson(emu, await emu.putTable(name, body.columns));
}

async function route(emu, req, url, body) {
	const method = req.method;
	const p = url.pathname.replace(/\/+$/, '') || '/';
	let m;
	if (p === '/oidc/v1/token' && method === 'POST')
		return oauthToken(emu, req, body);
	if ((m = /^\/api\/2\.1\/unity-catalog\/tables\/([^/]+)$/.exec(p)) && method === 'GET') {
		const t = emu.catalog.table(decodeURIComponent(m[1]));
		if (!t)
			throw new HttpError(404, `table ${decodeURIComponent(m[1])} does not exist`, 'TABLE_DOES_NOT_EXIST');
		return { full_name: t.name, table_type: 'MANAGED', data_source_format: 'DELTA',
			columns: t.columns.map((c, i) => ({ name: c.name, type_text: T.typeText(c.type).toLowerCase(),
				type_name: c.type.kind, nullable: c.nullable, position: i })) };
	}
	const sql = await emu.statements.route(req, p, method, p.startsWith('/api/2.0/sql/') || p.startsWith('/admin/sql')
		? parseJson(body) : null);
	if (sql !== undefined)
		return sql;
	if (p === '/admin/health')
		return { ok: true };
	if (p === '/admin/tables' && method === 'GET')
		return emu.catalog.tableNames().map(n => tableJson(emu, emu.catalog.table(n)));
	if (p === '/admin/tables' && method === 'POST')
		return putTable(emu, parseJson(body).name, parseJson(body));
	if ((m = /^\/admin\/tables\/([^/]+)\/owner$/.exec(p)) && method === 'PUT') {
		const owner = parseJson(body).owner;
		if (owner !== null && typeof owner !== 'string')
			throw new HttpError(400, 'owner must be a client id or null');
		const t = emu.catalog.setOwner(decodeURIComponent(m[1]), owner);
		return { name: t.name, owner: t.owner };
	}
	if ((m = /^\/admin\/tables\/([^/]+)$/.exec(p))) {
		const name = decodeURIComponent(m[1]);
		if (method === 'PUT')
			return putTable(emu, name, parseJson(body));
		if (method === 'GET') {
			const t = emu.catalog.table(name);
			if (!t)
				throw new HttpError(404, `table "${name}" does not exist`);
			return tableJson(emu, t);
		}
		if (method === 'DELETE') {
			await emu.dropTable(name);
			return { dropped: name };
		}
	}
	if (p === '/admin/clients' && method === 'GET')
		return [...emu.catalog.clients].map(([id, c]) => ({ client_id: id, tables: c.tables,
			create_schemas: c.create_schemas || [] }));
	if (p === '/admin/clients' && method === 'POST') {
		const b = parseJson(body);
		emu.catalog.putClient(b.client_id, b.client_secret, b.tables, b.create_schemas);
		return { client_id: b.client_id, tables: b.tables, create_schemas: b.create_schemas || [] };
	}
	if ((m = /^\/admin\/clients\/([^/]+)$/.exec(p))) {
		const id = decodeURIComponent(m[1]);
		if (method === 'PUT') {
			const b = parseJson(body);
			emu.catalog.putClient(id, b.client_secret, b.tables, b.create_schemas);
			return { client_id: id, tables: b.tables, create_schemas: b.create_schemas || [] };
		}
		if (method === 'DELETE') {
			emu.catalog.dropClient(id);
			return { dropped: id };
		}
	}
	if (p === '/admin/faults') {
		if (method === 'GET')
			return emu.faults.list();
		if (method === 'POST') {
			const f = emu.faults.set(parseJson(body));
			emu.faultsChanged();
			return f;
		}
		if (method === 'DELETE') {
			emu.faults.clear({ table: url.searchParams.get('table'), stream_id: url.searchParams.get('stream_id') });
			emu.faultsChanged();
			return emu.faults.list();
		}
	}
	if (p === '/admin/settings') {
		if (method === 'GET')
			return emu.settings.toJSON();
		if (method === 'PUT')
			return emu.settings.update(parseJson(body));
	}
	if (p === '/admin/tokens/expire' && method === 'POST') {
		const b = parseJson(body);
		if (b.used) {
			emu.faults.expireUsedTokens();
			return { expired: 'used' };
		}
		emu.faults.expireTokens(b.client_id);
		return { expired: b.client_id || 'all' };
	}
	if (p === '/admin/flush' && method === 'POST') {
		await emu.wal.idle();
		const errors = await emu.publish();
		const versions = Object.fromEntries(emu.catalog.tableNames().map(n => [n, emu.versions.get(n)]));
		return Object.keys(errors).length ? { versions, errors } : { versions };
	}
	if (p === '/admin/stats' && method === 'GET')
		return emu.stats();
	if (p === '/admin/stats/ack_latency' && method === 'DELETE') {
		emu.resetAckLatency();
		return {};
	}
	if (p === '/admin/streams' && method === 'GET')
		return emu.streamList();
	if (p === '/admin/streams/expire_idle' && method === 'POST') {
		const b = parseJson(body);
		return { expired: emu.expireIdle(b.table, Number(b.idle_ms || 0)) };
	}
	if (p === '/admin/durable' && method === 'GET') {
		if (!emu.tracker)
			throw new HttpError(409, 'the emulator was not started with --track-transactions');
		return emu.tracker.read(Number(url.searchParams.get('from') || 0), url.searchParams.get('generation'));
	}
	throw new HttpError(404, `no route for ${method} ${p}`);
}

/* Start the HTTP server; resolves with the bound port. */
function startHttp(emu, host, port) {
	const server = http.createServer(async (req, res) => {
		const url = new URL(req.url, 'http://emulator');
		let status = 200, out;
		try {
			const body = await readBody(req);
			out = await route(emu, req, url, body);
		} catch (e) {
			if (e instanceof RawReply) {
				const headers = { 'content-type': 'application/json', 'content-length': e.body.length };
				if (e.status >= 300 && e.status < 400)
					headers.location = 'http://127.0.0.1:9/elsewhere';
				res.writeHead(e.status, headers);
				res.end(e.body);
				return;
			}
			if (e instanceof StatementHttpError) {
				status = e.status;
				out = { error_code: e.code, message: e.message };
			} else if (e instanceof HttpError) {
				status = e.status;
				out = url.pathname.startsWith('/oidc/') ? { error: e.code || 'invalid_request', error_description: e.message }
					: { error_code: e.code || (status === 404 ? 'NOT_FOUND' : 'INVALID_PARAMETER_VALUE'), message: e.message };
			} else if (e instanceof CatalogError || e instanceof FaultError || e instanceof SettingsError ||
				e instanceof T.TypeError_) {
				status = e.httpStatus || 400;
				out = { error_code: status === 404 ? 'NOT_FOUND' : 'INVALID_PARAMETER_VALUE', message: e.message };
			} else {
				emu.log(`admin API error: ${e.stack || e}`);
				status = 500;
				out = { error_code: 'INTERNAL_ERROR', message: e.message };
			}
		}
		const text = JSON.stringify(out === undefined ? {} : out);
		res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
		res.end(text);
	});
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, () => resolve({ server, port: server.address().port }));
	});
}

module.exports = { startHttp };
