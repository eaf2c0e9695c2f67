#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of fastrnn's kernels.
#
# Copies the working tree (no build outputs) into a temporary directory, builds
# the extensions there with FASTRNN_SANITIZE=1 (setup.py adds -O1 -g
# -fno-omit-frame-pointer -fsanitize=address,undefined), then runs the test
# suite against that build with libasan preloaded (the Python interpreter is
# not instrumented, so the ASan runtime must come first) and Python's own
# allocator switched to malloc (PYTHONMALLOC=malloc) so that NumPy's and
# Python's buffers are ASan-tracked too. Leak detection is off: CPython keeps
# interned objects and module state alive until exit by design.
#
# Every sanitizer report stops the process that makes it: UBSan is built
# with -fno-sanitize-recover=all and runs with halt_on_error=1, ASan with
# halt_on_error=1. pytest runs with -s (no capture): it captures a test's
# stderr and drops it when the test passes or the process dies, and UBSan's
# reports in this build (ASan's runtime preloaded, UBSan's beside it) go to
# stderr whatever log_path says. ASan's reports also go to files (log_path,
# one per process, the tests' subprocesses included).
#
# Verdict: CLEAN when pytest exits 0, no report file was written and the log
# holds no report line ("ERROR: AddressSanitizer", "AddressSanitizer: CHECK
# failed", "runtime error:"); else UNCLEAN (exit 1).
# Nothing is written into the source tree; the temporary copy is removed
# unless KEEP=1.
#
# Self-test: PLANT=ub or PLANT=asan builds the copy with a planted defect on
# every kernel call (a signed overflow, a one-byte heap overflow: FR_PLANT_*
# in src/portable/rnn.c); the verdict must then be UNCLEAN (docs/RELIABILITY.md).
#
# Usage:  tools/sanitize.sh [pytest args...]      (default: the whole tests/ suite)
#         PYTHON=/path/to/python tools/sanitize.sh tests/stress/test_fuzz.py
#         PLANT=ub tools/sanitize.sh tests/core/test_fast_path.py   (must fail)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
CC_BIN="${CC:-gcc}"
LIBASAN="$("$CC_BIN" -print-file-name=libasan.so)"
if [ ! -e "$LIBASAN" ]; then
    echo "sanitize.sh: $CC_BIN has no libasan.so ($LIBASAN); install gcc's sanitizer runtime" >&2
    exit 2
fi
LIBASAN="$(readlink -f "$LIBASAN")"
# libstdc++ preloaded too: torch throws C++ exceptions, and ASan's __cxa_throw
# interceptor must find the real one when it starts, or it aborts with
# "CHECK failed: ... real___cxa_throw" (an ASan runtime limit, not a bug here)
LIBSTDCXX="$(readlink -f "$("$CC_BIN" -print-file-name=libstdc++.so)")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-sanitize.XXXXXX")"
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT

echo "== copying the source tree to $WORK"
(cd "$ROOT" && tar cf - --exclude=./build --exclude='*.so' --exclude=./.git \
    --exclude='__pycache__' --exclude=./.pytest_cache --exclude=./.hypothesis \
    --exclude='fastrnn/_*.c' --exclude='fastrnn/backends/cpu/_ext.c' .) | (cd "$WORK" && tar xf -)

echo "== building with ASan + UBSan"
echo "   planted defect: ${PLANT:-none}"
(cd "$WORK" && FASTRNN_SANITIZE=1 FASTRNN_PLANT="${PLANT:-}" "$PYTHON" setup.py build_ext --inplace -f \
    > "$WORK/build.log" 2>&1) || { tail -30 "$WORK/build.log"; echo "VERDICT: BUILD FAILED"; exit 1; }
grep -c -- "-fsanitize=address,undefined" "$WORK/build.log" | sed 's/^/   compile lines with sanitizer flags: /'

if [ "$#" -eq 0 ]; then set -- tests; fi
echo "== running pytest $* under the sanitizers"
LOG="$WORK/pytest.log"
REPORTS="$WORK/reports"
mkdir -p "$REPORTS"
(cd "$WORK" && \
    LD_PRELOAD="$LIBASAN $LIBSTDCXX" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_odr_violation=0:alloc_dealloc_mismatch=0:allocator_may_return_null=1:detect_stack_use_after_return=0:log_path=$REPORTS/asan" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1" \
    PYTHONMALLOC=malloc FASTRNN_SANITIZED=1 \
    "$PYTHON" -m pytest -q -s -p no:cacheprovider "$@" > "$LOG" 2>&1)
status=$?
tail -5 "$LOG"
# a report file per process that reported; an empty one is not a report
files=$(find "$REPORTS" -type f -size +0 | wc -l)
asan=$( (grep -h "ERROR: AddressSanitizer\|AddressSanitizer: CHECK failed" "$LOG"; \
         find "$REPORTS" -type f -size +0 -exec grep -h "ERROR: AddressSanitizer\|AddressSanitizer: CHECK failed" {} +) | wc -l)
ubsan=$( (grep -h "runtime error:" "$LOG"; \
          find "$REPORTS" -type f -size +0 -exec grep -h "runtime error:" {} +) | wc -l)
echo "== pytest exit $status; report files: $files; AddressSanitizer reports: $asan; UBSan reports: $ubsan"
if [ "$files" -gt 0 ]; then
    for f in $(find "$REPORTS" -type f -size +0 | head -3); do
        echo "== $f"; head -40 "$f"
    done
fi
if [ "$asan" -gt 0 ] || [ "$ubsan" -gt 0 ]; then
    grep -n -A25 -m3 "ERROR: AddressSanitizer\|runtime error:" "$LOG" | head -120
fi
if [ "$status" -eq 0 ] && [ "$files" -eq 0 ] && [ "$asan" -eq 0 ] && [ "$ubsan" -eq 0 ]; then
    echo "VERDICT: CLEAN"
    exit 0
fi
echo "== last lines of the log:"
tail -40 "$LOG"
echo "VERDICT: UNCLEAN"
exit 1
