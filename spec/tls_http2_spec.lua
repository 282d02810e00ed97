-- TLS + HTTP/2 the way the real API serves it: Debian's nginx listening with
-- `ssl http2` on a throw-away certificate (trusted through `ca_file`), in
-- front of the stateful stub (plain HTTP/1.1, kept-alive upstream).
--
-- nginx logs every request as "$connection $connection_requests
-- $server_protocol $request_method $request_uri $status": the specs read which
-- TLS connection carried each call (over h2, $connection_requests counts its
-- streams) and that it came as HTTP/2. nginx's stub_status counts every
-- connection accepted, those that never carried a request too. The stub says
-- how many requests were in flight at once and how often it saw each one.
--
-- Shown here: a single call over h2; sequential single calls on one
-- connection; a batch multiplexed over one connection, its calls in flight
-- together; the next batch on that same connection; a batch wider than the
-- connection's stream limit waiting for streams, not opening connections; the
-- money rule per call inside an h2 batch. (spec/http2_spec.lua covers h2
-- faults with a python-h2 stub.)
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local socket = require "socket"

local KEY = "KEYtlsh2abcdef0123456789SECRET"
local PURCHASE = "/v2/actions/purchase/esims"
local MAY_HAVE = "may have gone through"

local run, read_file, shell_quote = helpers.run, helpers.read_file, helpers.shell_quote

local CONF = [[
{{USER}}
worker_processes 1;
error_log {{DIR}}/logs/error.log info;
events { worker_connections 1024; }  # client and upstream connections alike
http {
  {{TEMP_PATHS}}
  log_format conns '$connection $connection_requests $server_protocol $request_method $request_uri $status';
  access_log {{DIR}}/logs/access.log conns;
  upstream stub { server 127.0.0.1:{{STUB_PORT}}; keepalive 64; }
  server {  # how many connections nginx accepted (this one's included)
    listen 127.0.0.1:{{STATUS_PORT}};
    access_log off;
    location = /status { stub_status; }
  }
  server {
    listen 127.0.0.1:{{PORT}} ssl http2;
    http2_max_concurrent_streams 128;  # nginx's default, said out loud
    ssl_certificate {{CERT_DIR}}/cert.pem;
    ssl_certificate_key {{CERT_DIR}}/key.pem;
    keepalive_timeout 60s;
    location / {
      proxy_pass http://stub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1;
      proxy_next_upstream off;  # nginx itself never re-sends: the stub's count is the module's
      proxy_read_timeout 10s;
    }
  }
}
]]

local why_not
do
  local ok, why = nginx.available()
  if not ok then
    why_not = why
  elseif not run("command -v openssl >/dev/null 2>&1") then
    why_not = "openssl is not installed"
  elseif not run("nginx -V 2>&1 | grep -q -- --with-http_v2_module") then
    why_not = "this nginx has no http_v2 module"
  end
end

if why_not then
  describe("TLS + HTTP/2 through nginx", function() pending(why_not) end)
  return
end

