# Copyright (c) zerobus authors
#
# A change the plugin can never send (a timestamp after 294247-01-10, which
# int64 microseconds since 1970 cannot express) fails replication at the
# same place every time.  The worker retries it a few times, then fails the
# stream with the plugin's error instead of retrying for ever; the slot
# stays before the change.  The documented way out -- advance the slot past
# the change, which loses it, and resume -- lets the stream flow on, and the
# Delta table then equals the source without that row.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('decode_error');
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE arr (id int PRIMARY KEY, at timestamp);
	CREATE PUBLICATION pub FOR TABLE arr;
});
declare_target($node, $emu, 'arr', 'main.cdc.arr');
create_stream($node, $emu, 'arr', 'pub');
wait_streaming($node, 'arr');

$node->safe_psql('postgres',
	"INSERT INTO arr SELECT g, '2024-01-01'::timestamp + g * interval '1 day' FROM generate_series(1, 10) g");
wait_acked($node, 'arr',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

# The change that cannot be sent, then one that can.
my $before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres',
	"INSERT INTO arr VALUES (11, '294247-01-11 00:00:00')");
my $after_bad = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres', "INSERT INTO arr VALUES (12, '2024-12-12')");

like(
	wait_failed($node, 'arr', 'the stream fails on a change it can never send'),
	qr/failed 5 times in a row at the same position: .*timestamp in column "at" is out of range for Zerobus.*pg_replication_slot_advance/s,
	'the reason gives the plugin error and the way out');
is( $node->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn <= '$before' FROM pg_replication_slots WHERE slot_name = 'zerobus_arr'"
	),
	't',
	'the slot stays before the change');

# Skip the change (it is lost) and resume: the next change flows.
$node->safe_psql('postgres',
	"SELECT pg_replication_slot_advance('zerobus_arr', '$after_bad')");
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('arr')");
wait_streaming($node, 'arr');
wait_acked($node, 'arr',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.arr'), 'id'),
	source_rows(
		$node, 'arr WHERE id <> 11',
		"id, (extract(epoch FROM at) * 1000000)::int8 AS at", 'id'),
	'Delta equals the source without the skipped row');
check_slot_behind_acks($node, 'arr');

stop_emulator($emu);
$node->stop;
done_testing();
