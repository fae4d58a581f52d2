#!/usr/bin/env bash
#
# pg-build.sh
#	  Builds and installs a PostgreSQL major version that Debian 12 does not
#	  package (18 today), from Debian's own source package, into a cache
#	  outside the clone, and prints its install prefix.
#
# Why: Debian 12 packages only PostgreSQL 15, and this machine reaches no
# other download site than Debian's mirrors (and npm).  Debian unstable (sid)
# carries postgresql-<major>; its upstream tarball (the .orig tarball, the
# Debian patches are not applied) is fetched with apt-get source through a
# deb-src-only entry for sid (/etc/apt/sources.list.d/zerobus-pg-src.sources,
# so that no binary package can come from sid), built with the compiler and
# libraries of Debian 12, and installed under the cache.  The clone is thrown
# away after CI but the machine keeps the cache: a build takes minutes, a run
# that finds its build done costs nothing (no network either).
#
# Usage: scripts/pg-build.sh MAJOR            e.g. scripts/pg-build.sh 18
#
#   The last (only) line on stdout is the install prefix; build it and use it:
#	  prefix=$(scripts/pg-build.sh 18)
#	  make PG_CONFIG="$prefix/bin/pg_config"
#   Progress goes to stderr, the build's output to a log whose tail is shown
#   when the build fails.
#
# Environment:
#   ZEROBUS_PG_CACHE    the cache (default $XDG_CACHE_HOME/zerobus/pg, or
#                       ~/.cache/zerobus/pg; as root /var/cache/zerobus/pg,
#                       since the tests run as the "postgres" user and /root
#                       is closed to it).  MAJOR's install is
#                       <cache>/<MAJOR>/install, its stamp <cache>/<MAJOR>/stamp.
#   ZEROBUS_PG_CASSERT  1 (default) builds with --enable-cassert: assertions
#                       in the server, and in the extension built against it,
#                       catch what a release build lets pass (memory context
#                       misuse, locks, wrong tuple descriptors...); 0 builds
#                       without, like Debian's packages.
#   ZEROBUS_PG_JOBS     make's -j (default: number of cores)
#
# The build is done again when the stamp does not match: another source
# version (the newest one the local apt lists know of, i.e. after someone's
# apt-get update a new 18.x in sid means a rebuild), other configure flags, or
# another recipe (RECIPE below, to be raised when this script changes the
# build).  Concurrent runs wait for each other (flock).
#
# Run it as root or as a user with sudo (build dependencies, apt source).
#
# scripts/pg-build.sh
#
set -euo pipefail

RECIPE=1

# stdout carries only the prefix; everything else goes to stderr.
exec 3>&1 1>&2

die() {
	echo "pg-build: error: $*" >&2
	exit 1
}
say() {
	echo "pg-build: $*" >&2
}

