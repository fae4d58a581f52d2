'use strict';
/*
 * server.js
 *    The Zerobus Ingest emulator: gRPC EphemeralStream service, durable log,
 *    publication into Delta tables, the service model of settings.js
 *    (latency, quotas, stream lifetime, limits), faults and counters.
 *
 * Life of a record: a stream is opened by create_stream (auth, table,
 * descriptor checks); each ingest request is checked for its size and
 * offset_id (0, 1, 2, ... per call), every record in it is checked against
 * the table (PROTO records without building rows; the publication worker
 * decodes them), then the request is appended to the durable log; once the
 * group fsync covering it returns and its modelled time to durability and
 * the stream's quota allow, the stream's cumulative ack moves up to its
 * offset.
 * A timer (and the admin flush call) publishes durable records into the
 * Delta table; a restart republishes whatever the log holds beyond the
 * position recorded in each table's last commit.
 */

const fs = require('node:fs');
const path = require('node:path');
const http2 = require('node:http2');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const T = require('./types');
const R = require('./records');
const { Wal } = require('./wal');
const { Reader, WireError } = require('./wire');
const { RecordSet } = require('./recordset');
const { PublisherClient } = require('./publisher');
const { Catalog, columnsJson } = require('./catalog');
const { Statements } = require('./statements');
const { Faults } = require('./faults');
const { Settings, RECEIVE_CAP } = require('./settings');
const { TxnTracker } = require('./txntracker');

const Status = grpc.status;
const REC_OPEN = 1;
const REC_RECORDS = 2;
const COMPACT_BYTES = 64 * 1024 * 1024;
const WINDOW_BYTES = 16 * 1024 * 1024;
const LATENCY_SAMPLES = 200000;	/* ack latencies kept for the stats */
const widened = new WeakSet();	/* HTTP/2 sessions whose windows are open */

/*
 * The service definition from the proto.  maxBytes (a function, for the
 * server) gives the request size limit: a larger request is not decoded but
 * handed on as {payload: 'oversize', size, limit}, for the service to refuse.
 */
function loadService(protoFile, maxBytes) {
	const def = protoLoader.loadSync(protoFile, {
		keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, bytes: Buffer,
	});
	const method = def['databricks.zerobus.Zerobus'].EphemeralStream;
	const generic = method.requestDeserialize;
	method.requestDeserialize = (buf) => {
		const limit = maxBytes ? maxBytes() : Infinity;
		if (buf.length > limit)
			return { payload: 'oversize', size: buf.length, limit };
		return decodeProtoBatch(buf) || generic(buf);
	};
	return grpc.loadPackageDefinition(def).databricks.zerobus;
}

/*
 * Fast path of the EphemeralStreamRequest decoder for the request that
 * carries nearly every record, an ingest_record_batch of PROTO records in
 * its plain form (offset_id at most once, one proto_encoded_batch, nothing
 * else).  Its records are not cut out as Buffers: proto_encoded_batch gets
 * {buf, bounds}, the request buffer and the [start, end) offsets of each
 * record in it ([s0, e0, s1, e1, ...]), valid while the request is handled
 * (synchronously).  Returns null for any other message, well-formed or not,
 * which the generated decoder then decodes (or rejects) as before.
 */
function decodeProtoBatch(buf) {
	try {
		const r = new Reader(buf);
		if (r.eof() || r.uint32() !== 0x1a)	/* field 3, length-delimited */
			return null;
		const [s, e] = r.lengthDelimited();
		if (e !== buf.length)
			return null;
		const br = new Reader(buf, s, e);
		let offset, bounds = null;
		while (!br.eof()) {
			const tag = br.uint32();
			if (tag === 0x08 && offset === undefined) {	/* offset_id */
				br.readVarint();
				if (br.hi >= 0x200000)
					return null;	/* negative or beyond 2^53 */
				offset = br.hi * 4294967296 + br.lo;
			} else if (tag === 0x12 && bounds === null) {	/* proto_encoded_batch */
				const [bs, be] = br.lengthDelimited();
				const rr = new Reader(buf, bs, be);
				bounds = [];
				while (!rr.eof()) {
					if (rr.uint32() !== 0x0a)	/* records */
						return null;
					bounds.push(rr.span(), rr.pos);
				}
			} else
				return null;
		}
		if (bounds === null)
			return null;
		return { payload: 'ingest_record_batch', ingest_record_batch: { offset_id: offset,
			batch: 'proto_encoded_batch', proto_encoded_batch: { buf, bounds } } };
	} catch (e) {
		if (e instanceof WireError)
			return null;
		throw e;
	}
}

function defaultProtoPath() {
	return path.resolve(__dirname, '..', '..', 'proto', 'zerobus_service.proto');
}

class StatusError extends Error {
	constructor(code, message) {
		super(message);
		this.code = code;
	}
}

/* The HTTP/2 stream under a grpc-js server call (its session is the connection). */
function http2StreamOf(call) {
	let c = call.call;
	for (let i = 0; c && i < 5; i++) {
		if (c.stream && c.stream.session)
			return c.stream;
		c = c.nextCall;
	}
	return null;
}

/* The table a call is for, from its header (known before any message). */
function headerTable(call) {
	return (call.metadata.get('x-databricks-zerobus-table-name')[0] || '').toString();
}

