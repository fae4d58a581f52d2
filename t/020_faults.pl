# Copyright (c) zerobus authors
#
# Transient faults of Zerobus, injected with the emulator's fault knobs on a
# stream of two tables, one after the other: the connection dropped after
# some records, UNAVAILABLE mid-stream and on create (a stream reopened
# alone; a session reset when that keeps failing), acks withheld, acks
# delayed, an ack timeout, CloseStreamSignal, tokens expired early, the
# emulator killed and restarted on the same ports and data directory, and
# the token endpoint answering 503.  The
# worker must recover from each by itself: after every scenario the Delta
# tables, with the change records applied in (_commit_lsn, _seq) order,
# equal the source tables, and the slot never confirmed past what Zerobus
# acked.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('faults');
my $emu = start_emulator();

setup_t1_t2($node, $emu);
create_stream($node, $emu, 's1', 'pub');

my $next_id = 1;
sub write_rows { return write_t1_t2($node, \$next_id, $_[0]); }

sub zb_stat { return stream_stat($node, 's1', $_[0]); }

sub slot_lsn
{
	return $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name) WHERE z.name = 's1'"
	);
}

sub wait_s1 { return wait_stat($node, 's1', @_); }

# Waits until the emulator's counter $key exceeds $min.
sub wait_emulator_stat
{
	my ($key, $min, $what) = @_;
	return ok(
		poll_until(
			sub { emulator_api($emu, 'GET', '/admin/stats')->{$key} > $min }
		),
		$what);
}

# Everything written so far reaches Zerobus and equals the source tables.
sub check_all
{
	my ($label, $lsn) = @_;
	wait_acked($node, 's1', $lsn);
	wait_s1("state = 'streaming'", "$label: stream is streaming again");
	return check_tables($node, $emu, 's1', $label, $lsn,
		[ 't1', 'main.cdc.t1', 'id, val', 'id' ],
		[ 't2', 'main.cdc.t2', 'k, n', 'k' ]);
}

# A transient fault: reconnects must grow and last_error must match.
sub check_recovered
{
	my ($label, $reconnects, $error, $lsn) = @_;
	wait_s1("reconnects > $reconnects AND last_error ~ '$error'",
		"$label: worker reconnected, last_error says why");
	check_all($label, $lsn);
	return;
}

# A fault of one Zerobus stream: the worker reopens that stream alone
# (stream_reopens grows by at least $n from $reopens), last_error says why,
# and the session goes on (reconnects stays $reconnects).
sub check_reopened
{
	my ($label, $reopens, $reconnects, $n, $error, $lsn) = @_;
	wait_s1("stream_reopens >= $reopens + $n AND last_error ~ '$error'",
		"$label: worker reopened the stream, last_error says why");
	check_all($label, $lsn);
	is(zb_stat('reconnects'), $reconnects, "$label: no reconnect needed");
	return;
}

wait_s1("state = 'streaming'", 'worker is streaming');
check_all('baseline', write_rows(200));
is(zb_stat('reconnects'), '0', 'baseline: no reconnect');

# Connection dropped after some records: every later request of a stream
# of t1 kills the connection, until the fault is cleared.  The worker
# reopens the stream, or resets the session when the reopens make no
# progress (a request of more than 50 records).
my $rc = zb_stat('reconnects');
my $ro = zb_stat('stream_reopens');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', drop_after_records => 50 });
my $lsn = write_rows(300);
wait_s1("(reconnects > $rc OR stream_reopens > $ro) AND last_error ~ 'connection failed'",
	'drop: worker reopens or reconnects, last_error says why');
emulator_api($emu, 'DELETE', '/admin/faults');
check_all('drop', $lsn);
ok(emulator_api($emu, 'GET', '/admin/stats')->{connections_dropped} > 0,
	'drop: the emulator dropped the connection');

# UNAVAILABLE on the next request of a live stream (counted: clears itself):
# the stream is reopened alone and its unacked requests sent again.
$rc = zb_stat('reconnects');
$ro = zb_stat('stream_reopens');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t2', unavailable => 1 });
check_reopened('unavailable', $ro, $rc, 1, 'status 14', write_rows(100));

