-- tools/generate.lua: the files written from telnyx.sim's own operation table
-- (sim.operations and sim.describe), so they cannot drift from the C rows:
--   types/telnyx/sim.lua   the LuaLS (lua-language-server) definition file: the
--                          client's methods (one per operation) with a params class each, results,
--                          errors, options and the module functions
--   README.md              the operations table, between the markers
--                          <!-- operations:begin --> and <!-- operations:end -->
--
--   lua5.4 tools/generate.lua [--root DIR]           writes both (only those that changed)
--   lua5.4 tools/generate.lua --check [--root DIR]   writes nothing; exit 1 naming each stale file
--
-- It needs the built module on package.cpath (`make generate` builds it and sets
-- the paths). The output depends only on the module, never on the Lua running
-- it, and the file runs on Lua 5.1 to 5.4 and LuaJIT: spec/generated_spec.lua
-- loads it as a library (require "tools.generate") under every Lua of the suite.

local M = {}

M.TYPES_FILE = "types/telnyx/sim.lua"
M.README_FILE = "README.md"
M.BEGIN = "<!-- operations:begin -->"
M.END = "<!-- operations:end -->"

local NULL_TYPE = "telnyx.sim.null"
local PARAMS_PREFIX = "telnyx.sim.params."

local function sim() return require "telnyx.sim" end

-- ===================================================================== --
-- Helpers                                                                 --
-- ===================================================================== --

local function num(v) -- integral values without a ".0" on any Lua
  if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%d", v) end
  return tostring(v)
end

local function quote(s) -- a string literal in a LuaLS type (enum values are plain words)
  assert(not s:find('["\\\n]'), "an enum value with a quote, backslash or newline: " .. s)
  return '"' .. s .. '"'
end

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat return then true
  until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function field_key(name) -- `name`, or `["address.country_code"]` when it is not an identifier
  if name:match("^[%a_][%w_]*$") and not KEYWORDS[name] then return name end
  return "[" .. quote(name) .. "]"
end

local function class_part(name) -- a field name as one segment of a class name
  return (name:gsub("[^%w_]", "_"))
end

local function union(values)
  local out = {}
  for i, v in ipairs(values) do out[i] = quote(v) end
  return table.concat(out, "|")
end

-- The operation names in order, and their descriptions.
local function operations()
  local s, ops = sim(), {}
  for i, name in ipairs(s.operations) do
    ops[i] = assert(s.describe(name), "sim.describe(" .. name .. ") gave nothing")
  end
  return ops
end

