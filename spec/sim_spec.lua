-- The core surface of telnyx.sim against the stub server: what goes out on the
-- wire, what comes back as Lua tables, and the errors.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

local KEY = "KEY0123456789abcdefSECRET"
local GROUP = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"
local has_integers = math.type ~= nil

local function int_type(v)
  if has_integers then return math.type(v) end
  return (type(v) == "number" and v == math.floor(v)) and "integer" or type(v)
end

describe("telnyx.sim", function()
  local stub, client

  setup(function()
    stub = helpers.start_stub()
  end)

  teardown(function()
    if stub then stub:stop() end
  end)

  before_each(function()
    stub:reset()
    client = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0 })
  end)

  after_each(function()
    if client then client:close() end
  end)

  local function sent_body()
    local req = assert(stub:last_request(), "the stub saw no request")
    return helpers.decode(req.body), req
  end

  describe("module", function()
    it("has a version and lists its operations", function()
      assert.matches("^%d+%.%d+%.%d+$", sim._VERSION)
      assert.is_true(#sim.operations > 0)
      for _, name in ipairs(sim.operations) do assert.equal(name, sim.describe(name).name) end
      assert.same({ "purchase_esims", "register_sim_cards", "list_sim_cards", "get_sim_card" },
        { sim.operations[1], sim.operations[2], sim.operations[3], sim.operations[4] })
    end)

    it("gives every client the operations as methods", function()
      assert.is_function(client.purchase_esims)
      assert.is_function(client.register_sim_cards)
      assert.is_function(client.get_sim_card)
      assert.is_function(client.close)
    end)
  end)

  describe("purchase_esims", function()
    it("POSTs exactly the given fields as JSON with the expected headers", function()
      local res, err = client:purchase_esims{ amount = 2 }
      assert.is_nil(err)
      local body, req = sent_body()
      assert.same({ amount = 2 }, body)
      assert.equal('{"amount":2}', req.body)
      assert.equal("POST", req.method)
      assert.equal("/v2/actions/purchase/esims", req.path)
      assert.equal("Bearer " .. KEY, req.headers["authorization"])
      assert.equal("application/json", req.headers["content-type"])
      assert.equal("application/json", req.headers["accept"])
      assert.matches("^telnyx%-sim%-lua/" .. sim._VERSION:gsub("%.", "%%.") .. " %(Lua 5%.%d; libcurl/%d+%.%d+%.%d+%)$",
        req.headers["user-agent"])
      assert.is_nil(req.headers["expect"])
      assert.equal(2, #res.data)
      assert.same({}, res.errors)
    end)

    it("sends every optional field when given, and an empty array as []", function()
      local _, err = client:purchase_esims{
        amount = 5, sim_card_group_id = GROUP, tags = { "fleet", "eu" }, product = "whitelabel",
        whitelabel_name = "Acme Mobile 2", status = "standby",
      }
      assert.is_nil(err)
      assert.same({
        amount = 5, sim_card_group_id = GROUP, tags = { "fleet", "eu" }, product = "whitelabel",
        whitelabel_name = "Acme Mobile 2", status = "standby",
      }, (sent_body()))

      assert(client:purchase_esims{ amount = 1, tags = {} })
      assert.equal('{"amount":1,"tags":[]}', stub:last_request().body)
    end)

    for _, field in ipairs{ "sim_card_group_id", "tags", "product", "whitelabel_name", "status" } do
      it("leaves out " .. field .. " when not given", function()
        local all = {
          amount = 3, sim_card_group_id = GROUP, tags = { "a" }, product = "whitelabel",
          whitelabel_name = "Name", status = "disabled",
        }
        all[field] = nil
        assert(client:purchase_esims(all))
        local body = sent_body()
        assert.is_nil(body[field])
        assert.same(all, body)
      end)
    end

    it("escapes strings properly in the JSON body", function()
      local tag = 'quote " backslash \\ newline \n tab \t ctl \1 snowman \226\152\131'
      assert(client:purchase_esims{ amount = 1, tags = { tag } })
      assert.same({ amount = 1, tags = { tag } }, (sent_body()))
    end)

    it("sends a random UUIDv4 Idempotency-Key, or the caller's", function()
      assert(client:purchase_esims{ amount = 1 })
      local k1 = stub:last_request().headers["idempotency-key"]
      assert(client:purchase_esims{ amount = 1 })
      local k2 = stub:last_request().headers["idempotency-key"]
      local uuid4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
      assert.matches(uuid4, k1)
      assert.matches(uuid4, k2)
      assert.not_equal(k1, k2)
      assert(client:purchase_esims({ amount = 1 }, { idempotency_key = "order-42" }))
      assert.equal("order-42", stub:last_request().headers["idempotency-key"])
    end)

    it("reuses one kept-alive connection across calls", function()
      for _ = 1, 3 do assert(client:purchase_esims{ amount = 1 }) end
      local reqs = stub:requests()
      assert.equal(3, #reqs)
      assert.equal(reqs[1].conn, reqs[2].conn)
      assert.equal(reqs[1].conn, reqs[3].conn)
    end)
  end)

  describe("results", function()
    -- The example SIM card of Telnyx's spec, plus fields a later API may add.
    local seed = {
      id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
      record_type = "sim_card",
      iccid = "89310410106543789301",
      imsi = "081932214823362973",
      msisdn = "+13109976224",
      type = "physical",
      status = { value = "enabled", reason = "The SIM card is active, ready to connect to networks and consume data." },
      tags = { "personal", "customers", "active-customers" },
      sim_card_group_id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
      eid = helpers.null,
      esim_installation_status = helpers.null,
      authorized_imeis = { "106516771852751", "534051870479563", "508821468377961" },
      actions_in_progress = true,
      data_limit = { amount = "2048.0", unit = "MB" },
      current_billing_period_consumed_data = { amount = "2049.0", unit = "MB" },
      current_device_location = { accuracy = 1250, accuracy_unit = "m", latitude = "41.143", longitude = "-8.605" },
      resources_with_in_progress_actions = helpers.empty_array,
      version = "4.3",
      voice_enabled = false,
      created_at = "2018-02-02T22:25:27.521Z",
      updated_at = "2018-02-02T22:25:27.521Z",
      future_field = { nested = { 1, 2.5, helpers.null, "x" } },
    }

    it("turns the seed SIM card into a plain table: nulls absent, integers, strings kept", function()
      stub:queue{ status = 202, json = { data = { seed } } }
      local res = assert(client:purchase_esims{ amount = 1 })
      assert.equal(1, #res.data)
      local card = res.data[1]
      assert.same({
        id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
        record_type = "sim_card",
        iccid = "89310410106543789301",
        imsi = "081932214823362973",
        msisdn = "+13109976224",
        type = "physical",
        status = { value = "enabled", reason = "The SIM card is active, ready to connect to networks and consume data." },
        tags = { "personal", "customers", "active-customers" },
        sim_card_group_id = "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
        authorized_imeis = { "106516771852751", "534051870479563", "508821468377961" },
        actions_in_progress = true,
        data_limit = { amount = "2048.0", unit = "MB" },
        current_billing_period_consumed_data = { amount = "2049.0", unit = "MB" },
        current_device_location = { accuracy = 1250, accuracy_unit = "m", latitude = "41.143", longitude = "-8.605" },
        resources_with_in_progress_actions = {},
        version = "4.3",
        voice_enabled = false,
        created_at = "2018-02-02T22:25:27.521Z",
        updated_at = "2018-02-02T22:25:27.521Z",
        future_field = { nested = { 1, 2.5, sim.null, "x" } }, -- a null keeps its place in an array
      }, card)
      assert.equal(sim.array_mt, getmetatable(card.tags))
      if helpers.cjson_fork then -- [] stays an array
        assert.equal(sim.array_mt, getmetatable(card.resources_with_in_progress_actions))
      else -- Debian's lua-cjson 2.1.0 cannot tell [] from {} (the README says so)
        assert.is_nil(getmetatable(card.resources_with_in_progress_actions))
      end
      assert.is_nil(getmetatable(card.data_limit))
      assert.equal(sim.array_mt, getmetatable(res.data))
      assert.is_nil(card.eid)
      assert.is_nil(rawget(card, "esim_installation_status"))
      assert.equal("integer", int_type(card.current_device_location.accuracy))
      assert.equal("integer", int_type(card.future_field.nested[1]))
      assert.equal(2.5, card.future_field.nested[2])
      if has_integers then assert.equal("float", math.type(card.future_field.nested[2])) end
      assert.equal("string", type(card.imsi))
      assert.equal("081932214823362973", card.imsi)
      assert.same({}, res.errors)
    end)

    it("keeps both data and errors of a partly refused registration", function()
      local res = assert(client:register_sim_cards{ registration_codes = { "0000000001", "9990000002", "0000000003" } })
      assert.equal(2, #res.data)
      assert.equal("physical", res.data[1].type)
      assert.equal(1, #res.errors)
      assert.same({
        code = "10008",
        title = "Registration code not found",
        detail = "The registration code 9990000002 was not found",
        source = { pointer = "/registration_codes/1" },
        meta = { registration_code = "9990000002" },
      }, res.errors[1])
    end)

    it("gives empty tables when data or errors are absent or null", function()
      stub:queue{ status = 202, json = { errors = helpers.null } }
      local res = assert(client:register_sim_cards{ registration_codes = { "1" } })
      assert.same({}, res.data)
      assert.same({}, res.errors)
    end)

    it("keeps top-level fields other than data and errors", function()
      stub:queue{ status = 202, json = { data = { seed }, meta = { total_results = 1 } } }
      local res = assert(client:purchase_esims{ amount = 1 })
      assert.same({ total_results = 1 }, res.meta)
      assert.equal("integer", int_type(res.meta.total_results))
    end)

    it("is not affected by the application's own cjson settings", function()
      local cjson = require "cjson"
      cjson.decode_max_depth(2)
      local ok, res = pcall(client.purchase_esims, client, { amount = 1 })
      cjson.decode_max_depth(1000)
      assert.is_true(ok)
      assert.is_table(res)
      assert.equal(1, #res.data)
      assert.equal("MB", res.data[1].data_limit.unit)
      -- and the module left the application's cjson alone
      assert.equal(cjson.null, cjson.decode("[null]")[1])
    end)
  end)

  describe("HTTP errors", function()
    it("a 401 with no body", function()
      stub:queue{ status = 401, body = "", headers = { ["x-request-id"] = "req-401" } }
      local res, err = client:purchase_esims{ amount = 1 }
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(401, err.status)
      assert.equal("integer", int_type(err.status))
      assert.same({}, err.errors)
      assert.equal("req-401", err.request_id)
      assert.matches("HTTP 401", err.message)
      assert.equal("telnyx.sim: " .. err.message .. " (request_id req-401)", tostring(err))
    end)

    it("a real 401 from a wrong key, with the key nowhere in the error", function()
      local bad = assert(sim.new{ api_key = KEY, base_url = stub.base_url })
      stub:queue{ status = 401, body = "" }
      local _, err = bad:register_sim_cards{ registration_codes = { "1" } }
      assert.equal(401, err.status)
      assert.not_matches(KEY, tostring(err), 1, true)
      bad:close()
    end)

    it("a 422 with the API's errors decoded", function()
      stub:queue{ status = 422, headers = { ["x-request-id"] = "req-422" }, json = { errors = {
        helpers.api_error("10015", "Invalid parameter", "sim_card_group_id does not exist", "/sim_card_group_id"),
        helpers.api_error("10016", "Other", "second problem"),
      } } }
      local res, err = client:purchase_esims{ amount = 1, sim_card_group_id = GROUP }
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(422, err.status)
      assert.equal("req-422", err.request_id)
      assert.same({
        { code = "10015", title = "Invalid parameter", detail = "sim_card_group_id does not exist",
          source = { pointer = "/sim_card_group_id" } },
        { code = "10016", title = "Other", detail = "second problem" },
      }, err.errors)
      assert.equal("purchase_esims: HTTP 422: Invalid parameter: sim_card_group_id does not exist (+1 more)", err.message)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
    end)
  end)

  describe("invalid params are refused before any traffic", function()
    local cases = {
      { "purchase_esims", nil, "amount", "'amount' is required" }, -- no params: an empty table
      { "purchase_esims", "x", "params", "params must be a table" },
      { "purchase_esims", {}, "amount", "'amount' is required" },
      { "purchase_esims", { amount = 1.5 }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = "10" }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = 0 }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = -1 }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = math.huge }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = 0 / 0 }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = 2 ^ 60 }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = true }, "amount", "'amount' must be an integer >= 1" },
      { "purchase_esims", { amount = 1, tags = "fleet" }, "tags", "'tags' must be an array %(a sequence 1..n%) %(got a string" },
      { "purchase_esims", { amount = 1, tags = { "a", 2 } }, "tags[2]", "'tags%[2%]' must be a non%-empty UTF%-8 string %(got number 2%)" },
      { "purchase_esims", { amount = 1, tags = { x = "a" } }, "tags", "'tags' must be an array .*non%-integer keys" },
      { "purchase_esims", { amount = 1, tags = { [1] = "a", [3] = "c" } }, "tags", "'tags' must be an array .*holes" },
      { "purchase_esims", { amount = 1, tags = { "\255\254" } }, "tags[1]", "not valid UTF%-8" },
      { "purchase_esims", { amount = 1, sim_card_group_id = "not-a-uuid" }, "sim_card_group_id", "must be a UUID" },
      { "purchase_esims", { amount = 1, sim_card_group_id = GROUP .. "0" }, "sim_card_group_id", "must be a UUID" },
      { "purchase_esims", { amount = 1, sim_card_group_id = 42 }, "sim_card_group_id", "must be a UUID" },
      { "purchase_esims", { amount = 1, status = "active" }, "status", "'status' must be one of \"enabled\", \"disabled\", \"standby\"" },
      { "purchase_esims", { amount = 1, status = 1 }, "status", "'status' must be one of" },
      { "purchase_esims", { amount = 1, whitelabel_name = "Acme-Mobile" }, "whitelabel_name", "only ASCII letters" },
      { "purchase_esims", { amount = 1, whitelabel_name = "Flöte" }, "whitelabel_name",
        "only ASCII letters %(A%-Z, a%-z%), digits and spaces or tabs" },
      { "purchase_esims", { amount = 1, whitelabel_name = "A\nB" }, "whitelabel_name", "only ASCII letters" },
      { "purchase_esims", { amount = 1, whitelabel_name = "   " }, "whitelabel_name", "at least one letter or digit" },
      { "purchase_esims", { amount = 1, product = "" }, "product", "'product' must be a non%-empty UTF%-8 string" },
      { "purchase_esims", { amount = 1, amout = 2 }, "amout", "unknown field 'amout'" },
      { "purchase_esims", { amount = 1, registration_codes = { "1" } }, "registration_codes", "unknown field" },
      { "purchase_esims", { amount = 1, [1] = "x" }, "[1]", "unknown field '%[1%]'" },
      { "register_sim_cards", {}, "registration_codes", "'registration_codes' is required" },
      { "register_sim_cards", { registration_codes = {} }, "registration_codes", "length >= 1 %(got 0 items%)" },
      { "register_sim_cards", { registration_codes = "0000000001" }, "registration_codes", "must be an array" },
      { "register_sim_cards", { registration_codes = { "1", 2 } }, "registration_codes[2]", "got number 2" },
      { "register_sim_cards", { registration_codes = { "1", "" } }, "registration_codes[2]", "got a string of 0 bytes" },
      { "register_sim_cards", { registration_codes = { "1" }, status = "on" }, "status", "must be one of" },
      { "register_sim_cards", { registration_codes = { "1" }, amount = 1 }, "amount", "unknown field 'amount'" },
    }
    for i, case in ipairs(cases) do
      local op, params, field, pattern = case[1], case[2], case[3], case[4]
      it(("#%d %s: %s"):format(i, op, pattern), function()
        local res, err = client[op](client, params)
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
        assert.equal(field, err.field)
        assert.matches(pattern, err.message)
        assert.matches("^telnyx%.sim: " .. op .. ": ", tostring(err))
        assert.equal(0, #stub:requests())
      end)
    end

    it("refuses bad per-call options the same way", function()
      local bad = {
        { { timeout = 0 }, "opts.timeout" },
        { { timeout = "1" }, "opts.timeout" },
        { { max_retries = -1 }, "opts.max_retries" },
        { { max_retries = 1.5 }, "opts.max_retries" },
        { { idempotency_key = "" }, "opts.idempotency_key" },
        { { idempotency_key = 92 }, "opts.idempotency_key" },
        { { idempotency_key = "a\r\nX-Evil: 1" }, "opts.idempotency_key" },
        { { headers = { ["X-Ok"] = "a\nb" } }, "opts.headers.X-Ok" },
        { { headers = { ["Bad Name"] = "v" } }, "opts.headers" },
        { { headers = { Authorization = "Bearer other" } }, "opts.headers" },
        { { retry_may_duplicate = "yes" }, "opts.retry_may_duplicate" },
      }
      for _, case in ipairs(bad) do
        local res, err = client:purchase_esims({ amount = 1 }, case[1])
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
        assert.equal(case[2], err.field)
      end
      local _, err = client:purchase_esims({ amount = 1 }, { tiemout = 1 })
      assert.matches("unknown option 'opts.tiemout'", err.message)
      assert.equal(0, #stub:requests())
    end)

    it("sends extra per-call headers", function()
      assert(client:register_sim_cards({ registration_codes = { "1" } }, { headers = { ["X-Trace"] = "abc" } }))
      local req = stub:last_request()
      assert.equal("abc", req.headers["x-trace"])
      assert.is_nil(req.headers["idempotency-key"])
      assert.equal("Bearer " .. KEY, req.headers["authorization"])
      assert(client:purchase_esims({ amount = 1 }, { headers = { ["X-Trace"] = "def" }, idempotency_key = "k-1" }))
      req = stub:last_request()
      assert.equal("def", req.headers["x-trace"])
      assert.equal("k-1", req.headers["idempotency-key"])
      assert(client:purchase_esims({ amount = 1 }, { headers = { ["X-Trace"] = "ghi" } }))
      req = stub:last_request()
      assert.equal("ghi", req.headers["x-trace"])
      assert.matches("^%x+%-", req.headers["idempotency-key"])
    end)
  end)

  describe("get_sim_card", function()
    local ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"

    it("GETs the card by id in the path, with the query flags given, and returns one card", function()
      local res, err = client:get_sim_card{ id = ID, include_sim_card_group = true, include_pin_puk_codes = false }
      assert.is_nil(err)
      local req = stub:last_request()
      assert.equal("GET", req.method)
      assert.equal("/v2/sim_cards/" .. ID, req.path)
      assert.equal("include_sim_card_group=true&include_pin_puk_codes=false", req.query)
      assert.equal("", req.body)
      assert.is_nil(req.headers["idempotency-key"])
      assert.equal("Bearer " .. KEY, req.headers["authorization"])
      assert.equal(ID, res.data.id)
      assert.equal("physical", res.data.type)
      assert.is_nil(res.data.eid)
      assert.same({ id = res.data.sim_card_group_id, name = "Default group" }, res.data.sim_card_group)
      assert.same({}, res.errors)
    end)

    it("sends no query string when no flag is given, and alternates with POSTs on one connection", function()
      assert(client:purchase_esims{ amount = 1 })
      assert(client:get_sim_card{ id = ID })
      assert(client:purchase_esims{ amount = 1 })
      local reqs = stub:requests()
      assert.is_nil(reqs[2].query)
      assert.same({ "POST", "GET", "POST" }, { reqs[1].method, reqs[2].method, reqs[3].method })
      assert.equal('{"amount":1}', reqs[3].body)
      assert.equal(reqs[1].conn, reqs[3].conn)
    end)

    it("a card the API does not know is an http error", function()
      local res, err = client:get_sim_card{ id = "00000000-0000-4000-8000-000000000000" }
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(404, err.status)
      assert.equal("10005", err.errors[1].code)
    end)

    it("refuses a bad id or flag before any traffic", function()
      for _, case in ipairs{
        { {}, "id", "'id' is required" },
        { { id = "../actions/purchase/esims" }, "id", "'id' must be a UUID" },
        { { id = ID, include_pin_puk_codes = "true" }, "include_pin_puk_codes", "must be a boolean" },
        { { id = ID, page = 2 }, "page", "unknown field 'page'" },
      } do
        local res, err = client:get_sim_card(case[1])
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
        assert.equal(case[2], err.field)
        assert.matches(case[3], err.message)
      end
      assert.equal(0, #stub:requests())
    end)

    it("a success whose data is not one SIM card object is a decode error", function()
      stub:queue{ status = 200, json = { data = { helpers.sim_card() } } }
      local _, err = client:get_sim_card{ id = ID }
      assert.equal("decode", err.kind)
      assert.matches("'data' is not an object %(expected one SIM card%)", err.message)
    end)
  end)

  describe("register_sim_cards", function()
    it("POSTs the codes and every optional field", function()
      assert(client:register_sim_cards{ registration_codes = { "0000000001", "0000000002" }, sim_card_group_id = GROUP,
        tags = { "x" }, status = "disabled" })
      local body, req = sent_body()
      assert.equal("/v2/actions/register/sim_cards", req.path)
      assert.same({ registration_codes = { "0000000001", "0000000002" }, sim_card_group_id = GROUP,
        tags = { "x" }, status = "disabled" }, body)
    end)

    for _, field in ipairs{ "sim_card_group_id", "tags", "status" } do
      it("leaves out " .. field .. " when not given", function()
        local all = { registration_codes = { "0000000001" }, sim_card_group_id = GROUP, tags = {}, status = "enabled" }
        all[field] = nil
        assert(client:register_sim_cards(all))
        local body = sent_body()
        assert.is_nil(body[field])
        assert.same(all, body)
      end)
    end
  end)
end)

describe("sim.new", function()
  it("returns nil, err for an unknown option or a wrong option type, naming the option, like per-call options", function()
    for _, case in ipairs{
      { { api_key = "k", tiemout = 1 }, "tiemout", "^sim%.new: unknown option 'tiemout'" },
      { { api_key = "k", timeout = "5" }, "timeout", "option 'timeout' must be a number" },
      { { api_key = "k", timeout = 0 }, "timeout", "option 'timeout'" },
      { { api_key = "k", max_retries = 1.5 }, "max_retries", "option 'max_retries' must be an integer" },
      { { api_key = 42 }, "api_key", "option 'api_key' must be a UTF%-8 string" },
      { { api_key = "k", allow_insecure_http = 1 }, "allow_insecure_http", "must be a boolean" },
      { "k", "options", "options must be a table" },
    } do
      local c, err = sim.new(case[1])
      assert.is_nil(c)
      assert.equal("invalid_params", err.kind)
      assert.equal(case[2], err.field)
      assert.matches(case[3], err.message)
      assert.is_nil(err.message:find("telnyx.sim", 1, true)) -- tostring adds the one prefix
    end
  end)

  it("returns nil, err for a configuration that cannot work", function()
    -- whatever this machine's environment holds: a child without TELNYX_API_KEY
    local code = [[local c, err = require("telnyx.sim").new{ base_url = "https://api.telnyx.com/v2" }
      io.write(tostring(c), " ", err.kind, " ", err.message)]]
    local pipe = assert(io.popen("env -u TELNYX_API_KEY " .. (os.getenv("LUA_BIN") or "lua5.4") .. " -e "
      .. helpers.shell_quote(code)))
    local out = pipe:read("*a")
    pipe:close()
    assert.equal("nil config sim.new: no API key: pass api_key or set TELNYX_API_KEY", out)
    -- an empty string is refused, never replaced by the environment's key
    local c, err = sim.new{ api_key = "", base_url = "https://api.telnyx.com/v2" }
    assert.is_nil(c)
    assert.same({ "config", "api_key" }, { err.kind, err.field })
    for _, url in ipairs{ "ftp://x/v2", "api.telnyx.com", "https://", "https://a b/", "https://h/v2\r\nX: y",
                          "http://example.com/v2", "https://user:pw@example.com/v2" } do
      c, err = sim.new{ api_key = "k", base_url = url }
      assert.is_nil(c, url)
      assert.equal("config", err.kind, url)
      assert.equal("base_url", err.field, url)
      assert.matches("^sim%.new: base_url ", err.message)
    end
    c, err = sim.new{ api_key = "k\r\nX-Evil: 1" }
    assert.is_nil(c)
    assert.equal("config", err.kind)
  end)

  it("allows plain http only to loopback unless told", function()
    assert.truthy(sim.new{ api_key = "k", base_url = "http://127.0.0.1:1/v2" })
    assert.truthy(sim.new{ api_key = "k", base_url = "http://localhost:1/v2" })
    assert.truthy(sim.new{ api_key = "k", base_url = "http://[::1]:1/v2" })
    assert.is_nil(sim.new{ api_key = "k", base_url = "http://10.0.0.1/v2" })
    assert.truthy(sim.new{ api_key = "k", base_url = "http://10.0.0.1/v2", allow_insecure_http = true })
  end)

  it("never shows the API key in tostring", function()
    local c = assert(sim.new{ api_key = "SECRETKEY123", base_url = "https://api.telnyx.com/v2/" })
    assert.equal("telnyx.sim.client (https://api.telnyx.com/v2)", tostring(c))
    c:close()
    assert.equal("telnyx.sim.client (closed)", tostring(c))
    local _, err = c:purchase_esims{ amount = 1 }
    assert.equal("config", err.kind)
    assert.matches("closed", err.message)
  end)

  it("takes api_key and base_url from the environment", function()
    local lua = os.getenv("LUA_BIN") or "lua5.4"
    local cmd = "TELNYX_API_KEY=envkey TELNYX_BASE_URL=https://example.test/v2 " .. lua
      .. [[ -e 'local c = assert(require("telnyx.sim").new()); print(tostring(c))' 2>&1]]
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    assert.equal("telnyx.sim.client (https://example.test/v2)\n", out)
  end)
end)
