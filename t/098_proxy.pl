# Copyright (c) zerobus authors
#
# A proxy between the worker and Databricks: with zerobus.proxy set, the
# gRPC calls go through a CONNECT tunnel of a real HTTP proxy (tinyproxy,
# from Debian's packages, on loopback) to the emulator's TLS port (HTTP/2
# with ALPN inside the tunnel, the certificate still verified), and the
# token requests through the proxy as well.  With the proxy gone the worker
# says why and the slot waits; back, everything arrives.  zerobus.no_proxy
# sends a host around the proxy.  The setting is for superusers' eyes only.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $dir = make_test_certs();
my $node = zb_node('proxy');
my $emu = start_emulator(
	args => [ '--tls-cert', "$dir/server.pem", '--tls-key', "$dir/server.key" ]);
my $tls_port = $emu->{grpc_tls_port};

# tinyproxy in the foreground; without a ConnectPort line it tunnels to
# any port.
my $proxy_port = PostgreSQL::Test::Cluster::get_free_port();
my $proxy_log = "$dir/tinyproxy.log";
PostgreSQL::Test::Utils::append_to_file("$dir/tinyproxy.conf", qq{Port $proxy_port
Listen 127.0.0.1
Timeout 600
MaxClients 100
Allow 127.0.0.1
LogFile "$proxy_log"
LogLevel Connect
DisableViaHeader Yes
});
my $proxy;

sub start_proxy
{
	$proxy = IPC::Run::start([ 'tinyproxy', '-d', '-c', "$dir/tinyproxy.conf" ],
		'<', \undef, '>', "$dir/tinyproxy.out", '2>', "$dir/tinyproxy.err");
	ok( poll_until(
			sub {
				IO::Socket::INET->new(
					PeerAddr => '127.0.0.1',
					PeerPort => $proxy_port,
					Proto => 'tcp');
			}),
		'tinyproxy listens');
	return;
}

sub proxy_log { return -f $proxy_log ? slurp_file($proxy_log) : ''; }

start_proxy();
$node->safe_psql('postgres', q{
	CREATE TABLE t1 (id int PRIMARY KEY, val text);
	CREATE PUBLICATION pub FOR TABLE t1;
});
$node->safe_psql('postgres',
	"ALTER SYSTEM SET zerobus.proxy = 'http://127.0.0.1:$proxy_port'; SELECT pg_reload_conf()");
declare_target($node, $emu, 't1', 'main.cdc.t1');
create_stream(
	$node, $emu, 's1', 'pub',
	endpoint => "'https://127.0.0.1:$tls_port'",
	ca_file => "'$dir/ca.pem'");
wait_streaming($node, 's1');

$node->safe_psql('postgres',
	"INSERT INTO t1 SELECT g, 'v' || g FROM generate_series(1, 200) g; UPDATE t1 SET val = 'u' WHERE id < 10");
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_acked($node, 's1', $lsn);
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val', 'id'),
	'through the proxy: Delta table equals the source table');
check_slot_behind_acks($node, 's1');
like(proxy_log(), qr/CONNECT .*127\.0\.0\.1:$tls_port/,
	'the gRPC calls went through a CONNECT tunnel of the proxy');
like(proxy_log(), qr{/oidc/v1/token},
	'the token request went through the proxy');

# Non-superusers cannot read the setting (it may hold credentials).
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW zerobus.proxy',
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied|must be superuser|privileges of pg_read_all_settings/,
	'a non-superuser cannot read zerobus.proxy');

# A value that is no proxy URL is refused with the reason.
($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET zerobus.proxy = 'proxy.example.com:3128'");
like($err, qr/invalid value for parameter "zerobus\.proxy".*\n.*DETAIL:  The proxy must be a URL/,
	'a proxy without a scheme is refused');

# The proxy gone: the worker names the failure, the slot waits.
$proxy->kill_kill;
$node->safe_psql('postgres', "INSERT INTO t1 VALUES (1000, 'while the proxy is down')");
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT last_error ~* 'proxy|connect' FROM zerobus.stat_streams WHERE name = 's1'"),
	'proxy down: last_error says why')
  or diag $node->safe_psql('postgres', "SELECT * FROM zerobus.stat_streams WHERE name = 's1'");
is( $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn < '$lsn' FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"),
	't', 'proxy down: the slot waits');

# Back: everything arrives.
start_proxy();
wait_acked($node, 's1', $lsn);
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val', 'id'),
	'proxy back: Delta table equals the source table');

# no_proxy naming the host: the streams opened after the proxy is gone go
# around it.
$node->safe_psql('postgres',
	"ALTER SYSTEM SET zerobus.no_proxy = '127.0.0.1'; SELECT pg_reload_conf()");
$proxy->kill_kill;
$node->safe_psql('postgres', "INSERT INTO t1 VALUES (2000, 'around the proxy')");
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_acked($node, 's1', $lsn);
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val', 'id'),
	'no_proxy: Delta table equals the source table with the proxy down');

stop_emulator($emu);
$node->stop;
done_testing();
