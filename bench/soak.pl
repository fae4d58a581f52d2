#!/usr/bin/env perl
# Copyright (c) zerobus authors
#
# soak.pl
#	  The chaos soak: a throwaway cluster streaming through three zerobus
#	  streams into the local emulator under a mixed workload, with faults
#	  drawn from a seeded random generator at random times, overlapping,
#	  while an oracle that takes nothing from the worker checks the promise
#	  every 100 ms.  Run through bench/soak.sh (or t/100_soak.pl).
#
#	  perl bench/soak.pl --minutes N --seed S [--fault-interval SECONDS]
#	      [--json FILE]
#
# Workload (pgbench, 4 clients at a steady rate, plus the driver):
#	orders (bigint key from a sequence): small inserts, updates, updates
#	  that give the row a new key, deletes;
#	events (uuid key, jsonb): inserts of 1-20 rows;
#	docs (REPLICA IDENTITY FULL, ~6 kB bodies kept in TOAST): inserts,
#	  updates that leave the body alone (unchanged TOAST), body updates,
#	  deletes;
#	a transaction touching orders, events and docs at once (two streams);
#	big: every 40 s (at most four times) one transaction inserting 120,000
#	  rows and deleting the batch before it;
#	late: upserts from the start, added to a publication half-way (the
#	  worker snapshots it, then streams its changes).
# Streams: s1 (orders, events), s2 (docs, then late), s3 (big), each with
# ack_timeout 3 s, through a TCP relay (bench/soak_relay.js) to the
# emulator, which is started with --track-transactions.
#
# Faults: one every --fault-interval seconds on average (exponential gaps),
# the kinds in seeded shuffled rounds so that every kind comes once per
# round; those with a duration overlap the next ones.  See %FAULTS.
#
# The oracle: each stream's slot has a twin, a pgoutput slot on the same
# publication created right after it, which the driver consumes to learn
# each transaction's commit LSN and how many records zerobus must send for
# it (an insert or delete one, an update two when the old row is in the WAL,
# else one).  The emulator reports which (_xid, _seq) records it holds as
# durable in its own log (GET /admin/durable).  Every 100 ms, on a fixed
# schedule, a sampler process reads each zerobus slot's confirmed_flush_lsn,
# then the emulator's durable records; the driver checks each sample once
# the oracle slots, read after it, know every transaction below its slots: a
# transaction whose commit LSN is below the confirmed LSN (PostgreSQL will
# never decode it again) must have all its records durable.
# A violation stops the run with the seed, the time, the fault history and
# both LSNs.
#
# At the end the faults stop, the workload stops, the streams drain, and
# every table folded from Delta (bench/soak_fold.js) equals its source.
# The report goes to stdout (and as JSON to --json): minutes, transactions
# and rows written, faults by kind, recovery after each kind (until acks
# flow again, see check_recoveries), duplicates, peak lag, worker peak
# memory, samples, their interval and violations.
# Exit status 0 only with no violation and every table equal.
#
# --inject-loss SECONDS checks the oracle itself: at that time it pauses
# s1, commits a row into orders and advances s1's slot past it by hand
# (what a worker confirming too early would do), then resumes s1; the run
# must stop with a violation.

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use Getopt::Long;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use List::Util qw(max min shuffle sum0);
use POSIX qw(ceil);
use Time::HiRes qw(time sleep);

my $top;
BEGIN { $top = File::Spec->rel2abs(dirname(__FILE__) . '/..'); }
use lib "$top/t/lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my ($minutes, $seed, $fault_interval, $json_file, $inject_loss) =
  (2, 1, 1.8, undef, undef);
GetOptions(
	'minutes=f' => \$minutes,
	'seed=i' => \$seed,
	'fault-interval=f' => \$fault_interval,
	'json=s' => \$json_file,
	'inject-loss=f' => \$inject_loss)
  or die
  "usage: soak.pl --minutes N --seed S [--fault-interval S] [--json FILE] [--inject-loss SECONDS]\n";

# The helpers report through Test::More; this is no test, so its output is
# dropped and its end-of-run checks are off.  PostgreSQL::Test::Utils sends
# STDOUT to the log file; the run's own lines go where Test::More's went,
# the terminal and the log.
my $report_fh = Test::More->builder->output;
open my $devnull, '>', File::Spec->devnull or die;
Test::More->builder->output($devnull);
Test::More->builder->failure_output($devnull);
Test::More->builder->todo_output($devnull);
Test::More->builder->no_ending(1);

srand($seed);
my $t0 = time;
my $duration = $minutes * 60;
my $ACK_TIMEOUT_MS = 3000;
my @STREAMS = qw(s1 s2 s3);
my %pub_tables = (
	s1 => [qw(orders events)],
	s2 => [qw(docs)],
	s3 => [qw(big)]);
# source table -> [columns as JSON-compatible expressions, key]
my %shape = (
	orders => [
		'id, customer, amount::text AS amount, status, (extract(epoch FROM updated) * 1000000)::bigint AS updated',
		'id'
	],
	events => [
		'id::text AS id, kind, payload::text AS payload, (extract(epoch FROM at) * 1000000)::bigint AS at',
		'id'
	],
	docs => [ 'id, title, body', 'id' ],
	big => [ 'id, grp, filler', 'id' ],
	late => [ 'k, n', 'k' ]);

sub now { return time - $t0; }
# Prints to where Test::More's output went (the terminal and the log).
sub out { print $report_fh sprintf(shift, @_); return; }
sub say { out("[%7.1fs] %s\n", now(), join '', @_); return; }

