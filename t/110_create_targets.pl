# Copyright (c) zerobus authors
#
# Target tables created by zerobus: create_stream(..., create_targets)
# against an emulator that has no tables runs target_ddl's CREATE TABLE
# through the SQL Statement Execution API (polled through a slow warehouse
# and failed polls); the tables appear (with column
# mapping by name), rows flow, the Delta tables folded equal the sources,
# and zerobus.statements records every statement.  A warehouse error, a
# missing CREATE privilege and a statement timeout each pause their table
# with the reason, keep its changes in the slot, and lose nothing once
# resume_stream() creates the table.  A target that exists with other
# columns is not touched: the stream pauses that table with the column
# named.  create_mirrors creates the mirror tables too (target_ddl's mirror
# CREATE TABLE), of the tables with a key.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

# a worker for each of the eight streams, beyond the default 8 processes
my $node = zb_node('create_targets', "max_worker_processes = 16\n");
my $emu = start_emulator();

is_deeply(emulator_api($emu, 'GET', '/admin/tables'),
	[], 'the emulator starts with no tables');

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t1 (id int PRIMARY KEY, val text, amount numeric(12,2),
		at timestamptz, tags text[]);
	CREATE TABLE t2 (k text PRIMARY KEY, n int);
	INSERT INTO t1 VALUES (1, 'before the stream', 1.50, '2026-01-01', '{a,b}');
	INSERT INTO t2 VALUES ('a', 1);
	CREATE PUBLICATION pub FOR TABLE t1, t2;
	CREATE ROLE reader LOGIN;
	GRANT USAGE ON SCHEMA zerobus TO reader;
});

# --- tables created, rows flow --------------------------------------------

# a warehouse that takes a while, and polls that fail twice on the way:
# the statements are polled until they end
emulator_api($emu, 'PUT', '/admin/sql',
	{ statement_delay_ms => 500, poll_errors => { status => 503, count => 2 } });
my $err = create_stream(
	$node, $emu, 's1', 'pub',
	warehouse_id => "'wh1'",
	create_targets => 'true',
	create_schemas => ['main.cdc']);
is($err, '', 'create_stream with create_targets warns of nothing');
is(emulator_api($emu, 'GET', '/admin/sql')->{poll_errors},
	undef, 'the failed polls were tried again');
emulator_api($emu, 'PUT', '/admin/sql', { statement_delay_ms => 0 });

for my $t ('t1', 't2')
{
	my $table = emulator_api($emu, 'GET', "/admin/tables/main.cdc.$t");
	my $ddl = $node->safe_psql('postgres',
		"SELECT zerobus.target_ddl('$t', 'main.cdc.$t')");
	my @expected = map { /^  (\S+) / ? $1 : () } split /\n/, $ddl;
	is_deeply([ map { $_->{name} } @{ $table->{columns} } ],
		\@expected, "main.cdc.$t has the columns of target_ddl");
	is($table->{properties}{'delta.columnMapping.mode'},
		'name', "main.cdc.$t maps its columns by name");
	is($table->{properties}{'delta.enableTypeWidening'},
		'true', "main.cdc.$t allows type widening");
}
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(format('%s %s %s %s', source, target_table, state,
			statement = zerobus.target_ddl(source, target_table)), ', '
			ORDER BY target_table)
		FROM zerobus.statements WHERE stream = 's1'
		AND statement_id IS NOT NULL AND error IS NULL
		AND finished_at >= started_at}),
	't1 main.cdc.t1 SUCCEEDED t, t2 main.cdc.t2 SUCCEEDED t',
	'zerobus.statements records each CREATE TABLE, as target_ddl prints it');

wait_streaming($node, 's1');
my $next = 2;
my $lsn = write_t1_t2_more($node, \$next);
check_tables(
	$node, $emu, 's1', 'created targets', $lsn,
	[
		't1', 'main.cdc.t1',
		'id, val, amount::text AS amount, (extract(epoch FROM at) * 1000000)::int8 AS at, tags',
		'id'
	],
	[ 't2', 'main.cdc.t2', 'k, n', 'k' ]);

