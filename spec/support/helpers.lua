-- Test helpers: start/stop/script the stub Telnyx server (spec/support/stub.lua)
-- and build realistic API payloads.
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

local helpers = {}

helpers.null = cjson.null

-- Which lua-cjson the module decodes with (src/json.h): OpenResty's fork marks
-- the arrays it decodes, so [] re-encodes as [] and integers stay exact on 5.3+;
-- Debian's 2.1.0 does neither. `make test CJSON=fork` loads the fork.
helpers.cjson_fork = require("cjson").decode_array_with_array_mt ~= nil

-- Sentinel for a JSON empty array in tables passed to helpers.encode /
-- stub:queue (a plain {} encodes as an object). Do not modify it.
helpers.empty_array = setmetatable({}, {
  __newindex = function() error("helpers.empty_array is read-only", 2) end,
  __tostring = function() return "helpers.empty_array" end,
})

-- Sentinel for helpers.sim_card overrides: remove the field entirely.
helpers.absent = setmetatable({}, { __tostring = function() return "helpers.absent" end })

local EMPTY_PLACEHOLDER = "\1__helpers_empty_array__\1"
local EMPTY_PLACEHOLDER_JSON = '"\\u0001__helpers_empty_array__\\u0001"'
local EMPTY_PLACEHOLDER_PATTERN = EMPTY_PLACEHOLDER_JSON:gsub("%p", "%%%0")

local function replace_empty_arrays(value, seen)
  if value == helpers.empty_array then return EMPTY_PLACEHOLDER end
  if type(value) ~= "table" then return value end
  seen = seen or {}
  if seen[value] then error("helpers.encode: cyclic table", 3) end
  seen[value] = true
  local copy = {}
  for k, v in pairs(value) do copy[k] = replace_empty_arrays(v, seen) end
  seen[value] = nil
  return copy
end

--- Encode a Lua value as JSON (helpers.null -> null, helpers.empty_array -> []).
function helpers.encode(value)
  local s = cjson.encode(replace_empty_arrays(value))
  s = s:gsub(EMPTY_PLACEHOLDER_PATTERN, "[]")
  return (s:gsub("\\/", "/"))
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
local shell_quote = helpers.shell_quote

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
local pid_alive = helpers.pid_alive

--- This Lua process's pid (from procfs), or nil.
function helpers.my_pid()
  local stat = read_file("/proc/self/stat")
  return stat and stat:match("^(%d+)")
end
local my_pid = helpers.my_pid

--- A fresh temporary path that does not exist yet.
function helpers.tmpname()
  local name = os.tmpname()
  os.remove(name) -- 5.2+ creates the file; we only want the name
  return name
end
local tmpname = helpers.tmpname

-- Directory of this file, to find stub.lua regardless of the cwd.
local function support_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    local dir = src:sub(2):match("^(.*)[/\\][^/\\]*$")
    if dir then return dir end
  end
  return "spec/support"
end

helpers.stub_script = support_dir() .. "/stub.lua"

---------------------------------------------------------------------------
-- Stub object
---------------------------------------------------------------------------

local Stub = {}
Stub.__index = Stub

local function control(self, method, path, body)
  if self.stopped then error("stub already stopped", 3) end
  local res, err = helpers.http({
    port = self.port, method = method, path = path, body = body,
    headers = body and { ["content-type"] = "application/json" } or nil,
    timeout = 5,
  })
  if not res then
    error("stub control " .. method .. " " .. path .. " failed: " .. tostring(err)
      .. " (stub log: " .. tostring(self.log_file) .. ")", 3)
  end
  if res.status ~= 200 then
    error("stub control " .. method .. " " .. path .. " answered " .. res.status .. ": " .. res.body, 3)
  end
  return helpers.decode(res.body)
end

--- Queue one scripted response (a table with `status`, `json`, ...) or an
-- array of them. Returns the number queued.
function Stub:queue(entries)
  if entries[1] == nil then entries = { entries } end
  return control(self, "POST", "/__stub/queue", helpers.encode(entries)).queued
end

--- Scripted entries not yet consumed (each with a `remaining` count).
function Stub:pending()
  return control(self, "GET", "/__stub/queue")
end

--- All recorded (non-control) requests, oldest first.
function Stub:requests()
  return control(self, "GET", "/__stub/requests")
end

