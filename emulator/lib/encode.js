'use strict';
/*
 * encode.js
 *    Small protobuf encoder for the emulator's tests, the benchmark and
 *    examples: builds a DescriptorProto and records from a field list.
 *
 * A message spec is {name, fields: [{name, number, type, label, fields?}]}
 * with type one of int32 int64 bool float double string bytes message map,
 * label optional|required|repeated.  A 'message' field carries its own
 * nested spec in `fields` (and `typeName`); a 'map' field has `key` and
 * `value` type names (scalar) or a `value` spec.
 */

const TYPE = { double: 1, float: 2, int64: 3, int32: 5, bool: 8, string: 9, message: 11, bytes: 12,
	sint32: 17, sint64: 18, uint64: 4 };
const LABEL = { optional: 1, required: 2, repeated: 3 };

class Writer {
	constructor() {
		this.parts = [];
	}

	raw(b) {
		this.parts.push(b);
	}

	varint(v) {
		let n = BigInt.asUintN(64, BigInt(v));
		const out = [];
		do {
			let b = Number(n & 0x7fn);
			n >>= 7n;
			if (n)
				b |= 0x80;
			out.push(b);
		} while (n);
		this.parts.push(Buffer.from(out));
	}

	tag(num, wt) {
		this.varint((num << 3) | wt);
	}

	lenDelim(num, buf) {
		this.tag(num, 2);
		this.varint(buf.length);
		this.parts.push(buf);
	}

	finish() {
		return Buffer.concat(this.parts);
	}
}

function encodeScalar(w, num, type, v) {
	switch (type) {
		case 'int32':
		case 'int64':
		case 'uint64':
			w.tag(num, 0);
			w.varint(v);
			break;
		case 'bool':
			w.tag(num, 0);
			w.varint(v ? 1 : 0);
			break;
		case 'float': {
			w.tag(num, 5);
			const b = Buffer.alloc(4);
			b.writeFloatLE(v);
			w.raw(b);
			break;
		}
		case 'double': {
			w.tag(num, 1);
			const b = Buffer.alloc(8);
			b.writeDoubleLE(v);
			w.raw(b);
			break;
		}
		case 'string':
			w.lenDelim(num, Buffer.from(v, 'utf8'));
			break;
		case 'bytes':
			w.lenDelim(num, Buffer.from(v));
			break;
		default:
			throw new Error(`cannot encode ${type}`);
	}
}

/* Encode obj (values by field name) with a message spec. */
function encodeMessage(spec, obj) {
	const w = new Writer();
	for (const f of spec.fields) {
		const v = obj[f.name];
		if (v === undefined || v === null)
			continue;
		if (f.type === 'map') {
			for (const [k, val] of (v instanceof Map ? [...v] : Object.entries(v))) {
				const e = new Writer();
				encodeScalar(e, 1, f.key, f.key === 'string' ? String(k) : k);
				if (typeof f.value === 'string')
					encodeScalar(e, 2, f.value, val);
				else
					e.lenDelim(2, encodeMessage(f.value, val));
				w.lenDelim(f.number, e.finish());
			}
			continue;
		}
		const vals = f.label === 'repeated' ? v : [v];
		for (const x of vals) {
			if (f.type === 'message')
				w.lenDelim(f.number, encodeMessage(f, x));
			else
				encodeScalar(w, f.number, f.type, x);
		}
	}
	return w.finish();
}

/* Serialized google.protobuf.DescriptorProto for a message spec. */
function encodeDescriptor(spec) {
	const w = new Writer();
	w.lenDelim(1, Buffer.from(spec.name));
	const nested = [];
	for (const f of spec.fields) {
		const fw = new Writer();
		fw.lenDelim(1, Buffer.from(f.name));
		fw.tag(3, 0);
		fw.varint(f.number);
		fw.tag(4, 0);
		fw.varint(f.type === 'map' ? 3 : LABEL[f.label || 'optional']);
		if (f.type === 'map') {
			const entryName = f.name.replace(/(^|_)(\w)/g, (_, a, b) => b.toUpperCase()) + 'Entry';
			fw.tag(5, 0);
			fw.varint(TYPE.message);
			fw.lenDelim(6, Buffer.from(entryName));
			const valueField = typeof f.value === 'string'
				? { name: 'value', number: 2, type: f.value }
				: { ...f.value, name: 'value', number: 2, type: 'message', typeName: f.value.name };
			nested.push({ name: entryName, mapEntry: true,
				fields: [{ name: 'key', number: 1, type: f.key }, valueField] });
		} else {
			fw.tag(5, 0);
			fw.varint(TYPE[f.type]);
			if (f.type === 'message') {
				fw.lenDelim(6, Buffer.from(f.typeName));
				if (!nested.some(n => n.name === f.typeName))
					nested.push({ name: f.typeName, fields: f.fields });
			}
		}
		w.lenDelim(2, fw.finish());
	}
	for (const n of nested)
		w.lenDelim(3, encodeDescriptor(n));
	if (spec.mapEntry) {
		const o = new Writer();
		o.tag(7, 0);
		o.varint(1);
		w.lenDelim(7, o.finish());
	}
	return w.finish();
}

module.exports = { Writer, encodeMessage, encodeDescriptor };
