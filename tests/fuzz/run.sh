#!/usr/bin/env bash
# Runs libFuzzer targets with physgrad's sanitizer settings.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS [target ...]   (default: every fuzz_* in BUILD_DIR)
# Each target fuzzes from tests/fuzz/corpus/<object>/ (read only; new inputs go to
# a scratch copy) and writes crash/leak/timeout reproducers to $FUZZ_ARTIFACTS
# (default BUILD_DIR/fuzz-artifacts).  Non-zero exit when any target fails.
# Reproduce a finding:  BUILD_DIR/fuzz_<object> ARTIFACT   (with the same environment).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:?usage: run.sh BUILD_DIR SECONDS [target ...]}"
seconds="${2:?usage: run.sh BUILD_DIR SECONDS [target ...]}"
shift 2
build="$(cd "$build" && pwd)"
artifacts="${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}"
mkdir -p "$artifacts"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=64}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMPI_MCA_opal_signal=""  # Open MPI must not take over SIGABRT/SIGSEGV from libFuzzer

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for binary in "$build"/fuzz_*; do [ -x "$binary" ] && targets+=("$(basename "$binary")"); done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run.sh: no fuzz_* targets in $build (configure with -DPHYSGRAD_FUZZ=ON)" >&2; exit 1; }

failed=()
for target in "${targets[@]}"; do
  object="${target#fuzz_}"
  corpus="$build/fuzz-corpus/$object"
  mkdir -p "$corpus"
  echo "=== $target: ${seconds}s"
  # -timeout: a single input that runs this long is a hang (inputs are bounded to milliseconds).
  if ! "$build/$target" -max_total_time="$seconds" -timeout=20 -max_len=2048 -len_control=20 -print_final_stats=1 \
      -artifact_prefix="$artifacts/$target-" "$corpus" "$root/tests/fuzz/corpus/$object" \
      >"$build/$target.log" 2>&1; then
    failed+=("$target")
    tail -n 60 "$build/$target.log"
  fi
  grep -E "^stat::number_of_executed_units|^Done" "$build/$target.log" | tr '\n' ' '; echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing FAILED: ${failed[*]} (reproducers in $artifacts)" >&2
  exit 1
fi
echo "fuzzing passed: ${targets[*]}"
