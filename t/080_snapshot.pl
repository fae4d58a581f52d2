# Copyright (c) zerobus authors
#
# Initial snapshots: tables that already hold rows (composite primary key,
# no key at all, TOASTed values and NULLs, a row filter with a column list,
# a partitioned table published via its root) reach Delta as 'snapshot'
# records, read in many small chunks while the table receives concurrent
# changes; folded in (_commit_lsn, _seq) order the Delta tables equal the
# sources.  A keyless table is read in several block ranges, and a table of
# wide TOASTed rows in chunks cut short by their bytes.  A table added to the publication later is snapshotted alone,
# snapshot_table() sends one table again, a dropped table leaves
# stream_tables, and a stream created with snapshot => false sends no
# snapshot rows.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::MD5;
use ZerobusTest;

# max_inflight_bytes 16MB: chunks end at 2 MB of rows
my $node = zb_node('snapshot',
	"zerobus.snapshot_chunk_rows = 100\nzerobus.max_inflight_bytes = '16MB'\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t_main (a int, b text, val text, n bigint, PRIMARY KEY (a, b));
	INSERT INTO t_main SELECT g % 100, 'k' || (g / 100), 'v' || g,
		CASE WHEN g % 10 = 0 THEN NULL ELSE g END
		FROM generate_series(1, 50000) g;
	CREATE TABLE t_nopk (x int, y text);
	INSERT INTO t_nopk SELECT g, 'y' || g FROM generate_series(1, 50) g;
	CREATE TABLE t_toast (id int PRIMARY KEY, big text);
	ALTER TABLE t_toast ALTER COLUMN big SET STORAGE EXTERNAL;
	INSERT INTO t_toast SELECT g, (SELECT string_agg(md5(g::text || x::text), '')
		FROM generate_series(1, 300) x) FROM generate_series(1, 20) g;
	CREATE TABLE t_heap (x int, y text);
	INSERT INTO t_heap SELECT g % 1000, 'h' || (g % 1000)
		FROM generate_series(1, 3000) g;
	CREATE TABLE t_wide (id int PRIMARY KEY, big text);
	ALTER TABLE t_wide ALTER COLUMN big SET STORAGE EXTERNAL;
	INSERT INTO t_wide SELECT g, (SELECT string_agg(md5(g::text || x::text), '')
		FROM generate_series(1, 8192) x) FROM generate_series(1, 200) g;
	CREATE TABLE t_filter (id int PRIMARY KEY, a text, secret text);
	INSERT INTO t_filter SELECT g, 'a' || g, 's' || g FROM generate_series(1, 200) g;
	CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
	CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (150);
	CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (150) TO (1000);
	INSERT INTO parted SELECT g, 'p' || g FROM generate_series(0, 299) g;
	CREATE TABLE t_late (id int PRIMARY KEY, v text);
	INSERT INTO t_late SELECT g, 'late' || g FROM generate_series(1, 100) g;
	CREATE TABLE t_skip (id int PRIMARY KEY, v text);
	INSERT INTO t_skip SELECT g, 'old' || g FROM generate_series(1, 30) g;
	CREATE PUBLICATION pub1 FOR TABLE t_main, t_nopk, t_toast, t_heap, t_wide,
		t_filter (id, a) WHERE (id % 2 = 0), parted
		WITH (publish_via_partition_root = true);
	CREATE PUBLICATION pub2 FOR TABLE t_skip;
});
declare_target($node, $emu, $_, "main.cdc.$_")
  for qw(t_main t_nopk t_toast t_heap t_wide t_filter parted t_late t_skip);
create_stream($node, $emu, 's1', 'pub1');

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(table_name, ',' ORDER BY table_name) FILTER (WHERE snapshot_state <> 'skipped') FROM zerobus.stream_tables"
	),
	'parted,t_filter,t_heap,t_main,t_nopk,t_toast,t_wide',
	'create_stream lists the published tables for a snapshot');

# Changes while the snapshot runs: 50,000 rows in chunks of 100.
ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_rows > 0 FROM zerobus.stat_streams WHERE name = 's1'"),
	'snapshot started');
