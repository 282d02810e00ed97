-- The emulated Telnyx SIM card API behind the fake (telnyx.sim.fake): the 45
-- operations of the OpenAPI document (sim-cards-full.json), stateful, with
-- async actions that complete after config.action_delay. No I/O: the server
-- (telnyx.sim.fake.server) hands each request here and sends the answer.
-- The rules the fake picked where the document is silent are in docs/fake.md
-- and in the handlers' comments.

local socket = require "socket"
local json = require "telnyx.sim.fake.json"
local fixtures = require "telnyx.sim.fake.fixtures"

local null, EMPTY_ARRAY = json.null, json.EMPTY_ARRAY
local json_decode, is_array, array_or_empty, fmt_int = json.decode, json.is_array, json.array_or_empty,
  json.integer_text
local unpack = table.unpack or unpack -- luacheck: ignore 143
local now = socket.gettime
local uuid4 = fixtures.uuid4

---------------------------------------------------------------------------
-- Settings (POST /__fake/config; POST /__fake/reset restores these)
--   action_delay    seconds an async action (SIM card, bulk, group) stays
--                   "in-progress" before it completes
--   delay           seconds every API answer waits (a request's X-Fake-Delay
--                   header overrides it); other connections go on meanwhile
--   implicit_cards  a well-formed SIM card id the fake has never seen (and
--                   not starting "00000000") names an existing physical card
--                   of the account, created on first use; false: unknown
---------------------------------------------------------------------------

local DEFAULT_CONFIG = { action_delay = 0.2, delay = 0, implicit_cards = true }
local config = {}

local function reset_config()
  config = {}
  for k, v in pairs(DEFAULT_CONFIG) do config[k] = v end
end
reset_config()

---------------------------------------------------------------------------
-- Query strings: "&"-separated name=value pairs; names and values are
-- percent-decoded and "+" is a space (form decoding, as the real API's
-- server reads them: a literal "+" must be sent as %2B). A repeated name
-- joins its values with "," like the comma-joined array filters.
---------------------------------------------------------------------------

