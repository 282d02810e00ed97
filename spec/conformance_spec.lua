-- Conformance: every row of the module's operation table (src/operations.h, as
-- sim.describe shows it) against the Telnyx OpenAPI document
-- (sim-cards-full.json) and NOTES.md beside it.
--
-- For each operation the document's params are turned into the rule shape
-- sim.describe answers (flat page[number] / filter[x] query params become
-- fields of a `page` / `filter` object, like the deepObject ones), then both
-- trees are compared: names per place, kind, required, nullable, format,
-- enum, min, max, down to array items and nested objects. Every difference
-- must be listed in DEVIATIONS below, and every DEVIATIONS entry must still be
-- a difference: the test fails on an unexplained difference and on a stale
-- deviation alike.
--
-- The document: $TELNYX_OPENAPI, else ../shared/telnyx-openapi/sim-cards-full.json
-- from the repository root. Missing, the spec is skipped with one pending line
-- saying so (a plain clone has no ../shared); under CI=true that is a failure.
local cjson = require "cjson"
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"

-- ===================================================================== --
-- DEVIATIONS: where the module deliberately differs from the document.   --
-- ===================================================================== --
--
-- One entry per kind of difference, for the listed fields of one operation:
--   op      the operation (client method)
--   what    the attribute that differs: min | format | required | enum |
--           absent (the document has the field, the module does not)
--   fields  field paths: "filter.name", "data_limit.unit", "tags[]" (items),
--           "id (body)" (a body field named like a path param)
--   module  what the module has instead (checked), where it has something
--   readonly  true: the document marks each of these fields readOnly (checked)
--   why     the reason
-- Difference kinds no entry uses today (and so fail if they appear): kind,
-- nullable, max, place, extra (the module has a field the document lacks),
-- twice (a name in the module twice).

-- Empty strings are refused where the document sets no minLength: an empty
-- name, code, id or filter value is a mistake better reported before the call
-- than by the API (or, for a filter, silently ignored).
local WHY_NONEMPTY = "an empty string is refused (min length 1); the document has no minLength"
-- A list of codes or ids with nothing in it asks nothing.
local WHY_NONEMPTY_LIST = "an empty list is refused (min 1 item); the document has no minItems"
-- Amounts of data travel as decimal strings ("2048", "0.5").
local WHY_DECIMAL = "a data amount is a decimal string such as \"2048\"; the document only says string"
-- data_limit / threshold: one shared sub-tree {amount, unit}.
local WHY_DATA_SIZE = "a data size needs both its amount and its unit; the document requires neither"
local WHY_READONLY = "readOnly in the document: the server sets it, so a request may not carry it"

