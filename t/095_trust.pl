# Copyright (c) zerobus authors
#
# Trust boundaries of the worker (issue 9; sql/security.sql covers the SQL
# API):
#
# - Nothing an ordinary role plants runs with the superuser's rights in the
#   launcher or a worker: not through a search_path set for the database
#   (they run with an empty one), not through the casts and operators of a
#   key type it owns when its table is snapshotted (the chunk query runs as
#   the table's owner, security-restricted).
# - A Zerobus server that breaks the protocol (the emulator's "lie" fault):
#   acks beyond the last offset sent, an ack below the one before, an ack
#   ahead of the create_stream_response, a second create_stream_response.
#   Each is a protocol violation: the worker names it in last_error, resets
#   the session and believes nothing of it.  The slot's confirmed_flush_lsn
#   never passes what was genuinely acked (for acks beyond what was sent,
#   never passes the position before the writes: no ack of that server is
#   true), the postmaster never restarts, and once the server behaves again
#   everything arrives.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use MIME::Base64 ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('hostile');
my $emu = start_emulator();
my $start_time =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

one_table_stream($node, $emu);

my $next_id = 1;

# Writes $n rows (one transaction) and returns the WAL position after it.
sub write_rows
{
	my ($n) = @_;
	my ($from, $to) = ($next_id, $next_id + $n - 1);
	$next_id += $n;
	$node->safe_psql('postgres',
		"INSERT INTO t1 SELECT g, 'v' || g FROM generate_series($from, $to) g"
	);
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

sub zb_stat { return stream_stat($node, 's1', $_[0]); }

sub slot_lsn
{
	return $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	);
}

sub check_all
{
	my ($label, $lsn) = @_;
	wait_acked($node, 's1', $lsn);
	is_deeply(
		fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id'),
		source_rows($node, 't1', 'id, val', 'id'),
		"$label: Delta table equals the source table");
	check_slot_behind_acks($node, 's1');
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, "$label: the postmaster never restarted");
	return;
}

check_all('baseline', write_rows(50));

# A search_path a database owner sets for the database never reaches the
# SQL the launcher and the workers run as the bootstrap superuser: the
# planted operators below would record it (only when run by a background
# process, which has no application_name: the test's own sessions get the
# same path) and try to make their owner superuser.
$node->safe_psql(
	'postgres', q{
	CREATE ROLE evil;
	CREATE SCHEMA evil AUTHORIZATION evil;
	CREATE TABLE public.audit (who name, su bool, what text);
	GRANT INSERT ON public.audit TO PUBLIC;
	SET ROLE evil;
	CREATE FUNCTION evil.planted(text) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		-- psql sessions name themselves; the background processes do not
		appname text := pg_catalog.current_setting('application_name');
		su bool := (SELECT r.rolsuper FROM pg_catalog.pg_roles r
					WHERE r.rolname OPERATOR(pg_catalog.=) current_user);
	BEGIN
		IF appname OPERATOR(pg_catalog.=) '' THEN
			INSERT INTO public.audit VALUES (current_user, su, $1);
			BEGIN
				EXECUTE 'ALTER ROLE evil SUPERUSER';
			EXCEPTION WHEN insufficient_privilege THEN NULL;
			END;
		END IF;
	END $$;
	CREATE FUNCTION evil.int4eq(int4, int4) RETURNS bool LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM evil.planted('int4eq');
		RETURN $1 OPERATOR(pg_catalog.=) $2;
	END $$;
	CREATE OPERATOR evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.int4eq);
	CREATE FUNCTION evil.texteq(text, text) RETURNS bool LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM evil.planted('texteq');
		RETURN $1 OPERATOR(pg_catalog.=) $2;
	END $$;
	CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
	RESET ROLE;
	ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;
});
# new launcher and worker processes read the database's settings at start
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'zerobus launcher'");
my $worker = zb_stat('pid');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zerobus launcher' AND pid <> $launcher"
	),
	'database search_path: a new launcher started');
$node->safe_psql('postgres', "SELECT zerobus.alter_stream('s1')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT pid <> $worker AND state = 'streaming' FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'database search_path: a new worker streams');
check_all('database search_path', write_rows(50));
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.audit WHERE su'),
	'0', 'database search_path: no planted operator ran as superuser');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'evil'"),
	'f', 'database search_path: the planting role is not superuser');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET search_path');

