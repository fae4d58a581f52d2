# Copyright (c) zerobus authors
#
# Failover slots (PostgreSQL 17+).  A stream's slot is created with failover
# by default where the server supports it.  A physical standby that
# synchronizes slots keeps a copy; the primary holds the slot back until the
# standby has the WAL (synchronized_standby_slots).  The launcher starts no
# worker while the standby is in recovery.  The primary dies (-m immediate)
# under load; the standby is promoted; its launcher starts the worker, which
# goes on from the synchronized slot: the Delta table folded equals the
# promoted server's table, nothing it holds was lost, and the slot is never
# past what Zerobus acked.  Before 17, failover => true is refused with a
# clear error and the default is off.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $primary = zb_node('primary');
my $version = $primary->safe_psql('postgres', 'SHOW server_version_num');
my $emu = start_emulator();

$primary->safe_psql(
	'postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, v text);
	CREATE PUBLICATION pub FOR TABLE t;
});
declare_target($primary, $emu, 't', 'main.cdc.t');

if ($version < 170000)
{
	my ($ret, $out, $err) = $primary->psql('postgres',
		"SELECT zerobus.create_stream('f', 'pub', 'http://127.0.0.1:1', 'http://127.0.0.1:1',"
		  . " 'id', 'secret', 'main', insecure => true, failover => true)");
	like($err, qr/failover slots require PostgreSQL 17 or later/,
		'before 17, failover => true is refused');
	create_stream($primary, $emu, 'f', 'pub');
	is($primary->safe_psql('postgres', "SELECT failover FROM zerobus.streams WHERE name = 'f'"),
		'f', 'before 17, streams are created without failover');
	stop_emulator($emu);
	$primary->stop;
	done_testing();
	exit;
}

# The primary holds logical slots back until the standby's physical slot has
# the WAL, so a promoted standby never lacks what the stream sent.
$primary->safe_psql('postgres',
	"SELECT pg_create_physical_replication_slot('standby1')");
$primary->append_conf('postgresql.conf',
	"synchronized_standby_slots = 'standby1'");
$primary->reload;
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
# slot synchronization needs a database in primary_conninfo
(my $connstr = $primary->connstr('postgres')) =~ s/'/''/g;
$standby->append_conf(
	'postgresql.conf', qq{
primary_slot_name = 'standby1'
primary_conninfo = '$connstr'
hot_standby_feedback = on
sync_replication_slots = on
# no standby of its own once promoted: a slot named here that does not exist
# would hold every failover slot's walsender for ever
synchronized_standby_slots = ''
});
$standby->start;

create_stream($primary, $emu, 'f', 'pub');
wait_streaming($primary, 'f');
is( $primary->safe_psql('postgres',
		"SELECT failover FROM pg_replication_slots WHERE slot_name = 'zerobus_f'"),
	't', 'the stream slot is a failover slot by default');

$primary->safe_psql('postgres',
	"INSERT INTO t SELECT g, 'before ' || g FROM generate_series(1, 2000) g");
my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_acked($primary, 'f', $lsn);
ok( $standby->poll_query_until(
		'postgres',
		"SELECT synced AND confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'zerobus_f'"
	),
	'the standby has a synchronized copy of the slot');
is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'zerobus%'"),
	'0', 'no zerobus worker or launcher runs on the standby in recovery');

# Load while the primary dies: the rows the standby received must all land.
$primary->safe_psql(
	'postgres', q{
	INSERT INTO t SELECT g, 'during ' || g FROM generate_series(2001, 4000) g;
	UPDATE t SET v = 'updated' WHERE id % 7 = 0;
	DELETE FROM t WHERE id % 11 = 0;
});
$primary->wait_for_catchup($standby);
$primary->safe_psql('postgres',
	"INSERT INTO t SELECT g, 'last ' || g FROM generate_series(4001, 4500) g");
$primary->stop('immediate');

$standby->promote;
ok( $standby->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'zerobus worker'"),
	'after promotion the launcher starts the stream worker')
  or diag $standby->safe_psql('postgres',
	'SELECT backend_type FROM pg_stat_activity');
wait_streaming($standby, 'f');

$standby->safe_psql('postgres',
	"INSERT INTO t SELECT g, 'after ' || g FROM generate_series(5001, 5500) g");
wait_acked($standby, 'f',
	$standby->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t'), 'id'),
	source_rows($standby, 't', 'id, v', 'id'),
	'Delta equals the promoted server\'s table: nothing it holds was lost');
check_slot_behind_acks($standby, 'f');

stop_emulator($emu);
$standby->stop;
done_testing();
