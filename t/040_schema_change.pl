# Copyright (c) zerobus authors
#
# A schema change of a published table while the stream runs.
#
# - Compatible: the target table is first altered (emulator admin API) to
#   take a new nullable column, which ends its live Zerobus streams; then
#   ALTER TABLE ADD COLUMN on the source.  Changes keep flowing, the new
#   column arrives, the stream never fails.
# - Incompatible: ALTER TABLE ADD COLUMN of a column the target lacks.
#   Zerobus rejects the new descriptor; the stream pauses (failed) with a
#   reason naming the table and showing the server's message, and its slot
#   keeps the WAL.  Once the target has the column, resume_stream()
#   delivers everything written before and during the pause.
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
	CREATE PUBLICATION pub FOR TABLE sc;
});
my $columns = declare_target($node, $emu, 'sc', $target);
create_stream($node, $emu, 'sc', 'pub');
wait_streaming($node, 'sc');

# Checks that the Delta table equals the source table, whose columns are
# $select.
sub check_delta
{
	my ($select, $what) = @_;
	is_deeply(fold_changes(delta_rows($emu, $target), 'id'),
		source_rows($node, 'sc', $select, 'id'),
		"Delta table equals the source table $what");
	check_slot_behind_acks($node, 'sc');
	return;
}

$node->safe_psql('postgres',
	"INSERT INTO sc SELECT g, 'v' || g FROM generate_series(1, 200) g");
wait_acked($node, 'sc', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

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
wait_acked($node, 'sc', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
check_delta('id, val, extra', 'after a compatible ADD COLUMN');
is( $node->safe_psql('postgres',
		"SELECT state, paused_reason IS NULL FROM zerobus.stat_streams WHERE name = 'sc'"),
	'streaming|t', 'the stream never failed');

# --- incompatible: a column the target lacks ---
$node->safe_psql(
	'postgres', q{
	ALTER TABLE sc ADD COLUMN note text;
	INSERT INTO sc VALUES (301, 'with note', 1, 'a note');
});
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( $node->poll_query_until(
		'postgres',
		"SELECT state FROM zerobus.stat_streams WHERE name = 'sc'",
		'failed'),
	'stream fails on a column the target lacks')
  or diag $node->safe_psql('postgres',
	"SELECT * FROM zerobus.stat_streams WHERE name = 'sc'");
my $reason = $node->safe_psql('postgres',
	"SELECT paused_reason FROM zerobus.stat_streams WHERE name = 'sc'");
like($reason, qr/table \Q$target\E with status 3 \(INVALID_ARGUMENT\)/,
	'reason names the target table and the status');
like($reason, qr/descriptor field "note" is not a column of the table/,
	"reason shows the server's message");
is( $node->safe_psql(
		'postgres', qq{
		SELECT coalesce(pid, 0), confirmed_lsn < '$lsn', last_error = paused_reason
		FROM zerobus.stat_streams WHERE name = 'sc'}),
	'0|t|t',
	'no worker, the slot keeps the WAL, last_error shows the reason');
check_slot_behind_acks($node, 'sc');

# Changes while the stream is failed.
$node->safe_psql(
	'postgres', q{
	INSERT INTO sc SELECT g, 'x' || g, g, 'n' || g FROM generate_series(302, 400) g;
	UPDATE sc SET note = 'noted' WHERE id <= 50;
	UPDATE sc SET id = id + 1000 WHERE id BETWEEN 100 AND 104;
	DELETE FROM sc WHERE id BETWEEN 150 AND 160;
});
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

# Fix the target, resume: everything arrives.
push @$columns, { name => 'note', type => 'STRING', nullable => 1 };
emulator_api($emu, 'PUT', "/admin/tables/$target", { columns => $columns });
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('sc')");
wait_acked($node, 'sc', $lsn);
check_delta('id, val, extra, note', 'after the target was fixed and the stream resumed');
is( $node->safe_psql('postgres',
		"SELECT state, paused_reason IS NULL FROM zerobus.stat_streams WHERE name = 'sc'"),
	'streaming|t', 'the stream is streaming again');

stop_emulator($emu);
$node->stop;
done_testing();
