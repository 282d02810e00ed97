-- Buys eSIMs and prints them.
--   TELNYX_API_KEY=... lua5.4 examples/purchase_esims.lua [amount]
-- With TELNYX_BASE_URL unset this talks to the real API and spends money.
local sim = require "telnyx.sim"
local print_table = require "examples.print_table"

local amount = tonumber(arg and arg[1]) or 3

local client, err = sim.new{ timeout = 30 }
if not client then
  io.stderr:write(tostring(err), "\n")
  os.exit(2)
end

local res
res, err = client:purchase_esims{ amount = amount, tags = { "demo" }, status = "standby" }
if not res then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

print(("Purchased %d eSIM(s):"):format(#res.data))
print_table.sim_cards(res.data)
print_table.errors(res.errors)
client:close()
