# Copyright (c) zerobus authors
#
# schema_policy evolve: ADD COLUMN, RENAME COLUMN and a widening type change
# in the source, with writes between them, are applied to the target by the
# worker through the SQL Statement Execution API (the statements
# target_ddl(form => 'alter') prints), without a pause: every row lands
# with the new columns, the Delta table folded equals the source, the
# statements are recorded in zerobus.statements.  The same under slow acks,
# with rows of the previous descriptor unacked when the target rejects the
# new one (they are acked and confirmed before the ALTER TABLE), and for a
# table whose rows came only from its initial snapshot (the columns its
# snapshot stream had accepted are the base).  A warehouse error, a
# statement timeout and a missing privilege pause the table with the
# statement's error until resume_stream.  A type change Delta cannot widen pauses the table as
# under the pause policy.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('evolve');
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE ev (id int PRIMARY KEY, val text, n int4);
	INSERT INTO ev SELECT g, 'v' || g, g FROM generate_series(1, 50) g;
	CREATE TABLE so (id int PRIMARY KEY, a text);
	INSERT INTO so SELECT g, 'a' || g FROM generate_series(1, 30) g;
	CREATE PUBLICATION pub FOR TABLE ev, so;
});
create_stream(
	$node, $emu, 'sev', 'pub',
	warehouse_id => "'wh1'",
	create_targets => 'true',
	schema_policy => "'evolve'",
	create_schemas => ['main.cdc']);
wait_streaming($node, 'sev');

# a table whose rows so far came only from its initial snapshot: the
# columns the target accepted on the snapshot's stream are kept, so a
# rename and an added column evolve it as they would a streamed table
ok( $node->poll_query_until(
		'postgres', q{
		SELECT s.state = 'done' AND t.accepted_columns IS NOT NULL
		FROM zerobus.stat_snapshots s
		JOIN zerobus.stream_tables t ON t.relid = 'so'::regclass
		WHERE s.source_table = 'public.so'}),
	'the snapshot-only table has accepted columns');
$node->safe_psql(
	'postgres', q{
	ALTER TABLE so RENAME COLUMN a TO b;
	ALTER TABLE so ADD COLUMN c int;
	INSERT INTO so VALUES (31, 'b31', 31);
	UPDATE so SET b = 'renamed', c = 1 WHERE id = 1;
});
check_tables($node, $emu, 'sev', 'snapshot-only table evolved',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
	[ 'so', 'main.cdc.so', 'id, b, c', 'id' ]);
is_deeply(
	{   map { ($_->{id} => $_->{b}) }
		  values %{ fold_changes(read_delta($emu, 'main.cdc.so'), 'id') }
	},
	decode_json(
		$node->safe_psql('postgres', 'SELECT json_object_agg(id, b) FROM so')),
	'read by t/delta_reader, the snapshot rows written under a read under b');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(state || ' ' || statement, E'\n' ORDER BY started_at)
		FROM zerobus.statements WHERE stream = 'sev' AND statement LIKE 'ALTER TABLE main.cdc.so%'}),
	"SUCCEEDED ALTER TABLE main.cdc.so RENAME COLUMN a TO b;\n"
	  . "SUCCEEDED ALTER TABLE main.cdc.so ADD COLUMNS (c INT);",
	'the snapshot-only table was altered, not paused');

# rows from the change stream: the target accepts their descriptor, whose
# columns the worker keeps (evolve alters from those)
$node->safe_psql('postgres',
	"INSERT INTO ev SELECT g, 'v' || g, g FROM generate_series(51, 100) g");
wait_acked($node, 'sev',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

# the three changes, with writes between them, each acked before the next
$node->safe_psql(
	'postgres', q{
	ALTER TABLE ev ADD COLUMN extra text;
	INSERT INTO ev SELECT g, 'v' || g, g, 'x' || g FROM generate_series(101, 150) g;
	UPDATE ev SET extra = 'late' WHERE id = 1;
});
wait_acked($node, 'sev',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
$node->safe_psql(
	'postgres', q{
	ALTER TABLE ev RENAME COLUMN val TO label;
	INSERT INTO ev SELECT g, 'l' || g, g, 'y' || g FROM generate_series(151, 200) g;
	UPDATE ev SET label = 'renamed' WHERE id = 2;
});
wait_acked($node, 'sev',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
$node->safe_psql(
	'postgres', q{
	ALTER TABLE ev ALTER COLUMN n TYPE int8;
	INSERT INTO ev SELECT g, 'w' || g, g * 10000000000, 'z' || g FROM generate_series(201, 250) g;
	DELETE FROM ev WHERE id = 3;
});
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
check_tables($node, $emu, 'sev', 'evolved', $lsn,
	[ 'ev', 'main.cdc.ev', 'id, label, n, extra', 'id' ]);

is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.stream_tables WHERE paused_at IS NOT NULL"),
	'0',
	'no table was ever paused');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(state || ' ' || statement, E'\n' ORDER BY started_at)
		FROM zerobus.statements WHERE stream = 'sev' AND statement LIKE 'ALTER TABLE main.cdc.ev %'
		  AND started_at <= (SELECT max(started_at) FROM zerobus.statements WHERE statement LIKE '%n TYPE BIGINT%')}),
	"SUCCEEDED ALTER TABLE main.cdc.ev ADD COLUMNS (extra STRING);\n"
	  . "SUCCEEDED ALTER TABLE main.cdc.ev RENAME COLUMN val TO label;\n"
	  . "SUCCEEDED ALTER TABLE main.cdc.ev ALTER COLUMN n TYPE BIGINT;",
	'each ALTER TABLE is recorded in zerobus.statements');
