'use strict';
/*
 * statements.js
 *    The part of the Databricks SQL Statement Execution API that zerobus
 *    uses (POST /api/2.0/sql/statements, GET /api/2.0/sql/statements/{id},
 *    POST /api/2.0/sql/statements/{id}/cancel), running the Delta DDL that
 *    creates and evolves target tables against the emulator's catalog:
 *    CREATE TABLE and ALTER TABLE ADD COLUMNS / RENAME COLUMN / ALTER
 *    COLUMN ... TYPE / ALTER COLUMN ... DROP NOT NULL / SET TBLPROPERTIES.
 *
 * A statement is PENDING (the warehouse is starting) for the first half of
 * the statement_delay_ms setting, RUNNING for the second, and then takes
 * effect at once, as one catalog change (a Delta metaData commit): a
 * statement canceled before then changes nothing.  An ALTER TABLE first
 * publishes the records acknowledged before it, so that they are
 * committed, with the schema they were checked against, before the
 * change.  Privileges come from
 * the OAuth client of the bearer token: CREATE TABLE in a schema its
 * create_schemas name, ALTER on the tables it owns (created) or may write.
 * See README.md, "SQL statements".
 */

const crypto = require('node:crypto');
const T = require('./types');

/* Knobs (GET/PUT /admin/sql), and their defaults. */
const DEFAULT_KNOBS = { statement_delay_ms: 0, statement_delay_match: null, warehouse_error: null, warehouses: null,
	poll_errors: null };

/* A failure of the request itself: an HTTP status with {error_code, message}. */
class StatementHttpError extends Error {
	constructor(status, code, message) {
		super(message);
		this.status = status;
		this.code = code;
	}
}

/* A statement that fails: state FAILED with this error and SQLSTATE. */
class SqlError extends Error {
	constructor(errorClass, message, sqlState) {
		super(`[${errorClass}] ${message} SQLSTATE: ${sqlState}`);
		this.sqlState = sqlState;
	}
}

/* ---- parsing ---- */

/*
 * Tokens of a statement: identifiers (bare or `backquoted`, with
 * quoted: true), 'strings', numbers and punctuation.  -- and block comments
 * are skipped.
 */
function tokenize(sql) {
	const toks = [];
	let i = 0;
	while (i < sql.length) {
		const c = sql[i];
		if (/\s/.test(c)) {
			i++;
		} else if (sql.startsWith('--', i)) {
			while (i < sql.length && sql[i] !== '\n')
				i++;
		} else if (sql.startsWith('/*', i)) {
			const end = sql.indexOf('*/', i + 2);
			i = end < 0 ? sql.length : end + 2;
		} else if (c === '`') {
			let v = '';
			for (i++; ; i++) {
				if (i >= sql.length)
					throw new SqlError('PARSE_SYNTAX_ERROR', 'Syntax error: unterminated quoted identifier.', '42601');
				if (sql[i] === '`' && sql[i + 1] === '`') {
					v += '`';
					i++;
				} else if (sql[i] === '`') {
					i++;
					break;
				} else
					v += sql[i];
			}
			toks.push({ kind: 'id', v, quoted: true });
		} else if (c === '\'') {
			let v = '';
			for (i++; ; i++) {
				if (i >= sql.length)
					throw new SqlError('PARSE_SYNTAX_ERROR', 'Syntax error: unterminated string literal.', '42601');
				if (sql[i] === '\\') {
					v += sql[++i];
				} else if (sql[i] === '\'') {
					i++;
					break;
				} else
					v += sql[i];
			}
			toks.push({ kind: 'str', v });
		} else if (/[A-Za-z_]/.test(c)) {
			const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i));
			toks.push({ kind: 'id', v: m[0] });
			i += m[0].length;
		} else if (/\d/.test(c)) {
			const m = /^\d+/.exec(sql.slice(i));
			toks.push({ kind: 'num', v: m[0] });
			i += m[0].length;
		} else {
			toks.push({ kind: 'punct', v: c });
			i++;
		}
	}
	return toks;
}

