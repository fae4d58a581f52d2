'use strict';
/*
 * catalog.js
 *    The emulator's stand-in for Unity Catalog: target tables with Delta
 *    column types, OAuth clients with the tables they may write, and the
 *    access tokens minted for them.
 *
 * Tables and clients persist in <data-dir>/catalog.json.  Tokens are signed
 * (HMAC-SHA256 with a key kept in the data directory), so they stay valid
 * across an emulator restart until they expire, like real ones; their claims
 * say whether the token request granted the zerobuswrite operation.
 */

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const T = require('./types');
const { fsyncDir } = require('./wal');

class CatalogError extends Error {
	constructor(message, httpStatus = 400) {
		super(message);
		this.httpStatus = httpStatus;
	}
}

const b64u = (b) => Buffer.from(b).toString('base64url');

function checkTableName(name) {
	const parts = typeof name === 'string' ? name.split('.') : [];
	if (parts.length !== 3 || !parts.every(p => T.IDENT.test(p)))
		throw new CatalogError(`table name ${JSON.stringify(name)} must be catalog.schema.table ` +
			'(ASCII letters, digits and underscores)');
	return name;
}

/* Columns as the catalog file and the publisher take them. */
function columnsJson(columns) {
	return columns.map(c => ({ name: c.name, type: T.typeText(c.type), nullable: c.nullable,
		...(c.physical !== undefined ? { physical: c.physical, id: c.id } : {}) }));
}

class Catalog {
	constructor(dataDir, tokenTtlS = 3600) {
		this.file = path.join(dataDir, 'catalog.json');
		this.tokenTtlS = tokenTtlS;
		const keyFile = path.join(dataDir, 'token.key');
		if (!fs.existsSync(keyFile)) {
			fs.writeFileSync(keyFile, crypto.randomBytes(32), { mode: 0o600 });
			fsyncDir(dataDir);
		}
		this.key = fs.readFileSync(keyFile);
		const saved = fs.existsSync(this.file) ? JSON.parse(fs.readFileSync(this.file, 'utf8'))
			: { tables: {}, clients: {} };
		this.tables = new Map(Object.entries(saved.tables).map(([n, t]) =>
			[n, { name: n, columns: T.parseColumns(t.columns), schemaVersion: t.schemaVersion,
				properties: t.properties || {}, owner: t.owner || null }]));
		this.clients = new Map(Object.entries(saved.clients));
	}

	save() {
		const out = {
			tables: Object.fromEntries([...this.tables].map(([n, t]) => [n, {
				schemaVersion: t.schemaVersion, properties: t.properties, owner: t.owner,
				columns: columnsJson(t.columns),
			}])),
			clients: Object.fromEntries(this.clients),
		};
		const tmp = this.file + '.tmp';
		fs.writeFileSync(tmp, JSON.stringify(out, null, 2) + '\n');
		const fd = fs.openSync(tmp, 'r+');
		fs.fsyncSync(fd);
		fs.closeSync(fd);
		fs.renameSync(tmp, this.file);
		fsyncDir(path.dirname(this.file));
	}

	tableNames() {
		return [...this.tables.keys()];
	}

	table(name) {
		return this.tables.get(name);
	}

	/*
	 * Declare a table or replace its columns.  Returns {table, changed}; a
	 * change bumps schemaVersion so streams opened before it are checked
	 * again at publication.  extra may give the table's properties
	 * (TBLPROPERTIES) and owner (the client that created it with a SQL
	 * statement); a table keeps its own when not.
	 */
	putTable(name, columns, extra = {}) {
		checkTableName(name);
		let cols;
		try {
			cols = T.parseColumns(columns);
		} catch (e) {
			throw new CatalogError(e.message);
		}
		const old = this.tables.get(name);
		const properties = extra.properties || (old ? old.properties : {});
		const owner = extra.owner !== undefined ? extra.owner : (old ? old.owner : null);
		const same = old && JSON.stringify(T.deltaStruct(old.columns)) === JSON.stringify(T.deltaStruct(cols)) &&
			JSON.stringify(old.properties) === JSON.stringify(properties);
		if (same)
			return { table: old, changed: false };
		const t = { name, columns: cols, schemaVersion: old ? old.schemaVersion + 1 : 1, properties, owner };
		this.tables.set(name, t);
		this.save();
		return { table: t, changed: !!old };
	}