/* A standard normal deviate, by Box-Muller. */
function normal() {
	return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
}

/*
 * The time to durability of a request arriving now on stream s: a draw
 * from the log-normal distribution with median p50 and 95th percentile p95
 * (mu = ln p50, sigma = ln(p95 / p50) / 1.645, z of 0.95).  With
 * correlationMs > 0 the stream's normal deviate drifts instead of being
 * drawn afresh: z' = rho z + sqrt(1 - rho^2) e with rho = exp(-gap /
 * correlationMs), gap the time since the stream's previous draw, an AR(1)
 * process whose every draw still has the standard normal distribution, so
 * each request's time keeps the log-normal.  Independent draws would make
 * a pipelined stream's cumulative ack wait for the slowest of the requests
 * below it, and so show its client about three times the median modelled
 * (README.md, "Profiles").
 */
function timeToDurability(s, now, p50, p95, correlationMs) {
	let z = normal();

	if (correlationMs > 0 && s.ttdAt !== undefined) {
		const rho = Math.exp(-(now - s.ttdAt) / correlationMs);
		z = rho * s.ttdZ + Math.sqrt(1 - rho * rho) * z;
	}
	s.ttdZ = z;
	s.ttdAt = now;
	return p50 * Math.exp(Math.log(p95 / p50) / 1.645 * z);
}

/*
 * Open the HTTP/2 flow-control windows of a connection wide (16 MiB for the
 * connection and for each stream), once per session.  Node keeps the
 * protocol's 64 KiB defaults, so a client streaming requests of hundreds of
 * kB would wait for a WINDOW_UPDATE every 64 KiB, each sent only when this
 * thread is done with the request before: the client's pipeline would stall
 * on this thread.  gRPC servers grow their windows by BDP probing (grpc-go
 * up to 16 MiB), which this stands for.
 */
function widenWindows(call) {
	const sess = http2StreamOf(call)?.session;
	if (!sess || sess.destroyed || widened.has(sess))
		return;
	widened.add(sess);
	sess.setLocalWindowSize(WINDOW_BYTES);
	sess.settings({ initialWindowSize: WINDOW_BYTES });
}

/*
 * Once the trailers of a call are out, reset its HTTP/2 stream with
 * NO_ERROR if the client has not half-closed, as grpc-go and grpc-core
 * servers do: libcurl only delivers the trailers (the status) of a stream
 * whose two halves are closed.
 */
function resetAfterTrailers(call) {
	const st = http2StreamOf(call);
	if (!st || st.destroyed || st.closed)
		return;
	st.once('wantTrailers', () => setImmediate(() => {
		if (!st.destroyed && !st.closed)
			st.close(http2.constants.NGHTTP2_NO_ERROR);
	}));
}

function newCounters() {
	return { streams_opened: 0, streams_active: 0, streams_failed: 0, requests_received: 0,
		records_received: 0, requests_durable: 0, records_durable: 0, acks_sent: 0, duplicates: 0,
		invalid_requests: 0, records_published: 0, records_rejected_parquet: 0, publish_failures: 0,
		connections_dropped: 0,
		close_signals_sent: 0, streams_expired: 0, token_requests_held: 0 };
}

class Emulator {
	/*
	 * opts: dataDir (required), protoFile, publishIntervalMs, tokenTtlS,
	 * compactBytes (log size that triggers compaction), trackTransactions
	 * (keep the durable records' _xid and _seq: txntracker.js), settings (a
	 * Settings; the fast profile by default), log (function for stderr
	 * lines).
	 */
	constructor(opts) {
		this.opts = opts;
		this.dataDir = path.resolve(opts.dataDir);
		fs.mkdirSync(this.dataDir, { recursive: true });
		this.log = opts.log || (() => {});
		this.catalog = new Catalog(this.dataDir, opts.tokenTtlS);
		this.faults = new Faults();
		this.statements = new Statements(this);
		this.settings = opts.settings || new Settings();
		this.streams = new Map();		/* stream id -> live stream */
		this.streamInfo = new Map();	/* stream number -> {table, columns, ...} from OPEN */
		this.lastChunkEnd = new Map();	/* table -> end position of the last chunk sent */
		this.counters = newCounters();
		this.tableCounters = new Map();
		this.seen = new Map();			/* table -> RecordSet of the records received */
		this.published = new Map();		/* table -> last published log position */
		this.versions = new Map();		/* table -> Delta version */
		this.tokenUserAgent = null;		/* user-agent of the last token request */
		this.ackLatency = [];			/* ring of ack latencies (noteAckLatency) */
		this.ackLatencyNext = 0;
		this.tracker = opts.trackTransactions ? new TxnTracker() : null;
		this.nextSn = 1;
		this.inflight = 0;
		this.publishing = Promise.resolve();
		this.service = loadService(opts.protoFile || defaultProtoPath(), () => this.settings.values.max_message_bytes);
	}

	tc(table) {
		let c = this.tableCounters.get(table);
		if (!c) {
			c = newCounters();
			this.tableCounters.set(table, c);
		}
		return c;
	}

	count(table, key, n = 1) {
		this.counters[key] += n;
		this.tc(table)[key] += n;
	}

