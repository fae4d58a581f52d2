'use strict';
/*
 * records.js
 *    Descriptor checking and record decoding against a table's columns.
 *
 * compileProto() checks a client's DescriptorProto against the table the
 * way the service does (self-contained, every field a known column of the
 * mapped protobuf type, every NOT NULL column present) and returns a plan;
 * decodeProto() turns one record into a row with that plan, failing on any
 * malformed or non-conforming record; checkProto() makes the same walk and
 * the same checks without building the row, for callers that only need to
 * accept or reject.  decodeJson() decodes JSON records.  Every failure is
 * a ValidationError whose message the server sends as the INVALID_ARGUMENT
 * status text.
 */

const { isUtf8 } = require('node:buffer');
const { Reader, WireError, decodeGeneric } = require('./wire');
const T = require('./types');

class ValidationError extends Error {}

/* google.protobuf.FieldDescriptorProto.Type numbers and names. */
const PT = { DOUBLE: 1, FLOAT: 2, INT64: 3, UINT64: 4, INT32: 5, FIXED64: 6,
	FIXED32: 7, BOOL: 8, STRING: 9, GROUP: 10, MESSAGE: 11, BYTES: 12,
	UINT32: 13, ENUM: 14, SFIXED32: 15, SFIXED64: 16, SINT32: 17, SINT64: 18 };
const PT_NAME = Object.fromEntries(Object.entries(PT).map(([k, v]) => [v, k.toLowerCase()]));
const LABEL = { 1: 'optional', 2: 'required', 3: 'repeated' };

const str = (r) => r.string();
const num = (r) => r.int32();

const FIELD_SPEC = {
	1: str, 3: num, 4: num, 5: num, 6: str, 9: num,
	8: (r) => {
		const [s, e] = r.lengthDelimited();
		return decodeGeneric(r.buf, { 2: (rr) => rr.bool() }, s, e);
	},
};
const MESSAGE_SPEC = {
	1: str,
	2: (r) => {
		const [s, e] = r.lengthDelimited();
		return decodeGeneric(r.buf, FIELD_SPEC, s, e);
	},
	3: (r) => {
		const [s, e] = r.lengthDelimited();
		return decodeGeneric(r.buf, MESSAGE_SPEC, s, e);
	},
	6: (r) => { r.lengthDelimited(); return true; },	/* extension */
	7: (r) => {
		const [s, e] = r.lengthDelimited();
		return decodeGeneric(r.buf, { 7: (rr) => rr.bool() }, s, e);
	},
};

function first(o, n, dflt) {
	return o[n] ? o[n][o[n].length - 1] : dflt;
}

/* Decode a serialized DescriptorProto into a plain tree. */
function parseDescriptor(bytes) {
	let raw;
	try {
		raw = decodeGeneric(bytes, MESSAGE_SPEC);
	} catch (e) {
		if (e instanceof WireError)
			throw new ValidationError(`descriptor_proto is not a valid DescriptorProto: ${e.message}`);
		throw e;
	}
	const conv = (m) => ({
		name: first(m, 1, ''),
		mapEntry: first(m, 7, {}) && first(first(m, 7, {}), 7, false),
		hasExtensions: !!m[6],
		fields: (m[2] || []).map(f => ({
			name: first(f, 1, ''),
			number: first(f, 3, 0),
			label: first(f, 4, 1),
			type: first(f, 5, 0),
			typeName: first(f, 6, ''),
			packed: f[8] ? first(first(f, 8), 2, false) : false,
		})),
		nested: (m[3] || []).map(conv),
	});
	const d = conv(raw);
	if (!d.name)
		throw new ValidationError('descriptor_proto has no message name');
	if (d.fields.length === 0)
		throw new ValidationError('descriptor_proto has no fields');
	return d;
}

/*
 * Resolve a field's type_name among the nested types visible from the
 * message path `scope` (outermost first).  Only nested types count: the
 * descriptor must be self-contained.
 */