# UNAVAILABLE mid-stream, then twice on create: three reopens in a row,
# with a backoff, still within the session.
$rc = zb_stat('reconnects');
$ro = zb_stat('stream_reopens');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', unavailable => 1, unavailable_on_create => 2 });
check_reopened('unavailable on create', $ro, $rc, 3, 'status 14', write_rows(100));

# UNAVAILABLE on every create: after four reopens without an ack the
# session fails and starts again, until the fault is cleared.
$rc = zb_stat('reconnects');
$ro = zb_stat('stream_reopens');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', unavailable => 1, unavailable_on_create => JSON::PP::true });
$lsn = write_rows(100);
wait_s1("reconnects > $rc AND stream_reopens >= $ro + 4",
	'unavailable always: the session is reset after four reopens');
emulator_api($emu, 'DELETE', '/admin/faults');
check_recovered('unavailable always', $rc, 'status 14', $lsn);

# Acks withheld: records are sent, status updates go out, and the slot
# stays behind the unacked transaction until the acks come.
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', withhold_acks => JSON::PP::true });
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t2', withhold_acks => JSON::PP::true });
my $sent = zb_stat('records_sent');
my $before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$lsn = write_rows(100);
wait_s1("records_sent >= $sent + 200", 'withheld: records sent');
my $after_send = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT reply_time > '$after_send' FROM pg_stat_replication WHERE application_name = 'zerobus:s1'"
	),
	'withheld: worker sent a status update after the records');
is( $node->safe_psql('postgres', "SELECT '" . slot_lsn() . "' <= '$before'::pg_lsn"),
	't', 'withheld: slot stays before the unacked transactions');
check_slot_behind_acks($node, 's1');
$rc = zb_stat('reconnects');
emulator_api($emu, 'DELETE', '/admin/faults');
ok( $node->poll_query_until(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name) WHERE z.name = 's1'"
	),
	'withheld: slot advances once the acks come');
check_all('withheld', $lsn);
is(zb_stat('reconnects'), $rc, 'withheld: no reconnect needed');

# Acks delayed (well within ack_timeout): no reconnect, everything arrives.
$rc = zb_stat('reconnects');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => $_, ack_delay_ms => 300 })
  for ('main.cdc.t1', 'main.cdc.t2');
write_rows(50) for 1 .. 3;
check_all('delayed', write_rows(50));
is(zb_stat('reconnects'), $rc, 'delayed: no reconnect');
emulator_api($emu, 'DELETE', '/admin/faults');

# Ack timeout: with acks withheld longer than ack_timeout the worker
# reconnects (again and again) and resends; once acks flow, all arrives.
my $pid = zb_stat('pid');
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', ack_timeout => 1000)");
wait_s1("pid <> $pid AND state = 'streaming'",
	'ack timeout: worker restarted');
$rc = zb_stat('reconnects');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => $_, withhold_acks => JSON::PP::true })
  for ('main.cdc.t1', 'main.cdc.t2');
$before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$lsn = write_rows(100);
wait_s1("reconnects >= $rc + 2 AND last_error ~ 'no ack'",
	'ack timeout: worker reconnects after each timeout');
is( $node->safe_psql('postgres', "SELECT '" . slot_lsn() . "' <= '$before'::pg_lsn"),
	't', 'ack timeout: slot stays before the unacked transactions');
emulator_api($emu, 'DELETE', '/admin/faults');
check_all('ack timeout', $lsn);
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', ack_timeout => 60000)");

# CloseStreamSignal: the worker moves to a new stream before the server
# ends the old one.
$rc = zb_stat('reconnects');
my $signals = emulator_api($emu, 'GET', '/admin/stats')->{close_signals_sent};
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', close_stream_signal_ms => 1000 });
$lsn = write_rows(100);
wait_emulator_stat('close_signals_sent', $signals,
	'close signal: the emulator announced closes');
