# Copyright (c) zerobus authors
#
# Streams in several databases of one cluster, into the emulator: two
# databases each with a stream of id 1 (ids are per database) whose rows
# land in their own targets and whose shared state does not mix; a
# database created while the server runs gets its stream running without a
# restart; a database without the extension, or without streams, keeps no
# launcher and can be dropped; DROP EXTENSION is refused while streams
# exist and stops nothing running once they are dropped; DROP DATABASE of a
# database with a paused stream drops its slot; three databases stream at
# once under load while a fourth is dropped; zerobus.databases follows a
# reload.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use ZerobusTest;

my $node = zb_node('databases', "max_worker_processes = 20\n");
my $emu = start_emulator();

# Database $db with the extension, table t_$db and publication pub, and
# its target main.cdc.t_$db declared in the emulator.
sub setup_database
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, qq{
		CREATE EXTENSION zerobus;
		CREATE TABLE t_$db (id int PRIMARY KEY, val text);
		CREATE PUBLICATION pub FOR TABLE t_$db;
	});
	declare_target($node, $emu, "t_$db", "main.cdc.t_$db", $db);
	return;
}

# The zerobus processes of database $db (launcher and workers), by type.
sub processes
{
	my ($db) = @_;
	return $node->safe_psql(
		'postgres', qq{
		SELECT coalesce(string_agg(backend_type, ',' ORDER BY backend_type), '')
		FROM pg_stat_activity
		WHERE backend_type LIKE 'zerobus%' AND datname = '$db'});
}

sub wait_processes
{
	my ($db, $expected, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
			SELECT coalesce(string_agg(backend_type, ',' ORDER BY backend_type), '')
			FROM pg_stat_activity
			WHERE backend_type LIKE 'zerobus%' AND datname = '$db'},
			$expected),
		$what)
	  or diag "processes of $db: " . processes($db);
	return;
}

# Inserts rows $from..$to into t_$db; waits until its stream acked them.
sub write_rows
{
	my ($db, $from, $to) = @_;
	$node->safe_psql($db,
		"INSERT INTO t_$db SELECT g, 'v' || g FROM generate_series($from, $to) g"
	);
	my $lsn = $node->safe_psql($db, 'SELECT pg_current_wal_lsn()');
	ok( $node->poll_query_until(
			$db,
			"SELECT acked_lsn >= '$lsn' FROM zerobus.stat_streams WHERE name = 's_$db'"
		),
		"stream of database $db acked its rows")
	  or diag $node->safe_psql($db, 'SELECT * FROM zerobus.stat_streams');
	return;
}

# The ids of the rows in target main.cdc.t_$db, sorted.
sub target_ids
{
	my ($db) = @_;
	my $rows = fold_changes(delta_rows($emu, "main.cdc.t_$db"), 'id');
	return join ',', sort { $a <=> $b } map { $_->{id} } values %$rows;
}

# The ids of the rows of table t_$db, sorted.
sub source_ids
{
	my ($db) = @_;
	return $node->safe_psql($db,
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM t_$db");
}

# A database without the extension, and one with it but no stream.
$node->safe_psql('postgres', 'CREATE DATABASE plain');
$node->safe_psql('postgres', 'CREATE DATABASE nostreams');
$node->safe_psql('nostreams', 'CREATE EXTENSION zerobus');

setup_database('shop');
setup_database('billing');
create_stream($node, $emu, 's_shop', 'pub', dbname => 'shop');
create_stream($node, $emu, 's_billing', 'pub', dbname => 'billing');
wait_streaming($node, 's_shop', 'shop');
wait_streaming($node, 's_billing', 'billing');

is( $node->safe_psql('shop', 'SELECT id FROM zerobus.streams') . ','
	  . $node->safe_psql('billing', 'SELECT id FROM zerobus.streams'),
	'1,1', 'both streams have id 1');
wait_processes('shop', 'zerobus launcher,zerobus worker',
	'database shop has a launcher and a worker');
wait_processes('billing', 'zerobus launcher,zerobus worker',
	'database billing has a launcher and a worker');

write_rows('shop', 1, 5);
write_rows('billing', 1, 7);
is(target_ids('shop'), '1,2,3,4,5', 'the rows of shop land in its target');
is(target_ids('billing'), '1,2,3,4,5,6,7',
	'the rows of billing land in its target');
is( $node->safe_psql('shop',
		'SELECT name, records_acked FROM zerobus.stat_streams'),
	's_shop|5',
	'stat_streams of shop shows its stream alone, with its own counters');
is( $node->safe_psql('billing',
		'SELECT name, records_acked FROM zerobus.stat_streams'),
	's_billing|7',
	'and that of billing its own');
is($node->safe_psql('postgres', 'SELECT count(*) FROM zerobus.stat_streams'),
	'0', 'database postgres, without streams, shows none');

wait_processes('plain', '', 'a database without the extension keeps no process');
wait_processes('nostreams', '',
	'a database with the extension but no stream keeps no process');
$node->safe_psql('postgres', 'DROP DATABASE plain');
$node->safe_psql('postgres', 'DROP DATABASE nostreams');
pass('both can be dropped while the server runs');

# Slot names are unique in the cluster, and a stream's is named after it.
my ($ret, $stdout, $stderr) = $node->psql('billing',
	"SELECT zerobus.create_stream('s_shop', 'pub', 'http://127.0.0.1:1', 'http://127.0.0.1:1', 'c', 's', 'main', insecure => true)"
);
like(
	$stderr,
	qr/replication slot "zerobus_s_shop" of stream "s_shop" already exists\nDETAIL:  It is a slot of database "shop"/,
	'a stream name taken in another database is refused, naming it');

# A database created while the server runs.
setup_database('late');
create_stream($node, $emu, 's_late', 'pub', dbname => 'late');
wait_streaming($node, 's_late', 'late');
write_rows('late', 1, 3);
is(target_ids('late'), '1,2,3',
	'a stream of a database created after start runs without a restart');

# Three databases streaming at once under load (one transaction a row, from
# a background session in each), while a fourth, whose stream ran, is
# dropped: its stream paused, its launcher gone, DROP DATABASE.  The three
# streams flow on and every row of each lands in its own target.
setup_database('doomed');
create_stream($node, $emu, 's_doomed', 'pub', dbname => 'doomed');
wait_streaming($node, 's_doomed', 'doomed');
my %load;
for my $db (qw(shop billing late))
{
	$load{$db} = {};
	$load{$db}{run} = IPC::Run::start(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr($db),
			'-c',
			"DO \$\$ BEGIN FOR i IN 1001..3000 LOOP INSERT INTO t_$db VALUES (i, 'load'); COMMIT; END LOOP; END \$\$"
		],
		'>', \$load{$db}{out}, '2>', \$load{$db}{err});
}
$node->safe_psql('doomed', "SELECT zerobus.pause_stream('s_doomed')");
wait_processes('doomed', '', 'the paused stream of doomed leaves no process');
$node->safe_psql('postgres', 'DROP DATABASE doomed');
for my $db (qw(shop billing late))
{
	ok($load{$db}{run}->finish, "the load of database $db committed")
	  or diag $load{$db}{err};
	write_rows($db, 4001, 4002);
	is(target_ids($db), source_ids($db),
		"database $db: every row landed while doomed was dropped");
}
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'zerobus_s_doomed'"
	),
	'0',
	'the dropped database took its stream\'s slot along');

