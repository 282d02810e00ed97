-- The fake Telnyx's server (docs/fake.md): connections, the queue of scripted
-- answers and faults, the request log and the control API. The emulated API
-- itself is telnyx.sim.fake.api. run() serves; telnyx.sim.fake's main() (the
-- command telnyx-sim-fake) calls it, and start() runs main() in a child process.
--
-- Single process, single thread: a socket.select loop drives one coroutine per
-- connection; coroutines yield (read socket, write socket, deadline) triples.
-- Needs only luasocket and lua-cjson; works with Lua 5.1 to 5.4 and LuaJIT.
--
-- Every API request (any path outside /__fake/) is logged, then answered by
-- the first matching scripted queue entry if there is one (fault modes:
-- stall, stall_accept, close, reset, raw, huge, trickle, close_mid_body),
-- else by the emulated API: the 45 SIM card operations of the Telnyx OpenAPI
-- document (sim-cards-full.json), stateful (see the route table and the
-- handlers' comments for the rules the fake picked).
--
-- Control API (JSON, no auth; docs/fake.md is its reference):
--   POST /__fake/queue      queue scripted responses (an object or an array)
--   GET  /__fake/queue      the entries not consumed yet
--   GET  /__fake/requests   the request log: method, path, query, headers, body, conn, seq
--   POST /__fake/reset      empty queue and log, fresh API state, default config, stats zeroed
--   GET  /__fake/config     the settings; POST /__fake/config {...} changes some:
--                           action_delay (s, 0.2), delay (s, 0), implicit_cards (true)
--   GET  /__fake/stats      {requests, in_flight, in_flight_peak} of API requests
--   GET  /__fake/state      every record of the emulated API
--   POST /__fake/seed       add records: {sim_card_groups, sim_cards, used_registration_codes}
--   GET  /__fake/routes     the route table: [{method, path}]
--   POST /__fake/shutdown
-- An API request's "X-Fake-Delay: seconds" header (else config.delay) holds
-- its answer that long without blocking other connections.

local socket = require "socket"
local json = require "telnyx.sim.fake.json"
local api = require "telnyx.sim.fake.api"
local fixtures = require "telnyx.sim.fake.fixtures"

local null, EMPTY_ARRAY = json.null, json.EMPTY_ARRAY
local json_encode, json_decode, is_array, array_or_empty, fmt_int = json.encode, json.decode, json.is_array,
  json.array_or_empty, json.integer_text
local err_body, is_integer, INTERNAL_ERROR = api.err_body, api.is_integer, api.INTERNAL_ERROR
local unpack = table.unpack or unpack -- luacheck: ignore 143

-- run()'s options: host, port, parent_pid, idle_timeout (0: never).
local opts = { host = "127.0.0.1", port = 0, idle_timeout = 0 }

local function log(...)
  local parts = { os.date("!%H:%M:%S"), "telnyx-sim-fake:" }
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  io.stderr:write(table.concat(parts, " "), "\n")
  io.stderr:flush()
end

local now = socket.gettime
local MAX_HOLD = 120          -- longest time a stalled connection is held
local WRITE_TIMEOUT = 120     -- give up on a client that stops reading
local READ_IDLE_TIMEOUT = 300 -- give up on a kept-alive connection that stays silent
local MAX_HEADER_BYTES = 64 * 1024
local MAX_BODY_BYTES = 64 * 1024 * 1024
local MAX_CONNECTIONS = 900   -- stay below FD_SETSIZE

math.randomseed(os.time() + math.floor((now() % 1) * 1e6))

---------------------------------------------------------------------------
-- A SIM card outside the API state (the body of fault modes that need one)
---------------------------------------------------------------------------

local uuid4 = fixtures.uuid4

local loose_cards = 0
local function loose_card()
  loose_cards = loose_cards + 1
  return fixtures.sim_card{ n = loose_cards, kind = "esim", null = null, empty_array = EMPTY_ARRAY }
end

---------------------------------------------------------------------------
-- Scheduler
---------------------------------------------------------------------------

local waits = {}   -- coroutine -> { r = sock, w = sock, d = deadline }
local conns = {}   -- coroutine -> conn
local n_conns = 0
local running = true
local last_activity = now()

-- Yield until sock r readable, sock w writable, or the deadline; returns
-- "read", "write" or "timeout".
local function wait(r, w, deadline)
  return coroutine.yield(r, w, deadline)
end

local function sleep(seconds)
  if seconds and seconds > 0 then
    wait(nil, nil, now() + seconds)
  end
end

---------------------------------------------------------------------------
-- Connection I/O
---------------------------------------------------------------------------

local function fill(conn, deadline)
  while true do
    local data, err, partial = conn.sock:receive(8192)
    data = data or partial
    if data and #data > 0 then
      conn.buf = conn.buf .. data
      return true
    end
    if err == "closed" then return nil, "closed" end
    if err ~= "timeout" then return nil, err end
    if wait(conn.sock, nil, deadline) == "timeout" then return nil, "timeout" end
  end
end

local function read_line(conn, deadline)
  while true do
    local pos = conn.buf:find("\n", 1, true)
    if pos then
      local line = conn.buf:sub(1, pos - 1):gsub("\r$", "")
      conn.buf = conn.buf:sub(pos + 1)
      return line
    end
    if #conn.buf > MAX_HEADER_BYTES then return nil, "line too long" end
    local ok, err = fill(conn, deadline)
    if not ok then return nil, err end
  end
end

local function read_n(conn, n, deadline)
  local parts, got = {}, 0
  while true do
    if #conn.buf > 0 then
      local take = conn.buf:sub(1, n - got)
      conn.buf = conn.buf:sub(#take + 1)
      parts[#parts + 1] = take
      got = got + #take
    end
    if got >= n then return table.concat(parts) end
    local ok, err = fill(conn, deadline)
    if not ok then return nil, err end
  end
end

local function send_all(conn, data)
  if conn.closed then return nil, "closed" end
  local i, len = 1, #data
  local deadline = now() + WRITE_TIMEOUT
  while i <= len do
    local last, err, partial = conn.sock:send(data, i)
    if last then return true end
    if err ~= "timeout" then return nil, err end
    i = (partial or i - 1) + 1
    if i <= len and wait(nil, conn.sock, deadline) == "timeout" then
      return nil, "timeout"
    end
  end
  return true
end

local function close_conn(conn)
  if not conn.closed then
    conn.closed = true
    pcall(conn.sock.close, conn.sock)
  end
end

-- Hold the connection, discarding input, until the client closes it or
-- `seconds` pass.
local function hold(conn, seconds)
  local deadline = now() + (seconds or MAX_HOLD)
  while not conn.closed do
    conn.buf = ""
    local ok = fill(conn, deadline)
    if not ok then break end
  end
  close_conn(conn)
end

---------------------------------------------------------------------------
-- HTTP responses
---------------------------------------------------------------------------

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted",
  [204] = "No Content", [301] = "Moved Permanently", [302] = "Found",
  [304] = "Not Modified", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [409] = "Conflict", [413] = "Payload Too Large",
  [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local function has_token(value, token)
  if type(value) ~= "string" then return false end
  for t in value:lower():gmatch("[^,%s]+") do
    if t == token then return true end
  end
  return false
end

-- headers: list of { name, value } pairs, sent in order.
local function response_head(status, headers)
  local lines = { string.format("HTTP/1.1 %s %s", fmt_int(status), REASONS[status] or "Status") }
  for _, h in ipairs(headers) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function has_header(headers, name)
  name = name:lower()
  for _, h in ipairs(headers) do
    if h[1]:lower() == name then return true end
  end
  return false
end

-- Build the header list for a scripted or default response.
-- entry_headers: { name = value | {values} | false }
local function build_headers(entry_headers, body, content_type, request_id)
  local list, seen = {}, {}
  local names = {}
  if type(entry_headers) == "table" then
    for name in pairs(entry_headers) do
      if type(name) == "string" then names[#names + 1] = name end
    end
    table.sort(names)
    for _, name in ipairs(names) do
      local v = entry_headers[name]
      seen[name:lower()] = true
      if type(v) == "table" and v ~= EMPTY_ARRAY then
        for _, item in ipairs(v) do list[#list + 1] = { name, fmt_int(item) } end
      elseif v ~= false and v ~= null and v ~= EMPTY_ARRAY then
        list[#list + 1] = { name, fmt_int(v) }
      end
    end
  end
  if content_type and not seen["content-type"] then
    list[#list + 1] = { "Content-Type", content_type }
  end
  if request_id and not seen["x-request-id"] then
    list[#list + 1] = { "x-request-id", uuid4() }
  end
  if body and not seen["content-length"] and not seen["transfer-encoding"] then
    list[#list + 1] = { "Content-Length", tostring(#body) }
  end
  return list, seen
end

---------------------------------------------------------------------------
-- Queue, request log and stats
---------------------------------------------------------------------------

local queue = {}
local requests = {}
local seq = 0

-- API requests (not control ones): how many since the last reset, how many
-- are being served now (read, not yet answered), and the most at once.
local stats = { requests = 0, in_flight = 0, in_flight_peak = 0 }

local function pop_entry(method, path)
  for i, e in ipairs(queue) do
    local want = e.path == nil and e.match or e.path
    local ok = (want == nil or want == null or want == path)
    if ok and type(e.method) == "string" then ok = e.method:upper() == method end
    if ok then
      e._left = (e._left or math.max(1, math.floor(tonumber(e["repeat"]) or 1))) - 1
      if e._left <= 0 then table.remove(queue, i) end
      return e
    end
  end
  return nil
end

local function record(req)
  seq = seq + 1
  requests[#requests + 1] = {
    method = req.method, path = req.path, query = req.query,
    headers = req.headers, body = req.body, conn = req.conn, seq = seq,
  }
end

-- A connection's request is in flight from its head being read until its
-- answer is sent (or the connection ends: the main loop calls end_request
-- for a connection whose coroutine is gone).
local function begin_request(conn)
  if conn.in_flight then return end
  conn.in_flight = true
  stats.requests = stats.requests + 1
  stats.in_flight = stats.in_flight + 1
  if stats.in_flight > stats.in_flight_peak then stats.in_flight_peak = stats.in_flight end
end

local function end_request(conn)
  if conn.in_flight then
    conn.in_flight = false
    stats.in_flight = stats.in_flight - 1
  end
end

-- Seconds to hold this API request's answer, or nil.
local function request_delay(req)
  local d = tonumber(req.headers["x-fake-delay"] or "") or api.config().delay
  if d and d > 0 then return math.min(d, MAX_HOLD) end
  return nil
end

---------------------------------------------------------------------------
-- Scripted responses and fault modes
---------------------------------------------------------------------------

local function entry_body(entry)
  if type(entry.body) == "string" then return entry.body, false end
  if entry.json ~= nil then return json_encode(entry.json), true end
  return "", false
end

local function default_fault_body()
  return json_encode({ data = loose_card() })
end

local function send_huge(conn, entry, req_id)
  local size = math.floor(tonumber(entry.size) or 64 * 1024 * 1024)
  local headers = build_headers(entry.headers, nil, "application/json", req_id)
  if not has_header(headers, "content-length") then
    headers[#headers + 1] = { "Content-Length", string.format("%d", size) }
  end
  local ok = send_all(conn, response_head(tonumber(entry.status) or 202, headers))
  if not ok then return end
  local prefix, suffix = '{"data":[{}', "]}"
  if size < #prefix + #suffix then
    send_all(conn, (prefix .. suffix .. string.rep(" ", size)):sub(1, size))
    return
  end
  local item = ',{"record_type":"sim_card","iccid":"8931041010654300000","status":{"value":"enabled"}}'
  local chunk = string.rep(item, math.floor(65536 / #item))
  if not send_all(conn, prefix) then return end
  local left = size - #prefix - #suffix
  while left >= #chunk do
    if not send_all(conn, chunk) then return end
    left = left - #chunk
  end
  local tail = string.rep(item, math.floor(left / #item))
  tail = tail .. string.rep(" ", left - #tail)
  send_all(conn, tail .. suffix)
end

-- Sends the head of a faulty answer (the entry's body, else one SIM card);
-- returns the bytes still to send, or nil when the client is gone. With
-- trickle_head, nothing is sent: the head is the first of those bytes.
local function fault_head(conn, entry, keep_alive, req_id)
  local body, is_json = entry_body(entry)
  if body == "" then body, is_json = default_fault_body(), true end
  local headers, seen = build_headers(entry.headers, body, is_json and "application/json", req_id)
  if not keep_alive and not seen["connection"] then headers[#headers + 1] = { "Connection", "close" } end
  local head = response_head(tonumber(entry.status) or 200, headers)
  if entry.trickle_head then return head .. body end
  if not send_all(conn, head) then return nil end
  return body
end

local function drop(conn)
  close_conn(conn)
  return false
end

-- The connection faults: mode -> function(conn, entry, keep_alive, req_id),
-- which returns whether to keep the connection for more requests.
local FAULTS = {
  stall = function(conn, entry)
    hold(conn, tonumber(entry.duration) or MAX_HOLD)
    return false
  end,
  close = drop,
  reset = function(conn)
    pcall(conn.sock.setoption, conn.sock, "linger", { on = true, timeout = 0 }) -- close sends RST
    return drop(conn)
  end,
  raw = function(conn, entry)
    send_all(conn, type(entry.body) == "string" and entry.body or "")
    return drop(conn)
  end,
  huge = function(conn, entry, _, req_id)
    send_huge(conn, entry, req_id)
    return drop(conn)
  end,
  trickle = function(conn, entry, keep_alive, req_id)
    local body = fault_head(conn, entry, keep_alive, req_id)
    if not body then return false end
    local interval = tonumber(entry.interval) or 1.0
    for i = 1, #body do
      if not send_all(conn, body:sub(i, i)) then return false end
      if i < #body then sleep(interval) end
    end
    return keep_alive
  end,
  close_mid_body = function(conn, entry, _, req_id)
    local body = fault_head(conn, entry, false, req_id)
    if body then send_all(conn, body:sub(1, math.floor(#body / 2))) end
    return drop(conn)
  end,
}
-- the same, once the request is read (serve_api holds before reading the body)
FAULTS.stall_accept = FAULTS.stall

-- Whether a scripted answer's own Connection header asks to close.
local function asks_close(entry_headers)
  for name, v in pairs(entry_headers) do
    if type(name) == "string" and name:lower() == "connection" and has_token(v, "close") then return true end
  end
  return false
end

-- A scripted answer without a fault: status, body or json, headers.
local function send_scripted(conn, entry, keep_alive, method, req_id)
  local status = tonumber(entry.status) or 200
  local body, is_json = entry_body(entry)
  local no_body = status < 200 or status == 204 or status == 304
  local headers, seen = build_headers(entry.headers, (not no_body) and body or nil,
    is_json and "application/json", req_id)
  if seen["connection"] then
    keep_alive = keep_alive and not asks_close(entry.headers)
  elseif not keep_alive then
    headers[#headers + 1] = { "Connection", "close" }
  end
  local out = response_head(status, headers)
  if method ~= "HEAD" and not no_body then out = out .. body end
  return send_all(conn, out) and keep_alive
end

-- Answers with a queued entry. Returns true to keep the connection open for more requests.
local function serve_scripted(conn, entry, keep_alive, method)
  local req_id = not (type(entry.headers) == "table" and entry.headers["x-request-id"] ~= nil)
  sleep(tonumber(entry.delay))
  local fault = FAULTS[entry.mode]
  if fault then return fault(conn, entry, keep_alive, req_id) end
  return send_scripted(conn, entry, keep_alive, method, req_id)
end

local function send_simple(conn, status, body, keep_alive, extra_headers, method)
  local headers = {}
  for _, h in ipairs(extra_headers or {}) do headers[#headers + 1] = h end
  if body ~= "" then headers[#headers + 1] = { "Content-Type", "application/json" } end
  headers[#headers + 1] = { "Content-Length", tostring(#body) }
  if not keep_alive then headers[#headers + 1] = { "Connection", "close" } end
  local out = response_head(status, headers)
  if method ~= "HEAD" then out = out .. body end
  return send_all(conn, out)
end

---------------------------------------------------------------------------
-- Control endpoints (/__fake/...: no auth, not logged, never delayed)
---------------------------------------------------------------------------

local function reset_all()
  queue, requests = {}, {}
  api.reset()
  stats.requests = 0
  stats.in_flight_peak = stats.in_flight
end

-- Queue entries: each field a scripted answer may have, what it must be,
-- and the check. An entry with anything else is refused as a whole.

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

local function non_negative(v) return type(v) == "number" and v >= 0 and v < math.huge end
local function is_string(v) return type(v) == "string" end
local function path_or_any(v) return v == null or is_string(v) end

local ENTRY_FIELDS = {
  status = { "an integer from 100 to 599", function(v) return is_integer(v) and v >= 100 and v <= 599 end },
  body = { "a string", is_string },
  json = { "any JSON value", function() return true end },
  headers = { "an object of header names to values",
    function(v) return type(v) == "table" and (next(v) == nil or not is_array(v)) end },
  delay = { "a number of seconds >= 0", non_negative },
  duration = { "a number of seconds >= 0", non_negative },
  interval = { "a number of seconds >= 0", non_negative },
  size = { "a number of bytes >= 0", non_negative },
  mode = { "one of " .. table.concat(sorted_keys(FAULTS), ", ") .. " (or null: no fault)",
    function(v) return v == null or FAULTS[v] ~= nil end },
  path = { "a path such as /v2/sim_cards, or null for any", path_or_any },
  match = { "a path such as /v2/sim_cards, or null for any", path_or_any },
  method = { "an HTTP method such as GET", is_string },
  ["repeat"] = { "an integer >= 1", function(v) return is_integer(v) and v >= 1 end },
  trickle_head = { "a boolean (mode trickle: the head a byte at a time too)",
    function(v) return type(v) == "boolean" end },
}

local ENTRY_FIELD_NAMES = table.concat(sorted_keys(ENTRY_FIELDS), ", ")

-- Why queue entry number i cannot be queued, or nil.
local function entry_problem(e, i)
  if type(e) ~= "table" or (next(e) ~= nil and is_array(e)) then
    return "queue entry " .. i .. " must be a JSON object"
  end
  for k, v in pairs(e) do
    local field = ENTRY_FIELDS[k]
    if not field then
      return ("queue entry %d: unknown field %s (known: %s)"):format(i, tostring(k), ENTRY_FIELD_NAMES)
    end
    if not field[2](v) then return ("queue entry %d: %s must be %s"):format(i, k, field[1]) end
  end
  return nil
end

-- The decoded body of a control request if it is a JSON object, else nil, why.
local function control_object(req, what)
  local body = json_decode(req.body or "", true)
  if type(body) ~= "table" or (next(body) ~= nil and is_array(body)) then
    return nil, what .. " body must be a JSON object"
  end
  return body
end

local function queue_entries(req)
  local entries, err = json_decode(req.body or "", true)
  if entries == EMPTY_ARRAY then entries = {} end
  if type(entries) ~= "table" then
    return 400, { error = "queue body must be a JSON array or object: " .. tostring(err or "got " .. type(entries)) }
  end
  if not is_array(entries) then entries = { entries } end
  for i, e in ipairs(entries) do
    local problem = entry_problem(e, i)
    if problem then return 400, { error = problem } end
  end
  for _, e in ipairs(entries) do queue[#queue + 1] = e end
  return 200, { queued = #entries, pending = #queue }
end

local function pending_entries()
  local list = {}
  for i, e in ipairs(queue) do
    local copy = {}
    for k, v in pairs(e) do if k ~= "_left" then copy[k] = v end end
    copy.remaining = e._left or math.max(1, math.floor(tonumber(e["repeat"]) or 1))
    list[i] = copy
  end
  return 200, array_or_empty(list)
end

-- The control routes: "METHOD path" -> handler(req) -> status, answer [, stop].
local CONTROL = {
  ["POST /__fake/queue"] = queue_entries,
  ["GET /__fake/queue"] = pending_entries,
  ["GET /__fake/requests"] = function() return 200, array_or_empty(requests) end,
  ["POST /__fake/reset"] = function() reset_all(); return 200, { reset = true } end,
  ["GET /__fake/config"] = function() return 200, api.config() end,
  ["POST /__fake/config"] = function(req)
    local body, err = control_object(req, "config")
    if not body then return 400, { error = err } end
    return api.set_config(body)
  end,
  ["GET /__fake/stats"] = function()
    return 200, { requests = stats.requests, in_flight = stats.in_flight, in_flight_peak = stats.in_flight_peak }
  end,
  ["GET /__fake/state"] = function() return 200, api.state() end,
  ["POST /__fake/seed"] = function(req)
    local body, err = control_object(req, "seed")
    if not body then return 400, { error = err } end
    return api.seed(body)
  end,
  ["GET /__fake/routes"] = function() return 200, api.routes() end,
  ["POST /__fake/shutdown"] = function() return 200, { shutdown = true }, true end,
}
local CONTROL_NAMES = table.concat(sorted_keys(CONTROL), ", ")

local function control(req)
  local handler = CONTROL[req.method .. " " .. req.path]
  if handler then return handler(req) end
  return 404, { error = "unknown control endpoint " .. req.method .. " " .. req.path
    .. " (known: " .. CONTROL_NAMES .. ")" }
end

---------------------------------------------------------------------------
-- Request parsing
---------------------------------------------------------------------------

local function read_chunked(conn, deadline)
  local parts, total = {}, 0
  while true do
    local line, err = read_line(conn, deadline)
    if not line then return nil, err end
    local digits = line:match("^%s*(%x+)%s*[;]?")
    local size = digits and tonumber(digits, 16)
    if not size then return nil, "bad chunk size" end
    if size == 0 then break end
    total = total + size
    if total > MAX_BODY_BYTES then return nil, "body too large" end
    local data, derr = read_n(conn, size, deadline)
    if not data then return nil, derr end
    parts[#parts + 1] = data
    local crlf, cerr = read_line(conn, deadline)
    if not crlf then return nil, cerr end
  end
  while true do -- trailers
    local line, err = read_line(conn, deadline)
    if not line then return nil, err end
    if line == "" then break end
  end
  return table.concat(parts)
end

-- Returns request table (without body), or nil, err.
local function read_head(conn)
  local deadline = now() + READ_IDLE_TIMEOUT
  local line, err
  repeat -- tolerate stray empty lines between requests
    line, err = read_line(conn, deadline)
    if not line then return nil, err end
  until line ~= ""
  local method, target, version = line:match("^(%S+)%s+(%S+)%s+HTTP/(%d+%.%d+)%s*$")
  if not method then return nil, "bad request line" end
  local headers, total = {}, 0
  while true do
    local h, herr = read_line(conn, now() + 30)
    if not h then return nil, herr end
    if h == "" then break end
    total = total + #h
    if total > MAX_HEADER_BYTES then return nil, "headers too large" end
    local name, value = h:match("^([^:%s]+)%s*:%s*(.-)%s*$")
    if not name then return nil, "bad header line" end
    name = name:lower()
    if headers[name] then
      headers[name] = headers[name] .. ", " .. value
    else
      headers[name] = value
    end
  end
  target = target:gsub("^[Hh][Tt][Tt][Pp][Ss]?://[^/]*", "")
  if target == "" then target = "/" end
  local path, query = target:match("^([^?]*)%?(.*)$")
  if not path then path = target end
  local keep_alive
  if version == "1.0" then
    keep_alive = has_token(headers["connection"], "keep-alive")
  else
    keep_alive = not has_token(headers["connection"], "close")
  end
  return {
    method = method:upper(), path = path, query = query, version = version,
    headers = headers, keep_alive = keep_alive, conn = conn.id,
  }
end

local function read_body(conn, req)
  local te = req.headers["transfer-encoding"]
  local cl = req.headers["content-length"]
  local expects = has_token(req.headers["expect"], "100-continue")
  local deadline = now() + 60
  if te and has_token(te, "chunked") then
    if expects and not send_all(conn, "HTTP/1.1 100 Continue\r\n\r\n") then return nil, "closed" end
    return read_chunked(conn, deadline)
  elseif cl then
    local n = tonumber(cl:match("^%s*(%d+)%s*$"))
    if not n then return nil, "bad content-length" end
    if n > MAX_BODY_BYTES then return nil, "body too large" end
    if n == 0 then return "" end
    if expects and not send_all(conn, "HTTP/1.1 100 Continue\r\n\r\n") then return nil, "closed" end
    return read_n(conn, n, deadline)
  end
  return ""
end

---------------------------------------------------------------------------
-- Connection handler
---------------------------------------------------------------------------

-- An API-shaped answer for a request the fake could not read (a client that
-- went away or stayed silent just loses its connection).
local function read_failed(conn, err)
  if err == "closed" or err == "timeout" or conn.closed then return end
  local status = err == "body too large" and 413 or 400
  local e = err_body("10015", REASONS[status], "The fake could not read the request: " .. tostring(err) .. ".")
  send_simple(conn, status, json_encode({ errors = { e } }), false)
end

-- status, JSON text; an answer that does not encode becomes a logged 500.
local function encode_or_500(status, answer)
  if answer == nil then return status, "" end
  local ok, text = pcall(json_encode, answer)
  if ok then return status, text end
  log("cannot encode an answer:", tostring(text))
  return 500, json_encode(INTERNAL_ERROR)
end

-- One /__fake/ request. Returns whether to keep the connection.
local function serve_control(conn, req)
  local body, err = read_body(conn, req)
  if not body then read_failed(conn, err); return false end
  req.body = body
  local ok, status, answer, stop = pcall(control, req)
  if not ok then
    log("control error:", req.method, req.path, tostring(status))
    status, answer, stop = 500, { error = "the fake failed on this control request (its log has the details)" }, false
  end
  local code, text = encode_or_500(status, answer)
  local keep = req.keep_alive and not stop
  local sent = send_simple(conn, code, text, keep, nil, req.method)
  if stop then
    close_conn(conn)
    running = false
  end
  return sent and keep
end

-- The emulated API's answer to req.
local function send_default(conn, req)
  local status, answer, extra, bug = api.answer(req)
  if bug then log("handler error:", req.method, req.path, bug) end
  local code, text = encode_or_500(status, answer)
  local headers = { { "x-request-id", uuid4() } }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return send_simple(conn, code, text, req.keep_alive, headers, req.method) and req.keep_alive
end

-- One API request: logged, then a scripted entry or the emulated API.
-- Returns whether to keep the connection.
local function serve_api(conn, req)
  begin_request(conn)
  local entry = pop_entry(req.method, req.path)
  if entry and entry.mode == "stall_accept" then
    req.body = ""
    record(req)
    sleep(tonumber(entry.delay))
    hold(conn, tonumber(entry.duration) or MAX_HOLD)
    return false
  end
  local body, err = read_body(conn, req)
  if not body then read_failed(conn, err); return false end
  req.body = body
  record(req)
  sleep(request_delay(req))
  local keep
  if entry then
    keep = serve_scripted(conn, entry, req.keep_alive, req.method)
  else
    keep = send_default(conn, req)
  end
  end_request(conn)
  return keep
end

local function handle(conn)
  while running and not conn.closed do
    local req, err = read_head(conn)
    if not req then
      read_failed(conn, err)
      break
    end
    last_activity = now()
    local serve = req.path:sub(1, 8) == "/__fake/" and serve_control or serve_api
    if not serve(conn, req) then break end
  end
  close_conn(conn)
end

---------------------------------------------------------------------------
-- Main loop
---------------------------------------------------------------------------

local server -- the listening socket (run)
local conn_counter = 0

local function resume(co, ...)
  local ok, r, w, d = coroutine.resume(co, ...)
  if not ok then
    log("connection handler error:", tostring(r))
  end
  if not ok or coroutine.status(co) == "dead" then
    local conn = conns[co]
    if conn then
      end_request(conn)
      close_conn(conn)
    end
    conns[co] = nil
    waits[co] = nil
    n_conns = n_conns - 1
  else
    waits[co] = { r = r, w = w, d = d }
  end
end

local function accept_all()
  while true do
    local client = server:accept()
    if not client then return end
    last_activity = now()
    conn_counter = conn_counter + 1
    if n_conns >= MAX_CONNECTIONS then
      client:close()
    else
      client:settimeout(0)
      pcall(client.setoption, client, "tcp-nodelay", true)
      local conn = { sock = client, buf = "", id = conn_counter }
      -- coroutine.resume is the protected call around each handler (a pcall
      -- inside the coroutine would break yields on Lua 5.1); resume() logs
      -- errors and closes the connection.
      local co = coroutine.create(handle)
      conns[co] = conn
      n_conns = n_conns + 1
      resume(co, conn)
    end
  end
end

local function parent_alive()
  if not opts.parent_pid then return true end
  local f = io.open("/proc/" .. string.format("%d", opts.parent_pid) .. "/stat", "r")
  if not f then
    -- No procfs (or the process is gone): fall back to kill -0.
    local probe = io.open("/proc/self/stat", "r")
    if probe then probe:close(); return false end
    local r = os.execute("kill -0 " .. string.format("%d", opts.parent_pid) .. " 2>/dev/null")
    return r == true or r == 0
  end
  local stat = f:read("*l") or ""
  f:close()
  local proc_state = stat:match("^%d+ %b() (%a)")
  return proc_state ~= "Z" and proc_state ~= "X"
end

-- Waits for the next ready socket or deadline (at most a second), then
-- accepts new connections and resumes the coroutines that can go on.
local function step()
  local recvt, sendt = { server }, {}
  local deadline = now() + 1
  for _, w in pairs(waits) do
    if w.r then recvt[#recvt + 1] = w.r end
    if w.w then sendt[#sendt + 1] = w.w end
    if w.d and w.d < deadline then deadline = w.d end
  end
  local ok, readable, writable = pcall(socket.select, recvt, sendt, math.max(0, deadline - now()))
  if not ok then
    log("select failed:", tostring(readable))
    readable, writable = {}, {}
    socket.sleep(0.05)
  end
  readable, writable = readable or {}, writable or {}
  local t = now()
  if readable[server] then
    local aok, aerr = pcall(accept_all)
    if not aok then log("accept failed:", tostring(aerr)) end
  end
  local ready = {}
  for co, w in pairs(waits) do
    if w.r and readable[w.r] then ready[#ready + 1] = { co, "read" }
    elseif w.w and writable[w.w] then ready[#ready + 1] = { co, "write" }
    elseif w.d and t >= w.d then ready[#ready + 1] = { co, "timeout" }
    end
  end
  for _, item in ipairs(ready) do
    if waits[item[1]] then
      waits[item[1]] = nil
      resume(unpack(item))
    end
  end
end

-- Ends the loop once the parent process is gone or the fake sat idle too long.
local function housekeeping(t)
  if not parent_alive() then
    log("parent process gone, exiting")
    running = false
  elseif opts.idle_timeout > 0 and t - last_activity > opts.idle_timeout and n_conns == 0 then
    log("idle for", opts.idle_timeout, "seconds, exiting")
    running = false
  end
end

local M = {}

--- Serves until POST /__fake/shutdown (or the parent is gone, or idle).
-- options: { host = "127.0.0.1", port = 0 (a free one), parent_pid =, idle_timeout = 0 (never) }.
-- on_ready(port) runs once the socket listens. Returns true, or nil, err when it cannot listen.
function M.run(options, on_ready)
  for k, v in pairs(options or {}) do opts[k] = v end
  local err
  server, err = socket.bind(opts.host, opts.port, 128)
  if not server then return nil, err end
  server:settimeout(0)
  local _, port = server:getsockname()
  log("listening on", opts.host .. ":" .. tostring(port),
    opts.parent_pid and ("(exits when process " .. opts.parent_pid .. " does)") or "")
  if on_ready then on_ready(tonumber(port)) end
  local next_housekeeping = now() + 1
  while running do
    step()
    local t = now()
    if t >= next_housekeeping then
      next_housekeeping = t + 2
      housekeeping(t)
    end
  end
  -- the shutdown answer is already sent; close everything
  for _, conn in pairs(conns) do close_conn(conn) end
  server:close()
  log("stopped")
  return true
end

return M