function resolveNested(typeName, scope, fieldName) {
	const parts = typeName.replace(/^\./, '').split('.');
	const last = parts[parts.length - 1];
	for (let i = scope.length - 1; i >= 0; i--) {
		const hit = scope[i].nested.find(n => n.name === last);
		if (hit)
			return hit;
	}
	throw new ValidationError(`proto not self-contained for field "${fieldName}": ` +
		`type "${typeName}" is not a nested type of the record message`);
}

/* Protobuf type a Delta scalar must arrive as. */
const SCALAR_PROTO = {
	TINYINT: PT.INT32, SMALLINT: PT.INT32, INT: PT.INT32, DATE: PT.INT32,
	BIGINT: PT.INT64, TIMESTAMP: PT.INT64, TIMESTAMP_NTZ: PT.INT64,
	FLOAT: PT.FLOAT, DOUBLE: PT.DOUBLE, BOOLEAN: PT.BOOL, STRING: PT.STRING,
	DECIMAL: PT.STRING, VARIANT: PT.STRING, BINARY: PT.BYTES,
};

function expectedText(t) {
	if (t.kind === 'STRUCT')
		return 'a nested message';
	return PT_NAME[SCALAR_PROTO[t.kind]];
}

/*
 * Build the decode step for one value of Delta type t carried by protobuf
 * field f (label ignored here).  Throws ValidationError on a mismatch.
 */
function compileValue(f, t, scope, path) {
	if (t.kind === 'STRUCT') {
		if (f.type !== PT.MESSAGE)
			throw new ValidationError(`column "${path}" is ${T.typeText(t)} and must be a nested message, ` +
				`descriptor has ${PT_NAME[f.type] || f.type}`);
		const msg = resolveNested(f.typeName, scope, path);
		if (msg.mapEntry)
			throw new ValidationError(`column "${path}" is ${T.typeText(t)}, descriptor has a map`);
		return { kind: 'STRUCT', type: t, plan: compileMessage(msg, t.fields, scope.concat([msg]), path + '.') };
	}
	if (f.type !== SCALAR_PROTO[t.kind])
		throw new ValidationError(`column "${path}" is ${T.typeText(t)} and must be ${expectedText(t)}, ` +
			`descriptor has ${PT_NAME[f.type] || 'type ' + f.type}`);
	return { kind: t.kind, type: t };
}

/*
 * Compile one message (the record or a STRUCT) against its columns.
 * Returns {byNumber: Map(number -> step), columns, required: [names]}.
 */
