/*
 * iso-duration.test.js
 *    iso-duration.js on the forms PostgreSQL's intervalstyle=iso_8601 writes
 *    (a sign on each part, seconds with up to six fraction digits, the
 *    extremes of an interval) and on text that is not a duration.
 */

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'iso-duration.js');

const ZERO = { negative: false, years: 0, months: 0, weeks: 0, days: 0, hours: 0, minutes: 0, seconds: '0' };

function run(lines) {
	const r = spawnSync(process.execPath, [CLI], { input: lines.join('\n') + '\n', encoding: 'utf8' });
	assert.equal(r.status, 0, r.stderr);
	return r.stdout.split('\n').filter(Boolean).map(l => JSON.parse(l));
}

test('PostgreSQL iso_8601 interval output: components as written, seconds exact', () => {
	const cases = [
		['P-1Y-2M3DT-4H-5M-6.5S', { years: -1, months: -2, days: 3, hours: -4, minutes: -5, seconds: '-6.5' }],
		['PT0S', {}],
		['P1D', { days: 1 }],
		['PT0.000001S', { seconds: '0.000001' }],
		['PT-0.000001S', { seconds: '-0.000001' }],
		['P1Y2M3DT4H5M6.123456S', { years: 1, months: 2, days: 3, hours: 4, minutes: 5, seconds: '6.123456' }],
		/* interval '178956970 years 7 months' and its negative: the month extremes. */
		['P178956970Y7M', { years: 178956970, months: 7 }],
		['P-178956970Y-8M', { years: -178956970, months: -8 }],
		/* The time extremes: +-2562047788:00:54.775807. */
		['PT2562047788H54.775807S', { hours: 2562047788, seconds: '54.775807' }],
		['PT-2562047788H-54.775808S', { hours: -2562047788, seconds: '-54.775808' }],
		['P-2147483648D', { days: -2147483648 }],
		['PT59M59.999999S', { minutes: 59, seconds: '59.999999' }],
	];
	const out = run(cases.map(c => c[0]));
	assert.deepEqual(out, cases.map(([input, parts]) => ({ input, valid: true, ...ZERO, ...parts })));
});

test('a leading minus and weeks are reported as such', () => {
	assert.deepEqual(run(['-P1DT2H', 'P2W']), [
		{ input: '-P1DT2H', valid: true, ...ZERO, negative: true, days: 1, hours: 2 },
		{ input: 'P2W', valid: true, ...ZERO, weeks: 2 },
	]);
});

test('not a duration: valid false with the parser that refused it', () => {
	const bad = ['', 'P', 'PT', 'P1Dx', 'xP1D', ' P1D', 'P1D ', '1 day', 'P+1D', 'PT1.S', '+P1D'];
	const out = run(bad);
	assert.deepEqual(out.map(o => [o.input, o.valid]), bad.map(b => [b, false]));
	for (const o of out)
		assert.match(o.error, /^(tinyduration|luxon): /);
});