# An LSN as a number of bytes.
sub lsn_num
{
	my ($hi, $lo) = split m{/}, shift;
	return hex($hi) * 4294967296 + hex($lo);
}

sub lsn_text
{
	my $n = shift;
	return sprintf '%X/%X', int($n / 4294967296), $n % 4294967296;
}

######################################################################
# Setup: cluster, emulator, relay, tables, streams and their twin slots.

# Checkpoints every 30 s keep the WAL a crash replays, and so the time
# PostgreSQL is down after a worker killed or an immediate restart, short.
my $node = zb_node('soak',
	"restart_after_crash = on\nmax_wal_size = 1GB\ncheckpoint_timeout = 30s\n");
my @emu_args = ('--track-transactions', 'true', '--compact-bytes', 1 << 50);
my $emu = start_emulator(args => \@emu_args);
my $emu_up = 1;

my ($relay_out, $relay_h) = ('');
$relay_h = IPC::Run::start(
	[ 'node', "$top/bench/soak_relay.js", '--target-port', $emu->{grpc_port} ],
	'<', \undef, '>', \$relay_out, '2>>',
	"$PostgreSQL::Test::Utils::log_path/relay.log");
poll_until(sub { $relay_h->pump_nb; $relay_out =~ /\n/ })
  or die "the relay did not start";
# the relay and the session go with the driver, also when it is interrupted
END
{
	local $?;    # kill_kill's waitpid must not change the exit status
	$relay_h->kill_kill if $relay_h;
	stop_sampler();
	drop_psql();
}
$SIG{INT} = $SIG{TERM} = sub { exit 1 };    # exit: an eval would catch a die
my $relay = decode_json((split /\n/, $relay_out)[0]);

sub relay_call
{
	my ($what) = @_;
	my $res = HTTP::Tiny->new(timeout => 10)
	  ->post("http://127.0.0.1:$relay->{control_port}/$what");
	die "relay $what: $res->{status}" unless $res->{success};
	return;
}

$node->safe_psql(
	'postgres', q{
	CREATE TABLE orders (id bigserial PRIMARY KEY, customer int, amount numeric(12,2),
		status text, updated timestamptz);
	CREATE TABLE events (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), kind text,
		payload jsonb, at timestamptz);
	CREATE TABLE docs (id serial PRIMARY KEY, title text, body text);
	ALTER TABLE docs REPLICA IDENTITY FULL;
	CREATE TABLE big (id bigint PRIMARY KEY, grp int, filler text);
	CREATE TABLE late (k text PRIMARY KEY, n int);
	CREATE PUBLICATION pub_s1 FOR TABLE orders, events;
	CREATE PUBLICATION pub_s2 FOR TABLE docs;
	CREATE PUBLICATION pub_s3 FOR TABLE big;
});
my @targets;
for my $t (qw(orders events docs big))
{
	declare_target($node, $emu, $t, "main.cdc.$t");
	push @targets, "main.cdc.$t";
}
for my $s (@STREAMS)
{
	create_stream($node, $emu, $s, "pub_$s",
		endpoint => "'http://127.0.0.1:$relay->{port}'",
		ack_timeout => $ACK_TIMEOUT_MS);
	# the twin slot, made before any write, sees the same transactions
	$node->safe_psql('postgres',
		"SELECT pg_create_logical_replication_slot('oracle_$s', 'pgoutput')");
	wait_streaming($node, $s) or die "stream $s does not stream";
}

######################################################################
# The workload.

my $scripts = PostgreSQL::Test::Utils::tempdir();
my $pick = sub {
	my ($table, $seq) = @_;
	return
	  "(SELECT id FROM $table WHERE id >= (:r::float8 / 1e9 * (SELECT last_value FROM $seq))::bigint ORDER BY id LIMIT 1)";
};
my $body = q{(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 200))};
my %pgbench_scripts = (
	orders_insert => [ 6, q{
\set c random(1, 1000)
\set a random(1, 10000000)
INSERT INTO orders (customer, amount, status, updated) VALUES (:c, :a / 100.0, 'new', now());
} ],
	orders_update => [ 2, qq{
\\set r random(0, 1000000000)
UPDATE orders SET amount = amount + 1, status = 'paid', updated = now() WHERE id = @{[ $pick->('orders', 'orders_id_seq') ]};
} ],
	orders_rekey => [ 2, qq{
\\set r random(0, 1000000000)
UPDATE orders SET id = nextval('orders_id_seq'), status = 'moved' WHERE id = @{[ $pick->('orders', 'orders_id_seq') ]};
} ],
	orders_delete => [ 1, qq{
\\set r random(0, 1000000000)
DELETE FROM orders WHERE id = @{[ $pick->('orders', 'orders_id_seq') ]};
} ],
	events_insert => [ 3, q{
\set n random(1, 20)
INSERT INTO events (kind, payload, at) SELECT 'k' || (g % 5), jsonb_build_object('g', g, 'r', random()::text), now() FROM generate_series(1, :n) g;
} ],
	docs_insert => [ 1, qq{
INSERT INTO docs (title, body) VALUES ('new', $body);
} ],
	docs_title => [ 2, qq{
\\set r random(0, 1000000000)
UPDATE docs SET title = 'title ' || random() WHERE id = @{[ $pick->('docs', 'docs_id_seq') ]};
} ],
	docs_body => [ 1, qq{
\\set r random(0, 1000000000)
UPDATE docs SET body = $body WHERE id = @{[ $pick->('docs', 'docs_id_seq') ]};
} ],
	docs_delete => [ 1, qq{
\\set r random(0, 1000000000)
DELETE FROM docs WHERE id = @{[ $pick->('docs', 'docs_id_seq') ]};
} ],
	mixed => [ 1, qq{
\\set r random(0, 1000000000)
BEGIN;
INSERT INTO orders (customer, amount, status, updated) VALUES (0, 1.5, 'mixed', now());
INSERT INTO events (kind, payload, at) VALUES ('mixed', '{"mixed": true}', now());
UPDATE docs SET title = 'mixed' WHERE id = @{[ $pick->('docs', 'docs_id_seq') ]};
COMMIT;
} ],
	late_upsert => [ 2, q{
\set k random(1, 3000)
INSERT INTO late VALUES ('k' || :k, 1) ON CONFLICT (k) DO UPDATE SET n = late.n + 1;
} ]);
my @pgbench_args;
for my $name (sort keys %pgbench_scripts)
{
	my ($weight, $sql) = @{ $pgbench_scripts{$name} };
	PostgreSQL::Test::Utils::append_to_file("$scripts/$name.sql", $sql);
	push @pgbench_args, '-f', "$scripts/$name.sql\@$weight";
}

