-- The two I/O-free halves a transport outside C builds on: client:request
-- (validate + build) and client:interpret (response -> res / err / retry_in).
-- When interpret asks for a retry (retry_in) is in retry_policy_spec.lua.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

local KEY = "KEYhalves0123456789"
local BASE = "https://api.example.test/v2"

describe("client:request", function()
  local client
  before_each(function() client = assert(sim.new{ api_key = KEY, base_url = BASE, timeout = 7, max_retries = 3 }) end)

  it("builds the exact request the libcurl path sends", function()
    local req = assert(client:request("purchase_esims", { amount = 4, tags = {} }, { headers = { ["X-Trace"] = "t" } }))
    local key = req.headers["Idempotency-Key"]
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", key)
    assert.same({
      operation = "purchase_esims",
      method = "POST",
      url = BASE .. "/actions/purchase/esims",
      path = "/actions/purchase/esims",
      body = '{"amount":4,"tags":[]}',
      timeout = 7,
      connect_timeout = 10,
      max_retries = 3,
      retry_may_duplicate = false,
      headers = {
        ["Content-Type"] = "application/json",
        ["Accept"] = "application/json",
        ["Authorization"] = "Bearer " .. KEY,
        ["User-Agent"] = client:request("register_sim_cards", { registration_codes = { "1" } }).headers["User-Agent"],
        ["Idempotency-Key"] = key,
        ["X-Trace"] = "t",
      },
    }, req)
  end)

  it("sends no Idempotency-Key for register unless asked, and honours per-call options", function()
    local req = assert(client:request("register_sim_cards", { registration_codes = { "1" } },
      { timeout = 2, max_retries = 0, idempotency_key = "mine", retry_may_duplicate = true }))
    assert.equal("mine", req.headers["Idempotency-Key"])
    assert.equal(2, req.timeout)
    assert.equal(0, req.max_retries)
    assert.is_true(req.retry_may_duplicate)
    req = assert(client:request("register_sim_cards", { registration_codes = { "1" } }))
    assert.is_nil(req.headers["Idempotency-Key"])
  end)

  it("refuses bad params with the same errors as the calls", function()
    local req, err = client:request("purchase_esims", { amount = 0 })
    assert.is_nil(req)
    assert.equal("invalid_params", err.kind)
    assert.equal("amount", err.field)
    local _, err2 = client:purchase_esims{ amount = 0 }
    assert.equal(err.message, err2.message)
  end)

  it("returns nil, err for an unknown operation name, as every entry point does", function()
    local req, err = client:request("buy_everything", {})
    assert.is_nil(req)
    assert.same({ "invalid_params", "name" }, { err.kind, err.field })
    assert.equal("request: unknown operation 'buy_everything' (see telnyx.sim.operations)", err.message)
  end)
end)

