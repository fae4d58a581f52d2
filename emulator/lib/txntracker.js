'use strict';
/*
 * txntracker.js
 *    Which records of each source transaction the emulator holds as durable,
 *    for an oracle that checks a CDC client's promise from the server side.
 *
 * A client such as zerobus tags every record with its source transaction
 * (_xid) and its position in it (_seq).  With --track-transactions the
 * emulator reads those two fields of every record it makes durable (and, at
 * start, of every record its log still holds) and keeps, per table and
 * transaction, the set of positions it holds.  An oracle (bench/soak.pl)
 * polls the changes with GET /admin/durable and compares them with the
 * client's replication slot: a slot past a transaction whose records are
 * not all here has lost data.  The log must not be compacted while this
 * runs (a large --compact-bytes), so that a restart finds every record
 * again.
 *
 * Changes are kept as a feed of [table, xid, count] entries, the count of
 * distinct positions held after the change; the reader passes the index
 * after the last entry it has stored with the generation it came from, which
 * drops everything before it, so a lost reply loses nothing; a restarted
 * emulator has a new generation and its feed starts again from its whole
 * log.
 */

const crypto = require('node:crypto');
const { Reader } = require('./wire');
const R = require('./records');

class TxnTracker {
	constructor() {
		this.generation = crypto.randomUUID();
		this.held = new Map();		/* table -> Map(xid -> Set(seq)) */
		this.fields = new Map();	/* stream number -> [xid field, seq field] or null */
		this.feed = [];
		this.feedBase = 0;			/* index of feed[0] */
	}

	/* The field numbers of _xid and _seq in a stream's descriptor (base64). */
	fieldsOf(info) {
		let f = this.fields.get(info.sn);
		if (f === undefined) {
			f = null;
			if (info.descriptor) {
				const d = R.parseDescriptor(Buffer.from(info.descriptor, 'base64'));
				const num = (name) => d.fields.find(x => x.name === name)?.number;
				if (num('_xid') && num('_seq'))
					f = [num('_xid'), num('_seq')];
			}
			this.fields.set(info.sn, f);
		}
		return f;
	}

	/*
	 * Note the records of a durable RECORDS log payload ([type][u32 sn][u32
	 * n] then n times [u32 length][record]) of the stream described by info.
	 */
	add(info, payload) {
		const f = this.fieldsOf(info);
		if (!f)
			return;
		let txns = this.held.get(info.table);
		if (!txns) {
			txns = new Map();
			this.held.set(info.table, txns);
		}
		const touched = new Set();
		const n = payload.readUInt32LE(5);
		for (let i = 0, off = 9; i < n; i++) {
			const len = payload.readUInt32LE(off);
			const r = new Reader(payload, off + 4, off + 4 + len);
			let xid, seq;
			while (!r.eof()) {
				const tag = r.uint32();
				const no = tag >>> 3;
				if ((tag & 7) === 0 && no === f[0])
					xid = r.int64();
				else if ((tag & 7) === 0 && no === f[1])
					seq = r.int64();
				else
					r.skip(tag & 7);
			}
			off += 4 + len;
			if (xid === undefined || seq === undefined)
				continue;
			let seqs = txns.get(xid);
			if (!seqs) {
				seqs = new Set();
				txns.set(xid, seqs);
			}
			seqs.add(seq);
			touched.add(xid);
		}
		for (const xid of touched)
			this.feed.push([info.table, xid, txns.get(xid).size]);
	}

	/*
	 * The feed from index `from` of `generation` on; entries before it are
	 * dropped.  An index of another generation (the emulator restarted)
	 * counts as 0.
	 */
	read(from, generation) {
		if (generation !== this.generation)
			from = 0;
		const drop = Math.min(Math.max(from - this.feedBase, 0), this.feed.length);
		this.feed.splice(0, drop);
		this.feedBase += drop;
		return { generation: this.generation, from: this.feedBase,
			next: this.feedBase + this.feed.length, changes: this.feed };
	}
}

module.exports = { TxnTracker };
