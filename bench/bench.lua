-- make bench: the rounds, the table, bench/results/latest.json and (CHECK=1) the targets.
-- Started by bench/run.sh, which has the nginx stub listening on 127.0.0.1:$BENCH_PORT and the
-- canned bodies in $BENCH_DIR. Every client is its own process and measures itself around its
-- timed loop (bench/client.lua, bench/limit.c, bench/node_client.js), so process start-up, module
-- loading, connecting and warm-up are not counted. Rounds alternate the clients; medians are quoted.
--
-- Knobs (environment): BENCH_ROUNDS (7), BENCH_N (8000 calls per module/limit run),
-- BENCH_NODE_N (1200), BENCH_OFFLINE_N (100 decodes of the 1,000-card body), BENCH_RSS_N (100000),
-- BENCH_CHECK (1: exit 1 when a target is missed).

local cjson = require "cjson"
local sim = require "telnyx.sim"

local function env_int(name, default)
  local v = tonumber(os.getenv(name) or "")
  return v and math.floor(v) or default
end

local DIR = assert(os.getenv("BENCH_DIR"), "run through bench/run.sh (make bench)")
local PORT = assert(os.getenv("BENCH_PORT"), "run through bench/run.sh (make bench)")
local LIMIT = os.getenv("BENCH_LIMIT") or "build/bench/limit"
local CHECK = (os.getenv("BENCH_CHECK") or "") ~= "" and os.getenv("BENCH_CHECK") ~= "0"
local ROUNDS = env_int("BENCH_ROUNDS", 7)
local N = env_int("BENCH_N", 8000)
local NODE_N = env_int("BENCH_NODE_N", 1200)
local OFFLINE_N = env_int("BENCH_OFFLINE_N", 100)
local RSS_N = env_int("BENCH_RSS_N", 100000)
local WARMUP, NODE_WARMUP, OFFLINE_WARMUP, RSS_WARMUP = 500, 300, 10, 2000

local TARGETS = {
  module_vs_limit = 1.15,   -- module CPU per call <= 1.15 x the limit
  node_vs_module = 6,       -- the Node SDK >= 6 x the module
  interpret_vs_decode = 1.2, -- (d) <= 1.2 x cjson.decode alone
  rss_growth_kib = 1024,    -- < 1 MiB over RSS_N module calls
}

local BASE_URL = "http://127.0.0.1:" .. PORT .. "/v2"
local API_KEY = "KEYbench0123456789ABCDEFGHIJKLMNOP"
local t_start = os.time()
local load_start, loadavg_start do -- the 1-minute load average, and all three, when the bench starts
  local f = io.open("/proc/loadavg")
  loadavg_start = f and f:read("l"):match("^(%S+ %S+ %S+)") or "?"
  load_start = tonumber(loadavg_start:match("^%S+")) or 0
  if f then f:close() end
end

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- Runs one client; returns its JSON report (the last line of its stdout).
local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, how, code = p:close()
  local line = out:match("([^\n]*)\n?$")
  local decoded = line and line:sub(1, 1) == "{" and cjson.decode(line)
  if not ok or not decoded then
    io.stderr:write("bench: client failed (", tostring(how), " ", tostring(code), "): ", cmd, "\n", out, "\n")
    os.exit(1)
  end
  return decoded
end

