#!/bin/sh
# make demo: runs the examples against the fake Telnyx (telnyx-sim-fake) on loopback, or
# against the real API when TELNYX_API_KEY is set and TELNYX_BASE_URL is unset
# (set but empty means the fake: the module itself refuses an empty one):
# the eSIM onboarding (examples/esim_onboarding.lua, which buys 3 eSIMs: it
# replaces the bare examples/purchase_esims.lua here), then the registration.
set -eu
LUA_BIN=${LUA_BIN:-lua5.4}
if [ -n "${TELNYX_API_KEY:-}" ] && [ -z "${TELNYX_BASE_URL+set}" ]; then
  echo "== TELNYX_API_KEY is set: using the real API (this buys 3 eSIMs) =="
else
  # the fake Telnyx this repository ships (bin/telnyx-sim-fake, docs/fake.md):
  # its first line on stdout is its base URL
  dir=$(mktemp -d)
  trap 'kill "$(cat "$dir/pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM
  "$LUA_BIN" bin/telnyx-sim-fake >"$dir/url" 2>"$dir/log" &
  echo $! >"$dir/pid"
  i=0
  until grep -q '^http' "$dir/url" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "telnyx-sim-fake did not start:" >&2; cat "$dir/log" >&2; exit 1; }
    sleep 0.1
  done
  TELNYX_BASE_URL=$(head -n 1 "$dir/url")
  TELNYX_API_KEY="fake-demo-key"
  export TELNYX_BASE_URL TELNYX_API_KEY
  echo "== telnyx-sim-fake at $TELNYX_BASE_URL =="
fi
echo
echo "== eSIM onboarding: buy 3, activation codes, a group, enable, list by tag 2 per page, disable 1, delete 1 =="
"$LUA_BIN" examples/esim_onboarding.lua
echo
echo "== register 3 SIM cards (the fake refuses codes starting 999) =="
"$LUA_BIN" examples/register_sim_cards.lua 0000000001 0000000002 9990000003
