/*
 * libFuzzer target: arbitrary replies to client:interpret(req, reply, attempt),
 * the module's whole response handling without I/O.
 *
 * Input layout (structure from the front, the body is the rest):
 *   flags, client, attempt, req tampering, then either a failure form
 *   {failure=, message=} or {status=, headers=}, then body = remaining bytes.
 */
#include "harness.h"

static const char CHECKS[] =
  "local sim = require 'telnyx.sim'\n"
  "local KEY, BASE = '" FUZZ_API_KEY "', '" FUZZ_BASE_URL "'\n"
  "local clients = {\n"
  "  assert(sim.new{ api_key = KEY, base_url = BASE }),\n"
  "  assert(sim.new{ api_key = KEY, base_url = BASE, max_response_bytes = 1024, max_retries = 0 }),\n"
  "  assert(sim.new{ api_key = KEY, base_url = BASE, retry_may_duplicate = true, max_retries = 10 }),\n"
  "}\n"
  "local KINDS = { http = true, decode = true, connection = true, timeout = true }\n"
  "local function fail(fmt, ...) error(string.format(fmt, ...), 0) end\n"
  /* every string reachable from v, keys included, must be free of the key */
  "local function no_key(v, where, seen)\n"
  "  if type(v) == 'string' then\n"
  "    if v:find(KEY, 1, true) then fail('the API key is in %s: %q', where, v) end\n"
  "  elseif type(v) == 'table' then\n"
  "    seen = seen or {}\n"
  "    if seen[v] then return end\n"
  "    seen[v] = true\n"
  "    for k, x in pairs(v) do no_key(k, where .. ' (a key)', seen); no_key(x, where .. '.' .. tostring(k), seen) end\n"
  "  end\n"
  "end\n"
  /* a result's shape, whichever cjson decoded it (src/json.h) */
  "local function shaped(v, where)\n"
  "  local array = getmetatable(v) == sim.array_mt\n"
  "  if getmetatable(v) ~= nil and not array then fail('%s has a metatable that is not sim.array_mt', where) end\n"
  "  for k, x in pairs(v) do\n"
  "    local at = where .. '.' .. tostring(k)\n"
  "    if (type(k) == 'number') ~= array then fail('%s: a %s key in a table %s', at, type(k), array and 'marked as an array' or 'not marked') end\n"
  "    if x == sim.null and not array then fail('%s: a null member kept', at) end\n"
  "    if math.type(x) == 'float' and x == math.floor(x) and math.abs(x) <= 2^53 then fail('%s: an integral float', at) end\n"
  "    if type(x) == 'table' then shaped(x, at) end\n"
  "  end\n"
  "end\n"
  FUZZ_LUA_SHOW
  "local M = {}\n"
  "function M.interpret(which, opname, reply, attempt, max_retries, resend)\n"
  "  if trace then print('interpret', show({ which, opname, reply, attempt, max_retries, resend })) end\n"
  "  local client = clients[which % #clients + 1]\n"
  "  local params = ({ purchase_esims = { amount = 1 }, register_sim_cards = { registration_codes = { '1' } },\n"
  "                   get_sim_card = { id = '6a09cdc3-8948-47f0-aa62-74ac943d6c58' } })[opname]\n"
  "  local req = assert(client:request(opname, params))\n"
  "  if max_retries ~= nil then req.max_retries = max_retries end\n"
  "  if resend ~= nil then req.retry_may_duplicate = resend end\n"
  "  local ok, res, err, retry_in = pcall(client.interpret, client, req, reply, attempt)\n"
  "  if not ok then\n"
  "    if type(res) ~= 'string' or not res:find('bad argument', 1, true) then\n"
  "      fail('interpret raised something other than an argument error: %s', tostring(res))\n"
  "    end\n"
  "    return\n"
  "  end\n"
  "  local status = reply.status\n"
  "  if res ~= nil then\n"
  "    if type(res) ~= 'table' or err ~= nil or retry_in ~= nil then fail('res with err or retry_in') end\n"
  /* a 204 to a one-object operation has no data (No Content) */
  "    if (type(res.data) ~= 'table' and status ~= 204) or type(res.errors) ~= 'table' then fail('res.data/res.errors not tables') end\n"
  "    if reply.failure ~= nil or not (status >= 200 and status < 300) then\n"
  "      fail('res for a reply that is not a 2xx response (status %s)', tostring(status))\n"
  "    end\n"
  "    shaped(res, 'res')\n"
  "    return\n"
  "  end\n"
  "  if type(err) ~= 'table' then fail('neither res nor an err table: %s', tostring(err)) end\n"
  "  if not KINDS[err.kind] then fail('bad err.kind %s', tostring(err.kind)) end\n"
  "  if type(err.message) ~= 'string' or not err.message:find(opname, 1, true) then\n"
  "    fail('err.message missing or not naming the operation: %s', tostring(err.message))\n"
  "  end\n"
  "  if type(err.errors) ~= 'table' then fail('err.errors is not a table') end\n"
  "  if type(err.retryable) ~= 'boolean' then fail('err.retryable is not a boolean') end\n"
  "  if err.request_id ~= nil and type(err.request_id) ~= 'string' then fail('bad request_id') end\n"
  "  if err.status ~= nil and math.type(err.status) ~= 'integer' then fail('bad err.status') end\n"
  "  local a = attempt == nil and 1 or attempt\n"
  /* beyond int range the attempt number is truncated: reported, not asserted */
  "  if math.type(a) == 'integer' and a >= 1 and a < 2^31 and err.attempts ~= a then\n"
  "    fail('err.attempts %s for attempt %s', tostring(err.attempts), tostring(a))\n"
  "  end\n"
  "  if err.retryable ~= (err.retry_after ~= nil) then fail('retry_after without retryable, or the reverse') end\n"
  "  if err.retry_after ~= nil and not (err.retry_after >= 0 and err.retry_after <= 60) then\n"
  "    fail('retry_after out of range: %s', tostring(err.retry_after))\n"
  "  end\n"
  "  if retry_in ~= nil then\n"
  "    if not err.retryable or retry_in ~= err.retry_after then fail('retry_in disagrees with err') end\n"
  "    if type(req.max_retries) == 'number' and not (a <= req.max_retries) then fail('retry_in past max_retries') end\n"
  "  end\n"
  /* the money rule: a purchase that may have arrived (or did) is never
   * re-sent unless the caller opted in; no server header changes that */
  "  if opname == 'purchase_esims' and not req.retry_may_duplicate then\n"
  "    local arrived = reply.failure == 'timeout' or reply.failure == 'broken' or reply.failure == 'too_large'\n"
  "      or (reply.failure == nil and (status >= 500 or (status >= 200 and status < 400)))\n"
  "    if arrived and (err.retryable or retry_in ~= nil) then\n"
  "      fail('a purchase that may have gone through is called retryable (%s %s)', tostring(reply.failure), tostring(status))\n"
  "    end\n"
  "  end\n"
  "  local s = tostring(err)\n"
  "  if type(s) ~= 'string' or s:sub(1, 12) ~= 'telnyx.sim: ' then fail('tostring(err) is %s', tostring(s)) end\n"
  "  no_key(err, 'err')\n"
  "  no_key(s, 'tostring(err)')\n"
  "end\n"
  "return M\n";

