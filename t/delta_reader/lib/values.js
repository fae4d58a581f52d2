/*
 * values.js
 *    Turns the raw values of a Parquet file (lib/parquet.js) into canonical
 *    JSON text, driven by the Delta type of each column (lib/schema.js), not
 *    by what the Parquet reader would make of the file.  The output is
 *    lossless, so a test can compare it with what was sent exactly:
 *
 *      boolean                 true / false
 *      byte, short, integer    JSON number
 *      long                    "-9223372036854775808": decimal string
 *      float, double           {"f64":"<16 hex digits>"}: the IEEE 754 bits of
 *                              the value as a double (a float widened, which
 *                              is exact), so NaN, +-Infinity and -0.0 survive
 *      decimal(p,s)            "-12.30": exact text, exactly s digits after
 *                              the point (no point when s = 0)
 *      string                  JSON string (every code point, U+0000 too)
 *      binary                  "00ff": lowercase hex
 *      date                    JSON number: days since 1970-01-01 (any int32)
 *      timestamp(_ntz)         "-9223372036854775808": decimal string of the
 *                              int64 microseconds since 1970-01-01 00:00:00
 *      array                   JSON array; a NULL array is null
 *      map                     [[key, value], ...] in file order; NULL is null
 *      struct                  object of its fields in schema order, logical
 *                              names; a NULL struct is null
 *      NULL                    null
 *
 * For each file the Delta type is first bound to the file's Parquet schema
 * (bind()): the physical type and annotation of every leaf are checked
 * against the Delta type, and a mismatch is an error rather than a guess.
 * A column (or struct field) that the file lacks reads as null, as Delta
 * readers do for columns added after the file was written; a leaf of a
 * narrower type that Delta type widening promotes to the column's type
 * (an INT32 file column of a column now long, say) reads promoted.
 */

export class ValueError extends Error {}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const INT_RANGE = { byte: [-128, 127], short: [-32768, 32767], integer: [-2147483648, 2147483647] };

const q = (s) => JSON.stringify(s);

function hex(bytes) {
	let s = '';
	for (const b of bytes)
		s += b.toString(16).padStart(2, '0');
	return s;
}

/* {"f64":"..."}: the bits of a JS number (any float or double, widened). */
function f64Text(x) {
	const dv = new DataView(new ArrayBuffer(8));
	dv.setFloat64(0, x);
	return `{"f64":"${dv.getBigUint64(0).toString(16).padStart(16, '0')}"}`;
}

/* Two's complement big-endian bytes to a BigInt. */
function bigEndianSigned(bytes) {
	let v = 0n;
	for (const b of bytes)
		v = (v << 8n) | BigInt(b);
	return bytes.length ? BigInt.asIntN(bytes.length * 8, v) : 0n;
}

/* Unscaled integer and scale to decimal text with exactly `scale` fraction digits. */
export function decimalText(unscaled, scale) {
	const neg = unscaled < 0n;
	let digits = (neg ? -unscaled : unscaled).toString();
	if (scale > 0) {
		digits = digits.padStart(scale + 1, '0');
		digits = digits.slice(0, -scale) + '.' + digits.slice(-scale);
	}
	return (neg ? '-' : '') + digits;
}

/* What a schema element says about its values, for messages. */
function describe(el) {
	const lt = el.logical_type ? JSON.stringify(el.logical_type) : '';
	return `${el.type || 'group'}${el.converted_type ? ' ' + el.converted_type : ''}${lt ? ' ' + lt : ''}`;
}

function isNull(v) {
	return v === null || v === undefined;
}

/* An integer annotation, if any, must be a signed one of `bits`. */
function intAnnotationOk(el, bits) {
	const lt = el.logical_type;
	if (lt && !(lt.type === 'INTEGER' && lt.bitWidth === bits && lt.isSigned))
		return false;
	const ct = el.converted_type;
	return !ct || ct === `INT_${bits}`;
}