[ $# -eq 1 ] || die "usage: $0 MAJOR   (e.g. $0 18)"
major=$1
[[ $major =~ ^[1-9][0-9]$ ]] || die "MAJOR must be a PostgreSQL major version such as 18, not '$major'"
pkg=postgresql-$major

# Everything installed is readable by all: the tests run as another user.
umask 022

if [ -n "${ZEROBUS_PG_CACHE:-}" ]; then
	cache=$ZEROBUS_PG_CACHE
elif [ "$(id -u)" -eq 0 ]; then
	cache=/var/cache/zerobus/pg
else
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/zerobus/pg
fi
mkdir -p "$cache/$major" || die "cannot create the cache directory $cache/$major"
cache=$(cd "$cache" && pwd -P)
dir=$cache/$major
prefix=$dir/install
stamp=$dir/stamp

top=$(cd "$(dirname "$0")/.." && pwd -P)
case "$dir/" in
"$top"/*) say "warning: the cache $cache is inside the clone $top; it will be lost with the clone" ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

cassert=${ZEROBUS_PG_CASSERT:-1}
case "$cassert" in
0 | 1) ;;
*) die "ZEROBUS_PG_CASSERT must be 0 or 1, not '$cassert'" ;;
esac
# --enable-debug keeps -O2 and adds -g (backtraces in core dumps and gdb).
# ICU is the default from 16 on; --with-icu is kept for clarity.
# --with-openssl is still accepted and means --with-ssl=openssl.
CONFIGURE_FLAGS=(
	--prefix="$prefix"
	--enable-tap-tests
	--enable-debug
	--with-openssl
	--with-icu
	--with-lz4
	--with-zstd
)
if [ "$cassert" = 1 ]; then
	CONFIGURE_FLAGS+=(--enable-cassert)
fi

# What the build needs from Debian 12.  bison and flex: from 17 on, release
# tarballs no longer carry the generated parsers.  libipc-run-perl: the TAP
# tests (--enable-tap-tests checks for IPC::Run; Test::More is in perl).
BUILD_DEPS=(
	build-essential pkg-config perl
	bison flex
	libreadline-dev zlib1g-dev libssl-dev libicu-dev liblz4-dev libzstd-dev
	libipc-run-perl
	dpkg-dev xz-utils bzip2
)

SRC_LIST=/etc/apt/sources.list.d/zerobus-pg-src.sources
SRC_SUITE=sid

# The newest version of the source package that the local apt lists know of
# (no network); empty when none does.
known_version() {
	apt-cache showsrc --only-source "$pkg" 2>/dev/null |
		sed -n 's/^Version: //p' |
		sort -V | tail -n 1 || true
}

# The stamp: what the install in $prefix was built from and how.
stamp_text() {
	printf 'package=%s\nversion=%s\nrecipe=%s\nconfigure=%s\n' \
		"$pkg" "$1" "$RECIPE" "${CONFIGURE_FLAGS[*]}"
}

# Done already?  Only local files are looked at.
is_built() {
	[ -x "$prefix/bin/pg_config" ] && [ -f "$stamp" ] || return 1
	"$prefix/bin/pg_config" --version >/dev/null 2>&1 || return 1
	local have want
	have=$(sed -n 's/^version=//p' "$stamp")
	want=$(known_version)
	# Without apt lists for the source (another machine image, lists
	# cleaned), the version built is the one wanted.
	[ -n "$want" ] || want=$have
	[ "$(cat "$stamp")" = "$(stamp_text "$want")" ]
}

if is_built; then
	say "PostgreSQL $major ($(sed -n 's/^version=//p' "$stamp")) already built in $prefix"
	echo "$prefix" >&3
	exit 0
fi

# One build at a time per major; whoever waited looks again.
exec 9>"$dir/lock"
flock 9
if is_built; then
	say "PostgreSQL $major built meanwhile in $prefix"
	echo "$prefix" >&3
	exit 0
fi

# --- build dependencies ----------------------------------------------------
missing=()
for p in "${BUILD_DEPS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	say "installing build dependencies: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq ||
		die "apt-get update failed; cannot install ${missing[*]}"
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "cannot install the build dependencies ${missing[*]}"
fi

# --- the deb-src entry for sid ---------------------------------------------
# The Debian mirror already in use (deb822 or one-line format), else the
# default one.
mirror() {
	local m
	m=$(grep -hsE -A3 '^Types:(.*[[:space:]])?deb([[:space:]]|$)' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n' |
		grep -E '/debian/?$' | head -n 1 || true)
	if [ -z "$m" ]; then
		m=$(grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			grep -oE '(https?|file)://[^[:space:]]*/debian/?([[:space:]]|$)' |
			head -n 1 | tr -d '[:space:]' || true)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

if [ ! -f "$SRC_LIST" ]; then
	uri=$(mirror)
	say "adding the deb-src entry for $SRC_SUITE ($uri) in $SRC_LIST"
	tmp_list=$(mktemp)
	cat >"$tmp_list" <<EOF