# Rows of t1 and t2 after the snapshot's.
sub write_t1_t2_more
{
	my ($node, $next) = @_;
	my $from = $$next;
	$$next += 10;
	$node->safe_psql(
		'postgres', qq{
		INSERT INTO t1 SELECT g, 'v' || g, g * 1.25, now(), ARRAY['x' || g]
			FROM generate_series($from, $from + 9) g;
		INSERT INTO t2 SELECT 'k' || g, g FROM generate_series($from, $from + 9) g;
		UPDATE t1 SET val = 'changed' WHERE id = 1;
		DELETE FROM t2 WHERE k = 'a';
	});
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

# --- failures: the table pauses, its changes wait, resume creates it ------

# One stream per failure, each with a table of its own; rows written while
# the table is paused must all arrive once it is resumed.
sub failing_stream
{
	my ($name, $set_fault, $clear_fault, $reason_like, $state, %opts) = @_;
	my $table = "f_$name";
	$node->safe_psql(
		'postgres', qq{
		CREATE TABLE $table (id int PRIMARY KEY, val text);
		INSERT INTO $table SELECT g, 'old' FROM generate_series(1, 5) g;
		CREATE PUBLICATION pub_$name FOR TABLE $table;
	});
	$set_fault->();
	my $warning = create_stream(
		$node, $emu, $name, "pub_$name",
		warehouse_id => "'wh1'",
		create_targets => 'true',
		%opts);
	like(
		$warning,
		qr/WARNING:  stream "$name": target table main\.cdc\.$table could not be created\n.*DETAIL:  Statement \S+ ended $state: $reason_like/s,
		"$name: create_stream warns with the statement's error");
	like($warning, qr/zerobus\.resume_stream\('$name'\)/,
		"$name: the hint says how to go on");
	my $paused = wait_table_paused($node, $name, "public.$table",
		"$name: the table is paused, the stream runs");
	like($paused, qr/could not be created: statement $state: $reason_like/,
		"$name: the pause gives the reason");
	like(
		$node->safe_psql(
			'postgres',
			"SELECT state || ': ' || error FROM zerobus.statements WHERE stream = '$name'"
		),
		qr/^$state: $reason_like/,
		"$name: zerobus.statements records the failed statement");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM zerobus.statements WHERE stream = '$name' AND error IS NULL",
			connstr => $node->connstr('postgres') . ' user=reader'),
		'1',
		"$name: the error is hidden from other roles");
	ok( !defined eval { emulator_api($emu, 'GET', "/admin/tables/main.cdc.$table") },
		"$name: no table was created");

	# changes while paused stay in the slot
	$node->safe_psql('postgres',
		"INSERT INTO $table SELECT g, 'new' FROM generate_series(6, 20) g; UPDATE $table SET val = 'upd' WHERE id = 1"
	);
	$clear_fault->();
	$node->safe_psql('postgres', "SELECT zerobus.resume_stream('$name')");
	is( $node->safe_psql(
			'postgres',
			"SELECT string_agg(state, ',' ORDER BY started_at) FROM zerobus.statements WHERE stream = '$name'"
		),
		"$state,SUCCEEDED",
		"$name: resume_stream ran the statement again");
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	check_tables($node, $emu, $name, "$name resumed", $lsn,
		[ $table, "main.cdc.$table", 'id, val', 'id' ]);
	is(stream_stat($node, $name, 'paused_tables'),
		'{}', "$name: nothing paused any more");
	return;
}

failing_stream(
	'wh_error',
	sub {
		emulator_api(
			$emu, 'PUT', '/admin/sql',
			{
				warehouse_error => {
					error_code => 'TEMPORARILY_UNAVAILABLE',
					message => 'warehouse wh1 failed to start: no capacity',
					count => 1
				}
			});
	},
	sub { },
	qr/\[TEMPORARILY_UNAVAILABLE\] warehouse wh1 failed to start: no capacity/,
	'FAILED',
	create_schemas => ['main.cdc']);

