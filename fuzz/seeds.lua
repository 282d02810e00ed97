-- Writes the seed corpus (fuzz/corpus-seed/{interpret,request}/) from readable
-- descriptions (request: from the input layout), following the input layout the targets read (see
-- fuzz/fuzz_interpret.c and fuzz/fuzz_request.c). Run: lua5.4 fuzz/seeds.lua
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "fuzz"

local function b(...) return string.char(...) end
local function str(s) assert(#s <= 255) return b(#s) .. s end

---------------------------------------------------------------------------
-- interpret: flags, client, status or failure, headers, [attempt...], body
---------------------------------------------------------------------------
local STATUS = { [200] = 0, [201] = 1, [202] = 2, [204] = 3, [301] = 6, [400] = 9, [401] = 10, [404] = 12,
  [408] = 13, [409] = 14, [422] = 16, [429] = 17, [500] = 19, [502] = 20, [503] = 21, [504] = 22 }
local HEADER = { ["x-request-id"] = 0, ["Location"] = 3, ["Content-Type"] = 5, ["x-should-retry"] = 6,
  ["Retry-After-Ms"] = 9, ["Retry-After"] = 11 }
local FAILURE = { not_sent = 0, connect_timeout = 1, timeout = 2, broken = 3, too_large = 4 }

local function headers(list)
  local out = { b(#list) }
  for _, h in ipairs(list) do
    out[#out + 1] = b(16) .. b(HEADER[h[1]]) .. str(h[2]) -- 16: a name from the list, a string value
  end
  return table.concat(out)
end

-- t = { op = "purchase_esims"|"register_sim_cards", status =, headers = {{name, value}}, body =,
--       failure =, message =, attempt = }
local function interpret(t)
  local flags = (t.op == "register_sim_cards") and 1 or 0
  local out = {}
  if t.failure then
    flags = flags | 2 | (t.message and 4 or 0)
  end
  if t.attempt then flags = flags | 128 end
  out[#out + 1] = b(flags) .. b(0)
  if t.failure then
    out[#out + 1] = b(FAILURE[t.failure])
    if t.message then out[#out + 1] = str(t.message) end
  else
    out[#out + 1] = b((assert(STATUS[t.status], "status"))) .. b(5) -- 5: the listed status as is
    out[#out + 1] = headers(t.headers or {})
  end
  if t.attempt then out[#out + 1] = b(5) end -- 5: the usual attempt, 1
  out[#out + 1] = t.body or ""
  return table.concat(out)
end

local CARD = '{"id":"6a09cdc3-8948-47f0-aa62-74ac943d6c58","record_type":"sim_card","iccid":"89310410106543789301",'
  .. '"imsi":"081932214823362973","msisdn":"+13109976224","type":"esim","status":{"value":"enabled",'
  .. '"reason":"The SIM card is active."},"tags":[],"eid":null,"esim_installation_status":"released",'
  .. '"authorized_imeis":null,"actions_in_progress":false,"data_limit":{"amount":"2048.0","unit":"MB"},'
  .. '"voice_enabled":false,"version":"4.3","created_at":"2024-01-01T00:00:00.000Z"}'
local ERR = '{"code":"10015","title":"Invalid parameter","detail":"amount is required","source":{"pointer":"/amount"}}'

local interpret_seeds = {
  purchase_202 = { status = 202, headers = { { "x-request-id", "req-1" } },
    body = '{"data":[' .. CARD .. ',' .. CARD .. '],"errors":[]}' },
  register_202_errors = { op = "register_sim_cards", status = 202,
    body = '{"data":[' .. CARD .. '],"errors":[' .. ERR .. ']}' },
  purchase_200_float_ints = { status = 200, body = '{"data":[{"n":1.0,"big":9007199254740993,"x":1e400}]}' },
  http_422 = { status = 422, headers = { { "x-request-id", "rq-422" }, { "Content-Type", "application/json" } },
    body = '{"errors":[' .. ERR .. ',' .. ERR .. ']}' },
  http_401_empty = { status = 401, body = "" },
  http_429_retry_after = { status = 429, headers = { { "Retry-After", "3" } }, body = "" },
  http_429_date = { status = 429, headers = { { "Retry-After", "Wed, 21 Oct 2037 07:28:00 GMT" } }, body = "" },
  http_503_should_retry = { op = "register_sim_cards", status = 503,
    headers = { { "x-should-retry", "true" }, { "Retry-After-Ms", "1500" } }, body = "" },
  http_500_purchase = { status = 500, headers = { { "x-should-retry", "false" } }, body = '{"errors":[]}' },
  http_301 = { status = 301, headers = { { "Location", "https://elsewhere.example/v2" } }, body = "" },
  http_502_html = { status = 502, headers = { { "Content-Type", "text/html" } },
    body = "<html><body>502 Bad Gateway</body></html>" },
  truncated_json = { status = 200, body = '{"data":[{"id":' },
  not_an_object = { status = 202, body = '[1,2,3]' },
  data_not_array = { status = 202, body = '{"data":{"id":"x"},"errors":"none"}' },
  no_content = { status = 204, body = "" },
  key_echoed = { status = 401, headers = { { "x-request-id", "KEYfz0SECRET" } },
    body = '{"errors":[{"title":"Bearer KEYfz0SECRET","detail":"bad key KEYfz0SECRET","meta":{"k":"KEYfz0SECRET"}}]}' },
  deep_errors = { status = 400,
    body = '{"errors":[{"meta":{"a":{"b":{"c":{"d":{"e":[[[[{"f":"KEYfz0SECRET"}]]]]}}}}}}]}' },
  fail_timeout = { failure = "timeout", message = "Operation timed out after 1000 milliseconds" },
  fail_broken_register = { op = "register_sim_cards", failure = "broken", message = "Recv failure: reset" },
  fail_not_sent = { failure = "not_sent", message = "Failed to connect to 127.0.0.1 port 1", attempt = true },
  fail_connect_timeout = { failure = "connect_timeout" },
  fail_too_large = { failure = "too_large" },
}

---------------------------------------------------------------------------
-- request: operation, client, opts, params
---------------------------------------------------------------------------
-- The params are shaped by the chosen operation's rule tree (sim.describe),
-- so a run of one byte walks every field of any operation: 2 gives each
-- required field a value of its kind, 3 every field. The first byte is an
-- index into sim.operations (modulo its length): 64 seeds reach every
-- operation; opts: 0 (none), or a timeout and an Idempotency-Key.
local OPTS = { b(0), b(2) .. b(2) .. b(0) .. b(0) .. b(4) .. b(66) .. b(0) .. b(2) .. b(6) .. str("order-42") }
local request_seeds = {}
for op = 0, 63 do
  local fill = b(2 + op % 2)
  request_seeds[("op%02d"):format(op)] = b(op) .. b(op % 2) .. OPTS[op % 4 == 3 and 2 or 1] .. b(2) .. fill:rep(160)
end

local function write_all(sub, seeds, encode)
  os.execute("mkdir -p '" .. dir .. "/corpus-seed/" .. sub .. "'")
  for name, t in pairs(seeds) do
    local f = assert(io.open(dir .. "/corpus-seed/" .. sub .. "/" .. name, "wb"))
    f:write(encode(t))
    f:close()
  end
end

write_all("interpret", interpret_seeds, interpret)
write_all("request", request_seeds, function(bytes) return bytes end)