# Added by zerobus scripts/pg-build.sh: Debian's source packages of
# PostgreSQL versions that Debian 12 does not package.  Source packages only
# (deb-src): no binary package can be installed from $SRC_SUITE.
Types: deb-src
URIs: $uri
Suites: $SRC_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	chmod 644 "$tmp_list"
	$SUDO mv "$tmp_list" "$SRC_LIST" || die "cannot write $SRC_LIST"
fi

# Only this entry's lists are refreshed (the others are left as they are).
say "refreshing the source lists of $SRC_LIST"
$SUDO apt-get update -qq \
	-o Dir::Etc::SourceList="$SRC_LIST" \
	-o Dir::Etc::SourceParts=- \
	-o APT::Get::List-Cleanup=0 ||
	die "apt-get update of $SRC_LIST failed: Debian's mirror is unreachable or the entry is wrong"

version=$(known_version)
[ -n "$version" ] ||
	die "no source package $pkg in $SRC_SUITE ($SRC_LIST): Debian does not (or no longer) carry PostgreSQL $major there"

# --- fetch, build, install ---------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/zerobus-pg-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt's _apt user downloads into it
log=$work/build.log

fail() {
	echo "pg-build: error: $*" >&2
	if [ -s "$log" ]; then
		cp "$log" "$dir/build-failed.log" 2>/dev/null || true
		echo "pg-build: the end of the build log (all of it in $dir/build-failed.log):" >&2
		tail -n 40 "$log" >&2
	fi
	exit 1
}

say "fetching $pkg $version (Debian source package, $SRC_SUITE)"
(cd "$work" && apt-get source --download-only -qq "$pkg=$version") >"$log" 2>&1 ||
	fail "cannot fetch the source package $pkg=$version with apt-get source"

orig=$(find "$work" -maxdepth 1 -name "${pkg}_*.orig.tar.*" ! -name '*.asc' | head -n 1)
[ -n "$orig" ] || fail "no upstream (.orig) tarball among what apt-get source fetched: $(ls "$work")"
tar -xf "$orig" -C "$work" || fail "cannot unpack $orig"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'postgresql-*' | head -n 1)
[ -n "$src" ] || fail "$orig holds no postgresql-* directory"

jobs=${ZEROBUS_PG_JOBS:-$(nproc)}
say "building $(basename "$src") in $work (configure ${CONFIGURE_FLAGS[*]}; make -j$jobs; log: $log)"
start=$SECONDS
(cd "$src" && nice -n 10 ./configure "${CONFIGURE_FLAGS[@]}") >>"$log" 2>&1 ||
	fail "configure failed"
# world-bin: the server, the client programs, contrib (test_decoding) and
# src/test/regress (pg_regress), without the documentation.
nice -n 10 make -C "$src" -j"$jobs" world-bin >>"$log" 2>&1 ||
	fail "make world-bin failed"

# Installed aside, then swapped in: the prefix holds a whole build or none.
# PGXS's make install installs the server headers, pg_regress
# (lib/postgresql/pgxs/src/test/regress) and, with --enable-tap-tests, the TAP
# modules (lib/postgresql/pgxs/src/test/perl, PostgreSQL::Test::Cluster).
stage=$work/stage
nice -n 10 make -C "$src" install-world-bin DESTDIR="$stage" >>"$log" 2>&1 ||
	fail "make install-world-bin failed"
[ -x "$stage$prefix/bin/pg_config" ] || fail "the staged install has no bin/pg_config"

rm -f "$stamp"
rm -rf "$prefix.old"
if [ -e "$prefix" ]; then mv "$prefix" "$prefix.old"; fi
mv "$stage$prefix" "$prefix"
rm -rf "$prefix.old"
stamp_text "$version" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"

say "PostgreSQL $major ($version) built in $((SECONDS - start)) s, installed in $prefix"
echo "$prefix" >&3
