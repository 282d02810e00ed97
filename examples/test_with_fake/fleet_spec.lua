-- The fleet script (fleet.lua) against the fake Telnyx: no API key, no money.
--   busted examples/test_with_fake     with telnyx-sim installed (luarocks install telnyx-sim)
--   make example-test                  from a checkout of telnyx-sim
-- Copy this directory next to your own code: fleet.lua is the code under
-- test, this file shows how to start the fake, script it and check what it saw.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local sim = require "telnyx.sim"
local cjson = require "cjson"
local fake_telnyx = require "telnyx.sim.fake"
local fleet = require "fleet"

local PURCHASE = "/v2/actions/purchase/esims"
local WAIT = { timeout = 10, interval = 0.05 }

-- The bodies (decoded) of the requests the fake saw for method and path.
local function bodies(fake, method, path)
  local out = {}
  for _, r in ipairs(assert(fake:requests())) do
    if r.method == method and r.path == path then out[#out + 1] = cjson.decode(r.body) end
  end
  return out
end

describe("fleet", function()
  local fake, client

  setup(function()
    fake = assert(fake_telnyx.start())
    client = assert(sim.new{ base_url = fake.url, api_key = "test-key" })
  end)

  teardown(function()
    if fake then fake:stop() end
  end)

  before_each(function()
    assert(fake:reset())
    assert(fake:config{ action_delay = 0.05 }) -- enable actions complete after 50 ms
  end)

  it("buys eSIMs into a new group, enables them and lists them", function()
    local result = assert(fleet.provision(client, 3, "Sensors", WAIT))
    assert.equal(3, #result.ids)
    assert.equal(3, result.enabled)
    assert.same(result.ids, assert(fleet.enabled_in(client, result.group_id)))
    -- one purchase, as the script built it
    assert.same({ { amount = 3, sim_card_group_id = result.group_id, status = "standby" } },
      bodies(fake, "POST", PURCHASE))
    -- the fake's own records agree
    local state = assert(fake:state())
    assert.equal(3, #state.sim_cards)
    for _, card in ipairs(state.sim_cards) do
      assert.equal("enabled", card.status.value)
      assert.equal(result.group_id, card.sim_card_group_id)
    end
  end)

  it("stops at a refused purchase with the API's error, and enables nothing", function()
    assert(fake:queue{ method = "POST", path = PURCHASE, status = 422, json = { errors = { {
      code = "10015", title = "Invalid parameter", detail = "Not enough balance", source = { pointer = "/amount" },
    } } } })
    local result, err = fleet.provision(client, 2, "Sensors", WAIT)
    assert.is_nil(result)
    assert.equal(422, err.status)
    assert.equal("10015", err.errors[1].code)
    assert.equal("/amount", err.errors[1].source.pointer)
    assert.equal(0, #assert(fake:state()).sim_cards)
    assert.equal(0, #assert(fake:state()).sim_card_actions)
  end)

  it("does not buy twice when the purchase answer is a 500", function()
    assert(fake:queue{ method = "POST", path = PURCHASE, status = 500 })
    local result, err = fleet.provision(client, 2, "Sensors", WAIT)
    assert.is_nil(result)
    assert.equal(500, err.status)
    assert.equal(1, #bodies(fake, "POST", PURCHASE)) -- never sent again: it may have gone through
  end)
end)
