-- End-to-end checks of the stub Telnyx server (spec/support/stub.lua), using
-- plain luasocket clients only.

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local helpers = require "spec.support.helpers"

local AUTH = "Bearer KEY0123456789"

describe("stub server", function()
  local stub
  local saved_timeout

  -- socket.http request; returns status, headers, body
  local function request(method, path, body, headers)
    local chunks = {}
    local hdrs = { authorization = AUTH }
    for k, v in pairs(headers or {}) do hdrs[k] = v end
    if hdrs.authorization == false then hdrs.authorization = nil end
    if body then
      hdrs["content-type"] = hdrs["content-type"] or "application/json"
      hdrs["content-length"] = tostring(#body)
    end
    local ok, status, res_headers = http.request({
      url = stub:url(path),
      method = method,
      headers = hdrs,
      source = body and ltn12.source.string(body) or nil,
      sink = ltn12.sink.table(chunks),
    })
    assert(ok, status)
    return status, res_headers, table.concat(chunks)
  end

  -- raw connection with a short timeout
  local function connect(timeout)
    local sock = socket.tcp()
    sock:settimeout(timeout or 2)
    assert(sock:connect("127.0.0.1", stub.port))
    return sock
  end

  local function send_request(sock, method, path, body, extra)
    local lines = {
      method .. " " .. path .. " HTTP/1.1",
      "Host: 127.0.0.1",
      "Authorization: " .. AUTH,
    }
    for _, h in ipairs(extra or {}) do lines[#lines + 1] = h end
    if body then lines[#lines + 1] = "Content-Length: " .. #body end
    assert(sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  end

  -- read the status line and headers only
  local function read_head(sock)
    local status_line = assert(sock:receive("*l"))
    local headers = {}
    while true do
      local line = assert(sock:receive("*l"))
      if line == "" then break end
      local k, v = line:match("^([^:]+):%s*(.*)$")
      headers[k:lower()] = v
    end
    return tonumber(status_line:match(" (%d%d%d)")), headers
  end

  lazy_setup(function()
    saved_timeout = http.TIMEOUT
    http.TIMEOUT = 5
    stub = helpers.start_stub()
  end)

  lazy_teardown(function()
    http.TIMEOUT = saved_timeout
    if stub then stub:stop() end
  end)

  before_each(function()
    stub:reset()
  end)

  it("exposes port, pid and base_url", function()
    assert.is_number(stub.port)
    assert.matches("^%d+$", stub.pid)
    assert.equals("http://127.0.0.1:" .. stub.port .. "/v2", stub.base_url)
  end)

  it("answers a default eSIM purchase", function()
    local status, headers, body = request("POST", "/v2/actions/purchase/esims",
      '{"amount":2,"tags":["fleet"],"status":"standby"}')
    assert.equals(202, status)
    assert.equals("application/json", headers["content-type"])
    assert.equals(tostring(#body), headers["content-length"])
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", headers["x-request-id"])
    assert.truthy(body:find('"eid":null', 1, true))
    assert.truthy(body:find('"resources_with_in_progress_actions":[]', 1, true))
    local data = helpers.decode(body).data
    assert.equals(2, #data)
    for _, card in ipairs(data) do
      assert.equals("sim_card", card.record_type)
      assert.equals("esim", card.type)
      assert.equals("released", card.esim_installation_status)
      assert.equals("standby", card.status.value)
      assert.same({ "fleet" }, card.tags)
      assert.equals(helpers.null, card.eid)
      assert.matches("^0%d+$", card.imsi)
      assert.equals("2048.0", card.data_limit.amount)
    end
    assert.not_equals(data[1].id, data[2].id)
  end)

  it("refuses a purchase without amount", function()
    local status, _, body = request("POST", "/v2/actions/purchase/esims", "{}")
    assert.equals(422, status)
    local err = helpers.decode(body).errors[1]
    assert.equals("10015", err.code)
    assert.equals("/amount", err.source.pointer)
  end)

  it("registers SIM cards and refuses codes starting with 999", function()
    local status, _, body = request("POST", "/v2/actions/register/sim_cards",
      '{"registration_codes":["0000000001","9990000002"]}')
    assert.equals(202, status)
    local doc = helpers.decode(body)
    assert.equals(1, #doc.data)
    assert.equals("physical", doc.data[1].type)
    assert.equals(helpers.null, doc.data[1].esim_installation_status)
    assert.equals(1, #doc.errors)
    assert.equals("10008", doc.errors[1].code)
    assert.equals("/registration_codes/1", doc.errors[1].source.pointer)
    assert.equals("9990000002", doc.errors[1].meta.registration_code)

    status, _, body = request("POST", "/v2/actions/register/sim_cards",
      '{"registration_codes":["999"]}')
    assert.equals(202, status)
    assert.truthy(body:find('"data":[]', 1, true))
  end)

  it("answers 401 with an empty body without a bearer token", function()
    local status, headers, body = request("GET", "/v2/sim_cards", nil, { authorization = false })
    assert.equals(401, status)
    assert.equals("0", headers["content-length"])
    assert.equals("", body)
    assert.truthy(headers["x-request-id"])
  end)

  it("answers 404 for unknown paths", function()
    local status, _, body = request("GET", "/v2/nothing")
    assert.equals(404, status)
    assert.equals("10005", helpers.decode(body).errors[1].code)
  end)

  it("serves a queued response once, then the default", function()
    assert.equals(1, stub:queue({
      status = 422,
      json = { errors = { helpers.api_error("10015", "Invalid parameter", "bad", "/amount") },
               empty = helpers.empty_array, none = helpers.null },
      headers = { ["X-Multi"] = { "a", "b" } },
    }))
    local status, headers, body = request("POST", "/v2/actions/purchase/esims", '{"amount":1}')
    assert.equals(422, status)
    assert.equals("application/json", headers["content-type"])
    assert.equals("a, b", headers["x-multi"]) -- socket.http joins repeated headers
    assert.truthy(body:find('"empty":[]', 1, true))
    assert.truthy(body:find('"none":null', 1, true))
    status = request("POST", "/v2/actions/purchase/esims", '{"amount":1}')
    assert.equals(202, status)
  end)

  it("honours match, repeat, raw bodies and x-request-id = false", function()
    stub:queue({
      { match = "/v2/b", status = 201, body = "B", headers = { ["x-request-id"] = false } },
      { status = 200, body = "any", ["repeat"] = 2 },
    })
    local status, headers, body = request("GET", "/v2/b")
    assert.equals(201, status)
    assert.equals("B", body)
    assert.is_nil(headers["x-request-id"])
    assert.equals("any", select(3, request("GET", "/v2/a")))
    assert.equals("any", select(3, request("GET", "/v2/b")))
    assert.equals(404, (request("GET", "/v2/a")))
    assert.same({}, stub:pending())
  end)

  it("records requests and reuses kept-alive connections", function()
    local sock = connect()
    send_request(sock, "POST", "/v2/actions/purchase/esims?x=1&y=2", '{"amount":1}',
      { "X-Custom: one", "X-Custom: two", "Content-Type: application/json" })
    local res = assert(helpers.read_response(sock))
    assert.equals(202, res.status)
    send_request(sock, "GET", "/v2/sim_cards")
    res = assert(helpers.read_response(sock))
    assert.equals(404, res.status)
    sock:close()

    local list = stub:requests()
    assert.equals(2, #list)
    local first, second = list[1], list[2]
    assert.equals("POST", first.method)
    assert.equals("/v2/actions/purchase/esims", first.path)
    assert.equals("x=1&y=2", first.query)
    assert.equals('{"amount":1}', first.body)
    assert.equals("one, two", first.headers["x-custom"])
    assert.equals(AUTH, first.headers.authorization)
    assert.equals("application/json", first.headers["content-type"])
    assert.is_nil(second.query)
    assert.equals("", second.body)
    assert.equals(first.conn, second.conn)
    assert.equals(first.seq + 1, second.seq)
    assert.same(second, stub:last_request())
  end)

  it("encodes an empty request log as []", function()
    local res = assert(helpers.http({ port = stub.port, path = "/__stub/requests" }))
    assert.equals("[]", res.body)
    assert.is_nil(stub:last_request())
  end)

  it("reads chunked bodies and answers Expect: 100-continue", function()
    local sock = connect()
    send_request(sock, "POST", "/v2/actions/purchase/esims", nil,
      { "Transfer-Encoding: chunked", "Expect: 100-continue" })
    assert.equals("HTTP/1.1 100 Continue", sock:receive("*l"))
    assert.equals("", sock:receive("*l"))
    assert(sock:send("5\r\n{\"amo\r\n7;ext=1\r\nunt\":3}\r\n0\r\n\r\n"))
    local res = assert(helpers.read_response(sock))
    sock:close()
    assert.equals(202, res.status)
    assert.equals(3, #helpers.decode(res.body).data)
    assert.equals('{"amount":3}', stub:last_request().body)
  end)

  it("does not block other connections while delaying an answer", function()
    stub:queue({ status = 200, body = "late", delay = 1 })
    local sock = connect()
    local t0 = socket.gettime()
    send_request(sock, "GET", "/v2/slow")
    -- the control connection is served while the first one waits
    local deadline = t0 + 0.8
    local list
    repeat
      list = stub:requests()
      if #list == 0 then socket.sleep(0.02) end
    until #list > 0 or socket.gettime() > deadline
    assert.equals(1, #list)
    assert.is_true(socket.gettime() - t0 < 0.9)
    local res = assert(helpers.read_response(sock))
    sock:close()
    assert.equals("late", res.body)
    assert.is_true(socket.gettime() - t0 >= 0.9)
  end)

  describe("fault modes", function()
    it("stall: the client times out", function()
      stub:queue({ mode = "stall" })
      local sock = connect(1)
      send_request(sock, "GET", "/v2/x")
      local t0 = socket.gettime()
      local data, err = sock:receive("*l")
      sock:close()
      assert.is_nil(data)
      assert.equals("timeout", err)
      assert.is_true(socket.gettime() - t0 >= 0.9)
      assert.equals(1, #stub:requests())
    end)

    it("stall_accept: the client times out", function()
      stub:queue({ mode = "stall_accept" })
      local sock = connect(0.3)
      send_request(sock, "POST", "/v2/x", "{}")
      local data, err = sock:receive("*l")
      sock:close()
      assert.is_nil(data)
      assert.equals("timeout", err)
    end)

    it("close: the client sees the connection closed", function()
      stub:queue({ mode = "close" })
      local sock = connect()
      send_request(sock, "GET", "/v2/x")
      local data, err = sock:receive("*l")
      sock:close()
      assert.is_nil(data)
      assert.equals("closed", err)
    end)

    it("reset: the client sees a reset (or a close)", function()
      stub:queue({ mode = "reset" })
      local sock = connect()
      send_request(sock, "GET", "/v2/x")
      local data, err = sock:receive("*l")
      sock:close()
      assert.is_nil(data)
      assert.is_true(err == "closed" or err:find("reset", 1, true) ~= nil, err)
    end)

    it("raw: bytes are sent verbatim", function()
      local raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Raw: yes\r\n\r\nhi"
      stub:queue({ mode = "raw", body = raw })
      local sock = connect()
      send_request(sock, "GET", "/v2/x")
      local data = sock:receive("*a")
      sock:close()
      assert.equals(raw, data)
    end)

    it("trickle: headers then the body byte by byte", function()
      stub:queue({ mode = "trickle", body = '{"data":[]}', interval = 0.3 })
      local sock = connect()
      send_request(sock, "GET", "/v2/x")
      local t0 = socket.gettime()
      local status, headers = read_head(sock)
      assert.equals(200, status)
      assert.equals("11", headers["content-length"])
      assert.equals("{", sock:receive(1))
      assert.is_true(socket.gettime() - t0 < 0.25)
      sock:close()
    end)

    it("close_mid_body: fewer bytes than Content-Length", function()
      stub:queue({ mode = "close_mid_body", json = { data = helpers.sim_card() } })
      local sock = connect()
      send_request(sock, "GET", "/v2/x")
      local status, headers = read_head(sock)
      assert.equals(200, status)
      local len = tonumber(headers["content-length"])
      local data, err, partial = sock:receive(len)
      sock:close()
      assert.is_nil(data)
      assert.equals("closed", err)
      assert.equals(math.floor(len / 2), #partial)
    end)

    it("huge: announces a big Content-Length and streams it", function()
      stub:queue({ mode = "huge", size = 8 * 1024 * 1024 })
      local sock = connect()
      send_request(sock, "POST", "/v2/actions/purchase/esims", '{"amount":1}')
      local status, headers = read_head(sock)
      assert.equals(202, status)
      assert.equals(tostring(8 * 1024 * 1024), headers["content-length"])
      local chunk = assert(sock:receive(4096))
      assert.equals('{"data":[', chunk:sub(1, 9))
      sock:close()
      -- the stub stays healthy after the client walks away
      assert.equals(1, #stub:requests())
    end)

    it("huge: the whole body is exactly Content-Length bytes", function()
      stub:queue({ mode = "huge", size = 200003 })
      local sock = connect()
      send_request(sock, "GET", "/v2/x")
      local _, headers = read_head(sock)
      local body = assert(sock:receive(tonumber(headers["content-length"])))
      assert.equals("]}", body:sub(-2))
      assert.is_table(helpers.decode(body).data)
      assert.equals("closed", select(2, sock:receive(1)))
      sock:close()
    end)
  end)

  it("stop is idempotent and ends the process", function()
    local other = helpers.start_stub()
    local pid = other.pid
    other:stop()
    other:stop()
    local f = io.open("/proc/" .. pid .. "/stat", "r")
    if f then -- only a not yet reaped zombie may remain
      local stat = f:read("*a")
      f:close()
      assert.equals("Z", stat:match("^%d+ %b() (%a)"))
    end
  end)
end)
