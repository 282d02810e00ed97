#!/bin/sh
# make contract: every operation, valid calls only, through Prism (`prism mock --errors`) serving
# the Telnyx OpenAPI document, then a few invalid requests it must refuse (contract/run.lua).
# Starts Prism on a free loopback port, waits until it answers, runs run.lua, always stops Prism.
# Expects LUA_CPATH to find build/lua5.4/telnyx/sim.so. The document: $TELNYX_OPENAPI, else
# ../shared/telnyx-openapi/sim-cards-full.json from the repository root.
set -eu
# $TELNYX_OPENAPI is taken relative to where this was started.
if [ -n "${TELNYX_OPENAPI:-}" ] && [ -f "$TELNYX_OPENAPI" ]; then
  TELNYX_OPENAPI=$(cd "$(dirname "$TELNYX_OPENAPI")" && pwd)/$(basename "$TELNYX_OPENAPI")
fi
cd "$(dirname "$0")/.."
root=$(pwd)

missing=""
for tool in node npm lua5.4; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  echo "contract: missing:$missing" >&2
  echo "contract: install with: apt-get install nodejs npm lua5.4 lua-cjson lua-socket" >&2
  exit 1
fi

doc=${TELNYX_OPENAPI:-$root/../shared/telnyx-openapi/sim-cards-full.json}
if [ ! -f "$doc" ]; then
  echo "contract: no OpenAPI document at $doc (set TELNYX_OPENAPI)" >&2
  exit 1
fi
doc=$(cd "$(dirname "$doc")" && pwd)/$(basename "$doc")

# Prism, exactly the version package-lock.json pins, into contract/node_modules.
want=$(sed -n 's/.*"@stoplight\/prism-cli": *"\([^"]*\)".*/\1/p' contract/package.json | head -n 1)
have=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' contract/node_modules/@stoplight/prism-cli/package.json 2>/dev/null \
  | head -n 1 || true)
if [ "$have" != "$want" ] || [ ! -x contract/node_modules/.bin/prism ]; then
  echo "contract: npm ci (@stoplight/prism-cli@$want into contract/node_modules)"
  (cd contract && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { echo "contract: npm ci failed" >&2; exit 1; }
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/telnyx-sim-contract.XXXXXX")
pid=""
stop() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

# A free port: bind 0, read it back, let Prism take it (retried if someone else does first).
# Ready: Prism's log says it listens, and a request to it gets an HTTP answer.
started=""
for _ in 1 2 3; do
  port=$(lua5.4 -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); print((select(2, s:getsockname()))); s:close()')
  node contract/node_modules/@stoplight/prism-cli/dist/index.js mock --errors -h 127.0.0.1 -p "$port" "$doc" \
    >"$dir/prism.log" 2>&1 &
  pid=$!
  i=0
  while [ $i -lt 300 ] && kill -0 "$pid" 2>/dev/null; do
    if grep -q 'Prism is listening' "$dir/prism.log" 2>/dev/null && lua5.4 -e "
        local c = require('socket').tcp(); c:settimeout(1)
        os.exit(c:connect('127.0.0.1', $port) and 0 or 1)"; then
      started=1
      break
    fi
    sleep 0.1
    i=$((i + 1))
  done
  [ -n "$started" ] && break
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
if [ -z "$started" ]; then
  echo "contract: prism did not start:" >&2
  tail -n 20 "$dir/prism.log" >&2 || true
  exit 1
fi
echo "contract: prism $want mock --errors on 127.0.0.1:$port, $doc"

status=0
CONTRACT_BASE_URL="http://127.0.0.1:$port" TELNYX_OPENAPI="$doc" \
  LUA_PATH="$root/?.lua;$root/?/init.lua;;" lua5.4 contract/run.lua || status=$?
if [ $status -ne 0 ]; then
  echo "contract: prism's log (last 30 lines):" >&2
  tail -n 30 "$dir/prism.log" >&2 || true
fi
exit $status
