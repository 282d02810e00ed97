-- Realistic Telnyx payloads for the fake server (telnyx.sim.fake), also used by
-- the specs. Fields follow the schemas of ../shared/telnyx-openapi
-- (sim-cards-full.json): SimpleSIMCard, SIMCardGroup, MobileNetworkOperator,
-- wireless_Region, SIMCardDeviceDetails, SIMCardOrder.

local fixtures = {}

fixtures.DEFAULT_GROUP_ID = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"
fixtures.DEFAULT_GROUP_NAME = "Default group"

-- SIMCardStatus.reason for every SIMCardStatus.value.
fixtures.STATUS_REASONS = {
  enabled = "The SIM card is active, ready to connect to networks and consume data.",
  disabled = "The SIM card has been disabled. It can't connect to networks or consume data.",
  standby = "The SIM card is in standby. It can't consume data until it is enabled.",
  registering = "The SIM card is being registered.",
  enabling = "The SIM card is being enabled.",
  disabling = "The SIM card is being disabled.",
  setting_standby = "The SIM card is being set to standby.",
  data_limit_exceeded = "The SIM card has exceeded its data limit.",
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

--- ISO 8601 UTC with milliseconds; t in seconds (fractions kept), default now.
function fixtures.iso8601(t)
  t = t or os.time()
  local whole = math.floor(t)
  local ms = math.floor((t - whole) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%03dZ", ms)
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

--- PIN and PUK codes of SIM card number n (GET /sim_cards/{id}?include_pin_puk_codes=true).
function fixtures.pin_puk_codes(n)
  return {
    pin1 = string.format("%04d", (1234 + n) % 10000),
    pin2 = string.format("%04d", (5678 + n) % 10000),
    puk1 = string.format("%08d", (12345678 + n) % 100000000),
    puk2 = string.format("%08d", (87654321 + n) % 100000000),
  }
end

--- The activation code of an eSIM (GET /sim_cards/{id}/activation_code).
function fixtures.activation_code(id)
  return "LPA:1$rsp.telnyx.example$" .. id:gsub("%-", ""):upper()
end

-- Devices SIM cards are seen in (SIMCardDeviceDetails without imei).
fixtures.DEVICES = {
  { brand_name = "Apple", device_type = "Tablet", model_name = "iPad Pro 11 2020 Cellular",
    operating_system = "iOS 12" },
  { brand_name = "Samsung", device_type = "Smartphone", model_name = "Galaxy S21 5G", operating_system = "Android 11" },
  { brand_name = "Quectel", device_type = "Module", model_name = "EC25-E", operating_system = "Linux" },
  { brand_name = "Teltonika", device_type = "Router", model_name = "RUT240", operating_system = "RutOS" },
}

--- SIMCardDeviceDetails of SIM card number n.
function fixtures.device_details(n)
  local d = fixtures.DEVICES[(n - 1) % #fixtures.DEVICES + 1]
  return {
    record_type = "device_details",
    brand_name = d.brand_name,
    device_type = d.device_type,
    model_name = d.model_name,
    operating_system = d.operating_system,
    imei = string.format("4570322%08d", n % 100000000),
  }
end

-- How many wireless connectivity logs every SIM card has (more than one
-- default page of 20, so paging shows).
fixtures.CONNECTIVITY_LOGS_PER_CARD = 25

--- Wireless connectivity log i (1-based) of SIM card `card` (a SIM card
-- table with id and imsi), numbered n; t0: the card's creation time (s).
function fixtures.connectivity_log(card, n, i, t0)
  local start = t0 - (fixtures.CONNECTIVITY_LOGS_PER_CARD - i + 1) * 600
  return {
    record_type = "wireless_connectivity_log",
    id = n * 1000 + i,
    sim_card_id = card.id,
    imsi = card.imsi,
    imei = fixtures.device_details(n).imei,
    log_type = (i % 2 == 1) and "registration" or "data",
    apn = "data00.telnyx",
    cell_id = string.format("311210-%d", 6800 + i),
    mobile_country_code = "310",
    mobile_network_code = "410",
    radio_access_technology = "LTE",
    ipv4 = string.format("100.64.%d.%d", n % 256, i),
    ipv6 = string.format("2001:db8::%x:%x", n % 65536, i),
    state = "provisioned",
    start_time = fixtures.iso8601(start),
    stop_time = fixtures.iso8601(start + 300),
    last_seen = fixtures.iso8601(start + 300),
    created_at = fixtures.iso8601(start),
  }
end

-- Regions per product (GET /wireless/regions?product=...).
local REGION_STAMP = "2023-06-01T12:00:00.000Z"
local function region(code, name)
  return { code = code, name = name, inserted_at = REGION_STAMP, updated_at = REGION_STAMP }
end
fixtures.WIRELESS_REGIONS = {
  public_ips = {
    region("dc2", "Washington DC, US"),
    region("sv1", "Silicon Valley, US"),
    region("ams1", "Amsterdam, NL"),
  },
  private_wireless_gateways = {
    region("dc2", "Washington DC, US"),
    region("ams1", "Amsterdam, NL"),
  },
}

-- Mobile network operators (GET /mobile_network_operators): a fixed list.
local function mno(i, name, country_code, mcc, mnc, tadig, prefs)
  return {
    record_type = "mobile_network_operator",
    id = string.format("5b0c3ad8-8b0e-4f7a-9c1d-%012x", i),
    name = name, country_code = country_code, mcc = mcc, mnc = mnc, tadig = tadig,
    network_preferences_enabled = prefs,
  }
end
fixtures.MOBILE_NETWORK_OPERATORS = {
  mno(1, "AT&T Mobility (USACG)", "US", "310", "410", "USACG", true),
  mno(2, "T-Mobile USA (USAW6)", "US", "310", "260", "USAW6", true),
  mno(3, "Verizon Wireless (USAVZ)", "US", "311", "480", "USAVZ", false),
  mno(4, "Rogers Wireless (CANRW)", "CA", "302", "720", "CANRW", true),
  mno(5, "Telcel (MEXTL)", "MX", "334", "020", "MEXTL", false),
  mno(6, "Vodafone UK (GBRVF)", "GB", "234", "15", "GBRVF", true),
  mno(7, "EE (GBRME)", "GB", "234", "30", "GBRME", true),
  mno(8, "O2 UK (GBRCN)", "GB", "234", "10", "GBRCN", false),
  mno(9, "Telekom Deutschland (DEUD1)", "DE", "262", "01", "DEUD1", true),
  mno(10, "Vodafone Germany (DEUD2)", "DE", "262", "02", "DEUD2", true),
  mno(11, "Orange France (FRAF1)", "FR", "208", "01", "FRAF1", true),
  mno(12, "SFR (FRAF2)", "FR", "208", "10", "FRAF2", false),
  mno(13, "MEO (PRTTM)", "PT", "268", "06", "PRTTM", true),
  mno(14, "Vodafone Portugal (PRTTL)", "PT", "268", "01", "PRTTL", true),
  mno(15, "Telstra (AUSTA)", "AU", "505", "01", "AUSTA", false),
}

-- SIM card orders: prices and the address every address_id resolves to.
fixtures.ORDER_PRICES = { currency = "USD", per_sim_card = 1.50, shipping = 4.00 }
fixtures.ORDER_ADDRESS = {
  business_name = "Telnyx LLC", first_name = "John", last_name = "Smith",
  street_address = "600 Congress Avenue", extended_address = "14th Floor",
  locality = "Austin", administrative_area = "TX", postal_code = "78701", country_code = "US",
}

return fixtures
