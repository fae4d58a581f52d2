# Copyright (c) zerobus authors
#
# Schema changes of a published table while the stream runs.
#
# - The columns the target accepted are stored in zerobus.stream_tables.
# - Compatible ADD COLUMN: the target is first altered (emulator admin API)
#   to take a new nullable column; changes keep flowing, never failing.
# - Incompatible ADD COLUMN, type change (int4 -> int8) and RENAME COLUMN:
#   Zerobus rejects the new descriptor; that table alone pauses, with a
#   reason naming the table and the column, the server's message and a hint
#   with the exact Databricks ALTER TABLE; zerobus.target_ddl(form =>
#   'alter') prints the same statement.  Meanwhile another table of the
#   stream keeps flowing into its target, and the slot never confirms past
#   the paused table's first rejected change.  Once the target is fixed,
#   resume_stream() delivers everything written before and during the
#   pause, for both tables.
# - DROP COLUMN: the target keeps the nullable column; changes flow on.
# - schema_policy drop_missing_columns: columns the target lacks are left
#   out (stat_streams.schema_notice says so) and changes flow on, and so do
#   the records of snapshot_table(); a type
#   change still pauses; once the target has the columns they flow again.
# - A table whose target never accepted a descriptor: the reason names the
#   column from the server's message and the hint points at target_ddl.
#
# Each time the Delta table, with the change records applied in
# (_commit_lsn, _seq) order, equals the source table, and the slot never
# confirms past the acked LSN.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('schema');
my $emu = start_emulator();
my $target = 'main.cdc.sc';

$node->safe_psql(
	'postgres', q{
	CREATE TABLE sc (id int PRIMARY KEY, val text);
	CREATE TABLE other (id int PRIMARY KEY, v text);
	CREATE PUBLICATION pub FOR TABLE sc, other;
});
my $columns = declare_target($node, $emu, 'sc', $target);
declare_target($node, $emu, 'other', 'main.cdc.other');
my $other_id = 0;
create_stream($node, $emu, 'sc', 'pub');
wait_streaming($node, 'sc');

# Checks that the Delta table, restricted to the source's columns $select,
# equals the source table.
sub check_delta
{
	my ($select, $what) = @_;
	my @names = map { s/^.* AS //r } split /, /, $select;
	my $delta = fold_changes(delta_rows($emu, $target), 'id');
	for my $row (values %$delta)
	{
		%$row = map { $_ => $row->{$_} } @names;
	}
	is_deeply($delta, source_rows($node, 'sc', $select, 'id'),
		"Delta table equals the source table $what");
	check_other($what);
	check_slot_behind_acks($node, 'sc');
	return;
}

sub current_lsn
{
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

# Runs $ddl, then $dml; returns the WAL position between them, which the
# slot must not pass while the target rejects $dml's change.
sub alter_then_write
{
	my ($ddl, $dml) = @_;
	$node->safe_psql('postgres', $ddl);
	my $lsn = current_lsn();
	$node->safe_psql('postgres', $dml);
	return $lsn;
}

# Checks that table other's target equals the source table.
sub check_other
{
	my ($what) = @_;
	is_deeply(
		fold_changes(delta_rows($emu, 'main.cdc.other'), 'id'),
		source_rows($node, 'other', 'id, v', 'id'),
		"Delta table of other equals the source table $what");
	return;
}

# Waits for table $table (public.sc unless given) alone to pause on a
# rejected descriptor written at or after $lsn.  Checks that the stream
# still streams with last_error showing the table's reason, that table
# other keeps flowing (its new rows reach its target) while the slot
# confirms no further than $lsn.  Returns the reason.
sub wait_paused
{
	my ($lsn, $what, $table) = @_;
	$table //= 'public.sc';
	my $reason = wait_table_paused($node, 'sc', $table,
		"$table alone pauses on $what");
	check_flowing_held($lsn, $reason, $what);
	return $reason;
}

# Checks that table other flows (new rows reach its target) while the slot
# confirms no further than $lsn, the worker runs, and last_error shows
# $reason.
sub check_flowing_held
{
	my ($lsn, $reason, $what) = @_;
	my $acked = $node->safe_psql('postgres',
		"SELECT records_acked FROM zerobus.stat_streams WHERE name = 'sc'");
	$node->safe_psql('postgres',
		"INSERT INTO other SELECT g, 'o' || g FROM generate_series($other_id + 1, $other_id + 20) g"
	);
	$other_id += 20;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT records_acked >= $acked + 20 FROM zerobus.stat_streams WHERE name = 'sc'"
		),
		"$what: table other keeps flowing");
	check_other("while a table is paused: $what");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT pid IS NOT NULL, confirmed_lsn <= '$lsn', last_error = \$\$$reason\$\$,
				paused_reason IS NULL
			FROM zerobus.stat_streams WHERE name = 'sc'}),
		't|t|t|t',
		"$what: the worker runs, the slot stays before the rejected change, last_error shows the reason, the stream is not failed"
	);
	check_slot_behind_acks($node, 'sc');
	return;
}

