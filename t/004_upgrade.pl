# Copyright (c) zerobus authors
#
# ALTER EXTENSION zerobus UPDATE under a running stream: a stream created
# on version 0.1.0 (its install script, as the first release shipped it)
# keeps its slot, its settings and its position through the update to the
# default version, flows before, during and after it, and loses nothing:
# the Delta table folded equals the source, and the slot never passed the
# acks.  The extension's objects after the update are those of a fresh
# installation (which today runs the same scripts in one go: the check
# guards against an update script whose result depends on the state it
# updates, and against a future install script of the new version that
# differs from the update).

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('upgrade');
my $emu = start_emulator();

# zb_node created the extension at its default version: start from 0.1.0
$node->safe_psql(
	'postgres', q{
	DROP EXTENSION zerobus;
	CREATE EXTENSION zerobus VERSION '0.1.0';
	CREATE TABLE t1 (id int PRIMARY KEY, val text);
	CREATE PUBLICATION pub FOR TABLE t1;
});
my $default = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'zerobus'");
isnt($default, '0.1.0', "the default version ($default) is newer than 0.1.0");
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'zerobus'"),
	'0.1.0', 'version 0.1.0 installed');

declare_target($node, $emu, 't1', 'main.cdc.t1');
create_stream($node, $emu, 's1', 'pub',
	batch_max_records => 7, batch_max_delay => 5, schema_policy => "'pause'");
wait_streaming($node, 's1');

# Inserts rows $from..$to into t1, one transaction each ten.
sub write_rows
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO t1 SELECT g, 'v' || g FROM generate_series($from, $to) g");
	$node->safe_psql('postgres',
		"UPDATE t1 SET val = val || '+' WHERE id % 3 = 0 AND id BETWEEN $from AND $to");
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

wait_acked($node, 's1', write_rows(1, 100));

# The library runs the SQL functions of 0.1.0 (which lack the arguments and
# columns added since) until the update.
$node->safe_psql('postgres', "SELECT zerobus.pause_stream('s1')");
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('s1', batch_max_records => 9)");
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('s1')");
wait_streaming($node, 's1');
wait_acked($node, 's1', write_rows(101, 200));

# What must survive the update: the stream's row (every column 0.1.0 has),
# its slot and the position the slot confirmed.
my $columns = $node->safe_psql(
	'postgres', q{
	SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
	FROM pg_attribute
	WHERE attrelid = 'zerobus.streams'::regclass AND attnum > 0 AND NOT attisdropped});
my $stream_row = "SELECT $columns FROM zerobus.streams WHERE name = 's1'";
my $before = $node->safe_psql('postgres', $stream_row);
my $slot_before = $node->safe_psql('postgres',
	"SELECT slot_name, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
);
my ($slot_name, $confirmed_before) = split /\|/, $slot_before;
is($slot_name, 'zerobus_s1', 'the stream has its slot');

# The update, with changes committed just before it not acked yet.
my $lsn = write_rows(201, 400);
$node->safe_psql('postgres', 'ALTER EXTENSION zerobus UPDATE');
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'zerobus'"),
	$default, "updated to $default");

is($node->safe_psql('postgres', $stream_row),
	$before, 'the stream keeps every setting it had');
ok( $node->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn >= '$confirmed_before' FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
	) eq 't',
	'its slot is the same and kept its position');
wait_streaming($node, 's1');
wait_acked($node, 's1', $lsn);
$lsn = write_rows(401, 600);
check_tables($node, $emu, 's1', 'after the update', $lsn,
	[ 't1', 'main.cdc.t1', 'id, val', 'id' ]);
is(stream_stat($node, 's1', 'records_acked') >= 800,
	1, 'stat_streams counts on through the update');

# The objects of the extension after the update and after a fresh
# installation at the default version: name, kind and definition.
my $objects = q{
	SELECT string_agg(d, E'\n' ORDER BY d) FROM (
		SELECT pg_describe_object(classid, objid, 0) ||
			coalesce(' ' || (SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.oid = objid AND classid = 'pg_proc'::regclass), '') ||
			coalesce(' ' || (SELECT pg_get_viewdef(c.oid) FROM pg_class c WHERE c.oid = objid AND classid = 'pg_class'::regclass AND c.relkind = 'v'), '') ||
			coalesce(' ' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attname)
				FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
				WHERE a.attrelid = objid AND classid = 'pg_class'::regclass AND a.attnum > 0 AND NOT a.attisdropped), '') ||
			coalesce(' ' || (SELECT c.relacl::text FROM pg_class c WHERE c.oid = objid AND classid = 'pg_class'::regclass), '') ||
			coalesce(' ' || (SELECT p.proacl::text FROM pg_proc p WHERE p.oid = objid AND classid = 'pg_proc'::regclass), '') AS d
		FROM pg_depend
		WHERE refclassid = 'pg_extension'::regclass
		  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'zerobus')
		  AND deptype = 'e') o};
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION zerobus');
is($node->safe_psql('postgres', $objects),
	$node->safe_psql('fresh', $objects),
	'the updated extension has the objects of a fresh installation');

$node->stop;
stop_emulator($emu);
done_testing();
