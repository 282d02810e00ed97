-- The examples as users run them: `make demo` (examples/run-demo.sh: the eSIM
-- onboarding and the registration against the fake (bin/telnyx-sim-fake)), the onboarding
-- stopping with a non-zero exit and the err's text at the first failure, and
-- examples/openresty/handler.lua writing results back with sim.encode
-- (empty arrays stay [], at any depth), its timer fetching a purchase's
-- activation codes over cosockets, and its proxy-location alternative.
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local fixtures = require "spec.support.fixtures"
local socket = require "socket"

local shell_quote = helpers.shell_quote
local lua_version = _VERSION:match("^Lua (5%.%d)$")
local is_luajit = type(rawget(_G, "jit")) == "table"
local lua_bin = os.getenv("LUA_BIN") or (is_luajit and "luajit" or ("lua" .. tostring(lua_version)))
local repo = nginx.repo_dir()

-- Runs a shell command in the repository -> exit status, stdout, stderr.
-- Never with the caller's TELNYX_API_KEY: that would make the demo buy eSIMs.
local function sh(cmd, env)
  local out, err = helpers.tmpname(), helpers.tmpname()
  local p = assert(io.popen("cd " .. shell_quote(repo) .. " && env -u TELNYX_API_KEY -u TELNYX_BASE_URL "
    .. (env or "") .. " " .. cmd .. " >" .. shell_quote(out) .. " 2>" .. shell_quote(err) .. "; echo $?"))
  local rc = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local stdout, stderr = helpers.read_file(out) or "", helpers.read_file(err) or ""
  os.remove(out)
  os.remove(err)
  return rc, stdout, stderr
end

local function count(text, plain)
  local n, i = 0, 1
  while true do
    local s, e = text:find(plain, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

describe("make demo (examples/run-demo.sh)", function()
  it("runs the eSIM onboarding, then the registration, against the fake", function()
    local rc, out, err = sh("sh examples/run-demo.sh", "LUA_BIN=" .. shell_quote(lua_bin))
    assert.equal(0, rc, out .. err)
    assert.matches("== telnyx%-sim%-fake at http://127%.0%.0%.1:%d+/v2 ==", out)
    for _, line in ipairs{
      "1. Purchased 3 eSIM(s):",
      "2. Activation codes:",
      "3. Created SIM card group",
      "4. Moved 3 eSIM(s) into the group:",
      "5. Enabling 3 eSIM(s), started:",
      "page 1 of 2 (request 1: page[number]=1, page[size]=2):",
      "page 2 of 2 (request 2: page[number]=2, page[size]=2):",
      "3 SIM card(s) in 2 request(s) of page[size]=2",
      "7. Disabled ",
      "8. Deleted ",
      "9. SIM card group",
      "Registered 2 of 3 SIM card(s):",
    } do
      assert.truthy(out:find(line, 1, true), "no line " .. line .. " in:\n" .. out)
    end
    assert.equal(3, count(out, "LPA:1$"))
    assert.equal(3, count(out, "enable  in-progress"))
    assert.equal(3, count(out, "enable  completed"))
    assert.equal(1, count(out, "disable  completed"))
    -- the group keeps one enabled and one disabled eSIM
    local group = out:match("9%. SIM card group.-\n\n")
    assert.truthy(group, out)
    assert.equal(1, count(group, "  enabled  "))
    assert.equal(1, count(group, "  disabled  "))
    assert.matches("9990000003%s+10008", out)
    assert.equal("", err)
  end)
end)

describe("examples/esim_onboarding.lua", function()
  local stub

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function() stub:reset() end)

  local function onboard()
    return sh(lua_bin .. " examples/esim_onboarding.lua",
      "TELNYX_API_KEY=stub-demo-key TELNYX_BASE_URL=" .. shell_quote(stub.base_url))
  end

  it("stops at the first failure with exit status 1 and tostring(err)", function()
    stub:queue{ method = "POST", match = "/v2/sim_card_groups", status = 422,
      json = { errors = { helpers.api_error("10015", "Invalid parameter", "name is taken", "/name") } } }
    local rc, out, err = onboard()
    assert.equal(1, rc, out .. err)
    assert.truthy(out:find("2. Activation codes:", 1, true), out)
    assert.falsy(out:find("3. Created", 1, true), out)
    assert.matches("^create_sim_card_group: telnyx%.sim: create_sim_card_group: HTTP 422", err)
    assert.matches("name is taken", err)
    -- nothing after the failure was sent
    local last = stub:last_request()
    assert.equal("POST", last.method)
    assert.equal("/v2/sim_card_groups", last.path)
  end)

  it("a failed page of the listing is a failure, not a short list", function()
    stub:queue{ method = "GET", match = "/v2/sim_cards", status = 422,
      json = { errors = { helpers.api_error("10015", "Invalid parameter", "bad filter") } } }
    local rc, out, err = onboard()
    assert.equal(1, rc, out .. err)
    assert.truthy(out:find("6. SIM cards tagged", 1, true), out)
    assert.matches("^list_sim_cards, page 1: telnyx%.sim: list_sim_cards: HTTP 422", err)
  end)

  it("without an API key: exit status 2 and the config error", function()
    local rc, _, err = sh(lua_bin .. " examples/esim_onboarding.lua")
    assert.equal(2, rc)
    assert.matches("no API key", err)
  end)
end)

