-- A small fleet script: buys eSIMs into a new SIM card group, enables them,
-- and lists the group's enabled cards. The code under test in fleet_spec.lua,
-- which runs it against the fake Telnyx (telnyx.sim.fake) instead of the API.
-- It takes a client (telnyx.sim.new{...}), so the spec can point it at the fake.

local fleet = {}

-- Waits for each enable action; returns the count that completed, or nil, err.
local function wait_all(client, actions, wait)
  local done = 0
  for _, action in ipairs(actions) do
    local finished, err = client:wait_for_action(action, wait)
    if not finished then return nil, err end
    if finished.status.value == "completed" then done = done + 1 end
  end
  return done
end

--- Buys `count` eSIMs into a new group called `name`, enables them and waits
-- for the actions. Returns { group_id =, ids = {...}, enabled = n }, or
-- nil, err at the first failure.
function fleet.provision(client, count, name, wait)
  local group, err = client:create_sim_card_group{ name = name }
  if not group then return nil, err end
  local bought
  bought, err = client:purchase_esims{ amount = count, sim_card_group_id = group.data.id, status = "standby" }
  if not bought then return nil, err end
  local ids, actions = {}, {}
  for i, card in ipairs(bought.data) do
    ids[i] = card.id
    local action
    action, err = client:enable_sim_card(card.id)
    if not action then return nil, err end
    actions[i] = action
  end
  local enabled
  enabled, err = wait_all(client, actions, wait or { timeout = 120, interval = 1 })
  if not enabled then return nil, err end
  return { group_id = group.data.id, ids = ids, enabled = enabled }
end

--- The ids of the group's enabled SIM cards, every page. Returns a list, or nil, err.
function fleet.enabled_in(client, group_id)
  local ids = {}
  local params = { filter = { sim_card_group_id = group_id, status = { "enabled" } }, page = { size = 2 } }
  for card, err in client:each("list_sim_cards", params) do
    if not card then return nil, err end
    ids[#ids + 1] = card.id
  end
  return ids
end

return fleet
