'use strict';
/*
 * types.js
 *    Delta column types: parsing the declared type text, the Delta schema
 *    JSON, the DuckDB type used to write Parquet, and value formatting.
 *
 * A type is a plain object: {kind} for primitives ('TINYINT' ... 'VARIANT'),
 * {kind: 'DECIMAL', p, s}, {kind: 'ARRAY', element},
 * {kind: 'MAP', key, value}, {kind: 'STRUCT', fields: [{name, type, nullable}]}.
 * Values inside the emulator use one representation whatever the record
 * format: integers as Number (BigInt when beyond 2^53), DATE as days (Number),
 * TIMESTAMP/TIMESTAMP_NTZ as microseconds (Number or BigInt), DECIMAL and
 * VARIANT as text, BINARY as Buffer, ARRAY as Array, MAP as Array of [k, v],
 * STRUCT as object, NULL as null (absent is undefined).
 */

const PRIMITIVES = new Set(['TINYINT', 'SMALLINT', 'INT', 'BIGINT', 'FLOAT',
	'DOUBLE', 'BOOLEAN', 'STRING', 'BINARY', 'DATE', 'TIMESTAMP',
	'TIMESTAMP_NTZ', 'VARIANT']);
const ALIASES = { BYTE: 'TINYINT', SHORT: 'SMALLINT', INTEGER: 'INT',
	LONG: 'BIGINT', REAL: 'FLOAT', BOOL: 'BOOLEAN' };

class TypeError_ extends Error {}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/* Parse Delta type text such as "ARRAY<STRUCT<a:INT,b:DECIMAL(10,2)>>". */
function parseType(text) {
	if (typeof text !== 'string')
		throw new TypeError_('column type must be a string');
	const toks = text.match(/[A-Za-z_][A-Za-z0-9_]*|\d+|[<>(),:]|\S/g) || [];
	let i = 0;
	const peek = () => toks[i];
	const next = () => {
		if (i >= toks.length)
			throw new TypeError_(`unexpected end of type "${text}"`);
		return toks[i++];
	};
	const expect = (t) => {
		const got = next();
		if (got.toUpperCase() !== t)
			throw new TypeError_(`expected "${t}" in type "${text}", found "${got}"`);
	};
	function one() {
		let name = next().toUpperCase();
		name = ALIASES[name] || name;
		if (name === 'DECIMAL' || name === 'DEC' || name === 'NUMERIC') {
			let p = 10, s = 0;
			if (peek() === '(') {
				next();
				p = Number(next());
				if (peek() === ',') {
					next();
					s = Number(next());
				}
				expect(')');
			}
			if (!(p >= 1 && p <= 38 && s >= 0 && s <= p))
				throw new TypeError_(`invalid DECIMAL(${p},${s}) in "${text}"`);
			return { kind: 'DECIMAL', p, s };
		}
		if (name === 'VARCHAR' || name === 'CHAR') {
			if (peek() === '(') {
				next();
				next();
				expect(')');
			}
			return { kind: 'STRING' };
		}
		if (name === 'ARRAY') {
			expect('<');
			const element = one();
			expect('>');
			return { kind: 'ARRAY', element };
		}
		if (name === 'MAP') {
			expect('<');
			const key = one();
			expect(',');
			const value = one();
			expect('>');
			if (!['TINYINT', 'SMALLINT', 'INT', 'BIGINT', 'BOOLEAN', 'STRING'].includes(key.kind))
				throw new TypeError_(`MAP key type ${key.kind} is not supported (integral, BOOLEAN or STRING only)`);
			return { kind: 'MAP', key, value };
		}
		if (name === 'STRUCT') {
			expect('<');
			const fields = [];
			for (;;) {
				const fname = next();
				if (!IDENT.test(fname))
					throw new TypeError_(`invalid STRUCT field name "${fname}" in "${text}"`);
				expect(':');
				const type = one();
				let nullable = true;
				if (peek() && peek().toUpperCase() === 'NOT') {
					next();
					expect('NULL');
					nullable = false;
				}
				fields.push({ name: fname, type, nullable });
				if (peek() === ',') {
					next();
					continue;
				}
				expect('>');
				break;
			}
			return { kind: 'STRUCT', fields };
		}
		if (PRIMITIVES.has(name))
			return { kind: name };
		throw new TypeError_(`unsupported column type "${name}" in "${text}"`);
	}
	const t = one();
	if (i !== toks.length)
		throw new TypeError_(`trailing text in type "${text}"`);
	return t;
}

