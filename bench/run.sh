#!/bin/sh
# make bench [CHECK=1]: starts the canned nginx stub on a free loopback port, then runs
# bench/bench.lua (the rounds, the table, bench/results/latest.json, the CHECK targets).
# Expects LUA_CPATH to find build/lua5.4/telnyx/sim.so and BENCH_LIMIT to name the built limit.
set -eu
cd "$(dirname "$0")/.."

missing=""
for tool in nginx node npm lua5.4; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing="$missing ngx_http_lua_module"
if [ -n "$missing" ]; then
  echo "bench: missing:$missing" >&2
  echo "bench: install with: apt-get install nginx libnginx-mod-http-lua nodejs npm lua5.4 lua-cjson lua-socket" >&2
  exit 1
fi

# The official Node SDK, exactly the version package-lock.json pins, into bench/node_modules.
want=$(sed -n 's/.*"telnyx": *"\([^"]*\)".*/\1/p' bench/package.json | head -n 1)
have=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' bench/node_modules/telnyx/package.json 2>/dev/null | head -n 1 || true)
if [ "$have" != "$want" ]; then
  echo "bench: npm ci (telnyx@$want into bench/node_modules)"
  (cd bench && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { echo "bench: npm ci failed" >&2; exit 1; }
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/telnyx-sim-bench.XXXXXX")
stop() {
  if [ -s "$dir/nginx.pid" ]; then kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

lua5.4 bench/body.lua 10 >"$dir/body-10.json"
lua5.4 bench/body.lua 1000 >"$dir/body-1000.json"

# A free port: bind 0, read it back, let nginx take it (retried if someone else does first).
started=""
for _ in 1 2 3 4 5; do
  port=$(lua5.4 -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); print((select(2, s:getsockname()))); s:close()')
  sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" bench/nginx.conf.in >"$dir/nginx.conf"
  if nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>>"$dir/start.log"; then
    i=0
    while [ ! -s "$dir/nginx.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$dir/nginx.pid" ] && { started=1; break; }
  fi
done
if [ -z "$started" ]; then
  echo "bench: nginx did not start:" >&2
  cat "$dir/start.log" "$dir/error.log" >&2 2>/dev/null || true
  exit 1
fi

status=0
BENCH_DIR="$dir" BENCH_PORT="$port" lua5.4 bench/bench.lua || status=$?
if [ -s "$dir/error.log" ] && grep -q '\[error\]\|\[crit\]\|\[alert\]' "$dir/error.log"; then
  echo "bench: the stub logged errors:" >&2
  grep '\[error\]\|\[crit\]\|\[alert\]' "$dir/error.log" | head -n 5 >&2
fi
exit $status