describe("client:interpret", function()
  local client, req
  before_each(function()
    client = assert(sim.new{ api_key = KEY, base_url = BASE, max_retries = 2, max_response_bytes = 2048 })
    req = assert(client:request("purchase_esims", { amount = 1 }))
  end)

  it("turns a 202 into res", function()
    local body = helpers.encode{ data = { helpers.sim_card{ id = "c1" } }, errors = helpers.empty_array }
    local res, err = client:interpret(req, { status = 202, headers = {}, body = body })
    assert.is_nil(err)
    assert.equal("c1", res.data[1].id)
    assert.is_nil(res.data[1].eid)
    assert.same({}, res.errors)
  end)

  it("reads headers in any case, and lists of values by their first", function()
    local _, err = client:interpret(req, { status = 429, headers = { ["Retry-After"] = { "3", "9" },
      ["X-REQUEST-ID"] = "rq" }, body = "" })
    assert.equal("rq", err.request_id)
    assert.equal(3, err.retry_after)
  end)

  it("maps each failure to its kind", function()
    local cases = {
      { { failure = "not_sent", message = "refused" }, "connection", true },
      -- a transport's TLS verification failure: nothing sent, and trying again cannot help
      { { failure = "not_sent", message = "certificate verify failed", permanent = true }, "connection", false },
      { { failure = "timeout", permanent = true }, "timeout", false }, -- permanent means nothing after a send
      { { failure = "connect_timeout" }, "timeout", true },
      { { failure = "timeout" }, "timeout", false },
      { { failure = "broken", message = "reset" }, "connection", false },
      { { failure = "too_large" }, "decode", false },
      { { status = 202, body = string.rep("x", 4096) }, "decode", false },
    }
    for _, case in ipairs(cases) do
      local _, err = client:interpret(req, case[1], 1)
      assert.equal(case[2], err.kind)
      assert.equal(case[3], err.retryable)
    end
  end)

  it("raises on a malformed reply or attempt", function()
    assert.error_matches(function() client:interpret(req, {}) end, "needs a status")
    assert.error_matches(function() client:interpret(req, { status = 200 }, 0) end, "attempt must be")
    assert.error_matches(function() client:interpret(req, { status = 200 }, -7027201591419444638) end, "attempt must be")
    assert.error_matches(function() client:interpret(req, { status = 200 }, 1.5) end, "attempt must be")
    assert.error_matches(function() client:interpret(req, { failure = "gone" }) end, "invalid option 'gone'")
  end)

  it("a header sent twice counts by its first copy (a headers table's list, as lua-resty-http gives)", function()
    local list = assert(client:request("list_sim_cards", {}))
    local res, err, retry_in = client:interpret(list, { status = 503, headers = { ["X-Should-Retry"] = { "true", "false" },
      ["X-Request-Id"] = { "first", string.rep("s", 200) }, ["Retry-After"] = { "2", "30" } }, body = "" }, 1)
    assert.is_nil(res)
    assert.equal("first", err.request_id)
    assert.is_true(err.retryable)
    assert.equal(2, retry_in)
  end)

  describe("agrees with the libcurl path", function()
    local stub
    setup(function() stub = helpers.start_stub() end)
    teardown(function() stub:stop() end)

    local replies = {
      { status = 422, json = { errors = { helpers.api_error("1", "Bad", "worse", "/amount") } } },
      { status = 401, body = "" },
      { status = 503, body = "<html>", headers = { ["content-type"] = "text/html" } },
      { status = 202, body = "[1]" },
      { status = 301, body = "", headers = { location = "https://x.test/" } },
    }
    for i, reply in ipairs(replies) do
      it("on reply #" .. i, function()
        local c = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0 })
        stub:reset()
        reply.headers = reply.headers or {}
        reply.headers["x-request-id"] = "same-id"
        stub:queue(reply)
        local _, curl_err = c:purchase_esims{ amount = 1 }
        local body = reply.body or helpers.encode(reply.json)
        local r = assert(c:request("purchase_esims", { amount = 1 }))
        local _, half_err = c:interpret(r, { status = reply.status, headers = reply.headers, body = body }, 1)
        for _, field in ipairs{ "kind", "message", "status", "request_id", "retryable", "attempts" } do
          assert.equal(curl_err[field], half_err[field], field)
        end
        assert.same(curl_err.errors, half_err.errors)
      end)
    end
  end)
end)

describe("sim.error", function()
  it("makes an err like the module's own, for adapters and transports", function()
    local err = sim.error("config", "cannot run here", { field = "x", retryable = false })
    assert.same({ kind = "config", message = "cannot run here", errors = {}, field = "x", retryable = false }, err)
    assert.equal("telnyx.sim: cannot run here", tostring(err))
    local _, real = sim.new{ api_key = "k", base_url = "-" }
    assert.equal(getmetatable(real), getmetatable(err))
    assert.has_error(function() sim.error(nil, "m") end)
  end)
end)

