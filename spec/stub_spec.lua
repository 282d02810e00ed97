-- End-to-end checks of the fake Telnyx server (telnyx/sim/fake.lua and
-- telnyx/sim/fake/*.lua, started by spec/support/helpers.lua), using plain
-- luasocket clients only.

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local helpers = require "spec.support.helpers"
local fixtures = require "spec.support.fixtures"

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

  it("answers 401 with the document's Unauthorized error without a bearer token", function()
    local status, headers, body = request("GET", "/v2/sim_cards", nil, { authorization = false })
    assert.equals(401, status)
    assert.same({ errors = { { code = "401", title = "Unauthorized", detail = "Unauthorized" } } }, helpers.decode(body))
    assert.equals("application/json", headers["content-type"])
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
    assert.equals(200, res.status)
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
    local res = assert(helpers.http({ port = stub.port, path = "/__fake/requests" }))
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

-- The emulated API: routes, state, paging, filters, async actions, errors,
-- delays and stats. Requests go through stub:api (helpers.http underneath),
-- or raw luasocket connections where several must be open at once.
describe("stub API emulation", function()
  local stub
  local null = helpers.null
  local GROUP = helpers.default_sim_card_group_id
  local UNKNOWN = "00000000-0000-4000-8000-000000000000"

  lazy_setup(function() stub = helpers.start_stub() end)
  lazy_teardown(function() if stub then stub:stop() end end)
  before_each(function() stub:reset() end)

  -- the decoded body of a request that must answer `status`
  local function call(status, method, path, body, headers)
    local got, doc, res = stub:api(method, path, body, headers)
    assert.equals(status, got, method .. " " .. path .. ": " .. res.body)
    return doc, res
  end

  local function purchase(amount, fields)
    local body = { amount = amount }
    for k, v in pairs(fields or {}) do body[k] = v end
    return call(202, "POST", "/actions/purchase/esims", body).data
  end

  local function ids_of(list)
    local ids = {}
    for i, rec in ipairs(list) do ids[i] = rec.id end
    return ids
  end

  local function card_status(id)
    return call(200, "GET", "/sim_cards/" .. id).data.status.value
  end

  local function until_true(seconds, fn)
    local deadline = socket.gettime() + seconds
    repeat
      if fn() then return true end
      socket.sleep(0.02)
    until socket.gettime() > deadline
    return fn()
  end

  describe("routes", function()
    it("has one row per operation of sim.operations, as many per method as sim.describe says", function()
      local sim = require "telnyx.sim"
      local routes = stub:routes()
      assert.equals(#sim.operations, #routes)
      local want = {}
      for _, name in ipairs(sim.operations) do
        local m = sim.describe(name).method
        want[m] = (want[m] or 0) + 1
      end
      local per_method, seen = {}, {}
      for _, r in ipairs(routes) do
        per_method[r.method] = (per_method[r.method] or 0) + 1
        local key = r.method .. " " .. r.path
        assert.is_nil(seen[key], key)
        seen[key] = true
        assert.matches("^/v2/", r.path)
      end
      assert.same(want, per_method)
    end)

    -- exactly the document's operations, where the document is at hand (else one visible skip)
    local openapi = os.getenv("TELNYX_OPENAPI") or "../shared/telnyx-openapi/sim-cards-full.json"
    local text = helpers.read_file(openapi)
    if not text then
      helpers.skip_missing({ describe = describe, it = it, pending = pending }, "routes vs the OpenAPI document",
        "the Telnyx OpenAPI document (sim-cards-full.json) is missing: set TELNYX_OPENAPI=/path/to/it")
    else
      it("serves exactly the OpenAPI document's operations", function()
        local seen = {}
        for _, r in ipairs(stub:routes()) do seen[r.method .. " " .. r.path] = true end
        local doc = helpers.decode(text)
        local want = {}
        for path, item in pairs(doc.paths) do
          for method in pairs(item) do
            if ({ get = 1, post = 1, patch = 1, delete = 1 })[method] then
              want[method:upper() .. " /v2" .. path] = true
            end
          end
        end
        assert.same(want, seen)
      end)
    end

    it("answers 405 with Allow for a known path and a method it lacks, 404 for an unknown path", function()
      local doc, res = call(405, "DELETE", "/sim_cards")
      assert.equals("GET", res.headers["allow"])
      assert.equals("10006", doc.errors[1].code)
      for _, case in ipairs{
        { "PUT", "/sim_cards/" .. UNKNOWN, "GET, PATCH, DELETE" },
        { "GET", "/sim_cards/actions/bulk_enable_voice", "POST" },
        { "POST", "/sim_card_orders/" .. UNKNOWN, "GET" },
        { "PATCH", "/sim_card_groups", "GET, POST" },
      } do
        res = select(2, call(405, case[1], case[2]))
        assert.equals(case[3], res.headers["allow"])
      end
      doc = call(404, "GET", "/sim_cards/" .. UNKNOWN .. "/nothing")
      assert.equals("10005", doc.errors[1].code)
      assert.equals(404, (stub:api("GET", "/sim_card")))
      -- the key is checked before the route
      local status, body = stub:api("DELETE", "/sim_cards", nil, { authorization = false })
      assert.equals(401, status)
      assert.equals("401", body.errors[1].code)
    end)

    it("serves HEAD like GET without a body", function()
      local _, res = call(200, "HEAD", "/sim_cards")
      assert.equals("", res.body)
      assert.equals("application/json", res.headers["content-type"])
    end)
  end)

  describe("SIM cards", function()
    it("keeps purchased and registered cards and lists them in creation order", function()
      local bought = purchase(2, { tags = { "fleet" } })
      local reg = call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "0000000001" } })
      local doc = call(200, "GET", "/sim_cards")
      assert.same({ bought[1].id, bought[2].id, reg.data[1].id }, ids_of(doc.data))
      assert.same({ page_number = 1, page_size = 20, total_pages = 1, total_results = 3 }, doc.meta)
      assert.equals("physical", doc.data[3].type)
      assert.same({ "fleet" }, doc.data[1].tags)
      local one = call(200, "GET", "/sim_cards/" .. bought[2].id).data
      assert.equals(bought[2].iccid, one.iccid)
      assert.equals("disconnected", one.live_data_session)
      assert.is_nil(one.pin_puk_codes)
      one = call(200, "GET", "/sim_cards/" .. bought[2].id .. "?include_pin_puk_codes=true").data
      assert.matches("^%d%d%d%d$", one.pin_puk_codes.pin1)
      assert.equals(3, #stub:state().sim_cards)
    end)

    it("pages with page[number] and page[size] and a correct meta", function()
      purchase(47) -- 20 + 20 + 7; in sevens, 6 * 7 + 5
      local all = {}
      for number = 1, 3 do
        local doc = call(200, "GET", "/sim_cards?page[number]=" .. number .. "&page[size]=20")
        assert.same({ page_number = number, page_size = 20, total_pages = 3, total_results = 47 }, doc.meta)
        assert.equals(number < 3 and 20 or 7, #doc.data)
        for _, card in ipairs(doc.data) do all[#all + 1] = card.id end
      end
      assert.same(ids_of(stub:state().sim_cards), all)
      local doc, res = call(200, "GET", "/sim_cards?page[number]=4")
      assert.truthy(res.body:find('"data":[]', 1, true))
      assert.same({ page_number = 4, page_size = 20, total_pages = 3, total_results = 47 }, doc.meta)
      doc = call(200, "GET", "/sim_cards?page%5Bsize%5D=250")
      assert.equals(47, #doc.data)
      assert.equals(1, doc.meta.total_pages)
      doc = call(200, "GET", "/sim_cards?page[size]=7&page[number]=7")
      assert.equals(5, #doc.data)
      assert.same({ page_number = 7, page_size = 7, total_pages = 7, total_results = 47 }, doc.meta)
      for _, bad in ipairs{ "page[size]=0", "page[size]=251", "page[number]=0", "page[number]=x", "page[size]=-1" } do
        doc = call(422, "GET", "/sim_cards?" .. bad)
        assert.equals(bad:match("^[^=]+"), doc.errors[1].source.parameter)
      end
    end)

    it("answers an empty list with total_pages 0", function()
      local doc, res = call(200, "GET", "/sim_cards")
      assert.truthy(res.body:find('"data":[]', 1, true))
      assert.same({ page_number = 1, page_size = 20, total_pages = 0, total_results = 0 }, doc.meta)
    end)

    it("filters by tags (all of), status (any of), iccid (part of), msisdn and group", function()
      local seeded = stub:seed{
        sim_card_groups = { { name = "other" } },
        sim_cards = {
          { tags = { "customers", "staff", "test" }, status = "enabled" },
          { tags = { "test" }, status = "standby" },
          { tags = { "customers" }, status = "disabled" },
          { tags = { "a b", "x+y" }, status = "enabled" },
        },
      }
      local other = seeded.sim_card_groups[1].id
      local c = ids_of(seeded.sim_cards)
      call(200, "PATCH", "/sim_cards/" .. c[3], { sim_card_group_id = other })
      local function ids(query) return ids_of(call(200, "GET", "/sim_cards?" .. query).data) end
      assert.same({ c[1] }, ids("filter[tags]=customers,test"))
      assert.same({ c[1], c[2] }, ids("filter[tags]=test"))
      assert.same({ c[1], c[3] }, ids("filter%5Btags%5D=customers"))
      assert.same({ c[1], c[3] }, ids("filter[tags]=customers&filter[tags]=")) -- repeated names join
      assert.same({ c[1] }, ids("filter[tags]=customers&filter[tags]=staff"))
      assert.same({ c[4] }, ids("filter[tags]=a+b,x%2By"))                  -- "+" is a space, %2B a plus
      assert.same({}, ids("filter[tags]=x+y"))
      assert.same({ c[1], c[2], c[4] }, ids("filter[status]=enabled,standby"))
      assert.same({ c[3] }, ids("filter[status]=disabled"))
      assert.same({ c[2] }, ids("filter[status]=standby&filter[tags]=test"))
      local cards = stub:state().sim_cards
      assert.same({ c[2] }, ids("filter[iccid]=" .. cards[2].iccid:sub(-6)))
      assert.same({ c[3] }, ids("filter[msisdn]=" .. cards[3].msisdn:gsub("%+", "%%2B")))
      assert.same({ c[3] }, ids("filter[sim_card_group_id]=" .. other))
      assert.same({ c[1], c[2], c[4] }, ids("filter[sim_card_group_id]=" .. GROUP))
      local doc = call(422, "GET", "/sim_cards?filter[status]=enabled,bogus")
      assert.equals("filter[status]", doc.errors[1].source.parameter)
      local listed = call(200, "GET", "/sim_cards?include_sim_card_group=true").data
      assert.same({ id = other, name = "other" }, listed[3].sim_card_group)
      assert.same({ id = GROUP, name = "Default group" }, listed[1].sim_card_group)
    end)

    it("sorts by consumed data, ascending or with - descending, GB counted as 1024 MB", function()
      local seeded = stub:seed{ sim_cards = {
        { current_billing_period_consumed_data = { amount = "300.0", unit = "MB" } },
        { current_billing_period_consumed_data = { amount = "1.5", unit = "GB" } },
        { current_billing_period_consumed_data = { amount = "12.0", unit = "MB" } },
        { current_billing_period_consumed_data = { amount = "300.0", unit = "MB" } },
      } }
      local c = ids_of(seeded.sim_cards)
      local sort = "current_billing_period_consumed_data.amount"
      assert.same({ c[3], c[1], c[4], c[2] }, ids_of(call(200, "GET", "/sim_cards?sort=" .. sort).data))
      assert.same({ c[2], c[1], c[4], c[3] }, ids_of(call(200, "GET", "/sim_cards?sort=-" .. sort).data))
      assert.same({ c[2], c[1] }, ids_of(call(200, "GET", "/sim_cards?sort=-" .. sort .. "&page[size]=2").data))
      call(422, "GET", "/sim_cards?sort=iccid")
    end)

    it("updates tags, group, authorized_imeis (null clears) and data_limit", function()
      local card = purchase(1, { tags = { "old" } })[1]
      local group = call(200, "POST", "/sim_card_groups", { name = "moved" }).data
      local doc, res = call(200, "PATCH", "/sim_cards/" .. card.id, {
        tags = helpers.empty_array, sim_card_group_id = group.id, authorized_imeis = { "490154203237518" },
        data_limit = { amount = "1.5", unit = "GB" }, iccid = "ignored: read-only",
      })
      assert.truthy(res.body:find('"tags":[]', 1, true))
      assert.equals(group.id, doc.data.sim_card_group_id)
      assert.same({ "490154203237518" }, doc.data.authorized_imeis)
      assert.same({ amount = "1.5", unit = "GB" }, doc.data.data_limit)
      assert.equals(card.iccid, doc.data.iccid)
      assert.is_true(doc.data.updated_at >= card.updated_at)
      doc = call(200, "PATCH", "/sim_cards/" .. card.id, { authorized_imeis = null, tags = { "n1", "n2" } })
      assert.equals(null, doc.data.authorized_imeis)
      assert.same({ "n1", "n2" }, doc.data.tags)
      assert.equals(group.id, doc.data.sim_card_group_id) -- untouched
      assert.same({ "n1", "n2" }, call(200, "GET", "/sim_cards/" .. card.id).data.tags)

      for _, bad in ipairs{
        { { sim_card_group_id = UNKNOWN }, "/sim_card_group_id" },
        { { tags = "x" }, "/tags" },
        { { tags = { 1 } }, "/tags" },
        { { authorized_imeis = "x" }, "/authorized_imeis" },
        { { data_limit = { amount = "1", unit = "TB" } }, "/data_limit" },
        { { data_limit = { amount = 1, unit = "MB" } }, "/data_limit" },
      } do
        doc = call(422, "PATCH", "/sim_cards/" .. card.id, bad[1])
        assert.equals(bad[2], doc.errors[1].source.pointer)
      end
      assert.same({ "n1", "n2" }, call(200, "GET", "/sim_cards/" .. card.id).data.tags)
    end)

    it("deletes a card (report_lost accepted) and answers it; it is gone afterwards", function()
      local cards = purchase(2)
      local doc = call(200, "DELETE", "/sim_cards/" .. cards[1].id .. "?report_lost=true")
      assert.equals(cards[1].id, doc.data.id)
      assert.equals("disabling", doc.data.status.value)
      call(404, "GET", "/sim_cards/" .. cards[1].id)
      call(404, "DELETE", "/sim_cards/" .. cards[1].id)
      assert.same({ cards[2].id }, ids_of(call(200, "GET", "/sim_cards").data))
      call(422, "DELETE", "/sim_cards/" .. cards[2].id .. "?report_lost=maybe")
    end)

    it("treats an unseen well-formed id as an existing physical card unless implicit_cards is off", function()
      local id = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
      local doc = call(200, "GET", "/sim_cards/" .. id .. "?include_sim_card_group=true")
      assert.equals(id, doc.data.id)
      assert.equals("physical", doc.data.type)
      assert.same({ id = GROUP, name = "Default group" }, doc.data.sim_card_group)
      assert.same({ id }, ids_of(call(200, "GET", "/sim_cards").data))
      assert.equals(doc.data.iccid, call(200, "GET", "/sim_cards/" .. id).data.iccid) -- the same card again
      call(404, "GET", "/sim_cards/not-a-uuid")
      stub:config{ implicit_cards = false }
      call(404, "GET", "/sim_cards/1f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
      call(200, "GET", "/sim_cards/" .. id)
    end)

    it("answers an activation code for an eSIM and 422 for a physical card or an installed eSIM", function()
      local esim = purchase(1)[1]
      local doc = call(200, "GET", "/sim_cards/" .. esim.id .. "/activation_code")
      assert.equals("sim_card_activation_code", doc.data.record_type)
      assert.matches("^LPA:1%$", doc.data.activation_code)
      local physical = call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "1" } }).data[1]
      doc = call(422, "GET", "/sim_cards/" .. physical.id .. "/activation_code")
      assert.matches("eSIM", doc.errors[1].detail)
      local installed = stub:seed{ sim_cards = { { type = "esim", eid = "89049032000001000000000000000001" } } }
      call(422, "GET", "/sim_cards/" .. installed.sim_cards[1].id .. "/activation_code")
      call(404, "GET", "/sim_cards/" .. UNKNOWN .. "/activation_code")
    end)

    it("answers device details and a paged connectivity log", function()
      local card = purchase(1)[1]
      local doc = call(200, "GET", "/sim_cards/" .. card.id .. "/device_details")
      assert.equals("device_details", doc.data.record_type)
      assert.matches("^%d+$", doc.data.imei)
      assert.equals(15, #doc.data.imei)
      local first = call(200, "GET", "/sim_cards/" .. card.id .. "/wireless_connectivity_logs")
      assert.equals(20, #first.data)
      assert.same({ page_number = 1, page_size = 20, total_pages = 2, total_results = 25 }, first.meta)
      local second = call(200, "GET", "/sim_cards/" .. card.id .. "/wireless_connectivity_logs?page[number]=2")
      assert.equals(5, #second.data)
      assert.equals("wireless_connectivity_log", second.data[1].record_type)
      assert.equals(card.id, second.data[1].sim_card_id)
      assert.equals(first.data[20].id + 1, second.data[1].id)
      call(404, "GET", "/sim_cards/" .. UNKNOWN .. "/device_details")
    end)
  end)

  describe("purchase and registration", function()
    it("refuses an unknown group and a bad status, and takes a created group", function()
      local doc = call(422, "POST", "/actions/purchase/esims", { amount = 1, sim_card_group_id = UNKNOWN })
      assert.equals("/sim_card_group_id", doc.errors[1].source.pointer)
      call(422, "POST", "/actions/purchase/esims", { amount = 1, status = "active" })
      local group = call(200, "POST", "/sim_card_groups", { name = "g" }).data
      assert.equals(group.id, purchase(1, { sim_card_group_id = group.id })[1].sim_card_group_id)
      assert.equals(1, #call(200, "GET", "/sim_cards").data)
    end)

    it("uses a registration code once; validate tells unknown and used codes", function()
      local doc = call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "0000000001" } })
      assert.equals(1, #doc.data)
      doc = call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "0000000001", "0000000002" } })
      assert.equals(1, #doc.data)
      assert.equals("10009", doc.errors[1].code)
      assert.equals("/registration_codes/0", doc.errors[1].source.pointer)
      doc = call(200, "POST", "/sim_cards/actions/validate_registration_codes",
        { registration_codes = { "0000000001", "9990000003", "0000000004" } })
      assert.same({
        { record_type = "sim_card_registration_code_validation", registration_code = "0000000001", valid = false,
          invalid_detail = "This code has already been used." },
        { record_type = "sim_card_registration_code_validation", registration_code = "9990000003", valid = false,
          invalid_detail = "This code is not valid." },
        { record_type = "sim_card_registration_code_validation", registration_code = "0000000004", valid = true,
          invalid_detail = null },
      }, doc.data)
      call(422, "POST", "/sim_cards/actions/validate_registration_codes", {})
      stub:seed{ used_registration_codes = { "0000000004" } }
      doc = call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "0000000004" } })
      assert.equals(0, #doc.data)
    end)
  end)

  describe("async actions", function()
    local DELAY = 0.4

    before_each(function() stub:config{ action_delay = DELAY } end)

    for _, case in ipairs{
      { "enable", "enabling", "enabled", "disabled" },
      { "disable", "disabling", "disabled", "enabled" },
      { "set_standby", "setting_standby", "standby", "disabled" },
    } do
      local action_type, during, after, from = case[1], case[2], case[3], case[4]
      it(action_type .. ": 202 with an in-progress action, the card " .. during .. ", then " .. after, function()
        local card = purchase(1, { status = from })[1]
        local t0 = socket.gettime()
        local doc = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/" .. action_type)
        local action = doc.data
        assert.equals("sim_card_action", action.record_type)
        assert.equals(action_type, action.action_type)
        assert.equals(card.id, action.sim_card_id)
        assert.same({ value = "in-progress", reason = null }, action.status)
        assert.same({}, action.settings)
        assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", action.id)
        assert.equals(action.created_at, action.updated_at)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", action.created_at)
        local seen = call(200, "GET", "/sim_cards/" .. card.id).data
        if socket.gettime() - t0 < DELAY * 0.75 then
          assert.equals(during, seen.status.value)
          assert.is_true(seen.actions_in_progress)
          assert.equals("in-progress", call(200, "GET", "/sim_card_actions/" .. action.id).data.status.value)
        end
        socket.sleep(DELAY + 0.05)
        seen = call(200, "GET", "/sim_cards/" .. card.id).data
        assert.equals(after, seen.status.value)
        assert.equals(fixtures.STATUS_REASONS[after], seen.status.reason)
        assert.is_false(seen.actions_in_progress)
        local done = call(200, "GET", "/sim_card_actions/" .. action.id).data
        assert.same({ value = "completed", reason = null }, done.status)
        assert.is_true(done.updated_at > done.created_at)
      end)
    end

    it("completes lazily after the configured delay, whichever request comes next", function()
      stub:config{ action_delay = 0.2 }
      local card = purchase(1, { status = "disabled" })[1]
      local action = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/enable").data
      socket.sleep(0.3)
      -- no timer: the next request (here a control one) finds it due
      local state = stub:state()
      assert.equals("enabled", state.sim_cards[1].status.value)
      assert.equals("completed", state.sim_card_actions[1].status.value)
      assert.equals(action.id, state.sim_card_actions[1].id)
      stub:config{ action_delay = 0 }
      action = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/disable").data
      assert.equals("in-progress", action.status.value) -- the answer itself still shows it running
      assert.equals("disabled", card_status(card.id))
    end)

    it("a newer status action interrupts an older one on the same card", function()
      local card = purchase(1)[1]
      local first = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/disable").data
      local second = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/set_standby").data
      local old = call(200, "GET", "/sim_card_actions/" .. first.id).data
      assert.equals("interrupted", old.status.value)
      assert.is_string(old.status.reason)
      assert.is_true(until_true(2, function() return card_status(card.id) == "standby" end))
      assert.equals("completed", call(200, "GET", "/sim_card_actions/" .. second.id).data.status.value)
    end)

    it("enable and set_standby need a group (422 for a card in none); disable does not", function()
      local card = purchase(1, { status = "disabled" })[1]
      local doc = call(200, "PATCH", "/sim_cards/" .. card.id, { sim_card_group_id = null })
      assert.equals(null, doc.data.sim_card_group_id)
      doc = call(422, "POST", "/sim_cards/" .. card.id .. "/actions/enable")
      assert.matches("group", doc.errors[1].detail)
      call(422, "POST", "/sim_cards/" .. card.id .. "/actions/set_standby")
      call(202, "POST", "/sim_cards/" .. card.id .. "/actions/disable")
      call(404, "POST", "/sim_cards/" .. UNKNOWN .. "/actions/enable")
      assert.equals(1, #stub:state().sim_card_actions)
    end)

    it("lists SIM card actions with filters and paging", function()
      local cards = purchase(3)
      call(202, "POST", "/sim_cards/" .. cards[1].id .. "/actions/disable")
      call(202, "POST", "/sim_cards/" .. cards[2].id .. "/actions/disable")
      call(202, "POST", "/sim_cards/" .. cards[2].id .. "/actions/set_standby")
      local function count(query) return call(200, "GET", "/sim_card_actions?" .. query).meta.total_results end
      assert.equals(3, count(""))
      assert.equals(2, count("filter[sim_card_id]=" .. cards[2].id))
      assert.equals(2, count("filter[action_type]=disable"))
      assert.equals(1, count("filter[status]=interrupted"))
      assert.equals(2, count("filter[status]=in-progress"))
      local doc = call(200, "GET", "/sim_card_actions?page[size]=2&page[number]=2")
      assert.equals(1, #doc.data)
      assert.same({ page_number = 2, page_size = 2, total_pages = 2, total_results = 3 }, doc.meta)
      assert.is_true(until_true(2, function() return count("filter[status]=completed") == 2 end))
      local bad = call(404, "GET", "/sim_card_actions/" .. UNKNOWN)
      assert.equals("10005", bad.errors[1].code)
    end)

    it("set_public_ip: no IP (404), then one without an address, then the address; remove takes it away", function()
      local card = purchase(1)[1]
      call(404, "GET", "/sim_cards/" .. card.id .. "/public_ip")
      call(422, "POST", "/sim_cards/" .. card.id .. "/actions/remove_public_ip")
      call(422, "POST", "/sim_cards/" .. card.id .. "/actions/set_public_ip?region_code=nowhere")
      local action = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/set_public_ip?region_code=ams1").data
      assert.equals("set_public_ip", action.action_type)
      assert.same({ region_code = "ams1" }, action.settings)
      local ip = call(200, "GET", "/sim_cards/" .. card.id .. "/public_ip").data
      assert.equals("sim_card_public_ip", ip.record_type)
      assert.equals(card.id, ip.sim_card_id)
      assert.equals("ams1", ip.region_code)
      assert.equals("ipv4", ip.type)
      assert.is_true(until_true(2, function()
        ip = call(200, "GET", "/sim_cards/" .. card.id .. "/public_ip").data
        return ip.ip ~= nil
      end))
      assert.matches("^%d+%.%d+%.%d+%.%d+$", ip.ip)
      call(422, "POST", "/sim_cards/" .. card.id .. "/actions/set_public_ip") -- one already
      action = call(202, "POST", "/sim_cards/" .. card.id .. "/actions/remove_public_ip").data
      assert.equals("remove_public_ip", action.action_type)
      assert.is_true(until_true(2, function()
        return stub:api("GET", "/sim_cards/" .. card.id .. "/public_ip") == 404
      end))
    end)

    it("bulk_set_public_ips: a bulk action with a summary and one action per card", function()
      local cards = purchase(3)
      local doc = call(202, "POST", "/sim_cards/actions/bulk_set_public_ips", { sim_card_ids = ids_of(cards) })
      local bulk = doc.data
      assert.equals("bulk_sim_card_action", bulk.record_type)
      assert.equals("bulk_set_public_ips", bulk.action_type)
      assert.same({ { status = "in-progress", count = 3 } }, bulk.sim_card_actions_summary)
      local actions = call(200, "GET", "/sim_card_actions?filter[bulk_sim_card_action_id]=" .. bulk.id).data
      assert.equals(3, #actions)
      for i, a in ipairs(actions) do
        assert.equals(cards[i].id, a.sim_card_id)
        assert.equals("set_public_ip", a.action_type)
      end
      assert.is_true(until_true(2, function()
        local summary = call(200, "GET", "/bulk_sim_card_actions/" .. bulk.id).data.sim_card_actions_summary
        return #summary == 1 and summary[1].status == "completed" and summary[1].count == 3
      end))
      for _, card in ipairs(cards) do
        assert.is_string(call(200, "GET", "/sim_cards/" .. card.id .. "/public_ip").data.ip)
      end
      -- again: every card has an IP already, so every action fails
      bulk = call(202, "POST", "/sim_cards/actions/bulk_set_public_ips", { sim_card_ids = ids_of(cards) }).data
      assert.same({ { status = "failed", count = 3 } }, bulk.sim_card_actions_summary)
      doc = call(422, "POST", "/sim_cards/actions/bulk_set_public_ips", { sim_card_ids = { cards[1].id, UNKNOWN } })
      assert.equals("/sim_card_ids/1", doc.errors[1].source.pointer)
      call(422, "POST", "/sim_cards/actions/bulk_set_public_ips", {})
      local list = call(200, "GET", "/bulk_sim_card_actions?filter[action_type]=bulk_set_public_ips")
      assert.equals(2, list.meta.total_results)
      assert.equals(404, (stub:api("GET", "/bulk_sim_card_actions/" .. UNKNOWN)))
    end)

    it("bulk voice acts on every card of the group", function()
      local group = call(200, "POST", "/sim_card_groups", { name = "voice" }).data
      local inside = purchase(2, { sim_card_group_id = group.id })
      local outside = purchase(1)[1]
      local bulk = call(202, "POST", "/sim_cards/actions/bulk_enable_voice", { sim_card_group_id = group.id }).data
      assert.equals("bulk_enable_voice", bulk.action_type)
      assert.same({ sim_card_group_id = group.id }, bulk.settings)
      assert.same({ { status = "in-progress", count = 2 } }, bulk.sim_card_actions_summary)
      assert.is_true(until_true(2, function()
        return call(200, "GET", "/sim_cards/" .. inside[2].id).data.voice_enabled == true
      end))
      assert.is_true(call(200, "GET", "/sim_cards/" .. inside[1].id).data.voice_enabled)
      assert.is_false(call(200, "GET", "/sim_cards/" .. outside.id).data.voice_enabled)
      call(202, "POST", "/sim_cards/actions/bulk_disable_voice", { sim_card_group_id = group.id })
      call(422, "POST", "/sim_cards/actions/bulk_disable_voice", { sim_card_group_id = UNKNOWN })
      call(422, "POST", "/sim_cards/actions/bulk_disable_voice", {})
    end)
  end)

  describe("SIM card groups", function()
    it("creates (200), lists with sim_card_count, reads, updates and deletes groups", function()
      local doc = call(200, "POST", "/sim_card_groups", { name = "Fleet", data_limit = { amount = "100.0", unit = "MB" } })
      local group = doc.data
      assert.equals("sim_card_group", group.record_type)
      assert.equals("Fleet", group.name)
      assert.is_false(group.default)
      assert.same({ amount = "100.0", unit = "MB" }, group.data_limit)
      assert.same({ amount = "0.0", unit = "MB" }, group.consumed_data)
      assert.equals(null, group.private_wireless_gateway_id)
      local cards = purchase(2, { sim_card_group_id = group.id })
      local list = call(200, "GET", "/sim_card_groups")
      assert.equals(2, list.meta.total_results)
      assert.equals(GROUP, list.data[1].id)
      assert.is_true(list.data[1].default)
      assert.equals(0, list.data[1].sim_card_count)
      assert.equals(2, list.data[2].sim_card_count)
      assert.same({ group.id }, ids_of(call(200, "GET", "/sim_card_groups?filter[name]=Fleet").data))
      local got = call(200, "GET", "/sim_card_groups/" .. group.id .. "?include_iccids=true").data
      assert.same({ cards[1].iccid, cards[2].iccid }, got.iccids)
      doc = call(200, "PATCH", "/sim_card_groups/" .. group.id, { name = "Renamed" })
      assert.equals("Renamed", doc.data.name)
      assert.same({ amount = "100.0", unit = "MB" }, doc.data.data_limit)
      call(422, "POST", "/sim_card_groups", {})
      call(422, "DELETE", "/sim_card_groups/" .. GROUP)
      doc = call(200, "DELETE", "/sim_card_groups/" .. group.id)
      assert.equals("Renamed", doc.data.name)
      call(404, "GET", "/sim_card_groups/" .. group.id)
      -- its cards are left in no group
      assert.equals(null, call(200, "GET", "/sim_cards/" .. cards[1].id).data.sim_card_group_id)
    end)

    it("group actions: set then remove a private wireless gateway and a blocklist", function()
      local group = call(200, "POST", "/sim_card_groups", { name = "pwg" }).data
      local gateway = helpers.uuid()
      call(422, "POST", "/sim_card_groups/" .. group.id .. "/actions/remove_private_wireless_gateway")
      call(422, "POST", "/sim_card_groups/" .. group.id .. "/actions/set_private_wireless_gateway", {})
      local action = call(202, "POST", "/sim_card_groups/" .. group.id .. "/actions/set_private_wireless_gateway",
        { private_wireless_gateway_id = gateway }).data
      assert.equals("sim_card_group_action", action.record_type)
      assert.equals("set_private_wireless_gateway", action.type)
      assert.equals("in-progress", action.status)
      assert.equals(group.id, action.sim_card_group_id)
      assert.same({ private_wireless_gateway_id = gateway }, action.settings)
      assert.is_true(until_true(2, function()
        return call(200, "GET", "/sim_card_group_actions/" .. action.id).data.status == "completed"
      end))
      assert.equals(gateway, call(200, "GET", "/sim_card_groups/" .. group.id).data.private_wireless_gateway_id)
      assert.same({ group.id }, ids_of(call(200, "GET",
        "/sim_card_groups?filter[private_wireless_gateway_id]=" .. gateway).data))
      local blocklist = helpers.uuid()
      call(202, "POST", "/sim_card_groups/" .. group.id .. "/actions/set_wireless_blocklist",
        { wireless_blocklist_id = blocklist })
      call(202, "POST", "/sim_card_groups/" .. group.id .. "/actions/remove_private_wireless_gateway")
      assert.is_true(until_true(2, function()
        local g = call(200, "GET", "/sim_card_groups/" .. group.id).data
        return g.wireless_blocklist_id == blocklist and g.private_wireless_gateway_id == null
      end))
      call(202, "POST", "/sim_card_groups/" .. group.id .. "/actions/remove_wireless_blocklist")
      local list = call(200, "GET", "/sim_card_group_actions?filter[sim_card_group_id]=" .. group.id)
      assert.equals(4, list.meta.total_results)
      assert.equals(1, call(200, "GET", "/sim_card_group_actions?filter[type]=set_wireless_blocklist").meta.total_results)
      assert.equals(1, call(200, "GET", "/sim_card_group_actions?filter[status]=in-progress").meta.total_results)
      call(404, "POST", "/sim_card_groups/" .. UNKNOWN .. "/actions/remove_wireless_blocklist")
      call(404, "GET", "/sim_card_group_actions/" .. UNKNOWN)
    end)
  end)

  describe("orders, notifications and reference data", function()
    it("previews (202) and creates (200) orders, lists and reads them; an unknown one is a bare 404", function()
      local preview = call(202, "POST", "/sim_card_order_preview", { quantity = 3, address_id = "1293384261075731499" }).data
      assert.equals("sim_card_order_preview", preview.record_type)
      assert.equals(3, preview.quantity)
      assert.same({ amount = "4.50", currency = "USD" }, preview.sim_cards_cost)
      assert.same({ amount = "8.50", currency = "USD" }, preview.total_cost)
      assert.equals(0, call(200, "GET", "/sim_card_orders").meta.total_results) -- a preview orders nothing
      local order = call(200, "POST", "/sim_card_orders", { quantity = 3, address_id = "1293384261075731499" }).data
      assert.equals("sim_card_order", order.record_type)
      assert.equals("pending", order.status)
      assert.equals(3, order.quantity)
      assert.same(preview.total_cost, order.cost)
      assert.equals("1293384261075731499", order.order_address.id)
      call(200, "POST", "/sim_card_orders", { quantity = 5, address_id = "42" })
      local function ids(query) return ids_of(call(200, "GET", "/sim_card_orders?" .. query).data) end
      assert.same({ order.id }, ids("filter[quantity]=3"))
      assert.same({ order.id }, ids("filter[address.id]=1293384261075731499"))
      assert.equals(2, #ids("filter[cost.currency]=USD&filter[address.locality]=Austin"))
      assert.same(order, call(200, "GET", "/sim_card_orders/" .. order.id).data)
      local doc = call(404, "GET", "/sim_card_orders/" .. UNKNOWN)
      assert.is_nil(doc.errors)
      assert.equals("10005", doc.code)
      assert.equals("Resource not found", doc.title)
      assert.is_string(doc.detail)
      for _, bad in ipairs{ { quantity = 0, address_id = "1" }, { quantity = 1 }, { quantity = 1.5, address_id = "1" } } do
        call(422, "POST", "/sim_card_orders", bad)
        call(422, "POST", "/sim_card_order_preview", bad)
      end
    end)

    it("creates (201), lists, reads, updates and deletes data usage notifications", function()
      local cards = purchase(2)
      local threshold = { amount = "2048.0", unit = "MB" }
      local n = call(201, "POST", "/sim_card_data_usage_notifications", { sim_card_id = cards[1].id, threshold = threshold }).data
      assert.equals("sim_card_data_usage_notification", n.record_type)
      assert.equals(cards[1].id, n.sim_card_id)
      assert.same(threshold, n.threshold)
      call(201, "POST", "/sim_card_data_usage_notifications", { sim_card_id = cards[2].id, threshold = threshold })
      assert.equals(2, call(200, "GET", "/sim_card_data_usage_notifications").meta.total_results)
      assert.same({ n.id }, ids_of(call(200, "GET",
        "/sim_card_data_usage_notifications?filter[sim_card_id]=" .. cards[1].id).data))
      local doc = call(200, "PATCH", "/sim_card_data_usage_notifications/" .. n.id, { threshold = { amount = "1", unit = "GB" } })
      assert.same({ amount = "1", unit = "GB" }, doc.data.threshold)
      assert.same(doc.data, call(200, "GET", "/sim_card_data_usage_notifications/" .. n.id).data)
      assert.equals(n.id, call(200, "DELETE", "/sim_card_data_usage_notifications/" .. n.id).data.id)
      doc = call(404, "GET", "/sim_card_data_usage_notifications/" .. n.id)
      assert.equals("10005", doc.code)                 -- bare: the document's wireless_ResourceNotFound
      doc = call(404, "DELETE", "/sim_card_data_usage_notifications/" .. n.id)
      assert.equals("10005", doc.errors[1].code)       -- no 404 in the document here: { errors }
      call(422, "POST", "/sim_card_data_usage_notifications", { sim_card_id = cards[1].id })
      call(422, "POST", "/sim_card_data_usage_notifications", { sim_card_id = UNKNOWN, threshold = threshold })
      call(422, "POST", "/sim_card_data_usage_notifications",
        { sim_card_id = cards[1].id, threshold = { amount = "1", unit = "KB" } })
    end)

    it("lists wireless regions for a product (required: 422; unknown: bare 404)", function()
      local doc = call(200, "GET", "/wireless/regions?product=public_ips")
      assert.is_nil(doc.meta)
      assert.equals("dc2", doc.data[1].code)
      assert.is_string(doc.data[1].name)
      doc = call(422, "GET", "/wireless/regions")
      assert.equals("product", doc.errors[1].source.parameter)
      doc = call(404, "GET", "/wireless/regions?product=nothing")
      assert.equals("10005", doc.code)
    end)

    it("lists mobile network operators, paged and filtered", function()
      local doc = call(200, "GET", "/mobile_network_operators?page[size]=4")
      assert.equals(4, #doc.data)
      assert.same({ page_number = 1, page_size = 4, total_pages = 4, total_results = 15 }, doc.meta)
      assert.equals("mobile_network_operator", doc.data[1].record_type)
      local function names(query)
        local out = {}
        for i, op in ipairs(call(200, "GET", "/mobile_network_operators?" .. query).data) do out[i] = op.name end
        return out
      end
      assert.same({ "AT&T Mobility (USACG)" }, names("filter[name][starts_with]=AT%26T"))
      assert.same({ "Vodafone UK (GBRVF)", "Vodafone Germany (DEUD2)", "Vodafone Portugal (PRTTL)" },
        names("filter%5Bname%5D%5Bstarts_with%5D=voda"))
      assert.same({ "Vodafone Germany (DEUD2)" }, names("filter[name][contains]=germany"))
      assert.same({ "Orange France (FRAF1)", "SFR (FRAF2)" }, names("filter[country_code]=FR"))
      assert.same({ "SFR (FRAF2)" }, names("filter[country_code]=FR&filter[network_preferences_enabled]=false"))
      assert.same({ "T-Mobile USA (USAW6)" }, names("filter[mcc]=310&filter[mnc]=260"))
      assert.same({ "EE (GBRME)" }, names("filter[name][ends_with]=(gbrme)"))
      call(422, "GET", "/mobile_network_operators?page[size]=300")
    end)
  end)

  describe("delays, stats and control", function()
    -- Sends one request on a fresh connection; the caller reads the answer.
    local function open_request(path, delay)
      local sock = socket.tcp()
      sock:settimeout(10)
      assert(sock:connect("127.0.0.1", stub.port))
      local head = "GET /v2" .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
      if delay then head = head .. "X-Fake-Delay: " .. delay .. "\r\n" end
      assert(sock:send(head .. "Connection: close\r\n\r\n"))
      return sock
    end

    it("X-Fake-Delay holds one answer without blocking others", function()
      local t0 = socket.gettime()
      local slow = open_request("/sim_cards", 0.6)
      local fast = assert(helpers.read_response(open_request("/sim_cards")))
      assert.equals(200, fast.status)
      assert.is_true(socket.gettime() - t0 < 0.5)
      local res = assert(helpers.read_response(slow))
      slow:close()
      assert.equals(200, res.status)
      assert.is_true(socket.gettime() - t0 >= 0.6)
      local delayed = 0
      for _, req in ipairs(stub:requests()) do
        if req.headers["x-fake-delay"] == "0.6" then delayed = delayed + 1 end
      end
      assert.equals(1, delayed)
    end)

    it("config delay holds every API answer, scripted ones too, but no control answer", function()
      stub:config{ delay = 0.3 }
      local t0 = socket.gettime()
      call(200, "GET", "/sim_cards")
      assert.is_true(socket.gettime() - t0 >= 0.3)
      stub:queue{ status = 204, body = "" }
      t0 = socket.gettime()
      call(204, "GET", "/sim_cards")
      assert.is_true(socket.gettime() - t0 >= 0.3)
      t0 = socket.gettime()
      stub:stats()
      assert.is_true(socket.gettime() - t0 < 0.25)
      t0 = socket.gettime()
      call(200, "GET", "/sim_cards", nil, { ["x-fake-delay"] = "0" }) -- the header overrides
      assert.is_true(socket.gettime() - t0 < 0.25)
    end)

    it("tracks the peak of API requests in flight; reset zeroes it", function()
      assert.same({ requests = 0, in_flight = 0, in_flight_peak = 0 }, stub:stats())
      call(200, "GET", "/sim_cards")
      assert.same({ requests = 1, in_flight = 0, in_flight_peak = 1 }, stub:stats())
      local t0 = socket.gettime()
      local socks = {}
      for i = 1, 6 do socks[i] = open_request("/sim_cards?n=" .. i, 0.5) end
      assert.is_true(until_true(2, function() return stub:stats().in_flight == 6 end))
      for _, sock in ipairs(socks) do
        local res = assert(helpers.read_response(sock))
        assert.equals(200, res.status)
        sock:close()
      end
      local elapsed = socket.gettime() - t0
      assert.is_true(elapsed >= 0.5 and elapsed < 1.5, "six 0.5 s answers took " .. elapsed .. " s")
      assert.same({ requests = 7, in_flight = 0, in_flight_peak = 6 }, stub:stats())
      stub:reset()
      assert.same({ requests = 0, in_flight = 0, in_flight_peak = 0 }, stub:stats())
    end)

    it("counts a stalled request in flight until its connection ends", function()
      stub:queue{ mode = "stall", duration = 5 }
      local sock = open_request("/x")
      assert.is_true(until_true(2, function() return stub:stats().in_flight == 1 end))
      sock:close()
      assert.is_true(until_true(2, function() return stub:stats().in_flight == 0 end))
      assert.equals(1, stub:stats().in_flight_peak)
    end)

    it("reset clears the API state and restores the config", function()
      purchase(2)
      call(200, "POST", "/sim_card_groups", { name = "g" })
      call(200, "POST", "/sim_card_orders", { quantity = 1, address_id = "1" })
      call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "0000000001" } })
      stub:config{ action_delay = 5, delay = 0.01, implicit_cards = false }
      stub:reset()
      assert.same({ action_delay = 0.2, delay = 0, implicit_cards = true }, stub:config())
      local state = stub:state()
      assert.equals(0, #state.sim_cards)
      assert.equals(1, #state.sim_card_groups)
      assert.equals(0, #state.sim_card_orders)
      assert.equals(0, #state.used_registration_codes)
      assert.equals(0, call(200, "GET", "/sim_cards").meta.total_results)
      assert.equals(1, #call(202, "POST", "/actions/register/sim_cards", { registration_codes = { "0000000001" } }).data)
    end)

    it("refuses bad settings and bad seeds", function()
      for _, bad in ipairs{ { action_delay = -1 }, { delay = "1" }, { implicit_cards = 1 }, { nope = 1 } } do
        local res = helpers.http{ port = stub.port, method = "POST", path = "/__fake/config", body = helpers.encode(bad) }
        assert.equals(400, res.status)
      end
      assert.same({ action_delay = 0.2, delay = 0, implicit_cards = true }, stub:config())
      local res = helpers.http{ port = stub.port, method = "POST", path = "/__fake/seed",
        body = helpers.encode{ sim_cards = { { tags = { "a" } }, { sim_card_group_id = UNKNOWN } } } }
      assert.equals(400, res.status)
      assert.equals(0, #stub:state().sim_cards) -- nothing half-seeded
    end)

    it("seeds groups and cards that the API then serves", function()
      local seeded = stub:seed{
        sim_card_groups = { { name = "seeded", id = "11111111-2222-4333-8444-555555555555" } },
        sim_cards = {
          { type = "physical", status = "disabled", tags = { "s" }, sim_card_group_id = "11111111-2222-4333-8444-555555555555",
            msisdn = "+15550000001" },
          { id = "22222222-3333-4444-8555-666666666666", sim_card_group_id = null },
        },
      }
      assert.equals("seeded", seeded.sim_card_groups[1].name)
      local card = call(200, "GET", "/sim_cards/" .. seeded.sim_cards[1].id).data
      assert.equals("physical", card.type)
      assert.equals("disabled", card.status.value)
      assert.equals("+15550000001", card.msisdn)
      assert.same({ "s" }, card.tags)
      card = call(200, "GET", "/sim_cards/22222222-3333-4444-8555-666666666666").data
      assert.equals("esim", card.type)
      assert.equals(null, card.sim_card_group_id)
      call(422, "POST", "/sim_cards/" .. card.id .. "/actions/enable")
    end)

    it("keeps logging every API request: method, path, raw query, headers, body", function()
      call(200, "PATCH", "/sim_cards/" .. purchase(1)[1].id .. "?x=%20y", { tags = { "t" } })
      local req = stub:last_request()
      assert.equals("PATCH", req.method)
      assert.matches("^/v2/sim_cards/", req.path)
      assert.equals("x=%20y", req.query)
      assert.equals('{"tags":["t"]}', req.body)
      assert.equals("application/json", req.headers["content-type"])
      assert.equals(2, #stub:requests())
    end)
  end)
end)
