# Copyright (c) zerobus authors
#
# Arrays a protobuf repeated field cannot carry as they are (NULL elements,
# a NULL array) never stop a stream.  Under the default array_nulls policy
# 'mark' they reach the Delta table without their NULL elements, each named
# in the record's _array_nulls column with the positions of its NULL
# elements (none for a NULL array), so that the test rebuilds every source
# array exactly from the Delta table alone; stat_streams counts them.
# Under 'pause' the table pauses at such a row, naming the policy, the slot
# holds, and after alter_stream(array_nulls => 'mark') and resume_stream()
# the row lands.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('array_nulls');
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE arr (id int PRIMARY KEY, vals int[], tags text[], grid float8[]);
	CREATE PUBLICATION pub FOR TABLE arr;
	INSERT INTO arr VALUES (1, '{1,NULL,3}', '{a}', '{{1.5,NULL},{NULL,-0.5}}');
});
declare_target($node, $emu, 'arr', 'main.cdc.arr');
create_stream($node, $emu, 'arr', 'pub');
wait_streaming($node, 'arr');

$node->safe_psql(
	'postgres', q{
	INSERT INTO arr VALUES
		(2, '{NULL}', '{}', NULL),
		(3, NULL, '{x,NULL,NULL,y}', '{}'),
		(4, '{}', NULL, '{NULL,NULL}'),
		(5, '{5}', '{b,c}', '{2.25}');
	UPDATE arr SET tags = '{NULL,z}' WHERE id = 5;
	DELETE FROM arr WHERE id = 4;
	INSERT INTO arr SELECT g, ARRAY[g, NULL, g], ARRAY[NULL, g::text], NULL
	FROM generate_series(10, 209) g;
});
wait_acked($node, 'arr',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

# The source arrays as PostgreSQL prints them, flattened (the target has no
# dimensions), NULL for a NULL array.
sub source_arrays
{
	my %rows;
	for my $line (
		split /\n/,
		$node->safe_psql(
			'postgres', q{
			SELECT id, c, coalesce((SELECT string_agg(coalesce(e, 'NULL'), ',' ORDER BY n)
					FROM unnest(v) WITH ORDINALITY AS u(e, n)), '') , v IS NULL
			FROM arr, LATERAL (VALUES ('vals', vals::text[]), ('tags', tags),
				('grid', grid::text[])) AS cols(c, v)})
	  )
	{
		my ($id, $col, $elems, $isnull) = split /\|/, $line, -1;
		$rows{$id}{$col} = $isnull eq 't' ? undef : $elems;
	}
	return \%rows;
}

# Each Delta row's arrays rebuilt from the array and its _array_nulls entry.
sub rebuilt_arrays
{
	my $folded = fold_records(delta_rows($emu, 'main.cdc.arr'), 'id');
	my %rows;
	for my $id (keys %$folded)
	{
		my $r = $folded->{$id};
		my %marks =
		  map { $_->{path} => $_->{positions} // [] } @{ $r->{_array_nulls} // [] };
		for my $col (qw(vals tags grid))
		{
			my @elems = @{ $r->{$col} // [] };
			if (exists $marks{$col} && !@{ $marks{$col} })
			{
				# a NULL array: sent empty (a non-empty one would stay
				# non-empty, and differ from the source's NULL)
				$rows{$id}{$col} = @elems ? join(',', @elems) : undef;
				next;
			}
			splice @elems, $_ - 1, 0, 'NULL' for @{ $marks{$col} // [] };
			$rows{$id}{$col} = join ',', @elems;
		}
	}
	return \%rows;
}

is_deeply(rebuilt_arrays(), source_arrays(),
	'every source array rebuilt exactly from Delta and _array_nulls');
# row 1 (snapshot): vals and grid; rows 2, 3, 4, 5's update: one each; the
# 200 rows of the last INSERT: vals and tags
wait_stat($node, 'arr', 'array_nulls = 2 + 1 + 1 + 1 + 1 + 200 * 2',
	'stat_streams counts the arrays sent without their NULL elements');

# array_nulls 'pause': the table pauses at such a row; the slot holds.
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('arr', array_nulls => 'pause')");
wait_streaming($node, 'arr');
$node->safe_psql('postgres',
	"INSERT INTO arr VALUES (300, '{300}', '{ok}', NULL)");
my $before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres',
	"INSERT INTO arr VALUES (301, '{NULL,301}', '{}', NULL)");
like(
	wait_table_paused($node, 'arr', 'public.arr',
		'array_nulls pause: the table pauses'),
	qr/array with NULL elements and the stream's array_nulls policy is 'pause'/,
	'the reason names the policy and the way on');
is( $node->safe_psql(
		'postgres',
		"SELECT confirmed_flush_lsn <= '$before' FROM pg_replication_slots WHERE slot_name = 'zerobus_arr'"
	),
	't',
	'the slot holds before the paused row');

# Back to 'mark' and resume: both rows land.
$node->safe_psql('postgres',
	"SELECT zerobus.alter_stream('arr', array_nulls => 'mark')");
$node->safe_psql('postgres', "SELECT zerobus.resume_stream('arr')");
wait_streaming($node, 'arr');
wait_acked($node, 'arr',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is_deeply(rebuilt_arrays(), source_arrays(),
	'after resume every source array is in Delta, the paused row too');
check_slot_behind_acks($node, 'arr');

stop_emulator($emu);
$node->stop;
done_testing();
