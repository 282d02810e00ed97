-- Content handlers for examples/openresty/nginx.conf:
--   POST /esims      {"amount": 2, ...}            -> purchase_esims, then a timer
--                                                     fetches the new eSIMs' activation codes
--   GET  /activation_codes/<id>                    -> what that timer stored for the card
--   POST /sim_cards  {"registration_codes": [...]} -> register_sim_cards
--   POST /capture/esims                            -> purchase_esims through the proxy location
-- Answers {"data": [SIM cards], "errors": [...]}, or {"error": {...}} with a
-- 4xx/5xx status. The API key never appears in an answer or a log line.
local cjson = require "cjson.safe"
local sim = require "telnyx.sim"
local resty = require "telnyx.sim.resty"

local handler = {}

local CODES = ngx.shared.telnyx_activation_codes -- lua_shared_dict in nginx.conf
local CODES_TTL = 3600                           -- seconds a fetched code stays readable

-- One client per worker and transport, made on first use and kept for the
-- worker's life: resty.new does no I/O, and a kept client reuses its
-- kept-alive connections across requests (and timers).
local clients = {}

local function get_client(transport)
  local kind = transport or "default"
  if clients[kind] then return clients[kind] end
  local client, err = resty.new{
    api_key = os.getenv("TELNYX_API_KEY"), -- needs `env TELNYX_API_KEY;` in nginx.conf
    transport = transport,                 -- nil: cosockets when lua-resty-http loads
    max_retries = 2,
  }
  if client then
    ngx.log(ngx.NOTICE, "made ", tostring(client)) -- which transport this worker got
    clients[kind] = client
  end
  return client, err
end

-- What the end user sees for each kind of failure.
local STATUS = { invalid_params = 400, config = 500, http = 502, connection = 502, decode = 502, timeout = 504 }

local function respond(status, body)
  body = body .. "\n"
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK) -- the status is already sent
end

-- An err as JSON: the API's error list kept; an err made before any answer
-- has an unmarked {}, which must still encode as [].
local function error_json(err)
  local errors = err.errors
  if type(errors) ~= "table" or next(errors) == nil then errors = setmetatable({}, sim.array_mt) end
  return assert(sim.encode{ error = {
    kind = err.kind, message = err.message, status = err.status, field = err.field,
    request_id = err.request_id, retryable = err.retryable, errors = errors,
  } })
end

---------------------------------------------------------------------------
-- Activation codes, fetched by a timer after a purchase
---------------------------------------------------------------------------

-- The answer for GET /activation_codes/<id>, with its HTTP status in the
-- entry's flags.
local function store(id, status, body)
  local ok, err = CODES:set(id, body, CODES_TTL, status)
  if not ok then ngx.log(ngx.ERR, "lua_shared_dict telnyx_activation_codes: ", err) end
end

-- ngx.timer.at callback: runs after the purchase's request has been answered,
-- on its own, in this worker. Cosockets (and so the client) work here; the
-- capture transport does not (no subrequests in a timer).
local function fetch_activation_codes(premature, ids)
  if premature then ngx.log(ngx.NOTICE, "nginx is exiting; fetching the activation codes anyway") end
  local client, err = get_client()
  local results
  if client then
    -- One GET per card, on light threads (at most `concurrency` at once),
    -- each with the client's retry policy. results[i] is for ids[i].
    results, err = client:get_activation_codes(ids, { concurrency = 8 })
  end
  if not results then -- nothing was fetched: a config err, or the client closed
    ngx.log(ngx.ERR, "activation codes of ", #ids, " eSIM(s): ", tostring(err))
    for _, id in ipairs(ids) do store(id, 502, error_json(err)) end
    return
  end
  for i, r in ipairs(results) do
    if r.activation_code then
      store(ids[i], 200, assert(sim.encode{ id = r.id, activation_code = r.activation_code }))
    elseif r.err then
      ngx.log(ngx.ERR, "activation code of ", r.id, ": ", tostring(r.err))
      store(ids[i], 502, error_json(r.err))
    else -- a physical card: it has none
      store(ids[i], 404, assert(sim.encode{ id = r.id, skipped = r.skipped }))
    end
  end
  -- the codes themselves stay out of the log: they install an eSIM
  ngx.log(ngx.NOTICE, "timer: fetched the activation codes of ", results.ok, " eSIM(s), ",
    results.failed, " failed")
end

-- Marks the purchased eSIMs pending and starts the timer for them.
local function start_fetching(cards)
  local ids = {}
  for _, card in ipairs(cards) do
    if card.id and card.type == "esim" then
      ids[#ids + 1] = card.id
      store(card.id, 202, assert(sim.encode{ id = card.id, pending = true }))
    end
  end
  if #ids == 0 then return end
  local ok, err = ngx.timer.at(0, fetch_activation_codes, ids)
  if not ok then -- too many pending timers (lua_max_pending_timers), or nginx exiting
    ngx.log(ngx.ERR, "could not start the activation codes timer: ", err)
    local failed = error_json(sim.error("config", "could not start the activation codes timer: " .. tostring(err)))
    for _, id in ipairs(ids) do store(id, 502, failed) end
  end
end

function handler.activation_code()
  local id = ngx.var.uri:match("^/activation_codes/([%w%-]+)$")
  local body, status
  if id then body, status = CODES:get(id) end
  if not body then
    return respond(404, cjson.encode{ error = { kind = "not_found",
      message = "no activation code for that id here (unknown, or expired after " .. CODES_TTL .. " s)" } })
  end
  return respond(status, body)
end

---------------------------------------------------------------------------
-- Calls
---------------------------------------------------------------------------

local function run(operation, transport)
  ngx.req.read_body()
  local params = cjson.decode(ngx.req.get_body_data() or "")
  if type(params) ~= "table" then
    return respond(400, cjson.encode{ error = { kind = "invalid_params", message = "send a JSON object" } })
  end
  local c, err = get_client(transport)
  if c then
    local res
    res, err = c[operation](c, params)
    if res then
      -- Background work goes on a timer, not in this request (which could be
      -- cut short by the client going away); the capture transport cannot.
      if operation == "purchase_esims" and c.transport_kind ~= "capture" then start_fetching(res.data) end
      -- sim.encode writes a result as it came: with OpenResty's lua-cjson
      -- (what OpenResty ships), arrays as [] (a card's empty lists too),
      -- objects as {}, null in arrays as null, big integers exactly.
      return respond(200, assert(sim.encode{ data = res.data, errors = res.errors }))
    end
  end
  ngx.log(ngx.ERR, tostring(err))
  return respond(STATUS[err.kind] or 500, error_json(err))
end

--- POST /esims (and /capture/esims with transport = "capture").
function handler.purchase_esims(transport) return run("purchase_esims", transport) end
function handler.register_sim_cards() return run("register_sim_cards") end

return handler
