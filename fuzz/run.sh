#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, -fsanitize=fuzzer,address) and runs
# each for a bounded time on its committed corpus:
#   fuzz/run.sh [seconds per harness, default 30]
# New inputs the fuzzer finds go to a scratch directory, not the corpus; to
# keep one, copy it into fuzz/corpus/<harness>/.  A crash fails the run and
# its input is kept in fuzz/artifacts/ (not committed).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
pg_config=${PG_CONFIG:-pg_config}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cc=$(command -v clang || command -v clang-14)
# -Wno-ignored-attributes: PostgreSQL's headers declare gnu_printf formats
cflags=(-g -O1 -fsanitize=fuzzer,address -DFRONTEND -Wno-ignored-attributes
	-I"$top/src/common" -I"$top/src/client" -I"$top/src/pb"
	-I"$($pg_config --includedir-server)" -I"$($pg_config --includedir)")
# libpgcommon/libpgport: in --pkglibdir for Debian's packages, in --libdir
# for an install built from source
libs=(-L"$($pg_config --pkglibdir)" -L"$($pg_config --libdir)" -lpgcommon -lpgport
	-lprotobuf-c -lm)

# the harnesses and the sources each one tests; src/pb/ is made by "make"
declare -A sources=(
	[token_reply]="src/client/token_reply.c"
	[output]="src/common/wire.c src/pb/zerobus_output.pb-c.c"
	[grpc_reader]="src/client/grpc_reader.c src/pb/zerobus_service.pb-c.c"
)

status=0
for harness in token_reply output grpc_reader; do
	srcs=()
	for f in ${sources[$harness]}; do
		srcs+=("$top/$f")
	done
	"$cc" "${cflags[@]}" -o "$work/$harness" \
		"$top/fuzz/${harness}_fuzz.c" "${srcs[@]}" "${libs[@]}"
	mkdir -p "$work/new_$harness"
	echo "fuzzing $harness for ${seconds}s"
	# no leak checks: what PostgreSQL's JSON parser allocates on a reply it
	# refuses half-way is freed by the backend's memory context, which the
	# frontend build has not (the harness's memory grows by some MB/s)
	(cd "$work" && ASAN_OPTIONS=detect_leaks=0 "./$harness" -max_total_time="$seconds" \
		-max_len=65536 -detect_leaks=0 \
		-print_final_stats=1 "$work/new_$harness" "$top/fuzz/corpus/$harness") \
		>"$work/$harness.log" 2>&1 || {
		cat "$work/$harness.log"
		mkdir -p "$top/fuzz/artifacts"
		cp "$work"/crash-* "$work"/oom-* "$work"/leak-* "$work"/timeout-* \
			"$top/fuzz/artifacts/" 2>/dev/null || true
		echo "fuzz/run.sh: $harness failed; its input is in fuzz/artifacts/"
		status=1
		continue
	}
	grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$work/$harness.log" | sed "s/^/  /"
done
exit $status
