-- luacheck configuration for telnyx-sim
std = "max"
max_line_length = 120
codes = true

exclude_files = {
  "lua_modules/",
  ".luarocks/",
  ".install/",
}

files["spec/"] = {
  std = "+busted",
  max_line_length = 140, -- expected tables read best one record per line
}

-- Lua wrappers around the C module may be used from OpenResty.
files["telnyx/sim/"] = {
  std = "max+ngx_lua",
}

files["examples/openresty/"] = {
  std = "max+ngx_lua",
}

-- The handlers of the nginx that spec/openresty_spec.lua starts.
files["spec/support/openresty_app.lua"] = {
  std = "max+ngx_lua",
}
files["spec/support/openresty_pause_app.lua"] = {
  std = "max+ngx_lua",
}

-- The LuaLS definition file tools/generate.lua writes: empty stubs of every function, on a
-- class table nothing reads, with long literal unions.
files["types/"] = {
  unused_args = false,
  max_line_length = false,
  ignore = { "241" },
}

-- The example spec a user copies (busted against the fake).
files["examples/test_with_fake/fleet_spec.lua"] = {
  std = "+busted",
}
