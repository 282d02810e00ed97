-- telnyx.sim.resty: the telnyx.sim client for OpenResty, moving its bytes
-- through nginx so the worker's event loop never blocks.
--
--   local resty = require "telnyx.sim.resty"
--   local client = assert(resty.new{ api_key = KEY, location = "/_telnyx" })
--   local res, err = client:purchase_esims{ amount = 2 }
--
-- Every rule (validation, request building, response handling, retry policy)
-- is the C module's: this file only sends what client:request builds and
-- hands what came back to client:interpret, waiting with ngx.sleep when it
-- says to retry.
--
-- The default transport is an ngx.location.capture subrequest to `location`
-- (an internal proxy location, see the README's "Using it in OpenResty"):
-- the module's headers travel in the subrequest's ngx.ctx and reach the
-- proxy through set_by_lua variables (proxy_header), so with
-- `proxy_pass_request_headers off` none of the end user's headers can; a
-- header_filter hook (note_upstream) records whether the upstream answered or
-- the proxy gave up, and when it gave up whether anything had been sent.

local sim = require "telnyx.sim"

local resty = {
  _VERSION = sim._VERSION,
  operations = sim.operations,
}

local CTX_KEY = "telnyx_sim_resty"
local DEFAULT_LOCATION = "/_telnyx"

-- Phases where ngx.sleep (and cosockets) may run, and where subrequests may.
local CAN_WAIT = { rewrite = true, access = true, content = true, timer = true }
local CAN_CAPTURE = { rewrite = true, access = true, content = true }

-- The headers a capture location carries (see proxy_header), lowercased.
local CARRIED = {
  ["authorization"] = true, ["content-type"] = true, ["accept"] = true,
  ["user-agent"] = true, ["idempotency-key"] = true,
}

local FAILURES = { not_sent = true, connect_timeout = true, timeout = true, broken = true, too_large = true }

local function new_error(kind, message, field)
  return sim.error(kind, message, { field = field, retryable = false, attempts = 0 })
end

local function in_openresty()
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
end

---------------------------------------------------------------------------
-- Hooks for the proxy location (they run inside the subrequest)
---------------------------------------------------------------------------

--- set_by_lua_block $telnyx_authorization { return require("telnyx.sim.resty").proxy_header("Authorization") }
-- The value of one of the module's headers for the subrequest being proxied,
-- or "" (nginx then sends no such header) outside a subrequest of this module.
function resty.proxy_header(name)
  local state = ngx.ctx[CTX_KEY]
  if type(state) ~= "table" or type(state.headers) ~= "table" then return "" end
  for k, v in pairs(state.headers) do
    if k:lower() == name:lower() then return v end
  end
  return ""
end

--- header_filter_by_lua_block { require("telnyx.sim.resty").note_upstream() }
-- Records, for the caller, whether the upstream sent a response header and
-- how many bytes went to it: that is what tells "the API answered 502" from
-- "the proxy gave up", and "nothing was sent" from "it may have arrived".
function resty.note_upstream()
  local state = ngx.ctx[CTX_KEY]
  if type(state) ~= "table" then return end
  local var = ngx.var
  state.upstream = {
    status = var.upstream_status or "",
    header_time = var.upstream_header_time or "",
    bytes_sent = var.upstream_bytes_sent,
  }
end

---------------------------------------------------------------------------
-- The capture transport
---------------------------------------------------------------------------

local function list(value)
  local items = {}
  for item in tostring(value or ""):gmatch("[^,:%s]+") do items[#items + 1] = item end
  return items
end

-- Nothing reached the upstream on any attempt nginx made: provable only when
-- nginx reports 0 bytes sent for each of them.
local function nothing_sent(bytes_sent)
  if bytes_sent == nil then return false end -- nginx < 1.15.8: unknown
  local items = list(bytes_sent)
  if #items == 0 then return false end
  for _, n in ipairs(items) do
    if n ~= "0" then return false end
  end
  return true
end

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
    if not up then
      return nil, { failure = "broken", message = string.format(
        "no upstream state from location %s (HTTP %d): it needs "
        .. "header_filter_by_lua_block { require(\"telnyx.sim.resty\").note_upstream() } (see the README)",
        location, res.status) }
    end
    local times = list(up.header_time)
    local answered = tonumber(times[#times]) ~= nil
    if answered then
      if res.truncated then
        return nil, { failure = "broken", status = res.status,
          message = "the response body was cut short (HTTP " .. res.status .. ", upstream " .. up.status .. ")" }
      end
      return res.status, res.header, res.body
    end
    -- No response header from the upstream: the proxy itself gave up.
    local what = string.format("the proxy answered %d (upstream status %s)", res.status, up.status)
    if nothing_sent(up.bytes_sent) then
      return nil, { failure = res.status == 504 and "connect_timeout" or "not_sent",
        message = what .. ", nothing was sent; see nginx's error log" }
    end
    return nil, { failure = res.status == 504 and "timeout" or "broken",
      message = what .. " after sending; see nginx's error log" }
  end
end

---------------------------------------------------------------------------
-- Client
---------------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- One attempt through the transport -> a reply for client:interpret.
local function send(self, req)
  local request = {
    operation = req.operation, method = req.method, url = req.url, path = req.path,
    body = req.body, timeout = req.timeout, connect_timeout = req.connect_timeout, headers = {},
  }
  for k, v in pairs(req.headers) do request.headers[k] = v end
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
      status = tonumber(err.status) }
  end
  -- A bare error: the request may have been sent.
  return { failure = "broken", message = "transport error: " .. tostring(err) }
end

-- A config err when `what` cannot run in this phase (or not with this client's transport), else nil.
local function phase_error(self, what)
  local phase = ngx.get_phase()
  if not CAN_WAIT[phase] then
    return new_error("config", what .. ": cannot run in nginx's '" .. phase .. "' phase (ngx.get_phase()): "
      .. "no subrequest, cosocket or ngx.sleep there; call it from a rewrite, access or content handler, "
      .. "or from a timer (ngx.timer.at) with a `transport`")
  end
  if self.capture and not CAN_CAPTURE[phase] then
    return new_error("config", what .. ": ngx.location.capture is not available in the '" .. phase
      .. "' phase; pass a `transport` (e.g. lua-resty-http, see the README) to call from there")
  end
end

-- client:request, and the capture location's limit on headers -> req | nil, err. No I/O.
local function prepare(self, op, params, opts)
  local req, err = self.core:request(op, params, opts)
  if not req then return nil, err end
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

-- The attempts of one prepared request, for a single call and for each call
-- of a batch: send it, hand the reply to client:interpret, and while that
-- says to retry, wait with ngx.sleep and send it again. `pace` (a batch's,
-- see below) is asked before each attempt starts and told of each retry.
local function attempts(self, req, pace)
  local attempt = 1
  while true do
    if pace then
      local stop = pace:start(attempt)
      if stop then return nil, stop end
    end
    local reply = send(self, req)
    local res, err, retry_in = self.core:interpret(req, reply, attempt)
    if res then return res end
    if not retry_in then return nil, err end
    if pace then
      local stop = pace:retry(reply, retry_in)
      if stop then return nil, stop end
    end
    ngx.sleep(retry_in)
    attempt = attempt + 1
  end
end

local function call(self, op, params, opts)
  local err = phase_error(self, op)
  if err then return nil, err end
  local req
  req, err = prepare(self, op, params, opts)
  if not req then return nil, err end
  return attempts(self, req)
end

--- client:call(name, params [, opts]): the primitive under every operation method.
function Client:call(name, params, opts)
  if type(name) ~= "string" or not sim.describe(name) then
    return nil, new_error("invalid_params", "call: '" .. tostring(name) .. "' is not an operation (see sim.operations)",
      "name")
  end
  return call(self, name, params, opts)
end

for _, name in ipairs(sim.operations) do
  Client[name] = function(self, params, opts) return call(self, name, params, opts) end
end

--- client:sleep(seconds): how flow's helpers wait here -- without blocking the worker.
function Client.sleep(_, seconds)
  ngx.sleep(seconds)
end

-- each and wait_for_action, the same code as the C client's
local flow = require "telnyx.sim.flow"
for _, name in ipairs(flow.methods) do Client[name] = flow[name] end

---------------------------------------------------------------------------
-- Batch: many calls at once, on light threads
---------------------------------------------------------------------------

local DEFAULT_CONCURRENCY = 16 -- the C client's
local rawlen = rawlen or function(t) return #t end -- LuaJIT without 5.2 compat: # is raw there

local STOPPED = sim.error("config", "batch: stopped") -- what a call ends with once its batch stops (never returned)

-- A header's seconds as the C module reads them: digits with one optional dot, at most 24 bytes.
local function header_seconds(value)
  if #value == 0 or #value > 24 or not value:match("^%d*%.?%d*$") then return nil end
  return tonumber(value) or 0 -- "." counts as 0 there too
end

-- Seconds a response's retry-after-ms, else Retry-After (seconds or an HTTP date), asks for; 0 when none.
local function retry_after_of(headers)
  local ms, after
  for name, value in pairs(headers) do
    if type(value) == "table" then value = value[1] end
    if type(name) == "string" and type(value) == "string" then
      name, value = name:lower(), value:match("^[ \t]*(.-)[ \t]*$")
      if name == "retry-after-ms" then
        local v = header_seconds(value)
        if v then ms = v / 1000 end
      elseif name == "retry-after" then
        after = header_seconds(value)
        if not after then
          local t = ngx.parse_http_time(value)
          after = t and t - ngx.time() or nil
        end
      end
    end
  end
  return ms or after or 0
end

-- What paces the attempts of call `index` of a batch (see attempts()).
local Pace = {}
Pace.__index = Pace

-- Before each attempt: waits out the batch's pause; STOPPED once the batch stopped.
function Pace:start(attempt)
  local b = self.batch
  while not b.stopped do
    local wait = b.pause_until - ngx.now()
    if wait > 0 then
      ngx.update_time() -- ngx.now() is the event loop's cached time: be exact before sleeping
      wait = b.pause_until - ngx.now()
    end
    if wait <= 0 then
      b.attempts[self.index] = attempt
      return nil
    end
    ngx.sleep(wait + 0.001) -- nginx's timers count whole milliseconds: never ngx.sleep(0) in a loop
  end
  return STOPPED
end

-- A failed attempt that will be retried in retry_in s: a 429 or a Retry-After
-- pauses the start of every new attempt of the batch for that long, instead
-- of each call hammering the limit on its own (the C client's rule).
function Pace:retry(reply, retry_in)
  local b = self.batch
  if b.stopped then return STOPPED end
  if (not reply.failure and reply.status == 429) or (reply.headers and retry_after_of(reply.headers) > 0) then
    ngx.update_time()
    local t = ngx.now() + retry_in
    if t > b.pause_until then b.pause_until = t end
  end
end

-- A light thread's body: every attempt of call i, then its outcome queued
-- for the coordinating thread, which the semaphore wakes.
local function run_call(self, b, i)
  local fine, res, err = pcall(attempts, self, b.reqs[i], setmetatable({ batch = b, index = i }, Pace))
  b.queued = b.queued + 1
  b.finished[b.queued] = fine and { index = i, res = res, err = err } or { index = i, raised = true, error = res }
  b.sema:post(1)
end

-- Ends the light threads still running: no attempt starts after this; a
-- thread is killed, or waited for when it cannot be (one with a pending
-- subrequest: nginx cannot kill those; it ends after its current attempt).
local function stop_threads(b)
  b.stopped = true
  for _, t in pairs(b.thread_of) do
    if not ngx.thread.kill(t) and coroutine.status(t) ~= "dead" then pcall(ngx.thread.wait, t) end
  end
  b.thread_of = {}
end

-- The coordinating thread: at most `concurrency` light threads (one per call
-- in progress), results in input order, progress called from here.
--
-- It never waits on several threads at once: ngx.thread.wait(a, b) leaves b
-- marked as waited for when a ends first, and b ending later would then
-- resume this thread wherever it is (in ngx.sleep in progress, say). Each
-- thread queues its outcome and posts a semaphore; only an ended thread
-- (or one that cannot be killed, alone) is waited for.
local function run_batch(self, reqs, concurrency, progress)
  local n = #reqs
  local b = { reqs = reqs, pause_until = 0, attempts = {}, stopped = false,
    thread_of = {}, finished = {}, queued = 0, sema = assert(require("ngx.semaphore").new(0)) }
  local results, done, ok, running, next_call, taken = {}, 0, 0, 0, 1, 0

  local function finish(i, res, err)
    results[i] = res and { res = res } or { err = err }
    done = done + 1
    if res then ok = ok + 1 end
    if progress then progress(done, n, i, res, err) end
  end

  local function loop()
    while done < n do
      if self.closed then -- by progress, the transport or anyone: the calls not finished get the same err
        stop_threads(b)
        for i = 1, n do
          if not results[i] then
            finish(i, nil, sim.error("config", reqs[i].operation .. ": the client was closed during the batch",
              { attempts = b.attempts[i] or 0 }))
          end
        end
        return
      end
      while running < concurrency and next_call <= n do
        b.thread_of[next_call] = ngx.thread.spawn(run_call, self, b, next_call)
        running, next_call = running + 1, next_call + 1
      end
      local woke, werr = b.sema:wait(60)
      if woke then
        taken = taken + 1
        local f = b.finished[taken]
        b.finished[taken] = nil
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
  results.ok, results.failed = ok, done - ok
  return results
end

--- client:batch(calls [, opts]) -> results | nil, err: the C client's batch
-- (see src/batch.c for the API), each call's attempts on a light thread.
--   calls[i] = { name, params [, opts] }
--   opts = { concurrency = 16 (1-1000), progress = function(done, total, index, res, err) }
--   results[i] = { res = } | { err = } in input order; results.ok, results.failed.
-- Every call is checked before anything is sent (nil, err with err.index).
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
    elseif type(rawget(c, 1)) ~= "string" or not sim.describe(rawget(c, 1)) then
      err = sim.error("invalid_params", "[1] must be an operation name (see telnyx.sim.operations)")
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
  return run_batch(self, reqs, rawget(opts, "concurrency") or DEFAULT_CONCURRENCY, rawget(opts, "progress"))
end

--- Releases the core client (no connection is held: nginx keeps those).
function Client:close()
  self.closed = true -- a batch running notices it
  self.core:close()
end

function Client:__tostring()
  return "telnyx.sim.resty client (" .. (self.capture and "location " .. self.location or "custom transport") .. ")"
end

--- resty.new{ api_key =, location = "/_telnyx", transport = function(request), ...sim.new options }
-- -> client | nil, err. Raises on a wrong option type, like sim.new.
function resty.new(opts)
  if opts ~= nil and type(opts) ~= "table" then error("telnyx.sim.resty.new: options must be a table", 2) end
  opts = opts or {}
  local location, transport = opts.location, opts.transport
  if location ~= nil and (type(location) ~= "string" or not location:match("^/[%w%-%._~/]*$")) then
    error("telnyx.sim.resty.new: 'location' must be a path such as \"/_telnyx\"", 2)
  end
  if transport ~= nil and type(transport) ~= "function" then
    error("telnyx.sim.resty.new: 'transport' must be a function(request) -> status, headers, body | nil, err", 2)
  end
  local core_opts = {}
  for k, v in pairs(opts) do
    if k ~= "location" and k ~= "transport" then core_opts[k] = v end
  end
  local core, err = sim.new(core_opts)
  if not core then return nil, err end
  if not in_openresty() then
    core:close()
    return nil, new_error("config", "telnyx.sim.resty runs inside OpenResty (ngx_lua); in plain Lua use telnyx.sim")
  end
  location = (location or DEFAULT_LOCATION):gsub("/+$", "")
  return setmetatable({
    core = core, location = location, capture = transport == nil,
    transport = transport or capture_transport(location),
  }, Client)
end

return resty