local DEVIATIONS = {
  -- Purchase / register
  { op = "purchase_esims", what = "min", module = 1, fields = { "product", "tags[]" }, why = WHY_NONEMPTY },
  { op = "purchase_esims", what = "format", module = "spn", fields = { "whitelabel_name" },
    why = "the description says letters, digits and whitespace only; the document has no pattern" },
  { op = "register_sim_cards", what = "min", module = 1, fields = { "registration_codes[]", "tags[]" }, why = WHY_NONEMPTY },
  -- min on the array itself: its item count
  { op = "register_sim_cards", what = "min", module = 1, fields = { "registration_codes" }, why = WHY_NONEMPTY_LIST },

  -- SIM cards
  { op = "list_sim_cards", what = "min", module = 1, fields = { "filter.iccid", "filter.msisdn", "filter.tags[]" },
    why = WHY_NONEMPTY },
  -- PATCH /sim_cards/{id} declares the whole SIMCard as its body; NOTES.md
  -- ("Writable fields"): only tags, sim_card_group_id, authorized_imeis and
  -- data_limit are writable.
  { op = "update_sim_card", what = "absent", readonly = true, why = WHY_READONLY, fields = {
    "actions_in_progress", "created_at", "current_billing_period_consumed_data", "current_device_location",
    "current_imei", "current_mcc", "current_mnc", "eid", "esim_installation_status", "iccid", "id (body)", "imsi",
    "ipv4", "ipv6", "live_data_session", "msisdn", "pin_puk_codes", "record_type",
    "resources_with_in_progress_actions", "type", "updated_at", "version", "voice_enabled" } },
  { op = "update_sim_card", what = "absent", fields = { "status" },
    why = "not writable (NOTES.md \"Writable fields\"); status changes through enable/disable/set_standby" },
  { op = "update_sim_card", what = "min", module = 1, fields = { "authorized_imeis[]", "tags[]" }, why = WHY_NONEMPTY },
  { op = "update_sim_card", what = "format", module = "decimal", fields = { "data_limit.amount" }, why = WHY_DECIMAL },
  { op = "update_sim_card", what = "required", module = true, fields = { "data_limit.amount", "data_limit.unit" },
    why = WHY_DATA_SIZE },
  { op = "set_sim_card_public_ip", what = "min", module = 1, fields = { "region_code" }, why = WHY_NONEMPTY },
  { op = "validate_registration_codes", what = "required", module = true, fields = { "registration_codes" },
    why = "validating no code asks nothing; the document's body schema has no required list" },
  { op = "validate_registration_codes", what = "min", module = 1, fields = { "registration_codes" },
    why = WHY_NONEMPTY_LIST },
  { op = "validate_registration_codes", what = "min", module = 1, fields = { "registration_codes[]" }, why = WHY_NONEMPTY },
  -- The bulk voice body's sim_card_group_id has no format, unlike every other
  -- SIM card group id in the document (its example is a uuid).
  { op = "bulk_enable_voice", what = "format", module = "uuid", fields = { "sim_card_group_id" },
    why = "a SIM card group id is a uuid; the document forgets the format here" },
  { op = "bulk_disable_voice", what = "format", module = "uuid", fields = { "sim_card_group_id" },
    why = "a SIM card group id is a uuid; the document forgets the format here" },
  { op = "bulk_set_public_ips", what = "min", module = 1, fields = { "sim_card_ids" }, why = WHY_NONEMPTY_LIST },

  -- Groups. Their data_limit is the SIM card's {amount, unit MB|GB}: the
  -- document leaves the group's unit an open string (example "MB").
  { op = "list_sim_card_groups", what = "min", module = 1, fields = { "filter.name" }, why = WHY_NONEMPTY },
  { op = "create_sim_card_group", what = "min", module = 1, fields = { "name" }, why = WHY_NONEMPTY },
  { op = "create_sim_card_group", what = "format", module = "decimal", fields = { "data_limit.amount" }, why = WHY_DECIMAL },
  { op = "create_sim_card_group", what = "required", module = true, fields = { "data_limit.amount", "data_limit.unit" },
    why = WHY_DATA_SIZE },
  { op = "create_sim_card_group", what = "enum", module = { "MB", "GB" }, fields = { "data_limit.unit" },
    why = "the same units as a SIM card's data_limit; the document gives no enum for a group's" },
  { op = "update_sim_card_group", what = "min", module = 1, fields = { "name" }, why = WHY_NONEMPTY },
  { op = "update_sim_card_group", what = "format", module = "decimal", fields = { "data_limit.amount" }, why = WHY_DECIMAL },
  { op = "update_sim_card_group", what = "required", module = true, fields = { "data_limit.amount", "data_limit.unit" },
    why = WHY_DATA_SIZE },
  { op = "update_sim_card_group", what = "enum", module = { "MB", "GB" }, fields = { "data_limit.unit" },
    why = "the same units as a SIM card's data_limit; the document gives no enum for a group's" },

  -- Orders. The list filter keeps the document's dotted names
  -- ("address.country_code"): spec3.yml gives the original params as
  -- filter[address.country_code], so the dot is the wire form, not nesting.
  { op = "preview_sim_card_order", what = "min", module = 1, fields = { "address_id" }, why = WHY_NONEMPTY },
  { op = "create_sim_card_order", what = "min", module = 1, fields = { "address_id" }, why = WHY_NONEMPTY },
  { op = "list_sim_card_orders", what = "min", module = 1, why = WHY_NONEMPTY, fields = {
    "filter.address.administrative_area", "filter.address.country_code", "filter.address.extended_address",
    "filter.address.id", "filter.address.locality", "filter.address.postal_code", "filter.address.street_address",
    "filter.cost.amount", "filter.cost.currency" } },

  -- Data-usage notifications. PATCH declares the whole notification as its body.
  { op = "create_sim_card_data_usage_notification", what = "format", module = "decimal", fields = { "threshold.amount" },
    why = WHY_DECIMAL },
  { op = "create_sim_card_data_usage_notification", what = "required", module = true,
    fields = { "threshold.amount", "threshold.unit" }, why = WHY_DATA_SIZE },
  { op = "update_sim_card_data_usage_notification", what = "absent", readonly = true, why = WHY_READONLY,
    fields = { "created_at", "id (body)", "record_type", "updated_at" } },
  { op = "update_sim_card_data_usage_notification", what = "format", module = "decimal", fields = { "threshold.amount" },
    why = WHY_DECIMAL },
  { op = "update_sim_card_data_usage_notification", what = "required", module = true,
    fields = { "threshold.amount", "threshold.unit" }, why = WHY_DATA_SIZE },

  -- Reference
  { op = "list_wireless_regions", what = "min", module = 1, fields = { "product" }, why = WHY_NONEMPTY },
  { op = "list_mobile_network_operators", what = "min", module = 1, why = WHY_NONEMPTY, fields = {
    "filter.country_code", "filter.mcc", "filter.mnc", "filter.name.contains", "filter.name.ends_with",
    "filter.name.starts_with", "filter.tadig" } },
}

