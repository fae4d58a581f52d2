# Copyright (c) zerobus authors
#
# Credentials that Zerobus refuses pause the stream instead of retrying it
# in a loop, with a reason in zerobus.stat_streams, and keep the WAL:
#
# - a wrong client secret (the token endpoint answers 401): the stream
#   fails, its slot does not move, the secret is not logged; changes
#   written meanwhile all arrive once alter_stream() gives the right secret
#   and resume_stream() restarts it;
# - a client not granted the target table (the token endpoint answers 403):
#   that table alone pauses, naming the table, the worker runs on and the
#   slot holds; granting it and resuming delivers everything;
# - Zerobus rejecting a fresh token (UNAUTHENTICATED injected by the
#   emulator): the stream fails with the server's message; once the fault
#   is cleared, resume_stream() delivers everything;
# - a grant revoked while the worker holds a valid token (PERMISSION_DENIED
#   when it opens its next Zerobus stream): that table alone pauses, the
#   worker runs on and the slot holds; granting and resuming delivers
#   everything;
# - a token endpoint that holds the requests of one table: the other tables
#   of the stream flow meanwhile (the worker never waits on a token), and
#   the held table's changes arrive once its token does.
#
# Each time the Delta table, with the change records applied in
# (_commit_lsn, _seq) order, equals the source table, and the slot never
# confirms past the acked LSN.

use strict;
use warnings;
use File::Basename qw(dirname);
use IPC::Run;
use lib dirname(__FILE__) . '/lib';
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('cred');
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t_secret (id int PRIMARY KEY, val text);
	CREATE TABLE t_grant (id int PRIMARY KEY, val text);
	CREATE TABLE t_unauth (id int PRIMARY KEY, val text);
	CREATE PUBLICATION pub_secret FOR TABLE t_secret;
	CREATE PUBLICATION pub_grant FOR TABLE t_grant;
	CREATE PUBLICATION pub_unauth FOR TABLE t_unauth;
});
declare_target($node, $emu, $_, "main.cdc.$_") for qw(t_secret t_grant t_unauth);

# Creates stream $name with the given OAuth client credentials.  The test
# cluster logs every statement (log_statement = all); the call is made in a
# session that does not, so that the server log shows whether anything
# else ever writes the secret.
sub create_stream_as
{
	my ($name, $publication, $client_id, $client_secret) = @_;
	$node->safe_psql(
		'postgres', '',
		extra_params => [
			'-c', 'SET log_statement = none',
			'-c', qq{SELECT zerobus.create_stream('$name', '$publication',
			endpoint => 'http://127.0.0.1:$emu->{grpc_port}',
			workspace_url => 'http://127.0.0.1:$emu->{http_port}',
			client_id => '$client_id', client_secret => '$client_secret',
			target_catalog => 'main', target_schema => 'cdc',
			insecure => true)}
		]);
	return;
}

# Checks that stream $name has no worker and its slot is still before $lsn.
sub check_held
{
	my ($name, $lsn) = @_;
	is( $node->safe_psql(
			'postgres', qq{
			SELECT coalesce(pid, 0), confirmed_lsn < '$lsn', wal_status
			FROM zerobus.stat_streams WHERE name = '$name'}),
		'0|t|reserved',
		"stream $name has no worker and its slot keeps the WAL");
	return;
}

# Checks that stream $name still has a worker, that its slot is still
# before $lsn and that last_error shows $reason.
sub check_held_running
{
	my ($name, $lsn, $reason) = @_;
	is( $node->safe_psql(
			'postgres', qq{
			SELECT pid IS NOT NULL, confirmed_lsn < '$lsn', wal_status,
				last_error = \$\$$reason\$\$
			FROM zerobus.stat_streams WHERE name = '$name'}),
		't|t|reserved|t',
		"stream $name: the worker runs on, the slot keeps the WAL, last_error shows the reason"
	);
	check_slot_behind_acks($node, $name);
	return;
}

# Checks that the Delta table of $table equals the source table.
sub check_delta
{
	my ($table) = @_;
	is_deeply(
		fold_changes(delta_rows($emu, "main.cdc.$table"), 'id'),
		source_rows($node, $table, 'id, val', 'id'),
		"Delta table $table equals the source table");
	return;
}

# Number of times the server log says stream $id was paused.
sub pauses_logged
{
	my ($id) = @_;
	my $log = slurp_file($node->logfile);
	my @hits = $log =~ /zerobus stream $id paused:/g;
	return scalar @hits;
}

my $lsn;