# A table of that role, keyed by an enum of its own with a cast to text
# that the snapshot's chunk query calls: the cast runs, as the table's
# owner, never as the superuser.
$node->safe_psql(
	'postgres', q{
	SET ROLE evil;
	CREATE TYPE evil.mood AS ENUM ('sad', 'ok', 'happy');
	CREATE FUNCTION evil.mood_text(evil.mood) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM evil.planted('cast');
		RETURN pg_catalog.textin(pg_catalog.enum_out($1));
	END $$;
	CREATE CAST (evil.mood AS text) WITH FUNCTION evil.mood_text(evil.mood);
	CREATE TABLE evil.moods (m evil.mood PRIMARY KEY, n int);
	INSERT INTO evil.moods SELECT m, 1 FROM unnest(enum_range(NULL::evil.mood)) m;
	RESET ROLE;
});
declare_target($node, $emu, 'evil.moods', 'main.cdc.moods');
$node->safe_psql('postgres', 'ALTER PUBLICATION pub ADD TABLE evil.moods');
# a change of a table the worker does not know yet makes it look for new
# tables at once
$node->safe_psql('postgres', "UPDATE evil.moods SET n = 2 WHERE m = 'ok'");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'done' FROM zerobus.stat_snapshots WHERE stream = 's1' AND source_table = 'evil.moods'"
	),
	'untrusted key type: the table is snapshotted');
check_all('untrusted key type', write_rows(1));
is_deeply(
	fold_changes(delta_rows($emu, 'main.cdc.moods'), 'm'),
	source_rows($node, 'evil.moods', 'm, n', 'm'),
	'untrusted key type: Delta table equals the source table');
is( $node->safe_psql(
		'postgres', "SELECT string_agg(DISTINCT who || '/' || su, ',') FROM public.audit WHERE what = 'cast'"
	),
	'evil/false',
	'untrusted key type: the planted cast ran as the table owner only');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.audit WHERE su'),
	'0', 'no planted function ever ran with superuser rights');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'evil'"),
	'f', 'the planting role is not superuser');

my @lies = (
	[ 'ack_ahead', 'server acknowledged offset \d+ but the last offset sent was' ],
	[ 'ack_backwards', 'server acknowledged offset -?\d+ after offset' ],
	[ 'ack_before_create', 'acknowledged records before creating the stream' ],
	[ 'second_create', 'second create_stream_response' ]);

for my $case (@lies)
{
	my ($lie, $error) = @$case;
	# a new call, so that faults acting at creation apply: the session
	# restarts when the fault is set with an alter_stream() of nothing
	emulator_api($emu, 'POST', '/admin/faults',
		{ table => 'main.cdc.t1', lie => $lie });
	$node->safe_psql('postgres', "SELECT zerobus.alter_stream('s1')");
	my $before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	my $lsn = write_rows(20);
	if ($lie eq 'ack_backwards')
	{
		# the first ack is true, the one after it goes back
		wait_acked($node, 's1', $lsn);
		$lsn = write_rows(20);
	}
	ok( $node->poll_query_until(
			'postgres',
			"SELECT last_error ~ '$error' FROM zerobus.stat_streams WHERE name = 's1'"
		),
		"$lie: the worker names the protocol violation")
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = 's1'");
	check_slot_behind_acks($node, 's1');
	if ($lie eq 'ack_ahead')
	{
		is( $node->safe_psql('postgres',
				"SELECT '" . slot_lsn() . "'::pg_lsn <= '$before'"),
			't',
			"$lie: the slot did not move on an ack of data never sent");
	}
	emulator_api($emu, 'DELETE', '/admin/faults');
	check_all($lie, $lsn);
}