failing_stream(
	'no_grant',
	sub { },
	sub {
		emulator_api(
			$emu, 'PUT',
			'/admin/clients/client_no_grant',
			{
				client_secret => 'secret_no_grant',
				tables => ['*'],
				create_schemas => ['main.cdc']
			});
	},
	qr/\[BAD_REQUEST\] \[INSUFFICIENT_PERMISSIONS\] Insufficient privileges: User does not have CREATE TABLE on Schema 'main\.cdc'\. SQLSTATE: 42501/,
	'FAILED');

failing_stream(
	'slow',
	sub {
		emulator_api($emu, 'PUT', '/admin/sql', { statement_delay_ms => 60000 });
	},
	sub {
		emulator_api($emu, 'PUT', '/admin/sql', { statement_delay_ms => 0 });
	},
	qr/the statement did not end within 2000 ms \(zerobus\.statement_timeout\); it was canceled/,
	'TIMED OUT',
	create_schemas => ['main.cdc'],
	settings => "SET zerobus.statement_timeout = '2s';");
my $canceled = emulator_api($emu, 'GET', '/admin/sql/statements');
is( scalar(grep { $_->{statement} =~ /main\.cdc\.f_slow/ && $_->{state} eq 'CANCELED' } @$canceled),
	1,
	'the timed-out statement was canceled in the warehouse');

# --- a target that exists with other columns is not touched ---------------

$node->safe_psql(
	'postgres', q{
	CREATE TABLE t3 (id int PRIMARY KEY, val text, extra int);
	CREATE PUBLICATION pub3 FOR TABLE t3;
});
my $columns = declare_target($node, $emu, 't3', 'main.cdc.t3');
my @without_extra = grep { $_->{name} ne 'extra' } @$columns;
emulator_api($emu, 'PUT', '/admin/tables/main.cdc.t3',
	{ columns => \@without_extra });
create_stream(
	$node, $emu, 's3', 'pub3',
	warehouse_id => "'wh1'",
	create_targets => 'true',
	create_schemas => ['main.cdc']);
is( $node->safe_psql(
		'postgres', "SELECT state FROM zerobus.statements WHERE stream = 's3'"),
	'SUCCEEDED',
	'CREATE TABLE IF NOT EXISTS on an existing table succeeds');
is_deeply(
	[ map { $_->{name} } @{ emulator_api($emu, 'GET', '/admin/tables/main.cdc.t3')->{columns} } ],
	[ map { $_->{name} } @without_extra ],
	'the existing table is not touched');
$node->safe_psql('postgres', "INSERT INTO t3 VALUES (1, 'a', 1)");
like(wait_table_paused($node, 's3', 'public.t3'),
	qr/extra/, 'the stream pauses that table with the column named');

# --- create_mirrors: the mirror tables too ---------------------------------

$node->safe_psql(
	'postgres', q{
	CREATE TABLE m1 (id int PRIMARY KEY, status text, note text);
	CREATE TABLE m_nokey (a int, b text);
	CREATE PUBLICATION pubm FOR TABLE m1, m_nokey;
	INSERT INTO m1 VALUES (1, 'new', 'x'), (2, 'new', 'y');
});

# a mirror that cannot be created: a warning, nothing paused
emulator_api(
	$emu, 'PUT', '/admin/sql',
	{
		warehouse_error => {
			error_code => 'TEMPORARILY_UNAVAILABLE',
			message => 'no capacity',
			match => 'm1_mirror',
			count => 1
		}
	});
$err = create_stream(
	$node, $emu, 'smf', 'pubm',
	warehouse_id => "'wh1'",
	create_targets => 'true',
	create_mirrors => 'true',
	create_schemas => ['main.cdc']);