	/* Recover from the log and publish what it holds; call before serving. */
	async recover() {
		this.publisher = new PublisherClient(this.dataDir, this.log);
		for (const t of this.catalog.tableNames())
			await this.syncTable(t);
		const { wal, frames } = Wal.open(path.join(this.dataDir, 'emulator.wal'));
		this.wal = wal;
		let replayed = 0;
		for (const f of frames) {
			const type = f.payload[0];
			if (type === REC_OPEN) {
				const info = JSON.parse(f.payload.subarray(1).toString('utf8'));
				this.streamInfo.set(info.sn, info);
				this.publisher.send('info', [info]);
				this.nextSn = Math.max(this.nextSn, info.sn + 1);
			} else if (type === REC_RECORDS) {
				const info = this.streamInfo.get(f.payload.readUInt32LE(1));
				if (info && this.tracker)
					this.tracker.add(info, f.payload);
				if (!info || !this.catalog.table(info.table) || f.end <= (this.published.get(info.table) || 0))
					continue;
				this.sendChunk(info, f.payload, f.end);
				replayed += f.payload.readUInt32LE(5);
			}
		}
		if (replayed)
			this.log(`recovered ${replayed} durable records not yet published`);
		await this.publish();
	}

	/* Create or update the Delta table of a catalog table (after a catalog change). */
	async syncTable(name) {
		const t = this.catalog.table(name);
		const r = await this.publisher.call('table', name, columnsJson(t.columns), t.schemaVersion, t.properties);
		this.versions.set(name, r.version);
		this.published.set(name, r.position);
	}

	/*
	 * Declare or alter a table (admin API, SQL statements); an alteration
	 * ends the table's live streams.  Returns the catalog's table.
	 */
	async putTable(name, columns, extra) {
		const { table, changed } = this.catalog.putTable(name, columns, extra);
		await this.syncTable(name);
		if (changed)
			this.endTableStreams(name, `table "${name}" schema changed; reopen the stream with a matching descriptor`);
		return table;
	}

	async dropTable(name) {
		this.catalog.dropTable(name);
		this.endTableStreams(name, `table "${name}" was dropped`);
		await this.publisher.call('dropTable', name);
		this.versions.delete(name);
		this.published.delete(name);
		this.lastChunkEnd.delete(name);
	}

	sendChunk(info, payload, end) {
		this.lastChunkEnd.set(info.table, end);
		this.publisher.chunk(info.table, info.sn, payload, end);
	}

	/* ---- publication ---- */

	/*
	 * Publish every durable record to its Delta table (in the worker);
	 * serialized.  Resolves with {table: message} for the tables whose
	 * publication failed this round (their records stay pending and are
	 * tried again next round).
	 */
	publish() {
		this.publishing = this.publishing.then(async () => {
			const res = await this.publisher.call('publish');
			const errors = {};
			for (const [table, r] of Object.entries(res)) {
				this.versions.set(table, r.version);
				this.published.set(table, r.position);
				if (this.catalog.table(table)) {
					this.count(table, 'records_published', r.published);
					this.count(table, 'records_rejected_parquet', r.rejected);
				}
				for (const f of r.rejectedFiles)
					this.log(`table ${table} changed incompatibly: durable records written to ${f}`);
				if (r.error !== undefined) {
					errors[table] = r.error;
					if (this.catalog.table(table))
						this.count(table, 'publish_failures');
					this.log(`publication of table ${table} failed, its durable records stay pending: ${r.error}`);
				}
			}
			await this.maybeCompact();
			return errors;
		}).catch((e) => {
			this.log(`publication failed: ${e.stack || e}`);
			return { '*': e.message };
		});
		return this.publishing;
	}

	/* Shrink the log once everything in it is published. */
	async maybeCompact() {
		if (this.wal.size() < (this.opts.compactBytes || COMPACT_BYTES) || this.inflight > 0)
			return;
		for (const [table, end] of this.lastChunkEnd)
			if ((this.published.get(table) || 0) < end)
				return;
		const live = new Set([...this.streams.values()].map(s => s.info.sn));
		const dead = [...this.streamInfo.keys()].filter(sn => !live.has(sn));
		dead.forEach(sn => this.streamInfo.delete(sn));
		this.publisher.send('forget', [dead]);
		await this.wal.compact([...this.streamInfo.values()].map(i => this.openPayload(i)));
		this.log('log compacted');
	}

	openPayload(info) {
		return Buffer.concat([Buffer.from([REC_OPEN]), Buffer.from(JSON.stringify(info), 'utf8')]);
	}

	/* ---- gRPC ---- */

