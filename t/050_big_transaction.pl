# Copyright (c) zerobus authors
#
# One transaction inserting 1,000,000 rows of about 200 bytes into a
# published table.  The worker's memory stays bounded: its peak resident
# set (VmHWM, read from /proc while it streams and once it is done) is
# under 100 MB with the default settings, first with acks withheld (the
# worker stops reading the slot once max_inflight_bytes are unacked, and
# sends nothing more), then acking at full speed.  Every row arrives: the
# Delta table, with the change records applied in (_commit_lsn, _seq)
# order, has 1,000,000 rows whose checksum equals the source table's.  The
# slot never confirms past the acked LSN, checked all along the way.

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use JSON::PP;
use lib dirname(__FILE__) . '/lib';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use ZerobusTest;

my $nrows = 1_000_000;
my $rss_limit_kb = 100 * 1024;

# A per-stream quota far above the workload: the window that fills up is
# max_inflight_bytes, not a stream's backlog (zerobus_sender_backpressured),
# and the table keeps one Zerobus stream.
my $node = zb_node('big', "zerobus.stream_max_records_per_second = 100000000\n");
my $emu = start_emulator();

$node->safe_psql(
	'postgres', q{
	CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL, n bigint NOT NULL);
	CREATE PUBLICATION pub FOR TABLE big;
});
declare_target($node, $emu, 'big', 'main.cdc.big');
create_stream($node, $emu, 'big', 'pub');
wait_streaming($node, 'big');
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM zerobus.stat_streams WHERE name = 'big'");

# Peak and current resident set of the worker, in kB.
sub worker_memory
{
	open my $fh, '<', "/proc/$pid/status" or die "worker $pid is gone: $!";
	my %m = map { /^(\w+):\s+(\d+)/ ? ($1 => $2) : () } <$fh>;
	close $fh;
	return ($m{VmHWM}, $m{VmRSS});
}
my ($hwm_before) = worker_memory();
note "worker VmHWM before the transaction: $hwm_before kB";

# Acks are withheld at first: the worker must stop reading the slot once
# max_inflight_bytes (the default) are unacked.
my $max_inflight = $node->safe_psql('postgres',
	"SELECT setting::bigint FROM pg_settings WHERE name = 'zerobus.max_inflight_bytes'");
my $batch_max = 1024 * 1024;
emulator_api($emu, 'POST', '/admin/faults',
	{ table => 'main.cdc.big', withhold_acks => JSON::PP::true });

my $t0 = time;
$node->safe_psql(
	'postgres', qq{
	INSERT INTO big
	SELECT g, repeat(md5(g::text), 5) || ' ' || g, g::bigint * 1000003
	FROM generate_series(1, $nrows) g});
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
note sprintf 'insert committed in %.1f s', time - $t0;

ok( $node->poll_query_until(
		'postgres',
		"SELECT bytes_sent - bytes_acked >= $max_inflight FROM zerobus.stat_streams WHERE name = 'big'"
	),
	'with acks withheld, the worker fills the in-flight window');
# The window is full (a batch left open when reading stopped is sent by the
# batch_max_delay timer, so bytes_sent reaches max_inflight_bytes).  Later,
# after status updates, nothing more was sent: it stopped reading.
my $sent = $node->safe_psql('postgres',
	"SELECT bytes_sent FROM zerobus.stat_streams WHERE name = 'big'");
my $now = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT reply_time > '$now'::timestamptz + interval '1.5 seconds'
		FROM pg_stat_replication WHERE application_name = 'zerobus:big'}),
	'worker keeps sending status updates while backpressured');
is( $node->safe_psql(
		'postgres', qq{
		SELECT bytes_sent = $sent, bytes_sent - bytes_acked <= $max_inflight + $batch_max,
			confirmed_lsn < '$lsn'
		FROM zerobus.stat_streams WHERE name = 'big'}),
	't|t|t',
	'backpressured: nothing more sent, at most max_inflight_bytes unacked, slot not past the transaction'
) or diag "bytes_sent before: $sent; now: " . $node->safe_psql('postgres',
	"SELECT * FROM zerobus.stat_streams WHERE name = 'big'");
check_slot_behind_acks($node, 'big');
my ($hwm_stalled) = worker_memory();
note "worker VmHWM while backpressured: $hwm_stalled kB";
cmp_ok($hwm_stalled, '<', $rss_limit_kb,
	"worker peak RSS under 100 MB while backpressured ($hwm_stalled kB)");
emulator_api($emu, 'DELETE', '/admin/faults?table=main.cdc.big');

