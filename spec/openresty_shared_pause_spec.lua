-- telnyx.sim.resty's shared pause (resty.new{ shared_dict = }) in a real nginx with 2 workers
-- (Debian's nginx + libnginx-mod-http-lua, LuaJIT), against the fake: a 429 with Retry-After
-- served to a call in worker A delays the next call (and batch) of worker B by about the time
-- asked; nothing is lost or sent twice (the fake's request log); without shared_dict, or for
-- another origin, B is not delayed. Every call runs in the worker the spec names: /run answers
-- "wrong worker" without sending anything when a connection lands in the other one, and the spec
-- asks again on a new connection (reuseport spreads them).
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local sim = require "telnyx.sim"

local KEY = "KEYsharedpause0123456789SECRET"
local DICT = "telnyx_pause"
local ASKED = 2 -- the Retry-After the fake answers worker A's call with

local CONF = [[
{{MODULES}}
{{USER}}
worker_processes 2;
error_log {{DIR}}/logs/error.log info;
events { worker_connections 1024; }
http {
  access_log off;
  {{TEMP_PATHS}}
  lua_package_path "{{REPO}}/?.lua;;";
  lua_package_cpath "{{REPO}}/build/luajit/?.so;;";
  lua_shared_dict telnyx_pause 1m;
  server {
    listen 127.0.0.1:{{PORT}} reuseport;
    location = /who   { content_by_lua_block { require("spec.support.openresty_pause_app").who() } }
    location = /flush { content_by_lua_block { require("spec.support.openresty_pause_app").flush() } }
    location = /new   { content_by_lua_block { require("spec.support.openresty_pause_app").new() } }
    location = /run   { content_by_lua_block { require("spec.support.openresty_pause_app").run() } }
  }
}
]]

local available, why = nginx.available()

local describe_nginx = available and describe or function(name)
  describe(name, function() pending("nginx with libnginx-mod-http-lua is not installed: " .. tostring(why)) end)
end

describe_nginx("telnyx.sim.resty shared_dict: one pause across nginx workers #nginx", function()
  local stub, server
  local workers = {} -- the two worker ids seen

  setup(function()
    nginx.build_luajit_module()
    stub = helpers.start_stub()
    server = nginx.start{ conf = CONF }
    local seen = {}
    for _ = 1, 400 do
      local res = assert(helpers.http{ port = server.port, path = "/who" })
      local who = helpers.decode(res.body)
      seen[who.worker] = who.pid
      if seen[0] and seen[1] then break end
    end
    assert(seen[0] and seen[1], "nginx's two workers did not both answer")
    assert(seen[0] ~= seen[1])
    workers = { 0, 1 }
  end)

  teardown(function()
    if server then server:stop() end
    if stub then stub:stop() end
  end)

  before_each(function()
    stub:reset()
    assert.equal(200, assert(helpers.http{ port = server.port, method = "POST", path = "/flush" }).status)
  end)

  -- POST /run in worker `want` (asked again until a connection lands there) -> the decoded answer.
  local function run_in(want, spec)
    spec.want = want
    spec.client = spec.client or {}
    spec.client.api_key = KEY
    spec.client.base_url = spec.client.base_url or stub.base_url
    local body = helpers.encode(spec)
    for _ = 1, 400 do
      local res = assert(helpers.http{ port = server.port, method = "POST", path = "/run", body = body, timeout = 30 })
      assert.equal(200, res.status, res.body)
      local out = helpers.decode(res.body)
      if not out.wrong_worker then
        assert.is_nil(out.err, out.err and out.err.string)
        assert.equal(want, out.worker)
        return out
      end
    end
    error("no connection landed in worker " .. want)
  end

  local function count(path)
    local n = 0
    for _, r in ipairs(stub:requests()) do
      if r.path == path then n = n + 1 end
    end
    return n
  end

  local function card_path(id) return "/v2/sim_cards/" .. id end

  -- Worker A's call: a GET the fake answers 429 with Retry-After (no retry: it returns at once, its err
  -- saying the pause) -> A's answer, the time of the 429 on nginx's clock.
  local function a_gets_429(client, asked)
    asked = asked or ASKED
    local id = helpers.uuid()
    stub:queue{ path = card_path(id), status = 429, headers = { ["Retry-After"] = tostring(asked) },
      json = { errors = { { code = "10011", title = "Too many requests" } } } }
    local cl = { max_retries = 0 }
    for k, v in pairs(client or {}) do cl[k] = v end
    local a = run_in(workers[1], { client = cl, calls = { { "get_sim_card", { id = id } } } })
    local err = a.results[1].err
    assert.is_table(err, "A's call should fail with the 429")
    assert.equal(429, err.status)
    assert.equal(asked, err.pause)
    assert.equal(1, #a.sends)
    return a, a.sends[1].answered, id
  end

  it("a 429 with Retry-After served to worker A delays worker B's next call by the time asked", function()
    local a, at429, a_id = a_gets_429{ shared_dict = DICT }
    local b_id = helpers.uuid()
    local b = run_in(workers[2], { client = { shared_dict = DICT },
      calls = { { "get_sim_card", { id = b_id } } } })
    assert.are_not.equal(a.pid, b.pid) -- two processes
    assert.is_nil(b.results[1].err, b.results[1].err and b.results[1].err.string)
    assert.equal(b_id, b.results[1].res.data.id)
    assert.is_true(b.started - at429 < ASKED - 0.5, "B started within the pause: " .. (b.started - at429))
    assert.equal(1, #b.sends)
    local delay = b.sends[1].sent - at429
    assert.is_true(delay >= ASKED - 0.5, "B sent " .. delay .. " s after A's 429") -- the pause held B back
    assert.is_true(delay < ASKED + 2, "B sent " .. delay .. " s after A's 429") -- and ended
    -- nothing lost or sent twice
    assert.equal(1, count(card_path(a_id)))
    assert.equal(1, count(card_path(b_id)))
    assert.equal(2, #stub:requests())
  end)

  it("delays worker B's batch too, a purchase in it sent once, every call answered", function()
    local _, at429 = a_gets_429{ shared_dict = DICT }
    local ids = { helpers.uuid(), helpers.uuid() }
    local b = run_in(workers[2], { client = { shared_dict = DICT, max_retries = 2 }, batch = {
      calls = { { "get_sim_card", { id = ids[1] } }, { "purchase_esims", { amount = 1 } },
        { "get_sim_card", { id = ids[2] } } },
      opts = { concurrency = 3 } } })
    assert.equal(3, b.ok)
    assert.equal(0, b.failed)
    assert.equal(ids[1], b.results[1].res.data.id)
    assert.equal(1, #b.results[2].res.data)
    assert.equal(ids[2], b.results[3].res.data.id)
    assert.equal(3, #b.sends)
    for _, s in ipairs(b.sends) do
      local delay = s.sent - at429
      assert.is_true(delay >= ASKED - 0.5 and delay < ASKED + 2, s.path .. " sent " .. delay .. " s after A's 429")
    end
    assert.equal(1, count("/v2/actions/purchase/esims"))
    assert.equal(1, count(card_path(ids[1])))
    assert.equal(1, count(card_path(ids[2])))
    assert.equal(4, #stub:requests())
  end)

  it("a shorter pause asked later never shortens the stored one", function()
    local ids = { helpers.uuid(), helpers.uuid() }
    stub:queue{ { path = card_path(ids[1]), status = 429, headers = { ["Retry-After"] = "3" }, json = { errors = {} } },
      { path = card_path(ids[2]), delay = 0.5, status = 429, headers = { ["Retry-After"] = "1" }, json = { errors = {} } } }
    -- worker A: both calls in flight at once; the 3 s pause is stored first, the 1 s one half a second later
    local a = run_in(workers[1], { client = { shared_dict = DICT, max_retries = 0 }, batch = {
      calls = { { "get_sim_card", { id = ids[1] } }, { "get_sim_card", { id = ids[2] } } } } })
    assert.equal(2, a.failed)
    assert.equal(3, a.results[1].err.pause)
    assert.equal(1, a.results[2].err.pause)
    local first = math.min(a.sends[1].answered, a.sends[2].answered)
    local b_id = helpers.uuid()
    local b = run_in(workers[2], { client = { shared_dict = DICT }, calls = { { "get_sim_card", { id = b_id } } } })
    assert.is_nil(b.results[1].err, b.results[1].err and b.results[1].err.string)
    local delay = b.sends[1].sent - first
    assert.is_true(delay >= 2.5 and delay < 5, "B sent " .. delay .. " s after the first 429")
    assert.equal(3, #stub:requests())
  end)

  it("the call that got the 429 retries once the pause ends; its worker's next call is not held past it", function()
    local id = helpers.uuid()
    stub:queue{ path = card_path(id), status = 429, headers = { ["Retry-After"] = tostring(ASKED) },
      json = { errors = {} } }
    -- A retries after the time asked; its own worker's next call (the same worker, later) is not held past it
    local a = run_in(workers[1], { client = { shared_dict = DICT, max_retries = 1 },
      calls = { { "get_sim_card", { id = id } }, { "get_sim_card", { id = helpers.uuid() } } } })
    assert.is_nil(a.results[1].err, a.results[1].err and a.results[1].err.string)
    assert.equal(id, a.results[1].res.data.id)
    assert.equal(3, #a.sends)
    local retry = a.sends[2].sent - a.sends[1].answered
    assert.is_true(retry >= ASKED - 0.5 and retry < ASKED + 2, "A retried " .. retry .. " s after the 429")
    assert.is_true(a.sends[3].sent - a.sends[2].answered < 1, "the pause was over for A's next call")
    assert.equal(2, count(card_path(id)))
    assert.equal(3, #stub:requests())
  end)

  it("a client closed while it waits out the pause sends nothing (a single call and a batch)", function()
    local _, at429 = a_gets_429({ shared_dict = DICT }, 4)
    local b = run_in(workers[2], { client = { shared_dict = DICT }, close_after = 0.3,
      calls = { { "purchase_esims", { amount = 1 } } } })
    assert.equal(0, #b.sends)
    local err = b.results[1].err
    assert.equal("config", err.kind)
    assert.equal("purchase_esims: the client was closed while waiting out the server's pause; nothing was sent",
      err.message)
    assert.equal(0, err.attempts)
    assert.is_true(b.finished - b.closed < 1.5, b.finished - b.closed) -- noticed within a second or so
    local c = run_in(workers[2], { client = { shared_dict = DICT }, close_after = 0.3, batch = {
      calls = { { "get_sim_card", { id = helpers.uuid() } }, { "purchase_esims", { amount = 1 } } } } })
    assert.equal(0, #c.sends)
    assert.equal(2, c.failed)
    for _, r in ipairs(c.results) do assert.matches("the client was closed during the batch", r.err.message) end
    assert.is_true(c.finished - c.closed < 1.5, c.finished - c.closed)
    assert.is_true(c.closed - at429 < 3.5, c.closed - at429) -- both closed during the pause
    assert.equal(1, #stub:requests()) -- A's only
  end)

  it("a client closed while a single call waits to retry sends nothing more", function()
    local id = helpers.uuid()
    stub:queue{ path = card_path(id), status = 503, headers = { ["retry-after-ms"] = "1500" }, json = { errors = {} } }
    local b = run_in(workers[2], { client = { max_retries = 2 }, close_after = 0.3,
      calls = { { "get_sim_card", { id = id } } } })
    assert.equal(1, #b.sends)
    assert.equal("get_sim_card: the client was closed while waiting to retry", b.results[1].err.message)
    assert.equal(1, b.results[1].err.attempts)
    assert.equal(1, count(card_path(id)))
    -- the C client's err for the same (its sleep function closes it): the message resty repeats
    stub:queue{ path = card_path(id), status = 503, headers = { ["retry-after-ms"] = "10" }, json = { errors = {} } }
    local direct
    direct = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 2,
      sleep = function() direct:close() end })
    local _, err = direct:get_sim_card(id)
    assert.equal(err.kind, b.results[1].err.kind)
    assert.equal(err.message, b.results[1].err.message)
    assert.equal(err.attempts, b.results[1].err.attempts)
    assert.equal(2, count(card_path(id)))
  end)

  it("without shared_dict, worker B is not delayed (each batch pauses on its own)", function()
    local _, at429, a_id = a_gets_429()
    local b_id = helpers.uuid()
    local b = run_in(workers[2], { calls = { { "get_sim_card", { id = b_id } } } })
    assert.is_nil(b.results[1].err, b.results[1].err and b.results[1].err.string)
    local delay = b.sends[1].sent - at429
    assert.is_true(delay < ASKED - 0.5, "B sent " .. delay .. " s after A's 429")
    assert.is_true(b.finished - b.started < 1, b.finished - b.started)
    assert.equal(1, count(card_path(a_id)))
    assert.equal(1, count(card_path(b_id)))
  end)

  it("another origin (the same fake as localhost) is not delayed by it", function()
    local _, at429 = a_gets_429{ shared_dict = DICT }
    local b_id = helpers.uuid()
    local b = run_in(workers[2], { client = { shared_dict = DICT, base_url = stub.base_url:gsub("127%.0%.0%.1",
      "localhost") }, calls = { { "get_sim_card", { id = b_id } } } })
    assert.is_nil(b.results[1].err, b.results[1].err and b.results[1].err.string)
    assert.is_true(b.sends[1].sent - at429 < ASKED - 0.5, b.sends[1].sent - at429)
    -- while a client of the paused origin in the same worker still waits
    local c = run_in(workers[2], { client = { shared_dict = DICT }, calls = { { "get_sim_card", { id = b_id } } } })
    assert.is_true(c.sends[1].sent - at429 >= ASKED - 0.5, c.sends[1].sent - at429)
  end)

  it("resty.new refuses a shared_dict nginx.conf does not declare, or one that is not a name", function()
    for _, case in ipairs{ { "no_such_dict", "config", "lua_shared_dict no_such_dict" }, { 42, "invalid_params",
      "must be the name of a lua_shared_dict" } } do
      local res = assert(helpers.http{ port = server.port, method = "POST", path = "/new",
        body = helpers.encode{ client = { api_key = KEY, base_url = stub.base_url, shared_dict = case[1] } } })
      local out = helpers.decode(res.body)
      assert.is_false(out.ok)
      assert.equal("shared_dict", out.err.field)
      assert.equal(case[2], out.err.kind)
      assert.matches(case[3], out.err.message, 1, true)
    end
    local res = assert(helpers.http{ port = server.port, method = "POST", path = "/new",
      body = helpers.encode{ client = { api_key = KEY, base_url = stub.base_url, shared_dict = DICT } } })
    assert.is_true(helpers.decode(res.body).ok, res.body)
    assert.same({}, stub:requests())
  end)
end)
