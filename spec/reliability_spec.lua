-- Reliability, round two (issue 10): a client used across fork(), empty-string
-- options, one-line errors, clearer words for odd responses, integers above
-- 2^53, and the OpenResty notes. (HTTP/2 faults: spec/http2_spec.lua.)
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local socket = require "socket"

local KEY = "KEYreliability0123456789"
local MAY_HAVE = "may have gone through"
local PURCHASE = "/v2/actions/purchase/esims"

local run, read_file, shell_quote, tmpname = helpers.run, helpers.read_file, helpers.shell_quote, helpers.tmpname

local support = helpers.support_dir
local repo = support:match("^(.*)/spec/support$") or "."

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- The interpreter busted runs, for child processes: its pkg-config name is its binary's.
local LUA_NAME = type(jit) == "table" and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
-- Children find the module where this process did.
local CHILD_ENV = "env LUA_CPATH=" .. shell_quote(package.cpath) .. " LUA_PATH=" .. shell_quote(package.path) .. " "

-- Runs Lua code in a child interpreter with `env` (a shell prefix such as
-- "TELNYX_BASE_URL=x"); returns what it printed.
local function child_lua(env, code)
  return capture(CHILD_ENV .. env .. " " .. LUA_NAME .. " -e " .. shell_quote(code) .. " 2>&1")
end

-- Every control character of s (tostring(err) must have none: one log line).
local function controls(s)
  return (s:gsub("[^%c]", ""))
end

