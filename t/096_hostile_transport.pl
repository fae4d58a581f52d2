# Copyright (c) zerobus authors
#
# A Zerobus endpoint that breaks gRPC byte by byte (t/lib/hostile_zerobus.js,
# Node's raw http2): invalid grpc-status values, message lengths past the
# limit or of 0xFFFFFFFF, an empty message, a compressed flag never
# negotiated, a message cut short and then status OK, a CloseStreamSignal of
# INT64_MAX seconds, a flood of 100,000 CloseStreamSignals, HTTP 403 and 503
# without a grpc-status, a reply that is not gRPC, and a message sent one
# byte per DATA frame.  Tokens come from the emulator, which then plays a
# broken token endpoint: odd expires_in values, a reply that is not JSON,
# nested 100,000 deep, over 256 KiB, a token with a line break, a redirect.
# For each the worker names what went wrong (or, for a token life, clamps it
# and goes on), confirms nothing it did not get acked, and neither it nor
# the postmaster crashes; its memory stays bounded.  Last, recover_stream
# and drop_stream race a worker that retries against a dead endpoint.

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use lib dirname(__FILE__) . '/lib';
use IPC::Run;
use MIME::Base64 ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('hostile_transport');
my $emu = start_emulator();
my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $script = File::Spec->rel2abs(dirname(__FILE__) . '/lib/hostile_zerobus.js');

one_table_stream($node, $emu);

my $next_id = 1;

sub write_row
{
	$node->safe_psql('postgres',
		"INSERT INTO t1 VALUES ($next_id, 'v$next_id')");
	$next_id++;
	return;
}

# Starts the hostile endpoint in $mode; returns its handle and port.
sub start_hostile
{
	my ($mode) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'node', $script, $mode ], '<', \undef, '>', \$out,
		'2>', \$err);
	ok(poll_until(sub { $h->pump_nb; $out =~ /^port (\d+)$/m }),
		"$mode: hostile endpoint listening")
	  or diag $err;
	$out =~ /^port (\d+)$/m;
	return ($h, $1);
}

my @cases = (
	[ 'status_abc', 'invalid grpc-status' ],
	[ 'status_negative', 'invalid grpc-status' ],
	[ 'status_11_digits', 'invalid grpc-status' ],
	[ 'status_99', 'status 2 \(UNKNOWN\)' ],
	[ 'length_4mib_plus_1', 'message of 4194305 bytes, more than the limit' ],
	[ 'length_ffffffff', 'message of 4294967295 bytes, more than the limit' ],
	[ 'length_zero', 'response message has no payload' ],
	[ 'compressed', 'compressed message' ],
	[ 'truncated_then_ok', 'in the middle of a message' ],
	[ 'http_503', 'status 14 \(UNAVAILABLE\).*HTTP status 503 without a grpc-status' ],
	[ 'not_grpc', 'not application/grpc' ],
	[ 'one_byte_chunks', 'status 14 \(UNAVAILABLE\).*bye after bytes' ],
	[ 'http_403', 'status 7 \(PERMISSION_DENIED\).*HTTP status 403' ],
	[ 'close_forever', undef ],
	[ 'close_flood', undef ]);

for my $case (@cases)
{
	my ($mode, $error) = @$case;
	my ($h, $port) = start_hostile($mode);
	my $pid = stream_stat($node, 's1', 'pid');
	my $slot_before = $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	);
	$node->safe_psql('postgres',
		"SELECT zerobus.resume_stream('s1'), zerobus.alter_stream('s1', endpoint => 'http://127.0.0.1:$port')"
	);
	my $lsn_before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	write_row();
	if (defined $error)
	{
		ok( $node->poll_query_until(
				'postgres',
				"SELECT coalesce(last_error, '') ~ '$error' FROM zerobus.stat_streams WHERE name = 's1'"
			),
			"$mode: the worker names the violation")
		  or diag $node->safe_psql('postgres',
			"SELECT last_error FROM zerobus.stat_streams WHERE name = 's1'");
	}
	else
	{
		# nothing to name: the server's messages must just be survived
		ok( $node->poll_query_until(
				'postgres',
				"SELECT pid IS NOT NULL AND pid <> $pid AND records_sent > 0 FROM zerobus.stat_streams WHERE name = 's1'"
			),
			"$mode: the worker sent its records and lives");
		my $wpid = stream_stat($node, 's1', 'pid');
		my $rss = slurp_file("/proc/$wpid/status") =~ /VmRSS:\s+(\d+) kB/ ? $1 : 0;
		ok($rss > 0 && $rss < 100 * 1024, "$mode: worker RSS ${rss} kB < 100 MB");
	}
	is( $node->safe_psql('postgres',
			"SELECT confirmed_flush_lsn <= '$lsn_before' FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
		),
		't',
		"$mode: the slot did not pass the unacked row");
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, "$mode: the postmaster never restarted");
	$h->kill_kill;
}