function compileMessage(msg, columns, scope, prefix) {
	if (msg.hasExtensions)
		throw new ValidationError(`message "${msg.name}" declares extensions, which are not supported`);
	const byName = new Map(columns.map(c => [c.name.toLowerCase(), c]));
	const byNumber = new Map();
	const present = new Set();
	for (const f of msg.fields) {
		const path = prefix + f.name;
		const col = byName.get(f.name.toLowerCase());
		if (!col)
			throw new ValidationError(`descriptor field "${path}" is not a column of the table ` +
				'(unknown columns are rejected)');
		if (present.has(col.name))
			throw new ValidationError(`column "${path}" appears twice in the descriptor`);
		if (byNumber.has(f.number) || f.number <= 0)
			throw new ValidationError(`descriptor field "${path}" has an invalid or duplicate number ${f.number}`);
		present.add(col.name);
		const t = col.type;
		let step;
		if (t.kind === 'ARRAY') {
			if (f.label !== 3)
				throw new ValidationError(`column "${path}" is ${T.typeText(t)} and must be repeated, ` +
					`descriptor has ${LABEL[f.label]}`);
			if (t.element.kind === 'ARRAY' || t.element.kind === 'MAP')
				throw new ValidationError(`column "${path}": nested arrays and arrays of maps are not supported`);
			step = { kind: 'ARRAY', type: t, elem: compileValue(f, t.element, scope, path) };
		} else if (t.kind === 'MAP') {
			if (f.label !== 3 || f.type !== PT.MESSAGE)
				throw new ValidationError(`column "${path}" is ${T.typeText(t)} and must be a protobuf map`);
			const entry = resolveNested(f.typeName, scope, path);
			const kf = entry.fields.find(x => x.number === 1);
			const vf = entry.fields.find(x => x.number === 2);
			if (!entry.mapEntry || !kf || !vf || entry.fields.length !== 2)
				throw new ValidationError(`column "${path}" is ${T.typeText(t)} and must be a protobuf map`);
			if (t.value.kind === 'MAP' || t.value.kind === 'ARRAY')
				throw new ValidationError(`column "${path}": maps of maps or arrays are not supported`);
			step = { kind: 'MAP', type: t,
				key: compileValue(kf, t.key, scope, path + '.key'),
				value: compileValue(vf, t.value, scope.concat([entry]), path + '.value') };
		} else {
			if (f.label === 3)
				throw new ValidationError(`column "${path}" is ${T.typeText(t)}, descriptor has a repeated field`);
			step = compileValue(f, t, scope, path);
		}
		step.name = col.name;
		step.number = f.number;
		step.seenIn = 0;
		byNumber.set(f.number, step);
	}
	const missing = columns.filter(c => !c.nullable && !present.has(c.name));
	if (missing.length)
		throw new ValidationError(`descriptor lacks NOT NULL column(s) ${missing.map(c => '"' + prefix + c.name + '"').join(', ')}`);
	const required = [...byNumber.values()].filter(st => columns.find(c => c.name === st.name).nullable === false);
	return { byNumber, columns, required, walks: 0 };
}

/* Check descriptor bytes against the table columns; returns a decode plan. */
function compileProto(descriptorBytes, columns) {
	if (!descriptorBytes || descriptorBytes.length === 0)
		throw new ValidationError('record_type PROTO requires descriptor_proto');
	const d = parseDescriptor(descriptorBytes);
	return compileMessage(d, columns, [d], '');
}

const INT_RANGE = { TINYINT: [-128, 127], SMALLINT: [-32768, 32767] };

/* Checks shared by both record formats on an already typed value. */
function checkScalar(v, t, path) {
	switch (t.kind) {
		case 'TINYINT':
		case 'SMALLINT': {
			const [lo, hi] = INT_RANGE[t.kind];
			if (v < lo || v > hi)
				throw new ValidationError(`value ${v} out of range for ${t.kind} column "${path}"`);
			break;
		}
		case 'DECIMAL': {
			const err = T.checkDecimal(v, t);
			if (err)
				throw new ValidationError(`column "${path}": ${err}`);
			break;
		}
		case 'VARIANT':
			try {
				JSON.parse(v);
			} catch (e) {
				throw new ValidationError(`column "${path}" is VARIANT and needs JSON text: ${e.message}`);
			}
			break;
		default:
			break;
	}
	return v;
}

/*
 * Whether buf[s, e) is UTF-8.  The ASCII bytes up front (all of them, as a
 * rule) are valid on their own and no sequence spans them, so only the rest
 * needs the native check and a Buffer view.
 */
function utf8At(buf, s, e) {
	let i = s;
	while (i < e && buf[i] < 0x80)
		i++;
	return i === e || isUtf8(buf.subarray(i, e));
}

/*
 * Whether the ASCII text buf[s, e) passes T.checkDecimal() for DECIMAL type
 * t, read from the bytes without making the string.  A false answer is
 * only a hint: the caller then runs checkDecimal() on the text, which is
 * the rule and words the error.
 */
