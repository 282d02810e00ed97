-- Realistic Telnyx payloads, shared by the stub server (its own process) and
-- the specs. Fields follow SimpleSIMCard in ../shared/telnyx-openapi.

local fixtures = {}

fixtures.DEFAULT_GROUP_ID = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"

fixtures.STATUS_REASONS = {
  enabled = "The SIM card is active, ready to connect to networks and consume data.",
  disabled = "The SIM card has been disabled. It can't connect to networks or consume data.",
  standby = "The SIM card is in standby. It can't consume data until it is enabled.",
}

local HEX = "0123456789abcdef"
local function hex(n)
  local t = {}
  for i = 1, n do
    local r = math.random(1, 16)
    t[i] = HEX:sub(r, r)
  end
  return table.concat(t)
end

--- A random UUID v4 string.
function fixtures.uuid4()
  local v = math.random(1, 4)
  return hex(8) .. "-" .. hex(4) .. "-4" .. hex(3) .. "-" .. ("89ab"):sub(v, v) .. hex(3) .. "-" .. hex(12)
end

function fixtures.iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", t or os.time()) .. ".000Z"
end

--- SIM card number n. `null` and `empty_array` are the caller's JSON
-- stand-ins for null and [] (each side encodes JSON its own way).
-- card = { n =, kind = "esim" | "physical", status =, tags =, group_id =, null =, empty_array = }
function fixtures.sim_card(card)
  local n, kind, null = card.n, card.kind or "esim", card.null
  local status = card.status or "enabled"
  local stamp = fixtures.iso8601()
  return {
    id = fixtures.uuid4(),
    record_type = "sim_card",
    iccid = string.format("89310410106543%06d", n),
    imsi = string.format("08193221482%04d", n % 10000), -- 15 digits, leading zero
    msisdn = string.format("+1310997%04d", n % 10000),
    type = kind,
    status = {
      value = status,
      reason = fixtures.STATUS_REASONS[status] or "The SIM card status was set by the request.",
    },
    tags = card.tags or card.empty_array,
    sim_card_group_id = card.group_id or fixtures.DEFAULT_GROUP_ID,
    eid = null,
    esim_installation_status = (kind == "esim") and "released" or null,
    authorized_imeis = null,
    actions_in_progress = false,
    data_limit = { amount = "2048.0", unit = "MB" },
    current_billing_period_consumed_data = { amount = "0.0", unit = "MB" },
    resources_with_in_progress_actions = card.empty_array,
    version = "4.3",
    voice_enabled = false,
    created_at = stamp,
    updated_at = stamp,
  }
end

return fixtures
