-- Stub Telnyx API server for the test suite.
--
-- Usage: lua5.4 spec/support/stub.lua --port-file FILE [--host 127.0.0.1]
--                                     [--parent-pid PID] [--idle-timeout SECONDS]
--
-- Binds a free port, writes the port number to FILE (atomically), then serves
-- HTTP/1.1 until POST /__stub/shutdown, until the parent process (if given)
-- is gone, or until it has been idle for --idle-timeout seconds (default 600).
-- See spec/support/helpers.lua for the client side of the control API.
--
-- Single process, single thread: a socket.select loop drives one coroutine per
-- connection; coroutines yield (read socket, write socket, deadline) triples.
-- Needs only luasocket and lua-cjson; works with Lua 5.1 to 5.4.

-- fixtures.lua sits beside this script, wherever the stub is started from
package.path = (arg and arg[0] and arg[0]:match("^(.*)/[^/]+$") or ".") .. "/?.lua;" .. package.path

local socket = require "socket"
local cjson = require("cjson").new()
local fixtures = require "fixtures"

local null = cjson.null
local unpack = table.unpack or unpack -- luacheck: ignore 143

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

local opts = { host = "127.0.0.1", idle_timeout = 600 }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then
      name = a:match("^%-%-([%w%-]+)$")
      value = arg[i + 1]
      i = i + 1
    end
    if not name or value == nil then
      io.stderr:write("stub: bad argument: ", tostring(a), "\n")
      os.exit(2)
    end
    opts[name:gsub("%-", "_")] = value
    i = i + 1
  end
  opts.idle_timeout = tonumber(opts.idle_timeout) or 600
  opts.parent_pid = tonumber(opts.parent_pid)
end

if not opts.port_file then
  io.stderr:write("usage: stub.lua --port-file FILE [--host ADDR] [--parent-pid PID] [--idle-timeout S]\n")
  os.exit(2)
end

local function log(...)
  local parts = { os.date("!%H:%M:%S"), "stub:" }
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
-- JSON helpers: cjson cannot tell [] from {}; we mark empty arrays with a
-- placeholder string and substitute it in the encoded output.
---------------------------------------------------------------------------

local EMPTY_ARRAY = "\1__stub_empty_array__\1"
local EMPTY_ARRAY_JSON = '"\\u0001__stub_empty_array__\\u0001"'

local EMPTY_ARRAY_PATTERN = EMPTY_ARRAY_JSON:gsub("%p", "%%%0")

-- cjson escapes "/" as "\/"; undo that so bodies look like the real API's.
-- (A backslash directly before "/" in cjson output is always that escape.)
local function json_encode(value)
  local s = cjson.encode(value)
  s = s:gsub(EMPTY_ARRAY_PATTERN, "[]")
  return (s:gsub("\\/", "/"))
end

-- Replace every empty array "[ ]" outside strings with the placeholder, so
-- that decoding and re-encoding scripted JSON keeps "[]" intact.
local function mark_empty_arrays(text)
  local out, n, i, len = {}, 0, 1, #text
  local start = 1
  while i <= len do
    local c = text:sub(i, i)
    if c == '"' then
      i = i + 1
      while i <= len do
        local d = text:sub(i, i)
        if d == "\\" then i = i + 2
        elseif d == '"' then break
        else i = i + 1 end
      end
      i = i + 1
    elseif c == "[" then
      local j = text:find("[^ \t\r\n]", i + 1)
      if j and text:sub(j, j) == "]" then
        n = n + 1; out[n] = text:sub(start, i - 1)
        n = n + 1; out[n] = '"\\u0001__stub_empty_array__\\u0001"'
        start = j + 1
        i = j + 1
      else
        i = i + 1
      end
    else
      i = i + 1
    end
  end
  n = n + 1; out[n] = text:sub(start)
  return table.concat(out)
end

local function json_decode(text, keep_empty_arrays)
  if keep_empty_arrays then text = mark_empty_arrays(text) end
  local ok, value = pcall(cjson.decode, text)
  if ok then return value end
  return nil, value
