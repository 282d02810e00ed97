/*
 * libFuzzer target: arbitrary params and per-call options to
 * client:request(op, params, opts), the module's validation and request
 * building without I/O.
 *
 * Input layout: flags, client, then the params table (known and unknown
 * field names with arbitrary values), then the opts table.
 */
#include "harness.h"

static const char CHECKS[] =
  "local sim = require 'telnyx.sim'\n"
  "local cjson = require('cjson').new()\n"
  "local KEY, BASE = '" FUZZ_API_KEY "', '" FUZZ_BASE_URL "'\n"
  "local clients = {\n"
  "  assert(sim.new{ api_key = KEY, base_url = BASE }),\n"
  "  assert(sim.new{ api_key = KEY, base_url = BASE .. '/', timeout = 0.5, max_retries = 0, retry_may_duplicate = true }),\n"
  "}\n"
  "local PATHS = { purchase_esims = '/actions/purchase/esims', register_sim_cards = '/actions/register/sim_cards' }\n"
  "local METHODS = { purchase_esims = 'POST', register_sim_cards = 'POST', get_sim_card = 'GET' }\n"
  "local FIELDS = {\n"
  "  purchase_esims = { amount = 'count', sim_card_group_id = 'string', tags = 'list', product = 'string',\n"
  "                     whitelabel_name = 'string', status = 'string' },\n"
  "  register_sim_cards = { registration_codes = 'list', sim_card_group_id = 'string', tags = 'list', status = 'string' },\n"
  "  get_sim_card = { id = 'path', include_sim_card_group = 'query', include_pin_puk_codes = 'query' },\n"
  "}\n"
  "local REQUIRED = { purchase_esims = 'amount', register_sim_cards = 'registration_codes', get_sim_card = 'id' }\n"
  "local function fail(fmt, ...) error(string.format(fmt, ...), 0) end\n"
  "local function strings_of(v, out, seen)\n"
  "  if type(v) == 'string' then out[#out + 1] = v\n"
  "  elseif type(v) == 'table' and not seen[v] then\n"
  "    seen[v] = true\n"
  "    for k, x in pairs(v) do strings_of(k, out, seen); strings_of(x, out, seen) end\n"
  "  end\n"
  "  return out\n"
  "end\n"
  "local function has_key(v)\n"
  "  for _, s in ipairs(strings_of(v, {}, {})) do if s:find(KEY, 1, true) then return true end end\n"
  "  return false\n"
  "end\n"
  "local function header_ok(s) return type(s) == 'string' and not s:find('[\\r\\n%z]') end\n"
  FUZZ_LUA_SHOW
  "local M = {}\n"
  "function M.request(which, opname, params, opts)\n"
  "  if trace then print('request', show({ which, opname, params, opts })) end\n"
  "  local client = clients[which % #clients + 1]\n"
  "  local ok, req, err = pcall(client.request, client, opname, params, opts)\n"
  "  if not ok then fail('request raised: %s', tostring(req)) end\n"
  "  if req == nil then\n"
  "    if type(err) ~= 'table' or err.kind ~= 'invalid_params' then fail('bad err: %s', tostring(err and err.kind)) end\n"
  "    if type(err.message) ~= 'string' or not err.message:find(opname, 1, true) then fail('err.message') end\n"
  "    if err.field ~= nil and type(err.field) ~= 'string' then fail('err.field') end\n"
  "    if type(tostring(err)) ~= 'string' then fail('tostring(err)') end\n"
  /* the module never adds the key to an err; the caller's own input may hold it */
  "    if not has_key({ params, opts }) and (has_key(err) or tostring(err):find(KEY, 1, true)) then\n"
  "      fail('the API key is in an err')\n"
  "    end\n"
  "    return\n"
  "  end\n"
  "  if type(req) ~= 'table' or err ~= nil then fail('req is not a table, or came with an err') end\n"
  "  if type(params) == 'string' then params = { id = params } end -- the id shorthand\n"
  "  local path = PATHS[opname] or ('/sim_cards/' .. tostring(params.id))\n"
  "  local query = {}\n"
  "  for _, flag in ipairs{ 'include_sim_card_group', 'include_pin_puk_codes' } do\n"
  "    if opname == 'get_sim_card' and params[flag] ~= nil then query[#query + 1] = flag .. '=' .. tostring(params[flag]) end\n"
  "  end\n"
  "  if #query > 0 then path = path .. '?' .. table.concat(query, '&') end\n"
  "  if req.operation ~= opname or req.method ~= METHODS[opname] or req.url ~= BASE .. path or req.path ~= path then\n"
  "    fail('req names the wrong operation or url: %s %s', tostring(req.operation), tostring(req.url))\n"
  "  end\n"
  "  if not (type(req.timeout) == 'number' and req.timeout > 0 and req.timeout <= 86400) then fail('req.timeout') end\n"
  "  if not (math.type(req.max_retries) == 'integer' and req.max_retries >= 0 and req.max_retries <= 10) then\n"
  "    fail('req.max_retries %s', tostring(req.max_retries))\n"
  "  end\n"
  "  if type(req.retry_may_duplicate) ~= 'boolean' then fail('req.retry_may_duplicate') end\n"
  "  if type(req.headers) ~= 'table' then fail('req.headers') end\n"
  "  for name, value in pairs(req.headers) do\n"
  "    if not header_ok(name) or name == '' or name:find('[:%s]') or not header_ok(value) then\n"
  "      fail('unsendable header %q: %q', tostring(name), tostring(value))\n"
  "    end\n"
  "  end\n"
  "  if req.headers.Authorization ~= 'Bearer ' .. KEY then fail('Authorization header') end\n"
  "  local idem = type(opts) == 'table' and opts.idempotency_key\n"
  /* a number is taken as its string (lua_tolstring runs before the type check): reported */
  "  if type(idem) == 'number' then idem = tostring(idem) end\n"
  "  if idem and req.headers['Idempotency-Key'] ~= idem then fail('Idempotency-Key not the caller\\'s') end\n"
  "  if opname == 'purchase_esims' and not req.headers['Idempotency-Key'] then fail('purchase without Idempotency-Key') end\n"
  /* GET: everything went into the url, checked above; a validated id is a uuid */
  "  if opname == 'get_sim_card' then\n"
  "    if req.body ~= nil then fail('GET with a body') end\n"
  "    if not tostring(params.id):match('^%x+%-%x+%-%x+%-%x+%-%x+$') then fail('id not a uuid: %q', tostring(params.id)) end\n"
  "    for k in pairs(params) do if not FIELDS[opname][k] then fail('unknown param %q accepted', tostring(k)) end end\n"
  "    return\n"
  "  end\n"
  "  local dok, body = pcall(cjson.decode, req.body)\n"
  "  if not dok or type(body) ~= 'table' then fail('req.body is not a JSON object: %q', tostring(req.body)) end\n"
  "  if body[REQUIRED[opname]] == nil then fail('required field missing from the body') end\n"
  /* exactly the params given, each as given */
  "  for k, v in pairs(body) do\n"
  "    local kind = FIELDS[opname][k]\n"
  "    if not kind then fail('unknown field %q in the body', tostring(k)) end\n"
  "    local p = params[k]\n"
  "    if kind == 'list' then\n"
  "      if type(v) ~= 'table' or type(p) ~= 'table' or #v ~= #p then fail('list %s not sent as given', k) end\n"
  "      for i = 1, #p do if v[i] ~= p[i] then fail('%s[%d] not sent as given', k, i) end end\n"
  /* an integer beyond 2^53 goes out exact; cjson's decode rounds it */
  "    elseif v ~= p and not (math.type(p) == 'integer' and req.body:find(string.format('\"%s\":%d', k, p), 1, true)) then\n"
  "      fail('%s sent as %q, given %q', k, tostring(v), tostring(p))\n"
  "    end\n"
  "    if kind == 'count' and not (v >= 1 and v == math.floor(v)) then fail('amount %s', tostring(v)) end\n"
  "  end\n"
  "  for k in pairs(params) do\n"
  "    if body[k] == nil then fail('param %q accepted but not sent', tostring(k)) end\n"
  "  end\n"
  "end\n"
  "return M\n";

