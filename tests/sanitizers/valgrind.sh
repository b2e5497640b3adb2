#!/usr/bin/env bash
# Runs every C test program of a build under valgrind memcheck (make test-valgrind).
# Usage: tests/sanitizers/valgrind.sh BUILD_DIR [test_name ...]
# A test fails on any memcheck error or definite leak (--error-exitcode=1), as
# well as on its own failure.  Suppressed: Open MPI's start-up internals only
# (Open MPI's openmpi-valgrind.supp and tests/sanitizers/valgrind.supp).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:?usage: valgrind.sh BUILD_DIR [test ...]}" && pwd)"
shift
suppressions=(--suppressions="$root/tests/sanitizers/valgrind.supp")
for extra in /usr/share/openmpi/openmpi-valgrind.supp; do
  [ -f "$extra" ] && suppressions+=(--suppressions="$extra")
done
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  for binary in "$build"/test_*; do [ -x "$binary" ] && tests+=("$(basename "$binary")"); done
fi
[ ${#tests[@]} -gt 0 ] || { echo "valgrind.sh: no test_* programs in $build" >&2; exit 1; }

failed=()
for test in "${tests[@]}"; do
  log="$build/valgrind-$test.log"
  start=$SECONDS
  if (cd "$build" && valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --num-callers=50 "${suppressions[@]}" "./$test") >"$log" 2>&1; then
    echo "valgrind: $test passed ($((SECONDS - start)) s)"
  else
    failed+=("$test")
    echo "valgrind: $test FAILED ($((SECONDS - start)) s); log: $log"
    grep -E "^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|.*definitely lost in)|CHECK|failed" "$log" | head -20
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "valgrind FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "valgrind: all ${#tests[@]} C tests clean"
