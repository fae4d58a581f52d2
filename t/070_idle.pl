# Copyright (c) zerobus authors
#
# An idle stream does not hold WAL.  WAL written only for unpublished
# tables of the served database, and WAL of other databases, reaches the
# slot's confirmed_flush_lsn without any write to a published table and
# without a record sent to Zerobus.  With no WAL at all for longer than
# wal_sender_timeout, the walsender's keepalives and the worker's replies
# keep the session up (same worker, no reconnect) and the slot stays at
# the end of WAL.  The Delta table still equals the source table at the
# end, and the slot never confirms past the acked LSN.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('idle', "wal_sender_timeout = '3s'\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE pub_t (id int PRIMARY KEY, val text);
	CREATE TABLE local_t (id int, payload text);
	CREATE PUBLICATION pub FOR TABLE pub_t;
	CREATE DATABASE otherdb;
});
$node->safe_psql('otherdb', 'CREATE TABLE other_t (id int, payload text)');
declare_target($node, $emu, 'pub_t', 'main.cdc.pub_t');
create_stream($node, $emu, 'idle', 'pub');

wait_streaming($node, 'idle');

# A first published change, so the slot has something acked to start from.
$node->safe_psql('postgres',
	"INSERT INTO pub_t SELECT g, 'v' || g FROM generate_series(1, 10) g");
wait_acked($node, 'idle', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

my ($pid, $sent) = split /\|/,
  $node->safe_psql('postgres',
	"SELECT pid, records_sent FROM zerobus.stat_streams WHERE name = 'idle'");
is($sent, 10, 'the ten published rows were sent');

# Returns whether the slot's confirmed_flush_lsn reaches $lsn in time.
sub slot_reaches
{
	my ($lsn) = @_;
	return $node->poll_query_until(
		'postgres', qq{
		SELECT s.confirmed_flush_lsn >= '$lsn'
		FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name)
		WHERE z.name = 'idle'});
}

# WAL of an unpublished table of the served database only.
$node->safe_psql('postgres',
	"INSERT INTO local_t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"
);
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(slot_reaches($lsn), 'slot advances over WAL of an unpublished table');
check_slot_behind_acks($node, 'idle');

# WAL of another database only (its decoding is skipped by the walsender).
$node->safe_psql('otherdb',
	"INSERT INTO other_t SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g"
);
$node->safe_psql('otherdb', 'UPDATE other_t SET payload = upper(payload)');
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(slot_reaches($lsn), 'slot advances over WAL of another database');
check_slot_behind_acks($node, 'idle');

# Many small transactions elsewhere, none touching the publication.
for my $i (1 .. 20)
{
	$node->safe_psql('otherdb', "INSERT INTO other_t VALUES ($i, 'small')");
	$node->safe_psql('postgres', "INSERT INTO local_t VALUES ($i, 'small')");
}
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(slot_reaches($lsn), 'slot advances over many small unpublished transactions');

is( $node->safe_psql(
		'postgres',
		"SELECT records_sent FROM zerobus.stat_streams WHERE name = 'idle'"),
	$sent,
	'nothing was sent to Zerobus for the unpublished WAL');

# Nothing at all for longer than wal_sender_timeout (3s): only keepalives
# and status updates flow.  Wait for two fresh replies from the worker
# spanning more than the timeout, with no WAL written meanwhile by us.
my $quiet_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my $quiet_start = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT reply_time > '$quiet_start'::timestamptz + interval '4 seconds'
		FROM pg_stat_replication WHERE application_name = 'zerobus:idle'}),
	'worker keeps replying to the walsender through a quiet period');
ok(slot_reaches($quiet_lsn), 'slot is at the end of WAL after the quiet period');
is( $node->safe_psql(
		'postgres',
		"SELECT pid = $pid, state, reconnects, slot_active FROM zerobus.stat_streams WHERE name = 'idle'"
	),
	't|streaming|0|t',
	'same worker still streaming, never reconnected, slot active');
check_slot_behind_acks($node, 'idle');

# Streaming still works after the quiet period.
$node->safe_psql('postgres',
	"UPDATE pub_t SET val = 'after idle' WHERE id <= 5; DELETE FROM pub_t WHERE id = 10"
);
wait_acked($node, 'idle', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.pub_t'), 'id'),
	source_rows($node, 'pub_t', 'id, val', 'id'),
	'Delta table equals the source table');
check_slot_behind_acks($node, 'idle');

stop_emulator($emu);
$node->stop;
done_testing();
