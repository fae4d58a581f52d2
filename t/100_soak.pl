# Copyright (c) zerobus authors
#
# A short chaos soak (bench/soak.pl, 2 minutes, a fixed seed): a mixed
# workload on three streams with faults of every kind overlapping, checked
# every 100 ms by an oracle that compares each slot with what the emulator
# holds as durable.  No sample may find a slot past a transaction whose
# records are not all durable, every fault kind must have been injected,
# the streams must drain, and every Delta table, folded, must equal its
# source.  Then a short run in which a slot is advanced by hand past data
# never sent must stop with a violation: the oracle can fail.

use strict;
use warnings;
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

# The driver talks to PostgreSQL through PostgreSQL::Test::BackgroundPsql,
# which PostgreSQL's test modules have from 16 on and recent minor releases
# of 15 (Debian 12's 15.20 among them) have too.
plan skip_all => 'the soak driver needs PostgreSQL::Test::BackgroundPsql (PostgreSQL 16, or a recent 15 minor release)'
  unless eval { require PostgreSQL::Test::BackgroundPsql; 1 };

my $top = dirname(__FILE__) . '/..';

# The cases: bench/soak_seeds, one "seed minutes [fault interval]" a line.
my @cases =
  map { [split] } grep { /\S/ } map { s/#.*//r } split /\n/,
  PostgreSQL::Test::Utils::slurp_file("$top/bench/soak_seeds");
cmp_ok(scalar @cases, '>=', 1, 'bench/soak_seeds lists the cases');

for my $case (@cases)
{
	my ($seed, $minutes, $interval) = @$case;
	my $name = "seed $seed, $minutes minutes";
	my $report = PostgreSQL::Test::Utils::tempdir() . '/soak.json';
	my $out;
	my $ok = IPC::Run::run(
		[
			'perl', "$top/bench/soak.pl", '--minutes', $minutes,
			'--seed', $seed, '--json', $report,
			defined $interval ? ('--fault-interval', $interval) : ()
		],
		'<', \undef, '>', \$out, '2>&1');
	note $out;
	ok($ok, "soak ($name) exits with success");

	my $r = decode_json(PostgreSQL::Test::Utils::slurp_file($report));
	cmp_ok($r->{samples}, '>', $minutes * 60 * 5,
		"$name: the oracle took samples all along");
	cmp_ok($r->{sample_interval_s}{p50}, '<', 0.15,
		"$name: samples every 100 ms (p50 $r->{sample_interval_s}{p50} s)");
	is($r->{violations}, 0,
		"$name: no slot was ever past a transaction not all durable in the emulator")
	  or diag $r->{violation};
	for my $kind (sort keys %{ $r->{faults_by_kind} })
	{
		cmp_ok($r->{faults_by_kind}{$kind}, '>=', 1, "$name: fault $kind injected");
		cmp_ok($r->{recovery_s}{$kind}{n}, '>=', 1,
			"$name: the streams recovered after fault $kind");
	}
	is(scalar keys %{ $r->{faults_by_kind} }, 12, "$name: twelve kinds of faults");
	ok($r->{drained}, "$name: the streams drained once the faults stopped");
	cmp_ok($r->{transactions}, '>', 1000, "$name: transactions were written");
	for my $t (qw(orders events docs big late))
	{
		ok($r->{tables_equal}{$t}, "$name: Delta table $t equals its source");
	}
}

# The oracle can fail: a slot advanced by hand past a transaction that was
# never sent stops the run with a violation.
my $seed = $cases[0][0];
my $report = PostgreSQL::Test::Utils::tempdir() . '/loss.json';
my $out;
my $ok = IPC::Run::run(
	[
		'perl', "$top/bench/soak.pl", '--minutes', 1,
		'--seed', $seed, '--inject-loss', 10, '--json', $report
	],
	'<', \undef, '>', \$out, '2>&1');
note $out;
ok(!$ok, 'soak with a slot advanced past unsent data exits with failure');
my $r = decode_json(PostgreSQL::Test::Utils::slurp_file($report));
is($r->{violations}, 1, 'the oracle found the violation');
like(
	$r->{violation},
	qr/^stream s1: slot confirmed_flush_lsn \S+ is past transaction \d+ .*the emulator holds 0 as durable/,
	'the violation names the stream, the LSNs and the records missing');
like($out, qr/seed $seed, at .*fault history:/s,
	'the run printed the seed and the fault history');

done_testing();