/* The converter of a primitive Delta type for leaf element `el`. */
function bindPrimitive(t, el, where) {
	const bad = () => new ValueError(`${where}: Delta type ${t.kind}${t.kind === 'decimal' ? `(${t.precision},${t.scale})` : ''}` +
		` is stored as Parquet ${describe(el)}`);
	const lt = el.logical_type;
	const ct = el.converted_type;
	switch (t.kind) {
		case 'boolean':
			if (el.type !== 'BOOLEAN' || ct || lt)
				throw bad();
			return (v) => (v ? 'true' : 'false');
		case 'byte':
		case 'short':
		case 'integer': {
			const bits = { byte: 8, short: 16, integer: 32 }[t.kind];
			if (el.type !== 'INT32' || !intAnnotationOk(el, bits))
				throw bad();
			const [lo, hi] = INT_RANGE[t.kind];
			return (v) => {
				if (!Number.isInteger(v) || v < lo || v > hi)
					throw new ValueError(`${where}: ${v} is not a ${t.kind}`);
				return String(v);
			};
		}
		case 'long':
			if (el.type !== 'INT64' || !intAnnotationOk(el, 64))
				throw bad();
			return (v) => `"${BigInt.asIntN(64, v)}"`;
		case 'float':
			if (el.type !== 'FLOAT' || ct || lt)
				throw bad();
			return f64Text;
		case 'double':
			if (el.type !== 'DOUBLE' || ct || lt)
				throw bad();
			return f64Text;
		case 'string':
			if (el.type !== 'BYTE_ARRAY' || !(ct === 'UTF8' || (lt && lt.type === 'STRING')))
				throw bad();
			return (v) => {
				try {
					return q(UTF8.decode(v));
				} catch {
					throw new ValueError(`${where}: string value is not valid UTF-8 (${hex(v)})`);
				}
			};
		case 'binary':
			if (el.type !== 'BYTE_ARRAY' || ct || lt)
				throw bad();
			return (v) => `"${hex(v)}"`;
		case 'date':
			if (el.type !== 'INT32' || !(lt ? lt.type === 'DATE' : ct === 'DATE'))
				throw bad();
			return (v) => String(v);
		case 'timestamp':
		case 'timestamp_ntz': {
			const utc = t.kind === 'timestamp';
			if (el.type !== 'INT64')
				throw bad();
			if (lt) {
				if (lt.type !== 'TIMESTAMP' || lt.unit !== 'MICROS' || Boolean(lt.isAdjustedToUTC) !== utc)
					throw bad();
			} else if (!(utc && ct === 'TIMESTAMP_MICROS')) {
				throw bad();
			}
			return (v) => `"${BigInt.asIntN(64, v)}"`;
		}
		case 'decimal': {
			const scale = lt && lt.type === 'DECIMAL' ? lt.scale : el.scale;
			const precision = lt && lt.type === 'DECIMAL' ? lt.precision : el.precision;
			if (ct !== 'DECIMAL' && !(lt && lt.type === 'DECIMAL'))
				throw bad();
			if ((scale || 0) !== t.scale || precision !== t.precision)
				throw bad();
			if (!['INT32', 'INT64', 'FIXED_LEN_BYTE_ARRAY', 'BYTE_ARRAY'].includes(el.type))
				throw bad();
			const limit = 10n ** BigInt(t.precision);
			return (v) => {
				const u = v instanceof Uint8Array ? bigEndianSigned(v) : BigInt(v);
				if (u >= limit || u <= -limit)
					throw new ValueError(`${where}: unscaled ${u} does not fit decimal(${t.precision},${t.scale})`);
				return q(decimalText(u, t.scale));
			};
		}
		default:
			throw new ValueError(`${where}: unsupported Delta type ${t.kind}`);
	}
}

/* The one repeated child of a LIST or MAP group. */
function repeatedChild(node, what, where) {
	if (node.children.length !== 1 || node.children[0].element.repetition_type !== 'REPEATED')
		throw new ValueError(`${where}: ${what} group does not have exactly one repeated child`);
	return node.children[0];
}

/*
 * bind(type, node, where) -> (raw) => JSON text, for Delta type `type`
 * stored as Parquet schema node `node` ({element, children}).
 */
export function bind(t, node, where) {
	const el = node.element;
	const group = !el.type;
	if (el.repetition_type === 'REPEATED')
		throw new ValueError(`${where}: unexpected repeated field ${el.name}`);
	const annotated = (name) => el.converted_type === name || (el.logical_type && el.logical_type.type === name);
	switch (t.kind) {
		case 'struct': {
			if (!group || annotated('LIST') || annotated('MAP'))
				throw new ValueError(`${where}: struct stored as Parquet ${describe(el)}`);
			const parts = t.fields.map((f, i) => {
				const child = node.children.find(c => c.element.name === f.physicalName);
				const conv = child ? bind(f.type, child, where ? `${where}.${f.name}` : f.name) : () => 'null';
				return { key: (i ? ',' : '{') + q(f.name) + ':', phys: f.physicalName, conv };
			});
			return (raw) => {
				if (isNull(raw))
					return 'null';
				let s = '';
				for (const p of parts) {
					const v = raw[p.phys];
					s += p.key + (isNull(v) ? 'null' : p.conv(v));
				}
				return (s || '{') + '}';
			};
		}
		case 'array': {
			if (!group || !annotated('LIST'))
				throw new ValueError(`${where}: array stored as Parquet ${describe(el)}`);
			const rep = repeatedChild(node, 'LIST', where);
			/* Three levels (<list> / repeated group / element), else a repeated leaf. */
			const three = !rep.element.type;
			if (three && rep.children.length !== 1)
				throw new ValueError(`${where}: LIST repeated group has ${rep.children.length} children`);
			const elemNode = three ? rep.children[0] : { ...rep, element: { ...rep.element, repetition_type: 'REQUIRED' } };
			const conv = bind(t.element, elemNode, `${where}[]`);
			const repName = rep.element.name, elemName = elemNode.element.name;
			return (raw) => {
				if (isNull(raw))
					return 'null';
				const items = raw[repName];
				if (!Array.isArray(items))
					throw new ValueError(`${where}: list value is not an array`);
				return '[' + items.map(it => {
					const v = three ? (isNull(it) ? null : it[elemName]) : it;
					return isNull(v) ? 'null' : conv(v);
				}).join(',') + ']';
			};
		}
		case 'map': {
			if (!group || !(annotated('MAP') || annotated('MAP_KEY_VALUE')))
				throw new ValueError(`${where}: map stored as Parquet ${describe(el)}`);
			const rep = repeatedChild(node, 'MAP', where);
			const keyNode = rep.children.find(c => c.element.name === 'key');
			const valueNode = rep.children.find(c => c.element.name === 'value');
			if (rep.element.type || rep.children.length !== 2 || !keyNode || !valueNode)
				throw new ValueError(`${where}: MAP repeated group is not (key, value)`);
			const kconv = bind(t.key, keyNode, `${where}.key`);
			const vconv = bind(t.value, valueNode, `${where}.value`);
			const repName = rep.element.name;
			return (raw) => {
				if (isNull(raw))
					return 'null';
				const entries = raw[repName];
				if (!Array.isArray(entries))
					throw new ValueError(`${where}: map value is not an array of entries`);
				return '[' + entries.map(e => {
					if (isNull(e.key))
						throw new ValueError(`${where}: map entry with a NULL key`);
					return '[' + kconv(e.key) + ',' + (isNull(e.value) ? 'null' : vconv(e.value)) + ']';
				}).join(',') + ']';
			};
		}
		default:
			if (group)
				throw new ValueError(`${where}: ${t.kind} stored as a Parquet group`);
			return bindWidened(t, el, where);
	}
}

