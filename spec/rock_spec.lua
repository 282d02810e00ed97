-- The rockspec installs a working module: `luarocks make` into a private tree,
-- then a fresh interpreter loads telnyx.sim from that tree and buys eSIMs
-- from the stub.
local helpers = require "spec.support.helpers"

-- LuaJIT reports "Lua 5.1" and takes modules built for 5.1's C API: luarocks builds
-- the rock for 5.1, and LuaJIT's own interpreter loads it.
local lua_version = _VERSION:match("^Lua (5%.%d)$")
local lua_bin = os.getenv("LUA_BIN") or ("lua" .. tostring(lua_version))

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

local function multiarch_include()
  local _, out = sh("gcc -print-multiarch")
  return "/usr/include/" .. out:gsub("%s+$", "")
end

local describe_rock = lua_version and describe or pending

describe_rock("luarocks make", function()
  local stub, dir

  setup(function()
    stub = helpers.start_stub()
    dir = helpers.tmpname()
    assert.equal(0, (sh("mkdir -p " .. dir .. "/src " .. dir .. "/tree && cp -r *.rockspec lua_telnyx_sim.c src types "
      .. dir .. "/src/ && { [ -d telnyx ] && cp -r telnyx " .. dir .. "/src/ || true; }")))
  end)

  teardown(function()
    if stub then stub:stop() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("installs a module that works from the tree", function()
    local rc, out = sh(("cd %s/src && luarocks --lua-version=%s --tree=%s/tree make --deps-mode=none CURL_INCDIR=%s")
      :format(dir, lua_version, dir, multiarch_include()))
    assert.equal(0, rc, out)
    assert.matches("is now installed in", out)
    -- every Lua part (telnyx/sim/*.lua: resty, flow) is installed beside the C module
    local _, listing = sh("ls telnyx/sim/*.lua")
    local parts = 0
    for file in listing:gmatch("[^\n]+") do
      local installed = io.open(("%s/tree/share/lua/%s/%s"):format(dir, lua_version, file))
      assert.truthy(installed, file .. " is not in the tree")
      if installed then installed:close() end
      parts = parts + 1
    end
    assert.is_true(parts >= 2, listing)

    local script = ([[
      local sim = require "telnyx.sim"
      local where
      for pattern in package.cpath:gmatch("[^;]+") do
        local file = pattern:gsub("[?]", "telnyx/sim")
        local f = io.open(file)
        if f then f:close() where = file break end
      end
      local c = assert(sim.new{ api_key = "rock-key", base_url = %q })
      local res = assert(c:purchase_esims{ amount = 2 })
      io.write(where, "\n", #res.data, " ", res.data[1].type, " ", tostring(res.data[1].eid), "\n")
    ]]):format(stub.base_url)
    local cmd = ("LUA_CPATH='%s/tree/lib/lua/%s/?.so;;' LUA_PATH='%s/tree/share/lua/%s/?.lua;;' %s -e %q")
      :format(dir, lua_version, dir, lua_version, lua_bin, script)
    rc, out = sh(cmd)
    assert.equal(0, rc, out)
    assert.equal(dir .. "/tree/lib/lua/" .. lua_version .. "/telnyx/sim.so\n2 esim nil\n", out)
    assert.equal(1, #stub:requests())
  end)
end)