# DROP EXTENSION with streams: refused, the slots would stay behind.
($ret, $stdout, $stderr) = $node->psql('billing', 'DROP EXTENSION zerobus');
like(
	$stderr,
	qr/ERROR:  cannot drop extension zerobus while streams exist\nDETAIL:  Database "billing" has 1 stream, whose replication slot would be left behind holding WAL\.\nHINT:  Drop the streams first/,
	'DROP EXTENSION with a stream is refused');
($ret, $stdout, $stderr) =
  $node->psql('billing', 'DROP SCHEMA zerobus CASCADE');
like($stderr, qr/cannot drop extension zerobus while streams exist/,
	'and so is DROP SCHEMA zerobus CASCADE');
wait_processes('billing', 'zerobus launcher,zerobus worker',
	'the stream of billing still runs');

$node->safe_psql('billing', "SELECT zerobus.drop_stream('s_billing')");
wait_processes('billing', '',
	'once its stream is dropped, billing keeps no launcher and no worker');
$node->safe_psql('billing', 'DROP EXTENSION zerobus');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'zerobus_s_billing'"
	),
	'0',
	'DROP EXTENSION after drop_stream leaves no slot');
wait_processes('shop', 'zerobus launcher,zerobus worker',
	'the stream of shop runs on');

# DROP DATABASE of a database with a running stream fails on its active
# slot; with the stream paused, the launcher leaves and DROP DATABASE drops
# the slot with the database.
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE late');
like(
	$stderr,
	qr/database "late" is used by an active logical replication slot/,
	'DROP DATABASE of a database with a running stream is refused');
$node->safe_psql('late', "SELECT zerobus.pause_stream('s_late')");
wait_processes('late', '',
	'a database whose streams are all paused keeps no process');
$node->safe_psql('postgres', 'DROP DATABASE late');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'zerobus_s_late'"
	),
	'0',
	'DROP DATABASE drops the paused stream\'s slot');

# zerobus.databases follows a reload: shop is served no more, then again.
$node->append_conf('postgresql.conf', "zerobus.databases = 'postgres'\n");
$node->reload;
wait_processes('shop', '', 'a database taken out of zerobus.databases stops');
($ret, $stdout, $stderr) = $node->psql(
	'shop',
	"SELECT zerobus.create_stream('s_shop2', 'pub', 'http://127.0.0.1:1', 'http://127.0.0.1:1', 'c', 's', 'main', insecure => true, enabled => false)"
);
like(
	$stderr,
	qr/WARNING:  stream "s_shop2" will not run: database "shop" is not served by the zerobus launcher\nDETAIL:  zerobus.databases is 'postgres'\./,
	'create_stream there warns that it will not run');
$node->safe_psql('shop', "SELECT zerobus.drop_stream('s_shop2')");
$node->append_conf('postgresql.conf', "zerobus.databases = '*'\n");
$node->reload;
wait_processes('shop', 'zerobus launcher,zerobus worker',
	'served again, its stream runs again');
write_rows('shop', 6, 8);
is(target_ids('shop'), source_ids('shop'), 'and its rows land');

$node->stop;
stop_emulator($emu);
done_testing();
