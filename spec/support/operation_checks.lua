-- What the specs of every operation share (operations_spec.lua, and the
-- re-send classes in retry_policy_spec.lua): a scripted success and a 500 for
-- the stub, a reply for client:interpret, and checks of the request on the
-- wire and of two errs alike. The calls themselves are in calls.lua.
--
--   local checks = require "spec.support.operation_checks"
--   stub:queue{ checks.FAILURE_500, (checks.success(d, calls[name])) }
--   checks.assert_sent(KEY, d, calls[name], stub:last_request())
local helpers = require "spec.support.helpers"
local calls = require "spec.support.calls"
local assert = require "luassert"

local checks = {}

-- A scripted success: the document's status, a realistic JSON body.
function checks.success(d, call)
  local body = calls.response(d, call.params)
  return {
    status = call.status,
    headers = { ["content-type"] = "application/json", ["x-request-id"] = "rq-ok-" .. d.name },
    body = helpers.encode(body),
  }, body
end

checks.FAILURE_500 = {
  status = 500,
  headers = { ["content-type"] = "application/json", ["x-request-id"] = "rq-500" },
  body = helpers.encode{ errors = { helpers.api_error("10007", "Unexpected error", "An unexpected error occurred.") } },
}

function checks.as_reply(entry)
  return { status = entry.status, headers = entry.headers, body = entry.body }
end

function checks.may_have_gone_through(d)
  return "it may have gone through: check " .. d.check .. " before trying again"
end

local ERR_FIELDS = { "kind", "message", "status", "request_id", "retryable", "attempts", "field" }

function checks.assert_same_err(a, b, what)
  for _, f in ipairs(ERR_FIELDS) do assert.equal(a[f], b[f], what .. ": err." .. f) end
  assert.same(a.errors, b.errors, what .. ": err.errors")
end

-- The request the stub saw for `call` of operation d, sent with API key `key`.
function checks.assert_sent(key, d, call, seen)
  local what = d.name .. ": "
  assert.equal(call.method, seen.method, what .. "method")
  assert.equal(call.path, seen.path, what .. "path")
  assert.equal(call.query, seen.query, what .. "raw query")
  local h = seen.headers
  assert.equal("Bearer " .. key, h.authorization, what .. "Authorization")
  assert.equal("application/json", h.accept, what .. "Accept")
  assert.matches("^telnyx%-sim%-lua/", h["user-agent"], what .. "User-Agent")
  assert.is_nil(h.expect, what .. "Expect")
  assert.is_nil(h["transfer-encoding"], what .. "Transfer-Encoding")
  if call.body ~= nil then
    assert.equal("application/json", h["content-type"], what .. "Content-Type")
    assert.equal(call.json, seen.body, what .. "body bytes")
    assert.same(call.body, helpers.decode(seen.body), what .. "decoded body")
    assert.equal(tostring(#call.json), h["content-length"], what .. "Content-Length")
  else
    assert.is_nil(h["content-type"], what .. "no Content-Type without a body")
    assert.equal("", seen.body, what .. "no body")
    if call.method == "POST" then
      assert.equal("0", h["content-length"], what .. "Content-Length: 0 on a bodiless POST")
    else
      assert.is_nil(h["content-length"], what .. "no Content-Length on " .. call.method)
    end
  end
  if call.resend == "safe" then
    assert.is_nil(h["idempotency-key"], what .. "no Idempotency-Key for a safe operation")
  else
    assert.matches(helpers.UUID4, h["idempotency-key"], what .. "Idempotency-Key")
  end
end

return checks
