# Copyright (c) zerobus authors
#
# TLS: the worker reaches the emulator's TLS port (ALPN h2) over https://,
# trusting a test CA made here with the openssl command (no key is kept in
# the repository), and its changes reach the Delta table.  With the stream
# switched to an unrelated CA the handshake must fail: stat_streams shows a
# certificate error, nothing more is delivered and the slot stays behind
# the undelivered transaction; back on the right CA (now naming the host
# localhost) the stream catches up.  Each Zerobus stream has a TLS
# connection of its own, unless the stream shares one (shared_connection).
# Plain http:// to the TLS port without insecure is refused by
# create_stream.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $dir = make_test_certs();

my $node = zb_node('tls');
my $emu = start_emulator(
	args => [ '--tls-cert', "$dir/server.pem", '--tls-key', "$dir/server.key" ]);
ok($emu->{grpc_tls_port}, 'emulator serves TLS on a port of its own');
my $tls_port = $emu->{grpc_tls_port};

setup_t1_t2($node, $emu);

# http:// to the TLS port without insecure: refused up front.
my ($ret, $stdout, $stderr) = $node->psql(
	'postgres', qq{
	SELECT zerobus.create_stream('plain', 'pub',
		endpoint => 'http://127.0.0.1:$tls_port',
		workspace_url => 'https://127.0.0.1:$emu->{http_port}',
		client_id => 'c', client_secret => 's', target_catalog => 'main')});
isnt($ret, 0, 'create_stream refuses http:// without insecure');
like(
	$stderr,
	qr/invalid endpoint "http:\/\/127\.0\.0\.1:$tls_port".*\n.*DETAIL:  Plain http:\/\/ is only allowed to a loopback host and with insecure => true\./,
	'the error names the endpoint and says why');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.stat_streams WHERE name = 'plain'"),
	'0',
	'no stream was created');

# https:// with the test CA.  The workspace URL is the emulator's plain HTTP
# port, which takes insecure; the gRPC endpoint is still verified.
create_stream(
	$node, $emu, 's1', 'pub',
	endpoint => "'https://127.0.0.1:$tls_port'",
	ca_file => "'$dir/ca.pem'");
wait_streaming($node, 's1');

$node->safe_psql(
	'postgres', q{
	INSERT INTO t1 SELECT g, 'v' || g FROM generate_series(1, 300) g;
	BEGIN;
	UPDATE t1 SET val = 'changed' WHERE id % 5 = 0;
	DELETE FROM t1 WHERE id > 250;
	COMMIT;
	UPDATE t1 SET id = 1000 WHERE id = 1;
});
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_acked($node, 's1', $lsn);
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val', 'id'),
	'Delta table equals the source table over TLS');
check_slot_behind_acks($node, 's1');
is( $node->safe_psql(
		'postgres',
		"SELECT records_acked = records_sent, last_error IS NULL FROM zerobus.stat_streams WHERE name = 's1'"
	),
	't|t',
	'every record sent was acked, with no error');


# An unrelated CA: the server certificate must not verify.
my $delivered = source_rows($node, 't1', 'id, val', 'id');
my $acked = $node->safe_psql('postgres',
	"SELECT records_acked FROM zerobus.stat_streams WHERE name = 's1'");
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', ca_file => '$dir/other_ca.pem')");
$node->safe_psql(
	'postgres', q{
	INSERT INTO t1 VALUES (2000, 'untrusted');
	UPDATE t1 SET val = 'untrusted' WHERE id = 2;
	DELETE FROM t1 WHERE id = 3;
});
my $bad_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT last_error ~* 'certificate' FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'stat_streams shows the certificate error')
  or diag $node->safe_psql('postgres',
	"SELECT * FROM zerobus.stat_streams WHERE name = 's1'");
is( $node->safe_psql(
		'postgres',
		"SELECT s.confirmed_flush_lsn < '$bad_lsn', z.records_acked = $acked FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name) WHERE z.name = 's1'"
	),
	't|t',
	'slot stays behind the undelivered transaction, nothing more acked');
check_slot_behind_acks($node, 's1');
is_deeply(fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	$delivered, 'nothing reached the Delta table through the untrusted TLS');

# Back on the right CA, naming the host localhost (the certificate's DNS
# name): the stream resends from the slot and catches up.
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', endpoint => 'https://localhost:$tls_port', ca_file => '$dir/ca.pem')"
);
wait_acked($node, 's1', $bad_lsn);
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val', 'id'),
	'Delta table equals the source table once the CA is right again');
check_slot_behind_acks($node, 's1');

# Established TCP connections to the emulator's TLS port (the worker's).
sub tls_connections
{
	my $out = `ss -Htn state established '( dport = :$tls_port )'`;
	return scalar grep { /\S/ } split /\n/, $out;
}

# t1 and t2 both have a live Zerobus stream: one connection each, by
# default; one for both with shared_connection.
$node->safe_psql('postgres', "INSERT INTO t2 VALUES ('two', 1)");
wait_acked($node, 's1', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
ok(poll_until(sub { tls_connections() == 2 }),
	'a TLS connection per Zerobus stream by default')
  or diag 'connections: ' . tls_connections();
my $pid = stream_stat($node, 's1', 'pid');
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', shared_connection => true)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT pid <> $pid AND state = 'streaming' FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'shared_connection: the worker restarted');
$node->safe_psql('postgres',
	"INSERT INTO t1 VALUES (3000, 'shared'); INSERT INTO t2 VALUES ('shared', 2)");
wait_acked($node, 's1', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
ok(poll_until(sub { tls_connections() == 1 }),
	'shared_connection: both streams on one TLS connection')
  or diag 'connections: ' . tls_connections();

stop_emulator($emu);
$node->stop;
done_testing();