my @target_columns =
  @{ emulator_api($emu, 'GET', '/admin/tables/main.cdc.ev')->{columns} };
is_deeply(
	[ map { "$_->{name} $_->{type}" } @target_columns[ 0 .. 2 ] ],
	[ 'id INT', 'label STRING', 'n BIGINT' ],
	'the target has the renamed column and the widened type');
is( $node->safe_psql(
		'postgres',
		"SELECT accepted_columns::text ~ 'label' FROM zerobus.stream_tables WHERE relid = 'ev'::regclass"
	),
	't',
	'the target accepted the new descriptor');

# a rename and a widening type change while rows of the previous
# descriptor are still unacked (acks held back 800 ms, writes before and
# after each change in their own transactions): the worker gets those rows
# acked and confirmed before it alters the target, so none is replayed
# with the old descriptor into the altered target, and nothing pauses
#
# The creation of the stream of the first new descriptor (after the rename)
# is answered 1.5 s late, so that the stream of the next one (after the type
# change) would be answered first: the worker must still learn the
# target's answers in the order the descriptors came (a later one's
# rejection taken first once made it alter the target for both changes,
# and the replay's rows of the first one, id still int32, were refused).
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.ev', ack_delay_ms => 800, delay_next_create_ms => 1500 });
$node->safe_psql(
	'postgres', q{
	INSERT INTO ev SELECT g, 'a' || g, g, 'a' FROM generate_series(301, 350) g;
	INSERT INTO ev SELECT g, 'b' || g, g, 'b' FROM generate_series(351, 400) g;
	ALTER TABLE ev RENAME COLUMN label TO title;
	INSERT INTO ev SELECT g, 'c' || g, g, 'c' FROM generate_series(401, 450) g;
	UPDATE ev SET title = 't' || id WHERE id BETWEEN 301 AND 310;
	ALTER TABLE ev ALTER COLUMN id TYPE int8;
	INSERT INTO ev SELECT g, 'd' || g, g, 'd' FROM generate_series(451, 500) g;
	UPDATE ev SET title = 'u' || id WHERE id BETWEEN 401 AND 410;
});
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
check_tables($node, $emu, 'sev', 'evolved under slow acks', $lsn,
	[ 'ev', 'main.cdc.ev', 'id, title, n, extra', 'id' ]);
emulator_api($emu, 'DELETE', '/admin/faults');

# the Delta table read by t/delta_reader (column mapping, type widening):
# rows written under the names val and label read under title, the ids
# written as INT read as BIGINT
my %title = %{
	decode_json(
		$node->safe_psql(
			'postgres', 'SELECT json_object_agg(id, title) FROM ev'))
};
my $independent = fold_changes(read_delta($emu, 'main.cdc.ev'), 'id');
is_deeply({ map { ($_ => $independent->{$_}{title}) } keys %$independent },
	\%title, 'read by t/delta_reader, every title is under its new name');
is_deeply(
	[ sort keys %{ $independent->{1} } ],
	[ sort qw(id title n extra) ],
	'no column under an old name');
is($independent->{2}{title}, 'renamed',
	'a value set under the name label reads under title');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.stream_tables WHERE paused_at IS NOT NULL"),
	'0',
	'no table paused for rows of the old descriptor');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(state || ' ' || statement, E'\n' ORDER BY started_at)
		FROM zerobus.statements
		WHERE stream = 'sev' AND statement LIKE 'ALTER TABLE main.cdc.ev %'
		  AND started_at > (SELECT max(started_at) FROM zerobus.statements WHERE statement LIKE '%n TYPE BIGINT%')}),
	"SUCCEEDED ALTER TABLE main.cdc.ev RENAME COLUMN label TO title;\n"
	  . "SUCCEEDED ALTER TABLE main.cdc.ev ALTER COLUMN id TYPE BIGINT;",
	'the rename and the type change ran once each');

