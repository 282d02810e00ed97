rockspec_format = "3.0"
package = "telnyx-sim"
version = "0.2.0-1"
source = {
   url = "git+https://github.com/telnyx-sim/telnyx-sim.git",
   tag = "v0.2.0",
}
description = {
   summary = "Manage Telnyx SIM cards (API v2) from Lua: all 45 SIM card operations (C module over libcurl)",
   detailed = [[
telnyx.sim is a Lua C module for the whole Telnyx SIM card API v2: buy eSIMs,
register physical SIM cards, activation codes, groups, enable/disable, orders,
data usage notifications, paging and action waiting, with results as plain Lua
tables. It never re-sends a request that spends money or creates an object once
it may have reached the server.

telnyx.sim.resty is the same client for OpenResty (nginx + ngx_lua). It moves its
bytes over cosockets with lua-resty-http (>= 0.17; `opm get ledgetech/lua-resty-http`
or `luarocks install lua-resty-http` into the tree nginx loads, plus resty.string,
which OpenResty ships), or without it through an nginx proxy location. That
dependency is deliberately not listed below: it runs only inside nginx, and plain
Lua users of telnyx.sim do not need it (see docs/openresty.md).

telnyx.sim.fake and the command telnyx-sim-fake are a fake Telnyx SIM card API
for tests: stateful, scriptable (answers and connection faults), on loopback
(docs/fake.md). They need luasocket.
]],
   homepage = "https://github.com/telnyx-sim/telnyx-sim",
   license = "MIT",
   labels = { "telnyx", "sim", "esim", "iot", "http", "api" },
}
dependencies = {
   "lua >= 5.1, < 5.5",
   -- OpenResty's lua-cjson (what LuaRocks installs): results re-encode faithfully ([] stays [])
   -- and integers stay exact on 5.3+. Debian's 2.1.0 works too, with the limits the README states.
   "lua-cjson >= 2.1.0.17",
   -- the fake (telnyx.sim.fake, telnyx-sim-fake) only
   "luasocket",
}
external_dependencies = {
   CURL = { header = "curl/curl.h", library = "curl" },
}
build = {
   type = "builtin",
   modules = {
      ["telnyx.sim"] = {
         sources = {
            "lua_telnyx_sim.c", "src/call.c", "src/batch.c", "src/transport.c", "src/rules.c", "src/formats.c", "src/operations.c", "src/interpret.c",
            "src/err.c", "src/json.c", "src/strbuf.c", "src/random.c", "src/config.c",
         },
         libraries = { "curl", "pthread", "m" },
         incdirs = { "$(CURL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)" },
      },
      -- the same client for OpenResty, doing its I/O through nginx (cosockets via lua-resty-http,
      -- an OpenResty-only dependency left out of `dependencies`: see the description)
      ["telnyx.sim.resty"] = "telnyx/sim/resty.lua",
      -- each and wait_for_action, shared by both clients
      ["telnyx.sim.flow"] = "telnyx/sim/flow.lua",
      -- the fake Telnyx for tests (docs/fake.md): its Lua API and command, the server, the
      -- emulated API, its JSON and its payloads
      ["telnyx.sim.fake"] = "telnyx/sim/fake.lua",
      ["telnyx.sim.fake.server"] = "telnyx/sim/fake/server.lua",
      ["telnyx.sim.fake.api"] = "telnyx/sim/fake/api.lua",
      ["telnyx.sim.fake.json"] = "telnyx/sim/fake/json.lua",
      ["telnyx.sim.fake.fixtures"] = "telnyx/sim/fake/fixtures.lua",
   },
   install = {
      bin = { ["telnyx-sim-fake"] = "bin/telnyx-sim-fake" },
   },
   -- The LuaLS definition file (types/telnyx/sim.lua, `---@meta`; make generate), copied as-is
   -- into the rock's own directory (lib/luarocks/rocks-5.x/telnyx-sim/<version>/types/), off
   -- package.path: as a Lua module it would shadow the C module. Point workspace.library there.
   copy_directories = { "types" },
}
test_dependencies = { "busted" }
test = { type = "busted" }
