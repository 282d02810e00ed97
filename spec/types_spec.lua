-- The LuaLS definition file (types/telnyx/sim.lua, written by tools/generate.lua)
-- against what the code really returns: the fields of real results and real
-- errs (a success, an HTTP error, a retryable failure, bad input, a config
-- error, a batch refusal with its index, a wait_for_action timeout with its
-- action) are exactly the ---@field lines of telnyx.sim.Result and
-- telnyx.sim.Error: none set by the code is missing from the types, and none
-- typed is set by nothing. The README's err table lists the same fields.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

local read_file = helpers.read_file
local repo = helpers.support_dir:match("^(.*)/spec/support$") or "."

-- The ---@field names of a ---@class block (up to the next blank line), as a set.
local function typed_fields(text, class)
  local start = text:find("\n---@class " .. class .. "\n", 1, true)
  assert(start, "no ---@class " .. class)
  local block = text:sub(start + 1):match("^[^\n]*\n(.-)\n\n") or ""
  local fields = {}
  for line in (block .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^%-%-%-@field%s+([%a_][%w_]*)%??%s")
    if name then fields[name] = true end
  end
  return fields
end

-- The keys of every table in `list`, as a set, and which table first had each.
local function keys_of(list)
  local keys, where = {}, {}
  for label, t in pairs(list) do
    for k in pairs(t) do
      keys[k] = true
      where[k] = where[k] or label
    end
  end
  return keys, where
end

local function sorted(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = tostring(k) end
  table.sort(out)
  return out
end

describe("types/telnyx/sim.lua against what the code returns", function()
  local types = assert(read_file(repo .. "/types/telnyx/sim.lua"))
  local stub, client

  setup(function()
    stub = helpers.start_stub()
    client = assert(sim.new{ api_key = "types-spec-key", base_url = stub.base_url, max_retries = 0 })
  end)

  teardown(function()
    if client then client:close() end
    if stub then stub:stop() end
  end)

  before_each(function() stub:reset() end)

  it("telnyx.sim.Result has exactly the fields results carry", function()
    local results = {}
    results.purchase = assert(client:purchase_esims{ amount = 2 })
    results.list = assert(client:list_sim_cards{ page = { size = 1 } })
    results.one = assert(client:get_sim_card(results.purchase.data[1].id))
    results.register = assert(client:register_sim_cards{ registration_codes = { "0000000001" } })
    local batch = assert(client:batch{ { "get_sim_card", results.purchase.data[2].id } })
    results.batch = assert(batch[1].res)
    local req = assert(client:request("get_sim_card", results.purchase.data[1].id))
    results.interpret = assert(client:interpret(req, { status = 200, headers = { ["content-type"] = "application/json" },
      body = '{"data": {"id": "x"}}' }, 1))

    for label, res in pairs(results) do
      assert.is_number(res.status, label)
      assert.is_table(res.errors, label)
    end
    assert.is_table(results.list.meta)

    local set, where = keys_of(results)
    local typed = typed_fields(types, "telnyx.sim.Result")
    for k in pairs(set) do
      assert.truthy(typed[k], "results carry '" .. tostring(k) .. "' (" .. where[k] .. "), telnyx.sim.Result lacks it")
    end
    for k in pairs(typed) do
      assert.truthy(set[k], "telnyx.sim.Result types '" .. k .. "', which no result carries")
    end
  end)

  it("telnyx.sim.Error has exactly the fields errs carry, and the README's err table lists them", function()
    local errs, _ = {}, nil

    -- bad input
    _, errs.params = client:purchase_esims{}
    _, errs.option = client:get_sim_card("6a09cdc3-8948-47f0-aa62-74ac943d6c58", { tmeout = 1 })
    _, errs.config = sim.new{ api_key = "k", base_url = "ftp://x" }

    -- an HTTP error with the API's errors and a request id
    stub:queue{ method = "GET", status = 422, headers = { ["x-request-id"] = "req-types-1" },
      json = { errors = { helpers.api_error("10015", "Invalid parameter", "bad id") } } }
    _, errs.http = client:get_sim_card("6a09cdc3-8948-47f0-aa62-74ac943d6c58")

    -- a failure worth retrying, out of retries: retryable with retry_after
    stub:queue{ method = "POST", status = 503, headers = { ["retry-after"] = "1" }, json = { errors = {} } }
    _, errs.retryable = client:register_sim_cards{ registration_codes = { "0000000002" } }

    -- a batch refused before anything was sent: the index of the bad call
    _, errs.batch = client:batch{ { "get_sim_card", "6a09cdc3-8948-47f0-aa62-74ac943d6c58" }, { "get_simcard" } }
    _, errs.codes = client:get_activation_codes{ "6a09cdc3-8948-47f0-aa62-74ac943d6c58", 12 }

    -- wait_for_action running out of time: the action's last state
    stub:config{ action_delay = 30 }
    local bought = assert(client:purchase_esims{ amount = 1 })
    local action = assert(client:enable_sim_card(bought.data[1].id))
    _, errs.wait = client:wait_for_action(action, { timeout = 0.2, interval = 0.05 })

    -- each: a failed page
    stub:queue{ method = "GET", status = 500, json = { errors = {} } }
    for item, e in client:each("list_sim_cards") do
      if not item then errs.each = e end
    end

    for label, e in pairs(errs) do
      assert.is_table(e, label)
      assert.is_string(e.kind, label)
      assert.is_string(e.message, label)
    end
    assert.equal("req-types-1", errs.http.request_id)
    assert.equal(422, errs.http.status)
    assert.is_true(errs.retryable.retryable)
    assert.is_number(errs.retryable.retry_after)
    assert.equal(2, errs.batch.index)
    assert.equal(2, errs.codes.index)
    assert.equal("timeout", errs.wait.kind)
    assert.is_table(errs.wait.action)

    local set, where = keys_of(errs)
    local typed = typed_fields(types, "telnyx.sim.Error")
    for k in pairs(set) do
      assert.truthy(typed[k], "errs carry '" .. tostring(k) .. "' (" .. where[k] .. "), telnyx.sim.Error lacks it")
    end
    for k in pairs(typed) do
      assert.truthy(set[k], "telnyx.sim.Error types '" .. k .. "', which no err carries")
    end

    -- the README's err table: | `name` | meaning |, under ## Errors
    local readme = assert(read_file(repo .. "/README.md"))
    local section = assert(readme:match("\n## Errors\n(.-)\n## "), "README.md has no ## Errors section")
    local listed = {}
    for name in section:gmatch("\n| `([%a_]+)` |") do listed[name] = true end
    assert.same(sorted(typed), sorted(listed))
  end)
end)