# Poll until the whole transaction is acked, checking on every round that
# the slot stays behind the acks and sampling the worker's memory.
my $violations = '';
my $acked = 0;
my $max_rss = 0;
my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
$timer->start;
$t0 = time;
while ($timer->check)
{
	my $res = $node->safe_psql(
		'postgres', qq{
		SELECT s.confirmed_flush_lsn <= z.acked_lsn, z.acked_lsn >= '$lsn',
			s.confirmed_flush_lsn, z.acked_lsn
		FROM pg_replication_slots s JOIN zerobus.stat_streams z USING (slot_name)
		WHERE z.name = 'big'});
	my ($behind, $done) = split /\|/, $res;
	$violations .= "$res\n" unless $behind eq 't';
	my (undef, $rss) = worker_memory();
	$max_rss = $rss if $rss > $max_rss;
	if ($done eq 't')
	{
		$acked = 1;
		last;
	}
	select(undef, undef, undef, 0.2);
}
my $elapsed = time - $t0;
ok($acked, "the $nrows-row transaction was acked")
  or diag $node->safe_psql('postgres',
	"SELECT * FROM zerobus.stat_streams WHERE name = 'big'");
note sprintf 'acks released to last ack: %.1f s (%.0f rows/s)', $elapsed, $nrows / $elapsed;
is($violations, '', 'slot never confirmed past the acked LSN while streaming');

my ($hwm) = worker_memory();
note "worker VmHWM after: $hwm kB, largest VmRSS sampled: $max_rss kB";
cmp_ok($hwm, '<', $rss_limit_kb,
	"worker peak RSS under 100 MB ($hwm kB)");

is( $node->safe_psql(
		'postgres',
		"SELECT pid = $pid, records_sent >= $nrows, records_acked = records_sent FROM zerobus.stat_streams WHERE name = 'big'"
	),
	't|t|t',
	'same worker, every record sent and acked')
  or diag $node->safe_psql('postgres',
	"SELECT * FROM zerobus.stat_streams WHERE name = 'big'");

# Count and checksum of the folded Delta table, computed by node (1M Perl
# hashes would be slow): rows sorted by (_commit_lsn, _seq), inserts and
# update postimages upsert by id, deletes and preimages remove; then the
# md5 of "id|payload|n" lines in id order.
emulator_api($emu, 'POST', '/admin/flush');
my $delta_lib = File::Spec->rel2abs(
	File::Spec->catfile(dirname(__FILE__), '..', 'emulator', 'lib', 'delta.js'));
my $script = <<'EOS';
const crypto = require('node:crypto');
const D = require(process.argv[1]);
(async () => {
	const rows = (await D.readTable(D.tableRoot(process.argv[2], process.argv[3]))).rows;
	const big = v => BigInt(v);
	rows.sort((a, b) => {
		const d = big(a._commit_lsn) - big(b._commit_lsn);
		return d !== 0n ? (d < 0n ? -1 : 1) : Number(big(a._seq) - big(b._seq));
	});
	const table = new Map();
	for (const r of rows) {
		const t = r._change_type;
		if (t === 'insert' || t === 'update_postimage')
			table.set(Number(r.id), r);
		else if (t === 'delete' || t === 'update_preimage')
			table.delete(Number(r.id));
		else
			throw new Error('unknown _change_type ' + t);
	}
	const h = crypto.createHash('md5');
	for (const id of [...table.keys()].sort((a, b) => a - b)) {
		const r = table.get(id);
		h.update(`${r.id}|${r.payload}|${r.n}\n`);
	}
	process.stdout.write(`${rows.length}|${table.size}|${h.digest('hex')}\n`);
})().catch(e => { console.error(e); process.exit(1); });
EOS
my ($out, $err);
IPC::Run::run [ 'node', '-e', $script, $delta_lib, $emu->{data_dir}, 'main.cdc.big' ],
  '>', \$out, '2>', \$err
  or die "reading the Delta table failed: $err";
chomp $out;
my ($nchanges, $count, $delta_md5) = split /\|/, $out;
cmp_ok($nchanges, '>=', $nrows, "Delta table holds $nchanges change records");
my $source = $node->safe_psql(
	'postgres', q{
	SELECT count(*), md5(string_agg(id || '|' || payload || '|' || n || E'\n', '' ORDER BY id))
	FROM big});
is("$count|$delta_md5", $source,
	'folded Delta table equals the source table (count and checksum)');
check_slot_behind_acks($node, 'big');

stop_emulator($emu);
$node->stop;
done_testing();
