# Copyright (c) zerobus authors
#
# A chunked snapshot of a 1,000,000-row table that receives concurrent
# updates, inserts and deletes (pgbench) survives a SIGKILL of its worker
# and an immediate shutdown of the server, each in the middle of the
# snapshot: it resumes after the last acked chunk (same run, progress kept,
# far fewer snapshot records than two full reads), and the Delta table
# folded in (_commit_lsn, _seq) order equals the source.

use strict;
use warnings;
use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZerobusTest;

my $rows = 1_000_000;
my $node = zb_node('snaprestart',
	"restart_after_crash = on\nzerobus.snapshot_chunk_rows = 5000\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', qq{
	CREATE TABLE big (id bigint PRIMARY KEY, n int NOT NULL, val text);
	INSERT INTO big SELECT g, 0, 'v' || g FROM generate_series(1, $rows) g;
	CREATE SEQUENCE big_new START 2000000;
	CREATE PUBLICATION pub FOR TABLE big;
});
declare_target($node, $emu, 'big', 'main.cdc.big');

# Changes during the whole snapshot, from two pgbench clients.
my $script = "$PostgreSQL::Test::Utils::tmp_check/snapshot_changes.sql";
open my $fh, '>', $script or die "$script: $!";
print $fh <<"EOF";
\\set id random(1, $rows)
UPDATE big SET n = n + 1, val = 'u' || :id WHERE id = :id;
\\set id random(1, $rows)
DELETE FROM big WHERE id = :id;
INSERT INTO big VALUES (nextval('big_new'), 0, 'new');
EOF
close $fh;
# pgbench loses its connections in a crash: one run per phase.
my @pgbench;

sub start_pgbench
{
	my ($out, $err) = ('', '');
	push @pgbench,
	  IPC::Run::start(
		[
			'pgbench', '-n', '-c', '2', '-R', '200', '-T', '600', '-f',
			$script, '-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	return;
}
start_pgbench();

create_stream($node, $emu, 's1', 'pub', max_inflight_bytes => 4194304);

my $run = 'SELECT snapshot_started_at FROM zerobus.stream_tables';
my $progress = 'SELECT snapshot_rows FROM zerobus.stream_tables';

# Waits until the acked snapshot progress passes $min rows; returns it.
sub wait_progress
{
	my ($what, $min) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT snapshot_rows > $min AND snapshot_state = 'running' FROM zerobus.stream_tables"
		),
		"$what: snapshot in progress past $min rows");
	return $node->safe_psql('postgres', $progress);
}

my $before_kill = wait_progress('worker SIGKILL', 200000);
my $started = $node->safe_psql('postgres', $run);
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM zerobus.stat_streams WHERE name = 's1'");
ok(kill('KILL', $pid), "killed worker $pid with $before_kill rows acked");
ok( $node->poll_query_until(
		'postgres',
		"SELECT pid <> $pid AND state = 'streaming' FROM zerobus.stat_streams WHERE name = 's1'"
	),
	'a new worker streams after crash recovery');
start_pgbench();
cmp_ok($node->safe_psql('postgres', $progress),
	'>=', $before_kill, 'progress kept across the worker crash');

my $before_stop = wait_progress('immediate shutdown', $before_kill + 200000);
$node->stop('immediate');
$node->start;
start_pgbench();
cmp_ok($node->safe_psql('postgres', $progress),
	'>=', $before_stop, 'progress kept across the immediate shutdown');

ok( $node->poll_query_until(
		'postgres',
		"SELECT snapshot_state = 'done' FROM zerobus.stat_streams WHERE name = 's1'",
	),
	'snapshot done');
is($node->safe_psql('postgres', $run),
	$started, 'the same snapshot run went on (not started over)');

$_->kill_kill for @pgbench;
$node->safe_psql('postgres',
	"UPDATE big SET n = n + 1000 WHERE id % 100000 = 7");
wait_acked($node, 's1',
	$node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));

my $delta = delta_rows($emu, 'main.cdc.big');
my $snapshot_records = grep { $_->{_change_type} eq 'snapshot' } @$delta;
cmp_ok($snapshot_records, '<', $rows + $before_kill,
	"resumed: $snapshot_records snapshot records, fewer than a second full read would give"
);
is_deeply(
	fold_changes($delta, 'id'),
	source_rows($node, 'big', 'id, n, val', 'id'),
	'Delta table equals the source after the crashes');

stop_emulator($emu);
$node->stop;
done_testing();
