#!/usr/bin/env bash
# Build tools/fuzz_kernels.c with AddressSanitizer + UndefinedBehaviorSanitizer
# (into a temporary directory, nothing left in the tree) and run it.
#   tools/fuzz_kernels.sh [iterations=100000] [seed=1]
# With clang and libFuzzer available, FUZZER=libfuzzer runs the coverage-guided
# fuzzer for FUZZ_SECONDS (default 300) instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-fuzzk.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
SRC=("$ROOT/tools/fuzz_kernels.c" $(find "$ROOT/src" -name '*.c' | sort))
INC=(-I"$ROOT/src/include" -I"$ROOT/src")
if [ "${FUZZER:-}" = libfuzzer ]; then
    clang -O1 -g -fsanitize=fuzzer,address,undefined -DFR_LIBFUZZER -fopenmp "${INC[@]}" \
        "${SRC[@]}" -lm -o "$OUT/fk"
    "$OUT/fk" -max_total_time="${FUZZ_SECONDS:-300}" -max_len=4096
    exit $?
fi
"${CC:-gcc}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=undefined -fopenmp "${INC[@]}" "${SRC[@]}" -lm -o "$OUT/fk"
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" "$OUT/fk" "${1:-100000}" "${2:-1}"
