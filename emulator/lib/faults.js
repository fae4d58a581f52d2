'use strict';
/*
 * faults.js
 *    Run-time fault injection, per table or per stream id.
 *
 * Knobs (any combination, set through the admin API):
 *   ack_delay_ms            delay every ack by this many milliseconds
 *   withhold_acks           send no acks until cleared (then the latest ack goes out)
 *   drop_after_records      reset the TCP connection when a request would take the
 *                           stream past this many records
 *   close_stream_signal_ms  send CloseStreamSignal{duration} to matching streams
 *                           (live ones at once, new ones at creation), then end the
 *                           call after the duration as the server's stream timeout
 *                           does (UNAVAILABLE, unless the stream_end_status setting
 *                           says ok)
 *   delay_next_create_ms    answer the next create_stream of the table this many
 *                           milliseconds late (once, then cleared): a slow
 *                           creation, to reorder two streams' answers
 *   unavailable_on_create   answer create_stream with UNAVAILABLE (count: N times, or true = always)
 *   permission_denied_on_create  answer create_stream with PERMISSION_DENIED (count or true)
 *   unavailable             end the stream with UNAVAILABLE at its next request (count or true)
 *   unauthenticated         answer create_stream with UNAUTHENTICATED (count or true)
 *   http_status_on_create   answer a new call to the table at the HTTP level with
 *                           this :status and no grpc-status, as a proxy in front
 *                           of the service would (table from the call's header)
 *   rst_after_trailers      true/false: override the setting of that name (reset
 *                           the HTTP/2 stream with NO_ERROR after the trailers of
 *                           a call the client has not half-closed)
 *   lie                     a hostile server's protocol violation, for the
 *                           client's tests: "ack_ahead" (every ack claims
 *                           1,000,000 offsets beyond what arrived),
 *                           "ack_backwards" (an ack below the one before),
 *                           "ack_before_create" (an ack ahead of the
 *                           create_stream_response), "second_create" (two
 *                           create_stream_responses)
 *   token_body_b64          the token endpoint answers a request for the table
 *                           with these raw bytes (base64) as the body ("{{token}}"
 *                           in it becomes a valid token), and
 *   token_status            this HTTP status (default 400; a 3xx comes with a
 *                           Location): a broken or hostile token endpoint
 *   token_hold              the token endpoint holds every request for the
 *                           table until the knob is cleared (true/false): a
 *                           slow token endpoint, for clients that must not
 *                           wait on it
 * Token expiry is separate: expireTokens() makes every token issued so far
 * (or a client's) expired; expireUsedTokens() only those presented to
 * create_stream so far (a token fetched and not used yet stays valid, as
 * with tokens that expire by age).  A stream fault overrides the same knob of its table.
 * A knob set to null is cleared; so is one set to false or a count of 0,
 * except rst_after_trailers, for which false is a value.
 */

const KNOBS = new Set(['ack_delay_ms', 'withhold_acks', 'drop_after_records', 'close_stream_signal_ms', 'delay_next_create_ms',
	'unavailable_on_create', 'permission_denied_on_create', 'unavailable', 'unauthenticated',
	'http_status_on_create', 'rst_after_trailers', 'lie', 'token_body_b64', 'token_status', 'token_hold']);
const LIES = new Set(['ack_ahead', 'ack_backwards', 'ack_before_create', 'second_create']);
const COUNTED = new Set(['unavailable_on_create', 'permission_denied_on_create', 'unavailable', 'unauthenticated']);
const BOOLEAN = new Set(['withhold_acks', 'token_hold', 'rst_after_trailers']);

class FaultError extends Error {}

class Faults {
	constructor() {
		this.byTable = new Map();
		this.byStream = new Map();
		this.revokedAll = 0;
		this.revokedClient = new Map();
		this.usedTokens = new Set();	/* tokens presented to create_stream */
		this.revokedTokens = new Set();
	}