# Failures of the worker's statements: a warehouse error, then a statement
# that outlives zerobus.statement_timeout (canceled).  Each pauses the table
# with the statement's error, its rows held in the slot; the statements are
# recorded; resume_stream evolves it again and every row lands.
emulator_api(
	$emu, 'PUT', '/admin/sql',
	{
		warehouse_error => {
			error_code => 'TEMPORARILY_UNAVAILABLE',
			message => 'warehouse stopped',
			match => 'main.cdc.so',
			count => 1
		}
	});
$node->safe_psql(
	'postgres', q{
	ALTER TABLE so ADD COLUMN d text;
	INSERT INTO so VALUES (32, 'b32', 32, 'd32');
});
my $held_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
like(
	wait_table_paused($node, 'sev', 'public.so'),
	qr/schema_policy evolve could not alter target table main\.cdc\.so: .*TEMPORARILY_UNAVAILABLE.*warehouse stopped/s,
	'evolve: a warehouse error pauses the table, naming the error');
is( $node->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn < '$held_lsn' FROM pg_replication_slots WHERE slot_name = 'zerobus_sev'"
	),
	't',
	'evolve: the slot holds the paused rows');

$node->safe_psql('postgres',
	"ALTER SYSTEM SET zerobus.statement_timeout = '1s'; SELECT pg_reload_conf()");
emulator_api($emu, 'PUT', '/admin/sql',
	{ statement_delay_ms => 30000, statement_delay_match => 'ADD COLUMNS' });
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('sev')");
like(
	wait_table_paused($node, 'sev', 'public.so'),
	qr/did not end within 1000 ms \(zerobus\.statement_timeout\); it was canceled/,
	'evolve: a statement timeout pauses the table, naming the timeout');
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(state, ' ' ORDER BY started_at)
		FROM zerobus.statements
		WHERE stream = 'sev' AND statement LIKE 'ALTER TABLE main.cdc.so ADD COLUMNS (d %'}),
	'FAILED TIMED OUT',
	'evolve: both failed statements are recorded');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.statements WHERE stream = 'sev' AND statement LIKE 'CREATE TABLE IF NOT EXISTS main.cdc.so %'"
	),
	'1',
	'evolve: resume_stream runs no CREATE TABLE for a table paused by evolve');

emulator_api($emu, 'PUT', '/admin/sql',
	{ statement_delay_ms => 0, statement_delay_match => undef });
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET zerobus.statement_timeout; SELECT pg_reload_conf()");
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('sev')");
check_tables($node, $emu, 'sev', 'evolve after failures',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
	[ 'so', 'main.cdc.so', 'id, b, c, d', 'id' ]);

# A missing privilege: the target given to another owner, the stream's
# principal keeps MODIFY, which covers an added column but not a rename
# (Unity Catalog wants the owner).  The rename pauses the table with the
# warehouse's refusal; once the principal owns the table again,
# resume_stream evolves it and every row lands.
emulator_api($emu, 'PUT', '/admin/tables/main.cdc.so/owner',
	{ owner => 'someone_else' });
$node->safe_psql(
	'postgres', q{
	ALTER TABLE so RENAME COLUMN d TO e;
	INSERT INTO so VALUES (33, 'b33', 33, 'e33');
});
like(
	wait_table_paused($node, 'sev', 'public.so'),
	qr/schema_policy evolve could not alter target table main\.cdc\.so: .*INSUFFICIENT_PERMISSIONS.*User is not an owner of Table 'main\.cdc\.so'/s,
	'evolve: a rename without the ownership pauses the table, naming the privilege');
emulator_api($emu, 'PUT', '/admin/tables/main.cdc.so/owner',
	{ owner => 'client_sev' });
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('sev')");
check_tables($node, $emu, 'sev', 'evolve after the ownership came back',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
	[ 'so', 'main.cdc.so', 'id, b, c, e', 'id' ]);

# a type change Delta cannot apply in place: paused as under the pause policy
$node->safe_psql(
	'postgres', q{
	ALTER TABLE ev ALTER COLUMN extra TYPE int USING length(extra);
	INSERT INTO ev VALUES (1000, 'after', 1, 7);
});
like(
	wait_table_paused($node, 'sev', 'public.ev'),
	qr/extra.*ALTER TABLE main\.cdc\.ev ALTER COLUMN extra TYPE INT/s,
	'a type change Delta cannot widen pauses the table with the hint');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zerobus.statements WHERE stream = 'sev' AND statement LIKE '%extra TYPE INT%'"
	),
	'0',
	'no statement was tried for it');

$node->stop;
stop_emulator($emu);
done_testing();