static const char *const field_names[] = {
  "amount", "sim_card_group_id", "tags", "product", "whitelabel_name", "status", "registration_codes",
  "amount", "tags", "registration_codes", "status", "Amount", "amounts", "registration_code", "",
  "__index", "id", "include_sim_card_group", "include_pin_puk_codes",
  "amount\0x", "tags\0", "id\0x" /* from index 19 on: names with a NUL inside */
};

static const char *const opt_names[] = {
  "timeout", "max_retries", "idempotency_key", "headers", "retry_may_duplicate", "retries", "Timeout",
  "timeout\0x" /* index 7: a NUL inside */
};

static const char *const header_names[] = {
  "X-Trace", "x-b3-traceid", "Authorization", "authorization", "Content-Type", "Idempotency-Key",
  "User-Agent", "Host", "Expect", "Transfer-Encoding", "Connection", "Accept", "Content-Length",
  "Bad Name", "x\r\ny", "x:y", "", "X-\xc3\xa9", "x\0y" /* index 18: a NUL inside */
};

/* Pushes a name from `list` (NUL-aware lengths), or arbitrary bytes. */
static void push_name(lua_State *L, struct in *in, const char *const *list, size_t count,
                      size_t nul_from) {
  uint8_t sel = in_u8(in);
  if (sel % 8 == 7) {
    push_in_bytes(L, in, 24);
  } else if (sel % 8 == 6) {
    push_value(L, in, 4); /* not a string at all */
  } else {
    size_t k = in_u8(in) % count;
    size_t len = strlen(list[k]);
    if (k >= nul_from) len += 1 + strlen(list[k] + len + 1);
    lua_pushlstring(L, list[k], len);
  }
}

