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
SRC=("$ROOT/tools/fuzz_kernels.c" "$ROOT/src/rnn.c" "$ROOT/src/rnn_fast.c" "$ROOT/src/rnn_fast_avx2.c"
     "$ROOT/src/rnn_fast_avx512.c" "$ROOT/src/rnn_team.c" "$ROOT/src/ctc.c")
if [ "${FUZZER:-}" = libfuzzer ]; then
    clang -O1 -g -fsanitize=fuzzer,address,undefined -DFR_LIBFUZZER -fopenmp -I"$ROOT/src" \
        "${SRC[@]}" -lm -o "$OUT/fk"
    "$OUT/fk" -max_total_time="${FUZZ_SECONDS:-300}" -max_len=4096
    exit $?
fi
"${CC:-gcc}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=undefined -fopenmp -I"$ROOT/src" "${SRC[@]}" -lm -o "$OUT/fk"
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" "$OUT/fk" "${1:-100000}" "${2:-1}"
