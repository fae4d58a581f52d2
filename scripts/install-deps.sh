#!/usr/bin/env bash
# Installs everything the build, the tests, the quick start and the benchmarks
# need, from Debian packages and the npm registry only.  Idempotent; run it as
# root (or as a user with sudo) on a Debian 12 machine.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)

PKGS=(
	build-essential pkg-config
	postgresql-15 postgresql-server-dev-15 postgresql-client-15
	postgresql-15-wal2json postgresql-15-decoderbufs
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libcurl4-openssl-dev libnghttp2-dev
	python3 python3-protobuf
	libipc-run-perl
	ca-certificates openssl
	tinyproxy-bin
	clang libclang-rt-14-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js (with npm) runs the local Zerobus emulator; the machine image may
# already carry a newer one than Debian's, which is then kept.
if ! command -v node >/dev/null 2>&1; then
	missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# Installing the whole list (not only what is missing) also brings the
	# server to the same minor release as postgresql-server-dev-15.
	$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" \
		$(printf '%s\n' "${missing[@]}" | grep -E '^(nodejs|npm)$' || true) >/dev/null
fi

# The npm dependencies of the emulator and of t/delta_reader, exactly as locked.
"$top/scripts/node-modules.sh"