function decimalFitsAt(buf, s, e, t) {
	let i = s, digits = 0, intDigits = 0, fracDigits = 0;
	if (i < e && (buf[i] === 0x2b || buf[i] === 0x2d))	/* + - */
		i++;
	for (; i < e && buf[i] >= 0x30 && buf[i] <= 0x39; i++, digits++)
		if (intDigits > 0 || buf[i] !== 0x30)
			intDigits++;	/* leading zeros do not count */
	if (i < e && buf[i] === 0x2e) {	/* . */
		i++;
		for (let j = 1; i < e && buf[i] >= 0x30 && buf[i] <= 0x39; i++, digits++, j++)
			if (buf[i] !== 0x30)
				fracDigits = j;		/* nor do trailing zeros */
	}
	return i === e && digits > 0 && intDigits <= t.p - t.s && fracDigits <= t.s;
}

/*
 * Read one scalar of step's type.  With build false the value is checked
 * exactly as with build true but strings and binaries are not materialized
 * (the result is then only a placeholder that is not null).
 */
function readScalar(r, step, wt, path, build) {
	const k = step.kind;
	let v;
	switch (SCALAR_PROTO[k]) {
		case PT.INT32:
			if (wt !== 0)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected varint`);
			v = r.int32();
			break;
		case PT.INT64:
			if (wt !== 0)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected varint`);
			if (build)
				v = r.int64();
			else {
				r.readVarint();
				v = true;
			}
			break;
		case PT.BOOL:
			if (wt !== 0)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected varint`);
			v = r.bool();
			break;
		case PT.FLOAT:
			if (wt !== 5)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected fixed32`);
			v = r.float();
			break;
		case PT.DOUBLE:
			if (wt !== 1)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected fixed64`);
			v = r.double();
			break;
		case PT.BYTES:
			if (wt !== 2)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected length-delimited`);
			if (build)
				v = Buffer.from(r.bytes());
			else {
				r.span();
				v = true;
			}
			break;
		case PT.STRING: {
			if (wt !== 2)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected length-delimited`);
			const s = r.span(), e = r.pos;
			if (!utf8At(r.buf, s, e))
				throw new ValidationError(`column "${path}" holds invalid UTF-8`);
			if (!build && k === 'DECIMAL' && decimalFitsAt(r.buf, s, e, step.type))
				return true;
			/* DECIMAL and VARIANT text is checked below, so it is needed in any mode. */
			v = build || k !== 'STRING' ? r.buf.toString('utf8', s, e) : true;
			break;
		}
		default:
			throw new ValidationError(`column "${path}": unsupported type`);
	}
	return k === 'TINYINT' || k === 'SMALLINT' || k === 'DECIMAL' || k === 'VARIANT'
		? checkScalar(v, step.type, path) : v;
}

function readValue(r, step, wt, path, build) {
	if (step.kind === 'STRUCT') {
		if (wt !== 2)
			throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected a message`);
		const [s, e] = r.lengthDelimited();
		return walkMessage(r.buf, s, e, step.plan, path + '.', build);
	}
	return readScalar(r, step, wt, path, build);
}

const PACKABLE = new Set(['TINYINT', 'SMALLINT', 'INT', 'DATE', 'BIGINT', 'TIMESTAMP',
	'TIMESTAMP_NTZ', 'FLOAT', 'DOUBLE', 'BOOLEAN']);

/*
 * Walk one message of plan in buf[start, end), checking every field; with
 * build true return it as a row object, else return true.  Which fields
 * were seen is stamped on the plan's steps (walks numbers each walk), so a
 * plan must not be walked re-entrantly; nested messages have plans of their
 * own, and decoding is synchronous.
 */
