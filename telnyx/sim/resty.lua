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

local function call(self, op, params, opts)
  local phase = ngx.get_phase()
  if not CAN_WAIT[phase] then
    return nil, new_error("config", op .. ": cannot run in nginx's '" .. phase .. "' phase (ngx.get_phase()): "
      .. "no subrequest, cosocket or ngx.sleep there; call it from a rewrite, access or content handler, "
      .. "or from a timer (ngx.timer.at) with a `transport`")
  end
  if self.capture and not CAN_CAPTURE[phase] then
    return nil, new_error("config", op .. ": ngx.location.capture is not available in the '" .. phase
      .. "' phase; pass a `transport` (e.g. lua-resty-http, see the README) to call from there")
  end
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
  local attempt = 1
  while true do
    local res, ierr, retry_in = self.core:interpret(req, send(self, req), attempt)
    if res then return res end
    if not retry_in then return nil, ierr end
    ngx.sleep(retry_in)
    attempt = attempt + 1
  end
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

--- Releases the core client (no connection is held: nginx keeps those).
function Client:close()
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
