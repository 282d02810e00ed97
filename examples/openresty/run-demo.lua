-- make demo-openresty: runs examples/openresty/nginx.conf + handler.lua in
-- Debian's nginx against the stub server on loopback, buys 3 eSIMs and
-- registers 3 SIM cards through it, prints them, and stops both.
--   lua5.4 examples/openresty/run-demo.lua   (from the repository root, after `make LUA=luajit`)
--
-- The conf is used as a user would copy it, with only what a loopback demo
-- needs changed: the listen port, the upstream (the stub, plain http), the
-- Lua paths (this checkout), and private temp dirs. Each change must apply
-- exactly once, so the demo fails if the example drifts.
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local print_table = require "examples.print_table"

local repo = nginx.repo_dir()

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

local conf = read(repo .. "/examples/openresty/nginx.conf")

local function change(pattern, replacement)
  local n
  conf, n = conf:gsub(pattern, function() return replacement end)
  if n ~= 1 then error("examples/openresty/nginx.conf: expected one match of " .. pattern .. ", found " .. n) end
end

local stub = helpers.start_stub()
local ok, err = pcall(function()
  change("\nerror_log [^\n]*", "\n{{USER}}\nerror_log logs/error.log notice;")
  change("listen 8080;", "listen 127.0.0.1:{{PORT}};")
  change("server api%.telnyx%.com:443;", "server 127.0.0.1:" .. stub.port .. ";")
  change("proxy_pass https://telnyx_api/v2/;", "proxy_pass http://telnyx_api/v2/;")
  change('lua_package_path  "[^"]*";', 'lua_package_path "{{REPO}}/?.lua;{{REPO}}/examples/openresty/?.lua;;";')
  change('lua_package_cpath "[^"]*";', 'lua_package_cpath "{{REPO}}/build/luajit/?.so;;";')
  change("\nhttp {\n", "\nhttp {\n    {{TEMP_PATHS}}\n")

  local server = nginx.start{ conf = conf, env = "TELNYX_API_KEY=stub-demo-key" }
  local done, failure = pcall(function()
    print("== nginx on 127.0.0.1:" .. server.port .. ", proxying /_telnyx/ to the stub at " .. stub.base_url .. " ==")
    local function post(path, payload)
      print()
      print("== POST " .. path .. " " .. helpers.encode(payload) .. " ==")
      local res = assert(helpers.http{ port = server.port, method = "POST", path = path,
        body = helpers.encode(payload), headers = { ["content-type"] = "application/json" }, timeout = 30 })
      if res.status ~= 200 then
        error("HTTP " .. res.status .. ": " .. res.body .. "\nnginx error log:\n" .. server:error_log())
      end
      return helpers.decode(res.body)
    end
    local out = post("/esims", { amount = 3, tags = { "demo" }, status = "standby" })
    print(("Purchased %d eSIM(s):"):format(#out.data))
    print_table.sim_cards(out.data)
    print_table.errors(out.errors)
    out = post("/sim_cards", { registration_codes = { "0000000001", "0000000002", "9990000003" } })
    print(("Registered %d SIM card(s) (the stub refuses codes starting 999):"):format(#out.data))
    print_table.sim_cards(out.data)
    print_table.errors(out.errors)
  end)
  server:stop()
  if not done then error(failure, 0) end
end)
stub:stop()
if not ok then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