local available, why = nginx.available()
local vendor_path, vendor_why = nginx.vendor_lua_path()
local describe_nginx = available and describe or function(name)
  describe(name, function() pending("nginx with libnginx-mod-http-lua is not installed: " .. tostring(why)) end)
end
if available and not vendor_path then -- the demo runs on cosockets: lua-resty-http (as openresty_cosocket_spec)
  describe_nginx = function(name)
    helpers.skip_missing({ describe = describe, it = it, pending = pending }, name, vendor_why)
  end
end

describe_nginx("examples/openresty/handler.lua in nginx", function()
  local stub, server

  setup(function()
    nginx.build_luajit_module()
    stub = helpers.start_stub()
    -- the conf as make demo-openresty changes it (examples/openresty/run-demo.lua)
    server = nginx.start{ conf = require("examples.openresty.demo_conf")(stub.port),
      env = "TELNYX_API_KEY=stub-demo-key TELNYX_BASE_URL=" .. shell_quote(stub.base_url) }
  end)

  teardown(function()
    if server then server:stop() end
    if stub then stub:stop() end
  end)

  before_each(function() stub:reset() end)

  local function post(path, body)
    return assert(helpers.http{ port = server.port, method = "POST", path = path, body = body,
      headers = { ["content-type"] = "application/json" }, timeout = 30 })
  end

  -- An empty array as nginx's lua-cjson writes it: [] with OpenResty's fork, {} with Debian's 2.1.0.
  local EMPTY = helpers.cjson_fork and "[]" or "{}"

  it("answers the cards with their empty arrays as [] (with OpenResty's lua-cjson), and errors as []", function()
    local res = post("/esims", '{"amount": 2, "tags": ["demo"]}')
    assert.equal(200, res.status, res.body)
    assert.equal(2, count(res.body, '"resources_with_in_progress_actions":' .. EMPTY))
    assert.truthy(res.body:find('"errors":' .. EMPTY, 1, true), res.body)
    local decoded = helpers.decode(res.body)
    assert.equal(2, #decoded.data)
    assert.same({ "demo" }, decoded.data[1].tags)
  end)

  it("keeps a refused code's error list, nested empty arrays included", function()
    -- matched by path: an earlier purchase's timer may still be fetching activation codes
    stub:queue{ match = "/v2/actions/register/sim_cards", status = 422, json = { errors = {
      helpers.api_error("10015", "Invalid parameter", "no codes", "/registration_codes", { tried = helpers.empty_array }),
    } } }
    local res = post("/sim_cards", '{"registration_codes": ["0000000001"]}')
    assert.equal(502, res.status, res.body)
    assert.truthy(res.body:find('"meta":{"tried":' .. EMPTY .. '}', 1, true), res.body)
    local decoded = helpers.decode(res.body)
    assert.equal("http", decoded.error.kind)
    assert.equal(422, decoded.error.status)
    assert.equal("10015", decoded.error.errors[1].code)
  end)

  local function get(path)
    return assert(helpers.http{ port = server.port, method = "GET", path = path, timeout = 30 })
  end

  it("POST /esims starts a timer that fetches the activation codes, read back from the shared dict", function()
    local res = post("/esims", '{"amount": 2}')
    assert.equal(200, res.status, res.body)
    local cards = helpers.decode(res.body).data
    assert.equal(2, #cards)
    for _, card in ipairs(cards) do
      local got = get("/activation_codes/" .. card.id)
      local deadline = socket.gettime() + 10
      while got.status == 202 and socket.gettime() < deadline do
        socket.sleep(0.05)
        got = get("/activation_codes/" .. card.id)
      end
      assert.equal(200, got.status, got.body)
      assert.same({ id = card.id, activation_code = fixtures.activation_code(card.id) }, helpers.decode(got.body))
    end
    local paths = {}
    for _, r in ipairs(stub:requests()) do paths[#paths + 1] = r.method .. " " .. r.path end
    table.sort(paths)
    local want = { "POST /v2/actions/purchase/esims" }
    for _, card in ipairs(cards) do want[#want + 1] = "GET /v2/sim_cards/" .. card.id .. "/activation_code" end
    table.sort(want)
    assert.same(want, paths)
    assert.matches("timer: fetched the activation codes of 2 eSIM%(s%), 0 failed", server:error_log())
    assert.matches("made telnyx%.sim%.resty client %(cosockets through lua%-resty%-http%)", server:error_log())
    assert.equal(404, get("/activation_codes/no-such-card").status)
  end)

  it("a code the timer could not fetch is a 502 with the err", function()
    stub:queue{ method = "GET", status = 404,
      json = { errors = { helpers.api_error("10005", "Resource not found", "no such SIM card") } } }
    local res = post("/esims", '{"amount": 1}')
    assert.equal(200, res.status, res.body)
    local id = helpers.decode(res.body).data[1].id
    local got = get("/activation_codes/" .. id)
    local deadline = socket.gettime() + 10
    while got.status == 202 and socket.gettime() < deadline do
      socket.sleep(0.05)
      got = get("/activation_codes/" .. id)
    end
    assert.equal(502, got.status, got.body)
    local decoded = helpers.decode(got.body)
    assert.equal("http", decoded.error.kind)
    assert.equal(404, decoded.error.status)
  end)

  it("POST /capture/esims buys through the proxy location, the same answer, no timer", function()
    local res = post("/capture/esims", '{"amount": 1, "tags": ["demo"]}')
    assert.equal(200, res.status, res.body)
    assert.truthy(res.body:find('"errors":' .. EMPTY, 1, true), res.body)
    assert.equal(1, #helpers.decode(res.body).data)
    local reqs = stub:requests()
    assert.equal(1, #reqs)
    assert.equal("/v2/actions/purchase/esims", reqs[1].path)
    assert.matches("made telnyx%.sim%.resty client %(location /_telnyx%)", server:error_log())
    assert.equal(404, get("/activation_codes/" .. helpers.decode(res.body).data[1].id).status)
  end)

  it("an err made before any request still has its errors as [] (with OpenResty's lua-cjson)", function()
    local res = post("/esims", '{"amount": 0}')
    assert.equal(400, res.status, res.body)
    assert.truthy(res.body:find('"errors":' .. EMPTY, 1, true), res.body)
    assert.equal("amount", helpers.decode(res.body).error.field)
    assert.same({}, stub:requests())
  end)
end)
