# Copyright (c) zerobus authors
#
# The client's conduct against the emulator's model of the real Zerobus
# service (--profile real: 150-500 ms to durability, per-stream quotas,
# write operation required in the token), as the official SDKs behave:
#  - the token asks for the zerobuswrite operation, requests carry our
#    user-agent;
#  - streams the server ends after their lifetime (with and without a
#    CloseStreamSignal, with UNAVAILABLE or OK) are reopened alone, their
#    unacked requests sent again, with no session reset; retired streams
#    are half-closed, not cancelled;
#  - PERMISSION_DENIED at create is retried with a fresh token;
#  - an HTTP status without grpc-status (a proxy's 503) is a retryable
#    UNAVAILABLE;
#  - a request over the service's message limit gets INVALID_ARGUMENT and
#    pauses its table, losing nothing;
#  - a busy table is spread over several streams, a large snapshot over
#    all it may have at once;
#  - a server that ends a call without RST_STREAM (which libcurl 7.88
#    cannot see) is caught by the ack timeout.
# After each, the Delta tables folded equal the source tables and the slot
# never passed what Zerobus acked.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('real');
my $emu = start_emulator(args => [ '--profile', 'real' ]);

setup_t1_t2($node, $emu);
create_stream($node, $emu, 's1', 'pub');
wait_streaming($node, 's1');

my $next_id = 1;
sub write_rows { return write_t1_t2($node, \$next_id, $_[0]); }
sub zb_stat { return stream_stat($node, 's1', $_[0]); }
sub emu_stat { return emulator_api($emu, 'GET', '/admin/stats')->{ $_[0] }; }
sub wait_s1 { return wait_stat($node, 's1', @_); }

# Everything written so far reaches Zerobus and equals the source tables.
sub check_all
{
	my ($label, $lsn) = @_;
	return check_tables($node, $emu, 's1', $label, $lsn,
		[ 't1', 'main.cdc.t1', 'id, val', 'id' ],
		[ 't2', 'main.cdc.t2', 'k, n', 'k' ]);
}

