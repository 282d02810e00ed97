-- JSON for the fake (telnyx.sim.fake): lua-cjson as Debian ships it (2.1.0),
-- which cannot tell [] from {} and decodes numbers as floats on Lua 5.3+.
-- Empty arrays travel as a placeholder string, EMPTY_ARRAY, substituted in
-- the encoded text; integers print through integer_text.

local cjson = require("cjson").new()

local M = { null = cjson.null }

local EMPTY_ARRAY = "\1__fake_empty_array__\1"
local EMPTY_ARRAY_JSON = '"\\u0001__fake_empty_array__\\u0001"'

local EMPTY_ARRAY_PATTERN = EMPTY_ARRAY_JSON:gsub("%p", "%%%0")

-- cjson escapes "/" as "\/"; undo that so bodies look like the real API's.
-- (A backslash directly before "/" in cjson output is always that escape.)
local function json_encode(value)
  local s = cjson.encode(value)
  s = s:gsub(EMPTY_ARRAY_PATTERN, "[]")
  return (s:gsub("\\/", "/"))
end

-- Replace every empty array "[ ]" outside strings with the placeholder, so
-- that decoding and re-encoding scripted JSON keeps "[]" intact.
local function mark_empty_arrays(text)
  local out, n, i, len = {}, 0, 1, #text
  local start = 1
  while i <= len do
    local c = text:sub(i, i)
    if c == '"' then
      i = i + 1
      while i <= len do
        local d = text:sub(i, i)
        if d == "\\" then i = i + 2
        elseif d == '"' then break
        else i = i + 1 end
      end
      i = i + 1
    elseif c == "[" then
      local j = text:find("[^ \t\r\n]", i + 1)
      if j and text:sub(j, j) == "]" then
        n = n + 1; out[n] = text:sub(start, i - 1)
        n = n + 1; out[n] = '"\\u0001__fake_empty_array__\\u0001"'
        start = j + 1
        i = j + 1
      else
        i = i + 1
      end
    else
      i = i + 1
    end
  end
  n = n + 1; out[n] = text:sub(start)
  return table.concat(out)
end

local function json_decode(text, keep_empty_arrays)
  if keep_empty_arrays then text = mark_empty_arrays(text) end
  local ok, value = pcall(cjson.decode, text)
  if ok then return value end
  return nil, value
end

local function is_array(t)
  if type(t) ~= "table" then return false end
  if t == EMPTY_ARRAY then return true end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

local function array_or_empty(t)
  if t == nil or t == EMPTY_ARRAY or (type(t) == "table" and next(t) == nil) then
    return EMPTY_ARRAY
  end
  return t
end

-- A decoded number as an integer's digits when it is one (1.0 -> "1"), else
-- as Lua writes it (1e999, decoded as inf, has no integer form).
local function fmt_int(v)
  if type(v) == "number" and v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then
    return string.format("%d", v)
  end
  return tostring(v)
end

M.EMPTY_ARRAY = EMPTY_ARRAY
M.encode = json_encode
M.decode = json_decode
M.is_array = is_array
M.array_or_empty = array_or_empty
M.integer_text = fmt_int

return M
