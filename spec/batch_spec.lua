-- client:batch (src/batch.c) and client:get_activation_codes (telnyx/sim/flow.lua)
-- against the stateful stub: results in input order whatever order the calls
-- finish in, the concurrency bound (the stub's in_flight_peak), a fault in one
-- call staying in that call, the shared pause after a 429, closing the client
-- or raising from the callbacks, 0 and 10,000 calls, validation of every call
-- before anything is sent, kept-alive connections reused by the next batch
-- (the stub logs each request's connection id).
-- The money rule per call of a batch is in retry_policy_spec.lua.
--
-- Per-request delays go out as the stub's "X-Fake-Delay" header (a call's
-- opts.headers). Times are read on the client's side (progress runs when a
-- call finishes) and checked with generous bounds: the machine is noisy.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local fixtures = require "spec.support.fixtures"
local socket = require "socket"

local KEY = "KEYbatch0123456789SECRET"
local UUID4 = helpers.UUID4
local CLOSED = "the client was closed during the batch"
local now = socket.gettime
-- Under valgrind (make memcheck) the client runs ~10 times slower: upper time bounds stretch.
local SLOW = (os.getenv("LD_PRELOAD") or ""):find("vgpreload", 1, true) and 10 or 1

-- A call's opts holding its answer `seconds` at the stub (more opts merged in).
local function delayed(seconds, more)
  local o = { headers = { ["X-Fake-Delay"] = string.format("%.3f", seconds) } }
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

-- n get_sim_card calls on fresh ids (opts shared): calls, ids.
local function get_cards(n, opts)
  local list, ids = {}, {}
  for i = 1, n do
    ids[i] = helpers.uuid()
    list[i] = { "get_sim_card", ids[i], opts }
  end
  return list, ids
end

local function card_path(id) return "/v2/sim_cards/" .. id end

-- Runs a Lua script in a child interpreter (at most 8 s); its output and "rc=<exit code>".
-- For what could hang or crash the interpreter running busted.
local function run_child(source)
  local script = helpers.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(source)
  f:close()
  local lua = os.getenv("LUA_BIN") or "lua5.4"
  local pipe = assert(io.popen("timeout 8 " .. helpers.shell_quote(lua) .. " " .. helpers.shell_quote(script)
    .. " 2>&1; echo rc=$?"))
  local out = pipe:read("*a")
  pipe:close()
  os.remove(script)
  return out
end

