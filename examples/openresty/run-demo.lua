-- make demo-openresty: runs examples/openresty/nginx.conf + handler.lua in
-- Debian's nginx against the stub server on loopback, and shows:
--   1. a purchase of 3 eSIMs through cosockets (lua-resty-http), the default;
--   2. the activation codes the timer started after it fetched, read back
--      from the shared dict through GET /activation_codes/<id>, and the
--      requests the stub saw;
--   3. a registration of SIM cards (one code refused), through cosockets;
--   4. a purchase through the proxy location instead (transport = "capture");
--   5. the handler's notices in nginx's error log (which transport each
--      client got, what the timer did).
--   lua5.4 examples/openresty/run-demo.lua   (from the repository root, after `make LUA=luajit`)
--
-- lua-resty-http and lua-resty-string come from $TELNYX_SIM_VENDOR_DIR, else
-- ../shared/vendor beside the repository (spec/support/nginx.lua's
-- vendor_lua_path); a user installs them with opm or luarocks (see nginx.conf).
-- What the demo changes in the conf: examples/openresty/demo_conf.lua.
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local socket = require "socket"
local demo_conf = require "examples.openresty.demo_conf"
local print_table = require "examples.print_table"

local vendor, why = nginx.vendor_lua_path()
if not vendor then
  io.stderr:write("demo failed: ", why, "\n")
  os.exit(1)
end

-- The handler's own log lines (ngx.log from handler.lua), without nginx's prefix and suffix.
local function handler_notices(log)
  local lines = {}
  for line in log:gmatch("[^\n]+") do
    local level, message = line:match("%[(%a+)%] .-%[lua%] handler%.lua:%d+: (.*)$")
    if message then
      message = message:gsub("^[%w_]*%(%): ", ""):gsub(", context: .*$", ""):gsub(", client: .*$", "")
      lines[#lines + 1] = "  [" .. level .. "] " .. message
    end
  end
  return lines
end

-- Prints the stub's requests after the first `from`, as "METHOD path" lines (ids as {id}), counted.
local function stub_saw(stub, from)
  local order, counts = {}, {}
  local reqs = stub:requests()
  for i = from + 1, #reqs do
    local what = reqs[i].method .. " " .. reqs[i].path:gsub("/sim_cards/[%w%-]+/", "/sim_cards/{id}/")
    if not counts[what] then order[#order + 1] = what end
    counts[what] = (counts[what] or 0) + 1
  end
  for _, what in ipairs(order) do print(("  %d x %s"):format(counts[what], what)) end
end

local stub = helpers.start_stub()
local ok, err = pcall(function()
  local server = nginx.start{ conf = demo_conf(stub.port),
    env = "TELNYX_API_KEY=stub-demo-key TELNYX_BASE_URL=" .. helpers.shell_quote(stub.base_url) }
  local done, failure = pcall(function()
    local function call(method, path, body) -- body: JSON text
      local res = assert(helpers.http{ port = server.port, method = method, path = path,
        body = body, headers = { ["content-type"] = "application/json" },
        timeout = 30 })
      if res.status ~= 200 and res.status ~= 202 then
        error(method .. " " .. path .. ": HTTP " .. res.status .. ": " .. res.body
          .. "\nnginx error log:\n" .. server:error_log())
      end
      return res.status, helpers.decode(res.body)
    end
    local seen = #stub:requests()

    print("== nginx on 127.0.0.1:" .. server.port .. ", calling the stub at " .. stub.base_url
      .. " through cosockets (lua-resty-http) ==")
    print("nginx.conf's cosocket setup, as this demo runs it:")
    for line in server.conf:gmatch("[^\n]+") do
      if line:match("^%s*#?%s*lua_package_path ") or line:match("^%s*#?%s*lua_ssl_trusted_certificate")
        or line:match("^%s*resolver ") or line:match("^%s*lua_shared_dict ") then
        print("  " .. line:gsub("^%s+", ""))
      end
    end
    print()
    local payload = '{"amount": 3, "tags": ["demo"], "status": "standby"}'
    print("== 1. POST /esims " .. payload .. " ==")
    local _, out = call("POST", "/esims", payload)
    print(("Purchased %d eSIM(s); the handler answered, then started a timer for their codes:"):format(#out.data))
    print_table.sim_cards(out.data)
    print_table.errors(out.errors)

    print()
    print("== 2. GET /activation_codes/<id>: what the timer stored in lua_shared_dict telnyx_activation_codes ==")
    local rows = {}
    for _, card in ipairs(out.data) do
      local deadline = socket.gettime() + 10
      local status, got = call("GET", "/activation_codes/" .. card.id)
      while status == 202 and socket.gettime() < deadline do -- the timer is still at it
        socket.sleep(0.05)
        status, got = call("GET", "/activation_codes/" .. card.id)
      end
      if status ~= 200 then error("the timer did not store the code of " .. card.id .. " within 10 s") end
      rows[#rows + 1] = { got.id, got.activation_code }
    end
    print(("Activation codes (%d), fetched by the timer:"):format(#rows))
    print_table.rows({ "id", "activation_code" }, rows)
    print("The stub received:")
    stub_saw(stub, seen)

    print()
    payload = '{"registration_codes": ["0000000001", "0000000002", "9990000003"]}'
    print("== 3. POST /sim_cards " .. payload .. " ==")
    _, out = call("POST", "/sim_cards", payload)
    print(("Registered %d SIM card(s) (the stub refuses codes starting 999):"):format(#out.data))
    print_table.sim_cards(out.data)
    print_table.errors(out.errors)
    seen = #stub:requests()

    print()
    payload = '{"amount": 1, "tags": ["demo"]}'
    print("== 4. POST /capture/esims " .. payload
      .. ": the same purchase through the proxy location (transport = \"capture\") ==")
    _, out = call("POST", "/capture/esims", payload)
    print(("Purchased %d eSIM(s), answered the same way; no timer (the capture transport cannot run in one):")
      :format(#out.data))
    print_table.sim_cards(out.data)
    print_table.errors(out.errors)
    print("The stub received (through /_telnyx/, nginx's proxy):")
    stub_saw(stub, seen)

    print()
    print("== 5. nginx's error log: the handler's lines ==")
    for _, line in ipairs(handler_notices(server:error_log())) do print(line) end
  end)
  server:stop()
  if not done then error(failure, 0) end
end)
stub:stop()
if not ok then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
