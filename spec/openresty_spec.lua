-- telnyx.sim.resty in a real nginx (Debian's nginx + libnginx-mod-http-lua,
-- LuaJIT), proxying to the stub server: results, errors, the retry policy,
-- the headers that reach the API, and that the worker never blocks.
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local sim = require "telnyx.sim"
local socket = require "socket"

local KEY = "KEYresty0123456789SECRET"
local USER_COOKIE = "session=END-USER-COOKIE-7f3a"
local USER_AUTH = "Bearer END-USER-TOKEN-91c2"

-- The internal proxy location, as docs/openresty.md gives it (plain http to the stub
-- instead of TLS to api.telnyx.com).
local PROXY_LOCATION = [[
    location /{{NAME}}/ {
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
      proxy_read_timeout {{READ_TIMEOUT}};
      {{HOOK}}
      proxy_pass http://{{UPSTREAM}}/v2/;
    }
]]

local HOOK = [[header_filter_by_lua_block { require("telnyx.sim.resty").note_upstream() }]]

local function proxy_location(name, upstream, hook, read_timeout)
  return (PROXY_LOCATION:gsub("{{([%u_]+)}}",
    { NAME = name, UPSTREAM = upstream, HOOK = hook and HOOK or "", READ_TIMEOUT = read_timeout or "5s" }))
end

local CONF = [[
{{MODULES}}
{{USER}}
worker_processes 1;
error_log {{DIR}}/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  {{TEMP_PATHS}}
  lua_package_path "{{REPO}}/?.lua;;";
  lua_package_cpath "{{REPO}}/build/luajit/?.so;;";
  init_by_lua_block { require("spec.support.openresty_app").init("{{KEY}}", "capture") }
  upstream telnyx_stub { server 127.0.0.1:{{STUB_PORT}}; keepalive 8; }
  upstream nobody_listens { server 127.0.0.1:{{DEAD_PORT}}; }
  server {
    listen 127.0.0.1:{{PORT}};
]] .. proxy_location("_telnyx", "telnyx_stub", true)
   .. proxy_location("_dead", "nobody_listens", true)
   .. proxy_location("_nohook", "telnyx_stub", false)
   .. proxy_location("_impatient", "telnyx_stub", true, "1s") .. [[
    location = /call    { content_by_lua_block { require("spec.support.openresty_app").call() } }
    location = /rewrite { rewrite_by_lua_block { require("spec.support.openresty_app").call() } }
    location = /access  { access_by_lua_block { require("spec.support.openresty_app").call() } }
    location = /timer   { content_by_lua_block { require("spec.support.openresty_app").timer() } }
    location = /stored  { content_by_lua_block { require("spec.support.openresty_app").stored() } }
    location = /ping    { content_by_lua_block { require("spec.support.openresty_app").answer(nil, "pong\n") } }
    location = /set {
      set_by_lua_block $result { return require("spec.support.openresty_app").in_set("{{KEY}}") }
      content_by_lua_block { require("spec.support.openresty_app").answer(nil, ngx.var.result) }
    }
    location = /filters {
      content_by_lua_block { require("spec.support.openresty_app").answer(nil, "ok") }
      header_filter_by_lua_block { require("spec.support.openresty_app").in_filter("header_filter", "{{KEY}}") }
      log_by_lua_block { require("spec.support.openresty_app").in_filter("log", "{{KEY}}") }
    }
  }
}
]]

describe("telnyx.sim.resty outside nginx", function()
  local resty = require "telnyx.sim.resty"

  it("loads, lists the operations, and says where it runs", function()
    assert.same(sim.operations, resty.operations)
    assert.equal(sim._VERSION, resty._VERSION)
    local client, err = resty.new{ api_key = KEY }
    assert.is_nil(client)
    assert.equal("config", err.kind)
    assert.matches("OpenResty", tostring(err))
  end)

  it("returns nil, err for wrong options, like sim.new, and passes sim.new's errors on", function()
    for _, case in ipairs{
      { { api_key = KEY, location = 5 }, "location", "^resty%.new: 'location' must be a path" },
      { { api_key = KEY, transport = "curl" }, "transport", "^resty%.new: 'transport' must be a function" },
      { { api_key = KEY, bogus = 1 }, "bogus", "^sim%.new: unknown option 'bogus'" },
    } do
      local c, e = resty.new(case[1])
      assert.is_nil(c)
      assert.equal(case[2], e.field)
      assert.matches(case[3], e.message)
    end
    local client, err = resty.new{ api_key = KEY, base_url = "ftp://x" }
    assert.is_nil(client)
    assert.equal("config", err.kind)
    assert.matches("base_url", err.message)
  end)
end)

