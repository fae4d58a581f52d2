'use strict';
/*
 * publisher.js
 *    Publication of durable records into Delta tables, run in a worker
 *    thread so that decoding, Parquet writing and commits never hold up the
 *    gRPC side (and its acks).
 *
 * The worker owns every write under <data-dir>/tables: table creation and
 * schema changes (metaData commits) as well as data commits, so commit
 * versions never race.  The main thread sends, in log order, the stream
 * descriptions (OPEN records) and the durable RECORDS payloads of the log;
 * publish() turns what it holds into one Parquet file and one commit per
 * table.  Records of a stream whose table changed incompatibly since the
 * stream was opened go to _zerobus/table_rejected_parquets/.
 */

const fs = require('node:fs');
const os = require('node:os');
const { parentPort, workerData, Worker } = require('node:worker_threads');
const T = require('./types');
const R = require('./records');
const D = require('./delta');

const MAX_ROWS_PER_FILE = 250000;
const OUTBOX_BYTES = 16 * 1024 * 1024;

/* Records of a RECORDS log payload: [u8 type][u32 sn][u32 n]([u32 len][bytes])*. */
function splitRecords(payload, isJson) {
	const n = payload.readUInt32LE(5);
	const out = new Array(n);
	let off = 9;
	for (let i = 0; i < n; i++) {
		const len = payload.readUInt32LE(off);
		out[i] = isJson ? payload.toString('utf8', off + 4, off + 4 + len) : payload.subarray(off + 4, off + 4 + len);
		off += 4 + len;
	}
	return out;
}

class Publisher {
	constructor(dataDir) {
		this.dataDir = dataDir;
		this.tables = new Map();	/* name -> {columns, schemaVersion, version, position} */
		this.infos = new Map();		/* stream number -> info with compiled plan */
		this.pending = new Map();	/* table -> [{sn, payload, end}] */
	}

	/* Create or change a table; returns {version, position}. */
	table(name, columns, schemaVersion, properties) {
		const cols = T.parseColumns(columns);
		const root = D.tableRoot(this.dataDir, name);
		const version = D.ensureTable(root, cols, name, properties);
		const st = D.tableState(root);
		const t = { columns: cols, schemaVersion, version, position: st.position };
		this.tables.set(name, t);
		return { version, position: st.position };
	}

	dropTable(name) {
		this.tables.delete(name);
		this.pending.delete(name);
		fs.rmSync(D.tableRoot(this.dataDir, name), { recursive: true, force: true });
	}

	info(info) {
		const columns = T.parseColumns(info.columns);
		this.infos.set(info.sn, { ...info, columns,
			plan: info.recordType === 'PROTO' ? R.compileProto(Buffer.from(info.descriptor, 'base64'), columns) : null });
	}

	forget(sns) {
		for (const sn of sns)
			this.infos.delete(sn);
	}

	/*
	 * Chunks as PublisherClient.chunk() queued them: meta [[table, sn, end,
	 * offset, length]], their payloads side by side in buf.
	 */
	chunks(meta, buf) {
		for (const [table, sn, end, off, len] of meta)
			this.chunk(table, sn, buf.subarray(off, off + len), end);
	}