-- ===================================================================== --
-- What the document cannot say                                           --
-- ===================================================================== --

-- The client methods, in table order, each with the document's operationId.
local OPERATIONS = {
  -- Purchase / register
  { "purchase_esims", "PurchaseESim" },
  { "register_sim_cards", "RegisterSimCards" },
  -- SIM cards
  { "list_sim_cards", "GetSimCards" },
  { "get_sim_card", "GetSimCard" },
  { "update_sim_card", "UpdateSimCard" },
  { "delete_sim_card", "DeleteSimCard" },
  { "enable_sim_card", "EnableSimCard" },
  { "disable_sim_card", "DisableSimCard" },
  { "set_sim_card_standby", "SetSimCardStandby" },
  { "set_sim_card_public_ip", "SetSimCardPublicIp" },
  { "remove_sim_card_public_ip", "RemoveSimCardPublicIp" },
  { "get_sim_card_public_ip", "GetSimCardPublicIp" },
  { "get_sim_card_activation_code", "GetSimCardActivationCode" },
  { "get_sim_card_device_details", "GetSimCardDeviceDetails" },
  { "list_wireless_connectivity_logs", "GetWirelessConnectivityLogs" },
  { "validate_registration_codes", "ValidateRegistrationCodes" },
  { "bulk_enable_voice", "EnableVoiceBulk" },
  { "bulk_disable_voice", "DisableVoiceBulk" },
  { "bulk_set_public_ips", "SetPublicIPsBulk" },
  -- Actions
  { "list_sim_card_actions", "ListSimCardActions" },
  { "get_sim_card_action", "GetSimCardAction" },
  { "list_bulk_sim_card_actions", "ListBulkSimCardActions" },
  { "get_bulk_sim_card_action", "GetBulkSimCardAction" },
  -- Groups
  { "list_sim_card_groups", "GetAllSimCardGroups" },
  { "create_sim_card_group", "CreateSimCardGroup" },
  { "get_sim_card_group", "GetSimCardGroup" },
  { "update_sim_card_group", "UpdateSimCardGroup" },
  { "delete_sim_card_group", "DeleteSimCardGroup" },
  { "set_sim_card_group_private_wireless_gateway", "SetPrivateWirelessGatewayForSimCardGroup" },
  { "remove_sim_card_group_private_wireless_gateway", "RemoveSimCardGroupPrivateWirelessGateway" },
  { "set_sim_card_group_wireless_blocklist", "SetWirelessBlocklistForSimCardGroup" },
  { "remove_sim_card_group_wireless_blocklist", "RemoveWirelessBlocklistForSimCardGroup" },
  { "list_sim_card_group_actions", "GetSimCardGroupActions" },
  { "get_sim_card_group_action", "GetSimCardGroupAction" },
  -- Orders
  { "preview_sim_card_order", "PreviewSimCardOrders" },
  { "list_sim_card_orders", "GetSimCardOrders" },
  { "create_sim_card_order", "CreateSimCardOrder" },
  { "get_sim_card_order", "GetSimCardOrder" },
  -- Data-usage notifications
  { "list_sim_card_data_usage_notifications", "ListDataUsageNotifications" },
  { "create_sim_card_data_usage_notification", "PostSimCardDataUsageNotification" },
  { "get_sim_card_data_usage_notification", "GetSimCardDataUsageNotification" },
  { "update_sim_card_data_usage_notification", "PatchSimCardDataUsageNotification" },
  { "delete_sim_card_data_usage_notification", "DeleteSimCardDataUsageNotifications" },
  -- Reference
  { "list_wireless_regions", "WirelessRegionsGetAll" },
  { "list_mobile_network_operators", "GetMobileNetworkOperators" },
}