describe("the module", function()
  it("can be opened again (curl_global_init runs once) and both copies work", function()
    local first = require "telnyx.sim"
    package.loaded["telnyx.sim"] = nil
    local second = require "telnyx.sim"
    assert.not_equal(first, second)
    local c = assert(second.new{ api_key = "k", base_url = BASE })
    assert.truthy(c:request("purchase_esims", { amount = 1 }))
    assert.truthy(assert(first.new{ api_key = "k", base_url = BASE }):request("purchase_esims", { amount = 1 }))
  end)

  if _VERSION == "Lua 5.4" then
    it("closes a client held in a to-be-closed variable", function()
      local chunk = assert(load([[
        local sim = ...
        local outer
        do
          local c <close> = assert(sim.new{ api_key = "k", base_url = "https://api.example.test/v2" })
          outer = c
        end
        return tostring(outer)
      ]]))
      assert.equal("telnyx.sim.client (closed)", chunk(sim))
    end)
  end
end)

describe("the verdict of client:interpret", function()
  local client
  before_each(function() client = assert(sim.new{ api_key = KEY, base_url = BASE, max_retries = 3 }) end)

  -- reply -> err.kind, err.sent, err.retryable, whether err.pause is set (purchase: spends money; list: safe)
  local cases = {
    { "purchase_esims", { failure = "not_sent", message = "refused" }, "connection", "no", true, false },
    { "purchase_esims", { failure = "connect_timeout" }, "timeout", "no", true, false },
    { "purchase_esims", { failure = "not_sent", permanent = true }, "connection", "no", false, false },
    { "purchase_esims", { failure = "timeout" }, "timeout", "maybe", false, false },
    { "purchase_esims", { failure = "broken" }, "connection", "maybe", false, false },
    { "list_sim_cards", { failure = "broken" }, "connection", "maybe", true, false },
    { "purchase_esims", { failure = "too_large", status = 202 }, "decode", "yes", false, false },
    { "purchase_esims", { status = 429 }, "http", "yes", true, true },
    { "purchase_esims", { status = 422 }, "http", "yes", false, false },
    { "purchase_esims", { status = 503, headers = { ["Retry-After"] = "2" } }, "http", "yes", false, false },
    { "list_sim_cards", { status = 503, headers = { ["Retry-After"] = "2" } }, "http", "yes", true, true },
    { "list_sim_cards", { status = 500 }, "http", "yes", true, false },
  }
  for _, case in ipairs(cases) do
    local op, reply, kind, sent, retryable, paused = (table.unpack or unpack)(case) -- luacheck: ignore 143
    it(("%s, %s: %s, sent %s"):format(op, reply.failure or reply.status, kind, sent), function()
      local req = assert(client:request(op, op == "purchase_esims" and { amount = 1 } or {}))
      local res, err, retry_in = client:interpret(req, reply, 1)
      assert.is_nil(res)
      assert.same({ kind, sent, retryable }, { err.kind, err.sent, err.retryable })
      assert.equal(retryable and err.retry_after or nil, retry_in)
      if paused then
        assert.equal(err.retry_after, err.pause) -- the server asked: the wait is its word, for every call
      else
        assert.is_nil(err.pause)
      end
    end)
  end
end)

describe("what C exports for transports outside it", function()
  it("sim.defaults: the client's and batch's defaults, as a client reports them", function()
    local c = assert(sim.new{ api_key = KEY, base_url = BASE })
    local req = assert(c:request("list_sim_cards", {}))
    assert.same({ req.timeout, req.connect_timeout, req.max_retries },
      { sim.defaults.timeout, sim.defaults.connect_timeout, sim.defaults.max_retries })
    assert.equal(16, sim.defaults.concurrency)
    assert.equal(16 * 1024 * 1024, sim.defaults.max_response_bytes)
    assert.equal("https://api.telnyx.com/v2", sim.defaults.base_url)
  end)

  it("sim.failures: exactly the reply.failure names client:interpret takes", function()
    local names = {}
    for name in pairs(sim.failures) do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "broken", "connect_timeout", "not_sent", "timeout", "too_large" }, names)
    local c = assert(sim.new{ api_key = KEY, base_url = BASE })
    local req = assert(c:request("list_sim_cards", {}))
    for _, name in ipairs(names) do
      local _, err = c:interpret(req, { failure = name, status = 200 }, 1)
      assert.is_table(err, name)
    end
    assert.has_error(function() c:interpret(req, { failure = "lost" }, 1) end)
  end)
end)
