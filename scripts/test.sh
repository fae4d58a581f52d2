#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   installs the Debian and npm dependencies, builds (warnings are errors)
#   and installs the extension, then runs the pg_regress suites and the TAP
#   tests on PostgreSQL 15 and again on 18 (built from Debian's source
#   package by scripts/pg-build.sh, cached outside the clone), the libFuzzer
#   harnesses (fuzz/run.sh, 30 s each), the emulator's own tests and those of
#   the independent Delta reader (t/delta_reader).
#
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/scripts/install-deps.sh"

make -s clean >/dev/null
# every warning is an error here (the Makefile adds -Wextra)
make -s COPT=-Werror
make -s COPT=-Werror install >/dev/null

status=0

run_pg_tests() {
	# pg_regress (sql/, expected/) and then the TAP tests (t/*.pl), against
	# the PostgreSQL of $PG_CONFIG (default: the one on the PATH)
	make -s installcheck PG_CONFIG="${PG_CONFIG:-pg_config}" || {
		[ -f regression.diffs ] && cat regression.diffs
		return 1
	}
}

# Runs the PostgreSQL tests in the tree $1 (built and installed for
# PG_CONFIG).  initdb refuses root: then they run as the "postgres" user in
# that tree, which must be a scratch copy.
run_pg_tests_in() {
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres: "$1"
		export -f run_pg_tests
		runuser -u postgres -- env -C "$1" PATH="$PATH" PG_CONFIG="${PG_CONFIG:-pg_config}" \
			bash -c run_pg_tests
	else
		(cd "$1" && run_pg_tests)
	fi
}

# A scratch copy of the checkout (the checkout itself is left untouched).
scratch_copy() {
	local dir
	dir=$(mktemp -d)
	cp -a "$top/." "$dir/"
	rm -rf "$dir/.git"
	echo "$dir"
}
scratches=()
trap 'rm -rf "${scratches[@]}"' EXIT

echo "=== PostgreSQL 15 (Debian's packages) ==="
started=$SECONDS
if [ "$(id -u)" -eq 0 ]; then
	scratch=$(scratch_copy)
	scratches+=("$scratch")
	run_pg_tests_in "$scratch" || status=1
else
	run_pg_tests || status=1
fi
echo "=== PostgreSQL 15: $((SECONDS - started)) s ==="

# PostgreSQL 18, built from Debian's source package into a cache outside the
# clone (scripts/pg-build.sh: minutes the first time, nothing afterwards);
# the extension is built for it in a scratch copy.  ZEROBUS_TEST_PG18=0
# leaves it out.
if [ "${ZEROBUS_TEST_PG18:-1}" = 1 ]; then
	echo "=== PostgreSQL 18 (built from Debian's source package) ==="
	started=$SECONDS
	if pg18=$("$top/scripts/pg-build.sh" 18); then
		scratch=$(scratch_copy)
		scratches+=("$scratch")
		export PG_CONFIG="$pg18/bin/pg_config"
		if make -s -C "$scratch" clean >/dev/null &&
			make -s -C "$scratch" COPT=-Werror &&
			make -s -C "$scratch" COPT=-Werror install >/dev/null; then
			run_pg_tests_in "$scratch" || status=1
		else
			status=1
		fi
		unset PG_CONFIG
		echo "=== PostgreSQL 18: $((SECONDS - started)) s (its build included) ==="
	else
		echo "PostgreSQL 18 could not be built (see above)"
		status=1
	fi
fi

# libFuzzer harnesses of the parsers fed from outside, a bounded time each
"$top/fuzz/run.sh" "${ZEROBUS_FUZZ_SECONDS:-30}" || status=1

if [ -f emulator/package.json ]; then
	npm test --prefix emulator || status=1
fi
# the independent Delta reader the fidelity test relies on
npm test --prefix t/delta_reader || status=1

exit $status
