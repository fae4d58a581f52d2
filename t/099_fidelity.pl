# Copyright (c) zerobus authors
#
# Fidelity: a table with a column of every type of the README's mapping,
# holding edge values (NaN, +-Infinity, -0.0, denormals, numeric at full
# precision, dates and timestamps at the ends of their ranges and beyond
# Delta's, microseconds, multibyte text, zero bytes, empty, NULL and
# multidimensional arrays, arrays with NULL elements, composites with NULL
# members, enums, json), is snapshotted, then updated (a key change too),
# deleted from and added to.  The Delta table the emulator wrote is read by
# t/delta_reader, which shares no code with the emulator (its own replay of
# the Delta log, another Parquet implementation), folded by key, and
# compared with the source value by value, column by column, with
# PostgreSQL computing every expected value (float bits with float8send,
# microseconds with extract(epoch), intervals with intervalstyle iso_8601).
# Every interval is also parsed by two ISO 8601 duration parsers that are
# not ours, whose components must equal PostgreSQL's extract().

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $srcdir = dirname(__FILE__) . '/..';
my $node = zb_node('fidelity');
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TYPE mood AS ENUM ('sad', 'happy', 'très bien');
	CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
	CREATE TYPE pair AS (a int4, b text, c float8[]);
	CREATE TABLE fid (
		id int4 PRIMARY KEY,
		b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
		n numeric(38,10), n0 numeric(38,0), n_any numeric,
		t text, vc varchar(10), bc char(4), nm name, ch "char",
		by bytea, d date, ts timestamp, tstz timestamptz,
		tm time, tmtz timetz, iv interval, u uuid, j json, jb jsonb,
		m mood, p posint,
		ia int4[], i8a int8[], fa float8[], f4a float4[], ta text[],
		ba bool[], da date[], tsa timestamptz[], na numeric(10,2)[],
		c pair, ca pair[],
		pt point, ip inet, rng int4range
	);
	CREATE PUBLICATION pub FOR TABLE fid;

	-- the snapshot's rows
	INSERT INTO fid VALUES
	(1, true, 12, 123, 1234567890123, 1.5, 3.141592653589793,
	 '1234567890123456789012345678.0123456789', '12345678901234567890123456789012345678',
	 '0.000000000000000000001',
	 'héllo ☃ wörld 日本語 🎉', 'abc', 'ab', 'nm', 'c',
	 '\x00ff1000', '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.5+05:30',
	 '12:34:56.789', '23:59:59.5-03:30', '1 year 2 mons 3 days 04:05:06.5',
	 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
	 '{"b": 1, "a": [true, null, 1.0e2]}', '{"b": 1, "a": [true, null, 12345678901234567890]}',
	 'très bien', 7,
	 '{{1,2},{3,NULL}}', '{9223372036854775807,-9223372036854775808}', '{1.5,NULL,-0.25}',
	 '{0.1,-0}', '{"a","b c",NULL,"ünï",""}', '{t,f,NULL}', '{2000-01-01,infinity,-infinity}',
	 '{2000-01-01 00:00:00+00,NULL,infinity}', '{1.25,-0.01,NULL}',
	 ROW(1, NULL, '{1.5,NULL}'), ARRAY[ROW(2, 'x', '{}')::pair, NULL, ROW(NULL, NULL, NULL)::pair],
	 '(1.5,-2)', '192.168.0.1/24', '[1,10)'),
	(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(3, false, -32768, -2147483648, -9223372036854775808, '-Infinity', '-Infinity',
	 '-9999999999999999999999999999.9999999999', '-99999999999999999999999999999999999999',
	 '-1e-300', '', '', '', '', '',
	 '\x', '-infinity', '-infinity', '-infinity',
	 '00:00:00', '00:00:00+15:59', '-178000000 years',
	 '00000000-0000-0000-0000-000000000000', '[]', '{}', 'sad', 1,
	 '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
	 ROW(NULL, NULL, NULL), '{}', '(0,0)', '::1', 'empty'),
	(4, true, 32767, 2147483647, 9223372036854775807, 'Infinity', 'Infinity',
	 '9999999999999999999999999999.9999999999', '99999999999999999999999999999999999999',
	 (repeat('9', 1000) || '.' || repeat('1', 1000))::numeric, E'tab\t nl\n quote'' "dq" \\\\', 'ééééééééé', 'éé', 'x', 'é',
	 '\x00000000', 'infinity', 'infinity', 'infinity',
	 '24:00:00', '12:00:00-15:59', '178000000 years',
	 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '"text"', 'happy', 2147483647,
	 '{NULL}', '{NULL,NULL}', '{NaN,Infinity,-Infinity}', '{NaN}', '{NULL}', '{NULL}',
	 '{NULL}', '{NULL}', '{NULL}', NULL, ARRAY[NULL]::pair[], NULL, NULL, NULL),
	(5, true, 0, 0, 0, 'NaN', 'NaN', '0', '0', 'NaN', ' ', ' ', ' ', ' ', ' ',
	 '\x00', '4713-01-01 BC', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC',
	 '00:00:00.000001', '01:02:03+01:02:03', '-00:00:00.000001',
	 '12345678-1234-5678-1234-567812345678', '1', '1.0', 'sad', 3,
	 '{{{1}},{{2}}}', '{0}', '{5e-324,-5e-324,1.7976931348623157e308}',
	 '{1e-45,3.4028235e38,-1.17549435e-38}', '{"NULL","null"}', '{t}',
	 '{4713-01-01 BC,5874897-12-31}', '{1999-12-31 23:59:59.999999-08}', '{99999999.99,-99999999.99}',
	 ROW(-1, '', '{NULL,NULL}'), ARRAY[ROW(1, NULL, NULL)::pair], '(1e+300,-1e-300)', '::ffff:1.2.3.4/128', '[-2147483648,2147483647)'),
	(6, false, 1, 1, 1, '1e-45', '5e-324', '0.0000000001', '1', '-0',
	 repeat('ü', 300), 'z', 'zzzz', repeat('n', 63), 'z',
	 decode(repeat('00ff', 500), 'hex'), '5874897-12-31', '294246-12-31 23:59:59.999999',
	 '294246-12-31 23:59:59.999999+00', '23:59:59.999999', '23:59:59.999999+00',
	 '-1 day', '0a0eebc9-9c0b-4ef8-bb6d-6bb9bd380a11', '{"nested": {"deep": [[], {}]}}',
	 '{"nested": {"deep": [[], {}]}}', 'happy', 4,
	 '{-1,0,1}', '{-1}', '{-0,0}', '{-0}', '{"日本","🎉"}', '{f,f}', '{1970-01-01}',
	 '{1970-01-01 00:00:00+00}', '{0.00}',
	 ROW(0, 'only b', NULL), ARRAY[ROW(1, 'a', '{1}'), ROW(2, 'b', '{NULL,2}')]::pair[],
	 '(-0,0)', '10.0.0.0/8', '(,)');
});
declare_target($node, $emu, 'fid', 'main.cdc.fid');
create_stream($node, $emu, 'fid', 'pub');
wait_streaming($node, 'fid');
$node->poll_query_until('postgres',
	"SELECT snapshot_state = 'done' FROM zerobus.stat_streams WHERE name = 'fid'")
  or die 'snapshot did not finish';