# A broken token endpoint (the emulator's token_body_b64 fault;
# "{{token}}" becomes a valid token).  Odd token lives are clamped and
# streaming goes on; replies that cannot be trusted are named.
my @token_cases = (
	[ 'expires_in 0', 200, '{"access_token":"{{token}}","expires_in":0}', undef ],
	[ 'expires_in -5', 200, '{"access_token":"{{token}}","expires_in":-5}', undef ],
	[ 'expires_in 1e309', 200, '{"access_token":"{{token}}","expires_in":1e309}', undef ],
	[ 'expires_in of 20 digits', 200, '{"access_token":"{{token}}","expires_in":12345678901234567890}', undef ],
	[ 'quoted expires_in', 200, '{"access_token":"{{token}}","expires_in":"3600"}', undef ],
	[ 'not JSON', 200, 'access_token={{token}}', 'reply that is not JSON' ],
	[ 'nested 100,000 deep', 200, '[' x 100000, 'nested deeper than 32 levels' ],
	[ 'over 256 KiB', 200, '{"pad":"' . ('x' x 300000) . '"}', 'reply of more than 262144 bytes' ],
	[ 'token with CR/LF', 200, '{"access_token":"abc\r\nx-injected: 1","expires_in":3600}', 'no valid access_token' ],
	[ 'redirect', 302, '{}', 'answered HTTP 302' ]);
for my $case (@token_cases)
{
	my ($label, $status, $body, $error) = @$case;
	emulator_api($emu, 'POST', '/admin/faults',
		{ table => 'main.cdc.t1', token_status => $status,
		  token_body_b64 => MIME::Base64::encode_base64($body, '') });
	$node->safe_psql('postgres',
		"SELECT zerobus.resume_stream('s1'), zerobus.alter_stream('s1', endpoint => 'http://127.0.0.1:$emu->{grpc_port}')"
	);
	write_row();
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	if (defined $error)
	{
		ok( $node->poll_query_until(
				'postgres',
				"SELECT coalesce(last_error, '') ~ '$error' FROM zerobus.stat_streams WHERE name = 's1'"
			),
			"token endpoint, $label: the worker names it")
		  or diag $node->safe_psql('postgres',
			"SELECT last_error FROM zerobus.stat_streams WHERE name = 's1'");
	}
	else
	{
		wait_acked($node, 's1', $lsn);
	}
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, "token endpoint, $label: the postmaster never restarted");
}
emulator_api($emu, 'DELETE', '/admin/faults');

# Back to the emulator: everything arrives.
$node->safe_psql('postgres',
	"SELECT zerobus.resume_stream('s1'), zerobus.alter_stream('s1', endpoint => 'http://127.0.0.1:$emu->{grpc_port}')"
);
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_acked($node, 's1', $lsn);
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
	source_rows($node, 't1', 'id, val', 'id'),
	'back on the emulator: Delta table equals the source table');
check_slot_behind_acks($node, 's1');

# Races with a worker that retries against an endpoint that refuses every
# connection: recover_stream replaces the slot under it, drop_stream drops
# the stream while it sleeps in its backoff.
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', endpoint => 'http://127.0.0.1:1')");
write_row();
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'retrying' AND reconnects > 0 FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'dead endpoint: the worker retries');
my $before_recover = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT zerobus.recover_stream('s1', force => true)");
is($ret, 0, 'recover_stream while the worker retries succeeds')
  or diag $stderr;
is( $node->safe_psql('postgres',
		"SELECT restart_lsn >= '$before_recover' FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	),
	't', 'and the stream has a new slot');
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'retrying' FROM zerobus.stat_streams WHERE name = 's1'"),
	'and its worker retries again');
($ret, $stdout, $stderr) =
  $node->psql('postgres', "SELECT zerobus.drop_stream('s1')");
is($ret, 0, 'drop_stream while the worker is in its backoff succeeds')
  or diag $stderr;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
		  . " UNION ALL SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zerobus worker'",
		"t\nt"),
	'and its slot and worker are gone');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'races: the postmaster never restarted');

$node->stop;
done_testing();