/* A cursor over the tokens with the few helpers the grammar needs. */
class Cursor {
	constructor(toks) {
		this.toks = toks;
		this.i = 0;
	}

	peek(k = 0) {
		return this.toks[this.i + k];
	}

	/* Whether the next tokens are these keywords (unquoted, any case). */
	isKw(...kws) {
		return kws.every((k, j) => {
			const t = this.peek(j);
			return t && t.kind === 'id' && !t.quoted && t.v.toUpperCase() === k;
		});
	}

	acceptKw(...kws) {
		if (!this.isKw(...kws))
			return false;
		this.i += kws.length;
		return true;
	}

	expectKw(...kws) {
		if (!this.acceptKw(...kws))
			this.fail(kws.join(' '));
	}

	accept(p) {
		const t = this.peek();
		if (t && t.kind === 'punct' && t.v === p) {
			this.i++;
			return true;
		}
		return false;
	}

	expect(p) {
		if (!this.accept(p))
			this.fail(`'${p}'`);
	}

	ident() {
		const t = this.peek();
		if (!t || t.kind !== 'id')
			this.fail('an identifier');
		this.i++;
		return t.v;
	}

	string() {
		const t = this.peek();
		if (!t || t.kind !== 'str')
			this.fail('a string literal');
		this.i++;
		return t.v;
	}

	end() {
		this.accept(';');
		if (this.peek())
			this.fail('the end of the statement');
	}

	fail(what) {
		const t = this.peek();
		throw new SqlError('PARSE_SYNTAX_ERROR',
			`Syntax error at or near ${t ? `'${t.v}'` : 'end of input'}: expected ${what}.`, '42601');
	}
}

/* catalog.schema.table, completed with the request's catalog and schema. */
function tableName(cur, defaults) {
	const parts = [cur.ident()];
	while (cur.accept('.'))
		parts.push(cur.ident());
	if (parts.length === 2 && defaults.catalog)
		parts.unshift(defaults.catalog);
	if (parts.length === 1 && defaults.catalog && defaults.schema)
		parts.unshift(defaults.catalog, defaults.schema);
	if (parts.length !== 3 || !parts.every(p => T.IDENT.test(p)))
		throw new SqlError('INVALID_IDENTIFIER', `The table name ${parts.join('.')} is not catalog.schema.table.`, '42602');
	return parts.join('.');
}

/*
 * A column type: its tokens up to the ',' or ')' that ends the column
 * (outside <> and ()), in the text form types.js parses.
 */
function typeText(cur) {
	let depth = 0, text = '';
	for (;;) {
		const t = cur.peek();
		if (!t)
			break;
		if (depth === 0 && t.kind === 'punct' && (t.v === ',' || t.v === ')' || t.v === ';'))
			break;
		if (depth === 0 && cur.isKw('NOT', 'NULL'))
			break;
		if (depth === 0 && cur.isKw('COMMENT'))
			break;
		if (t.kind === 'punct' && (t.v === '<' || t.v === '('))
			depth++;
		if (t.kind === 'punct' && (t.v === '>' || t.v === ')'))
			depth--;
		if (t.kind === 'id' && t.quoted && !T.IDENT.test(t.v))
			throw new SqlError('UNSUPPORTED_FEATURE', `The emulator takes struct field names of letters, digits and underscores only, not "${t.v}".`, '0A000');
		text += (t.kind === 'id' ? ` ${t.v} ` : t.v);
		cur.i++;
	}
	try {
		return T.parseType(text.trim());
	} catch (e) {
		throw new SqlError('UNSUPPORTED_DATATYPE', `Unsupported data type "${text.trim()}": ${e.message}.`, '0A000');
	}
}