-- NOTES.md, "What a second copy of a request does": the calls that are not
-- safe to send twice, as the table there names them. Every other call is safe.
local NOT_SAFE = {
  ["POST /actions/purchase/esims"] = "spends_money",
  ["POST /sim_card_orders"] = "spends_money",
  ["POST /sim_cards/{id}/actions/set_public_ip"] = "spends_money",
  ["POST /sim_cards/actions/bulk_set_public_ips"] = "spends_money",
  ["POST /sim_card_groups"] = "duplicates",
  ["POST /sim_card_data_usage_notifications"] = "duplicates",
}
-- The NOTES.md table's row for each class.
local NOTES_ROW = { spends_money = "spends money", duplicates = "creates a duplicate" }

-- Where a caller looks before trying a non-safe call again (err.check).
local CHECKS = {
  purchase_esims = "the SIM card list",
  create_sim_card_order = "the SIM card order list",
  set_sim_card_public_ip = "the SIM card's public IP",
  bulk_set_public_ips = "the bulk SIM card action list",
  create_sim_card_group = "the SIM card group list",
  create_sim_card_data_usage_notification = "the data usage notification list",
}

-- ===================================================================== --
-- The document                                                           --
-- ===================================================================== --

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The repository root, from where this file is.
local function repo_root()
  local source = debug.getinfo(1, "S").source
  local file = source:sub(1, 1) == "@" and source:sub(2) or "spec/conformance_spec.lua"
  local spec_dir = file:match("^(.*)/[^/]*$") or "."
  return spec_dir .. "/.."
end

local DOC_NAME = "telnyx-openapi/sim-cards-full.json"

