-- Test helpers: start/stop/script the fake Telnyx server (telnyx/sim/fake.lua,
-- the shipped telnyx.sim.fake, started from this repository) and build
-- realistic API payloads.
--
--   local helpers = require "spec.support.helpers"
--   local stub = helpers.start_stub()
--   stub:queue({ status = 422, json = { errors = { ... } } })
--   ... call the module against stub.base_url ...
--   local req = stub:last_request()
--   stub:stop()
--
-- Works under Lua 5.1 - 5.4 and LuaJIT (needs luasocket and lua-cjson).

local socket = require "socket"
local cjson = require("cjson").new()
local fixtures = require "spec.support.fixtures"
local fake = require "telnyx.sim.fake"

local helpers = {}

helpers.null = cjson.null

-- Which lua-cjson the module decodes with (src/json.h): OpenResty's fork marks
-- the arrays it decodes, so [] re-encodes as [] and integers stay exact on 5.3+;
-- Debian's 2.1.0 does neither. `make test CJSON=fork` loads the fork.
helpers.cjson_fork = require("cjson").decode_array_with_array_mt ~= nil

-- Sentinel for a JSON empty array in tables passed to helpers.encode /
-- stub:queue (a plain {} encodes as an object): the fake's own. Read-only.
helpers.empty_array = fake.empty_array

-- Sentinel for helpers.sim_card overrides: remove the field entirely.
helpers.absent = setmetatable({}, { __tostring = function() return "helpers.absent" end })

--- Encode a Lua value as JSON (helpers.null -> null, helpers.empty_array -> []): the fake's encoder.
function helpers.encode(value)
  return assert(fake.encode(value))
end

--- Decode a JSON string (null stays helpers.null). Errors on invalid JSON.
function helpers.decode(text)
  return cjson.decode(text)
end