# A token endpoint whose error reply echoes the credentials, holds bytes
# that are no valid text and line breaks, and runs long: the stream fails
# with a reason that is valid text, one line, with the credentials
# redacted.
my $basic = MIME::Base64::encode_base64('client_s1:secret_s1', '');
my $reply =
	qq({"error":"invalid_client","error_description":"secret_s1 / Basic $basic\r\n\xff\xfe\xc3)
  . ('x' x 300) . '"}';
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.t1', token_body_b64 => MIME::Base64::encode_base64($reply, '') });
$node->safe_psql('postgres', "SELECT zerobus.alter_stream('s1')");
write_rows(1);					# tokens are fetched when there is something to send
my $reason = wait_failed($node, 's1', 'echoing token endpoint: the stream fails');
like($reason, qr/answered HTTP 400/, 'echoing token endpoint: the reason says why');
unlike($reason, qr/secret_s1|\Q$basic\E/, 'echoing token endpoint: no credential in the reason');
like($reason, qr/\[redacted\]/, 'echoing token endpoint: the credentials are redacted');
is( $node->safe_psql(
		'postgres',
		"SELECT convert_to(paused_reason, 'UTF8') IS NOT NULL AND paused_reason !~ '[\r\n]'"
		  . " AND octet_length(last_error) < 1024 AND convert_to(last_error, 'UTF8') IS NOT NULL"
		  . " FROM zerobus.stat_streams WHERE name = 's1'"),
	't', 'echoing token endpoint: reason and last_error are valid one-line text');
emulator_api($emu, 'DELETE', '/admin/faults');
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");
check_all('echoing token endpoint', write_rows(5));

# The server's words in last_error are the stream owner's and the
# superusers' to read, also straight from stream_shared_state().
is( $node->safe_psql(
		'postgres',
		'SELECT last_error IS NOT NULL FROM zerobus.stream_shared_state()'),
	't', 'a superuser reads last_error');
is( $node->safe_psql(
		'postgres',
		'GRANT USAGE ON SCHEMA zerobus TO evil; SET ROLE evil; SELECT count(*) FILTER (WHERE last_error IS NULL) || \'/\' || count(*) FROM zerobus.stream_shared_state()'
	),
	'1/1',
	'another role sees the stream but not its last_error');

# Source tables whose names make no Unity Catalog name (a dot; a line
# break that would end a request header) pause alone: the other tables flow
# on, and no request names them.
my %odd = ('dot' => 'odd.name', 'crlf' => "crlf\r\nx-injected: 1");
for my $t (sort keys %odd)
{
	my $ident = $node->safe_psql('postgres',
		"SELECT quote_ident(E'" . ($odd{$t} =~ s/\r/\\r/gr =~ s/\n/\\n/gr) . "')");
	$node->safe_psql('postgres',
		"CREATE TABLE public.$ident (id int PRIMARY KEY); ALTER PUBLICATION pub ADD TABLE public.$ident; INSERT INTO public.$ident VALUES (1)"
	);
	ok( $node->poll_query_until(
			'postgres',
			"SELECT paused_reason ~ 'is not catalog.schema.table' FROM zerobus.stat_snapshots WHERE stream = 's1' AND source_table = 'public.' || quote_ident(E'"
			  . ($odd{$t} =~ s/\r/\\r/gr =~ s/\n/\\n/gr) . "')"),
		"odd name ($t): its table alone is paused");
}
write_rows(10);
ok( poll_until(sub {
			my $delta = fold_changes(delta_rows($emu, 'main.cdc.t1'), 'id');
			return scalar(keys %$delta) == $next_id - 1;
		}),
	'odd names: the other tables flow on');
my $tables = emulator_api($emu, 'GET', '/admin/stats')->{tables};
ok(!grep({ /odd|crlf|injected/ } keys %$tables),
	'odd names: no request ever named them')
  or diag explain [ keys %$tables ];
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'odd names: the postmaster never restarted');

# A table that joins a TABLES IN SCHEMA publication after the stream was
# created, which the stream's owner cannot read: paused (neither its
# snapshot nor its changes are sent), while the table the owner can read
# flows on.
$node->safe_psql(
	'postgres', q{
	CREATE ROLE reader;
	CREATE SCHEMA app;
	CREATE TABLE app.t_ok (id int PRIMARY KEY, v text);
	GRANT USAGE ON SCHEMA app TO reader;
	GRANT SELECT ON app.t_ok TO reader;
	CREATE PUBLICATION pub2 FOR TABLES IN SCHEMA app;
});
declare_target($node, $emu, 'app.t_ok', 'main.cdc.t_ok');
create_stream($node, $emu, 's2', 'pub2', owner => "'reader'");
wait_streaming($node, 's2');
$node->safe_psql(
	'postgres', q{
	CREATE TABLE app.t_secret (id int PRIMARY KEY, secret text);
	INSERT INTO app.t_secret VALUES (1, 'before');
});
declare_target($node, $emu, 'app.t_secret', 'main.cdc.t_secret');
$node->safe_psql(
	'postgres', q{
	INSERT INTO app.t_secret VALUES (2, 'after');
	INSERT INTO app.t_ok VALUES (1, 'visible');
});
like(
	wait_table_paused($node, 's2', 'app.t_secret',
		'joining table the owner cannot read: paused alone'),
	qr/owner reader of stream "s2" cannot read table app\.t_secret/,
	'joining table the owner cannot read: the reason says why');
ok( poll_until(sub {
			scalar(@{ delta_rows($emu, 'main.cdc.t_ok') }) == 1 }),
	'joining table the owner cannot read: the readable table flows on');
is(scalar(@{ delta_rows($emu, 'main.cdc.t_secret') }),
	0, 'joining table the owner cannot read: none of its rows was sent');

# The worker's memory stayed bounded through the session resets.
my $pid = zb_stat('pid');
my $rss = slurp_file("/proc/$pid/status") =~ /VmRSS:\s+(\d+) kB/ ? $1 : 0;
ok($rss > 0 && $rss < 100 * 1024, "worker RSS ${rss} kB < 100 MB");

$node->stop;
done_testing();
