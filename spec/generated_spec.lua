-- The files tools/generate.lua writes from the module's own operation table
-- (types/telnyx/sim.lua, the LuaLS definition file, and README.md's operations
-- table) are up to date: a changed row in src/operations.h without
-- `make generate` fails here, under every Lua of the suite. The generator is
-- loaded as a library, so its output is checked against the module this Lua
-- loaded.
local sim = require "telnyx.sim"
local generate = require "tools.generate"
local helpers = require "spec.support.helpers"

local read_file, shell_quote, tmpname = helpers.read_file, helpers.shell_quote, helpers.tmpname

local lua_version = _VERSION:match("^Lua (5%.%d)$")
local is_luajit = type(rawget(_G, "jit")) == "table"
local lua_bin = os.getenv("LUA_BIN") or (is_luajit and "luajit" or ("lua" .. tostring(lua_version)))

-- Runs a shell command -> exit status, output (stdout and stderr).
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

-- The ---@class block of `class`: its ---@field lines, in order.
local function class_fields(text, class)
  local start = text:find("\n---@class " .. class .. "\n", 1, true)
  if not start then return nil end
  local block = text:sub(start + 1):match("^[^\n]*\n(.-)\n\n") or ""
  local fields = {}
  for line in (block .. "\n"):gmatch("([^\n]*)\n") do
    local name, optional = line:match('^%-%-%-@field%s+%[?"?([%w_%.%-]+)"?%]?(%??)%s')
    if name then fields[#fields + 1] = { name = name, optional = optional == "?" } end
  end
  return fields
end

-- A scratch copy of the generated files under a temporary root.
local function scratch_root()
  local root = tmpname()
  assert(os.execute("mkdir -p " .. shell_quote(root .. "/types/telnyx")))
  for _, file in ipairs{ generate.TYPES_FILE, generate.README_FILE } do
    local f = assert(io.open(root .. "/" .. file, "wb"))
    local text = assert(read_file(file), file)
    f:write(text)
    f:close()
  end
  return root
end

describe("generated files", function()
  it("types/telnyx/sim.lua and README.md's operations table are up to date (else: make generate)", function()
    local stale, err = generate.stale(".")
    assert.is_nil(err)
    assert.same({}, stale, "stale: " .. table.concat(stale or {}, ", ") .. ": run `make generate`")
  end)

  describe("the definition file", function()
    local text, chunk, load_err

    setup(function()
      text = read_file(generate.TYPES_FILE)
      chunk, load_err = loadfile(generate.TYPES_FILE)
    end)

    it("is Lua that loads and runs, a ---@meta file for require \"telnyx.sim\"", function()
      assert.truthy(text, generate.TYPES_FILE .. " is missing")
      assert.truthy(chunk, load_err)
      assert.equal("---@meta telnyx.sim\n", text:sub(1, #"---@meta telnyx.sim\n"))
      local m = chunk()
      assert.equal("table", type(m))
      assert.same(sim.operations, m.operations)
      for _, f in ipairs{ "new", "error", "describe", "encode" } do assert.equal("function", type(m[f]), f) end
    end)

    it("annotates every operation's method, each with its params class", function()
      for _, name in ipairs(sim.operations) do
        assert.truthy(text:find("\nfunction Client:" .. name .. "(params, opts) end\n", 1, true), name)
        assert.truthy(text:find("\n---@param params%?? [%w_.|]*telnyx%.sim%.params%." .. name .. "\n"), name)
        assert.truthy(text:find("\n---@class telnyx.sim.params." .. name .. "\n", 1, true), name)
      end
    end)

    it("annotates exactly the client's methods", function()
      local client = assert(sim.new{ api_key = "generated-spec-key", base_url = "http://127.0.0.1:9" })
      local annotated = {}
      for name in text:gmatch("\nfunction Client:([%w_]+)%(") do
        annotated[name] = true
        assert.equal("function", type(client[name]), "annotated but not a client method: " .. name)
      end
      for _, name in ipairs(sim.operations) do assert.truthy(annotated[name], name) end
      for _, name in ipairs{ "call", "request", "interpret", "each", "wait_for_action", "sleep", "close" } do
        assert.truthy(annotated[name], name)
      end
      client:close()
    end)

    -- (No lua-language-server here to read it: this is the part of its check that fails silently.)
    it("defines every type it names", function()
      local defined, used = {}, {}
      for line in text:gmatch("[^\n]+") do
        local tag, rest = line:match("^%-%-%-@(%a+)%s+(.*)$")
        if tag == "class" or tag == "alias" then
          defined[rest:match("^[%w_.]+")] = true
          rest = rest:match(":(.*)$") or "" -- a parent class
        end
        if tag then
          rest = rest:gsub("%s#.*$", "") -- the description
          for name in rest:gmatch("telnyx%.sim[%w_.]*") do used[name] = true end
        end
      end
      for name in pairs(used) do assert.truthy(defined[name], "used, never defined: " .. name) end
      assert.truthy(defined["telnyx.sim.Client"] and defined["telnyx.sim.null"] and defined["telnyx.sim.Error"])
    end)

    it("gives each params class the operation's fields, optional unless required", function()
      for _, name in ipairs(sim.operations) do
        local d = sim.describe(name)
        local fields = class_fields(text, "telnyx.sim.params." .. name)
        assert.truthy(fields, name)
        local want = {}
        for i, f in ipairs(d.params.fields) do want[i] = { name = f.name, optional = not f.required } end
        assert.same(want, fields, name)
      end
    end)

    it("writes objects as nested classes, arrays as T[], enums as literal unions, nullable as |telnyx.sim.null",
      function()
        local filter = class_fields(text, "telnyx.sim.params.list_sim_cards.filter")
        assert.truthy(filter)
        assert.truthy(text:find("\n---@field filter? telnyx.sim.params.list_sim_cards.filter # in the query\n", 1, true))
        assert.truthy(text:find('\n---@field status? ("enabled"|"disabled"|"standby"|"data_limit_exceeded"|'
          .. '"unauthorized_imei")[]\n', 1, true))
        assert.truthy(text:find("\n---@field authorized_imeis? string[]|telnyx.sim.null # ", 1, true))
        assert.truthy(text:find("\n---@field amount integer # >= 1\n", 1, true))
        assert.truthy(text:find("\n---@field size? integer # 1..250\n", 1, true))
        assert.truthy(text:find('\n---@field ["address.country_code"]? string # not empty\n', 1, true))
        -- two levels down: filter[name][starts_with]
        assert.same({ { name = "contains", optional = true }, { name = "ends_with", optional = true },
          { name = "starts_with", optional = true } },
          class_fields(text, "telnyx.sim.params.list_mobile_network_operators.filter.name"))
        -- the id shorthand where the path id is the one required param, and nowhere else
        assert.truthy(text:find("\n---@param params string|telnyx.sim.params.get_sim_card\n", 1, true))
        assert.truthy(text:find("\n---@param params telnyx.sim.params.set_sim_card_group_wireless_blocklist\n", 1, true))
        assert.truthy(text:find("\n---@param params? telnyx.sim.params.list_sim_cards\n", 1, true))
      end)
  end)

  describe("the README table", function()
    it("has one row per operation, in order, between the markers", function()
      local readme = assert(read_file(generate.README_FILE))
      local region = readme:match(generate.BEGIN:gsub("%p", "%%%0") .. "\n(.-)\n" .. generate.END:gsub("%p", "%%%0"))
      assert.truthy(region, "no operations markers in README.md")
      local rows = {}
      for name in region:gmatch("\n| `client:([%w_]+)%(") do rows[#rows + 1] = name end
      assert.same(sim.operations, rows)
      assert.truthy(region:find("| `client:purchase_esims(params [, opts])` | `POST /actions/purchase/esims` | "
        .. "`amount`*, `sim_card_group_id`, `tags`, `product`, `whitelabel_name`, `status` | list | **spends money** |",
        1, true))
      assert.truthy(region:find("| `client:get_sim_card(id or params [, opts])` | `GET /sim_cards/{id}` | "
        .. "`id`* (path), `include_sim_card_group` (query), `include_pin_puk_codes` (query) | one | safe |", 1, true))
    end)

    it("is refused without its markers", function()
      local out, err = generate.splice("# no markers\n", generate.render_table())
      assert.is_nil(out)
      assert.matches("has no <!%-%- operations:begin %-%->", err)
    end)
  end)

  describe("the staleness check", function()
    local root

    after_each(function()
      if root then os.execute("rm -rf " .. shell_quote(root)) end
      root = nil
    end)

    it("names each stale file, and writing makes them current", function()
      root = scratch_root()
      assert.same({}, generate.stale(root))
      local f = assert(io.open(root .. "/" .. generate.TYPES_FILE, "ab"))
      f:write("-- edited by hand\n")
      f:close()
      local readme = assert(read_file(root .. "/" .. generate.README_FILE))
      f = assert(io.open(root .. "/" .. generate.README_FILE, "wb"))
      f:write((readme:gsub("| `client:purchase_esims%(", "| `client:buy_esims(")))
      f:close()
      assert.same({ generate.TYPES_FILE, generate.README_FILE }, generate.stale(root))

      assert.same({ generate.TYPES_FILE, generate.README_FILE }, generate.write(root))
      assert.same({}, generate.stale(root))
      assert.equal(read_file(generate.TYPES_FILE), read_file(root .. "/" .. generate.TYPES_FILE))
      assert.equal(read_file(generate.README_FILE), read_file(root .. "/" .. generate.README_FILE))
      assert.same({}, generate.write(root)) -- nothing left to write
    end)

    it("gives the same text on every run", function()
      assert.equal(generate.render_types(), generate.render_types())
      assert.equal(generate.render_table(), generate.render_table())
    end)

    it("--check exits 1 naming the stale file and writes nothing; without it the file is rewritten", function()
      root = scratch_root()
      os.remove(root .. "/" .. generate.TYPES_FILE)
      local cmd = lua_bin .. " tools/generate.lua --check --root " .. shell_quote(root)
      local rc, out = sh(cmd)
      assert.equal(1, rc, out)
      assert.matches("types/telnyx/sim.lua is stale", out, 1, true)
      assert.is_nil(read_file(root .. "/" .. generate.TYPES_FILE))

      rc, out = sh(lua_bin .. " tools/generate.lua --root " .. shell_quote(root))
      assert.equal(0, rc, out)
      assert.matches("wrote types/telnyx/sim.lua", out, 1, true)
      rc, out = sh(cmd)
      assert.equal(0, rc, out)
      assert.matches("up to date", out, 1, true)
    end)
  end)
end)