wait_acked($node, 's1', $lsn);
emulator_api($emu, 'DELETE', '/admin/faults');
check_all('close signal', write_rows(100));
is(zb_stat('reconnects'), $rc, 'close signal: no reconnect needed');

# Tokens expired early: a new stream of the same session must get a fresh
# token rather than give up.  A stream-scoped close signal makes the worker
# open a new stream for t1 with its cached token.
emulator_api($emu, 'POST', '/admin/tokens/expire', {});
my ($live) =
  grep { $_->{table} eq 'main.cdc.t1' }
  @{ emulator_api($emu, 'GET', '/admin/streams') };
ok($live, 'token expiry: t1 has a live stream');
emulator_api($emu, 'POST', '/admin/faults',
	{ stream_id => $live->{stream_id}, close_stream_signal_ms => 200 });
my $tokens = emulator_api($emu, 'GET', '/admin/stats')->{tokens_issued};
$lsn = write_rows(100);
check_all('token expiry', $lsn);
ok(emulator_api($emu, 'GET', '/admin/stats')->{tokens_issued} > $tokens,
	'token expiry: worker fetched a new token');
emulator_api($emu, 'DELETE', '/admin/faults');

# Emulator killed (kill -9) right after a write and started again on the
# same ports and data directory: nothing acked is lost, the rest is resent
# (on reopened streams, or after a reconnect if the restart took longer
# than the reopens' backoff; streams that owed nothing are just opened
# again).  It comes back issuing tokens that live 3 seconds.
$lsn = write_rows(300);
kill 'KILL', $emu->{pid};
$emu->{handle}->finish;
$emu = start_emulator(
	data_dir => $emu->{data_dir},
	grpc_port => $emu->{grpc_port},
	http_port => $emu->{http_port},
	args => [ '--token-ttl-s', '3' ]);
$lsn = write_rows(100);
check_all('emulator restart', $lsn);

# Short-lived tokens: the worker replaces each before it expires (moving
# to a new stream), without a rejected stream and so without reconnecting.
# A new session (the worker restarted by a setting) fetches the first
# ones; its cached tokens from before the restart live an hour.
$pid = zb_stat('pid');
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', ack_timeout => 30000)");
wait_s1("pid <> $pid AND state = 'streaming'",
	'token refresh: worker restarted');
$rc = zb_stat('reconnects');
$tokens = emulator_api($emu, 'GET', '/admin/stats')->{tokens_issued};
my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
$timer->start;
until (!$timer->check
	  || emulator_api($emu, 'GET', '/admin/stats')->{tokens_issued} >=
	  $tokens + 4)
{
	$lsn = write_rows(10);
	select(undef, undef, undef, 0.25);
}
ok(!$timer->is_expired, 'token refresh: worker fetched new tokens in time');
check_all('token refresh', $lsn);
is(zb_stat('reconnects'), $rc, 'token refresh: no reconnect needed');

# The token endpoint unavailable (HTTP 503) when the worker renews its
# tokens (they live 3 seconds): it requests them again, with backoff, in the
# same session, and the streams go on once the endpoint answers.
$rc = zb_stat('reconnects');
emulator_api($emu, 'POST', '/admin/faults',
	{
		table => 'main.cdc.t1',
		token_status => 503,
		token_body_b64 =>
		  MIME::Base64::encode_base64('{"error":"temporarily_unavailable"}', '')
	});
$timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
$timer->start;
until (!$timer->check
	  || zb_stat("last_error ~ 'could not fetch an OAuth token for table main.cdc.t1.*503'") eq 't')
{
	$lsn = write_rows(10);
	select(undef, undef, undef, 0.25);
}
ok(!$timer->is_expired, 'token endpoint 503: last_error says why');
emulator_api($emu, 'DELETE', '/admin/faults');
check_all('token endpoint 503', write_rows(100));
is(zb_stat('reconnects'), $rc, 'token endpoint 503: no reconnect needed');

stop_emulator($emu);
$node->stop;
done_testing();
