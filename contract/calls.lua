-- contract/calls.lua: one valid call per operation, for `make contract` (contract/run.lua).
-- calls[name].params: params the module accepts and the OpenAPI document (sim-cards-full.json)
-- calls valid, with every optional field a real client would set where the document has one,
-- so Prism checks the shape of each body field the module can send. contract/run.lua uses
-- spec/support/calls.lua instead when that file exists (the specs' own table, same shape), and
-- these only for an operation it lacks.

local SIM = "6b14e151-8493-4fa1-8664-1cc4e6d14158"
local GROUP = "47a1c2b0-cc7b-4ab1-bb98-b33fb0fc61b9"
local ACTION = "a4bcbbd8-2b3e-4d2a-8bd6-5dd0f0f6f4a1"
local BULK_ACTION = "c6b5cf5e-1b8a-4c2a-9d10-7f0e1c3b2a41"
local GROUP_ACTION = "3e1f5a2b-7c4d-4e8f-9a0b-1c2d3e4f5a6b"
local ORDER = "b0e7e3a6-9f5d-4c1e-8a2b-3d4c5e6f7a8b"
local NOTIFICATION = "79228acc-3f08-4e70-ac68-cb5aae8b537a"
local GATEWAY = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"
local BLOCKLIST = "9b2f6c1e-4d3a-4b5c-8e7f-0a1b2c3d4e5f"
local ADDRESS = "1293384261075731499"
local PAGE = { number = 1, size = 20 }
local LIMIT = { amount = "2048.0", unit = "MB" }

return {
  purchase_esims = { params = { amount = 2, sim_card_group_id = GROUP, tags = { "fleet" }, status = "enabled" } },
  register_sim_cards = {
    params = { registration_codes = { "0000000001", "0000000002" }, sim_card_group_id = GROUP,
      tags = { "fleet" }, status = "standby" },
  },
  list_sim_cards = {
    params = { filter = { status = { "enabled", "standby" }, tags = { "fleet" }, sim_card_group_id = GROUP },
      page = PAGE, include_sim_card_group = true, sort = "-current_billing_period_consumed_data.amount" },
  },
  get_sim_card = { params = { id = SIM, include_sim_card_group = true, include_pin_puk_codes = false } },
  update_sim_card = {
    params = { id = SIM, tags = { "fleet", "north" }, sim_card_group_id = GROUP, data_limit = LIMIT,
      authorized_imeis = { "106516771852751", "534051870479563" } },
  },
  delete_sim_card = { params = { id = SIM, report_lost = false } },
  enable_sim_card = { params = { id = SIM } },
  disable_sim_card = { params = { id = SIM } },
  set_sim_card_standby = { params = { id = SIM } },
  set_sim_card_public_ip = { params = { id = SIM, region_code = "dc2" } },
  remove_sim_card_public_ip = { params = { id = SIM } },
  get_sim_card_public_ip = { params = { id = SIM } },
  get_sim_card_activation_code = { params = { id = SIM } },
  get_sim_card_device_details = { params = { id = SIM } },
  list_wireless_connectivity_logs = { params = { id = SIM, page = PAGE } },
  validate_registration_codes = { params = { registration_codes = { "0000000001", "0000000002" } } },
  bulk_enable_voice = { params = { sim_card_group_id = GROUP } },
  bulk_disable_voice = { params = { sim_card_group_id = GROUP } },
  bulk_set_public_ips = { params = { sim_card_ids = { SIM } } },
  list_sim_card_actions = {
    params = { filter = { action_type = "enable", sim_card_id = SIM, status = "completed" }, page = PAGE },
  },
  get_sim_card_action = { params = { id = ACTION } },
  list_bulk_sim_card_actions = { params = { filter = { action_type = "bulk_set_public_ips" }, page = PAGE } },
  get_bulk_sim_card_action = { params = { id = BULK_ACTION } },
  list_sim_card_groups = { params = { filter = { name = "fleet" }, page = PAGE } },
  create_sim_card_group = { params = { name = "fleet", data_limit = LIMIT } },
  get_sim_card_group = { params = { id = GROUP, include_iccids = true } },
  update_sim_card_group = { params = { id = GROUP, name = "fleet-north", data_limit = { amount = "2", unit = "GB" } } },
  delete_sim_card_group = { params = { id = GROUP } },
  set_sim_card_group_private_wireless_gateway = { params = { id = GROUP, private_wireless_gateway_id = GATEWAY } },
  remove_sim_card_group_private_wireless_gateway = { params = { id = GROUP } },
  set_sim_card_group_wireless_blocklist = { params = { id = GROUP, wireless_blocklist_id = BLOCKLIST } },
  remove_sim_card_group_wireless_blocklist = { params = { id = GROUP } },
  list_sim_card_group_actions = {
    params = { filter = { sim_card_group_id = GROUP, status = "completed", type = "set_wireless_blocklist" },
      page = PAGE },
  },
  get_sim_card_group_action = { params = { id = GROUP_ACTION } },
  preview_sim_card_order = { params = { address_id = ADDRESS, quantity = 21 } },
  list_sim_card_orders = {
    params = { filter = { quantity = 21, ["address.country_code"] = "US" }, page = PAGE },
  },
  create_sim_card_order = { params = { address_id = ADDRESS, quantity = 21 } },
  get_sim_card_order = { params = { id = ORDER } },
  list_sim_card_data_usage_notifications = { params = { filter = { sim_card_id = SIM }, page = PAGE } },
  create_sim_card_data_usage_notification = {
    params = { sim_card_id = SIM, threshold = { amount = "2048.1", unit = "MB" } },
  },
  get_sim_card_data_usage_notification = { params = { id = NOTIFICATION } },
  update_sim_card_data_usage_notification = {
    params = { id = NOTIFICATION, sim_card_id = SIM, threshold = { amount = "1", unit = "GB" } },
  },
  delete_sim_card_data_usage_notification = { params = { id = NOTIFICATION } },
  list_wireless_regions = { params = { product = "public_ips" } },
  list_mobile_network_operators = {
    params = { filter = { country_code = "US", name = { starts_with = "AT" }, network_preferences_enabled = true },
      page = PAGE },
  },
}