/* Canonical type text (what the admin API returns). */
function typeText(t) {
	switch (t.kind) {
		case 'DECIMAL':
			return `DECIMAL(${t.p},${t.s})`;
		case 'ARRAY':
			return `ARRAY<${typeText(t.element)}>`;
		case 'MAP':
			return `MAP<${typeText(t.key)},${typeText(t.value)}>`;
		case 'STRUCT':
			return 'STRUCT<' + t.fields.map(f =>
				`${f.name}:${typeText(f.type)}${f.nullable ? '' : ' NOT NULL'}`).join(',') + '>';
		default:
			return t.kind;
	}
}

/*
 * Validate and normalise a column list [{name, type, nullable}] from the
 * admin API or config file.  Returns columns with parsed types.
 */
function parseColumns(cols) {
	if (!Array.isArray(cols) || cols.length === 0)
		throw new TypeError_('columns must be a non-empty array');
	const seen = new Set();
	return cols.map((c) => {
		if (!c || typeof c.name !== 'string' || !IDENT.test(c.name))
			throw new TypeError_(`invalid column name ${JSON.stringify(c && c.name)}`);
		const lower = c.name.toLowerCase();
		if (seen.has(lower))
			throw new TypeError_(`duplicate column "${c.name}"`);
		seen.add(lower);
		const type = typeof c.type === 'string' ? parseType(c.type) : c.type;
		const col = { name: c.name, type, nullable: c.nullable !== false };
		/* Delta column mapping (mode name): the column's id and the name of
		 * its Parquet column, which a rename leaves as it was */
		if (c.physical !== undefined || c.id !== undefined) {
			if (typeof c.physical !== 'string' || !c.physical || !Number.isInteger(c.id) || c.id < 1)
				throw new TypeError_(`column "${c.name}": a mapped column needs a physical name and an id >= 1`);
			col.physical = c.physical;
			col.id = c.id;
		}
		return col;
	});
}

/* Delta Lake schema JSON type for one column type. */
function deltaType(t) {
	switch (t.kind) {
		case 'TINYINT': return 'byte';
		case 'SMALLINT': return 'short';
		case 'INT': return 'integer';
		case 'BIGINT': return 'long';
		case 'FLOAT': return 'float';
		case 'DOUBLE': return 'double';
		case 'BOOLEAN': return 'boolean';
		case 'STRING': return 'string';
		case 'VARIANT': return 'string';
		case 'BINARY': return 'binary';
		case 'DATE': return 'date';
		case 'TIMESTAMP': return 'timestamp';
		case 'TIMESTAMP_NTZ': return 'timestamp_ntz';
		case 'DECIMAL': return `decimal(${t.p},${t.s})`;
		case 'ARRAY':
			return { type: 'array', elementType: deltaType(t.element), containsNull: true };
		case 'MAP':
			return { type: 'map', keyType: deltaType(t.key), valueType: deltaType(t.value),
				valueContainsNull: true };
		case 'STRUCT':
			return deltaStruct(t.fields);
		default:
			throw new TypeError_(`no Delta type for ${t.kind}`);
	}
}

function deltaStruct(fields) {
	return {
		type: 'struct',
		fields: fields.map(f => ({
			name: f.name,
			type: deltaType(f.type),
			nullable: f.nullable,
			metadata: {
				...(f.type.kind === 'VARIANT' ? { 'zerobus.type': 'VARIANT' } : {}),
				...(f.physical !== undefined ? { 'delta.columnMapping.id': f.id,
					'delta.columnMapping.physicalName': f.physical } : {}),
			},
		})),
	};
}