static const char *const failures[] = {"not_sent", "connect_timeout", "timeout", "broken", "too_large"};

static const long statuses[] = {200, 201, 202, 204, 299, 300, 301, 302, 304, 400, 401, 403, 404, 408,
                                409, 413, 422, 429, 499, 500, 502, 503, 504, 599, 100, 101, 999, 1000, 99};

static const char *const header_names[] = {
  "x-request-id", "X-Request-Id", "location", "Location", "content-type", "Content-Type",
  "x-should-retry", "X-Should-Retry", "retry-after-ms", "Retry-After-Ms", "retry-after", "Retry-After",
  "x-should-retry\0x", "retry-after ", "", "set-cookie"
};

/* A number as a status or a max_retries: mostly sane, sometimes hostile. */
static void push_number_like(lua_State *L, struct in *in, long usual) {
  uint8_t sel = in_u8(in);
  switch (sel % 12) {
    case 0: lua_pushinteger(L, (lua_Integer)in_u16(in)); break;
    case 1: {
      const double odd[] = {NAN, INFINITY, -INFINITY, 1e300, -1e300, 202.5, 9223372036854775808.0,
                            -9223372036854775808.0, 4294967496.0, -4294967096.0, 2147483848.0, 0.0};
      lua_pushnumber(L, odd[in_u8(in) % (sizeof odd / sizeof *odd)]);
      break;
    }
    case 2: lua_pushinteger(L, (lua_Integer)in_u64(in)); break;
    case 3: lua_pushstring(L, "202"); break;
    case 4: lua_pushnil(L); break;
    default: lua_pushinteger(L, usual); break;
  }
}

