# Copyright (c) zerobus authors
#
# Plain streaming: inserts, updates (one changing the key) and deletes on
# two published tables reach the emulator's Delta tables, which, with the
# change records applied in (_commit_lsn, _seq) order, equal the source
# tables.  The slot never confirms past what Zerobus acked: with acks
# withheld it stays behind the unacked transaction, and it moves once the
# acks come.  WAL of unpublished tables alone is confirmed too.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('basic');
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t1 (id int PRIMARY KEY, val text, n bigint);
	CREATE TABLE t2 (k text PRIMARY KEY, qty int, note text);
	CREATE TABLE unpublished (id int);
	CREATE PUBLICATION pub FOR TABLE t1, t2;
});
declare_target($node, $emu, 't1', 'main.cdc.t1');
declare_target($node, $emu, 't2', 'main.cdc.t2');
create_stream($node, $emu, 's1', 'pub');

wait_streaming($node, 's1');

$node->safe_psql(
	'postgres', q{
	INSERT INTO t1 SELECT g, 'v' || g, g * 1000000000::bigint FROM generate_series(1, 500) g;
	INSERT INTO t2 VALUES ('a', 1, 'first'), ('b', 2, NULL), ('c', 3, 'third');
	BEGIN;
	UPDATE t1 SET val = 'changed' WHERE id % 7 = 0;
	UPDATE t2 SET qty = qty + 10 WHERE k = 'a';
	DELETE FROM t1 WHERE id > 450;
	COMMIT;
	BEGIN;
	INSERT INTO t1 VALUES (9999, 'rolled back', 0);
	ROLLBACK;
	UPDATE t1 SET id = 1000 WHERE id = 1;
	DELETE FROM t2 WHERE k = 'b';
	INSERT INTO unpublished VALUES (1);
	INSERT INTO t2 VALUES ('d', NULL, 'last');
});
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_acked($node, 's1', $lsn);

is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val, n', 'id'),
	'Delta table t1 equals the source table');
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t2'), 'k'),
	source_rows($node, 't2', 'k, qty, note', 'k'),
	'Delta table t2 equals the source table');
check_slot_behind_acks($node, 's1');

my $stat = $node->safe_psql('postgres',
	"SELECT records_sent >= 500 + 3 + 71 + 1 + 50 + 1 + 1 + 1, records_acked = records_sent, reconnects FROM zerobus.stat_streams WHERE name = 's1'"
);
is($stat, 't|t|0', 'every record sent was acked, without reconnecting');

# Acks withheld: the slot must not move past the unacked transaction, even
# after the worker has sent status updates since sending the records.
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', withhold_acks => JSON::PP::true });
my $sent = $node->safe_psql('postgres',
	"SELECT records_sent FROM zerobus.stat_streams WHERE name = 's1'");
$node->safe_psql('postgres', "INSERT INTO t1 VALUES (5000, 'held', 1)");
my $held_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT records_sent > $sent FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'record of the held transaction sent');
my $after_send = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT reply_time > '$after_send' FROM pg_stat_replication WHERE application_name = 'zerobus:s1'"
	),
	'worker sent a status update after the record');
is( $node->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn < '$held_lsn' FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name) WHERE z.name = 's1'"
	),
	't',
	'slot does not confirm a transaction whose records are not acked');
check_slot_behind_acks($node, 's1');

emulator_api($emu, 'DELETE', '/admin/faults?table=main.cdc.t1');
ok( $node->poll_query_until(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$held_lsn' FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name) WHERE z.name = 's1'"
	),
	'slot moves once the acks arrive');

# WAL of unpublished tables only: the slot follows it.
$node->safe_psql('postgres',
	'INSERT INTO unpublished SELECT generate_series(1, 1000)');
my $idle_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$idle_lsn' FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name) WHERE z.name = 's1'"
	),
	'slot advances over WAL of unpublished tables');

is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val, n', 'id'),
	'Delta table t1 still equals the source table');

# A truncate is not sent (Delta's change feed has no truncate): the worker
# counts the truncated tables and warns, and the stream goes on.
is($node->safe_psql('postgres',
		"SELECT truncates FROM zerobus.stat_streams WHERE name = 's1'"),
	'0', 'no truncate counted yet');
$node->safe_psql('postgres', 'TRUNCATE t1, t2');
$node->safe_psql('postgres', "INSERT INTO t1 VALUES (100000, 'after', 1)");
wait_acked($node, 's1',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is($node->safe_psql('postgres',
		"SELECT truncates, state FROM zerobus.stat_streams WHERE name = 's1'"),
	'2|streaming', 'the two truncated tables are counted, the stream goes on');
ok($node->log_contains(qr/WARNING:  truncate of public\.t1, public\.t2 is not propagated to Zerobus/),
	'and the worker warns, naming them');

stop_emulator($emu);
$node->stop;
done_testing();
