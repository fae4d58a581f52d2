'use strict';
/*
 * records.test.js
 *    checkProto() against decodeProto(): the check-only walk the server runs
 *    on every PROTO record must accept and reject exactly the records the
 *    building walk (used for publication) does, with the same message.  The
 *    server checks a record where it lies in the request buffer, so check()
 *    puts it between bytes that would complete a truncated record or add
 *    fields: they must not be read.
 */

const test = require('node:test');
const assert = require('node:assert');
const R = require('../lib/records');
const T = require('../lib/types');
const E = require('../lib/encode');

const COLUMNS = T.parseColumns([
	{ name: 'id', type: 'BIGINT', nullable: false },
	{ name: 'name', type: 'STRING' },
	{ name: 'tiny', type: 'TINYINT' },
	{ name: 'amt', type: 'DECIMAL(5,2)' },
	{ name: 'v', type: 'VARIANT' },
	{ name: 'blob', type: 'BINARY' },
	{ name: 'tags', type: 'ARRAY<STRING>', nullable: false },
	{ name: 'nums', type: 'ARRAY<SMALLINT>' },
	{ name: 'attrs', type: 'MAP<STRING, BIGINT>' },
	{ name: 'pt', type: 'STRUCT<x: INT NOT NULL, label: STRING>' },
]);

const PT = { name: 'Pt', typeName: 'Pt', fields: [
	{ name: 'x', number: 1, type: 'int32' },
	{ name: 'label', number: 2, type: 'string' },
] };
const SPEC = { name: 'Row', fields: [
	{ name: 'id', number: 1, type: 'int64' },
	{ name: 'name', number: 2, type: 'string' },
	{ name: 'tiny', number: 3, type: 'int32' },
	{ name: 'amt', number: 4, type: 'string' },
	{ name: 'v', number: 5, type: 'string' },
	{ name: 'blob', number: 6, type: 'bytes' },
	{ name: 'tags', number: 7, type: 'string', label: 'repeated' },
	{ name: 'nums', number: 8, type: 'int32', label: 'repeated' },
	{ name: 'attrs', number: 9, type: 'map', key: 'string', value: 'int64' },
	{ ...PT, name: 'pt', number: 10, type: 'message' },
] };

const plan = R.compileProto(E.encodeDescriptor(SPEC), COLUMNS);
const rec = (o) => E.encodeMessage(SPEC, { id: 1, ...o });
const AROUND = Buffer.from([0x32, 5, 1, 2, 3, 4, 5, 0x58, 1]);

function check(buf) {
	R.checkProto(Buffer.concat([AROUND, buf, AROUND]), AROUND.length, AROUND.length + buf.length, plan);
}

function outcome(fn) {
	try {
		fn();
		return 'ok';
	} catch (e) {
		assert.ok(e instanceof R.ValidationError, `unexpected ${e.stack}`);
		return e.message;
	}
}

test('check-only and building walks accept the same good records', () => {
	const good = rec({ name: 'é', tiny: -128, amt: '-123.45', v: '{"a":[1]}', blob: [0, 255],
		tags: ['a', 'b'], nums: [1, -32768], attrs: { k: 2n ** 60n }, pt: { x: 3, label: 'p' } });
	assert.strictEqual(outcome(() => check(good)), 'ok');
	const row = R.decodeProto(good, plan);
	assert.deepStrictEqual(row.tags, ['a', 'b']);
	assert.deepStrictEqual(row.attrs, [['k', 2n ** 60n]]);
	assert.deepStrictEqual(row.pt, { x: 3, label: 'p' });
	/* A NOT NULL repeated column that is absent is an empty array. */
	assert.strictEqual(outcome(() => check(rec({}))), 'ok');
	assert.deepStrictEqual(R.decodeProto(rec({}), plan).tags, []);
});

const BAD = [
	['does not parse', Buffer.from([0x08, 0xff]), /record does not parse/],
	['NOT NULL column missing', E.encodeMessage(SPEC, { name: 'x' }), /record lacks NOT NULL column "id"/],
	['nested NOT NULL field missing', rec({ pt: { label: 'p' } }), /record lacks NOT NULL column "pt.x"/],
	['TINYINT out of range', rec({ tiny: 128 }), /value 128 out of range for TINYINT column "tiny"/],
	['SMALLINT element out of range', rec({ nums: [1, 40000] }), /out of range for SMALLINT column "nums"/],
	['DECIMAL does not fit', rec({ amt: '1234.5' }), /does not fit DECIMAL\(5,2\)/],
	['VARIANT not JSON', rec({ v: '{bad' }), /VARIANT and needs JSON text/],
	['invalid UTF-8', Buffer.concat([rec({}), Buffer.from([0x12, 2, 0xc3, 0x28])]), /column "name" holds invalid UTF-8/],
	['invalid UTF-8 in an array', Buffer.concat([rec({}), Buffer.from([0x3a, 1, 0xff])]), /column "tags" holds invalid UTF-8/],
	['wrong wire type', Buffer.concat([rec({}), Buffer.from([0x10, 0x01])]), /wire type 0, expected length-delimited/],
	['wrong wire type in a struct', Buffer.concat([rec({}), Buffer.from([0x52, 2, 0x0a, 0])]), /"pt.x" has wire type 2/],
	['unknown field number', Buffer.concat([rec({}), Buffer.from([0x58, 1])]), /field number 11/],
	['map entry without key', Buffer.concat([rec({}), Buffer.from([0x4a, 2, 0x10, 1])]), /map entry of column "attrs" has no key/],
	['truncated bytes', Buffer.concat([rec({}), Buffer.from([0x32, 5, 1])]), /record does not parse/],
];

for (const [name, buf, re] of BAD)
	test(`check-only and building walks reject alike: ${name}`, () => {
		const checked = outcome(() => check(buf));
		assert.match(checked, re);
		assert.strictEqual(checked, outcome(() => R.decodeProto(buf, plan)));
		/* The plan's seen-field stamps must not leak into the next record. */
		assert.strictEqual(outcome(() => check(rec({}))), 'ok');
	});

test('check-only and building walks judge DECIMAL text alike', () => {
	for (const amt of ['0', '-0', '+1', '999.99', '-999.99', '1000', '999.999', '999.990', '00999.99',
		'.5', '5.', '.', '+', '-.', '', '1e3', '1,5', ' 1', '1 ', '٣', '0.001', '0.010', '+-1', '1.2.3'])
		assert.strictEqual(outcome(() => check(rec({ amt }))), outcome(() => R.decodeProto(rec({ amt }), plan)),
			`DECIMAL(5,2) text "${amt}"`);
});