static void push_headers(lua_State *L, struct in *in) {
  int n = in_u8(in) % 9, i;
  if (n == 8) { push_value(L, in, 3); return; } /* not even a table, maybe */
  lua_newtable(L);
  for (i = 0; i < n && in->n > 0; i++) {
    uint8_t sel = in_u8(in);
    if (sel % 8 == 7) {
      push_in_bytes(L, in, 32);
    } else {
      size_t k = in_u8(in) % (sizeof header_names / sizeof *header_names);
      lua_pushlstring(L, header_names[k], k == 12 ? 16 : strlen(header_names[k]));
    }
    switch ((sel >> 3) % 6) {
      case 0: { /* a list of values: the first counts */
        int m = in_u8(in) % 4, j;
        lua_newtable(L);
        for (j = 1; j <= m; j++) { push_in_bytes(L, in, 40); lua_rawseti(L, -2, j); }
        break;
      }
      case 1: push_value(L, in, 3); break;
      case 2: push_in_long_bytes(L, in, 400); break; /* past the module's 128/256/96-byte copies */
      default: push_in_bytes(L, in, 80); break;
    }
    set_pair(L); /* the key is always a string here */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct in in = {data, size};
  lua_State *L = fuzz_state(CHECKS, "=interpret_checks");
  int checks = lua_gettop(L), reply;
  uint8_t flags = in_u8(&in);

  lua_pushinteger(L, in_u8(&in));                                       /* which client */
  lua_pushstring(L, (flags & 1) ? ((flags & 64) ? "get_sim_card" : "register_sim_cards") : "purchase_esims");
  lua_newtable(L);                                                      /* reply */
  if (flags & 2) {
    uint8_t f = in_u8(&in);
    if (f % 16 < 5) lua_pushstring(L, failures[f % 16]);
    else if (f % 16 == 5) push_value(L, &in, 3);                        /* not a failure name */
    else lua_pushstring(L, failures[f % 5]);
    lua_setfield(L, -2, "failure");
    if (flags & 4) { push_in_bytes(L, &in, 64); lua_setfield(L, -2, "message"); }
    if (flags & 8) { push_number_like(L, &in, 502); lua_setfield(L, -2, "status"); }
  } else {
    push_number_like(L, &in, statuses[in_u8(&in) % (sizeof statuses / sizeof *statuses)]);
    lua_setfield(L, -2, "status");
  }
  if (!(flags & 2) || (flags & 16)) { push_headers(L, &in); lua_setfield(L, -2, "headers"); }
  reply = lua_gettop(L);
  /* attempt, then the req's max_retries and retry_may_duplicate as a caller may have changed them */
  if (flags & 128) push_number_like(L, &in, 1); else lua_pushnil(L);
  if ((flags & 96) == 32) push_number_like(L, &in, 2); else lua_pushnil(L);
  if ((flags & 96) == 64) push_value(L, &in, 4); else lua_pushnil(L);
  if ((flags & 96) == 96 && in_u8(&in) % 4 == 0) push_value(L, &in, 3); /* a body that is no string */
  else push_in_rest(L, &in);
  lua_setfield(L, reply, "body");
  fuzz_check(L, checks, "interpret", 6);
  lua_close(L);
  return 0;
}
