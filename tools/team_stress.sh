#!/usr/bin/env bash
# The step team's protocol (src/runtime/team.c) under ThreadSanitizer: callers
# at once, helpers falling asleep, OpenMP notes (tools/team_stress.c says
# what is checked). Exits non-zero on a failed check or a TSan report.
#   tools/team_stress.sh [CALLERS] [JOBS_PER_CALLER]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-team.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
"${CC:-gcc}" -O1 -g -fsanitize=thread -pthread -I"$ROOT/src/include" -I"$ROOT/src" \
    "$ROOT/tools/team_stress.c" "$ROOT/src/runtime/team.c" -o "$OUT/team_stress"
for callers in 1 "${1:-3}"; do
    TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$OUT/team_stress" "$callers" "${2:-20000}"
done