/* Inverse of deltaType, used by the reader to know how to print values. */
function fromDeltaType(d, meta) {
	if (typeof d === 'string') {
		const m = /^decimal\((\d+),\s*(\d+)\)$/.exec(d);
		if (m)
			return { kind: 'DECIMAL', p: Number(m[1]), s: Number(m[2]) };
		const map = { byte: 'TINYINT', short: 'SMALLINT', integer: 'INT', long: 'BIGINT',
			float: 'FLOAT', double: 'DOUBLE', boolean: 'BOOLEAN', string: 'STRING',
			binary: 'BINARY', date: 'DATE', timestamp: 'TIMESTAMP',
			timestamp_ntz: 'TIMESTAMP_NTZ' };
		if (d === 'string' && meta && meta['zerobus.type'] === 'VARIANT')
			return { kind: 'VARIANT' };
		if (!map[d])
			throw new TypeError_(`unknown Delta type ${d}`);
		return { kind: map[d] };
	}
	if (d.type === 'array')
		return { kind: 'ARRAY', element: fromDeltaType(d.elementType) };
	if (d.type === 'map')
		return { kind: 'MAP', key: fromDeltaType(d.keyType), value: fromDeltaType(d.valueType) };
	if (d.type === 'struct')
		return { kind: 'STRUCT', fields: d.fields.map(f => ({ name: f.name,
			type: fromDeltaType(f.type, f.metadata), nullable: f.nullable })) };
	throw new TypeError_(`unknown Delta type ${JSON.stringify(d)}`);
}

function usesKind(t, kind) {
	if (t.kind === kind)
		return true;
	switch (t.kind) {
		case 'ARRAY': return usesKind(t.element, kind);
		case 'MAP': return usesKind(t.key, kind) || usesKind(t.value, kind);
		case 'STRUCT': return t.fields.some(f => usesKind(f.type, kind));
		default: return false;
	}
}

const quoteIdent = (n) => '"' + n.replace(/"/g, '""') + '"';

/* DuckDB type used to read our NDJSON staging text and write Parquet. */
function duckType(t) {
	switch (t.kind) {
		case 'TINYINT': return 'TINYINT';
		case 'SMALLINT': return 'SMALLINT';
		case 'INT': return 'INTEGER';
		case 'BIGINT': return 'BIGINT';
		case 'FLOAT': return 'FLOAT';
		case 'DOUBLE': return 'DOUBLE';
		case 'BOOLEAN': return 'BOOLEAN';
		case 'STRING':
		case 'VARIANT': return 'VARCHAR';
		case 'BINARY': return 'BLOB';
		case 'DATE': return 'DATE';
		case 'TIMESTAMP': return 'TIMESTAMPTZ';
		case 'TIMESTAMP_NTZ': return 'TIMESTAMP';
		case 'DECIMAL': return `DECIMAL(${t.p},${t.s})`;
		case 'ARRAY': return `${duckType(t.element)}[]`;
		case 'MAP': return `MAP(${duckType(t.key)}, ${duckType(t.value)})`;
		case 'STRUCT':
			return 'STRUCT(' + t.fields.map(f => `${quoteIdent(f.name)} ${duckType(f.type)}`).join(', ') + ')';
		default:
			throw new TypeError_(`no DuckDB type for ${t.kind}`);
	}
}

/*
 * DATE days that the reader prints as "YYYY-MM-DD": 0001-01-01 (-719162)
 * to 9999-12-31 (2932896), the years written with four digits and no sign
 * in every convention (no year 0 or BCE question).  A DATE column stores
 * any int32; days outside this range are printed as the day count itself.
 */
const DATE_TEXT_MIN = -719162;
const DATE_TEXT_MAX = 2932896;

/*
 * The reader's form of a DATE (days since 1970-01-01, any int32):
 * "YYYY-MM-DD" (proleptic Gregorian) from 0001-01-01 to 9999-12-31, else
 * the integer day count.  Both are exact.
 */
function dateOut(days) {
	const n = Number(days);
	if (n < DATE_TEXT_MIN || n > DATE_TEXT_MAX)
		return n;
	return new Date(n * 86400000).toISOString().slice(0, 10);
}

/* "YYYY-MM-DD" to days since 1970-01-01, or null when malformed. */
function parseDateText(s) {
	const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
	if (!m)
		return null;
	/* Not Date.UTC(), which takes years 0-99 for 1900-1999. */
	const d = new Date(0);
	d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
	if (d.getUTCDate() !== Number(m[3]) || d.getUTCMonth() !== Number(m[2]) - 1)
		return null;
	return d.getTime() / 86400000;
}

/* ISO-8601 timestamp text to microseconds, or null when malformed. */
function parseTimestampText(s, ntz) {
	const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:?\d{2})?$/.exec(s);
	if (!m)
		return null;
	const days = parseDateText(m[1]);
	if (days === null)
		return null;
	let sec = days * 86400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]);
	if (m[6] && m[6] !== 'Z') {
		if (ntz)
			return null;
		const sign = m[6][0] === '-' ? -1 : 1;
		const hh = Number(m[6].slice(1, 3));
		const mm = Number(m[6].slice(-2));
		sec -= sign * (hh * 3600 + mm * 60);
	}
	const us = sec * 1e6 + Number((m[5] || '').padEnd(6, '0'));
	return Number.isSafeInteger(us) ? us : BigInt(sec) * 1000000n + BigInt((m[5] || '').padEnd(6, '0'));
}

