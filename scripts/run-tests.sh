#!/usr/bin/env bash
# Runs every test: the cmocka unit tests, then each tests/e2e/test_*.sh (each starts and
# stops its own servers on free loopback ports). Prints one closing line counting passed and
# failed tests; exits non-zero when anything failed.
#   run-tests.sh [BUILD_DIR]      (default build/san)
#   TESTS="slice worker" run-tests.sh   runs only those e2e tests
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${1:-build/san}
export BIN_DIR=$top/$build/bin
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logs=$top/$build/test-logs
mkdir -p "$logs"

passed=0 failed=0 failures=()

# Unit tests: cmocka reports "[  PASSED  ] N test(s)." and "[  FAILED  ] M test(s)...".
for t in "$top/$build"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  out=$("$t" 2>&1); rc=$?
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -1)
  p=${p:-0} f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  printf '%s\n' "$out" >"$logs/$name.log"
  if [ "$f" -ne 0 ]; then
    failures+=("$name")
    printf '%s\n' "$out" | grep -E 'FAILED|ERROR|Sanitizer|runtime error' | head -20
  fi
  printf '%-28s %3s passed %3s failed%s\n' "$name" "$p" "$f" "${s:+ ($s skipped)}"
done

# End-to-end tests: each prints "ok - ..." / "not ok - ..." lines and its own summary.
for t in "$top"/tests/e2e/test_*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .sh); short=${name#test_}
  if [ -n "${TESTS:-}" ] && ! grep -qw "$short" <<<"$TESTS"; then continue; fi
  start=$SECONDS
  timeout --kill-after=10 900 bash "$t" >"$logs/$name.log" 2>&1; rc=$?
  p=$(grep -c '^ok - ' "$logs/$name.log"); f=$(grep -c '^not ok - ' "$logs/$name.log")
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    failures+=("$name")
    grep -E '^not ok - |^#' "$logs/$name.log" | head -20
    echo "--- last lines of $logs/$name.log:"; tail -25 "$logs/$name.log"
  fi
  printf '%-28s %3s passed %3s failed (%ds)\n' "$name" "$p" "$f" $((SECONDS - start))
done

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logs)"
echo "TOTAL: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