for my $i (1 .. 20)
{
	$node->safe_psql(
		'postgres', qq{
		UPDATE t_main SET val = 'u$i', n = n + $i WHERE a = $i * 3 % 100;
		DELETE FROM t_main WHERE a = $i AND b = 'k$i';
		INSERT INTO t_main VALUES (1000 + $i, 'new', 'inserted', $i);
		UPDATE t_main SET a = a + 2000 WHERE a = 50 + $i AND b = 'k49';
		UPDATE t_toast SET big = big || 'x' WHERE id = $i;
		UPDATE parted SET v = 'changed$i' WHERE id = $i * 14;
	});
}

ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_state = 'done' FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'snapshot reaches done')
  or diag $node->safe_psql('postgres', 'SELECT * FROM zerobus.stat_snapshots');
wait_acked($node, 's1',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_main'), 'a', 'b'),
	source_rows($node, 't_main', 'a, b, val, n', 'a', 'b'),
	'Delta t_main (composite key, concurrent changes) equals the source');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_nopk'), 'x', 'y'),
	source_rows($node, 't_nopk', 'x, y', 'x', 'y'),
	'Delta t_nopk (no key) equals the source');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_toast'), 'id'),
	source_rows($node, 't_toast', 'id, big', 'id'),
	'Delta t_toast (TOASTed values) equals the source');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_filter'), 'id'),
	source_rows($node, 't_filter WHERE id % 2 = 0', 'id, a, NULL AS secret', 'id'),
	'Delta t_filter holds the filtered rows and listed columns only');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.parted'), 'id'),
	source_rows($node, 'parted', 'id, v', 'id'),
	'Delta parted (via root) equals the source');


# The keyless table, unchanged while read: as a multiset of rows, Delta
# equals the source, read in several block ranges.
my $heap_rows = delta_rows($emu, 'main.cdc.t_heap');
is_deeply(
	[ sort map { "$_->{x}|$_->{y}" } @$heap_rows ],
	[
		sort split /\n/,
		$node->safe_psql('postgres', "SELECT x || '|' || y FROM t_heap")
	],
	'Delta t_heap (no key, duplicate rows) equals the source as a multiset');
is( scalar(grep { $_->{_change_type} ne 'snapshot' } @$heap_rows),
	0, 't_heap rows are all snapshot rows');
my %heap_chunks = map { $_->{_commit_lsn} => 1 } @$heap_rows;
cmp_ok(scalar(keys %heap_chunks), '>=', 5,
	    't_heap was read in several block ranges ('
	  . scalar(keys %heap_chunks)
	  . ' watermarks)');

# The wide table: 200 rows of 256 kB, chunks end at 2 MB, so 8 rows each.
my $wide_rows = delta_rows($emu, 'main.cdc.t_wide');
my %wide_chunks;
$wide_chunks{ $_->{_commit_lsn} }++
  for grep { $_->{_change_type} eq 'snapshot' } @$wide_rows;
is( join(',', sort { $a <=> $b } values %wide_chunks),
	join(',', (8) x 25),
	't_wide was read in 25 chunks of 8 rows, cut short by their bytes');
is_deeply(
	{
		map { $_->{id} => Digest::MD5::md5_hex($_->{big}) }
		  values %{ fold_changes($wide_rows, 'id') }
	},
	{
		map { split /\|/ } split /\n/,
		$node->safe_psql('postgres', "SELECT id || '|' || md5(big) FROM t_wide")
	},
	'Delta t_wide equals the source');

my $main_rows = delta_rows($emu, 'main.cdc.t_main');
my %chunks = map { $_->{_commit_lsn} => 1 }
  grep { $_->{_change_type} eq 'snapshot' } @$main_rows;
cmp_ok(scalar(keys %chunks), '>=', 450,
	't_main was read in many chunks (' . scalar(keys %chunks) . ' watermarks)');