--- The most recent recorded request, or nil.
function Stub:last_request()
  local list = self:requests()
  return list[#list]
end

--- Clear the queue and the request log; the stub also starts its API state
-- afresh, restores its config defaults and zeroes its stats.
function Stub:reset()
  control(self, "POST", "/__stub/reset")
end

--- The stub's settings (action_delay, delay, implicit_cards). With a table,
-- changes those first: stub:config{ action_delay = 0.3 }. POST /__stub/reset
-- (stub:reset()) restores the defaults.
function Stub:config(settings)
  if settings == nil then return control(self, "GET", "/__stub/config") end
  return control(self, "POST", "/__stub/config", helpers.encode(settings))
end

--- { requests =, in_flight =, in_flight_peak = } of API requests since the last reset.
function Stub:stats()
  return control(self, "GET", "/__stub/stats")
end

--- Every record of the emulated API: { sim_cards =, sim_card_groups =,
-- sim_card_actions =, bulk_sim_card_actions =, sim_card_group_actions =,
-- sim_card_orders =, sim_card_data_usage_notifications =, public_ips =,
-- used_registration_codes = }.
function Stub:state()
  return control(self, "GET", "/__stub/state")
end

--- Add records: stub:seed{ sim_card_groups = { { name = "g" } },
-- sim_cards = { { type = "physical", status = "disabled", tags = { "a" } } },
-- used_registration_codes = { "0000000001" } }. Returns the new
-- { sim_card_groups =, sim_cards = }.
function Stub:seed(records)
  return control(self, "POST", "/__stub/seed", helpers.encode(records))
end

--- The route table: a list of { method =, path = } (paths with {id}).
function Stub:routes()
  return control(self, "GET", "/__stub/routes")
end

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

--- Shut the stub down and remove its temp files. Safe to call twice.
function Stub:stop()
  if self.stopped then return end
  self.stopped = true
  helpers.http({ port = self.port, method = "POST", path = "/__stub/shutdown", timeout = 2 })
  local deadline = socket.gettime() + 2
  while pid_alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  if pid_alive(self.pid) then
    run("kill " .. self.pid .. " 2>/dev/null")
    deadline = socket.gettime() + 1
    while pid_alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if pid_alive(self.pid) then run("kill -9 " .. self.pid .. " 2>/dev/null") end
  end
  for _, f in ipairs(self._files) do os.remove(f) end
end

--- Start a stub server process. Errors if it does not come up within 10 s.
-- opts (optional): { lua = interpreter (default $STUB_LUA or "lua5.4"),
--                    keep_log = true to keep the stderr log file after stop }
function helpers.start_stub(opts)
  opts = opts or {}
  local lua = opts.lua or os.getenv("STUB_LUA") or "lua5.4"
  local port_file, pid_file, log_file = tmpname(), tmpname(), tmpname()
  local args = { shell_quote(lua), shell_quote(helpers.stub_script),
    "--port-file", shell_quote(port_file) }
  local parent = my_pid()
  if parent then
    args[#args + 1] = "--parent-pid"
    args[#args + 1] = parent
  end
  local cmd = table.concat(args, " ") .. " </dev/null >" .. shell_quote(log_file)
    .. " 2>&1 & echo $! > " .. shell_quote(pid_file)
  if not run(cmd) then error("could not launch stub: " .. cmd, 2) end

  local pid = (read_file(pid_file) or ""):match("(%d+)")
  local port
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    port = tonumber((read_file(port_file) or ""):match("^(%d+)\n"))
    if port then break end
    if pid and not pid_alive(pid) then break end
    socket.sleep(0.02)
  end
  local self = setmetatable({
    pid = pid, port = port, log_file = log_file,
    _files = { port_file, port_file .. ".tmp", pid_file },
  }, Stub)
  if not opts.keep_log then self._files[#self._files + 1] = log_file end
  if not port then
    local log = read_file(log_file) or ""
    self.port = 0
    self.stopped = true
    if pid and pid_alive(pid) then run("kill -9 " .. pid .. " 2>/dev/null") end
    for _, f in ipairs(self._files) do os.remove(f) end
    os.remove(log_file)
    error("stub did not start within 10 s (" .. cmd .. "): " .. log, 2)
  end
  self.root_url = "http://127.0.0.1:" .. port
  self.base_url = self.root_url .. "/v2"
  return self
end

return helpers