-- The exact request the module sends, for the limit: URL, body, header lines in the module's order
-- (its base headers, "Expect:" among them, then the Idempotency-Key; the limit sends one key throughout).
local request do
  local client = assert(sim.new { api_key = API_KEY, base_url = BASE_URL })
  local req = assert(client:request("purchase_esims", { amount = 10 }))
  local order = { "Content-Type", "Accept", "Expect", "User-Agent", "Authorization", "Idempotency-Key" }
  local lines, seen = {}, {}
  for _, name in ipairs(order) do
    seen[name] = true
    if name == "Expect" then lines[#lines + 1] = "Expect:"
    elseif req.headers[name] then lines[#lines + 1] = name .. ": " .. req.headers[name] end
  end
  for name in pairs(req.headers) do
    assert(seen[name], "bench: client:request has a header bench.lua does not know: " .. name)
  end
  request = { url = req.url, body = req.body, headers = lines }
  client:close()
end

local clients = {
  module = function()
    return run(string.format("lua5.4 bench/client.lua module %s %s %d %d", sh_quote(BASE_URL),
                             sh_quote(API_KEY), WARMUP, N))
  end,
  limit = function()
    local hs = {}
    for i, h in ipairs(request.headers) do hs[i] = sh_quote(h) end
    return run(string.format("%s %s %s %d %d %s", sh_quote(LIMIT), sh_quote(request.url),
                             sh_quote(request.body), WARMUP, N, table.concat(hs, " ")))
  end,
  node = function()
    return run(string.format("node bench/node_client.js %s %s %d %d", sh_quote(BASE_URL),
                             sh_quote(API_KEY), NODE_WARMUP, NODE_N))
  end,
  interpret = function()
    return run(string.format("lua5.4 bench/client.lua interpret %s %d %d",
                             sh_quote(DIR .. "/body-1000.json"), OFFLINE_WARMUP, OFFLINE_N))
  end,
  decode = function()
    return run(string.format("lua5.4 bench/client.lua decode %s %d %d",
                             sh_quote(DIR .. "/body-1000.json"), OFFLINE_WARMUP, OFFLINE_N))
  end,
}

local function median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

local function rotate(list, k)
  local out = {}
  for i = 1, #list do out[i] = list[(i - 1 + k) % #list + 1] end
  return out
end

-- samples[name] = list of per-round reports, each with cpu_us (per call) added
local samples = { module = {}, limit = {}, node = {}, interpret = {}, decode = {} }
local function measure(name)
  local r = clients[name]()
  r.cpu_us = r.cpu_s / r.calls * 1e6
  r.calls_per_s = r.calls / r.wall_s
  table.insert(samples[name], r)
  return r
end

io.write(string.format("bench: stub http://127.0.0.1:%s (nginx, 10-card 202), %d rounds: module/limit %d calls, "
  .. "Node SDK %d calls, 1,000-card decode %d times, then %d module calls for RSS growth\n",
  PORT, ROUNDS, N, NODE_N, OFFLINE_N, RSS_N))
for round = 1, ROUNDS do
  local order = rotate({ "module", "limit", "node" }, round - 1)
  local offline = rotate({ "interpret", "decode" }, round - 1)
  for _, name in ipairs(order) do measure(name) end
  for _, name in ipairs(offline) do measure(name) end
  io.write(string.format(
    "  round %d/%d: module %.1f us, limit %.1f us, node %.1f us, interpret %.2f ms, decode %.2f ms\n",
    round, ROUNDS, samples.module[round].cpu_us, samples.limit[round].cpu_us, samples.node[round].cpu_us,
    samples.interpret[round].cpu_us / 1000, samples.decode[round].cpu_us / 1000))
  io.stdout:flush()
end

local rss = run(string.format("lua5.4 bench/client.lua rss %s %s %d %d", sh_quote(BASE_URL), sh_quote(API_KEY),
                              RSS_WARMUP, RSS_N))
local rss_growth_kib = rss.rss_after_kb - rss.rss_before_kb

-- Medians per client, and ratios as the median of the per-round ratios (each round pairs clients
-- run moments apart, so a slow patch of the machine weighs on both sides).
local med = {}
for name, list in pairs(samples) do
  local cpu, cps, hwm = {}, {}, {}
  for i, r in ipairs(list) do cpu[i], cps[i], hwm[i] = r.cpu_us, r.calls_per_s, r.hwm_kb end
  table.sort(cpu)
  med[name] = { cpu_us = median(cpu), calls_per_s = median(cps), hwm_kb = median(hwm),
                cpu_us_min = cpu[1], cpu_us_max = cpu[#cpu] }
end
local function ratio_median(a, b)
  local rs = {}
  for i = 1, ROUNDS do rs[i] = samples[a][i].cpu_us / samples[b][i].cpu_us end
  return median(rs)
end
local ratios = {
  module_vs_limit = ratio_median("module", "limit"),
  node_vs_module = ratio_median("node", "module"),
  interpret_vs_decode = ratio_median("interpret", "decode"),
}

local checks = {
  { name = "module CPU/call <= 1.15 x limit", value = ratios.module_vs_limit,
    ok = ratios.module_vs_limit <= TARGETS.module_vs_limit, shown = string.format("%.3f x", ratios.module_vs_limit) },
  { name = "Node SDK CPU/call >= 6 x module", value = ratios.node_vs_module,
    ok = ratios.node_vs_module >= TARGETS.node_vs_module, shown = string.format("%.1f x", ratios.node_vs_module) },
  { name = "(d) module result <= 1.2 x cjson.decode", value = ratios.interpret_vs_decode,
    ok = ratios.interpret_vs_decode <= TARGETS.interpret_vs_decode,
    shown = string.format("%.3f x", ratios.interpret_vs_decode) },
  { name = string.format("RSS growth over %d calls < 1 MiB", RSS_N), value = rss_growth_kib,
    ok = rss_growth_kib < TARGETS.rss_growth_kib, shown = string.format("%d KiB", rss_growth_kib) },
}

-- The machine and the versions, for the record.
local node_sdk = (read_file("bench/node_modules/telnyx/package.json") or ""):match('"version":%s*"([^"]+)"') or "?"
local machine = {
  cpu = ((read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"),
  cores = tonumber(capture("nproc 2>/dev/null")) or 0,
  kernel = capture("uname -sr 2>/dev/null"),
  loadavg_start = loadavg_start,
  lua = _VERSION,
  cjson = cjson._VERSION,
  libcurl = capture("curl-config --version 2>/dev/null"):match("[%d.]+") or "?",
  nginx = capture("nginx -v 2>&1"):match("nginx/(%S+)") or "?",
  node = capture("node --version 2>/dev/null"),
  telnyx_node_sdk = node_sdk,
  module = sim._VERSION,
}

-- The table.
local function mib(kb) return string.format("%.1f MiB", kb / 1024) end
local function row(label, m, unit)
  local scale = unit == "ms" and 1000 or 1
  return string.format("| %-50s | %8.1f %s | %6.1f-%-6.1f | %7.0f | %9s |", label, m.cpu_us / scale, unit,
                       m.cpu_us_min / scale, m.cpu_us_max / scale, m.calls_per_s, mib(m.hwm_kb))
end
local lines = {
  string.format("telnyx-sim bench, %s (%d cores), %d rounds, medians", machine.cpu, machine.cores, ROUNDS),
  "",
  "| client (10-card 202 over one kept-alive loopback connection) | CPU/call | min-max | calls/s | peak RSS |",
  "| --- | ---: | ---: | ---: | ---: |",
  row("(a) module: client:purchase_esims{amount=10}", med.module, "us"),
  row("(b) limit: libcurl + cjson.decode (C)", med.limit, "us"),
  row("(c) Node SDK telnyx@" .. node_sdk .. " purchase.create", med.node, "us"),
  row("(d) 1,000-card body: client:interpret", med.interpret, "ms"),
  row("(d) 1,000-card body: cjson.decode alone", med.decode, "ms"),
  "",
  "| target | measured | |",
  "| --- | ---: | --- |",
}
for _, c in ipairs(checks) do
  lines[#lines + 1] = string.format("| %-50s | %9s | %s |", c.name, c.shown, c.ok and "pass" or "FAIL")
end
lines[#lines + 1] = ""
if load_start > 0.25 * math.max(machine.cores, 1) then
  lines[#lines + 1] = string.format("note: load average %.2f when the bench started: the machine was not quiet, "
    .. "so the CPU figures carry other processes' interference.", load_start)
end
lines[#lines + 1] = string.format("RSS after %d warm-up calls %s, after %d more %s; Lua heap %.0f KiB. "
  .. "libcurl %s, lua-cjson %s, nginx %s, node %s; load at start %s.",
  RSS_WARMUP, mib(rss.rss_before_kb), RSS_N, mib(rss.rss_after_kb), rss.lua_kb, machine.libcurl,
  machine.cjson, machine.nginx, machine.node, machine.loadavg_start or "?")
io.write("\n", table.concat(lines, "\n"), "\n")

-- The JSON record.
os.execute("mkdir -p bench/results")
local record = {
  date = os.date("!%Y-%m-%dT%H:%M:%SZ", t_start),
  seconds = os.time() - t_start,
  machine = machine,
  config = { rounds = ROUNDS, n = N, node_n = NODE_N, offline_n = OFFLINE_N, rss_n = RSS_N, warmup = WARMUP,
             node_warmup = NODE_WARMUP, rss_warmup = RSS_WARMUP, url = request.url, body = request.body,
             response_bytes = #(read_file(DIR .. "/body-10.json") or ""),
             offline_body_bytes = #(read_file(DIR .. "/body-1000.json") or "") },
  medians = med,
  ratios = ratios,
  rss_growth = { calls = RSS_N, before_kb = rss.rss_before_kb, after_kb = rss.rss_after_kb,
                 growth_kib = rss_growth_kib, lua_heap_kb = rss.lua_kb },
  targets = {},
  samples = samples,
  table = table.concat(lines, "\n"),
}
local all_ok = true
for _, c in ipairs(checks) do
  record.targets[#record.targets + 1] = { name = c.name, value = c.value, pass = c.ok }
  all_ok = all_ok and c.ok
end
record.all_pass = all_ok
local f = assert(io.open("bench/results/latest.json", "w"))
f:write(cjson.encode(record), "\n")
f:close()
io.write("written: bench/results/latest.json\n")

if CHECK then
  io.write(all_ok and "CHECK: all targets met\n" or "CHECK: a target was missed\n")
  os.exit(all_ok and 0 or 1)
end
