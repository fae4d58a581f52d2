#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   installs the Debian and npm dependencies, builds (warnings are errors)
#   and installs the extension, then runs the pg_regress suites, the TAP tests, the libFuzzer
#   harnesses (fuzz/run.sh, 30 s each), the emulator's own tests and those of
#   the independent Delta reader (t/delta_reader).
#
# PostgreSQL's initdb refuses to run as root, so when started as root the
# PostgreSQL tests run as the "postgres" system user in a scratch copy of the
# tree (the checkout itself is left untouched).
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
	# pg_regress (sql/, expected/) and then the TAP tests (t/*.pl)
	make -s installcheck || {
		[ -f regression.diffs ] && cat regression.diffs
		return 1
	}
}

if [ "$(id -u)" -eq 0 ]; then
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	cp -a "$top/." "$scratch/"
	rm -rf "$scratch/.git"
	chown -R postgres: "$scratch"
	export -f run_pg_tests
	runuser -u postgres -- env -C "$scratch" PATH="$PATH" bash -c run_pg_tests || status=1
else
	run_pg_tests || status=1
fi

# libFuzzer harnesses of the parsers fed from outside, a bounded time each
"$top/fuzz/run.sh" "${ZEROBUS_FUZZ_SECONDS:-30}" || status=1

if [ -f emulator/package.json ]; then
	npm test --prefix emulator || status=1
fi
# the independent Delta reader the fidelity test relies on
npm test --prefix t/delta_reader || status=1

exit $status