static void push_headers(lua_State *L, struct in *in) {
  int n = in_u8(in) % 5, i;
  if (n == 4) { push_value(L, in, 3); return; }
  lua_newtable(L);
  for (i = 0; i < n && in->n > 0; i++) {
    size_t k = in_u8(in) % (sizeof header_names / sizeof *header_names);
    size_t len = strlen(header_names[k]);
    if (k == 18) len = 3;
    if (in_u8(in) % 4 == 0) push_in_bytes(L, in, 16);
    else lua_pushlstring(L, header_names[k], len);
    if (in_u8(in) % 4 == 0) push_value(L, in, 4);
    else push_in_bytes(L, in, 32);
    set_pair(L);
  }
}

static void push_opts(lua_State *L, struct in *in) {
  uint8_t sel = in_u8(in);
  int n, i;
  if (sel % 4 == 0) { lua_pushnil(L); return; }
  if (sel % 16 == 1) { push_value(L, in, 4); return; }
  n = in_u8(in) % 6;
  lua_newtable(L);
  for (i = 0; i < n && in->n > 0; i++) {
    push_name(L, in, opt_names, sizeof opt_names / sizeof *opt_names, 7);
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "headers") == 0 && in_u8(in) % 2)
      push_headers(L, in);
    else
      push_value(L, in, 2);
    set_pair(L);
  }
}

static void push_params(lua_State *L, struct in *in) {
  uint8_t sel = in_u8(in);
  int n, i;
  if (sel % 32 == 0) { push_value(L, in, 2); return; } /* not a table, maybe */
  n = in_u8(in) % 8;
  lua_newtable(L);
  for (i = 0; i < n && in->n > 0; i++) {
    push_name(L, in, field_names, sizeof field_names / sizeof *field_names, 19);
    push_value(L, in, 1);
    set_pair(L);
  }
}

static const char *const operation_names[] = {"purchase_esims", "register_sim_cards", "get_sim_card"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct in in = {data, size};
  lua_State *L = fuzz_state(CHECKS, "=request_checks");
  int checks = lua_gettop(L);
  uint8_t flags = in_u8(&in);

  lua_pushinteger(L, in_u8(&in));
  lua_pushstring(L, operation_names[flags % 3]);
  push_params(L, &in);
  push_opts(L, &in);
  fuzz_check(L, checks, "request", 4);
  lua_close(L);
  return 0;
}
