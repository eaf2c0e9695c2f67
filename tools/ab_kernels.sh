#!/usr/bin/env bash
# Before/after timing of the C kernels of two trees, in one process, calls
# interleaved (tools/ab_kernels.c says how). Builds each tree's src/ into a
# shared library in a temporary directory (nothing is left in the trees).
#   tools/ab_kernels.sh TREE_A TREE_B PAIRS THREADS SPEC...
# e.g. git worktree add /tmp/base HEAD~1; tools/ab_kernels.sh /tmp/base . 20 2 \
#        lstm:8:50:512:512:infer gemm:3200:2048:512:N:T
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
A="$(cd "$1" && pwd)"; B="$(cd "$2" && pwd)"; shift 2
OUT="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-ab.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
lib() {
    local srcs=() incs=()
    if [ -d "$1/src/fast" ]; then  # src/ by concern: include/, runtime/, portable/, fast/
        srcs=($(find "$1/src" -name '*.c' | sort))
        incs=(-I"$1/src/include" -I"$1/src")
    else                           # the flat src/ of older trees
        srcs=("$1/src/rnn.c" "$1/src/rnn_fast.c" "$1/src/rnn_fast_avx2.c" "$1/src/rnn_fast_avx512.c")
        [ -f "$1/src/rnn_team.c" ] && srcs+=("$1/src/rnn_team.c")  # trees from before the step team
        incs=(-I"$1/src")
    fi
    "${CC:-gcc}" -O3 -falign-loops=64 -fno-math-errno -Wno-unused-function -fopenmp -pthread -fPIC -shared \
        "${incs[@]}" "${srcs[@]}" -lm -o "$2"
}
lib "$A" "$OUT/libA.so"
lib "$B" "$OUT/libB.so"
AB_INC="$ROOT/src/include"; [ -d "$AB_INC" ] || AB_INC="$ROOT/src"
"${CC:-gcc}" -O2 -I"$AB_INC" "$ROOT/tools/ab_kernels.c" -ldl -o "$OUT/ab"
OMP_NUM_THREADS="${2:-2}" "$OUT/ab" "$OUT/libA.so" "$OUT/libB.so" "$@"
