-- One measured client process for `make bench` (run by bench/bench.lua; prints one JSON line).
--
--   lua5.4 bench/client.lua module    BASE_URL API_KEY ROUND MIN MAX N   client:purchase_esims{amount = 10}
--   lua5.4 bench/client.lua fanout    BASE_URL API_KEY N CONCURRENCY WARM_N MIN MAX TIMED CA [SINGLE_BASE]
--       client:batch of N get_sim_card_activation_code calls at CONCURRENCY ("default": no option);
--       with SINGLE_BASE, also N client:get_sim_card_activation_code one after another before each
--       timed fan-out (the single-call CPU figure the fan-out's is held to); cpus_s and singles_s
--       list both per pair (one fan-out, the single calls just before it)
--   lua5.4 bench/client.lua rss       BASE_URL API_KEY WARMUP N   VmRSS after WARMUP calls vs after N more
--   lua5.4 bench/client.lua interpret BODY_FILE WARMUP N          client:interpret of a canned 202 (no I/O)
--   lua5.4 bench/client.lua decode    BODY_FILE WARMUP N          cjson.decode of the same bytes
--
-- Warm-up (module, fanout): rounds (ROUND calls each; for fanout, batches of WARM_N calls, then
-- rounds of N single calls) until the per-round figure (CPU per call; for the batches, wall time
-- per call) stops falling: two rounds in a row no more than 3 % below the best before them, after
-- at least MIN rounds, at most MAX (the same rule as bench/limit.c and bench/node_client.js). The
-- figures are in the report.
-- cpu_s is os.clock() over the timed part only: clock(3), i.e. CLOCK_PROCESS_CPUTIME_ID, the
-- process's user+sys time (the same total getrusage gives), so start-up and warm-up are left out.
-- CA: a CA file for https, or "-".

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

-- The warm-up rule: round() returns a figure (lower is better); returns the list of figures.
local function warm_up(round, min_rounds, max_rounds)
  local figures, best, flat = {}, math.huge, 0
  for k = 1, max_rounds do
    local f = round()
    figures[k] = f
    flat = f >= 0.97 * best and flat + 1 or 0
    best = math.min(best, f)
    if k >= min_rounds and flat >= 2 then break end
  end
  return figures
end

local function new_client(base_url, key, ca)
  return assert(sim.new { api_key = key, base_url = base_url, max_retries = 0,
                          ca_file = ca ~= nil and ca ~= "-" and ca or nil })
end

-- The ids of the fan-out: fixed uuids, the same as bench/limit.c's and bench/node_client.js's.
local function ids(n)
  local t = {}
  for i = 1, n do t[i] = string.format("6a09cdc3-8948-47f0-aa62-%012x", i) end
  return t
end

if mode == "module" then
  local base_url, key = arg[2], arg[3]
  local round, min_rounds, max_rounds, n = tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
  local client = new_client(base_url, key)
  local function one()
    local res, err = client:purchase_esims { amount = 10 }
    if not res then error(tostring(err)) end
    return res
  end
  local first = one()
  local card = first.data[1]
  assert(#first.data == 10 and card.eid == nil and math.type(card.current_device_location.accuracy) == "integer"
         and card.imsi:sub(1, 1) == "0", "unexpected result from the stub")
  local warmup = warm_up(function()
    local c0 = os.clock()
    for _ = 1, round do one() end
    return (os.clock() - c0) / round * 1e6
  end, min_rounds, max_rounds)
  local c0, w0 = os.clock(), gettime()
  for _ = 1, n do one() end
  local cpu, wall = os.clock() - c0, gettime() - w0
  report { calls = n, cpu_s = cpu, wall_s = wall, warmup_us = warmup, warmup_calls = 1 + #warmup * round }
elseif mode == "fanout" then
  local base_url, key, n = arg[2], arg[3], tonumber(arg[4])
  local concurrency = tonumber(arg[5]) -- nil: "default", the module's own
  local warm_n, min_rounds, max_rounds, timed = tonumber(arg[6]), tonumber(arg[7]), tonumber(arg[8]), tonumber(arg[9])
  local ca, single_base = arg[10], arg[11]
  local client = new_client(base_url, key, ca)
  local opts = concurrency and { concurrency = concurrency } or nil
  local function calls_of(m)
    local t = {}
    for i, id in ipairs(ids(m)) do t[i] = { "get_sim_card_activation_code", id } end
    return t
  end
  local calls, warm_calls = calls_of(n), calls_of(warm_n)
  local function once(list)
    local c0, w0 = os.clock(), gettime()
    local results, err = client:batch(list, opts)
    local cpu, wall = os.clock() - c0, gettime() - w0
    if not results then error(tostring(err)) end
    if results.ok ~= #list then
      for _, r in ipairs(results) do if r.err then error("fan-out call failed: " .. tostring(r.err)) end end
    end
    assert(results[#list].res.data.activation_code, "unexpected result from the stub")
    return wall, cpu
  end
  local warmup = warm_up(function() return once(warm_calls) / warm_n end, min_rounds, max_rounds)
  -- The single-call figure, in the same process: N calls one after another on a client of their
  -- own (SINGLE_BASE: the no-delay location), before each timed fan-out, so that the load on the
  -- machine weighs on both alike.
  local single, single_warmup, single_cpu = nil, nil, 0
  if single_base and single_base ~= "-" then
    local c2 = new_client(single_base, key, ca)
    local list, next_id = ids(n), 0
    single = function(m)
      local c0 = os.clock()
      for _ = 1, m do
        next_id = next_id % #list + 1
        local res, err = c2:get_sim_card_activation_code(list[next_id])
        if not res then error(tostring(err)) end
      end
      return (os.clock() - c0) / m
    end
    assert(single(1))
    single_warmup = warm_up(function() return single(n) * 1e6 end, 2, 20)
  end
  local walls, cpus, singles, cpu_sum, wall_sum = {}, {}, {}, 0, 0
  for k = 1, timed do -- pairs: N single calls, then one fan-out
    if single then
      singles[k] = single(n) * n
      single_cpu = single_cpu + singles[k]
    end
    walls[k], cpus[k] = once(calls)
    cpu_sum, wall_sum = cpu_sum + cpus[k], wall_sum + walls[k]
  end
  report { calls = n * timed, n = n, cpu_s = cpu_sum, wall_s = wall_sum, walls_s = walls, cpus_s = cpus,
           warmup_wall_per_call_s = warmup, warmup_calls = warm_n * #warmup,
           single_calls = single and n * timed or nil, single_cpu_s = single and single_cpu or nil,
           singles_s = single and singles or nil,
           single_warmup_us = single_warmup }
elseif mode == "rss" then
  local base_url, key = arg[2], arg[3]
  local warmup, n = tonumber(arg[4]), tonumber(arg[5])
  local client = new_client(base_url, key)
  local function one()
    local res, err = client:purchase_esims { amount = 10 }
    if not res then error(tostring(err)) end
    return res
  end
  for _ = 1, warmup do one() end
  collectgarbage("collect")
  local rss0 = status_kb("VmRSS")
  local c0, w0 = os.clock(), gettime()
  for _ = 1, n do one() end
  local cpu, wall = os.clock() - c0, gettime() - w0
  collectgarbage("collect")
  local rss1 = status_kb("VmRSS")
  report { calls = n, cpu_s = cpu, wall_s = wall, rss_before_kb = rss0, rss_after_kb = rss1,
           lua_kb = collectgarbage("count") }
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