	chunk(table, sn, payload, end) {
		const t = this.tables.get(table);
		if (!t || end <= t.position)
			return;
		let l = this.pending.get(table);
		if (!l) {
			l = [];
			this.pending.set(table, l);
		}
		l.push({ sn, payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), end });
	}

	/* A stream's plan against the table's current columns, or null if incompatible. */
	recompile(info, columns) {
		try {
			return { plan: info.recordType === 'PROTO'
				? R.compileProto(Buffer.from(info.descriptor, 'base64'), columns) : null };
		} catch (e) {
			if (e instanceof R.ValidationError)
				return null;
			throw e;
		}
	}

	/*
	 * Publish everything pending, at most MAX_ROWS_PER_FILE rows per data
	 * file and commit (bounded memory); returns per-table results.  A table
	 * whose file or commit fails keeps its chunks pending, in order, for the
	 * next round (its result carries `error`): leaving them out would let the
	 * next commit's log position pass records that were never published.
	 * Other tables are published all the same.  (A retry may write the
	 * rejected Parquet files of that round again.)
	 */
	async publish() {
		const out = {};
		for (const [table, chunks] of [...this.pending]) {
			const t = this.tables.get(table);
			if (!t) {
				this.pending.delete(table);
				continue;
			}
			while (chunks.length) {
				let n = 0, k = 0;
				while (k < chunks.length && (k === 0 || n < MAX_ROWS_PER_FILE))
					n += chunks[k++].payload.readUInt32LE(5);
				const acc = out[table] || { version: t.version, position: t.position, published: 0, rejected: 0,
					rejectedFiles: [] };
				let r;
				try {
					r = await this.publishTable(table, t, chunks.slice(0, k));
				} catch (e) {
					out[table] = { ...acc, error: e.message };
					break;
				}
				chunks.splice(0, k);
				out[table] = { ...r, published: acc.published + r.published, rejected: acc.rejected + r.rejected,
					rejectedFiles: acc.rejectedFiles.concat(r.rejectedFiles) };
			}
		}
		return out;
	}

	async publishTable(table, t, chunks) {
		const root = D.tableRoot(this.dataDir, table);
		const rows = [];
		const rejected = new Map();
		const compat = new Map();
		let end = 0;
		for (const ch of chunks) {
			end = Math.max(end, ch.end);
			const info = this.infos.get(ch.sn);
			if (!info)
				throw new Error(`log records of unknown stream number ${ch.sn}`);
			const isJson = info.recordType === 'JSON';
			let plan = info.plan, columns = info.columns, ok = true;
			if (info.schemaVersion !== t.schemaVersion) {
				if (!compat.has(ch.sn))
					compat.set(ch.sn, this.recompile(info, t.columns));
				const c = compat.get(ch.sn);
				ok = c !== null;
				if (ok) {
					plan = c.plan;
					columns = t.columns;
				}
			}
			for (const rec of splitRecords(ch.payload, isJson)) {
				let row = null;
				if (ok)
					try {
						row = isJson ? R.decodeJson(rec, columns) : R.decodeProto(rec, plan);
					} catch (e) {
						if (!(e instanceof R.ValidationError))
							throw e;
					}
				if (row)
					rows.push(row);
				else {
					let rj = rejected.get(ch.sn);
					if (!rj) {
						rj = { info, rows: [] };
						rejected.set(ch.sn, rj);
					}
					rj.rows.push(isJson ? R.decodeJson(rec, info.columns) : R.decodeProto(rec, info.plan));
				}
			}
		}
		const files = [];
		let nrej = 0;
		for (const rj of rejected.values()) {
			files.push(await D.writeRejected(root, rj.rows, rj.info.columns));
			nrej += rj.rows.length;
		}
		t.version = rows.length ? await D.appendRows(root, rows, t.columns, end, t.version + 1)
			: D.commitPosition(root, end, t.version + 1);
		t.position = end;
		return { version: t.version, position: end, published: rows.length, rejected: nrej, rejectedFiles: files };
	}
}

/*
 * Publication must not take CPU away from the gRPC side, whose acks are what
 * clients wait for.  On Linux the nice value is per thread, and a new thread
 * inherits its creator's: DuckDB runs each query on a thread of libuv's pool
 * (made by the main thread) and on threads of its own, so lowering this
 * thread's priority alone leaves most of the work at the main thread's.
 * So every thread of the process but the main one gets nice 10, again
 * before each publication since DuckDB and libuv add threads on demand.  The
 * pool's threads also write and sync the log, which is I/O, not CPU.
 */
const lowered = new Set();