end

local function is_array(t)
  if type(t) ~= "table" then return false end
  if t == EMPTY_ARRAY then return true end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

local function array_or_empty(t)
  if t == nil or t == EMPTY_ARRAY or (type(t) == "table" and next(t) == nil) then
    return EMPTY_ARRAY
  end
  return t
end

---------------------------------------------------------------------------
-- Ids, timestamps, SIM cards
---------------------------------------------------------------------------

local uuid4 = fixtures.uuid4

local card_counter = 0
local function sim_card(kind, req)
  card_counter = card_counter + 1
  return fixtures.sim_card{
    n = card_counter,
    kind = kind,
    status = type(req.status) == "string" and req.status or nil,
    tags = type(req.tags) == "table" and array_or_empty(req.tags) or nil,
    group_id = type(req.sim_card_group_id) == "string" and req.sim_card_group_id or nil,
    null = null,
    empty_array = EMPTY_ARRAY,
  }
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

local function fmt_int(v)
  if type(v) == "number" and v == math.floor(v) then return string.format("%d", v) end
  return tostring(v)
end

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
-- State: queue and request log
---------------------------------------------------------------------------

local queue = {}
local requests = {}
local seq = 0

local function pop_entry(method, path)
  for i, e in ipairs(queue) do
    local ok = (e.match == nil or e.match == null or e.match == path)
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

---------------------------------------------------------------------------
-- Default API behaviour
---------------------------------------------------------------------------

local function err_body(code, title, detail, pointer, meta)
  local e = { code = code, title = title, detail = detail }
  if pointer then e.source = { pointer = pointer } end
  if meta then e.meta = meta end
  return e
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -1e15 and v < 1e15
end

