#!/bin/sh
# Runs busted under valgrind memcheck: sh spec/support/memcheck.sh LUA BUSTED_ARGS...
#
# Fails when memcheck reports any error (invalid read or write, use of an
# uninitialised value, bad free...) or a definite leak whose stack includes
# the module (sim.so / lua_telnyx_sim.c), and when busted itself fails.
# Only the interpreter running busted is checked: the processes it starts
# (the stub server, luarocks, compilers) run natively (--trace-children=no,
# and --child-silent-after-fork keeps their pre-exec moments out of the log).
# Busted is run by the interpreter directly, not through its --lua re-exec.
# --keep-debuginfo: Lua unloads the module when it closes the state, before
# the leak check, which would otherwise see its frames as "???".
set -u
lua=${1:?usage: memcheck.sh LUA BUSTED_ARGS...}
shift
here=$(dirname "$0")
busted=$(command -v busted) || { echo "memcheck: busted not found" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "memcheck: valgrind not found" >&2; exit 1; }
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

valgrind --tool=memcheck --trace-children=no --child-silent-after-fork=yes \
  --track-origins=yes --num-callers=40 --keep-debuginfo=yes \
  --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=none \
  --suppressions="$here/valgrind.supp" --gen-suppressions=all \
  --log-file="$logdir/vg.%p.log" \
  "$lua" "$busted" "$@"
busted_rc=$?

status=0
[ "$busted_rc" -eq 0 ] || { echo "memcheck: busted exited $busted_rc"; status=1; }

found=0
for log in "$logdir"/vg.*.log; do
  [ -f "$log" ] || continue
  found=1
  errors=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
  if [ -z "$errors" ]; then
    echo "memcheck: no ERROR SUMMARY in $log (did the interpreter crash?)"
    tail -n 40 "$log"
    status=1
    continue
  fi
  # Definite leaks with the module on their stack, one record per paragraph.
  leaks=$(awk '
    /are definitely lost in loss record/ { rec = $0 "\n"; inrec = 1; next }
    inrec && /^==[0-9]+== *$/ { if (rec ~ /sim\.so|lua_telnyx_sim\.c/) { printf "%s\n", rec; n++ } inrec = 0; next }
    inrec { rec = rec $0 "\n" }
    END { if (inrec && rec ~ /sim\.so|lua_telnyx_sim\.c/) { printf "%s\n", rec; n++ } exit n > 0 }
  ' "$log")
  leak_rc=$?
  if [ "$errors" -ne 0 ]; then
    echo "memcheck: $errors error(s):"
    sed -n '/^==[0-9]*== Parent PID/,/HEAP SUMMARY/p' "$log" # each error, with a suppression for it
    status=1
  fi
  if [ "$leak_rc" -ne 0 ]; then
    echo "memcheck: definite leak(s) from the module:"
    printf '%s\n' "$leaks"
    status=1
  fi
  sed -n 's/^==[0-9]*== \(ERROR SUMMARY:.*\)/memcheck: \1/p;s/^==[0-9]*== *\(definitely lost:.*\)/memcheck: \1/p' "$log" | tail -n 2
done
[ "$found" -eq 1 ] || { echo "memcheck: valgrind wrote no log"; status=1; }
[ "$status" -eq 0 ] && echo "memcheck: clean"
exit $status
