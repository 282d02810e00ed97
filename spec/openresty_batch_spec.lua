-- telnyx.sim.resty's client:batch in a real nginx (Debian's nginx +
-- libnginx-mod-http-lua, LuaJIT), proxying to the stub server: the C
-- client's results for the same calls, the requests in flight together (on
-- light threads, at most `concurrency`), the money rule and the shared pause
-- per call, validation before any traffic, progress, in a timer with a
-- cosocket transport, and that the worker never blocks.
local fixtures = require "spec.support.fixtures"
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local sim = require "telnyx.sim"
local socket = require "socket"

local KEY = "KEYrestybatch0123456789SECRET"

-- The internal proxy location, as docs/openresty.md gives it (plain http to the stub).
local CONF = [[
{{MODULES}}
{{USER}}
worker_processes 1;
error_log {{DIR}}/logs/error.log info;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_buffer_size 4m; # a batch spec in memory, for ngx.req.get_body_data
  client_max_body_size 4m;
  {{TEMP_PATHS}}
  lua_package_path "{{REPO}}/?.lua;;";
  lua_package_cpath "{{REPO}}/build/luajit/?.so;;";
  upstream telnyx_stub { server 127.0.0.1:{{STUB_PORT}}; keepalive 16; }
  server {
    listen 127.0.0.1:{{PORT}};
    location /_telnyx/ {
      internal;
      proxy_pass_request_headers off;
      set_by_lua_block $telnyx_authorization   { return require("telnyx.sim.resty").proxy_header("Authorization") }
      set_by_lua_block $telnyx_content_type    { return require("telnyx.sim.resty").proxy_header("Content-Type") }
      set_by_lua_block $telnyx_accept          { return require("telnyx.sim.resty").proxy_header("Accept") }
      set_by_lua_block $telnyx_user_agent      { return require("telnyx.sim.resty").proxy_header("User-Agent") }
      set_by_lua_block $telnyx_idempotency_key { return require("telnyx.sim.resty").proxy_header("Idempotency-Key") }
      proxy_set_header Authorization   $telnyx_authorization;
      proxy_set_header Content-Type    $telnyx_content_type;
      proxy_set_header Accept          $telnyx_accept;
      proxy_set_header User-Agent      $telnyx_user_agent;
      proxy_set_header Idempotency-Key $telnyx_idempotency_key;
      proxy_set_header Host            127.0.0.1;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_read_timeout 5s;
      header_filter_by_lua_block { require("telnyx.sim.resty").note_upstream() }
      proxy_pass http://telnyx_stub/v2/;
    }
    location = /batch         { content_by_lua_block { require("spec.support.openresty_app").batch() } }
    location = /batch_rewrite { rewrite_by_lua_block { require("spec.support.openresty_app").batch() } }
    location = /batch_access  { access_by_lua_block { require("spec.support.openresty_app").batch() } }
    location = /batch_timer   { content_by_lua_block { require("spec.support.openresty_app").batch_timer() } }
    location = /ping          { content_by_lua_block { require("spec.support.openresty_app").answer(nil, "pong\n") } }
  }
}
]]

local available, why = nginx.available()

local describe_nginx = available and describe or function(name)
  describe(name, function() pending("nginx with libnginx-mod-http-lua is not installed: " .. tostring(why)) end)
end

-- An err as the app encodes it (and as a C err compares with one).
local function err_fields(err)
  if not err then return nil end
  local codes = {}
  for i, e in ipairs(err.errors or {}) do codes[i] = e.code end
  return { kind = err.kind, status = err.status, message = err.message, retryable = err.retryable,
    attempts = err.attempts, field = err.field, index = err.index, codes = codes }
end

-- A res (or anything) as it reads after the JSON trip the app's answer takes.
local function json_trip(value)
  return helpers.decode(helpers.encode(value))
end

