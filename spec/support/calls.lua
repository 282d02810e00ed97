-- One valid, realistic call per operation of telnyx.sim (all 45), as data,
-- with what must go out on the wire for it, and a builder of realistic
-- success bodies. Used by spec/operations_spec.lua; written to be reusable
-- by a contract runner against a real or recorded API.
--
--   local calls = require "spec.support.calls"
--   local c = calls.list_sim_cards
--   -- c.params  the params table to pass to client:call("list_sim_cards", c.params)
--   -- c.path    the path the server must see (below the host, /v2 included)
--   -- c.query   the raw query string it must see, or nil for none
--   -- c.body    the decoded JSON body it must see, or nil for no body
--   -- c.json    the exact body bytes (the module writes fields in row order)
--   -- c.status  the document's success status for the operation
--   -- c.method, c.result ("list" | "one"), c.resend ("safe" | "duplicates" | "spends_money")
--   local body = calls.response(sim.describe("list_sim_cards"), c.params)
--
-- The expectations are written out by hand from the OpenAPI document and
-- NOTES.md ("Query encoding"), never computed by the module under test.
-- JSON null is sim.null (a NULL light userdata, the same value as
-- cjson.null), in params, expected bodies and built responses alike.
-- Works under Lua 5.1 - 5.4 and LuaJIT.

local null = require("telnyx.sim").null

local calls = {}

calls.null = null

-- Ids, shaped like the API's (UUID v4), each naming one kind of object.
local ids = {
  card = "6b14e151-8493-4fa1-8664-1cc4e6d14158",
  card2 = "9f3c2a71-5d4e-4b8a-a6c1-0e2f7d9b3c45",
  group = "47a1c2b0-cc7b-4ab1-bb98-b33fb0fc61b9",
  action = "a8f7b2e1-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
  bulk_action = "c2d3e4f5-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
  group_action = "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6",
  order = "2f8a4c6e-0b1d-4e3f-a5c7-9e1b3d5f7a9c",
  notification = "79228acc-3f08-4e70-ac68-cb5aae8b537a",
  gateway = "6a09cdc3-8948-47f0-aa62-74ac943d6c58",
  blocklist = "8f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2918",
}
calls.ids = ids

local V2 = "/v2"

