-- An eSIM onboarding, start to end: buys 3 eSIMs, fetches their activation
-- codes, creates a SIM card group, moves the eSIMs into it, enables them and
-- waits for the actions, lists them by tag two per page, disables one,
-- deletes one, and shows what is left in the group.
--   TELNYX_API_KEY=... lua5.4 examples/esim_onboarding.lua
-- With TELNYX_BASE_URL unset this talks to the real API and spends money
-- (3 eSIMs); `make demo` runs it against the stub server instead.
local sim = require "telnyx.sim"
local print_table = require "examples.print_table"

local AMOUNT = 3
local PAGE_SIZE = 2
local WAIT = { timeout = 120, interval = 0.5 } -- seconds: give up after, poll every

-- A tag no other card has, so the listing finds exactly this run's eSIMs.
math.randomseed(os.time())
local TAG = ("onboarding-%s-%04d"):format(os.date("!%Y%m%d%H%M%S"), math.random(0, 9999))

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  os.exit(1)
end

-- Every call returns res, or nil, err: stop at the first failure.
local function check(what, res, err)
  if not res then fail(what, err) end
  return res
end

-- An action once it is no longer in progress; anything but "completed" stops the demo.
local function finished(what, action, err)
  check(what, action, err)
  local status = type(action.status) == "table" and action.status.value or action.status
  if status ~= "completed" then
    local reason = type(action.status) == "table" and action.status.reason or nil
    fail(what, ("action %s ended %s%s"):format(action.id, tostring(status), reason and (": " .. reason) or ""))
  end
  return action
end

-- Aligned columns for the records print_table has no printer for.
local function print_rows(title, headers, rows)
  print(title)
  print_table.rows(headers, rows)
end

local function show(v) return v == nil and "-" or tostring(v) end

local function print_actions(title, actions, iccid_of)
  local rows = {}
  for i, a in ipairs(actions) do
    rows[i] = { show(a.id), show(iccid_of[a.sim_card_id]), show(a.action_type), show(a.status and a.status.value) }
  end
  print_rows(title, { "action", "iccid", "type", "status" }, rows)
end

local client, err = sim.new{ timeout = 30 }
if not client then
  io.stderr:write(tostring(err), "\n")
  os.exit(2)
end

print(("Tag for this run: %s"):format(TAG))

