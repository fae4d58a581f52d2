#!/usr/bin/env bash
# Installs every Debian package the build, the tests, the quick start and the
# benchmarks need.  Idempotent; safe to run on a fresh Debian 12 machine as root
# (or with sudo available).
set -euo pipefail

PKGS=(
	build-essential pkg-config
	postgresql-15 postgresql-server-dev-15 postgresql-client-15
	postgresql-15-wal2json postgresql-15-decoderbufs
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libcurl4-openssl-dev libnghttp2-dev
	python3 python3-protobuf
	libipc-run-perl
	nodejs npm ca-certificates openssl
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Also upgrade postgresql-15 to the newest minor release Debian serves.
if [ "${#missing[@]}" -gt 0 ] || [ "${ZEROBUS_UPGRADE_PG:-0}" = 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
