-- Holes a review and the fuzzers found, each kept shut by a spec.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

local KEY = "KEYhardening0123456789"

describe("hardening", function()
  local stub, client

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    client = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_retries = 0 })
  end)

  it("reads params and options raw: an __index cannot slip in unvalidated values", function()
    local params = setmetatable({}, { __index = { amount = 2.6, status = "bogus" } })
    local _, err = client:purchase_esims(params)
    assert.equal("invalid_params", err.kind)
    assert.equal("amount", err.field)
    local sneaky = setmetatable({ amount = 1 }, { __index = { tags = "abc" } })
    assert(client:purchase_esims(sneaky))
    assert.equal('{"amount":1}', stub:last_request().body)
    local opts = setmetatable({}, { __index = function() error("opts read through __index") end })
    assert(client:purchase_esims({ amount = 1 }, opts))
  end)

  it("keeps a long API error message whole, with its request id", function()
    local title = ("T"):rep(1500)
    stub:queue{ status = 422, headers = { ["x-request-id"] = "rq-long" },
      json = { errors = { helpers.api_error("1", title, "D"), helpers.api_error("2", "x") } } }
    local _, err = client:purchase_esims{ amount = 1 }
    assert.equal("purchase_esims: HTTP 422: " .. title .. ": D (+1 more)", err.message)
    assert.equal("telnyx.sim: " .. err.message .. " (request_id rq-long)", tostring(err))
    local big = sim.error("http", ("a"):rep(9000), { request_id = "r" })
    assert.equal("telnyx.sim: " .. ("a"):rep(9000) .. " (request_id r)", tostring(big))
  end)

  it("refuses a NUL inside api_key or base_url, and raises for one in ca_file", function()
    local c, err = sim.new{ api_key = "KEYabc\0def", base_url = stub.base_url }
    assert.is_nil(c)
    assert.equal("config", err.kind)
    c, err = sim.new{ api_key = KEY, base_url = "https://api.telnyx.com/v2\0junk" }
    assert.is_nil(c)
    assert.equal("config", err.kind)
    c, err = sim.new{ api_key = KEY, ca_file = "/etc/ssl\0x" }
    assert.is_nil(c)
    assert.same({ "config", "ca_file" }, { err.kind, err.field })
    assert.matches("NUL", err.message)
  end)

  it("checks loopback by address, not by prefix", function()
    for _, url in ipairs{ "http://127.0.0.1.example.test/v2", "http://127.999.1.1/v2", "http://localhost.example.test/v2" } do
      local c, err = sim.new{ api_key = KEY, base_url = url }
      assert.is_nil(c, url)
      assert.matches("not loopback", err.message)
    end
    for _, url in ipairs{ "http://127.0.0.1:1/v2", "http://127.1.2.3/v2", "http://[::1]:1/v2", "http://[::ffff:127.0.0.1]:1/v2" } do
      assert.truthy(sim.new{ api_key = KEY, base_url = url }, url)
    end
  end)

  it("interpret on a closed client is a config error (its key, needed for redaction, is gone)", function()
    local req = assert(client:request("purchase_esims", { amount = 1 }))
    client:close()
    local res, err = client:interpret(req, { status = 500, body = '{"errors":[{"title":"bad key ' .. KEY .. '"}]}' })
    assert.is_nil(res)
    assert.equal("config", err.kind)
    assert.not_matches(KEY, tostring(err), 1, true)
  end)

  it("drops a header value too long to keep whole, so no cut copy of an echoed key survives", function()
    stub:queue{ status = 422, body = "", headers = { ["x-request-id"] = ("x"):rep(100) .. KEY .. ("y"):rep(100) } }
    local _, err = client:purchase_esims{ amount = 1 }
    assert.is_nil(err.request_id)
    assert.not_matches(KEY:sub(1, 10), tostring(err), 1, true)
  end)

  it("refuses an empty per-call header value (libcurl would silently drop the header)", function()
    local _, err = client:purchase_esims({ amount = 1 }, { headers = { ["X-Empty"] = "" } })
    assert.equal("invalid_params", err.kind)
    assert.equal("opts.headers.X-Empty", err.field)
    assert.matches("'opts.headers.X%-Empty' must be a string without CR, LF or NUL, length >= 1", err.message)
    assert.equal(0, #stub:requests())
  end)

  it("a too-large 2xx purchase body says the purchase was accepted", function()
    local c = assert(sim.new{ api_key = KEY, base_url = stub.base_url, max_response_bytes = 1024 })
    stub:queue{ status = 202, json = { data = { helpers.sim_card(), helpers.sim_card(), helpers.sim_card() } } }
    local _, err = c:purchase_esims{ amount = 3 }
    assert.equal("decode", err.kind)
    assert.matches("the request was accepted: check the SIM card list", err.message, 1, true)
  end)
end)