local function required_fields(op)
  local out = {}
  for _, f in ipairs(op.params.fields) do
    if f.required then out[#out + 1] = f end
  end
  return out
end

-- Whether the method also takes the id alone: its one required param is in the path.
local function takes_id(op)
  local req = required_fields(op)
  return #req == 1 and req[1].place == "path"
end

-- ===================================================================== --
-- The definition file                                                     --
-- ===================================================================== --

local FORMATS = {
  uuid = "a UUID",
  decimal = 'a decimal string ("1.5")',
  spn = "letters, digits and spaces",
  ["date-time"] = "an RFC 3339 date-time",
}

-- What a rule says beyond its type, as one short phrase list.
local function rule_notes(r)
  local notes = {}
  if r.place == "path" or r.place == "query" then notes[#notes + 1] = "in the " .. r.place end
  if r.format then notes[#notes + 1] = FORMATS[r.format] or r.format end
  local lo, hi = r.min, r.max
  if lo or hi then
    if r.kind == "string" then
      if lo == 1 and not hi then notes[#notes + 1] = "not empty"
      elseif lo and hi then notes[#notes + 1] = "length " .. num(lo) .. ".." .. num(hi)
      elseif lo then notes[#notes + 1] = "length >= " .. num(lo)
      else notes[#notes + 1] = "length <= " .. num(hi) end
    elseif r.kind == "array" then
      if lo and hi then notes[#notes + 1] = num(lo) .. ".." .. num(hi) .. " items"
      elseif lo then notes[#notes + 1] = "at least " .. num(lo) .. (lo == 1 and " item" or " items")
      else notes[#notes + 1] = "at most " .. num(hi) .. " items" end
    else
      if lo and hi then notes[#notes + 1] = num(lo) .. ".." .. num(hi)
      elseif lo then notes[#notes + 1] = ">= " .. num(lo)
      else notes[#notes + 1] = "<= " .. num(hi) end
    end
  end
  if r.kind == "array" and r.items and r.items.kind ~= "object" then
    local each = rule_notes(r.items)
    if each ~= "" then notes[#notes + 1] = "each " .. each end
  end
  if r.nullable then notes[#notes + 1] = "sim.null sends JSON null" end
  return table.concat(notes, "; ")
end

-- The LuaLS type of a rule. Objects become classes named after their path
-- (`class`), queued on `pending` to be written after the class that uses them.
local rule_type

-- Per kind (as sim.describe names it): its LuaLS type. A kind not here reads `any`.
local TYPE_OF = {
  integer = function() return "integer" end,
  number = function() return "number" end,
  boolean = function() return "boolean" end,
  string = function(r) return r.enum and union(r.enum) or "string" end,
  object = function(r, class, pending)
    pending[#pending + 1] = { name = class, rule = r }
    return class
  end,
  array = function(r, class, pending)
    local t = rule_type(r.items, class .. ".item", pending)
    if t:find("|", 1, true) then t = "(" .. t .. ")" end
    return t .. "[]"
  end,
  map = function(r, class, pending)
    return "table<string, " .. rule_type(r.items, class .. ".value", pending) .. ">"
  end,
}

function rule_type(r, class, pending)
  local of = TYPE_OF[r.kind]
  local t = of and of(r, class, pending) or "any"
  if r.nullable then t = t .. "|" .. NULL_TYPE end
  return t
end

-- ---@class lines for `class` and, after it, every class its fields need.
local function write_class(out, class, rule, doc)
  local pending = {}
  if doc then out[#out + 1] = "---" .. doc end
  out[#out + 1] = "---@class " .. class
  for _, f in ipairs(rule.fields) do
    local line = "---@field " .. field_key(f.name) .. (f.required and " " or "? ")
      .. rule_type(f, class .. "." .. class_part(f.name), pending)
    local notes = rule_notes(f)
    if notes ~= "" then line = line .. " # " .. notes end
    out[#out + 1] = line
  end
  out[#out + 1] = ""
  for _, p in ipairs(pending) do write_class(out, p.name, p.rule) end
end

local NOT_RESENT = ": never re-sent once it may have reached the server\n---(unless `retry_may_duplicate`)."
local RESEND_DOC = {
  safe = "Re-sending is safe: retried after any transient failure.",
  duplicates = "A second copy makes a duplicate" .. NOT_RESENT,
  spends_money = "A second copy spends money again" .. NOT_RESENT,
}

local RESULT_TYPE = {
  list = "telnyx.sim.ListResult",
  one = "telnyx.sim.OneResult",
  none = "telnyx.sim.Result",
}

local function write_method(out, op)
  local params_type = PARAMS_PREFIX .. op.name
  local optional = #required_fields(op) == 0
  if takes_id(op) then params_type = "string|" .. params_type end
  local what = op.result == "list" and ("a list of " .. op.noun .. "s (`res.data` is an array)")
    or op.result == "one" and ("one " .. op.noun .. " (`res.data`)") or "no data"
  out[#out + 1] = "---`" .. op.method .. " " .. op.path .. "`: " .. what .. "."
  out[#out + 1] = "---"
  local resend = RESEND_DOC[op.resend] or ("Re-send class: " .. op.resend .. ".")
  if op.check then resend = resend .. " After an uncertain failure, check " .. op.check .. "." end
  out[#out + 1] = "---" .. resend
  if takes_id(op) then out[#out + 1] = "---`params` may be the `" .. required_fields(op)[1].name .. "` alone." end
  out[#out + 1] = "---@param params" .. (optional and "? " or " ") .. params_type
  out[#out + 1] = "---@param opts? telnyx.sim.CallOptions"
  out[#out + 1] = "---@return " .. (RESULT_TYPE[op.result] or "telnyx.sim.Result") .. "? res"
  out[#out + 1] = "---@return telnyx.sim.Error? err"
  out[#out + 1] = "function Client:" .. op.name .. "(params, opts) end"
  out[#out + 1] = ""
end

local HEAD = [[
---@meta telnyx.sim
-- GENERATED by tools/generate.lua from telnyx.sim's operation table: do not edit,
-- run `make generate`. A LuaLS definition file: put its directory (types/) in the
-- language server's `workspace.library` to complete `require "telnyx.sim"`.
-- The rock installs it under the rock's directory (lib/luarocks/rocks-5.x/telnyx-sim/<version>/types/).

---The JSON null: `sim.null` (a NULL lightuserdata, the same value as cjson.null and ngx.null).
---A nullable param takes it to send `null`.
---@class telnyx.sim.null

---One error the API gave (JSON:API shape).
---@class telnyx.sim.ApiError
---@field code? string
---@field title? string
---@field detail? string
---@field source? { pointer?: string, parameter?: string }
---@field meta? table

---The failure of a call: `tostring(err)` is one readable line. The API key never appears in it.
---@class telnyx.sim.Error
---@field kind "invalid_params"|"config"|"connection"|"timeout"|"http"|"decode"
---@field message string # what went wrong, naming the operation (and the field, for bad params)
---@field errors telnyx.sim.ApiError[] # the API's decoded error list, {} when none
---@field field? string # bad input: the offending param, option (`opts.<name>`) or argument
---@field status? integer # the HTTP status, when a response arrived
---@field request_id? string # the response's x-request-id, for Telnyx support
---@field retryable? boolean # whether sending the same request again is safe
---@field retry_after? number # when retryable: seconds to wait first
---@field sent? "no"|"maybe"|"yes" # whether the request reached the server: no, it may have, or it answered
---@field pause? number # seconds the server asked every call to wait (a 429, Retry-After), when retryable
---@field attempts? integer # how many attempts were made
---@field index? integer # batch, get_activation_codes: the call (or card) refused before anything was sent
---@field action? table # wait_for_action's timeout: the last state of the action

---@class telnyx.sim.BatchOptions
---@field concurrency? integer # calls in flight at once, 1..1000 (default 16)
---@field progress? fun(done: integer, total: integer, index: integer, res: telnyx.sim.Result?, err: telnyx.sim.Error?)

---@class telnyx.sim.BatchResult
---@field res? telnyx.sim.Result
---@field err? telnyx.sim.Error

---The items in input order. `ok` and `failed` are read through the table's metatable ("telnyx.sim.results"):
---the table holds only the items, so `sim.encode(results)` gives a JSON array of them.
---@class telnyx.sim.BatchResults
---@field [integer] telnyx.sim.BatchResult
---@field ok integer # calls that succeeded
---@field failed integer # calls that failed

---@class telnyx.sim.ActivationCodeOptions: telnyx.sim.BatchOptions
---@field timeout? number
---@field max_retries? integer
---@field headers? table<string, string>

---@class telnyx.sim.ActivationCode
---@field id string
---@field activation_code? string # "LPA:1$..."
---@field err? telnyx.sim.Error
---@field skipped? "physical"

---The items in the input's order; `ok` and `failed` (the calls made) read through the metatable, as for
---telnyx.sim.BatchResults: `sim.encode(results)` gives a JSON array.
---@class telnyx.sim.ActivationCodeResults
---@field [integer] telnyx.sim.ActivationCode
---@field ok integer
---@field failed integer

---The decoded response envelope: every field as the server sent it, JSON null as absent.
---@class telnyx.sim.Result
---@field status integer # the HTTP status: 200, 201 or 202
---@field data? table
---@field errors telnyx.sim.ApiError[] # per-item errors, {} when none
---@field meta? table # paging: page_number, page_size, total_pages, total_results

---@class telnyx.sim.ListResult: telnyx.sim.Result
---@field data table[] # the items, {} when none

---@class telnyx.sim.OneResult: telnyx.sim.Result
---@field data table # the one object

---`sim.new` options; every one is optional.
---@class telnyx.sim.Options
---@field api_key? string # default: env TELNYX_API_KEY
---@field base_url? string # default: env TELNYX_BASE_URL, else "https://api.telnyx.com/v2"
---@field timeout? number # seconds for a whole attempt (default 60)
---@field connect_timeout? number # seconds to connect (default 10)
---@field max_retries? integer # retries of failures that cannot duplicate anything (default 2, at most 10)
---@field max_response_bytes? integer # default 16 MiB
---@field ca_file? string # a private CA bundle (TLS verification is always on)
---@field ca_path? string # a private CA directory
---@field allow_insecure_http? boolean # plain http:// beyond loopback
---@field retry_may_duplicate? boolean # retry spending/creating calls after a 5xx or a timeout anyway
---@field sleep? fun(seconds: number) # waits between retries (tests, schedulers)

---Per-call options, every method's second argument.
---@class telnyx.sim.CallOptions
---@field timeout? number # seconds for a whole attempt
---@field max_retries? integer # 0..10
---@field idempotency_key? string # the Idempotency-Key header (purchase sends a random UUIDv4 by default)
---@field headers? table<string, string> # extra request headers; the module's own cannot be overridden
---@field retry_may_duplicate? boolean # see telnyx.sim.Options

---@class telnyx.sim.WaitOptions
---@field timeout? number # seconds in all (default 60)
---@field interval? number # seconds between polls (default 1)
---@field group? boolean # a SIM card group action (else told by its record_type)

---What `client:request` built: the request to send, checked.
---@class telnyx.sim.Request
---@field operation telnyx.sim.OperationName
---@field method string
---@field url string
---@field path string # the URL less base_url
---@field headers table<string, string>
---@field body? string
---@field timeout number
---@field connect_timeout number
---@field max_retries integer
---@field retry_may_duplicate boolean

---What came back, for `client:interpret`: a response, or a failure when none arrived.
---@class telnyx.sim.Reply
---@field status? integer
---@field headers? table<string, string|string[]>
---@field body? string
---@field failure? "not_sent"|"connect_timeout"|"timeout"|"broken"|"too_large"
---@field message? string

---A param rule, as `sim.describe` gives it.
---@class telnyx.sim.Rule
---@field name? string
---@field kind "integer"|"string"|"boolean"|"object"|"array"
---@field place? "body"|"path"|"query" # top-level rules only
---@field required? boolean
---@field nullable? boolean
---@field format? "uuid"|"decimal"|"spn"|"date-time"
---@field enum? string[]
---@field min? number # integer value; string or array length
---@field max? number
---@field fields? telnyx.sim.Rule[] # object
---@field items? telnyx.sim.Rule # array

---An operation, as `sim.describe` gives it.
---@class telnyx.sim.Description
---@field name telnyx.sim.OperationName
---@field method "GET"|"POST"|"PATCH"|"DELETE"
---@field path string
---@field body "json"|"none"
---@field result "list"|"one"|"none"
---@field resend "safe"|"duplicates"|"spends_money"
---@field noun string
---@field check? string # what to look at after an uncertain failure of a spending/creating call
---@field paged boolean # a list that takes `page`: what `client:each` walks
---@field params { kind: "object", fields: telnyx.sim.Rule[] }
]]

local CLIENT_HEAD = [[
---A client: `sim.new(opts)`. Every operation is a method: `client:<name>(params [, opts]) -> res | nil, err`.
---@class telnyx.sim.Client
local Client = {}

---Any operation by name: the primitive under the methods.
---@param name telnyx.sim.OperationName
---@param params? table|string
---@param opts? telnyx.sim.CallOptions
---@return telnyx.sim.Result? res
---@return telnyx.sim.Error? err
function Client:call(name, params, opts) end

---Validates and builds a call without sending it (no I/O).
---@param name telnyx.sim.OperationName
---@param params? table|string
---@param opts? telnyx.sim.CallOptions
---@return telnyx.sim.Request? req
---@return telnyx.sim.Error? err
function Client:request(name, params, opts) end

---Decodes and classifies what `req` got back (no I/O); `retry_in` (seconds) when it should be sent again.
---@param req telnyx.sim.Request
---@param reply telnyx.sim.Reply
---@param attempt? integer # 1 for the first attempt
---@return telnyx.sim.Result? res
---@return telnyx.sim.Error? err
---@return number? retry_in
function Client:interpret(req, reply, attempt) end

---Every item of every page of a paged list: each step gives an item, or `false, err` once when a page failed.
---@param name telnyx.sim.PagedOperationName
---@param params? table
---@param opts? telnyx.sim.CallOptions
---@return fun(): (table|false|nil), telnyx.sim.Error?
function Client:each(name, params, opts) end

---Polls a SIM card (group) action until it is no longer "in-progress".
---@param action table|string # an action, a whole `res`, or an action id
---@param opts? telnyx.sim.WaitOptions
---@return table? action
---@return telnyx.sim.Error? err
function Client:wait_for_action(action, opts) end

---Many calls at once on one connection pool (HTTP/2 multiplexing where offered); every call keeps the
---rules of a single call. All are validated before anything is sent (`err.index` names a bad one).
---@param calls { [1]: telnyx.sim.OperationName, [2]: table|string|nil, [3]: telnyx.sim.CallOptions|nil }[]
---@param opts? telnyx.sim.BatchOptions
---@return telnyx.sim.BatchResults? results # results[i] = { res = } or { err = }, in input order
---@return telnyx.sim.Error? err
function Client:batch(calls, opts) end

---The activation codes of many eSIMs at once (on `batch`); physical cards are skipped.
---@param cards (table|string)[] # SIM card tables or ids
---@param opts? telnyx.sim.ActivationCodeOptions
---@return telnyx.sim.ActivationCodeResults? results
---@return telnyx.sim.Error? err
function Client:get_activation_codes(cards, opts) end

---Seconds on a monotonic clock (what wait_for_action's `timeout` is measured on).
---@return number
function Client:clock() end

---Waits the client's way (its `sleep` option, else nanosleep).
---@param seconds number # 0..86400
function Client:sleep(seconds) end

---Frees the client; later calls fail with kind "config". Also `__gc` and `__close`.
function Client:close() end
]]

local MODULE = [[
---@class telnyx.sim
---@field _VERSION string
---@field null telnyx.sim.null
---@field array_mt table # the array marker (cjson's when it has one): `setmetatable({}, sim.array_mt)` sends []
local sim = {}

---A client. Raises on an unknown option or a wrong option type.
---@param opts? telnyx.sim.Options
---@return telnyx.sim.Client? client
---@return telnyx.sim.Error? err # kind "config": no API key, a bad base_url...
function sim.new(opts) end

---An err like the module's own, for a transport's own failures.
---@param kind string
---@param message string
---@param fields? table # extra fields, copied in
---@return telnyx.sim.Error
function sim.error(kind, message, fields) end

---An operation's row and its rule tree.
---@param name telnyx.sim.OperationName
---@return telnyx.sim.Description? description
---@return string? message
function sim.describe(name) end

---JSON text: arrays (marked, or 1..n) as arrays, an empty marked one as [], sim.null as null.
---@param value any
---@return string? json
---@return telnyx.sim.Error? err
function sim.encode(value) end
]]

function M.render_types()
  local ops = operations()
  local out = { HEAD }
  local names, paged = {}, {}
  for i, op in ipairs(ops) do
    names[i] = op.name
    if op.paged then paged[#paged + 1] = op.name end
  end
  out[#out + 1] = "---The " .. #names .. " operations, in `sim.operations` order."
  out[#out + 1] = "---@alias telnyx.sim.OperationName"
  for _, n in ipairs(names) do out[#out + 1] = "---| " .. quote(n) end
  out[#out + 1] = ""
  out[#out + 1] = "---The paged list operations, for `client:each`."
  out[#out + 1] = "---@alias telnyx.sim.PagedOperationName"
  for _, n in ipairs(paged) do out[#out + 1] = "---| " .. quote(n) end
  out[#out + 1] = ""
  out[#out + 1] = "-- Params: one class per operation; nested classes for its objects."
  out[#out + 1] = ""
  for _, op in ipairs(ops) do
    write_class(out, PARAMS_PREFIX .. op.name, op.params, "Params of `client:" .. op.name .. "`.")
  end
  out[#out + 1] = CLIENT_HEAD
  for _, op in ipairs(ops) do write_method(out, op) end
  out[#out + 1] = MODULE
  out[#out + 1] = "---@type telnyx.sim.OperationName[]"
  out[#out + 1] = "sim.operations = {"
  for _, n in ipairs(names) do out[#out + 1] = "  " .. quote(n) .. "," end
  out[#out + 1] = "}"
  out[#out + 1] = ""
  out[#out + 1] = "return sim"
  return table.concat(out, "\n") .. "\n"
end

-- ===================================================================== --
-- The README table                                                        --
-- ===================================================================== --

local function param_cell(op)
  local parts = {}
  for _, f in ipairs(op.params.fields) do
    local s = "`" .. f.name .. "`" .. (f.required and "*" or "")
    if f.place ~= "body" then s = s .. " (" .. f.place .. ")" end
    parts[#parts + 1] = s
  end
  return #parts > 0 and table.concat(parts, ", ") or "none"
end

local RESEND_CELL = { safe = "safe", duplicates = "duplicates", spends_money = "**spends money**" }

function M.render_table()
  local out = {
    "<!-- Generated by `make generate` (tools/generate.lua) from `sim.describe`: edit src/operations.h, not this. -->",
    "",
    "| method | request | params (`*` required) | result | re-send |",
    "| --- | --- | --- | --- | --- |",
  }
  for _, op in ipairs(operations()) do
    local call = "`client:" .. op.name .. "(" .. (takes_id(op) and "id or params" or "params") .. " [, opts])`"
    out[#out + 1] = table.concat({ "", call, "`" .. op.method .. " " .. op.path .. "`", param_cell(op),
      op.result, RESEND_CELL[op.resend] or op.resend, "" }, " | "):sub(2, -2)
  end
  out[#out + 1] = ""
  out[#out + 1] = "Params travel in the JSON body unless marked (path) or (query); `id or params`: the method also"
  out[#out + 1] = "takes the path id alone. Result: `list`, `res.data` is an array; `one`, `res.data` is the object."
  out[#out + 1] = "Re-send: `safe` is retried after any transient failure; `duplicates` (a second copy makes a second"
  out[#out + 1] = "object) and **spends money** are never re-sent once the request may have reached the server. Every"
  out[#out + 1] = "field's type, enum and range, for editors: [`types/telnyx/sim.lua`](types/telnyx/sim.lua)."
  return table.concat(out, "\n")
end

-- README text with the region between the markers replaced | nil, message.
function M.splice(readme, region)
  local b = readme:find(M.BEGIN, 1, true)
  local e = readme:find(M.END, 1, true)
  if not b or not e or e < b then
    return nil, "has no " .. M.BEGIN .. " ... " .. M.END .. " markers"
  end
  if readme:find(M.BEGIN, b + 1, true) or readme:find(M.END, e + 1, true) then
    return nil, "has the operations markers more than once"
  end
  return readme:sub(1, b + #M.BEGIN - 1) .. "\n" .. region .. "\n" .. readme:sub(e)
end

-- ===================================================================== --
-- Files                                                                   --
-- ===================================================================== --

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  if not ok then return nil, werr end
  return true
end

local function join(root, file)
  if root == nil or root == "" or root == "." then return file end
  return (root:gsub("/+$", "")) .. "/" .. file
end

-- Each generated file: { file =, path =, want = text, have = text|nil } | nil, message.
function M.targets(root)
  local readme_path = join(root, M.README_FILE)
  local readme = read(readme_path)
  if not readme then return nil, readme_path .. ": cannot read it" end
  local want, err = M.splice(readme, M.render_table())
  if not want then return nil, readme_path .. " " .. err end
  local types_path = join(root, M.TYPES_FILE)
  return {
    { file = M.TYPES_FILE, path = types_path, want = M.render_types(), have = read(types_path) },
    { file = M.README_FILE, path = readme_path, want = want, have = readme },
  }
end

-- The generated files that differ from what would be generated now -> { file... } | nil, message.
function M.stale(root)
  local targets, err = M.targets(root)
  if not targets then return nil, err end
  local out = {}
  for _, t in ipairs(targets) do
    if t.have ~= t.want then out[#out + 1] = t.file end
  end
  return out
end

-- Writes the files that changed -> { file... written } | nil, message.
function M.write(root)
  local targets, err = M.targets(root)
  if not targets then return nil, err end
  local written = {}
  for _, t in ipairs(targets) do
    if t.have ~= t.want then
      local dir = t.path:match("^(.*)/[^/]+$")
      if dir and t.have == nil then os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
      local ok, werr = write(t.path, t.want)
      if not ok then return nil, t.path .. ": " .. tostring(werr) end
      written[#written + 1] = t.file
    end
  end
  return written
end

-- The command line -> exit status; says what it did on stdout, what failed on stderr.
function M.main(args, default_root)
  local check, root = false, default_root
  local i = 1
  while args[i] do
    local a = args[i]
    if a == "--check" then
      check = true
    elseif a == "--root" and args[i + 1] then
      root = args[i + 1]
      i = i + 1
    else
      io.stderr:write("usage: tools/generate.lua [--check] [--root DIR]\n")
      return 2
    end
    i = i + 1
  end
  if check then
    local stale, err = M.stale(root)
    if not stale then
      io.stderr:write("tools/generate.lua: ", err, "\n")
      return 2
    end
    for _, file in ipairs(stale) do
      io.stderr:write("tools/generate.lua --check: ", file, " is stale: run `make generate`\n")
    end
    if #stale > 0 then return 1 end
    io.write("tools/generate.lua --check: ", M.TYPES_FILE, " and ", M.README_FILE, " are up to date\n")
    return 0
  end
  local written, err = M.write(root)
  if not written then
    io.stderr:write("tools/generate.lua: ", err, "\n")
    return 2
  end
  if #written == 0 then
    io.write("tools/generate.lua: ", M.TYPES_FILE, " and ", M.README_FILE, " were up to date\n")
  else
    io.write("tools/generate.lua: wrote ", table.concat(written, " and "), "\n")
  end
  return 0
end

if ... == "tools.generate" then return M end -- require "tools.generate": the library

-- A script: the root is the directory above tools/, wherever it is run from.
local script = arg and arg[0] or "tools/generate.lua"
local root = script:match("^(.*)/tools/[^/]+$") or (script:match("^tools/[^/]+$") and ".") or ".."
os.exit(M.main(arg or {}, root))