describe("TLS + HTTP/2 through nginx", function()
  local dir, stub, server, base_url, status_port

  setup(function()
    dir = helpers.tmpname()
    assert(run("mkdir -p " .. shell_quote(dir)))
    assert(run(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost "
      .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem "
      .. ">/dev/null 2>&1"):format(shell_quote(dir), shell_quote(dir))), "openssl could not make a certificate")
    stub = helpers.start_stub()
    status_port = nginx.free_port()
    server = nginx.start{ conf = CONF, values = { STUB_PORT = stub.port, CERT_DIR = dir, STATUS_PORT = status_port } }
    base_url = ("https://127.0.0.1:%d/v2"):format(server.port)
  end)

  teardown(function()
    if server then server:stop() end
    if stub then stub:stop() end
    if dir then run("rm -rf " .. shell_quote(dir)) end
  end)

  -- nginx's access log: { conn =, nreq =, proto =, method =, uri =, status = } per request.
  local function access_log()
    local out = {}
    for line in (read_file(server.dir .. "/logs/access.log") or ""):gmatch("[^\n]+") do
      local conn, nreq, proto, method, uri, status = line:match("^(%d+) (%d+) (%S+) (%S+) (%S+) (%d+)$")
      assert(conn, "unexpected access log line: " .. line)
      out[#out + 1] = { conn = tonumber(conn), nreq = tonumber(nreq), proto = proto, method = method, uri = uri,
        status = tonumber(status) }
    end
    return out
  end

  -- Log lines from `from` on (1-based), and the distinct connections among them.
  local function lines_since(from)
    local all, out, conns, seen = access_log(), {}, {}, {}
    for i = from, #all do
      out[#out + 1] = all[i]
      if not seen[all[i].conn] then
        seen[all[i].conn] = true
        conns[#conns + 1] = all[i].conn
      end
    end
    return out, conns
  end

  -- nginx writes a request's line once it is answered; wait until `n` lines are there.
  local function wait_lines(n)
    local deadline = socket.gettime() + 3
    while #access_log() < n and socket.gettime() < deadline do socket.sleep(0.01) end
    return #access_log()
  end

  -- Connections nginx accepted so far, over TLS or not: the log shows only
  -- those that carried a request, this counts every one the client opened.
  local function accepted()
    local res = assert(helpers.http{ port = status_port, path = "/status" })
    assert.equal(200, res.status)
    return assert(tonumber(res.body:match("\n%s*(%d+)%s+%d+%s+%d+")), res.body)
  end

  -- Runs f(); the number of connections opened meanwhile (less the status query's own).
  local function connections_opened(f)
    local before = accepted()
    f()
    return accepted() - before - 1
  end

  local function assert_h2(lines)
    assert.is_true(#lines > 0, "nothing reached nginx")
    for _, l in ipairs(lines) do assert.equal("HTTP/2.0", l.proto, l.method .. " " .. l.uri) end
  end

  local function new_client(opts)
    local o = { api_key = KEY, base_url = base_url, ca_file = dir .. "/cert.pem", timeout = 5 }
    for k, v in pairs(opts or {}) do o[k] = v end
    local c = assert(sim.new(o))
    finally(function() c:close() end) -- its connections too, whatever the test's outcome
    return c
  end

  -- n new eSIMs not yet installed (what an activation code is for): their ids.
  local function esims(n)
    local cards = {}
    for i = 1, n do cards[i] = { type = "esim", id = helpers.uuid() } end
    local ids = {}
    for i, card in ipairs(stub:seed{ sim_cards = cards }.sim_cards) do ids[i] = card.id end
    assert.equal(n, #ids)
    return ids
  end

  local function stub_requests(method, path)
    local out = {}
    for _, r in ipairs(stub:requests()) do
      if r.method == method and r.path == path then out[#out + 1] = r end
    end
    return out
  end

  before_each(function()
    stub:reset()
  end)

  it("makes a single call over TLS + HTTP/2, trusting the certificate through ca_file", function()
    local before = #access_log()
    local c = new_client()
    local id = helpers.uuid()
    local res, err
    assert.equal(1, connections_opened(function() res, err = c:get_sim_card(id) end))
    assert.is_nil(err)
    assert.equal(id, res.data.id)
    wait_lines(before + 1)
    local lines = lines_since(before + 1)
    assert.equal(1, #lines)
    assert_h2(lines)
    assert.equal("GET", lines[1].method)
    assert.equal("/v2/sim_cards/" .. id, lines[1].uri)
    assert.equal(1, lines[1].nreq)
    assert.equal("Bearer " .. KEY, stub:last_request().headers.authorization) -- through nginx to the stub
  end)

  it("refuses the throw-away certificate without ca_file, before anything is sent", function()
    local before = #access_log()
    local c = assert(sim.new{ api_key = KEY, base_url = base_url, timeout = 5, sleep = function() end })
    finally(function() c:close() end)
    local res, err = c:purchase_esims{ amount = 1 }
    assert.is_nil(res)
    assert.equal("connection", err.kind)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.not_matches(KEY, tostring(err), 1, true)
    assert.equal(before, #access_log())
    assert.same({}, stub:requests())
  end)

  it("carries sequential single calls on one connection", function()
    local c = new_client()
    local before = #access_log()
    local opened = connections_opened(function()
      for i = 1, 5 do
        assert(c:get_sim_card(helpers.uuid()))
        assert(c:purchase_esims{ amount = 1 })
        assert.equal(before + 2 * i, wait_lines(before + 2 * i))
      end
    end)
    assert.equal(1, opened)
    local lines, conns = lines_since(before + 1)
    assert.equal(10, #lines)
    assert_h2(lines)
    assert.equal(1, #conns, "connections: " .. table.concat(conns, ", "))
    for i, l in ipairs(lines) do assert.equal(i, l.nreq) end
    assert.equal(5, #stub_requests("POST", PURCHASE))
  end)

  describe("a batch", function()
    -- calls reading an activation code each, of n new eSIMs
    local function activation_calls(n)
      local calls = {}
      for i, id in ipairs(esims(n)) do calls[i] = { "get_sim_card_activation_code", id } end
      return calls
    end

    local function assert_codes(calls, results)
      assert.equal(#calls, results.ok)
      assert.equal(0, results.failed)
      for i = 1, #calls do
        assert.is_nil(results[i].err)
        assert.equal("sim_card_activation_code", results[i].res.data.record_type)
        assert.is_string(results[i].res.data.activation_code)
      end
    end

    it("is carried by one connection, its calls in flight together; the next batch reuses it", function()
      local N, DELAY = 20, 0.2
      local c = new_client()
      stub:config{ delay = DELAY }
      local calls = activation_calls(N)
      local before = #access_log()
      local results, wall
      local opened = connections_opened(function()
        local t0 = socket.gettime()
        results = assert(c:batch(calls, { concurrency = N }))
        wall = socket.gettime() - t0
      end)
      assert_codes(calls, results)
      assert.equal(1, opened, "connections opened for the batch")
      assert.equal(N, wait_lines(before + N) - before)
      local lines, conns = lines_since(before + 1)
      assert_h2(lines)
      assert.equal(1, #conns, "connections carrying the batch: " .. table.concat(conns, ", "))
      local nreqs = {} -- N streams on that connection: its request count runs 1..N
      for _, l in ipairs(lines) do nreqs[#nreqs + 1] = l.nreq end
      table.sort(nreqs)
      for i = 1, N do assert.equal(i, nreqs[i]) end
      local stats = stub:stats()
      assert.equal(N, stats.requests)
      assert.is_true(stats.in_flight_peak >= N / 2, "in flight at once: " .. stats.in_flight_peak)
      assert.is_true(wall < N * DELAY / 4, ("%d calls of %.1f s took %.2f s"):format(N, DELAY, wall))

      -- the next batch: no new connection, the same one, its streams counting on
      stub:reset()
      stub:config{ delay = DELAY }
      calls = activation_calls(N)
      before = #access_log()
      opened = connections_opened(function() results = assert(c:batch(calls, { concurrency = N })) end)
      assert_codes(calls, results)
      assert.equal(0, opened, "connections opened for the second batch")
      assert.equal(N, wait_lines(before + N) - before)
      local again, conns2 = lines_since(before + 1)
      assert_h2(again)
      assert.same(conns, conns2, "the second batch's connections")
      for _, l in ipairs(again) do assert.is_true(l.nreq > N, "request " .. l.nreq .. " on the connection") end
      assert.is_true(stub:stats().in_flight_peak >= N / 2, "in flight at once: " .. stub:stats().in_flight_peak)
    end)

    -- nginx allows 128 streams at once on a connection (http2_max_concurrent_streams),
    -- libcurl 100 unless told otherwise (CURLMOPT_MAX_CONCURRENT_STREAMS): calls
    -- beyond that wait for a stream, as they wait for the connection at first,
    -- rather than each opening a TLS connection of its own.
    it("wider than the connection's stream limit, waits for streams rather than opening connections", function()
      local N = 200
      local c = new_client()
      stub:config{ delay = 0.05 }
      local calls = activation_calls(N)
      local before = #access_log()
      local results
      local opened = connections_opened(function() results = assert(c:batch(calls, { concurrency = N })) end)
      assert_codes(calls, results)
      assert.equal(N, wait_lines(before + N) - before)
      local lines, conns = lines_since(before + 1)
      assert_h2(lines)
      -- one connection, or one per 128 streams at most
      assert.is_true(opened <= 2, ("%d calls opened %d connections, %d of them carrying requests")
        :format(N, opened, #conns))
    end)

    it("keeps the money rule per call: a purchase answered 500 is not re-sent, a GET answered 500 is", function()
      local c = new_client()
      local id = helpers.uuid()
      local get_path = "/v2/sim_cards/" .. id
      local failure = { errors = { helpers.api_error("10007", "Unexpected error") } }
      stub:config{ delay = 0.1 }
      stub:queue{
        { match = PURCHASE, method = "POST", status = 500, json = failure },
        { match = get_path, method = "GET", status = 500, json = failure },
      }
      local codes = esims(2)
      local calls = {
        { "get_sim_card_activation_code", codes[1] },
        { "purchase_esims", { amount = 2 } },
        { "get_sim_card", id },
        { "get_sim_card_activation_code", codes[2] },
      }
      local before = #access_log()
      local results
      local opened = connections_opened(function() results = assert(c:batch(calls, { concurrency = #calls })) end)
      assert.equal(3, results.ok)
      assert.equal(1, results.failed)

      local err = results[2].err
      assert.is_nil(results[2].res)
      assert.equal("http", err.kind)
      assert.equal(500, err.status)
      assert.equal(1, err.attempts)
      assert.is_false(err.retryable)
      assert.matches(MAY_HAVE, err.message, 1, true)
      assert.not_matches(KEY, tostring(err), 1, true)
      assert.equal(1, #stub_requests("POST", PURCHASE), "the stub saw the purchase once")

      assert.is_nil(results[3].err)
      assert.equal(id, results[3].res.data.id)
      assert.equal(2, #stub_requests("GET", get_path), "the GET: answered 500, then retried")
      assert.is_nil(results[1].err)
      assert.is_nil(results[4].err)
      assert.same({}, stub:pending())

      -- all of it over HTTP/2 on one connection, the 500s included
      assert.equal(1, opened)
      assert.equal(5, wait_lines(before + 5) - before)
      local lines, conns = lines_since(before + 1)
      assert_h2(lines)
      assert.equal(1, #conns, "connections carrying the batch: " .. table.concat(conns, ", "))
      local statuses = {}
      for _, l in ipairs(lines) do
        local k = l.method .. " " .. l.uri
        statuses[k] = (statuses[k] or "") .. l.status
      end
      assert.equal("500", statuses["POST " .. PURCHASE])
      assert.equal("500200", statuses["GET " .. get_path])
    end)
  end)
end)
