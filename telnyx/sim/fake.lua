-- telnyx.sim.fake: a fake Telnyx SIM card API for tests (docs/fake.md).
-- Stateful (a card you buy is there when you list), scriptable (queued
-- answers and connection faults), on loopback, no money spent.
--
--   local fake = assert(require("telnyx.sim.fake").start())
--   local client = sim.new{ base_url = fake.url, api_key = "test" }
--   fake:queue{ path = "/v2/actions/purchase/esims", status = 500 }
--   ... client calls; fake:requests() is what the fake saw ...
--   fake:stop()
--
-- start() runs the server in a child process (this module, through main(),
-- in the same Lua interpreter) and talks to it over its control API
-- (/__fake/...). main() is the command telnyx-sim-fake (bin/).
-- Needs luasocket and lua-cjson; Lua 5.1 to 5.4 and LuaJIT.

local socket = require "socket"
local json = require "telnyx.sim.fake.json"

local M = { VERSION = "0.2.0" }

M.null = json.null

--- A JSON empty array in the tables given to queue, seed and config (a
-- plain {} is an object to lua-cjson). Read-only.
M.empty_array = setmetatable({}, {
  __newindex = function() error("telnyx.sim.fake.empty_array is read-only", 2) end,
  __tostring = function() return "telnyx.sim.fake.empty_array" end,
})

local PREFIX = "telnyx.sim.fake: "
local CONTROL_TIMEOUT = 10 -- seconds for one control request
local STOP_WAIT = 2        -- seconds stop() waits for the process to end before it kills it

---------------------------------------------------------------------------
-- The command: telnyx-sim-fake [options]
---------------------------------------------------------------------------