/* name type [NOT NULL] [COMMENT 'text'] */
function columnDef(cur) {
	const name = cur.ident();
	if (!T.IDENT.test(name))
		throw new SqlError('INVALID_IDENTIFIER', `The emulator takes column names of letters, digits and underscores only, not "${name}".`, '42602');
	const type = typeText(cur);
	const nullable = !cur.acceptKw('NOT', 'NULL');
	if (cur.acceptKw('COMMENT'))
		cur.string();
	return { name, type, nullable };
}

/* ( 'key' = 'value', ... ) */
function properties(cur) {
	const out = {};
	cur.expect('(');
	do {
		const k = cur.peek() && cur.peek().kind === 'str' ? cur.string() : cur.ident();
		cur.expect('=');
		const t = cur.peek();
		if (!t || (t.kind !== 'str' && t.kind !== 'num' && t.kind !== 'id'))
			cur.fail('a property value');
		cur.i++;
		out[k] = String(t.v);
	} while (cur.accept(','));
	cur.expect(')');
	return out;
}

/*
 * The statement as an operation on one table:
 * {op: 'create', table, ifNotExists, columns, properties} or
 * {op: 'alter', table, action: 'add'|'rename'|'type'|'dropNotNull'|'properties', ...}.
 */
function parse(sql, defaults) {
	const cur = new Cursor(tokenize(sql));
	if (cur.acceptKw('CREATE')) {
		cur.expectKw('TABLE');
		const ifNotExists = cur.acceptKw('IF', 'NOT', 'EXISTS');
		const table = tableName(cur, defaults);
		const columns = [];
		cur.expect('(');
		do
			columns.push(columnDef(cur));
		while (cur.accept(','));
		cur.expect(')');
		let props = {};
		for (;;) {
			if (cur.acceptKw('USING')) {
				const fmt = cur.ident();
				if (fmt.toUpperCase() !== 'DELTA')
					throw new SqlError('UNSUPPORTED_FEATURE', `The emulator creates Delta tables only, not ${fmt}.`, '0A000');
			} else if (cur.acceptKw('COMMENT'))
				cur.string();
			else if (cur.acceptKw('TBLPROPERTIES'))
				props = { ...props, ...properties(cur) };
			else
				break;
		}
		cur.end();
		return { op: 'create', table, ifNotExists, columns, properties: props };
	}
	if (cur.acceptKw('ALTER', 'TABLE')) {
		const table = tableName(cur, defaults);
		let r;
		if (cur.acceptKw('ADD', 'COLUMNS')) {
			const columns = [];
			cur.expect('(');
			do
				columns.push(columnDef(cur));
			while (cur.accept(','));
			cur.expect(')');
			r = { action: 'add', columns };
		} else if (cur.acceptKw('ADD', 'COLUMN'))
			r = { action: 'add', columns: [columnDef(cur)] };
		else if (cur.acceptKw('RENAME', 'COLUMN')) {
			const from = cur.ident();
			cur.expectKw('TO');
			r = { action: 'rename', from, to: cur.ident() };
		} else if (cur.acceptKw('ALTER', 'COLUMN') || cur.acceptKw('CHANGE', 'COLUMN')) {
			const column = cur.ident();
			if (cur.acceptKw('TYPE'))
				r = { action: 'type', column, type: typeText(cur) };
			else if (cur.acceptKw('DROP', 'NOT', 'NULL'))
				r = { action: 'dropNotNull', column };
			else
				cur.fail('TYPE or DROP NOT NULL');
		} else if (cur.acceptKw('SET', 'TBLPROPERTIES'))
			r = { action: 'properties', properties: properties(cur) };
		else
			cur.fail('ADD COLUMNS, RENAME COLUMN, ALTER COLUMN or SET TBLPROPERTIES');
		cur.end();
		return { op: 'alter', table, ...r };
	}
	throw new SqlError('UNSUPPORTED_FEATURE',
		'The emulator runs CREATE TABLE and ALTER TABLE statements only.', '0A000');
}

/* ---- execution ---- */