my ($pgbench, $pgbench_next) = (undef, 0);
my ($pgbench_out, $pgbench_runs) = ('', 0);

# (Re)starts pgbench for the time left when it is not running (PostgreSQL
# restarts end its clients).
sub run_pgbench
{
	$pgbench->pump_nb if $pgbench;
	return if $pgbench && $pgbench->pumpable;
	if ($pgbench)
	{
		$pgbench->finish;
		say 'pgbench ended: ', (split /\n/, $pgbench_out)[-1] // '';
		$pgbench = undef;
		$pgbench_next = now() + 1;
	}
	my $left = int($duration - now());
	return if $left < 2 || now() < $pgbench_next;
	$pgbench_runs++;
	$pgbench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '4', '-j', '2', '-R', '150',
			'-T', $left, '-h', $node->host, '-p', $node->port,
			@pgbench_args, 'postgres'
		],
		'<', \undef, '>', \$pgbench_out, '2>&1');
	$pgbench_out = '';
	return;
}

# From 15 s on, every 40 s (in longer runs four times in all, so that the
# Delta table, where faults make such transactions arrive several times,
# stays small enough to fold at the end): one transaction inserting 120,000
# rows into big and deleting the batch before it.
my ($big, $big_next, $big_batch) = (undef, 15, 0);
my $big_every = max(40, $duration / 4);

sub run_big
{
	$big->pump_nb if $big;
	if ($big && !$big->pumpable)
	{
		$big->finish;
		$big = undef;
	}
	return if $big || now() < $big_next || now() > $duration - 10;
	$big_next += $big_every;
	my $from = $big_batch * 120000 + 1;
	my $to = $from + 119999;
	$big_batch++;
	$big = IPC::Run::start(
		[
			'psql', '-X', '-q', '-h', $node->host, '-p', $node->port,
			'-d', 'postgres', '-c', qq{
			BEGIN;
			DELETE FROM big WHERE id < $from;
			INSERT INTO big SELECT g, g % 100, md5(g::text) FROM generate_series($from, $to) g;
			COMMIT;}
		],
		'<', \undef, '>', \my $out, '2>&1');
	return;
}

######################################################################
# Sampling: the slots, the twin slots, the emulator's durable records.

my $psql;
my %confirmed;		# stream -> confirmed_flush_lsn (bytes) at the last sample
my %pending;		# stream -> [[commit lsn, xid, records], ...] in commit order
my %durable;		# target table -> xid -> records held
my %known;			# stream -> xid -> 1: the transactions the twin gave
my %twin_upto;		# stream -> end LSN of the last transaction read from the twin
my %written = (transactions => 0, rows => 0, records => 0);
my ($samples, $violations, $peak_lag) = (0, 0, 0);
my $last_sample = 0;    # the time of the last sample
my (@history, $violation);
my %report;			# the figures, for --json
my %target_of = map { my $s = $_; map { ($_ => "main.cdc.$_") } @{ $pub_tables{$s} } } @STREAMS;

# Runs $sql in the driver's session, opened when needed; dies when it fails
# (PostgreSQL restarting kills the session, which is then closed, its
# process and pipes gone, and opened again at the next call).
sub psql_query
{
	my ($sql) = @_;
	if (!$psql)
	{
		$psql = $node->background_psql('postgres', timeout => 60, wait => 0);
		$psql->set_query_timer_restart;
	}
	my ($out, $err) = eval { $psql->query($sql) };
	if (!defined $out || $err)
	{
		my $why = $@ || $psql->{stderr};
		drop_psql();
		die "query failed: $why";
	}
	return $out;
}

sub drop_psql
{
	$psql->{run}->kill_kill if $psql;
	$psql = undef;
	return;
}

# The sampler: a child process that, on a fixed schedule of one sample every
# 100 ms (a sample late by more than a period skips the ticks it missed),
# reads each zerobus slot's confirmed_flush_lsn and the WAL position, then
# the emulator's durable feed and its acks per table, and appends them as a
# line to a file; nothing else in the driver (faults that block, such as a
# restart, the twins' decoding) can delay it.  A sample whose reads fail
# (PostgreSQL or the emulator down) is not written.  The durable feed is
# read after the slots, so what the oracle knows as durable at a sample is
# never older than the slots it checks.
my $samples_file = "$scripts/samples";
my $sampler_pid;
my $SAMPLE_PERIOD = 0.1;