describe_nginx("telnyx.sim.resty client:batch in nginx #nginx", function()
  local stub, server, direct

  setup(function()
    nginx.build_luajit_module()
    stub = helpers.start_stub()
    server = nginx.start{ conf = CONF, values = { STUB_PORT = stub.port } }
    direct = assert(sim.new{ api_key = KEY, base_url = stub.base_url })
  end)

  teardown(function()
    if direct then direct:close() end
    if server then server:stop() end
    if stub then stub:stop() end
  end)

  before_each(function()
    stub:reset()
  end)

  -- POST path with a batch spec (see batch_run in spec/support/openresty_app.lua) -> the decoded answer.
  -- (the proxy location is what this spec tests: transport = "capture" unless it says otherwise;
  -- spec/openresty_cosocket_spec.lua has batch over the cosocket transport)
  local function batch(spec, path)
    spec.client = spec.client or {}
    spec.client.api_key = spec.client.api_key or KEY
    if spec.client.transport == nil and not spec.client.blocking then spec.client.transport = "capture" end
    local res = assert(helpers.http{ port = server.port, method = "POST", path = path or "/batch",
      body = helpers.encode(spec), timeout = 30 })
    assert.equal(200, res.status, res.body)
    return helpers.decode(res.body)
  end

  local function no_traffic()
    assert.same({}, stub:requests())
  end

  local function seed_cards()
    local seeded = stub:seed{ sim_cards = { { type = "esim" }, { type = "esim" }, { type = "physical" } } }
    local cards = seeded.sim_cards
    return cards[1], cards[2], cards[3]
  end

  -- n GETs of implicit physical cards (the stub makes one per new id): data.id says which call answered.
  local function card_gets(n)
    local calls = {}
    for i = 1, n do calls[i] = { "get_sim_card", { id = helpers.uuid() } } end
    return calls
  end

  -- Call 1 answers at 0.2 s (progress raises then); calls 2 and 3 are in flight until `slow` s, and call 2's
  -- 503 asks for a retry 0.1 s later: a light thread left running would send it.
  local function queue_progress_raise(calls, slow)
    local function answer(i, delay, status, headers)
      return { match = "/v2/sim_cards/" .. calls[i][2].id, delay = delay, status = status or 200, headers = headers,
        json = status and { errors = {} } or { data = helpers.sim_card{ id = calls[i][2].id } } }
    end
    stub:queue{ answer(1, 0.2), answer(2, slow, 503, { ["retry-after-ms"] = "100" }), answer(3, slow) }
  end

  local function assert_in_order(calls, out)
    assert.equal(#calls, #out.results)
    for i, c in ipairs(calls) do
      local r = out.results[i]
      assert.is_nil(r.err, r.err and r.err.string)
      assert.equal(c[2].id, r.res.data.id)
    end
  end

  describe("gives the C client's results for the same calls", function()
    it("in input order, with ok / failed, successes and failures alike", function()
      local esim1, esim2, physical = seed_cards()
      local calls = {
        { "get_sim_card_activation_code", esim1.id },
        { "get_sim_card_activation_code", physical.id },             -- 422: not an eSIM
        { "get_sim_card", "00000000-0000-4000-8000-000000000001" },  -- 404
        { "get_sim_card", { id = esim2.id } },
        { "get_sim_card_activation_code", esim2.id },
        { "get_sim_card", { id = esim1.id } },
        { "get_sim_card_public_ip", esim2.id },                      -- 404: none
      }
      local expected = assert(direct:batch(calls, { concurrency = 3 }))
      local out = batch{ calls = calls, opts = { concurrency = 3 } }
      assert.is_nil(out.err, out.err and out.err.string)
      assert.equal(expected.ok, out.ok)
      assert.equal(expected.failed, out.failed)
      assert.equal(4, out.ok)
      assert.equal(3, out.failed)
      assert.equal(#calls, #out.results)
      for i, want in ipairs(expected) do
        local got = out.results[i]
        if want.res then
          assert.is_nil(got.err, got.err and got.err.string)
          assert.same(json_trip(want.res), got.res, "calls[" .. i .. "]")
        else
          assert.is_nil(got.res, "calls[" .. i .. "]")
          assert.same(err_fields(want.err), err_fields(got.err), "calls[" .. i .. "]")
        end
      end
      assert.equal(fixtures.activation_code(esim1.id), out.results[1].res.data.activation_code)
      assert.equal(2 * #calls, #stub:requests())
    end)

    it("encodes with sim.encode as a JSON array of the results, the counts still readable", function()
      local esim1, _, physical = seed_cards()
      local calls = { { "get_sim_card_activation_code", esim1.id }, { "get_sim_card_activation_code", physical.id } }
      local want = assert(direct:batch(calls))
      local text = assert(sim.encode(want)) -- the C client's
      local out = batch{ calls = calls }
      assert.is_nil(out.encode_err, out.encode_err and out.encode_err.string)
      for _, encoded in ipairs{ text, out.encoded } do
        local list = helpers.decode(encoded)
        assert.equal(2, #list)
        assert.is_nil(list.ok)
        assert.equal(fixtures.activation_code(esim1.id), list[1].res.data.activation_code)
        assert.equal("http", list[2].err.kind)
        assert.equal(422, list[2].err.status)
      end
      assert.same({ 1, 1 }, { want.ok, want.failed })
      assert.same({ 1, 1 }, { out.ok, out.failed })
      -- what a JSON answer with the counts takes
      local both = helpers.decode(assert(sim.encode{ results = want, ok = want.ok, failed = want.failed }))
      assert.same({ 2, 1, 1 }, { #both.results, both.ok, both.failed })
    end)

    it("a batch of 0: no traffic, ok = failed = 0", function()
      local out = batch{ calls = helpers.empty_array, progress = true }
      assert.is_nil(out.err)
      assert.equal(0, out.ok)
      assert.equal(0, out.failed)
      assert.same({}, out.results)
      assert.same({}, out.progress)
      no_traffic()
    end)

    for _, path in ipairs{ "/batch_rewrite", "/batch_access" } do
      it("from " .. path:match("_(%a+)$") .. "_by_lua", function()
        local calls = card_gets(4)
        local out = batch({ calls = calls, opts = { concurrency = 2 } }, path)
        assert.equal(4, out.ok)
        assert_in_order(calls, out)
      end)
    end

    it("1,000 calls, in order", function()
      local calls = card_gets(1000)
      local out = batch{ calls = calls, opts = { concurrency = 50 } }
      assert.equal(1000, out.ok)
      assert.equal(0, out.failed)
      assert_in_order(calls, out)
      local stats = stub:stats()
      assert.equal(1000, stats.requests)
      assert.is_true(stats.in_flight_peak <= 50, stats.in_flight_peak)
    end)
  end)

  describe("has its requests in flight together", function()
    it("at most `concurrency` at once: 6 calls held 0.3 s each, 3 at a time, take ~0.6 s, not 1.8 s", function()
      stub:config{ delay = 0.3 }
      local calls = card_gets(6)
      local out = batch{ calls = calls, opts = { concurrency = 3 }, progress = true }
      assert_in_order(calls, out)
      assert.equal(3, stub:stats().in_flight_peak)
      assert.is_true(out.elapsed >= 0.55, out.elapsed)
      assert.is_true(out.elapsed < 1.2, out.elapsed)
      -- progress: once per call, from 1 to 6, every index once
      local seen = {}
      for k, p in ipairs(out.progress) do
        assert.equal(k, p.done)
        assert.equal(6, p.total)
        assert.is_true(p.ok)
        assert.is_nil(seen[p.index])
        seen[p.index] = true
      end
      assert.equal(6, #out.progress)
    end)

    it("all of them with concurrency >= n, one at a time with concurrency 1", function()
      stub:config{ delay = 0.3 }
      local out = batch{ calls = card_gets(6), opts = { concurrency = 10 } }
      assert.equal(6, out.ok)
      assert.equal(6, stub:stats().in_flight_peak)
      assert.is_true(out.elapsed < 0.9, out.elapsed)
      stub:reset()
      stub:config{ delay = 0.1 }
      out = batch{ calls = card_gets(3), opts = { concurrency = 1 } }
      assert.equal(3, out.ok)
      assert.equal(1, stub:stats().in_flight_peak)
      assert.is_true(out.elapsed >= 0.3, out.elapsed)
    end)

    it("16 at once by default", function()
      stub:config{ delay = 0.2 }
      local out = batch{ calls = card_gets(20) }
      assert.equal(20, out.ok)
      assert.equal(16, stub:stats().in_flight_peak)
    end)
  end)

  describe("keeps every rule of a single call per call", function()
    it("a purchase answered 500 is not re-sent; the other calls are unaffected", function()
      stub:queue{ match = "/v2/actions/purchase/esims", status = 500, json = { errors = {} }, ["repeat"] = 3 }
      local calls = { { "get_sim_card", { id = helpers.uuid() } }, { "purchase_esims", { amount = 1 } },
        { "get_sim_card", { id = helpers.uuid() } } }
      local out = batch{ calls = calls, client = { max_retries = 2 } }
      assert.equal(2, out.ok)
      assert.equal(1, out.failed)
      local err = out.results[2].err
      assert.equal("http", err.kind)
      assert.equal(500, err.status)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.matches("may have gone through", err.message)
      local purchases = 0
      for _, req in ipairs(stub:requests()) do
        if req.path == "/v2/actions/purchase/esims" then purchases = purchases + 1 end
      end
      assert.equal(1, purchases)
      assert.equal(calls[1][2].id, out.results[1].res.data.id)
      assert.equal(calls[3][2].id, out.results[3].res.data.id)
    end)

    it("a 503 on a GET is retried within the batch", function()
      local calls = card_gets(3)
      stub:queue{ match = "/v2/sim_cards/" .. calls[2][2].id, status = 503, headers = { ["retry-after-ms"] = "50" },
        json = { errors = {} } }
      local out = batch{ calls = calls, client = { max_retries = 1 } }
      assert.equal(3, out.ok)
      assert_in_order(calls, out)
      assert.equal(4, #stub:requests())
    end)

    it("a 429 with Retry-After pauses the start of new attempts for the whole batch", function()
      local calls = card_gets(4)
      stub:queue{
        { match = "/v2/sim_cards/" .. calls[1][2].id, status = 429, headers = { ["retry-after"] = "1" },
          json = { errors = {} } },
        { match = "/v2/sim_cards/" .. calls[2][2].id, delay = 0.2, status = 200,
          json = { data = helpers.sim_card{ id = calls[2][2].id } } },
      }
      local out = batch{ calls = calls, opts = { concurrency = 2 }, client = { max_retries = 1 }, progress = true }
      assert.equal(4, out.ok)
      assert_in_order(calls, out)
      -- call 2 answered at ~0.2 s; calls 3 and 4 could have started then, but wait for the pause (1 s)
      local at = {}
      for _, p in ipairs(out.progress) do at[p.index] = p.at end
      assert.is_true(at[2] < 0.8, at[2])
      for _, i in ipairs{ 1, 3, 4 } do assert.is_true(at[i] >= 0.95, i .. ": " .. at[i]) end
      assert.equal(5, #stub:requests())
    end)
  end)

  describe("checks every call before anything is sent", function()
    it("a bad call: nil, err naming its index (the C client's err), no traffic", function()
      local calls = card_gets(3)
      for _, bad in ipairs{
        { 2, { "get_sim_card", { id = "nope" } } },
        { 3, "not a table" },
        { 1, { "no_such_operation", {} } },
        { 2, { "purchase_esims", { amount = 0 } } },
      } do
        local these = { calls[1], calls[2], calls[3] }
        these[bad[1]] = bad[2]
        local _, want = direct:batch(these)
        local out = batch{ calls = these }
        assert.is_nil(out.results)
        assert.same(err_fields(want), err_fields(out.err))
        assert.equal(bad[1], out.err.index)
        assert.matches("^batch: calls%[" .. bad[1] .. "%]: ", out.err.message)
      end
      no_traffic()
    end)

    it("bad options: the C client's err, no traffic", function()
      for _, opts in ipairs{ { concurrency = 0 }, { concurrency = 1001 }, { concurrency = 1.5 }, { bogus = 1 },
        { progress = "yes" } } do
        local _, want = direct:batch(card_gets(1), opts)
        local out = batch{ calls = card_gets(1), opts = opts }
        assert.same(err_fields(want), err_fields(out.err))
        assert.matches("^batch: ", out.err.message)
      end
      local _, want = direct:batch("calls")
      local out = batch{ calls = "calls" }
      assert.same(err_fields(want), err_fields(out.err))
      no_traffic()
    end)

    it("a header the capture location cannot carry: the call's index, no traffic", function()
      local calls = card_gets(2)
      calls[2][3] = { headers = { ["X-Trace"] = "t" } }
      local out = batch{ calls = calls }
      assert.equal("invalid_params", out.err.kind)
      assert.equal(2, out.err.index)
      assert.equal("opts.headers", out.err.field)
      assert.matches("^batch: calls%[2%]: get_sim_card: 'opts.headers' cannot send 'X%-Trace'", out.err.message)
      no_traffic()
    end)
  end)

  describe("progress", function()
    it("an error it raises comes out of batch, nothing left running behind it", function()
      local calls = card_gets(6)
      queue_progress_raise(calls, 0.4)
      local out = batch{ calls = calls, opts = { concurrency = 3 }, progress = { raise = 1 }, after = 0.8,
        client = { max_retries = 2 } }
      assert.is_true(out.raised_same, out.raised)
      assert.equal(1, #out.progress)
      -- nginx cannot kill a light thread with a pending subrequest: batch waited for calls 2 and 3
      -- to end, then raised; none started or retried since
      assert.is_true(out.elapsed >= 0.35 and out.elapsed < 0.7, out.elapsed)
      assert.equal(3, #stub:requests())
      assert.equal(0, stub:stats().in_flight)
    end)

    it("may wait (ngx.sleep) while calls end meanwhile", function()
      local calls = card_gets(8)
      for i, c in ipairs(calls) do
        stub:queue{ match = "/v2/sim_cards/" .. c[2].id, delay = 0.05 * (i % 3), status = 200,
          json = { data = helpers.sim_card{ id = c[2].id } } }
      end
      local out = batch{ calls = calls, opts = { concurrency = 3 }, progress = { sleep = 0.07 } }
      assert.equal(8, out.ok)
      assert_in_order(calls, out)
      assert.equal(8, #out.progress)
      for k, p in ipairs(out.progress) do assert.equal(k, p.done) end
      assert.equal(8, #stub:requests())
    end)

    it("closing the client from it: the calls not finished end with a config err", function()
      stub:config{ delay = 0.2 }
      local out = batch{ calls = card_gets(6), opts = { concurrency = 3 }, progress = { close = 2 } }
      assert.equal(2, out.ok)
      assert.equal(4, out.failed)
      assert.equal(6, #out.progress)
      local failed = 0
      for _, r in ipairs(out.results) do
        if r.err then -- the C client's words (src/batch.c): whether this call was sent, and safe to send again
          failed = failed + 1
          assert.equal("config", r.err.kind)
          assert.equal("get_sim_card: the client was closed during the batch"
            .. (r.err.attempts == 0 and ", before this call was sent" or ""), r.err.message)
          assert.is_true(r.err.retryable)
        end
      end
      assert.equal(4, failed)
      assert.is_true(#stub:requests() <= 4, #stub:requests())
    end)

    it("closing the client while a purchase is in flight: it may have gone through, as the C client says", function()
      local id = helpers.uuid()
      stub:queue{ match = "/v2/actions/purchase/esims", delay = 2, status = 202,
        json = { data = { helpers.sim_card() } } }
      stub:queue{ match = "/v2/sim_cards/" .. id, status = 200, json = { data = helpers.sim_card{ id = id } } }
      local out = batch{ calls = { { "purchase_esims", { amount = 1 } }, { "get_sim_card", id } },
        opts = { concurrency = 2 }, progress = { close = 1 } }
      -- (the purchase waits 2 s at the fake: the get ends first, and its progress closes the client)
      assert.equal(1, out.ok)
      local err = out.results[1].err
      assert.same({ "config", 1, false }, { err.kind, err.attempts, err.retryable })
      assert.equal("purchase_esims: the client was closed during the batch, after the request was sent; it may "
        .. "have gone through: check the SIM card list before trying again", err.message)
      assert.equal(1, #helpers.requests_to(stub, "/v2/actions/purchase/esims")) -- sent once, never again
    end)
  end)

  describe("in a timer", function()
    it("with a transport function on cosockets: the same results, in flight together", function()
      stub:config{ delay = 0.3 }
      local calls = card_gets(6)
      local out = batch({ calls = calls, opts = { concurrency = 3 },
        client = { transport = "custom", base_url = stub.base_url } }, "/batch_timer")
      assert.equal("timer", out.phase)
      assert.equal(6, out.ok)
      assert_in_order(calls, out)
      assert.equal(3, stub:stats().in_flight_peak)
      assert.is_true(out.elapsed < 1.2, out.elapsed)
    end)

    it("progress raising: the light threads are killed at once", function()
      local calls = card_gets(6)
      queue_progress_raise(calls, 1)
      local out = batch({ calls = calls, opts = { concurrency = 3 }, progress = { raise = 1 }, after = 1.2,
        client = { transport = "custom", base_url = stub.base_url, max_retries = 2 } }, "/batch_timer")
      assert.equal("timer", out.phase)
      assert.is_true(out.raised_same, out.raised)
      assert.is_true(out.elapsed < 0.8, out.elapsed) -- calls 2 and 3 (1 s) were not waited for
      assert.equal(3, #stub:requests())
    end)

    it("with the capture transport: a config err asking for another, no traffic", function()
      local out = batch({ calls = card_gets(2) }, "/batch_timer")
      assert.equal("timer", out.phase)
      assert.equal("config", out.err.kind)
      assert.matches("^batch: ngx%.location%.capture is not available in the 'timer' phase", out.err.message)
      -- get_activation_codes (on batch) says its own name
      out = batch({ helper = "get_activation_codes", cards = { helpers.uuid() } }, "/batch_timer")
      assert.equal("config", out.err.kind)
      assert.matches("^get_activation_codes: ngx%.location%.capture is not available in the 'timer' phase",
        out.err.message)
      no_traffic()
    end)
  end)

  it("get_activation_codes works through it, as on the C client", function()
    local esim1, esim2, physical = seed_cards()
    local cards = { esim1, physical, esim2.id }
    local want = assert(direct:get_activation_codes(cards))
    local out = batch{ helper = "get_activation_codes", cards = cards, progress = true }
    assert.is_nil(out.err, out.err and out.err.string)
    assert.equal(2, out.ok)
    assert.equal(0, out.failed)
    assert.same({ want[1], want[2], want[3] }, out.results)
    assert.same({ want.ok, want.failed }, { out.ok, out.failed })
    assert.equal(fixtures.activation_code(esim1.id), out.results[1].activation_code)
    assert.equal("physical", out.results[2].skipped)
    assert.equal(fixtures.activation_code(esim2.id), out.results[3].activation_code)
    -- sim.encode gives the list, as it does for the C client's (the counts are not items)
    assert.is_nil(out.encode_err)
    local list = helpers.decode(out.encoded)
    assert.same(json_trip(want[1]), list[1])
    assert.same(json_trip(want[3]), list[3])
    assert.equal(3, #list)
    assert.same(helpers.decode(assert(sim.encode(want))), list)
    -- progress indices are into cards
    local indices = {}
    for _, p in ipairs(out.progress) do indices[#indices + 1] = p.index end
    table.sort(indices)
    assert.same({ 1, 3 }, indices)
  end)

  -- Starts a batch of 3 calls the stub holds 2 s each, waits until the stub
  -- holds `held` of them, then sends 20 requests to /ping on the same (only)
  -- worker; returns the order in which they completed.
  local function race(client, held)
    stub:config{ delay = 2 }
    local slow = socket.tcp()
    slow:settimeout(10)
    assert(slow:connect("127.0.0.1", server.port))
    local calls = card_gets(3)
    client.api_key = KEY
    if client.transport == nil and not client.blocking then client.transport = "capture" end
    local body = helpers.encode{ calls = calls, opts = { concurrency = 3 }, client = client }
    assert(slow:send("POST /batch HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: " .. #body .. "\r\n\r\n"
      .. body))
    -- wait until the stub holds them: the worker has sent them and waits
    local deadline = socket.gettime() + 5
    while stub:stats().in_flight < held and socket.gettime() < deadline do socket.sleep(0.01) end
    assert.equal(held, stub:stats().in_flight)

    local order = {}
    for i = 1, 20 do
      local res = assert(helpers.http{ port = server.port, path = "/ping", timeout = 10 })
      assert.equal(200, res.status)
      assert.equal("pong\n", res.body)
      if #order < i and #socket.select({ slow }, nil, 0) > 0 then order[#order + 1] = "batch" end
      order[#order + 1] = "ping"
    end
    local res = assert(helpers.read_response(slow))
    slow:close()
    if order[#order] == "ping" then order[#order + 1] = "batch" end
    local out = helpers.decode(res.body)
    assert.equal(3, out.ok, res.body)
    assert_in_order(calls, out)
    return order
  end

  it("never blocks the worker: 20 requests finish while a batch waits 2 s", function()
    local order = race({}, 3) -- all three in flight together
    local want = {}
    for i = 1, 20 do want[i] = "ping" end
    want[21] = "batch"
    assert.same(want, order)
  end)

  it("(negative control: the C client's batch in the same worker does block it)", function()
    local order = race({ base_url = stub.base_url, blocking = true, max_retries = 0 }, 3)
    assert.equal("batch", order[1])
  end)
end)
