# Copyright (c) zerobus authors
#
# The current-state mirror: the MERGE that zerobus.target_ddl(form =>
# 'mirror') prints, run on the change tables after a workload of inserts,
# updates, deletes, key changes (onto keys deleted just before, too), a key
# inserted, changed and deleted within one transaction, an initial snapshot
# with changes to its rows, REPLICA IDENTITY FULL (a preimage for every
# update), TOASTed values that updates leave alone (absent from their
# records: the MERGE takes the key's last value sent; no such row changes
# its key, as the value would be absent from the new key's record too), and
# duplicates (the worker killed while Zerobus withholds the
# acks of records it stored, so they are sent again), gives exactly the
# source tables.  Run again with nothing new, and after more changes on the
# same mirror, it still does: it is idempotent and catches up.
#
# The emulator has no MERGE: t/lib/mirror_sql.js runs the statements in
# DuckDB (MERGE INTO since 1.4) on a copy of the change table's Delta
# snapshot, with backquotes turned into double quotes and the Delta clauses
# of CREATE TABLE left out; the MERGE itself runs as printed.

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

my $node = zb_node('mirror',
	"restart_after_crash = on\nzerobus.snapshot_chunk_rows = 50\n");
my $emu = start_emulator();
my $mirror_db = PostgreSQL::Test::Utils::tempdir() . '/mirror.duckdb';

# DuckDB reserves the catalog name "main": the targets are in catalog zb.
my %columns = (t1 => 'id, val, n, doc', t2 => 'id, val');
$node->safe_psql(
	'postgres', q{
	CREATE TABLE t1 (id int PRIMARY KEY, val text, n int, doc text);
	ALTER TABLE t1 ALTER doc SET STORAGE EXTERNAL;
	CREATE TABLE t2 (id int PRIMARY KEY, val text);
	ALTER TABLE t2 REPLICA IDENTITY FULL;
	INSERT INTO t1 SELECT g, 'snap' || g, g FROM generate_series(1, 300) g;
	INSERT INTO t2 SELECT g, 'snap' || g FROM generate_series(1, 100) g;
	CREATE PUBLICATION pub FOR TABLE t1, t2;
});
declare_target($node, $emu, $_, "zb.cdc.$_") for keys %columns;
create_stream(
	$node, $emu, 's1', 'pub',
	table_map => q{'{"public.t1": "zb.cdc.t1", "public.t2": "zb.cdc.t2"}'});

