-- Failures never cost money or leak: timeouts and limits, hostile servers,
-- TLS, and the API key kept out of every error. What is retried after a
-- failure, and what never is, is in retry_policy_spec.lua.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local socket = require "socket"

local KEY = "KEYfailures0123456789SECRET"

local function assert_no_key(err) helpers.assert_no_key(KEY, err) end

local free_port = helpers.free_port

describe("failures", function()
  local stub, sleeps

  local function new_client(opts)
    local o = { api_key = KEY, base_url = stub.base_url, sleep = function(s) sleeps[#sleeps + 1] = s end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(sim.new(o))
  end

  local function count(path) return #helpers.requests_to(stub, path) end
  local PURCHASE = "/v2/actions/purchase/esims"

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    sleeps = {}
  end)

  describe("connections that fail after the request was sent", function()
    it("a close mid-body is a connection error that keeps request_id", function()
      local c = new_client()
      stub:queue{ mode = "close_mid_body", status = 202, headers = { ["x-request-id"] = "rq-mid" },
        json = { data = { helpers.sim_card(), helpers.sim_card() } } }
      local _, err = c:purchase_esims{ amount = 2 }
      assert.equal("connection", err.kind)
      assert.equal("rq-mid", err.request_id)
      assert.equal(1, count(PURCHASE))
    end)
  end)

  describe("timeouts and limits", function()
    it("timeout holds against a server that accepts and then sends nothing", function()
      local c = new_client{ timeout = 0.5, max_retries = 0 }
      stub:queue{ mode = "stall_accept", duration = 10 }
      local t0 = socket.gettime()
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal("timeout", err.kind)
      assert.is_true(socket.gettime() - t0 < 5)
    end)

    it("connect_timeout holds against a host that never completes the handshake; purchase is retried", function()
      -- a listener whose accept queue is full: the kernel drops further SYNs
      local srv = assert(socket.tcp())
      assert(srv:bind("127.0.0.1", 0))
      assert(srv:listen(0))
      local _, port = srv:getsockname()
      local fillers = {}
      for i = 1, 3 do
        fillers[i] = socket.tcp()
        fillers[i]:settimeout(0.2)
        fillers[i]:connect("127.0.0.1", port)
      end
      local c = assert(sim.new{ api_key = KEY, base_url = "http://127.0.0.1:" .. port .. "/v2", connect_timeout = 0.5,
        timeout = 10, sleep = function(s) sleeps[#sleeps + 1] = s end })
      local t0 = socket.gettime()
      local _, err = c:purchase_esims{ amount = 1 }
      local elapsed = socket.gettime() - t0
      for _, f in ipairs(fillers) do f:close() end
      srv:close()
      assert.equal("timeout", err.kind)
      assert.matches("timed out connecting before the request was sent", err.message)
      assert.is_true(err.retryable)
      assert.equal(3, err.attempts)
      assert.equal(2, #sleeps)
      assert.is_true(elapsed >= 1.2 and elapsed < 8, "elapsed " .. elapsed)
    end)

    it("timeout holds against a server that trickles a byte at a time forever", function()
      local c = new_client{ max_retries = 0 }
      stub:queue{ mode = "trickle", interval = 0.1, status = 202, json = { data = { helpers.sim_card() } } }
      local t0 = socket.gettime()
      local _, err = c:register_sim_cards({ registration_codes = { "1" } }, { timeout = 1 })
      local elapsed = socket.gettime() - t0
      assert.equal("timeout", err.kind)
      assert.is_true(elapsed >= 0.9 and elapsed < 6, "elapsed " .. elapsed)
    end)

    it("a body over max_response_bytes is a clear error, not memory exhaustion", function()
      local c = new_client{ max_response_bytes = 1024 * 1024 }
      stub:queue{ mode = "huge", size = 64 * 1024 * 1024, headers = { ["x-request-id"] = "rq-huge" } }
      local t0 = socket.gettime()
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal("decode", err.kind)
      assert.matches("max_response_bytes", err.message)
      assert.equal(202, err.status)
      assert.equal("rq-huge", err.request_id)
      assert.is_false(err.retryable)
      assert.is_true(socket.gettime() - t0 < 10)
    end)
  end)

  describe("hostile bodies", function()
    local cases = {
      { "an HTML 502 page from a proxy", { status = 502, body = "<html><body>Bad Gateway</body></html>",
        headers = { ["content-type"] = "text/html", ["x-request-id"] = "rq-a" } },
        "http", "HTTP 502 with a non%-JSON body %(text/html%)" },
      { "JSON that is not an object", { status = 202, body = "[1,2,3]", headers = { ["x-request-id"] = "rq-a" } },
        "decode", "not a JSON object" },
      { "truncated JSON", { status = 202, body = '{"data":[{"id":"x"', headers = { ["x-request-id"] = "rq-a" } },
        "decode", "could not be decoded" },
      { "a 202 whose data is not an array", { status = 202, body = '{"data":"nope"}',
        headers = { ["x-request-id"] = "rq-a" } }, "decode", "response's 'data' is not an array" },
      { "a 202 whose data is an object", { status = 202, body = '{"data":{"id":"x"}}',
        headers = { ["x-request-id"] = "rq-a" } }, "decode", "not an array" },
      { "garbage bytes", { status = 202, body = "\0\1\2\255\254garbage", headers = { ["x-request-id"] = "rq-a" } },
        "decode", "could not be decoded" },
      { "NaN where JSON allows none", { status = 202, body = '{"data":[{"x":NaN}]}',
        headers = { ["x-request-id"] = "rq-a" } }, "decode", "could not be decoded" },
      { "a 3xx redirect", { status = 301, body = "", headers = { location = "https://evil.example/steal",
        ["x-request-id"] = "rq-a" } }, "http", "redirects are not followed %(Location: https://evil.example/steal%)" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local c = new_client()
        stub:queue(case[2])
        local res, err = c:purchase_esims{ amount = 1 }
        assert.is_nil(res)
        assert.equal(case[3], err.kind)
        assert.matches(case[4], err.message)
        assert.equal(case[2].status, err.status)
        assert.equal("rq-a", err.request_id)
        assert.is_false(err.retryable)
        assert.equal(1, count(PURCHASE))
        assert.same({}, err.errors)
        assert_no_key(err)
      end)
    end

    it("a successful purchase with an unreadable body says it was accepted", function()
      local c = new_client()
      stub:queue{ status = 202, body = "{oops" }
      local _, err = c:purchase_esims{ amount = 1 }
      assert.matches("the request was accepted: check the SIM card list", err.message, 1, true)
    end)

    it("raw garbage instead of HTTP is a connection error", function()
      local c = new_client{ max_retries = 0 }
      stub:queue{ mode = "raw", body = "SSH-2.0-OpenSSH\r\n\r\n" }
      local _, err = c:register_sim_cards{ registration_codes = { "1" } }
      assert.equal("connection", err.kind)
    end)

    it("a server echoing the API key gets it redacted everywhere in err", function()
      local c = new_client()
      stub:queue{ status = 422, headers = { ["x-request-id"] = "id-" .. KEY },
        json = { errors = { helpers.api_error("1", "Bad key " .. KEY, "the key " .. KEY .. " is wrong",
          nil, { echoed = KEY }) } } }
      local _, err = c:purchase_esims{ amount = 1 }
      assert_no_key(err)
      assert.matches("[REDACTED]", err.message, 1, true)
      assert.equal("the key [REDACTED] is wrong", err.errors[1].detail)
    end)
  end)

  describe("TLS", function()
    local dir, port, server_pid

    setup(function()
      dir = helpers.tmpname()
      assert(os.execute("mkdir -p " .. dir))
      local ok = os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
        .. "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout %s/key.pem -out %s/cert.pem "
        .. ">/dev/null 2>&1"):format(dir, dir))
      assert(ok == true or ok == 0, "openssl could not make a certificate")
      port = free_port()
      assert(os.execute(("openssl s_server -quiet -accept 127.0.0.1:%d -cert %s/cert.pem -key %s/key.pem "
        .. "-www </dev/null >/dev/null 2>&1 & echo $! > %s/pid"):format(port, dir, dir, dir)))
      local f = assert(io.open(dir .. "/pid"))
      server_pid = f:read("*l")
      f:close()
      for _ = 1, 100 do
        local s = socket.connect("127.0.0.1", port)
        if s then s:close() break end
        socket.sleep(0.05)
      end
    end)

    teardown(function()
      if server_pid then os.execute("kill " .. server_pid .. " 2>/dev/null") end
      if dir then os.execute("rm -rf " .. dir) end
    end)

    it("verifies the server's certificate and does not retry a failed verification", function()
      local c = assert(sim.new{ api_key = KEY, base_url = "https://127.0.0.1:" .. port .. "/v2",
        sleep = function(s) sleeps[#sleeps + 1] = s end })
      local _, err = c:purchase_esims{ amount = 1 }
      assert.equal("connection", err.kind)
      assert.matches("before the request was sent", err.message)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert_no_key(err)
    end)

    it("trusts a private CA given as ca_file", function()
      local c = assert(sim.new{ api_key = KEY, base_url = "https://127.0.0.1:" .. port .. "/v2",
        ca_file = dir .. "/cert.pem", max_retries = 0, timeout = 2 })
      local _, err = c:get_sim_card("6a09cdc3-8948-47f0-aa62-74ac943d6c58")
      -- the handshake passed and the GET went through: `openssl s_server -www` answers
      -- any GET with its HTML status page, which arrives whole and fails only as JSON
      assert.equal("decode", err.kind)
      assert.equal(200, err.status)
      assert.matches("get_sim_card: HTTP 200 response could not be decoded: body is not a JSON object", err.message)
      assert_no_key(err)
    end)
  end)
end)