/* Type changes Delta's type widening takes (delta.enableTypeWidening). */
function widens(from, to) {
	const ints = ['TINYINT', 'SMALLINT', 'INT', 'BIGINT'];
	if (ints.includes(from.kind) && ints.includes(to.kind))
		return ints.indexOf(to.kind) > ints.indexOf(from.kind);
	if (from.kind === 'FLOAT' && to.kind === 'DOUBLE')
		return true;
	if (from.kind === 'DATE' && to.kind === 'TIMESTAMP_NTZ')
		return true;
	if (from.kind === 'DECIMAL' && to.kind === 'DECIMAL')
		return to.s >= from.s && to.p - to.s >= from.p - from.s && (to.p > from.p || to.s > from.s);
	return false;
}

const mappedByName = (props) => props['delta.columnMapping.mode'] === 'name';

/* Columns with column mapping ids and physical names, the new ones numbered on from the highest. */
function mapColumns(columns) {
	let next = Math.max(0, ...columns.map(c => c.id || 0));
	return columns.map(c => (c.physical !== undefined ? c : { ...c, id: ++next, physical: c.name }));
}

const findColumn = (columns, name) => columns.find(c => c.name.toLowerCase() === name.toLowerCase());

function insufficient(what) {
	return new SqlError('INSUFFICIENT_PERMISSIONS', `Insufficient privileges: User does not have ${what}.`, '42501');
}

/*
 * Runs a parsed statement for a client against the emulator: returns
 * nothing, or throws SqlError.
 */
async function execute(emu, stmt, clientId) {
	const [cat, sch] = stmt.table.split('.');
	const t = emu.catalog.table(stmt.table);
	if (stmt.op === 'create') {
		/* checked before existence, so IF NOT EXISTS needs it too */
		if (!emu.catalog.clientMayCreate(clientId, `${cat}.${sch}`))
			throw insufficient(`CREATE TABLE on Schema '${cat}.${sch}'`);
		if (t) {
			if (stmt.ifNotExists)
				return;
			throw new SqlError('TABLE_OR_VIEW_ALREADY_EXISTS',
				`Cannot create table or view \`${cat}\`.\`${sch}\`.\`${stmt.table.split('.')[2]}\` because it already exists.`, '42P07');
		}
		const seen = new Set();
		for (const c of stmt.columns) {
			if (seen.has(c.name.toLowerCase()))
				throw new SqlError('COLUMN_ALREADY_EXISTS', `The column \`${c.name}\` already exists.`, '42711');
			seen.add(c.name.toLowerCase());
		}
		const columns = mappedByName(stmt.properties) ? mapColumns(stmt.columns) : stmt.columns;
		await emu.putTable(stmt.table, columns, { properties: stmt.properties, owner: clientId });
		return;
	}
	if (!t)
		throw new SqlError('TABLE_OR_VIEW_NOT_FOUND', `The table or view \`${stmt.table}\` cannot be found.`, '42P01');
	/* Unity Catalog: MODIFY covers added and altered columns and table
	 * properties; any other change (a rename) needs the table's owner */
	if (stmt.action === 'rename' && t.owner !== clientId)
		throw new SqlError('INSUFFICIENT_PERMISSIONS',
			`Insufficient privileges: User is not an owner of Table '${stmt.table}'.`, '42501');
	if (t.owner !== clientId && !emu.catalog.clientMayWrite(clientId, stmt.table))
		throw insufficient(`MODIFY on Table '${stmt.table}'`);
	let columns = t.columns.map(c => ({ ...c }));
	let props = { ...t.properties };
	switch (stmt.action) {
		case 'add':
			for (const c of stmt.columns) {
				if (findColumn(columns, c.name))
					throw new SqlError('FIELDS_ALREADY_EXISTS', `Cannot add column, because \`${c.name}\` already exists.`, '42710');
				columns.push(c);
			}
			break;
		case 'rename': {
			const c = findColumn(columns, stmt.from);
			if (!c)
				throw new SqlError('UNRESOLVED_COLUMN', `A column with name \`${stmt.from}\` cannot be resolved.`, '42703');
			if (!mappedByName(props))
				throw new SqlError('DELTA_UNSUPPORTED_RENAME_COLUMN',
					'Column rename is not supported for your Delta table. Please enable Column Mapping on your Delta table with mapping mode \'name\'.', '0AKDC');
			if (findColumn(columns, stmt.to) && findColumn(columns, stmt.to) !== c)
				throw new SqlError('FIELDS_ALREADY_EXISTS', `Cannot rename column, because \`${stmt.to}\` already exists.`, '42710');
			c.name = stmt.to;
			break;
		}
		case 'type': {
			const c = findColumn(columns, stmt.column);
			if (!c)
				throw new SqlError('UNRESOLVED_COLUMN', `A column with name \`${stmt.column}\` cannot be resolved.`, '42703');
			if (T.typeText(c.type) === T.typeText(stmt.type))
				break;
			if (props['delta.enableTypeWidening'] !== 'true' || !widens(c.type, stmt.type))
				throw new SqlError('NOT_SUPPORTED_CHANGE_COLUMN',
					`ALTER TABLE ALTER/CHANGE COLUMN is not supported for changing \`${stmt.table}\`'s column \`${c.name}\` ` +
					`with type "${T.typeText(c.type)}" to \`${c.name}\` with type "${T.typeText(stmt.type)}".`, '0AKD0');
			c.type = stmt.type;
			break;
		}
		case 'dropNotNull': {
			const c = findColumn(columns, stmt.column);
			if (!c)
				throw new SqlError('UNRESOLVED_COLUMN', `A column with name \`${stmt.column}\` cannot be resolved.`, '42703');
			c.nullable = true;
			break;
		}
		case 'properties':
			props = { ...props, ...stmt.properties };
			break;
	}
	if (mappedByName(props))
		columns = mapColumns(columns);
	else if (mappedByName(t.properties))
		throw new SqlError('DELTA_UNSUPPORTED_COLUMN_MAPPING_MODE_CHANGE', 'Changing column mapping mode from \'name\' to \'none\' is not supported.', '0AKDC');
	/* the records acknowledged before the statement are committed before
	 * it, with the schema they were checked against */
	await emu.wal.idle();
	await emu.publish();
	await emu.putTable(stmt.table, columns, { properties: props });
}