local function find_document()
  local tried = {}
  local candidates = {
    os.getenv("TELNYX_OPENAPI"),
    "../shared/" .. DOC_NAME,
    repo_root() .. "/../shared/" .. DOC_NAME,
  }
  for i = 1, 3 do
    local path = candidates[i]
    if path and path ~= "" then
      local text = read_file(path)
      if text then return path, text end
      tried[#tried + 1] = path
    end
  end
  return nil, "the Telnyx OpenAPI document (sim-cards-full.json) is missing: set TELNYX_OPENAPI=/path/to/"
    .. "sim-cards-full.json (the SIM card operations of github.com/team-telnyx/openapi's openapi/spec3.yml, "
    .. "with every $ref they use); tried: " .. table.concat(tried, ", ")
end

local DOC_PATH, DOC_TEXT = find_document()
if not DOC_PATH then
  helpers.skip_missing({ describe = describe, it = it, pending = pending },
    "conformance with the OpenAPI document", DOC_TEXT)
  return
end
local doc = cjson.decode(DOC_TEXT)

-- A "#/components/..." reference, resolved (repeatedly).
local function resolve(node)
  local hops = 0
  while type(node) == "table" and node["$ref"] do
    local ref = node["$ref"]
    assert(ref:sub(1, 2) == "#/", "conformance: external $ref " .. ref)
    node = doc
    for part in ref:sub(3):gmatch("[^/]+") do
      part = part:gsub("~1", "/"):gsub("~0", "~")
      node = node[part]
      assert(node ~= nil, "conformance: unresolved $ref " .. ref)
    end
    hops = hops + 1
    assert(hops < 20, "conformance: $ref loop at " .. ref)
  end
  return node
end

local HTTP_METHODS = { "get", "post", "put", "patch", "delete" }

-- operationId -> { method, path, op }
local doc_ops, doc_op_count = {}, 0
for path, item in pairs(doc.paths) do
  for _, m in ipairs(HTTP_METHODS) do
    local op = item[m]
    if op then
      assert(op.operationId and not doc_ops[op.operationId], "conformance: missing or repeated operationId at " .. path)
      doc_ops[op.operationId] = { method = m:upper(), path = path, op = op }
      doc_op_count = doc_op_count + 1
    end
  end
end

-- ===================================================================== --
-- The document's params in sim.describe's shape                          --
-- ===================================================================== --

local LENGTH_KEYS = {
  integer = { "minimum", "maximum" },
  string = { "minLength", "maxLength" },
  array = { "minItems", "maxItems" },
}

-- A schema -> { name, kind, required, nullable, format, enum, min, max,
-- readonly, fields = { [name] = rule } | items = rule }.
local function doc_rule(name, schema, required)
  schema = resolve(schema) or {}
  local kind, nullable = schema.type, nil
  if type(kind) == "table" then -- OpenAPI 3.1: type: [array, "null"]
    local kinds = {}
    for _, t in ipairs(kind) do
      if t == "null" then nullable = true else kinds[#kinds + 1] = t end
    end
    assert(#kinds == 1, "conformance: a union of types at " .. tostring(name))
    kind = kinds[1]
  end
  local r = {
    name = name, kind = kind or "(none)", required = required or nil, nullable = nullable,
    format = schema.format, enum = schema.enum, readonly = schema.readOnly or nil,
  }
  local keys = LENGTH_KEYS[kind]
  if keys then
    r.min, r.max = schema[keys[1]], schema[keys[2]]
  end
  if kind == "object" then
    local req = {}
    for _, n in ipairs(schema.required or {}) do req[n] = true end
    r.fields = {}
    for pname, p in pairs(schema.properties or {}) do
      r.fields[pname] = doc_rule(pname, p, req[pname])
    end
  elseif kind == "array" then
    r.items = doc_rule("item", schema.items)
  end
  return r
end

-- An operation's params: { [name] = rule with .place, .order }.
local function doc_params(entry)
  local top, n = {}, 0
  local function add(r, place)
    n = n + 1
    r.place, r.order = place, n
    top[r.name] = r
    return r
  end
  for _, p in ipairs(entry.op.parameters or {}) do
    p = resolve(p)
    local place = p["in"]
    assert(place == "path" or place == "query", "conformance: a param in " .. tostring(place))
    local outer, inner = p.name:match("^([%w_]+)%[([^%[%]]+)%]$")
    if place == "query" and outer then
      -- page[number], filter[sim_card_id]: a field of the `page` / `filter` object
      local obj = top[outer] or add({ name = outer, kind = "object", fields = {} }, "query")
      assert(obj.kind == "object" and not obj.fields[inner], "conformance: " .. p.name .. " twice")
      obj.fields[inner] = doc_rule(inner, p.schema, p.required)
    else
      local r = doc_rule(p.name, p.schema, p.required)
      local obj = top[p.name]
      if obj then -- a deepObject beside flat fields of the same name
        assert(obj.kind == "object" and r.kind == "object", "conformance: " .. p.name .. " twice")
        for k, v in pairs(r.fields) do
          assert(not obj.fields[k], "conformance: " .. p.name .. "." .. k .. " twice")
          obj.fields[k] = v
        end
      else
        add(r, place)
      end
    end
  end
  local body = entry.op.requestBody and resolve(entry.op.requestBody)
  if body then
    local media = assert(body.content and body.content["application/json"], "conformance: a non-JSON body")
    local schema = doc_rule("(body)", media.schema)
    assert(schema.kind == "object", "conformance: a body that is not an object")
    local names = {}
    for k in pairs(schema.fields) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local r = schema.fields[k]
      -- one params table for all places: a body field named like a path
      -- param (the readOnly `id` of a PATCH body) is a field of its own
      if top[k] then r.name = k .. " (body)" end
      add(r, "body")
    end
  end
  return top
end

-- What the first success answers in `data`: list, one, or none.
local function doc_result(entry)
  local code
  for c in pairs(entry.op.responses) do
    if c:match("^2%d%d$") and (code == nil or c < code) then code = c end
  end
  assert(code, "conformance: no success response")
  local response = resolve(entry.op.responses[code])
  local media = response.content and response.content["application/json"]
  if not media then return "none", code end
  local schema = resolve(media.schema)
  local data = schema.properties and resolve(schema.properties.data)
  if not data then return "none", code end
  if data.type == "array" then return "list", code end
  if data.type == "object" then return "one", code end
  return "data of type " .. tostring(data.type), code
end

-- ===================================================================== --
-- Comparing                                                              --
-- ===================================================================== --

local function show(v)
  if v == nil then return "-" end
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = show(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- A difference: { op, field, what, doc, module, doc_rule }.
local function differ(diffs, op, field, what, d, m, doc_r)
  diffs[#diffs + 1] = { op = op, field = field, what = what, doc = d, module = m, doc_rule = doc_r }
end

local compare_fields

local function compare_rule(diffs, op, field, d, m, top)
  if d.kind ~= m.kind then
    return differ(diffs, op, field, "kind", d.kind, m.kind, d) -- nothing below compares
  end
  if top and d.place ~= m.place then differ(diffs, op, field, "place", d.place, m.place, d) end
  if (d.required or false) ~= (m.required or false) then
    differ(diffs, op, field, "required", d.required or false, m.required or false, d)
  end
  if (d.nullable or false) ~= (m.nullable or false) then
    differ(diffs, op, field, "nullable", d.nullable or false, m.nullable or false, d)
  end
  if d.format ~= m.format then differ(diffs, op, field, "format", d.format, m.format, d) end
  if not same(d.enum, m.enum) then differ(diffs, op, field, "enum", d.enum, m.enum, d) end
  if d.min ~= m.min then differ(diffs, op, field, "min", d.min, m.min, d) end
  if d.max ~= m.max then differ(diffs, op, field, "max", d.max, m.max, d) end
  if d.kind == "object" then
    compare_fields(diffs, op, field .. ".", d.fields, m.fields or {}, false)
  elseif d.kind == "array" then
    if m.items then
      compare_rule(diffs, op, field .. "[]", d.items, m.items, false)
    else
      differ(diffs, op, field .. "[]", "absent", d.items.kind, nil, d.items)
    end
  end
end

-- doc_fields: { [name] = rule }; mod_fields: sim.describe's ordered list.
function compare_fields(diffs, op, prefix, doc_fields, mod_fields, top)
  local by_name = {}
  for i, m in ipairs(mod_fields) do
    assert(type(m.name) == "string", ("conformance: %s: field %d of %s has no name"):format(op, i, prefix))
    if by_name[m.name] then differ(diffs, op, prefix .. m.name, "twice", nil, m.kind) end
    by_name[m.name] = m
  end
  for name, d in pairs(doc_fields) do
    local m = by_name[name]
    if m then
      compare_rule(diffs, op, prefix .. name, d, m, top)
    else
      differ(diffs, op, prefix .. name, "absent", d.kind, nil, d)
    end
  end
  for name, m in pairs(by_name) do
    if not doc_fields[name] then differ(diffs, op, prefix .. name, "extra", nil, m.kind) end
  end
end

-- ===================================================================== --
-- The checks                                                             --
-- ===================================================================== --

-- describe() for a name, or nil and the reason.
local function describe_op(name)
  local ok, d, err = pcall(sim.describe, name)
  if not ok then return nil, tostring(d) end
  if type(d) ~= "table" then return nil, tostring(err or d) end
  return d
end

-- Every difference between the module and the document, sorted.
local function all_differences()
  local diffs = {}
  for _, pair in ipairs(OPERATIONS) do
    local name, entry = pair[1], doc_ops[pair[2]]
    local d = describe_op(name)
    if d and entry then
      local params = d.params or {}
      if params.kind ~= "object" then differ(diffs, name, "(params)", "kind", "object", params.kind) end
      compare_fields(diffs, name, "", doc_params(entry), params.fields or {}, true)
    end
  end
  table.sort(diffs, function(a, b)
    if a.op ~= b.op then return a.op < b.op end
    if a.field ~= b.field then return a.field < b.field end
    return a.what < b.what
  end)
  return diffs
end

local function deviation_index()
  local index, order = {}, {}
  for i, e in ipairs(DEVIATIONS) do
    assert(type(e.op) == "string" and type(e.what) == "string" and type(e.why) == "string" and e.why ~= ""
      and type(e.fields) == "table" and #e.fields > 0, "conformance: DEVIATIONS entry " .. i .. " is incomplete")
    for _, field in ipairs(e.fields) do
      local key = e.op .. " " .. field .. " " .. e.what
      assert(not index[key], "conformance: DEVIATIONS lists " .. key .. " twice")
      index[key] = e
      order[#order + 1] = key
    end
  end
  return index, order
end

local function describe_difference(x)
  if x.what == "absent" then
    return ("%s %s: in the document (%s), not in the module"):format(x.op, x.field, show(x.doc))
  elseif x.what == "extra" then
    return ("%s %s: in the module (%s), not in the document"):format(x.op, x.field, show(x.module))
  elseif x.what == "twice" then
    return ("%s %s: in the module twice"):format(x.op, x.field)
  end
  return ("%s %s: %s differs (document: %s, module: %s)"):format(x.op, x.field, x.what, show(x.doc), show(x.module))
end

describe("conformance with the OpenAPI document", function()
  it("reads the document", function()
    assert.is_table(doc.paths, DOC_PATH .. " has no paths")
    assert.equal(#sim.operations, doc_op_count, DOC_PATH .. ": expected one SIM-card operation per sim.operations entry")
  end)

  it("has exactly the document's operations, in table order", function()
    local names = {}
    for i, pair in ipairs(OPERATIONS) do names[i] = pair[1] end
    assert.same(names, sim.operations)
  end)

  it("covers every document operation with exactly one row", function()
    local seen_id, seen_route = {}, {}
    for _, pair in ipairs(OPERATIONS) do
      local name, id = pair[1], pair[2]
      assert.is_nil(seen_id[id], id .. " is covered twice")
      seen_id[id] = name
      local entry = doc_ops[id]
      assert.is_table(entry, "no operation " .. id .. " in the document")
      local d = assert(describe_op(name))
      local route = tostring(d.method) .. " " .. tostring(d.path)
      assert.is_nil(seen_route[route], route .. " is in two rows")
      seen_route[route] = name
    end
    for id, entry in pairs(doc_ops) do
      assert.is_truthy(seen_id[id], ("%s (%s %s) has no row"):format(id, entry.method, entry.path))
    end
  end)

  it("refuses an unknown operation", function()
    assert.is_function(sim.describe)
    local d = describe_op("nope")
    assert.is_nil(d)
  end)

  it("gives each row the document's method, path, body mode and result shape", function()
    local problems = {}
    local function check(name, what, expected, got)
      if expected ~= got then
        problems[#problems + 1] = ("%s: %s is %s, the document says %s"):format(name, what, show(got), show(expected))
      end
    end
    for _, pair in ipairs(OPERATIONS) do
      local name, entry = pair[1], doc_ops[pair[2]]
      local d, err = describe_op(name)
      if not d then
        problems[#problems + 1] = name .. ": describe failed: " .. tostring(err)
      elseif entry then
        check(name, "name", name, d.name)
        check(name, "method", entry.method, d.method)
        check(name, "path", entry.path, d.path)
        check(name, "body", entry.op.requestBody and "json" or "none", d.body)
        local result, code = doc_result(entry)
        check(name, "result (" .. code .. " data)", result, d.result)
      end
    end
    assert(#problems == 0, "\n" .. table.concat(problems, "\n"))
  end)

  it("gives each row the NOTES.md re-send class, a noun, and a check exactly when not safe", function()
    local problems = {}
    for _, pair in ipairs(OPERATIONS) do
      local name = pair[1]
      local d = describe_op(name)
      if d then
        local expected = NOT_SAFE[tostring(d.method) .. " " .. tostring(d.path)] or "safe"
        if d.resend ~= expected then
          problems[#problems + 1] = ("%s: resend is %s, NOTES.md says %s"):format(name, show(d.resend), expected)
        end
        if d.check ~= CHECKS[name] then
          problems[#problems + 1] = ("%s: check is %s, expected %s"):format(name, show(d.check), show(CHECKS[name]))
        end
        if type(d.noun) ~= "string" or d.noun == "" then
          problems[#problems + 1] = name .. ": no noun"
        end
      end
    end
    assert(#problems == 0, "\n" .. table.concat(problems, "\n"))
    -- each hard-coded name of the table above is in NOTES.md's row for its class
    local notes = read_file((DOC_PATH:match("^(.*)/[^/]*$") or ".") .. "/NOTES.md")
    assert.is_string(notes, "NOTES.md is not beside " .. DOC_PATH)
    for route, class in pairs(NOT_SAFE) do
      local row = notes:match("\n| " .. NOTES_ROW[class]:gsub("%p", "%%%0") .. " |([^\n]*)")
      assert.is_string(row, "NOTES.md has no row '" .. NOTES_ROW[class] .. "'")
      assert.is_truthy(row:find("`" .. route .. "`", 1, true), route .. " is not in NOTES.md's " .. class .. " row")
    end
  end)

  it("orders each row's params: path, then query, then body", function()
    local rank = { path = 1, query = 2, body = 3 }
    for _, pair in ipairs(OPERATIONS) do
      local d = describe_op(pair[1])
      local last = 0
      for _, f in ipairs(d and d.params and d.params.fields or {}) do
        local r = rank[f.place]
        assert.is_number(r, pair[1] .. "." .. tostring(f.name) .. ": place " .. show(f.place))
        assert(r >= last, pair[1] .. "." .. tostring(f.name) .. " is out of place order")
        last = r
      end
    end
  end)

  it("matches the document's params in every row, but for the listed deviations", function()
    local index = deviation_index()
    local unexplained = {}
    for _, x in ipairs(all_differences()) do
      local e = index[x.op .. " " .. x.field .. " " .. x.what]
      if not e then
        unexplained[#unexplained + 1] = describe_difference(x)
      elseif e.module ~= nil and not same(e.module, x.module) then
        unexplained[#unexplained + 1] = describe_difference(x) .. " -- DEVIATIONS says module: " .. show(e.module)
      elseif e.readonly and not (x.doc_rule and x.doc_rule.readonly) then
        unexplained[#unexplained + 1] = describe_difference(x) .. " -- DEVIATIONS says readOnly, the document does not"
      end
    end
    assert(#unexplained == 0, #unexplained .. " difference(s) not in DEVIATIONS:\n" .. table.concat(unexplained, "\n"))
  end)

  it("lists no deviation that is not a difference", function()
    local index, order = deviation_index()
    local found = {}
    for _, x in ipairs(all_differences()) do found[x.op .. " " .. x.field .. " " .. x.what] = true end
    local stale = {}
    for _, key in ipairs(order) do
      if not found[key] then stale[#stale + 1] = key .. " (" .. index[key].why .. ")" end
    end
    assert(#stale == 0, #stale .. " stale DEVIATIONS entr(y/ies), no longer a difference:\n" .. table.concat(stale, "\n"))
  end)
end)
