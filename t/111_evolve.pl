# Copyright (c) zerobus authors
#
# schema_policy evolve: ADD COLUMN, RENAME COLUMN and a widening type change
# in the source, with writes between them, are applied to the target by the
# worker through the SQL Statement Execution API (the statements
# target_ddl(form => 'alter') prints), without a pause: every row lands
# with the new columns, the Delta table folded equals the source, the
# statements are recorded in zerobus.statements.  A type change Delta
# cannot widen pauses the table as under the pause policy.

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
	CREATE PUBLICATION pub FOR TABLE ev;
});
create_stream(
	$node, $emu, 'sev', 'pub',
	warehouse_id => "'wh1'",
	create_targets => 'true',
	schema_policy => "'evolve'",
	create_schemas => ['main.cdc']);
wait_streaming($node, 'sev');

# rows from the change stream: the target accepts their descriptor, whose
# columns the worker keeps (evolve alters from those)
$node->safe_psql('postgres',
	"INSERT INTO ev SELECT g, 'v' || g, g FROM generate_series(51, 100) g");
wait_acked($node, 'sev',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

# the three changes, with writes between them; the worker sends the rows
# before each change before the next comes (see README, "Schema changes":
# rows of the previous descriptor not yet acked when a rename or a type
# change is applied cannot be replayed into the altered target)
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
		FROM zerobus.statements WHERE stream = 'sev' AND statement LIKE 'ALTER%'}),
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
