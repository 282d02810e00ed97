#!/bin/sh
# Runs each libFuzzer target for SECONDS: sh fuzz/run.sh SECONDS TARGET...
# (targets: build/fuzz/fuzz_TARGET, built by `make fuzz` / `make fuzz-ci`).
#
# The working corpus is fuzz/corpus/TARGET (gitignored; grows across runs),
# started from the committed seeds in fuzz/corpus-seed/TARGET. A crash, a
# sanitizer report, a leak or a broken invariant fails the run and leaves the
# input in build/fuzz/; the output shows how to replay it.
set -u
seconds=${1:?usage: run.sh SECONDS TARGET...}
shift
cd "$(dirname "$0")/.." || exit 1
# A smaller quarantine than ASan's 256 MiB keeps a fresh Lua state per input
# fast; leaks are checked per input (libFuzzer's -detect_leaks, on by default).
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=16:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
[ -x /usr/lib/llvm-14/bin/llvm-symbolizer ] && export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer

status=0
for t in "$@"; do
  bin=build/fuzz/fuzz_$t
  log=build/fuzz/$t.log
  mkdir -p "fuzz/corpus/$t"
  rm -f build/fuzz/"$t"-*
  echo "== fuzz $t: $seconds s"
  "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -dict=fuzz/telnyx.dict -artifact_prefix="build/fuzz/$t-" -print_final_stats=1 \
    "fuzz/corpus/$t" "fuzz/corpus-seed/$t" >"$log" 2>&1
  rc=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log"
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "== fuzz $t: FAILED (exit $rc); the end of $log:"
    tail -n 60 "$log"
    for a in build/fuzz/"$t"-*; do
      [ -f "$a" ] && echo "replay: FUZZ_TRACE=1 $bin $a   (prints the input as Lua, for a spec)"
    done
  fi
done
exit $status
