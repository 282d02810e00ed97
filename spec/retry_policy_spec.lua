-- The C client's retry policy, in one place: what is retried (a connection
-- refused before anything was sent, 408, 429, 5xx and failures after sending
-- for calls that are safe to repeat), how many times (max_retries, per client
-- and per call), the back-off (0.5 s doubling to 8 s, up to 25 % jitter), the
-- server's word (retry-after-ms, Retry-After, x-should-retry), and the money
-- rule: a call that may spend money or create a duplicate is never re-sent once
-- it may have arrived, unless the caller opts in (retry_may_duplicate). Through
-- the libcurl path, client:interpret (the verdict a transport outside C
-- follows) and client:batch (per call).
--
-- The same rule per operation is in operations_spec.lua; per transport in
-- http2_spec.lua, tls_http2_spec.lua and the #nginx openresty*_spec.lua
-- (spec/README.md lists them).
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local calls_lib = require "spec.support.calls"
local checks = require "spec.support.operation_checks"
local socket = require "socket"

local KEY = "KEYretrypolicy0123456789SECRET"
local BASE = "https://api.example.test/v2"
local UUID4 = helpers.UUID4
local MAY_HAVE = "may have gone through: check the SIM card list before trying again"
local PURCHASE, REGISTER = "/v2/actions/purchase/esims", "/v2/actions/register/sim_cards"
local free_port = helpers.free_port
local copy = calls_lib.copy
local success, as_reply, assert_same_err = checks.success, checks.as_reply, checks.assert_same_err
local FAILURE_500, may_have_gone_through = checks.FAILURE_500, checks.may_have_gone_through

local function assert_no_key(err) helpers.assert_no_key(KEY, err) end

local function card_path(id) return "/v2/sim_cards/" .. id end
local function assert_sent(d, call, seen) return checks.assert_sent(KEY, d, call, seen) end