# Replaces the target's columns (emulator admin API) and resumes.
sub fix_target_and_resume
{
	emulator_api($emu, 'PUT', "/admin/tables/$target", { columns => $columns });
	$node->safe_psql('postgres', "SELECT zerobus.resume_stream('sc')");
	return;
}

sub alter_ddl
{
	return $node->safe_psql('postgres',
		"SELECT zerobus.target_ddl('sc', stream => 'sc', form => 'alter')");
}

$node->safe_psql('postgres',
	"INSERT INTO sc SELECT g, 'v' || g FROM generate_series(1, 200) g");
wait_acked($node, 'sc', current_lsn());
is( $node->safe_psql(
		'postgres', q{
		SELECT string_agg(c->>'name' || ':' || (c->>'field_number') || ':' || (c->>'delta_type'), ',')
		FROM zerobus.stream_tables t, jsonb_array_elements(t.accepted_columns) c
		WHERE t.relid = 'sc'::regclass}),
	'id:1:INT,val:2:STRING',
	'the columns the target accepted are stored');
is(alter_ddl(), '', 'target_ddl alter form: nothing to change');

# --- compatible: the target takes the new column first ---
push @$columns, { name => 'extra', type => 'INT', nullable => 1 };
emulator_api($emu, 'PUT', "/admin/tables/$target", { columns => $columns });
$node->safe_psql(
	'postgres', q{
	BEGIN;
	INSERT INTO sc VALUES (201, 'before the alter');
	ALTER TABLE sc ADD COLUMN extra int;
	INSERT INTO sc SELECT g, 'w' || g, g * 2 FROM generate_series(202, 300) g;
	UPDATE sc SET extra = -id WHERE id <= 20;
	COMMIT;
	DELETE FROM sc WHERE id BETWEEN 21 AND 30;
});
wait_acked($node, 'sc', current_lsn());
check_delta('id, val, extra', 'after a compatible ADD COLUMN');
is( $node->safe_psql('postgres',
		"SELECT state, paused_reason IS NULL FROM zerobus.stat_streams WHERE name = 'sc'"),
	'streaming|t', 'the stream never failed');

# --- ADD COLUMN of a column the target lacks ---
my $add_lsn = alter_then_write('ALTER TABLE sc ADD COLUMN note text',
	"INSERT INTO sc VALUES (301, 'with note', 1, 'a note')");
my $reason = wait_paused($add_lsn, 'a column the target lacks');
like(
	$reason,
	qr/^column "note" of table public\.sc \(target \Q$target\E\) is not in the target table\. /,
	'ADD: the reason names the column, the table and the target');
like(
	$reason,
	qr/table \Q$target\E with status 3 \(INVALID_ARGUMENT\): descriptor field "note" is not a column of the table/,
	"ADD: the reason shows the server's status and message");
like(
	$reason,
	qr/Hint: Run in Databricks: ALTER TABLE \Q$target\E ADD COLUMNS \(note STRING\); Then call SELECT zerobus\.resume_stream\('sc'\);$/,
	'ADD: the hint gives the ALTER TABLE and the resume call');
is(alter_ddl(), "ALTER TABLE $target ADD COLUMNS (note STRING);",
	'target_ddl alter form gives the same statement');

# Changes while the stream is failed.
$node->safe_psql(
	'postgres', q{
	INSERT INTO sc SELECT g, 'x' || g, g, 'n' || g FROM generate_series(302, 400) g;
	UPDATE sc SET note = 'noted' WHERE id <= 50;
	UPDATE sc SET id = id + 1000 WHERE id BETWEEN 100 AND 104;
	DELETE FROM sc WHERE id BETWEEN 150 AND 160;
});

# The pause outlives the worker: a new one skips public.sc from its first
# change on, so the slot still holds while table other flows.
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM zerobus.stat_streams WHERE name = 'sc'");
$node->safe_psql('postgres', "SELECT zerobus.alter_stream('sc')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT pid <> $pid AND state = 'streaming' AND paused_tables = '{public.sc}' FROM zerobus.stat_streams WHERE name = 'sc'"
	),
	'a new worker starts with public.sc still paused');
