# Copyright (c) zerobus authors
#
# Parity with pgoutput, on whatever PostgreSQL version runs the suite: the
# same WAL is decoded by pgoutput (protocol 1, parsed here from its binary
# messages) and by zerobus (its json form), through the same publications,
# and both must give the same changes (kind, table) of the same tables with
# the same columns and the same values.  The publications cover what decides
# what a change looks like: row filters (an UPDATE that leaves or enters the
# filter becomes a DELETE or an INSERT), column lists, partitions published
# via their root and not, TABLES IN SCHEMA, generated columns (on 18 also
# published on request), and every replica identity (default, index, full;
# nothing for inserts only).

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $node = zb_node('parity', "max_replication_slots = 20\n");
my $version = $node->safe_psql('postgres', 'SHOW server_version_num');

$node->safe_psql(
	'postgres', q{
	CREATE TABLE plain (id int PRIMARY KEY, v text, n int);
	CREATE TABLE filtered (id int PRIMARY KEY, v text, n int);
	-- a row filter on a column outside the key takes REPLICA IDENTITY FULL
	ALTER TABLE filtered REPLICA IDENTITY FULL;
	CREATE TABLE listed (id int PRIMARY KEY, secret text, v text, n int);
	CREATE TABLE gen (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED);
	CREATE TABLE full_ri (id int, v text, n int);
	ALTER TABLE full_ri REPLICA IDENTITY FULL;
	CREATE TABLE idx_ri (id int NOT NULL, k int NOT NULL, v text);
	CREATE UNIQUE INDEX idx_ri_k ON idx_ri (k);
	ALTER TABLE idx_ri REPLICA IDENTITY USING INDEX idx_ri_k;
	CREATE TABLE nothing_ri (id int, v text);
	ALTER TABLE nothing_ri REPLICA IDENTITY NOTHING;
	CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region))
		PARTITION BY LIST (region);
	CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
	CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
	CREATE TABLE parted2 (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
	CREATE TABLE parted2_low PARTITION OF parted2 FOR VALUES FROM (0) TO (100);
	CREATE TABLE parted2_high PARTITION OF parted2 FOR VALUES FROM (100) TO (1000);
	CREATE SCHEMA sales;
	CREATE TABLE sales.orders (id int PRIMARY KEY, total int);
	CREATE TABLE sales.items (id int PRIMARY KEY, name text);
	CREATE TABLE unpublished (id int PRIMARY KEY);

	CREATE PUBLICATION p_main FOR TABLE plain, filtered WHERE (n > 10),
		listed (id, v, n), gen, full_ri, idx_ri, nothing_ri
		WITH (publish = 'insert, update, delete, truncate');
	CREATE PUBLICATION p_root FOR TABLE parted WITH (publish_via_partition_root = true);
	CREATE PUBLICATION p_leaf FOR TABLE parted2;
	CREATE PUBLICATION p_schema FOR TABLES IN SCHEMA sales;
	CREATE PUBLICATION p_inserts FOR TABLE sales.items WITH (publish = 'insert');
});

my @pubs = qw(p_main p_root p_leaf p_schema p_inserts);

# 18 publishes stored generated columns on request: by naming them in a
# column list, or with publish_generated_columns = stored
if ($version >= 180000)
{
	$node->safe_psql(
		'postgres', q{
		CREATE TABLE gen18 (id int PRIMARY KEY, n int,
			twice int GENERATED ALWAYS AS (n * 2) STORED,
			half int GENERATED ALWAYS AS (n / 2) STORED);
		CREATE TABLE gen18l (id int PRIMARY KEY, n int,
			twice int GENERATED ALWAYS AS (n * 2) STORED);
		CREATE PUBLICATION p_gencols FOR TABLE gen18
			WITH (publish_generated_columns = stored);
		CREATE PUBLICATION p_genlist FOR TABLE gen18l (id, twice);
	});
	push @pubs, qw(p_gencols p_genlist);
}
for my $pub (@pubs)
{
	$node->safe_psql('postgres',
		"SELECT pg_create_logical_replication_slot('po_$pub', 'pgoutput');"
		  . "SELECT pg_create_logical_replication_slot('zb_$pub', 'zerobus');");
}