describe("retry policy", function()
  local stub

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function() stub:reset() end)

  local function count(path) return #helpers.requests_to(stub, path) end

  describe("of a call", function()
    local sleeps

    local function new_client(opts)
      local o = { api_key = KEY, base_url = stub.base_url, sleep = function(s) sleeps[#sleeps + 1] = s end }
      for k, v in pairs(opts or {}) do o[k] = v end
      return assert(sim.new(o))
    end

    before_each(function() sleeps = {} end)

    it("retries a refused connection, which provably sent nothing, for purchase too", function()
      local c = assert(sim.new{ api_key = KEY, base_url = "http://127.0.0.1:" .. free_port() .. "/v2",
        sleep = function(s) sleeps[#sleeps + 1] = s end })
      local res, err = c:purchase_esims{ amount = 1 }
      assert.is_nil(res)
      assert.equal("connection", err.kind)
      assert.equal(3, err.attempts)
      assert.is_true(err.retryable)
      assert.equal(2, #sleeps)
      assert.matches("before the request was sent", err.message)
      assert_no_key(err)
    end)

    for _, status in ipairs{ 408, 429 } do
      it("retries " .. status .. " on purchase with the same Idempotency-Key", function()
        local c = new_client()
        stub:queue{ status = status, json = { errors = { helpers.api_error("x", "Slow down") } }, ["repeat"] = 2 }
        local res = assert(c:purchase_esims{ amount = 2 })
        assert.equal(2, #res.data)
        local reqs = stub:requests()
        assert.equal(3, #reqs)
        assert.equal(reqs[1].headers["idempotency-key"], reqs[2].headers["idempotency-key"])
        assert.equal(reqs[1].headers["idempotency-key"], reqs[3].headers["idempotency-key"])
        assert.equal(reqs[1].body, reqs[3].body)
        assert.equal(2, #sleeps)
      end)
    end

    it("gives up after max_retries with attempts and the last error", function()
      local c = new_client{ max_retries = 1 }
      stub:queue{ status = 429, headers = { ["x-request-id"] = "rq-429" }, body = "", ["repeat"] = 5 }
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal("http", err.kind)
      assert.equal(429, err.status)
      assert.equal(2, err.attempts)
      assert.is_true(err.retryable)
      assert.equal("rq-429", err.request_id)
      assert.equal(2, count(REGISTER))
      -- and per call
      stub:reset()
      stub:queue{ status = 429, body = "", ["repeat"] = 5 }
      _, err = c:register_sim_cards({ registration_codes = { "1" } }, { max_retries = 0 })
      assert.equal(1, err.attempts)
      assert.equal(1, count(REGISTER))
    end)

    it("backs off 0.5 s doubling to 8 s with up to 25 % jitter", function()
      local c = new_client{ max_retries = 6 }
      stub:queue{ status = 503, body = "", ["repeat"] = 7 }
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal(7, err.attempts)
      local base = { 0.5, 1, 2, 4, 8, 8 }
      assert.equal(6, #sleeps)
      for i, b in ipairs(base) do
        assert.is_true(sleeps[i] <= b and sleeps[i] >= b * 0.75, ("sleep %d = %s"):format(i, sleeps[i]))
      end
    end)

    it("honours retry-after-ms, then Retry-After seconds, then an HTTP date, within 60 s", function()
      local c = new_client{ max_retries = 5 }
      local soon = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 30)
      stub:queue{
        { status = 429, body = "", headers = { ["retry-after-ms"] = "150", ["retry-after"] = "7" } },
        { status = 429, body = "", headers = { ["retry-after"] = "2" } },
        { status = 429, body = "", headers = { ["retry-after"] = soon } },
        { status = 429, body = "", headers = { ["retry-after"] = "600" } },  -- too long: ignored
        { status = 429, body = "", headers = { ["retry-after"] = "0" } },    -- not > 0: ignored
      }
      assert(c:register_sim_cards{ registration_codes = { "1" } })
      assert.equal(5, #sleeps)
      assert.equal(0.15, sleeps[1])
      assert.equal(2, sleeps[2])
      assert.is_true(sleeps[3] > 20 and sleeps[3] <= 31, "HTTP date gave " .. sleeps[3])
      assert.is_true(sleeps[4] <= 8 and sleeps[4] >= 3, "600 s ignored, back-off instead: " .. sleeps[4])
      assert.is_true(sleeps[5] <= 16 and sleeps[5] >= 6)
    end)

    it("honours x-should-retry, which can stop a retry but never make a possible second purchase safe", function()
      local c = new_client()
      stub:queue{ status = 429, body = "", headers = { ["x-should-retry"] = "false" } }
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal(1, err.attempts)
      assert.is_false(err.retryable)
      stub:reset()
      stub:queue{ status = 409, body = "", headers = { ["x-should-retry"] = "true" } }
      assert(c:register_sim_cards{ registration_codes = { "1" } })
      assert.equal(2, count(REGISTER))
      stub:reset()
      stub:queue{ status = 409, body = "", headers = { ["x-should-retry"] = "true" } } -- refused: nothing bought
      assert(c:purchase_esims{ amount = 1 })
      assert.equal(2, count(PURCHASE))
      for _, reply in ipairs{
        { status = 500, body = "" },                                  -- may have gone through
        { status = 202, body = "{not json" },                         -- went through
        { status = 302, body = "", headers = { location = "https://x.test/" } },
      } do
        stub:reset()
        reply.headers = reply.headers or {}
        reply.headers["x-should-retry"] = "true"
        stub:queue(reply)
        _, err = c:purchase_esims{ amount = 1 }
        assert.is_false(err.retryable, reply.status)
        assert.equal(1, count(PURCHASE), reply.status)
      end
    end)

    for _, status in ipairs{ 500, 502, 503, 504 } do
      it("never re-sends a purchase after a " .. status .. ", and says it may have gone through", function()
        local c = new_client()
        stub:queue{ status = status, headers = { ["x-request-id"] = "rq-" .. status },
          json = { errors = { helpers.api_error("50000", "Internal error", "oops") } } }
        local res, err = c:purchase_esims{ amount = 3 }
        assert.is_nil(res)
        assert.equal("http", err.kind)
        assert.equal(status, err.status)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.equal("rq-" .. status, err.request_id)
        assert.matches(MAY_HAVE, err.message, 1, true)
        assert.equal(1, count(PURCHASE))
        assert.same({}, sleeps)
      end)
    end

    it("retries a register 5xx, since registering twice registers once", function()
      local c = new_client()
      stub:queue{ status = 502, body = "<html>bad gateway</html>", headers = { ["content-type"] = "text/html" } }
      local res = assert(c:register_sim_cards{ registration_codes = { "0000000001" } })
      assert.equal(1, #res.data)
      assert.equal(2, count(REGISTER))
    end)

    it("retries a purchase 5xx only when the caller opted in (client or call)", function()
      local c = new_client{ retry_may_duplicate = true }
      stub:queue{ status = 500, body = "" }
      assert(c:purchase_esims{ amount = 1 })
      assert.equal(2, count(PURCHASE))
      stub:reset()
      local plain = new_client()
      stub:queue{ status = 500, body = "" }
      assert(plain:purchase_esims({ amount = 1 }, { retry_may_duplicate = true }))
      assert.equal(2, count(PURCHASE))
      stub:reset()
      c = new_client{ retry_may_duplicate = true }
      stub:queue{ status = 500, body = "" }
      local _, err = c:purchase_esims({ amount = 1 }, { retry_may_duplicate = false })
      assert.equal(1, err.attempts)
    end)

    it("stops cleanly when the sleep function closes the client", function()
      local c
      c = new_client{ sleep = function() c:close() end }
      stub:queue{ status = 429, body = "", ["repeat"] = 3 }
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal("config", err.kind)
      assert.matches("closed while waiting to retry", err.message)
      assert.equal(1, count(REGISTER))
    end)

    it("does not retry 4xx refusals", function()
      for _, status in ipairs{ 400, 401, 403, 404, 409, 422 } do
        local c = new_client()
        stub:reset()
        stub:queue{ status = status, headers = { ["x-request-id"] = "rq-" .. status },
          json = { errors = { helpers.api_error(tostring(status), "Refused " .. status, "because") } } }
        local _, err = c:purchase_esims{ amount = 1 }
        assert.equal("http", err.kind)
        assert.equal(status, err.status)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.equal("rq-" .. status, err.request_id)
        assert.same({ { code = tostring(status), title = "Refused " .. status, detail = "because" } }, err.errors)
        assert.equal(("purchase_esims: HTTP %d: Refused %d: because"):format(status, status), err.message)
        assert.equal(1, count(PURCHASE))
        assert_no_key(err)
      end
    end)

    describe("once the request was sent", function()
      it("a purchase timeout is not retried; a register timeout is", function()
        local c = new_client{ timeout = 0.5 }
        stub:queue{ mode = "stall", duration = 10 }
        local t0 = socket.gettime()
        local _, err = c:purchase_esims{ amount = 1 }
        local elapsed = socket.gettime() - t0
        assert.equal("timeout", err.kind)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.matches(MAY_HAVE, err.message, 1, true)
        assert.is_true(elapsed >= 0.4 and elapsed < 5, "elapsed " .. elapsed)
        assert.equal(1, count(PURCHASE))

        stub:reset()
        stub:queue{ mode = "stall", duration = 10 }
        local res = assert(c:register_sim_cards{ registration_codes = { "1" } })
        assert.equal(1, #res.data)
        assert.equal(2, count(REGISTER))
      end)

      it("a connection reset after sending is not retried for purchase", function()
        local c = new_client()
        stub:queue{ mode = "reset" }
        local _, err = c:purchase_esims{ amount = 1 }
        assert.equal("connection", err.kind)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.matches(MAY_HAVE, err.message, 1, true)
        assert.equal(1, count(PURCHASE))
      end)

      it("stops libcurl from re-sending a purchase on a fresh connection when a kept-alive one dies", function()
        local c = new_client()
        assert(c:purchase_esims{ amount = 1 })          -- opens the kept-alive connection
        stub:queue{ mode = "close" }                     -- the next request is read, then the socket closes
        local _, err = c:purchase_esims{ amount = 1 }
        assert.equal("connection", err.kind)
        assert.is_false(err.retryable)
        assert.equal(1, err.attempts)
        assert.equal(2, count(PURCHASE))                 -- the first call and one copy of the second: no third
        -- in the user's terms, not libcurl's ("aborted by pre-request callback")
        assert.matches("the connection was lost after the request went out .* and telnyx%.sim did not send it again",
          err.message)
        assert.matches("it may have gone through: check ", err.message)
        assert.is_nil(err.message:find("pre-request", 1, true))
        -- register may be re-sent: libcurl's own resend is harmless there
        stub:reset()
        assert(c:register_sim_cards{ registration_codes = { "1" } })
        stub:queue{ mode = "close" }
        assert(c:register_sim_cards{ registration_codes = { "1" } })
        assert.equal(3, count(REGISTER))
      end)
    end)
  end)

  describe("Retry-After's syntax", function()
    it("reads Retry-After as decimal seconds only", function()
      local sleeps = {}
      local c = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 1,
        sleep = function(s) sleeps[#sleeps + 1] = s end })
      stub:queue{ status = 429, body = "", headers = { ["retry-after"] = "0x10" } }
      assert(c:register_sim_cards{ registration_codes = { "1" } })
      assert.is_true(sleeps[1] <= 0.5 and sleeps[1] >= 0.375, "hex ignored, back-off instead: " .. sleeps[1])
    end)
  end)

  describe("client:interpret's verdict", function()
    local client, req, reg
    before_each(function()
      client = assert(sim.new{ api_key = KEY, base_url = BASE, max_retries = 2, max_response_bytes = 2048 })
      req = assert(client:request("purchase_esims", { amount = 1 }))
      reg = assert(client:request("register_sim_cards", { registration_codes = { "1" } }))
    end)

    it("says when and how long to wait before a retry, up to max_retries", function()
      local _, err, retry_in = client:interpret(req, { status = 429, headers = { ["retry-after"] = "2" }, body = "" }, 1)
      assert.equal(2, retry_in)
      assert.equal(1, err.attempts)
      _, err, retry_in = client:interpret(req, { status = 429, headers = {}, body = "" }, 3)
      assert.is_nil(retry_in)
      assert.is_true(err.retryable)
      assert.equal(3, err.attempts)
    end)

    it("never asks to re-send a purchase that may have arrived", function()
      for _, reply in ipairs{ { status = 500, body = "" }, { failure = "timeout" }, { failure = "broken" } } do
        local _, err, retry_in = client:interpret(req, reply, 1)
        assert.is_nil(retry_in)
        assert.is_false(err.retryable)
        assert.matches("may have gone through", err.message)
        _, err, retry_in = client:interpret(reg, reply, 1)
        assert.is_number(retry_in)
        assert.is_true(err.retryable)
      end
    end)
  end)

  describe("client:interpret's verdict, with max_retries = 3", function()
    local client
    before_each(function() client = assert(sim.new{ api_key = KEY, base_url = BASE, max_retries = 3 }) end)

    it("takes a Retry-After of 2 s as the pause and the wait", function()
      local req = assert(client:request("list_sim_cards", {}))
      local _, err, retry_in = client:interpret(req, { status = 429, headers = { ["retry-after"] = "2" } }, 1)
      assert.same({ 2, 2, 2 }, { err.pause, err.retry_after, retry_in })
    end)
  end)

  describe("per call in client:batch", function()
    local sleeps

    -- A client whose sleep really sleeps, and records how long it was asked to.
    local function new_client(opts)
      local o = { api_key = KEY, base_url = stub.base_url,
        sleep = function(s) sleeps[#sleeps + 1] = s; socket.sleep(s) end }
      for k, v in pairs(opts or {}) do o[k] = v end
      return assert(sim.new(o))
    end

    local function requests_for(path) return helpers.requests_to(stub, path) end

    before_each(function() sleeps = {} end)

    describe("the money rule per call", function()
      -- The operations that may spend money or create a duplicate, with params and a path to fault.
      local UNSAFE = {
        "purchase_esims", "create_sim_card_order", "set_sim_card_public_ip", "bulk_set_public_ips",
        "create_sim_card_group", "create_sim_card_data_usage_notification",
      }

      it("with max_retries = 5: each unsafe call is sent once after a 500, a safe one is retried", function()
        local c = new_client{ max_retries = 5 }
        local list = {}
        for i, name in ipairs(UNSAFE) do
          local row = calls_lib[name]
          assert.equal("POST", row.method)
          stub:queue{ match = row.path, method = "POST", status = 500, body = "" }
          list[i] = { name, calls_lib.copy(row.params) }
        end
        local safe = helpers.uuid()
        stub:queue{ match = card_path(safe), status = 500, body = "", ["repeat"] = 2 }
        list[#list + 1] = { "get_sim_card", safe }
        local results = assert(c:batch(list, { concurrency = 4 }))
        assert.equal(1, results.ok)
        assert.equal(#UNSAFE, results.failed)
        local keys = {}
        for i, name in ipairs(UNSAFE) do
          local err = results[i].err
          assert.is_table(err, name)
          assert.equal("http", err.kind, name)
          assert.equal(500, err.status, name)
          assert.is_false(err.retryable, name)
          assert.equal(1, err.attempts, name)
          assert.matches("it may have gone through: check " .. sim.describe(name).check, err.message, 1, true)
          local sent = requests_for(calls_lib[name].path)
          assert.equal(1, #sent, name)
          local key = sent[1].headers["idempotency-key"]
          assert.matches(UUID4, key, nil, false, name)
          assert.is_nil(keys[key], "two calls shared an Idempotency-Key")
          keys[key] = true
          assert.equal(calls_lib[name].json or "", sent[1].body, name) -- the same bytes as a single call's
          assert.equal(calls_lib[name].query, sent[1].query, name)
        end
        assert.equal(safe, results[#list].res.data.id)
        assert.equal(3, #requests_for(card_path(safe)))
        assert.is_nil(requests_for(card_path(safe))[1].headers["idempotency-key"])
      end)

      it("a 429 on a purchase is retried with the same Idempotency-Key, another purchase has its own", function()
        local c = new_client()
        stub:queue{ match = "/v2/actions/purchase/esims", method = "POST", status = 429, body = "",
          headers = { ["retry-after"] = "0.2" } }
        local results = assert(c:batch({
          { "purchase_esims", { amount = 1 } },
          { "purchase_esims", { amount = 2 }, { idempotency_key = "my-own-key" } },
        }, { concurrency = 1 }))
        assert.equal(2, results.ok)
        assert.equal(1, #results[1].res.data)
        assert.equal(2, #results[2].res.data)
        local sent = requests_for("/v2/actions/purchase/esims")
        assert.equal(3, #sent)
        local by_key = {}
        for _, r in ipairs(sent) do
          local k = r.headers["idempotency-key"]
          by_key[k] = (by_key[k] or 0) + 1
        end
        assert.equal(1, by_key["my-own-key"])
        local first = sent[1].headers["idempotency-key"]
        assert.matches(UUID4, first)
        assert.equal(2, by_key[first]) -- the 429 and its retry
      end)
    end)
  end)

  describe("per operation, by its re-send class (calls.lua, sim.describe)", function()
    local client, sleeps

    local function new_client(opts)
      local o = { api_key = KEY, base_url = stub.base_url, max_retries = 2,
        sleep = function(s) sleeps[#sleeps + 1] = s end }
      for k, v in pairs(opts or {}) do o[k] = v end
      return assert(sim.new(o))
    end

    before_each(function()
      sleeps = {}
      client = new_client()
    end)
    after_each(function() if client then client:close() end end)

    for _, name in ipairs(sim.operations) do
      local d = sim.describe(name)
      local call = calls_lib[name]
      local class = call.resend

      describe(name .. " (" .. call.method .. " " .. d.path .. ", " .. class .. ")", function()
        if class == "safe" then
          it("is retried after a 500, and the halves agree on that 500", function()
            stub:queue{ FAILURE_500, (success(d, call)) }
            local res, err = client:call(name, copy(call.params))
            assert.is_nil(err)
            assert.equal(call.status, res.status)
            local reqs = stub:requests()
            assert.equal(2, #reqs)
            assert.equal(1, #sleeps)
            assert.is_true(sleeps[1] >= 0.375 and sleeps[1] <= 0.5, "back-off " .. tostring(sleeps[1]))
            for _, f in ipairs{ "method", "path", "query", "body" } do assert.equal(reqs[1][f], reqs[2][f], f) end
            assert_sent(d, call, reqs[2])
            -- one attempt only: the libcurl path and interpret give the same err
            stub:queue(FAILURE_500)
            local _, curl_err = client:call(name, copy(call.params), { max_retries = 0 })
            local req = assert(client:request(name, copy(call.params), { max_retries = 0 }))
            local none, half_err, retry_in = client:interpret(req, as_reply(FAILURE_500), 1)
            assert.is_nil(none)
            assert.is_nil(retry_in)
            assert_same_err(curl_err, half_err, name)
            assert.equal(name .. ": HTTP 500: Unexpected error: An unexpected error occurred.", curl_err.message)
            assert.is_true(curl_err.retryable)
            assert.is_number(curl_err.retry_after)
            -- and interpret asks for the retry when one is left
            req = assert(client:request(name, copy(call.params)))
            _, half_err, retry_in = client:interpret(req, as_reply(FAILURE_500), 1)
            assert.is_number(retry_in)
            assert.is_true(half_err.retryable)
          end)

          it("is retried after a connection reset once the request was sent", function()
            stub:queue{ { mode = "reset" }, (success(d, call)) }
            local res = assert(client:call(name, copy(call.params)))
            assert.equal(call.status, res.status)
            assert.equal(2, #stub:requests())
          end)
        else
          it("is never re-sent after a 500, and says to check " .. tostring(d.check), function()
            stub:queue{ FAILURE_500, (success(d, call)) }
            local res, err = client:call(name, copy(call.params))
            assert.is_nil(res)
            assert.equal(1, #stub:requests())
            assert.equal("http", err.kind)
            assert.equal(500, err.status)
            assert.is_false(err.retryable)
            assert.is_nil(err.retry_after)
            assert.equal(1, err.attempts)
            assert.equal("rq-500", err.request_id)
            assert.equal(name .. ": HTTP 500: Unexpected error: An unexpected error occurred.; "
              .. may_have_gone_through(d), err.message)
            assert.same({ { code = "10007", title = "Unexpected error", detail = "An unexpected error occurred." } },
              err.errors)
            assert.same({}, sleeps)
            -- interpret says the same, and asks for no retry
            local req = assert(client:request(name, copy(call.params)))
            local none, half_err, retry_in = client:interpret(req, as_reply(FAILURE_500), 1)
            assert.is_nil(none)
            assert.is_nil(retry_in)
            assert_same_err(err, half_err, name)
          end)

          it("is never re-sent after a connection reset once the request was sent", function()
            stub:queue{ { mode = "reset" }, (success(d, call)) }
            local res, err = client:call(name, copy(call.params))
            assert.is_nil(res)
            assert.equal(1, #stub:requests())
            assert.equal("connection", err.kind)
            assert.is_false(err.retryable)
            assert.equal(1, err.attempts)
            assert.matches(name .. ": connection failed after the request was sent", err.message, 1, true)
            assert.matches(may_have_gone_through(d), err.message, 1, true)
            local req = assert(client:request(name, copy(call.params)))
            local _, half_err, retry_in = client:interpret(req, { failure = "broken", message = "reset" }, 1)
            assert.is_nil(retry_in)
            assert.is_false(half_err.retryable)
            assert.matches(may_have_gone_through(d), half_err.message, 1, true)
          end)

          it("sends one Idempotency-Key on every attempt when the caller opts in to re-sending", function()
            stub:queue{ FAILURE_500, (success(d, call)) }
            local res = assert(client:call(name, copy(call.params), { retry_may_duplicate = true }))
            assert.equal(call.status, res.status)
            local reqs = stub:requests()
            assert.equal(2, #reqs)
            assert.matches(UUID4, reqs[1].headers["idempotency-key"])
            assert.equal(reqs[1].headers["idempotency-key"], reqs[2].headers["idempotency-key"])
            assert.equal(reqs[1].body, reqs[2].body)
            -- and the caller's own key, on both
            stub:reset()
            stub:queue{ FAILURE_500, (success(d, call)) }
            assert(client:call(name, copy(call.params), { retry_may_duplicate = true, idempotency_key = "order-" .. name }))
            reqs = stub:requests()
            assert.equal(2, #reqs)
            assert.equal("order-" .. name, reqs[1].headers["idempotency-key"])
            assert.equal("order-" .. name, reqs[2].headers["idempotency-key"])
          end)

          it("is sent once whatever goes wrong after sending, even with max_retries = 5", function()
            local c = new_client{ max_retries = 5, timeout = 5 }
            local faults = {
              { "500", FAILURE_500 },
              { "502 from a proxy", { status = 502, body = "<html>Bad Gateway</html>", headers = { ["content-type"] = "text/html" } } },
              { "503 saying x-should-retry: true", { status = 503, body = "", headers = { ["x-should-retry"] = "true",
                ["retry-after"] = "0" } } },
              { "504", { status = 504, body = "" } },
              { "a reset", { mode = "reset" } },
              { "a close mid-body", { mode = "close_mid_body", status = call.status, json = calls_lib.response(d, call.params) } },
              { "a timeout", { mode = "stall", duration = 5 }, { timeout = 0.25 } },
            }
            for _, fault in ipairs(faults) do
              stub:reset()
              local ok = success(d, call)
              ok["repeat"] = 5
              stub:queue{ fault[2], ok }
              local opts = { max_retries = 5 }
              for k, v in pairs(fault[3] or {}) do opts[k] = v end
              local res, err = c:call(name, copy(call.params), opts)
              assert.is_nil(res, fault[1])
              assert.equal(1, #stub:requests(), fault[1] .. ": sent once")
              assert.is_false(err.retryable, fault[1])
              assert.equal(1, err.attempts, fault[1])
              assert.matches(may_have_gone_through(d), err.message, 1, true)
            end
            assert.same({}, sleeps)
            -- a kept-alive connection that dies under the request: libcurl's own
            -- re-send on a fresh connection is refused too
            stub:reset()
            stub:queue{ (success(d, call)), { mode = "close" }, (success(d, call)) }
            assert(c:call(name, copy(call.params)))
            local res, err = c:call(name, copy(call.params))
            assert.is_nil(res)
            assert.equal("connection", err.kind)
            assert.is_false(err.retryable)
            assert.equal(2, #stub:requests(), "the first call, and one copy of the second")
            c:close()
          end)
        end
      end)
    end
  end)
end)