M.USAGE = [[
Usage: telnyx-sim-fake [options]

A fake Telnyx SIM card API (v2) for tests: stateful, scriptable, no money spent.
Prints its base URL (http://HOST:PORT/v2) as the first line on standard output,
then serves until SIGINT or SIGTERM, or until POST /__fake/shutdown. Its log goes
to standard error. The control API and what the fake does: docs/fake.md.

Options:
  --host ADDR         address to listen on (default 127.0.0.1); any other than a
                      loopback address lets the network in, with a warning
  --port N            port to listen on (default 0: a free one)
  --port-file FILE    also write the port number to FILE, once listening
  --parent-pid PID    exit once process PID is gone (start() in Lua passes it)
  --idle-timeout S    exit after S seconds without a request (default 0: never)
  --help              print this text and exit

Exit status: 0 after a shutdown, 1 when it cannot listen, 2 for a bad option.
]]

-- Each option: what its value must be, and the check that converts it.
local function count_in(lo, hi)
  return function(v)
    local n = tonumber(v)
    if n and n == math.floor(n) and n >= lo and n <= hi then return n end
  end
end

local OPTIONS = {
  host = { "an address", function(v) if v ~= "" then return v end end },
  port = { "a port number from 0 to 65535", count_in(0, 65535) },
  port_file = { "a file name", function(v) if v ~= "" then return v end end },
  parent_pid = { "a process id", count_in(1, 2 ^ 31) },
  idle_timeout = { "a number of seconds >= 0", function(v)
    local n = tonumber(v)
    if n and n >= 0 and n < math.huge then return n end
  end },
}

-- argv -> options table, or nil, message. "--name value" and "--name=value".
local function parse_args(argv)
  local out, i = {}, 1
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--help" or a == "-h" then return { help = true } end
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then
      name = a:match("^%-%-([%w%-]+)$")
      value = argv[i + 1]
      i = i + 1
    end
    local key = name and name:gsub("%-", "_")
    local option = key and OPTIONS[key]
    if not option then return nil, "unknown option " .. tostring(a) end
    if value == nil then return nil, "--" .. name .. " needs a value" end
    out[key] = option[2](value)
    if out[key] == nil then return nil, "--" .. name .. " must be " .. option[1] .. ", not " .. value end
    i = i + 1
  end
  return out
end

local function is_loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- The host part of the fake's URL: where a client on this machine reaches it.
local function url_host(host)
  if host == "0.0.0.0" then return "127.0.0.1" end
  if host == "::" then return "[::1]" end
  if host:find(":", 1, true) then return "[" .. host .. "]" end
  return host
end

local function write_port_file(path, port)
  local tmp = path .. ".tmp"
  local f = io.open(tmp, "w")
  if not f then return end
  f:write(string.format("%d\n", port))
  f:close()
  os.rename(tmp, path)
end

--- The command: runs the fake until it is shut down. argv as the global
-- `arg` (options from argv[1]). Returns the exit status.
function M.main(argv)
  local options, err = parse_args(argv or {})
  if not options then
    io.stderr:write("telnyx-sim-fake: ", err, " (see --help)\n")
    return 2
  end
  if options.help then
    io.stdout:write(M.USAGE)
    return 0
  end
  local host = options.host or "127.0.0.1"
  if not is_loopback(host) then
    io.stderr:write("telnyx-sim-fake: warning: listening on ", host, ", not loopback: anyone who can reach this",
      " machine can use the fake's API and its control API (no authentication)\n")
  end
  local server = require "telnyx.sim.fake.server"
  local ok, why = server.run({
    host = host, port = options.port or 0, parent_pid = options.parent_pid, idle_timeout = options.idle_timeout or 0,
  }, function(port)
    io.stdout:write("http://", url_host(host), ":", string.format("%d", port), "/v2\n")
    io.stdout:flush()
    if options.port_file then write_port_file(options.port_file, port) end
  end)
  if not ok then
    io.stderr:write("telnyx-sim-fake: cannot listen on ", host, ":", tostring(options.port or 0), ": ",
      tostring(why), "\n")
    return 1
  end
  return 0
end

---------------------------------------------------------------------------
-- Processes
---------------------------------------------------------------------------

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = path and io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

-- Whether process pid still runs (a zombie counts as gone).
local function pid_alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= "Z" and state ~= "X"
  end
  if read_file("/proc/self/stat") then return false end -- procfs present: gone
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

local function wait_gone(pid, seconds)
  local deadline = socket.gettime() + seconds
  while pid_alive(pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  return not pid_alive(pid)
end

-- The interpreter running this code: the lowest arg[-n] when it names a Lua,
-- else Debian's name for this version.
local function this_lua()
  local args = rawget(_G, "arg")
  if type(args) == "table" then
    local i = -1
    while args[i - 1] ~= nil do i = i - 1 end
    local exe = args[i]
    if type(exe) == "string" and (exe:match("[^/]*$")):match("^lua") then return exe end
  end
  if type(rawget(_G, "jit")) == "table" then return "luajit" end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

---------------------------------------------------------------------------
-- JSON for the control API (empty_array -> [])
---------------------------------------------------------------------------

local function with_placeholders(value, seen)
  if value == M.empty_array then return json.EMPTY_ARRAY end
  if type(value) ~= "table" then return value end
  seen = seen or {}
  if seen[value] then error("a cyclic table", 0) end
  seen[value] = true
  local copy = {}
  for k, v in pairs(value) do copy[k] = with_placeholders(v, seen) end
  seen[value] = nil
  return copy
end

--- fake.encode(value) -> JSON text | nil, err: as the fake writes it (fake.null -> null,
-- fake.empty_array -> [], "/" unescaped), for bodies to queue as `body`.
local function encode(value)
  local ok, text = pcall(function() return json.encode(with_placeholders(value)) end)
  if ok then return text end
  return nil, "cannot encode as JSON: " .. tostring(text)
end
M.encode = encode

---------------------------------------------------------------------------
-- A blocking HTTP/1.1 request on a fresh connection (the control API)
---------------------------------------------------------------------------

-- Reads the answer's head; returns status, content length (or nil).
local function read_head(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "not an HTTP answer: " .. line end
  local length
  repeat
    local h, herr = sock:receive("*l")
    if not h then return nil, herr end
    local value = h:lower():match("^content%-length:%s*(%d+)")
    if value then length = tonumber(value) end
  until h == ""
  return status, length
end

-- status, body text, or nil, err.
local function http(host, port, method, path, body)
  local sock, err = socket.connect(host, port)
  if not sock then return nil, err end
  sock:settimeout(CONTROL_TIMEOUT)
  local request = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port
    .. "\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " .. #(body or "")
    .. "\r\n\r\n" .. (body or "")
  local ok, serr = sock:send(request)
  if not ok then sock:close(); return nil, serr end
  local status, length = read_head(sock)
  if not status then sock:close(); return nil, length end
  local text, rerr, partial = sock:receive(length or "*a")
  sock:close()
  text = text or partial
  if not text or (length and #text < length) then return nil, rerr end
  return status, text
end

---------------------------------------------------------------------------
-- The fake object
---------------------------------------------------------------------------

local Fake = {}
Fake.__index = Fake

-- One control request: the decoded answer, or nil, err.
local function control(self, method, path, value)
  local what = method .. " " .. path
  if self.stopped then return nil, PREFIX .. what .. ": the fake at " .. self.url .. " is stopped" end
  local body
  if value ~= nil then
    local eerr
    body, eerr = encode(value)
    if not body then return nil, PREFIX .. what .. ": " .. eerr end
  end
  local status, text = http(self.connect_host, self.port, method, path, body)
  if not status then
    return nil, PREFIX .. what .. ": no answer from the fake at " .. self.url .. " (" .. tostring(text)
      .. "); its log: " .. tostring(self.log_file)
  end
  local ok, answer = pcall(json.decode, text)
  if status ~= 200 then
    local why = ok and type(answer) == "table" and answer.error or text
    return nil, PREFIX .. what .. ": " .. tostring(why)
  end
  if not ok or answer == nil then return nil, PREFIX .. what .. ": the fake answered non-JSON: " .. text end
  return answer
end

local function is_list(t)
  return t == M.empty_array or (type(t) == "table" and t[1] ~= nil)
end

--- Queues scripted answers: one entry (a table of fields: status, json,
-- body, headers, delay, mode, path, method, repeat, ...) or a list of them.
-- Returns how many were queued, or nil, err (nothing queued).
function Fake:queue(entries)
  if type(entries) ~= "table" then
    return nil, PREFIX .. "queue takes an entry table or a list of them, not a " .. type(entries)
  end
  if next(entries) == nil and entries ~= M.empty_array then
    return nil, PREFIX .. "queue: {} is neither an entry nor a list (an entry that answers 200: { status = 200 };"
      .. " an empty list: fake.empty_array)"
  end
  if not is_list(entries) then entries = { entries } end
  local answer, err = control(self, "POST", "/__fake/queue", entries)
  return answer and math.floor(answer.queued), err
end

--- The queued entries not used up yet, each with `remaining`.
function Fake:pending() return control(self, "GET", "/__fake/queue") end

--- Every API request the fake saw since the last reset, oldest first:
-- { method, path, query, headers (lowercase names), body, conn, seq }.
function Fake:requests() return control(self, "GET", "/__fake/requests") end

--- Empties the queue and the request log, starts the API state afresh,
-- restores the default settings. Returns true, or nil, err.
function Fake:reset()
  local answer, err = control(self, "POST", "/__fake/reset")
  return answer and true, err
end

--- The settings (action_delay, delay, implicit_cards); with a table, changes
-- those first. Returns all settings, or nil, err.
function Fake:config(settings)
  if settings == nil then return control(self, "GET", "/__fake/config") end
  if type(settings) ~= "table" then return nil, PREFIX .. "config takes a table of settings" end
  return control(self, "POST", "/__fake/config", settings)
end

--- Adds records: { sim_card_groups = {...}, sim_cards = {...},
-- used_registration_codes = {...} }. Returns the new groups and cards.
function Fake:seed(records)
  if type(records) ~= "table" then return nil, PREFIX .. "seed takes a table of records" end
  return control(self, "POST", "/__fake/seed", records)
end

--- Every record of the emulated API (sim_cards, sim_card_groups, ...).
function Fake:state() return control(self, "GET", "/__fake/state") end

--- { requests, in_flight, in_flight_peak } of API requests since the last reset.
function Fake:stats() return control(self, "GET", "/__fake/stats") end

--- The 45 operations' routes: a list of { method, path }.
function Fake:routes() return control(self, "GET", "/__fake/routes") end

--- Shuts the fake down (killing it if it does not go) and removes its log
-- file unless start() was given one. Safe to call twice; returns true.
function Fake:stop()
  if self.stopped then return true end
  http(self.connect_host, self.port, "POST", "/__fake/shutdown")
  self.stopped = true
  if not wait_gone(self.pid, STOP_WAIT) then
    run("kill " .. self.pid .. " 2>/dev/null")
    if not wait_gone(self.pid, 1) then run("kill -9 " .. self.pid .. " 2>/dev/null") end
  end
  if self.own_log then os.remove(self.log_file) end
  return true
end

---------------------------------------------------------------------------
-- start()
---------------------------------------------------------------------------

local START_OPTIONS = { lua = "string", host = "string", port = "number", log = "string" }

local function check_start_options(opts)
  if type(opts) ~= "table" then return PREFIX .. "start takes a table of options, not a " .. type(opts) end
  for k, v in pairs(opts) do
    if START_OPTIONS[k] == nil then
      return PREFIX .. "start: unknown option " .. tostring(k) .. " (known: host, log, lua, port)"
    end
    if type(v) ~= START_OPTIONS[k] then
      return PREFIX .. "start: option " .. k .. " must be a " .. START_OPTIONS[k] .. ", not a " .. type(v)
    end
  end
  return nil
end

-- Where this module was loaded from: the root of its tree ("?.lua" form).
local function module_root()
  local src = debug.getinfo(1, "S").source
  local root = src:match("^@(.*)/telnyx/sim/fake%.lua$") or (src == "@telnyx/sim/fake.lua" and ".")
  return root and root .. "/?.lua;" or ""
end

-- Lua code for the child: this module and its libraries found where they
-- were found here (another interpreter, opts.lua: this module's tree, then
-- that interpreter's own paths), then main() with the options.
local function child_code(opts)
  local argv = { "--host", opts.host or "127.0.0.1", "--port", string.format("%d", opts.port or 0) }
  for i, a in ipairs(argv) do argv[i] = string.format("%q", a) end
  local paths
  if opts.lua then
    paths = ("package.path = %q .. package.path; "):format(module_root())
  else
    paths = ("package.path = %q; package.cpath = %q; "):format(package.path, package.cpath)
  end
  return paths .. "local argv = { " .. table.concat(argv, ", ") .. " } "
    .. "local parent = os.getenv('TELNYX_SIM_FAKE_PARENT') "
    .. "if parent then argv[#argv + 1] = '--parent-pid' argv[#argv + 1] = parent end "
    .. "os.exit(require('telnyx.sim.fake').main(argv))"
end

-- The shell command that starts the child and prints its pid; the child
-- prints its URL.
local function start_command(opts, log_file)
  return ("TELNYX_SIM_FAKE_PARENT=$PPID %s -e %s </dev/null 2>>%s & echo $!")
    :format(shell_quote(opts.lua or this_lua()), shell_quote(child_code(opts)), shell_quote(log_file))
end

-- Runs cmd; returns its pid and the URL the child printed (either may be nil).
local function launch(cmd)
  local p = io.popen(cmd, "r")
  if not p then return nil, nil end
  local pid, url
  for _ = 1, 2 do
    local line = p:read("*l")
    if not line then break end
    if line:match("^%d+$") then pid = line else url = url or line end
  end
  p:close()
  return pid, url
end

local function tmpname()
  local name = os.tmpname()
  os.remove(name) -- 5.2+ creates the file; only the name is wanted
  return name
end

--- Starts a fake in a child process. opts (all optional): host (default
-- 127.0.0.1), port (default 0: a free one), lua (the interpreter to run it,
-- default this one), log (a file for its log, kept; default a temporary file
-- removed by stop()). Returns the fake object, or nil, err.
function M.start(opts)
  opts = opts or {}
  local bad = check_start_options(opts)
  if bad then return nil, bad end
  local log_file = opts.log or tmpname()
  local pid, url = launch(start_command(opts, log_file))
  if not (pid and url and url:match("^http://")) then
    if pid then run("kill " .. pid .. " 2>/dev/null") end
    local log = read_file(log_file) or ""
    if not opts.log then os.remove(log_file) end
    return nil, PREFIX .. "the fake did not start" .. (url and (": it printed " .. url) or "")
      .. (log ~= "" and (": " .. log:gsub("%s+$", "")) or "")
  end
  local host, port = url:match("^http://%[?([^%]]-)%]?:(%d+)/v2$")
  return setmetatable({
    url = url, root_url = url:gsub("/v2$", ""), host = host, port = tonumber(port), pid = pid,
    connect_host = host, log_file = log_file, own_log = not opts.log,
  }, Fake)
end

return M
