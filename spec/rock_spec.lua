-- The rockspec installs a working module: `luarocks make` into a private tree,
-- then a fresh interpreter loads telnyx.sim from that tree and buys eSIMs
-- from the stub, and the tree's telnyx-sim-fake starts from /tmp.
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
    assert.equal(0, (sh("mkdir -p " .. dir .. "/src " .. dir .. "/tree && cp -r *.rockspec lua_telnyx_sim.c src types telnyx bin "
      .. dir .. "/src/")))
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
    -- every Lua part (telnyx/sim/*.lua: resty, flow, fake, ...) is installed beside the C module
    local _, listing = sh("ls telnyx/sim/*.lua telnyx/sim/fake/*.lua")
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

  it("installs telnyx-sim-fake, which starts from /tmp with the tree's telnyx.sim.fake", function()
    local env = ("LUA_CPATH='%s/tree/lib/lua/%s/?.so;;' LUA_PATH='%s/tree/share/lua/%s/?.lua;;'")
      :format(dir, lua_version, dir, lua_version)
    local rc, out = sh(("cd /tmp && %s %s/tree/bin/telnyx-sim-fake --help"):format(env, dir))
    assert.equal(0, rc, out)
    assert.matches("^Usage: telnyx%-sim%-fake", out)
    -- started, it prints its URL; a shutdown through its control API ends it
    local script = ([[
      local p = assert(io.popen("cd /tmp && exec %s/tree/bin/telnyx-sim-fake 2>/dev/null"))
      local url = p:read("*l")
      local fake = require "telnyx.sim.fake"
      local where = package.searchpath and package.searchpath("telnyx.sim.fake", package.path) or "-"
      local port = assert(tonumber(url:match(":(%%d+)/v2$")))
      local sock = assert(require("socket").connect("127.0.0.1", port))
      sock:send("POST /__fake/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
      local status = sock:receive("*l")
      p:close()
      io.write(url, "\n", status, "\n", where, "\n", type(fake.start), "\n")
    ]]):format(dir)
    rc, out = sh(("%s %s -e %s"):format(env, lua_bin, helpers.shell_quote(script)))
    assert.equal(0, rc, out)
    local url, status, where, start = out:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n$")
    assert.matches("^http://127%.0%.0%.1:%d+/v2$", url, 1, false, out)
    assert.equal("HTTP/1.1 200 OK", status)
    if where ~= "-" then -- 5.2+: the module came from the tree
      assert.equal(("%s/tree/share/lua/%s/telnyx/sim/fake.lua"):format(dir, lua_version), where)
    end
    assert.equal("function", start)
  end)
end)