local function url_decode(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(query)
  local params = {}
  for pair in (query or ""):gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=(.*)$")
    if not name then name, value = pair, "" end
    name, value = url_decode(name), url_decode(value)
    params[name] = params[name] and (params[name] .. "," .. value) or value
  end
  return params
end

-- "a,b,,c" -> { "a", "b", "c" }; nil -> {}
local function split_list(value)
  local list = {}
  for item in (value or ""):gmatch("[^,]+") do list[#list + 1] = item end
  return list
end

---------------------------------------------------------------------------
-- API state, all of it in one table, rebuilt by POST /__fake/reset.
-- A store keeps records in creation order (lists answer oldest first) and
-- by id. Records hold their JSON fields plus internal ones named "_...".
---------------------------------------------------------------------------

local DEFAULT_GROUP_ID = fixtures.DEFAULT_GROUP_ID
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function new_store() return { list = {}, by_id = {} } end

local function store_add(store, rec)
  store.list[#store.list + 1] = rec
  store.by_id[rec.id] = rec
  return rec
end

local function store_remove(store, id)
  store.by_id[id] = nil
  for i, rec in ipairs(store.list) do
    if rec.id == id then table.remove(store.list, i); return end
  end
end

local function stamp(t) return fixtures.iso8601(t or now()) end

local state

local function reset_state()
  local t = now()
  state = {
    cards = new_store(),          -- SIM cards (SIMCard fields)
    groups = new_store(),         -- SIM card groups
    actions = new_store(),        -- SIM card actions
    bulk_actions = new_store(),   -- bulk SIM card actions
    group_actions = new_store(),  -- SIM card group actions
    orders = new_store(),         -- SIM card orders
    notifications = new_store(),  -- data usage notifications
    public_ips = {},              -- SIM card id -> SIMCardPublicIP
    used_codes = {},              -- registration code -> true (codes are single-use)
    deleted_cards = {},           -- SIM card id -> true (never implicit again)
    pending = {},                 -- in-progress actions, completed lazily
    n_cards = 0,                  -- numbers cards: iccid, imsi, msisdn
    n_ips = 0,                    -- numbers public IPs
  }
  store_add(state.groups, {
    id = DEFAULT_GROUP_ID, record_type = "sim_card_group", name = fixtures.DEFAULT_GROUP_NAME,
    default = true, data_limit = null, private_wireless_gateway_id = null, wireless_blocklist_id = null,
    created_at = stamp(t), updated_at = stamp(t),
  })
end
reset_state()

---------------------------------------------------------------------------
-- Records: creation and JSON rendering
---------------------------------------------------------------------------

-- A shallow copy without the internal "_..." fields.
local function public(rec)
  local out = {}
  for k, v in pairs(rec) do
    if type(k) ~= "string" or k:sub(1, 1) ~= "_" then out[k] = v end
  end
  return out
end

local function copy_list(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

local function set_status(card, value, t)
  card.status = { value = value, reason = fixtures.STATUS_REASONS[value] or null }
  card.updated_at = stamp(t)
end

-- fields: { id =, status =, tags = {list}, sim_card_group_id =, no_group = true: in no group }
local function new_card(kind, fields, t)
  t = t or now()
  state.n_cards = state.n_cards + 1
  local n = state.n_cards
  local card = fixtures.sim_card{ n = n, kind = kind, null = null, empty_array = EMPTY_ARRAY }
  card.id = fields.id or card.id
  card.tags = copy_list(fields.tags or {})
  if fields.no_group then
    card.sim_card_group_id = nil
  else
    card.sim_card_group_id = fields.sim_card_group_id or DEFAULT_GROUP_ID
  end
  card.authorized_imeis = nil
  card.resources_with_in_progress_actions = nil
  card.created_at = stamp(t)
  set_status(card, fields.status or "enabled", t)
  card._n, card._t, card._pending = n, t, 0
  return store_add(state.cards, card)
end

-- how: { full = SIMCard rather than SimpleSIMCard, include_group =, pin_puk = }
local function render_card(card, how)
  how = how or {}
  local out = public(card)
  out.tags = array_or_empty(card.tags)
  out.authorized_imeis = card.authorized_imeis and array_or_empty(card.authorized_imeis) or null
  out.sim_card_group_id = card.sim_card_group_id or null
  out.actions_in_progress = card._pending > 0
  out.resources_with_in_progress_actions = EMPTY_ARRAY
  if how.full then
    out.live_data_session = "disconnected"
    if how.pin_puk then out.pin_puk_codes = fixtures.pin_puk_codes(card._n) end
  end
  if how.include_group then
    local group = card.sim_card_group_id and state.groups.by_id[card.sim_card_group_id]
    if group then out.sim_card_group = { id = group.id, name = group.name } end
  end
  return out
end

local function megabytes(amount)
  if type(amount) ~= "table" then return 0 end
  local value = tonumber(amount.amount) or 0
  return amount.unit == "GB" and value * 1024 or value
end

local function group_cards(group_id)
  local list = {}
  for _, card in ipairs(state.cards.list) do
    if card.sim_card_group_id == group_id then list[#list + 1] = card end
  end
  return list
end

-- SIMCardGroup; searched = SearchedSIMCardGroup (with sim_card_count).
local function render_group(group, searched, include_iccids)
  local out = public(group)
  local cards = group_cards(group.id)
  local used = 0
  for _, card in ipairs(cards) do used = used + megabytes(card.current_billing_period_consumed_data) end
  out.consumed_data = { amount = string.format("%.1f", used), unit = "MB" }
  if searched then out.sim_card_count = #cards end
  if include_iccids then
    local iccids = {}
    for i, card in ipairs(cards) do iccids[i] = card.iccid end
    out.iccids = array_or_empty(iccids)
  end
  return out
end

local function render_bulk_action(bulk)
  local out = public(bulk)
  local counts, order = {}, { "in-progress", "completed", "failed", "interrupted" }
  for _, action in ipairs(state.actions.list) do
    if action._bulk == bulk.id then
      counts[action.status.value] = (counts[action.status.value] or 0) + 1
    end
  end
  local summary = {}
  for _, status in ipairs(order) do
    if counts[status] then summary[#summary + 1] = { status = status, count = counts[status] } end
  end
  out.sim_card_actions_summary = array_or_empty(summary)
  return out
end

---------------------------------------------------------------------------
-- Async actions. Each action is due `config.action_delay` seconds after it
-- was made. settle(), run before every API answer, completes the due ones
-- (stamping them with their due time), so nothing needs a timer.
---------------------------------------------------------------------------

local CARD_EFFECTS = {
  enable = function(card, _, t) set_status(card, "enabled", t) end,
  disable = function(card, _, t) set_status(card, "disabled", t) end,
  set_standby = function(card, _, t) set_status(card, "standby", t) end,
  enable_voice = function(card, _, t) card.voice_enabled = true; card.updated_at = stamp(t) end,
  disable_voice = function(card, _, t) card.voice_enabled = false; card.updated_at = stamp(t) end,
  set_public_ip = function(card, _, t)
    local ip = state.public_ips[card.id]
    if ip then
      state.n_ips = state.n_ips + 1
      ip.ip = string.format("198.51.%d.%d", 100 + math.floor(state.n_ips / 254) % 100, state.n_ips % 254 + 1)
      ip.updated_at = stamp(t)
    end
  end,
  remove_public_ip = function(card) state.public_ips[card.id] = nil end,
}

local GROUP_EFFECTS = {
  set_private_wireless_gateway = function(group, action)
    group.private_wireless_gateway_id = action.settings.private_wireless_gateway_id
  end,
  remove_private_wireless_gateway = function(group) group.private_wireless_gateway_id = null end,
  set_wireless_blocklist = function(group, action)
    group.wireless_blocklist_id = action.settings.wireless_blocklist_id
  end,
  remove_wireless_blocklist = function(group) group.wireless_blocklist_id = null end,
}

-- Ends a SIM card action (value: completed, failed or interrupted).
local function finish_card_action(action, value, reason, t)
  action.status = { value = value, reason = reason or null }
  action.updated_at = stamp(t)
  action._card._pending = action._card._pending - 1
end

local function complete(action)
  local t = action._due
  if action.record_type == "sim_card_group_action" then
    if action.status ~= "in-progress" then return end
    local group = state.groups.by_id[action.sim_card_group_id]
    if group then
      GROUP_EFFECTS[action.type](group, action)
      group.updated_at = stamp(t)
    end
    action.status = group and "completed" or "failed"
    action.updated_at = stamp(t)
    return
  end
  if action.status.value ~= "in-progress" then return end -- interrupted meanwhile
  local card = action._card
  if state.cards.by_id[card.id] ~= card then
    finish_card_action(action, "failed", "The SIM card was deleted.", t)
    return
  end
  CARD_EFFECTS[action.action_type](card, action, t)
  finish_card_action(action, "completed", nil, t)
end

local function settle()
  local t = now()
  local due, left = {}, {}
  for _, action in ipairs(state.pending) do
    if action._due <= t then due[#due + 1] = action else left[#left + 1] = action end
  end
  state.pending = left
  table.sort(due, function(a, b)
    if a._due ~= b._due then return a._due < b._due end
    return a._seq < b._seq
  end)
  for _, action in ipairs(due) do complete(action) end
end

local action_seq = 0
local function schedule(action, t)
  action_seq = action_seq + 1
  action._due, action._seq = t + config.action_delay, action_seq
  state.pending[#state.pending + 1] = action
end

-- A SIMCardAction on `card`, in progress. bulk_id: its bulk action, if any.
local function new_card_action(card, action_type, settings, bulk_id)
  local t = now()
  local action = store_add(state.actions, {
    id = uuid4(), record_type = "sim_card_action", action_type = action_type, sim_card_id = card.id,
    status = { value = "in-progress", reason = null }, settings = settings or {},
    created_at = stamp(t), updated_at = stamp(t),
    _card = card, _bulk = bulk_id,
  })
  card._pending = card._pending + 1
  schedule(action, t)
  return action
end

local STATUS_ACTIONS = { enable = true, disable = true, set_standby = true }

-- A newer enable/disable/set_standby interrupts the card's older ones.
local function interrupt_status_actions(card)
  local t = now()
  for _, action in ipairs(state.pending) do
    if action._card == card and STATUS_ACTIONS[action.action_type] and action.status.value == "in-progress" then
      finish_card_action(action, "interrupted", "A later action on the SIM card replaced this one.", t)
    end
  end
end

local function new_group_action(group, action_type, settings)
  local t = now()
  local action = store_add(state.group_actions, {
    id = uuid4(), record_type = "sim_card_group_action", type = action_type, sim_card_group_id = group.id,
    status = "in-progress", settings = settings or {}, created_at = stamp(t), updated_at = stamp(t),
  })
  schedule(action, t)
  return action
end

---------------------------------------------------------------------------
-- Errors and validation. Handlers call reject(...) (or a shortcut) to end
-- with an error answer; dispatch() catches it. Error codes: 10005 not
-- found, 10015 invalid parameter, 10008 unknown registration code (used by
-- existing specs); 10006 method not allowed, 10009 registration code
-- already used, 10011 not possible in the resource's state (the fake's own).
---------------------------------------------------------------------------

local function err_body(code, title, detail, pointer, meta)
  local e = { code = code, title = title, detail = detail }
  if pointer then e.source = { pointer = pointer } end
  if meta then e.meta = meta end
  return e
end

local Rejection = {}

local function reject(status, body)
  error(setmetatable({ status = status, body = body }, Rejection), 0)
end

-- 422 for a body field (JSON pointer) ...
local function bad_field(pointer, detail)
  reject(422, { errors = { err_body("10015", "Invalid parameter", detail, pointer) } })
end

-- ... and for a query parameter.
local function bad_param(name, detail)
  local e = err_body("10015", "Invalid parameter", detail)
  e.source = { parameter = name }
  reject(422, { errors = { e } })
end

local function not_allowed(detail)
  reject(422, { errors = { err_body("10011", "Operation not allowed", detail) } })
end

-- 404 as { errors: [...] } (wireless_GenericErrorResponse) or, bare = true,
-- as one error object (wireless_ResourceNotFound, where the document says so).
local function not_found(what, id, bare)
  local e = err_body("10005", "Resource not found", what .. " " .. tostring(id) .. " was not found.")
  reject(404, bare and e or { errors = { e } })
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -1e15 and v < 1e15
end

-- The decoded body if it is a JSON object, else {}.
local function body_object(req)
  local b = req.json
  if type(b) == "table" and (next(b) == nil or not is_array(b)) then return b end
  return {}
end

-- An array of strings (a fresh Lua list; [] -> {}), or a 422.
local function string_list(v, pointer)
  if v == EMPTY_ARRAY then return {} end
  if type(v) == "table" and is_array(v) then
    for _, item in ipairs(v) do
      if type(item) ~= "string" then bad_field(pointer, pointer:sub(2) .. " must be an array of strings") end
    end
    return copy_list(v)
  end
  bad_field(pointer, pointer:sub(2) .. " must be an array of strings")
end

local function required_string(b, name)
  local v = b[name]
  if type(v) ~= "string" or v == "" or v == EMPTY_ARRAY then bad_field("/" .. name, name .. " is required") end
  return v
end

local function required_uuid(b, name)
  local v = required_string(b, name)
  if not v:match(UUID) then bad_field("/" .. name, name .. " must be a UUID") end
  return v
end

-- { amount = decimal string, unit = MB | GB }
local function data_amount(v, pointer)
  if type(v) ~= "table" or type(v.amount) ~= "string" or not v.amount:match("^%d+%.?%d*$")
      or (v.unit ~= "MB" and v.unit ~= "GB") then
    bad_field(pointer, pointer:sub(2) .. " must be {amount: decimal string, unit: MB or GB}")
  end
  return { amount = v.amount, unit = v.unit }
end

local function positive_integer(b, name)
  local v = b[name]
  if not is_integer(v) or v < 1 then bad_field("/" .. name, name .. " must be an integer >= 1") end
  return v
end

local function bool_param(params, name)
  local v = params[name]
  if v == nil or v == "false" then return false end
  if v == "true" then return true end
  bad_param(name, name .. " must be true or false")
end

---------------------------------------------------------------------------
-- Paging: page[number] >= 1 (default 1), page[size] 1..250 (default 20);
-- meta.total_pages is 0 when nothing matches.
---------------------------------------------------------------------------

-- Any count of digits is a page number: one past the last page answers no
-- data, however far (the arithmetic below never multiplies a huge one).
local function page_param(params, name, default, max)
  local v = params[name]
  if v == nil then return default end
  local n = v:match("^%d+$") and tonumber(v)
  if not n or n < 1 or n == math.huge or (max and n > max) then
    bad_param(name, name .. " must be an integer from 1" .. (max and (" to " .. max) or ""))
  end
  return n
end

-- meta.page_number as sent: an integer when it fits, else the digits' float.
local function page_meta(number, size, total)
  return { page_number = number, page_size = size, total_pages = math.ceil(total / size), total_results = total }
end

local function paged(req, list, render)
  local number = page_param(req.params, "page[number]", 1)
  local size = page_param(req.params, "page[size]", 20, 250)
  local data = {}
  if number <= math.ceil(#list / size) then
    for i = (number - 1) * size + 1, math.min(#list, number * size) do
      data[#data + 1] = render and render(list[i]) or public(list[i])
    end
  end
  return 200, { data = array_or_empty(data), meta = page_meta(number, size, #list) }
end

-- The records of `list` for which keep(record) is true.
local function filter_list(list, keep)
  local out = {}
  for _, rec in ipairs(list) do
    if keep(rec) then out[#out + 1] = rec end
  end
  return out
end

---------------------------------------------------------------------------
-- Handlers. Each takes (req, path captures...) with req.params (the query)
-- and req.json (the decoded body, empty arrays marked) and returns
-- status, body [, extra headers], or reject()s.
---------------------------------------------------------------------------

-- SIM cards by id: an id the fake never saw names an implicit physical card
-- (config.implicit_cards), except ids starting "00000000" and deleted ones.
local function find_card(id)
  local card = state.cards.by_id[id]
  if card then return card end
  if config.implicit_cards and id:match(UUID) and not id:match("^00000000") and not state.deleted_cards[id] then
    return new_card("physical", { id = id })
  end
  return nil
end

local function card_or_404(id)
  return find_card(id) or not_found("SIM card", id)
end

local function group_or_404(id)
  return state.groups.by_id[id] or not_found("SIM card group", id)
end

-- Purchase and registration ------------------------------------------------

local CARD_STATUSES = { enabled = true, disabled = true, standby = true }

-- The optional fields of a purchase or registration.
local function new_card_fields(b)
  local fields = {}
  if b.status ~= nil then
    if not CARD_STATUSES[b.status] then bad_field("/status", "status must be enabled, disabled or standby") end
    fields.status = b.status
  end
  if b.tags ~= nil then fields.tags = string_list(b.tags, "/tags") end
  if b.sim_card_group_id ~= nil then
    if type(b.sim_card_group_id) ~= "string" or not state.groups.by_id[b.sim_card_group_id] then
      bad_field("/sim_card_group_id", "sim_card_group_id does not exist")
    end
    fields.sim_card_group_id = b.sim_card_group_id
  end
  return fields
end

local function purchase_esims(req)
  local b = body_object(req)
  local amount = b.amount
  if not is_integer(amount) then bad_field("/amount", "amount is required") end
  if amount < 1 or amount > 1000 then bad_field("/amount", "amount must be an integer between 1 and 1000") end
  local fields = new_card_fields(b)
  local data = {}
  for i = 1, amount do data[i] = render_card(new_card("esim", fields)) end
  return 202, { data = data }
end

-- Codes starting "999" do not exist; a code registers one card, once.
local function register_sim_cards(req)
  local b = body_object(req)
  local codes = b.registration_codes
  if type(codes) ~= "table" or not is_array(codes) or #codes == 0 then
    bad_field("/registration_codes", "registration_codes is required")
  end
  local fields = new_card_fields(b)
  local data, errors = {}, {}
  for i, code in ipairs(codes) do
    code = fmt_int(code)
    local pointer, meta = "/registration_codes/" .. (i - 1), { registration_code = code }
    if code:sub(1, 3) == "999" then
      errors[#errors + 1] = err_body("10008", "Registration code not found",
        "The registration code " .. code .. " was not found", pointer, meta)
    elseif state.used_codes[code] then
      errors[#errors + 1] = err_body("10009", "Registration code already used",
        "The registration code " .. code .. " has already been used", pointer, meta)
    else
      state.used_codes[code] = true
      data[#data + 1] = render_card(new_card("physical", fields))
    end
  end
  local answer = { data = array_or_empty(data) }
  if #errors > 0 then answer.errors = errors end
  return 202, answer
end

local function validate_registration_codes(req)
  local b = body_object(req)
  if b.registration_codes == nil then bad_field("/registration_codes", "registration_codes is required") end
  local codes = string_list(b.registration_codes, "/registration_codes")
  local data = {}
  for i, code in ipairs(codes) do
    local why = null
    if code:sub(1, 3) == "999" then why = "This code is not valid."
    elseif state.used_codes[code] then why = "This code has already been used." end
    data[i] = { record_type = "sim_card_registration_code_validation", registration_code = code,
                valid = why == null, invalid_detail = why }
  end
  return 200, { data = array_or_empty(data) }
end

-- SIM cards -----------------------------------------------------------------

local FILTER_STATUSES = {
  enabled = true, disabled = true, standby = true, data_limit_exceeded = true, unauthorized_imei = true,
  registering = true, enabling = true, disabling = true, setting_standby = true,
}

local function has_all(list, wanted)
  local have = {}
  for _, v in ipairs(list) do have[v] = true end
  for _, v in ipairs(wanted) do
    if not have[v] then return false end
  end
  return true
end

-- filter[tags] (all of), filter[status] (any of), filter[iccid] (part of),
-- filter[msisdn], filter[sim_card_group_id]; sort by consumed data.
local function list_sim_cards(req)
  local p = req.params
  local tags, statuses = split_list(p["filter[tags]"]), {}
  for _, s in ipairs(split_list(p["filter[status]"])) do
    if not FILTER_STATUSES[s] then bad_param("filter[status]", "unknown SIM card status " .. s) end
    statuses[s] = true
  end
  local any_status = next(statuses) ~= nil
  local iccid, msisdn, group = p["filter[iccid]"], p["filter[msisdn]"], p["filter[sim_card_group_id]"]
  local sort = p.sort
  if sort and sort ~= "current_billing_period_consumed_data.amount"
      and sort ~= "-current_billing_period_consumed_data.amount" then
    bad_param("sort", "sort must be current_billing_period_consumed_data.amount, optionally prefixed with -")
  end
  local cards = filter_list(state.cards.list, function(card)
    return has_all(card.tags, tags)
      and (not any_status or statuses[card.status.value])
      and (not iccid or card.iccid:find(iccid, 1, true) ~= nil)
      and (not msisdn or card.msisdn == msisdn)
      and (not group or card.sim_card_group_id == group)
  end)
  if sort then
    local descending = sort:sub(1, 1) == "-"
    for i, card in ipairs(cards) do card._rank = i end
    table.sort(cards, function(a, b)
      local ma = megabytes(a.current_billing_period_consumed_data)
      local mb = megabytes(b.current_billing_period_consumed_data)
      if ma ~= mb then
        if descending then return ma > mb end
        return ma < mb
      end
      return a._rank < b._rank
    end)
  end
  local include_group = bool_param(p, "include_sim_card_group")
  return paged(req, cards, function(card) return render_card(card, { include_group = include_group }) end)
end

local function get_sim_card(req, id)
  local card = card_or_404(id)
  return 200, { data = render_card(card, { full = true,
    include_group = bool_param(req.params, "include_sim_card_group"),
    pin_puk = bool_param(req.params, "include_pin_puk_codes") }) }
end

-- Writable: tags, sim_card_group_id (an existing group; null: no group),
-- authorized_imeis (null clears), data_limit. Other fields are ignored.
local function update_sim_card(req, id)
  local card = card_or_404(id)
  local b = body_object(req)
  local change = {}
  if b.tags ~= nil then change.tags = string_list(b.tags, "/tags") end
  if b.sim_card_group_id == null then
    change.group = false
  elseif b.sim_card_group_id ~= nil then
    if type(b.sim_card_group_id) ~= "string" or not state.groups.by_id[b.sim_card_group_id] then
      bad_field("/sim_card_group_id", "sim_card_group_id does not exist")
    end
    change.group = b.sim_card_group_id
  end
  if b.authorized_imeis == null then
    change.imeis = false
  elseif b.authorized_imeis ~= nil then
    change.imeis = string_list(b.authorized_imeis, "/authorized_imeis")
  end
  if b.data_limit ~= nil then change.data_limit = data_amount(b.data_limit, "/data_limit") end

  if change.tags then card.tags = change.tags end
  if change.group ~= nil then card.sim_card_group_id = change.group or nil end
  if change.imeis ~= nil then card.authorized_imeis = change.imeis or nil end
  if change.data_limit then card.data_limit = change.data_limit end
  card.updated_at = stamp()
  return 200, { data = render_card(card, { full = true }) }
end

-- Removes the card at once; the answer shows it "disabling".
local function delete_sim_card(req, id)
  local card = card_or_404(id)
  bool_param(req.params, "report_lost")
  store_remove(state.cards, id)
  state.deleted_cards[id] = true
  state.public_ips[id] = nil
  set_status(card, "disabling")
  return 200, { data = render_card(card, { full = true }) }
end

-- enable, disable, set_standby: 202 with the action; the card shows the
-- transition until the action completes. Enable and standby need the card
-- to be in a group: cards are in the default group unless PATCHed to
-- sim_card_group_id null (or their group was deleted).
local TRANSITIONS = {
  enable = { during = "enabling", needs_group = true },
  disable = { during = "disabling" },
  set_standby = { during = "setting_standby", needs_group = true },
}

local function status_action(action_type)
  local rule = TRANSITIONS[action_type]
  return function(_, id)
    local card = card_or_404(id)
    if rule.needs_group and not card.sim_card_group_id then
      not_allowed("The SIM card must belong to a SIM card group for " .. action_type)
    end
    interrupt_status_actions(card)
    local action = new_card_action(card, action_type, {})
    set_status(card, rule.during)
    return 202, { data = public(action) }
  end
end

local function public_ip_region(req)
  local code = req.params.region_code or "dc2"
  for _, r in ipairs(fixtures.WIRELESS_REGIONS.public_ips) do
    if r.code == code then return code end
  end
  bad_param("region_code", "unknown region " .. code)
end

-- The public IP record exists (without "ip") from the request on and gets
-- its address when the action completes.
local function start_public_ip(card, region, bulk_id)
  if state.public_ips[card.id] then
    local action = new_card_action(card, "set_public_ip", { region_code = region }, bulk_id)
    finish_card_action(action, "failed", "The SIM card already has a public IP.", now())
    return action
  end
  local t = now()
  state.public_ips[card.id] = {
    record_type = "sim_card_public_ip", sim_card_id = card.id, region_code = region, type = "ipv4",
    created_at = stamp(t), updated_at = stamp(t),
  }
  return new_card_action(card, "set_public_ip", { region_code = region }, bulk_id)
end

local function set_public_ip(req, id)
  local card = card_or_404(id)
  local region = public_ip_region(req)
  if state.public_ips[id] then not_allowed("The SIM card already has a public IP") end
  return 202, { data = public(start_public_ip(card, region)) }
end

local function remove_public_ip(_, id)
  local card = card_or_404(id)
  if not state.public_ips[id] then not_allowed("The SIM card has no public IP") end
  return 202, { data = public(new_card_action(card, "remove_public_ip", {})) }
end

local function get_public_ip(_, id)
  card_or_404(id)
  local ip = state.public_ips[id] or not_found("Public IP of SIM card", id)
  return 200, { data = public(ip) }
end

-- eSIMs not yet installed (eid null) only.
local function get_activation_code(_, id)
  local card = card_or_404(id)
  if card.type ~= "esim" then
    not_allowed("Activation codes exist for eSIMs only; SIM card " .. id .. " is a physical SIM card")
  end
  if card.eid ~= null and card.eid ~= nil then not_allowed("The eSIM " .. id .. " has already been installed") end
  return 200, { data = { record_type = "sim_card_activation_code", activation_code = fixtures.activation_code(id) } }
end

local function get_device_details(_, id)
  local card = card_or_404(id)
  return 200, { data = fixtures.device_details(card._n) }
end

local function list_connectivity_logs(req, id)
  local card = card_or_404(id)
  local logs = {}
  for i = 1, fixtures.CONNECTIVITY_LOGS_PER_CARD do logs[i] = i end
  return paged(req, logs, function(i) return fixtures.connectivity_log(card, card._n, i, card._t) end)
end

-- SIM card actions and bulk actions --------------------------------------

local function list_sim_card_actions(req)
  local p = req.params
  local card, status = p["filter[sim_card_id]"], p["filter[status]"]
  local action_type, bulk = p["filter[action_type]"], p["filter[bulk_sim_card_action_id]"]
  return paged(req, filter_list(state.actions.list, function(a)
    return (not card or a.sim_card_id == card) and (not status or a.status.value == status)
      and (not action_type or a.action_type == action_type) and (not bulk or a._bulk == bulk)
  end))
end

local function get_sim_card_action(_, id)
  return 200, { data = public(state.actions.by_id[id] or not_found("SIM card action", id)) }
end

local function new_bulk_action(action_type, settings)
  local t = now()
  return store_add(state.bulk_actions, {
    id = uuid4(), record_type = "bulk_sim_card_action", action_type = action_type, settings = settings,
    created_at = stamp(t), updated_at = stamp(t),
  })
end

-- One voice action per card of the group.
local function bulk_voice(enable)
  return function(req)
    local group_id = required_string(body_object(req), "sim_card_group_id")
    if not state.groups.by_id[group_id] then bad_field("/sim_card_group_id", "sim_card_group_id does not exist") end
    local bulk = new_bulk_action(enable and "bulk_enable_voice" or "bulk_disable_voice",
      { sim_card_group_id = group_id })
    for _, card in ipairs(group_cards(group_id)) do
      new_card_action(card, enable and "enable_voice" or "disable_voice", {}, bulk.id)
    end
    return 202, { data = render_bulk_action(bulk) }
  end
end

-- One set_public_ip action per card; a card that already has a public IP
-- gets a failed one.
local function bulk_set_public_ips(req)
  local b = body_object(req)
  local ids = string_list(b.sim_card_ids == nil and EMPTY_ARRAY or b.sim_card_ids, "/sim_card_ids")
  if #ids == 0 then bad_field("/sim_card_ids", "sim_card_ids is required") end
  local cards = {}
  for i, id in ipairs(ids) do
    cards[i] = find_card(id) or bad_field("/sim_card_ids/" .. (i - 1), "SIM card " .. id .. " does not exist")
  end
  local bulk = new_bulk_action("bulk_set_public_ips", { sim_card_ids = ids })
  for _, card in ipairs(cards) do start_public_ip(card, "dc2", bulk.id) end
  return 202, { data = render_bulk_action(bulk) }
end

local function list_bulk_actions(req)
  local action_type = req.params["filter[action_type]"]
  return paged(req, filter_list(state.bulk_actions.list, function(b)
    return not action_type or b.action_type == action_type
  end), render_bulk_action)
end

local function get_bulk_action(_, id)
  return 200, { data = render_bulk_action(state.bulk_actions.by_id[id] or not_found("Bulk SIM card action", id)) }
end

-- SIM card groups and group actions -----------------------------------------

local function list_groups(req)
  local p = req.params
  local name, gateway, blocklist = p["filter[name]"], p["filter[private_wireless_gateway_id]"],
    p["filter[wireless_blocklist_id]"]
  return paged(req, filter_list(state.groups.list, function(g)
    return (not name or g.name == name) and (not gateway or g.private_wireless_gateway_id == gateway)
      and (not blocklist or g.wireless_blocklist_id == blocklist)
  end), function(g) return render_group(g, true) end)
end

-- name (required on create) and data_limit.
local function group_fields(b, creating)
  local fields = {}
  if creating or b.name ~= nil then fields.name = required_string(b, "name") end
  if b.data_limit ~= nil then
    local dl = b.data_limit
    if type(dl) ~= "table" or type(dl.amount) ~= "string" or (dl.unit ~= nil and type(dl.unit) ~= "string") then
      bad_field("/data_limit", "data_limit must be {amount: decimal string, unit}")
    end
    fields.data_limit = { amount = dl.amount, unit = dl.unit or "MB" }
  end
  return fields
end

local function create_group(req)
  local fields = group_fields(body_object(req), true)
  local t = now()
  local group = store_add(state.groups, {
    id = uuid4(), record_type = "sim_card_group", name = fields.name, default = false,
    data_limit = fields.data_limit or null, private_wireless_gateway_id = null, wireless_blocklist_id = null,
    created_at = stamp(t), updated_at = stamp(t),
  })
  return 200, { data = render_group(group) }
end

local function get_group(req, id)
  return 200, { data = render_group(group_or_404(id), false, bool_param(req.params, "include_iccids")) }
end

local function update_group(req, id)
  local group = group_or_404(id)
  local fields = group_fields(body_object(req), false)
  for k, v in pairs(fields) do group[k] = v end
  group.updated_at = stamp()
  return 200, { data = render_group(group) }
end

-- The default group stays; a deleted group's cards are left in no group.
local function delete_group(_, id)
  local group = group_or_404(id)
  if group.default then not_allowed("The default SIM card group can not be removed") end
  for _, card in ipairs(group_cards(id)) do card.sim_card_group_id = nil end
  local answer = render_group(group)
  store_remove(state.groups, id)
  return 200, { data = answer }
end

-- set/remove private wireless gateway or wireless blocklist: 202 with a
-- SIMCardGroupAction; the group changes when it completes.
local function group_action(action_type, field)
  local setting = action_type:match("^set_") ~= nil
  return function(req, id)
    local group = group_or_404(id)
    local settings = {}
    if setting then
      settings[field] = required_uuid(body_object(req), field)
    elseif group[field] == null or group[field] == nil then
      not_allowed("The SIM card group has no " .. field:gsub("_id$", ""):gsub("_", " "))
    end
    return 202, { data = public(new_group_action(group, action_type, settings)) }
  end
end

local function list_group_actions(req)
  local p = req.params
  local group, status, action_type = p["filter[sim_card_group_id]"], p["filter[status]"], p["filter[type]"]
  return paged(req, filter_list(state.group_actions.list, function(a)
    return (not group or a.sim_card_group_id == group) and (not status or a.status == status)
      and (not action_type or a.type == action_type)
  end))
end

local function get_group_action(_, id)
  return 200, { data = public(state.group_actions.by_id[id] or not_found("SIM card group action", id)) }
end

-- Orders ------------------------------------------------------------------

local function money(amount)
  return { amount = string.format("%.2f", amount), currency = fixtures.ORDER_PRICES.currency }
end

local function order_request(req)
  local b = body_object(req)
  return positive_integer(b, "quantity"), required_string(b, "address_id")
end

local function preview_order(req)
  local quantity = order_request(req)
  local prices = fixtures.ORDER_PRICES
  return 202, { data = {
    record_type = "sim_card_order_preview", quantity = quantity,
    sim_cards_cost = money(quantity * prices.per_sim_card), shipping_cost = money(prices.shipping),
    total_cost = money(quantity * prices.per_sim_card + prices.shipping),
  } }
end

local function create_order(req)
  local quantity, address_id = order_request(req)
  local prices = fixtures.ORDER_PRICES
  local address = { id = address_id }
  for k, v in pairs(fixtures.ORDER_ADDRESS) do address[k] = v end
  local t = now()
  local order = store_add(state.orders, {
    id = uuid4(), record_type = "sim_card_order", quantity = quantity, status = "pending",
    cost = money(quantity * prices.per_sim_card + prices.shipping), order_address = address,
    tracking_url = null, created_at = stamp(t), updated_at = stamp(t),
  })
  return 200, { data = public(order) }
end

-- filter[quantity], filter[cost.amount], filter[address.locality], ...:
-- exact matches; "address." reads order_address.
local function list_orders(req)
  local filters = {}
  for name, value in pairs(req.params) do
    local key = name:match("^filter%[(.+)%]$")
    if key then filters[#filters + 1] = { key:gsub("^address%.", "order_address."), value } end
  end
  return paged(req, filter_list(state.orders.list, function(order)
    for _, f in ipairs(filters) do
      local v = order
      for part in f[1]:gmatch("[^%.]+") do v = type(v) == "table" and v[part] or nil end
      if v == nil or fmt_int(v) ~= f[2] then return false end
    end
    return true
  end))
end

local function get_order(_, id)
  return 200, { data = public(state.orders.by_id[id] or not_found("SIM card order", id, true)) }
end

-- Data usage notifications ------------------------------------------------

local function notification_fields(b, creating)
  local fields = {}
  if creating or b.sim_card_id ~= nil then
    local id = required_string(b, "sim_card_id")
    if not find_card(id) then bad_field("/sim_card_id", "SIM card " .. id .. " does not exist") end
    fields.sim_card_id = id
  end
  if creating or b.threshold ~= nil then fields.threshold = data_amount(b.threshold, "/threshold") end
  return fields
end

local function list_notifications(req)
  local card = req.params["filter[sim_card_id]"]
  return paged(req, filter_list(state.notifications.list, function(n)
    return not card or n.sim_card_id == card
  end))
end

local function create_notification(req)
  local fields = notification_fields(body_object(req), true)
  local t = now()
  local n = store_add(state.notifications, {
    id = uuid4(), record_type = "sim_card_data_usage_notification", sim_card_id = fields.sim_card_id,
    threshold = fields.threshold, created_at = stamp(t), updated_at = stamp(t),
  })
  return 201, { data = public(n) }
end

local function get_notification(_, id)
  return 200, { data = public(state.notifications.by_id[id] or not_found("Data usage notification", id, true)) }
end

local function update_notification(req, id)
  local n = state.notifications.by_id[id] or not_found("Data usage notification", id)
  for k, v in pairs(notification_fields(body_object(req), false)) do n[k] = v end
  n.updated_at = stamp()
  return 200, { data = public(n) }
end

local function delete_notification(_, id)
  local n = state.notifications.by_id[id] or not_found("Data usage notification", id)
  store_remove(state.notifications, id)
  return 200, { data = public(n) }
end

-- Reference data ----------------------------------------------------------

-- product is required (422); an unknown product is a bare 404.
local function list_regions(req)
  local product = req.params.product
  if product == nil or product == "" then bad_param("product", "product is required") end
  local regions = fixtures.WIRELESS_REGIONS[product] or not_found("Product", product, true)
  return 200, { data = regions }
end

-- filter[name][starts_with|contains|ends_with] (case-insensitive),
-- filter[country_code|mcc|mnc|tadig] (exact), filter[network_preferences_enabled].
local function list_mobile_network_operators(req)
  local p = req.params
  local function lower(name) return p[name] and p[name]:lower() end
  local starts, contains, ends = lower("filter[name][starts_with]"), lower("filter[name][contains]"),
    lower("filter[name][ends_with]")
  local prefs = p["filter[network_preferences_enabled]"]
  if prefs ~= nil and prefs ~= "true" and prefs ~= "false" then
    bad_param("filter[network_preferences_enabled]", "must be true or false")
  end
  return paged(req, filter_list(fixtures.MOBILE_NETWORK_OPERATORS, function(op)
    local name = op.name:lower()
    for _, field in ipairs{ "country_code", "mcc", "mnc", "tadig" } do
      local want = p["filter[" .. field .. "]"]
      if want and op[field] ~= want then return false end
    end
    return (not starts or name:sub(1, #starts) == starts)
      and (not contains or name:find(contains, 1, true) ~= nil)
      and (not ends or name:sub(-#ends) == ends)
      and (not prefs or tostring(op.network_preferences_enabled) == prefs)
  end))
end

---------------------------------------------------------------------------
-- Route table: the document's 45 operations. {id} matches one path segment.
---------------------------------------------------------------------------

local ROUTES = {
  -- purchase and registration
  { "POST", "/v2/actions/purchase/esims", purchase_esims },
  { "POST", "/v2/actions/register/sim_cards", register_sim_cards },
  -- SIM cards
  { "GET", "/v2/sim_cards", list_sim_cards },
  { "POST", "/v2/sim_cards/actions/validate_registration_codes", validate_registration_codes },
  { "POST", "/v2/sim_cards/actions/bulk_enable_voice", bulk_voice(true) },
  { "POST", "/v2/sim_cards/actions/bulk_disable_voice", bulk_voice(false) },
  { "POST", "/v2/sim_cards/actions/bulk_set_public_ips", bulk_set_public_ips },
  { "GET", "/v2/sim_cards/{id}", get_sim_card },
  { "PATCH", "/v2/sim_cards/{id}", update_sim_card },
  { "DELETE", "/v2/sim_cards/{id}", delete_sim_card },
  { "POST", "/v2/sim_cards/{id}/actions/enable", status_action("enable") },
  { "POST", "/v2/sim_cards/{id}/actions/disable", status_action("disable") },
  { "POST", "/v2/sim_cards/{id}/actions/set_standby", status_action("set_standby") },
  { "POST", "/v2/sim_cards/{id}/actions/set_public_ip", set_public_ip },
  { "POST", "/v2/sim_cards/{id}/actions/remove_public_ip", remove_public_ip },
  { "GET", "/v2/sim_cards/{id}/public_ip", get_public_ip },
  { "GET", "/v2/sim_cards/{id}/activation_code", get_activation_code },
  { "GET", "/v2/sim_cards/{id}/device_details", get_device_details },
  { "GET", "/v2/sim_cards/{id}/wireless_connectivity_logs", list_connectivity_logs },
  -- SIM card actions and bulk actions
  { "GET", "/v2/sim_card_actions", list_sim_card_actions },
  { "GET", "/v2/sim_card_actions/{id}", get_sim_card_action },
  { "GET", "/v2/bulk_sim_card_actions", list_bulk_actions },
  { "GET", "/v2/bulk_sim_card_actions/{id}", get_bulk_action },
  -- SIM card groups and their actions
  { "GET", "/v2/sim_card_groups", list_groups },
  { "POST", "/v2/sim_card_groups", create_group },
  { "GET", "/v2/sim_card_groups/{id}", get_group },
  { "PATCH", "/v2/sim_card_groups/{id}", update_group },
  { "DELETE", "/v2/sim_card_groups/{id}", delete_group },
  { "POST", "/v2/sim_card_groups/{id}/actions/set_private_wireless_gateway",
    group_action("set_private_wireless_gateway", "private_wireless_gateway_id") },
  { "POST", "/v2/sim_card_groups/{id}/actions/remove_private_wireless_gateway",
    group_action("remove_private_wireless_gateway", "private_wireless_gateway_id") },
  { "POST", "/v2/sim_card_groups/{id}/actions/set_wireless_blocklist",
    group_action("set_wireless_blocklist", "wireless_blocklist_id") },
  { "POST", "/v2/sim_card_groups/{id}/actions/remove_wireless_blocklist",
    group_action("remove_wireless_blocklist", "wireless_blocklist_id") },
  { "GET", "/v2/sim_card_group_actions", list_group_actions },
  { "GET", "/v2/sim_card_group_actions/{id}", get_group_action },
  -- orders
  { "POST", "/v2/sim_card_order_preview", preview_order },
  { "GET", "/v2/sim_card_orders", list_orders },
  { "POST", "/v2/sim_card_orders", create_order },
  { "GET", "/v2/sim_card_orders/{id}", get_order },
  -- data usage notifications
  { "GET", "/v2/sim_card_data_usage_notifications", list_notifications },
  { "POST", "/v2/sim_card_data_usage_notifications", create_notification },
  { "GET", "/v2/sim_card_data_usage_notifications/{id}", get_notification },
  { "PATCH", "/v2/sim_card_data_usage_notifications/{id}", update_notification },
  { "DELETE", "/v2/sim_card_data_usage_notifications/{id}", delete_notification },
  -- reference data
  { "GET", "/v2/wireless/regions", list_regions },
  { "GET", "/v2/mobile_network_operators", list_mobile_network_operators },
}

for _, route in ipairs(ROUTES) do
  local escaped = route[2]:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  route.pattern = "^" .. escaped:gsub("{id}", "([^/]+)") .. "$"
end

---------------------------------------------------------------------------
-- Dispatch. No bearer key: 401 (the document's Unauthorized example). A
-- known path with a method it does not have: 405 with an Allow header (the
-- real API's answer is not documented; 405 tells a wrong method apart from
-- an unknown path or id). An unknown path: 404 { errors: [...] }. A body
-- that is not JSON: 400. HEAD is served as GET.
---------------------------------------------------------------------------

local function find_route(method, path)
  if method == "HEAD" then method = "GET" end
  local allowed = {}
  for _, route in ipairs(ROUTES) do
    local captures = { path:match(route.pattern) }
    if captures[1] then
      if route[1] == method then
        if route.pattern:find("(", 1, true) == nil then captures = {} end
        return route, captures
      end
      allowed[#allowed + 1] = route[1]
    end
  end
  return nil, nil, #allowed > 0 and table.concat(allowed, ", ") or nil
end

local UNAUTHORIZED = { errors = { err_body("401", "Unauthorized", "Unauthorized") } }
local INTERNAL_ERROR = { errors = { err_body("10000", "Internal error",
  "The fake could not answer this request (a bug in the fake: its log has the details).") } }

local function authorized(req)
  local auth = req.headers["authorization"]
  return type(auth) == "string" and auth:lower():match("^bearer%s+%S") ~= nil
end

local function no_route(req, allowed)
  if allowed then
    return 405, { errors = { err_body("10006", "Method not allowed",
      req.method .. " is not allowed on " .. req.path .. " (allowed: " .. allowed .. ")") } },
      { { "Allow", allowed } }
  end
  return 404, { errors = { err_body("10005", "Resource not found",
    "The requested resource or URL could not be found.") } }
end

-- The decoded body (empty arrays marked); nil when there is none.
local function request_json(req)
  local text = req.body or ""
  if not text:find("%S") then return nil end
  local value = json_decode(text, true)
  if value == nil then
    reject(400, { errors = { err_body("10015", "Bad Request", "The request body is not valid JSON.", "/") } })
  end
  return value
end

local function api_answer(req)
  if not authorized(req) then return 401, UNAUTHORIZED end
  settle()
  local route, captures, allowed = find_route(req.method, req.path)
  if not route then return no_route(req, allowed) end
  req.params = parse_query(req.query)
  req.json = request_json(req)
  return route[3](req, unpack(captures))
end

-- Returns status, body table (nil: no body), extra headers. Never raises: a
-- Lua error is answered as a 500 with an API-shaped error, its text as a
-- fourth value for the caller's log. (Handlers never yield, so pcall is safe
-- inside the server's coroutine on 5.1 too.)
local function default_answer(req)
  local ok, status, body, headers = pcall(api_answer, req)
  if ok then return status, body, headers end
  if getmetatable(status) == Rejection then return status.status, status.body end
  return 500, INTERNAL_ERROR, nil, tostring(status)
end

-- Every record of the emulated API (GET /__fake/state).
local function state_dump()
  settle()
  local function all(store, render)
    local out = {}
    for i, rec in ipairs(store.list) do out[i] = render and render(rec) or public(rec) end
    return array_or_empty(out)
  end
  local ips, codes = {}, {}
  for _, card in ipairs(state.cards.list) do
    if state.public_ips[card.id] then ips[#ips + 1] = public(state.public_ips[card.id]) end
  end
  for code in pairs(state.used_codes) do codes[#codes + 1] = code end
  table.sort(codes)
  return {
    sim_cards = all(state.cards, function(card) return render_card(card, { full = true }) end),
    sim_card_groups = all(state.groups, function(group) return render_group(group, true) end),
    sim_card_actions = all(state.actions),
    bulk_sim_card_actions = all(state.bulk_actions, render_bulk_action),
    sim_card_group_actions = all(state.group_actions),
    sim_card_orders = all(state.orders),
    sim_card_data_usage_notifications = all(state.notifications),
    public_ips = array_or_empty(ips),
    used_registration_codes = array_or_empty(codes),
  }
end

-- POST /__fake/seed { sim_card_groups: [...], sim_cards: [...], used_registration_codes: [...] }
-- A group: { name =, id =, data_limit =, ... } (any SIMCardGroup field).
-- A card: { type = "esim" | "physical" (default esim), status = "enabled" |
-- {value, reason}, tags =, sim_card_group_id = (an existing group, or null
-- for none), ... } (any other SIMCard field replaces the default).
-- Answers the new records. Returns status, answer.
local function seed(body)
  local function list(v) return type(v) == "table" and is_array(v) and v or {} end
  local group_specs, card_specs = list(body.sim_card_groups), list(body.sim_cards)
  local new_groups = {}
  for i, g in ipairs(group_specs) do
    if type(g) ~= "table" then return 400, { error = "sim_card_groups[" .. i .. "] must be an object" } end
    if g.id ~= nil and (state.groups.by_id[g.id] or new_groups[g.id]) then
      return 400, { error = "sim_card_groups[" .. i .. "]: id " .. tostring(g.id) .. " exists already" }
    end
    if g.id ~= nil then new_groups[g.id] = true end
  end
  local new_cards = {}
  for i, c in ipairs(card_specs) do
    local group = type(c) == "table" and c.sim_card_group_id
    if type(c) ~= "table" then return 400, { error = "sim_cards[" .. i .. "] must be an object" } end
    if group ~= nil and group ~= null and not state.groups.by_id[group] and not new_groups[group] then
      return 400, { error = "sim_cards[" .. i .. "]: no SIM card group " .. tostring(group) }
    end
    if c.type ~= nil and c.type ~= "esim" and c.type ~= "physical" then
      return 400, { error = "sim_cards[" .. i .. "]: type must be esim or physical" }
    end
    if c.id ~= nil and (type(c.id) ~= "string" or state.cards.by_id[c.id] or new_cards[c.id]) then
      return 400, { error = "sim_cards[" .. i .. "]: id must be a string not used yet" }
    end
    if c.id ~= nil then new_cards[c.id] = true end
  end

  local groups, cards = {}, {}
  for i, g in ipairs(group_specs) do
    local t = now()
    local group = {
      id = uuid4(), record_type = "sim_card_group", name = "Seeded group " .. i, default = false,
      data_limit = null, private_wireless_gateway_id = null, wireless_blocklist_id = null,
      created_at = stamp(t), updated_at = stamp(t),
    }
    for k, v in pairs(g) do group[k] = v end
    groups[i] = render_group(store_add(state.groups, group))
  end
  for i, c in ipairs(card_specs) do
    local card = new_card(c.type or "esim", {
      id = c.id,
      status = type(c.status) == "string" and c.status or nil,
      tags = (type(c.tags) == "table" and is_array(c.tags)) and c.tags or nil,
      sim_card_group_id = c.sim_card_group_id,
      no_group = c.sim_card_group_id == null,
    })
    for k, v in pairs(c) do
      if k == "authorized_imeis" then
        card.authorized_imeis = (v ~= null) and ((v == EMPTY_ARRAY) and {} or v) or nil
      elseif k == "status" and type(v) == "table" then
        card.status = v
      elseif k ~= "id" and k ~= "type" and k ~= "status" and k ~= "tags" and k ~= "sim_card_group_id" then
        card[k] = v
      end
    end
    state.deleted_cards[card.id] = nil
    cards[i] = render_card(card, { full = true })
  end
  for _, code in ipairs(list(body.used_registration_codes)) do state.used_codes[fmt_int(code)] = true end
  return 200, { sim_card_groups = array_or_empty(groups), sim_cards = array_or_empty(cards) }
end

-- POST /__fake/config: change some settings; answers all of them.
local function set_config(body)
  for k, v in pairs(body) do
    local default = DEFAULT_CONFIG[k]
    if default == nil then return 400, { error = "unknown setting " .. tostring(k) } end
    if type(v) ~= type(default) or (type(v) == "number" and not (v >= 0 and v <= 3600)) then
      return 400, { error = "setting " .. k .. " must be a " .. type(default)
        .. (type(default) == "number" and " from 0 to 3600" or "") }
    end
  end
  for k, v in pairs(body) do config[k] = v end
  return 200, config
end


local M = {}

--- Answers one API request { method, path, query, headers, body }:
-- status, body table (nil: none), extra headers ({ {name, value} }), and
-- the Lua error's text when the answer is a 500 from a bug.
M.answer = default_answer
M.err_body = err_body
M.INTERNAL_ERROR = INTERNAL_ERROR
M.is_integer = is_integer
M.state = state_dump
M.seed = seed
M.set_config = set_config
function M.config() return config end
function M.reset()
  reset_state()
  reset_config()
end
function M.routes()
  local list = {}
  for i, route in ipairs(ROUTES) do list[i] = { method = route[1], path = route[2] } end
  return list
end

return M
