-- HTTP/2, which the real API speaks: the money rule over h2 streams, against
-- spec/support/h2stub.py (Debian's python3-h2) over TLS with ALPN h2.
--
-- A purchase is never sent twice once it may have reached the server (a stream
-- reset, a connection drop); a stream the server says it did not process
-- (RST_STREAM REFUSED_STREAM, a GOAWAY whose last-stream-id is below it) is
-- "not sent", and retried even for a purchase. Every case reads the stub's log:
-- how many times the server saw each request, on which connection and stream.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local socket = require "socket"

local KEY = "KEYhttp2abcdef0123456789SECRET"
local MAY_HAVE = "may have gone through: check the SIM card list before trying again"
local PURCHASE, REGISTER = "/v2/actions/purchase/esims", "/v2/actions/register/sim_cards"
local PYTHON = "/usr/bin/python3" -- Debian's, where python3-h2 lives (not a pyenv one)
local STUB = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec") .. "/support/h2stub.py"

local run, read_file, shell_quote = helpers.run, helpers.read_file, helpers.shell_quote

local why_not
if not run(PYTHON .. " -c 'import h2' >/dev/null 2>&1") then
  why_not = "python3-h2 is not installed (apt-get install python3-h2)"
elseif not run("command -v openssl >/dev/null 2>&1") then
  why_not = "openssl is not installed"
end

if why_not then
  describe("HTTP/2", function() pending(why_not) end)
  return
end

describe("HTTP/2", function()
  local dir, stub, sleeps

  setup(function()
    dir = helpers.tmpname()
    assert(run("mkdir -p " .. shell_quote(dir)))
    assert(run(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
      .. "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout %s/key.pem -out %s/cert.pem "
      .. ">/dev/null 2>&1"):format(shell_quote(dir), shell_quote(dir))), "openssl could not make a certificate")
  end)

  teardown(function()
    if dir then run("rm -rf " .. shell_quote(dir)) end
  end)

  -- A stub process of our own, with its script of per-request steps.
  local function start(steps)
    local n = #(read_file(dir .. "/count") or "") + 1
    local f = assert(io.open(dir .. "/count", "a"))
    f:write("x")
    f:close()
    local base = ("%s/%d"):format(dir, n)
    local script = assert(io.open(base .. ".script", "w"))
    script:write(helpers.encode(steps or helpers.empty_array))
    script:close()
    local args = { PYTHON, STUB, "--port-file", base .. ".port", "--log", base .. ".log",
      "--cert", dir .. "/cert.pem", "--key", dir .. "/key.pem", "--script", base .. ".script", "--idle-timeout", "60" }
    if helpers.my_pid() then
      args[#args + 1] = "--parent-pid"
      args[#args + 1] = helpers.my_pid()
    end
    for i, a in ipairs(args) do args[i] = shell_quote(a) end
    -- env -u LD_PRELOAD: `make asan` preloads its runtime into every child; python needs none of it
    assert(run("env -u LD_PRELOAD " .. table.concat(args, " ") .. " </dev/null >" .. shell_quote(base .. ".err")
      .. " 2>&1 & echo $! >" .. shell_quote(base .. ".pid")))
    local s = { pid = (read_file(base .. ".pid") or ""):match("%d+"), log_file = base .. ".log" }
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline do
      s.port = tonumber((read_file(base .. ".port") or ""):match("^(%d+)\n"))
      if s.port or not helpers.pid_alive(s.pid) then break end
      socket.sleep(0.02)
    end
    assert(s.port, "h2stub did not start: " .. (read_file(base .. ".err") or ""))
    s.base_url = ("https://127.0.0.1:%d/v2"):format(s.port)
    stub = s
    return s
  end

  -- The stub's log: every connection and every request it received, in order.
  local function log()
    local entries = {}
    for line in (read_file(stub.log_file) or ""):gmatch("[^\n]+") do entries[#entries + 1] = helpers.decode(line) end
    return entries
  end

  local function requests(path)
    local out = {}
    for _, e in ipairs(log()) do
      if e.event == "request" and (path == nil or e.path == path) then out[#out + 1] = e end
    end
    return out
  end

  local function connections()
    local out = {}
    for _, e in ipairs(log()) do
      if e.event == "connection" then out[#out + 1] = e end
    end
    return out
  end

  -- Every connection negotiated h2, and every request came as an h2 stream.
  local function assert_h2()
    local conns = connections()
    assert.is_true(#conns > 0, "no connection reached the stub")
    for _, c in ipairs(conns) do assert.equal("h2", c.alpn, "ALPN of connection " .. c.conn) end
    for _, r in ipairs(requests()) do assert.equal("h2", r.proto) end
  end

  -- `path` requests the server saw, as {conn, stream, step} triples.
  local function seen(path)
    local out = {}
    for _, r in ipairs(requests(path)) do out[#out + 1] = { r.conn, r.stream, r["do"] } end
    return out
  end

  local function new_client(opts)
    local o = { api_key = KEY, base_url = stub.base_url, ca_file = dir .. "/cert.pem", timeout = 5,
      sleep = function(s) sleeps[#sleeps + 1] = s end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(sim.new(o))
  end

  before_each(function() sleeps = {} end)

  after_each(function()
    if stub and helpers.pid_alive(stub.pid) then run("kill " .. stub.pid .. " 2>/dev/null") end
    stub = nil
  end)

  local function assert_may_have_gone_through(err)
    assert.equal("connection", err.kind)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.matches(MAY_HAVE, err.message, 1, true)
    assert.not_matches(KEY, tostring(err), 1, true)
  end

  it("speaks HTTP/2, and makes many calls over one connection", function()
    start()
    local c = new_client()
    for _ = 1, 10 do
      assert(c:purchase_esims{ amount = 1 })
      assert(c:register_sim_cards{ registration_codes = { "0000000001" } })
    end
    assert_h2()
    assert.equal(1, #connections())
    local reqs = requests()
    assert.equal(20, #reqs)
    for i, r in ipairs(reqs) do
      assert.equal(1, r.conn)
      assert.equal(2 * i - 1, r.stream) -- one new stream per call, in order
      assert.equal(i % 2 == 1 and PURCHASE or REGISTER, r.path)
    end
    assert.equal('{"amount":1}', reqs[1].body)
    c:close()
  end)

  -- The faults that leave it open whether the server acted on the request.
  local ambiguous = {
    { "RST_STREAM INTERNAL_ERROR", { ["do"] = "rst", code = "INTERNAL_ERROR" } },
    { "RST_STREAM CANCEL", { ["do"] = "rst", code = "CANCEL" } },
    { "a connection drop", { ["do"] = "drop" } },
    { "a TCP reset", { ["do"] = "drop", reset = true } },
    { "a GOAWAY whose last-stream-id is the request's", { ["do"] = "goaway", last_stream_id = "at" } },
  }
  for _, case in ipairs(ambiguous) do
    for _, kept in ipairs{ false, true } do
      local where = kept and "on a kept-alive connection" or "on a new connection"
      it(("after %s %s: a purchase is not re-sent, a register is retried"):format(case[1], where), function()
        local steps = {}
        if kept then steps[#steps + 1] = { ["do"] = "answer" } end
        steps[#steps + 1] = case[2]
        start(steps)
        local c = new_client()
        if kept then assert(c:purchase_esims{ amount = 1 }) end
        local res, err = c:purchase_esims{ amount = 2 }
        assert.is_nil(res)
        assert_may_have_gone_through(err)
        local bought = seen(PURCHASE)
        assert.equal(kept and 2 or 1, #bought, "the server saw the purchase once")
        assert.equal(case[2]["do"], bought[#bought][3])
        assert.same({}, sleeps)
        assert_h2()

        -- the same fault on a register: retried, on whatever connection it takes
        start(kept and { { ["do"] = "answer" }, case[2] } or { case[2] })
        c = new_client()
        if kept then assert(c:register_sim_cards{ registration_codes = { "1" } }) end
        assert(c:register_sim_cards{ registration_codes = { "1" } })
        local reg = seen(REGISTER)
        assert.equal(kept and 3 or 2, #reg)
        assert.equal(case[2]["do"], reg[#reg - 1][3])
        assert.equal("answer", reg[#reg][3])
        assert_h2()
      end)
    end
  end

  -- The protocol's own word that the request was not processed.
  local refused = {
    { "RST_STREAM REFUSED_STREAM", { ["do"] = "rst", code = "REFUSED_STREAM" }, false },
    { "a GOAWAY whose last-stream-id is below the request's", { ["do"] = "goaway", last_stream_id = "below" }, false },
    { "a GOAWAY whose last-stream-id is below the request's", { ["do"] = "goaway", last_stream_id = "below" }, true },
  }
  for _, case in ipairs(refused) do
    local kept = case[3]
    local where = kept and "on a kept-alive connection" or "on a new connection"
    it(("after %s %s: not sent, so a purchase is retried once and goes through"):format(case[1], where), function()
      local steps = {}
      if kept then steps[#steps + 1] = { ["do"] = "answer" } end
      steps[#steps + 1] = case[2]
      start(steps)
      local c = new_client()
      if kept then assert(c:purchase_esims{ amount = 1 }) end
      local res, err = c:purchase_esims{ amount = 2 }
      assert.is_nil(err)
      assert.same({}, res.data)
      assert.equal(1, #sleeps, "one retry, after the back-off")
      local bought = seen(PURCHASE)
      assert.equal(kept and 3 or 2, #bought)
      assert.equal(case[2]["do"], bought[#bought - 1][3], "the refused copy")
      assert.equal("answer", bought[#bought][3], "the one the server processed")
      assert.not_equal(bought[#bought - 1][1], bought[#bought][1], "the retry went on a new connection")
      assert_h2()
    end)

    it(("after %s %s with max_retries = 0: reports not sent, retryable"):format(case[1], where), function()
      local steps = {}
      if kept then steps[#steps + 1] = { ["do"] = "answer" } end
      steps[#steps + 1] = case[2]
      start(steps)
      local c = new_client{ max_retries = 0 }
      if kept then assert(c:purchase_esims{ amount = 1 }) end
      local res, err = c:purchase_esims{ amount = 2 }
      assert.is_nil(res)
      assert.equal("connection", err.kind)
      assert.is_true(err.retryable)
      assert.equal(1, err.attempts)
      assert.matches("purchase_esims: the server refused the request before processing it", err.message, 1, true)
      assert.not_matches("may have gone through", err.message, 1, true)
      assert.equal(kept and 2 or 1, #seen(PURCHASE))
      assert_h2()
      -- and the client goes on: the next purchase is sent once and answered
      assert(c:purchase_esims{ amount = 1 })
      assert.equal(kept and 3 or 2, #seen(PURCHASE))
    end)
  end

  -- libcurl (7.88 at least) handles a REFUSED_STREAM on a reused connection
  -- as a connection that died, and says nothing that tells the two apart: so
  -- the purchase keeps the money rule (a false alarm, never a second copy).
  it("after RST_STREAM REFUSED_STREAM on a kept-alive connection: never processed twice", function()
    start{ { ["do"] = "answer" }, { ["do"] = "rst", code = "REFUSED_STREAM" } }
    local c = new_client()
    assert(c:purchase_esims{ amount = 1 })
    local res, err = c:purchase_esims{ amount = 2 }
    local bought = seen(PURCHASE)
    local answered = 0
    for _, b in ipairs(bought) do answered = answered + (b[3] == "answer" and 1 or 0) end
    if res then -- a libcurl that says why it retries: the refused copy, then one processed
      assert.equal(3, #bought)
      assert.equal(2, answered)
    else
      assert_may_have_gone_through(err)
      assert.equal(2, #bought)
      assert.equal(1, answered)
    end
    if requests(PURCHASE)[1].user_agent:find("libcurl/7.88", 1, true) then
      assert.is_nil(res, "libcurl 7.88: no sign of the refusal on a reused connection")
    end
    assert_h2()
  end)

  -- libcurl 7.88 keeps "this request's stream was refused" on the handle when it
  -- retried for another reason, and would later say "REFUSED_STREAM, retrying"
  -- about an unrelated failure: the module must not take that for evidence.
  it("an old refusal does not pass for a new one: a dropped purchase after a refused register", function()
    start{
      { ["do"] = "answer" },                                   -- register, connection 1
      { ["do"] = "rst", code = "REFUSED_STREAM" },             -- register again: refused, libcurl re-sends it
      { ["do"] = "answer", close_after = 0.05, goaway = false }, -- ... on connection 2, which then closes
      { ["do"] = "drop", reset = true },                       -- the purchase, on connection 3: a TCP reset
    }
    local c = new_client()
    assert(c:register_sim_cards{ registration_codes = { "1" } })
    assert(c:register_sim_cards{ registration_codes = { "1" } })
    assert.equal(3, #seen(REGISTER))
    local deadline = socket.gettime() + 5
    repeat
      socket.sleep(0.05)
      local closed = false
      for _, e in ipairs(log()) do closed = closed or e.event == "closed_idle" end
    until closed or socket.gettime() > deadline
    socket.sleep(0.1)
    local _, err = c:purchase_esims{ amount = 1 }
    assert_may_have_gone_through(err)
    assert.same({ { 3, 1, "drop" } }, seen(PURCHASE))
    assert_h2()
  end)

  it("a REFUSED_STREAM retry that gets refused again stops at max_retries", function()
    start{ { ["do"] = "rst", code = "REFUSED_STREAM", ["repeat"] = 5 } }
    local c = new_client{ max_retries = 2 }
    local _, err = c:purchase_esims{ amount = 1 }
    assert.equal(3, err.attempts)
    assert.is_true(err.retryable)
    assert.equal(2, #sleeps)
    assert.equal(3, #seen(PURCHASE))
  end)

  for _, goaway in ipairs{ true, false } do
    local how = goaway and "GOAWAY then close" or "a close without GOAWAY"
    it("a kept-alive connection that dies between calls (" .. how .. "): the next purchase is sent once", function()
      start{ { ["do"] = "answer", close_after = 0.1, goaway = goaway } }
      local c = new_client()
      assert(c:purchase_esims{ amount = 1 })
      local deadline = socket.gettime() + 5
      repeat
        socket.sleep(0.05)
        local closed = false
        for _, e in ipairs(log()) do closed = closed or e.event == "closed_idle" end
      until closed or socket.gettime() > deadline
      socket.sleep(0.1)
      assert(c:purchase_esims{ amount = 3 })
      assert.same({ { 1, 1, "answer" }, { 2, 1, "answer" } }, seen(PURCHASE))
      assert.same({}, sleeps)
      assert_h2()
    end)
  end
end)
