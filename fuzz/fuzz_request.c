/*
 * libFuzzer target: arbitrary params and per-call options to
 * client:request(op, params, opts), the module's validation and request
 * building without I/O, for every operation of sim.operations.
 *
 * Input layout: the operation (an index into sim.operations), the client,
 * the opts table, then the params (mostly shaped by the operation's rule
 * tree from sim.describe, with arbitrary values, unknown names and other
 * types mixed in).
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
  "local function urlencode(s) return (s:gsub('[^%w%-_%.~]', function(c) return string.format('%%%02X', c:byte()) end)) end\n"
  "local function text_of(v)\n"
  "  if type(v) == 'number' then return string.format('%d', v) end\n"
  "  return type(v) == 'string' and urlencode(v) or tostring(v)\n"
  "end\n"
  /* the operation's top-level fields by name, and the param it takes alone (the id shorthand) */
  "local function fields_of(d)\n"
  "  local by, required = {}, {}\n"
  "  for _, f in ipairs(d.params.fields) do by[f.name] = f; if f.required then required[#required + 1] = f end end\n"
  "  return by, #required == 1 and required[1].place == 'path' and required[1].name or nil\n"
  "end\n"
  /* what was sent is what was given: cjson rounds integers beyond 2^53, and reads null as sim.null */
  "local function same(sent, given, path)\n"
  "  if type(given) == 'table' then\n"
  "    if type(sent) ~= 'table' then fail('%s not sent as a table', path) end\n"
  "    for k, v in pairs(given) do same(sent[k], v, path .. '.' .. tostring(k)) end\n"
  "    for k in pairs(sent) do if given[k] == nil then fail('%s.%s sent, not given', path, tostring(k)) end end\n"
  "  elseif sent ~= given and not (math.type(given) == 'integer' and math.abs(given) > 2^53) then\n"
  "    fail('%s sent as %s, given %s', path, tostring(sent), tostring(given))\n"
  "  end\n"
  "end\n"
  FUZZ_LUA_SHOW
  "local M = {}\n"
  "local function check_err(opname, params, opts, err)\n"
  "  if type(err) ~= 'table' or err.kind ~= 'invalid_params' then fail('bad err: %s', tostring(err and err.kind)) end\n"
  "  if type(err.message) ~= 'string' or not err.message:find(opname, 1, true) then fail('err.message') end\n"
  "  if err.field ~= nil and type(err.field) ~= 'string' then fail('err.field') end\n"
  "  if type(tostring(err)) ~= 'string' then fail('tostring(err)') end\n"
  /* the module never adds the key to an err; the caller's own input may hold it */
  "  if not has_key({ params, opts }) and (has_key(err) or tostring(err):find(KEY, 1, true)) then\n"
  "    fail('the API key is in an err')\n"
  "  end\n"
  "end\n"
  "local function check_common(req, opname, d, opts)\n"
  "  if req.operation ~= opname or req.method ~= d.method then fail('req names the wrong operation: %s', tostring(req.operation)) end\n"
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
  "  local idem = type(opts) == 'table' and opts.idempotency_key or nil\n"
  "  if idem and req.headers['Idempotency-Key'] ~= idem then fail('Idempotency-Key not the caller\\'s') end\n"
  "  if d.resend ~= 'safe' and not req.headers['Idempotency-Key'] then fail('%s without Idempotency-Key', opname) end\n"
  "  if d.resend == 'safe' and not idem and req.headers['Idempotency-Key'] then fail('a safe call with a key') end\n"
  "end\n"
  /* the path with each {x} filled in, then only query params that were given */
  "local function check_url(req, d, by, params)\n"
  "  local path = d.path:gsub('{([%w_]+)}', function(n) return text_of(params[n]) end)\n"
  "  if req.url:sub(1, #BASE + #path) ~= BASE .. path or req.path ~= req.url:sub(#BASE + 1) then\n"
  "    fail('req.url %s is not %s', tostring(req.url), BASE .. path)\n"
  "  end\n"
  "  local query = req.url:sub(#BASE + #path + 1)\n"
  "  if query ~= '' and query:sub(1, 1) ~= '?' then fail('req.url %s: more than the path', req.url) end\n"
  "  for pair in query:sub(2):gmatch('[^&]+') do\n"
  "    local root = pair:match('^([^=%[]+)')\n"
  "    local f = root and by[root:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end)]\n"
  "    if not f or f.place ~= 'query' or params[f.name] == nil then fail('query %q not a given query param', pair) end\n"
  "  end\n"
  "end\n"
  "local function check_body(req, d, by, params)\n"
  "  if d.body ~= 'json' then\n"
  "    if req.body ~= nil and req.body ~= '' then fail('a body for a row without one') end\n"
  "    return\n"
  "  end\n"
  "  local dok, body = pcall(cjson.decode, req.body)\n"
  "  if not dok or type(body) ~= 'table' then fail('req.body is not a JSON object: %q', tostring(req.body)) end\n"
  "  local given = {}\n"
  "  for k, v in pairs(params) do if by[k].place == 'body' then given[k] = v end end\n"
  "  same(body, given, 'body')\n"
  "end\n"
  "function M.request(which, opname, params, opts)\n"
  "  if trace then print('request', show({ which, opname, params, opts })) end\n"
  "  local client = clients[which % #clients + 1]\n"
  "  local ok, req, err = pcall(client.request, client, opname, params, opts)\n"
  "  if not ok then fail('request raised: %s', tostring(req)) end\n"
  "  if req == nil then\n"
  "    if trace then print('refused', tostring(err and err.message)) end\n"
  "    return check_err(opname, params, opts, err)\n"
  "  end\n"
  "  if type(req) ~= 'table' or err ~= nil then fail('req is not a table, or came with an err') end\n"
  "  local d = sim.describe(opname)\n"
  "  local by, alone = fields_of(d)\n"
  "  if type(params) == 'string' and alone then params = { [alone] = params } end\n"
  "  if params == nil then params = {} end\n"
  "  if type(params) ~= 'table' then fail('params of type %s accepted', type(params)) end\n"
  "  for k in pairs(params) do if not by[k] then fail('unknown param %q accepted', tostring(k)) end end\n"
  "  for name, f in pairs(by) do if f.required and params[name] == nil then fail('%s missing, accepted', name) end end\n"
  "  check_common(req, opname, d, opts)\n"
  "  check_url(req, d, by, params)\n"
  "  check_body(req, d, by, params)\n"
  "  if trace then print('accepted', opname) end\n"
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

