/*
 * duration.js
 *    The verdict and components of an ISO 8601 duration string from two npm
 *    parsers that are not ours (tinyduration and luxon); see iso-duration.js
 *    for the output and why two.
 */

import { parse } from 'tinyduration';
import { Duration } from 'luxon';

const PARTS = ['years', 'months', 'weeks', 'days', 'hours', 'minutes'];

/* A JS number as plain decimal text (no exponent), from its shortest form. */
export function plainDecimal(x) {
	const s = String(x);
	const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
	if (!m)
		return s;
	const [, sign, int, frac = '', e] = m;
	const exp = Number(e);
	const digits = int + frac;
	const point = int.length + exp;	/* position of the decimal point in digits */
	let out;
	if (point <= 0)
		out = '0.' + '0'.repeat(-point) + digits;
	else if (point >= digits.length)
		out = digits + '0'.repeat(point - digits.length);
	else
		out = digits.slice(0, point) + '.' + digits.slice(point);
	return sign + out;
}

export function examine(input) {
	let t;
	try {
		t = parse(input);
	} catch (e) {
		return { input, valid: false, error: `tinyduration: ${e.message}` };
	}
	const l = Duration.fromISO(input);
	if (!l.isValid)
		return { input, valid: false, error: `luxon: ${l.invalidReason}${l.invalidExplanation ? ': ' + l.invalidExplanation : ''}` };
	const sign = t.negative ? -1 : 1;
	const lo = l.toObject();
	for (const p of PARTS)
		if ((lo[p] || 0) !== sign * (t[p] || 0))
			return { input, valid: false, error: `the parsers disagree on ${p}: ${lo[p] || 0} and ${sign * (t[p] || 0)}` };
	const lms = (lo.seconds || 0) * 1000 + (lo.milliseconds || 0);
	if (!(Math.abs(lms - sign * (t.seconds || 0) * 1000) < 1))
		return { input, valid: false, error: `the parsers disagree on seconds: ${lms} ms and ${sign * (t.seconds || 0)} s` };
	const out = { input, valid: true, negative: Boolean(t.negative) };
	for (const p of PARTS)
		out[p] = t[p] || 0;
	out.seconds = plainDecimal(t.seconds || 0);
	return out;
}