like(
	$err,
	qr/WARNING:  stream "smf": mirror table main\.cdc\.m1_mirror could not be created\n.*DETAIL:  Statement \S+ ended FAILED: \[TEMPORARILY_UNAVAILABLE\] no capacity\nHINT:  The stream is not affected\./s,
	'a mirror that cannot be created is a warning');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(state || ' ' || target_table, ', ' ORDER BY started_at)
		FROM zerobus.statements WHERE stream = 'smf'}),
	'SUCCEEDED main.cdc.m1, SUCCEEDED main.cdc.m_nokey, FAILED main.cdc.m1_mirror',
	'the failed mirror statement is recorded');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.stat_snapshots WHERE stream = 'smf' AND paused_reason IS NOT NULL"
	),
	'0',
	'no table is paused for its mirror');
$node->safe_psql('postgres', "SELECT zerobus.drop_stream('smf')");
$err = create_stream(
	$node, $emu, 'sm', 'pubm',
	warehouse_id => "'wh1'",
	create_targets => 'true',
	create_mirrors => 'true',
	create_schemas => ['main.cdc']);
like(
	$err,
	qr/NOTICE:  stream "sm": table public.m_nokey gets no mirror table\nDETAIL:  A mirror is kept by key, and the table has neither a replica identity index nor a primary key\./,
	'a table without a key gets no mirror, with a notice');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(state || ' ' || target_table, ', ' ORDER BY started_at)
		FROM zerobus.statements WHERE stream = 'sm'}),
	'SUCCEEDED main.cdc.m1, SUCCEEDED main.cdc.m_nokey, SUCCEEDED main.cdc.m1_mirror',
	'the change tables, then the mirror, each recorded');
is( $node->safe_psql(
		'postgres', q{
		SELECT statement LIKE 'CREATE TABLE IF NOT EXISTS main.cdc.m1_mirror (%'
		FROM zerobus.statements WHERE stream = 'sm' AND target_table = 'main.cdc.m1_mirror'}),
	't',
	'the mirror is created by its CREATE TABLE IF NOT EXISTS');
like(
	$node->safe_psql(
		'postgres', q{SELECT zerobus.target_ddl('m1', stream => 'sm', form => 'mirror')}),
	qr/\Q@{[ $node->safe_psql('postgres', "SELECT statement FROM zerobus.statements WHERE target_table = 'main.cdc.m1_mirror'") ]}\E/,
	'the statement run is the one target_ddl(form => mirror) prints');
is_deeply(
	[ map { "$_->{name} $_->{type}" } @{ emulator_api($emu, 'GET', '/admin/tables/main.cdc.m1_mirror')->{columns} } ],
	[ 'id INT', 'status STRING', 'note STRING' ],
	'the mirror has the source columns, no metadata column');
$node->safe_psql('postgres', "UPDATE m1 SET status = 'paid' WHERE id = 1");
check_tables($node, $emu, 'sm', 'with mirrors',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
	[ 'm1', 'main.cdc.m1', 'id, status, note', 'id' ]);
is_deeply(delta_rows($emu, 'main.cdc.m1_mirror'),
	[], 'the stream does not write the mirror');

# --- argument checks ------------------------------------------------------

my ($ret, $out);
($ret, $out, $err) = $node->psql(
	'postgres', q{
	SELECT zerobus.create_stream('bad', 'pub', endpoint => 'http://127.0.0.1:1',
		workspace_url => 'http://127.0.0.1:1', client_id => 'c', client_secret => 's',
		target_catalog => 'main', insecure => true, create_targets => true)});
like($err, qr/create_targets needs a warehouse_id/,
	'create_targets without a warehouse is refused');
($ret, $out, $err) = $node->psql(
	'postgres', q{
	SELECT zerobus.create_stream('bad', 'pub', endpoint => 'http://127.0.0.1:1',
		workspace_url => 'http://127.0.0.1:1', client_id => 'c', client_secret => 's',
		target_catalog => 'main', insecure => true, warehouse_id => 'wh1',
		create_mirrors => true)});
like($err, qr/create_mirrors needs create_targets/,
	'create_mirrors without create_targets is refused');

$node->stop;
stop_emulator($emu);
done_testing();
