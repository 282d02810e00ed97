-- telnyx.sim.resty: the telnyx.sim client for OpenResty, moving its bytes
-- through nginx so the worker's event loop never blocks.
--
--   local resty = require "telnyx.sim.resty"
--   local client, err = resty.new{ api_key = KEY }   -- once per worker
--   if not client then error(tostring(err)) end
--   local res, err = client:purchase_esims{ amount = 2 }
--
-- Every rule (validation, request building, response handling, retry policy)
-- is the C module's: this file sends what client:request builds, hands what
-- came back to client:interpret and waits with ngx.sleep when it says to retry.
-- The transports (cosockets through lua-resty-http, the default; a capture
-- subrequest to a proxy location, only when asked for; or a function) and the
-- server's pause: docs/openresty.md.

local sim = require "telnyx.sim"
local find, sub = string.find, string.sub

-- What this client needs of the C client's constants, read from it (never copied here).
local DEFAULTS = assert(type(sim.defaults) == "table" and sim.defaults, "telnyx.sim exports no sim.defaults")
local FAILURES = assert(type(sim.failures) == "table" and sim.failures, "telnyx.sim exports no sim.failures")
for _, name in ipairs{ "concurrency", "max_response_bytes", "timeout" } do
  assert(type(DEFAULTS[name]) == "number", "telnyx.sim: sim.defaults." .. name .. " is not a number")
end

local resty = {
  _VERSION = sim._VERSION,
  operations = sim.operations,
}

local CTX_KEY = "telnyx_sim_resty"
local DEFAULT_LOCATION = "/_telnyx"