local function default_answer(req)
  local auth = req.headers["authorization"]
  if type(auth) ~= "string" or not auth:lower():match("^bearer%s+%S") then
    return 401, nil
  end
  local body = json_decode(req.body or "")
  if type(body) ~= "table" then body = nil end

  if req.method == "POST" and req.path == "/v2/actions/purchase/esims" then
    local amount = body and body.amount
    if not is_integer(amount) then
      return 422, { errors = { err_body("10015", "Invalid parameter", "amount is required", "/amount") } }
    end
    if amount < 1 or amount > 1000 then
      return 422, { errors = { err_body("10015", "Invalid parameter",
        "amount must be an integer between 1 and 1000", "/amount") } }
    end
    local data = {}
    for i = 1, amount do data[i] = sim_card("esim", body) end
    return 202, { data = data }
  end

  if req.method == "POST" and req.path == "/v2/actions/register/sim_cards" then
    local codes = body and body.registration_codes
    if type(codes) ~= "table" or codes == EMPTY_ARRAY or not is_array(codes) or #codes == 0 then
      return 422, { errors = { err_body("10015", "Invalid parameter",
        "registration_codes is required", "/registration_codes") } }
    end
    local data, errors = {}, {}
    for i, code in ipairs(codes) do
      code = fmt_int(code)
      if code:sub(1, 3) == "999" then
        errors[#errors + 1] = err_body("10008", "Registration code not found",
          "The registration code " .. code .. " was not found",
          "/registration_codes/" .. (i - 1), { registration_code = code })
      else
        data[#data + 1] = sim_card("physical", body)
      end
    end
    local answer = { data = array_or_empty(data) }
    if #errors > 0 then answer.errors = errors end
    return 202, answer
  end

  -- GET /v2/sim_cards/{id}: a physical card with that id; ids starting
  -- "00000000" are unknown (404), like a card that was never registered.
  local id = req.method == "GET" and req.path:match("^/v2/sim_cards/([%x%-]+)$")
  if id and not id:match("^00000000") then
    local card = sim_card("physical", {})
    card.id = id
    if (req.query or ""):match("include_sim_card_group=true") then
      card.sim_card_group = { id = card.sim_card_group_id, name = "Default group" }
    end
    return 200, { data = card }
  end

  return 404, { errors = { err_body("10005", "Resource not found",
    "The requested resource or URL could not be found.") } }
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
  return json_encode({ data = sim_card("esim", {}) })
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

-- Returns true to keep the connection open for more requests.
local function serve_scripted(conn, entry, keep_alive, method)
  local mode = entry.mode
  if mode == null then mode = nil end
  local req_id = not (type(entry.headers) == "table" and entry.headers["x-request-id"] ~= nil)
  sleep(tonumber(entry.delay))

  if mode == "stall" or mode == "stall_accept" then
    hold(conn, tonumber(entry.duration) or MAX_HOLD)
    return false
  elseif mode == "close" then
    close_conn(conn)
    return false
  elseif mode == "reset" then
    pcall(conn.sock.setoption, conn.sock, "linger", { on = true, timeout = 0 })
    close_conn(conn)
    return false
  elseif mode == "raw" then
    send_all(conn, type(entry.body) == "string" and entry.body or "")
    close_conn(conn)
    return false
  elseif mode == "huge" then
    send_huge(conn, entry, req_id)
    close_conn(conn)
    return false
  elseif mode == "trickle" or mode == "close_mid_body" then
    local body, is_json = entry_body(entry)
    if body == "" then body, is_json = default_fault_body(), true end
    local headers, seen = build_headers(entry.headers, body, is_json and "application/json", req_id)
    if mode == "close_mid_body" then keep_alive = false end
    if not keep_alive and not seen["connection"] then headers[#headers + 1] = { "Connection", "close" } end
    if not send_all(conn, response_head(tonumber(entry.status) or 200, headers)) then
      return false
    end
    if mode == "close_mid_body" then
      send_all(conn, body:sub(1, math.floor(#body / 2)))
      close_conn(conn)
      return false
    end
    local interval = tonumber(entry.interval) or 1.0
    for i = 1, #body do
      if not send_all(conn, body:sub(i, i)) then return false end
      if i < #body then sleep(interval) end
    end
    return keep_alive
  elseif mode ~= nil then
    log("unknown mode", tostring(mode), "- answering normally")
  end

  local status = tonumber(entry.status) or 200
  local body, is_json = entry_body(entry)
  local no_body = status < 200 or status == 204 or status == 304
  local headers, seen = build_headers(entry.headers, (not no_body) and body or nil,
    is_json and "application/json", req_id)
  if seen["connection"] then
    for name, v in pairs(entry.headers) do
      if type(name) == "string" and name:lower() == "connection" and has_token(v, "close") then
        keep_alive = false
      end
    end
  elseif not keep_alive then
    headers[#headers + 1] = { "Connection", "close" }
  end
  local out = response_head(status, headers)
  if method ~= "HEAD" and not no_body then out = out .. body end
  if not send_all(conn, out) then return false end
  return keep_alive
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
-- Control endpoints
---------------------------------------------------------------------------

local function control(req)
  local p = req.path
  if p == "/__stub/queue" and req.method == "POST" then
    local entries, err = json_decode(req.body or "", true)
    if type(entries) ~= "table" then
      return 400, { error = "queue body must be a JSON array or object: " .. tostring(err) }
    end
    if entries == EMPTY_ARRAY then entries = {} end
    if not is_array(entries) then entries = { entries } end
    for _, e in ipairs(entries) do
      if type(e) ~= "table" or e == EMPTY_ARRAY then
        return 400, { error = "each queue entry must be a JSON object" }
      end
    end
    for _, e in ipairs(entries) do queue[#queue + 1] = e end
    return 200, { queued = #entries, pending = #queue }
  elseif p == "/__stub/queue" and req.method == "GET" then
    local list = {}
    for i, e in ipairs(queue) do
      local copy = {}
      for k, v in pairs(e) do if k ~= "_left" then copy[k] = v end end
      copy.remaining = e._left or math.max(1, math.floor(tonumber(e["repeat"]) or 1))
      list[i] = copy
    end
    return 200, array_or_empty(list)
  elseif p == "/__stub/requests" and req.method == "GET" then
    return 200, array_or_empty(requests)
  elseif p == "/__stub/reset" and req.method == "POST" then
    queue, requests = {}, {}
    return 200, { reset = true }
  elseif p == "/__stub/shutdown" and req.method == "POST" then
    return 200, { shutdown = true }, true
  end
  return 404, { error = "unknown control endpoint " .. req.method .. " " .. p }
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

local function handle(conn)
  while running and not conn.closed do
    local req, err = read_head(conn)
    if not req then
      if err ~= "closed" and err ~= "timeout" and not conn.closed then
        send_simple(conn, 400, json_encode({ error = tostring(err) }), false)
      end
      break
    end
    last_activity = now()

    if req.path:sub(1, 8) == "/__stub/" then
      local body, berr = read_body(conn, req)
      if not body then
        if berr ~= "closed" and berr ~= "timeout" then
          send_simple(conn, 400, json_encode({ error = tostring(berr) }), false)
        end
        break
      end
      req.body = body
      local status, answer, stop = control(req)
      local keep = req.keep_alive and not stop
      local sent = send_simple(conn, status, json_encode(answer), keep, nil, req.method)
      if stop then
        close_conn(conn)
        running = false
      end
      if not sent or not keep then break end
    else
      local entry = pop_entry(req.method, req.path)
      if entry and entry.mode == "stall_accept" then
        req.body = ""
        record(req)
        sleep(tonumber(entry.delay))
        hold(conn, tonumber(entry.duration) or MAX_HOLD)
        break
      end
      local body, berr = read_body(conn, req)
      if not body then
        if berr ~= "closed" and berr ~= "timeout" then
          send_simple(conn, berr == "body too large" and 413 or 400,
            json_encode({ error = tostring(berr) }), false)
        end
        break
      end
      req.body = body
      record(req)
      local keep
      if entry then
        keep = serve_scripted(conn, entry, req.keep_alive, req.method)
      else
        local status, answer = default_answer(req)
        local text = answer and json_encode(answer) or ""
        keep = req.keep_alive
        if not send_simple(conn, status, text, keep, { { "x-request-id", uuid4() } }, req.method) then
          break
        end
      end
      if not keep then break end
    end
  end
  close_conn(conn)
end

---------------------------------------------------------------------------
-- Main loop
---------------------------------------------------------------------------

local server = assert(socket.bind(opts.host, 0, 128))
server:settimeout(0)
local _, port = server:getsockname()

do
  local tmp = opts.port_file .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(tostring(port), "\n")
  f:close()
  assert(os.rename(tmp, opts.port_file))
end
log("listening on", opts.host .. ":" .. tostring(port), "parent pid", tostring(opts.parent_pid))

local conn_counter = 0

local function resume(co, ...)
  local ok, r, w, d = coroutine.resume(co, ...)
  if not ok then
    log("connection handler error:", tostring(r))
  end
  if not ok or coroutine.status(co) == "dead" then
    local conn = conns[co]
    if conn then close_conn(conn) end
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
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= "Z" and state ~= "X"
end

local next_housekeeping = now() + 1
while running do
  local recvt, sendt = { server }, {}
  local deadline = now() + 1
  for _, w in pairs(waits) do
    if w.r then recvt[#recvt + 1] = w.r end
    if w.w then sendt[#sendt + 1] = w.w end
    if w.d and w.d < deadline then deadline = w.d end
  end
  local timeout = deadline - now()
  if timeout < 0 then timeout = 0 end
  local ok, readable, writable = pcall(socket.select, recvt, sendt, timeout)
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

  if t >= next_housekeeping then
    next_housekeeping = t + 2
    if not parent_alive() then
      log("parent process gone, exiting")
      running = false
    elseif t - last_activity > opts.idle_timeout and n_conns == 0 then
      log("idle for", opts.idle_timeout, "seconds, exiting")
      running = false
    end
  end
end

-- Give coroutines a moment to flush (the shutdown answer is already sent
-- synchronously before `running` is checked again), then close everything.
for _, conn in pairs(conns) do close_conn(conn) end
server:close()
log("stopped")
os.exit(0)
