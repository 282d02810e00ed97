-- telnyx.sim.flow: the helpers built from single calls, shared by the C client and telnyx.sim.resty's.
-- They use only the client's call, request, batch, sleep and clock (and resty's phase check), so they
-- keep every rule of a single call, and wait and tell time the client's way (ngx.sleep in OpenResty).
--
--   for card, err in client:each("list_sim_cards", { filter = { tags = { "fleet" } } }) do
--     if not card then error(tostring(err)) end   -- a failed page: never a silent end
--     print(card.iccid)
--   end
--   local action, err = client:wait_for_action(res.data, { timeout = 60, interval = 2 })

local flow = {}

local DEFAULT_PAGE_SIZE = 250 -- the API's maximum: fewest round trips
local DEFAULT_WAIT_TIMEOUT = 60
local DEFAULT_WAIT_INTERVAL = 1

local function sim() return require "telnyx.sim" end -- not at load: telnyx.sim loads this file

local function fail(kind, message, fields)
  fields = fields or {}
  fields.retryable = false
  return sim().error(kind, message, fields)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- nil, or the err for a name that is no paged list operation (describe's words, under `who`).
local function not_paged(who, name)
  local d, err = sim().describe(name)
  if not d then return fail("invalid_params", (err.message:gsub("^describe:", who .. ":")), { field = "name" }) end
  if d.paged then return nil end -- sim.describe's word: a list that takes a page
  return fail("invalid_params", who .. ": '" .. name .. "' is not a paged list operation (it takes no page)",
    { field = "name" })
end

-- nil, or the err of a client that cannot run helper `name` where it is (resty's in nginx's log phase,
-- say): asked once, so that the err names the helper, not a call it would make.
local function phase_problem(client, name)
  local check = type(client) == "table" and client._check_phase
  return check and check(client, name) or nil
end

--- client:each(name, params [, opts]) -> iterator over every item of every page.
-- Each step gives `item`, or `false, err` once when a page could not be had
-- (bad params included), after which the loop ends.
function flow.each(client, name, params, opts)
  local failed = phase_problem(client, "each") or not_paged("each", name)
  if not failed and params ~= nil and type(params) ~= "table" then
    failed = fail("invalid_params", "each: params must be a table (got " .. type(params) .. ")", { field = "params" })
  end
  local p = copy(type(params) == "table" and params or {})
  if not failed and p.page ~= nil and type(p.page) ~= "table" then
    failed = fail("invalid_params", "each: 'page' must be a table such as { size = 100 } (got " .. type(p.page) .. ")",
      { field = "page" })
  end
  local page = copy(type(p.page) == "table" and p.page or {})
  page.number = page.number or 1
  page.size = page.size or DEFAULT_PAGE_SIZE
  p.page = page
  local items, i, last = {}, 0, false
  return function()
    if failed then
      local err = failed
      failed, last = nil, true
      return false, err
    end
    i = i + 1
    if items[i] ~= nil then return items[i] end
    if last then return nil end
    local res, err = client:call(name, p, opts)
    if not res then
      last = true
      return false, err
    end
    items, i = res.data, 1
    local total = type(res.meta) == "table" and tonumber(res.meta.total_pages)
    last = #items == 0 or (total ~= nil and page.number >= total)
    page.number = page.number + 1
    return items[1]
  end
end

-- The status word of a SIM card action ({value =}) or a group action (a string).
local function status_of(action)
  local s = action.status
  if type(s) == "table" then s = s.value end
  return s
end

local function number_opt(opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v <= 0 or v > 86400 then
    return nil, fail("invalid_params", "wait_for_action: option 'opts." .. key .. "' must be a number of seconds "
      .. "from 0 to 86400, not 0 (got " .. tostring(v) .. ")", { field = "opts." .. key })
  end
  return v
end

local WAIT_OPTS = { timeout = true, interval = true, group = true }

-- What polls each kind of action (record_type).
local POLL = { sim_card_action = "get_sim_card_action", sim_card_group_action = "get_sim_card_group_action" }

-- Why a table with this record_type is no action to wait for, and what to do instead.
local NOT_AN_ACTION = {
  sim_card = "a SIM card, not an action: pass what enable_sim_card, disable_sim_card, set_sim_card_standby, "
    .. "set_sim_card_public_ip or remove_sim_card_public_ip returned (its data is the action)",
  bulk_sim_card_action = "a bulk SIM card action, which has no status of its own: follow its SIM card actions "
    .. "with client:each(\"list_sim_card_actions\", { filter = { bulk_sim_card_action_id = id } }), "
    .. "or wait for each of them",
}

-- The action's id, the operation that polls it and the table given (if any) | nil, err.
local function action_of(action, group)
  if type(action) == "table" and type(action.data) == "table" then action = action.data end -- a whole res
  if type(action) == "string" and action ~= "" then
    return action, group and "get_sim_card_group_action" or "get_sim_card_action", nil
  end
  local rt = type(action) == "table" and action.record_type
  local why = type(action) ~= "table" and "got " .. type(action)
    or action[1] ~= nil and "got a list; wait for its actions one at a time"
    or NOT_AN_ACTION[rt] and "got " .. NOT_AN_ACTION[rt]
    or rt ~= nil and not POLL[rt] and "got a table whose record_type is '" .. tostring(rt) .. "'"
    or type(action.id) ~= "string" and "got a table without a string id"
  if why then
    return nil, fail("invalid_params", "wait_for_action: needs a SIM card action or a SIM card group action "
      .. "(its table, its result or its id); " .. why, { field = "action" })
  end
  return action.id, POLL[rt] or (group and "get_sim_card_group_action" or "get_sim_card_action"), action
end

--- client:wait_for_action(action_or_id [, { timeout =, interval =, group = }])
-- -> the action once it is no longer "in-progress" | nil, err. A SIM card group action is followed when
-- the table says so (record_type) or with group = true. `timeout` is wall time on the client's monotonic
-- clock, polls included (each poll's own timeout is cut to what is left; a client with an injected sleep
-- counts the seconds it was asked to sleep). On timeout err.kind is "timeout", err.action the last state.
function flow.wait_for_action(client, action, opts)
  local perr = phase_problem(client, "wait_for_action")
  if perr then return nil, perr end
  opts = opts or {}
  if type(opts) ~= "table" then
    return nil, fail("invalid_params", "wait_for_action: options must be a table", { field = "opts" })
  end
  for k in pairs(opts) do
    if not WAIT_OPTS[k] then
      return nil, fail("invalid_params", "wait_for_action: unknown option 'opts." .. tostring(k)
        .. "' (known options: group, interval, timeout)", { field = "opts." .. tostring(k) })
    end
  end
  local timeout, terr = number_opt(opts, "timeout", DEFAULT_WAIT_TIMEOUT)
  local interval, ierr = number_opt(opts, "interval", DEFAULT_WAIT_INTERVAL)
  if not (timeout and interval) then return nil, terr or ierr end
  local id, get, last = action_of(action, opts.group)
  if not id then return nil, get end
  local req, err = client:request(get, { id = id }) -- the poll's own timeout, to cut to what is left
  if not req then return nil, err end
  local start, slept = client:clock(), 0
  local function left() return timeout - math.max(client:clock() - start, slept) end
  local function timed_out()
    return nil, fail("timeout", string.format("wait_for_action: action %s still %s after %gs", id,
      tostring(status_of(last)), timeout), { action = last })
  end
  while true do
    if last and status_of(last) ~= nil and status_of(last) ~= "in-progress" then return last end
    if last then
      if left() <= 0 then return timed_out() end
      local step = math.min(interval, left())
      client:sleep(step)
      slept = slept + step
      if left() <= 0 then return timed_out() end
    end
    local res
    res, err = client:call(get, { id = id }, { timeout = math.max(math.min(req.timeout, left()), 0.001) })
    if not res then
      if last and err.kind == "timeout" and left() <= 0 then return timed_out() end
      return nil, err
    end
    last = res.data
  end
end

local CALL_OPTS = { timeout = true, max_retries = true, headers = true }

local function refuse_cards(why, index)
  return nil, fail("invalid_params", "get_activation_codes: needs SIM cards or their ids (a list of them, one "
    .. "of them, a result such as purchase_esims', or an each iterator); " .. why,
    { field = index and "cards[" .. index .. "]" or "cards", index = index })
end

-- The list of cards or ids in what the caller passed | nil, err (before any request).
local function cards_of(x)
  if type(x) == "function" then -- client:each("list_sim_cards", ...): every card it gives
    local list = {}
    for card, err in x do
      if not card then return nil, err end
      list[#list + 1] = card
    end
    return list
  end
  if type(x) == "string" and x ~= "" then return { x } end
  if type(x) ~= "table" then return refuse_cards("got " .. type(x)) end
  if type(x.data) == "table" then x = x.data end -- a result
  if type(x.id) == "string" then return { x } end -- one card
  local n = 0
  for _ in pairs(x) do n = n + 1 end
  if n ~= #x then return refuse_cards("got a table that is not a list") end
  for i = 1, n do
    local v = x[i]
    if not (type(v) == "string" and v ~= "" or type(v) == "table" and type(v.id) == "string") then
      return refuse_cards("[" .. i .. "] is " .. (type(v) == "table" and "a table without a string id"
        or "a " .. type(v)), i)
    end
  end
  return x
end

--- client:get_activation_codes(cards_or_ids [, opts]) -> results | nil, err
-- The activation codes of many eSIMs at once, on client:batch (one GET each: the API has no bulk form).
-- cards_or_ids: a list of SIM card tables (physical ones are skipped) or ids, one of them, a result
-- (purchase_esims') or an each iterator; anything else is refused before any request. opts: concurrency,
-- progress (as batch's, indices into cards_or_ids), and timeout, max_retries, headers for every call.
-- results[i] = { id =, activation_code = } | { id =, err = } | { id =, skipped = "physical" };
-- results.ok and results.failed count the calls made.
function flow.get_activation_codes(client, cards, opts)
  local err = phase_problem(client, "get_activation_codes")
  if err then return nil, err end
  cards, err = cards_of(cards)
  if not cards then return nil, err end
  opts = opts or {}
  if type(opts) ~= "table" then
    return nil, fail("invalid_params", "get_activation_codes: options must be a table", { field = "opts" })
  end
  local call_opts, batch_opts = nil, { concurrency = opts.concurrency }
  for k, v in pairs(opts) do
    if CALL_OPTS[k] then call_opts = call_opts or {}; call_opts[k] = v
    elseif k ~= "concurrency" and k ~= "progress" then
      return nil, fail("invalid_params", "get_activation_codes: unknown option 'opts." .. tostring(k) .. "'",
        { field = "opts." .. tostring(k) })
    end
  end
  local results, calls, where = {}, {}, {}
  for i = 1, #cards do
    local card = cards[i]
    local id = type(card) == "table" and card.id or card
    if type(card) == "table" and card.type == "physical" then
      results[i] = { id = id, skipped = "physical" }
    else
      calls[#calls + 1] = { "get_sim_card_activation_code", id, call_opts }
      where[#calls] = i
    end
  end
  local progress = opts.progress -- anything but a function: batch refuses it, naming opts.progress
  batch_opts.progress = type(progress) == "function"
    and function(done, total, j, res, e) return progress(done, total, where[j], res, e) end or progress
  local done
  done, err = client:batch(calls, batch_opts)
  if not done then
    if err.index then err.index = where[err.index] end
    return nil, err
  end
  for j, r in ipairs(done) do -- r is { res = } or { err = }
    local data = r.res and r.res.data
    results[where[j]] = { id = calls[j][2], err = r.err,
      activation_code = r.res and (type(data) == "table" and data.activation_code) }
  end
  return flow.results(results, done.ok, done.failed)
end

--- flow.results(list, ok, failed) -> list: a batch's results (client:batch's, get_activation_codes').
-- results.ok and .failed come through the metatable, so that sim.encode gives a JSON array of the items
-- (named fields in the list would make it an object with "1", "2", ... keys). The C client's does the same.
function flow.results(list, ok, failed)
  return setmetatable(list, { __name = "telnyx.sim.results", __index = { ok = ok, failed = failed } })
end

flow.methods = { "each", "wait_for_action", "get_activation_codes" }

return flow
