# Copyright (c) zerobus authors
#
# Helpers shared by the TAP tests that stream into the local Zerobus
# emulator: a PostgreSQL node set up for zerobus, the emulator process and
# its admin API, target tables declared from zerobus.target_ddl(), and the
# Delta rows read back and folded into the table they describe.

package ZerobusTest;

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Exporter 'import';
our @EXPORT = qw(zb_node start_emulator stop_emulator emulator_api
  declare_target create_stream wait_streaming wait_failed wait_table_paused
  wait_acked delta_rows read_delta fold_records fold_changes source_rows check_slot_behind_acks
  stream_stat poll_until one_table_stream make_test_certs wait_stat
  check_tables setup_t1_t2 write_t1_t2);

my $srcdir =
  File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), '..', '..'));
my $json = JSON::PP->new->canonical;

# Emulators started and not yet stopped: killed when the test script exits,
# so that a test dying half-way leaves no emulator behind.
my @emulators;

END
{
	local $?;					# kill_kill's waitpid must not change the exit code
	$_->kill_kill for grep { $_->pumpable } @emulators;
}

# A started node with zerobus preloaded (serving every database, the
# default of zerobus.databases) and the extension created in database
# postgres.  Extra postgresql.conf lines may be given.
sub zb_node
{
	my ($name, $extra_conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'zerobus'
output_plugin_libraries = 'pgoutput, test_decoding, zerobus'
wal_receiver_status_interval = 1
} . ($extra_conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION zerobus');
	return $node;
}

# Starts the emulator on free ports with its data in a fresh directory;
# returns a handle with grpc_port, grpc_tls_port (set when args give
# --tls-cert and --tls-key), http_port, data_dir.
sub start_emulator
{
	my (%opts) = @_;
	my $dir = $opts{data_dir} // PostgreSQL::Test::Utils::tempdir();
	my ($out, $err) = ('', '');
	my @cmd = (
		'node', "$srcdir/emulator/bin/zerobus-emulator.js",
		'--data-dir', $dir,
		'--grpc-port', $opts{grpc_port} // 0,
		'--http-port', $opts{http_port} // 0,
		@{ $opts{args} // [] });
	my $log = "$PostgreSQL::Test::Utils::log_path/emulator.log";
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>>', $log);
	push @emulators, $h;
	my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$timer->start;
	while ($out !~ /\n/)
	{
		die "emulator did not start (see $log)"
		  if !$timer->check || !$h->pumpable;
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	my ($line) = split /\n/, $out;
	my $ready = decode_json($line);
	die "unexpected emulator output: $line" unless ($ready->{event} // '') eq 'ready';
	return {
		handle => $h,
		grpc_port => $ready->{grpc_port},
		grpc_tls_port => $ready->{grpc_tls_port},
		http_port => $ready->{http_port},
		data_dir => $dir,
		pid => $ready->{pid},
	};
}

# Stops the emulator (SIGTERM: it publishes before exiting).
sub stop_emulator
{
	my ($emu) = @_;
	$emu->{handle}->signal('TERM');
	$emu->{handle}->finish;
	return;
}

# Calls the emulator's HTTP API; dies unless it answers 2xx.  Returns the
# decoded JSON reply.
sub emulator_api
{
	my ($emu, $method, $path, $body) = @_;
	my $res = HTTP::Tiny->new(timeout => 60)->request(
		$method,
		"http://127.0.0.1:$emu->{http_port}$path",
		{
			headers => { 'content-type' => 'application/json' },
			defined $body ? (content => $json->encode($body)) : ()
		});
	die "emulator $method $path: $res->{status} $res->{content}"
	  unless $res->{success};
	return decode_json($res->{content} || '{}');
}

# Makes, in a new temporary directory that it returns, a test CA (ca.pem),
# an unrelated one (other_ca.pem) and a server certificate for 127.0.0.1
# and localhost signed by the first (server.pem, server.key), with the
# openssl command; no key is kept in the repository.
sub make_test_certs
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	for my $ca ('ca', 'other_ca')
	{
		system_or_bail(
			'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
			'-keyout', "$dir/$ca.key", '-out', "$dir/$ca.pem", '-days', '1',
			'-subj', "/CN=zerobus TAP test $ca",
			'-addext', 'basicConstraints=critical,CA:TRUE',
			'-addext', 'keyUsage=critical,keyCertSign,cRLSign');
	}
	system_or_bail(
		'openssl', 'req', '-newkey', 'rsa:2048', '-nodes',
		'-keyout', "$dir/server.key", '-out', "$dir/server.csr",
		'-subj', '/CN=localhost');
	PostgreSQL::Test::Utils::append_to_file("$dir/ext.cnf",
		    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
		  . "basicConstraints=CA:FALSE\n"
		  . "keyUsage=digitalSignature,keyEncipherment\n"
		  . "extendedKeyUsage=serverAuth\n");
	system_or_bail(
		'openssl', 'x509', '-req', '-in', "$dir/server.csr",
		'-CA', "$dir/ca.pem", '-CAkey', "$dir/ca.key", '-CAcreateserial',
		'-out', "$dir/server.pem", '-days', '1', '-extfile', "$dir/ext.cnf");
	return $dir;
}

# Declares target table $target in the emulator with the columns
# zerobus.target_ddl() gives for $source (of database $dbname, default
# postgres).
sub declare_target
{
	my ($node, $emu, $source, $target, $dbname) = @_;
	my $ddl = $node->safe_psql($dbname // 'postgres',
		"SELECT zerobus.target_ddl('$source', '$target')");
	my @columns;
	for my $line (split /\n/, $ddl)
	{
		next
		  unless $line =~
		  /^  (`(?:[^`]|``)+`|\S+) (.*?)( NOT NULL)?,?(?: -- .*)?$/;
		my ($name, $type, $notnull) = ($1, $2, $3);
		$name =~ s/^`(.*)`$/$1/ and $name =~ s/``/`/g;
		push @columns,
		  { name => $name, type => $type, nullable => !$notnull };
	}
	die "no columns in target_ddl output:\n$ddl" unless @columns;
	emulator_api($emu, 'PUT', "/admin/tables/$target",
		{ columns => \@columns });
	return \@columns;
}

# Creates a stream to the emulator (insecure: plain h2c to loopback, unless
# $opts{endpoint} names another) with a client allowed to write every table
# and to create tables in the schemas $opts{create_schemas} lists (none by
# default).  $opts{settings} is SQL run first in the same session (SET
# commands).  The other %opts are extra named arguments of
# zerobus.create_stream (SQL literals).  Returns the call's messages
# (stderr).  $opts{dbname} is the database to create it in (default
# postgres).
sub create_stream
{
	my ($node, $emu, $name, $publication, %opts) = @_;
	my $dbname = delete $opts{dbname} // 'postgres';
	my $client = "client_$name";
	my $endpoint = delete $opts{endpoint}
	  // "'http://127.0.0.1:$emu->{grpc_port}'";
	my $settings = delete $opts{settings} // '';
	emulator_api(
		$emu, 'POST',
		'/admin/clients',
		{
			client_id => $client,
			client_secret => "secret_$name",
			tables => ['*'],
			create_schemas => delete $opts{create_schemas} // []
		});
	my $extra = join '', map { ", $_ => $opts{$_}" } sort keys %opts;
	my ($ret, $out, $err) = $node->psql(
		$dbname, qq{$settings
		SELECT zerobus.create_stream('$name', '$publication',
			endpoint => $endpoint,
			workspace_url => 'http://127.0.0.1:$emu->{http_port}',
			client_id => '$client', client_secret => 'secret_$name',
			target_catalog => 'main', target_schema => 'cdc',
			insecure => true$extra)});
	die "create_stream $name failed: $err" if $ret != 0;
	return $err;
}

# The setup of the tests that need one table: t1 (id int, val text),
# publication pub, target main.cdc.t1 and stream s1, streaming.
sub one_table_stream
{
	my ($node, $emu) = @_;
	$node->safe_psql(
		'postgres', q{
		CREATE TABLE t1 (id int PRIMARY KEY, val text);
		CREATE PUBLICATION pub FOR TABLE t1;
	});
	declare_target($node, $emu, 't1', 'main.cdc.t1');
	create_stream($node, $emu, 's1', 'pub');
	wait_streaming($node, 's1');
	return;
}

# Column $column of stream $name's row of zerobus.stat_streams.
sub stream_stat
{
	my ($node, $name, $column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM zerobus.stat_streams WHERE name = '$name'");
}

# Calls $cond (a code ref) every 100 ms until it returns true (then returns
# 1) or the test timeout passes (then returns 0).
sub poll_until
{
	my ($cond) = @_;
	my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$timer->start;
	until ($cond->())
	{
		# check() moves the timer to expired; is_expired() alone never does
		return 0 if !$timer->check;
		select(undef, undef, undef, 0.1);
	}
	return 1;
}

# Polls until stream $name (of database $dbname, default postgres) reports
# the streaming state.
sub wait_streaming
{
	my ($node, $name, $dbname) = @_;
	return ok(
		$node->poll_query_until(
			$dbname // 'postgres',
			"SELECT state FROM zerobus.stat_streams WHERE name = '$name'",
			'streaming'),
		"stream $name is streaming");
}

# Polls until stream $name has failed (its worker gave up on a permanent
# error); returns the stream's paused_reason.  $test_name is optional.
sub wait_failed
{
	my ($node, $name, $test_name) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT state FROM zerobus.stat_streams WHERE name = '$name'",
			'failed'),
		$test_name // "stream $name failed")
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = '$name'");
	return $node->safe_psql('postgres',
		"SELECT paused_reason FROM zerobus.stat_streams WHERE name = '$name'");
}

# Polls until table $table alone of stream $name is paused, the stream
# still streaming; returns the table's paused_reason.  $test_name is
# optional.
sub wait_table_paused
{
	my ($node, $name, $table, $test_name) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT state || ' ' || paused_tables::text FROM zerobus.stat_streams WHERE name = '$name'",
			"streaming {$table}"),
		$test_name // "table $table of stream $name paused")
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = '$name'");
	return $node->safe_psql('postgres',
		"SELECT paused_reason FROM zerobus.stat_snapshots WHERE stream = '$name' AND source_table = '$table'"
	);
}

# Waits until the stream's acked LSN reaches $lsn; fails the test (with the
# stream's state) if it does not in time.
sub wait_acked
{
	my ($node, $name, $lsn) = @_;
	my $ok = $node->poll_query_until('postgres',
		"SELECT acked_lsn >= '$lsn' FROM zerobus.stat_streams WHERE name = '$name'"
	);
	ok($ok, "stream $name acked up to $lsn")
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = '$name'");
	return $ok;
}

# Polls until stream $name's row of zerobus.stat_streams satisfies $cond
# (an SQL expression); shows the row when it does not in time.
sub wait_stat
{
	my ($node, $name, $cond, $what) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT $cond FROM zerobus.stat_streams WHERE name = '$name'"),
		$what)
	  or diag $node->safe_psql('postgres',
		"SELECT * FROM zerobus.stat_streams WHERE name = '$name'");
	return;
}

# Waits until stream $name acked $lsn, then checks that each Delta table,
# its change records folded, equals its source table, and that the slot
# never passed the acks.  @tables: [source, target, columns, key] each.
sub check_tables
{
	my ($node, $emu, $name, $label, $lsn, @tables) = @_;
	wait_acked($node, $name, $lsn);
	for my $t (@tables)
	{
		my ($source, $target, $columns, $key) = @$t;
		is_deeply(
			fold_changes(delta_rows($emu, $target), $key),
			source_rows($node, $source, $columns, $key),
			"$label: Delta table $source equals the source table");
	}
	check_slot_behind_acks($node, $name);
	return;
}

# The two tables of the tests that need two: t1 (id int PRIMARY KEY, val
# text) and t2 (k text PRIMARY KEY, n int), publication pub of both, and
# their targets main.cdc.t1 and main.cdc.t2 in the emulator.
sub setup_t1_t2
{
	my ($node, $emu) = @_;
	$node->safe_psql(
		'postgres', q{
		CREATE TABLE t1 (id int PRIMARY KEY, val text);
		CREATE TABLE t2 (k text PRIMARY KEY, n int);
		CREATE PUBLICATION pub FOR TABLE t1, t2;
	});
	declare_target($node, $emu, 't1', 'main.cdc.t1');
	declare_target($node, $emu, 't2', 'main.cdc.t2');
	return;
}

# The workload of the tests on two tables, t1 (id int PRIMARY KEY, val
# text) and t2 (k text PRIMARY KEY, n int): $n rows into each, with ids
# from $$next on (advanced), one transaction per table, then an update of
# the first row of t1 and a delete of the last of t2.  Returns the WAL
# position after it.
sub write_t1_t2
{
	my ($node, $next, $n) = @_;
	my ($from, $to) = ($$next, $$next + $n - 1);
	$$next += $n;
	$node->safe_psql(
		'postgres', qq{
		INSERT INTO t1 SELECT g, 'v' || g FROM generate_series($from, $to) g;
		INSERT INTO t2 SELECT 'k' || g, g FROM generate_series($from, $to) g;
		UPDATE t1 SET val = 'u' || id WHERE id = $from;
		DELETE FROM t2 WHERE k = 'k$to';
	});
	return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
}

# The rows of an emulator Delta table, after publishing what is durable.
sub delta_rows
{
	my ($emu, $table) = @_;
	emulator_api($emu, 'POST', '/admin/flush');
	my ($out, $err);
	IPC::Run::run [
		'node', "$srcdir/emulator/bin/zerobus-read.js",
		'--data-dir', $emu->{data_dir}, '--table', $table
	  ],
	  '>', \$out, '2>', \$err
	  or die "zerobus-read failed: $err";
	return [ map { decode_json($_) } grep { /\S/ } split /\n/, $out ];
}

# The rows of an emulator Delta table (catalog.schema.table) as
# t/delta_reader, the reader that shares no code with the emulator, prints
# them (its canonical forms: a long is a string), after publishing what is
# durable.
sub read_delta
{
	my ($emu, $table) = @_;
	emulator_api($emu, 'POST', '/admin/flush');
	my ($out, $err);
	IPC::Run::run [
		'node', "$srcdir/t/delta_reader/read-delta.js",
		join('/', "$emu->{data_dir}/tables", split /\./, $table)
	  ],
	  '>', \$out, '2>', \$err
	  or die "read-delta failed: $err";
	return [ map { decode_json($_) } grep { /\S/ } split /\n/, $out ];
}

# Applies change records in (_commit_lsn, _seq) order: inserts, update
# postimages and snapshot rows upsert by key, deletes and update preimages
# (present when the key changed or the replica identity is FULL) delete by
# key.  A postimage's _unchanged_columns (unchanged TOAST values, absent
# from it) keep the values the row had before the update: the row of its
# key, or the one its preimage just removed (absent if neither is known).  Returns { key => the last
# record of the key, metadata included }.
sub fold_records
{
	my ($rows, @keys) = @_;
	my %table;
	my $before;    # the row the last record, a preimage, removed
	for my $r (sort {
			$a->{_commit_lsn} <=> $b->{_commit_lsn}
			  or $a->{_seq} <=> $b->{_seq}
	} @$rows)
	{
		my $key = join "\0", map { $r->{$_} // '' } @keys;
		my $type = $r->{_change_type};
		my $removed;
		if (   $type eq 'insert'
			|| $type eq 'update_postimage'
			|| $type eq 'snapshot')
		{
			my @unchanged = @{ $r->{_unchanged_columns} // [] };
			my $old = $table{$key} // $before;
			$r = { %$r, map { ($_ => $old->{$_}) } @unchanged }
			  if @unchanged && $old;
			$table{$key} = $r;
		}
		elsif ($type eq 'delete' || $type eq 'update_preimage')
		{
			$removed = delete($table{$key}) // $r;
			$removed = undef if $type eq 'delete';
		}
		else
		{
			die "unknown _change_type $type";
		}
		$before = $removed;
	}
	return \%table;
}

# fold_records without the metadata columns: { key => row }.
sub fold_changes
{
	my $table = fold_records(@_);
	for my $r (values %$table)
	{
		$r = { map { $_ => $r->{$_} } grep { !/^_/ } keys %$r };
	}
	return $table;
}

# The rows of a source table in the shape fold_changes returns; $select
# lists the columns as JSON-compatible expressions.
sub source_rows
{
	my ($node, $table, $select, @keys) = @_;
	my $rows = decode_json(
		$node->safe_psql(
			'postgres',
			"SELECT coalesce(json_agg(t), '[]') FROM (SELECT $select FROM $table) t"
		));
	return { map { (join("\0", map { $_ // '' } @{$_}{@keys}) => $_) } @$rows };
}

# Checks that the slot's confirmed_flush_lsn is not past the stream's acked
# LSN.
sub check_slot_behind_acks
{
	my ($node, $name) = @_;
	my $res = $node->safe_psql(
		'postgres', qq{
		SELECT s.confirmed_flush_lsn <= z.acked_lsn, s.confirmed_flush_lsn, z.acked_lsn
		FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name)
		WHERE z.name = '$name'});
	like($res, qr/^t\|/, "slot of $name confirmed no further than acked ($res)");
	return;
}

1;