# Changes to keys $a..$b (new) and to rows of the snapshot; returns the
# LSN after them.
sub workload
{
	my ($a, $b) = @_;
	$node->safe_psql(
		'postgres', qq{
		INSERT INTO t1 SELECT g, 'v' || g, g,
			CASE WHEN g % 2 = 0 AND g % 7 <> 1 AND g % 11 <> 0 THEN repeat(md5(g::text), 100) END
			FROM generate_series($a, $b) g;
		UPDATE t1 SET val = val || '+', n = n + 1 WHERE id BETWEEN $a AND $b AND id % 3 = 0;
		UPDATE t1 SET val = NULL WHERE id BETWEEN $a AND $b AND id % 5 = 0;
		UPDATE t1 SET doc = repeat(md5(id::text || 'new'), 100), n = 0
			WHERE id BETWEEN $a AND $b AND id % 10 = 4 AND id % 7 <> 1 AND id % 11 <> 0;
		UPDATE t1 SET n = n + 5 WHERE id BETWEEN $a AND $b AND id % 4 = 0;
		DELETE FROM t1 WHERE id BETWEEN $a AND $b AND id % 7 = 0;
		UPDATE t1 SET id = id - 1 WHERE id BETWEEN $a + 1 AND $b AND id % 7 = 1;
		UPDATE t1 SET id = id + 1000000 WHERE id BETWEEN $a AND $b AND id % 11 = 0;
		BEGIN;
		INSERT INTO t1 VALUES ($b + 1, 'born', 1);
		UPDATE t1 SET val = 'grown' WHERE id = $b + 1;
		UPDATE t1 SET id = $b + 2 WHERE id = $b + 1;
		DELETE FROM t1 WHERE id = $b + 2;
		INSERT INTO t1 VALUES ($b + 1, 'born again', 2);
		COMMIT;
		UPDATE t1 SET n = n * 10 WHERE id <= 300 AND id % 4 = $a % 4;
		DELETE FROM t1 WHERE id <= 300 AND id % 13 = $a % 13;
		UPDATE t1 SET id = id + 2000000 + $a WHERE id <= 300 AND id % 17 = $a % 17;
		INSERT INTO t2 SELECT g, 'v' || g FROM generate_series($a, $b) g;
		UPDATE t2 SET val = val || '*' WHERE id % 3 = $a % 3;
		UPDATE t2 SET id = id + 1000000 WHERE id BETWEEN $a AND $b AND id % 5 = 0;
		DELETE FROM t2 WHERE id % 4 = $a % 4 AND id < 1000000;
	});
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

# Runs the MERGE form for $table on a mirror that lives on from one run to
# the next, and checks it against the source table.
sub check_mirror
{
	my ($table, $label) = @_;
	my $ddl = $node->safe_psql('postgres',
		"SELECT zerobus.target_ddl('$table', stream => 's1', form => 'mirror')");
	my ($merge) = $ddl =~ /^-- Without pipelines.*?\n(.*)\z/ms
	  or die "no MERGE form in:\n$ddl";
	emulator_api($emu, 'POST', '/admin/flush');
	my ($out, $err);
	IPC::Run::run [
		'node', dirname(__FILE__) . '/lib/mirror_sql.js',
		'--data-dir', $emu->{data_dir}, '--db', $mirror_db,
		'--change', "zb.cdc.$table", '--mirror', "zb.cdc.${table}_mirror"
	  ],
	  '<', \$merge, '>', \$out, '2>', \$err
	  or die "mirror_sql.js failed: $err";
	my %mirror = map { my $r = decode_json($_); ($r->{id} => $r) }
	  grep { /\S/ } split /\n/, $out;
	is_deeply(\%mirror, source_rows($node, $table, $columns{$table}, 'id'),
		"$label: mirror of $table equals the source");
	return;
}

wait_streaming($node, 's1');
workload(1001, 1200);
my $lsn = workload(2001, 2200);
wait_acked($node, 's1', $lsn);
ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_state FROM zerobus.stat_streams WHERE name = 's1'",
		'done'),
	'the snapshot is done');

# Duplicates: Zerobus stores the records of these changes but withholds
# their acks, and the worker dies; the next one sends them again.
emulator_api($emu, 'POST', '/admin/faults',
	{ table => $_, withhold_acks => JSON::PP::true })
  for ('zb.cdc.t1', 'zb.cdc.t2');
my $sent = stream_stat($node, 's1', 'records_sent');
$lsn = workload(3001, 3200);
wait_stat($node, 's1', "records_sent > $sent + 400",
	'records sent while their acks are withheld');
my $pid = stream_stat($node, 's1', 'pid');
ok(kill('KILL', $pid), "killed worker $pid");
emulator_api($emu, 'DELETE', '/admin/faults');
wait_stat($node, 's1', "pid <> $pid AND state = 'streaming'",
	'a new worker streams after crash recovery');
wait_acked($node, 's1', $lsn);

# The change tables hold what the test is about.
for my $table (keys %columns)
{
	my $rows = delta_rows($emu, "zb.cdc.$table");
	my (%types, %seen);
	$types{ $_->{_change_type} }++ for @$rows;
	my $dups = grep { $seen{"$_->{_commit_lsn}/$_->{_seq}"}++ } @$rows;
	ok($types{$_}, "$table: the change table has $_ records")
	  for ('snapshot', 'insert', 'update_preimage', 'update_postimage',
		'delete');
	ok($dups > 0, "$table: the change table has duplicates ($dups)");
	next unless $table eq 't1';
	my $unchanged =
	  grep { grep { $_ eq 'doc' } @{ $_->{_unchanged_columns} // [] } } @$rows;
	ok($unchanged > 0, "t1: the change table has updates without doc ($unchanged)");
}

for my $table (sort keys %columns)
{
	check_mirror($table, 'first run');
	check_mirror($table, 'run again');
}

$lsn = workload(4001, 4200);
wait_acked($node, 's1', $lsn);
check_mirror($_, 'after more changes') for sort keys %columns;

done_testing();
