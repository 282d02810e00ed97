-- Response bodies through lua-cjson (src/json.c): the same result shape under
-- OpenResty's fork and Debian's 2.1.0, each flavour's documented limits, and
-- a private instance that the process's own cjson settings do not reach.
-- `make test` runs it with the installed cjson, `make test CJSON=fork` with the fork.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

local FORK = helpers.cjson_fork
local has_integers = math.type ~= nil
local ID = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"

local client = assert(sim.new{ api_key = "KEYjson0123456789", base_url = "https://api.example.test/v2" })

-- client:interpret on a scripted reply: no I/O.
local function answer(op, params, status, body)
  local req = assert(client:request(op, params))
  return client:interpret(req, { status = status, headers = { ["Content-Type"] = "application/json" }, body = body }, 1)
end

describe("lua-cjson", function()
  it("is the flavour the run asked for (make test CJSON=fork loads OpenResty's)", function()
    local cjson = require "cjson"
    if os.getenv("TELNYX_SIM_CJSON") == "fork" then
      assert.is_true(FORK, "CJSON=fork, but the cjson on package.cpath is " .. tostring(cjson._VERSION))
      assert.equal(cjson.array_mt, sim.array_mt) -- the fork's own marker, so its encode writes [] for ours
    end
    assert.equal(cjson.null, sim.null)
  end)

  it("gives a result its shape: null members gone, nulls kept in arrays, arrays marked, integral numbers", function()
    local res = assert(answer("get_sim_card", { id = ID }, 200,
      '{"data":{"id":"c1","eid":null,"tags":["a",null,"b"],"n":3,"f":2.0,"r":0.5,"deep":{"x":[{"y":null,"z":[1]}]}}}'))
    local card = res.data
    assert.is_nil(rawget(card, "eid"))
    assert.same({ "a", sim.null, "b" }, card.tags)
    assert.equal(sim.array_mt, getmetatable(card.tags))
    assert.equal(sim.array_mt, getmetatable(card.deep.x))
    assert.equal(sim.array_mt, getmetatable(card.deep.x[1].z))
    assert.is_nil(getmetatable(card.deep))
    assert.is_nil(rawget(card.deep.x[1], "y"))
    assert.equal(sim.array_mt, getmetatable(res.errors))
    if has_integers then
      assert.equal("integer", math.type(card.n))
      assert.equal("integer", math.type(card.f)) -- 2.0 -> 2
      assert.equal("float", math.type(card.r))
    end
  end)

  it("does not turn an accepted purchase into an error for a number too big for a double", function()
    local res, err = answer("purchase_esims", { amount = 1 }, 202, '{"data":[{"id":"e1","weird":1e400,"n":-1e400}]}')
    assert.is_nil(err)
    assert.equal(202, res.status)
    assert.equal(math.huge, res.data[1].weird)
    assert.equal(-math.huge, res.data[1].n)
  end)

  it("reports a body that is not JSON as a decode err in lua-cjson's words, with what to check", function()
    local res, err = answer("purchase_esims", { amount = 1 }, 202, '{"data":[{"id":')
    assert.is_nil(res)
    assert.equal("decode", err.kind)
    assert.matches("^purchase_esims: HTTP 202 response could not be decoded: invalid JSON %(.+%); the request was "
      .. "accepted: check ", err.message)
    assert.is_false(err.retryable)
  end)

  it("refuses NaN, Infinity and hex in a body (not JSON), though cjson can be told to take them", function()
    for _, bad in ipairs{ "NaN", "Infinity", "0x10" } do
      local res, err = answer("get_sim_card", { id = ID }, 200, '{"data":{"n":' .. bad .. '}}')
      assert.is_nil(res, bad)
      assert.equal("decode", err.kind, bad)
    end
  end)

  if FORK then
    it("tells [] from {} (OpenResty's lua-cjson): an object where a list belongs is refused", function()
      local res = assert(answer("list_sim_cards", {}, 200, '{"data":[],"meta":{},"errors":[]}'))
      assert.equal("[]", sim.encode(res.data))
      assert.equal("{}", sim.encode(res.meta))
      local _, err = answer("list_sim_cards", {}, 200, '{"data":{}}')
      assert.equal("decode", err.kind)
      assert.matches("'data' is not an array", err.message)
    end)
  else
    it("cannot tell [] from {} (Debian's 2.1.0): an empty list field still gets its marker", function()
      local res = assert(answer("list_sim_cards", {}, 200, '{"data":[],"meta":{},"errors":[],"x":{"l":[]}}'))
      assert.equal(sim.array_mt, getmetatable(res.data))
      assert.equal(sim.array_mt, getmetatable(res.errors))
      assert.is_nil(getmetatable(res.x.l)) -- the README's one limit: re-encodes as {}
      assert.equal('{"l":{}}', sim.encode(res.x))
      -- an object with no members where a list belongs reads as the empty list it may have been
      assert.same({}, assert(answer("list_sim_cards", {}, 200, '{"data":{}}')).data)
    end)
  end

  it("uses its own instance: the process's cjson settings do not change how bodies are read", function()
    local cjson = require "cjson"
    cjson.decode_max_depth(2)
    cjson.decode_invalid_numbers(true)
    local ok, res = pcall(answer, "get_sim_card", { id = ID }, 200, '{"data":{"a":{"b":{"c":[1]}}}}')
    local ok2, res2, err2 = pcall(answer, "get_sim_card", { id = ID }, 200, '{"data":{"n":NaN}}')
    cjson.decode_max_depth(1000)
    cjson.decode_invalid_numbers(true) -- cjson's default
    assert.is_true(ok, res)
    assert.same({ 1 }, res.data.a.b.c)
    assert.is_true(ok2)
    assert.is_nil(res2)
    assert.equal("decode", err2.kind)
  end)

  it("keeps request bodies its own: an empty list param goes out as [] under either cjson", function()
    local req = assert(client:request("purchase_esims", { amount = 1, tags = {} }))
    assert.equal('{"amount":1,"tags":[]}', req.body)
  end)

  it("is required: without lua-cjson the module refuses to load, saying what to install", function()
    local lua = os.getenv("LUA_BIN") or "lua5.4"
    local script = "package.preload.cjson = function() error('no cjson in this test') end "
      .. "local ok, err = pcall(require, 'telnyx.sim') print(ok, err)"
    local p = assert(io.popen(lua .. " -e " .. string.format("%q", script) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.matches("^false\t", out)
    assert.truthy(out:find("telnyx.sim needs lua-cjson (luarocks install lua-cjson", 1, true), out)
    assert.truthy(out:find("no cjson in this test", 1, true), out)
  end)
end)
