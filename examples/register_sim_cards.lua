-- Registers physical SIM cards by their registration codes and prints the
-- cards registered and the codes refused (one 202 can hold both).
--   TELNYX_API_KEY=... lua5.4 examples/register_sim_cards.lua CODE [CODE ...]
local sim = require "telnyx.sim"
local print_table = require "examples.print_table"

local codes = {}
for i = 1, (arg and #arg or 0) do codes[i] = arg[i] end
if #codes == 0 then codes = { "0000000001", "0000000002", "9990000003" } end

local client, err = sim.new{ timeout = 30 }
if not client then
  io.stderr:write(tostring(err), "\n")
  os.exit(2)
end

local res
res, err = client:register_sim_cards{ registration_codes = codes, tags = { "demo" } }
if not res then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

print(("Registered %d of %d SIM card(s):"):format(#res.data, #codes))
print_table.sim_cards(res.data)
print_table.errors(res.errors)
client:close()
