-- Soak: 20,000 calls mixing successes and every failure kind against the stub,
-- with the back-off injected so nothing sleeps. The process RSS after the
-- first 1,000 calls and at the end must differ by less than 2 MiB.
--
-- Tagged #soak: `make memcheck` and `make asan` leave it out (busted
-- --exclude-tags=soak); `make test` runs it.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local socket = require "socket"

local KEY = "KEYsoak0123456789SECRET"
local TOTAL = 20000
local BATCH = 50              -- calls per scripted batch: one stub:queue with `repeat`
local RSS_GROWTH_LIMIT = 2048 -- KiB
-- The baseline: after the allocator and the GC have settled on this heap (in the whole
-- suite, under 5.1/5.2, the first few thousand calls still grow a heap other specs left)
local WARM_UP = 5000

local function rss_kib()
  local status = helpers.read_file("/proc/self/status")
  if not status then return nil end
  return tonumber(status:match("VmRSS:%s*(%d+)%s*kB"))
end

local function settled_rss()
  collectgarbage("collect")
  collectgarbage("collect")
  return rss_kib()
end

local free_port = helpers.free_port

local describe_soak = rss_kib() and describe or pending

describe_soak("soak #soak", function()
  local stub

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)

  it("makes 20,000 mixed calls without growing", function()
    local sleeps = 0
    local function nap() sleeps = sleeps + 1 end
    local client = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 1, sleep = nap })
    local small = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0,
      max_response_bytes = 1024, sleep = nap })
    local dead = assert(sim.new{ api_key = KEY, base_url = "http://127.0.0.1:" .. free_port() .. "/v2",
      max_retries = 1, connect_timeout = 2, sleep = nap })
    local closed = assert(sim.new{ api_key = KEY, base_url = stub.base_url })
    closed:close()

    local cards = { helpers.sim_card(), helpers.sim_card() }
    local api_errors = { helpers.api_error("10015", "Invalid parameter", "amount is required", "/amount") }
    local purchase = function(c, opts) return (c or client):purchase_esims({ amount = 2, tags = { "soak" } }, opts) end
    local register = function() return client:register_sim_cards{ registration_codes = { "0000000001", "0000000002" } } end

    local function expect_err(kind, status)
      return function(res, err)
        assert(res == nil and err, "expected an err of kind " .. kind)
        assert(err.kind == kind, "expected " .. kind .. ", got " .. tostring(err.kind) .. ": " .. tostring(err.message))
        if status then assert(err.status == status, "expected HTTP " .. status .. ", got " .. tostring(err.status)) end
        assert(not tostring(err):find(KEY, 1, true), "the API key leaked into an err")
      end
    end
    local function expect_res(n_data, n_errors)
      return function(res, err)
        assert(res, err and tostring(err))
        assert(#res.data == n_data and #res.errors == n_errors, "unexpected res shape")
      end
    end

    -- Each scenario: what to queue for `n` calls (nil: no stub answer needed),
    -- the call, and what it must return. `per_call` = stub answers one call uses.
    local scenarios = {
      { name = "purchase 202", entry = { status = 202, json = { data = cards, errors = helpers.empty_array } },
        call = function() return purchase() end, check = expect_res(2, 0) },
      { name = "register 202 with errors", entry = { status = 202, json = { data = { cards[1] }, errors = api_errors } },
        call = register, check = expect_res(1, 1) },
      { name = "401 empty", entry = { status = 401, body = "" },
        call = function() return purchase() end, check = expect_err("http", 401) },
      { name = "422", entry = { status = 422, json = { errors = api_errors } },
        call = function() return purchase() end, check = expect_err("http", 422) },
      { name = "429, retried once", entry = { status = 429, headers = { ["retry-after"] = "1" }, body = "" }, per_call = 2,
        call = function() return purchase() end, check = expect_err("http", 429) },
      { name = "503 on purchase, not retried", entry = { status = 503, body = "" },
        call = function() return purchase() end, check = expect_err("http", 503) },
      { name = "500 on register, retried once", entry = { status = 500, json = { errors = api_errors } }, per_call = 2,
        call = register, check = expect_err("http", 500) },
      { name = "502 HTML", entry = { status = 502, body = "<html>bad gateway</html>", headers = { ["content-type"] = "text/html" } },
        call = function() return purchase() end, check = expect_err("http", 502) },
      { name = "200 non-JSON", entry = { status = 200, body = "OK" },
        call = register, check = expect_err("decode", 200) },
      { name = "truncated JSON", entry = { status = 202, body = '{"data":[{"id":"6a09cdc3-8948' },
        call = function() return purchase() end, check = expect_err("decode", 202) },
      { name = "too large", entry = { status = 202, json = { data = { cards[1], cards[2], cards[1], cards[2] } } },
        call = function() return purchase(small) end, check = expect_err("decode") },
      { name = "closed mid-body", entry = { status = 202, mode = "close_mid_body", json = { data = cards } },
        call = function() return purchase() end, check = expect_err("connection") },
      { name = "connection refused, retried once",
        call = function() return purchase(dead) end, check = expect_err("connection") },
      { name = "invalid params",
        call = function() return client:purchase_esims{ amount = 0 } end, check = expect_err("invalid_params") },
      { name = "closed client",
        call = function() return purchase(closed) end, check = expect_err("config") },
      -- few and short: each costs its whole timeout
      { name = "timeout", entry = { mode = "stall", duration = 5 }, n = 1,
        call = function() return purchase(nil, { timeout = 0.05 }) end, check = expect_err("timeout") },
    }

    local calls, rss_first = 0, nil
    local started = socket.gettime()
    while calls < TOTAL do
      for _, sc in ipairs(scenarios) do
        local n = math.min(sc.n or BATCH, TOTAL - calls)
        if n <= 0 then break end
        if sc.entry then
          local entry = {}
          for k, v in pairs(sc.entry) do entry[k] = v end
          entry["repeat"] = n * (sc.per_call or 1)
          stub:queue(entry)
        end
        for _ = 1, n do
          local ok, why = pcall(sc.check, sc.call())
          if not ok then error(sc.name .. " (call " .. calls + 1 .. "): " .. tostring(why), 0) end
          calls = calls + 1
          if calls == WARM_UP then rss_first = settled_rss() end
        end
        stub:reset() -- also drops the stub's request log, which would grow for ever
      end
    end
    local rss_last = settled_rss()
    client:close(); small:close(); dead:close()

    assert.equal(TOTAL, calls)
    assert.is_true(sleeps > 0)
    local growth = rss_last - rss_first
    print(string.format("\nsoak: %d calls in %.1f s, RSS %d KiB after " .. WARM_UP
      .. " calls, %d KiB at the end (%+d KiB)",
      calls, socket.gettime() - started, rss_first, rss_last, growth))
    assert.is_true(growth < RSS_GROWTH_LIMIT,
      string.format("RSS grew by %d KiB (limit %d KiB) between call " .. WARM_UP .. " and call %d",
        growth, RSS_GROWTH_LIMIT, TOTAL))
  end)
end)
