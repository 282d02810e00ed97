-- The Lua side of the nginx (2 workers) that spec/openresty_shared_pause_spec.lua starts:
-- calls and batches run in the worker the spec asks for, their sends timed on nginx's clock.
--
-- GET /who -> { worker = ngx.worker.id(), pid = ngx.worker.pid() }
-- POST /flush -> the pause dict emptied
-- POST /run { want = worker id, client = {...resty.new options}, calls = [{ op, params, opts }] | batch = { calls, opts },
--             close_after = seconds (client:close() then, from a light thread) }
--   -> { wrong_worker = true, worker = } when this connection landed in the other worker (nothing sent: ask again)
--   -> { worker =, pid =, started =, finished =, sends = [{ path, method, sent, answered, status }],
--        results = [{ res =, err = }] (batch: { results =, ok =, failed = }) }
-- POST /new { client = {...} } -> { ok = true } | { err = }
-- Times are ngx.now() (wall clock, refreshed): comparable across the workers.
local cjson = require "cjson.safe"
local resty = require "telnyx.sim.resty"
local app = require "spec.support.openresty_app"

local pause_app = {}

local function now()
  ngx.update_time()
  return ngx.now()
end

local function body()
  ngx.req.read_body()
  return cjson.decode(ngx.req.get_body_data() or "") or {}
end

local function encode_err(err)
  if not err then return nil end
  return { kind = err.kind, status = err.status, message = err.message, retryable = err.retryable,
    attempts = err.attempts, pause = err.pause, sent = err.sent, field = err.field, string = tostring(err) }
end

-- app.cosocket_transport (plain http, Connection: close), each send logged with its times.
-- "localhost" connects to 127.0.0.1 (no resolver here): another origin for the same fake.
local function recording(log)
  return function(req)
    local entry = { path = req.url:match("^%a+://[^/]+([^?]*)"), method = req.method, sent = now() }
    log[#log + 1] = entry
    req.url = req.url:gsub("^http://localhost:", "http://127.0.0.1:")
    local status, headers, b = app.cosocket_transport(req)
    entry.answered, entry.status = now(), status or (headers and headers.failure)
    return status, headers, b
  end
end

function pause_app.who()
  return app.answer({ worker = ngx.worker.id(), pid = ngx.worker.pid() })
end

function pause_app.flush()
  ngx.shared.telnyx_pause:flush_all()
  return app.answer({ flushed = true })
end

function pause_app.new()
  local spec = body()
  spec.client.transport = app.cosocket_transport -- (no lua-resty-http needed here)
  local client, err = resty.new(spec.client)
  if client then client:close() end
  return app.answer({ ok = client ~= nil, err = encode_err(err) })
end

function pause_app.run()
  local spec = body()
  if spec.want and spec.want ~= ngx.worker.id() then
    return app.answer({ wrong_worker = true, worker = ngx.worker.id() })
  end
  local out = { worker = ngx.worker.id(), pid = ngx.worker.pid(), sends = {} }
  local options = {}
  for k, v in pairs(spec.client or {}) do options[k] = v end
  options.transport = recording(out.sends)
  local client, err = resty.new(options)
  if not client then return app.answer({ err = encode_err(err) }) end
  out.started = now()
  if spec.close_after then -- the client closed from a light thread while the calls wait
    ngx.thread.spawn(function()
      ngx.sleep(spec.close_after)
      out.closed = now()
      client:close()
    end)
  end
  if spec.batch then
    local results, berr = client:batch(spec.batch.calls, spec.batch.opts)
    if not results then
      out.err = encode_err(berr)
    else
      out.ok, out.failed, out.results = results.ok, results.failed, {}
      for i = 1, #results do out.results[i] = { res = results[i].res, err = encode_err(results[i].err) } end
    end
  else
    out.results = {}
    for i, c in ipairs(spec.calls or {}) do
      local res, cerr = client:call(c[1], c[2], c[3])
      out.results[i] = { res = res, err = encode_err(cerr) }
    end
  end
  out.finished = now()
  if not out.closed then client:close() end
  return app.answer(out)
end

return pause_app