# --- a wrong client secret: 401 from the token endpoint ---
emulator_api($emu, 'POST', '/admin/clients',
	{ client_id => 'c_secret', client_secret => 'right-secret', tables => ['*'] });
create_stream_as('s_secret', 'pub_secret', 'c_secret', 'wrong-secret-xyzzy');
my $id_secret = $node->safe_psql('postgres',
	"SELECT id FROM zerobus.streams WHERE name = 's_secret'");
$node->safe_psql('postgres',
	"INSERT INTO t_secret SELECT g, 'v' || g FROM generate_series(1, 100) g");
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my $reason = wait_failed($node, 's_secret');
like($reason, qr/OAuth token request for table main\.cdc\.t_secret was denied/,
	'reason names the token request and the table');
like($reason, qr/HTTP 401/, 'reason shows the 401');
like($reason, qr/invalid client_id or client_secret/,
	"reason shows the token endpoint's message");
is( $node->safe_psql('postgres',
		"SELECT last_error = paused_reason FROM zerobus.stat_streams WHERE name = 's_secret'"),
	't', 'last_error shows the reason too');
check_held('s_secret', $lsn);

# Changes written while the stream is failed.
$node->safe_psql(
	'postgres', q{
	UPDATE t_secret SET val = 'while failed' WHERE id <= 10;
	DELETE FROM t_secret WHERE id > 90;
	INSERT INTO t_secret VALUES (500, 'late');
});
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

# --- a client not granted the table: 403 from the token endpoint ---
emulator_api($emu, 'POST', '/admin/clients',
	{ client_id => 'c_grant', client_secret => 'grant-secret', tables => ['main.cdc.other'] });
create_stream_as('s_grant', 'pub_grant', 'c_grant', 'grant-secret');
$node->safe_psql('postgres',
	"INSERT INTO t_grant SELECT g, 'g' || g FROM generate_series(1, 50) g");
my $grant_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$reason = wait_table_paused($node, 's_grant', 'public.t_grant');
like($reason, qr/table main\.cdc\.t_grant was denied: .*HTTP 403/,
	'reason names the table and shows the 403');
like($reason, qr/no MODIFY privilege on \\?"main\.cdc\.t_grant/,
	"reason shows the token endpoint's message");
check_held_running('s_grant', $grant_lsn, $reason);

# --- a fresh token rejected by Zerobus: UNAUTHENTICATED ---
create_stream($node, $emu, 's_unauth', 'pub_unauth');
wait_streaming($node, 's_unauth');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t_unauth', unauthenticated => JSON::PP::true });
$node->safe_psql('postgres',
	"INSERT INTO t_unauth SELECT g, 'u' || g FROM generate_series(1, 30) g");
my $unauth_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$reason = wait_failed($node, 's_unauth');
like($reason, qr/table main\.cdc\.t_unauth with status 16 \(UNAUTHENTICATED\): injected fault: token rejected/,
	'reason names the table, the status and the server message');
check_held('s_unauth', $unauth_lsn);

# None of them was restarted in a loop: each was paused once, and is still
# failed (s_grant: still paused on its table) after the others went
# through their whole cycle.
is(pauses_logged($id_secret), 1, 'stream s_secret was paused exactly once');
unlike(
	slurp_file($node->logfile),
	qr/worker of stream $id_secret exited, restarting/,
	'the launcher did not plan a restart of s_secret');
is( $node->safe_psql('postgres',
		"SELECT string_agg(state || '/' || reconnects, ',' ORDER BY name) FROM zerobus.stat_streams"),
	'streaming/0,failed/0,failed/0',
	's_secret and s_unauth are failed, s_grant streams, none retried');
unlike(slurp_file($node->logfile), qr/wrong-secret-xyzzy/,
	'the client secret is not in the server log');

# --- repair and resume: everything written meanwhile arrives ---
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s_secret', client_secret => 'right-secret')");
is( $node->safe_psql('postgres',
		"SELECT state FROM zerobus.stat_streams WHERE name = 's_secret'"),
	'failed', 'alter_stream alone does not resume a failed stream');
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s_secret')");
wait_acked($node, 's_secret', $lsn);
check_delta('t_secret');
check_slot_behind_acks($node, 's_secret');

emulator_api($emu, 'PUT', '/admin/clients/c_grant',
	{ client_secret => 'grant-secret', tables => ['*'] });
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s_grant')");
wait_acked($node, 's_grant', $grant_lsn);
check_delta('t_grant');
check_slot_behind_acks($node, 's_grant');