	handleStream(call) {
		const httpStatus = this.faults.forTable(headerTable(call))?.http_status_on_create;
		if (httpStatus)
			return this.answerHttp(call, httpStatus);
		widenWindows(call);
		call.sendMetadata(new grpc.Metadata());
		/*
		 * durable: highest offset fsynced (with all before it); held: the
		 * requests whose modelled ready time (ms, performance.now()) is still
		 * ahead, [{offset, at}] in offset order; quotaAt: the stream's quota
		 * clock; timers: its lifetime timers.
		 */
		const s = {
			call, id: null, info: null, table: null, nextOffset: 0, durable: -1, sentAck: -1,
			received: 0, outstanding: 0, ended: false, halfClosed: false, closeSignalled: false,
			userAgent: (call.metadata.get('user-agent')[0] || '').toString(),
			held: [], readyTimer: null, quotaAt: 0, timers: [], lastRequestAt: performance.now(),
			arrivals: [],	/* [offset, performance.now()] of the requests not acked yet */
		};
		const onData = (msg) => {
			if (s.delayed) {	/* the create waits: so does what follows */
				s.delayed.push(msg);
				return;
			}
			try {
				if (s.ended)
					return;
				if (!s.id && msg.payload === 'create_stream' && !s.wasDelayed) {
					const delay = this.faults.takeOnce(msg.create_stream.table_name || '', 'delay_next_create_ms');
					if (delay) {
						this.log(`create_stream on ${msg.create_stream.table_name}: injected fault: answered ${delay} ms late`);
						s.wasDelayed = true;
						s.delayed = [msg];
						setTimeout(() => {
							const held = s.delayed;
							s.delayed = null;
							held.forEach(onData);
						}, delay);
						return;
					}
				}
				if (msg.payload === 'oversize')
					throw new StatusError(Status.INVALID_ARGUMENT, `Batch size exceeds maximum allowed size: ` +
						`request ${s.id ? `with offset_id ${s.nextOffset} ` : ''}is ${msg.size} bytes, the limit is ${msg.limit} bytes`);
				if (!s.id)
					this.openStream(s, msg);
				else
					this.ingest(s, msg);
			} catch (e) {
				if (e instanceof StatusError || e instanceof R.ValidationError) {
					if (s.table && !(e instanceof StatusError && e.code !== Status.INVALID_ARGUMENT))
						this.count(s.table, 'invalid_requests');
					this.endStream(s, e.code || Status.INVALID_ARGUMENT, e.message);
				} else {
					this.log(`internal error: ${e.stack || e}`);
					this.endStream(s, Status.INTERNAL, `emulator internal error: ${e.message}`);
				}
			}
		};
		call.on('data', onData);
		call.on('end', () => {
			s.halfClosed = true;
			this.maybeFinish(s);
		});
		call.on('cancelled', () => this.detach(s));
		call.on('error', () => this.detach(s));
		call.on('close', () => this.detach(s));
	}

	detach(s) {
		if (!s.ended) {
			s.ended = true;
			if (s.table)
				this.count(s.table, 'streams_failed');
		}
		this.release(s);
	}

	/* A stream that has ended: no longer live, its timers stopped. */
	release(s) {
		s.timers.forEach(clearTimeout);
		clearTimeout(s.readyTimer);
		if (s.id && this.streams.get(s.id) === s) {
			this.streams.delete(s.id);
			this.count(s.table, 'streams_active', -1);
		}
	}

	/* End the call with a status (OK after a clean half-close, or from the server). */
	endStream(s, code, message) {
		if (s.ended)
			return;
		s.ended = true;
		this.release(s);
		if (code !== Status.OK || !s.halfClosed)
			this.log(`stream ${s.id || '(not created)'} ends: ${Object.keys(Status).find(k => Status[k] === code)}: ${message}`);
		if (code === Status.OK)
			s.call.end();
		else
			s.call.emit('error', { code, details: message, metadata: new grpc.Metadata() });
		if (this.rstAfterTrailers(s.id, s.table || headerTable(s.call)))
			resetAfterTrailers(s.call);
	}

	/* Whether calls end with RST_STREAM(NO_ERROR): the fault knob, else the setting. */
	rstAfterTrailers(id, table) {
		return this.faults.forStream(id, table)?.rst_after_trailers ?? this.settings.values.rst_after_trailers;
	}

	/*
	 * Answer a new call at the HTTP level, as a proxy or load balancer in
	 * front of the service would: ":status N", no grpc-status, the end of the
	 * stream (then RST_STREAM(NO_ERROR) while the client still sends, as
	 * after trailers).  grpc-js has sent nothing yet: it calls the handler
	 * before any response header.
	 */
	answerHttp(call, status) {
		const st = http2StreamOf(call);
		const table = headerTable(call);
		this.log(`call for table "${table}": injected fault: HTTP status ${status}`);
		if (!st)	/* grpc-js changed: fail the call rather than the emulator */
			return call.emit('error', { code: Status.INTERNAL, details: 'emulator: no HTTP/2 stream under the call',
				metadata: new grpc.Metadata() });
		st.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' }, { endStream: true });
		if (this.rstAfterTrailers(null, table))
			st.close(http2.constants.NGHTTP2_NO_ERROR);
	}