function walkMessage(buf, start, end, plan, prefix, build) {
	const r = new Reader(buf, start, end);
	const row = build ? {} : null;
	const walk = ++plan.walks;
	while (!r.eof()) {
		const tag = r.uint32();
		const number = tag >>> 3;
		const wt = tag & 7;
		const step = plan.byNumber.get(number);
		if (step === undefined)
			throw new ValidationError(`record has field number ${number}, which the descriptor does not declare`);
		const path = prefix + step.name;
		step.seenIn = walk;
		if (step.kind === 'ARRAY') {
			const arr = build ? row[step.name] || (row[step.name] = []) : null;
			if (wt === 2 && PACKABLE.has(step.elem.kind)) {
				const [s, e] = r.lengthDelimited();
				const pr = new Reader(buf, s, e);
				const ewt = step.elem.kind === 'FLOAT' ? 5 : step.elem.kind === 'DOUBLE' ? 1 : 0;
				while (!pr.eof()) {
					const v = readScalar(pr, step.elem, ewt, path, build);
					if (build)
						arr.push(v);
				}
			} else {
				const v = readValue(r, step.elem, wt, path, build);
				if (build)
					arr.push(v);
			}
		} else if (step.kind === 'MAP') {
			if (wt !== 2)
				throw new ValidationError(`field for column "${path}" has wire type ${wt}, expected a map entry`);
			const [s, e] = r.lengthDelimited();
			const er = new Reader(buf, s, e);
			let k = null, v = null;
			while (!er.eof()) {
				const et = er.uint32();
				if (et >>> 3 === 1)
					k = readValue(er, step.key, et & 7, path + '.key', build);
				else if (et >>> 3 === 2)
					v = readValue(er, step.value, et & 7, path + '.value', build);
				else
					throw new ValidationError(`map entry of column "${path}" has unknown field ${et >>> 3}`);
			}
			if (k === null)
				throw new ValidationError(`map entry of column "${path}" has no key`);
			if (build)
				(row[step.name] || (row[step.name] = [])).push([k, v]);
		} else {
			const v = readValue(r, step, wt, path, build);
			if (build)
				row[step.name] = v;
		}
	}
	for (const step of plan.required)
		if (step.seenIn !== walk) {
			if (step.kind !== 'ARRAY' && step.kind !== 'MAP')
				throw new ValidationError(`record lacks NOT NULL column "${prefix}${step.name}"`);
			if (build)
				row[step.name] = [];	/* an empty repeated field is an empty array, not NULL */
		}
	return build ? row : true;
}

function walkProto(buf, start, end, plan, build) {
	try {
		return walkMessage(buf, start, end, plan, '', build);
	} catch (e) {
		if (e instanceof WireError)
			throw new ValidationError(`record does not parse as the declared message: ${e.message}`);
		throw e;
	}
}

/* Decode one PROTO record with a plan from compileProto(). */
function decodeProto(buf, plan) {
	return walkProto(buf, 0, buf.length, plan, true);
}

/*
 * Check the PROTO record buf[start, end) with a plan from compileProto()
 * without building its row: throws the same ValidationError decodeProto()
 * would on the record alone.
 */
function checkProto(buf, start, end, plan) {
	walkProto(buf, start, end, plan, false);
}