describe("a client across fork()", function()
  local dir, forklua

  setup(function()
    dir = tmpname()
    assert(run("mkdir -p " .. shell_quote(dir)))
    -- Lua has no fork(): spec/support/forklua.c is a Lua interpreter with one,
    -- built against the Lua this suite runs under.
    local flags = capture("pkg-config --cflags --libs " .. LUA_NAME .. " 2>/dev/null"):gsub("%s+$", "")
    if flags == "" then
      flags = LUA_NAME == "luajit" and "-I/usr/include/luajit-2.1 -lluajit-5.1"
        or ("-I/usr/include/" .. LUA_NAME .. " -l" .. LUA_NAME)
    end
    forklua = dir .. "/forklua"
    local ok = run(("cc -std=c99 -O1 -o %s %s %s >%s/cc.log 2>&1"):format(shell_quote(forklua),
      shell_quote(support .. "/forklua.c"), flags, shell_quote(dir)))
    assert(ok, "could not build forklua: " .. tostring(read_file(dir .. "/cc.log")))
  end)

  teardown(function()
    if dir then run("rm -rf " .. shell_quote(dir)) end
  end)

  local function read_lines(path)
    local t = {}
    for name, value in (read_file(path) or ""):gmatch("([%w_]+)=([^\n]*)") do t[name] = value end
    return t
  end

  -- Runs spec/support/fork_scenario.lua; returns what the parent and the child got.
  local runs = 0
  local function scenario(base_url, opts)
    runs = runs + 1
    local out = dir .. "/out" .. runs
    local cmd = CHILD_ENV .. table.concat({ shell_quote(forklua), shell_quote(support .. "/fork_scenario.lua"),
      shell_quote(base_url), shell_quote(out), KEY, shell_quote(opts.ca_file or ""), opts.child,
      opts.batch and "1" or "0", opts.concurrent and "1" or "0" }, " ") .. " 2>" .. shell_quote(out .. ".stderr")
    assert(run(cmd), "fork scenario failed: " .. tostring(read_file(out .. ".stderr")))
    return read_lines(out .. ".parent"), read_lines(out .. ".child"), read_file(out .. ".stderr")
  end

  local function set_of(list)
    local s = {}
    for _, v in ipairs(list) do s[v] = true end
    return s
  end

  local function disjoint(a, b)
    for k in pairs(a) do if b[k] then return false end end
    return true
  end

  describe("over plain http to the stub", function()
    local stub

    setup(function() stub = helpers.start_stub() end)
    teardown(function() if stub then stub:stop() end end)
    before_each(function()
      stub:reset()
      stub:config{ delay = 0.3 } -- parent and child have their purchases in flight together
    end)

    -- { [amount] = { conn =, key =, count = } } of the purchases the stub saw
    local function purchases()
      local seen = {}
      for _, r in ipairs(stub:requests()) do
        if r.path == PURCHASE then
          local amount = helpers.decode(r.body).amount
          local s = seen[amount] or { count = 0 }
          s.count, s.conn, s.key = s.count + 1, r.conn, r.headers["idempotency-key"]
          seen[amount] = s
        end
      end
      return seen
    end

    it("parent and child each get their own answer, each on its own connection, nothing sent twice", function()
      local parent, child = scenario(stub.base_url, { child = "busy", concurrent = true })
      local seen = purchases()
      local conn = function(n) return seen[n] and seen[n].conn end
      -- the child never writes on the parent's kept-alive connection; the parent keeps it
      assert.is_not_nil(conn(1))
      assert.are_not.equal(conn(1), conn(2), "the child sent on the connection it inherited")
      assert.equal(conn(1), conn(3))
      assert.equal(conn(1), conn(4))
      -- each got its own answer (purchase{amount = n} brings n cards)
      assert.same({ first = "1", second = "3", child_status = "0", third = "4" }, parent)
      assert.same({ child = "2" }, child)
      -- every purchase reached the stub exactly once, each with its own Idempotency-Key
      local keys = {}
      for n = 1, 4 do
        assert.equal(1, seen[n] and seen[n].count, "purchase of " .. n)
        keys[seen[n].key] = true
      end
      local distinct = 0
      for _ in pairs(keys) do distinct = distinct + 1 end
      assert.equal(4, distinct)
      assert.equal(4, #stub:requests())
    end)

    it("with batches too: parent and child never share a connection, the batch's cached ones included", function()
      local parent, child = scenario(stub.base_url, { child = "busy", batch = true, concurrent = true })
      local seen = purchases()
      local function conns(list) -- (a purchase missing here fails the counts below)
        local c = {}
        for _, n in ipairs(list) do c[#c + 1] = seen[n] and seen[n].conn end
        return set_of(c)
      end
      assert.is_true(disjoint(conns{ 1, 3, 4, 5, 6, 9, 10 }, conns{ 2, 7, 8 }), "parent and child shared a connection")
      -- the parent's plain calls keep their kept-alive connection (a batch may open more, up to its concurrency)
      assert.same(conns{ 1 }, conns{ 3, 4 })
      assert.same({ first = "1", first_batch1 = "5", first_batch2 = "6", second = "3", second_batch1 = "9",
        second_batch2 = "10", child_status = "0", third = "4" }, parent)
      assert.same({ child = "2", child_batch1 = "7", child_batch2 = "8" }, child)
      for n = 1, 10 do assert.equal(1, (seen[n] or {}).count, "purchase of " .. n) end
      assert.equal(10, #stub:requests())
    end)
  end)

  -- Over TLS a connection is a session: a child that writes on it (a request,
  -- or the close_notify of a cleanup) breaks it for the parent. The server
  -- (spec/support/tls_conn_stub.py) logs how each connection ended.
  local tls_why_not
  if not run("command -v openssl >/dev/null 2>&1") then tls_why_not = "openssl is not installed"
  elseif not run("command -v python3 >/dev/null 2>&1") then tls_why_not = "python3 is not installed" end

  describe("over TLS", function()
    if tls_why_not then
      pending(tls_why_not)
      return
    end
    local tdir, base_url, log_file, server_pid

    setup(function()
      tdir = tmpname()
      assert(run("mkdir -p " .. shell_quote(tdir)))
      assert(run(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
        .. "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1")
        :format(tdir, tdir)), "openssl could not make a certificate")
    end)

    teardown(function()
      if tdir then run("rm -rf " .. shell_quote(tdir)) end
    end)

    local servers = 0
    local function start_server(delay)
      servers = servers + 1
      log_file = tdir .. "/log" .. servers
      local port_file = log_file .. ".port"
      assert(run(("python3 %s %s/cert.pem %s/key.pem %s %s %s %s </dev/null >%s.stderr 2>&1 & echo $! >%s.pid")
        :format(shell_quote(support .. "/tls_conn_stub.py"), tdir, tdir, shell_quote(port_file), shell_quote(log_file),
          tostring(delay), helpers.my_pid() or "1", shell_quote(log_file), shell_quote(log_file))))
      server_pid = (read_file(log_file .. ".pid") or ""):match("%d+")
      local port
      for _ = 1, 200 do
        port = (read_file(port_file) or ""):match("^(%d+)\n")
        if port then break end
        socket.sleep(0.05)
      end
      assert(port, "the TLS server did not start: " .. tostring(read_file(log_file .. ".stderr")))
      base_url = "https://127.0.0.1:" .. port .. "/v2"
    end

    after_each(function()
      if server_pid then run("kill " .. server_pid .. " 2>/dev/null") end
      server_pid = nil
    end)

    -- The server's log: requests by amount, connection ends by connection.
    local function server_log()
      socket.sleep(0.2) -- the parent's own closing, logged as it exits
      local by_amount, ends, events = {}, {}, {}
      for line in (read_file(log_file) or ""):gmatch("[^\n]+") do
        local e = helpers.decode(line)
        events[#events + 1] = e
        if e.event == "request" then
          local s = by_amount[e.amount] or { count = 0 }
          s.count, s.conn, s.seq = s.count + 1, e.conn, e.seq
          by_amount[e.amount] = s
        else
          ends[e.conn] = e
        end
      end
      return by_amount, ends, events
    end

    local function conns(by_amount, list) -- (a purchase missing here fails the checks after)
      local c = {}
      for _, n in ipairs(list) do c[#c + 1] = by_amount[n] and by_amount[n].conn end
      return set_of(c)
    end

    it("a child that ends without a call never shuts the parent's connections down", function()
      start_server(0)
      local parent = scenario(base_url, { ca_file = tdir .. "/cert.pem", child = "idle", batch = true })
      local by_amount, ends = server_log()
      local before = conns(by_amount, { 1, 5, 6 })
      for c in pairs(before) do
        -- a close_notify from the child's cleanup would end the connection before the parent's next calls
        assert.is_true(ends[c] == nil or ends[c].seq > (by_amount[4] or { seq = 0 }).seq,
          "connection " .. c .. " ended (" .. tostring(ends[c] and ends[c].how) .. ") while the parent still had it")
      end
      assert.same(conns(by_amount, { 1 }), conns(by_amount, { 3, 4 }), "the parent had to open a new connection")
      assert.same({ first = "1", first_batch1 = "5", first_batch2 = "6", second = "3", second_batch1 = "9",
        second_batch2 = "10", child_status = "0", third = "4" }, parent)
    end)

    it("a busy child: no broken session, no false 'may have gone through', nothing sent twice", function()
      start_server(0.3)
      local parent, child = scenario(base_url, { ca_file = tdir .. "/cert.pem", child = "busy", batch = true,
        concurrent = true })
      local by_amount, ends = server_log()
      for c, e in pairs(ends) do
        assert.is_nil(e.how:match("^error"), "connection " .. c .. " ended with " .. e.how)
      end
      assert.is_true(disjoint(conns(by_amount, { 1, 3, 4, 5, 6, 9, 10 }), conns(by_amount, { 2, 7, 8 })),
        "parent and child shared a connection")
      assert.same({ first = "1", first_batch1 = "5", first_batch2 = "6", second = "3", second_batch1 = "9",
        second_batch2 = "10", child_status = "0", third = "4" }, parent)
      assert.same({ child = "2", child_batch1 = "7", child_batch2 = "8" }, child)
      for n = 1, 10 do assert.equal(1, (by_amount[n] or {}).count, "purchase of " .. n) end
    end)
  end)
end)

describe("an empty string option", function()
  it("is refused with kind config, naming the option, for every string option with a default", function()
    for _, name in ipairs{ "api_key", "base_url", "ca_file", "ca_path" } do
      local opts = { api_key = KEY, base_url = "https://api.telnyx.com/v2" }
      opts[name] = ""
      local c, err = sim.new(opts)
      assert.is_nil(c, name)
      assert.same({ "config", name }, { err.kind, err.field })
      assert.matches("option '" .. name .. "' is empty", err.message, 1, true)
    end
  end)

  it("is refused while TELNYX_BASE_URL and TELNYX_API_KEY are set, never replaced by them or by production", function()
    local out = child_lua("TELNYX_API_KEY=envkey TELNYX_BASE_URL=http://127.0.0.1:9/v2", [[
      local sim = require("telnyx.sim")
      for _, opts in ipairs{ { base_url = "" }, { api_key = "" }, { ca_file = "" }, { ca_path = "" } } do
        local c, err = sim.new(opts)
        print(tostring(c), err and err.kind, err and err.field)
      end
      print(tostring(sim.new{}))]])
    assert.equal("nil\tconfig\tbase_url\nnil\tconfig\tapi_key\nnil\tconfig\tca_file\nnil\tconfig\tca_path\n"
      .. "telnyx.sim.client (http://127.0.0.1:9/v2)\n", out)
  end)

  it("in the environment: TELNYX_BASE_URL set but empty is refused rather than read as production", function()
    local out = child_lua("TELNYX_API_KEY=envkey TELNYX_BASE_URL=", [[
      local c, err = require("telnyx.sim").new()
      print(tostring(c), err.kind, err.field, err.message)]])
    assert.equal("nil\tconfig\tbase_url\tsim.new: TELNYX_BASE_URL is set but empty: unset it to use "
      .. "https://api.telnyx.com/v2, or give a URL\n", out)
    -- and an empty TELNYX_API_KEY is no key
    out = child_lua("TELNYX_API_KEY= TELNYX_BASE_URL=http://127.0.0.1:9/v2", [[
      local c, err = require("telnyx.sim").new()
      print(tostring(c), err.kind, err.message)]])
    assert.equal("nil\tconfig\tsim.new: no API key: pass api_key or set TELNYX_API_KEY\n", out)
  end)

  it("is refused by telnyx.sim.resty.new as well (its own location too)", function()
    local resty = require "telnyx.sim.resty"
    local c, err = resty.new{ api_key = KEY, base_url = "" }
    assert.is_nil(c)
    assert.same({ "config", "base_url" }, { err.kind, err.field })
    c, err = resty.new{ api_key = KEY, location = "" }
    assert.is_nil(c)
    assert.same({ "invalid_params", "location" }, { err.kind, err.field })
    assert.matches("'location' must be a path", err.message)
  end)
end)

describe("tostring(err)", function()
  local stub, client

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    client = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0 })
  end)

  it("is one line when the API's error title and detail hold CR, LF and ESC; err.errors keeps them raw", function()
    local title = "Bad amount\r\n2026-01-01 INFO purchase ok"
    local detail = "see \27[31mthe docs\27[0m\ttoday\n"
    stub:queue{ status = 422, json = { errors = { helpers.api_error("10015", title, detail) } } }
    local _, err = client:purchase_esims{ amount = 1 }
    assert.equal("", controls(tostring(err)))
    assert.equal("", controls(err.message))
    assert.equal("purchase_esims: HTTP 422: Bad amount\\r\\n2026-01-01 INFO purchase ok: "
      .. "see \\x1b[31mthe docs\\x1b[0m\\ttoday\\n", err.message)
    assert.equal(title, err.errors[1].title)
    assert.equal(detail, err.errors[1].detail)
  end)

  it("escapes a Location, a Content-Type and an x-request-id with control characters", function()
    stub:queue{ mode = "raw", body = "HTTP/1.1 302 Found\r\nLocation: https://x.test/\27[2J\7\r\n"
      .. "x-request-id: rq\27]0;owned\7\r\nContent-Length: 0\r\n\r\n" }
    local _, err = client:register_sim_cards{ registration_codes = { "0000000001" } }
    assert.equal("register_sim_cards: HTTP 302: redirects are not followed (Location: https://x.test/\\x1b[2J\\x07)",
      err.message)
    assert.equal("rq\27]0;owned\7", err.request_id)
    assert.equal("telnyx.sim: " .. err.message .. " (request_id rq\\x1b]0;owned\\x07)", tostring(err))
    stub:queue{ mode = "raw", body = "HTTP/1.1 500 Oops\r\nContent-Type: text/\27[31mhtml\r\nContent-Length: 3\r\n"
      .. "Connection: close\r\n\r\nabc" }
    _, err = client:register_sim_cards{ registration_codes = { "0000000001" } }
    assert.equal("register_sim_cards: HTTP 500 with a non-JSON body (text/\\x1b[31mhtml)", err.message)
  end)

  it("escapes a transport's message, and the message of sim.error", function()
    local req = assert(client:request("purchase_esims", { amount = 1 }))
    local _, err = client:interpret(req, { failure = "broken", message = "reset\n2026-01-01 INFO purchase ok" })
    assert.equal("", controls(tostring(err)))
    assert.matches("(reset\\n2026-01-01 INFO purchase ok); it " .. MAY_HAVE, err.message, 1, true)
    local mine = sim.error("http", "two\nlines", { request_id = "r\r\n" })
    assert.equal("two\nlines", mine.message)
    assert.equal("telnyx.sim: two\\nlines (request_id r\\r\\n)", tostring(mine))
  end)
end)

describe("clearer words", function()
  local stub, client

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    client = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 2, sleep = function() end })
  end)

  it("an unexpected 101 on a purchase keeps the money rule and says it may have gone through", function()
    stub:queue{ mode = "raw", body = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" }
    local _, err = client:purchase_esims{ amount = 1 }
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches(MAY_HAVE .. ": check the SIM card list", err.message, 1, true)
    assert.equal(1, #stub:requests())
    -- a transport handing over a 1xx as the response: the same words, no retry
    local req = assert(client:request("purchase_esims", { amount = 1 }))
    for _, status in ipairs{ 100, 101, 103, 199 } do
      local res, e, retry_in = client:interpret(req, { status = status, headers = {}, body = "" })
      assert.is_nil(res)
      assert.is_nil(retry_in, status)
      assert.is_false(e.retryable)
      assert.equal(status, e.status)
      assert.matches(MAY_HAVE .. ": check the SIM card list", e.message, 1, true)
    end
  end)

  it("LOCALHOST and LocalHost are loopback (host names are case-insensitive)", function()
    for _, host in ipairs{ "LOCALHOST", "LocalHost" } do
      local c, err = sim.new{ api_key = KEY, base_url = "http://" .. host .. ":" .. stub.port .. "/v2", max_retries = 0 }
      assert.is_nil(err, host)
      assert(c:register_sim_cards{ registration_codes = { "0000000001" } })
    end
    assert.equal(2, #stub:requests())
  end)

  it("a 1 MiB response header is reported as headers too large, not as libcurl's 'Out of memory'", function()
    stub:queue{ mode = "raw", body = "HTTP/1.1 202 Accepted\r\nX-Big: " .. ("a"):rep(1024 * 1024)
      .. "\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" }
    local _, err = client:purchase_esims{ amount = 1 }
    assert.equal("decode", err.kind)
    assert.matches("^purchase_esims: the response headers were larger than libcurl accepts %(libcurl: .*; HTTP 202%); "
      .. "the request was accepted: check the SIM card list$", err.message)
    assert.equal(202, err.status)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    -- too many headers in all, on a safe call's 500: the same words, and no retry (it would get the same)
    local lines = {}
    for i = 1, 8000 do lines[i] = ("X-H%d: %s"):format(i, ("b"):rep(40)) end
    stub:queue{ mode = "raw", body = "HTTP/1.1 500 Oops\r\n" .. table.concat(lines, "\r\n")
      .. "\r\nContent-Length: 2\r\n\r\n{}" }
    _, err = client:register_sim_cards{ registration_codes = { "0000000001" } }
    assert.equal("decode", err.kind)
    assert.matches("^register_sim_cards: the response headers were larger than libcurl accepts %(libcurl: .*; HTTP 500%)$",
      err.message)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.equal(2, #stub:requests())
  end)
end)

describe("integers above 2^53", function()
  local stub, client

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    client = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0 })
  end)

  local function bought(numbers)
    stub:queue{ status = 202, headers = { ["content-type"] = "application/json" },
      body = '{"data":[{"record_type":"sim_card","n":[' .. table.concat(numbers, ",") .. "]}]}" }
    local res = assert(client:purchase_esims{ amount = 1 })
    return res.data[1].n
  end

  if math.type and helpers.cjson_fork then
    it("come back exact, as Lua integers, from -2^63 to 2^63-1 (5.3+, OpenResty's lua-cjson)", function()
      local n = bought{ "9007199254740993", "9223372036854775807", "-9223372036854775808", "-9007199254740993" }
      for i, want in ipairs{ 9007199254740993, math.maxinteger, math.mininteger, -9007199254740993 } do
        assert.equal("integer", math.type(n[i]))
        assert.equal(want, n[i])
      end
      -- beyond 64 bits: lua-cjson's choice, the nearest integer (clamped), as docs/internals.md says
      n = bought{ "9223372036854775808", "1e300", "9007199254740993.0" }
      assert.equal(math.maxinteger, n[1])
      assert.equal(1e300, n[2])
      -- a fraction or an exponent means a double first: integral, so an integer, but rounded
      assert.equal("integer", math.type(n[3]))
      assert.equal(9007199254740992, n[3])
    end)
  elseif math.type then
    it("are the nearest double under Debian's lua-cjson 2.1.0 (5.3+), integers where integral up to 2^53", function()
      local n = bought{ "9007199254740992", "9007199254740993", "9223372036854775807", "-42" }
      assert.equal("integer", math.type(n[1]))
      assert.equal(9007199254740992, n[1])
      assert.equal("integer", math.type(n[2]))
      assert.equal(9007199254740992, n[2]) -- 2^53 + 1 has no double: it rounds to even
      assert.equal("float", math.type(n[3]))
      assert.equal(2 ^ 63, n[3])
      assert.equal("integer", math.type(n[4]))
    end)
  else
    it("are the nearest double on 5.1, 5.2 and LuaJIT, exact up to 2^53, as the docs say", function()
      local n = bought{ "9007199254740992", "-9007199254740992", "9007199254740993", "9007199254740995", "12345678901234567890" }
      assert.equal(2 ^ 53, n[1])
      assert.equal(-(2 ^ 53), n[2])
      assert.equal(2 ^ 53, n[3])      -- 2^53 + 1 has no double: it rounds to even
      assert.equal(2 ^ 53 + 4, n[4])
      assert.equal(12345678901234567168, n[5])
    end)
  end

  it("are stated precisely in docs/internals.md, and the README says the limits", function()
    local internals = assert(read_file(repo .. "/docs/internals.md"))
    assert.truthy(internals:find("exact from -2^63 to 2^63-1", 1, true))
    assert.truthy(internals:find("exact up to 2^53 in magnitude", 1, true))
    local readme = assert(read_file(repo .. "/README.md"))
    assert.truthy(readme:find("exact up to 2^53 in magnitude", 1, true))
  end)
end)

