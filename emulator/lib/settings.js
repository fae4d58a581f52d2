'use strict';
/*
 * settings.js
 *    How faithfully the emulator models the real service: a profile ("fast",
 *    the default, for the test suites; "real", the limits and behaviour
 *    Databricks publishes for Zerobus Ingest) and knobs that override it,
 *    from the command line (--kebab-case) or at run time through the admin
 *    API (snake_case; GET/PUT /admin/settings).
 *
 * Knobs:
 *   ttd_p50_ms, ttd_p95_ms   each request's time to durability (arrival to the
 *                            earliest ack), log-normal with this median and 95th
 *                            percentile; 0/0 = only the real fsync
 *   ttd_correlation_ms       how long a stream's time to durability stays
 *                            alike: successive draws are correlated by
 *                            exp(-gap / this); 0 = independent draws
 *   stream_records_per_s,    per-stream quota (0 = none): acks are held until
 *   stream_bytes_per_s       the stream's quota has room for the request
 *   stream_lifetime_ms       the server ends every stream after this long
 *                            (0 = never), with
 *   stream_close_signal_ms   a CloseStreamSignal this long before the end
 *                            (0 = none, the call just ends), and
 *   stream_end_status        "unavailable" (code 6002 text) or "ok"
 *   rst_after_trailers       reset the HTTP/2 stream (NO_ERROR) after the
 *                            trailers of a call the client has not half-closed
 *   max_message_bytes        larger requests end the call with INVALID_ARGUMENT
 *   require_write_operation  create_stream refuses a token whose
 *                            authorization_details lacked the zerobuswrite operation
 * Latency and quotas act on the requests that arrive after a change, also on
 * live streams; the lifetime is fixed when a stream is created.  What each
 * figure models and where it comes from: README.md, "Profiles".
 */

const MIB = 1024 * 1024;

/*
 * grpc-js's own receive limit.  grpc-js answers a message beyond it with
 * RESOURCE_EXHAUSTED before the service sees it, so it sits above every
 * max_message_bytes allowed and the service's INVALID_ARGUMENT comes first.
 */
const RECEIVE_CAP = 64 * MIB;

const KNOBS = {
	ttd_p50_ms: { type: 'int', fast: 0, real: 175 },
	ttd_p95_ms: { type: 'int', fast: 0, real: 500 },
	ttd_correlation_ms: { type: 'int', fast: 0, real: 1000 },
	stream_records_per_s: { type: 'int', fast: 0, real: 15000 },
	stream_bytes_per_s: { type: 'int', fast: 0, real: 100000000 },
	stream_lifetime_ms: { type: 'int', fast: 0, real: 300000 },
	stream_close_signal_ms: { type: 'int', fast: 0, real: 0 },
	stream_end_status: { type: ['unavailable', 'ok'], fast: 'unavailable', real: 'unavailable' },
	rst_after_trailers: { type: 'bool', fast: true, real: true },
	max_message_bytes: { type: 'int', min: 1, max: RECEIVE_CAP, fast: 10 * MIB, real: 10 * MIB },
	require_write_operation: { type: 'bool', fast: false, real: true },
};
const PROFILES = ['fast', 'real'];

class SettingsError extends Error {}

const cliName = (key) => `--${key.replace(/_/g, '-')}`;

/* Throw unless every knob of a complete set is valid, alone and together. */
function check(values) {
	for (const [k, v] of Object.entries(values)) {
		const { type, min = 0, max = Number.MAX_SAFE_INTEGER } = KNOBS[k];
		const ok = type === 'int' ? Number.isInteger(v) && v >= min && v <= max
			: type === 'bool' ? typeof v === 'boolean' : type.includes(v);
		if (!ok)
			throw new SettingsError(`bad value for ${k}: ${JSON.stringify(v)} (expected ${type === 'int'
				? `an integer from ${min} to ${max}` : type === 'bool' ? 'true or false'
					: type.map(t => JSON.stringify(t)).join(' or ')})`);
	}
	const { ttd_p50_ms: p50, ttd_p95_ms: p95 } = values;
	if (p50 === 0 ? p95 !== 0 : p95 < p50)
		throw new SettingsError(`ttd_p95_ms (${p95}) must be >= ttd_p50_ms (${p50}), and 0 when ttd_p50_ms is 0 (no added latency)`);
}

class Settings {
	/* profile: "fast" or "real"; overrides: {knob: value}, validated. */
	constructor(profile = 'fast', overrides = {}) {
		this.profile = 'fast';
		this.values = null;
		this.update({ profile, ...overrides });
	}

	/*
	 * Merge {knob: value}; with "profile", start over from that profile's
	 * defaults (dropping earlier changes).  All or nothing: a bad knob or
	 * value changes nothing.  Returns the effective settings.
	 */
	update(body) {
		if (!body || typeof body !== 'object' || Array.isArray(body))
			throw new SettingsError('settings must be a JSON object of {knob: value}');
		const { profile, ...knobs } = body;
		if (profile !== undefined && !PROFILES.includes(profile))
			throw new SettingsError(`unknown profile ${JSON.stringify(profile)} (known: ${PROFILES.join(', ')})`);
		for (const k of Object.keys(knobs))
			if (!KNOBS[k])
				throw new SettingsError(`unknown setting "${k}" (known: profile, ${Object.keys(KNOBS).join(', ')})`);
		const base = profile === undefined ? this.values
			: Object.fromEntries(Object.entries(KNOBS).map(([k, d]) => [k, d[profile]]));
		const values = { ...base, ...knobs };
		check(values);
		this.profile = profile === undefined ? this.profile : profile;
		this.values = values;
		return this.toJSON();
	}

	toJSON() {
		return { profile: this.profile, ...this.values };
	}
}

/* A knob's value from its command-line text; check() judges the result. */
function fromText(key, text) {
	const { type } = KNOBS[key];
	if (type === 'int')
		return /^\d+$/.test(text) ? Number(text) : text;
	if (type === 'bool')
		return text === 'true' ? true : text === 'false' ? false : text;
	return text;
}

module.exports = { Settings, SettingsError, KNOBS, PROFILES, RECEIVE_CAP, cliName, fromText };
