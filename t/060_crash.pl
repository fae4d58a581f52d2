# Copyright (c) zerobus authors
#
# Crashes while changes flow: the stream worker killed with SIGKILL (the
# postmaster then restarts every backend, and the launcher the worker), and
# PostgreSQL stopped in immediate mode and started again.  Each time the
# worker resumes from the slot: the Delta tables, with the change records
# applied in (_commit_lsn, _seq) order, equal the source tables (records
# sent twice fold away), and the slot never confirmed past what Zerobus
# acked.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('crash', "restart_after_crash = on\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t1 (id int PRIMARY KEY, val text);
	CREATE TABLE t2 (k text PRIMARY KEY, n int);
	CREATE PUBLICATION pub FOR TABLE t1, t2;
});
declare_target($node, $emu, 't1', 'main.cdc.t1');
declare_target($node, $emu, 't2', 'main.cdc.t2');
create_stream($node, $emu, 's1', 'pub', batch_max_records => 100);

my $next_id = 1;

# Commits $ntxn transactions of 100 rows into each table (each with an
# update and a delete too); returns the WAL position after the last.
sub write_txns
{
	my ($ntxn) = @_;
	my $sql = '';
	for (1 .. $ntxn)
	{
		my ($from, $to) = ($next_id, $next_id + 99);
		$next_id += 100;
		$sql .= qq{
		BEGIN;
		INSERT INTO t1 SELECT g, 'v' || g FROM generate_series($from, $to) g;
		INSERT INTO t2 SELECT 'k' || g, g FROM generate_series($from, $to) g;
		UPDATE t1 SET val = 'u' || id WHERE id = $from;
		DELETE FROM t2 WHERE k = 'k$to';
		COMMIT;};
	}
	$node->safe_psql('postgres', $sql);
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

sub check_all
{
	my ($label, $lsn) = @_;
	wait_acked($node, 's1', $lsn);
	is_deeply(
		fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
		source_rows($node, 't1', 'id, val', 'id'),
		"$label: Delta table t1 equals the source table");
	is_deeply(
		fold_changes(delta_rows($emu, 'main.cdc.t2'), 'k'),
		source_rows($node, 't2', 'k, n', 'k'),
		"$label: Delta table t2 equals the source table");
	check_slot_behind_acks($node, 's1');
	return;
}

# Waits until the worker is part-way through the transactions up to $lsn:
# some records acked, the end not yet (the callers slow the acks down).
sub wait_mid_stream
{
	my ($label, $lsn) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT records_acked > 0 AND acked_lsn < '$lsn' FROM zerobus.stat_streams WHERE name = 's1'"
		),
		"$label: worker is part-way through the changes")
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = 's1'");
	return;
}

wait_streaming($node, 's1');
check_all('before the crashes', write_txns(2));

# The worker killed with SIGKILL while changes are in flight.
emulator_api($emu, 'POST', '/admin/faults',
	{ table => $_, ack_delay_ms => 100 })
  for ('main.cdc.t1', 'main.cdc.t2');
my $lsn = write_txns(30);
wait_mid_stream('worker SIGKILL', $lsn);
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM zerobus.stat_streams WHERE name = 's1'");
ok(kill('KILL', $pid), "worker SIGKILL: killed worker $pid");
emulator_api($emu, 'DELETE', '/admin/faults');
ok( $node->poll_query_until(
		'postgres',
		"SELECT pid <> $pid AND state = 'streaming' FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'worker SIGKILL: a new worker streams after crash recovery');
$lsn = write_txns(2);
check_all('worker SIGKILL', $lsn);

# PostgreSQL stopped in immediate mode while changes are in flight.
emulator_api($emu, 'POST', '/admin/faults',
	{ table => $_, ack_delay_ms => 100 })
  for ('main.cdc.t1', 'main.cdc.t2');
$lsn = write_txns(30);
wait_mid_stream('immediate shutdown', $lsn);
$node->stop('immediate');
emulator_api($emu, 'DELETE', '/admin/faults');
$node->start;
$lsn = write_txns(2);
check_all('immediate shutdown', $lsn);

stop_emulator($emu);
$node->stop;
done_testing();
