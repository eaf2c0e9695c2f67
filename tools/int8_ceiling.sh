#!/usr/bin/env bash
# The ceilings of an int8 layer at batch 1 on this AVX-512 VNNI CPU, and
# the bound they give one LSTM shape (tools/int8_ceiling.c says what each
# figure is). Unset OPENBLAS_CORETYPE in a benchmark command alone.
#   tools/int8_ceiling.sh [THREADS T I H]   (default: 2 25 1024 1024, db-lstm-b1)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-ceiling.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
"${CC:-gcc}" -O2 -fopenmp "$ROOT/tools/int8_ceiling.c" -lm -o "$OUT/int8_ceiling"
"$OUT/int8_ceiling" "${1:-2}" "${2:-25}" "${3:-1024}" "${4:-1024}"
