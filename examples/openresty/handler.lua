-- Content handlers for examples/openresty/nginx.conf:
--   POST /esims      {"amount": 2, ...}            -> purchase_esims
--   POST /sim_cards  {"registration_codes": [...]} -> register_sim_cards
-- Answers {"data": [SIM cards], "errors": [...]}, or {"error": {...}} with a
-- 4xx/5xx status. The API key never appears in an answer.
local cjson = require "cjson.safe"
local sim = require "telnyx.sim"
local resty = require "telnyx.sim.resty"

local handler = {}

local client -- one per worker, made on first use (resty.new does no I/O)

local function get_client()
  if client then return client end
  local err
  client, err = resty.new{
    api_key = os.getenv("TELNYX_API_KEY"), -- needs `env TELNYX_API_KEY;` in nginx.conf
    location = "/_telnyx",                 -- the internal proxy location
    max_retries = 2,
  }
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

local function run(operation)
  ngx.req.read_body()
  local params = cjson.decode(ngx.req.get_body_data() or "")
  if type(params) ~= "table" then
    return respond(400, cjson.encode{ error = { kind = "invalid_params", message = "send a JSON object" } })
  end
  local c, err = get_client()
  if c then
    local res
    res, err = c[operation](c, params)
    if res then
      -- sim.encode writes a result as it came: arrays as [] (a card's empty
      -- lists too, which cjson would turn into {}), objects as {}, null in
      -- arrays as null, big integers exactly. A decoded result always encodes.
      return respond(200, assert(sim.encode{ data = res.data, errors = res.errors }))
    end
  end
  ngx.log(ngx.ERR, tostring(err))
  -- the API's error list; an err made before any answer has an unmarked {}
  local errors = err.errors
  if type(errors) ~= "table" or next(errors) == nil then errors = setmetatable({}, sim.array_mt) end
  local shown = assert(sim.encode{ error = {
    kind = err.kind, message = err.message, status = err.status, field = err.field,
    request_id = err.request_id, retryable = err.retryable, errors = errors,
  } })
  return respond(STATUS[err.kind] or 500, shown)
end

function handler.purchase_esims() return run("purchase_esims") end
function handler.register_sim_cards() return run("register_sim_cards") end

return handler