	authenticate(call, tableName) {
		const md = call.metadata;
		const auth = (md.get('authorization')[0] || '').toString();
		const m = /^Bearer\s+(\S+)$/i.exec(auth);
		if (!m)
			throw new StatusError(Status.UNAUTHENTICATED, 'missing or malformed authorization header (expected "Bearer <token>")');
		const claims = this.catalog.verifyToken(m[1], this.faults);
		if (!claims.ok)
			throw new StatusError(Status.UNAUTHENTICATED, claims.reason);
		this.faults.tokenUsed(m[1]);
		const hdr = headerTable(call);
		if (!hdr)
			throw new StatusError(Status.INVALID_ARGUMENT, 'missing x-databricks-zerobus-table-name header');
		if (hdr !== tableName)
			throw new StatusError(Status.INVALID_ARGUMENT,
				`x-databricks-zerobus-table-name "${hdr}" differs from create_stream.table_name "${tableName}"`);
		if (claims.table !== tableName)
			throw new StatusError(Status.PERMISSION_DENIED,
				`token of client "${claims.client_id}" is scoped to table "${claims.table}", not "${tableName}"`);
		if (!this.catalog.clientMayWrite(claims.client_id, tableName))
			throw new StatusError(Status.PERMISSION_DENIED,
				`client "${claims.client_id}" lacks MODIFY on table "${tableName}"`);
		if (this.settings.values.require_write_operation && !claims.zerobuswrite)
			throw new StatusError(Status.PERMISSION_DENIED, `token of client "${claims.client_id}" does not grant the ` +
				'zerobuswrite operation: its authorization_details TABLE entry must carry "operations": ["zerobuswrite"]');
		return claims;
	}

	openStream(s, msg) {
		if (msg.payload !== 'create_stream')
			throw new StatusError(Status.INVALID_ARGUMENT, `first message must be create_stream, got ${msg.payload || 'an empty message'}`);
		const req = msg.create_stream;
		const table = req.table_name || '';
		if (table.split('.').length !== 3 || table.split('.').some(p => !p))
			throw new StatusError(Status.INVALID_ARGUMENT, `table_name "${table}" is not of the form catalog.schema.table`);
		const fault = this.faults.forTable(table);
		if (this.faults.take(fault, 'unauthenticated'))
			throw new StatusError(Status.UNAUTHENTICATED, 'injected fault: token rejected');
		if (this.faults.take(fault, 'unavailable_on_create'))
			throw new StatusError(Status.UNAVAILABLE, 'injected fault: service unavailable');
		if (this.faults.take(fault, 'permission_denied_on_create'))
			throw new StatusError(Status.PERMISSION_DENIED, 'injected fault: permission denied');
		const claims = this.authenticate(s.call, table);
		const t = this.catalog.table(table);
		if (!t)
			throw new StatusError(Status.NOT_FOUND, `table "${table}" does not exist`);
		let recordType = req.record_type === undefined ? 'PROTO' : req.record_type;
		if (recordType !== 'PROTO' && recordType !== 'JSON')
			throw new StatusError(Status.INVALID_ARGUMENT, `record_type ${recordType} is not supported (PROTO or JSON)`);
		let plan = null;
		if (recordType === 'PROTO')
			plan = R.compileProto(req.descriptor_proto, t.columns);
		const id = crypto.randomUUID();
		const info = { sn: this.nextSn++, stream_id: id, table, recordType, schemaVersion: t.schemaVersion,
			columns: t.columns.map(c => ({ name: c.name, type: T.typeText(c.type), nullable: c.nullable })),
			descriptor: recordType === 'PROTO' ? Buffer.from(req.descriptor_proto).toString('base64') : null };
		this.streamInfo.set(info.sn, info);
		this.publisher.send('info', [info]);
		s.id = id;
		s.info = info;
		s.columns = t.columns;
		s.plan = plan;
		s.table = table;
		s.client = claims.client_id;
		this.streams.set(id, s);
		this.count(table, 'streams_opened');
		this.count(table, 'streams_active');
		s.openWrite = this.track(this.wal.append(this.openPayload(info)));
		s.openWrite.catch(() => {});
		const lie = this.faults.forStream(id, table)?.lie;
		if (lie === 'ack_before_create')
			s.call.write({ ingest_record_response: { durability_ack_up_to_offset: '0' } });
		s.call.write({ create_stream_response: { stream_id: id } });
		if (lie === 'second_create')
			s.call.write({ create_stream_response: { stream_id: id } });
		this.log(`stream ${id} opened on ${table} (${recordType}) by client ${claims.client_id}`);
		this.startLifetime(s);
		this.applyStreamFaults(s);
	}

	track(p) {
		this.inflight++;
		return p.finally(() => this.inflight--);
	}