emulator_api($emu, 'DELETE', '/admin/faults?table=main.cdc.t_unauth');
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s_unauth')");
wait_acked($node, 's_unauth', $unauth_lsn);
check_delta('t_unauth');
check_slot_behind_acks($node, 's_unauth');

is( $node->safe_psql('postgres',
		"SELECT string_agg(state || '/' || (paused_reason IS NULL), ',' ORDER BY name) FROM zerobus.stat_streams"),
	'streaming/true,streaming/true,streaming/true',
	'all three streams are streaming again with no paused_reason');

# --- a grant revoked while the worker holds a valid token ---
# The worker's cached token no longer helps: Zerobus checks the grant when a
# stream is created and answers PERMISSION_DENIED; the worker then asks for
# a fresh token once, as the official SDKs do, and the token endpoint
# refuses it (403), which pauses the table.  A CloseStreamSignal makes the
# worker retire its live call, so the next change opens a new one.
emulator_api($emu, 'PUT', '/admin/clients/c_grant',
	{ client_secret => 'grant-secret', tables => ['main.cdc.other'] });
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t_grant', close_stream_signal_ms => 600000 });
my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
$timer->start;
until (!grep { $_->{table} eq 'main.cdc.t_grant' }
	  @{ emulator_api($emu, 'GET', '/admin/streams') })
{
	die 'the worker did not close its stream on t_grant' if !$timer->check;
	select(undef, undef, undef, 0.1);
}
emulator_api($emu, 'DELETE', '/admin/faults?table=main.cdc.t_grant');
$node->safe_psql('postgres',
	"UPDATE t_grant SET val = 'revoked' WHERE id <= 5; INSERT INTO t_grant VALUES (51, 'after revoke')"
);
$grant_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$reason = wait_table_paused($node, 's_grant', 'public.t_grant');
like(
	$reason,
	qr/OAuth token request for table main\.cdc\.t_grant was denied: .*HTTP 403: .*no MODIFY privilege/,
	'reason names the table and the refusal of the fresh token');
check_held_running('s_grant', $grant_lsn, $reason);
emulator_api($emu, 'PUT', '/admin/clients/c_grant',
	{ client_secret => 'grant-secret', tables => ['*'] });
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s_grant')");
wait_acked($node, 's_grant', $grant_lsn);
check_delta('t_grant');
check_slot_behind_acks($node, 's_grant');

# --- a token endpoint slow for one table: the others flow on ---
# The emulator holds every token request for t_slow.  Meanwhile t_fast, in
# the same stream, gets its token and its changes become durable: the
# worker never waits on one table's token request.  Once the request is
# answered, t_slow's changes arrive too.
$node->safe_psql(
	'postgres', q{
	CREATE TABLE t_slow (id int PRIMARY KEY, val text);
	CREATE TABLE t_fast (id int PRIMARY KEY, val text);
	CREATE PUBLICATION pub_slow FOR TABLE t_slow, t_fast;
});
declare_target($node, $emu, $_, "main.cdc.$_") for qw(t_slow t_fast);
emulator_api($emu, 'POST', '/admin/clients',
	{ client_id => 'c_slow', client_secret => 'slow-secret', tables => ['*'] });
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t_slow', token_hold => JSON::PP::true });
my $held = emulator_api($emu, 'GET', '/admin/stats')->{token_requests_held};
create_stream_as('s_slow', 'pub_slow', 'c_slow', 'slow-secret');
wait_streaming($node, 's_slow');
$node->safe_psql('postgres', "INSERT INTO t_slow VALUES (1, 'slow')");
ok( poll_until(
		sub {
			emulator_api($emu, 'GET', '/admin/stats')->{token_requests_held} > $held;
		}),
	'the worker asked for the token of t_slow, which the endpoint holds');
$node->safe_psql('postgres',
	"INSERT INTO t_fast SELECT g, 'fast' FROM generate_series(1, 10) g");
ok( poll_until(
		sub {
			(emulator_api($emu, 'GET', '/admin/stats')->{tables}{'main.cdc.t_fast'}{records_durable} // 0) >= 10;
		}),
	'the changes of t_fast become durable while the token request of t_slow is held');
is(emulator_api($emu, 'GET', '/admin/stats')->{tables}{'main.cdc.t_slow'}{records_received} // 0,
	0, 't_slow sent nothing without its token');
is(stream_stat($node, 's_slow', 'state'), 'streaming',
	'the stream streams while the token request is held');
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t_slow', token_hold => JSON::PP::false });
wait_acked($node, 's_slow', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
check_delta('t_slow');
check_delta('t_fast');
check_slot_behind_acks($node, 's_slow');

stop_emulator($emu);
$node->stop;
done_testing();
