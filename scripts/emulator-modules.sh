#!/usr/bin/env bash
#
# emulator-modules.sh
#	  Installs the local Zerobus emulator's npm dependencies (emulator/),
#	  exactly as locked, from the npm registry.  Run by install-deps.sh and
#	  by every script that starts the emulator (scripts/lib/emulator.sh), so
#	  that a fresh clone's benchmarks work without a step before.
#
# npm ci wipes node_modules first, which would pull the rug from under a
# running emulator, so it runs only when the lock file changed since the
# last install (a stamp in node_modules records the lock file's checksum).
#
# scripts/emulator-modules.sh
#

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
lock="$top/emulator/package-lock.json"
stamp="$top/emulator/node_modules/.zerobus-lock.sha256"
sum=$(sha256sum "$lock" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
	npm ci --prefix "$top/emulator" --no-audit --no-fund --loglevel=error
	echo "$sum" >"$stamp"
fi