$node->safe_psql(
	'postgres', q{
	INSERT INTO plain SELECT g, 'v' || g, g FROM generate_series(1, 5) g;
	UPDATE plain SET v = 'changed' WHERE id = 1;
	UPDATE plain SET id = 100 WHERE id = 2;        -- key change
	UPDATE plain SET v = NULL WHERE id = 3;
	DELETE FROM plain WHERE id = 4;

	INSERT INTO filtered VALUES (1, 'low', 5), (2, 'high', 50), (3, 'high', 60);
	UPDATE filtered SET n = 20 WHERE id = 1;       -- enters the filter: INSERT
	UPDATE filtered SET n = 1 WHERE id = 2;        -- leaves it: DELETE
	UPDATE filtered SET v = 'still' WHERE id = 3;  -- stays: UPDATE
	UPDATE filtered SET v = 'never' WHERE id = 2;  -- stays out: nothing
	DELETE FROM filtered WHERE id = 3;

	INSERT INTO listed VALUES (1, 's1', 'a', 1), (2, 's2', 'b', 2);
	UPDATE listed SET secret = 'hidden change' WHERE id = 1;
	UPDATE listed SET v = 'seen' WHERE id = 2;
	DELETE FROM listed WHERE id = 1;

	INSERT INTO gen (id, n) VALUES (1, 21), (2, 4);
	UPDATE gen SET n = 5 WHERE id = 2;

	INSERT INTO full_ri VALUES (1, 'a', 1), (1, 'a', 1), (2, NULL, 2);
	UPDATE full_ri SET v = 'b' WHERE id = 2;
	DELETE FROM full_ri WHERE id = 1;

	INSERT INTO idx_ri VALUES (1, 10, 'a'), (2, 20, 'b');
	UPDATE idx_ri SET v = 'c' WHERE k = 10;
	UPDATE idx_ri SET k = 21 WHERE k = 20;
	DELETE FROM idx_ri WHERE k = 10;

	INSERT INTO nothing_ri VALUES (1, 'only inserts');

	INSERT INTO parted VALUES (1, 'eu', 'a'), (2, 'us', 'b');
	UPDATE parted SET v = 'c' WHERE id = 1;
	UPDATE parted SET region = 'us' WHERE id = 1;  -- moves partition
	DELETE FROM parted WHERE id = 2;

	INSERT INTO parted2 VALUES (1, 'low'), (500, 'high');
	UPDATE parted2 SET id = 600 WHERE id = 1;      -- moves partition
	DELETE FROM parted2 WHERE id = 500;

	INSERT INTO sales.orders VALUES (1, 100), (2, 200);
	UPDATE sales.orders SET total = 150 WHERE id = 1;
	DELETE FROM sales.orders WHERE id = 2;
	INSERT INTO sales.items VALUES (1, 'widget');
	UPDATE sales.items SET name = 'gadget' WHERE id = 1;
	DELETE FROM sales.items WHERE id = 1;
	INSERT INTO unpublished VALUES (1);

	TRUNCATE plain, gen;
	TRUNCATE parted;
});
$node->safe_psql(
	'postgres', q{
	INSERT INTO gen18 (id, n) VALUES (1, 10), (2, 7);
	UPDATE gen18 SET n = 11 WHERE id = 1;
	DELETE FROM gen18 WHERE id = 2;
	INSERT INTO gen18l (id, n) VALUES (1, 3);
	UPDATE gen18l SET n = 4 WHERE id = 1;
}) if $version >= 180000;

# --- pgoutput, protocol 1 -----------------------------------------------------

