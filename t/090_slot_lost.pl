# Copyright (c) zerobus authors
#
# A stream whose slot lost WAL it still needed (max_slot_wal_keep_size).
#
# The stream is paused while WAL piles up past max_slot_wal_keep_size, and
# checkpoints remove it: the slot's wal_status becomes 'lost'.  Resumed, the
# worker does not retry forever: the stream fails with a reason naming the
# slot and the recovery call.  zerobus.recover_stream() replaces the slot
# and marks the stream's tables for a new snapshot; the stream runs again,
# and once the snapshot is done the Delta table, folded, equals the source.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('slot_lost', "max_slot_wal_keep_size = 1MB\nmin_wal_size = 32MB\n");
my $emu = start_emulator();
my $target = 'main.cdc.lost';

$node->safe_psql(
	'postgres', q{
	CREATE TABLE lost (id int PRIMARY KEY, val text);
	CREATE PUBLICATION pub FOR TABLE lost;
});
declare_target($node, $emu, 'lost', $target);
create_stream($node, $emu, 'lost', 'pub');
wait_streaming($node, 'lost');

sub current_lsn
{
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

$node->safe_psql('postgres',
	"INSERT INTO lost SELECT g, 'v' || g FROM generate_series(1, 100) g");
wait_acked($node, 'lost', current_lsn());

# Pause, then write and remove WAL until the slot is invalidated.
$node->safe_psql('postgres', "SELECT zerobus.pause_stream('lost')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT slot_active FROM zerobus.stat_streams WHERE name = 'lost'",
		'f'),
	'the paused stream releases its slot');
my $status = '';
for my $round (1 .. 20)
{
	$node->safe_psql(
		'postgres', qq{
		UPDATE lost SET val = 'round $round ' || id;
		INSERT INTO lost VALUES (1000 + $round, 'round $round');
		SELECT pg_switch_wal();
		CHECKPOINT;
	});
	$status = $node->safe_psql('postgres',
		"SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'zerobus_lost'");
	last if $status eq 'lost';
}
is($status, 'lost', 'the slot lost WAL it needed');

# Resumed, the stream fails at once with a clear reason.
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('lost')");
like(
	wait_failed($node, 'lost', 'the stream fails on a lost slot'),
	qr/^replication slot "zerobus_lost" of stream "lost" was invalidated: .*wal_status lost.*Hint: SELECT zerobus\.recover_stream\('lost'\);/,
	'the reason names the slot, the cause and the recovery call');
is( $node->safe_psql('postgres',
		"SELECT coalesce(pid, 0), wal_status FROM zerobus.stat_streams WHERE name = 'lost'"),
	'0|lost', 'no worker runs; stat_streams shows wal_status lost');

# resume_stream does not help: it fails again.
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('lost')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'failed' AND paused_reason LIKE '%was invalidated%' FROM zerobus.stat_streams WHERE name = 'lost'"),
	'resume_stream on a lost slot fails again');

# Recover: a new slot, every table snapshotted again, the pauses of the
# stream and of its tables cleared (a table paused by its target is tried
# again like after resume_stream).
$node->safe_psql('postgres',
	"UPDATE zerobus.stream_tables SET paused_reason = 'rejected', paused_at = now() WHERE relid = 'lost'::regclass"
);
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', "SELECT zerobus.recover_stream('lost')");
is($ret, 0, 'recover_stream succeeds');
like($stderr, qr/will be snapshotted again/, 'recover_stream says what it did');
is( $node->safe_psql(
		'postgres',
		"SELECT snapshot_state, snapshot_key IS NULL, snapshot_rows, paused_reason IS NULL FROM zerobus.stream_tables WHERE relid = 'lost'::regclass"
	),
	'pending|t|0|t',
	'the table is marked for a new snapshot, its pause cleared');
isnt(
	$node->safe_psql('postgres',
		"SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'zerobus_lost'"),
	'lost',
	'the new slot is not lost');
wait_streaming($node, 'lost');

$node->safe_psql(
	'postgres', q{
	INSERT INTO lost SELECT g, 'after ' || g FROM generate_series(2001, 2050) g;
	UPDATE lost SET val = 'updated after recovery' WHERE id <= 10;
	DELETE FROM lost WHERE id BETWEEN 11 AND 20;
});
wait_acked($node, 'lost', current_lsn());
check_slot_behind_acks($node, 'lost');

ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_state FROM zerobus.stream_tables WHERE relid = 'lost'::regclass",
		'done'),
	'the new snapshot completes');
wait_acked($node, 'lost', current_lsn());
is_deeply(
	fold_changes(delta_rows($emu, $target), 'id'),
	source_rows($node, 'lost', 'id, val', 'id'),
	'Delta table equals the source table after the recovery');

stop_emulator($emu);
$node->stop;
done_testing();