describe("client:batch", function()
  local stub, sleeps

  -- A client whose sleep really sleeps, and records how long it was asked to.
  local function new_client(opts)
    local o = { api_key = KEY, base_url = stub.base_url,
      sleep = function(s) sleeps[#sleeps + 1] = s; socket.sleep(s) end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(sim.new(o))
  end

  local function requests_for(path) return helpers.requests_to(stub, path) end

  -- results[i] is the get_sim_card of ids[i].
  local function assert_cards(results, ids)
    assert.equal(#ids, #results)
    for i, id in ipairs(ids) do
      assert.is_table(results[i].res, "results[" .. i .. "] has no res: " .. tostring(results[i].err))
      assert.is_nil(results[i].err)
      assert.equal(id, results[i].res.data.id)
    end
  end

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    sleeps = {}
  end)

  describe("results", function()
    it("come back in input order while later calls finish first; progress reports each as it finishes", function()
      local c = new_client()
      local n = 6
      local list, ids = {}, {}
      for i = 1, n do -- call i answered after (n - i + 1) * 80 ms: the last call finishes first
        ids[i] = helpers.uuid()
        list[i] = { "get_sim_card", ids[i], delayed((n - i + 1) * 0.08) }
      end
      local seen = {}
      local results = assert(c:batch(list, { concurrency = n, progress = function(done, total, index, res, err)
        seen[#seen + 1] = { done = done, total = total, index = index, res = res, err = err }
      end }))
      assert_cards(results, ids)
      assert.equal(n, results.ok)
      -- only the items are the table's own: sim.encode gives them as a JSON array
      assert.equal("telnyx.sim.results", getmetatable(results).__name)
      assert.is_nil(rawget(results, "ok"))
      local encoded = helpers.decode(assert(sim.encode(results)))
      assert.equal(n, #encoded)
      for i, id in ipairs(ids) do assert.equal(id, encoded[i].res.data.id) end
      assert.equal(0, results.failed)
      assert.equal(n, #seen)
      local order = {}
      for k, s in ipairs(seen) do
        assert.equal(k, s.done)
        assert.equal(n, s.total)
        assert.is_nil(s.err)
        assert.equal(results[s.index].res, s.res) -- the very table stored in results
        order[k] = s.index
      end
      local where = {}
      for k, i in ipairs(order) do where[i] = k end
      for i = 2, n do assert.is_not_nil(where[i], "progress never reported call " .. i) end
      -- calls 2..n all started together: the shorter delay finished first
      for i = 3, n do
        assert.is_true(where[i] < where[i - 1], "progress order " .. table.concat(order, ","))
      end
      -- the requests themselves: one GET each, nothing else
      local reqs = stub:requests()
      assert.equal(n, #reqs)
      for _, id in ipairs(ids) do
        local got = requests_for(card_path(id))
        assert.equal(1, #got)
        assert.equal("GET", got[1].method)
        assert.equal("Bearer " .. KEY, got[1].headers.authorization)
      end
    end)

    it("takes params as a table or as the id alone, with per-call opts", function()
      local c = new_client()
      local a, b = helpers.uuid(), helpers.uuid()
      local results = assert(c:batch{
        { "get_sim_card", a },
        { "get_sim_card", { id = b, include_sim_card_group = true }, { headers = { ["X-Trace"] = "t-2" } } },
        { "list_wireless_regions", { product = "public_ips" } },
      })
      assert.equal(3, results.ok)
      assert.equal(a, results[1].res.data.id)
      assert.equal(b, results[2].res.data.id)
      assert.is_table(results[3].res.data)
      local rb = requests_for(card_path(b))[1]
      assert.equal("include_sim_card_group=true", rb.query)
      assert.equal("t-2", rb.headers["x-trace"])
      assert.is_nil(requests_for(card_path(a))[1].headers["x-trace"])
    end)

    it("of 0 calls: an empty result, no request", function()
      local c = new_client()
      local progress_calls = 0
      local results = assert(c:batch({}, { progress = function() progress_calls = progress_calls + 1 end }))
      assert.equal(0, #results)
      assert.equal(0, results.ok)
      assert.equal(0, results.failed)
      assert.equal(0, progress_calls)
      assert.equal(0, stub:stats().requests)
    end)

    it("of 10,000 calls at concurrency 50: every one, in order", function()
      local c = new_client()
      local list, ids = get_cards(10000)
      local dones = 0
      local t0 = now()
      local results = assert(c:batch(list, { concurrency = 50, progress = function(done)
        dones = done
      end }))
      local elapsed = now() - t0
      assert.equal(10000, results.ok)
      assert.equal(0, results.failed)
      assert.equal(10000, dones)
      assert_cards(results, ids)
      local stats = stub:stats()
      assert.equal(10000, stats.requests)
      assert.is_true(stats.in_flight_peak <= 50, "in_flight_peak " .. stats.in_flight_peak)
      -- 10,000 round trips at 50 at a time take ~2-3 s here; a serial or stuck loop would not
      assert.is_true(elapsed < 15 * SLOW, ("10,000 calls took %.1f s"):format(elapsed))
      local conns = {}
      for _, r in ipairs(stub:requests()) do conns[r.conn] = true end
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.is_true(n <= 50, n .. " connections for concurrency 50")
    end)
  end)

  describe("concurrency", function()
    it("keeps exactly `concurrency` requests in flight when there are more calls", function()
      local c = new_client()
      local list, ids = get_cards(15, delayed(0.15))
      local t0 = now()
      local results = assert(c:batch(list, { concurrency = 5 }))
      local elapsed = now() - t0
      assert_cards(results, ids)
      local stats = stub:stats()
      assert.equal(15, stats.requests)
      assert.equal(5, stats.in_flight_peak)
      assert.is_true(elapsed >= 0.42, "15 calls of 0.15 s at 5 at a time took " .. elapsed)
    end)

    it("defaults to 16", function()
      local c = new_client()
      local list, ids = get_cards(40, delayed(0.15))
      assert_cards(assert(c:batch(list)), ids)
      assert.equal(16, stub:stats().in_flight_peak)
    end)

    it("never exceeds the number of calls", function()
      local c = new_client()
      local list, ids = get_cards(3, delayed(0.15))
      assert_cards(assert(c:batch(list, { concurrency = 10 })), ids)
      local stats = stub:stats()
      assert.equal(3, stats.requests)
      assert.is_true(stats.in_flight_peak <= 3)
    end)

    it("holds a smaller concurrency after a larger batch on the same client", function()
      local c = new_client()
      local list, ids = get_cards(8, delayed(0.15))
      assert_cards(assert(c:batch(list, { concurrency = 8 })), ids)
      stub:reset()
      list, ids = get_cards(8, delayed(0.15))
      assert_cards(assert(c:batch(list, { concurrency = 2 })), ids)
      assert.equal(2, stub:stats().in_flight_peak)
      stub:reset()
      list, ids = get_cards(20, delayed(0.15))
      assert_cards(assert(c:batch(list)), ids) -- back to the default 16
      assert.is_true(stub:stats().in_flight_peak <= 16)
    end)

    it("counts a call's timeout from its own start, not from a wait for a free connection", function()
      -- 8 calls of 0.3 s at 2 at a time take 1.2 s; each attempt takes 0.3 s of its 1 s
      local c = new_client()
      -- a client that once ran 8 at a time, over connections the server then closed
      stub:queue{ status = 200, json = { data = {} }, headers = { connection = "close" }, ["repeat"] = 8 }
      assert.equal(8, assert(c:batch((get_cards(8)), { concurrency = 8 })).ok)
      stub:reset()
      local list, ids = get_cards(8, delayed(0.3, { timeout = 1, max_retries = 0 }))
      local results = assert(c:batch(list, { concurrency = 2 }))
      for i = 1, 8 do
        assert.is_nil(results[i].err, "call " .. i .. ": " .. tostring(results[i].err))
      end
      assert_cards(results, ids)
      assert.equal(2, stub:stats().in_flight_peak)
    end)

    it("starts every call of a fresh client's first batch at once", function()
      local c = new_client()
      local list, ids = get_cards(8, delayed(0.4))
      local t0 = now()
      assert_cards(assert(c:batch(list, { concurrency = 8 })), ids)
      local elapsed = now() - t0
      assert.equal(8, stub:stats().in_flight_peak)
      assert.is_true(elapsed < 0.75 * SLOW, ("8 calls of 0.4 s at 8 at a time took %.2f s"):format(elapsed))
    end)

    it("reuses the kept-alive connections in the next batch", function()
      local c = new_client()
      local list = get_cards(8, delayed(0.1))
      assert(c:batch(list, { concurrency = 4 }))
      local first = {}
      for _, r in ipairs(stub:requests()) do first[r.conn] = true end
      stub:reset() -- the log and stats, not the connections
      list = get_cards(8, delayed(0.1))
      assert(c:batch(list, { concurrency = 4 }))
      local reqs = stub:requests()
      assert.equal(8, #reqs)
      for _, r in ipairs(reqs) do
        assert.is_true(first[r.conn] == true, "request " .. r.seq .. " came on a new connection " .. tostring(r.conn))
      end
    end)
  end)

  describe("a fault in one call", function()
    it("a connection reset: the safe call is retried and succeeds, the purchase is not re-sent", function()
      local c = new_client()
      local list, ids = get_cards(6, delayed(0.05))
      local reset_id = ids[3]
      stub:queue{ match = card_path(reset_id), mode = "reset" }
      stub:queue{ match = "/v2/actions/purchase/esims", method = "POST", mode = "reset" }
      table.insert(list, 5, { "purchase_esims", { amount = 2 } })
      table.insert(ids, 5, false)
      local results = assert(c:batch(list, { concurrency = 3 }))
      assert.equal(6, results.ok)
      assert.equal(1, results.failed)
      for i, id in ipairs(ids) do
        if id then assert.equal(id, results[i].res.data.id) end
      end
      local err = results[5].err
      assert.equal("connection", err.kind)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.matches("it may have gone through", err.message, 1, true)
      assert.equal(1, #requests_for("/v2/actions/purchase/esims"))
      assert.equal(2, #requests_for(card_path(reset_id)))
      for i, id in ipairs(ids) do
        if id and i ~= 3 then assert.equal(1, #requests_for(card_path(id))) end
      end
    end)

    it("a stall with a short per-call timeout times out that call alone", function()
      local c = new_client()
      local list, ids = get_cards(8, delayed(0.1, { timeout = 5 }))
      local stalled = ids[4]
      stub:queue{ match = card_path(stalled), mode = "stall", duration = 10 }
      list[4] = { "get_sim_card", stalled, { timeout = 0.5, max_retries = 0 } }
      local t0 = now()
      local results = assert(c:batch(list, { concurrency = 4 }))
      local elapsed = now() - t0
      assert.equal(7, results.ok)
      assert.equal(1, results.failed)
      assert.equal("timeout", results[4].err.kind)
      assert.equal(1, results[4].err.attempts)
      for i, id in ipairs(ids) do
        if i ~= 4 then assert.equal(id, results[i].res.data.id) end
      end
      assert.equal(1, #requests_for(card_path(stalled)))
      assert.is_true(elapsed >= 0.45 and elapsed < 4, "elapsed " .. elapsed)
    end)

    it("a stall on the first call of a fresh client holds none of the others", function()
      local c = new_client()
      local list, ids = get_cards(5, { timeout = 0.7, max_retries = 0 })
      stub:queue{ match = card_path(ids[1]), mode = "stall", duration = 10 }
      list[1] = { "get_sim_card", ids[1], { timeout = 1.5, max_retries = 0 } }
      local finished = {}
      local t0 = now()
      local results = assert(c:batch(list, { concurrency = 4, progress = function(_, _, index)
        finished[index] = now() - t0
      end }))
      assert.equal("timeout", results[1].err.kind)
      for i = 2, 5 do
        assert.is_nil(results[i].err, "call " .. i .. ": " .. tostring(results[i].err))
        assert.equal(ids[i], results[i].res.data.id)
        assert.is_true(finished[i] < 0.7, ("call %d finished after %.2f s"):format(i, finished[i]))
      end
      assert.equal(4, results.ok)
    end)

    it("a 500 on a purchase: never re-sent, may have gone through; the others are unaffected", function()
      local c = new_client{ max_retries = 5 }
      local list, ids = get_cards(6, delayed(0.1))
      stub:queue{ match = "/v2/actions/purchase/esims", method = "POST", status = 500,
        headers = { ["x-request-id"] = "rq-batch-500" },
        json = { errors = { helpers.api_error("10007", "Unexpected error", "An unexpected error occurred.") } } }
      table.insert(list, 3, { "purchase_esims", { amount = 2 } })
      local results = assert(c:batch(list, { concurrency = 3 }))
      local err = results[3].err
      assert.equal("http", err.kind)
      assert.equal(500, err.status)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.equal("rq-batch-500", err.request_id)
      assert.matches("it may have gone through: check the SIM card list before trying again", err.message, 1, true)
      local purchases = requests_for("/v2/actions/purchase/esims")
      assert.equal(1, #purchases)
      assert.matches(UUID4, purchases[1].headers["idempotency-key"])
      assert.equal(6, results.ok)
      assert.equal(1, results.failed)
      table.remove(results, 3)
      results.ok, results.failed = nil, nil
      assert_cards(results, ids)
      assert.same({}, sleeps)
    end)

    it("a 500 on a safe call: retried while the others are in flight (no sleep) and succeeds", function()
      local c = new_client()
      local list, ids = get_cards(4, delayed(1.0))
      local flaky = helpers.uuid()
      stub:queue{ match = card_path(flaky), status = 500, body = "" }
      table.insert(list, 1, { "get_sim_card", flaky })
      table.insert(ids, 1, flaky)
      local t0 = now()
      local results = assert(c:batch(list, { concurrency = 5 }))
      assert.is_true(now() - t0 < 2.5 * SLOW)
      assert_cards(results, ids)
      assert.equal(2, #requests_for(card_path(flaky)))
      assert.same({}, sleeps) -- the back-off (<= 0.5 s) was spent inside libcurl, the others in flight
    end)

    it("a 429 with Retry-After: 0.5 pauses the start of every new attempt of the batch", function()
      local c = new_client()
      local list, ids = get_cards(12, delayed(0.2))
      local limited = ids[1]
      stub:queue{ match = card_path(limited), status = 429, body = "", headers = { ["retry-after"] = "0.5" } }
      list[1] = { "get_sim_card", limited }
      local finished = {}
      local t0 = now()
      local results = assert(c:batch(list, { concurrency = 4, progress = function(_, _, index)
        finished[index] = now() - t0
      end }))
      assert_cards(results, ids)
      assert.equal(13, #stub:requests())
      assert.equal(2, #requests_for(card_path(limited)))
      -- the retry waited the server's 0.5 s
      assert.is_true(finished[1] >= 0.48, ("the limited call finished after %.2f s"):format(finished[1]))
      -- calls 5.. could only start once the pause was over: each answers 0.2 s after its start.
      -- Without the pause call 5 would have started at once in call 1's free slot.
      for i = 5, 12 do
        assert.is_true(finished[i] >= 0.65, ("call %d finished after %.2f s: it started in the pause"):format(i,
          finished[i]))
      end
      -- calls 2..4 were in flight before the 429: not held back
      for i = 2, 4 do assert.is_true(finished[i] < finished[5]) end
      -- in the log: the first four requests are calls 1..4, and the retry of call 1 is among the next four
      local reqs = stub:requests()
      local at = {}
      for k, r in ipairs(reqs) do
        if r.path == card_path(limited) then at[#at + 1] = k end
      end
      assert.equal(2, #at)
      assert.is_true(at[1] <= 4, "the limited call was request " .. at[1])
      assert.is_true(at[2] >= 5 and at[2] <= 8, "its retry was request " .. at[2])
      -- nothing in flight between calls 2..4 finishing and the end of the pause: the client's sleep waited
      assert.is_true(#sleeps >= 1)
      for _, s in ipairs(sleeps) do assert.is_true(s > 0 and s <= 0.5, "slept " .. s) end
    end)
  end)

  describe("closing the client", function()
    it("from progress ends the batch: the calls not finished get a config err", function()
      local c = new_client()
      local list = get_cards(10, delayed(0.2))
      local reports, closed_at = {}, nil
      local results = assert(c:batch(list, { concurrency = 2, progress = function(done, total, index, res, err)
        reports[#reports + 1] = { done = done, total = total, index = index, ok = res ~= nil, err = err }
        if done == 3 then closed_at = index; c:close() end
      end }))
      assert.equal(3, results.ok)
      assert.equal(7, results.failed)
      assert.equal(10, #reports) -- every call reported, the closed ones too
      for k, r in ipairs(reports) do
        assert.equal(k, r.done)
        assert.equal(10, r.total)
        assert.equal(k <= 3, r.ok)
      end
      assert.is_true(results[closed_at].res ~= nil)
      local started = 0
      for i = 1, 10 do
        local r = results[i]
        if r.err then
          assert.equal("config", r.err.kind)
          assert.matches("get_sim_card: " .. CLOSED, r.err.message, 1, true)
          assert.is_true(r.err.attempts == 0 or r.err.attempts == 1)
          started = started + r.err.attempts
        end
      end
      assert.is_true(started <= 2, started .. " calls were in flight at concurrency 2")
      assert.is_true(stub:stats().requests <= 5)
      -- closed for good
      local res, err = c:get_sim_card(helpers.uuid())
      assert.is_nil(res)
      assert.equal("config", err.kind)
      local again
      again, err = c:batch((get_cards(1)))
      assert.is_nil(again)
      assert.equal("config", err.kind)
      assert.matches("closed", err.message)
    end)

    it("with a purchase in flight: its err says it may have gone through (it did)", function()
      local c = new_client()
      local results = assert(c:batch({
        { "get_sim_card", helpers.uuid() },
        { "purchase_esims", { amount = 2 }, delayed(0.3) },
      }, { progress = function(_, _, index) if index == 1 then c:close() end end }))
      local err = results[2].err
      assert.equal("config", err.kind)
      assert.matches(CLOSED, err.message, 1, true)
      assert.equal(1, err.attempts)
      -- the server has it: two eSIMs bought. The stub is one process with a select loop, so it may log
      -- the purchase (sent before the close) a moment after the batch returned: wait for it, 5 s at most
      local deadline = socket.gettime() + 5
      while #requests_for("/v2/actions/purchase/esims") == 0 and socket.gettime() < deadline do socket.sleep(0.05) end
      assert.equal(1, #requests_for("/v2/actions/purchase/esims"))
      assert.is_false(err.retryable)
      assert.matches("may have gone through", err.message, 1, true)
    end)

    it("from the sleep function (a back-off, nothing in flight) ends the batch", function()
      local c
      c = new_client{ sleep = function(s) sleeps[#sleeps + 1] = s; c:close() end }
      stub:queue{ status = 503, body = "", ["repeat"] = 3 }
      local list = get_cards(3)
      local reported = 0
      local results = assert(c:batch(list, { concurrency = 3, progress = function(_, _, _, _, err)
        reported = reported + 1
        assert.equal("config", err.kind)
      end }))
      assert.equal(0, results.ok)
      assert.equal(3, results.failed)
      assert.equal(3, reported)
      for i = 1, 3 do
        assert.equal("config", results[i].err.kind)
        assert.matches(CLOSED, results[i].err.message, 1, true)
        assert.equal(1, results[i].err.attempts)
      end
      assert.equal(1, #sleeps)
      assert.is_true(sleeps[1] > 0 and sleeps[1] <= 0.5)
      assert.equal(3, stub:stats().requests)
    end)
  end)

  describe("errors raised in callbacks", function()
    it("an error in progress propagates; the client then runs a new batch and a single call", function()
      local c = new_client()
      local list = get_cards(10, delayed(0.2))
      local ok, e = pcall(c.batch, c, list, { concurrency = 4, progress = function(done)
        if done == 2 then error("progress failed") end
      end })
      assert.is_false(ok)
      assert.matches("progress failed", tostring(e))
      assert.is_true(stub:stats().requests < 10) -- the transfers were cancelled, nothing more started
      -- a table error passes through as it is
      local boom = { code = 7 }
      ok, e = pcall(c.batch, c, (get_cards(3)), { progress = function() error(boom) end })
      assert.is_false(ok)
      assert.equal(boom, e)
      socket.sleep(0.3) -- let the cancelled requests' delayed answers come due
      stub:reset()
      local ids
      list, ids = get_cards(6, delayed(0.05))
      local results = assert(c:batch(list, { concurrency = 4 }))
      assert_cards(results, ids)
      assert.equal(6, stub:stats().requests)
      local id = helpers.uuid()
      local res = assert(c:get_sim_card(id))
      assert.equal(id, res.data.id)
    end)

    it("an error in the sleep function propagates; the client still works", function()
      local c = new_client{ sleep = function() error("sleep failed") end }
      stub:queue{ status = 503, body = "" }
      local ok, e = pcall(c.batch, c, (get_cards(1)))
      assert.is_false(ok)
      assert.matches("sleep failed", tostring(e))
      local list, ids = get_cards(3)
      assert_cards(assert(c:batch(list)), ids)
    end)

    it("a single call from progress works, and a batch from progress does not hang the outer one", function()
      local c = new_client()
      local inner_id = helpers.uuid()
      local inner_res
      local results = assert(c:batch((get_cards(3, delayed(0.1))), { concurrency = 3, progress = function(done)
        if done == 1 then inner_res = c:get_sim_card(inner_id) end
      end }))
      assert.equal(3, results.ok)
      assert.equal(inner_id, inner_res.data.id)
      -- a nested batch runs in a child process: if it hung, this spec must not
      local out = run_child(([[
        local sim = require "telnyx.sim"
        local c = assert(sim.new{ api_key = "k", base_url = %q })
        local calls = {}
        for i = 1, 6 do calls[i] = { "get_sim_card", ("6b14e151-8493-4fa1-8664-%%012d"):format(i),
          { headers = { ["X-Fake-Delay"] = "0.2" } } } end
        local inner, inner_err
        local r = assert(c:batch(calls, { concurrency = 3, progress = function(done)
          if done == 1 then inner, inner_err = c:batch({ { "get_sim_card", "9f3c2a71-5d4e-4b8a-a6c1-0e2f7d9b3c45" } }) end
        end }))
        io.write("outer ok ", r.ok, ", inner ", inner and ("ok " .. inner.ok) or tostring(inner_err), "\n")
      ]]):format(stub.base_url))
      -- nesting may be supported or refused with an err, but the outer batch completes, all of it
      assert.matches("outer ok 6,", out, 1, true)
      assert.matches("rc=0", out, 1, true)
    end)

    it("a call's headers table changed from progress before its retry: the validated headers go out", function()
      -- in a child process: if it crashed, this spec must not
      local flaky = helpers.uuid()
      stub:queue{ match = card_path(flaky), status = 503, body = "" }
      local out = run_child(([[
        local sim = require "telnyx.sim"
        local c = assert(sim.new{ api_key = "k", base_url = %q })
        local h = { ["X-Mark"] = "validated" }
        local r = assert(c:batch({ { "get_sim_card", %q, { headers = h } },
          { "get_sim_card", "9f3c2a71-5d4e-4b8a-a6c1-0e2f7d9b3c45" } }, { concurrency = 2, progress = function(_, _, i)
          if i == 2 then h["X-Mark"] = {}; h["Authorization"] = "Bearer smuggled"; h["Idempotency-Key"] = "k2" end
        end }))
        io.write("ok ", r.ok, "\n")
      ]]):format(stub.base_url, flaky))
      assert.matches("ok 2", out, 1, true)
      local sent = requests_for(card_path(flaky))
      assert.equal(2, #sent)
      for _, r in ipairs(sent) do
        assert.equal("validated", r.headers["x-mark"])
        assert.equal("Bearer k", r.headers.authorization)
        assert.is_nil(r.headers["idempotency-key"])
      end
    end)
  end)

  describe("validation before anything is sent", function()
    it("an invalid call at index 3 of 5: nil, err naming it, no request", function()
      local c = new_client()
      local list = get_cards(5)
      list[3] = { "get_sim_card", {} }
      local res, err = c:batch(list)
      assert.is_nil(res)
      assert.equal("invalid_params", err.kind)
      assert.equal(3, err.index)
      assert.equal("id", err.field)
      assert.equal("batch: calls[3]: get_sim_card: 'id' is required (missing)", err.message)
      for _, bad in ipairs{
        { "nope", helpers.uuid() },                                 -- not an operation
        "get_sim_card",                                             -- not a table
        { "get_sim_card", helpers.uuid(), { timeout = -1 } },        -- bad per-call opts
        { "get_sim_card", helpers.uuid(), { headers = { Authorization = "x" } } },
        { "purchase_esims", { amount = "three" } },                  -- a bad param of a purchase
      } do
        list = get_cards(5)
        list[3] = bad
        res, err = c:batch(list)
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
        assert.equal(3, err.index)
        assert.matches("^batch: calls%[3%]: ", err.message)
      end
      assert.equal(0, stub:stats().requests)
    end)

    it("invalid batch opts name their field", function()
      local c = new_client()
      local list = get_cards(2)
      for _, case in ipairs{
        { { concurrency = 0 }, "opts.concurrency" },
        { { concurrency = 1001 }, "opts.concurrency" },
        { { concurrency = 2.5 }, "opts.concurrency" },
        { { progress = "print" }, "opts.progress" },
        { { retries = 1 }, "opts.retries" },
      } do
        local res, err = c:batch(list, case[1])
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
        assert.equal(case[2], err.field)
        assert.matches("'" .. case[2] .. "'", err.message, 1, true)
        assert.is_nil(err.index)
      end
      local res, err = c:batch("calls")
      assert.is_nil(res)
      assert.equal("invalid_params", err.kind)
      assert.equal(0, stub:stats().requests)
    end)
  end)
end)

describe("client:get_activation_codes", function()
  local stub

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function() stub:reset() end)

  it("over eSIM tables, a physical card and bare ids: codes, skips and errs at the input's indices", function()
    local c = assert(sim.new{ api_key = KEY, base_url = stub.base_url })
    local esims = assert(c:purchase_esims{ amount = 3 }).data -- not installed yet: each has a code
    local physical = helpers.sim_card{ type = "physical" }
    local physical_id = helpers.uuid() -- the stub's implicit physical card: its activation code is refused
    local before = #stub:requests()
    local input = { esims[1], physical, esims[2].id, physical_id, esims[3] }
    local reports = {}
    local results = assert(c:get_activation_codes(input, { concurrency = 2, timeout = 5,
      progress = function(done, total, index, res, err)
        reports[#reports + 1] = { done = done, total = total, index = index, res = res, err = err }
      end }))
    assert.equal(5, #results)
    assert.equal(3, results.ok)
    assert.equal(1, results.failed)
    assert.same({ id = esims[1].id, activation_code = fixtures.activation_code(esims[1].id) }, results[1])
    assert.same({ id = physical.id, skipped = "physical" }, results[2])
    assert.same({ id = esims[2].id, activation_code = fixtures.activation_code(esims[2].id) }, results[3])
    assert.equal(physical_id, results[4].id)
    assert.equal("http", results[4].err.kind)
    assert.equal(422, results[4].err.status)
    assert.same({ id = esims[3].id, activation_code = fixtures.activation_code(esims[3].id) }, results[5])
    -- sim.encode gives a JSON array of the results in input order (the counts live in the metatable)
    local list = helpers.decode(assert(sim.encode(results)))
    assert.equal(5, #list)
    assert.is_nil(list.ok)
    assert.same({ id = esims[1].id, activation_code = fixtures.activation_code(esims[1].id) }, list[1])
    assert.same({ id = physical.id, skipped = "physical" }, list[2])
    assert.equal(422, list[4].err.status)
    assert.equal("http", list[4].err.kind)
    -- progress: 4 calls, indices into the input
    assert.equal(4, #reports)
    local indices = {}
    for k, r in ipairs(reports) do
      assert.equal(k, r.done)
      assert.equal(4, r.total)
      indices[#indices + 1] = r.index
      if r.index == 4 then assert.equal(422, r.err.status) else assert.is_table(r.res) end
    end
    table.sort(indices)
    assert.same({ 1, 3, 4, 5 }, indices)
    -- one GET each, none for the skipped card
    local reqs = stub:requests()
    assert.equal(before + 4, #reqs)
    local paths = {}
    for k = before + 1, #reqs do
      assert.equal("GET", reqs[k].method)
      paths[#paths + 1] = reqs[k].path
    end
    table.sort(paths)
    local want = {}
    for _, id in ipairs{ esims[1].id, esims[2].id, esims[3].id, physical_id } do
      want[#want + 1] = "/v2/sim_cards/" .. id .. "/activation_code"
    end
    table.sort(want)
    assert.same(want, paths)
  end)

  it("reports an invalid entry at its index in the input, sending nothing", function()
    local c = assert(sim.new{ api_key = KEY, base_url = stub.base_url })
    local res, err = c:get_activation_codes{ helpers.sim_card{ type = "physical" }, helpers.uuid(), 42 }
    assert.is_nil(res)
    assert.equal("invalid_params", err.kind)
    assert.equal(3, err.index)
    res, err = c:get_activation_codes({ helpers.uuid() }, { concurrency = 0 })
    assert.is_nil(res)
    assert.equal("opts.concurrency", err.field)
    res, err = c:get_activation_codes({ helpers.uuid() }, { progress = true })
    assert.is_nil(res)
    assert.equal("opts.progress", err.field)
    res, err = c:get_activation_codes({ helpers.uuid() }, { sleep = 1 })
    assert.is_nil(res)
    assert.equal("opts.sleep", err.field)
    assert.equal(0, stub:stats().requests)
  end)

  it("of only physical cards or none: no request", function()
    local c = assert(sim.new{ api_key = KEY, base_url = stub.base_url })
    local results = assert(c:get_activation_codes{ helpers.sim_card{ type = "physical" } })
    assert.equal("physical", results[1].skipped)
    assert.equal(0, results.ok)
    results = assert(c:get_activation_codes{})
    assert.equal(0, #results)
    assert.equal(0, stub:stats().requests)
  end)
end)
