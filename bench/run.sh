#!/bin/sh
# make bench [CHECK=1]: starts the canned nginx stub on two free loopback ports (HTTP/1.1, and
# TLS + HTTP/2 with a throw-away certificate made here), then runs bench/bench.lua (the rounds,
# the tables, bench/results/latest.json, the CHECK targets).
# Expects LUA_CPATH to find build/lua5.4/telnyx/sim.so and BENCH_LIMIT to name the built limit.
# The OpenResty rows (BENCH_OPENRESTY=0 skips them): a second nginx (bench/openresty.conf.in), one
# worker making the purchases through telnyx.sim.resty, which loads build/luajit/telnyx/sim.so and
# lua-resty-http + lua-resty-string from $TELNYX_SIM_VENDOR_DIR, else ../shared/vendor.
# The fan-out holds over 2,000 loopback connections open at once (a client's 1,000 and nginx's
# 1,000 ends): the file-descriptor limit is raised to 8192 where allowed, and checked.
set -eu
cd "$(dirname "$0")/.."

missing=""
for tool in nginx node npm lua5.4 openssl; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing="$missing ngx_http_lua_module"
openresty=${BENCH_OPENRESTY:-1}
vendor_lua_path=""
if [ "$openresty" != 0 ]; then
  if [ ! -f build/luajit/telnyx/sim.so ]; then
    echo "bench: the OpenResty rows need build/luajit/telnyx/sim.so (make LUA=luajit), or BENCH_OPENRESTY=0" >&2
    exit 1
  fi
  # lua_package_path entries for lua-resty-http and resty.string, as spec/support/nginx.lua's vendor_lua_path()
  vendor=${TELNYX_SIM_VENDOR_DIR:-$(cd .. && pwd)/shared/vendor}
  http_lib=""; string_lib=""
  for d in $(ls -d "$vendor"/lua-resty-http-* 2>/dev/null | sort -V); do
    [ -f "$d/lib/resty/http.lua" ] && http_lib="$d/lib"
  done
  for d in $(ls -d "$vendor"/lua-resty-string-* 2>/dev/null | sort -V); do
    [ -f "$d/lib/resty/string.lua" ] && string_lib="$d/lib"
  done
  if [ -z "$http_lib" ] || [ -z "$string_lib" ]; then
    echo "bench: the OpenResty rows need lua-resty-http and lua-resty-string in $vendor (lua-resty-http-*/lib," \
      "lua-resty-string-*/lib; set TELNYX_SIM_VENDOR_DIR to their folder), or BENCH_OPENRESTY=0 to skip them" >&2
    exit 1
  fi
  vendor_lua_path="$http_lib/?.lua;$string_lib/?.lua"
fi
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
  for pidfile in "$dir/nginx.pid" "$dir/openresty.pid" "$dir/work.pid"; do
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

lua5.4 bench/body.lua 10 >"$dir/body-10.json"
lua5.4 bench/body.lua 1000 >"$dir/body-1000.json"

# Descriptors and ports for the fan-out: each side of 1,000 connections needs its own.
want_fds=8192
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $want_fds ]; then
  ulimit -n $want_fds 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 2100 ]; then
  echo "bench: the fan-out needs >= 2100 open files (ulimit -n is $(ulimit -n), hard limit $(ulimit -Hn))" >&2
  exit 1
fi
if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
  range=$(cat /proc/sys/net/ipv4/ip_local_port_range)
  lo=${range%%[!0-9]*}
  hi=${range##*[!0-9]}
  if [ $((hi - lo)) -lt 4000 ]; then
    echo "bench: the loopback port range $lo-$hi is too small for the fan-out (sysctl net.ipv4.ip_local_port_range)" >&2
    exit 1
  fi
fi

# A throw-away certificate for 127.0.0.1 (P-256: cheap handshakes for the Node SDK's 1,000 connections).
if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1; then
  echo "bench: openssl could not make a certificate:" >&2
  cat "$dir/openssl.log" >&2
  exit 1
fi

# Free ports: bind 0, read them back, let nginx take them (retried if someone else does first).
started=""
for _ in 1 2 3 4 5; do
  ports=$(lua5.4 -e 'local socket = require("socket")
    local a = assert(socket.bind("127.0.0.1", 0)); local b = assert(socket.bind("127.0.0.1", 0))
    io.write((select(2, a:getsockname())), " ", (select(2, b:getsockname())), "\n"); a:close(); b:close()')
  port=${ports% *}
  tls_port=${ports#* }
  sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@TLSPORT@#$tls_port#g" bench/nginx.conf.in >"$dir/nginx.conf"
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

# The OpenResty side: its own nginx, one worker, on a third free port (same retries).
or_port=""
work_port=""
if [ "$openresty" != 0 ]; then
  started=""
  user=""
  [ "$(id -u)" = 0 ] && user="user root;" # else nobody's workers could not read the repository or $dir
  for _ in 1 2 3 4 5; do
    or_port=$(lua5.4 -e 'local socket = require("socket")
      local a = assert(socket.bind("127.0.0.1", 0)); io.write((select(2, a:getsockname())), "\n"); a:close()')
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@ORPORT@#$or_port#g" -e "s#@REPO@#$(pwd)#g" \
      -e "s#@VENDOR_LUA_PATH@#$vendor_lua_path#g" -e "s#@USER@#$user#g" bench/openresty.conf.in >"$dir/openresty.conf"
    if nginx -p "$dir" -c "$dir/openresty.conf" -e "$dir/openresty-error.log" 2>>"$dir/start.log"; then
      i=0
      while [ ! -s "$dir/openresty.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
      [ -s "$dir/openresty.pid" ] && { started=1; break; }
    fi
  done
  if [ -z "$started" ]; then
    echo "bench: the OpenResty nginx did not start:" >&2
    cat "$dir/start.log" "$dir/openresty-error.log" >&2 2>/dev/null || true
    exit 1
  fi
  # The same server for bench.lua to run under callgrind (counting each transport's instructions per
  # call): one process (no master), in the foreground, on a fourth port; bench.lua starts and stops it.
  work_port=$(lua5.4 -e 'local socket = require("socket")
    local a = assert(socket.bind("127.0.0.1", 0)); io.write((select(2, a:getsockname())), "\n"); a:close()')
  sed -e "s#^daemon on;#daemon off; master_process off;#" -e "s#listen 127.0.0.1:$or_port;#listen 127.0.0.1:$work_port;#" \
    -e "s#^pid .*#pid $dir/work.pid;#" -e "s#^error_log .*#error_log $dir/work-error.log warn;#" \
    "$dir/openresty.conf" >"$dir/openresty-work.conf"
fi

status=0
BENCH_DIR="$dir" BENCH_PORT="$port" BENCH_TLS_PORT="$tls_port" BENCH_OR_PORT="$or_port" \
  BENCH_OR_WORK_PORT="${work_port:-}" lua5.4 bench/bench.lua \
  || status=$?
if [ -s "$dir/error.log" ] && grep -q '\[error\]\|\[crit\]\|\[alert\]' "$dir/error.log"; then
  echo "bench: the stub logged errors:" >&2
  grep '\[error\]\|\[crit\]\|\[alert\]' "$dir/error.log" | head -n 5 >&2
fi
if [ -s "$dir/openresty-error.log" ] && grep -q '\[error\]\|\[crit\]\|\[alert\]' "$dir/openresty-error.log"; then
  echo "bench: the OpenResty nginx logged errors:" >&2
  grep '\[error\]\|\[crit\]\|\[alert\]' "$dir/openresty-error.log" | head -n 5 >&2
fi
exit $status