-- 1. Buy the eSIMs, in standby until they are set up.
print()
local res = check("purchase_esims", client:purchase_esims{ amount = AMOUNT, tags = { TAG }, status = "standby" })
local cards = res.data
if #cards ~= AMOUNT then fail("purchase_esims", ("asked for %d eSIMs, got %d"):format(AMOUNT, #cards)) end
print(("1. Purchased %d eSIM(s):"):format(#cards))
print_table.sim_cards(cards)
print_table.errors(res.errors)

local iccid_of = {}
for _, card in ipairs(cards) do iccid_of[card.id] = card.iccid end

-- 2. Their activation codes (what a device scans to install the eSIM): one GET
-- each, all at once (client:batch underneath), with a progress line.
print()
local codes = check("get_activation_codes", client:get_activation_codes(cards, {
  progress = function(done, total) io.write(("\rfetching activation codes: %d/%d"):format(done, total)) end,
}))
io.write("\n")
local rows = {}
for i, card in ipairs(cards) do
  local code = codes[i]
  if code.err then fail("get_sim_card_activation_code " .. card.id, code.err) end
  rows[i] = { show(card.iccid), show(code.activation_code) }
end
print_rows("2. Activation codes:", { "iccid", "activation_code" }, rows)

-- 3. A group of their own.
print()
res = check("create_sim_card_group", client:create_sim_card_group{ name = "eSIM onboarding " .. TAG })
local group = res.data
print(("3. Created SIM card group %q: %s"):format(show(group.name), show(group.id)))

-- 4. Move them into it.
print()
local moved = {}
for i, card in ipairs(cards) do
  res = check("update_sim_card " .. card.id, client:update_sim_card{ id = card.id, sim_card_group_id = group.id })
  moved[i] = res.data
end
print(("4. Moved %d eSIM(s) into the group:"):format(#moved))
rows = {}
for i, card in ipairs(moved) do rows[i] = { show(card.iccid), show(card.sim_card_group_id) } end
print_rows("SIM cards (" .. #moved .. "):", { "iccid", "sim_card_group_id" }, rows)

-- 5. Enable them: each call answers 202 with an action, which completes later.
-- All three start at once; then wait for each.
print()
local actions = {}
for i, card in ipairs(cards) do
  res = check("enable_sim_card " .. card.id, client:enable_sim_card(card.id))
  actions[i] = res.data
end
print_actions(("5. Enabling %d eSIM(s), started:"):format(#actions), actions, iccid_of)
for i, action in ipairs(actions) do
  actions[i] = finished("wait_for_action (enable)", client:wait_for_action(action, WAIT))
end
print_actions("   ... and done:", actions, iccid_of)

-- 6. List them by tag, PAGE_SIZE per page. client:each fetches the pages with
-- client:call, one at a time as the loop needs them; to show where each page
-- starts, `lister` is the same client with its calls noted. In your code:
--   for card, err in client:each("list_sim_cards", params) do ... end
print()
local pages = {}
local lister = setmetatable({
  call = function(_, name, params, opts)
    local r, e = client:call(name, params, opts)
    pages[#pages + 1] = { number = params.page.number, size = params.page.size, meta = r and r.meta or {} }
    return r, e
  end,
  sleep = function(_, seconds) return client:sleep(seconds) end,
}, { __index = { each = client.each } })

print(("6. SIM cards tagged %s, %d per page:"):format(TAG, PAGE_SIZE))
local listed, page_cards, shown_pages = {}, {}, 0
local function flush_page()
  if #page_cards == 0 then return end
  local p = pages[shown_pages]
  print(("page %s of %s (request %d: page[number]=%d, page[size]=%d):"):format(
    show(p.meta.page_number), show(p.meta.total_pages), shown_pages, p.number, p.size))
  print_table.sim_cards(page_cards)
  page_cards = {}
end
for card, lerr in lister:each("list_sim_cards", { filter = { tags = { TAG } }, page = { size = PAGE_SIZE } }) do
  if not card then -- a failed page: never a silent end
    flush_page()
    fail("list_sim_cards, page " .. #pages, lerr)
  end
  if #pages ~= shown_pages then -- this card came with a new page
    flush_page()
    shown_pages = #pages
  end
  listed[#listed + 1] = card
  page_cards[#page_cards + 1] = card
end
flush_page()
print(("%d SIM card(s) in %d request(s) of page[size]=%d"):format(#listed, #pages, PAGE_SIZE))
if #listed ~= AMOUNT then
  fail("list_sim_cards", ("expected %d cards tagged %s, listed %d"):format(AMOUNT, TAG, #listed))
end

-- 7. Disable one, and wait.
print()
local disabled = cards[2]
res = check("disable_sim_card " .. disabled.id, client:disable_sim_card(disabled.id))
local action = finished("wait_for_action (disable)", client:wait_for_action(res.data, WAIT))
print_actions(("7. Disabled %s:"):format(show(disabled.iccid)), { action }, iccid_of)

-- 8. Delete one.
print()
local deleted = cards[3]
res = check("delete_sim_card " .. deleted.id, client:delete_sim_card(deleted.id))
print(("8. Deleted %s:"):format(show(deleted.iccid)))
print_table.sim_cards({ res.data })

-- 9. What the group holds now (every page, at the default page size).
print()
local left = {}
for card, lerr in client:each("list_sim_cards", { filter = { sim_card_group_id = group.id } }) do
  if not card then fail("list_sim_cards (group)", lerr) end
  left[#left + 1] = card
end
print(("9. SIM card group %q now holds:"):format(show(group.name)))
print_table.sim_cards(left)

client:close()
