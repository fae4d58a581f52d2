# Copyright (c) zerobus authors
#
# The launcher and the stream API around it, without a Zerobus server: the
# stream points at a closed loopback port, so its worker never streams, but
# it runs.  Checks that the launcher starts a worker per enabled stream,
# stops it on pause and drop, restarts it on resume and alter, drops the
# slot a rolled back create_stream leaves, and that no secret reaches the
# server log.  Also that without shared_preload_libraries the SQL API
# refuses to run with a hint while the output plugin keeps working.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $secret = 'launcher-test-secret-8d1f';

my $node = PostgreSQL::Test::Cluster->new('launcher');
$node->init(allows_streaming => 'logical');
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'zerobus'
output_plugin_libraries = 'pgoutput, test_decoding, zerobus'
zerobus.restart_backoff_max = 2s
log_statement = none
log_min_error_statement = error
});
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION zerobus;
	CREATE TABLE t (id int PRIMARY KEY);
	CREATE PUBLICATION pub FOR TABLE t;
});

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'zerobus cluster launcher' AND datname IS NULL",
		'1'),
	'the cluster launcher runs, connected to no database');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'zerobus launcher'",
		'0'),
	'no database launcher stays where no stream runs');

# The pid of the stream's worker process, '' if none.
sub worker_pids
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'zerobus worker'"
	);
}

sub wait_worker_count
{
	my ($n, $what) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'zerobus worker'",
			$n),
		$what);
}

$node->safe_psql(
	'postgres', qq{
	SELECT zerobus.create_stream('s1', 'pub', 'http://127.0.0.1:1',
		'http://127.0.0.1:1', 'client', '$secret', 'main', insecure => true);
});
wait_worker_count(1, 'create_stream starts a worker');
my $first = worker_pids();
is( $node->safe_psql(
		'postgres',
		"SELECT datname FROM pg_stat_activity WHERE backend_type = 'zerobus launcher'"),
	'postgres',
	'through a launcher for its database');

$node->safe_psql('postgres', "SELECT zerobus.pause_stream('s1')");
wait_worker_count(0, 'pause_stream stops it');
is($node->safe_psql('postgres', "SELECT state FROM zerobus.stat_streams"),
	'paused', 'stat_streams shows it paused');

$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");
wait_worker_count(1, 'resume_stream starts it again');
my $resumed = worker_pids();
isnt($resumed, $first, 'by a new worker');

$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', batch_max_records => 10)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 AND bool_and(pid <> $resumed) FROM pg_stat_activity WHERE backend_type = 'zerobus worker'"
	),
	'alter_stream restarts the worker');

# A stream paused by an error gets no worker until resumed.
$node->safe_psql('postgres',
	"UPDATE zerobus.streams SET paused_reason = 'rejected', paused_at = now(); SELECT zerobus.alter_stream('s1')"
);
wait_worker_count(0, 'a stream paused by an error has no worker');
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");
wait_worker_count(1, 'until resumed');

# A drop_stream rolled back to a savepoint stops the worker meanwhile, but
# leaves the stream and its slot, and the worker comes back.
$node->safe_psql(
	'postgres', q{
	BEGIN;
	SAVEPOINT sp;
	SELECT zerobus.drop_stream('s1');
	ROLLBACK TO SAVEPOINT sp;
	COMMIT;
});
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.streams JOIN pg_replication_slots USING (slot_name)"
	),
	'1',
	'a drop_stream rolled back to a savepoint keeps the stream and its slot');
wait_worker_count(1, 'and the stream gets a worker again');

$node->safe_psql('postgres', "SELECT zerobus.drop_stream('s1')");
wait_worker_count(0, 'drop_stream stops the worker');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_replication_slots"),
	'0',
	'and drops the slot');

# A rolled back create_stream leaves its slot, which the launcher drops;
# a slot someone else named like a stream's, with the same plugin, is not
# the launcher's to drop.
$node->safe_psql('postgres',
	"SELECT pg_create_logical_replication_slot('zerobus_mine', 'zerobus')");
$node->safe_psql(
	'postgres', qq{
	BEGIN;
	SELECT zerobus.create_stream('s2', 'pub', 'http://127.0.0.1:1',
		'http://127.0.0.1:1', 'client', '$secret', 'main', insecure => true,
		enabled => false);
	ROLLBACK;
});
ok( $node->poll_query_until(
		'postgres',
		"SELECT string_agg(slot_name, ',') FROM pg_replication_slots",
		'zerobus_mine'),
	'the launcher drops the slot of a rolled back create_stream, and only that');

# A slot that belongs to no stream but is in use is left alone, and so is
# any slot not named like a stream's.
$node->safe_psql('postgres',
	"SELECT pg_create_logical_replication_slot('other', 'zerobus')");
$node->safe_psql(
	'postgres', qq{
	SELECT zerobus.create_stream('s3', 'pub', 'http://127.0.0.1:1',
		'http://127.0.0.1:1', 'client', '$secret', 'main', insecure => true,
		enabled => false);
});
$node->safe_psql('postgres', "SELECT zerobus.alter_stream('s3')");
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots"
	),
	'other,zerobus_mine,zerobus_s3',
	'slots of streams and other slots stay');

# Errors about a stream do not show its secret.
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT zerobus.create_stream('s3', 'pub', 'http://127.0.0.1:1', 'http://127.0.0.1:1', 'client', '$secret', 'main', insecure => true)"
);
like($stderr, qr/stream "s3" already exists/, 'duplicate stream refused');
$node->safe_psql('postgres', "SELECT zerobus.drop_stream('s3')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'zerobus%launcher'",
		'1'),
	'the database launcher exits with the last stream, the cluster launcher stays');

$node->stop;
unlike(slurp_file($node->logfile), qr/\Q$secret\E/,
	'the secret never reaches the server log');

# Without shared_preload_libraries
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init(allows_streaming => 'logical');
$plain->append_conf('postgresql.conf',
	"output_plugin_libraries = 'pgoutput, test_decoding, zerobus'");
$plain->start;
$plain->safe_psql(
	'postgres', q{
	CREATE EXTENSION zerobus;
	CREATE TABLE t (id int PRIMARY KEY);
	CREATE PUBLICATION pub FOR TABLE t;
});
($ret, $stdout, $stderr) = $plain->psql('postgres',
	"SELECT zerobus.create_stream('s', 'pub', 'https://e.example.com', 'https://w.example.com', 'c', 's', 'main')"
);
like(
	$stderr,
	qr/ERROR:  zerobus must be loaded via shared_preload_libraries\nHINT:  Add zerobus to shared_preload_libraries in postgresql.conf and restart the server\./,
	'the stream API needs preloading');
is( $plain->safe_psql(
		'postgres', q{
	SELECT pg_create_logical_replication_slot('s', 'zerobus') IS NOT NULL;
	INSERT INTO t VALUES (1);
	SELECT count(*) > 0 FROM pg_logical_slot_get_binary_changes('s', NULL, NULL,
		'publication_names', 'pub');
}), "t\nt", 'the output plugin works without preloading');
$plain->stop;

done_testing();
