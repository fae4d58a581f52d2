# Copyright (c) zerobus authors
#
# Crashes while changes flow: the stream worker killed with SIGKILL (the
# postmaster then restarts every backend, and the launcher the worker), and
# PostgreSQL stopped in immediate mode and started again; an ERROR raised
# while the worker commits its own transaction.  Each time the
# worker resumes from the slot: the Delta tables, with the change records
# applied in (_commit_lsn, _seq) order, equal the source tables (records
# sent twice fold away), and the slot never confirmed past what Zerobus
# acked.

use strict;
use warnings;
use File::Basename qw(dirname);
use JSON::PP;
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('crash', "restart_after_crash = on\n");
my $emu = start_emulator();

setup_t1_t2($node, $emu);
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
	return check_tables($node, $emu, 's1', $label, $lsn,
		[ 't1', 'main.cdc.t1', 'id, val', 'id' ],
		[ 't2', 'main.cdc.t2', 'k, n', 'k' ]);
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

# An ERROR while the worker commits its own catalog work: a deferred
# constraint trigger on zerobus.stream_tables fails the commit of the
# first two transactions that write it from now on (a sequence counts
# them, beyond the rollbacks).  The worker aborts what is left of the
# transaction, starts a new session and goes on; nothing crashes.
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $log_offset = -s $node->logfile;
$node->safe_psql(
	'postgres', q{
	CREATE SEQUENCE public.commit_faults;
	CREATE FUNCTION public.fail_commit() RETURNS trigger LANGUAGE plpgsql
		SET search_path = pg_catalog AS $$
	BEGIN
		IF nextval('public.commit_faults') <= 2 THEN
			RAISE EXCEPTION 'injected failure at commit';
		END IF;
		RETURN NULL;
	END $$;
	CREATE CONSTRAINT TRIGGER fail_commit
		AFTER INSERT OR UPDATE ON zerobus.stream_tables
		DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION public.fail_commit();
	CREATE TABLE t3 (id int PRIMARY KEY, val text);
	INSERT INTO t3 SELECT g, 'before' FROM generate_series(1, 50) g;
});
declare_target($node, $emu, 't3', 'main.cdc.t3');
$node->safe_psql('postgres', 'ALTER PUBLICATION pub ADD TABLE t3');
$node->safe_psql('postgres',
	"INSERT INTO t3 SELECT g, 'after' FROM generate_series(51, 100) g");
$lsn = write_txns(2);
check_all('commit failure', $lsn);
# t3's first rows come by its initial snapshot, which may end after the ack
my $json = JSON::PP->new->canonical;
ok( poll_until(
		sub {
			$json->encode(fold_changes(delta_rows($emu, 'main.cdc.t3'), 'id'))
			  eq $json->encode(source_rows($node, 't3', 'id, val', 'id'));
		}),
	'commit failure: Delta table t3 equals the source table');
ok( $node->safe_psql('postgres', 'SELECT last_value FROM public.commit_faults') > 2,
	'commit failure: the worker committed again after the two failures');
like(
	slurp_file($node->logfile, $log_offset),
	qr/ERROR:  injected failure at commit/,
	'commit failure: the worker logged the failed commit');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'commit failure: no process crashed (the postmaster did not restart)');
is($node->safe_psql('postgres',
		"SELECT state FROM zerobus.stat_streams WHERE name = 's1'"),
	'streaming', 'commit failure: the stream streams');

stop_emulator($emu);
$node->stop;
done_testing();
