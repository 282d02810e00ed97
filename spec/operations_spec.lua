-- Every operation of telnyx.sim, table-driven over sim.operations and
-- sim.describe, against the stub server's scripted queue (never its default
-- answers): the exact request on the wire, the result's shape, agreement of
-- the libcurl path with the I/O-free halves, the id shorthand, and invalid
-- params generated from each rule. The valid call of each operation and what
-- it must send are in spec/support/calls.lua, the checks shared with
-- retry_policy_spec.lua (each operation's re-send class under faults) in
-- spec/support/operation_checks.lua.
local sim = require "telnyx.sim"
local helpers = require "spec.support.helpers"
local calls = require "spec.support.calls"
local checks = require "spec.support.operation_checks"

local KEY = "KEYoperations0123456789SECRET"
local has_integers = math.type ~= nil
local copy = calls.copy
local ids = calls.ids

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function is_sequence(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

-- What the module makes of a JSON value it decodes: null members of objects
-- become absent fields (a null array item keeps its place as sim.null).
local function decoded(v)
  if type(v) ~= "table" then return v end
  local out, seq = {}, is_sequence(v)
  for k, x in pairs(v) do
    if seq or x ~= sim.null then out[k] = decoded(x) end
  end
  return out
end

local function has_param(d, name)
  for _, f in ipairs(d.params.fields) do
    if f.name == name then return f end
  end
  return nil
end

-- Whether the row's only required param is its path id (the shorthand rule).
local function only_id_required(d)
  local required = {}
  for _, f in ipairs(d.params.fields) do
    if f.required then required[#required + 1] = f end
  end
  return #required == 1 and required[1].place == "path" and required[1].name == "id"
end

local success, as_reply, assert_same_err = checks.success, checks.as_reply, checks.assert_same_err
local function assert_sent(d, call, seen) return checks.assert_sent(KEY, d, call, seen) end

-- res for the success body `body` of operation d.
local function assert_result(d, call, res, body)
  local what = d.name .. ": "
  assert.equal(call.status, res.status, what .. "res.status")
  if has_integers then assert.equal("integer", math.type(res.status)) end
  assert.equal(sim.array_mt, getmetatable(res.errors), what .. "res.errors is an array")
  assert.equal(0, #res.errors)
  if call.result == "list" then
    assert.equal(sim.array_mt, getmetatable(res.data), what .. "res.data is an array")
    assert.equal(#body.data, #res.data)
    assert.is_true(#res.data > 0)
    if body.meta then
      assert.same(body.meta, res.meta, what .. "res.meta kept")
      if has_integers then assert.equal("integer", math.type(res.meta.page_number)) end
    else
      assert.is_nil(res.meta, what .. "no meta")
    end
  else
    assert.is_table(res.data)
    assert.is_nil(getmetatable(res.data), what .. "res.data is one object")
    if call.params.id ~= nil and d.path:match("{id}$") then assert.equal(call.params.id, res.data.id) end
    if body.data.sim_card_id ~= nil and d.path:match("^/sim_cards/{id}/") then
      assert.equal(call.params.id, res.data.sim_card_id)
    end
    if body.data.sim_card_group_id ~= nil and d.path:match("^/sim_card_groups/{id}/") then
      assert.equal(call.params.id, res.data.sim_card_group_id)
    end
  end
  local expected = decoded(body)
  expected.errors = {}
  expected.status = call.status
  assert.same(expected, res, what .. "the whole res")
end

---------------------------------------------------------------------------
-- Invalid params, generated from a rule tree
---------------------------------------------------------------------------

local FORMAT_TEXT = {
  uuid = "must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
  decimal = 'must be a decimal string such as "2048" or "0.5"',
  spn = "must be a string of only ASCII letters (A-Z, a-z), digits and spaces or tabs (at least one letter or digit)",
  ["date-time"] = 'must be an RFC 3339 date-time such as "2026-01-31T12:00:00Z"',
}

local BAD_FORMAT = {
  uuid = { "6b14e151-8493-4fa1-8664-1cc4e6d1415", "6b14e151849341fa186641cc4e6d14158xxx", "../actions/purchase/esims",
    "6b14e151-8493-4fa1-8664-1cc4e6d1415g" },
  decimal = { "12a", "1.", ".5", "-1", "1.2.3", "1e3", "" },
  spn = { "Acme-Mobile!", "   ", "" },
  ["date-time"] = { "2026-01-31 12:00:00Z", "2026-01-31T12:00:00", "31/01/2026", "2026-01-31T12:00:00+0100", "" },
}

-- What the message says the rule asks for.
local function rule_text(r)
  local t
  if r.kind == "integer" then
    t = "must be an integer"
    if r.min and r.max then t = t .. (" from %d to %d"):format(r.min, r.max)
    elseif r.min then t = t .. (" >= %d"):format(r.min)
    elseif r.max then t = t .. (" <= %d"):format(r.max) end
  elseif r.kind == "string" then
    if r.enum then t = 'must be one of "' .. table.concat(r.enum, '", "') .. '"'
    elseif r.format then t = FORMAT_TEXT[r.format]
    elseif r.min == 1 and not r.max then t = "must be a non-empty UTF-8 string"
    else t = "must be a UTF-8 string" end
  elseif r.kind == "boolean" then t = "must be a boolean"
  elseif r.kind == "object" then t = "must be a table of fields"
  elseif r.kind == "array" then
    t = "must be an array (a sequence 1..n)"
    if r.min then t = t .. (", length >= %d"):format(r.min) end
  else
    error("no rule text for kind " .. tostring(r.kind))
  end
  if r.nullable then t = t .. " or sim.null" end
  return t
end

-- A valid value for rule r (objects with their required fields).
local function valid(r)
  if r.kind == "integer" then return r.min or 1
  elseif r.kind == "boolean" then return true
  elseif r.kind == "string" then
    if r.enum then return r.enum[#r.enum] end
    local by_format = { uuid = ids.card2, decimal = "0.5", spn = "Acme 2", ["date-time"] = "2026-02-28T23:59:59.5+01:00" }
    if r.format then return by_format[r.format] end
    return "x"
  elseif r.kind == "array" then return { valid(r.items) }
  elseif r.kind == "object" then
    local o = {}
    for _, f in ipairs(r.fields) do
      if f.required then o[f.name] = valid(f) end
    end
    return o
  end
  error("no valid value for kind " .. tostring(r.kind))
end

-- Invalid values for r's own kind and constraints: { value, detail } where
-- detail is the "(got ...)" the message must end with, or nil.
local function bad_values(r)
  local out = {}
  local function add(v, detail) out[#out + 1] = { v, detail } end
  if r.kind == "integer" then
    add(2.5, "got number 2.5")
    add("7", "got a string of 1 byte")
    add(true, "got boolean")
    add(0 / 0, "got NaN")
    if r.min then add(r.min - 1, ("got number %d"):format(r.min - 1)) end
    if r.max then add(r.max + 1, ("got number %d"):format(r.max + 1)) end
  elseif r.kind == "string" then
    add(42, "got number 42")
    add({ "x" }, "got table")
    add("\255\254", "got a string that is not valid UTF-8")
    if r.enum then
      add("bogus", 'got "bogus"')
      add(r.enum[1]:upper() .. " ", nil)
    elseif r.format then
      for _, v in ipairs(BAD_FORMAT[r.format]) do add(v, ("got a string of %d byte"):format(#v)) end
    elseif r.min == 1 then
      add("", "got a string of 0 bytes")
    end
  elseif r.kind == "boolean" then
    add("yes", "got a string of 3 bytes")
    add(1, "got number 1")
  elseif r.kind == "object" then
    add("x", "got a string of 1 byte")
    add(true, "got boolean")
  elseif r.kind == "array" then
    add("x", "got a string of 1 byte")
    add({ a = valid(r.items) }, "got a table with non-integer keys")
    add({ [1] = valid(r.items), [3] = valid(r.items) }, "got a table with holes or non-sequence keys")
    if r.min then add({}, "got 0 items") end
  end
  if not r.nullable then add(sim.null, "got sim.null") end
  return out
end

-- The cases for rule r at `path`: each { field =, set = function(params), text =, label = }.
-- get(p) reads r's value in params p; set(p, v) writes it (creating valid parents).
local function rule_cases(r, path, get, set, out)
  for _, bad in ipairs(bad_values(r)) do
    local v, detail = bad[1], bad[2]
    out[#out + 1] = {
      field = path, label = path .. " = " .. (type(v) == "string" and ("%q"):format(v) or tostring(v)),
      set = function(p) set(p, copy(v)) end,
      text = "'" .. path .. "' " .. rule_text(r) .. (detail and (" (" .. detail) or ""),
    }
  end
  if r.kind == "object" then
    local function child(name)
      local cget = function(p)
        local o = get(p)
        return type(o) == "table" and o[name] or nil
      end
      local cset = function(p, v)
        local o = get(p)
        if type(o) ~= "table" then o = valid(r) end
        o[name] = v
        set(p, o)
      end
      return cget, cset
    end
    for _, f in ipairs(r.fields) do
      local cget, cset = child(f.name)
      rule_cases(f, path .. "." .. f.name, cget, cset, out)
      if f.required then
        out[#out + 1] = {
          field = path .. "." .. f.name, label = path .. "." .. f.name .. " missing",
          set = function(p) cset(p, nil) end,
          text = "'" .. path .. "." .. f.name .. "' is required (missing)",
        }
      end
    end
    local _, bogus = child("bogus")
    out[#out + 1] = {
      field = path .. ".bogus", label = path .. ".bogus = 1",
      set = function(p) bogus(p, 1) end,
      text = "unknown field '" .. path .. ".bogus' (known fields: ",
    }
  elseif r.kind == "array" then
    -- one bad item after a good one: the path names index 2
    local iget = function() return nil end
    local iset = function(p, v) set(p, { valid(r.items), v }) end
    rule_cases(r.items, path .. "[2]", iget, iset, out)
  end
  return out
end

-- Every invalid-params case of operation d, from its params' rule tree.
local function invalid_cases(d)
  local out = {}
  for _, f in ipairs(d.params.fields) do
    local name = f.name
    local get = function(p) return p[name] end
    local set = function(p, v) p[name] = v end
    rule_cases(f, name, get, set, out)
    if f.required then
      out[#out + 1] = { field = name, label = name .. " missing", set = function(p) p[name] = nil end,
        text = "'" .. name .. "' is required (missing)" }
    end
  end
  out[#out + 1] = { field = "bogus", label = "bogus = 1", set = function(p) p.bogus = 1 end,
    text = "unknown field 'bogus' (known fields: " }
  return out
end

-- What the generator covers: kinds, formats, enums, nullable, nested required.
local function coverage_of(rule, seen)
  seen[rule.kind] = true
  if rule.format then seen["format " .. rule.format] = true end
  if rule.enum then seen.enum = true end
  if rule.nullable then seen.nullable = true end
  if rule.min or rule.max then seen["bounded " .. rule.kind] = true end
  for _, f in ipairs(rule.fields or {}) do
    if f.required then seen["required nested"] = true end
    coverage_of(f, seen)
  end
  if rule.items then seen["array items"] = true; coverage_of(rule.items, seen) end
end

---------------------------------------------------------------------------
-- The spec
---------------------------------------------------------------------------

describe("every operation", function()
  local stub, client, sleeps

  local function new_client(opts)
    local o = { api_key = KEY, base_url = stub.base_url, max_retries = 2,
      sleep = function(s) sleeps[#sleeps + 1] = s end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(sim.new(o))
  end

  setup(function() stub = helpers.start_stub() end)
  teardown(function() if stub then stub:stop() end end)
  before_each(function()
    stub:reset()
    sleeps = {}
    client = new_client()
  end)
  after_each(function() if client then client:close() end end)

  describe("the table", function()
    it("has one call in calls.lua per operation of sim.operations, and none extra", function()
      local names = {}
      for i, name in ipairs(sim.operations) do names[i] = name end
      table.sort(names)
      assert.same(names, calls.names())
    end)

    it("classes re-sending as NOTES.md does: 4 spend money, 2 duplicate, the rest converge", function()
      local by = { safe = {}, duplicates = {}, spends_money = {} }
      for _, name in ipairs(sim.operations) do
        local d = sim.describe(name)
        table.insert(by[d.resend], name)
        if d.resend == "safe" then assert.is_nil(d.check, name) else assert.is_string(d.check, name) end
      end
      table.sort(by.spends_money)
      table.sort(by.duplicates)
      assert.same({ "bulk_set_public_ips", "create_sim_card_order", "purchase_esims", "set_sim_card_public_ip" },
        by.spends_money)
      assert.same({ "create_sim_card_data_usage_notification", "create_sim_card_group" }, by.duplicates)
      assert.equal(#sim.operations - 6, #by.safe)
    end)

    it("has calls whose body, query and status fit the rows", function()
      for _, name in ipairs(sim.operations) do
        local d, call = sim.describe(name), calls[name]
        assert.equal(d.body == "json", call.body ~= nil, name .. ": body iff the row has one")
        assert.equal(call.json ~= nil, call.body ~= nil, name)
        local queried = false
        for _, f in ipairs(d.params.fields) do
          if f.place == "query" and call.params[f.name] ~= nil then queried = true end
        end
        assert.equal(queried, call.query ~= nil, name .. ": query iff query params are given")
        assert.truthy(({ [200] = true, [201] = true, [202] = true })[call.status], name)
        -- list calls exercise paging and, where the row has one, the filter
        if d.result == "list" and has_param(d, "page") then assert.is_table(call.params.page, name) end
        if has_param(d, "filter") then assert.is_table(call.params.filter, name) end
        assert.equal(call.status, calls.success_status(d))
      end
    end)

    -- The rows are static data: checked here, by the rules the engine relies on (a path param it fills in
    -- is there, a query or path value has a text form), not at every require.
    it("is consistent: paths, names, kinds and places fit what the engine can send", function()
      local CLIENT_METHODS = { "close", "request", "interpret", "call", "sleep", "clock", "each", "wait_for_action",
        "batch", "get_activation_codes" }
      local SCALAR = { integer = true, string = true, boolean = true }
      local API_KIND = { integer = true, string = true, boolean = true, object = true, array = true }
      local function check_rule(name, r, place, depth)
        local where = name .. ", field '" .. tostring(r.name) .. "'"
        assert.is_true(depth <= 8, where .. ": nested too deeply")
        assert.is_true(API_KIND[r.kind] == true, where .. ": kind not allowed in an operation")
        assert.equal(r.kind == "object", r.fields ~= nil, where .. ": fields iff object")
        assert.equal(r.kind == "array", r.items ~= nil, where .. ": items iff array")
        if r.enum or r.format then assert.equal("string", r.kind, where .. ": enum or format on a non-string") end
        if place == "path" then assert.is_true(SCALAR[r.kind] == true, where .. ": a path param is a scalar") end
        if place == "query" and r.kind == "array" then
          assert.is_true(SCALAR[r.items.kind] == true, where .. ": a query array holds scalars")
        end
        if r.items then check_rule(name, r.items, place, depth + 1) end
        local seen = {}
        for _, f in ipairs(r.fields or {}) do
          assert.is_nil(seen[f.name], where .. ": '" .. f.name .. "' defined twice")
          seen[f.name] = true
          check_rule(name, f, place or f.place, depth + 1)
        end
      end
      local names = {}
      for _, m in ipairs(CLIENT_METHODS) do names[m] = "a client method" end
      for _, name in ipairs(sim.operations) do
        assert.is_nil(names[name], name .. ": shadows " .. tostring(names[name]))
        names[name] = "an operation"
        local d = sim.describe(name)
        assert.is_string(d.noun, name)
        check_rule(name, d.params, nil, 0)
        local in_path = {}
        for _, f in ipairs(d.params.fields) do
          if f.place == "body" then assert.equal("json", d.body, name .. ": a body param in a row without a body") end
          if f.place == "path" then in_path[f.name] = f end
        end
        for placeholder in d.path:gmatch("{([^}]*)}") do
          local f = in_path[placeholder]
          assert.is_true(f ~= nil and f.required == true, name .. ": {" .. placeholder .. "} is no required path param")
          in_path[placeholder] = nil
        end
        assert.is_nil(next(in_path), name .. ": a path param that is not in the path")
        assert.equal(select(2, d.path:gsub("{", "")), select(2, d.path:gsub("}", "")), name .. ": unclosed {")
      end
      for _, m in ipairs(CLIENT_METHODS) do assert.is_function(client[m], "the client has no method " .. m) end
    end)

    it("gives the invalid-params generator every rule kind, format and constraint to work on", function()
      local seen = {}
      for _, name in ipairs(sim.operations) do coverage_of(sim.describe(name).params, seen) end
      for _, need in ipairs{ "integer", "string", "boolean", "object", "array", "format uuid", "format decimal",
        "format spn", "format date-time", "enum", "nullable", "bounded integer", "bounded array", "bounded string",
        "required nested", "array items" } do
        assert.is_true(seen[need] == true, "no rule of the table is " .. need)
      end
    end)
  end)

  for _, name in ipairs(sim.operations) do
    local d = sim.describe(name)
    local call = calls[name]
    local class = call.resend

    describe(name .. " (" .. call.method .. " " .. d.path .. ", " .. class .. ")", function()
      it("sends exactly the documented request and returns its " .. call.result .. " result", function()
        -- the row says what the document says
        assert.equal(call.method, d.method)
        assert.equal(call.result, d.result)
        assert.equal(call.resend, d.resend)
        assert.equal(call.body ~= nil and "json" or "none", d.body)
        assert.equal(call.path, "/v2" .. (d.path:gsub("{id}", tostring(call.params.id))))
        local entry, body = success(d, call)
        stub:queue{ entry, entry }
        local params = copy(call.params)
        local res, err = client:call(name, params)
        assert.is_nil(err)
        assert.same(call.params, params, "the call left the caller's params alone")
        local reqs = stub:requests()
        assert.equal(1, #reqs)
        assert_sent(d, call, reqs[1])
        assert_result(d, call, res, body)
        -- the generated method is the same call
        local res2 = assert(client[name](client, copy(call.params)))
        reqs = stub:requests()
        assert.equal(2, #reqs)
        assert_sent(d, call, reqs[2])
        assert.same(res, res2)
        if call.resend ~= "safe" then
          assert.not_equal(reqs[1].headers["idempotency-key"], reqs[2].headers["idempotency-key"],
            "a fresh Idempotency-Key per call")
        end
      end)

      it("builds with client:request what the stub saw, and client:interpret reads the reply alike", function()
        local entry = success(d, call)
        stub:queue(entry)
        local res = assert(client:call(name, copy(call.params)))
        local seen = stub:last_request()
        local req = assert(client:request(name, copy(call.params)))
        assert.equal(name, req.operation)
        assert.equal(seen.method, req.method)
        assert.equal(stub.base_url .. req.path, req.url)
        local path, query = req.path:match("^([^?]*)%??(.*)$")
        assert.equal(seen.path, "/v2" .. path)
        assert.equal(seen.query or "", query)
        if call.body ~= nil then
          assert.equal(seen.body, req.body)
        elseif call.method == "POST" then
          assert.equal("", req.body) -- Content-Length: 0
        else
          assert.is_nil(req.body)
        end
        for k, v in pairs(req.headers) do
          if k ~= "Idempotency-Key" then assert.equal(v, seen.headers[k:lower()], "header " .. k) end
        end
        for _, k in ipairs{ "Authorization", "Accept", "User-Agent" } do assert.is_string(req.headers[k], k) end
        assert.equal(call.body ~= nil, req.headers["Content-Type"] ~= nil, "Content-Type iff a JSON body")
        assert.equal(call.resend ~= "safe", req.headers["Idempotency-Key"] ~= nil, "Idempotency-Key iff not safe")
        local half, herr = client:interpret(req, as_reply(entry), 1)
        assert.is_nil(herr)
        assert.same(res, half)
        assert.equal(getmetatable(res.data), getmetatable(half.data))
        assert.equal(sim.array_mt, getmetatable(half.errors))
      end)

      it("is not retried when a success cannot be read, and a wrong data shape is a decode error", function()
        local bad_bodies = {
          { "{oops", "response could not be decoded" },
          { call.result == "list" and '{"data":{"id":"x"}}' or '{"data":[{"id":"x"}]}',
            call.result == "list" and ("response's 'data' is not an array (expected a list of " .. d.noun .. ")")
              or ("response's 'data' is not an object (expected one " .. d.noun .. ")") },
        }
        for _, case in ipairs(bad_bodies) do
          stub:reset()
          local entry = { status = call.status, body = case[1],
            headers = { ["content-type"] = "application/json", ["x-request-id"] = "rq-unreadable" } }
          stub:queue{ entry, (success(d, call)) }
          local res, err = client:call(name, copy(call.params))
          assert.is_nil(res)
          assert.equal(1, #stub:requests())
          assert.equal("decode", err.kind)
          assert.equal(call.status, err.status)
          assert.is_false(err.retryable)
          assert.matches(name .. ": HTTP " .. call.status .. " " .. case[2], err.message, 1, true)
          if class == "safe" then
            assert.not_matches("check ", err.message, 1, true)
          else
            assert.matches("; the request was accepted: check " .. d.check, err.message, 1, true)
          end
          local req = assert(client:request(name, copy(call.params)))
          local _, half_err = client:interpret(req, as_reply(entry), 1)
          assert_same_err(err, half_err, name)
        end
      end)

      if only_id_required(d) then
        it("takes the id alone", function()
          local id = call.params.id
          local entry = success(d, call)
          stub:queue{ entry, entry }
          local res = assert(client[name](client, id))
          local seen = stub:last_request()
          assert.equal(call.method, seen.method)
          assert.equal("/v2" .. (d.path:gsub("{id}", id)), seen.path)
          assert.is_nil(seen.query)
          assert.equal(call.body ~= nil and "{}" or "", seen.body)
          assert.equal(call.status, res.status)
          assert(client:call(name, id))
          assert.equal(seen.path, stub:last_request().path)
          local req = assert(client:request(name, id))
          assert.equal((d.path:gsub("{id}", id)), req.path)
          -- the shorthand is validated like the table form
          local none, err = client[name](client, "not-a-uuid")
          assert.is_nil(none)
          assert.equal("invalid_params", err.kind)
          assert.equal("id", err.field)
          assert.matches("'id' must be a UUID", err.message, 1, true)
          assert.equal(2, #stub:requests())
        end)
      else
        it("refuses the id shorthand: its params are more than the path id", function()
          for _, try in ipairs{
            function() return client[name](client, ids.card) end,
            function() return client:call(name, ids.card) end,
            function() return client:request(name, ids.card) end,
          } do
            local none, err = try()
            assert.is_nil(none)
            assert.equal("invalid_params", err.kind)
            assert.equal(name .. ": params must be a table (got a string of 36 bytes)", err.message)
          end
          assert.equal(0, #stub:requests())
        end)
      end

      local cases = invalid_cases(d)
      it(("refuses %d invalid params generated from its rules, before any traffic"):format(#cases), function()
        for _, case in ipairs(cases) do
          local p = copy(call.params)
          case.set(p)
          local res, err = client:call(name, p)
          assert.is_nil(res, case.label)
          assert.equal("invalid_params", err.kind, case.label)
          assert.equal(case.field, err.field, case.label)
          local expect = name .. ": " .. case.text
          assert.equal(expect, err.message:sub(1, #expect), case.label .. ": " .. err.message)
          assert.equal("telnyx.sim: " .. err.message, tostring(err))
          assert.is_nil(err.status)
          local none, req_err = client:request(name, p)
          assert.is_nil(none, case.label)
          assert.equal(err.message, req_err.message, case.label)
          assert.equal(err.field, req_err.field, case.label)
        end
        assert.equal(0, #stub:requests(), "nothing reached the server")
      end)
    end)
  end

  it("sends every operation right on one kept-alive connection, whatever came before (both orders)", function()
    for _, order in ipairs{ 1, -1 } do
      stub:reset()
      local first, last = 1, #sim.operations
      if order < 0 then first, last = last, first end
      for i = first, last, order do
        local name = sim.operations[i]
        local d, call = sim.describe(name), calls[name]
        local entry, body = success(d, call)
        stub:queue(entry)
        local res = assert(client:call(name, copy(call.params)))
        assert_sent(d, call, stub:last_request())
        assert_result(d, call, res, body)
      end
      local reqs = stub:requests()
      assert.equal(#sim.operations, #reqs)
      for _, r in ipairs(reqs) do assert.equal(reqs[1].conn, r.conn, "one connection") end
    end
  end)

  it("keeps the header discipline with per-call headers, in every body mode", function()
    for _, name in ipairs{ "list_sim_cards", "delete_sim_card", "enable_sim_card", "set_sim_card_public_ip",
      "update_sim_card", "create_sim_card_group" } do
      local d, call = sim.describe(name), calls[name]
      stub:reset()
      stub:queue((success(d, call)))
      assert(client:call(name, copy(call.params), { headers = { ["X-Trace"] = "trace-" .. name } }))
      local seen = stub:last_request()
      assert_sent(d, call, seen)
      assert.equal("trace-" .. name, seen.headers["x-trace"])
      local req = assert(client:request(name, copy(call.params), { headers = { ["X-Trace"] = "trace-" .. name } }))
      assert.equal("trace-" .. name, req.headers["X-Trace"])
    end
  end)

  describe("invalid params named in the brief", function()
    local card, group = ids.card, ids.group
    local cases = {
      { "list_sim_cards", { page = { size = 251 } }, "page.size", "'page.size' must be an integer from 1 to 250 (got number 251)" },
      { "list_sim_cards", { page = { number = 2.5 } }, "page.number", "'page.number' must be an integer >= 1 (got number 2.5)" },
      { "list_sim_cards", { filter = { status = { "enabled", "bogus" } } }, "filter.status[2]",
        "'filter.status[2]' must be one of \"enabled\", \"disabled\", \"standby\", \"data_limit_exceeded\", "
          .. "\"unauthorized_imei\" (got \"bogus\")" },
      { "get_sim_card", { id = card:sub(1, 35) }, "id", "'id' must be a UUID" },
      { "update_sim_card", { id = card, data_limit = { amount = "12a", unit = "MB" } }, "data_limit.amount",
        "'data_limit.amount' must be a decimal string such as \"2048\" or \"0.5\" (got a string of 3 bytes)" },
      { "list_sim_card_orders", { filter = { created_at = "2026-01-31 12:00:00" } }, "filter.created_at",
        "'filter.created_at' must be an RFC 3339 date-time" },
      { "purchase_esims", { amount = 1, whitelabel_name = "Acme-Mobile" }, "whitelabel_name",
        "'whitelabel_name' must be a string of only ASCII letters (A-Z, a-z), digits and spaces or tabs" },
      { "list_sim_cards", { include_sim_card_group = "yes" }, "include_sim_card_group",
        "'include_sim_card_group' must be a boolean (got a string of 3 bytes)" },
      { "list_sim_cards", { filter = "x" }, "filter", "'filter' must be a table of fields (got a string of 1 byte)" },
      { "update_sim_card", { id = card, tags = { 1 } }, "tags[1]", "'tags[1]' must be a non-empty UTF-8 string (got number 1)" },
      { "create_sim_card_data_usage_notification", { sim_card_id = card, threshold = { amount = "2048" } },
        "threshold.unit", "'threshold.unit' is required (missing)" },
      { "list_sim_cards", { filter = { bogus = 1 } }, "filter.bogus", "unknown field 'filter.bogus' (known fields: iccid," },
      { "update_sim_card", { id = card, tags = sim.null }, "tags", "'tags' must be an array (a sequence 1..n) (got sim.null)" },
      { "update_sim_card", { id = card, authorized_imeis = { "490154203237518", sim.null } }, "authorized_imeis[2]",
        "'authorized_imeis[2]' must be a non-empty UTF-8 string (got sim.null)" },
      { "update_sim_card", { id = card, authorized_imeis = "490154203237518" }, "authorized_imeis",
        "'authorized_imeis' must be an array (a sequence 1..n) or sim.null (got a string of 15 bytes)" },
      { "list_mobile_network_operators", { filter = { name = { starts_with = "" } } }, "filter.name.starts_with",
        "'filter.name.starts_with' must be a non-empty UTF-8 string (got a string of 0 bytes)" },
      { "list_mobile_network_operators", { filter = { name = { begins = "AT" } } }, "filter.name.begins",
        "unknown field 'filter.name.begins' (known fields: contains, ends_with, starts_with)" },
      { "bulk_set_public_ips", { sim_card_ids = { card, "x" } }, "sim_card_ids[2]", "'sim_card_ids[2]' must be a UUID" },
      { "register_sim_cards", { registration_codes = {} }, "registration_codes",
        "'registration_codes' must be an array (a sequence 1..n), length >= 1 (got 0 items)" },
      { "update_sim_card_group", { id = group, data_limit = { amount = "1", unit = "TB" } }, "data_limit.unit",
        "'data_limit.unit' must be one of \"MB\", \"GB\" (got \"TB\")" },
      { "list_wireless_regions", {}, "product", "'product' is required (missing)" },
      { "preview_sim_card_order", { address_id = "1293384261075731499", quantity = 0 }, "quantity",
        "'quantity' must be an integer >= 1 (got number 0)" },
    }
    for _, case in ipairs(cases) do
      local name, params, field, text = case[1], case[2], case[3], case[4]
      it(name .. ": " .. field, function()
        local res, err = client:call(name, params)
        assert.is_nil(res)
        assert.equal("invalid_params", err.kind)
        assert.equal(field, err.field)
        assert.matches(name .. ": " .. text, err.message, 1, true)
        assert.equal(0, #stub:requests())
      end)
    end

    it("accepts sim.null where the rule is nullable, and sends JSON null", function()
      local req = assert(client:request("update_sim_card", { id = card, authorized_imeis = sim.null }))
      assert.equal('{"authorized_imeis":null}', req.body)
      req = assert(client:request("update_sim_card", { id = card, authorized_imeis = {} }))
      assert.equal('{"authorized_imeis":[]}', req.body)
    end)
  end)

  describe("query encoding", function()
    local function query_of(name, params)
      local req = assert(client:request(name, params))
      return req.path:match("%?(.*)$")
    end

    it("writes integral numbers as integers, however they are held", function()
      assert.equal("page[number]=2&page[size]=50", query_of("list_sim_cards", { page = { number = 2.0, size = 50.0 } }))
      assert.equal("page[number]=3000000000", query_of("list_sim_cards", { page = { number = 3000000000 } }))
      assert.equal("filter[quantity]=21", query_of("list_sim_card_orders", { filter = { quantity = 21.0 } }))
    end)

    it("percent-encodes values, commas inside an item included, and joins array items with a literal comma", function()
      stub:queue((success(sim.describe("list_sim_cards"), calls.list_sim_cards)))
      assert(client:list_sim_cards{ filter = { tags = { "a,b", "x/y", "caf\195\169 bar", "50%" } } })
      assert.equal("filter[tags]=a%2Cb,x%2Fy,caf%C3%A9%20bar,50%25", stub:last_request().query)
    end)

    it("leaves out empty arrays and empty objects, and writes false", function()
      assert.is_nil(query_of("list_sim_cards", { filter = { tags = {} } }))
      assert.is_nil(query_of("list_sim_cards", { filter = {}, page = {} }))
      assert.equal("include_sim_card_group=false", query_of("list_sim_cards", { include_sim_card_group = false }))
      assert.equal("filter[name][contains]=Vodafone%20UK",
        query_of("list_mobile_network_operators", { filter = { name = { contains = "Vodafone UK" } } }))
    end)
  end)
end)
