'use strict';
/*
 * wire.js
 *    Minimal protobuf wire-format reader.
 *
 * The emulator must decode two kinds of messages that are only known at run
 * time: the google.protobuf.DescriptorProto a client sends at stream creation
 * and the records that descriptor describes.  A generic reader keeps both
 * exact (64-bit integers stay exact, unknown or malformed bytes are errors)
 * and fast enough for the throughput target.
 */

class WireError extends Error {}

const TWO32 = 4294967296;

/*
 * Reader over one Buffer slice.  Every read checks bounds and throws
 * WireError on truncated input so a corrupt record never reads past its end.
 */
class Reader {
	constructor(buf, start = 0, end = buf.length) {
		this.buf = buf;
		this.pos = start;
		this.end = end;
		this.lo = 0;		/* the last varint of readVarint() */
		this.hi = 0;
	}

	eof() {
		return this.pos >= this.end;
	}

	/* Unsigned varint below 2^32 (tags, lengths, enum values). */
	uint32() {
		const b = this.buf[this.pos];
		if (b < 0x80 && this.pos < this.end) {
			this.pos++;
			return b;
		}
		this.readVarint();
		if (this.hi !== 0)
			throw new WireError('varint does not fit 32 bits');
		return this.lo;
	}

	/*
	 * Full 64-bit varint as two 32-bit halves; int64() and friends turn it
	 * into a Number when exact, else a BigInt.
	 */
	varint64() {
		this.readVarint();
		return [this.lo, this.hi];
	}

	/*
	 * Read a varint into this.lo and this.hi (unsigned 32-bit halves): the
	 * same checks as varint64() without an array per value, for the record
	 * checks that run on every field.
	 */
	readVarint() {
		let lo = 0;
		let hi = 0;
		let i = 0;
		for (;; i++) {
			if (this.pos >= this.end)
				throw new WireError('truncated varint');
			if (i >= 10)
				throw new WireError('varint longer than 10 bytes');
			const b = this.buf[this.pos++];
			if (i < 4)
				lo |= (b & 0x7f) << (7 * i);
			else if (i === 4) {
				lo |= (b & 0x0f) << 28;
				hi |= (b & 0x70) >> 4;
			} else
				hi |= (b & 0x7f) << (7 * i - 32);
			if ((b & 0x80) === 0)
				break;
		}
		this.lo = lo >>> 0;
		this.hi = hi >>> 0;
	}

	/* Signed 64-bit integer: Number when |v| < 2^53, BigInt otherwise. */
	int64() {
		this.readVarint();
		const lo = this.lo, hi = this.hi;
		if (hi < 0x200000)
			return hi * TWO32 + lo;
		if (hi >= 0xffe00000 && (hi !== 0xffe00000 || lo !== 0))
			return (hi - TWO32) * TWO32 + lo;
		return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
	}

	/* Signed 32-bit integer (negative values arrive sign-extended to 64 bits). */
	int32() {
		this.readVarint();
		return this.lo | 0;
	}

	bool() {
		this.readVarint();
		return this.lo !== 0 || this.hi !== 0;
	}

	float() {
		if (this.pos + 4 > this.end)
			throw new WireError('truncated fixed32');
		const v = this.buf.readFloatLE(this.pos);
		this.pos += 4;
		return v;
	}

	double() {
		if (this.pos + 8 > this.end)
			throw new WireError('truncated fixed64');
		const v = this.buf.readDoubleLE(this.pos);
		this.pos += 8;
		return v;
	}

	/* Length-delimited field: returns [start, end) within buf. */
	lengthDelimited() {
		const start = this.span();
		return [start, this.pos];
	}

	/*
	 * Step over a length-delimited field: returns its start, and its end is
	 * this.pos afterwards (no array per field).
	 */
	span() {
		const len = this.uint32();
		const start = this.pos;
		if (start + len > this.end)
			throw new WireError('length-delimited field runs past the end');
		this.pos += len;
		return start;
	}

	bytes() {
		const [s, e] = this.lengthDelimited();
		return this.buf.subarray(s, e);
	}

	string() {
		const [s, e] = this.lengthDelimited();
		return this.buf.toString('utf8', s, e);
	}

	skip(wireType) {
		switch (wireType) {
			case 0:
				this.readVarint();
				break;
			case 1:
				this.pos += 8;
				break;
			case 2:
				this.span();
				break;
			case 5:
				this.pos += 4;
				break;
			default:
				throw new WireError(`unsupported wire type ${wireType}`);
		}
		if (this.pos > this.end)
			throw new WireError('truncated field');
	}
}

/*
 * Decode a message into {fieldNumber: [values]} using a per-field reader
 * table {number: (reader, wireType) => value}; unknown fields are skipped.
 * Used for the descriptor messages, whose size is small.
 */
function decodeGeneric(buf, spec, start = 0, end = buf.length) {
	const r = new Reader(buf, start, end);
	const out = {};
	while (!r.eof()) {
		const tag = r.uint32();
		const num = tag >>> 3;
		const wt = tag & 7;
		const f = spec[num];
		if (!f) {
			r.skip(wt);
			continue;
		}
		const v = f(r, wt);
		(out[num] || (out[num] = [])).push(v);
	}
	return out;
}

module.exports = { Reader, WireError, decodeGeneric };
