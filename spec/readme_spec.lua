-- The README as a new user reads it: short, install first, its links alive,
-- and its first example running as written against the fake Telnyx (base URL
-- and key from the environment, as the README says), so it cannot rot.
local helpers = require "spec.support.helpers"

local read_file, shell_quote, tmpname = helpers.read_file, helpers.shell_quote, helpers.tmpname

local repo = helpers.support_dir:match("^(.*)/spec/support$") or "."
local README = repo .. "/README.md"

local lua_version = _VERSION:match("^Lua (5%.%d)$")
local is_luajit = type(rawget(_G, "jit")) == "table"
local lua_bin = os.getenv("LUA_BIN") or (is_luajit and "luajit" or ("lua" .. tostring(lua_version)))

-- The lines of a text.
local function lines_of(text)
  local out = {}
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- The first ```lua block of a Markdown text, and the line it starts on.
local function first_lua_block(text)
  local in_block, first, body = false, nil, {}
  for i, line in ipairs(lines_of(text)) do
    if in_block then
      if line:match("^```%s*$") then return table.concat(body, "\n") .. "\n", first end
      body[#body + 1] = line
    elseif line:match("^```lua%s*$") then
      in_block, first = true, i + 1
    end
  end
  return nil
end

-- Runs `code` in a child interpreter with this process's module paths and `env`
-- ({ NAME = value }) -> exit status, stdout, stderr.
local function run_child(code, env)
  local script, out, err = tmpname(), tmpname(), tmpname()
  local f = assert(io.open(script, "wb"))
  f:write(code)
  f:close()
  local vars = { "env", "-u", "TELNYX_BASE_URL", "-u", "TELNYX_API_KEY",
    "LUA_PATH=" .. shell_quote(package.path), "LUA_CPATH=" .. shell_quote(package.cpath) }
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. shell_quote(v) end
  local p = assert(io.popen(table.concat(vars, " ") .. " " .. lua_bin .. " " .. shell_quote(script)
    .. " >" .. shell_quote(out) .. " 2>" .. shell_quote(err) .. "; echo $?"))
  local rc = tonumber(p:read("*a"):match("%d+"))
  p:close()
  local stdout, stderr = read_file(out) or "", read_file(err) or ""
  os.remove(script)
  os.remove(out)
  os.remove(err)
  return rc, stdout, stderr
end

describe("README.md", function()
  local text = assert(read_file(README), "no README.md at " .. README)
  local lines = lines_of(text)

  it("has at most 300 lines", function()
    assert.is_true(#lines <= 300, "README.md has " .. #lines .. " lines")
  end)

  it("says how to install within its first 80 lines: LuaRocks, and from source the two commands", function()
    local head = table.concat(lines, "\n", 1, math.min(80, #lines))
    assert.truthy(head:find("\n## Install\n", 1, true), "no ## Install heading in the first 80 lines")
    assert.truthy(head:find("\nluarocks install telnyx-sim\n", 1, true))
    assert.truthy(head:find("\nmake test ", 1, true))
    assert.truthy(head:find("\nmake demo ", 1, true))
  end)

  it("links only docs that exist, and links every page of docs/", function()
    local linked = {}
    for target in text:gmatch("%]%(([^)#%s]+)[^)]*%)") do
      if not target:match("^%a[%w+.-]*:") then -- a relative link
        linked[target] = true
        assert.truthy(read_file(repo .. "/" .. target) or helpers.run("test -d " .. shell_quote(repo .. "/" .. target)),
          "README.md links " .. target .. ", which does not exist")
      end
    end
    for _, page in ipairs{ "fake", "performance", "reliability", "openresty", "internals", "contributing" } do
      assert.truthy(linked["docs/" .. page .. ".md"], "README.md does not link docs/" .. page .. ".md")
    end
  end)

  it("docs/*.md link only files that exist", function()
    local p = assert(io.popen("ls " .. shell_quote(repo .. "/docs") .. "/*.md"))
    local pages = {}
    for path in p:lines() do pages[#pages + 1] = path end
    p:close()
    assert.is_true(#pages >= 6)
    for _, path in ipairs(pages) do
      local dir = path:match("^(.*)/[^/]*$")
      for target in assert(read_file(path)):gmatch("%]%(([^)#%s]+)[^)]*%)") do
        if not target:match("^%a[%w+.-]*:") then
          assert.truthy(read_file(dir .. "/" .. target) or helpers.run("test -d " .. shell_quote(dir .. "/" .. target)),
            path .. " links " .. target .. ", which does not exist")
        end
      end
    end
  end)

  describe("its first example", function()
    local code = first_lua_block(text)
    local stub

    setup(function() stub = helpers.start_stub() end)
    teardown(function() if stub then stub:stop() end end)

    it("takes the base URL and the key from the environment, and buys eSIMs only", function()
      assert.truthy(code, "README.md has no ```lua block")
      assert.is_nil(code:find("api.telnyx.com", 1, true), "the first example names the production URL")
      assert.is_nil(code:find("base_url", 1, true), "the first example sets a base_url")
      assert.is_nil(code:find("api_key", 1, true), "the first example sets an api_key")
      assert.is_nil(code:find("register_sim_cards", 1, true))
      assert.truthy(code:find("purchase_esims", 1, true))
    end)

    it("runs as written against the fake, and makes exactly the requests it says", function()
      local rc, out, err = run_child(code, { TELNYX_BASE_URL = stub.base_url, TELNYX_API_KEY = "readme-spec-key" })
      assert.equal(0, rc, "the README's first example failed:\n" .. out .. err)
      assert.equal("", err)

      local bought, codes, listed = {}, {}, {}
      for _, line in ipairs(lines_of(out)) do
        local iccid, kind = line:match("^bought\t(%d+)\t(%a+)$")
        local id, has = line:match("^code\t([%x-]+)\t(%a+)$")
        local l_iccid, status = line:match("^listed\t(%d+)\t(%a+)$")
        if iccid then
          bought[#bought + 1] = iccid
          assert.equal("esim", kind)
        elseif id then
          codes[#codes + 1] = id
          assert.equal("true", has)
        elseif l_iccid then
          listed[#listed + 1] = l_iccid
          assert.equal("enabled", status)
        else
          error("an unexpected line: " .. line)
        end
      end
      assert.equal(2, #bought, out)
      assert.equal(2, #codes, out)
      table.sort(bought)
      table.sort(listed)
      assert.same(bought, listed)

      -- what the fake saw: one purchase, one activation code GET per eSIM bought, one page of the list
      local seen = {}
      for _, r in ipairs(stub:requests()) do
        local target = r.path .. (r.query and "?" .. r.query or "")
        seen[#seen + 1] = r.method .. " " .. (target:gsub("/sim_cards/[%x-]+/", "/sim_cards/{id}/"))
        assert.equal("Bearer readme-spec-key", r.headers.authorization)
      end
      assert.same({
        "POST /v2/actions/purchase/esims",
        "GET /v2/sim_cards/{id}/activation_code",
        "GET /v2/sim_cards/{id}/activation_code",
        "GET /v2/sim_cards?filter[tags]=first-example&page[number]=1&page[size]=250",
      }, seen)
      local state = stub:state()
      local ids = {}
      for _, card in ipairs(state.sim_cards) do ids[card.id] = true end
      for _, id in ipairs(codes) do assert.truthy(ids[id], id) end
    end)
  end)
end)