const INTS = ['byte', 'short', 'integer'];

/*
 * The narrower Delta types whose values Delta type widening (reader feature
 * typeWidening) reads as type t, for leaf `el`: a file written before an
 * ALTER COLUMN ... TYPE keeps the old type (Delta does not rewrite files).
 * byte -> short -> integer -> long, integers -> double, float -> double,
 * integers -> decimal with at least 10 integer digits (long: 20), decimal
 * -> decimal with no fewer integer and fraction digits, date ->
 * timestamp_ntz.
 */
function narrower(t, el) {
	const ints = (n) => INTS.slice(0, n).map(kind => ({ kind }));
	switch (t.kind) {
		case 'short':
		case 'integer':
			return ints(INTS.indexOf(t.kind));
		case 'long':
			return ints(3);
		case 'double':
			return [{ kind: 'float' }, ...ints(3)];
		case 'timestamp_ntz':
			return [{ kind: 'date' }];
		case 'decimal': {
			const lt = el.logical_type;
			const dec = lt && lt.type === 'DECIMAL' ? lt : el;
			const from = [];
			const scale = dec.scale || 0;
			if (Number.isInteger(dec.precision) && scale <= t.scale &&
				dec.precision - scale <= t.precision - t.scale)
				from.push({ kind: 'decimal', precision: dec.precision, scale });
			if (t.precision - t.scale >= 10)
				from.push(...ints(3));
			if (t.precision - t.scale >= 20)
				from.push({ kind: 'long' });
			return from;
		}
		default:
			return [];
	}
}

/* The canonical text of a value of type `from` made the text of type `to`. */
function promote(from, to) {
	switch (to.kind) {
		case 'short':
		case 'integer':
			return (s) => s;
		case 'long':
			return (s) => `"${s}"`;
		case 'double':
			return from.kind === 'float' ? (s) => s : (s) => f64Text(Number(s));
		case 'timestamp_ntz':
			return (s) => `"${BigInt(s) * 86400000000n}"`;
		case 'decimal': {
			const shift = 10n ** BigInt(to.scale - (from.kind === 'decimal' ? from.scale : 0));
			const unscaled = from.kind === 'decimal'
				? (s) => BigInt(JSON.parse(s).replace('.', ''))
				: (s) => BigInt(JSON.parse(s));
			return (s) => q(decimalText(unscaled(s) * shift, to.scale));
		}
		default:
			throw new ValueError(`cannot widen ${from.kind} to ${to.kind}`);
	}
}

/*
 * bindPrimitive; for a leaf of a narrower type that Delta widens to t, the
 * narrower type's converter with its values promoted.  Any other mismatch
 * is bindPrimitive's error.
 */
function bindWidened(t, el, where) {
	try {
		return bindPrimitive(t, el, where);
	} catch (e) {
		if (!(e instanceof ValueError))
			throw e;
		for (const from of narrower(t, el)) {
			let conv;
			try {
				conv = bindPrimitive(from, el, where);
			} catch (e2) {
				if (e2 instanceof ValueError)
					continue;
				throw e2;
			}
			const widen = promote(from, t);
			return (v) => widen(conv(v));
		}
		throw e;
	}
}