	/* Transfer a table to another owner (ALTER TABLE ... SET OWNER TO). */
	setOwner(name, owner) {
		const t = this.tables.get(name);
		if (!t)
			throw new CatalogError(`table "${name}" does not exist`, 404);
		t.owner = owner;
		this.save();
		return t;
	}

	dropTable(name) {
		if (!this.tables.delete(name))
			throw new CatalogError(`table "${name}" does not exist`, 404);
		this.save();
	}

	/*
	 * A client: the tables it may write (MODIFY), and the schemas it may
	 * create tables in (CREATE TABLE, with USE CATALOG and USE SCHEMA:
	 * "catalog.schema" or "*"; none when absent).
	 */
	putClient(id, secret, tables, createSchemas = []) {
		if (typeof id !== 'string' || !id || typeof secret !== 'string' || !secret)
			throw new CatalogError('client_id and client_secret must be non-empty strings');
		if (!Array.isArray(tables) || !tables.every(t => t === '*' || checkTableName(t)))
			throw new CatalogError('tables must be an array of table names or "*"');
		if (!Array.isArray(createSchemas) ||
			!createSchemas.every(s => s === '*' || (typeof s === 'string' && s.split('.').length === 2 &&
				s.split('.').every(p => T.IDENT.test(p)))))
			throw new CatalogError('create_schemas must be an array of catalog.schema names or "*"');
		this.clients.set(id, { client_secret: secret, tables, create_schemas: createSchemas });
		this.save();
	}

	clientMayCreate(id, schema) {
		const c = this.clients.get(id);
		const granted = (c && c.create_schemas) || [];
		return granted.includes('*') || granted.includes(schema);
	}

	dropClient(id) {
		if (!this.clients.delete(id))
			throw new CatalogError(`client "${id}" does not exist`, 404);
		this.save();
	}

	clientMayWrite(id, table) {
		const c = this.clients.get(id);
		return !!c && (c.tables.includes('*') || c.tables.includes(table));
	}

	/* Check client credentials in constant time; returns the client or null. */
	checkSecret(id, secret) {
		const c = this.clients.get(id);
		if (!c)
			return null;
		const a = crypto.createHash('sha256').update(c.client_secret).digest();
		const b = crypto.createHash('sha256').update(String(secret)).digest();
		return crypto.timingSafeEqual(a, b) ? c : null;
	}

	mintToken(clientId, table, zerobuswrite, ttlS = this.tokenTtlS) {
		const now = Date.now();
		const claims = { client_id: clientId, table, zerobuswrite: !!zerobuswrite, iat: now,
			exp: now + ttlS * 1000, jti: crypto.randomUUID() };
		const body = b64u(JSON.stringify(claims));
		const sig = b64u(crypto.createHmac('sha256', this.key).update(body).digest());
		return { token: `zbemu.${body}.${sig}`, expiresIn: ttlS };
	}

	/* {ok, client_id, table, zerobuswrite} or {ok: false, reason}. */
	verifyToken(token, faults) {
		const parts = token.split('.');
		if (parts.length !== 3 || parts[0] !== 'zbemu')
			return { ok: false, reason: 'access token was not issued by this emulator' };
		const sig = b64u(crypto.createHmac('sha256', this.key).update(parts[1]).digest());
		if (sig.length !== parts[2].length || !crypto.timingSafeEqual(Buffer.from(sig), Buffer.from(parts[2])))
			return { ok: false, reason: 'access token signature is invalid' };
		const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
		if (claims.exp <= Date.now())
			return { ok: false, reason: 'access token has expired' };
		if (faults && faults.tokenRevoked(claims.client_id, claims.iat, token))
			return { ok: false, reason: 'access token has expired (injected fault)' };
		if (!this.clients.has(claims.client_id))
			return { ok: false, reason: `client "${claims.client_id}" no longer exists` };
		return { ok: true, ...claims };
	}
}

module.exports = { Catalog, CatalogError, checkTableName, columnsJson };
