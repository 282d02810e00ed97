-- A pre-fork worker's life, run by spec/support/forklua (see forklua.c) for
-- spec/reliability_spec.lua:
--
--   forklua fork_scenario.lua BASE_URL OUT KEY CA_FILE CHILD BATCH CONCURRENT
--
-- The process buys 1 eSIM (opening a kept-alive connection) and, when BATCH is
-- "1", runs a batch buying 5 and 6 (the batch's own connections); then it
-- forks. The child, when CHILD is "busy", buys 2 (and batches 7 and 8); when
-- "idle" it does nothing; either way it then ends, closing its Lua state (so
-- the client's __gc runs in the child too). The parent buys 3 (and batches 9
-- and 10): while the child works when CONCURRENT is "1", else after it ended;
-- then, after the child ended, buys 4.
--
-- Each process writes what it got to OUT.parent / OUT.child, one "name=value"
-- a line: the number of cards each purchase brought back, or "error: ...".
-- luacheck: globals proc
local sim = require "telnyx.sim"

local base_url, out, key, ca_file, child_mode, use_batch, concurrent = arg[1], arg[2], arg[3], arg[4], arg[5],
  arg[6] == "1", arg[7] == "1"

local client = assert(sim.new{ api_key = key, base_url = base_url, ca_file = ca_file ~= "" and ca_file or nil,
  max_retries = 0, timeout = 5 })

local lines = {}
local function note(name, value) lines[#lines + 1] = name .. "=" .. tostring(value) end
if use_batch and not client.batch then -- a build before client:batch: the rest still runs
  use_batch = false
  note("batch", "unavailable")
end

local function buy(name, n)
  local res, err = client:purchase_esims{ amount = n }
  note(name, res and #res.data or "error: " .. tostring(err))
end

local function batch(name, a, b)
  local results, err = client:batch({ { "purchase_esims", { amount = a } }, { "purchase_esims", { amount = b } } },
    { concurrency = 2 })
  if not results then return note(name, "error: " .. tostring(err)) end
  for i, r in ipairs(results) do
    note(name .. i, r.res and #r.res.data or "error: " .. tostring(r.err))
  end
end

local function report(who)
  local f = assert(io.open(out .. "." .. who, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end

buy("first", 1)
if use_batch then batch("first_batch", 5, 6) end
local pid = proc.fork()
if pid == 0 then
  lines = {}
  if child_mode == "busy" then
    buy("child", 2)
    if use_batch then batch("child_batch", 7, 8) end
  end
  report("child")
  return
end
local status
if not concurrent then status = proc.wait(pid) end
buy("second", 3)
if use_batch then batch("second_batch", 9, 10) end
if concurrent then status = proc.wait(pid) end
note("child_status", status)
buy("third", 4)
report("parent")