check_flowing_held($add_lsn, $reason, 'after a worker restart');
my $lsn = current_lsn();
push @$columns, { name => 'note', type => 'STRING', nullable => 1 };
fix_target_and_resume();
wait_acked($node, 'sc', $lsn);
check_delta('id, val, extra, note', 'after ADD COLUMN, the target fixed and the stream resumed');
is( $node->safe_psql('postgres',
		"SELECT state, paused_reason IS NULL FROM zerobus.stat_streams WHERE name = 'sc'"),
	'streaming|t', 'the stream is streaming again');
is(alter_ddl(), '', 'the stored accepted columns follow the target');

# --- DROP COLUMN: the target keeps its nullable column ---
$node->safe_psql(
	'postgres', q{
	ALTER TABLE sc DROP COLUMN extra;
	INSERT INTO sc SELECT g, 'd' || g, 'm' || g FROM generate_series(401, 450) g;
	UPDATE sc SET note = 'after drop' WHERE id BETWEEN 40 AND 60;
});
wait_acked($node, 'sc', current_lsn());
check_delta('id, val, note', 'after DROP COLUMN');
is( $node->safe_psql('postgres',
		"SELECT state, paused_reason IS NULL FROM zerobus.stat_streams WHERE name = 'sc'"),
	'streaming|t', 'DROP COLUMN: the stream never failed');
is(alter_ddl(), '', 'DROP COLUMN: the accepted columns are those of the new descriptor');

# --- type change: int4 -> int8 ---
$reason = wait_paused(
	alter_then_write('ALTER TABLE sc ALTER COLUMN id TYPE int8',
		"INSERT INTO sc VALUES (5000000000, 'big', 'beyond int4')"),
	'a type change');
like(
	$reason,
	qr/^column "id" of table public\.sc \(target \Q$target\E\) changed type from INT to BIGINT\. /,
	'type change: the reason names the column and both types');
like(
	$reason,
	qr/Hint: Run in Databricks: ALTER TABLE \Q$target\E ALTER COLUMN id TYPE BIGINT; Then call/,
	'type change: the hint gives ALTER COLUMN TYPE');
is(alter_ddl(), "ALTER TABLE $target ALTER COLUMN id TYPE BIGINT;",
	'type change: target_ddl alter form agrees');
$node->safe_psql('postgres', "UPDATE sc SET val = 'while paused' WHERE id <= 10");
$lsn = current_lsn();
$_->{type} = 'BIGINT' for grep { $_->{name} eq 'id' } @$columns;
fix_target_and_resume();
wait_acked($node, 'sc', $lsn);
check_delta('id, val, note', 'after the type change, the target fixed and the stream resumed');

# --- RENAME COLUMN ---
$reason = wait_paused(
	alter_then_write('ALTER TABLE sc RENAME COLUMN val TO label',
		"INSERT INTO sc VALUES (451, 'renamed', NULL)"),
	'a renamed column');
like(
	$reason,
	qr/^column "label" of table public\.sc \(target \Q$target\E\) was renamed from "val"\. /,
	'RENAME: the reason names both names');
like(
	$reason,
	qr/Hint: Run in Databricks: ALTER TABLE \Q$target\E RENAME COLUMN val TO label; Then call/,
	'RENAME: the hint gives RENAME COLUMN');
is(alter_ddl(), "ALTER TABLE $target RENAME COLUMN val TO label;",
	'RENAME: target_ddl alter form agrees');
$_->{name} = 'label' for grep { $_->{name} eq 'val' } @$columns;
fix_target_and_resume();
# The emulator has no Delta column mapping: rows written before the rename
# read the new column as null.  Rewrite every row so that each key's last
# record carries the new name, then compare every column.
$node->safe_psql('postgres', 'UPDATE sc SET label = label');
wait_acked($node, 'sc', current_lsn());
check_delta('id, label, note', 'after RENAME, the target fixed and the stream resumed');

# --- schema_policy drop_missing_columns: flows on without the column ---
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('sc', schema_policy => 'drop_missing_columns')");
wait_streaming($node, 'sc');
$node->safe_psql(
	'postgres', q{
	ALTER TABLE sc ADD COLUMN secret text, ADD COLUMN code int;
	INSERT INTO sc SELECT g, 'p' || g, 'n' || g, 's' || g, g FROM generate_series(501, 550) g;
	UPDATE sc SET label = 'policy', secret = 'hidden' WHERE id <= 30;
	DELETE FROM sc WHERE id BETWEEN 520 AND 525;
});
wait_acked($node, 'sc', current_lsn());
check_delta('id, label, note', 'without the columns the target lacks');
is( $node->safe_psql(
		'postgres',
		"SELECT state, paused_reason IS NULL, schema_notice FROM zerobus.stat_streams WHERE name = 'sc'"
	),
	"streaming|t|public.sc: dropping columns secret, code (not in target $target)",
	'drop_missing_columns: the stream flows on and says which columns it drops');