/* ---- the API ---- */

class Statements {
	constructor(emu) {
		this.emu = emu;
		this.knobs = { ...DEFAULT_KNOBS };
		this.statements = new Map();	/* statement_id -> statement */
	}

	setKnobs(body) {
		const k = { ...this.knobs };
		for (const [key, v] of Object.entries(body || {})) {
			if (!(key in DEFAULT_KNOBS))
				throw new StatementHttpError(400, 'INVALID_PARAMETER_VALUE', `unknown knob "${key}"`);
			if (key === 'statement_delay_ms' && !(Number.isInteger(v) && v >= 0))
				throw new StatementHttpError(400, 'INVALID_PARAMETER_VALUE', 'statement_delay_ms must be an integer >= 0');
			if (key === 'statement_delay_match' && v !== null && typeof v !== 'string')
				throw new StatementHttpError(400, 'INVALID_PARAMETER_VALUE', 'statement_delay_match must be null or a string');
			if (key === 'warehouse_error' && v !== null &&
				!(v && typeof v.message === 'string' && (v.count === undefined || (Number.isInteger(v.count) && v.count > 0)) &&
					(v.match === undefined || typeof v.match === 'string')))
				throw new StatementHttpError(400, 'INVALID_PARAMETER_VALUE',
					'warehouse_error must be null or {message, error_code?, count?, match?}');
			if (key === 'poll_errors' && v !== null &&
				!(v && Number.isInteger(v.status) && v.status >= 400 && v.status <= 599 &&
					Number.isInteger(v.count) && v.count > 0))
				throw new StatementHttpError(400, 'INVALID_PARAMETER_VALUE',
					'poll_errors must be null or {status: 400-599, count: N > 0}');
			if (key === 'warehouses' && v !== null && !(Array.isArray(v) && v.every(w => typeof w === 'string')))
				throw new StatementHttpError(400, 'INVALID_PARAMETER_VALUE', 'warehouses must be null or an array of ids');
			k[key] = v;
		}
		this.knobs = k;
		return this.knobs;
	}

