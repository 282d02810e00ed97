-- One measured client process for `make bench` (run by bench/bench.lua; prints one JSON line).
--
--   lua5.4 bench/client.lua module    BASE_URL API_KEY WARMUP N   client:purchase_esims{amount = 10}
--   lua5.4 bench/client.lua rss       BASE_URL API_KEY WARMUP N   VmRSS after WARMUP calls vs after N more
--   lua5.4 bench/client.lua interpret BODY_FILE WARMUP N          client:interpret of a canned 202 (no I/O)
--   lua5.4 bench/client.lua decode    BODY_FILE WARMUP N          cjson.decode of the same bytes
--
-- cpu_s is os.clock() over the N timed calls only: clock(3), i.e. CLOCK_PROCESS_CPUTIME_ID, the
-- process's user+sys time (the same total getrusage gives), so start-up and warm-up are left out.

local sim = require "telnyx.sim"
local cjson = require "cjson"
local gettime = require("socket").gettime

local mode = arg[1]

local function status_kb(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function report(t)
  t.hwm_kb, t.rss_kb = status_kb("VmHWM"), status_kb("VmRSS")
  io.write(cjson.encode(t), "\n")
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

if mode == "module" or mode == "rss" then
  local base_url, key = arg[2], arg[3]
  local warmup, n = tonumber(arg[4]), tonumber(arg[5])
  local client = assert(sim.new { api_key = key, base_url = base_url, max_retries = 0 })
  local function one()
    local res, err = client:purchase_esims { amount = 10 }
    if not res then error(tostring(err)) end
    return res
  end
  local first = one()
  local card = first.data[1]
  assert(#first.data == 10 and card.eid == nil and math.type(card.current_device_location.accuracy) == "integer"
         and card.imsi:sub(1, 1) == "0", "unexpected result from the stub")
  for _ = 2, warmup do one() end
  if mode == "module" then
    local c0, w0 = os.clock(), gettime()
    for _ = 1, n do one() end
    local cpu, wall = os.clock() - c0, gettime() - w0
    report { calls = n, cpu_s = cpu, wall_s = wall }
  else
    collectgarbage("collect")
    local rss0 = status_kb("VmRSS")
    local c0, w0 = os.clock(), gettime()
    for _ = 1, n do one() end
    local cpu, wall = os.clock() - c0, gettime() - w0
    collectgarbage("collect")
    local rss1 = status_kb("VmRSS")
    report { calls = n, cpu_s = cpu, wall_s = wall, rss_before_kb = rss0, rss_after_kb = rss1,
             lua_kb = collectgarbage("count") }
  end
elseif mode == "interpret" or mode == "decode" then
  local body = read_file(arg[2])
  local warmup, n = tonumber(arg[3]), tonumber(arg[4])
  local one
  if mode == "interpret" then
    local client = assert(sim.new { api_key = "KEY0123456789", base_url = "http://127.0.0.1:9/v2" })
    local req = assert(client:request("purchase_esims", { amount = 1 }))
    local reply = { status = 202, headers = {}, body = body }
    local interpret = client.interpret
    one = function()
      local res, err = interpret(client, req, reply)
      if not res then error(tostring(err)) end
      return res
    end
  else
    local decode = cjson.decode
    one = function() return decode(body) end
  end
  local first = one()
  assert(#first.data >= 1, "unexpected body")
  for _ = 2, warmup do one() end
  local c0, w0 = os.clock(), gettime()
  for _ = 1, n do one() end
  local cpu, wall = os.clock() - c0, gettime() - w0
  report { calls = n, cpu_s = cpu, wall_s = wall, body_bytes = #body, cards = #first.data }
else
  io.stderr:write("usage: see the head of bench/client.lua\n")
  os.exit(2)
end