	ingest(s, msg) {
		let offset, records, batch = null;
		if (msg.payload === 'ingest_record') {
			const r = msg.ingest_record;
			offset = r.offset_id;
			if (r.record === 'proto_encoded_record')
				records = [r.proto_encoded_record];
			else if (r.record === 'json_record')
				records = [r.json_record];
			else
				throw new StatusError(Status.INVALID_ARGUMENT, `ingest_record with offset_id ${offset} carries no record`);
		} else if (msg.payload === 'ingest_record_batch') {
			const r = msg.ingest_record_batch;
			offset = r.offset_id;
			if (r.batch === 'proto_encoded_batch' && r.proto_encoded_batch.bounds)
				batch = r.proto_encoded_batch;
			else if (r.batch === 'proto_encoded_batch')
				records = r.proto_encoded_batch.records || [];
			else if (r.batch === 'json_batch')
				records = r.json_batch.records || [];
			else
				throw new StatusError(Status.INVALID_ARGUMENT, `ingest_record_batch with offset_id ${offset} carries no batch`);
			if ((batch ? batch.bounds : records).length === 0)
				throw new StatusError(Status.INVALID_ARGUMENT, `ingest_record_batch with offset_id ${offset} is empty`);
		} else if (msg.payload === 'create_stream')
			throw new StatusError(Status.INVALID_ARGUMENT, 'create_stream sent twice on one call');
		else
			throw new StatusError(Status.INVALID_ARGUMENT, 'request carries no payload');
		if (offset === undefined)
			throw new StatusError(Status.INVALID_ARGUMENT, 'ingest request lacks offset_id');
		offset = Number(offset);
		if (offset !== s.nextOffset)
			throw new StatusError(Status.INVALID_ARGUMENT,
				`offset_id ${offset} out of sequence: expected ${s.nextOffset} (offsets start at 0 on each stream and grow by 1 per request)`);
		const isJson = s.info.recordType === 'JSON';
		const wrongKind = isJson ? (msg.ingest_record ? msg.ingest_record.record !== 'json_record'
			: msg.ingest_record_batch.batch !== 'json_batch')
			: (msg.ingest_record ? msg.ingest_record.record !== 'proto_encoded_record'
				: msg.ingest_record_batch.batch !== 'proto_encoded_batch');
		if (wrongKind)
			throw new StatusError(Status.INVALID_ARGUMENT,
				`request with offset_id ${offset} carries ${isJson ? 'PROTO' : 'JSON'} records on a ${s.info.recordType} stream`);
		if (!batch) {
			/* The few requests the fast decoder leaves alone, in its form. */
			const list = isJson ? records.map(t => Buffer.from(t, 'utf8')) : records;
			const bounds = [];
			let end = 0;
			for (const b of list)
				bounds.push(end, end += b.length);
			batch = { buf: list.length === 1 ? list[0] : Buffer.concat(list), bounds };
		}
		const { buf, bounds } = batch;
		const n = bounds.length / 2;

		const fault = this.faults.forStream(s.id, s.table);
		if (this.faults.take(fault, 'unavailable'))
			throw new StatusError(Status.UNAVAILABLE, 'injected fault: service unavailable');
		if (fault && fault.drop_after_records !== undefined && s.received + n > fault.drop_after_records) {
			this.count(s.table, 'connections_dropped');
			this.log(`stream ${s.id}: injected fault: dropping the connection after ${s.received} records`);
			const sess = http2StreamOf(s.call)?.session;
			if (sess)
				sess.destroy();	/* also destroys its TCP socket, without GOAWAY */
			else
				this.endStream(s, Status.UNAVAILABLE, 'injected fault: connection dropped');
			s.ended = true;
			return;
		}

		let size = 9;
		for (let i = 0; i < n; i++) {
			const start = bounds[2 * i], end = bounds[2 * i + 1];
			try {
				if (isJson)
					R.decodeJson(records[i], s.columns);
				else
					R.checkProto(buf, start, end, s.plan);
			} catch (e) {
				if (e instanceof R.ValidationError)
					throw new R.ValidationError(`record ${i} of request offset_id ${offset}: ${e.message}`);
				throw e;
			}
			size += 4 + end - start;
		}
		s.nextOffset++;
		s.received += n;
		s.lastRequestAt = performance.now();
		this.count(s.table, 'requests_received');
		this.count(s.table, 'records_received', n);
		const at = this.readyTime(s, n, size - 9 - 4 * n);
		if (at)
			s.held.push({ offset, at });
		s.arrivals.push([offset, performance.now()]);

		const payload = Buffer.allocUnsafe(size);
		payload[0] = REC_RECORDS;
		payload.writeUInt32LE(s.info.sn, 1);
		payload.writeUInt32LE(n, 5);
		let off = 9;
		for (let i = 0; i < n; i++) {
			const start = bounds[2 * i], end = bounds[2 * i + 1];
			payload.writeUInt32LE(end - start, off);
			buf.copy(payload, off + 4, start, end);
			off += 4 + end - start;
		}
		this.countDuplicates(s.table, payload);
		s.outstanding++;
		this.track(this.wal.append(payload)).then((end) => {
			s.outstanding--;
			if (this.tracker)
				this.tracker.add(s.info, payload);
			if (this.catalog.table(s.table))
				this.sendChunk(s.info, payload, end);
			if (offset > s.durable) {
				s.durable = offset;
			}
			this.count(s.table, 'requests_durable');
			this.count(s.table, 'records_durable', n);
			this.scheduleAck(s);
		}, (err) => {
			s.outstanding--;
			this.log(`log write failed: ${err.message}`);
			this.endStream(s, Status.INTERNAL, `emulator log write failed: ${err.message}`);
		});
	}

	/* Count the records of a RECORDS log payload the table has had before. */
	countDuplicates(table, payload) {
		let set = this.seen.get(table);
		if (!set) {
			set = new RecordSet();
			this.seen.set(table, set);
		}
		if (set.size > 5000000)
			return;
		const dv = new DataView(payload.buffer, payload.byteOffset, payload.length);
		const n = dv.getUint32(5, true);
		let dup = 0;
		for (let i = 0, off = 9; i < n; i++) {
			const len = dv.getUint32(off, true);
			if (!set.add(dv, off + 4, off + 4 + len))
				dup++;
			off += 4 + len;
		}
		if (dup)
			this.count(table, 'duplicates', dup);
	}

