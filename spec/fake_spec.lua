-- The fake Telnyx as a user gets it (issue 19): the command telnyx-sim-fake
-- run from outside the repository, the Lua API of telnyx.sim.fake driving the
-- client (telnyx.sim), and the answers a broken request gets.
local sim = require "telnyx.sim"
local fake_telnyx = require "telnyx.sim.fake"
local helpers = require "spec.support.helpers"
local nginx = require "spec.support.nginx"
local socket = require "socket"

local shell_quote, read_file, run = helpers.shell_quote, helpers.read_file, helpers.run
local repo = nginx.repo_dir()
local is_luajit = type(rawget(_G, "jit")) == "table"
local lua_bin = os.getenv("LUA_BIN") or (is_luajit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+")))
local PURCHASE = "/v2/actions/purchase/esims"

-- Waits up to `seconds` for check() to return a value.
local function eventually(seconds, check)
  local deadline = socket.gettime() + seconds
  repeat
    local v = check()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return nil
end

-- Runs bin/telnyx-sim-fake with args from /tmp, in the background.
-- Returns { pid =, out =, err = } (out and err: files of its stdout and stderr).
local function spawn(args)
  local out, err = helpers.tmpname(), helpers.tmpname()
  local p = assert(io.popen(("(cd /tmp && exec %s %s %s) >%s 2>%s </dev/null & echo $!")
    :format(lua_bin, shell_quote(repo .. "/bin/telnyx-sim-fake"), args or "", shell_quote(out), shell_quote(err))))
  local pid = p:read("*l")
  p:close()
  return { pid = pid, out = out, err = err }
end

-- The first line it printed (its URL), once there.
local function first_line(proc)
  return eventually(10, function() return (read_file(proc.out) or ""):match("^([^\n]*)\n") end)
end

local function gone(pid)
  return eventually(10, function() return not helpers.pid_alive(pid) end)
end

-- Runs the command to its end -> exit status, stdout, stderr.
local function command(args)
  local out, err = helpers.tmpname(), helpers.tmpname()
  local p = assert(io.popen(("cd /tmp && %s %s %s >%s 2>%s; echo $?")
    :format(lua_bin, shell_quote(repo .. "/bin/telnyx-sim-fake"), args, shell_quote(out), shell_quote(err))))
  local rc = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local stdout, stderr = read_file(out) or "", read_file(err) or ""
  os.remove(out)
  os.remove(err)
  return rc, stdout, stderr
end

local function port_of(url) return tonumber(url:match(":(%d+)/v2$")) end

describe("telnyx-sim-fake (the command, run from /tmp)", function()
  it("prints its URL first, serves a purchase and a listing through the client, and ends on SIGTERM", function()
    local proc = spawn()
    local url = first_line(proc)
    finally(function()
      run("kill -9 " .. proc.pid .. " 2>/dev/null")
      os.remove(proc.out)
      os.remove(proc.err)
    end)
    assert.matches("^http://127%.0%.0%.1:%d+/v2$", url, read_file(proc.err))
    local client = assert(sim.new{ base_url = url, api_key = "test" })
    local bought = assert(client:purchase_esims{ amount = 2 })
    assert.equal(2, #bought.data)
    assert.equal("esim", bought.data[1].type)
    local listed = assert(client:list_sim_cards{})
    assert.same({ bought.data[1].id, bought.data[2].id }, { listed.data[1].id, listed.data[2].id })
    assert.equal(2, listed.meta.total_results)
    assert.equal(1, listed.meta.page_number)
    run("kill -TERM " .. proc.pid)
    assert.truthy(gone(proc.pid), "still running after SIGTERM")
  end)

  it("listens on the --port it is given, writes --port-file, and ends with a shutdown through the control API", function()
    local port, port_file = helpers.free_port(), helpers.tmpname()
    local proc = spawn("--port " .. port .. " --port-file " .. shell_quote(port_file))
    finally(function()
      run("kill -9 " .. proc.pid .. " 2>/dev/null")
      for _, f in ipairs{ proc.out, proc.err, port_file } do os.remove(f) end
    end)
    assert.equal("http://127.0.0.1:" .. port .. "/v2", first_line(proc))
    assert.equal(port .. "\n", read_file(port_file))
    local res = assert(helpers.http{ port = port, method = "POST", path = "/__fake/shutdown" })
    assert.equal(200, res.status)
    assert.same({ shutdown = true }, helpers.decode(res.body))
    assert.truthy(gone(proc.pid))
  end)

  it("warns on stderr when told to listen beyond loopback", function()
    local proc = spawn("--host 0.0.0.0")
    finally(function()
      run("kill -9 " .. proc.pid .. " 2>/dev/null")
      os.remove(proc.out)
      os.remove(proc.err)
    end)
    local url = first_line(proc)
    assert.matches("^http://127%.0%.0%.1:%d+/v2$", url)
    assert.matches("warning: listening on 0.0.0.0, not loopback", read_file(proc.err), 1, true)
    assert(helpers.http{ port = port_of(url), method = "POST", path = "/__fake/shutdown" })
    assert.truthy(gone(proc.pid))
  end)

  it("documents every option in --help", function()
    local rc, out, err = command("--help")
    assert.equal(0, rc, err)
    assert.matches("^Usage: telnyx%-sim%-fake %[options%]", out)
    for _, option in ipairs{ "--host ADDR", "--port N", "--port-file FILE", "--parent-pid PID", "--idle-timeout S",
        "--help" } do
      assert.truthy(out:find("\n  " .. option, 1, true), option .. " is not in:\n" .. out)
    end
    assert.truthy(out:find("docs/fake.md", 1, true))
  end)

  it("refuses an unknown option or a bad value with status 2 and says which", function()
    local rc, out, err = command("--prot 80")
    assert.equal(2, rc)
    assert.equal("", out)
    assert.equal("telnyx-sim-fake: unknown option --prot (see --help)\n", err)
    rc, out, err = command("--port=70000")
    assert.equal(2, rc)
    assert.equal("", out)
    assert.equal("telnyx-sim-fake: --port must be a port number from 0 to 65535, not 70000 (see --help)\n", err)
  end)

  it("says it cannot listen on a port in use, with status 1", function()
    local busy = assert(socket.bind("127.0.0.1", 0))
    local _, port = busy:getsockname()
    local rc, out, err = command("--port " .. port)
    busy:close()
    assert.equal(1, rc)
    assert.equal("", out)
    assert.matches("^telnyx%-sim%-fake: cannot listen on 127%.0%.0%.1:" .. port .. ": ", err)
  end)
end)

describe("telnyx.sim.fake (the Lua API)", function()
  local fake, client

  setup(function()
    fake = assert(fake_telnyx.start())
    client = assert(sim.new{ base_url = fake.url, api_key = "test" })
  end)

  teardown(function()
    if fake then fake:stop() end
  end)

  before_each(function()
    assert.is_true(fake:reset())
  end)

  it("starts a child process on loopback and says where", function()
    assert.matches("^http://127%.0%.0%.1:%d+/v2$", fake.url)
    assert.equal(fake.url, fake.root_url .. "/v2")
    assert.equal(port_of(fake.url), fake.port)
    assert.is_true(helpers.pid_alive(fake.pid))
  end)

  it("queues a 500 that the client reports, and logs the exact request", function()
    assert.equal(1, fake:queue{ method = "POST", path = PURCHASE, status = 500, json = { errors = { {
      code = "10000", title = "Internal error", detail = "Try again later" } } } })
    local res, err = client:purchase_esims{ amount = 1, tags = { "a" } }
    assert.is_nil(res)
    assert.equal(500, err.status)
    assert.equal("Try again later", err.errors[1].detail)
    local seen = assert(fake:requests())
    assert.equal(1, #seen)
    assert.equal("POST", seen[1].method)
    assert.equal(PURCHASE, seen[1].path)
    assert.equal("Bearer test", seen[1].headers.authorization)
    assert.same({ amount = 1, tags = { "a" } }, helpers.decode(seen[1].body))
    -- used up: the next purchase reaches the emulated API
    assert.equal(1, #assert(client:purchase_esims{ amount = 1 }).data)
    assert.same({}, assert(fake:pending()))
  end)

  it("matches entries by method and path, and repeats them", function()
    assert.equal(2, fake:queue{
      { method = "GET", path = "/v2/sim_card_groups", status = 503, ["repeat"] = 2 },
      { path = "/v2/sim_cards", status = 200, json = { data = fake_telnyx.empty_array, meta = {
        page_number = 1, page_size = 20, total_pages = 0, total_results = 0 } } },
    })
    local pending = assert(fake:pending())
    assert.equal(2, pending[1].remaining)
    local _, err = client:list_sim_card_groups({}, { max_retries = 0 })
    assert.equal(503, err.status)
    _, err = client:list_sim_card_groups({}, { max_retries = 0 })
    assert.equal(503, err.status)
    assert.equal(1, #assert(client:list_sim_card_groups{}).data) -- the default group, from the emulated API
    assert.same({}, assert(client:list_sim_cards{}).data)
  end)

  it("refuses a queue entry it cannot play, naming the field, and queues nothing", function()
    local n, err = fake:queue{ { status = 200 }, { stauts = 500 } }
    assert.is_nil(n)
    assert.matches("queue entry 2: unknown field stauts", err, 1, true)
    n, err = fake:queue{ mode = "explode" }
    assert.is_nil(n)
    assert.matches("queue entry 1: mode must be one of close, close_mid_body, huge, raw, reset, stall, stall_accept, trickle", err, 1, true)
    n, err = fake:queue{}
    assert.is_nil(n)
    assert.matches("queue: {} is neither an entry nor a list", err, 1, true)
    assert.equal(0, fake:queue(fake_telnyx.empty_array))
    n, err = fake:queue("500")
    assert.is_nil(n)
    assert.equal("telnyx.sim.fake: queue takes an entry table or a list of them, not a string", err)
    assert.same({}, assert(fake:pending()))
  end)

  it("plays a connection fault: the client reports the lost connection", function()
    assert(fake:queue{ path = "/v2/sim_cards", mode = "reset" })
    -- a fresh client: libcurl quietly retries on a kept-alive connection that was reset
    local fresh = assert(sim.new{ base_url = fake.url, api_key = "test" })
    local res, err = fresh:list_sim_cards({}, { max_retries = 0 })
    assert.is_nil(res)
    assert.equal("connection", err.kind)
  end)

  it("changes and restores its settings", function()
    assert.same({ action_delay = 0.2, delay = 0, implicit_cards = true }, assert(fake:config()))
    assert.same({ action_delay = 0, delay = 0, implicit_cards = false }, assert(fake:config{
      action_delay = 0, implicit_cards = false }))
    local _, err = fake:config{ action_dealy = 1 }
    assert.equal("telnyx.sim.fake: POST /__fake/config: unknown setting action_dealy", err)
    assert.is_true(fake:reset())
    assert.equal(0.2, assert(fake:config()).action_delay)
  end)

  it("seeds records the client then finds, and shows its whole state", function()
    local seeded = assert(fake:seed{
      sim_card_groups = { { name = "Meters" } },
      sim_cards = { { type = "physical", status = "disabled", tags = { "meter" } } },
      used_registration_codes = { "1234567890" },
    })
    local card = assert(client:get_sim_card(seeded.sim_cards[1].id)).data
    assert.equal("physical", card.type)
    assert.equal("disabled", card.status.value)
    assert.same({ "meter" }, card.tags)
    local state = assert(fake:state())
    assert.equal(1, #state.sim_cards)
    assert.equal(2, #state.sim_card_groups) -- the default group and the seeded one
    assert.equal("Meters", state.sim_card_groups[2].name)
    assert.same({ "1234567890" }, state.used_registration_codes)
    local reg = assert(client:register_sim_cards{ registration_codes = { "1234567890" } })
    assert.equal("10009", reg.errors[1].code) -- a code registers once
  end)

  it("refuses unknown start options and reports a fake that could not start", function()
    local f, err = fake_telnyx.start{ prot = 1 }
    assert.is_nil(f)
    assert.equal("telnyx.sim.fake: start: unknown option prot (known: host, log, lua, port)", err)
    f, err = fake_telnyx.start{ lua = "/nonexistent/lua" }
    assert.is_nil(f)
    assert.matches("^telnyx.sim.fake: the fake did not start", err)
    assert.matches("/nonexistent/lua", err, 1, true)
  end)

  it("stops: the process ends, later calls say it is stopped, stop again is fine", function()
    local f = assert(fake_telnyx.start())
    assert.is_true(f:stop())
    assert.truthy(gone(f.pid))
    assert.is_nil(read_file(f.log_file)) -- its own log file is removed
    local res, err = f:requests()
    assert.is_nil(res)
    assert.equal("telnyx.sim.fake: GET /__fake/requests: the fake at " .. f.url .. " is stopped", err)
    assert.is_true(f:stop())
  end)

  it("keeps a log file it was given", function()
    local log = helpers.tmpname()
    local f = assert(fake_telnyx.start{ log = log })
    finally(function() os.remove(log) end)
    assert.equal(log, f.log_file)
    assert.is_true(f:stop())
    local text = read_file(log) or ""
    assert.matches("telnyx%-sim%-fake: listening on 127%.0%.0%.1:" .. f.port, text)
    assert.matches("telnyx%-sim%-fake: stopped", text)
  end)

  it("ends with the process that started it", function()
    local code = "local f = assert(require('telnyx.sim.fake').start()) print(f.pid)"
    local p = assert(io.popen(("LUA_PATH=%s LUA_CPATH=%s %s -e %s"):format(shell_quote(package.path),
      shell_quote(package.cpath), lua_bin, shell_quote(code))))
    local pid = p:read("*l")
    p:close()
    assert.matches("^%d+$", pid)
    assert.truthy(gone(pid), "the fake outlived its parent")
  end)
end)

describe("the fake, given what the API would refuse", function()
  local fake

  setup(function() fake = assert(fake_telnyx.start()) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function() assert(fake:reset()) end)

  local function call(method, path, body, headers)
    local hdrs = { authorization = "Bearer test", ["content-type"] = "application/json" }
    for k, v in pairs(headers or {}) do hdrs[k] = v end
    local res = assert(helpers.http{ port = fake.port, method = method, path = path, body = body, headers = hdrs })
    return res.status, res.body ~= "" and helpers.decode(res.body) or nil, res
  end

  it("answers an unknown route with a 404 error object", function()
    local status, doc = call("GET", "/v2/sim_cards_everywhere")
    assert.equal(404, status)
    assert.same({ errors = { { code = "10005", title = "Resource not found",
      detail = "The requested resource or URL could not be found." } } }, doc)
  end)

  it("answers an unknown control route with the known ones", function()
    local status, doc = call("GET", "/__fake/everything")
    assert.equal(404, status)
    assert.matches("unknown control endpoint GET /__fake/everything %(known: GET /__fake/config, ", doc.error)
  end)

  it("answers malformed JSON with a 400 pointing at the body, and logs the request", function()
    local status, doc = call("POST", PURCHASE, '{"amount": 2,')
    assert.equal(400, status)
    assert.same({ errors = { { code = "10015", title = "Bad Request", detail = "The request body is not valid JSON.",
      source = { pointer = "/" } } } }, doc)
    assert.equal('{"amount": 2,', assert(fake:requests())[1].body)
    assert.equal(0, #assert(fake:state()).sim_cards)
  end)

  it("answers a page number past every page (math.maxinteger too) with no data", function()
    local client = assert(sim.new{ base_url = fake.url, api_key = "test" })
    assert(client:purchase_esims{ amount = 3 })
    local huge = math.maxinteger or (2 ^ 53 - 1) -- the largest the client takes on 5.1
    local res = assert(client:list_sim_cards{ page = { number = huge } })
    assert.same({}, res.data)
    assert.equal(3, res.meta.total_results)
    assert.equal(1, res.meta.total_pages)
    local status, doc = call("GET", "/v2/sim_cards?page[number]=" .. string.rep("9", 400))
    assert.equal(422, status)
    assert.equal("page[number]", doc.errors[1].source.parameter)
  end)

  it("takes a number too large for any integer (1e999 decodes as inf) without a Lua error", function()
    local status, doc = call("POST", "/v2/actions/register/sim_cards", '{"registration_codes": [1e999]}')
    assert.equal(202, status)
    assert.equal(1, #doc.data)
    assert.same({ "inf" }, assert(fake:state()).used_registration_codes)
  end)

  it("refuses a body larger than it takes with a 413, before reading it", function()
    local status, doc, res = call("POST", PURCHASE, nil, { ["content-length"] = "1099511627776" })
    assert.equal(413, status)
    assert.equal("10015", doc.errors[1].code)
    assert.matches("body too large", doc.errors[1].detail, 1, true)
    assert.equal("close", res.headers.connection)
  end)

  it("serves others while a client sends its request slowly, or gives up halfway", function()
    local slow = socket.tcp()
    slow:settimeout(5)
    assert(slow:connect("127.0.0.1", fake.port))
    assert(slow:send("GET /v2/sim_card_groups HTTP/1.1\r\nAuthorization: Bearer t"))
    local quitter = socket.tcp()
    quitter:settimeout(5)
    assert(quitter:connect("127.0.0.1", fake.port))
    assert(quitter:send("POST " .. PURCHASE .. " HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 100\r\n\r\n{\"am"))
    quitter:close()
    assert.equal(200, (call("GET", "/v2/sim_card_groups"))) -- meanwhile
    assert(slow:send("est\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local res = assert(helpers.read_response(slow))
    slow:close()
    assert.equal(200, res.status)
    assert.equal(1, helpers.decode(res.body).meta.total_results)
    assert.equal(0, #assert(fake:state()).sim_cards) -- the half purchase bought nothing
  end)

  it("answers garbage with an error object or a close, and goes on serving", function()
    math.randomseed(19)
    for i = 1, 40 do
      local bytes = {}
      for j = 1, math.random(1, 300) do bytes[j] = string.char(math.random(0, 255)) end
      if i % 2 == 0 then bytes[1] = "GET /v2/sim_cards HTTP/1.1\r\n" end -- a good start, then garbage
      local sock = socket.tcp()
      sock:settimeout(5)
      assert(sock:connect("127.0.0.1", fake.port))
      sock:send(table.concat(bytes) .. "\r\n\r\n")
      local res = helpers.read_response(sock)
      sock:close()
      if res then -- 400 mostly; a garbled header that still parses reaches the API's 401
        assert.is_true(res.status == 400 or res.status == 401, res.status)
        assert.is_string(helpers.decode(res.body).errors[1].code)
      end
    end
    assert.equal(200, (call("GET", "/v2/sim_card_groups")))
    assert.is_nil((read_file(fake.log_file) or ""):find("connection handler error", 1, true), read_file(fake.log_file))
  end)

  it("answers a Lua error in its handler with a 500 error object, the Lua text only in its log", function()
    -- seed takes any field as given: an iccid that is a number breaks the iccid filter
    assert(fake:seed{ sim_cards = { { iccid = 8931 } } })
    local status, doc = call("GET", "/v2/sim_cards?filter[iccid]=89")
    assert.equal(500, status)
    assert.same({ errors = { { code = "10000", title = "Internal error",
      detail = "The fake could not answer this request (a bug in the fake: its log has the details)." } } }, doc)
    local log = eventually(5, function()
      return (read_file(fake.log_file) or ""):match("handler error: GET /v2/sim_cards [^\n]*")
    end)
    assert.truthy(log, read_file(fake.log_file))
    -- and it goes on serving
    assert.equal(200, (call("GET", "/v2/sim_card_groups")))
  end)
end)