describe("OpenResty notes", function()
  local openresty = assert(read_file(repo .. "/docs/openresty.md"))

  it("the example nginx.conf sets its own pid, never the system nginx's", function()
    local conf = assert(read_file(repo .. "/examples/openresty/nginx.conf"))
    local pid = conf:match("\npid%s+([^;%s]+);")
    assert.is_not_nil(pid, "examples/openresty/nginx.conf has no top-level pid directive")
    assert.is_nil(pid:match("^/run/") or pid:match("^/var/run/"), pid)
  end)

  it("docs/openresty.md warns that debug logging writes the proxied Authorization header", function()
    assert.is_not_nil(openresty)
    assert.truthy(openresty:find("--with-debug", 1, true))
    assert.truthy(openresty:find("Authorization", 1, true))
    assert.truthy(openresty:find("error_log ... debug", 1, true))
  end)

  local nginx = require "spec.support.nginx"
  local available, why = nginx.available()
  if available and not run("nginx -V 2>&1 | grep -q -- --with-debug") then
    available, why = false, "this nginx is not built --with-debug"
  end

  it("and the warning is true: Debian's nginx at error_log debug logs the proxied key in clear", function()
    if not available then return pending(tostring(why)) end
    local stub = helpers.start_stub()
    local ok, failure = pcall(function()
      for _, level in ipairs{ "debug", "notice" } do
        local server = nginx.start{ conf = [[
{{USER}}
error_log {{DIR}}/logs/error.log ]] .. level .. [[;
events { worker_connections 64; }
http {
  {{TEMP_PATHS}}
  server {
    listen 127.0.0.1:{{PORT}};
    location / {
      proxy_pass_request_headers off;
      proxy_set_header Authorization "Bearer ]] .. KEY .. [[";
      proxy_pass http://127.0.0.1:]] .. stub.port .. [[;
    }
  }
}]] }
        local res = helpers.http{ port = server.port, path = "/v2/sim_cards" }
        local log = server:error_log()
        server:stop()
        assert.is_not_nil(res)
        assert.equal(level == "debug", log:find("Authorization: Bearer " .. KEY, 1, true) ~= nil, level)
      end
    end)
    stub:stop()
    assert(ok, failure)
  end)
end)
