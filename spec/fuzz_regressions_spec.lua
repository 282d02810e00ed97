-- What the libFuzzer targets (fuzz/) found, each kept as a spec. Replay a new
-- crash input with `FUZZ_TRACE=1 build/fuzz/fuzz_<target> <input>`: it prints
-- the arguments as Lua, ready to paste here.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

local KEY = "KEYfz0SECRET"
local BASE = "https://api.example.test/v2"

local function assert_no_key(err)
  assert.is_nil(tostring(err):find(KEY, 1, true))
  for _, s in ipairs(helpers.strings_of(err)) do
    assert.is_nil(s:find(KEY, 1, true), "the API key is in " .. ("%q"):format(s))
  end
end

describe("fuzz regressions", function()
  local client, req
  before_each(function()
    client = assert(sim.new{ api_key = KEY, base_url = BASE })
    req = assert(client:request("purchase_esims", { amount = 1 }))
  end)

  describe("client:interpret", function()
    -- UBSan: casting NaN, inf or 1e300 to long/int is undefined behaviour.
    for _, status in ipairs{ 0 / 0, math.huge, -math.huge, 1e300, -1e300 } do
      it("refuses a status of " .. tostring(status) .. " as an argument error", function()
        assert.error_matches(function() client:interpret(req, { status = status, body = "" }) end,
          "reply needs a status")
        local _, err = client:interpret(req, { failure = "too_large", status = status })
        assert.equal("decode", err.kind)
        assert.is_nil(err.status)
      end)
    end

    for _, max_retries in ipairs{ 0 / 0, math.huge, -math.huge, 1e300, -1 } do
      it("takes a req.max_retries of " .. tostring(max_retries) .. " without undefined behaviour", function()
        req.max_retries = max_retries
        local _, err, retry_in = client:interpret(req, { status = 429, headers = {}, body = "" }, 1)
        assert.equal(429, err.status)
        assert.is_true(err.retryable)
        if max_retries == math.huge or max_retries == 1e300 then
          assert.is_number(retry_in)
        else
          assert.is_nil(retry_in)
        end
      end)
    end

    -- The API key, echoed by a server, must not survive in err anywhere.
    it("redacts the key after a NUL inside a string", function()
      local _, err = client:interpret(req, { status = 401, headers = { ["x-request-id"] = "a\0" .. KEY },
        body = '{"errors":[{"title":"x\\u0000' .. KEY .. '","detail":"\\u0000\\u0000' .. KEY .. KEY .. '"}]}' })
      assert_no_key(err)
      assert.equal("x\0[REDACTED]", err.errors[1].title)
      assert.equal("\0\0[REDACTED][REDACTED]", err.errors[1].detail)
    end)

    it("redacts the key in table keys", function()
      local _, err = client:interpret(req, { status = 422, headers = {},
        body = '{"errors":[{"title":"t","meta":{"' .. KEY .. '":1,"k ' .. KEY .. '":{"' .. KEY .. '":"' .. KEY .. '"}}}]}' })
      assert_no_key(err)
      assert.equal(1, err.errors[1].meta["[REDACTED]"])
      assert.same({ ["[REDACTED]"] = "[REDACTED]" }, err.errors[1].meta["k [REDACTED]"])
    end)

    it("redacts the key at any depth", function()
      local body = '{"errors":[{"meta":' .. ("["):rep(40) .. '"' .. KEY .. '"' .. ("]"):rep(40) .. '}]}'
      local _, err = client:interpret(req, { status = 400, headers = {}, body = body })
      assert_no_key(err)
    end)
  end)

  describe("names with a NUL inside", function()
    -- "tags\0x" passed for "tags" (strcmp stops at the NUL), and then
    -- was silently left out of the body: the unknown-field rule was bypassed.
    it("are unknown params fields", function()
      local r, err = client:request("purchase_esims", { amount = 1, ["tags\0x"] = { "a" } })
      assert.is_nil(r)
      assert.equal("invalid_params", err.kind)
      assert.matches("unknown field", err.message)
      r, err = client:request("register_sim_cards", { ["registration_codes\0"] = { "1" } })
      assert.is_nil(r)
      assert.matches("unknown field", err.message)
    end)

    it("are unknown per-call options", function()
      local r, err = client:request("purchase_esims", { amount = 1 }, { ["timeout\0x"] = 1 })
      assert.is_nil(r)
      assert.equal("invalid_params", err.kind)
      assert.matches("unknown option", err.message)
    end)

    it("are unknown sim.new options", function()
      local c, err = sim.new{ api_key = KEY, base_url = BASE, ["timeout\0x"] = 1 }
      assert.is_nil(c)
      assert.equal("invalid_params", err.kind)
      assert.matches("unknown option", err.message)
    end)
  end)
end)