is(alter_ddl(), "ALTER TABLE $target ADD COLUMNS (secret STRING, code INT);",
	'drop_missing_columns: the accepted columns lack the dropped ones');

# A snapshot of the table under the policy leaves the same columns out
# instead of sending a descriptor the target rejects.
$node->safe_psql('postgres', "SELECT zerobus.snapshot_table('sc', 'sc')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'done' OR paused_reason IS NOT NULL FROM zerobus.stat_snapshots WHERE source_table = 'public.sc'"
	),
	'drop_missing_columns: snapshot_table() ends');
is( $node->safe_psql(
		'postgres',
		"SELECT state, coalesce(paused_reason, 'not paused') FROM zerobus.stat_snapshots WHERE source_table = 'public.sc'"
	),
	'done|not paused',
	'drop_missing_columns: the snapshot completes without pausing the table');
is( scalar(grep { $_->{_change_type} eq 'snapshot' } @{ delta_rows($emu, $target) }),
	$node->safe_psql('postgres', 'SELECT count(*) FROM sc'),
	'drop_missing_columns: every row was snapshotted');
check_delta('id, label, note', 'snapshot without the columns the target lacks');

# A type change still pauses under the policy.
$reason = wait_paused(
	alter_then_write(
		'ALTER TABLE sc ALTER COLUMN code TYPE int8, ALTER COLUMN note TYPE int USING length(note)',
		"INSERT INTO sc VALUES (551, 'int note', 7, NULL, 1)"),
	'a type change under drop_missing_columns');
like(
	$reason,
	qr/^column "note" of table public\.sc \(target \Q$target\E\) changed type from STRING to INT/,
	'drop_missing_columns: a type change pauses, naming the column');

# The target takes every column: once the worker restarts, they flow.
$_->{type} = 'INT' for grep { $_->{name} eq 'note' } @$columns;
push @$columns,
  { name => 'secret', type => 'STRING', nullable => 1 },
  { name => 'code', type => 'BIGINT', nullable => 1 };
fix_target_and_resume();
# Every row again: the rows sent without secret and code, and those whose
# note the target holds as text.
$node->safe_psql('postgres', 'UPDATE sc SET secret = secret');
wait_acked($node, 'sc', current_lsn());
check_delta('id, label, note, secret, code',
	'with every column once the target has them');
is( $node->safe_psql(
		'postgres',
		"SELECT state, paused_reason IS NULL, schema_notice IS NULL FROM zerobus.stat_streams WHERE name = 'sc'"
	),
	'streaming|t|t', 'the stream is streaming at the end, dropping nothing');

# --- a table whose target never accepted a descriptor ---
my $fresh = 'main.cdc.fresh';
$node->safe_psql('postgres', 'CREATE TABLE fresh (id int PRIMARY KEY)');
declare_target($node, $emu, 'fresh', $fresh);
$node->safe_psql(
	'postgres', q{
	ALTER TABLE fresh ADD COLUMN v text;
	ALTER PUBLICATION pub ADD TABLE fresh;
	INSERT INTO fresh SELECT g, 'f' || g FROM generate_series(1, 20) g;
});
$reason = wait_paused(current_lsn(), 'a first descriptor the target rejects',
	'public.fresh');
like(
	$reason,
	qr/^target table \Q$fresh\E rejected the columns of table public\.fresh \("v"\)\. /,
	'first descriptor: the reason names the column from the server message');
like(
	$reason,
	qr/Hint: Compare the target table with SELECT zerobus\.target_ddl\('public\.fresh', '\Q$fresh\E'\); alter it, then call SELECT zerobus\.resume_stream\('sc'\);$/,
	'first descriptor: the hint points at target_ddl');
declare_target($node, $emu, 'fresh', $fresh);
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('sc')");
wait_acked($node, 'sc', current_lsn());
is_deeply(
	fold_changes(delta_rows($emu, $fresh), 'id'),
	source_rows($node, 'fresh', 'id, v', 'id'),
	'first descriptor: Delta table equals the source table once the target is fixed');
check_other('at the end');
is( $node->safe_psql('postgres',
		"SELECT state, paused_tables FROM zerobus.stat_streams WHERE name = 'sc'"),
	'streaming|{}', 'no table is paused at the end');

stop_emulator($emu);
$node->stop;
done_testing();
