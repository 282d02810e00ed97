-- The helpers built from single calls (telnyx/sim/flow.lua) and sim.encode,
-- against the stateful stub server: client:each over real pages (the exact
-- requests, the items in order, a failed page as `false, err`, every paged
-- list operation), client:wait_for_action against actions that complete
-- after the stub's action_delay (waits recorded by an injected sleep that
-- really sleeps), and sim.encode writing results back as JSON.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local socket = require "socket"

local KEY = "KEYflow0123456789SECRET"
local has_integers = math.type ~= nil
local TAG = "flow"

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- "a=1&b%5Bc%5D=2" -> { a = "1", ["b[c]"] = "2" }
local function query_of(req)
  local q = {}
  for pair in (req.query or ""):gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=(.*)$")
    q[url_decode(name or pair)] = url_decode(value or "")
  end
  return q
end

-- The logged API requests for `method path` (path below /v2; a trailing
-- "/*" matches one more segment), oldest first.
local function requests_to(stub, method, path)
  local out = {}
  local pattern = "^/v2" .. path:gsub("[%-%.%[%]]", "%%%0"):gsub("/%*$", "/[^/]+") .. "$"
  for _, r in ipairs(stub:requests()) do
    if r.method == method and r.path:match(pattern) then out[#out + 1] = r end
  end
  return out
end

-- Every step of an each loop, as a list of { item } / { false, err }, up to
-- `limit` steps (a loop that never ends fails the test instead of hanging).
local function steps(iterator, limit)
  local out = {}
  for _ = 1, limit or 1000 do
    local item, err = iterator()
    if item == nil then return out end
    out[#out + 1] = { item, err }
  end
  error("the iterator did not end within " .. tostring(limit or 1000) .. " steps")
end

local function items_of(list)
  local out = {}
  for i, step in ipairs(list) do
    assert(step[1], "step " .. i .. " failed: " .. tostring(step[2]))
    out[i] = step[1]
  end
  return out
end

local function ids_of(list)
  local out = {}
  for i, x in ipairs(list) do out[i] = x.id end
  return out
end

local function near(expected, actual, what)
  assert(math.abs(expected - actual) < 1e-9, (what or "value") .. ": expected " .. expected .. ", got " .. actual)
end

---------------------------------------------------------------------------

describe("telnyx.sim flow helpers against the stateful stub", function()
  local stub, client, waits

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)

  before_each(function()
    stub:reset()
    waits = {}
    client = assert(sim.new{
      api_key = KEY, base_url = stub.base_url, timeout = 10,
      sleep = function(seconds) -- really waits, and notes each wait
        waits[#waits + 1] = seconds
        socket.sleep(seconds)
      end,
    })
  end)

  after_each(function() if client then client:close() end end)

  -- n eSIMs tagged `tag` (and others untagged, before and after), oldest first.
  local function seed_tagged(n, tag)
    local specs = { { tags = { "other" } } }
    for _ = 1, n do specs[#specs + 1] = { tags = { tag, "x" } } end
    specs[#specs + 1] = { tags = helpers.empty_array }
    local seeded = stub:seed{ sim_cards = specs }.sim_cards
    local tagged = {}
    for i = 2, n + 1 do tagged[#tagged + 1] = seeded[i] end
    return tagged
  end

  -------------------------------------------------------------------------
  describe("client:each", function()
    it("walks list_sim_cards page by page: page[number] 1, 2, 3 at page[size] 2, items in order", function()
      local seeded = seed_tagged(5, TAG)
      local params = { filter = { tags = { TAG } }, page = { size = 2 } }
      local got = items_of(steps(client:each("list_sim_cards", params)))

      assert.same(ids_of(seeded), ids_of(got))
      for _, card in ipairs(got) do assert.same({ TAG, "x" }, card.tags) end

      local reqs = requests_to(stub, "GET", "/sim_cards")
      assert.equal(3, #reqs)
      for i, r in ipairs(reqs) do
        assert.same({ ["page[number]"] = tostring(i), ["page[size]"] = "2", ["filter[tags]"] = TAG }, query_of(r))
      end
      -- the caller's params are left as they were
      assert.same({ filter = { tags = { TAG } }, page = { size = 2 } }, params)

      -- as many as the API says there are
      local res = assert(client:list_sim_cards{ filter = { tags = { TAG } }, page = { size = 2 } })
      assert.equal(#got, res.meta.total_results)
      assert.equal(3, res.meta.total_pages)
    end)

    it("stops at meta.total_pages: an exact multiple of the page size takes no extra request", function()
      seed_tagged(4, TAG)
      local got = items_of(steps(client:each("list_sim_cards", { filter = { tags = { TAG } }, page = { size = 2 } })))
      assert.equal(4, #got)
      assert.equal(2, #requests_to(stub, "GET", "/sim_cards"))
    end)

    it("starts at a given page[number]", function()
      local seeded = seed_tagged(5, TAG)
      local got = items_of(steps(client:each("list_sim_cards", { filter = { tags = { TAG } }, page = { number = 2, size = 2 } })))
      assert.same({ seeded[3].id, seeded[4].id, seeded[5].id }, ids_of(got))
      local numbers = {}
      for i, r in ipairs(requests_to(stub, "GET", "/sim_cards")) do numbers[i] = query_of(r)["page[number]"] end
      assert.same({ "2", "3" }, numbers)
    end)

    it("asks for page[size] 250 when params give none, with params {} or none at all", function()
      seed_tagged(3, TAG)
      assert.equal(5, #items_of(steps(client:each("list_sim_cards", {}))))
      assert.equal(5, #items_of(steps(client:each("list_sim_cards"))))
      local reqs = requests_to(stub, "GET", "/sim_cards")
      assert.equal(2, #reqs)
      for _, r in ipairs(reqs) do assert.same({ ["page[number]"] = "1", ["page[size]"] = "250" }, query_of(r)) end
    end)

    it("an empty list: the loop body never runs, after one request", function()
      seed_tagged(2, TAG)
      local n = 0
      for card, err in client:each("list_sim_cards", { filter = { tags = { "nobody-has-this" } }, page = { size = 2 } }) do
        n = n + 1
        assert(card, tostring(err))
      end
      assert.equal(0, n)
      assert.equal(1, #requests_to(stub, "GET", "/sim_cards"))
    end)

    -- A page that fails mid-way: page 1 comes from the emulated API, then a
    -- scripted answer takes page 2.
    for _, case in ipairs{
      { status = 500, code = "10007", title = "Unexpected error", opts = { max_retries = 0 } },
      { status = 422, code = "10015", title = "Invalid parameter" },
    } do
      it("a " .. case.status .. " on page 2 gives false, err once, then the loop ends (no silent truncation)", function()
        seed_tagged(5, TAG)
        local iterator = client:each("list_sim_cards", { filter = { tags = { TAG } }, page = { size = 2 } }, case.opts)
        assert.truthy(iterator())
        assert.truthy(iterator())
        stub:queue{ match = "/v2/sim_cards", status = case.status,
          json = { errors = { helpers.api_error(case.code, case.title, "page 2 failed") } } }
        local item, err = iterator()
        assert.equal(false, item)
        assert.equal("http", err.kind)
        assert.equal(case.status, err.status)
        assert.equal(1, err.attempts)
        assert.equal(case.code, err.errors[1].code)
        assert.matches("list_sim_cards", tostring(err))
        -- then the end, for good
        assert.is_nil(iterator())
        assert.is_nil(iterator())
        local reqs = requests_to(stub, "GET", "/sim_cards")
        assert.equal(2, #reqs)
        assert.equal("2", query_of(reqs[2])["page[number]"])
        assert.same({}, stub:pending())
      end)
    end

    it("as a for loop: the failed page arrives as the loop's own false, err", function()
      seed_tagged(3, TAG)
      stub:queue{ match = "/v2/sim_cards", status = 503, json = { errors = {} } }
      local seen = {}
      for card, err in client:each("list_sim_cards", { page = { size = 2 } }, { max_retries = 0 }) do
        seen[#seen + 1] = card == false and ("false: " .. err.kind .. " " .. tostring(err.status)) or "card"
      end
      assert.same({ "false: http 503" }, seen)
    end)

    it("refuses a name that is not a paged list: false, err once, nothing sent", function()
      for _, name in ipairs{ "list_wireless_regions", "get_sim_card", "purchase_esims", "no_such_operation", 42 } do
        local list = steps(client:each(name, {}))
        assert.equal(1, #list, tostring(name))
        assert.equal(false, list[1][1])
        assert.equal("invalid_params", list[1][2].kind)
        assert.equal("name", list[1][2].field)
        assert.equal(false, list[1][2].retryable)
        assert.matches(type(name) ~= "string" and "the operation name must be a string"
          or name == "no_such_operation" and "^each: unknown operation 'no_such_operation'"
          or "^each: '" .. name .. "' is not a paged list operation", list[1][2].message)
      end
      assert.same({}, stub:requests())
    end)

    it("bad params become false, err on the first step, with the field path", function()
      local list = steps(client:each("list_sim_cards", { page = { size = 251 } }))
      assert.equal(1, #list)
      assert.equal(false, list[1][1])
      assert.equal("invalid_params", list[1][2].kind)
      assert.equal("page.size", list[1][2].field)
      list = steps(client:each("list_sim_cards", { filter = { colour = "red" } }))
      assert.equal("filter.colour", list[1][2].field)
      list = steps(client:each("list_sim_cards", {}, { max_retries = -1 }))
      assert.equal("opts.max_retries", list[1][2].field)
      assert.same({}, stub:requests())
    end)

    it("params that are not a table give false, err (field 'params'), not a raise", function()
      local list = steps(client:each("list_sim_cards", "x"))
      assert.equal(1, #list)
      assert.same({ false, "invalid_params", "params" }, { list[1][1], list[1][2].kind, list[1][2].field })
      assert.same({}, stub:requests())
    end)

    it("a `page` that is not a table is refused (field 'page'), not silently replaced", function()
      local list = steps(client:each("list_sim_cards", { page = 5 }))
      assert.equal(1, #list)
      assert.same({ false, "invalid_params", "page" }, { list[1][1], list[1][2].kind, list[1][2].field })
      assert.same({}, stub:requests())
    end)

    it("goes through every other paged list operation sim.describe knows", function()
      local paged = {}
      for _, name in ipairs(sim.operations) do
        if sim.describe(name).paged then paged[#paged + 1] = name end
      end
      assert.equal(9, #paged)

      -- something in every list: a card and its action, a group and its
      -- action, a bulk action, an order, a notification
      local card = assert(client:purchase_esims{ amount = 1, status = "standby" }).data[1]
      assert(client:enable_sim_card(card.id))
      local group = assert(client:create_sim_card_group{ name = "flow group" }).data
      assert(client:set_sim_card_group_private_wireless_gateway{ id = group.id, private_wireless_gateway_id = helpers.uuid() })
      assert(client:bulk_enable_voice{ sim_card_group_id = group.id })
      assert(client:create_sim_card_order{ address_id = "1293384261075731499", quantity = 1 })
      assert(client:create_sim_card_data_usage_notification{ sim_card_id = card.id,
        threshold = { amount = "100", unit = "MB" } })

      for _, name in ipairs(paged) do
        local d = sim.describe(name)
        local params = { page = { size = 2 } }
        if d.path:find("{id}", 1, true) then params.id = card.id end
        local before = #stub:requests()
        local got = items_of(steps(client:each(name, params)))
        local pages = #stub:requests() - before
        local one = assert(client:call(name, { id = params.id, page = { size = 2 } }))
        assert.is_true(#got > 0, name)
        assert.equal(one.meta.total_results, #got, name)
        assert.equal(math.ceil(#got / 2), pages, name)
      end
    end)
  end)

  -------------------------------------------------------------------------
  describe("client:wait_for_action", function()
    local function standby_card()
      return assert(client:purchase_esims{ amount = 1, status = "standby" }).data[1]
    end

    local function sum(list)
      local s = 0
      for _, v in ipairs(list) do s = s + v end
      return s
    end

    for _, form in ipairs{ "res", "res.data", "id" } do
      it("follows an enable action given as " .. form .. " until it completes after action_delay", function()
        stub:config{ action_delay = 0.3 }
        local card = standby_card()
        local started = socket.gettime()
        local res = assert(client:enable_sim_card(card.id))
        assert.equal("in-progress", res.data.status.value)
        local given = ({ res = res, ["res.data"] = res.data, id = res.data.id })[form]

        local action, err = client:wait_for_action(given, { timeout = 5, interval = 0.1 })
        local elapsed = socket.gettime() - started
        assert.is_nil(err)
        assert.equal(res.data.id, action.id)
        assert.equal("sim_card_action", action.record_type)
        assert.equal("completed", action.status.value)
        assert.is_true(elapsed >= 0.25, "returned after " .. elapsed .. " s, before the action could complete")

        -- every wait was one interval, and came between two polls (a table
        -- is polled after a wait; an id first, at once)
        assert.is_true(#waits >= 1)
        for _, w in ipairs(waits) do near(0.1, w, "wait") end
        local polls = requests_to(stub, "GET", "/sim_card_actions/*")
        assert.equal(#waits + (form == "id" and 1 or 0), #polls)
        for _, r in ipairs(polls) do assert.equal("/v2/sim_card_actions/" .. res.data.id, r.path) end

        local state = stub:state()
        assert.equal("enabled", state.sim_cards[1].status.value)
      end)
    end

    it("returns an action that ended other than completed (the caller checks its status)", function()
      local card = standby_card()
      local enable = assert(client:enable_sim_card(card.id)).data
      assert(client:disable_sim_card(card.id)) -- replaces the enable
      local action = assert(client:wait_for_action(enable.id, { timeout = 5, interval = 0.1 }))
      assert.equal("interrupted", action.status.value)
      assert.same({}, waits)
    end)

    it("times out with err.kind 'timeout' and err.action the last state seen", function()
      stub:config{ action_delay = 60 }
      local card = standby_card()
      local res = assert(client:enable_sim_card(card.id))
      local action, err = client:wait_for_action(res.data, { timeout = 0.25, interval = 0.1 })
      assert.is_nil(action)
      assert.equal("timeout", err.kind)
      assert.equal(false, err.retryable)
      assert.equal(res.data.id, err.action.id)
      assert.equal("in-progress", err.action.status.value)
      assert.matches(res.data.id, tostring(err), 1, true)
      -- the last wait is cut to what the timeout leaves, polls included (wall time)
      assert.equal(3, #waits)
      near(0.1, waits[1]); near(0.1, waits[2])
      assert.is_true(waits[3] > 0 and waits[3] <= 0.05 + 1e-9, "the last wait: " .. waits[3])
      assert.is_true(sum(waits) <= 0.25 + 1e-9, "time waited")
      assert.equal(2, #requests_to(stub, "GET", "/sim_card_actions/*")) -- none after the deadline
    end)

    it("refuses bad options and a missing action with the field's path, before any request", function()
      local res = assert(client:enable_sim_card(standby_card().id))
      local before = #stub:requests()
      for _, case in ipairs{
        { res.data, { timeout = 0 }, "opts.timeout" },
        { res.data, { timeout = -1 }, "opts.timeout" },
        { res.data, { timeout = "5" }, "opts.timeout" },
        { res.data, { interval = 0 / 0 }, "opts.interval" },
        { res.data, { interval = false }, "opts.interval" },
        { res.data, "fast", "opts" },
        { nil, nil, "action" },
        { 42, nil, "action" },
        { {}, nil, "action" },
        { { data = { status = { value = "in-progress" } } }, nil, "action" },
      } do
        local action, err = client:wait_for_action(case[1], case[2])
        assert.is_nil(action)
        assert.equal("invalid_params", err.kind, case[3])
        assert.equal(case[3], err.field)
        assert.equal(false, err.retryable)
        assert.matches("wait_for_action", err.message)
      end
      assert.equal(before, #stub:requests())
      assert.same({}, waits)
    end)

    it("follows a SIM card group action (record_type sim_card_group_action), or an id with group = true", function()
      stub:config{ action_delay = 0.2 }
      local group = assert(client:create_sim_card_group{ name = "gateway group" }).data
      local gateway = helpers.uuid()
      local res = assert(client:set_sim_card_group_private_wireless_gateway{ id = group.id, private_wireless_gateway_id = gateway })
      assert.equal("sim_card_group_action", res.data.record_type)
      assert.equal("in-progress", res.data.status)

      local action = assert(client:wait_for_action(res, { timeout = 5, interval = 0.1 }))
      assert.equal(res.data.id, action.id)
      assert.equal("completed", action.status)
      assert.equal("set_private_wireless_gateway", action.type)
      assert.is_true(#waits >= 1)
      local polls = requests_to(stub, "GET", "/sim_card_group_actions/*")
      assert.equal(#waits, #polls)
      assert.same({}, requests_to(stub, "GET", "/sim_card_actions/*"))
      assert.equal(gateway, assert(client:get_sim_card_group(group.id)).data.private_wireless_gateway_id)

      -- by its id alone it takes group = true ...
      action = assert(client:wait_for_action(res.data.id, { group = true }))
      assert.equal("completed", action.status)
      -- ... without which the id is looked up among SIM card actions
      local none, err = client:wait_for_action(res.data.id)
      assert.is_nil(none)
      assert.equal("http", err.kind)
      assert.equal(404, err.status)
    end)
  end)

  -------------------------------------------------------------------------
  describe("sim.encode", function()
    local ID = "11111111-1111-4111-8111-111111111111"

    -- A response as the stub sends it (a scripted body), decoded by a call.
    local function get_with_data(data_json)
      stub:queue{ match = "/v2/sim_cards/" .. ID, status = 200, body = '{"data":' .. data_json .. ',"gone":null}',
        headers = { ["Content-Type"] = "application/json" } }
      return assert(client:get_sim_card(ID))
    end

    -- What an empty JSON array re-encodes as: [] with OpenResty's lua-cjson,
    -- {} with Debian's 2.1.0, which cannot tell them apart (the README says so).
    local EMPTY = helpers.cjson_fork and "[]" or "{}"

    it("writes a result back as the JSON it came from: [] stays [] (with the fork), {} stays {}, null in arrays", function()
      local data = '{"authorized_imeis":[],"data_limit":{"amount":"2048.0","unit":"MB"},"empty":{},'
        .. '"iccid":"89310410106543000001","id":"' .. ID .. '","imsi":"081932214820001",'
        .. '"neg":-42,"nested":{"a":{"b":[1,[],{"c":[null,true,false,{"d":[[]]}]}]}},"ratio":0.25,'
        .. '"settings":{},"status":{"value":"enabled"},"tags":["a","b"],"text":"café \\"q\\" \\\\ / \\t\\u0001"}'
      local res = get_with_data(data)
      local text = assert(sim.encode(res.data))
      -- lua-cjson writes an object's members in no set order: compare pieces, then the round trip
      for _, piece in ipairs{ '"authorized_imeis":' .. EMPTY, '"empty":{}', '"settings":{}', '"neg":-42',
        '"nested":{"a":{"b":[1,' .. EMPTY .. ',{"c":[null,true,false,{"d":[' .. EMPTY .. ']}]}]}}',
        '"ratio":0.25', '"tags":["a","b"]', '"status":{"value":"enabled"}' } do
        assert.truthy(text:find(piece, 1, true), piece .. " in " .. text)
      end
      assert.equal("café \"q\" \\ / \t\1", res.data.text)
      assert.same(res.data, get_with_data(text).data)
      assert.truthy(assert(sim.encode(res)):find('"errors":' .. EMPTY, 1, true))
      -- non-empty arrays carry the marker under either cjson, objects never
      assert.equal(sim.array_mt, getmetatable(res.data.tags))
      assert.equal(sim.array_mt, getmetatable(res.data.nested.a.b))
      assert.is_nil(getmetatable(res.data.empty))
      assert.equal(helpers.cjson_fork and sim.array_mt or nil, getmetatable(res.data.authorized_imeis))
      assert.equal(sim.null, res.data.nested.a.b[3].c[1])
    end)

    it("re-encodes a stub SIM card list, meta included, to what a second decode gives again", function()
      seed_tagged(2, TAG)
      local res = assert(client:list_sim_cards{ page = { size = 3 } })
      local text = assert(sim.encode(res))
      assert.truthy(text:find('"resources_with_in_progress_actions":' .. EMPTY, 1, true))
      for _, piece in ipairs{ '"page_number":1', '"page_size":3', '"total_pages":2', '"total_results":4' } do
        assert.truthy(text:find(piece, 1, true), piece)
      end
      stub:queue{ match = "/v2/sim_cards", status = 200, body = text, headers = { ["Content-Type"] = "application/json" } }
      assert.same(res, assert(client:list_sim_cards{}))
    end)

    if has_integers and helpers.cjson_fork then
      it("keeps integers exact beyond 2^53 on 5.3+ (OpenResty's lua-cjson)", function()
        local res = get_with_data('{"a":9007199254740993,"b":9223372036854775807,"c":-9223372036854775808}')
        assert.equal(9007199254740993, res.data.a)
        assert.equal("integer", math.type(res.data.b))
        assert.equal(math.mininteger, res.data.c)
        assert.equal("[9223372036854775807,9007199254740993]", sim.encode{ math.maxinteger, res.data.a })
      end)
    else
      it("keeps numbers exact up to 14 digits, as lua-cjson 2.1.0 writes them", function()
        local res = get_with_data('{"a":12345678901234,"b":-42,"c":2.0}')
        assert.equal(12345678901234, res.data.a)
        if has_integers then assert.equal("integer", math.type(res.data.c)) end
        assert.equal("[12345678901234,-42,2]", sim.encode{ res.data.a, res.data.b, res.data.c })
      end)
    end

    it("writes sim.null as null, a marked empty table as " .. EMPTY .. ", an unmarked one as {}", function()
      assert.equal('{"a":null}', sim.encode{ a = sim.null })
      assert.equal(EMPTY, sim.encode(setmetatable({}, sim.array_mt)))
      assert.equal("{}", sim.encode{})
      assert.equal("[null,1]", sim.encode{ sim.null, 1 })
      assert.equal("null", sim.encode(sim.null))
    end)

    it("refuses a function, a cycle, NaN, a userdata with nil, err in lua-cjson's words", function()
      local cyclic = { list = {} }
      cyclic.list[1] = cyclic
      for _, case in ipairs{
        { { a = { b = { print } } }, "Cannot serialise function" },
        { cyclic, "excessive nesting" },
        { { n = 0 / 0 }, "NaN" },
        { { client = client }, "Cannot serialise userdata" },
      } do
        local text, err = sim.encode(case[1])
        assert.is_nil(text)
        assert.equal("invalid_params", err.kind)
        assert.matches("^encode: ", err.message)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
      end
    end)
  end)
end)
