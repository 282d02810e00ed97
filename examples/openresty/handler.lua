-- Content handlers for examples/openresty/nginx.conf:
--   POST /esims      {"amount": 2, ...}            -> purchase_esims
--   POST /sim_cards  {"registration_codes": [...]} -> register_sim_cards
-- Answers {"data": [SIM cards], "errors": [...]}, or {"error": {...}} with a
-- 4xx/5xx status. The API key never appears in an answer.
local cjson = require "cjson.safe"
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

-- cjson writes an empty table as {}: the lists go out as [] whatever their length.
local function json_list(list)
  return #list == 0 and "[]" or cjson.encode(list)
end

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
      return respond(200, '{"data":' .. json_list(res.data) .. ',"errors":' .. json_list(res.errors) .. "}")
    end
  end
  ngx.log(ngx.ERR, tostring(err))
  local shown = cjson.encode{ -- err without its list of API errors, then that list
    kind = err.kind, message = err.message, status = err.status, field = err.field,
    request_id = err.request_id, retryable = err.retryable,
  }
  return respond(STATUS[err.kind] or 500,
    '{"error":' .. shown:sub(1, -2) .. ',"errors":' .. json_list(err.errors or {}) .. "}}")
end

function handler.purchase_esims() return run("purchase_esims") end
function handler.register_sim_cards() return run("register_sim_cards") end

return handler