	/*
	 * The earliest time (performance.now() ms) the ack of a request that
	 * has just arrived may go out, or 0 if nothing holds it back beyond its
	 * fsync: its time to durability, drawn from the log-normal of
	 * ttd_p50_ms/ttd_p95_ms, and the time the stream's quota has room for its
	 * records and bytes.  The quota is a virtual clock: each request costs
	 * records / stream_records_per_s or bytes / stream_bytes_per_s seconds,
	 * whichever is longer, and may go once the requests before it are paid
	 * for, so a stream that keeps sending has its acks paced at the quota.
	 */
	readyTime(s, records, bytes) {
		const v = this.settings.values;
		if (!v.ttd_p50_ms && !v.stream_records_per_s && !v.stream_bytes_per_s)
			return 0;
		const now = performance.now();
		let at = v.ttd_p50_ms
			? now + timeToDurability(s, now, v.ttd_p50_ms, v.ttd_p95_ms, v.ttd_correlation_ms) : 0;
		const cost = Math.max(v.stream_records_per_s ? records * 1000 / v.stream_records_per_s : 0,
			v.stream_bytes_per_s ? bytes * 1000 / v.stream_bytes_per_s : 0);
		if (cost > 0) {
			const start = Math.max(now, s.quotaAt);
			s.quotaAt = start + cost;
			at = Math.max(at, start);
		}
		return at > now ? at : 0;
	}

	/*
	 * The offset the cumulative ack may reach now: the highest one whose
	 * every request is fsynced and past its ready time.  Never decreases.
	 */
	ackable(s) {
		if (!s.held.length)
			return s.durable;
		const now = performance.now();
		while (s.held.length && s.held[0].at <= now)
			s.held.shift();
		return s.held.length ? Math.min(s.durable, s.held[0].offset - 1) : s.durable;
	}

	/*
	 * Send the cumulative ack now, later (delay fault) or not (withhold);
	 * when a request not yet ready holds back durable ones, again at its
	 * ready time.
	 */
	scheduleAck(s) {
		if (s.ended)
			return;
		const upTo = this.ackable(s);
		if (s.held.length && s.held[0].offset <= s.durable && !s.readyTimer)
			s.readyTimer = setTimeout(() => {
				s.readyTimer = null;
				this.scheduleAck(s);
			}, s.held[0].at - performance.now());
		if (upTo <= s.sentAck)
			return this.maybeFinish(s);
		const fault = this.faults.forStream(s.id, s.table);
		if (fault && fault.withhold_acks)
			return;
		const delay = fault && fault.ack_delay_ms ? fault.ack_delay_ms : 0;
		if (delay > 0)
			setTimeout(() => this.sendAck(s, upTo), delay);
		else if (!s.ackQueued) {
			s.ackQueued = true;
			setImmediate(() => {
				s.ackQueued = false;
				this.sendAck(s, this.ackable(s));
			});
		}
	}

	sendAck(s, upTo) {
		if (s.ended || upTo <= s.sentAck)
			return this.maybeFinish(s);
		const fault = this.faults.forStream(s.id, s.table);
		if (fault && fault.withhold_acks)
			return;
		let claimed = upTo;
		if (fault && fault.lie === 'ack_ahead')
			claimed = upTo + 1000000;
		else if (fault && fault.lie === 'ack_backwards' && s.sentAck >= 0)
			claimed = s.sentAck - 1;
		s.sentAck = upTo;
		this.count(s.table, 'acks_sent');
		this.noteAckLatency(s, upTo);
		s.call.write({ ingest_record_response: { durability_ack_up_to_offset: String(claimed) } });
		this.maybeFinish(s);
	}

	/* After the client's half-close: end with OK once everything is acked. */
	maybeFinish(s) {
		if (!s.halfClosed || s.ended || s.outstanding > 0)
			return;
		if (!s.id) {
			this.endStream(s, Status.INVALID_ARGUMENT, 'stream closed before create_stream');
			return;
		}
		const fault = this.faults.forStream(s.id, s.table);
		if (s.sentAck < s.durable && !(fault && fault.withhold_acks))
			return;
		this.endStream(s, Status.OK, 'OK');
	}

	/*
	 * The server's stream timeout: a new stream ends after
	 * stream_lifetime_ms, announced stream_close_signal_ms before (at most
	 * the whole lifetime) by a CloseStreamSignal unless that is 0.
	 */
	startLifetime(s) {
		const { stream_lifetime_ms: life, stream_close_signal_ms: lead } = this.settings.values;
		if (!life)
			return;
		if (lead)
			s.timers.push(setTimeout(() => this.signalClose(s, Math.min(lead, life)), life - Math.min(lead, life)));
		else
			s.timers.push(setTimeout(() => this.expire(s), life));
	}

	/* Send CloseStreamSignal{duration ms}, then end the stream after ms (once per stream). */
	signalClose(s, ms) {
		if (s.ended || s.closeSignalled)
			return;
		s.closeSignalled = true;
		s.call.write({ close_stream_signal: { duration: { seconds: String(Math.floor(ms / 1000)),
			nanos: (ms % 1000) * 1e6 } } });
		this.count(s.table, 'close_signals_sent');
		s.timers.push(setTimeout(() => this.expire(s), ms));
	}

	/* End a stream on the server's timeout, with the status stream_end_status says. */
	expire(s) {
		if (s.ended)
			return;
		this.count(s.table, 'streams_expired');
		this.endStream(s, this.settings.values.stream_end_status === 'ok' ? Status.OK : Status.UNAVAILABLE,
			`Stream timeout reached. Closing the stream (ID: ${s.id}). Error Code: 6002, Error State: 0.`);
	}