--- Every string reachable from v, table keys included (to prove the API key
-- is in none of an err's strings).
function helpers.strings_of(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      helpers.strings_of(k, out, seen)
      helpers.strings_of(x, out, seen)
    end
  end
  return out
end

---------------------------------------------------------------------------
-- Payload builders
---------------------------------------------------------------------------

--- A random UUID v4 string.
helpers.uuid = fixtures.uuid4

helpers.default_sim_card_group_id = fixtures.DEFAULT_GROUP_ID

local card_counter = 0

--- A realistic SimpleSIMCard (as in a Telnyx API response) as a Lua table.
-- Defaults to an enabled eSIM; `overrides` fields replace the defaults
-- (shallow). Use helpers.null for JSON null, helpers.absent to drop a field.
-- For type = "physical", esim_installation_status defaults to null.
function helpers.sim_card(overrides)
  overrides = overrides or {}
  card_counter = card_counter + 1
  local card = fixtures.sim_card{
    n = card_counter % 10000, kind = overrides.type, null = helpers.null, empty_array = helpers.empty_array,
  }
  for k, v in pairs(overrides) do
    if v == helpers.absent then card[k] = nil else card[k] = v end
  end
  return card
end

--- A Telnyx error object: helpers.api_error("10015", "Invalid parameter", "amount is required", "/amount")
function helpers.api_error(code, title, detail, pointer, meta)
  local e = { code = code, title = title, detail = detail }
  if pointer then e.source = { pointer = pointer } end
  if meta then e.meta = meta end
  return e
end

---------------------------------------------------------------------------
-- Minimal blocking HTTP/1.1 client on luasocket (for control calls and for
-- specs that need to poke the stub directly).
---------------------------------------------------------------------------

--- Read one HTTP response from a connected luasocket tcp object.
-- Returns { status =, reason =, headers = {lowercased = value}, body = } or nil, err.
-- opts.head = true: the request was HEAD (no body).
function helpers.read_response(sock, opts)
  opts = opts or {}
  local line, err
  repeat
    line, err = sock:receive("*l")
    if not line then return nil, err end
    local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
    if not status then return nil, "bad status line: " .. line end
    local res = { status = status, reason = line:match("^HTTP/%d%.%d %d%d%d ?(.*)$"), headers = {} }
    while true do
      local h, herr = sock:receive("*l")
      if not h then return nil, herr end
      if h == "" then break end
      local name, value = h:match("^([^:]+):%s*(.-)%s*$")
      if name then
        name = name:lower()
        if res.headers[name] then
          res.headers[name] = res.headers[name] .. ", " .. value
        else
          res.headers[name] = value
        end
      end
    end
    if status >= 200 then
      local len = tonumber(res.headers["content-length"])
      if opts.head or status == 204 or status == 304 or len == 0 then
        res.body = "" -- (receive(0) on a connection the server closed says "closed")
      elseif len then
        local body, berr, partial = sock:receive(len)
        if not body then return nil, berr, partial end
        res.body = body
      else
        local body, berr, partial = sock:receive("*a")
        res.body = body or partial
        if not res.body then return nil, berr end
      end
      return res
    end
    -- 1xx interim response: read the next one
  until false
end

--- One HTTP request on a fresh connection.
-- opts: { host = "127.0.0.1", port = (required), method = "GET", path = "/",
--         headers = { name = value }, body = string, timeout = 5 }
-- Returns a response table (see read_response) or nil, err.
function helpers.http(opts)
  local sock = socket.tcp()
  sock:settimeout(opts.timeout or 5)
  local ok, err = sock:connect(opts.host or "127.0.0.1", opts.port)
  if not ok then sock:close(); return nil, err end
  local method = opts.method or "GET"
  local lines = { method .. " " .. (opts.path or "/") .. " HTTP/1.1" }
  local headers = { host = "127.0.0.1:" .. tostring(opts.port), connection = "close" }
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  if opts.body then headers["content-length"] = tostring(#opts.body) end
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
  ok, err = sock:send(req)
  if not ok then sock:close(); return nil, err end
  local res, rerr = helpers.read_response(sock, { head = (method == "HEAD") })
  sock:close()
  return res, rerr
end

---------------------------------------------------------------------------
-- Process helpers
---------------------------------------------------------------------------

--- A shell word for s.
function helpers.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs a shell command; true when it exited 0. (os.execute returns a number
-- in 5.1, (true|nil, "exit", code) later.)
function helpers.run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end
local run = helpers.run

--- The whole file, or nil.
function helpers.read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local read_file = helpers.read_file

-- A version-4 UUID, as the module makes an Idempotency-Key (a Lua pattern).
helpers.UUID4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

--- Fails unless key is nowhere in tostring(err) nor in any string of err (luassert: busted's assert).
function helpers.assert_no_key(key, err)
  local assert = require "luassert"
  assert.not_matches(key, tostring(err), 1, true)
  for _, s in ipairs(helpers.strings_of(err)) do assert.not_matches(key, s, 1, true) end
end

--- The requests stub logged for path, in order (# counts them).
function helpers.requests_to(stub, path)
  local out = {}
  for _, r in ipairs(stub:requests()) do
    if r.path == path then out[#out + 1] = r end
  end
  return out
end

--- A loopback port nothing listens on (just now).
function helpers.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

--- Whether process pid still runs (zombies count as gone).
function helpers.pid_alive(pid)
  if not pid then return false end
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= "Z" and state ~= "X"
  end
  if read_file("/proc/self/stat") then return false end -- procfs present: gone
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

--- This Lua process's pid (from procfs), or nil.
function helpers.my_pid()
  local stat = read_file("/proc/self/stat")
  return stat and stat:match("^(%d+)")
end

--- A fresh temporary path that does not exist yet.
function helpers.tmpname()
  local name = os.tmpname()
  os.remove(name) -- 5.2+ creates the file; we only want the name
  return name
end
local tmpname = helpers.tmpname

-- Directory of this file (spec/support), wherever busted runs from.
local function support_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    local dir = src:sub(2):match("^(.*)[/\\][^/\\]*$")
    if dir then return dir end
  end
  return "spec/support"
end

helpers.support_dir = support_dir()

---------------------------------------------------------------------------
-- Stub object: a telnyx.sim.fake started from this repository, its control
-- methods raising (a spec stops at the first control failure).
---------------------------------------------------------------------------

local Stub = {}
Stub.__index = Stub

-- value, or raise err (with where the fake's log is).
local function check(self, value, err)
  if value == nil and err ~= nil then error(tostring(err) .. " (fake log: " .. tostring(self.log_file) .. ")", 3) end
  return value
end

--- Queue one scripted response (a table with `status`, `json`, ...) or an
-- array of them. Returns the number queued.
function Stub:queue(entries) return check(self, self.fake:queue(entries)) end

--- Scripted entries not yet consumed (each with a `remaining` count).
function Stub:pending() return check(self, self.fake:pending()) end

--- All recorded (non-control) requests, oldest first.
function Stub:requests() return check(self, self.fake:requests()) end

--- The most recent recorded request, or nil.
function Stub:last_request()
  local list = self:requests()
  return list[#list]
end

--- Clear the queue and the request log; the fake also starts its API state
-- afresh, restores its config defaults and zeroes its stats.
function Stub:reset() check(self, self.fake:reset()) end

--- The fake's settings (action_delay, delay, implicit_cards). With a table,
-- changes those first: stub:config{ action_delay = 0.3 }. stub:reset()
-- restores the defaults.
function Stub:config(settings) return check(self, self.fake:config(settings)) end

--- { requests =, in_flight =, in_flight_peak = } of API requests since the last reset.
function Stub:stats() return check(self, self.fake:stats()) end

--- Every record of the emulated API: { sim_cards =, sim_card_groups =,
-- sim_card_actions =, bulk_sim_card_actions =, sim_card_group_actions =,
-- sim_card_orders =, sim_card_data_usage_notifications =, public_ips =,
-- used_registration_codes = }.
function Stub:state() return check(self, self.fake:state()) end

--- Add records: stub:seed{ sim_card_groups = { { name = "g" } },
-- sim_cards = { { type = "physical", status = "disabled", tags = { "a" } } },
-- used_registration_codes = { "0000000001" } }. Returns the new
-- { sim_card_groups =, sim_cards = }.
function Stub:seed(records) return check(self, self.fake:seed(records)) end

--- The route table: a list of { method =, path = } (paths with {id}).
function Stub:routes() return check(self, self.fake:routes()) end

--- One API request with a bearer key: stub:api("GET", "/sim_cards?page[size]=5").
-- path is below /v2; body: a table (sent as JSON) or a string; headers
-- override the defaults (authorization = false drops the key).
-- Returns status, the decoded JSON body (nil when empty), the response.
function Stub:api(method, path, body, headers)
  if self.stopped then error("stub already stopped", 2) end
  local hdrs = { authorization = "Bearer stub-spec-key" }
  if type(body) == "table" then
    body = helpers.encode(body)
    hdrs["content-type"] = "application/json"
  end
  for k, v in pairs(headers or {}) do hdrs[k:lower()] = v end
  if hdrs.authorization == false then hdrs.authorization = nil end
  local res, err = helpers.http({
    port = self.port, method = method, path = "/v2" .. path, body = body, headers = hdrs, timeout = 10,
  })
  if not res then error("stub api " .. method .. " " .. path .. " failed: " .. tostring(err), 2) end
  local doc = nil
  if res.body ~= "" then
    local ok, value = pcall(helpers.decode, res.body)
    if ok then doc = value end
  end
  return res.status, doc, res
end

--- "http://127.0.0.1:<port>" .. path
function Stub:url(path)
  return self.root_url .. (path or "")
end

--- Shut the fake down and remove its log (unless keep_log). Safe to call twice.
function Stub:stop()
  if self.stopped then return end
  self.stopped = true
  self.fake:stop()
end

--- Start a fake server process. Errors if it does not start.
-- opts (optional): { lua = interpreter (default $STUB_LUA or "lua5.4"),
--                    keep_log = true to keep the stderr log file after stop }
function helpers.start_stub(opts)
  opts = opts or {}
  local f, err = fake.start{
    lua = opts.lua or os.getenv("STUB_LUA") or "lua5.4",
    log = opts.keep_log and tmpname() or nil,
  }
  if not f then error(err, 2) end
  return setmetatable({
    fake = f, pid = f.pid, port = f.port, log_file = f.log_file, root_url = f.root_url, base_url = f.url,
  }, Stub)
end

--- A spec (or part of one) whose outside material is missing: one visible
-- pending line, `why` saying what is missing and how to get it. Under CI=true
-- (where everything is installed) it is a failure instead. Busted's functions
-- are not globals here, so the caller passes them:
--   if not doc then return helpers.skip_missing({ describe = describe, it = it, pending = pending },
--     "conformance", "the OpenAPI document is missing: set TELNYX_OPENAPI=...") end
function helpers.skip_missing(b, name, why)
  b.describe(name, function()
    if os.getenv("CI") == "true" then
      b.it("has what it needs", function() error(why .. " (CI=true: a skip is a failure)", 0) end)
    else
      b.pending("skipped: " .. why)
    end
  end)
end

return helpers