local available, why = nginx.available()

local describe_nginx = available and describe or function(name)
  describe(name, function() pending("nginx with libnginx-mod-http-lua is not installed: " .. tostring(why)) end)
end

describe_nginx("telnyx.sim.resty in nginx #nginx", function()
  local stub, server, dead_port

  setup(function()
    nginx.build_luajit_module()
    stub = helpers.start_stub()
    dead_port = nginx.free_port()
    server = nginx.start{ conf = CONF, values = { STUB_PORT = stub.port, DEAD_PORT = dead_port, KEY = KEY } }
  end)

  teardown(function()
    if server then server:stop() end
    if stub then stub:stop() end
  end)

  before_each(function()
    stub:reset()
  end)

  -- Whatever a test did, nothing of the end user's reached the API.
  after_each(function()
    for _, req in ipairs(stub:requests()) do
      assert.is_nil(req.headers["cookie"])
      assert.is_nil(req.headers["x-forwarded-for"])
      for name, value in pairs(req.headers) do assert.not_matches("END%-USER", value, name) end
    end
  end)

  -- A request to nginx as an end user would send it: with their own cookie
  -- and Authorization, which must never reach the API.
  local function nginx_http(path, payload, method)
    local res = assert(helpers.http{
      port = server.port, method = method or (payload and "POST" or "GET"), path = path, timeout = 15,
      headers = { cookie = USER_COOKIE, authorization = USER_AUTH, ["x-forwarded-for"] = "203.0.113.9" },
      body = payload and helpers.encode(payload) or nil,
    })
    return res
  end

  -- (the proxy location is what this spec tests: transport = "capture" unless it says otherwise,
  -- even where lua-resty-http would make the cosocket transport the default)
  local function call(payload, path)
    payload.client = payload.client or {}
    payload.client.api_key = payload.client.api_key or KEY
    if payload.client.transport == nil and not payload.client.blocking then payload.client.transport = "capture" end
    local res = nginx_http(path or "/call", payload)
    assert.equal(200, res.status, res.body)
    return helpers.decode(res.body), res
  end

  local function no_traffic()
    assert.same({}, stub:requests())
  end

  describe("returns the SIM cards", function()
    it("of a purchase", function()
      local out = call{ op = "purchase_esims", params = { amount = 3, tags = { "fleet" } } }
      assert.is_nil(out.err)
      assert.equal(3, #out.res.data)
      for _, card in ipairs(out.res.data) do
        assert.equal("sim_card", card.record_type)
        assert.equal("esim", card.type)
        assert.same({ "fleet" }, card.tags)
      end
      assert.equal(1, #stub:requests())
    end)

    it("of a registration, with the per-code errors", function()
      local out = call{ op = "register_sim_cards", params = { registration_codes = { "0000000001", "9990000002" } } }
      assert.is_nil(out.err)
      assert.equal(1, #out.res.data)
      assert.equal("physical", out.res.data[1].type)
      assert.equal(1, #out.res.errors)
      assert.equal("10008", out.res.errors[1].code)
    end)

    it("of a single card by id: a GET with its query string", function()
      local id = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
      local out = call{ op = "get_sim_card", params = { id = id, include_sim_card_group = true } }
      assert.is_nil(out.err)
      assert.equal(id, out.res.data.id)
      local req = stub:last_request()
      assert.equal("GET", req.method)
      assert.equal("/v2/sim_cards/" .. id, req.path)
      assert.equal("include_sim_card_group=true", req.query)
      assert.equal("", req.body)
    end)

    for _, path in ipairs{ "/rewrite", "/access" } do
      it("from " .. path:sub(2) .. "_by_lua", function()
        local out = call({ op = "purchase_esims", params = { amount = 1 } }, path)
        assert.is_nil(out.err)
        assert.equal(1, #out.res.data)
      end)
    end

    it("reusing kept-alive upstream connections", function()
      for _ = 1, 3 do call{ op = "purchase_esims", params = { amount = 1 } } end
      local reqs = stub:requests()
      assert.equal(3, #reqs)
      assert.equal(reqs[1].conn, reqs[3].conn)
    end)
  end)

  describe("shares every helper of the C client", function()
    -- call, each (two per page) and wait_for_action through resty: the same Lua
    -- (telnyx/sim/flow.lua), waiting with ngx.sleep
    local function check_flow(out, tag)
      assert.is_nil(out.err, out.err and out.err.string)
      assert.equal(3, out.res.bought)
      assert.equal(3, #out.res.listed)
      assert.equal("completed", out.res.action_status)
      assert.equal("enabled", out.res.card_status)
      local pages, polls = {}, 0
      for _, req in ipairs(stub:requests()) do
        if req.path == "/v2/sim_cards" then pages[#pages + 1] = req.query end
        if req.path:match("^/v2/sim_card_actions/") then polls = polls + 1 end
      end
      local filter = "filter[tags]=" .. tag .. "&page[number]="
      assert.same({ filter .. "1&page[size]=2", filter .. "2&page[size]=2" }, pages)
      assert.is_true(polls >= 1)
    end

    it("in a content handler", function()
      check_flow(call{ op = "flow", params = { tag = "resty-flow" } }, "resty-flow")
    end)

    it("in a timer, with a transport function", function()
      local out = call({ op = "flow", params = { tag = "resty-timer" },
        client = { transport = "custom", base_url = stub.base_url } }, "/timer")
      assert.equal("timer", out.phase)
      check_flow(out, "resty-timer")
    end)
  end)

  describe("sends what the plain-Lua path sends", function()
    it("the same JSON body and the same module headers, and nothing of the end user's", function()
      local params = { amount = 2, tags = { "a", "b" }, status = "standby", sim_card_group_id = helpers.default_sim_card_group_id }
      local direct = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0 })
      assert(direct:purchase_esims(params, { idempotency_key = "same-key" }))
      direct:close()
      call{ op = "purchase_esims", params = params, opts = { idempotency_key = "same-key" } }
      call{ op = "register_sim_cards", params = { registration_codes = { "0000000001" } } }
      local reqs = stub:requests()
      assert.equal(3, #reqs)
      local plain, viaresty, register = reqs[1], reqs[2], reqs[3]
      assert.equal(plain.body, viaresty.body)
      assert.equal(plain.method, viaresty.method)
      assert.equal(plain.path, viaresty.path)
      for _, name in ipairs{ "authorization", "content-type", "accept", "idempotency-key", "content-length" } do
        assert.equal(plain.headers[name], viaresty.headers[name], name)
      end
      -- the User-Agent names the transport that sent it: libcurl, or nginx's subrequest (nginx's LuaJIT says "Lua 5.1")
      local version = sim._VERSION:gsub("%.", "%%.")
      assert.matches("^telnyx%-sim%-lua/" .. version .. " %(Lua 5%.%d; libcurl/[%d.]+%)$", plain.headers["user-agent"])
      assert.matches("^telnyx%-sim%-lua/" .. version .. " %(Lua 5%.1; capture; nginx/%d+%.%d+%.%d+; ngx_lua/%d+%.%d+%.%d+%)$",
        viaresty.headers["user-agent"])
      -- exactly these headers arrive, nothing else (no Cookie, no end-user Authorization, no X-Forwarded-For)
      local names = {}
      for name in pairs(viaresty.headers) do names[#names + 1] = name end
      table.sort(names)
      assert.same({ "accept", "authorization", "content-length", "content-type", "host", "idempotency-key", "user-agent" }, names)
      names = {}
      for name in pairs(register.headers) do names[#names + 1] = name end
      table.sort(names)
      assert.same({ "accept", "authorization", "content-length", "content-type", "host", "user-agent" }, names)
      for _, req in ipairs(reqs) do
        for name, value in pairs(req.headers) do
          assert.not_matches("END%-USER", value, name)
          assert.not_equal("cookie", name)
        end
      end
    end)

    it("and refuses per-call headers it cannot carry, before any traffic", function()
      local out = call{ op = "purchase_esims", params = { amount = 1 }, opts = { headers = { ["X-Trace"] = "t" } } }
      assert.equal("invalid_params", out.err.kind)
      assert.equal("opts.headers", out.err.field)
      assert.matches("X%-Trace", out.err.message)
      no_traffic()
    end)
  end)

  describe("errors", function()
    it("a 422 gives the API's errors, and the API key never reaches the end user", function()
      stub:queue{ status = 422, headers = { ["x-request-id"] = "rq-422", ["x-echo-key"] = "Bearer " .. KEY },
        json = { errors = { helpers.api_error("10015", "Invalid parameter", "bad key " .. KEY, "/amount") } } }
      local out, raw = call{ op = "purchase_esims", params = { amount = 1 } }
      assert.equal("http", out.err.kind)
      assert.equal(422, out.err.status)
      assert.equal("rq-422", out.err.request_id)
      assert.equal("10015", out.err.errors[1].code)
      assert.is_false(out.err.retryable)
      assert.equal(1, out.err.attempts)
      assert.not_matches(KEY, raw.body)
      for name, value in pairs(raw.headers) do assert.not_matches(KEY, value, name) end
      assert.matches("REDACTED", raw.body)
    end)

    it("a 500 on a purchase is not retried: one request only", function()
      stub:queue{ status = 500, json = { errors = {} }, ["repeat"] = 3 }
      local out = call{ op = "purchase_esims", params = { amount = 1 }, client = { max_retries = 2 } }
      assert.equal("http", out.err.kind)
      assert.equal(500, out.err.status)
      assert.is_false(out.err.retryable)
      assert.matches("may have gone through", out.err.message)
      assert.equal(1, out.err.attempts)
      assert.equal(1, #stub:requests())
    end)

    it("a 503 on a registration is retried, waiting with ngx.sleep", function()
      stub:queue{ status = 503, headers = { ["retry-after-ms"] = "50" }, json = { errors = {} } }
      local out = call{ op = "register_sim_cards", params = { registration_codes = { "1" } }, client = { max_retries = 1 } }
      assert.is_nil(out.err)
      assert.equal(1, #out.res.data)
      assert.equal(2, #stub:requests())
    end)

    it("a timeout after sending a purchase (the proxy's 504) is not retried", function()
      stub:queue{ delay = 3, status = 202, json = { data = {} } }
      local out = call{ op = "purchase_esims", params = { amount = 1 }, client = { location = "/_impatient", max_retries = 2 } }
      assert.equal("timeout", out.err.kind)
      assert.is_nil(out.err.status)
      assert.is_false(out.err.retryable)
      assert.matches("may have gone through", out.err.message)
      assert.equal(1, #stub:requests())
    end)

    it("a connection reset after sending (the proxy's 502) is 'connection', not retried for a purchase", function()
      stub:queue{ mode = "reset" }
      local out = call{ op = "purchase_esims", params = { amount = 1 }, client = { max_retries = 2 } }
      assert.equal("connection", out.err.kind)
      assert.is_false(out.err.retryable)
      assert.equal(1, #stub:requests())
    end)

    it("an upstream's own 502 stays an HTTP response", function()
      stub:queue{ status = 502, headers = { ["x-request-id"] = "rq-502" }, json = { errors = {} } }
      local out = call{ op = "purchase_esims", params = { amount = 1 } }
      assert.equal("http", out.err.kind)
      assert.equal(502, out.err.status)
      assert.equal("rq-502", out.err.request_id)
    end)

    it("a body cut short is 'connection' (may have gone through)", function()
      stub:queue{ mode = "close_mid_body", status = 202 }
      local out = call{ op = "purchase_esims", params = { amount = 1 } }
      assert.equal("connection", out.err.kind)
      assert.is_false(out.err.retryable)
      assert.matches("cut short", out.err.message)
    end)

    it("nothing listening: provably not sent, so even a purchase is retried; the upstream is named", function()
      local out = call{ op = "purchase_esims", params = { amount = 1 }, client = { location = "/_dead", max_retries = 1 } }
      assert.equal("connection", out.err.kind)
      assert.matches("before the request was sent", out.err.message)
      -- the location and its upstream, never a header hook
      assert.matches("the proxy location /_dead could not reach its upstream 127.0.0.1:" .. dead_port
        .. " (HTTP 502 from nginx, upstream status 502): nothing was sent", out.err.message, 1, true)
      assert.not_matches("hook", out.err.message)
      assert.not_matches("note_upstream", out.err.message)
      assert.is_true(out.err.retryable)
      assert.equal(2, out.err.attempts)
      no_traffic()
    end)

    it("no proxy location at all (nginx's own 404): not sent, naming the location, not retried", function()
      for _, case in ipairs{ { "purchase_esims", { amount = 1 } }, { "get_sim_card", { id = helpers.uuid() } } } do
        local out = call{ op = case[1], params = case[2], client = { location = "/_nowhere", max_retries = 2 } }
        assert.equal("connection", out.err.kind, case[1])
        assert.matches("^" .. case[1] .. ": could not connect before the request was sent: the subrequest to "
          .. "/_nowhere/", out.err.message)
        assert.matches("never reached the proxy location (HTTP 404 from nginx itself: no location matches "
          .. "/_nowhere/): add the internal location /_nowhere/ that proxies to the API", out.err.message, 1, true)
        assert.not_matches("hook", out.err.message)
        assert.not_matches("may have gone through", out.err.message)
        -- a location nginx.conf lacks is not there on the next attempt either
        assert.is_false(out.err.retryable)
        assert.equal(1, out.err.attempts)
      end
      no_traffic()
    end)

    it("a proxy location without the note_upstream hook fails loudly, never as 'not sent'", function()
      local out = call{ op = "purchase_esims", params = { amount = 1 }, client = { location = "/_nohook", max_retries = 2 } }
      assert.equal("connection", out.err.kind)
      assert.matches("note_upstream", out.err.message)
      assert.is_false(out.err.retryable)
      assert.equal(1, #stub:requests())
    end)

    it("invalid params: no traffic", function()
      local out = call{ op = "purchase_esims", params = { amount = 0 } }
      assert.equal("invalid_params", out.err.kind)
      assert.equal("amount", out.err.field)
      out = call{ op = "register_sim_cards", params = { registration_codes = {}, typo = 1 } }
      assert.equal("invalid_params", out.err.kind)
      no_traffic()
    end)
  end)

  describe("phases", function()
    local function assert_phase_error(err, phase)
      assert.equal("config", err.kind)
      assert.matches("'" .. phase .. "' phase", err.message, 1, true)
      assert.matches("^telnyx%.sim: ", err.string)
    end

    it("init_by_lua: a clear config error", function()
      assert_phase_error(call({}, "/stored?name=init").err, "init")
      no_traffic()
    end)

    it("set_by_lua: a clear config error", function()
      local res = nginx_http("/set")
      assert.equal(200, res.status)
      assert_phase_error(helpers.decode(res.body).err, "set")
      no_traffic()
    end)

    it("header_filter_by_lua and log_by_lua: a clear config error, naming the function called", function()
      assert.equal(200, nginx_http("/filters").status)
      for _, phase in ipairs{ "header_filter", "log" } do
        local out = call({}, "/stored?name=" .. phase)
        assert_phase_error(out.err, phase)
        assert.matches("^purchase_esims: cannot run in nginx's '" .. phase .. "' phase", out.err.message)
        -- the helpers shared with the C client say their own name, not that of a call they would make
        for _, helper in ipairs{ "get_activation_codes", "wait_for_action", "each" } do
          assert_phase_error(out.helpers[helper], phase)
          assert.matches("^" .. helper .. ": cannot run in nginx's '" .. phase .. "' phase", out.helpers[helper].message)
        end
      end
      no_traffic()
    end)

    it("without lua-resty-http on lua_package_path, the default (cosockets) is refused, naming it: no silent fallback",
      function()
        for _, client in ipairs{ { api_key = KEY, transport = "cosocket" }, { api_key = KEY } } do
          local out = helpers.decode(nginx_http("/call", { op = "new", client = client }).body) -- no default here
          assert.equal("config", out.err.kind)
          assert.equal("transport", out.err.field)
          assert.matches("needs lua-resty-http: luarocks install lua-resty-http", out.err.message, 1, true)
          assert.matches("transport = \"capture\"", out.err.message, 1, true)
          assert.matches("resty.http", out.err.message)
        end
        -- the proxy location only when asked for
        assert.equal("capture", call({}, "/stored?name=init").transport)
        assert.equal("capture", call{ op = "new", client = { location = "/_telnyx" } }.transport)
      end)

    it("a timer with the capture transport: a config error asking for another", function()
      local out = call({ op = "purchase_esims", params = { amount = 1 } }, "/timer")
      assert.equal("timer", out.phase)
      assert_phase_error(out.err, "timer")
      assert.matches("transport", out.err.message)
      no_traffic()
    end)

    it("a timer with a transport function on cosockets: works", function()
      local out = call({ op = "purchase_esims", params = { amount = 2 },
        client = { transport = "custom", base_url = stub.base_url } }, "/timer")
      assert.equal("timer", out.phase)
      assert.is_nil(out.err)
      assert.equal(2, #out.res.data)
      assert.equal("Bearer " .. KEY, stub:last_request().headers["authorization"])
      assert.matches("^telnyx%-sim%-lua/[%d.]+ %(Lua 5%.1; custom transport; ngx_lua/[%d.]+%)$",
        stub:last_request().headers["user-agent"])
    end)

    it("a custom transport's provable 'not sent' is retried, a bare error is not", function()
      local out = call{ op = "purchase_esims", params = { amount = 1 },
        client = { transport = "custom", base_url = "http://127.0.0.1:" .. nginx.free_port() .. "/v2", max_retries = 1 } }
      assert.equal("connection", out.err.kind)
      assert.equal(2, out.err.attempts)
    end)
  end)

  -- The demo runs on cosockets: without lua-resty-http it is skipped (one pending line).
  local vendor_path, vendor_why = nginx.vendor_lua_path()
  local it_demo = vendor_path and it or function(name)
    helpers.skip_missing({ describe = describe, it = it, pending = pending }, name, vendor_why)
  end

  it_demo("examples/openresty (nginx.conf + handler.lua) runs as make demo-openresty runs it", function()
    local repo = nginx.repo_dir()
    local out_file = os.tmpname()
    local cmd = "cd '" .. repo .. "' && LUA_PATH='" .. repo .. "/?.lua;;' lua5.4 examples/openresty/run-demo.lua >"
      .. out_file .. " 2>&1; echo $?"
    local p = io.popen(cmd)
    local status = p:read("*a")
    p:close()
    local f = io.open(out_file)
    local out = f:read("*a")
    f:close()
    os.remove(out_file)
    assert.equal("0", status:match("%d+"), out)
    assert.matches("Purchased 3 eSIM%(s%)", out)
    assert.matches("Registered 2 SIM card%(s%)", out)
    assert.matches("9990000003%s+10008", out)
  end)

  -- Starts a purchase whose answer the stub delays 2 s, then sends 20 requests
  -- to /ping on the same (only) worker; returns the order in which they
  -- completed and the purchase's response.
  local function race(client)
    stub:queue{ delay = 2, status = 202, json = { data = { helpers.sim_card{ id = "slow" } } } }
    local slow = socket.tcp()
    slow:settimeout(10)
    assert(slow:connect("127.0.0.1", server.port))
    local body = helpers.encode{ op = "purchase_esims", params = { amount = 1 }, client = client }
    assert(slow:send("POST /call HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
    -- wait until the stub holds it: the worker has sent the purchase and waits
    local deadline = socket.gettime() + 5
    while #stub:requests() == 0 and socket.gettime() < deadline do socket.sleep(0.01) end
    assert.equal(1, #stub:requests())

    local order = {}
    for i = 1, 20 do
      local res = assert(helpers.http{ port = server.port, path = "/ping", timeout = 10 })
      assert.equal(200, res.status)
      assert.equal("pong\n", res.body)
      -- has the purchase's response arrived meanwhile?
      if #order < i and #socket.select({ slow }, nil, 0) > 0 then order[#order + 1] = "purchase" end
      order[#order + 1] = "ping"
    end
    local res = assert(helpers.read_response(slow))
    slow:close()
    if order[#order] == "ping" then order[#order + 1] = "purchase" end
    return order, res
  end

  local twenty_pings_then_purchase = {}
  for i = 1, 20 do twenty_pings_then_purchase[i] = "ping" end
  twenty_pings_then_purchase[21] = "purchase"

  it("never blocks the worker: 20 requests finish while a purchase waits 2 s", function()
    local order, res = race{ api_key = KEY, transport = "capture" }
    assert.same(twenty_pings_then_purchase, order)
    assert.equal(200, res.status)
    assert.equal("slow", assert(helpers.decode(res.body).res, res.body).data[1].id)
  end)

  it("(negative control: the libcurl client in the same worker does block it)", function()
    local order, res = race{ api_key = KEY, base_url = stub.base_url, blocking = true, max_retries = 0 }
    assert.equal("purchase", order[1])
    assert.equal(200, res.status)
    assert.equal("slow", assert(helpers.decode(res.body).res, res.body).data[1].id)
  end)
end)
