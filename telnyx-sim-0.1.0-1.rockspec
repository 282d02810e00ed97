rockspec_format = "3.0"
package = "telnyx-sim"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/telnyx-sim/telnyx-sim.git",
   tag = "v0.1.0",
}
description = {
   summary = "Buy eSIMs and register SIM cards on Telnyx's API v2 from Lua (C module over libcurl)",
   detailed = [[
telnyx.sim is a Lua C module that purchases eSIMs and registers physical SIM
cards through Telnyx's API v2 and returns the SIM cards as plain Lua tables.
It never re-sends a money-spending request that may have reached the server.
]],
   homepage = "https://github.com/telnyx-sim/telnyx-sim",
   license = "MIT",
   labels = { "telnyx", "sim", "esim", "iot", "http", "api" },
}
dependencies = {
   "lua >= 5.1, < 5.5",
   "lua-cjson >= 2.1",
}
external_dependencies = {
   CURL = { header = "curl/curl.h", library = "curl" },
}
build = {
   type = "builtin",
   modules = {
      ["telnyx.sim"] = {
         sources = { "lua_telnyx_sim.c" },
         libraries = { "curl", "pthread", "m" },
         incdirs = { "$(CURL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)" },
      },
      -- the same client for OpenResty, doing its I/O through nginx
      ["telnyx.sim.resty"] = "telnyx/sim/resty.lua",
   },
}
test_dependencies = { "busted", "luasocket" }
test = { type = "busted" }
