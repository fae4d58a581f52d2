#!/usr/bin/env bash
#
# node-modules.sh
#	  Installs the npm dependencies of the tree's Node.js packages, exactly as
#	  locked, from the npm registry: the local Zerobus emulator (emulator/)
#	  and the independent Delta reader of the fidelity tests
#	  (t/delta_reader/).  Run by install-deps.sh and by every script that
#	  starts the emulator (scripts/lib/emulator.sh), so that a fresh clone's
#	  benchmarks and tests work without a step before.
#
# npm ci wipes node_modules first, which would pull the rug from under a
# running emulator, so it runs only when a package's lock file changed since
# its last install (a stamp in its node_modules records the lock file's
# checksum).
#
# scripts/node-modules.sh
#

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
for pkg in emulator t/delta_reader; do
	lock="$top/$pkg/package-lock.json"
	stamp="$top/$pkg/node_modules/.zerobus-lock.sha256"
	sum=$(sha256sum "$lock" | cut -d' ' -f1)
	if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
		npm ci --prefix "$top/$pkg" --no-audit --no-fund --loglevel=error
		echo "$sum" >"$stamp"
	fi
done
