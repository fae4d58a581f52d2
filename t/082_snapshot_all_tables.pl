# Copyright (c) zerobus authors
#
# A stream on a FOR ALL TABLES publication: the extension's own tables
# (zerobus.streams, zerobus.stream_tables, ...), which such a publication
# lists, are neither snapshotted nor streamed, although the worker writes
# stream_tables after every snapshot chunk.  The snapshot completes, the
# stream keeps streaming (no pause on a target that does not exist) and the
# Delta tables equal the sources.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('all_tables', "zerobus.snapshot_chunk_rows = 100\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t_one (id int PRIMARY KEY, v text);
	INSERT INTO t_one SELECT g, 'v' || g FROM generate_series(1, 2000) g;
	CREATE TABLE t_two (a int, b text, n int, PRIMARY KEY (a, b));
	INSERT INTO t_two SELECT g % 10, 'b' || g, g FROM generate_series(1, 1000) g;
	CREATE PUBLICATION pub_all FOR ALL TABLES;
});
declare_target($node, $emu, $_, "main.cdc.$_") for qw(t_one t_two);
create_stream($node, $emu, 's_all', 'pub_all');

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(schema_name || '.' || table_name, ',' ORDER BY table_name) FROM zerobus.stream_tables"
	),
	'public.t_one,public.t_two',
	'stream_tables lists the user tables only, not the extension\'s');

# Changes while the snapshot runs (30 chunks of 100 rows).
ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_rows > 0 FROM zerobus.stat_streams WHERE name = 's_all'"
	),
	'snapshot started');
for my $i (1 .. 10)
{
	$node->safe_psql(
		'postgres', qq{
		UPDATE t_one SET v = 'u$i' WHERE id % 97 = $i;
		DELETE FROM t_one WHERE id = 1500 + $i;
		INSERT INTO t_one VALUES (5000 + $i, 'new');
		UPDATE t_two SET n = n + 1000 WHERE a = $i % 10 AND n % 7 = 0;
	});
}
ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_state = 'done' FROM zerobus.stat_streams WHERE name = 's_all'"
	),
	'snapshot reaches done')
  or diag $node->safe_psql('postgres', 'SELECT * FROM zerobus.stat_streams');

# Changes after the snapshot, then everything must be acked by a stream
# that is still streaming.
$node->safe_psql('postgres',
	"INSERT INTO t_two VALUES (100, 'after', 1); DELETE FROM t_one WHERE id = 1");
wait_acked($node, 's_all',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is( $node->safe_psql(
		'postgres',
		"SELECT state, coalesce(last_error, '') FROM zerobus.stat_streams WHERE name = 's_all'"
	),
	'streaming|',
	'the stream is streaming, without an error');

is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_one'), 'id'),
	source_rows($node, 't_one', 'id, v', 'id'),
	'Delta t_one equals the source');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_two'), 'a', 'b'),
	source_rows($node, 't_two', 'a, b, n', 'a', 'b'),
	'Delta t_two equals the source');

stop_emulator($emu);
done_testing();