	/* Merge knobs into the fault set of a table or stream. */
	set({ table, stream_id: streamId, ...knobs }) {
		if (!!table === !!streamId)
			throw new FaultError('give exactly one of "table" or "stream_id"');
		for (const [k, v] of Object.entries(knobs)) {
			if (!KNOBS.has(k))
				throw new FaultError(`unknown fault "${k}" (known: ${[...KNOBS].join(', ')})`);
			if (v !== null && (COUNTED.has(k) ? !(v === true || v === false || (Number.isInteger(v) && v >= 0))
				: BOOLEAN.has(k) ? typeof v !== 'boolean'
				: k === 'lie' ? !(v === false || LIES.has(v))
				: k === 'token_body_b64' ? !(v === false || (typeof v === 'string' && /^[A-Za-z0-9+/=]*$/.test(v)))
				: k === 'token_status' ? !(Number.isInteger(v) && v >= 100 && v <= 599)
				: k === 'http_status_on_create' ? !(v === false || (Number.isInteger(v) && v >= 200 && v <= 599))
				: !(Number.isInteger(v) && v >= 0)))
				throw new FaultError(`bad value for fault "${k}": ${JSON.stringify(v)}`);
		}
		const map = table ? this.byTable : this.byStream;
		const key = table || streamId;
		const cur = { ...(map.get(key) || {}), ...knobs };
		for (const k of Object.keys(cur))
			if (cur[k] === null || cur[k] === false && k !== 'rst_after_trailers' || cur[k] === 0 && COUNTED.has(k))
				delete cur[k];
		if (Object.keys(cur).length)
			map.set(key, cur);
		else
			map.delete(key);
		return cur;
	}

	/* Clear faults: of one table or stream, or all (tokens stay expired). */
	clear({ table, stream_id: streamId } = {}) {
		if (table)
			this.byTable.delete(table);
		else if (streamId)
			this.byStream.delete(streamId);
		else {
			this.byTable.clear();
			this.byStream.clear();
		}
	}

	list() {
		return { tables: Object.fromEntries(this.byTable), streams: Object.fromEntries(this.byStream) };
	}

	forTable(table) {
		return this.byTable.get(table) || null;
	}

	/* Effective knobs of a stream: its table's, overridden by its own. */
	forStream(id, table) {
		const t = this.byTable.get(table);
		const s = this.byStream.get(id);
		if (!t && !s)
			return null;
		return { ...(t || {}), ...(s || {}), _t: t, _s: s };
	}

	/* Consume one use of a counted fault; true if it fires. */
	take(f, knob) {
		if (!f || f[knob] === undefined)
			return false;
		const owner = f._s && f._s[knob] !== undefined ? f._s : f._t && f._t[knob] !== undefined ? f._t : f;
		if (owner[knob] === true)
			return true;
		owner[knob]--;
		if (owner[knob] <= 0)
			delete owner[knob];
		return true;
	}

	/* Consume a one-shot valued fault of a table: its value, or undefined. */
	takeOnce(table, knob) {
		const f = this.byTable.get(table);
		const v = f ? f[knob] : undefined;
		if (v !== undefined) {
			delete f[knob];
			if (!Object.keys(f).length)
				this.byTable.delete(table);
		}
		return v;
	}

	expireTokens(clientId) {
		const now = Date.now() + 1;
		if (clientId)
			this.revokedClient.set(clientId, now);
		else
			this.revokedAll = now;
	}

	tokenUsed(token) {
		this.usedTokens.add(token);
	}

	expireUsedTokens() {
		for (const t of this.usedTokens)
			this.revokedTokens.add(t);
		this.usedTokens.clear();
	}

	tokenRevoked(clientId, issuedAt, token) {
		return issuedAt < this.revokedAll || issuedAt < (this.revokedClient.get(clientId) || 0) ||
			this.revokedTokens.has(token);
	}
}

module.exports = { Faults, FaultError, KNOBS };