/* Convert one JSON value to the internal representation of type t. */
function jsonValue(v, t, path, nullable) {
	if (v === null) {
		if (!nullable)
			throw new ValidationError(`NOT NULL column "${path}" is null`);
		return null;
	}
	const bad = (what) => new ValidationError(`column "${path}" is ${T.typeText(t)}: ${what}`);
	switch (t.kind) {
		case 'TINYINT':
		case 'SMALLINT':
		case 'INT':
			if (!Number.isInteger(v))
				throw bad(`expected an integer, got ${JSON.stringify(v)}`);
			if (t.kind === 'INT' && (v < -2147483648 || v > 2147483647))
				throw bad(`value ${v} out of range`);
			return checkScalar(v, t, path);
		case 'BIGINT':
			if (typeof v === 'string' && /^-?\d+$/.test(v)) {
				const b = BigInt(v);
				if (b !== BigInt.asIntN(64, b))
					throw bad(`value ${v} out of range`);
				return Number.isSafeInteger(Number(b)) ? Number(b) : b;
			}
			if (!Number.isSafeInteger(v))
				throw bad(`expected an integer (send values beyond 2^53 as strings), got ${JSON.stringify(v)}`);
			return v;
		case 'FLOAT':
		case 'DOUBLE':
			if (typeof v !== 'number')
				throw bad(`expected a number, got ${JSON.stringify(v)}`);
			return t.kind === 'FLOAT' ? Math.fround(v) : v;
		case 'BOOLEAN':
			if (typeof v !== 'boolean')
				throw bad(`expected true or false, got ${JSON.stringify(v)}`);
			return v;
		case 'STRING':
			if (typeof v !== 'string')
				throw bad(`expected a string, got ${JSON.stringify(v)}`);
			return v;
		case 'VARIANT':
			return JSON.stringify(v);
		case 'BINARY':
			if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v))
				throw bad('expected base64 text');
			return Buffer.from(v, 'base64');
		case 'DECIMAL':
			if (typeof v !== 'string' && typeof v !== 'number')
				throw bad(`expected decimal text, got ${JSON.stringify(v)}`);
			return checkScalar(String(v), t, path);
		case 'DATE': {
			const d = typeof v === 'string' ? T.parseDateText(v) : Number.isInteger(v) ? v : null;
			if (d === null)
				throw bad(`expected "YYYY-MM-DD" or days since 1970-01-01, got ${JSON.stringify(v)}`);
			/* Days are an int32, as in a PROTO record (and in the Parquet file). */
			if (d < -2147483648 || d > 2147483647)
				throw bad(`value ${v} out of range (days since 1970-01-01 must fit 32 bits)`);
			return d;
		}
		case 'TIMESTAMP':
		case 'TIMESTAMP_NTZ': {
			const us = typeof v === 'string' ? T.parseTimestampText(v, t.kind === 'TIMESTAMP_NTZ')
				: Number.isSafeInteger(v) ? v : null;
			if (us === null)
				throw bad(`expected ISO-8601 text or microseconds since the epoch, got ${JSON.stringify(v)}`);
			return us;
		}
		case 'ARRAY':
			if (!Array.isArray(v))
				throw bad('expected an array');
			return v.map((e, i) => jsonValue(e, t.element, `${path}[${i}]`, false));
		case 'MAP':
			if (typeof v !== 'object' || Array.isArray(v))
				throw bad('expected an object');
			return Object.entries(v).map(([k, val]) => {
				let key = k;
				if (t.key.kind === 'BOOLEAN')
					key = k === 'true' ? true : k === 'false' ? false : null;
				else if (t.key.kind !== 'STRING')
					key = /^-?\d+$/.test(k) ? jsonValue(Number(k), t.key, path, false) : null;
				if (key === null)
					throw bad(`map key ${JSON.stringify(k)} is not a ${t.key.kind}`);
				return [key, jsonValue(val, t.value, `${path}.${k}`, true)];
			});
		case 'STRUCT':
			if (typeof v !== 'object' || Array.isArray(v))
				throw bad('expected an object');
			return jsonObject(v, t.fields, path + '.');
		default:
			throw bad('unsupported type');
	}
}

function jsonObject(obj, columns, prefix) {
	const row = {};
	const byName = new Map(columns.map(c => [c.name.toLowerCase(), c]));
	for (const k of Object.keys(obj)) {
		const col = byName.get(k.toLowerCase());
		if (!col)
			throw new ValidationError(`record has field "${prefix}${k}", which is not a column of the table ` +
				'(unknown columns are rejected)');
		row[col.name] = jsonValue(obj[k], col.type, prefix + col.name, col.nullable);
	}
	for (const c of columns)
		if (!c.nullable && row[c.name] === undefined)
			throw new ValidationError(`record lacks NOT NULL column "${prefix}${c.name}"`);
	return row;
}

/* Decode one JSON record (text) against the table columns. */
function decodeJson(text, columns) {
	let obj;
	try {
		obj = JSON.parse(text);
	} catch (e) {
		throw new ValidationError(`JSON record does not parse: ${e.message}`);
	}
	if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
		throw new ValidationError('JSON record must be an object');
	return jsonObject(obj, columns, '');
}

module.exports = { ValidationError, compileProto, decodeProto, checkProto, decodeJson, parseDescriptor, PT };