my ($last_chunk) = sort { $b <=> $a } keys %chunks;
cmp_ok(
	scalar(
		grep { $_->{_change_type} ne 'snapshot' && $_->{_commit_lsn} < $last_chunk }
		  @$main_rows),
	'>', 0,
	'changes of t_main committed between its snapshot chunks');

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(source_table || ':' || state || ':' || rows, ',' ORDER BY source_table) FROM zerobus.stat_snapshots WHERE source_table <> 'public.t_main'"
	),
	'public.parted:done:300,public.t_filter:done:100,public.t_heap:done:3000,public.t_nopk:done:50,public.t_toast:done:20,public.t_wide:done:200',
	'stat_snapshots: every table done with its row count');
like(
	$node->safe_psql(
		'postgres',
		"SELECT snapshot_state, snapshot_rows >= 49900 + 470 FROM zerobus.stat_streams WHERE name = 's1'"
	),
	qr/^done\|t$/,
	'stat_streams: snapshot done with the rows');

# A table added to the publication: snapshotted alone.
my $main_snapshot_rows =
  grep { $_->{_change_type} eq 'snapshot' } @{ delta_rows($emu, 'main.cdc.t_main') };
$node->safe_psql('postgres', 'ALTER PUBLICATION pub1 ADD TABLE t_late');
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'done' AND rows = 100 FROM zerobus.stat_snapshots WHERE source_table = 'public.t_late'"
	),
	'table added to the publication is snapshotted');
$node->safe_psql('postgres', "UPDATE t_late SET v = 'after' WHERE id <= 10");
wait_acked($node, 's1',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_late'), 'id'),
	source_rows($node, 't_late', 'id, v', 'id'),
	'Delta t_late equals the source');
is( scalar(grep { $_->{_change_type} eq 'snapshot' }
		  @{ delta_rows($emu, 'main.cdc.t_main') }),
	$main_snapshot_rows,
	'no row of the other tables was sent again');

# snapshot_table(): one table again.
my $finished = $node->safe_psql('postgres',
	"SELECT finished_at FROM zerobus.stat_snapshots WHERE source_table = 'public.t_nopk'");
$node->safe_psql('postgres', "SELECT zerobus.snapshot_table('s1', 't_nopk')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'done' AND finished_at > '$finished' FROM zerobus.stat_snapshots WHERE source_table = 'public.t_nopk'"
	),
	'snapshot_table() snapshots the table again');
is( scalar(grep { $_->{_change_type} eq 'snapshot' }
		  @{ delta_rows($emu, 'main.cdc.t_nopk') }),
	100, 't_nopk rows were sent a second time');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t_nopk'), 'x', 'y'),
	source_rows($node, 't_nopk', 'x, y', 'x', 'y'),
	'Delta t_nopk still equals the source');

my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT zerobus.snapshot_table('s1', 't_skip')");
like($err, qr/stream "s1" does not publish table public\.t_skip/,
	'snapshot_table() of an unpublished table is an error');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT zerobus.snapshot_table('nope', 't_main')");
like($err, qr/stream "nope" does not exist/, 'unknown stream is an error');

# A published table dropped: its row goes, the stream goes on.
$node->safe_psql('postgres', 'DROP TABLE t_late');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM zerobus.stream_tables WHERE table_name = 't_late'"
	),
	'a dropped table loses its stream_tables row');
$node->safe_psql('postgres', "INSERT INTO t_nopk VALUES (51, 'after drop')");
wait_acked($node, 's1',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is( $node->safe_psql(
		'postgres',
		"SELECT state, snapshot_state FROM zerobus.stat_streams WHERE name = 's1'"),
	'streaming|done',
	'stream goes on after the drop');

# snapshot => false: no snapshot rows, changes only.
create_stream($node, $emu, 's2', 'pub2', snapshot => 'false');
wait_streaming($node, 's2');
$node->safe_psql('postgres', "INSERT INTO t_skip VALUES (100, 'new')");
wait_acked($node, 's2',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is_deeply(
	[ map { "$_->{_change_type}:$_->{id}" } @{ delta_rows($emu, 'main.cdc.t_skip') } ],
	['insert:100'],
	'snapshot => false: only the change, no snapshot rows');
is( $node->safe_psql(
		'postgres',
		"SELECT snapshot_state FROM zerobus.stat_streams WHERE name = 's2'"),
	'none',
	'stat_streams shows no snapshot for it');

stop_emulator($emu);
done_testing();