function lowerThreadPriorities() {
	let tids;
	try {
		tids = fs.readdirSync('/proc/self/task');
	} catch (e) {
		tids = [];		/* not Linux: this thread only */
	}
	for (const tid of [0, ...tids.map(Number)]) {
		if (tid === process.pid || lowered.has(tid))
			continue;
		try {
			os.setPriority(tid, 10);
			lowered.add(tid);
		} catch (e) {
			/* not permitted, or the thread is gone: leave it */
		}
	}
}

/* Worker side: serve Publisher methods to the main thread. */
function serve() {
	const pub = new Publisher(workerData.dataDir);
	let queue = Promise.resolve();
	lowerThreadPriorities();
	parentPort.on('message', (m) => {
		/* Calls run strictly in arrival order, async ones included. */
		queue = queue.then(async () => {
			try {
				if (m.method === 'publish')
					lowerThreadPriorities();
				const result = await pub[m.method](...m.args);
				if (m.id)
					parentPort.postMessage({ id: m.id, result });
			} catch (e) {
				if (m.id)
					parentPort.postMessage({ id: m.id, error: e.message });
				else
					parentPort.postMessage({ log: `publisher: ${m.method} failed: ${e.stack || e}` });
			}
		});
	});
}

/*
 * Main-thread handle on the publisher worker.  Messages reach the worker in
 * call order.  Durable payloads (chunk()) are queued and go over together,
 * copied side by side into one buffer that is moved, not copied, to the
 * worker: a message per ingest request would cost more than the request's
 * checks when requests carry a few records each (and a small Buffer is a
 * view of a shared pool, which postMessage would copy whole).
 */
class PublisherClient {
	constructor(dataDir, log) {
		this.worker = new Worker(__filename, { workerData: { dataDir } });
		this.worker.unref();
		this.calls = new Map();
		this.nextId = 1;
		this.outbox = [];		/* [table, sn, payload, end] not sent yet */
		this.outboxBytes = 0;
		this.flushQueued = false;
		this.worker.on('message', (m) => {
			if (m.log)
				return log(m.log);
			const c = this.calls.get(m.id);
			this.calls.delete(m.id);
			if (m.error)
				c.reject(new Error(m.error));
			else
				c.resolve(m.result);
		});
		this.worker.on('error', (e) => log(`publisher worker died: ${e.stack || e}`));
	}

	call(method, ...args) {
		const id = this.nextId++;
		this.flush();
		return new Promise((resolve, reject) => {
			this.calls.set(id, { resolve, reject });
			this.worker.postMessage({ id, method, args });
		});
	}

	/* Fire-and-forget. */
	send(method, args) {
		this.flush();
		this.worker.postMessage({ id: 0, method, args });
	}

	/*
	 * Queue the durable RECORDS payload of log position end for publication
	 * (sent at the latest once this turn of the event loop is over).  The
	 * payload is copied only then, so the caller must leave it unchanged.
	 */
	chunk(table, sn, payload, end) {
		this.outbox.push([table, sn, payload, end]);
		this.outboxBytes += payload.length;
		if (this.outboxBytes >= OUTBOX_BYTES)
			this.flush();
		else if (!this.flushQueued) {
			this.flushQueued = true;
			setImmediate(() => {
				this.flushQueued = false;
				this.flush();
			});
		}
	}

	/* Send the queued payloads now. */
	flush() {
		if (this.outbox.length === 0)
			return;
		const buf = Buffer.allocUnsafeSlow(this.outboxBytes);
		const meta = [];
		let off = 0;
		for (const [table, sn, payload, end] of this.outbox) {
			payload.copy(buf, off);
			meta.push([table, sn, end, off, payload.length]);
			off += payload.length;
		}
		this.outbox = [];
		this.outboxBytes = 0;
		this.worker.postMessage({ id: 0, method: 'chunks', args: [meta, buf] }, [buf.buffer]);
	}

	terminate() {
		return this.worker.terminate();
	}
}

if (parentPort && workerData && workerData.dataDir)
	serve();

module.exports = { Publisher, PublisherClient, splitRecords };