	/*
	 * End, on the server's stream timeout, the live streams (of one table,
	 * or all) that owe no ack and received no request for idleMs: the
	 * service closing idle streams.  Returns how many ended.
	 */
	expireIdle(table, idleMs) {
		const now = performance.now();
		let n = 0;
		for (const s of [...this.streams.values()])
			if (s.id && (!table || s.table === table) && s.outstanding === 0 &&
				s.sentAck === s.nextOffset - 1 && now - s.lastRequestAt >= idleMs) {
				this.expire(s);
				n++;
			}
		return n;
	}

	/* Faults that act on a stream without waiting for a request. */
	applyStreamFaults(s) {
		if (s.ended || !s.id)
			return;
		const fault = this.faults.forStream(s.id, s.table);
		if (fault && fault.close_stream_signal_ms !== undefined)
			this.signalClose(s, fault.close_stream_signal_ms);
		if (!fault || !fault.withhold_acks)
			this.scheduleAck(s);
	}

	/* Re-evaluate faults on live streams after an admin change. */
	faultsChanged() {
		for (const s of [...this.streams.values()])
			this.applyStreamFaults(s);
	}

	/* Streams of a table end when the table is dropped or altered. */
	endTableStreams(table, why) {
		for (const s of [...this.streams.values()])
			if (s.table === table)
				this.endStream(s, Status.FAILED_PRECONDITION, why);
	}

	/*
	 * The time from each request's arrival to the ack that covers it: the
	 * service's own time to durability as a client sees it (with acks
	 * cumulative, a request waits for every earlier one).  The last
	 * LATENCY_SAMPLES are kept for the stats.
	 */
	noteAckLatency(s, upTo) {
		const now = performance.now();
		let i = 0;
		for (; i < s.arrivals.length && s.arrivals[i][0] <= upTo; i++) {
			this.ackLatency[this.ackLatencyNext % LATENCY_SAMPLES] = now - s.arrivals[i][1];
			this.ackLatencyNext++;
		}
		s.arrivals.splice(0, i);
	}

	/* {samples, p50, p95, p99} in ms of the kept ack latencies. */
	ackLatencyStats() {
		const v = this.ackLatency.slice(0, Math.min(this.ackLatencyNext, LATENCY_SAMPLES)).sort((a, b) => a - b);
		const pct = (p) => (v.length ? Math.round(v[Math.min(v.length - 1, Math.floor(p * v.length))] * 10) / 10 : null);
		return { samples: v.length, p50: pct(0.5), p95: pct(0.95), p99: pct(0.99) };
	}

	resetAckLatency() {
		this.ackLatencyNext = 0;
	}

	stats() {
		return {
			...this.counters,
			ack_latency_ms: this.ackLatencyStats(),
			log_syncs: this.wal.syncs,
			log_bytes: this.wal.size(),
			token_user_agent: this.tokenUserAgent,
			tables: Object.fromEntries(this.catalog.tableNames().map(t => [t, {
				...this.tc(t), delta_version: this.versions.get(t),
				published_log_position: this.published.get(t) || 0,
			}])),
		};
	}

	streamList() {
		return [...this.streams.values()].map(s => ({
			stream_id: s.id, table: s.table, client_id: s.client, record_type: s.info.recordType,
			next_offset: s.nextOffset, acked_up_to: s.sentAck, durable_up_to: s.durable, records: s.received,
			user_agent: s.userAgent,
		}));
	}

	/* Bind gRPC (h2c and optionally TLS) ports; returns the bound ports. */
	async listen({ host = '127.0.0.1', grpcPort = 0, tlsPort, tlsCert, tlsKey }) {
		const server = new grpc.Server({
			'grpc.max_receive_message_length': RECEIVE_CAP,
			'grpc.max_send_message_length': 4 * 1024 * 1024,
		});
		server.addService(this.service.Zerobus.service, { EphemeralStream: (call) => this.handleStream(call) });
		const bind = (port, creds) => new Promise((res, rej) =>
			server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, creds, (err, p) => (err ? rej(err) : res(p))));
		const out = { grpc_port: await bind(grpcPort, grpc.ServerCredentials.createInsecure()), grpc_tls_port: null };
		if (tlsCert) {
			const creds = grpc.ServerCredentials.createSsl(null,
				[{ cert_chain: fs.readFileSync(tlsCert), private_key: fs.readFileSync(tlsKey) }], false);
			out.grpc_tls_port = await bind(tlsPort || 0, creds);
		}
		this.grpcServer = server;
		this.timer = setInterval(() => this.publish(), this.opts.publishIntervalMs || 2000);
		this.timer.unref();
		return out;
	}

	async close() {
		clearInterval(this.timer);
		for (const s of [...this.streams.values()])
			this.endStream(s, Status.UNAVAILABLE, 'emulator shutting down');
		if (this.grpcServer)
			this.grpcServer.forceShutdown();
		await this.wal.idle();
		await this.publish();
		this.wal.close();
		await this.publisher.terminate();
	}
}

module.exports = { Emulator, StatusError, loadService, defaultProtoPath };
