-- The Lua side of the nginx that spec/openresty_spec.lua, spec/openresty_batch_spec.lua and
-- spec/openresty_cosocket_spec.lua start: handlers that run telnyx.sim.resty in each nginx
-- phase and answer JSON.
--
-- POST /call {op=, params=, opts=, client={...resty.new options, transport="custom" | blocking=true | keep=name}}
--   -> 200 {res=, err=, transport=}        (in content, rewrite or access: see the conf)
-- client.transport: "custom" is app.cosocket_transport (a minimal function); any other value goes to
-- resty.new as it is ("cosocket", "capture", or none: resty's default). client.keep = name: the
-- worker keeps that client between requests. client.close_after = true: client:close() once the call is done.
local cjson = require "cjson.safe"
local resty = require "telnyx.sim.resty"

local app = {}

local stored = {} -- results of calls made where no response can carry them

local function encode_err(err)
  if not err then return nil end
  local out = {}
  for k, v in pairs(err) do out[k] = v end
  out.string = tostring(err)
  return out
end

-- A minimal HTTP/1.1 client on ngx.socket.tcp, for the `transport` option
-- (plain http to the stub only; Connection: close; Content-Length bodies).
function app.cosocket_transport(req)
  local host, port, path = req.url:match("^http://([^:/]+):(%d+)(/.*)$")
  local sock = ngx.socket.tcp()
  sock:settimeout((req.timeout or 5) * 1000)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then
    return nil, { failure = err == "timeout" and "connect_timeout" or "not_sent", message = err }
  end
  local lines = { req.method .. " " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port,
    "Connection: close", "Content-Length: " .. #(req.body or "") }
  for name, value in pairs(req.headers) do lines[#lines + 1] = name .. ": " .. value end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (req.body or ""))
  if not ok then sock:close(); return nil, { failure = "broken", message = err } end
  local line
  line, err = sock:receive("*l")
  local status = line and tonumber(line:match("^HTTP/%d%.%d (%d+)"))
  if not status then
    sock:close()
    return nil, { failure = err == "timeout" and "timeout" or "broken", message = err or "bad status line" }
  end
  local headers = {}
  while true do
    line, err = sock:receive("*l")
    if not line then sock:close(); return nil, { failure = "broken", message = err } end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body
  body, err = sock:receive(tonumber(headers["content-length"]) or "*a")
  sock:close()
  if not body then return nil, { failure = err == "timeout" and "timeout" or "broken", message = err } end
  return status, headers, body
end

local kept = {} -- clients kept between requests (client.keep)

-- client.blocking = true: the C module's own libcurl client instead (the
-- negative control of the non-blocking spec).
local function client_for(spec)
  local options = {}
  for k, v in pairs(spec or {}) do options[k] = v end
  local keep = options.keep
  options.keep, options.close_after = nil, nil
  if keep and kept[keep] then return kept[keep] end
  if options.blocking then
    options.blocking = nil
    return require("telnyx.sim").new(options)
  end
  if options.transport == "custom" then options.transport = app.cosocket_transport end
  if options.transport == nil and options.location == nil then options.transport = app.transport end
  local client, err = resty.new(options)
  if keep then kept[keep] = client end
  return client, err
end

-- op = "flow": the helpers every client shares, through resty: client:call,
-- client:each over the tagged cards two per page, an enable waited for.
local function flow_run(client, tag)
  local out = { listed = {} }
  local res, err = client:call("purchase_esims", { amount = 3, tags = { tag }, status = "standby" })
  if not res then return { err = encode_err(err), step = "purchase" } end
  out.bought = #res.data
  for card, e in client:each("list_sim_cards", { filter = { tags = { tag } }, page = { size = 2 } }) do
    if not card then return { err = encode_err(e), step = "each" } end
    out.listed[#out.listed + 1] = card.id
  end
  local id = res.data[1].id
  local action
  action, err = client:enable_sim_card(id)
  if not action then return { err = encode_err(err), step = "enable" } end
  action, err = client:wait_for_action(action, { timeout = 10, interval = 0.05 })
  if not action then return { err = encode_err(err), step = "wait" } end
  out.action_status = action.status.value
  res, err = client:get_sim_card(id)
  if not res then return { err = encode_err(err), step = "get" } end
  out.card_status = res.data.status.value
  return { res = out }
end

local function now()
  ngx.update_time()
  return ngx.now()
end

-- op = "steps": params.steps = [{ op =, params =, opts =, sleep = seconds before it }], every step
-- on the same client -> { steps = [{ res =, err =, at = }] }
local function steps_run(client, steps)
  local out, t0 = {}, now()
  for i, step in ipairs(steps) do
    if step.sleep then ngx.sleep(step.sleep) end
    local res, err = client[step.op](client, step.params, step.opts)
    out[i] = { res = res, err = encode_err(err), at = now() - t0 }
  end
  return { steps = out }
end

-- op = "new": what resty.new gives for call.client -> { transport =, string =, err = } | { raised = }
local function new_run(options)
  local fine, client, err = pcall(resty.new, options)
  if not fine then return { raised = tostring(client) } end
  if not client then return { err = encode_err(err) } end
  return { transport = client.transport_kind, string = tostring(client) }
end

local function run(call)
  if call.op == "new" then return new_run(call.client) end
  local client, err = client_for(call.client)
  if not client then return { err = encode_err(err) } end
  local out
  if call.op == "flow" then
    out = flow_run(client, call.params.tag)
  elseif call.op == "steps" then
    out = steps_run(client, call.params.steps)
  else
    local t0 = now()
    local res
    res, err = client[call.op](client, call.params, call.opts)
    out = { res = res, err = encode_err(err), elapsed = now() - t0 }
  end
  out.transport = client.transport_kind
  if call.client and call.client.close_after then client:close() end
  return out
end

-- Answers with a Content-Length (spec/support/helpers.lua reads no chunked bodies).
local function answer(result, text)
  text = text or (cjson.encode(result) .. "\n")
  ngx.header["Content-Type"] = result and "application/json" or "text/plain"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  return ngx.exit(200)
end
app.answer = answer

--- content_by_lua, rewrite_by_lua, access_by_lua: POST /call
function app.call()
  ngx.req.read_body()
  local call = cjson.decode(ngx.req.get_body_data() or "")
  if type(call) ~= "table" then return answer({ bad_request = true }) end
  return answer(run(call))
end

-- A client as the phases below make it: the message (not a table nginx cannot print) when refused.
local function new_client(api_key)
  local client, err = resty.new{ api_key = api_key, transport = app.transport }
  if not client then error(tostring(err), 2) end
  return client
end

--- init_by_lua: creating a client works; calling it must say the phase. transport: every
-- client's when the call does not say (nil: resty's default), kept for the workers.
function app.init(api_key, transport)
  app.transport = transport
  local client = new_client(api_key)
  local _, err = client:purchase_esims{ amount = 1 }
  stored.init = { err = encode_err(err), transport = client.transport_kind }
end

--- init_worker_by_lua: the same, stored as "init_worker".
function app.init_worker(api_key)
  local client = new_client(api_key)
  local _, err = client:purchase_esims{ amount = 1 }
  stored.init_worker = { err = encode_err(err), transport = client.transport_kind }
end

--- set_by_lua $result: returns the err as JSON.
function app.in_set(api_key)
  local client = new_client(api_key)
  local _, err = client:register_sim_cards{ registration_codes = { "1" } }
  return cjson.encode({ err = encode_err(err) })
end

-- The errs of the helpers shared with the C client (telnyx/sim/flow.lua) where `client` cannot run.
local function helper_errs(client)
  local out = {}
  local _, err = client:get_activation_codes{ "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0" }
  out.get_activation_codes = encode_err(err)
  _, err = client:wait_for_action("a1b2c3d4-0000-4000-8000-00000000000a")
  out.wait_for_action = encode_err(err)
  _, err = client:each("list_sim_cards")()
  out.each = encode_err(err)
  return out
end

--- header_filter_by_lua / body_filter_by_lua / log_by_lua: store the err under `name`, and the
-- helpers' errs.
function app.in_filter(name, api_key)
  if stored[name] and name == "body_filter" then return end -- once per request is enough
  local client = new_client(api_key)
  local _, err = client:purchase_esims{ amount = 1 }
  stored[name] = { err = encode_err(err), transport = client.transport_kind, helpers = helper_errs(client) }
end

--- A timer runs the call (POST /timer, same body as /call); the handler waits for it.
function app.timer()
  ngx.req.read_body()
  local call = cjson.decode(ngx.req.get_body_data() or "")
  local box = {}
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    box.phase = ngx.get_phase()
    box.result = run(call)
  end)
  if not ok then return answer({ timer_error = err }) end
  for _ = 1, 500 do
    if box.result then break end
    ngx.sleep(0.01)
  end
  box.result = box.result or { timed_out = true }
  box.result.phase = box.phase
  return answer(box.result)
end

--- POST /thread: the same as /call, run in a light thread (ngx.thread.spawn) the handler waits for.
function app.thread()
  ngx.req.read_body()
  local call = cjson.decode(ngx.req.get_body_data() or "")
  local box = {}
  local t, err = ngx.thread.spawn(function()
    box.phase = ngx.get_phase()
    box.result = run(call)
  end)
  if not t then return answer({ thread_error = err }) end
  local ok, werr = ngx.thread.wait(t)
  box.result = box.result or { thread_failed = tostring(werr), ok = ok }
  box.result.phase = box.phase
  box.result.in_thread = true
  return answer(box.result)
end

--- GET /stored?name=init|init_worker|header_filter|body_filter|log
function app.stored()
  return answer(stored[ngx.var.arg_name] or { missing = true })
end

---------------------------------------------------------------------------
-- Batches (spec/openresty_batch_spec.lua)
---------------------------------------------------------------------------

local RAISED = { "raised by progress" } -- the error value a progress function raises

-- spec = { calls =, opts =, client = {...}, helper = "get_activation_codes" (default "batch"),
--          cards = (for the helper), progress = true | { raise = done } | { close = done } | { sleep = s },
--          after = seconds to wait before answering (anything still running shows in the stub) }
-- -> { results = [...], ok =, failed =, elapsed =, progress = [{done, total, index, ok, kind, at}] }
--    | { err = } | { raised =, raised_same = }
local function batch_run(spec)
  local client, err = client_for(spec.client)
  if not client then return { err = encode_err(err) } end
  local out, opts, t0 = { progress = {} }, nil, now()
  if spec.opts ~= nil then
    opts = {}
    for k, v in pairs(spec.opts) do opts[k] = v end
  end
  local p = spec.progress
  if p then
    opts = opts or {}
    opts.progress = function(done, total, index, res, e)
      out.progress[#out.progress + 1] = { done = done, total = total, index = index, ok = res ~= nil,
        kind = e and e.kind, at = now() - t0 }
      if type(p) == "table" and p.sleep then ngx.sleep(p.sleep) end -- the coordinating thread yields here
      if type(p) == "table" and p.close == done then client:close() end
      if type(p) == "table" and p.raise == done then error(RAISED) end
    end
  end
  local helper = spec.helper or "batch"
  local called, results, berr = pcall(client[helper], client, spec.helper and spec.cards or spec.calls, opts)
  out.elapsed = now() - t0
  if spec.after then ngx.sleep(spec.after) end
  if not called then
    out.raised, out.raised_same = tostring(results), results == RAISED
    return out
  end
  if not results then
    out.err = encode_err(berr)
    return out
  end
  -- what sim.encode makes of the results as they are (a JSON array; the counts in the metatable)
  local encoded, eerr = require("telnyx.sim").encode(results)
  out.encoded, out.encode_err = encoded, encode_err(eerr)
  out.ok, out.failed, out.results = results.ok, results.failed, {}
  for i = 1, #results do
    local r = {}
    for k, v in pairs(results[i]) do r[k] = v end
    r.err = encode_err(r.err)
    out.results[i] = r
  end
  return out
end

--- content_by_lua, rewrite_by_lua, access_by_lua: POST /batch (spec above as JSON)
function app.batch()
  ngx.req.read_body()
  local spec = cjson.decode(ngx.req.get_body_data() or "")
  if type(spec) ~= "table" then return answer({ bad_request = true }) end
  return answer(batch_run(spec))
end

--- POST /batch_timer: the same, run in a timer; the handler waits for it (up to 20 s).
function app.batch_timer()
  ngx.req.read_body()
  local spec = cjson.decode(ngx.req.get_body_data() or "")
  local box = {}
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    box.phase = ngx.get_phase()
    box.result = batch_run(spec)
  end)
  if not ok then return answer({ timer_error = err }) end
  for _ = 1, 2000 do
    if box.result then break end
    ngx.sleep(0.01)
  end
  box.result = box.result or { timed_out = true }
  box.result.phase = box.phase
  return answer(box.result)
end

return app
