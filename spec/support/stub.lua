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
--
-- Every API request (any path outside /__stub/) is logged, then answered by
-- the first matching scripted queue entry if there is one (fault modes:
-- stall, stall_accept, close, reset, raw, huge, trickle (trickle_head = true: from the status line on),
-- close_mid_body),
-- else by the emulated API: the 45 SIM card operations of
-- ../shared/telnyx-openapi/sim-cards-full.json, stateful (see the route
-- table and the handlers' comments for the rules the stub picked).
--
-- Control API (JSON, no auth):
--   POST /__stub/queue      queue scripted responses (an object or an array)
--   GET  /__stub/queue      the entries not consumed yet
--   GET  /__stub/requests   the request log: method, path, query, headers, body, conn, seq
--   POST /__stub/reset      empty queue and log, fresh API state, default config, stats zeroed
--   GET  /__stub/config     the settings; POST /__stub/config {...} changes some:
--                           action_delay (s, 0.2), delay (s, 0), implicit_cards (true)
--   GET  /__stub/stats      {requests, in_flight, in_flight_peak} of API requests
--   GET  /__stub/state      every record of the emulated API
--   POST /__stub/seed       add records: {sim_card_groups, sim_cards, used_registration_codes}
--   GET  /__stub/routes     the route table: [{method, path}]
--   POST /__stub/shutdown
-- An API request's "X-Stub-Delay: seconds" header (else config.delay) holds
-- its answer that long without blocking other connections.

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

---------------------------------------------------------------------------
-- Stub settings (POST /__stub/config; POST /__stub/reset restores these)
--   action_delay    seconds an async action (SIM card, bulk, group) stays
--                   "in-progress" before it completes
--   delay           seconds every API answer waits (a request's X-Stub-Delay
--                   header overrides it); other connections go on meanwhile
--   implicit_cards  a well-formed SIM card id the stub has never seen (and
--                   not starting "00000000") names an existing physical card
--                   of the account, created on first use; false: unknown
---------------------------------------------------------------------------

local DEFAULT_CONFIG = { action_delay = 0.2, delay = 0, implicit_cards = true }
local config = {}

local function reset_config()
  config = {}
  for k, v in pairs(DEFAULT_CONFIG) do config[k] = v end
end
reset_config()

-- Seconds to hold this API request's answer, or nil.
local function request_delay(req)
  local d = tonumber(req.headers["x-stub-delay"] or "") or config.delay
  if d and d > 0 then return math.min(d, MAX_HOLD) end
  return nil
end

---------------------------------------------------------------------------
-- Query strings: "&"-separated name=value pairs; names and values are
-- percent-decoded and "+" is a space (form decoding, as the real API's
-- server reads them: a literal "+" must be sent as %2B). A repeated name
-- joins its values with "," like the comma-joined array filters.
---------------------------------------------------------------------------

local function url_decode(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(query)
  local params = {}
  for pair in (query or ""):gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=(.*)$")
    if not name then name, value = pair, "" end
    name, value = url_decode(name), url_decode(value)
    params[name] = params[name] and (params[name] .. "," .. value) or value
  end
  return params
end

-- "a,b,,c" -> { "a", "b", "c" }; nil -> {}
local function split_list(value)
  local list = {}
  for item in (value or ""):gmatch("[^,]+") do list[#list + 1] = item end
  return list
end

---------------------------------------------------------------------------
-- API state, all of it in one table, rebuilt by POST /__stub/reset.
-- A store keeps records in creation order (lists answer oldest first) and
-- by id. Records hold their JSON fields plus internal ones named "_...".
---------------------------------------------------------------------------

local DEFAULT_GROUP_ID = fixtures.DEFAULT_GROUP_ID
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function new_store() return { list = {}, by_id = {} } end

local function store_add(store, rec)
  store.list[#store.list + 1] = rec
  store.by_id[rec.id] = rec
  return rec
end

local function store_remove(store, id)
  store.by_id[id] = nil
  for i, rec in ipairs(store.list) do
    if rec.id == id then table.remove(store.list, i); return end
  end
end

local function stamp(t) return fixtures.iso8601(t or now()) end

local state

local function reset_state()
  local t = now()
  state = {
    cards = new_store(),          -- SIM cards (SIMCard fields)
    groups = new_store(),         -- SIM card groups
    actions = new_store(),        -- SIM card actions
    bulk_actions = new_store(),   -- bulk SIM card actions
    group_actions = new_store(),  -- SIM card group actions
    orders = new_store(),         -- SIM card orders
    notifications = new_store(),  -- data usage notifications
    public_ips = {},              -- SIM card id -> SIMCardPublicIP
    used_codes = {},              -- registration code -> true (codes are single-use)
    deleted_cards = {},           -- SIM card id -> true (never implicit again)
    pending = {},                 -- in-progress actions, completed lazily
    n_cards = 0,                  -- numbers cards: iccid, imsi, msisdn
    n_ips = 0,                    -- numbers public IPs
  }
  store_add(state.groups, {
    id = DEFAULT_GROUP_ID, record_type = "sim_card_group", name = fixtures.DEFAULT_GROUP_NAME,
    default = true, data_limit = null, private_wireless_gateway_id = null, wireless_blocklist_id = null,
    created_at = stamp(t), updated_at = stamp(t),
  })
end
reset_state()

---------------------------------------------------------------------------
-- Records: creation and JSON rendering
---------------------------------------------------------------------------

-- A shallow copy without the internal "_..." fields.
local function public(rec)
  local out = {}
  for k, v in pairs(rec) do
    if type(k) ~= "string" or k:sub(1, 1) ~= "_" then out[k] = v end
  end
  return out
end

local function copy_list(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

local function set_status(card, value, t)
  card.status = { value = value, reason = fixtures.STATUS_REASONS[value] or null }
  card.updated_at = stamp(t)
end

-- fields: { id =, status =, tags = {list}, sim_card_group_id =, no_group = true: in no group }
local function new_card(kind, fields, t)
  t = t or now()
  state.n_cards = state.n_cards + 1
  local n = state.n_cards
  local card = fixtures.sim_card{ n = n, kind = kind, null = null, empty_array = EMPTY_ARRAY }
  card.id = fields.id or card.id
  card.tags = copy_list(fields.tags or {})
  if fields.no_group then
    card.sim_card_group_id = nil
  else
    card.sim_card_group_id = fields.sim_card_group_id or DEFAULT_GROUP_ID
  end
  card.authorized_imeis = nil
  card.resources_with_in_progress_actions = nil
  card.created_at = stamp(t)
  set_status(card, fields.status or "enabled", t)
  card._n, card._t, card._pending = n, t, 0
  return store_add(state.cards, card)
end

-- how: { full = SIMCard rather than SimpleSIMCard, include_group =, pin_puk = }
local function render_card(card, how)
  how = how or {}
  local out = public(card)
  out.tags = array_or_empty(card.tags)
  out.authorized_imeis = card.authorized_imeis and array_or_empty(card.authorized_imeis) or null
  out.sim_card_group_id = card.sim_card_group_id or null
  out.actions_in_progress = card._pending > 0
  out.resources_with_in_progress_actions = EMPTY_ARRAY
  if how.full then
    out.live_data_session = "disconnected"
    if how.pin_puk then out.pin_puk_codes = fixtures.pin_puk_codes(card._n) end
  end
  if how.include_group then
    local group = card.sim_card_group_id and state.groups.by_id[card.sim_card_group_id]
    if group then out.sim_card_group = { id = group.id, name = group.name } end
  end
  return out
end

local function megabytes(amount)
  if type(amount) ~= "table" then return 0 end
  local value = tonumber(amount.amount) or 0
  return amount.unit == "GB" and value * 1024 or value
end

local function group_cards(group_id)
  local list = {}
  for _, card in ipairs(state.cards.list) do
    if card.sim_card_group_id == group_id then list[#list + 1] = card end
  end
  return list
end

-- SIMCardGroup; searched = SearchedSIMCardGroup (with sim_card_count).
local function render_group(group, searched, include_iccids)
  local out = public(group)
  local cards = group_cards(group.id)
  local used = 0
  for _, card in ipairs(cards) do used = used + megabytes(card.current_billing_period_consumed_data) end
  out.consumed_data = { amount = string.format("%.1f", used), unit = "MB" }
  if searched then out.sim_card_count = #cards end
  if include_iccids then
    local iccids = {}
    for i, card in ipairs(cards) do iccids[i] = card.iccid end
    out.iccids = array_or_empty(iccids)
  end
  return out
end

local function render_bulk_action(bulk)
  local out = public(bulk)
  local counts, order = {}, { "in-progress", "completed", "failed", "interrupted" }
  for _, action in ipairs(state.actions.list) do
    if action._bulk == bulk.id then
      counts[action.status.value] = (counts[action.status.value] or 0) + 1
    end
  end
  local summary = {}
  for _, status in ipairs(order) do
    if counts[status] then summary[#summary + 1] = { status = status, count = counts[status] } end
  end
  out.sim_card_actions_summary = array_or_empty(summary)
  return out
end

---------------------------------------------------------------------------
-- Async actions. Each action is due `config.action_delay` seconds after it
-- was made. settle(), run before every API answer, completes the due ones
-- (stamping them with their due time), so nothing needs a timer.
---------------------------------------------------------------------------

local CARD_EFFECTS = {
  enable = function(card, _, t) set_status(card, "enabled", t) end,
  disable = function(card, _, t) set_status(card, "disabled", t) end,
  set_standby = function(card, _, t) set_status(card, "standby", t) end,
  enable_voice = function(card, _, t) card.voice_enabled = true; card.updated_at = stamp(t) end,
  disable_voice = function(card, _, t) card.voice_enabled = false; card.updated_at = stamp(t) end,
  set_public_ip = function(card, _, t)
    local ip = state.public_ips[card.id]
    if ip then
      state.n_ips = state.n_ips + 1
      ip.ip = string.format("198.51.%d.%d", 100 + math.floor(state.n_ips / 254) % 100, state.n_ips % 254 + 1)
      ip.updated_at = stamp(t)
    end
  end,
  remove_public_ip = function(card) state.public_ips[card.id] = nil end,
}

local GROUP_EFFECTS = {
  set_private_wireless_gateway = function(group, action)
    group.private_wireless_gateway_id = action.settings.private_wireless_gateway_id
  end,
  remove_private_wireless_gateway = function(group) group.private_wireless_gateway_id = null end,
  set_wireless_blocklist = function(group, action)
    group.wireless_blocklist_id = action.settings.wireless_blocklist_id
  end,
  remove_wireless_blocklist = function(group) group.wireless_blocklist_id = null end,
}

-- Ends a SIM card action (value: completed, failed or interrupted).
local function finish_card_action(action, value, reason, t)
  action.status = { value = value, reason = reason or null }
  action.updated_at = stamp(t)
  action._card._pending = action._card._pending - 1
end

local function complete(action)
  local t = action._due
  if action.record_type == "sim_card_group_action" then
    if action.status ~= "in-progress" then return end
    local group = state.groups.by_id[action.sim_card_group_id]
    if group then
      GROUP_EFFECTS[action.type](group, action)
      group.updated_at = stamp(t)
    end
    action.status = group and "completed" or "failed"
    action.updated_at = stamp(t)
    return
  end
  if action.status.value ~= "in-progress" then return end -- interrupted meanwhile
  local card = action._card
  if state.cards.by_id[card.id] ~= card then
    finish_card_action(action, "failed", "The SIM card was deleted.", t)
    return
  end
  CARD_EFFECTS[action.action_type](card, action, t)
  finish_card_action(action, "completed", nil, t)
end

local function settle()
  local t = now()
  local due, left = {}, {}
  for _, action in ipairs(state.pending) do
    if action._due <= t then due[#due + 1] = action else left[#left + 1] = action end
  end
  state.pending = left
  table.sort(due, function(a, b)
    if a._due ~= b._due then return a._due < b._due end
    return a._seq < b._seq
  end)
  for _, action in ipairs(due) do complete(action) end
end

local action_seq = 0
local function schedule(action, t)
  action_seq = action_seq + 1
  action._due, action._seq = t + config.action_delay, action_seq
  state.pending[#state.pending + 1] = action
end

-- A SIMCardAction on `card`, in progress. bulk_id: its bulk action, if any.
local function new_card_action(card, action_type, settings, bulk_id)
  local t = now()
  local action = store_add(state.actions, {
    id = uuid4(), record_type = "sim_card_action", action_type = action_type, sim_card_id = card.id,
    status = { value = "in-progress", reason = null }, settings = settings or {},
    created_at = stamp(t), updated_at = stamp(t),
    _card = card, _bulk = bulk_id,
  })
  card._pending = card._pending + 1
  schedule(action, t)
  return action
end

local STATUS_ACTIONS = { enable = true, disable = true, set_standby = true }

-- A newer enable/disable/set_standby interrupts the card's older ones.
local function interrupt_status_actions(card)
  local t = now()
  for _, action in ipairs(state.pending) do
    if action._card == card and STATUS_ACTIONS[action.action_type] and action.status.value == "in-progress" then
      finish_card_action(action, "interrupted", "A later action on the SIM card replaced this one.", t)
    end
  end
end

local function new_group_action(group, action_type, settings)
  local t = now()
  local action = store_add(state.group_actions, {
    id = uuid4(), record_type = "sim_card_group_action", type = action_type, sim_card_group_id = group.id,
    status = "in-progress", settings = settings or {}, created_at = stamp(t), updated_at = stamp(t),
  })
  schedule(action, t)
  return action
end

---------------------------------------------------------------------------
-- Errors and validation. Handlers call reject(...) (or a shortcut) to end
-- with an error answer; dispatch() catches it. Error codes: 10005 not
-- found, 10015 invalid parameter, 10008 unknown registration code (used by
-- existing specs); 10006 method not allowed, 10009 registration code
-- already used, 10011 not possible in the resource's state (stub's own).
---------------------------------------------------------------------------

local function err_body(code, title, detail, pointer, meta)
  local e = { code = code, title = title, detail = detail }
  if pointer then e.source = { pointer = pointer } end
  if meta then e.meta = meta end
  return e
end

local Rejection = {}

local function reject(status, body)
  error(setmetatable({ status = status, body = body }, Rejection), 0)
end

-- 422 for a body field (JSON pointer) ...
local function bad_field(pointer, detail)
  reject(422, { errors = { err_body("10015", "Invalid parameter", detail, pointer) } })
end

-- ... and for a query parameter.
local function bad_param(name, detail)
  local e = err_body("10015", "Invalid parameter", detail)
  e.source = { parameter = name }
  reject(422, { errors = { e } })
end

local function not_allowed(detail)
  reject(422, { errors = { err_body("10011", "Operation not allowed", detail) } })
end

-- 404 as { errors: [...] } (wireless_GenericErrorResponse) or, bare = true,
-- as one error object (wireless_ResourceNotFound, where the document says so).
local function not_found(what, id, bare)
  local e = err_body("10005", "Resource not found", what .. " " .. tostring(id) .. " was not found.")
  reject(404, bare and e or { errors = { e } })
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -1e15 and v < 1e15
end

-- The decoded body if it is a JSON object, else {}.
local function body_object(req)
  local b = req.json
  if type(b) == "table" and (next(b) == nil or not is_array(b)) then return b end
  return {}
end

-- An array of strings (a fresh Lua list; [] -> {}), or a 422.
local function string_list(v, pointer)
  if v == EMPTY_ARRAY then return {} end
  if type(v) == "table" and is_array(v) then
    for _, item in ipairs(v) do
      if type(item) ~= "string" then bad_field(pointer, pointer:sub(2) .. " must be an array of strings") end
    end
    return copy_list(v)
  end
  bad_field(pointer, pointer:sub(2) .. " must be an array of strings")
end

local function required_string(b, name)
  local v = b[name]
  if type(v) ~= "string" or v == "" or v == EMPTY_ARRAY then bad_field("/" .. name, name .. " is required") end
  return v
end

local function required_uuid(b, name)
  local v = required_string(b, name)
  if not v:match(UUID) then bad_field("/" .. name, name .. " must be a UUID") end
  return v
end

-- { amount = decimal string, unit = MB | GB }
local function data_amount(v, pointer)
  if type(v) ~= "table" or type(v.amount) ~= "string" or not v.amount:match("^%d+%.?%d*$")
      or (v.unit ~= "MB" and v.unit ~= "GB") then
    bad_field(pointer, pointer:sub(2) .. " must be {amount: decimal string, unit: MB or GB}")
  end
  return { amount = v.amount, unit = v.unit }
end

local function positive_integer(b, name)
  local v = b[name]
  if not is_integer(v) or v < 1 then bad_field("/" .. name, name .. " must be an integer >= 1") end
  return v
end

local function bool_param(params, name)
  local v = params[name]
  if v == nil or v == "false" then return false end
  if v == "true" then return true end
  bad_param(name, name .. " must be true or false")
end

---------------------------------------------------------------------------
-- Paging: page[number] >= 1 (default 1), page[size] 1..250 (default 20);
-- meta.total_pages is 0 when nothing matches.
---------------------------------------------------------------------------

local function page_param(params, name, default, max)
  local v = params[name]
  if v == nil then return default end
  local n = v:match("^%d+$") and tonumber(v)
  if not n or n < 1 or (max and n > max) then
    bad_param(name, name .. " must be an integer from 1" .. (max and (" to " .. max) or ""))
  end
  return n
end

local function paged(req, list, render)
  local number = page_param(req.params, "page[number]", 1)
  local size = page_param(req.params, "page[size]", 20, 250)
  local data = {}
  for i = (number - 1) * size + 1, math.min(#list, number * size) do
    data[#data + 1] = render and render(list[i]) or public(list[i])
  end
  return 200, {
    data = array_or_empty(data),
    meta = { page_number = number, page_size = size, total_pages = math.ceil(#list / size), total_results = #list },
  }
end

-- The records of `list` for which keep(record) is true.
local function filter_list(list, keep)
  local out = {}
  for _, rec in ipairs(list) do
    if keep(rec) then out[#out + 1] = rec end
  end
  return out
end

---------------------------------------------------------------------------
-- Handlers. Each takes (req, path captures...) with req.params (the query)
-- and req.json (the decoded body, empty arrays marked) and returns
-- status, body [, extra headers], or reject()s.
---------------------------------------------------------------------------

-- SIM cards by id: an id the stub never saw names an implicit physical card
-- (config.implicit_cards), except ids starting "00000000" and deleted ones.
local function find_card(id)
  local card = state.cards.by_id[id]
  if card then return card end
  if config.implicit_cards and id:match(UUID) and not id:match("^00000000") and not state.deleted_cards[id] then
    return new_card("physical", { id = id })
  end
  return nil
end

local function card_or_404(id)
  return find_card(id) or not_found("SIM card", id)
end

local function group_or_404(id)
  return state.groups.by_id[id] or not_found("SIM card group", id)
end

-- Purchase and registration ------------------------------------------------

local CARD_STATUSES = { enabled = true, disabled = true, standby = true }

-- The optional fields of a purchase or registration.
local function new_card_fields(b)
  local fields = {}
  if b.status ~= nil then
    if not CARD_STATUSES[b.status] then bad_field("/status", "status must be enabled, disabled or standby") end
    fields.status = b.status
  end
  if b.tags ~= nil then fields.tags = string_list(b.tags, "/tags") end
  if b.sim_card_group_id ~= nil then
    if type(b.sim_card_group_id) ~= "string" or not state.groups.by_id[b.sim_card_group_id] then
      bad_field("/sim_card_group_id", "sim_card_group_id does not exist")
    end
    fields.sim_card_group_id = b.sim_card_group_id
  end
  return fields
end

local function purchase_esims(req)
  local b = body_object(req)
  local amount = b.amount
  if not is_integer(amount) then bad_field("/amount", "amount is required") end
  if amount < 1 or amount > 1000 then bad_field("/amount", "amount must be an integer between 1 and 1000") end
  local fields = new_card_fields(b)
  local data = {}
  for i = 1, amount do data[i] = render_card(new_card("esim", fields)) end
  return 202, { data = data }
end

-- Codes starting "999" do not exist; a code registers one card, once.
local function register_sim_cards(req)
  local b = body_object(req)
  local codes = b.registration_codes
  if type(codes) ~= "table" or not is_array(codes) or #codes == 0 then
    bad_field("/registration_codes", "registration_codes is required")
  end
  local fields = new_card_fields(b)
  local data, errors = {}, {}
  for i, code in ipairs(codes) do
    code = fmt_int(code)
    local pointer, meta = "/registration_codes/" .. (i - 1), { registration_code = code }
    if code:sub(1, 3) == "999" then
      errors[#errors + 1] = err_body("10008", "Registration code not found",
        "The registration code " .. code .. " was not found", pointer, meta)
    elseif state.used_codes[code] then
      errors[#errors + 1] = err_body("10009", "Registration code already used",
        "The registration code " .. code .. " has already been used", pointer, meta)
    else
      state.used_codes[code] = true
      data[#data + 1] = render_card(new_card("physical", fields))
    end
  end
  local answer = { data = array_or_empty(data) }
  if #errors > 0 then answer.errors = errors end
  return 202, answer
end

local function validate_registration_codes(req)
  local b = body_object(req)
  if b.registration_codes == nil then bad_field("/registration_codes", "registration_codes is required") end
  local codes = string_list(b.registration_codes, "/registration_codes")
  local data = {}
  for i, code in ipairs(codes) do
    local why = null
    if code:sub(1, 3) == "999" then why = "This code is not valid."
    elseif state.used_codes[code] then why = "This code has already been used." end
    data[i] = { record_type = "sim_card_registration_code_validation", registration_code = code,
                valid = why == null, invalid_detail = why }
  end
  return 200, { data = array_or_empty(data) }
end

-- SIM cards -----------------------------------------------------------------

local FILTER_STATUSES = {
  enabled = true, disabled = true, standby = true, data_limit_exceeded = true, unauthorized_imei = true,
  registering = true, enabling = true, disabling = true, setting_standby = true,
}

local function has_all(list, wanted)
  local have = {}
  for _, v in ipairs(list) do have[v] = true end
  for _, v in ipairs(wanted) do
    if not have[v] then return false end
  end
  return true
end

-- filter[tags] (all of), filter[status] (any of), filter[iccid] (part of),
-- filter[msisdn], filter[sim_card_group_id]; sort by consumed data.
local function list_sim_cards(req)
  local p = req.params
  local tags, statuses = split_list(p["filter[tags]"]), {}
  for _, s in ipairs(split_list(p["filter[status]"])) do
    if not FILTER_STATUSES[s] then bad_param("filter[status]", "unknown SIM card status " .. s) end
    statuses[s] = true
  end
  local any_status = next(statuses) ~= nil
  local iccid, msisdn, group = p["filter[iccid]"], p["filter[msisdn]"], p["filter[sim_card_group_id]"]
  local sort = p.sort
  if sort and sort ~= "current_billing_period_consumed_data.amount"
      and sort ~= "-current_billing_period_consumed_data.amount" then
    bad_param("sort", "sort must be current_billing_period_consumed_data.amount, optionally prefixed with -")
  end
  local cards = filter_list(state.cards.list, function(card)
    return has_all(card.tags, tags)
      and (not any_status or statuses[card.status.value])
      and (not iccid or card.iccid:find(iccid, 1, true) ~= nil)
      and (not msisdn or card.msisdn == msisdn)
      and (not group or card.sim_card_group_id == group)
  end)
  if sort then
    local descending = sort:sub(1, 1) == "-"
    for i, card in ipairs(cards) do card._rank = i end
    table.sort(cards, function(a, b)
      local ma, mb = megabytes(a.current_billing_period_consumed_data), megabytes(b.current_billing_period_consumed_data)
      if ma ~= mb then
        if descending then return ma > mb end
        return ma < mb
      end
      return a._rank < b._rank
    end)
  end
  local include_group = bool_param(p, "include_sim_card_group")
  return paged(req, cards, function(card) return render_card(card, { include_group = include_group }) end)
end

local function get_sim_card(req, id)
  local card = card_or_404(id)
  return 200, { data = render_card(card, { full = true,
    include_group = bool_param(req.params, "include_sim_card_group"),
    pin_puk = bool_param(req.params, "include_pin_puk_codes") }) }
end

-- Writable: tags, sim_card_group_id (an existing group; null: no group),
-- authorized_imeis (null clears), data_limit. Other fields are ignored.
local function update_sim_card(req, id)
  local card = card_or_404(id)
  local b = body_object(req)
  local change = {}
  if b.tags ~= nil then change.tags = string_list(b.tags, "/tags") end
  if b.sim_card_group_id == null then
    change.group = false
  elseif b.sim_card_group_id ~= nil then
    if type(b.sim_card_group_id) ~= "string" or not state.groups.by_id[b.sim_card_group_id] then
      bad_field("/sim_card_group_id", "sim_card_group_id does not exist")
    end
    change.group = b.sim_card_group_id
  end
  if b.authorized_imeis == null then
    change.imeis = false
  elseif b.authorized_imeis ~= nil then
    change.imeis = string_list(b.authorized_imeis, "/authorized_imeis")
  end
  if b.data_limit ~= nil then change.data_limit = data_amount(b.data_limit, "/data_limit") end

  if change.tags then card.tags = change.tags end
  if change.group ~= nil then card.sim_card_group_id = change.group or nil end
  if change.imeis ~= nil then card.authorized_imeis = change.imeis or nil end
  if change.data_limit then card.data_limit = change.data_limit end
  card.updated_at = stamp()
  return 200, { data = render_card(card, { full = true }) }
end

-- Removes the card at once; the answer shows it "disabling".
local function delete_sim_card(req, id)
  local card = card_or_404(id)
  bool_param(req.params, "report_lost")
  store_remove(state.cards, id)
  state.deleted_cards[id] = true
  state.public_ips[id] = nil
  set_status(card, "disabling")
  return 200, { data = render_card(card, { full = true }) }
end

-- enable, disable, set_standby: 202 with the action; the card shows the
-- transition until the action completes. Enable and standby need the card
-- to be in a group: cards are in the default group unless PATCHed to
-- sim_card_group_id null (or their group was deleted).
local TRANSITIONS = {
  enable = { during = "enabling", needs_group = true },
  disable = { during = "disabling" },
  set_standby = { during = "setting_standby", needs_group = true },
}

local function status_action(action_type)
  local rule = TRANSITIONS[action_type]
  return function(_, id)
    local card = card_or_404(id)
    if rule.needs_group and not card.sim_card_group_id then
      not_allowed("The SIM card must belong to a SIM card group for " .. action_type)
    end
    interrupt_status_actions(card)
    local action = new_card_action(card, action_type, {})
    set_status(card, rule.during)
    return 202, { data = public(action) }
  end
end

local function public_ip_region(req)
  local code = req.params.region_code or "dc2"
  for _, r in ipairs(fixtures.WIRELESS_REGIONS.public_ips) do
    if r.code == code then return code end
  end
  bad_param("region_code", "unknown region " .. code)
end

-- The public IP record exists (without "ip") from the request on and gets
-- its address when the action completes.
local function start_public_ip(card, region, bulk_id)
  if state.public_ips[card.id] then
    local action = new_card_action(card, "set_public_ip", { region_code = region }, bulk_id)
    finish_card_action(action, "failed", "The SIM card already has a public IP.", now())
    return action
  end
  local t = now()
  state.public_ips[card.id] = {
    record_type = "sim_card_public_ip", sim_card_id = card.id, region_code = region, type = "ipv4",
    created_at = stamp(t), updated_at = stamp(t),
  }
  return new_card_action(card, "set_public_ip", { region_code = region }, bulk_id)
end

local function set_public_ip(req, id)
  local card = card_or_404(id)
  local region = public_ip_region(req)
  if state.public_ips[id] then not_allowed("The SIM card already has a public IP") end
  return 202, { data = public(start_public_ip(card, region)) }
end

local function remove_public_ip(_, id)
  local card = card_or_404(id)
  if not state.public_ips[id] then not_allowed("The SIM card has no public IP") end
  return 202, { data = public(new_card_action(card, "remove_public_ip", {})) }
end

local function get_public_ip(_, id)
  card_or_404(id)
  local ip = state.public_ips[id] or not_found("Public IP of SIM card", id)
  return 200, { data = public(ip) }
end

-- eSIMs not yet installed (eid null) only.
local function get_activation_code(_, id)
  local card = card_or_404(id)
  if card.type ~= "esim" then
    not_allowed("Activation codes exist for eSIMs only; SIM card " .. id .. " is a physical SIM card")
  end
  if card.eid ~= null and card.eid ~= nil then not_allowed("The eSIM " .. id .. " has already been installed") end
  return 200, { data = { record_type = "sim_card_activation_code", activation_code = fixtures.activation_code(id) } }
end

local function get_device_details(_, id)
  local card = card_or_404(id)
  return 200, { data = fixtures.device_details(card._n) }
end

local function list_connectivity_logs(req, id)
  local card = card_or_404(id)
  local logs = {}
  for i = 1, fixtures.CONNECTIVITY_LOGS_PER_CARD do logs[i] = i end
  return paged(req, logs, function(i) return fixtures.connectivity_log(card, card._n, i, card._t) end)
end

-- SIM card actions and bulk actions --------------------------------------

local function list_sim_card_actions(req)
  local p = req.params
  local card, status = p["filter[sim_card_id]"], p["filter[status]"]
  local action_type, bulk = p["filter[action_type]"], p["filter[bulk_sim_card_action_id]"]
  return paged(req, filter_list(state.actions.list, function(a)
    return (not card or a.sim_card_id == card) and (not status or a.status.value == status)
      and (not action_type or a.action_type == action_type) and (not bulk or a._bulk == bulk)
  end))
end

local function get_sim_card_action(_, id)
  return 200, { data = public(state.actions.by_id[id] or not_found("SIM card action", id)) }
end

local function new_bulk_action(action_type, settings)
  local t = now()
  return store_add(state.bulk_actions, {
    id = uuid4(), record_type = "bulk_sim_card_action", action_type = action_type, settings = settings,
    created_at = stamp(t), updated_at = stamp(t),
  })
end

-- One voice action per card of the group.
local function bulk_voice(enable)
  return function(req)
    local group_id = required_string(body_object(req), "sim_card_group_id")
    if not state.groups.by_id[group_id] then bad_field("/sim_card_group_id", "sim_card_group_id does not exist") end
    local bulk = new_bulk_action(enable and "bulk_enable_voice" or "bulk_disable_voice",
      { sim_card_group_id = group_id })
    for _, card in ipairs(group_cards(group_id)) do
      new_card_action(card, enable and "enable_voice" or "disable_voice", {}, bulk.id)
    end
    return 202, { data = render_bulk_action(bulk) }
  end
end

-- One set_public_ip action per card; a card that already has a public IP
-- gets a failed one.
local function bulk_set_public_ips(req)
  local b = body_object(req)
  local ids = string_list(b.sim_card_ids == nil and EMPTY_ARRAY or b.sim_card_ids, "/sim_card_ids")
  if #ids == 0 then bad_field("/sim_card_ids", "sim_card_ids is required") end
  local cards = {}
  for i, id in ipairs(ids) do
    cards[i] = find_card(id) or bad_field("/sim_card_ids/" .. (i - 1), "SIM card " .. id .. " does not exist")
  end
  local bulk = new_bulk_action("bulk_set_public_ips", { sim_card_ids = ids })
  for _, card in ipairs(cards) do start_public_ip(card, "dc2", bulk.id) end
  return 202, { data = render_bulk_action(bulk) }
end

local function list_bulk_actions(req)
  local action_type = req.params["filter[action_type]"]
  return paged(req, filter_list(state.bulk_actions.list, function(b)
    return not action_type or b.action_type == action_type
  end), render_bulk_action)
end

local function get_bulk_action(_, id)
  return 200, { data = render_bulk_action(state.bulk_actions.by_id[id] or not_found("Bulk SIM card action", id)) }
end

-- SIM card groups and group actions -----------------------------------------

local function list_groups(req)
  local p = req.params
  local name, gateway, blocklist = p["filter[name]"], p["filter[private_wireless_gateway_id]"],
    p["filter[wireless_blocklist_id]"]
  return paged(req, filter_list(state.groups.list, function(g)
    return (not name or g.name == name) and (not gateway or g.private_wireless_gateway_id == gateway)
      and (not blocklist or g.wireless_blocklist_id == blocklist)
  end), function(g) return render_group(g, true) end)
end

-- name (required on create) and data_limit.
local function group_fields(b, creating)
  local fields = {}
  if creating or b.name ~= nil then fields.name = required_string(b, "name") end
  if b.data_limit ~= nil then
    local dl = b.data_limit
    if type(dl) ~= "table" or type(dl.amount) ~= "string" or (dl.unit ~= nil and type(dl.unit) ~= "string") then
      bad_field("/data_limit", "data_limit must be {amount: decimal string, unit}")
    end
    fields.data_limit = { amount = dl.amount, unit = dl.unit or "MB" }
  end
  return fields
end

local function create_group(req)
  local fields = group_fields(body_object(req), true)
  local t = now()
  local group = store_add(state.groups, {
    id = uuid4(), record_type = "sim_card_group", name = fields.name, default = false,
    data_limit = fields.data_limit or null, private_wireless_gateway_id = null, wireless_blocklist_id = null,
    created_at = stamp(t), updated_at = stamp(t),
  })
  return 200, { data = render_group(group) }
end

local function get_group(req, id)
  return 200, { data = render_group(group_or_404(id), false, bool_param(req.params, "include_iccids")) }
end

local function update_group(req, id)
  local group = group_or_404(id)
  local fields = group_fields(body_object(req), false)
  for k, v in pairs(fields) do group[k] = v end
  group.updated_at = stamp()
  return 200, { data = render_group(group) }
end

-- The default group stays; a deleted group's cards are left in no group.
local function delete_group(_, id)
  local group = group_or_404(id)
  if group.default then not_allowed("The default SIM card group can not be removed") end
  for _, card in ipairs(group_cards(id)) do card.sim_card_group_id = nil end
  local answer = render_group(group)
  store_remove(state.groups, id)
  return 200, { data = answer }
end

-- set/remove private wireless gateway or wireless blocklist: 202 with a
-- SIMCardGroupAction; the group changes when it completes.
local function group_action(action_type, field)
  local setting = action_type:match("^set_") ~= nil
  return function(req, id)
    local group = group_or_404(id)
    local settings = {}
    if setting then
      settings[field] = required_uuid(body_object(req), field)
    elseif group[field] == null or group[field] == nil then
      not_allowed("The SIM card group has no " .. field:gsub("_id$", ""):gsub("_", " "))
    end
    return 202, { data = public(new_group_action(group, action_type, settings)) }
  end
end

local function list_group_actions(req)
  local p = req.params
  local group, status, action_type = p["filter[sim_card_group_id]"], p["filter[status]"], p["filter[type]"]
  return paged(req, filter_list(state.group_actions.list, function(a)
    return (not group or a.sim_card_group_id == group) and (not status or a.status == status)
      and (not action_type or a.type == action_type)
  end))
end

local function get_group_action(_, id)
  return 200, { data = public(state.group_actions.by_id[id] or not_found("SIM card group action", id)) }
end

-- Orders ------------------------------------------------------------------

local function money(amount)
  return { amount = string.format("%.2f", amount), currency = fixtures.ORDER_PRICES.currency }
end

local function order_request(req)
  local b = body_object(req)
  return positive_integer(b, "quantity"), required_string(b, "address_id")
end

local function preview_order(req)
  local quantity = order_request(req)
  local prices = fixtures.ORDER_PRICES
  return 202, { data = {
    record_type = "sim_card_order_preview", quantity = quantity,
    sim_cards_cost = money(quantity * prices.per_sim_card), shipping_cost = money(prices.shipping),
    total_cost = money(quantity * prices.per_sim_card + prices.shipping),
  } }
end

local function create_order(req)
  local quantity, address_id = order_request(req)
  local prices = fixtures.ORDER_PRICES
  local address = { id = address_id }
  for k, v in pairs(fixtures.ORDER_ADDRESS) do address[k] = v end
  local t = now()
  local order = store_add(state.orders, {
    id = uuid4(), record_type = "sim_card_order", quantity = quantity, status = "pending",
    cost = money(quantity * prices.per_sim_card + prices.shipping), order_address = address,
    tracking_url = null, created_at = stamp(t), updated_at = stamp(t),
  })
  return 200, { data = public(order) }
end

-- filter[quantity], filter[cost.amount], filter[address.locality], ...:
-- exact matches; "address." reads order_address.
local function list_orders(req)
  local filters = {}
  for name, value in pairs(req.params) do
    local key = name:match("^filter%[(.+)%]$")
    if key then filters[#filters + 1] = { key:gsub("^address%.", "order_address."), value } end
  end
  return paged(req, filter_list(state.orders.list, function(order)
    for _, f in ipairs(filters) do
      local v = order
      for part in f[1]:gmatch("[^%.]+") do v = type(v) == "table" and v[part] or nil end
      if v == nil or fmt_int(v) ~= f[2] then return false end
    end
    return true
  end))
end

local function get_order(_, id)
  return 200, { data = public(state.orders.by_id[id] or not_found("SIM card order", id, true)) }
end

-- Data usage notifications ------------------------------------------------

local function notification_fields(b, creating)
  local fields = {}
  if creating or b.sim_card_id ~= nil then
    local id = required_string(b, "sim_card_id")
    if not find_card(id) then bad_field("/sim_card_id", "SIM card " .. id .. " does not exist") end
    fields.sim_card_id = id
  end
  if creating or b.threshold ~= nil then fields.threshold = data_amount(b.threshold, "/threshold") end
  return fields
end

local function list_notifications(req)
  local card = req.params["filter[sim_card_id]"]
  return paged(req, filter_list(state.notifications.list, function(n)
    return not card or n.sim_card_id == card
  end))
end

local function create_notification(req)
  local fields = notification_fields(body_object(req), true)
  local t = now()
  local n = store_add(state.notifications, {
    id = uuid4(), record_type = "sim_card_data_usage_notification", sim_card_id = fields.sim_card_id,
    threshold = fields.threshold, created_at = stamp(t), updated_at = stamp(t),
  })
  return 201, { data = public(n) }
end

local function get_notification(_, id)
  return 200, { data = public(state.notifications.by_id[id] or not_found("Data usage notification", id, true)) }
end

local function update_notification(req, id)
  local n = state.notifications.by_id[id] or not_found("Data usage notification", id)
  for k, v in pairs(notification_fields(body_object(req), false)) do n[k] = v end
  n.updated_at = stamp()
  return 200, { data = public(n) }
end

local function delete_notification(_, id)
  local n = state.notifications.by_id[id] or not_found("Data usage notification", id)
  store_remove(state.notifications, id)
  return 200, { data = public(n) }
end

-- Reference data ----------------------------------------------------------

-- product is required (422); an unknown product is a bare 404.
local function list_regions(req)
  local product = req.params.product
  if product == nil or product == "" then bad_param("product", "product is required") end
  local regions = fixtures.WIRELESS_REGIONS[product] or not_found("Product", product, true)
  return 200, { data = regions }
end

-- filter[name][starts_with|contains|ends_with] (case-insensitive),
-- filter[country_code|mcc|mnc|tadig] (exact), filter[network_preferences_enabled].
local function list_mobile_network_operators(req)
  local p = req.params
  local function lower(name) return p[name] and p[name]:lower() end
  local starts, contains, ends = lower("filter[name][starts_with]"), lower("filter[name][contains]"),
    lower("filter[name][ends_with]")
  local prefs = p["filter[network_preferences_enabled]"]
  if prefs ~= nil and prefs ~= "true" and prefs ~= "false" then
    bad_param("filter[network_preferences_enabled]", "must be true or false")
  end
  return paged(req, filter_list(fixtures.MOBILE_NETWORK_OPERATORS, function(op)
    local name = op.name:lower()
    for _, field in ipairs{ "country_code", "mcc", "mnc", "tadig" } do
      local want = p["filter[" .. field .. "]"]
      if want and op[field] ~= want then return false end
    end
    return (not starts or name:sub(1, #starts) == starts)
      and (not contains or name:find(contains, 1, true) ~= nil)
      and (not ends or name:sub(-#ends) == ends)
      and (not prefs or tostring(op.network_preferences_enabled) == prefs)
  end))
end

---------------------------------------------------------------------------
-- Route table: the document's 45 operations. {id} matches one path segment.
---------------------------------------------------------------------------

local ROUTES = {
  -- purchase and registration
  { "POST", "/v2/actions/purchase/esims", purchase_esims },
  { "POST", "/v2/actions/register/sim_cards", register_sim_cards },
  -- SIM cards
  { "GET", "/v2/sim_cards", list_sim_cards },
  { "POST", "/v2/sim_cards/actions/validate_registration_codes", validate_registration_codes },
  { "POST", "/v2/sim_cards/actions/bulk_enable_voice", bulk_voice(true) },
  { "POST", "/v2/sim_cards/actions/bulk_disable_voice", bulk_voice(false) },
  { "POST", "/v2/sim_cards/actions/bulk_set_public_ips", bulk_set_public_ips },
  { "GET", "/v2/sim_cards/{id}", get_sim_card },
  { "PATCH", "/v2/sim_cards/{id}", update_sim_card },
  { "DELETE", "/v2/sim_cards/{id}", delete_sim_card },
  { "POST", "/v2/sim_cards/{id}/actions/enable", status_action("enable") },
  { "POST", "/v2/sim_cards/{id}/actions/disable", status_action("disable") },
  { "POST", "/v2/sim_cards/{id}/actions/set_standby", status_action("set_standby") },
  { "POST", "/v2/sim_cards/{id}/actions/set_public_ip", set_public_ip },
  { "POST", "/v2/sim_cards/{id}/actions/remove_public_ip", remove_public_ip },
  { "GET", "/v2/sim_cards/{id}/public_ip", get_public_ip },
  { "GET", "/v2/sim_cards/{id}/activation_code", get_activation_code },
  { "GET", "/v2/sim_cards/{id}/device_details", get_device_details },
  { "GET", "/v2/sim_cards/{id}/wireless_connectivity_logs", list_connectivity_logs },
  -- SIM card actions and bulk actions
  { "GET", "/v2/sim_card_actions", list_sim_card_actions },
  { "GET", "/v2/sim_card_actions/{id}", get_sim_card_action },
  { "GET", "/v2/bulk_sim_card_actions", list_bulk_actions },
  { "GET", "/v2/bulk_sim_card_actions/{id}", get_bulk_action },
  -- SIM card groups and their actions
  { "GET", "/v2/sim_card_groups", list_groups },
  { "POST", "/v2/sim_card_groups", create_group },
  { "GET", "/v2/sim_card_groups/{id}", get_group },
  { "PATCH", "/v2/sim_card_groups/{id}", update_group },
  { "DELETE", "/v2/sim_card_groups/{id}", delete_group },
  { "POST", "/v2/sim_card_groups/{id}/actions/set_private_wireless_gateway",
    group_action("set_private_wireless_gateway", "private_wireless_gateway_id") },
  { "POST", "/v2/sim_card_groups/{id}/actions/remove_private_wireless_gateway",
    group_action("remove_private_wireless_gateway", "private_wireless_gateway_id") },
  { "POST", "/v2/sim_card_groups/{id}/actions/set_wireless_blocklist",
    group_action("set_wireless_blocklist", "wireless_blocklist_id") },
  { "POST", "/v2/sim_card_groups/{id}/actions/remove_wireless_blocklist",
    group_action("remove_wireless_blocklist", "wireless_blocklist_id") },
  { "GET", "/v2/sim_card_group_actions", list_group_actions },
  { "GET", "/v2/sim_card_group_actions/{id}", get_group_action },
  -- orders
  { "POST", "/v2/sim_card_order_preview", preview_order },
  { "GET", "/v2/sim_card_orders", list_orders },
  { "POST", "/v2/sim_card_orders", create_order },
  { "GET", "/v2/sim_card_orders/{id}", get_order },
  -- data usage notifications
  { "GET", "/v2/sim_card_data_usage_notifications", list_notifications },
  { "POST", "/v2/sim_card_data_usage_notifications", create_notification },
  { "GET", "/v2/sim_card_data_usage_notifications/{id}", get_notification },
  { "PATCH", "/v2/sim_card_data_usage_notifications/{id}", update_notification },
  { "DELETE", "/v2/sim_card_data_usage_notifications/{id}", delete_notification },
  -- reference data
  { "GET", "/v2/wireless/regions", list_regions },
  { "GET", "/v2/mobile_network_operators", list_mobile_network_operators },
}

for _, route in ipairs(ROUTES) do
  local escaped = route[2]:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  route.pattern = "^" .. escaped:gsub("{id}", "([^/]+)") .. "$"
end

---------------------------------------------------------------------------
-- Dispatch. No bearer key: 401 with no body. A known path with a method it
-- does not have: 405 with an Allow header (the real API's answer is not
-- documented; 405 tells a wrong method apart from an unknown path or id).
-- An unknown path: 404 { errors: [...] }. HEAD is served as GET.
---------------------------------------------------------------------------

local function find_route(method, path)
  if method == "HEAD" then method = "GET" end
  local allowed = {}
  for _, route in ipairs(ROUTES) do
    local captures = { path:match(route.pattern) }
    if captures[1] then
      if route[1] == method then
        if route.pattern:find("(", 1, true) == nil then captures = {} end
        return route, captures
      end
      allowed[#allowed + 1] = route[1]
    end
  end
  return nil, nil, #allowed > 0 and table.concat(allowed, ", ") or nil
end

-- Returns status, body table (nil: no body), extra headers.
local function default_answer(req)
  local auth = req.headers["authorization"]
  if type(auth) ~= "string" or not auth:lower():match("^bearer%s+%S") then
    return 401, nil
  end
  settle()
  local route, captures, allowed = find_route(req.method, req.path)
  if not route then
    if allowed then
      return 405, { errors = { err_body("10006", "Method not allowed",
        req.method .. " is not allowed on " .. req.path .. " (allowed: " .. allowed .. ")") } },
        { { "Allow", allowed } }
    end
    return 404, { errors = { err_body("10005", "Resource not found",
      "The requested resource or URL could not be found.") } }
  end
  req.params = parse_query(req.query)
  req.json = json_decode(req.body or "", true)
  -- handlers never yield, so pcall is safe inside the coroutine on 5.1 too
  local ok, status, body, headers = pcall(route[3], req, unpack(captures))
  if ok then return status, body, headers end
  if getmetatable(status) == Rejection then return status.status, status.body end
  log("handler error:", req.method, req.path, tostring(status))
  return 500, { errors = { err_body("10000", "Stub error", tostring(status)) } }
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
    local head = response_head(tonumber(entry.status) or 200, headers)
    if entry.trickle_head then -- the head a byte at a time too, then the body
      body, head = head .. body, ""
    end
    if not send_all(conn, head) then
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
-- Control endpoints (/__stub/...: no auth, not logged, never delayed)
---------------------------------------------------------------------------

-- Every record of the emulated API (GET /__stub/state).
local function state_dump()
  settle()
  local function all(store, render)
    local out = {}
    for i, rec in ipairs(store.list) do out[i] = render and render(rec) or public(rec) end
    return array_or_empty(out)
  end
  local ips, codes = {}, {}
  for _, card in ipairs(state.cards.list) do
    if state.public_ips[card.id] then ips[#ips + 1] = public(state.public_ips[card.id]) end
  end
  for code in pairs(state.used_codes) do codes[#codes + 1] = code end
  table.sort(codes)
  return {
    sim_cards = all(state.cards, function(card) return render_card(card, { full = true }) end),
    sim_card_groups = all(state.groups, function(group) return render_group(group, true) end),
    sim_card_actions = all(state.actions),
    bulk_sim_card_actions = all(state.bulk_actions, render_bulk_action),
    sim_card_group_actions = all(state.group_actions),
    sim_card_orders = all(state.orders),
    sim_card_data_usage_notifications = all(state.notifications),
    public_ips = array_or_empty(ips),
    used_registration_codes = array_or_empty(codes),
  }
end

-- POST /__stub/seed { sim_card_groups: [...], sim_cards: [...], used_registration_codes: [...] }
-- A group: { name =, id =, data_limit =, ... } (any SIMCardGroup field).
-- A card: { type = "esim" | "physical" (default esim), status = "enabled" |
-- {value, reason}, tags =, sim_card_group_id = (an existing group, or null
-- for none), ... } (any other SIMCard field replaces the default).
-- Answers the new records. Returns status, answer.
local function seed(body)
  local function list(v) return type(v) == "table" and is_array(v) and v or {} end
  local group_specs, card_specs = list(body.sim_card_groups), list(body.sim_cards)
  local new_groups = {}
  for i, g in ipairs(group_specs) do
    if type(g) ~= "table" then return 400, { error = "sim_card_groups[" .. i .. "] must be an object" } end
    if g.id ~= nil and (state.groups.by_id[g.id] or new_groups[g.id]) then
      return 400, { error = "sim_card_groups[" .. i .. "]: id " .. tostring(g.id) .. " exists already" }
    end
    if g.id ~= nil then new_groups[g.id] = true end
  end
  local new_cards = {}
  for i, c in ipairs(card_specs) do
    local group = type(c) == "table" and c.sim_card_group_id
    if type(c) ~= "table" then return 400, { error = "sim_cards[" .. i .. "] must be an object" } end
    if group ~= nil and group ~= null and not state.groups.by_id[group] and not new_groups[group] then
      return 400, { error = "sim_cards[" .. i .. "]: no SIM card group " .. tostring(group) }
    end
    if c.type ~= nil and c.type ~= "esim" and c.type ~= "physical" then
      return 400, { error = "sim_cards[" .. i .. "]: type must be esim or physical" }
    end
    if c.id ~= nil and (type(c.id) ~= "string" or state.cards.by_id[c.id] or new_cards[c.id]) then
      return 400, { error = "sim_cards[" .. i .. "]: id must be a string not used yet" }
    end
    if c.id ~= nil then new_cards[c.id] = true end
  end

  local groups, cards = {}, {}
  for i, g in ipairs(group_specs) do
    local t = now()
    local group = {
      id = uuid4(), record_type = "sim_card_group", name = "Seeded group " .. i, default = false,
      data_limit = null, private_wireless_gateway_id = null, wireless_blocklist_id = null,
      created_at = stamp(t), updated_at = stamp(t),
    }
    for k, v in pairs(g) do group[k] = v end
    groups[i] = render_group(store_add(state.groups, group))
  end
  for i, c in ipairs(card_specs) do
    local card = new_card(c.type or "esim", {
      id = c.id,
      status = type(c.status) == "string" and c.status or nil,
      tags = (type(c.tags) == "table" and is_array(c.tags)) and c.tags or nil,
      sim_card_group_id = c.sim_card_group_id,
      no_group = c.sim_card_group_id == null,
    })
    for k, v in pairs(c) do
      if k == "authorized_imeis" then
        card.authorized_imeis = (v ~= null) and ((v == EMPTY_ARRAY) and {} or v) or nil
      elseif k == "status" and type(v) == "table" then
        card.status = v
      elseif k ~= "id" and k ~= "type" and k ~= "status" and k ~= "tags" and k ~= "sim_card_group_id" then
        card[k] = v
      end
    end
    state.deleted_cards[card.id] = nil
    cards[i] = render_card(card, { full = true })
  end
  for _, code in ipairs(list(body.used_registration_codes)) do state.used_codes[fmt_int(code)] = true end
  return 200, { sim_card_groups = array_or_empty(groups), sim_cards = array_or_empty(cards) }
end

-- POST /__stub/config: change some settings; answers all of them.
local function set_config(body)
  for k, v in pairs(body) do
    local default = DEFAULT_CONFIG[k]
    if default == nil then return 400, { error = "unknown setting " .. tostring(k) } end
    if type(v) ~= type(default) or (type(v) == "number" and not (v >= 0 and v <= 3600)) then
      return 400, { error = "setting " .. k .. " must be a " .. type(default)
        .. (type(default) == "number" and " from 0 to 3600" or "") }
    end
  end
  for k, v in pairs(body) do config[k] = v end
  return 200, config
end

local function reset_all()
  queue, requests = {}, {}
  reset_state()
  reset_config()
  stats.requests = 0
  stats.in_flight_peak = stats.in_flight
end

local function control(req)
  local p, m = req.path, req.method
  if p == "/__stub/queue" and m == "POST" then
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
  elseif p == "/__stub/queue" and m == "GET" then
    local list = {}
    for i, e in ipairs(queue) do
      local copy = {}
      for k, v in pairs(e) do if k ~= "_left" then copy[k] = v end end
      copy.remaining = e._left or math.max(1, math.floor(tonumber(e["repeat"]) or 1))
      list[i] = copy
    end
    return 200, array_or_empty(list)
  elseif p == "/__stub/requests" and m == "GET" then
    return 200, array_or_empty(requests)
  elseif p == "/__stub/reset" and m == "POST" then
    reset_all()
    return 200, { reset = true }
  elseif p == "/__stub/config" and (m == "GET" or m == "POST") then
    if m == "GET" then return 200, config end
    local body = json_decode(req.body or "", true)
    if type(body) ~= "table" or (next(body) ~= nil and is_array(body)) then
      return 400, { error = "config body must be a JSON object" }
    end
    return set_config(body)
  elseif p == "/__stub/stats" and m == "GET" then
    return 200, { requests = stats.requests, in_flight = stats.in_flight, in_flight_peak = stats.in_flight_peak }
  elseif p == "/__stub/state" and m == "GET" then
    return 200, state_dump()
  elseif p == "/__stub/seed" and m == "POST" then
    local body = json_decode(req.body or "", true)
    if type(body) ~= "table" or (next(body) ~= nil and is_array(body)) then
      return 400, { error = "seed body must be a JSON object" }
    end
    return seed(body)
  elseif p == "/__stub/routes" and m == "GET" then
    local list = {}
    for i, route in ipairs(ROUTES) do list[i] = { method = route[1], path = route[2] } end
    return 200, list
  elseif p == "/__stub/shutdown" and m == "POST" then
    return 200, { shutdown = true }, true
  end
  return 404, { error = "unknown control endpoint " .. m .. " " .. p }
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
      begin_request(conn)
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
      sleep(request_delay(req))
      local keep
      if entry then
        keep = serve_scripted(conn, entry, req.keep_alive, req.method)
      else
        local status, answer, extra = default_answer(req)
        local text = answer and json_encode(answer) or ""
        local headers = { { "x-request-id", uuid4() } }
        for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
        keep = req.keep_alive
        if not send_simple(conn, status, text, keep, headers, req.method) then break end
      end
      end_request(conn)
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