# The changes of one pgoutput slot, each "table kind {column => value}" with
# the tuple's non-NULL columns; an UPDATE gives its old tuple (when sent) as
# kind update_preimage, then update_postimage.  TRUNCATE gives one entry per
# table.  Also returns each relation's published columns.
sub pgoutput_changes
{
	my ($slot, $pub) = @_;
	my $hex = $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(encode(data, 'hex'), ',' ORDER BY ord)
		FROM pg_logical_slot_get_binary_changes('$slot', NULL, NULL,
			'proto_version', '1', 'publication_names', '$pub')
			WITH ORDINALITY AS c(lsn, xid, data, ord)});
	my (%rels, @changes);
	for my $msg (split /,/, $hex)
	{
		my $b = pack('H*', $msg);
		my $pos = 0;
		my $take = sub {
			my ($fmt, $len) = @_;
			my $v = unpack($fmt, substr($b, $pos, $len));
			$pos += $len;
			return $v;
		};
		my $string = sub {
			my $end = index($b, "\0", $pos);
			my $s = substr($b, $pos, $end - $pos);
			$pos = $end + 1;
			return $s;
		};
		my $tuple = sub {
			my ($rel) = @_;
			my $n = $take->('n', 2);
			my %row;
			for my $i (0 .. $n - 1)
			{
				my $kind = $take->('a', 1);
				if ($kind eq 't')
				{
					my $len = $take->('N', 4);
					$row{ $rel->{columns}[$i] } = substr($b, $pos, $len);
					$pos += $len;
				}
				elsif ($kind eq 'u') { $row{ $rel->{columns}[$i] } = '(unchanged)' }
			}
			return \%row;
		};
		my $type = $take->('a', 1);
		if ($type eq 'R')
		{
			my $relid = $take->('N', 4);
			my $rel = { name => $string->() . '.' . $string->() };
			$take->('C', 1);
			my $n = $take->('n', 2);
			for (1 .. $n)
			{
				$take->('C', 1);
				push @{ $rel->{columns} }, $string->();
				$take->('N', 4);
				$take->('N', 4);
			}
			$rels{$relid} = $rel;
		}
		elsif ($type eq 'I' || $type eq 'U' || $type eq 'D')
		{
			my $rel = $rels{ $take->('N', 4) };
			my $sub = $take->('a', 1);
			if ($sub eq 'K' || $sub eq 'O')
			{
				push @changes,
				  [ $rel->{name},
					$type eq 'D' ? 'delete' : 'update_preimage',
					$tuple->($rel) ];
				$sub = $take->('a', 1) if $type eq 'U';
			}
			push @changes,
			  [ $rel->{name}, $type eq 'I' ? 'insert' : 'update_postimage',
				$tuple->($rel) ]
			  if $type ne 'D';
		}
		elsif ($type eq 'T')
		{
			my $n = $take->('N', 4);
			$take->('C', 1);
			push @changes, [ $rels{ $take->('N', 4) }{name}, 'truncate', {} ]
			  for 1 .. $n;
		}
	}
	# Published via their root, pgoutput describes the leaf partition as well
	# as the root, though its changes name the root: the columns compared
	# are those of the tables the changes name.
	my %named = map { $_->[0] => 1 } @changes;
	my %columns = map { $_->{name} => [ sort @{ $_->{columns} } ] }
	  grep { $named{ $_->{name} } } values %rels;
	return (\@changes, \%columns);
}

# --- zerobus, json form ----------------------------------------------------------

sub zerobus_changes
{
	my ($slot, $pub) = @_;
	my (%columns, @changes);
	for my $line (
		split /\n/,
		$node->safe_psql(
			'postgres', qq{
			SELECT data FROM pg_logical_slot_get_changes('$slot', NULL, NULL,
				'publication_names', '$pub', 'format', 'json', 'include_volatile', 'off')})
	  )
	{
		my $m = decode_json($line);
		if ($m->{action} eq 'R')
		{
			$columns{"$m->{schema}.$m->{table}"} =
			  [ sort map { $_->{name} } @{ $m->{columns} } ];
		}
		elsif ($m->{action} eq 'T')
		{
			push @changes, [ $_, 'truncate', {} ] for @{ $m->{relations} };
		}
		elsif ($m->{record})
		{
			my %row = map { $_ => "$m->{record}{$_}" }
			  grep { !/^_/ } keys %{ $m->{record} };
			push @changes,
			  [ "$m->{schema}.$m->{table}", $m->{record}{_change_type}, \%row ];
		}
	}
	return (\@changes, \%columns);
}

for my $pub (@pubs)
{
	my ($po, $po_columns) = pgoutput_changes("po_$pub", $pub);
	my ($zb, $zb_columns) = zerobus_changes("zb_$pub", $pub);
	cmp_ok(scalar @$po, '>', 0, "$pub: pgoutput sent changes");
	is_deeply($zb_columns, $po_columns, "$pub: the same tables with the same columns");
	is_deeply($zb, $po, "$pub: the same changes, in the same order, with the same values")
	  or diag explain { pgoutput => $po, zerobus => $zb };
}

$node->stop;
done_testing();