sub sampler
{
	$SIG{INT} = $SIG{TERM} = 'DEFAULT';
	open my $fh, '>>', $samples_file or die "$samples_file: $!";
	my $http = HTTP::Tiny->new(timeout => 5);
	my $url = "http://127.0.0.1:$emu->{http_port}/admin";
	my ($session, $gen, $next) = (undef, '', 0);
	my $tick = time;
	while (1)
	{
		$tick += $SAMPLE_PERIOD;
		$tick += $SAMPLE_PERIOD * ceil((time - $tick) / $SAMPLE_PERIOD)
		  if time > $tick;
		sleep($tick - time) if $tick > time;
		my $at = time - $t0;
		$session //= $node->background_psql('postgres', timeout => 10, wait => 0);
		my ($slots, $err) = eval {
			$session->query(
				q{SELECT string_agg(z.name || ':' || (s.confirmed_flush_lsn - '0/0'), ' '),
				pg_current_wal_lsn() - '0/0'
				FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name)});
		};
		if (!defined $slots || $err)
		{
			$session->{run}->kill_kill;
			$session = undef;
			syswrite $fh, sprintf("%.3f\t-\n", $at);
			next;
		}
		my $feed = $http->get("$url/durable?from=$next&generation=$gen");
		my $stats = $http->get("$url/stats");
		if (!$feed->{success} || !$stats->{success})
		{
			syswrite $fh, sprintf("%.3f\t%s\t-\n", $at, $slots);
			next;
		}
		my ($g, $n) = $feed->{content} =~ /^\{"generation":"([^"]*)","from":\d+,"next":(\d+)/
		  or die "unexpected durable feed: " . substr($feed->{content}, 0, 200);
		my $acks = decode_json($stats->{content})->{tables};
		syswrite $fh,
		  sprintf("%.3f\t%s\t%s\t%s\n", $at, $slots,
			join(' ', map { "$_:$acks->{$_}{acks_sent}" } sort keys %$acks),
			$feed->{content} =~ s/\n//gr);
		($gen, $next) = ($g, $n);
	}
}

sub start_sampler
{
	$sampler_pid = fork // die "fork: $!";
	return if $sampler_pid;
	# the child leaves the driver's END blocks and destructors alone
	eval { sampler(); };
	print STDERR "sampler: $@" if $@;
	POSIX::_exit(1);
}

sub stop_sampler
{
	return unless $sampler_pid;
	kill 'TERM', $sampler_pid;
	waitpid $sampler_pid, 0;
	$sampler_pid = undef;
	return;
}

my ($samples_fh, $samples_partial) = (undef, '');

# The samples written since the last call.
sub new_samples
{
	open $samples_fh, '<', $samples_file or return ()
	  unless $samples_fh;
	seek $samples_fh, 0, 1;    # clears the end of file
	my @lines;
	while (my $line = <$samples_fh>)
	{
		$line = $samples_partial . $line;
		$samples_partial = '';
		if ($line !~ /\n\z/)
		{
			$samples_partial = $line;
			last;
		}
		chomp $line;
		push @lines, $line;
	}
	return @lines;
}

my (@queued, @sample_gaps);
my %acks;		# target table -> acks sent by the emulator at the last sample
my $emu_gen = '';

# Reads what the sampler wrote, then the twin slots; once the twins are
# read, checks the samples read before them, in order: a transaction has
# committed before any slot position a sample holds, so the twins, read
# after, know it.  The twins are peeked at, and advanced past what was read
# at the next call: a batch that fails (PostgreSQL going down) loses
# nothing, and what a twin gives again (also after a crash, which loses a
# slot's position read over SQL, as PostgreSQL documents) is known already.
# Returns the number of samples checked.
sub sample
{
	my @lines = (@queued, new_samples());
	@queued = @lines;
	my $out = eval {
		psql_query(join ";\n", map {
			my $advance =
			  $twin_upto{$_}
			  ? "SELECT 'advanced' FROM pg_replication_slot_advance('oracle_$_', '"
			  . lsn_text($twin_upto{$_}) . "');"
			  : '';
			qq{$advance
			SELECT 'twin', '$_', xid, sum(CASE get_byte(data, 0) WHEN 73 THEN 1 WHEN 68 THEN 1
				WHEN 85 THEN CASE WHEN get_byte(data, 5) IN (75, 79) THEN 2 ELSE 1 END ELSE 0 END),
			  sum(CASE WHEN get_byte(data, 0) IN (73, 68, 85) THEN 1 ELSE 0 END),
			  max(CASE WHEN get_byte(data, 0) = 67
				THEN ('x' || encode(substr(data, 3, 8), 'hex'))::bit(64)::bigint END) AS commit_lsn,
			  max(lsn) - '0/0'
			FROM pg_logical_slot_peek_binary_changes('oracle_$_', NULL, NULL,
				'proto_version', '1', 'publication_names', 'pub_$_')
			GROUP BY xid ORDER BY commit_lsn}
		} @STREAMS);
	};
	return 0 unless defined $out;
	for my $line (split /\n/, $out)
	{
		my @f = split /\|/, $line;
		next unless $f[0] eq 'twin';
		my ($s, $xid, $records, $rows, $commit, $end) = @f[ 1 .. 6 ];
		$twin_upto{$s} = max($twin_upto{$s} // 0, $end);
		next if !$records || $known{$s}{$xid}++;
		push @{ $pending{$s} }, [ $commit, $xid, $records ];
		$written{transactions}++;
		$written{records} += $records;
		$written{rows} += $rows;
	}
	@queued = ();
	for (@lines)
	{
		check_sample($_);
		last if $violation;
	}
	return scalar @lines;
}

my @awaiting_emulator;    # samples taken while the emulator could not be read
my ($ticks_missed, $checked_later) = (0, 0);

# Checks a sample: no slot past a transaction not all durable.  A tick at
# which PostgreSQL could not be read has no sample (nor can a slot move
# then).  A sample at which the emulator could not be read (it is down) is
# checked against its next reply: what it holds as durable then is what it
# held at the sample, as nothing becomes durable while it is down.
sub check_sample
{
	my ($at, $slots, $acks, $feed) = split /\t/, shift;
	if ($slots eq '-')
	{
		$ticks_missed++;
		return;
	}
	my %slot = map { split /:/ } split / /, $slots =~ s/\|.*//r;
	my ($wal) = $slots =~ /\|(\d+)$/;
	$peak_lag = max($peak_lag, map { $wal - $_ } values %slot);
	push @sample_gaps, $at - $last_sample if $samples;
	$samples++;
	$last_sample = $at;
	push @awaiting_emulator, [ $at, \%slot ];
	if ($acks eq '-')
	{
		$checked_later++;
		return;
	}
	%acks = map { split /:/ } split / /, $acks;
	my ($gen) = $feed =~ /^\{"generation":"([^"]*)"/;
	%durable = () if $gen ne $emu_gen;
	$emu_gen = $gen;
	$durable{$1}{$2} = $3
	  while $feed =~ /\["((?:[^"\\]|\\.)*)",(\d+),(\d+)\]/g;
	for (@awaiting_emulator)
	{
		check_slots(@$_);
		return if $violation;
	}
	@awaiting_emulator = ();
	check_recoveries($at);
	return;
}

