# Copyright (c) zerobus authors
#
# Decodes the output plugin's binary output with an independent protobuf
# implementation (python3-protobuf, see test/roundtrip.py) and checks that
# every value, the CDC metadata and the transaction framing round-trip, and
# that zerobus.target_ddl() agrees with the descriptor column for column.

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $srcdir = File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), '..'));

my $node = PostgreSQL::Test::Cluster->new('roundtrip');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf',
	"output_plugin_libraries = 'pgoutput, test_decoding, zerobus'");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION zerobus;
	CREATE TYPE mood AS ENUM ('sad', 'happy');
	CREATE TYPE addr AS (street text, zip int4);
	CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
	CREATE TABLE rt (
		id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4, f8 float8,
		n numeric(12,3), nu numeric, t text, vc varchar(10), "by" bytea,
		d date, ts timestamp, tstz timestamptz, u uuid, j jsonb,
		ia int4[], ta text[], a addr, m mood, p posint, big text);
	ALTER TABLE rt ALTER COLUMN big SET STORAGE EXTERNAL;
	CREATE PUBLICATION pub FOR TABLE rt;
	SELECT pg_create_logical_replication_slot('s', 'zerobus');
});

# The values PostgreSQL itself says each column must carry on the wire
# (design.md's mapping), computed without the plugin.
my $expected_sql = q{
	SELECT coalesce(json_object_agg(id, json_build_object(
		'id', id, 'b', b, 'i2', i2, 'i4', i4, 'f4', f4::text, 'f8', f8::text,
		'n', n::text, 'nu', nu::text, 't', t, 'vc', vc, 'by', encode("by", 'hex'),
		'd', d - date '1970-01-01',
		'ts', (extract(epoch FROM ts) * 1000000)::int8,
		'tstz', (extract(epoch FROM tstz) * 1000000)::int8,
		'u', u::text, 'j', j::text, 'ia', ia, 'ta', ta, 'a', a, 'm', m::text,
		'p', p, 'big', md5(big))), '{}')
	FROM rt};

$node->safe_psql('postgres', q{
	SET TimeZone = 'America/New_York';
	SET DateStyle = 'SQL, DMY';
	INSERT INTO rt VALUES
	(1, true, -32768, 2147483647, 1.5, 3.141592653589793, 123456789.123, 1e-30,
	 'héllo wörld ☃', 'abc', '\x00ff10', '2024-02-29', '2024-02-29 12:34:56.789012',
	 '1999-12-31 23:59:59.999999+01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	 '{"k": [1, 2, {"x": null}]}', '{1,2,3}', '{"a","b c"}', ROW('Main St', 12345),
	 'happy', 7, repeat('x', 10000)),
	(2, false, 0, 0, 'NaN', '-Infinity', -0.001, 'NaN', '', '', '', '1970-01-01',
	 '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000',
	 '[]', '{}', '{}', ROW(NULL, NULL), 'sad', 1, 'short'),
	(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(4, true, 32767, -2147483648, 'Infinity', 1e308, 999999999.999, -12345678901234567890.123456789,
	 'line1
line2	"quoted" \back', 'x', '\x', '0001-01-01', '1900-01-01 00:00:00',
	 '2262-04-11 23:47:16.854775+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
	 '"scalar"', '{-1}', '{""}', ROW('', 0), 'happy', 2147483647, repeat('y', 3000));
});
my $after_insert = $node->safe_psql('postgres', $expected_sql);

# Updates: one that leaves the TOASTed column unchanged, one that changes the
# key (so the old key is in the WAL), then a delete.
$node->safe_psql('postgres', q{
	BEGIN;
	UPDATE rt SET t = 'updated', i4 = 42 WHERE id = 1;
	UPDATE rt SET id = 20 WHERE id = 2;
	DELETE FROM rt WHERE id = 3;
	COMMIT;
});
my $after_update = $node->safe_psql('postgres', $expected_sql);

my $inserted = decode_json($after_insert);
my $updated = decode_json($after_update);
my %nokey = map { $_ => undef } grep { $_ ne 'id' } keys %{ $inserted->{1} };
my $expected = {
	insert => $inserted,
	update_postimage => {
		1 => { %{ $updated->{1} }, _unchanged_columns => ['big'] },
		20 => $updated->{20} },
	update_preimage => { 2 => { %nokey, id => 2 } },
	delete => { 3 => { %nokey, id => 3 } },
};

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $changes = $node->safe_psql('postgres', q{
	SELECT translate(encode(data, 'base64'), E'\n', '')
	FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, 'publication_names', 'pub')});
PostgreSQL::Test::Utils::append_to_file("$tmp/changes", "$changes\n");
PostgreSQL::Test::Utils::append_to_file("$tmp/expected.json", encode_json($expected));
PostgreSQL::Test::Utils::append_to_file("$tmp/ddl",
	$node->safe_psql('postgres', q{SELECT zerobus.target_ddl('rt', 'main.default.rt')}));

my ($stdout, $stderr);
my $ok = IPC::Run::run [ '/usr/bin/python3', "$srcdir/test/roundtrip.py", "$srcdir/proto",
	"$tmp/changes", "$tmp/expected.json", "$tmp/ddl" ], '>', \$stdout, '2>', \$stderr;
is($stderr, '', 'decoder wrote nothing to stderr');
ok($ok, 'every value round-trips through an independent protobuf decoder')
  or diag($stdout);
like($stdout, qr/^roundtrip: 8 records checked$/m,
	'4 inserts, 2 update postimages, 1 update preimage and 1 delete decoded');

done_testing();
