-- The handler of the OpenResty rows of `make bench` (bench/openresty.conf.in, one nginx worker):
--   POST /run?transport=cosocket|capture&n=N[&mem=1]
-- makes N client:purchase_esims{amount = 10} calls one after another through that transport's
-- client and answers one JSON line, { transport, calls, wall_s, cpu_s, hwm_kb, rss_kb } (the
-- worker's memory only with mem=1, else 0; on a failure: a status >= 400 and the reason as text).
-- Each transport has one client per worker, made at its first request and kept (as docs/openresty.md
-- advises: its kept-alive connections then serve every request), max_retries = 0 as in
-- bench/client.lua. wall_s is CLOCK_MONOTONIC around the loop; cpu_s is os.clock() around it, the
-- worker process's user+sys time (CLOCK_PROCESS_CPUTIME_ID), which for the capture transport
-- includes nginx's own proxying of the subrequest (the same worker does it). The stub's work is
-- in the other nginx, counted by neither.
-- luacheck: globals ngx

local ffi = require "ffi"
local resty = require "telnyx.sim.resty"

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } telnyx_bench_timespec;
int clock_gettime(int clk_id, telnyx_bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("telnyx_bench_timespec")
local function mono()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local API_KEY = "KEYbench0123456789ABCDEFGHIJKLMNOP"

local clients, checked = {}, {}
local function client_for(kind)
  local c = clients[kind]
  if not c then
    local err
    c, err = resty.new { api_key = API_KEY, base_url = ngx.var.bench_stub_base, max_retries = 0, transport = kind }
    if not c then error("resty.new{transport = " .. kind .. "}: " .. tostring(err)) end
    assert(c.transport_kind == kind, "asked for " .. kind .. ", got " .. tostring(c.transport_kind))
    clients[kind] = c
  end
  return c
end

local function status_kb(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function fail(status, message)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain"
  ngx.say(message)
  return ngx.exit(status)
end

local M = {}

function M.run()
  local args = ngx.req.get_uri_args()
  local kind, n = args.transport, tonumber(args.n)
  if kind ~= "cosocket" and kind ~= "capture" then return fail(400, "transport: cosocket or capture") end
  if not n or n < 1 then return fail(400, "n: a number of calls") end
  local ok, client = pcall(client_for, kind)
  if not ok then return fail(500, tostring(client)) end

  local res, err
  if not checked[kind] then -- one checked call first: the stub's 10 cards came through this transport
    res, err = client:purchase_esims { amount = 10 }
    if not res then return fail(502, kind .. ": " .. tostring(err)) end
    if type(res.data) ~= "table" or #res.data ~= 10 then
      return fail(502, kind .. ": unexpected result from the stub")
    end
    checked[kind] = true
  end

  local c0, w0 = os.clock(), mono()
  for _ = 1, n do
    res, err = client:purchase_esims { amount = 10 }
    if not res then return fail(502, kind .. ": " .. tostring(err)) end
  end
  local cpu, wall = os.clock() - c0, mono() - w0
  local mem = args.mem == "1" -- two reads of /proc, ten system calls: only when asked
  local body = string.format('{"transport":"%s","calls":%d,"wall_s":%.6f,"cpu_s":%.6f,"hwm_kb":%d,"rss_kb":%d}\n',
    kind, n, wall, cpu, mem and status_kb("VmHWM") or 0, mem and status_kb("VmRSS") or 0)
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body -- not chunked: bench.lua's client reads it over a kept-alive connection
  ngx.print(body)
end

return M