/* --- params shaped by a rule of sim.describe (the table at `rule`) --- */

static void push_shaped(lua_State *L, struct in *in, int rule, int depth);

/* rule[key] as a string (kept alive by the rule table), or NULL. */
static const char *rule_string(lua_State *L, int rule, const char *key) {
  const char *s;
  lua_getfield(L, rule, key);
  s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

/* rule[key] as a number, or dflt when absent. */
static double rule_number(lua_State *L, int rule, const char *key, double dflt) {
  double d;
  lua_getfield(L, rule, key);
  d = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return d;
}

/* An integer within the rule's bounds, now and then just outside them. */
static void push_shaped_integer(lua_State *L, struct in *in, int rule) {
  double lo = rule_number(L, rule, "min", -128), hi = rule_number(L, rule, "max", lo + 300);
  uint8_t mode = in_u8(in);
  double span = hi - lo + 1, v = lo + (double)(in_u16(in) % (span < 65536 ? (unsigned)span : 65536u));
  if (mode % 16 == 0) v = lo - 1;
  else if (mode % 16 == 1) v = hi + 1;
  lua_pushinteger(L, (lua_Integer)v);
}

/* A UUID whose hex digits come from the input. */
static void push_uuid(lua_State *L, struct in *in) {
  static const char hex[] = "0123456789abcdef";
  char u[37];
  int i;
  for (i = 0; i < 36; i++) u[i] = (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : hex[in_u8(in) % 16];
  u[36] = '\0';
  lua_pushstring(L, u);
}

/* The first four of each list are valid, the rest not. */
static const char *const datetimes[] = {
  "2026-01-31T12:00:00Z", "2026-01-31T12:00:00.123+02:00", "1999-12-31t23:59:60z", "2026-01-31T12:00:00-05:30",
  "2026-02-30T24:00:00Z", "2026-01-31 12:00:00"
};
static const char *const spns[] = {"Acme Mobile 2", "A\tB", "x", "SIM 1", " ", "Acme-Mobile", "\xc3\xa9t\xc3\xa9"};
static const char *const decimals[] = {"2048", "0.5", "10", "1.25", "1.", ".5", "1.2.3", "", "-1"};

#define PICK(list) ((list)[in_u8(in) % (sizeof(list) / sizeof *(list))])

/* Printable ASCII (so mostly valid), its length from the input up to `max`. */
static void push_ascii(lua_State *L, struct in *in, size_t max) {
  char buf[300];
  size_t n = in_u8(in) % (max + 1), i;
  if (n > sizeof buf) n = sizeof buf;
  for (i = 0; i < n; i++) buf[i] = (char)(32 + in_u8(in) % 95);
  lua_pushlstring(L, buf, n);
}

static void push_shaped_string(lua_State *L, struct in *in, int rule) {
  const char *format = rule_string(L, rule, "format");
  lua_getfield(L, rule, "enum");
  if (lua_istable(L, -1)) {
    int n = (int)lua_rawlen(L, -1);
    lua_rawgeti(L, -1, (int)(in_u8(in) % (unsigned)n) + 1);
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (format == NULL) push_ascii(L, in, (size_t)rule_number(L, rule, "max", 40) + 1);
  else if (strcmp(format, "uuid") == 0) push_uuid(L, in);
  else if (strcmp(format, "date-time") == 0) lua_pushstring(L, PICK(datetimes));
  else if (strcmp(format, "spn") == 0) lua_pushstring(L, PICK(spns));
  else lua_pushstring(L, PICK(decimals));
}

/* An object: each field present or not (a required one mostly), and now and then an unknown one. */
static void push_shaped_object(lua_State *L, struct in *in, int rule, int depth) {
  int i, n;
  lua_newtable(L);
  lua_getfield(L, rule, "fields");
  n = (int)lua_rawlen(L, -1);
  for (i = 1; i <= n && in->n > 0; i++) {
    int field, required;
    lua_rawgeti(L, -1, i); /* the object, its fields, this field */
    field = lua_gettop(L);
    lua_getfield(L, field, "required");
    required = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (in_u8(in) % (required ? 16 : 2) != 0) {
      lua_getfield(L, field, "name");
      push_shaped(L, in, field, depth + 1);
      if (lua_isnil(L, -1)) lua_pop(L, 2); /* an arbitrary nil: the field is absent */
      else lua_rawset(L, field - 2);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (in_u8(in) % 8 == 0) {
    push_name(L, in, field_names, sizeof field_names / sizeof *field_names, 19);
    push_value(L, in, 3);
    set_pair(L);
  }
}

static void push_shaped_array(lua_State *L, struct in *in, int rule, int depth) {
  int n = in_u8(in) % 5, i;
  lua_createtable(L, n, 0);
  lua_getfield(L, rule, "items");
  for (i = 1; i <= n; i++) {
    push_shaped(L, in, lua_gettop(L), depth + 1);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); break; } /* an arbitrary nil: the sequence ends */
    lua_rawseti(L, -3, i);
  }
  lua_pop(L, 1);
}

/* A value for the rule: mostly of its kind and shape, sometimes anything. */
static void push_shaped(lua_State *L, struct in *in, int rule, int depth) {
  uint8_t sel = in_u8(in);
  const char *kind = rule_string(L, rule, "kind");
  luaL_checkstack(L, 8, "fuzz: deep");
  if (sel % 16 == 0 || kind == NULL || depth > 8) push_value(L, in, 3);
  else if (sel % 16 == 1) lua_pushlightuserdata(L, NULL); /* sim.null: refused unless nullable */
  else if (strcmp(kind, "integer") == 0) push_shaped_integer(L, in, rule);
  else if (strcmp(kind, "boolean") == 0) lua_pushboolean(L, sel & 32);
  else if (strcmp(kind, "string") == 0) push_shaped_string(L, in, rule);
  else if (strcmp(kind, "object") == 0) push_shaped_object(L, in, rule, depth);
  else if (strcmp(kind, "array") == 0) push_shaped_array(L, in, rule, depth);
  else push_value(L, in, 3);
}

/* The params: shaped by the row's rule tree (at `row`), else an id alone, else anything. */
static void push_params(lua_State *L, struct in *in, int row) {
  uint8_t sel = in_u8(in);
  if (sel % 32 == 0) { push_value(L, in, 2); return; } /* not a table, maybe */
  if (sel % 32 == 1) { push_uuid(L, in); return; }      /* the id shorthand, where there is one */
  lua_getfield(L, row, "params");
  push_shaped_object(L, in, lua_gettop(L), 0);
  lua_remove(L, -2);
}

/* Pushes sim.operations[sel % n + 1] and, below it, its sim.describe row. */
static void push_operation(lua_State *L, uint8_t sel) {
  int n;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "telnyx.sim");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "operations");
  n = (int)lua_rawlen(L, -1);
  lua_rawgeti(L, -1, (int)(sel % (unsigned)n) + 1); /* sim, operations, name */
  lua_getfield(L, -3, "describe");
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1); /* sim, operations, name, row */
  lua_insert(L, -2);
  lua_remove(L, -3);
  lua_remove(L, -3); /* row, name */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct in in = {data, size};
  lua_State *L = fuzz_state(CHECKS, "=request_checks");
  int checks = lua_gettop(L), row, which;

  push_operation(L, in_u8(&in)); /* row, name */
  row = lua_gettop(L) - 1;
  which = in_u8(&in);
  lua_pushinteger(L, which);
  lua_insert(L, -2); /* row, which, name */
  push_opts(L, &in);  /* opts first: the params take the rest of the input */
  push_params(L, &in, row);
  lua_insert(L, -2); /* which, name, params, opts */
  fuzz_check(L, checks, "request", 4);
  lua_close(L);
  return 0;
}
