-- What telnyx.sim.resty needs of the C module comes from the C module (issue 17): the defaults and
-- the failure names are read from sim.defaults and sim.failures, the pause a server asks for from
-- err.pause; resty.lua parses no Retry-After. The one copy left, the failure names its transports
-- write as string literals, is checked against C's list here. Plain Lua: no nginx needed.
local sim = require "telnyx.sim"

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  return text
end

local SOURCE = read("telnyx/sim/resty.lua")

-- the code of resty.lua without its comments (a comment may name anything)
local CODE = SOURCE:gsub("%-%-%[%[.-%]%]", ""):gsub("%-%-[^\n]*", "")

describe("telnyx.sim.resty and the C module's constants", function()
  it("C exports the defaults and the failure names resty reads", function()
    assert.is_table(sim.defaults)
    for _, name in ipairs{ "concurrency", "max_response_bytes", "timeout" } do
      assert.is_number(sim.defaults[name], name)
    end
    assert.equal(16, sim.defaults.concurrency) -- the documented default of client:batch
    assert.is_table(sim.failures)
    for name, v in pairs(sim.failures) do
      assert.is_string(name)
      assert.is_true(v)
    end
  end)

  it("keeps no copy of them in resty.lua", function()
    require "telnyx.sim.resty" -- loads (its asserts pass)
    assert.is_nil(CODE:find("DEFAULT_CONCURRENCY", 1, true))
    assert.is_nil(CODE:find("16 * 1024 * 1024", 1, true))
    assert.is_nil(CODE:find("not_sent = true", 1, true), "a table of failure names")
  end)

  it("reads no Retry-After: the pause is err.pause", function()
    assert.is_nil(CODE:lower():find("retry%-after"))
    for _, what in ipairs{ "parse_http_time", "header_seconds", "retry_after_of" } do
      assert.is_nil(CODE:find(what, 1, true), what)
    end
    assert.truthy(CODE:find("err.pause", 1, true))
  end)

  it("every failure name resty.lua's transports write is one client:interpret takes (sim.failures)", function()
    local names = {}
    -- failure = "x", failed(state, "x", ...), failure(state, "x", ...), and the "x" or "y" of a choice there
    for expr in CODE:gmatch("failure%s*=%s*([^,\n]+)") do
      for name in expr:gmatch('"([%w_]+)"') do names[name] = true end
    end
    for expr in CODE:gmatch("failed%(state,%s*([^\n]-),") do
      for name in expr:gmatch('"([%w_]+)"') do names[name] = true end
    end
    for expr in CODE:gmatch("failure%(state,%s*([^\n]-),") do
      for name in expr:gmatch('"([%w_]+)"') do names[name] = true end
    end
    local found = {}
    for name in pairs(names) do found[#found + 1] = name end
    table.sort(found)
    assert.is_true(#found >= 5, table.concat(found, " "))
    for _, name in ipairs(found) do
      assert.is_true(sim.failures[name] == true, "resty.lua writes failure \"" .. name .. "\", which sim.failures lacks")
    end
  end)
end)
