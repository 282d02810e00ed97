-- Prints SIM cards and per-item errors as aligned text tables (used by the examples).
local M = {}

local function show(v)
  if v == nil then return "-" end
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = tostring(v[i]) end
    return table.concat(parts, ",")
  end
  return tostring(v)
end

--- Prints rows (arrays of strings) under headers, in aligned columns.
function M.rows(headers, rows)
  local widths = {}
  for i, h in ipairs(headers) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      if #cell > widths[i] then widths[i] = #cell end
    end
  end
  local function line(cells)
    local out = {}
    for i, cell in ipairs(cells) do out[i] = cell .. string.rep(" ", widths[i] - #cell) end
    print((("  " .. table.concat(out, "  ")):gsub("%s+$", "")))
  end
  line(headers)
  local rule = {}
  for i, w in ipairs(widths) do rule[i] = string.rep("-", w) end
  line(rule)
  for _, row in ipairs(rows) do line(row) end
end

function M.sim_cards(cards)
  local rows = {}
  for _, c in ipairs(cards) do
    rows[#rows + 1] = {
      show(c.id), show(c.type), show(c.iccid), show(c.imsi),
      show(c.status and c.status.value), show(c.tags), show(c.eid),
    }
  end
  print(("SIM cards (%d):"):format(#cards))
  M.rows({ "id", "type", "iccid", "imsi", "status", "tags", "eid" }, rows)
end

function M.errors(errors)
  if #errors == 0 then return end
  local rows = {}
  for _, e in ipairs(errors) do
    local meta = e.meta or {}
    rows[#rows + 1] = {
      show(meta.registration_code), show(e.code), show(e.title), show(e.detail),
      show(e.source and e.source.pointer),
    }
  end
  print(("Refused (%d):"):format(#errors))
  M.rows({ "registration_code", "code", "title", "detail", "pointer" }, rows)
end

return M