# Writes $n rows (default 5) every 100 ms until $cond (a code ref) holds;
# returns the last WAL position written.
sub write_until
{
	my ($cond, $what, $n) = @_;
	my $lsn;
	ok(poll_until(sub { $lsn = write_rows($n // 5); $cond->() }), $what);
	return $lsn;
}

# The real profile's write operation and identity: the stream works at
# all only because the token asked for zerobuswrite.
check_all('real profile', write_rows(200));
my ($live) = @{ emulator_api($emu, 'GET', '/admin/streams') };
like($live->{user_agent}, qr{^zerobus-postgres/\d+\.\d+\.\d+ PostgreSQL/\d+},
	'gRPC calls carry our user-agent');
like(emu_stat('token_user_agent'), qr{^zerobus-postgres/},
	'token requests carry our user-agent');

# Stream lifetime: the server ends every stream after 1.5 s, with
# UNAVAILABLE and no warning.  Streams owing acks are reopened alone.  (A
# lifetime applies to streams created after it is set: an UNAVAILABLE
# request ends the live ones.)
emulator_api($emu, 'PUT', '/admin/settings', { stream_lifetime_ms => 1500 });
my $rc = zb_stat('reconnects');
my $ro = zb_stat('stream_reopens');
emulator_api($emu, 'POST', '/admin/faults', { table => $_, unavailable => 1 })
  for ('main.cdc.t1', 'main.cdc.t2');
my $expired = emu_stat('streams_expired');
my $lsn = write_until(
	sub { emu_stat('streams_expired') >= $expired + 4 },
	'lifetime: the server ended streams');
wait_s1("stream_reopens > $ro", 'lifetime: streams owing acks were reopened');
check_all('lifetime', $lsn);
is(zb_stat('reconnects'), $rc, 'lifetime: no session reset');

# The same ended with OK while requests are unacked: also reopened.
emulator_api($emu, 'PUT', '/admin/settings', { stream_end_status => 'ok' });
$ro = zb_stat('stream_reopens');
$expired = emu_stat('streams_expired');
$lsn = write_until(sub { emu_stat('streams_expired') >= $expired + 4 },
	'lifetime, OK: the server ended streams');
check_all('lifetime, OK', $lsn);
is(zb_stat('reconnects'), $rc, 'lifetime, OK: no session reset');

# With a CloseStreamSignal 1 s before the end: the worker moves to a new
# stream at the signal and half-closes the old one once it is acked, so
# the server ends it with OK; no stream is cancelled.
emulator_api($emu, 'PUT', '/admin/settings',
	{ stream_lifetime_ms => 2500, stream_close_signal_ms => 1000,
	  stream_end_status => 'unavailable' });
my $signals = emu_stat('close_signals_sent');
my $cancelled = emu_stat('streams_failed');
$lsn = write_until(sub { emu_stat('close_signals_sent') >= $signals + 4 },
	'close signal: the server announced closes');
check_all('close signal', $lsn);
is(emu_stat('streams_failed'), $cancelled,
	'close signal: retired streams were half-closed, none cancelled');
is(zb_stat('reconnects'), $rc, 'close signal: no session reset');
emulator_api($emu, 'PUT', '/admin/settings',
	{ stream_lifetime_ms => 0, stream_close_signal_ms => 0 });

# PERMISSION_DENIED when a stream is created with a cached token: the
# token is fetched again and the create retried.  (An UNAVAILABLE
# request ends t1's live stream, so that a new one is created.)
my $tokens = emu_stat('tokens_issued');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', unavailable => 1, permission_denied_on_create => 1 });
check_all('permission denied once', write_rows(50));
ok(emu_stat('tokens_issued') > $tokens,
	'permission denied once: a fresh token was fetched');
is(zb_stat('coalesce(cardinality(paused_tables), 0)'), '0',
	'permission denied once: no table paused');

# Fresh tokens refused twice in a row (revoked a moment after they were
# issued, as a rotation does): each reopen fetches another one, after a
# backoff, and the third is taken.  Neither the table nor the stream stops.
$tokens = emu_stat('tokens_issued');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', unavailable => 1, unauthenticated => 2 });
check_all('fresh token refused twice', write_rows(50));
ok(emu_stat('tokens_issued') >= $tokens + 2,
	'fresh token refused twice: a token was fetched for each reopen');
is( $node->safe_psql('postgres',
		"SELECT state || '/' || coalesce(cardinality(paused_tables), 0) FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'streaming/0',
	'fresh token refused twice: the stream streams, no table paused');

# Denied every time: after its reopens the table pauses alone, naming it.
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', unavailable => 1, permission_denied_on_create => JSON::PP::true });
$lsn = write_rows(50);
like(wait_table_paused($node, 's1', 'public.t1'),
	qr/status 7 \(PERMISSION_DENIED\)/,
	'permission denied always: t1 paused, the reason names the status');
is( $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn < '$lsn' FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	),
	't', 'permission denied always: the slot waits for t1');
emulator_api($emu, 'DELETE', '/admin/faults');
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");
check_all('permission denied, resumed', write_rows(10));

# A proxy's HTTP 503 without grpc-status when a stream is created: mapped
# to UNAVAILABLE and retried (the stream reopened with a backoff).
$ro = zb_stat('stream_reopens');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t2', unavailable => 1, http_status_on_create => 503 });
$lsn = write_rows(50);
wait_s1(
	"stream_reopens >= $ro + 2 AND last_error ~ 'status 14 \\(UNAVAILABLE\\).*HTTP status 503 without a grpc-status'",
	'HTTP 503: the worker retries, last_error says why');
emulator_api($emu, 'DELETE', '/admin/faults');
check_all('HTTP 503', $lsn);

# A request over the service's message limit (lowered to 64 KiB here):
# INVALID_ARGUMENT pauses that table alone, nothing is lost, and it flows
# again once the limit allows and the stream is resumed.
emulator_api($emu, 'PUT', '/admin/settings', { max_message_bytes => 65536 });
$node->safe_psql('postgres',
	"INSERT INTO t2 SELECT 'big' || g || repeat('x', 200), g FROM generate_series(1, 2000) g");
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
like(wait_table_paused($node, 's1', 'public.t2'),
	qr/status 3 \(INVALID_ARGUMENT\).*Batch size exceeds maximum allowed size/,
	'oversize: t2 paused, the reason names the limit');
is( $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn < '$lsn' FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	),
	't', 'oversize: the slot waits for t2');
emulator_api($emu, 'PUT', '/admin/settings', { max_message_bytes => 10485760 });
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");
check_all('oversize, resumed', write_rows(10));

# A busy table is spread over several Zerobus streams: with a per-stream
# quota of 500 records/s, a few thousand rows a second take several
# streams of t1 at once; everything arrives and folds to the source.
$node->safe_psql('postgres',
	"ALTER SYSTEM SET zerobus.stream_max_records_per_second = 500; SELECT pg_reload_conf()");
sub live_streams
{
	my ($table) = @_;
	return scalar grep { $_->{table} eq $table }
	  @{ emulator_api($emu, 'GET', '/admin/streams') };
}
$lsn = write_until(sub { live_streams('main.cdc.t1') >= 3 },
	'several streams: t1 is spread over three streams or more', 500);
check_all('several streams', $lsn);
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET zerobus.stream_max_records_per_second; SELECT pg_reload_conf()");

# A server that ends a call with trailers but no RST_STREAM while the
# client still sends: libcurl 7.88 never reports it, so the ack timeout
# catches the silent stream and the session starts again.
my $pid = zb_stat('pid');
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', ack_timeout => 2000)");
wait_s1("pid <> $pid AND state = 'streaming'", 'no RST: worker restarted');
$rc = zb_stat('reconnects');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', unavailable => 1, rst_after_trailers => JSON::PP::false });
$lsn = write_rows(50);
wait_s1("reconnects > $rc AND last_error ~ 'no ack'",
	'no RST: the ack timeout resets the session');
emulator_api($emu, 'DELETE', '/admin/faults');
check_all('no RST', $lsn);

# A snapshot that one stream would carry in more than ten seconds at its
# quota comes as a bulk: the table gets every stream it may have when its
# snapshot starts, not a stream at first and more as the rate shows (here
# 3,000 rows at 100 records/s a stream: 30 s of one).
$node->safe_psql(
	'postgres', q{
	ALTER SYSTEM SET zerobus.stream_max_records_per_second = 100;
	ALTER SYSTEM SET zerobus.max_streams_per_table = 4;
	SELECT pg_reload_conf();
	CREATE TABLE t3 (id int PRIMARY KEY, val text);
	INSERT INTO t3 SELECT g, 'bulk ' || g FROM generate_series(1, 3000) g;
	ANALYZE t3;
	CREATE PUBLICATION pub3 FOR TABLE t3;
});
declare_target($node, $emu, 't3', 'main.cdc.t3');
my $log_offset = -s $node->logfile;
create_stream($node, $emu, 's3', 'pub3');
wait_stat($node, 's3', "snapshot_state = 'done'", 'bulk snapshot: done');
like(
	slurp_file($node->logfile, $log_offset),
	qr/the records of table main\.cdc\.t3 now go over 4 Zerobus streams \(a bulk of about 3000 records comes\)/,
	'bulk snapshot: the table went over every stream it may have at once');
cmp_ok(emu_stat('tables')->{'main.cdc.t3'}{streams_opened},
	'>=', 4, 'bulk snapshot: four streams carried it');
check_tables($node, $emu, 's3', 'bulk snapshot',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
	[ 't3', 'main.cdc.t3', 'id, val', 'id' ]);

stop_emulator($emu);
$node->stop;
done_testing();