/*
 * Check decimal text against DECIMAL(p,s): at most p-s integer digits and
 * at most s fraction digits (no silent rounding).  Returns an error string
 * or null.
 */
function checkDecimal(text, t) {
	const m = /^[+-]?(\d*)(?:\.(\d*))?$/.exec(text);
	if (!m || (m[1] === '' && (m[2] === undefined || m[2] === '')))
		return `"${text}" is not a decimal number`;
	const intDigits = m[1].replace(/^0+/, '').length;
	const fracDigits = (m[2] || '').replace(/0+$/, '').length;
	if (intDigits > t.p - t.s || fracDigits > t.s)
		return `"${text}" does not fit DECIMAL(${t.p},${t.s})`;
	return null;
}

/*
 * Format a scalar value of type t as JSON text that DuckDB's read_json
 * converts exactly to duckType(t), or for DATE and TIMESTAMP(_NTZ) to the
 * integer type delta.js stages them as.  Nested types and BINARY are staged
 * by delta.js, which calls this for the scalars inside them.
 */
function duckJson(v, t) {
	if (v === null || v === undefined)
		return 'null';
	switch (t.kind) {
		case 'TINYINT':
		case 'SMALLINT':
		case 'INT':
		case 'BIGINT':
		case 'BOOLEAN':
			return String(v);
		case 'FLOAT':
		case 'DOUBLE':
			if (Object.is(v, -0))
				return '-0.0';	/* String(-0) is "0": keep the sign */
			return Number.isFinite(v) ? String(v) : `"${v}"`;
		case 'STRING':
		case 'VARIANT':
		case 'DECIMAL':
			return JSON.stringify(v);
		case 'DATE':
		case 'TIMESTAMP':
		case 'TIMESTAMP_NTZ':
			/*
			 * The integer itself (days, microseconds): delta.js stages these
			 * as INTEGER / BIGINT and turns them into DATE / TIMESTAMP(TZ)
			 * bit for bit, whatever the value (see stagedType()).
			 */
			return String(v);
		default:
			throw new TypeError_(`cannot format ${t.kind}`);
	}
}

module.exports = {
	TypeError_, parseType, typeText, parseColumns, deltaType, deltaStruct,
	fromDeltaType, usesKind, duckType, quoteIdent, duckJson, dateOut,
	parseDateText, parseTimestampText, checkDecimal, IDENT, DATE_TEXT_MIN, DATE_TEXT_MAX,
};