# Changes after the snapshot: updates, a key change, a delete, new rows.
$node->safe_psql(
	'postgres', q{
	UPDATE fid SET f8 = '-0', f4 = '-0', t = 'updated', ia = '{7,NULL,8}', iv = '1 mon -1 day'
	WHERE id = 1;
	UPDATE fid SET id = 103, d = '2000-01-01' WHERE id = 3;
	DELETE FROM fid WHERE id = 2;
	INSERT INTO fid (id, f4, f8, ts, tstz, tm, tmtz, iv, n_any, ia, ta, c, ca)
	VALUES
	(7, '-1.17549435e-38', '2.2250738585072014e-308', '1969-12-31 23:59:59.999999',
	 '1999-12-31 23:59:59.999999-08', '00:00:00.5', '00:00:00-00:00:01', '1 day -00:00:00.5',
	 '-0.000000000000000000000000000000000000000001', NULL, '{NULL}', NULL, NULL),
	(8, '3.4028235e38', '-1.7976931348623157e308', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00',
	 '12:00:00', '12:00:00+14', 'PT0S', '1e131071', '{}', '{}', ROW(NULL, NULL, '{}'),
	 ARRAY[NULL, NULL]::pair[]);
	UPDATE fid SET ca = ARRAY[ROW(5, 'u', '{NULL}')]::pair[], tsa = '{-infinity}' WHERE id = 6;
});
wait_acked($node, 'fid',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

# --- the Delta table, read independently, folded by key ---------------------

my %delta = %{ fold_records(read_delta($emu, 'main.cdc.fid'), 'id') };

# --- the expected values, computed by PostgreSQL ----------------------------

# canonical forms of t/delta_reader (README there), one SQL expression each
my $f64 = sub { "jsonb_build_object('f64', encode(float8send(($_[0])::float8), 'hex'))" };
my $us = sub {
	my $v = shift;
	"CASE WHEN $v = '-infinity' THEN '-9223372036854775808' WHEN $v = 'infinity'"
	  . " THEN '9223372036854775807' ELSE (extract(epoch FROM $v) * 1000000)::int8::text END";
};
my $days = sub {
	my $v = shift;
	"CASE WHEN $v = '-infinity' THEN -2147483648 WHEN $v = 'infinity'"
	  . " THEN 2147483647 ELSE $v - date '1970-01-01' END";
};
my $text = sub { "($_[0])::text" };
# the type's output function
my $output = sub { "CASE WHEN $_[0] IS NOT NULL THEN format('%s', $_[0]) END" };
my $json = sub { "to_jsonb($_[0])" };

# an array: its non-NULL elements as elem(e), or null when there are none
# (the emulator stores an absent repeated field as NULL).  num_nulls() tells
# a NULL composite from one whose members are all NULL, which IS NULL does
# not.
my $array = sub {
	my ($v, $elem) = @_;
	my $e = $elem->('e');
	return "(SELECT jsonb_agg(to_jsonb($e) ORDER BY n) FROM unnest($v)"
	  . " WITH ORDINALITY AS u(e, n) WHERE num_nulls(e) = 0)";
};
# a one-dimensional array of composites, element by element (unnest would
# expand each element into its members)
my $carray = sub {
	my ($v, $elem) = @_;
	my $e = $elem->("($v)[i]");
	return "(SELECT jsonb_agg(to_jsonb($e) ORDER BY i) FROM generate_subscripts($v, 1)"
	  . " AS i WHERE num_nulls(($v)[i]) = 0)";
};
my $pair = sub {
	my $v = shift;
	"CASE WHEN num_nulls($v) = 0 THEN jsonb_build_object('a', ($v).a, 'b', ($v).b, 'c', "
	  . $array->("($v).c", $f64) . ') END';
};

my %expr = (
	b => $json, i2 => $json, i4 => $json, i8 => $text, f4 => $f64, f8 => $f64,
	n => $text, n0 => $text, n_any => $text, t => $json, vc => $json,
	bc => $json, nm => $json, ch => $json,
	by => sub { "encode($_[0], 'hex')" },
	d => $days, ts => $us, tstz => $us, tm => $text, tmtz => $text,
	iv => $text, u => $text, j => $text, jb => $text, m => $text, p => $json,
	ia => sub { $array->($_[0], $json) },
	i8a => sub { $array->($_[0], $text) },
	fa => sub { $array->($_[0], $f64) },
	f4a => sub { $array->($_[0], $f64) },
	ta => sub { $array->($_[0], $json) },
	ba => sub { $array->($_[0], $json) },
	da => sub { $array->($_[0], $days) },
	tsa => sub { $array->($_[0], $us) },
	na => sub { $array->($_[0], $text) },
	c => $pair,
	ca => sub { $carray->($_[0], $pair) },
	pt => $output, ip => $output, rng => $output);
my @columns = sort keys %expr;

my %types = split /[|\n]/, $node->safe_psql('postgres',
	q{SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
	  WHERE attrelid = 'fid'::regclass AND attnum > 0});

my $select = join ",\n",
  map { "'$_', " . $expr{$_}->("f.$_") } @columns;
my %source;
for my $line (
	split /\n/,
	$node->safe_psql(
		'postgres', qq{
		SET intervalstyle = iso_8601;
		SET extra_float_digits = 1;
		SELECT f.id, jsonb_build_object($select)::text FROM fid f ORDER BY f.id})
  )
{
	my ($id, $row) = split /\|/, $line, 2;
	$source{$id} = decode_json($row);
}

is_deeply([ sort { $a <=> $b } keys %delta ], [ sort { $a <=> $b } keys %source ],
	'the same rows (keys) in Delta as in the source');
for my $col (@columns)
{
	my %got = map { $_ => $delta{$_}{$col} } keys %delta;
	my %want = map { $_ => $source{$_}{$col} } keys %source;
	is_deeply(\%got, \%want, "column $col ($types{$col}): every value exact");
}

# _array_nulls: the arrays sent without some of their content, as the
# source says (NULL arrays without positions, NULL elements' positions)
my $marks = $node->safe_psql(
	'postgres', q{
	WITH arrays(id, path, v) AS (
		SELECT id, col, v FROM fid, LATERAL (VALUES
			('ia', ia::text[]), ('i8a', i8a::text[]), ('fa', fa::text[]),
			('f4a', f4a::text[]), ('ta', ta), ('ba', ba::text[]), ('da', da::text[]),
			('tsa', tsa::text[]), ('na', na::text[]),
			('ca', CASE WHEN ca IS NOT NULL THEN
				ARRAY(SELECT CASE WHEN num_nulls(ca[i]) = 0 THEN '' END
					  FROM generate_subscripts(ca, 1) i ORDER BY i) END)
		) AS cols(col, v)
		UNION ALL
		SELECT id, 'c.c', (c).c::text[] FROM fid WHERE num_nulls(c) = 0
		UNION ALL
		SELECT id, 'ca[' || i || '].c', (ca[i]).c::text[]
		FROM fid, generate_subscripts(ca, 1) i WHERE num_nulls(ca[i]) = 0)
	SELECT id, path, CASE WHEN v IS NULL THEN '' ELSE
		(SELECT string_agg(n::text, ',' ORDER BY n) FROM unnest(v) WITH ORDINALITY AS u(e, n)
		 WHERE e IS NULL) END
	FROM arrays WHERE v IS NULL OR EXISTS (SELECT FROM unnest(v) e WHERE e IS NULL)
	ORDER BY id, path});
my (%want_marks, %got_marks);
for (split /\n/, $marks)
{
	my ($id, $path, $pos) = split /\|/, $_, -1;
	push @{ $want_marks{$id} }, "$path:$pos";
}
for my $id (keys %delta)
{
	my @m = map { "$_->{path}:" . join(',', @{ $_->{positions} // [] }) }
	  @{ $delta{$id}{_array_nulls} // [] };
	$got_marks{$id} = [ sort @m ] if @m;
}
is_deeply(\%got_marks, \%want_marks,
	'_array_nulls names every NULL array and NULL element, and nothing else');

# --- intervals through two ISO 8601 parsers that are not ours --------------

my @ivs = grep { defined } map { $delta{$_}{iv} } sort keys %delta;
my ($durations, $err);
IPC::Run::run [ 'node', "$srcdir/t/delta_reader/iso-duration.js" ],
  '<', \(join("\n", @ivs) . "\n"), '>', \$durations, '2>', \$err
  or die "iso-duration failed: $err";
my %parsed = map { my $d = decode_json($_); ($d->{input} => $d) }
  grep { /\S/ } split /\n/, $durations;
my $components = $node->safe_psql(
	'postgres', q{
	SET intervalstyle = iso_8601;
	SELECT iv::text, extract(year FROM iv), extract(month FROM iv), extract(day FROM iv),
		extract(hour FROM iv), extract(minute FROM iv), extract(second FROM iv)
	FROM fid WHERE iv IS NOT NULL});
my $checked = 0;
for (split /\n/, $components)
{
	my ($iso, @want) = split /\|/;
	my $p = $parsed{$iso};
	ok($p && $p->{valid} && !$p->{negative}, "$iso parses as ISO 8601")
	  or next;
	my @got = map { $p->{$_} } qw(years months days hours minutes seconds);
	is_deeply([ map { 0 + $_ } @got ], [ map { 0 + $_ } @want ],
		"$iso: the parsers' components equal PostgreSQL's extract()");
	$checked++;
}
is($checked, $node->safe_psql('postgres', 'SELECT count(iv) FROM fid'),
	'every interval value checked');

check_slot_behind_acks($node, 'fid');
stop_emulator($emu);
$node->stop;
done_testing();
