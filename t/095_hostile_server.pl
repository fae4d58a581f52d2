# Copyright (c) zerobus authors
#
# A Zerobus server that breaks the protocol (the emulator's "lie" fault):
# acks beyond the last offset sent, an ack below the one before, an ack
# ahead of the create_stream_response, a second create_stream_response.
# Each is a protocol violation: the worker names it in last_error, resets
# the session and believes nothing of it.  Throughout, the slot's
# confirmed_flush_lsn never passes what was genuinely acked (for acks
# beyond what was sent, never passes the position before the writes: no
# ack of that server is true), the postmaster never restarts, and once the
# server behaves again everything arrives.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('hostile');
my $emu = start_emulator();
my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t1 (id int PRIMARY KEY, val text);
	CREATE PUBLICATION pub FOR TABLE t1;
});
declare_target($node, $emu, 't1', 'main.cdc.t1');
create_stream($node, $emu, 's1', 'pub');
wait_streaming($node, 's1');

my $next_id = 1;

# Writes $n rows (one transaction) and returns the WAL position after it.
sub write_rows
{
	my ($n) = @_;
	my ($from, $to) = ($next_id, $next_id + $n - 1);
	$next_id += $n;
	$node->safe_psql('postgres',
		"INSERT INTO t1 SELECT g, 'v' || g FROM generate_series($from, $to) g"
	);
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

sub zb_stat
{
	my ($column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM zerobus.stat_streams WHERE name = 's1'");
}

sub slot_lsn
{
	return $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	);
}

sub check_all
{
	my ($label, $lsn) = @_;
	wait_acked($node, 's1', $lsn);
	is_deeply(
		fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
		source_rows($node, 't1', 'id, val', 'id'),
		"$label: Delta table equals the source table");
	check_slot_behind_acks($node, 's1');
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, "$label: the postmaster never restarted");
	return;
}

check_all('baseline', write_rows(50));

my @lies = (
	[ 'ack_ahead', 'server acknowledged offset \d+ but the last offset sent was' ],
	[ 'ack_backwards', 'server acknowledged offset -?\d+ after offset' ],
	[ 'ack_before_create', 'acknowledged records before creating the stream' ],
	[ 'second_create', 'second create_stream_response' ]);

for my $case (@lies)
{
	my ($lie, $error) = @$case;
	# a new call, so that faults acting at creation apply: the session
	# restarts when the fault is set with an alter_stream() of nothing
	emulator_api($emu, 'POST', '/admin/faults',
		{ table => 'main.cdc.t1', lie => $lie });
	$node->safe_psql('postgres', "SELECT zerobus.alter_stream('s1')");
	my $before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	my $lsn = write_rows(20);
	if ($lie eq 'ack_backwards')
	{
		# the first ack is true, the one after it goes back
		wait_acked($node, 's1', $lsn);
		$lsn = write_rows(20);
	}
	ok( $node->poll_query_until(
			'postgres',
			"SELECT last_error ~ '$error' FROM zerobus.stat_streams WHERE name = 's1'"
		),
		"$lie: the worker names the protocol violation")
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = 's1'");
	check_slot_behind_acks($node, 's1');
	if ($lie eq 'ack_ahead')
	{
		is( $node->safe_psql('postgres',
				"SELECT '" . slot_lsn() . "'::pg_lsn <= '$before'"),
			't',
			"$lie: the slot did not move on an ack of data never sent");
	}
	emulator_api($emu, 'DELETE', '/admin/faults');
	check_all($lie, $lsn);
}

# The worker's memory stayed bounded through the session resets.
my $pid = zb_stat('pid');
my $rss = slurp_file("/proc/$pid/status") =~ /VmRSS:\s+(\d+) kB/ ? $1 : 0;
ok($rss > 0 && $rss < 100 * 1024, "worker RSS ${rss} kB < 100 MB");

$node->stop;
done_testing();