	/* The client of a bearer token good for the SQL API, or an HTTP error. */
	principal(req) {
		const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization || '');
		if (!m)
			throw new StatementHttpError(401, 'UNAUTHENTICATED', 'missing or malformed authorization header (expected "Bearer <token>")');
		const claims = this.emu.catalog.verifyToken(m[1], this.emu.faults);
		if (!claims.ok)
			throw new StatementHttpError(401, 'UNAUTHENTICATED', claims.reason);
		if (claims.table)
			throw new StatementHttpError(403, 'PERMISSION_DENIED',
				`token of client "${claims.client_id}" is scoped to Zerobus writes to table "${claims.table}"; ` +
				'the SQL API takes a workspace token (a token request without authorization_details)');
		return claims.client_id;
	}

	/* The statement's JSON as the API returns it. */
	view(s) {
		const status = { state: s.state };
		if (s.error)
			status.error = s.error;
		if (s.sqlState)
			status.sql_state = s.sqlState;
		const out = { statement_id: s.id, status };
		if (s.state === 'SUCCEEDED') {
			out.manifest = { format: 'JSON_ARRAY', schema: { column_count: 0, columns: [] },
				total_chunk_count: 0, total_row_count: 0, truncated: false };
			out.result = { chunk_index: 0, row_offset: 0, row_count: 0 };
		}
		return out;
	}

	/*
	 * Moves a statement through PENDING and RUNNING to its end: applied
	 * once, when its delay is over, unless canceled first.
	 */
	schedule(s, delay) {
		s.timers = [
			setTimeout(() => {
				if (s.state === 'PENDING')
					s.state = 'RUNNING';
			}, Math.floor(delay / 2)),
			setTimeout(() => this.run(s), delay),
		];
		s.done = new Promise(resolve => { s.finish = resolve; });
	}

	async run(s) {
		if (s.state !== 'PENDING' && s.state !== 'RUNNING')
			return;
		s.state = 'RUNNING';
		const knob = this.knobs.warehouse_error;
		const werr = knob && (knob.match === undefined || s.statement.includes(knob.match)) ? knob : null;
		try {
			if (werr) {
				if (werr.count !== undefined && --werr.count <= 0)
					this.knobs.warehouse_error = null;
				s.error = { error_code: werr.error_code || 'INTERNAL_ERROR', message: werr.message };
			} else
				await execute(this.emu, parse(s.statement, s.defaults), s.client);
		} catch (e) {
			if (e instanceof SqlError) {
				s.error = { error_code: 'BAD_REQUEST', message: e.message };
				s.sqlState = e.sqlState;
			} else {
				this.emu.log(`statement ${s.id} failed: ${e.stack || e}`);
				s.error = { error_code: 'INTERNAL_ERROR', message: e.message };
			}
		}
		if (s.state !== 'RUNNING')
			return;
		s.state = s.error ? 'FAILED' : 'SUCCEEDED';
		s.finishedAt = Date.now();
		s.finish();
	}

	cancel(s) {
		if (s.state !== 'PENDING' && s.state !== 'RUNNING')
			return;
		for (const t of s.timers)
			clearTimeout(t);
		s.state = 'CANCELED';
		s.finishedAt = Date.now();
		s.finish();
	}

	/* POST /api/2.0/sql/statements */
	async submit(req, body) {
		const client = this.principal(req);
		const bad = (msg) => new StatementHttpError(400, 'INVALID_PARAMETER_VALUE', msg);
		if (typeof body.statement !== 'string' || !body.statement.trim())
			throw bad('statement is required');
		if (typeof body.warehouse_id !== 'string' || !body.warehouse_id)
			throw bad('warehouse_id is required');
		const wt = body.wait_timeout === undefined ? '10s' : body.wait_timeout;
		const m = /^(\d+)s$/.exec(typeof wt === 'string' ? wt : '');
		const wait = m ? Number(m[1]) : -1;
		if (wait !== 0 && !(wait >= 5 && wait <= 50))
			throw bad(`wait_timeout must be 0s or between 5s and 50s, got ${JSON.stringify(wt)}`);
		const onWait = body.on_wait_timeout === undefined ? 'CONTINUE' : body.on_wait_timeout;
		if (onWait !== 'CONTINUE' && onWait !== 'CANCEL')
			throw bad(`on_wait_timeout must be CONTINUE or CANCEL, got ${JSON.stringify(onWait)}`);
		if (this.knobs.warehouses && !this.knobs.warehouses.includes(body.warehouse_id))
			throw new StatementHttpError(404, 'RESOURCE_DOES_NOT_EXIST',
				`Warehouse ${body.warehouse_id} does not exist.`);
		const s = { id: `01f0${crypto.randomUUID().slice(4)}`, client, statement: body.statement,
			warehouse_id: body.warehouse_id, defaults: { catalog: body.catalog, schema: body.schema },
			state: 'PENDING', submittedAt: Date.now() };
		this.statements.set(s.id, s);
		const match = this.knobs.statement_delay_match;
		this.schedule(s, match === null || body.statement.includes(match) ? this.knobs.statement_delay_ms : 0);
		if (wait > 0) {
			let timer;
			await Promise.race([s.done, new Promise(resolve => { timer = setTimeout(resolve, wait * 1000); })]);
			clearTimeout(timer);
			if (onWait === 'CANCEL')
				this.cancel(s);
		}
		return this.view(s);
	}

	find(req, id) {
		const client = this.principal(req);
		const s = this.statements.get(id);
		/* another principal's statement is as good as absent */
		if (!s || s.client !== client)
			throw new StatementHttpError(404, 'NOT_FOUND', `Statement ${id} does not exist.`);
		return s;
	}

	list() {
		return [...this.statements.values()].map(s => ({ statement_id: s.id, client_id: s.client,
			warehouse_id: s.warehouse_id, statement: s.statement, state: s.state, error: s.error || null }));
	}

	/* Routes /api/2.0/sql/statements[...] and /admin/sql[...]; undefined for others. */
	async route(req, p, method, body) {
		let m;
		if (p === '/api/2.0/sql/statements' && method === 'POST')
			return this.submit(req, body);
		if ((m = /^\/api\/2\.0\/sql\/statements\/([^/]+)$/.exec(p)) && method === 'GET') {
			const pe = this.knobs.poll_errors;
			if (pe) {
				if (--pe.count <= 0)
					this.knobs.poll_errors = null;
				throw new StatementHttpError(pe.status, pe.status === 429 ? 'REQUEST_LIMIT_EXCEEDED' : 'TEMPORARILY_UNAVAILABLE',
					`injected fault: HTTP ${pe.status} on a poll`);
			}
			return this.view(this.find(req, decodeURIComponent(m[1])));
		}
		if ((m = /^\/api\/2\.0\/sql\/statements\/([^/]+)\/cancel$/.exec(p)) && method === 'POST') {
			this.cancel(this.find(req, decodeURIComponent(m[1])));
			return {};
		}
		if (p === '/admin/sql' && method === 'GET')
			return this.knobs;
		if (p === '/admin/sql' && method === 'PUT')
			return this.setKnobs(body);
		if (p === '/admin/sql/statements' && method === 'GET')
			return this.list();
		return undefined;
	}
}

module.exports = { Statements, StatementHttpError, parse };