# Checks the slots' positions %$slot read at time $at against %durable.
sub check_slots
{
	my ($at, $slot) = @_;
	for my $s (@STREAMS)
	{
		my $conf = $slot->{$s} // next;
		$confirmed{$s} = $conf;
		my @tables = map { $target_of{$_} } @{ $pub_tables{$s} };
		my $q = $pending{$s} //= [];
		while (@$q && $q->[0][0] < $conf)
		{
			my ($commit, $xid, $need) = @{ $q->[0] };
			my $held = sum0(map { $durable{$_}{$xid} // 0 } @tables);
			if ($held < $need)
			{
				$violations++;
				$violation = sprintf
				  'stream %s: slot confirmed_flush_lsn %s is past transaction %s (commit LSN %s), of whose %d records the emulator holds %d as durable (sample at %.1f s)',
				  $s, lsn_text($conf), $xid, lsn_text($commit), $need, $held, $at;
				return;
			}
			shift @$q;
		}
	}
	return;
}

######################################################################
# Faults.

my @tables_now = @targets;
my %paused;
my $blackholed = 0;
my (@active, @recovering, %recovery, %recovery_wall);

sub emulator_faults
{
	my ($knobs) = @_;
	emulator_api($emu, 'POST', '/admin/faults', { table => $_, %$knobs })
	  for @tables_now;
	return;
}

sub streams_not_paused { return grep { !$paused{$_} } @STREAMS; }

# kind => [duration range in seconds or undef, start, end, needs the
# emulator up]: start returns a detail string, or undef (or dies) when the
# fault cannot start now (it is tried again at the next tick); end is
# retried the same way.
my %FAULTS = (
	emulator_kill => [
		[ 0.5, 3 ],
		sub {
			kill 'KILL', $emu->{pid};
			$emu->{handle}->finish;
			$emu_up = 0;
			return "pid $emu->{pid}";
		},
		sub {
			$emu = start_emulator(
				data_dir => $emu->{data_dir},
				grpc_port => $emu->{grpc_port},
				http_port => $emu->{http_port},
				args => \@emu_args);
			$emu_up = 1;
		},
		1
	],
	emulator_stall => [
		[ $ACK_TIMEOUT_MS / 1000 + 1, $ACK_TIMEOUT_MS / 1000 + 3 ],
		sub { emulator_faults({ withhold_acks => JSON::PP::true }); return 'acks withheld' },
		sub { emulator_faults({ withhold_acks => undef }) },
		1
	],
	connection_drop => [
		undef,
		sub { relay_call('drop'); return 'relay reset its connections' },
		undef, 0
	],
	blackhole => [
		[ 4, 7 ],
		sub {
			return undef if $blackholed;
			relay_call('blackhole');
			$blackholed = 1;
			return 'relay stopped forwarding';
		},
		sub { relay_call('forward'); $blackholed = 0; },
		0
	],
	unavailable => [
		[ 1, 2 ],
		sub { emulator_faults({ unavailable => 1 }); return 'UNAVAILABLE at the next request' },
		sub { emulator_faults({ unavailable => undef }) },
		1
	],
	close_stream_signal => [
		[ 1, 2 ],
		sub {
			emulator_faults({ close_stream_signal_ms => 500 });
			return 'CloseStreamSignal 500 ms';
		},
		sub { emulator_faults({ close_stream_signal_ms => undef }) },
		1
	],
	idle_stream_close => [
		undef,
		sub {
			my $r = emulator_api($emu, 'POST', '/admin/streams/expire_idle',
				{ idle_ms => 100 });
			return "$r->{expired} idle streams ended by the server";
		},
		undef, 1
	],
	token_expiry => [
		[ 1, 2 ],
		sub {
			# the tokens in use, not one just fetched: zerobus takes the
			# refusal of a token fetched for a call as final
			emulator_api($emu, 'POST', '/admin/tokens/expire', { used => JSON::PP::true });
			emulator_faults({ unavailable => 1 });
			return 'tokens in use expired, streams ended at their next request';
		},
		sub { emulator_faults({ unavailable => undef }) },
		1
	],
	worker_kill => [
		undef,
		sub {
			my @pids = grep { $_ } split /\n/,
			  psql_query('SELECT pid FROM zerobus.stat_streams WHERE pid IS NOT NULL');
			return undef unless @pids;
			my $pid = $pids[ int(rand(@pids)) ];
			kill 'KILL', $pid;
			drop_psql();
			return "worker pid $pid";
		},
		undef, 0
	],
	pg_restart => [
		undef,
		sub {
			$node->stop('immediate');
			$node->start;
			drop_psql();
			return 'immediate shutdown and start';
		},
		undef, 0
	],
	pause_resume => [
		[ 1, 4 ],
		sub {
			my @s = streams_not_paused() or return undef;
			my $s = $s[ int(rand(@s)) ];
			psql_query("SELECT zerobus.pause_stream('$s')");
			$paused{$s} = 1;
			return $s;
		},
		sub {
			my ($f) = @_;
			psql_query("SELECT zerobus.resume_stream('$f->{detail}')");
			delete $paused{ $f->{detail} };
		},
		0
	],
	alter_batch => [
		undef,
		sub {
			my $s = $STREAMS[ int(rand(@STREAMS)) ];
			my $records = (1, 10, 100, 1000, 5000)[ int(rand(5)) ];
			my $delay = (0, 1, 10, 50)[ int(rand(4)) ];
			my $bytes = (65536, 1048576, 4194304)[ int(rand(3)) ];
			psql_query(
				"SELECT zerobus.alter_stream('$s', batch_max_records => $records, batch_max_delay => $delay, batch_max_bytes => $bytes)"
			);
			return "$s batch_max_records $records, batch_max_delay $delay ms, batch_max_bytes $bytes";
		},
		undef, 0
	]);
my @KINDS = sort keys %FAULTS;

my @round;
my $next_kind;
my $next_fault_at = 3;

# Draws the next fault: kinds in shuffled rounds, exponential gaps.
sub draw_fault
{
	@round = shuffle(@KINDS) unless @round;
	$next_kind = shift @round;
	$next_fault_at = now() + -log(1 - rand()) * $fault_interval;
	return;
}

# A fault has done its harm: its recovery runs until acks flow again (see
# check_recoveries).
sub fault_over
{
	my ($f) = @_;
	$f->{over} = now();
	push @recovering, $f;
	return;
}

# Whether fault $g was in force at time $at.
sub in_force
{
	my ($g, $at) = @_;
	return $g->{at} <= $at && (!defined $g->{over} || $at < $g->{over});
}

# Recoveries, at each sample (time $at, the slots' positions in %confirmed,
# the emulator's acks per table in %acks): a fault has recovered once acks
# flow again on every stream that owes something (the twin slot knows a
# transaction its slot has not passed; an idle stream's slot moves only
# when the walsender reports the WAL it skipped), that is its slot
# advanced or the emulator acked a request of one of its tables, since the
# first sample after the fault was over.  Overlapping faults would charge one fault's recovery to
# another, so a stream paused by a pause_resume in force owes nothing, and
# the clock stops while another fault with a duration that stops every
# stream is in force (the emulator down or stalled, the blackhole,
# UNAVAILABLE, the close signal, expired tokens): the time charged to a
# fault is the time of its recovery outside those.  The time from the end
# of the fault (wall) is kept too.
sub check_recoveries
{
	my ($at) = @_;
	my @recent = @history[ max(0, @history - 64) .. $#history ];
	my %paused_at = map { ($_->{detail} => 1) }
	  grep { $_->{kind} eq 'pause_resume' && in_force($_, $at) } @recent;
	my @still;
	for my $f (@recovering)
	{
		push @still, $f;
		next if $at < $f->{over};
		if (!$f->{base})
		{
			$f->{base} = { confirmed => {%confirmed}, acks => {%acks}, gen => $emu_gen };
			@$f{qw(charged last)} = (0, $at);
			next;
		}
		$f->{charged} += $at - $f->{last}
		  unless grep { $_ != $f && $_->{until} && $_->{kind} ne 'pause_resume' && in_force($_, $at) }
		  @recent;
		$f->{last} = $at;
		my $b = $f->{base};
		# a restarted emulator counts its acks from 0
		my %acks_before = $b->{gen} eq $emu_gen ? %{ $b->{acks} } : ();
		next if grep {
			my $s = $_;
			!$paused_at{$s}
			  && @{ $pending{$s} // [] }
			  && ($confirmed{$s} // 0) <= ($b->{confirmed}{$s} // 0)
			  && !grep { ($acks{ $target_of{$_} } // 0) > ($acks_before{ $target_of{$_} } // 0) }
			  @{ $pub_tables{$s} }
		} @STREAMS;
		pop @still;
		push @{ $recovery{ $f->{kind} } }, $f->{charged};
		push @{ $recovery_wall{ $f->{kind} } }, $at - $f->{over};
	}
	@recovering = @still;
	return;
}

sub start_fault
{
	my ($kind) = @_;
	my ($range, $start, undef, $needs_emu) = @{ $FAULTS{$kind} };
	return 0 if $needs_emu && !$emu_up;
	my $detail = eval { $start->() };
	if (!defined $detail)
	{
		return 0;
	}
	my $f = { kind => $kind, at => now(), detail => $detail };
	push @history, $f;
	say "fault $kind: $detail";
	if ($range)
	{
		$f->{until} = now() + $range->[0] + rand($range->[1] - $range->[0]);
		push @active, $f;
	}
	else
	{
		fault_over($f);
	}
	return 1;
}

# Ends the faults whose time is up (all of them with $all); one whose end
# fails (PostgreSQL or the emulator down) is tried again.
sub end_faults
{
	my ($all) = @_;
	my @still;
	for my $f (@active)
	{
		if (!$all && now() < $f->{until})
		{
			push @still, $f;
			next;
		}
		my (undef, undef, $end, $needs_emu) = @{ $FAULTS{ $f->{kind} } };
		if (($needs_emu && !$emu_up && $f->{kind} ne 'emulator_kill')
			|| !eval { $end->($f); 1 })
		{
			push @still, $f;
			next;
		}
		$f->{ended} = now();
		fault_over($f);
	}
	@active = @still;
	return;
}

######################################################################
# Memory of the workers: the peak of VmHWM, and of RssAnon (private).

my %mem = (vmhwm_kb => 0, rssanon_kb => 0);

sub sample_memory
{
	my $pids = eval { psql_query('SELECT pid FROM zerobus.stat_streams WHERE pid IS NOT NULL') }
	  // return;
	for my $pid (grep { $_ } split /\n/, $pids)
	{
		open my $fh, '<', "/proc/$pid/status" or next;
		while (<$fh>)
		{
			$mem{vmhwm_kb} = max($mem{vmhwm_kb}, $1) if /^VmHWM:\s+(\d+)/;
			$mem{rssanon_kb} = max($mem{rssanon_kb}, $1) if /^RssAnon:\s+(\d+)/;
		}
	}
	return;
}

######################################################################
# The run.

# What --inject-loss does: s1's slot passes a transaction its worker never
# saw.
sub lose_data
{
	psql_query("SELECT zerobus.pause_stream('s1')");
	poll_until(
		sub {
			psql_query(
				"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'zerobus_s1'"
			) eq 't';
		}) or die 'slot zerobus_s1 stays active';
	psql_query(
		q{INSERT INTO orders (customer, amount, status, updated) VALUES (-1, 0, 'lost', now());
		SELECT pg_replication_slot_advance('zerobus_s1', pg_current_wal_lsn());
		SELECT zerobus.resume_stream('s1')});
	return;
}

sub stop_on_violation
{
	return unless $violation;
	say "INVARIANT VIOLATION: $violation";
	say "seed $seed, at ", sprintf('%.1f s', now());
	say "fault history:";
	say sprintf('  %7.1fs %-20s %s%s', $_->{at}, $_->{kind}, $_->{detail},
		$_->{ended} ? sprintf(' (until %.1fs)', $_->{ended}) : '')
	  for @history;
	report(0);
	exit 1;
}

$t0 = time;    # the minutes count from here, setup excluded
start_sampler();
say "soak: seed $seed, $minutes minutes, a fault every $fault_interval s on average";
draw_fault();
my ($late_added, $last_mem) = (0, 0);
while (now() < $duration)
{
	my $tick = time;
	run_pgbench();
	run_big();
	if (   !$late_added
		&& $emu_up
		&& now() >= $duration / 2
		&& eval {
			declare_target($node, $emu, 'late', 'main.cdc.late');
			psql_query('ALTER PUBLICATION pub_s2 ADD TABLE late');
			1;
		})
	{
		push @{ $pub_tables{s2} }, 'late';
		$target_of{late} = 'main.cdc.late';
		push @tables_now, 'main.cdc.late';
		$late_added = 1;
		say 'table late added to publication pub_s2';
	}
	if (defined $inject_loss && now() >= $inject_loss && eval { lose_data(); 1 })
	{
		say 'data lost on purpose: slot of s1 advanced past a transaction never sent';
		$inject_loss = undef;
	}
	end_faults(0);
	if (now() >= $next_fault_at && start_fault($next_kind))
	{
		draw_fault();
	}
	sample();
	stop_on_violation();
	if (now() - $last_mem >= 1)
	{
		sample_memory();
		$last_mem = now();
	}
	my $left = 0.1 - (time - $tick);
	sleep($left) if $left > 0;
}

# The end: faults off, workload off, drain, compare.
say 'faults stop';
my $faults_stop = now();
end_faults(1) while @active && poll_until(sub { end_faults(1); !@active });
die 'faults could not be ended: ' . join(', ', map { $_->{kind} } @active)
  if @active;
for ($pgbench, $big)
{
	next unless $_;
	$_->finish;
}
my $end_lsn = lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
say 'workload stopped at ', lsn_text($end_lsn), ', draining';
my $drained = poll_until(
	sub {
		my $ok = sample();
		stop_on_violation();
		$ok && !grep { ($confirmed{$_} // 0) < $end_lsn } @STREAMS;
	});
my $drain_s = now() - $faults_stop;
stop_sampler();
say $drained
  ? sprintf('drained in %.1f s', $drain_s)
  : 'streams did not drain in time: '
  . $node->safe_psql('postgres',
	"SELECT string_agg(name || ' ' || state || coalesce(' (' || paused_reason || ')', ''), '; ') FROM zerobus.stat_streams"
  );

report($drained);
out("\n");
my %tables_equal;
my ($delta_records, $delta_duplicates) = (0, 0);
emulator_api($emu, 'POST', '/admin/flush');
for my $t (sort keys %shape)
{
	my $fold_t0 = time;
	my $r = fold_table($t);
	$delta_records += $r->{records};
	$delta_duplicates += $r->{duplicates};
	$tables_equal{$t} = !$r->{keys_differ};
	say sprintf('table %s: %d rows in the source, %d folded from %d Delta records in %.1f s: %s',
		$t, $r->{source_rows}, $r->{delta_rows}, $r->{records}, time - $fold_t0,
		$r->{keys_differ}
		? "$r->{keys_differ} keys differ"
		: 'Delta equals source');
	out("  key %s\n    Delta:  %s\n    source: %s\n",
		join(',', @{ $_->{key} }),
		map { encode_json($_) } @$_{qw(delta source)})
	  for @{ $r->{differences} };
}
out("duplicates: %d of %d records in Delta (ratio %.4f)\n",
	$delta_duplicates, $delta_records,
	$delta_records ? $delta_duplicates / $delta_records : 0);
$report{duplicates} = $delta_duplicates;
$report{delta_records} = $delta_records;
$report{duplicate_ratio} =
  $delta_records ? $delta_duplicates / $delta_records : 0;
$report{tables_equal} =
  { map { ($_ => $tables_equal{$_} ? JSON::PP::true : JSON::PP::false) } keys %tables_equal };
write_json();
exit(($drained && !$violations && !grep { !$_ } values %tables_equal) ? 0 : 1);

# Folds table $t's Delta records and compares them with its source in
# bench/soak_fold.js, which reads the source rows as JSON lines of text
# values written by psql.
sub fold_table
{
	my ($t) = @_;
	my ($select, $key) = @{ $shape{$t} };
	my $file = "$scripts/source_$t.jsonl";
	my $query =
	  "SELECT (SELECT json_object_agg(key, value #>> '{}') FROM json_each(row_to_json(t))) FROM (SELECT $select FROM $t) t";
	my ($out, $err);
	IPC::Run::run [ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-o', $file, '-c', $query ],
	  '<', \undef, '>', \$out, '2>', \$err
	  or die "psql failed on the rows of $t: $err";
	IPC::Run::run [
		'node', "$top/bench/soak_fold.js", '--data-dir', $emu->{data_dir},
		'--table', "main.cdc.$t", '--key', $key, '--source', $file
	  ],
	  '<', \undef, '>', \$out, '2>', \$err
	  or die "soak_fold.js failed on $t: $err";
	return decode_json($out);
}

sub pct
{
	my ($q, @v) = @_;
	@v = sort { $a <=> $b } @v;
	return @v ? $v[ max(0, ceil($q * @v) - 1) ] : undef;
}

sub quantiles
{
	my @v = @_;
	return {
		n => scalar @v,
		p50 => pct(0.5, @v),
		p99 => pct(0.99, @v),
		max => @v ? max(@v) : undef
	};
}

# The run's figures: printed, and written as JSON (again with the tables
# once they are compared).
sub report
{
	my ($drained) = @_;
	my %count;
	$count{ $_->{kind} }++ for @history;
	my %rec = map { ($_ => quantiles(@{ $recovery{$_} // [] })) } @KINDS;
	my %wall = map { ($_ => quantiles(@{ $recovery_wall{$_} // [] })) } @KINDS;
	my $gaps = quantiles(@sample_gaps);
	my $r = \%report;
	%$r = (
		seed => $seed,
		minutes => $minutes,
		fault_interval_s => $fault_interval,
		transactions => $written{transactions},
		rows => $written{rows},
		records => $written{records},
		faults => scalar @history,
		faults_by_kind => { map { ($_ => $count{$_} // 0) } @KINDS },
		recovery_s => \%rec,
		recovery_wall_s => \%wall,
		peak_lag_bytes => $peak_lag,
		worker_peak_vmhwm_kb => $mem{vmhwm_kb},
		worker_peak_rssanon_kb => $mem{rssanon_kb},
		samples => $samples,
		sample_interval_s => $gaps,
		ticks_missed => $ticks_missed,
		samples_checked_later => $checked_later,
		violations => $violations,
		violation => $violation,
		drained => $drained ? JSON::PP::true : JSON::PP::false,
		drain_s => $drain_s);
	my $f1 = sub { defined $_[0] ? sprintf('%.1f', $_[0]) : '-' };
	out("\n== soak report (seed %d) ==\n", $seed);
	out("minutes %.1f; %d transactions, %d row changes, %d records written\n",
	  $minutes, @written{qw(transactions rows records)});
	out("faults %d (%.1f s apart on average)\n", $r->{faults},
	  $r->{faults} ? $duration / $r->{faults} : 0);
	out("  %-20s %5s  %-24s %-24s\n", '', '', 'recovery (s), charged', 'from the fault\'s end');
	out("  %-20s %5s  %6s %6s %6s %4s %6s %6s %6s\n",
		'kind', 'count', 'p50', 'p99', 'max', 'n', 'p50', 'p99', 'max');
	for my $k (@KINDS)
	{
		out("  %-20s %5d  %6s %6s %6s %4d %6s %6s %6s\n", $k, $r->{faults_by_kind}{$k},
			map({ $f1->($_) } @{ $rec{$k} }{qw(p50 p99 max)}), $rec{$k}{n},
			map({ $f1->($_) } @{ $wall{$k} }{qw(p50 p99 max)}));
	}
	out("peak lag: %.1f MB of WAL\n", $peak_lag / 1048576);
	out("worker peak memory: VmHWM %.1f MB, private (RssAnon) %.1f MB\n",
	  $mem{vmhwm_kb} / 1024, $mem{rssanon_kb} / 1024);
	out("invariant: %d samples, %d violations; interval between samples p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
		$samples, $violations, map { ($gaps->{$_} // 0) * 1000 } qw(p50 p99 max));
	out("  %d ticks without a sample (PostgreSQL down), %d samples checked at the emulator's next reply (it was down)\n",
		$ticks_missed, $checked_later);
	out("drain after the faults: %.1f s\n", $drain_s // 0);
	write_json();
	return;
}

sub write_json
{
	return unless $json_file;
	open my $fh, '>', $json_file or die "$json_file: $!";
	print $fh JSON::PP->new->canonical->pretty->encode(\%report);
	close $fh;
	return;
}
