-- Writes a canned 202 body for POST /actions/purchase/esims: {"data":[<n cards>],"errors":[]}.
-- Usage: lua5.4 bench/body.lua N > FILE
-- Deterministic (the same N gives the same bytes), compact like the API's own output. Fields
-- follow SimpleSIMCard in ../shared/telnyx-openapi/sim-cards-subset.yaml, plus
-- current_device_location from the full SIMCard schema for an integer (accuracy), so the bytes
-- hold what the module must normalise: nulls (eid, authorized_imeis), integers, strings with
-- leading zeros (imsi) and empty arrays.

local n = tonumber(arg[1])
if not n or n < 0 or n % 1 ~= 0 then
  io.stderr:write("usage: lua5.4 bench/body.lua N\n")
  os.exit(2)
end

local REASON = "The SIM card is active, ready to connect to networks and consume data."
local GROUP = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"

local function uuid(i)
  -- a fixed-looking UUIDv4 derived from i (not random: runs compare the same bytes)
  local a = (i * 2654435761) % 4294967296
  local b = (i * 40503) % 65536
  return string.format("%08x-%04x-4%03x-a%03x-%012x", a, b, (i * 7) % 4096, (i * 13) % 4096,
                       (i * 1000003 + 0x5e1d) % 281474976710656)
end

local card = table.concat({
  '{"id":"%s"',
  ',"record_type":"sim_card"',
  ',"iccid":"89310410106543%06d"',
  ',"imsi":"0819322148%08d"',            -- 18 digits, leading zero: must stay a string
  ',"msisdn":"+1310997%04d"',
  ',"type":"esim"',
  ',"status":{"value":"enabled","reason":"' .. REASON .. '"}',
  ',"tags":["fleet","batch-2026"]',
  ',"sim_card_group_id":"' .. GROUP .. '"',
  ',"eid":null',
  ',"esim_installation_status":"released"',
  ',"authorized_imeis":null',
  ',"actions_in_progress":false',
  ',"data_limit":{"amount":"2048.0","unit":"MB"}',
  ',"current_billing_period_consumed_data":{"amount":"0.0","unit":"MB"}',
  ',"current_device_location":{"accuracy":%d,"accuracy_unit":"m","latitude":"41.143","longitude":"-8.605"}',
  ',"resources_with_in_progress_actions":[]',
  ',"version":"4.3"',
  ',"voice_enabled":false',
  ',"created_at":"2026-08-04T10:%02d:%02d.521Z"',
  ',"updated_at":"2026-08-04T10:%02d:%02d.521Z"}',
})

local out = {}
for i = 1, n do
  local m, s = (i // 60) % 60, i % 60
  out[i] = string.format(card, uuid(i), i, 23362973 + i, i % 10000, 1250 + (i % 7) * 10, m, s, m, s)
end
io.write('{"data":[', table.concat(out, ","), '],"errors":[]}')
