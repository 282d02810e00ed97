-- examples/openresty/nginx.conf as `make demo-openresty` (run-demo.lua) and
-- spec/demo_spec.lua run it: the file as a user would copy it, with only what
-- a loopback demo needs changed. Each change must apply exactly once, so the
-- demo fails if the example drifts.
--   local conf = require("examples.openresty.demo_conf")(stub.port)
--   local server = nginx.start{ conf = conf, env = "TELNYX_API_KEY=... TELNYX_BASE_URL=" .. stub.base_url }
-- ({{...}} placeholders are spec/support/nginx.lua's; {{VENDOR_LUA_PATH}} is
-- lua-resty-http and lua-resty-string from $TELNYX_SIM_VENDOR_DIR or ../shared/vendor.)
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"

return function(stub_port)
  local conf = assert(helpers.read_file(nginx.repo_dir() .. "/examples/openresty/nginx.conf"))
  local function change(pattern, replacement)
    local n
    conf, n = conf:gsub(pattern, function(...)
      return type(replacement) == "function" and replacement(...) or replacement
    end)
    if n ~= 1 then error("examples/openresty/nginx.conf: expected one match of " .. pattern .. ", found " .. n, 2) end
  end
  -- nginx's own user (as root) and the API's address: sim.new reads TELNYX_BASE_URL
  change("\nenv TELNYX_API_KEY;", "\nenv TELNYX_API_KEY;\nenv TELNYX_BASE_URL;")
  change("\nerror_log [^\n]*", "\n{{USER}}\nerror_log logs/error.log notice;")
  change("listen 8080;", "listen 127.0.0.1:{{PORT}};")
  -- this checkout's Lua files and the vendored lua-resty-http / lua-resty-string
  change('lua_package_path  "[^"]*";',
    'lua_package_path "{{REPO}}/?.lua;{{REPO}}/examples/openresty/?.lua;{{VENDOR_LUA_PATH}};;";')
  change('lua_package_cpath "[^"]*";', 'lua_package_cpath "{{REPO}}/build/luajit/?.so;;";')
  -- plain http to the stub on loopback: no certificate to check
  change("\n%s*(lua_ssl_trusted_certificate [^\n]*)", function(line)
    return "\n    # " .. line .. "  # not needed: plain http to the stub on loopback"
  end)
  -- the capture alternative's upstream: the stub, over plain http
  change("server api%.telnyx%.com:443;", "server 127.0.0.1:" .. stub_port .. ";")
  change("proxy_pass https://telnyx_api/v2/;", "proxy_pass http://telnyx_api/v2/;")
  change("\nhttp {\n", "\nhttp {\n    {{TEMP_PATHS}}\n")
  return conf
end
