# Copyright (c) zerobus authors
#
# A snapshot chunk never waits for a row lock, so it cannot deadlock with
# the application.  An application transaction holds the lock of the last
# row of the chunk while the snapshot starts, then updates the first row.
# A chunk that waited for the last row would hold the first one locked
# (FOR SHARE, in key order): the update would close a deadlock cycle, and
# PostgreSQL would abort one of the two transactions: the one whose
# deadlock_timeout ends first, the application's or the worker's chunk.  The chunk instead
# gives its locks back and is read again once the row is free: the
# application's transaction commits, the snapshot completes, and the Delta
# table folded equals the source.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use ZerobusTest;

my $node = zb_node('snaplocks', "zerobus.snapshot_chunk_rows = 1000\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, val text);
	INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 300) g;
	CREATE PUBLICATION pub FOR TABLE t;
});
declare_target($node, $emu, 't', 'main.cdc.t');

# The application's session, fed statements one at a time.
my ($in, $out, $err) = ('', '', '');
my $app = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);

# Sends $sql to the application's session and waits until it echoed $mark
# (or wrote an error, or ended).
sub app_run
{
	my ($sql, $mark) = @_;
	$in .= "$sql\n\\echo $mark\n";
	ok( poll_until(
			sub {
				$app->pump_nb;
				return $out =~ /\b$mark\b/ || $err ne '' || !$app->pumpable;
			}),
		"the application's session answered ($mark)");
	return;
}

# Created paused: making its slot waits for every open transaction.
create_stream($node, $emu, 's1', 'pub', enabled => 'false');
app_run("BEGIN;\nUPDATE t SET val = 'app300' WHERE id = 300;", 'locked');

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");

# The chunk has met the locked row: the worker waits for it (a lock not
# granted) or has said it will read the chunk again.
ok( poll_until(
		sub {
			return 1
			  if $node->log_contains(
				qr/snapshot of table public\.t waits for a row locked by another transaction/,
				$log_offset);
			return $node->safe_psql(
				'postgres', q{
				SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
				WHERE NOT l.granted AND a.backend_type = 'zerobus worker'}) > 0;
		}),
	'the snapshot reached the locked row');
ok( $node->log_contains(
		qr/snapshot of table public\.t waits for a row locked by another transaction/,
		$log_offset),
	'the worker says the snapshot waits for a locked row');

app_run("UPDATE t SET val = 'app1' WHERE id = 1;\nCOMMIT;", 'committed');
is($err, '', "the application's transaction is no deadlock victim");
like($out, qr/committed/, "and commits");
ok(!$node->log_contains(qr/deadlock detected/, $log_offset),
	'nor is the worker: no deadlock at all');
$in .= "\\q\n";
$app->finish;

ok( $node->poll_query_until(
		'postgres', "SELECT snapshot_state FROM zerobus.stream_tables", 'done'),
	'the snapshot completes once the row is free');
check_tables(
	$node, $emu, 's1', 'after the lock',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
	[ 't', 'main.cdc.t', 'id, val', 'id' ]);

$node->stop;
stop_emulator($emu);
done_testing();
