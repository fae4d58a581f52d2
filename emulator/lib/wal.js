'use strict';
/*
 * wal.js
 *    The emulator's durable log: append-only, group-committed, checksummed.
 *
 * Every accepted ingest request is appended here and acknowledged only after
 * the fdatasync that covers it.  Appends that arrive while a sync is running
 * are written and synced together by the next round (group commit), so one
 * fsync covers many requests and the ack rate is not bounded by the disk's
 * sync latency.
 *
 * Layout: a 16-byte header ("ZBWAL001" + u64 base position), then frames
 * [u32 payload length][u32 crc32(payload)][payload].  A position is
 * base + file offset; positions only grow, also across compaction, so a
 * Delta commit can record "everything up to position P is published".
 * On open, a torn or corrupt tail (a crash in mid-write) is cut off.
 */

const fs = require('node:fs');
const path_ = require('node:path');
const zlib = require('node:zlib');

const MAGIC = Buffer.from('ZBWAL001');
const HEADER = 16;

/* The 8 bytes that precede a payload in its frame: length and checksum. */
function frameHead(payload) {
	const h = Buffer.allocUnsafe(8);
	h.writeUInt32LE(payload.length, 0);
	h.writeUInt32LE(zlib.crc32(payload), 4);
	return h;
}

function frame(payload) {
	return Buffer.concat([frameHead(payload), payload]);
}

function header(base) {
	const h = Buffer.alloc(HEADER);
	MAGIC.copy(h, 0);
	h.writeBigUInt64LE(BigInt(base), 8);
	return h;
}

function fsyncDir(dir) {
	const fd = fs.openSync(dir, 'r');
	try {
		fs.fsyncSync(fd);
	} finally {
		fs.closeSync(fd);
	}
}

class Wal {
	/*
	 * Open (creating if needed) the log at path.  Returns the Wal and the
	 * valid frames as [{start, end, payload}] for recovery.
	 */
	static open(path) {
		let buf = fs.existsSync(path) ? fs.readFileSync(path) : null;
		let base = 0;
		const frames = [];
		let valid = HEADER;
		if (!buf || buf.length < HEADER || !buf.subarray(0, 8).equals(MAGIC)) {
			if (buf && buf.length > 0)
				throw new Error(`${path} is not an emulator log`);
			fs.writeFileSync(path, header(0));
			const fd = fs.openSync(path, 'r+');
			fs.fsyncSync(fd);
			fs.closeSync(fd);
			fsyncDir(path_.dirname(path));
			buf = header(0);
		} else {
			base = Number(buf.readBigUInt64LE(8));
			let off = HEADER;
			while (off + 8 <= buf.length) {
				const len = buf.readUInt32LE(off);
				const crc = buf.readUInt32LE(off + 4);
				if (off + 8 + len > buf.length)
					break;
				const payload = buf.subarray(off + 8, off + 8 + len);
				if (zlib.crc32(payload) !== crc)
					break;
				frames.push({ start: base + off, end: base + off + 8 + len, payload });
				off += 8 + len;
			}
			valid = off;
			if (valid < buf.length)
				fs.truncateSync(path, valid);
		}
		const wal = new Wal(path, base, valid);
		return { wal, frames };
	}

	constructor(path, base, size) {
		this.path = path;
		this.base = base;
		this.fd = fs.openSync(path, 'r+');
		this.fileSize = size;		/* bytes written and synced or in flight */
		this.tail = base + size;	/* position after the last queued frame */
		this.queue = [];
		this.waiters = [];
		this.running = false;
		this.syncs = 0;
		this.failed = null;
	}

	/*
	 * Queue one payload; resolves with its end position once it is on
	 * stable storage.  Frames reach the file in call order.  The payload is
	 * written from the caller's buffer (no copy), so the caller must leave
	 * it unchanged until the promise settles.
	 */
	append(payload) {
		if (this.failed)
			return Promise.reject(this.failed);
		this.tail += 8 + payload.length;
		const end = this.tail;
		this.queue.push(frameHead(payload), payload);
		const p = new Promise((resolve, reject) => this.waiters.push({ resolve, reject, end }));
		if (!this.running)
			this.run();
		return p;
	}

	async run() {
		this.running = true;
		while (this.queue.length) {
			const bufs = this.queue;
			const waiters = this.waiters;
			this.queue = [];
			this.waiters = [];
			try {
				let pos = this.fileSize;
				for (let i = 0; i < bufs.length; i += 512) {
					const chunk = bufs.slice(i, i + 512);
					const n = chunk.reduce((a, b) => a + b.length, 0);
					await new Promise((res, rej) => fs.writev(this.fd, chunk, pos,
						(err) => (err ? rej(err) : res())));
					pos += n;
				}
				await new Promise((res, rej) => fs.fdatasync(this.fd, (err) => (err ? rej(err) : res())));
				this.fileSize = pos;
				this.syncs++;
				for (const w of waiters)
					w.resolve(w.end);
			} catch (err) {
				this.failed = err;
				for (const w of waiters.concat(this.waiters))
					w.reject(err);
				this.waiters = [];
				this.queue = [];
			}
		}
		this.running = false;
		if (this.idleWaiters) {
			const ws = this.idleWaiters;
			this.idleWaiters = null;
			ws.forEach(r => r());
		}
	}

	/* Resolve once no write is in flight. */
	idle() {
		if (!this.running)
			return Promise.resolve();
		return new Promise(r => (this.idleWaiters || (this.idleWaiters = [])).push(r));
	}

	/*
	 * Replace the log by one holding only `keep` payloads (the open records
	 * of live streams), with positions continuing from the current tail.
	 * The caller guarantees everything before the tail is published.  The
	 * new file is synced and renamed into place, so a crash leaves either
	 * the old or the new log.  Returns the end positions of the kept frames.
	 */
	async compact(keep) {
		await this.idle();
		const base = this.tail;
		const frames = keep.map(frame);
		const tmp = this.path + '.tmp';
		const fd = fs.openSync(tmp, 'w');
		fs.writeSync(fd, header(base));
		let off = HEADER;
		const ends = [];
		for (const f of frames) {
			fs.writeSync(fd, f);
			off += f.length;
			ends.push(base + off);
		}
		fs.fsyncSync(fd);
		fs.closeSync(fd);
		fs.renameSync(tmp, this.path);
		fsyncDir(path_.dirname(this.path));
		fs.closeSync(this.fd);
		this.fd = fs.openSync(this.path, 'r+');
		this.base = base;
		this.fileSize = off;
		this.tail = base + off;
		return ends;
	}

	size() {
		return this.tail - this.base;
	}

	close() {
		fs.closeSync(this.fd);
	}
}

module.exports = { Wal, fsyncDir };