-- name -> { params, path, query, body, json, status }
local rows = {
  ---------------------------------------------------------------- purchase / register
  purchase_esims = {
    params = { amount = 3, sim_card_group_id = ids.group, tags = { "fleet", "eu-west" }, product = "whitelabel",
      whitelabel_name = "Acme Mobile", status = "standby" },
    path = "/actions/purchase/esims",
    body = { amount = 3, sim_card_group_id = ids.group, tags = { "fleet", "eu-west" }, product = "whitelabel",
      whitelabel_name = "Acme Mobile", status = "standby" },
    json = '{"amount":3,"sim_card_group_id":"' .. ids.group .. '","tags":["fleet","eu-west"],'
      .. '"product":"whitelabel","whitelabel_name":"Acme Mobile","status":"standby"}',
    status = 202,
  },
  register_sim_cards = {
    params = { registration_codes = { "0000000001", "4827361950" }, sim_card_group_id = ids.group,
      tags = { "warehouse" }, status = "disabled" },
    path = "/actions/register/sim_cards",
    body = { registration_codes = { "0000000001", "4827361950" }, sim_card_group_id = ids.group,
      tags = { "warehouse" }, status = "disabled" },
    json = '{"registration_codes":["0000000001","4827361950"],"sim_card_group_id":"' .. ids.group
      .. '","tags":["warehouse"],"status":"disabled"}',
    status = 202,
  },

  ---------------------------------------------------------------- SIM cards
  list_sim_cards = {
    params = {
      filter = { iccid = "89310410106543789301", msisdn = "+13109976224", status = { "enabled", "standby" },
        tags = { "fleet", "eu west" }, sim_card_group_id = ids.group },
      page = { number = 2, size = 50 },
      include_sim_card_group = true,
      sort = "-current_billing_period_consumed_data.amount",
    },
    path = "/sim_cards",
    query = "filter[iccid]=89310410106543789301&filter[msisdn]=%2B13109976224&filter[status]=enabled,standby"
      .. "&filter[tags]=fleet,eu%20west&filter[sim_card_group_id]=" .. ids.group
      .. "&page[number]=2&page[size]=50&include_sim_card_group=true&sort=-current_billing_period_consumed_data.amount",
    status = 200,
  },
  get_sim_card = {
    params = { id = ids.card, include_sim_card_group = true, include_pin_puk_codes = false },
    path = "/sim_cards/" .. ids.card,
    query = "include_sim_card_group=true&include_pin_puk_codes=false",
    status = 200,
  },
  update_sim_card = {
    params = { id = ids.card, authorized_imeis = null, data_limit = { amount = "2048.5", unit = "MB" },
      sim_card_group_id = ids.group, tags = { "fleet", "eu-west" } },
    path = "/sim_cards/" .. ids.card,
    body = { authorized_imeis = null, data_limit = { amount = "2048.5", unit = "MB" }, sim_card_group_id = ids.group,
      tags = { "fleet", "eu-west" } },
    json = '{"authorized_imeis":null,"data_limit":{"amount":"2048.5","unit":"MB"},"sim_card_group_id":"'
      .. ids.group .. '","tags":["fleet","eu-west"]}',
    status = 200,
  },
  delete_sim_card = {
    params = { id = ids.card, report_lost = true },
    path = "/sim_cards/" .. ids.card,
    query = "report_lost=true",
    status = 200,
  },
  enable_sim_card = { params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/actions/enable", status = 202 },
  disable_sim_card = { params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/actions/disable", status = 202 },
  set_sim_card_standby = {
    params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/actions/set_standby", status = 202,
  },
  set_sim_card_public_ip = {
    params = { id = ids.card, region_code = "dc2" },
    path = "/sim_cards/" .. ids.card .. "/actions/set_public_ip",
    query = "region_code=dc2",
    status = 202,
  },
  remove_sim_card_public_ip = {
    params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/actions/remove_public_ip", status = 202,
  },
  get_sim_card_public_ip = { params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/public_ip", status = 200 },
  get_sim_card_activation_code = {
    params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/activation_code", status = 200,
  },
  get_sim_card_device_details = {
    params = { id = ids.card }, path = "/sim_cards/" .. ids.card .. "/device_details", status = 200,
  },
  list_wireless_connectivity_logs = {
    params = { id = ids.card, page = { number = 1, size = 25 } },
    path = "/sim_cards/" .. ids.card .. "/wireless_connectivity_logs",
    query = "page[number]=1&page[size]=25",
    status = 200,
  },
  validate_registration_codes = {
    params = { registration_codes = { "0000000001", "123456780" } },
    path = "/sim_cards/actions/validate_registration_codes",
    body = { registration_codes = { "0000000001", "123456780" } },
    json = '{"registration_codes":["0000000001","123456780"]}',
    status = 200,
  },
  bulk_enable_voice = {
    params = { sim_card_group_id = ids.group },
    path = "/sim_cards/actions/bulk_enable_voice",
    body = { sim_card_group_id = ids.group },
    json = '{"sim_card_group_id":"' .. ids.group .. '"}',
    status = 202,
  },
  bulk_disable_voice = {
    params = { sim_card_group_id = ids.group },
    path = "/sim_cards/actions/bulk_disable_voice",
    body = { sim_card_group_id = ids.group },
    json = '{"sim_card_group_id":"' .. ids.group .. '"}',
    status = 202,
  },
  bulk_set_public_ips = {
    params = { sim_card_ids = { ids.card, ids.card2 } },
    path = "/sim_cards/actions/bulk_set_public_ips",
    body = { sim_card_ids = { ids.card, ids.card2 } },
    json = '{"sim_card_ids":["' .. ids.card .. '","' .. ids.card2 .. '"]}',
    status = 202,
  },

  ---------------------------------------------------------------- actions
  list_sim_card_actions = {
    params = {
      filter = { action_type = "set_public_ip", bulk_sim_card_action_id = ids.bulk_action, sim_card_id = ids.card,
        status = "completed" },
      page = { number = 3, size = 100 },
    },
    path = "/sim_card_actions",
    query = "filter[action_type]=set_public_ip&filter[bulk_sim_card_action_id]=" .. ids.bulk_action
      .. "&filter[sim_card_id]=" .. ids.card .. "&filter[status]=completed&page[number]=3&page[size]=100",
    status = 200,
  },
  get_sim_card_action = { params = { id = ids.action }, path = "/sim_card_actions/" .. ids.action, status = 200 },
  list_bulk_sim_card_actions = {
    params = { page = { number = 1, size = 10 }, filter = { action_type = "bulk_set_public_ips" } },
    path = "/bulk_sim_card_actions",
    query = "page[number]=1&page[size]=10&filter[action_type]=bulk_set_public_ips",
    status = 200,
  },
  get_bulk_sim_card_action = {
    params = { id = ids.bulk_action }, path = "/bulk_sim_card_actions/" .. ids.bulk_action, status = 200,
  },

  ---------------------------------------------------------------- groups
  list_sim_card_groups = {
    params = { page = { number = 1, size = 20 },
      filter = { name = "Fleet EU", private_wireless_gateway_id = ids.gateway, wireless_blocklist_id = ids.blocklist } },
    path = "/sim_card_groups",
    query = "page[number]=1&page[size]=20&filter[name]=Fleet%20EU&filter[private_wireless_gateway_id]=" .. ids.gateway
      .. "&filter[wireless_blocklist_id]=" .. ids.blocklist,
    status = 200,
  },
  create_sim_card_group = {
    params = { data_limit = { amount = "500", unit = "GB" }, name = "Fleet EU" },
    path = "/sim_card_groups",
    body = { data_limit = { amount = "500", unit = "GB" }, name = "Fleet EU" },
    json = '{"data_limit":{"amount":"500","unit":"GB"},"name":"Fleet EU"}',
    status = 200,
  },
  get_sim_card_group = {
    params = { id = ids.group, include_iccids = true },
    path = "/sim_card_groups/" .. ids.group,
    query = "include_iccids=true",
    status = 200,
  },
  update_sim_card_group = {
    params = { id = ids.group, data_limit = { amount = "1.5", unit = "GB" }, name = "Fleet EU (rollout)" },
    path = "/sim_card_groups/" .. ids.group,
    body = { data_limit = { amount = "1.5", unit = "GB" }, name = "Fleet EU (rollout)" },
    json = '{"data_limit":{"amount":"1.5","unit":"GB"},"name":"Fleet EU (rollout)"}',
    status = 200,
  },
  delete_sim_card_group = { params = { id = ids.group }, path = "/sim_card_groups/" .. ids.group, status = 200 },
  set_sim_card_group_private_wireless_gateway = {
    params = { id = ids.group, private_wireless_gateway_id = ids.gateway },
    path = "/sim_card_groups/" .. ids.group .. "/actions/set_private_wireless_gateway",
    body = { private_wireless_gateway_id = ids.gateway },
    json = '{"private_wireless_gateway_id":"' .. ids.gateway .. '"}',
    status = 202,
  },
  remove_sim_card_group_private_wireless_gateway = {
    params = { id = ids.group },
    path = "/sim_card_groups/" .. ids.group .. "/actions/remove_private_wireless_gateway",
    status = 202,
  },
  set_sim_card_group_wireless_blocklist = {
    params = { id = ids.group, wireless_blocklist_id = ids.blocklist },
    path = "/sim_card_groups/" .. ids.group .. "/actions/set_wireless_blocklist",
    body = { wireless_blocklist_id = ids.blocklist },
    json = '{"wireless_blocklist_id":"' .. ids.blocklist .. '"}',
    status = 202,
  },
  remove_sim_card_group_wireless_blocklist = {
    params = { id = ids.group },
    path = "/sim_card_groups/" .. ids.group .. "/actions/remove_wireless_blocklist",
    status = 202,
  },
  list_sim_card_group_actions = {
    params = { page = { number = 2, size = 15 },
      filter = { sim_card_group_id = ids.group, status = "in-progress", type = "set_wireless_blocklist" } },
    path = "/sim_card_group_actions",
    query = "page[number]=2&page[size]=15&filter[sim_card_group_id]=" .. ids.group
      .. "&filter[status]=in-progress&filter[type]=set_wireless_blocklist",
    status = 200,
  },
  get_sim_card_group_action = {
    params = { id = ids.group_action }, path = "/sim_card_group_actions/" .. ids.group_action, status = 200,
  },

  ---------------------------------------------------------------- orders
  preview_sim_card_order = {
    params = { address_id = "1293384261075731499", quantity = 21 },
    path = "/sim_card_order_preview",
    body = { address_id = "1293384261075731499", quantity = 21 },
    json = '{"address_id":"1293384261075731499","quantity":21}',
    status = 202,
  },
  list_sim_card_orders = {
    params = {
      filter = { ["address.country_code"] = "US", ["cost.currency"] = "USD", created_at = "2026-01-31T12:00:00Z",
        quantity = 21 },
      page = { number = 1, size = 250 },
    },
    path = "/sim_card_orders",
    query = "filter[address.country_code]=US&filter[cost.currency]=USD&filter[created_at]=2026-01-31T12%3A00%3A00Z"
      .. "&filter[quantity]=21&page[number]=1&page[size]=250",
    status = 200,
  },
  create_sim_card_order = {
    params = { address_id = "1293384261075731499", quantity = 21 },
    path = "/sim_card_orders",
    body = { address_id = "1293384261075731499", quantity = 21 },
    json = '{"address_id":"1293384261075731499","quantity":21}',
    status = 200,
  },
  get_sim_card_order = { params = { id = ids.order }, path = "/sim_card_orders/" .. ids.order, status = 200 },

  ---------------------------------------------------------------- data-usage notifications
  list_sim_card_data_usage_notifications = {
    params = { page = { number = 2, size = 5 }, filter = { sim_card_id = ids.card } },
    path = "/sim_card_data_usage_notifications",
    query = "page[number]=2&page[size]=5&filter[sim_card_id]=" .. ids.card,
    status = 200,
  },
  create_sim_card_data_usage_notification = {
    params = { sim_card_id = ids.card, threshold = { amount = "2048", unit = "MB" } },
    path = "/sim_card_data_usage_notifications",
    body = { sim_card_id = ids.card, threshold = { amount = "2048", unit = "MB" } },
    json = '{"sim_card_id":"' .. ids.card .. '","threshold":{"amount":"2048","unit":"MB"}}',
    status = 201,
  },
  get_sim_card_data_usage_notification = {
    params = { id = ids.notification },
    path = "/sim_card_data_usage_notifications/" .. ids.notification,
    status = 200,
  },
  update_sim_card_data_usage_notification = {
    params = { id = ids.notification, sim_card_id = ids.card2, threshold = { amount = "0.75", unit = "GB" } },
    path = "/sim_card_data_usage_notifications/" .. ids.notification,
    body = { sim_card_id = ids.card2, threshold = { amount = "0.75", unit = "GB" } },
    json = '{"sim_card_id":"' .. ids.card2 .. '","threshold":{"amount":"0.75","unit":"GB"}}',
    status = 200,
  },
  delete_sim_card_data_usage_notification = {
    params = { id = ids.notification },
    path = "/sim_card_data_usage_notifications/" .. ids.notification,
    status = 200,
  },

  ---------------------------------------------------------------- reference
  list_wireless_regions = {
    params = { product = "public_ips" },
    path = "/wireless/regions",
    query = "product=public_ips",
    status = 200,
  },
  list_mobile_network_operators = {
    params = {
      filter = { country_code = "US", mcc = "310", name = { starts_with = "AT&T" }, network_preferences_enabled = true,
        tadig = "USACG" },
      page = { number = 1, size = 100 },
    },
    path = "/mobile_network_operators",
    query = "filter[country_code]=US&filter[mcc]=310&filter[name][starts_with]=AT%26T"
      .. "&filter[network_preferences_enabled]=true&filter[tadig]=USACG&page[number]=1&page[size]=100",
    status = 200,
  },
}

-- The row facts, from NOTES.md and the document rather than from the module:
-- method, result kind ("list" | "one"), and what a second copy does
-- ("safe" | "duplicates" | "spends_money", NOTES.md "What a second copy of a
-- request does").
local facts = {
  purchase_esims = { "POST", "list", "spends_money" },
  register_sim_cards = { "POST", "list", "safe" },
  list_sim_cards = { "GET", "list", "safe" },
  get_sim_card = { "GET", "one", "safe" },
  update_sim_card = { "PATCH", "one", "safe" },
  delete_sim_card = { "DELETE", "one", "safe" },
  enable_sim_card = { "POST", "one", "safe" },
  disable_sim_card = { "POST", "one", "safe" },
  set_sim_card_standby = { "POST", "one", "safe" },
  set_sim_card_public_ip = { "POST", "one", "spends_money" },
  remove_sim_card_public_ip = { "POST", "one", "safe" },
  get_sim_card_public_ip = { "GET", "one", "safe" },
  get_sim_card_activation_code = { "GET", "one", "safe" },
  get_sim_card_device_details = { "GET", "one", "safe" },
  list_wireless_connectivity_logs = { "GET", "list", "safe" },
  validate_registration_codes = { "POST", "list", "safe" },
  bulk_enable_voice = { "POST", "one", "safe" },
  bulk_disable_voice = { "POST", "one", "safe" },
  bulk_set_public_ips = { "POST", "one", "spends_money" },
  list_sim_card_actions = { "GET", "list", "safe" },
  get_sim_card_action = { "GET", "one", "safe" },
  list_bulk_sim_card_actions = { "GET", "list", "safe" },
  get_bulk_sim_card_action = { "GET", "one", "safe" },
  list_sim_card_groups = { "GET", "list", "safe" },
  create_sim_card_group = { "POST", "one", "duplicates" },
  get_sim_card_group = { "GET", "one", "safe" },
  update_sim_card_group = { "PATCH", "one", "safe" },
  delete_sim_card_group = { "DELETE", "one", "safe" },
  set_sim_card_group_private_wireless_gateway = { "POST", "one", "safe" },
  remove_sim_card_group_private_wireless_gateway = { "POST", "one", "safe" },
  set_sim_card_group_wireless_blocklist = { "POST", "one", "safe" },
  remove_sim_card_group_wireless_blocklist = { "POST", "one", "safe" },
  list_sim_card_group_actions = { "GET", "list", "safe" },
  get_sim_card_group_action = { "GET", "one", "safe" },
  preview_sim_card_order = { "POST", "one", "safe" },
  list_sim_card_orders = { "GET", "list", "safe" },
  create_sim_card_order = { "POST", "one", "spends_money" },
  get_sim_card_order = { "GET", "one", "safe" },
  list_sim_card_data_usage_notifications = { "GET", "list", "safe" },
  create_sim_card_data_usage_notification = { "POST", "one", "duplicates" },
  get_sim_card_data_usage_notification = { "GET", "one", "safe" },
  update_sim_card_data_usage_notification = { "PATCH", "one", "safe" },
  delete_sim_card_data_usage_notification = { "DELETE", "one", "safe" },
  list_wireless_regions = { "GET", "list", "safe" },
  list_mobile_network_operators = { "GET", "list", "safe" },
}

for name, row in pairs(rows) do
  local f = assert(facts[name], name)
  row.name = name
  row.method, row.result, row.resend = f[1], f[2], f[3]
  row.path = V2 .. row.path
  calls[name] = row
end

--- The names of every call here, sorted (functions and constants left out).
function calls.names()
  local out = {}
  for name in pairs(rows) do out[#out + 1] = name end
  table.sort(out)
  return out
end

--- A deep copy of v (sim.null and other non-tables kept as they are).
local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end
calls.copy = copy

---------------------------------------------------------------------------
-- Success bodies
---------------------------------------------------------------------------

local STAMP = "2026-01-31T12:00:00.000Z"

-- The n-th id of a family: the family's id with its last 12 hex digits = n.
local function nth_id(base, n)
  return base:sub(1, 24) .. string.format("%012x", n)
end

local records = {}

function records.sim_card(id, n)
  return {
    id = id, record_type = "sim_card", type = n % 2 == 1 and "physical" or "esim",
    iccid = string.format("893104101065437893%02d", n), imsi = string.format("0819322148233629%02d", n),
    msisdn = string.format("+131099762%02d", n),
    status = { value = "enabled", reason = "The SIM card is active, ready to connect to networks and consume data." },
    tags = { "personal", "customers" }, sim_card_group_id = ids.group,
    eid = n % 2 == 1 and null or "89049032005008882600033598130791",
    esim_installation_status = n % 2 == 1 and null or "released",
    authorized_imeis = { "106516771852751", "534051870479563" },
    actions_in_progress = false,
    data_limit = { amount = "2048.0", unit = "MB" },
    current_billing_period_consumed_data = { amount = "12.5", unit = "MB" },
    version = "4.3", voice_enabled = true,
    created_at = STAMP, updated_at = STAMP,
  }
end

local function action_status(value)
  local reasons = { ["in-progress"] = "The action is in progress.", completed = "The action was completed." }
  return { value = value, reason = reasons[value] }
end

function records.sim_card_action(id, n, d)
  local action_type = d and d.path:match("/actions/([%w_]+)$") or "enable"
  local settings = {}
  if action_type == "set_public_ip" then settings = { region_code = "dc2" } end
  return {
    id = id, record_type = "sim_card_action", action_type = action_type, sim_card_id = nth_id(ids.card, n),
    settings = settings, status = action_status("in-progress"), created_at = STAMP, updated_at = STAMP,
  }
end

function records.bulk_sim_card_action(id, _, d)
  local action_type = d and d.path:match("/actions/(bulk_[%w_]+)$") or "bulk_set_public_ips"
  return {
    id = id, record_type = "bulk_sim_card_action", action_type = action_type,
    settings = { sim_card_group_id = ids.group },
    sim_card_actions_summary = { { count = 10, status = "in-progress" }, { count = 2, status = "completed" } },
    created_at = STAMP, updated_at = STAMP,
  }
end

function records.sim_card_group(id, n)
  return {
    id = id, record_type = "sim_card_group", name = "Fleet EU " .. n, default = false,
    data_limit = { amount = "500", unit = "GB" }, consumed_data = { amount = "2.5", unit = "GB" },
    private_wireless_gateway_id = null, wireless_blocklist_id = ids.blocklist, sim_card_count = 12 + n,
    created_at = STAMP, updated_at = STAMP,
  }
end

function records.sim_card_group_action(id, _, d)
  local kind = d and d.path:match("/actions/([%w_]+)$") or "set_wireless_blocklist"
  return {
    id = id, record_type = "sim_card_group_action", type = kind, sim_card_group_id = ids.group,
    settings = { wireless_blocklist_id = ids.blocklist }, status = "in-progress",
    created_at = STAMP, updated_at = STAMP,
  }
end

function records.sim_card_public_ip(_, n)
  return {
    record_type = "sim_card_public_ip", ip = string.format("192.168.0.%d", n), region_code = "dc2", type = "ipv4",
    sim_card_id = nth_id(ids.card, n), created_at = STAMP, updated_at = STAMP,
  }
end

function records.sim_card_activation_code()
  return { record_type = "sim_card_activation_code", activation_code = "LPA:1$rsp.truphone.com$QRF-BETTERROAMING-PMRDGIR2EARDEIT5" }
end

function records.device_details()
  return {
    record_type = "device_details", imei = "457032284023794", brand_name = "Apple", model_name = "iPhone 11",
    device_type = "Smartphone", operating_system = "iOS",
  }
end

function records.wireless_connectivity_log(_, n)
  return {
    id = 137509450 + n, record_type = "wireless_connectivity_log", log_type = "registration",
    imei = "490154203237518", imsi = "081932214823362973", apn = "data00.telnyx", ipv4 = "192.168.0.0",
    ipv6 = "2001:cdba:0000:0000:0000:0000:3257:9652", mobile_country_code = "310", mobile_network_code = "410",
    radio_access_technology = "LTE", cell_id = "311210-6813", sim_card_id = ids.card,
    created_at = STAMP, last_seen = n == 1 and STAMP or null,
  }
end

function records.sim_card_registration_code_validation(_, n)
  return n == 1 and { record_type = "sim_card_registration_code_validation", registration_code = "0000000001",
    valid = true, invalid_detail = null }
    or { record_type = "sim_card_registration_code_validation", registration_code = "123456780", valid = false,
      invalid_detail = "This code is already in use." }
end

function records.sim_card_order_preview()
  return {
    record_type = "sim_card_order_preview", quantity = 21,
    shipping_cost = { amount = "20.0", currency = "USD" }, sim_cards_cost = { amount = "42.0", currency = "USD" },
    total_cost = { amount = "62.0", currency = "USD" },
  }
end

function records.sim_card_order(id)
  return {
    id = id, record_type = "sim_card_order", quantity = 21, status = "pending",
    cost = { amount = "2.42", currency = "USD" },
    order_address = { id = "1293384261075731499", street_address = "311 W Superior St", extended_address = "Suite 504",
      locality = "Chicago", administrative_area = "IL", country_code = "US", postal_code = "60654" },
    tracking_url = null, created_at = STAMP, updated_at = STAMP,
  }
end

function records.sim_card_data_usage_notification(id, n)
  return {
    id = id, record_type = "sim_card_data_usage_notification", sim_card_id = nth_id(ids.card, n),
    threshold = { amount = "2048.1", unit = "MB" }, created_at = STAMP, updated_at = STAMP,
  }
end

function records.wireless_region(_, n)
  local regions = { { "dc2", "Ashburn" }, { "fra", "Frankfurt" } }
  local r = regions[(n - 1) % #regions + 1]
  return { code = r[1], name = r[2], inserted_at = STAMP, updated_at = STAMP }
end

function records.mobile_network_operator(id, n)
  return {
    id = id, record_type = "mobile_network_operator", name = n == 1 and "AT&T Mobility" or "T-Mobile USA",
    country_code = "US", mcc = "310", mnc = n == 1 and "410" or "260", tadig = n == 1 and "USACG" or "USAW6",
    network_preferences_enabled = true,
  }
end

-- What describe()'s noun answers with: the record builder and its id family.
local by_noun = {
  ["SIM card"] = { "sim_card", ids.card },
  ["public IP"] = { "sim_card_public_ip" },
  ["activation code"] = { "sim_card_activation_code" },
  ["device details"] = { "device_details" },
  ["wireless connectivity log"] = { "wireless_connectivity_log" },
  ["registration code"] = { "sim_card_registration_code_validation" },
  ["bulk SIM card action"] = { "bulk_sim_card_action", ids.bulk_action },
  ["SIM card action"] = { "sim_card_action", ids.action },
  ["SIM card group"] = { "sim_card_group", ids.group },
  ["SIM card group action"] = { "sim_card_group_action", ids.group_action },
  ["SIM card order preview"] = { "sim_card_order_preview" },
  ["SIM card order"] = { "sim_card_order", ids.order },
  ["data usage notification"] = { "sim_card_data_usage_notification", ids.notification },
  ["wireless region"] = { "wireless_region" },
  ["mobile network operator"] = { "mobile_network_operator", "b7f7a6a2-1c3e-4f5d-8a9b-0c1d2e3f4a5b" },
}

-- The record kind an operation answers with (NOTES.md "Async actions": the
-- SIM card and group actions answer with an action object, not their noun).
local function kind_of(d)
  if d.path:match("^/sim_cards/{id}/actions/") then return "sim_card_action", ids.action end
  if d.path:match("^/sim_card_groups/{id}/actions/") then return "sim_card_group_action", ids.group_action end
  local k = by_noun[d.noun]
  if k then return k[1], k[2] end
  return nil
end

local function has_param(d, name)
  for _, f in ipairs(d.params.fields) do
    if f.name == name then return true end
  end
  return false
end

--- One record for operation description d (sim.describe's table), number n
-- (1, 2, ...); `id` names it when given (a path id the call asked for).
function calls.record(d, n, id)
  n = n or 1
  local kind, family = kind_of(d)
  if not kind then -- an operation added later: a plain record named after its noun
    return { id = id or nth_id(ids.card, n), record_type = (d.noun or d.name):lower():gsub("%W+", "_") }
  end
  id = id or (family and nth_id(family, n))
  return records[kind](id, n, d)
end

--- A realistic success body for operation description d (sim.describe's
-- table), for the params of the call when given:
--   list: { data = { record, record }, meta = { page_number, page_size, total_pages, total_results } }
--         (meta only for paged lists, as the API answers)
--   one:  { data = record }  (record.id = params.id when the path names the record;
--         an action's sim_card_id / sim_card_group_id = params.id when it acts on one)
--   none: {}
function calls.response(d, params)
  params = params or {}
  if d.result == "list" then
    local body = { data = { calls.record(d, 1), calls.record(d, 2) } }
    if has_param(d, "page") then
      local page = type(params.page) == "table" and params.page or {}
      local size = page.size or 20
      body.meta = { page_number = page.number or 1, page_size = size, total_pages = 3, total_results = 2 * size + 2 }
    end
    return body
  elseif d.result == "one" then
    local rec = calls.record(d, 1)
    if type(params.id) == "string" then
      if rec.id ~= nil and d.path:match("{id}$") then rec.id = params.id end
      -- what an action or a sub-resource answers names the object of the path
      if rec.sim_card_id ~= nil and d.path:match("^/sim_cards/{id}/") then rec.sim_card_id = params.id end
      if rec.sim_card_group_id ~= nil and d.path:match("^/sim_card_groups/{id}/") then rec.sim_card_group_id = params.id end
    end
    return { data = rec }
  end
  return {}
end

--- The document's success status for operation description d: the row's
-- own when there is one here, else 202 for actions, 200 otherwise.
function calls.success_status(d)
  local row = rows[d.name]
  if row then return row.status end
  if d.path:match("/actions/") then return 202 end
  return 200
end

return calls
