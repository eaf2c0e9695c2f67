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
# Verdict: CLEAN when pytest passes and the log holds no sanitizer report
# ("ERROR: AddressSanitizer", "AddressSanitizer: CHECK failed", "runtime
# error:"), else UNCLEAN (exit 1).
# Nothing is written into the source tree; the temporary copy is removed
# unless KEEP=1.
#
# Usage:  tools/sanitize.sh [pytest args...]      (default: the whole tests/ suite)
#         PYTHON=/path/to/python tools/sanitize.sh tests/stress/test_fuzz.py
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
(cd "$WORK" && FASTRNN_SANITIZE=1 "$PYTHON" setup.py build_ext --inplace -f \
    > "$WORK/build.log" 2>&1) || { tail -30 "$WORK/build.log"; echo "VERDICT: BUILD FAILED"; exit 1; }
grep -c -- "-fsanitize=address,undefined" "$WORK/build.log" | sed 's/^/   compile lines with sanitizer flags: /'

if [ "$#" -eq 0 ]; then set -- tests; fi
echo "== running pytest $* under the sanitizers"
LOG="$WORK/pytest.log"
(cd "$WORK" && \
    LD_PRELOAD="$LIBASAN $LIBSTDCXX" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_odr_violation=0:alloc_dealloc_mismatch=0:allocator_may_return_null=1:detect_stack_use_after_return=0" \
    UBSAN_OPTIONS="print_stacktrace=1:report_error_type=1" \
    PYTHONMALLOC=malloc FASTRNN_SANITIZED=1 \
    "$PYTHON" -m pytest -q -p no:cacheprovider "$@" > "$LOG" 2>&1)
status=$?
tail -5 "$LOG"
asan=$(grep -c "ERROR: AddressSanitizer\|AddressSanitizer: CHECK failed" "$LOG")
ubsan=$(grep -c "runtime error:" "$LOG")
echo "== pytest exit $status; AddressSanitizer reports: $asan; UBSan reports: $ubsan"
if [ "$asan" -gt 0 ] || [ "$ubsan" -gt 0 ]; then
    grep -n -A25 -m3 "ERROR: AddressSanitizer\|runtime error:" "$LOG" | head -120
fi
if [ "$status" -eq 0 ] && [ "$asan" -eq 0 ] && [ "$ubsan" -eq 0 ]; then
    echo "VERDICT: CLEAN"
    exit 0
fi
echo "== last lines of the log:"
tail -40 "$LOG"
echo "VERDICT: UNCLEAN"
exit 1
