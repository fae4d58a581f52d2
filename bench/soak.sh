#!/usr/bin/env bash
#
# soak.sh
#	  The chaos soak (bench/soak.pl): a throwaway cluster and emulator, a
#	  mixed workload on several streams, seeded random faults, an oracle of
#	  the promise independent of the worker; prints its figures and writes
#	  them to bench/out/soak-<seed>-<date>.txt (and .json).
#
# Usage: bench/soak.sh --minutes N --seed S [--fault-interval SECONDS]
#
# Needs the extension installed (make install) into the PostgreSQL that
# pg_config (or PG_CONFIG) names, its TAP modules (PostgreSQL::Test::Cluster,
# under pgxs), pgbench, and node (the emulator's npm modules are installed
# when missing).  PostgreSQL refuses to run as root: run it as another
# user.  Exit status 0 only with no invariant violation and every table
# equal to its source.
#

set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
"$TOP/scripts/node-modules.sh"
SEED=
ARGS=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--seed) SEED=$2; shift 2 ;;
		--seed=*) SEED=${1#--seed=}; shift ;;
		*) shift ;;
	esac
done
OUT="$TOP/bench/out/soak-${SEED:-1}-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
PGXS_SRC=$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")
PATH="$("$PG_CONFIG" --bindir):$PATH" \
	PERL5LIB="$PGXS_SRC/test/perl${PERL5LIB:+:$PERL5LIB}" \
	PG_REGRESS="$PGXS_SRC/test/regress/pg_regress" \
	TESTDATADIR="$OUT/tmp" TESTLOGDIR="$OUT/log" \
	perl "$TOP/bench/soak.pl" "${ARGS[@]}" --json "$OUT.json" | tee "$OUT.txt"
