'use strict';
/*
 * recordset.js
 *    The set of records a table has received, for the duplicates counter.
 *
 * A record is known by a 128-bit hash of its exact bytes, computed here in
 * JavaScript (through a DataView, one unaligned 32-bit load per word) on the
 * record's place in its log payload: a native digest
 * (crypto.hash) costs more in the call and its result string than in the
 * hashing of a few hundred bytes, and it was the largest single cost of the
 * ack path.  The hash is MurmurHash3's x86 128-bit construction (four
 * 32-bit lanes that mix 16-byte blocks with multiply-rotate steps, then a
 * final avalanche); it is not cryptographic, which is fine for records a
 * client sends in good faith.  Two distinct records of one table count as
 * duplicates only if all 128 bits agree: with 5 million records, a chance
 * of about 4e-26.
 *
 * The hashes live in one flat typed array (open addressing, linear probing,
 * at most 3/4 full, all-zero words marking a free slot) whose probes compare
 * all four words: a Set of millions of keys would cost far more in
 * allocation and garbage collection, and one array is one cache miss per
 * probe.
 */

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;

const rotl = (x, r) => (x << r) | (x >>> (32 - r));

function fmix(h) {
	h ^= h >>> 16;
	h = Math.imul(h, 0x85ebca6b);
	h ^= h >>> 13;
	h = Math.imul(h, 0xc2b2ae35);
	return h ^ (h >>> 16);
}

/*
 * Hash the bytes [start, end) of DataView dv into out[0..3] (an Int32Array).
 * Only the bytes count, not where they lie, so one record hashes alike in
 * any payload.
 */
function hash128(dv, start, end, out) {
	const len = end - start;
	let h1 = 0, h2 = 0, h3 = 0, h4 = 0;
	let i = start;
	for (const stop = start + (len & ~15); i < stop; i += 16) {
		let k1 = dv.getInt32(i, true), k2 = dv.getInt32(i + 4, true);
		let k3 = dv.getInt32(i + 8, true), k4 = dv.getInt32(i + 12, true);
		k1 = Math.imul(rotl(Math.imul(k1, C1), 15), C2);
		h1 ^= k1;
		h1 = (Math.imul(rotl(h1, 19) + h2 | 0, 5) + 0x561ccd1b) | 0;
		k2 = Math.imul(rotl(Math.imul(k2, C2), 16), C3);
		h2 ^= k2;
		h2 = (Math.imul(rotl(h2, 17) + h3 | 0, 5) + 0x0bcaa747) | 0;
		k3 = Math.imul(rotl(Math.imul(k3, C3), 17), C4);
		h3 ^= k3;
		h3 = (Math.imul(rotl(h3, 15) + h4 | 0, 5) + 0x96cd1c35) | 0;
		k4 = Math.imul(rotl(Math.imul(k4, C4), 18), C1);
		h4 ^= k4;
		h4 = (Math.imul(rotl(h4, 13) + h1 | 0, 5) + 0x32ac3b17) | 0;
	}
	/* The last 0-15 bytes, as zero-padded words of one more block. */
	let t1 = 0, t2 = 0, t3 = 0, t4 = 0;
	for (let j = 0; i < end; i++, j++) {
		const b = dv.getUint8(i) << ((j & 3) * 8);
		if (j < 4)
			t1 |= b;
		else if (j < 8)
			t2 |= b;
		else if (j < 12)
			t3 |= b;
		else
			t4 |= b;
	}
	h1 ^= Math.imul(rotl(Math.imul(t1, C1), 15), C2);
	h2 ^= Math.imul(rotl(Math.imul(t2, C2), 16), C3);
	h3 ^= Math.imul(rotl(Math.imul(t3, C3), 17), C4);
	h4 ^= Math.imul(rotl(Math.imul(t4, C4), 18), C1);
	h1 ^= len;
	h2 ^= len;
	h3 ^= len;
	h4 ^= len;
	h1 = (h1 + h2 + h3 + h4) | 0;
	h2 = (h2 + h1) | 0;
	h3 = (h3 + h1) | 0;
	h4 = (h4 + h1) | 0;
	h1 = fmix(h1);
	h2 = fmix(h2);
	h3 = fmix(h3);
	h4 = fmix(h4);
	h1 = (h1 + h2 + h3 + h4) | 0;
	out[0] = h1;
	out[1] = (h2 + h1) | 0;
	out[2] = (h3 + h1) | 0;
	out[3] = (h4 + h1) | 0;
}

class RecordSet {
	constructor() {
		this.size = 0;
		this.key = new Int32Array(4);
		this.alloc(1 << 16);
	}

	alloc(cap) {
		this.cap = cap;
		this.words = new Int32Array(cap * 4);
	}

	/* Add the record at [start, end) of DataView dv; returns false when it was already present. */
	add(dv, start, end) {
		const key = this.key;
		hash128(dv, start, end, key);
		if ((key[0] | key[1] | key[2] | key[3]) === 0)
			key[3] = 1;		/* all zeros marks a free slot */
		if (!this.insert(key))
			return false;
		if (++this.size * 4 > this.cap * 3)
			this.grow();
		return true;
	}

	insert(w) {
		const mask = this.cap - 1;
		const words = this.words;
		const w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
		for (let slot = w0 & mask;; slot = (slot + 1) & mask) {
			const o = slot * 4;
			const s0 = words[o], s1 = words[o + 1], s2 = words[o + 2], s3 = words[o + 3];
			if ((s0 | s1 | s2 | s3) === 0) {
				words[o] = w0;
				words[o + 1] = w1;
				words[o + 2] = w2;
				words[o + 3] = w3;
				return true;
			}
			if (s0 === w0 && s1 === w1 && s2 === w2 && s3 === w3)
				return false;
		}
	}

	grow() {
		const { cap, words } = this;
		this.alloc(cap * 2);
		for (let o = 0; o < cap * 4; o += 4)
			if ((words[o] | words[o + 1] | words[o + 2] | words[o + 3]) !== 0)
				this.insert(words.subarray(o, o + 4));
	}
}

module.exports = { RecordSet, hash128 };