-- Where ngx.sleep and cosockets may run, and where subrequests may (a light thread reports its parent's phase).
local CAN_WAIT = { rewrite = true, access = true, content = true, timer = true }
local CAN_CAPTURE = { rewrite = true, access = true, content = true }

-- The headers a capture location carries (see proxy_header), lowercased.
local CARRIED = {
  ["authorization"] = true, ["content-type"] = true, ["accept"] = true,
  ["user-agent"] = true, ["idempotency-key"] = true,
}

local function new_error(kind, message, field)
  return sim.error(kind, message, { field = field, retryable = false, attempts = 0 })
end

-- sim.describe's err for an unknown name, as the function the user called says it.
local function named(err, who)
  err.message = who .. err.message:sub(#"describe" + 1)
  return err
end

local function in_openresty()
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
end

-- == Hooks for the proxy location (they run inside the subrequest) ==

--- set_by_lua_block $telnyx_authorization { return require("telnyx.sim.resty").proxy_header("Authorization") }
-- One of the module's headers for the subrequest being proxied, or "" (nginx then sends none) outside one.
function resty.proxy_header(name)
  local state = ngx.ctx[CTX_KEY]
  if type(state) ~= "table" or type(state.headers) ~= "table" then return "" end
  state.reached = true -- the subrequest is in the proxy location (see capture_transport)
  for k, v in pairs(state.headers) do
    if k:lower() == name:lower() then return v end
  end
  return ""
end

--- header_filter_by_lua_block { require("telnyx.sim.resty").note_upstream() }
-- Records whether the upstream sent a response header and how many bytes went to it: that tells
-- "the API answered 502" from "the proxy gave up", and "nothing was sent" from "it may have arrived".
function resty.note_upstream()
  local state = ngx.ctx[CTX_KEY]
  if type(state) ~= "table" then return end
  local var = ngx.var
  state.upstream = {
    addr = var.upstream_addr or "",
    status = var.upstream_status or "",
    header_time = var.upstream_header_time or "",
    bytes_sent = var.upstream_bytes_sent,
  }
end

-- == The capture transport ==

local function list(value)
  local items = {}
  for item in tostring(value or ""):gmatch("[^,:%s]+") do items[#items + 1] = item end
  return items
end

-- Nothing reached the upstream on any attempt nginx made: provable only by 0 bytes sent for each.
local function nothing_sent(bytes_sent)
  local items = bytes_sent ~= nil and list(bytes_sent) or {} -- nil: nginx < 1.15.8, unknown
  for _, n in ipairs(items) do
    if n ~= "0" then return false end
  end
  return #items > 0
end

-- An ngx.location.capture subrequest to the proxy location: the module's headers travel in its own
-- ngx.ctx to proxy_header, so none of the end user's can; note_upstream tells what nginx did.
local function capture_transport(location)
  return function(request)
    local method = ngx["HTTP_" .. request.method]
    if not method then -- capture would quietly send a GET
      return nil, { failure = "not_sent", message = "ngx.location.capture has no method " .. request.method }
    end
    local state = { headers = request.headers }
    local res = ngx.location.capture(location .. request.path, {
      method = method,
      body = request.body or "",      -- never the end user's request body
      ctx = { [CTX_KEY] = state },    -- the subrequest's own ngx.ctx, never the caller's
    })
    local up = state.upstream
    if not state.reached and (not up or up.addr == "") then
      -- The proxy location's set_by_lua hooks never ran and nothing was proxied: no location there
      -- (nginx's own 404), or one that is not the proxy location. The API key never left nginx.
      return nil, { failure = "not_sent", permanent = true, message = string.format(
        "the subrequest to %s%s never reached the proxy location (HTTP %d from nginx itself%s): add the "
        .. "internal location %s/ that proxies to the API (see docs/openresty.md), or use the cosocket transport "
        .. "(lua-resty-http)", location, request.path, res.status,
        res.status == 404 and ": no location matches " .. location .. "/" or "", location) }
    end
    if not up then
      return nil, { failure = "broken", message = string.format(
        "no upstream state from location %s (HTTP %d): it needs "
        .. "header_filter_by_lua_block { require(\"telnyx.sim.resty\").note_upstream() } (see docs/openresty.md)",
        location, res.status) }
    end
    local times = list(up.header_time)
    if tonumber(times[#times]) ~= nil then -- the upstream answered
      if res.truncated then
        return nil, { failure = "broken", status = res.status,
          message = "the response body was cut short (HTTP " .. res.status .. ", upstream " .. up.status .. ")" }
      end
      return res.status, res.header, res.body
    end
    -- No response header from the upstream: the proxy itself gave up.
    local upstream = up.addr ~= "" and "its upstream " .. up.addr or "its upstream"
    local what = string.format("HTTP %d from nginx, upstream status %s", res.status,
      up.status ~= "" and up.status or "none")
    if nothing_sent(up.bytes_sent) then
      return nil, { failure = res.status == 504 and "connect_timeout" or "not_sent",
        message = string.format("the proxy location %s could not reach %s (%s): nothing was sent; "
          .. "nginx's error log says why", location, upstream, what) }
    end
    return nil, { failure = res.status == 504 and "timeout" or "broken",
      message = string.format("the proxy location %s lost %s after sending (%s); nginx's error log says why",
        location, upstream, what) }
  end
end

-- == The cosocket transport (lua-resty-http) ==

local PIECE = 64 * 1024 -- bytes asked of the body reader at a time: the size limit stops the read early

local http_lib, http_missing -- resty.http once loaded, or why it could not be

-- lua-resty-http, or nil and why not (the first line of require's error).
local function resty_http()
  if http_lib == nil and http_missing == nil then
    local ok, m = pcall(require, "resty.http")
    if ok and type(m) == "table" and type(m.new) == "function" then
      http_lib = m
    else
      http_missing = ok and "require \"resty.http\" gave no HTTP client"
        or (tostring(m):match("^[^\n]*"):gsub(":$", ""))
    end
  end
  return http_lib, http_missing
end

local function now()
  ngx.update_time()
  return ngx.now()
end

local function to_ms(seconds)
  return math.max(1, math.floor(seconds * 1000 + 0.5))
end

-- scheme://authority of base_url (which sim.new checked) -> what connect and the requests need:
-- made once per client and origin, as request urls differ only in path and query.
local function new_origin(prefix, pool)
  local scheme, authority = prefix:match("^(https?)://([^/?#]+)$")
  if not scheme then return nil end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^(%[[^%]]+%]):?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host then return nil end
  local default = scheme == "https" and 443 or 80
  port = tonumber(port) or default
  local name = host:gsub("^%[(.*)%]$", "%1") -- what the certificate must be for (ssl_server_name)
  local host_header = port == default and host or host .. ":" .. port
  local where = scheme .. "://" .. host_header
  return {
    where = where, host_header = host_header, tls = scheme == "https",
    -- lua-resty-http's connect options (it only reads them); the pool's name has the scheme: plain and TLS never mix
    connect = {
      scheme = scheme, port = port, pool = pool .. where, ssl_verify = true, ssl_server_name = name,
      -- an IPv6 literal stays in brackets, as ngx_lua parses it; "localhost" needs no resolver
      -- (sim.new allows plain http to it as loopback)
      host = name:lower() == "localhost" and "127.0.0.1" or host,
    },
  }
end

-- A connect error that a line of nginx.conf fixes: the message naming the directive, and true
-- (trying again cannot help); else the message as it is.
local function directive_problem(origin, message)
  message = tostring(message)
  if message:find("no resolver defined", 1, true) then
    return message .. ": nginx resolves host names for cosockets only with a `resolver` directive in the http "
      .. "block of nginx.conf (e.g. resolver 1.1.1.1 8.8.8.8 ipv6=off; or your network's DNS server)", true
  end
  local lower = message:lower()
  if not (origin.tls and (lower:find("certificate", 1, true) or lower:find("verif", 1, true))) then
    return message
  end
  if lower:find("does not match host", 1, true) then
    return message .. ": the server's certificate is not for " .. origin.connect.ssl_server_name
      .. " (base_url's host)", true
  end
  if lower:find("chain too long", 1, true) then
    return message .. ": nginx's lua_ssl_verify_depth (1 by default: one intermediate CA) is too small for this "
      .. "server's chain: set `lua_ssl_verify_depth 3;` in the http block of nginx.conf", true
  end
  return message .. ": nginx trusts only the CAs in lua_ssl_trusted_certificate (none unless set): add "
    .. "`lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;` (your system's CA bundle) to the http "
    .. "block of nginx.conf (and `lua_ssl_verify_depth 3;` for a chain of more than one intermediate CA)", true
end

-- A failure in client:interpret's terms.
local function failure(state, kind, message, permanent)
  return { failure = kind, message = state.origin.where .. ": " .. message,
    status = state.status, -- once a response head was in
    permanent = permanent }
end

-- A failed attempt: its connection closed.
local function failed(state, kind, message, permanent)
  if state.httpc then pcall(state.httpc.close, state.httpc) end
  return nil, failure(state, kind, message, permanent)
end

local function connect_timed_out(state)
  return failed(state, "connect_timeout",
    state.origin.tls and "timed out connecting or in the TLS handshake" or "timed out connecting")
end

-- httpc:connect (a pooled connection, or name resolution, TCP and for https the TLS handshake with
-- the host name checked) -> true, or a failure. Nothing is written before it succeeds.
local function connect(state, httpc)
  local budget = to_ms(state.connect_deadline - now())
  httpc:set_timeouts(budget, budget, budget)
  local ok, err = httpc:connect(state.origin.connect)
  if ok then return true end
  if err == "timeout" then return connect_timed_out(state) end
  return failed(state, "not_sent", directive_problem(state.origin, err))
end

-- The Content-Length: a number, nil when there is none, or false and why when it is not one count
-- of bytes (lua-resty-http reads a list of them as none, and loops without end on a negative one).
local function declared_length(headers)
  local value = headers["Content-Length"]
  if value == nil then return nil end
  local digits = type(value) == "string" and value:match("^%s*(%d+)%s*$")
  if not digits then
    return false, "the response has a Content-Length that is not one count of bytes: "
      .. (type(value) == "table" and table.concat(value, ", ") or tostring(value)):sub(1, 100)
  end
  return tonumber(digits)
end

-- res's body, read a piece at a time with the deadline and max_response_bytes checked between pieces
-- -> the body and whether it ran to the connection's close, or a failure. state.reading_body says
-- the read is in lua-resty-http's body reader (see give_up).
local function read_body(state, httpc, res)
  if not res.has_body then return "", false end -- HEAD, 204, 304
  local length, bad = declared_length(res.headers)
  if length == false then return failed(state, "broken", bad) end
  if length and length > state.max_bytes then
    return failed(state, "too_large", "the response declares " .. length .. " bytes")
  end
  local to_close = not length and not state.http.transfer_encoding_is_chunked(res.headers)
  local pieces, n, size = {}, 0, 0
  state.reading_body = true
  while true do
    local left = state.deadline - now()
    if left <= 0 then return failed(state, "timeout", "the response did not arrive whole in time") end
    httpc:set_timeouts(to_ms(left), to_ms(left), to_ms(left))
    local piece, err = res.body_reader(PIECE)
    if piece then
      size = size + #piece
      if size > state.max_bytes then return failed(state, "too_large", "the response body passed the limit") end
      n = n + 1
      pieces[n] = piece
    end
    if to_close and err == "closed" then break end -- the end of a body without a length
    if err then
      return failed(state, err == "timeout" and "timeout" or "broken", err == "closed"
        and "the response body was cut short (the server closed the connection)"
        or "reading the response body: " .. tostring(err))
    end
    if not piece then
      -- lua-resty-http ends a body without a length on any read error as if whole: only the close is its end
      if not to_close then break end
      return failed(state, now() >= state.deadline and "timeout" or "broken",
        "the response body was cut short (its read failed before the server closed the connection)")
    end
  end
  state.reading_body = false
  return table.concat(pieces), to_close
end

-- One attempt over one connection: connect, send, read the response, give the connection back to the
-- pool or close it -> status, headers, body, or a failure. Runs on a light thread (see bounded_attempt).
local function exchange(state)
  local http, request = state.http, state.request
  local httpc, err = http.new()
  if not httpc then return failed(state, "not_sent", "lua-resty-http: " .. tostring(err)) end
  state.httpc = httpc
  local ok, why = connect(state, httpc)
  if not ok then return nil, why end
  state.connected = true
  local left = state.deadline - now()
  if left <= 0 then return failed(state, "connect_timeout", "connected, but with no time left to send") end
  httpc:set_timeouts(to_ms(left), to_ms(left), to_ms(left))
  state.sent = true -- the request may arrive from here on, whatever happens next
  local res
  res, err = httpc:request{ method = request.method, path = state.path, headers = request.headers,
    body = request.body }
  if not res then
    return failed(state, err == "timeout" and "timeout" or "broken", "sending the request or reading the "
      .. "response head: " .. tostring(err))
  end
  state.status = res.status
  if res.status < 200 then -- lua-resty-http does not skip interim heads: the final one is still unread
    return failed(state, "broken", "the server sent an interim response (HTTP " .. res.status .. ")")
  end
  local body, to_close = read_body(state, httpc, res)
  if not body then return nil, to_close end
  -- the whole response is in: the connection may serve the next attempt (unless the server said close)
  if to_close or not httpc:set_keepalive() then pcall(httpc.close, httpc) end
  state.httpc = nil
  return res.status, res.headers, body
end

-- A Lua error in the attempt (a bug, or a library raising) -> a failure.
local function raised(state, why)
  if state.sent then return failed(state, "broken", "the cosocket transport raised: " .. tostring(why)) end
  if state.origin.tls and state.httpc then -- lua-resty-core 0.1.25's sslhandshake may raise (an assertion)
    return failed(state, "not_sent", (directive_problem(state.origin, "connecting raised (lua-resty-core's "
      .. "sslhandshake does when certificate verification failed): " .. tostring(why))), true)
  end
  return failed(state, "not_sent", "the cosocket transport raised: " .. tostring(why))
end

-- The light thread's body: the attempt, its outcome left in state.outcome.
local function run_exchange(state)
  local fine, a, b, c = pcall(exchange, state)
  if not fine then a, b, c = raised(state, a) end
  state.outcome = { a, b, c }
  state.done:post(1)
end

-- The thread is still at it when its time is up: the attempt fails.
local function give_up(state, thread)
  if state.reading_body then
    -- Not a kill: lua-resty-http's body reader is a coroutine of its own, whose pending read a kill would
    -- leave on the socket. A 1 ms timeout ends that read at its next event (each byte re-arms the timer
    -- with the timeout of the moment); the thread then fails and closes the connection on its own.
    state.httpc:set_timeouts(1, 1, 1)
    return nil, failure(state, "timeout", "the response did not arrive whole in time")
  end
  ngx.thread.kill(thread) -- in connect or request: ngx_lua cleans up the socket's pending operation
  if not state.sent then return connect_timed_out(state) end
  return failed(state, "timeout", "no whole response within `timeout`")
end

-- One attempt, bounded as a whole: the exchange runs on a light thread that this one waits for until
-- connect_deadline, or once connected the deadline. Cosocket timeouts alone would not do: they are per
-- operation, every byte re-arms a read's, and name resolution waits nginx's resolver_timeout (30 s).
local function bounded_attempt(state)
  state.done = require("ngx.semaphore").new(0) -- lua-resty-core's: required here, in nginx
  local thread, err = ngx.thread.spawn(run_exchange, state)
  if not thread then return failed(state, "not_sent", "ngx.thread.spawn: " .. tostring(err)) end
  local limit = state.connect_deadline
  while not state.outcome do
    local left = limit - now()
    if left >= 0.001 then
      state.done:wait(left)
    elseif state.connected and limit < state.deadline then
      limit = state.deadline
    else
      return give_up(state, thread)
    end
  end
  ngx.thread.wait(thread) -- it ended: this reaps it
  local o = state.outcome
  return o[1], o[2], o[3]
end

-- The transport of a client: one attempt per call, bounded by request.timeout (as in the C client),
-- its connect (name resolution and TLS handshake included) by request.connect_timeout too.
-- The not-sent boundary is httpc:request: a connect failure (returned or raised, or a deadline passing
-- then) is "not_sent" / "connect_timeout", anything after "broken" / "timeout". A pooled connection the
-- server closed while idle is dropped by ngx_lua before connect returns it; one closed too late for that
-- fails after the send, as "broken": this transport never sends a purchase twice.
local function cosocket_transport(http, opts)
  local origins = {} -- prefix (scheme://authority) -> new_origin's
  return function(request)
    local url = request.url
    -- scheme://authority: up to the path's "/" (client:request's urls are base_url .. "/...")
    local slash = find(url, "/", 9, true)
    local prefix = slash and sub(url, 1, slash - 1)
    if prefix and not origins[prefix] then origins[prefix] = new_origin(prefix, opts.pool) end
    local origin = prefix and origins[prefix]
    if not origin then return nil, { failure = "not_sent", message = "cannot send to " .. tostring(url) } end
    request.headers.Host = origin.host_header -- base_url's, also when "localhost" connects to 127.0.0.1
    local start = now()
    local deadline = start + (tonumber(request.timeout) or DEFAULTS.timeout)
    return bounded_attempt{
      origin = origin, http = http, request = request, path = sub(url, slash),
      max_bytes = opts.max_bytes, deadline = deadline,
      connect_deadline = math.min(deadline, start + (tonumber(request.connect_timeout) or math.huge)),
    }
  end
end

--- Whether the cosocket transport can be used here: true, or nil and why lua-resty-http cannot be required.
function resty.cosocket_available()
  local http, why = resty_http()
  return http and true, why
end

-- == The server's pause (err.pause): per batch, and across the workers with shared_dict ==

-- An origin's pause in a shared dict is at this prefix .. scheme://host[:port] (new_origin's `where`), so
-- clients with the same base_url origin share it: the pause's end on ngx.now()'s clock, until its exptime.
local PAUSE_PREFIX = "telnyx.sim.pause#"

local function pause_key(url)
  local prefix = url:match("^(%a+://[^/?#]+)")
  local origin = prefix and new_origin(prefix:lower(), "")
  return PAUSE_PREFIX .. (origin and origin.where or tostring(prefix))
end

-- Makes the pause at `key` of `dict` last until at least `until_t`: it only ever extends. Every writer
-- holds a lock key for its get, compare and set (dict:add is atomic across the workers; nothing in
-- between yields, and the lock's exptime frees it should its worker die holding it). true, or nil, why.
local function extend_shared_pause(dict, key, until_t)
  local lock = key .. "#lock"
  for _ = 1, 200 do
    local locked, err = dict:add(lock, true, 0.1)
    if locked then
      local current, ok = dict:get(key), true
      if type(current) ~= "number" or current < until_t then
        ok, err = dict:set(key, until_t, until_t - now() + 1)
      end
      dict:delete(lock)
      return ok, err
    end
    if err ~= "exists" then return nil, err end
    ngx.sleep(0.001) -- another worker holds it, for microseconds
  end
  return nil, "its lock stayed taken"
end

-- The server asked every client to wait `seconds` (err.pause): the origin's shared pause, at `key`.
local function share_pause(self, key, seconds)
  local ok, err = extend_shared_pause(self.pause_dict, key, now() + seconds)
  if not ok then -- the pause still holds for this call (and its batch); other workers do not see it
    ngx.log(ngx.WARN, "telnyx.sim.resty: lua_shared_dict ", self.shared_dict, ": could not store the pause of ",
      key:sub(#PAUSE_PREFIX + 1), ": ", tostring(err))
  end
end

-- Before an attempt: waits (ngx.sleep) until the batch's pause (b, or nil for a single call) and the
-- origin's shared pause (key, or nil without shared_dict) are over; either may grow meanwhile. true,
-- or false when the batch stopped or the client was closed meanwhile (looked at every second).
local function wait_pauses(self, key, b)
  while not (b and b.stopped) and not self.closed do
    local until_t = b and b.pause_until or 0
    if key then
      local shared = self.pause_dict:get(key)
      if type(shared) == "number" and shared > until_t then until_t = shared end
    end
    if until_t <= ngx.now() then return true end
    local wait = until_t - now() -- ngx.now() is the event loop's cached time: be exact before sleeping
    if wait <= 0 then return true end
    ngx.sleep(math.min(wait + 0.001, 1)) -- nginx's timers count whole milliseconds: never ngx.sleep(0) in a loop
  end
  return false
end

-- == Client ==

local Client = {}
Client.__index = Client

-- One attempt through the transport -> a reply for client:interpret.
local function send(self, req)
  local request = req -- the built-in transports change nothing; a caller's gets a copy of its own
  if self.transport_kind == "custom" then
    request = { operation = req.operation, method = req.method, url = req.url, path = req.path,
      body = req.body, timeout = req.timeout, connect_timeout = req.connect_timeout, headers = {} }
    for k, v in pairs(req.headers) do request.headers[k] = v end
  end
  local ok, status, headers, body = pcall(self.transport, request)
  if not ok then
    return { failure = "broken", message = "the transport raised an error: " .. tostring(status) }
  end
  if type(status) == "number" then
    if status ~= status or status < 100 or status > 999 then -- not HTTP: it may have arrived
      return { failure = "broken", message = "the transport returned status " .. tostring(status) }
    end
    return { status = status, headers = type(headers) == "table" and headers or {},
      body = type(body) == "string" and body or "" }
  end
  local err = headers
  if type(err) == "table" and FAILURES[err.failure] then
    return { failure = err.failure, message = err.message and tostring(err.message) or nil,
      status = tonumber(err.status), permanent = err.permanent == true or nil }
  end
  -- A bare error: the request may have been sent.
  return { failure = "broken", message = "transport error: " .. tostring(err) }
end

-- A config err when `what` cannot run in this phase (or not with this client's transport), else nil.
local function phase_error(self, what)
  local phase = ngx.get_phase()
  if not CAN_WAIT[phase] then
    return new_error("config", what .. ": cannot run in nginx's '" .. phase .. "' phase (ngx.get_phase()): "
      .. "no cosocket, subrequest or ngx.sleep there; call it from a rewrite, access or content handler, "
      .. "from a timer (ngx.timer.at), or from a light thread (ngx.thread.spawn) of one of those")
  end
  if self.capture and not CAN_CAPTURE[phase] then
    local _, missing = resty_http()
    return new_error("config", what .. ": ngx.location.capture is not available in the '" .. phase
      .. "' phase; use the cosocket transport (transport = \"cosocket\", the default when lua-resty-http "
      .. "is installed" .. (missing and "; here it is not: " .. missing or "") .. ", see docs/openresty.md) "
      .. "or pass a `transport` function to call from there")
  end
end

-- client:request, and the capture location's limit on headers -> req | nil, err. No I/O.
local function prepare(self, op, params, opts)
  local req, err = self.core:request(op, params, opts)
  if not req then return nil, err end
  req.headers["User-Agent"] = self.user_agent -- the C module's names libcurl, which this client does not use
  if self.capture then
    for name in pairs(req.headers) do
      if not CARRIED[name:lower()] then
        return nil, new_error("invalid_params", op .. ": 'opts.headers' cannot send '" .. name
          .. "' through the capture location, which carries only the module's own headers; "
          .. "pass a `transport` to send others", "opts.headers")
      end
    end
  end
  return req
end

-- What a batch's call ends with once its batch stopped: a marker, never returned (the batch gives its err).
local STOPPED = {}

-- The attempts of a prepared request (a single call, or call i of batch b): send, client:interpret, and
-- while it says to retry, ngx.sleep and send again. Before each attempt the server's pauses are waited
-- out: the origin's shared one and the batch's, which every retry with err.pause extends, so no call
-- hammers the limit on its own (the C client's rule). Nothing is sent once the client is closed.
local function attempts(self, req, b, i)
  local key = self.pause_dict and pause_key(req.url)
  local attempt = 1
  while true do
    wait_pauses(self, key, b)
    if b and (b.stopped or self.closed) then return nil, STOPPED end
    if self.closed then
      local why = attempt > 1 and "while waiting to retry" or "while waiting out the server's pause; nothing was sent"
      return nil, sim.error("config", req.operation .. ": the client was closed " .. why, { attempts = attempt - 1 })
    end
    if b then b.attempts[i] = attempt end
    local res, err, retry_in = self.core:interpret(req, send(self, req), attempt)
    if res then return res end
    if err.pause and key then share_pause(self, key, err.pause) end
    if not retry_in then return nil, err end
    if b then
      if b.stopped then return nil, STOPPED end
      if err.pause then b.pause_until = math.max(b.pause_until, now() + err.pause) end
    end
    ngx.sleep(retry_in)
    attempt = attempt + 1
  end
end

local function call(self, op, params, opts)
  local err = phase_error(self, op)
  if err then return nil, err end
  local req, perr = prepare(self, op, params, opts)
  if not req then return nil, perr end
  return attempts(self, req)
end

--- client:request(name, params [, opts]) -> req | nil, err: what this client would send (no I/O).
function Client:request(name, params, opts)
  local known, err = sim.describe(name)
  if not known then return nil, named(err, "request") end
  return prepare(self, name, params, opts)
end

--- client:call(name, params [, opts]): the primitive under every operation method.
function Client:call(name, params, opts)
  local known, err = sim.describe(name)
  if not known then return nil, named(err, "call") end
  return call(self, name, params, opts)
end

for _, name in ipairs(sim.operations) do
  Client[name] = function(self, params, opts) return call(self, name, params, opts) end
end

--- client:_check_phase(name) -> nil | err: whether `name` (one of flow's helpers) can run in this phase,
-- asked once at its top, so that the err names what the user called (the C client has no such hook).
Client._check_phase = phase_error

--- client:sleep(seconds): how flow's helpers wait here -- without blocking the worker.
function Client.sleep(_, seconds)
  ngx.sleep(seconds)
end

-- A monotonic clock where lua-resty-core has one, else nginx's (refreshed).
local monotonic do
  local ok, time = pcall(require, "resty.core.time")
  monotonic = ok and type(time) == "table" and time.monotonic_time
end

--- client:clock(): seconds, for flow's deadlines.
function Client.clock()
  return monotonic and monotonic() or now()
end

-- each and wait_for_action, the same code as the C client's
local flow = require "telnyx.sim.flow"
for _, name in ipairs(flow.methods) do Client[name] = flow[name] end

-- == Batch: many calls at once, on light threads ==

local rawlen = rawlen or function(t) return #t end -- LuaJIT without 5.2 compat: # is raw there

-- A light thread's body: every attempt of call i, then its outcome queued for the coordinating thread.
local function run_call(self, b, i)
  local fine, res, err = pcall(attempts, self, b.reqs[i], b, i)
  b.finished[#b.finished + 1] = fine and { index = i, res = res, err = err }
    or { index = i, raised = true, error = res }
  b.sema:post(1)
end

-- Ends the light threads still running, after which no attempt starts: each is killed, or waited for
-- when it cannot be (nginx cannot kill one with a pending subrequest; it ends after its current attempt).
local function stop_threads(b)
  b.stopped = true
  for _, t in pairs(b.thread_of) do
    if not ngx.thread.kill(t) and coroutine.status(t) ~= "dead" then pcall(ngx.thread.wait, t) end
  end
  b.thread_of = {}
end

-- The err of a call whose client was closed before its batch finished, in src/batch.c's words
-- (finish_rest_closed; spec/openresty_batch_spec.lua compares them): one never sent may be sent
-- again; one that spends or creates and was sent may have gone through.
local function closed_err(op, tries)
  local d, sent = sim.describe(op), tries > 0
  local safe = d.resend == "safe"
  local message = op .. ": the client was closed during the batch" .. (not sent and ", before this call was sent"
    or safe and "" or ", after the request was sent; it may have gone through: check " .. d.check
      .. " before trying again")
  return sim.error("config", message, { attempts = tries, retryable = not sent or safe })
end

-- The coordinating thread: at most `concurrency` light threads, results in input order, progress
-- called from here. It never waits on several threads at once: ngx.thread.wait(a, b) leaves b marked
-- as waited for when a ends first, and b ending later would resume this thread wherever it is (in
-- progress's ngx.sleep, say). So threads queue their outcome and post a semaphore; only an ended
-- thread (or, alone, one that cannot be killed) is waited for.
local function run_batch(self, reqs, concurrency, progress)
  local n = #reqs
  local b = { reqs = reqs, pause_until = 0, attempts = {}, stopped = false,
    thread_of = {}, finished = {}, sema = assert(require("ngx.semaphore").new(0)) }
  local results, done, ok, running, next_call = {}, 0, 0, 0, 1

  local function finish(i, res, err)
    results[i] = res and { res = res } or { err = err }
    done = done + 1
    if res then ok = ok + 1 end
    if progress then progress(done, n, i, res, err) end
  end

  local function loop()
    while done < n do
      if self.closed then -- by progress, the transport or anyone: the calls not finished get C's err
        stop_threads(b)
        for i = 1, n do
          if not results[i] then finish(i, nil, closed_err(reqs[i].operation, b.attempts[i] or 0)) end
        end
        return
      end
      while running < concurrency and next_call <= n do
        b.thread_of[next_call] = ngx.thread.spawn(run_call, self, b, next_call)
        running, next_call = running + 1, next_call + 1
      end
      local woke, werr = b.sema:wait(60)
      if woke then
        local f = table.remove(b.finished, 1)
        ngx.thread.wait(b.thread_of[f.index]) -- it ended right after posting: this only reaps it
        b.thread_of[f.index], running = nil, running - 1
        if f.raised then error(f.error, 0) end -- a bug, not a call's failure
        -- a call that failed after the client was closed gets the closed err above
        if f.res or not self.closed then finish(f.index, f.res, f.err) end
      elseif werr ~= "timeout" then
        error("telnyx.sim.resty: batch: " .. tostring(werr), 0)
      end
    end
  end

  local fine, e = pcall(loop)
  if not fine then -- progress (or a light thread) raised: nothing left running behind the error
    stop_threads(b)
    error(e, 0)
  end
  return flow.results(results, ok, done - ok)
end

--- client:batch(calls [, opts]) -> results | nil, err: the C client's batch (its API: src/batch.c), each
-- call's attempts on a light thread. Every call is checked before anything is sent (nil, err with err.index).
function Client:batch(calls, opts)
  local err = phase_error(self, "batch")
  if err then return nil, err end
  -- the C client's own checks of the client, calls and opts, on an empty batch: nothing is sent
  local none
  none, err = self.core:batch(type(calls) == "table" and {} or calls, opts)
  if not none then return nil, err end
  local reqs = {}
  for i = 1, rawlen(calls) do
    local c, req = rawget(calls, i), nil
    if type(c) ~= "table" then
      err = sim.error("invalid_params", "must be a table { name, params [, opts] } (got " .. type(c) .. ")")
    elseif not sim.describe(rawget(c, 1)) then
      err = named(select(2, sim.describe(rawget(c, 1))), "[1]")
    else
      req, err = prepare(self, rawget(c, 1), rawget(c, 2), rawget(c, 3))
    end
    if not req then
      err.message = "batch: calls[" .. i .. "]: " .. tostring(err.message)
      err.index = i
      return nil, err
    end
    reqs[i] = req
  end
  opts = opts or {}
  return run_batch(self, reqs, rawget(opts, "concurrency") or DEFAULTS.concurrency, rawget(opts, "progress"))
end

--- Releases the core client (its API key with it); a batch in progress ends, and every later call
-- returns nil, err without sending. No connection to release: each went back to its origin's pool.
function Client:close()
  self.closed = true -- a batch running notices it
  self.core:close()
end

function Client:__tostring()
  local how = self.transport_kind == "capture" and "location " .. self.location
    or self.transport_kind == "cosocket" and "cosockets through lua-resty-http" or "custom transport"
  return "telnyx.sim.resty client (" .. how .. ")"
end

local TRANSPORT_KINDS = { cosocket = true, capture = true }

-- nginx's and ngx_lua's version numbers (1022001) as x.y.z
local function dotted(n)
  n = tonumber(n) or 0
  return ("%d.%d.%d"):format(math.floor(n / 1000000), math.floor(n / 1000) % 1000, n % 1000)
end

-- The User-Agent of a client: the transport it really uses.
local function user_agent(kind, http)
  local what = kind == "cosocket" and "cosocket; lua-resty-http/" .. tostring(http._VERSION)
    or kind == "capture" and "capture; nginx/" .. dotted(ngx.config.nginx_version)
    or "custom transport"
  return ("telnyx-sim-lua/%s (%s; %s; ngx_lua/%s)"):format(sim._VERSION, _VERSION, what,
    dotted(ngx.config.ngx_lua_version))
end

-- An origin's connection pool, "telnyx.sim#<scheme://host:port>", is shared by every client of the worker
-- (a client per request reuses what the previous ones kept alive): safe, as plain and TLS never mix
-- and a TLS connection is always verified for the host it names.
local POOL_PREFIX = "telnyx.sim#"

--- resty.new{ api_key =, transport = "cosocket" | "capture" | function(request), location = "/_telnyx",
--            shared_dict = "NAME", ...sim.new options } -> client | nil, err (never raises, like sim.new).
-- client.transport_kind says which transport it got. With shared_dict, a pause the server asks for holds
-- every worker's calls to that origin; without, only the batch that saw it (see docs/openresty.md).
function resty.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    return nil, new_error("invalid_params", "resty.new: options must be a table (got " .. type(opts) .. ")", "options")
  end
  opts = opts or {}
  local location, transport = opts.location, opts.transport
  if location ~= nil and (type(location) ~= "string" or not location:match("^/[%w%-%._~/]*$")) then
    return nil, new_error("invalid_params", "resty.new: 'location' must be a path such as \"/_telnyx\"", "location")
  end
  if transport ~= nil and type(transport) ~= "function" and not TRANSPORT_KINDS[transport] then
    return nil, new_error("invalid_params", "resty.new: 'transport' must be a function(request) -> status, headers, "
      .. "body | nil, err, or \"cosocket\" or \"capture\"", "transport")
  end
  if location ~= nil and transport ~= nil and transport ~= "capture" then
    return nil, new_error("invalid_params", "resty.new: 'location' is for transport = \"capture\" (the proxy "
      .. "location), not with " .. (type(transport) == "function" and "a transport function"
      or "transport = \"" .. transport .. "\""), "location")
  end
  local shared_dict, pause_dict = opts.shared_dict, nil
  if shared_dict ~= nil then
    if type(shared_dict) ~= "string" or shared_dict == "" then
      return nil, new_error("invalid_params", "resty.new: 'shared_dict' must be the name of a lua_shared_dict "
        .. "(got " .. (shared_dict == "" and "an empty string" or type(shared_dict)) .. ")", "shared_dict")
    end
    pause_dict = in_openresty() and type(ngx.shared) == "table" and ngx.shared[shared_dict] or nil
    if in_openresty() and not pause_dict then
      return nil, new_error("config", "resty.new: 'shared_dict': nginx.conf has no `lua_shared_dict "
        .. shared_dict .. " 1m;` (in its http block; see docs/openresty.md)", "shared_dict")
    end
  end
  local core_opts = {}
  for k, v in pairs(opts) do
    if k ~= "location" and k ~= "transport" and k ~= "shared_dict" then core_opts[k] = v end
  end
  local core, err = sim.new(core_opts)
  if not core then
    if err.field == "api_key" and opts.api_key == nil and in_openresty() and os.getenv("TELNYX_API_KEY") == nil then
      err.message = err.message .. "; nginx clears its workers' environment: `env TELNYX_API_KEY;` "
        .. "in the main context of nginx.conf (outside http {}) keeps it"
      err.retryable, err.attempts = false, 0
    end
    return nil, err
  end
  if not in_openresty() then
    core:close()
    return nil, new_error("config", "telnyx.sim.resty runs inside OpenResty (ngx_lua); in plain Lua use telnyx.sim")
  end
  -- the default: cosockets, which need lua-resty-http; a proxy location only when asked for (no silent fallback)
  local kind = type(transport) == "function" and "custom" or transport or (location and "capture" or "cosocket")
  local http, missing = resty_http()
  if kind == "cosocket" then
    if not http then
      core:close()
      return nil, new_error("config", "resty.new: the default transport (cosockets) needs lua-resty-http: "
        .. "luarocks install lua-resty-http, or opm get ledgetech/lua-resty-http, into a tree on lua_package_path; "
        .. "or pass transport = \"capture\" with a proxy location (see docs/openresty.md): "
        .. tostring(missing), "transport")
    end
    local ca = opts.ca_file ~= nil and "ca_file" or opts.ca_path ~= nil and "ca_path"
    if ca then
      core:close()
      return nil, new_error("config", "'" .. ca .. "' is not used by the cosocket transport: nginx's "
        .. "lua_ssl_trusted_certificate names the CAs it trusts (see docs/openresty.md)", ca)
    end
    transport = cosocket_transport(http, {
      pool = POOL_PREFIX, -- + scheme://authority: every client of this worker shares the pool of an origin
      max_bytes = opts.max_response_bytes or DEFAULTS.max_response_bytes,
    })
  end
  location = (location or DEFAULT_LOCATION):gsub("/+$", "")
  return setmetatable({
    core = core, location = location, capture = kind == "capture", transport_kind = kind,
    shared_dict = shared_dict, pause_dict = pause_dict, -- the origin's pause, shared by every worker
    user_agent = user_agent(kind, http),
    transport = kind == "capture" and capture_transport(location) or transport,
  }, Client)
end

return resty
