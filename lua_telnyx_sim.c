/*
 * telnyx.sim -- buy eSIMs and register SIM cards on Telnyx's API v2 from Lua.
 *
 * Reading order:
 *   1. Compatibility     small prefixed shims over the Lua 5.1 .. 5.4 / LuaJIT C APIs
 *   2. Operations        the data: one row per API operation, with its parameter rules
 *   3. Errors            building the `err` table every failure returns
 *   4. Validation        params table -> ok, or a field-naming error (no I/O)
 *   5. Request building  params -> JSON body, URL, headers (no I/O)
 *   6. Response handling status + headers + body -> `res` or `err`, and the retry decision (no I/O)
 *   7. Transport         libcurl: one easy handle per client, callbacks that never touch Lua
 *   8. Client            sim.new, the per-operation methods, the exposed halves
 *                        (client:request, client:interpret, sim.error), close / __gc
 *
 * Sections 4-6 never perform I/O, so any transport (libcurl here, nginx in
 * telnyx.sim.resty) moves bytes while this file keeps every rule once.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#ifdef __linux__
#include <sys/random.h>
#endif

#include <curl/curl.h>

/* The prereq callback is what lets us see, and stop, libcurl re-sending a
 * request on its own: without it a purchase could go out twice. */
#if LIBCURL_VERSION_NUM < 0x075000
#error "telnyx.sim needs libcurl >= 7.80.0 (CURLOPT_PREREQFUNCTION)"
#endif

#include "lua.h"
#include "lauxlib.h"

#define TSIM_VERSION "0.1.0"
#define TSIM_CLIENT_MT "telnyx.sim.client"
#define TSIM_ERROR_MT "telnyx.sim.error"
#define DEFAULT_BASE_URL "https://api.telnyx.com/v2"
#define DEFAULT_TIMEOUT 60.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_RETRIES 2
#define MAX_RETRIES_LIMIT 10
#define DEFAULT_MAX_RESPONSE_BYTES (16u * 1024u * 1024u)
#define MAX_SAFE_INTEGER 9007199254740991.0 /* 2^53 - 1: exact in a double */

/* ===================================================================== */
/* 1. Compatibility                                                       */
/* ===================================================================== */

#if LUA_VERSION_NUM >= 502
#define compat_rawlen(L, i) lua_rawlen((L), (i))
#else
#define compat_rawlen(L, i) lua_objlen((L), (i))
#endif

static void compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

/* t[name] without metamethods: params and options are read raw, so an
 * __index cannot slip in a value that validation never saw. */
static void compat_rawgetfield(lua_State *L, int idx, const char *name) {
  lua_pushstring(L, name);
  lua_rawget(L, idx < 0 && idx > LUA_REGISTRYINDEX ? idx - 1 : idx);
}

/* Integral numbers: Lua integers on 5.3+, where the distinction exists. */
static void compat_pushinteger_value(lua_State *L, double d) {
#if LUA_VERSION_NUM >= 503
  lua_pushinteger(L, (lua_Integer)d);
#else
  lua_pushnumber(L, d);
#endif
}

static int compat_isfloat(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 503
  return lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx);
#else
  (void)L; (void)idx;
  return 0; /* every number is a double; nothing to convert */
#endif
}

/* ===================================================================== */
/* 2. Operations: the data                                                */
/* ===================================================================== */

enum param_kind {
  PK_COUNT,        /* integer >= 1 */
  PK_STRING,       /* non-empty UTF-8 string */
  PK_STRING_LIST,  /* array of UTF-8 strings */
  PK_UUID,         /* 8-4-4-4-12 hex */
  PK_ENUM,         /* one of `choices` */
  PK_SPN,          /* letters, digits and whitespace: a whitelabel SPN */
  PK_BOOLEAN
};

/* Where a parameter travels: the JSON body, a {name} in the path, or the
 * query string (where names may be filter[...] / page[...] forms). */
enum param_place { IN_BODY, IN_PATH, IN_QUERY };

#define P_REQUIRED 1u  /* must be present */
#define P_NONEMPTY 2u  /* lists: at least one element, and no empty string in it */

struct param_rule {
  const char *name;
  enum param_kind kind;
  enum param_place place;
  unsigned flags;
  const char *const *choices; /* PK_ENUM only, NULL-terminated */
};

/* Whether re-sending a request that may have reached the server is harmless. */
enum resend_safety {
  RESEND_NEVER, /* spends money: a second copy may buy twice */
  RESEND_SAFE   /* idempotent on the server: a second copy changes nothing */
};

/* What `data` holds in a success: many SIM cards, or one. */
enum result_shape { DATA_LIST, DATA_ONE };

struct operation {
  const char *name;   /* the client method */
  const char *method; /* HTTP method */
  const char *path;   /* below base_url; {name} is an IN_PATH param */
  enum resend_safety resend;
  enum result_shape result;
  const struct param_rule *params; /* terminated by a row with name == NULL */
};

static const char *const sim_statuses[] = {"enabled", "disabled", "standby", NULL};

static const struct param_rule purchase_esims_params[] = {
  {"amount", PK_COUNT, IN_BODY, P_REQUIRED, NULL},
  {"sim_card_group_id", PK_UUID, IN_BODY, 0, NULL},
  {"tags", PK_STRING_LIST, IN_BODY, 0, NULL},
  {"product", PK_STRING, IN_BODY, 0, NULL},
  {"whitelabel_name", PK_SPN, IN_BODY, 0, NULL},
  {"status", PK_ENUM, IN_BODY, 0, sim_statuses},
  {NULL, PK_STRING, IN_BODY, 0, NULL}
};

static const struct param_rule register_sim_cards_params[] = {
  {"registration_codes", PK_STRING_LIST, IN_BODY, P_REQUIRED | P_NONEMPTY, NULL},
  {"sim_card_group_id", PK_UUID, IN_BODY, 0, NULL},
  {"tags", PK_STRING_LIST, IN_BODY, 0, NULL},
  {"status", PK_ENUM, IN_BODY, 0, sim_statuses},
  {NULL, PK_STRING, IN_BODY, 0, NULL}
};

static const struct param_rule get_sim_card_params[] = {
  {"id", PK_UUID, IN_PATH, P_REQUIRED, NULL},
  {"include_sim_card_group", PK_BOOLEAN, IN_QUERY, 0, NULL},
  {"include_pin_puk_codes", PK_BOOLEAN, IN_QUERY, 0, NULL},
  {NULL, PK_STRING, IN_BODY, 0, NULL}
};

static const struct operation operations[] = {
  {"purchase_esims", "POST", "/actions/purchase/esims", RESEND_NEVER, DATA_LIST, purchase_esims_params},
  {"register_sim_cards", "POST", "/actions/register/sim_cards", RESEND_SAFE, DATA_LIST,
   register_sim_cards_params},
  {"get_sim_card", "GET", "/sim_cards/{id}", RESEND_SAFE, DATA_ONE, get_sim_card_params},
};

#define N_OPERATIONS (sizeof operations / sizeof operations[0])

/* ===================================================================== */
/* 3. Errors                                                              */
/* ===================================================================== */

/* Pushes an err table {kind=, message=}; callers add fields to it. */
static void push_error(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 8);
  luaL_getmetatable(L, TSIM_ERROR_MT);
  lua_setmetatable(L, -2);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  lua_newtable(L); /* the API's error list, when a response brings one */
  lua_setfield(L, -2, "errors");
}

static void set_string_field(lua_State *L, const char *key, const char *value) {
  if (value == NULL || *value == '\0') return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_int_field(lua_State *L, const char *key, long value) {
  lua_pushinteger(L, (lua_Integer)value);
  lua_setfield(L, -2, key);
}

static void set_bool_field(lua_State *L, const char *key, int value) {
  lua_pushboolean(L, value);
  lua_setfield(L, -2, key);
}

/* Pushes "a, b, c" (each in `quote` marks) for a NULL-terminated name list. */
static void push_joined(lua_State *L, const char *const *names, const char *quote) {
  luaL_Buffer b;
  const char *const *n;
  luaL_buffinit(L, &b);
  for (n = names; *n != NULL; n++) {
    if (n != names) luaL_addstring(&b, ", ");
    luaL_addstring(&b, quote);
    luaL_addstring(&b, *n);
    luaL_addstring(&b, quote);
  }
  luaL_pushresult(&b);
}

/* Returns nil, err (err already on top). */
static int return_error(lua_State *L) {
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* tostring(err): "telnyx.sim: <kind> [<status>]: <message> (request_id ...)". */
static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "request_id");
  lua_pushliteral(L, "telnyx.sim: ");
  if (lua_isstring(L, 2)) lua_pushvalue(L, 2); else lua_pushliteral(L, "error");
  if (lua_isstring(L, 3)) {
    lua_pushliteral(L, " (request_id ");
    lua_pushvalue(L, 3);
    lua_pushliteral(L, ")");
    lua_concat(L, 5);
  } else {
    lua_concat(L, 2);
  }
  return 1;
}

/* ===================================================================== */
/* 4. Validation (no I/O)                                                 */
/* ===================================================================== */

static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len, k;
    unsigned cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (i + len > n) return 0;
    for (k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += len;
  }
  return 1;
}

static int is_uuid(const char *s, size_t n) {
  size_t i;
  if (n != 36) return 0;
  for (i = 0; i < n; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!isxdigit((unsigned char)s[i])) {
      return 0;
    }
  }
  return 1;
}

static int is_spn(const char *s, size_t n) {
  size_t i, letters = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isalnum(c)) letters++;
    else if (c != ' ' && c != '\t') return 0;
  }
  return letters > 0;
}

/* The rule a kind of parameter obeys, as the error message states it. */
static const char *rule_text(const struct param_rule *r) {
  switch (r->kind) {
    case PK_COUNT: return "must be an integer >= 1";
    case PK_STRING: return "must be a non-empty UTF-8 string";
    case PK_STRING_LIST:
      return (r->flags & P_NONEMPTY) ? "must be a non-empty array of non-empty strings"
                                     : "must be an array of strings";
    case PK_UUID: return "must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)";
    case PK_ENUM: return "must be one of";
    case PK_SPN: return "must contain only letters, digits and whitespace (and at least one letter or digit)";
    case PK_BOOLEAN: return "must be a boolean";
  }
  return "is invalid";
}

/* Pushes an invalid_params error for `field`; `detail` says what was wrong. */
static void push_param_error(lua_State *L, const struct operation *op, const char *field,
                             const char *rule, const char *detail) {
  push_error(L, "invalid_params", "%s: '%s' %s (%s)", op->name, field, rule, detail);
  set_string_field(L, "field", field);
}

static int push_enum_error(lua_State *L, const struct operation *op, const struct param_rule *r,
                           const char *detail) {
  push_joined(L, r->choices, "\"");
  push_error(L, "invalid_params", "%s: '%s' must be one of %s (%s)", op->name, r->name,
             lua_tostring(L, -1), detail);
  set_string_field(L, "field", r->name);
  lua_remove(L, -2);
  return 0;
}

/* Describes the value at idx for an error message: its type, and a number's
 * value, but never a string's bytes (they may be secrets or binary). */
static const char *describe_value(lua_State *L, int idx, char *buf, size_t size) {
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER) {
    double d = (double)lua_tonumber(L, idx);
    if (d != d) snprintf(buf, size, "got NaN");
    else snprintf(buf, size, "got number %.17g", d);
    return buf;
  }
  if (t == LUA_TSTRING) {
    snprintf(buf, size, "got a string of %lu bytes", (unsigned long)compat_rawlen(L, idx));
    return buf;
  }
  snprintf(buf, size, "got %s", lua_typename(L, t));
  return buf;
}

/* Array check: keys exactly 1..n. Returns n, or -1 with *bad describing why. */
static long array_length(lua_State *L, int idx, const char **bad) {
  long count = 0;
  size_t n = compat_rawlen(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    count++;
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      *bad = "got a table with non-integer keys";
      return -1;
    }
  }
  if ((size_t)count != n) {
    *bad = "got a table with holes or non-sequence keys";
    return -1;
  }
  return count;
}

/* Validates the value at idx against rule r. On failure pushes err, returns 0. */
static int check_value(lua_State *L, const struct operation *op, const struct param_rule *r,
                       int idx) {
  char what[96];
  int t = lua_type(L, idx);
  switch (r->kind) {
    case PK_COUNT: {
      double d;
      if (t != LUA_TNUMBER) break;
      d = (double)lua_tonumber(L, idx);
      if (d != d || d < 1 || d > MAX_SAFE_INTEGER || floor(d) != d) break;
      return 1;
    }
    case PK_STRING: case PK_UUID: case PK_ENUM: case PK_SPN: {
      size_t n;
      const char *s;
      const char *const *c;
      if (t != LUA_TSTRING) break;
      s = lua_tolstring(L, idx, &n);
      if (r->kind == PK_UUID) { if (is_uuid(s, n)) return 1; break; }
      if (r->kind == PK_SPN) { if (is_spn(s, n)) return 1; break; }
      if (r->kind == PK_STRING) {
        if (n > 0 && utf8_valid((const unsigned char *)s, n)) return 1;
        break;
      }
      for (c = r->choices; *c != NULL; c++)
        if (strlen(*c) == n && memcmp(*c, s, n) == 0) return 1;
      snprintf(what, sizeof what, "got \"%.24s\"", utf8_valid((const unsigned char *)s, n) ? s : "?");
      return push_enum_error(L, op, r, what);
    }
    case PK_BOOLEAN:
      if (t == LUA_TBOOLEAN) return 1;
      break;
    case PK_STRING_LIST: {
      const char *bad = NULL;
      long n, i;
      if (t != LUA_TTABLE) break;
      n = array_length(L, idx, &bad);
      if (n < 0) { push_param_error(L, op, r->name, rule_text(r), bad); return 0; }
      if (n == 0 && (r->flags & P_NONEMPTY)) {
        push_param_error(L, op, r->name, rule_text(r), "got an empty array");
        return 0;
      }
      for (i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        lua_rawgeti(L, idx, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
          char got[48];
          snprintf(what, sizeof what, "item %ld: %s", i, describe_value(L, -1, got, sizeof got));
          lua_pop(L, 1);
          push_param_error(L, op, r->name, rule_text(r), what);
          return 0;
        }
        s = lua_tolstring(L, -1, &len);
        if (!utf8_valid((const unsigned char *)s, len) || (len == 0 && (r->flags & P_NONEMPTY))) {
          snprintf(what, sizeof what, "item %ld is %s", i, len == 0 ? "empty" : "not valid UTF-8");
          lua_pop(L, 1);
          push_param_error(L, op, r->name, rule_text(r), what);
          return 0;
        }
        lua_pop(L, 1);
      }
      return 1;
    }
  }
  if (r->kind == PK_ENUM) return push_enum_error(L, op, r, describe_value(L, idx, what, sizeof what));
  push_param_error(L, op, r->name, rule_text(r), describe_value(L, idx, what, sizeof what));
  return 0;
}

static const struct param_rule *find_rule(const struct operation *op, const char *name) {
  const struct param_rule *r;
  for (r = op->params; r->name != NULL; r++)
    if (strcmp(r->name, name) == 0) return r;
  return NULL;
}

static void push_unknown_field_error(lua_State *L, const struct operation *op, const char *name) {
  luaL_Buffer b;
  const struct param_rule *r;
  luaL_buffinit(L, &b);
  for (r = op->params; r->name != NULL; r++) {
    if (r != op->params) luaL_addstring(&b, ", ");
    luaL_addstring(&b, r->name);
  }
  luaL_pushresult(&b);
  push_error(L, "invalid_params", "%s: unknown field '%s' (known fields: %s)", op->name, name,
             lua_tostring(L, -1));
  set_string_field(L, "field", name);
  lua_remove(L, -2);
}

/* Validates the params table at idx. On failure pushes err and returns 0. */
static int validate_params(lua_State *L, const struct operation *op, int idx) {
  const struct param_rule *r;
  if (lua_type(L, idx) != LUA_TTABLE) {
    char what[64];
    push_error(L, "invalid_params", "%s: params must be a table (%s)", op->name,
               describe_value(L, idx, what, sizeof what));
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const char *name;
    if (lua_type(L, -2) != LUA_TSTRING) {
      char what[64];
      push_error(L, "invalid_params", "%s: params must have only string keys (%s key)", op->name,
                 describe_value(L, -2, what, sizeof what));
      lua_replace(L, -3);
      lua_pop(L, 1);
      return 0;
    }
    name = lua_tostring(L, -2);
    r = strlen(name) == compat_rawlen(L, -2) ? find_rule(op, name) : NULL; /* "tags\0x" is no "tags" */
    if (r == NULL) {
      push_unknown_field_error(L, op, name);
      lua_replace(L, -3);
      lua_pop(L, 1);
      return 0;
    }
    if (!check_value(L, op, r, lua_gettop(L))) {
      lua_replace(L, -3);
      lua_pop(L, 1);
      return 0;
    }
    lua_pop(L, 1);
  }
  for (r = op->params; r->name != NULL; r++) {
    if (!(r->flags & P_REQUIRED)) continue;
    compat_rawgetfield(L, idx, r->name);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      push_param_error(L, op, r->name, "is required", "missing");
      return 0;
    }
    lua_pop(L, 1);
  }
  return 1;
}


/* ===================================================================== */
/* 5. Request building (no I/O)                                           */
/* ===================================================================== */

/* A growable byte buffer owned by a client, so a Lua error that unwinds
 * mid-build cannot leak it: the client's __gc frees it. */
struct strbuf {
  char *data;
  size_t len, cap;
};

static int strbuf_reserve(struct strbuf *b, size_t extra) {
  size_t need = b->len + extra, cap;
  char *p;
  if (need < b->len) return 0; /* overflow */
  if (need <= b->cap) return 1;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = (char *)realloc(b->data, cap);
  if (p == NULL) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

static void strbuf_free(struct strbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Appends or raises "not enough memory" (safe: the buffer is owned). */
static void sb_add(lua_State *L, struct strbuf *b, const char *s, size_t n) {
  if (!strbuf_reserve(b, n)) luaL_error(L, "telnyx.sim: not enough memory");
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

#define sb_addlit(L, b, lit) sb_add((L), (b), (lit), sizeof(lit) - 1)

static void sb_addstr(lua_State *L, struct strbuf *b, const char *s) { sb_add(L, b, s, strlen(s)); }

static void sb_add_json_string(lua_State *L, struct strbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t i, start = 0;
  sb_addlit(L, b, "\"");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    sb_add(L, b, s + start, i - start);
    start = i + 1;
    switch (c) {
      case '"': sb_addlit(L, b, "\\\""); break;
      case '\\': sb_addlit(L, b, "\\\\"); break;
      case '\n': sb_addlit(L, b, "\\n"); break;
      case '\r': sb_addlit(L, b, "\\r"); break;
      case '\t': sb_addlit(L, b, "\\t"); break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        sb_add(L, b, esc, sizeof esc);
      }
    }
  }
  sb_add(L, b, s + start, n - start);
  sb_addlit(L, b, "\"");
}

/* Appends the validated value at the top of the stack as JSON. */
static void sb_add_json_value(lua_State *L, struct strbuf *b, const struct param_rule *r) {
  if (r->kind == PK_COUNT) {
    char num[32];
    int n = snprintf(num, sizeof num, "%.0f", (double)lua_tonumber(L, -1));
    sb_add(L, b, num, (size_t)n);
  } else if (r->kind == PK_BOOLEAN) {
    sb_addstr(L, b, lua_toboolean(L, -1) ? "true" : "false");
  } else if (r->kind == PK_STRING_LIST) {
    size_t i, n = compat_rawlen(L, -1);
    sb_addlit(L, b, "[");
    for (i = 1; i <= n; i++) {
      size_t len;
      const char *s;
      if (i > 1) sb_addlit(L, b, ",");
      lua_rawgeti(L, -1, (int)i);
      s = lua_tolstring(L, -1, &len);
      sb_add_json_string(L, b, s, len);
      lua_pop(L, 1);
    }
    sb_addlit(L, b, "]"); /* an empty list stays [] */
  } else {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    sb_add_json_string(L, b, s, len);
  }
}

/* Builds the JSON body of validated params at idx into b: only the fields
 * given, in the rule table's order, so equal params give equal bytes. */
static void build_json_body(lua_State *L, struct strbuf *b, const struct operation *op, int idx) {
  const struct param_rule *r;
  int first = 1;
  b->len = 0;
  sb_addlit(L, b, "{");
  for (r = op->params; r->name != NULL; r++) {
    if (r->place != IN_BODY) continue;
    compat_rawgetfield(L, idx, r->name);
    if (!lua_isnil(L, -1)) {
      if (!first) sb_addlit(L, b, ",");
      first = 0;
      sb_add_json_string(L, b, r->name, strlen(r->name));
      sb_addlit(L, b, ":");
      sb_add_json_value(L, b, r);
    }
    lua_pop(L, 1);
  }
  sb_addlit(L, b, "}");
}

static int has_body(const struct operation *op) {
  const struct param_rule *r;
  for (r = op->params; r->name != NULL; r++)
    if (r->place == IN_BODY) return 1;
  return 0;
}

static void sb_add_urlencoded(lua_State *L, struct strbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      sb_add(L, b, (const char *)&s[i], 1);
    } else {
      const char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
      sb_add(L, b, esc, 3);
    }
  }
}

/* A validated path or query value as URL text (booleans as true/false). */
static void sb_add_url_value(lua_State *L, struct strbuf *b, const struct param_rule *r) {
  size_t n;
  const char *v;
  if (r->kind == PK_BOOLEAN) {
    sb_addstr(L, b, lua_toboolean(L, -1) ? "true" : "false");
    return;
  }
  v = lua_tolstring(L, -1, &n);
  sb_add_urlencoded(L, b, v, n);
}

/* base_url + path, with {name} filled from IN_PATH params, then the IN_QUERY
 * params given, as name=value in the rule table's order. */
static void build_url(lua_State *L, struct strbuf *b, const char *base_url,
                      const struct operation *op, int idx) {
  const char *p = op->path;
  const struct param_rule *r;
  char sep = '?';
  b->len = 0;
  sb_addstr(L, b, base_url);
  while (*p) {
    const char *open = strchr(p, '{'), *close;
    if (open == NULL || (close = strchr(open, '}')) == NULL) { sb_addstr(L, b, p); break; }
    sb_add(L, b, p, (size_t)(open - p));
    for (r = op->params; r->name != NULL; r++) { /* required, so validated and present */
      size_t len = (size_t)(close - open - 1);
      if (r->place != IN_PATH || strlen(r->name) != len || strncmp(r->name, open + 1, len) != 0) continue;
      compat_rawgetfield(L, idx, r->name);
      sb_add_url_value(L, b, r);
      lua_pop(L, 1);
    }
    p = close + 1;
  }
  for (r = op->params; r->name != NULL; r++) {
    if (r->place != IN_QUERY) continue;
    compat_rawgetfield(L, idx, r->name);
    if (!lua_isnil(L, -1)) {
      sb_add(L, b, &sep, 1);
      sep = '&';
      sb_add_urlencoded(L, b, r->name, strlen(r->name));
      sb_addlit(L, b, "=");
      sb_add_url_value(L, b, r);
    }
    lua_pop(L, 1);
  }
}

/* Random bytes from the kernel: getrandom where there is one. */
static int random_bytes(unsigned char *out, size_t n) {
  size_t got = 0;
#ifdef __linux__
  while (got < n) {
    ssize_t r = getrandom(out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  if (got == n) return 1;
#endif
  {
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    while (got < n) {
      ssize_t r = read(fd, out + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    close(fd);
  }
  return got == n;
}

/* A client draws its Idempotency-Keys from a pool: one system call per
 * 32 purchases rather than one per purchase. */
struct random_pool {
  unsigned char bytes[512];
  size_t left;
  pid_t pid; /* a forked child must not reuse its parent's keys */
};

/* A random UUIDv4. */
static int format_uuid4(struct random_pool *pool, char out[37]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char u[16];
  size_t i, o = 0;
  if (pool->left < sizeof u || pool->pid != getpid()) {
    if (!random_bytes(pool->bytes, sizeof pool->bytes)) return 0;
    pool->left = sizeof pool->bytes;
    pool->pid = getpid();
  }
  pool->left -= sizeof u;
  memcpy(u, pool->bytes + pool->left, sizeof u);
  memset(pool->bytes + pool->left, 0, sizeof u); /* a used key is not kept */
  u[6] = (unsigned char)((u[6] & 0x0F) | 0x40);
  u[8] = (unsigned char)((u[8] & 0x3F) | 0x80);
  for (i = 0; i < sizeof u; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[u[i] >> 4];
    out[o++] = hex[u[i] & 15];
  }
  out[o] = '\0';
  return 1;
}

/* No CR, LF or NUL: they would let a value forge further header lines. */
static int header_safe(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

static int header_name_ok(const char *s, size_t n) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL) || c == '\0') return 0;
  }
  return 1;
}

/* Headers the module owns: a caller's copy would be sent twice or forge auth. */
static const char *const reserved_headers[] = {
  "authorization", "content-type", "content-length", "accept", "user-agent", "host",
  "idempotency-key", "expect", "transfer-encoding", "connection", NULL
};

static int header_reserved(const char *name) {
  const char *const *r;
  for (r = reserved_headers; *r != NULL; r++) {
    size_t i, n = strlen(*r);
    if (strlen(name) != n) continue;
    for (i = 0; i < n; i++)
      if (tolower((unsigned char)name[i]) != (*r)[i]) break;
    if (i == n) return 1;
  }
  return 0;
}

/* ===================================================================== */
/* 6. Response handling (no I/O)                                          */
/* ===================================================================== */

/* How an attempt ended, as far as the transport can tell. */
enum outcome {
  OUT_RESPONSE,       /* a whole HTTP response arrived */
  OUT_NOT_SENT,       /* failed before the request was handed to a connection */
  OUT_TIMEOUT,        /* timed out after the request may have reached the server */
  OUT_BROKEN,         /* connection failed after the request may have reached the server */
  OUT_TOO_LARGE,      /* the body passed max_response_bytes */
  OUT_NO_MEMORY
};

/* The few response headers the rules read. */
struct response_meta {
  char request_id[128];
  char location[256];
  char content_type[96];
  double retry_after;  /* seconds from retry-after-ms or Retry-After; < 0: none */
  int have_retry_ms;   /* retry-after-ms wins over Retry-After */
  int should_retry;    /* x-should-retry: -1 absent, 0 false, 1 true */
};

/* One attempt as the rules see it, whichever transport produced it. */
struct attempt {
  enum outcome outcome;
  int timed_out;       /* OUT_NOT_SENT: it was the connect that timed out */
  int permanent;       /* OUT_NOT_SENT: trying again cannot help (TLS trust, bad URL) */
  long status;
  const char *body;
  size_t body_len;
  int body_idx;        /* the body as a Lua string at this stack index, or 0 */
  const char *transport_message; /* what the transport said went wrong */
  struct response_meta meta;
};

/* The verdict on a failed attempt. */
struct retry_verdict {
  int retryable;  /* re-sending as-is cannot duplicate a purchase (or the caller accepted that) */
  double delay;   /* seconds to wait first */
};

static void meta_reset(struct response_meta *m) {
  m->request_id[0] = m->location[0] = m->content_type[0] = '\0';
  m->retry_after = -1;
  m->have_retry_ms = 0;
  m->should_retry = -1;
}

static int name_is(const char *name, size_t n, const char *lower) {
  size_t i;
  if (strlen(lower) != n) return 0;
  for (i = 0; i < n; i++)
    if (tolower((unsigned char)name[i]) != lower[i]) return 0;
  return 1;
}

/* Keeps a header value only when it fits whole: a cut copy could hold part
 * of an echoed API key that redaction would then miss. */
static void keep_header_value(char *dst, size_t size, const char *v, size_t n) {
  if (n >= size) n = 0;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

/* Parses a non-negative decimal number; returns -1 when v is not one. */
static double parse_seconds(const char *v, size_t n) {
  char tmp[32], *end;
  double d;
  if (n == 0 || n >= sizeof tmp) return -1;
  memcpy(tmp, v, n);
  tmp[n] = '\0';
  if (strspn(tmp, "0123456789.") != n) return -1; /* no hex, exponent, sign or inf */
  d = strtod(tmp, &end);
  if (*end != '\0' || d != d) return -1;
  return d;
}

/* Notes one response header (value already trimmed). */
static void meta_note(struct response_meta *m, const char *name, size_t nlen, const char *v,
                      size_t vlen) {
  if (name_is(name, nlen, "x-request-id")) {
    keep_header_value(m->request_id, sizeof m->request_id, v, vlen);
  } else if (name_is(name, nlen, "location")) {
    keep_header_value(m->location, sizeof m->location, v, vlen);
  } else if (name_is(name, nlen, "content-type")) {
    keep_header_value(m->content_type, sizeof m->content_type, v, vlen);
  } else if (name_is(name, nlen, "x-should-retry")) {
    if (vlen == 4 && strncmp(v, "true", 4) == 0) m->should_retry = 1;
    else if (vlen == 5 && strncmp(v, "false", 5) == 0) m->should_retry = 0;
  } else if (name_is(name, nlen, "retry-after-ms")) {
    double ms = parse_seconds(v, vlen);
    if (ms >= 0) { m->retry_after = ms / 1000.0; m->have_retry_ms = 1; }
  } else if (name_is(name, nlen, "retry-after") && !m->have_retry_ms) {
    double s = parse_seconds(v, vlen);
    if (s < 0 && vlen < 64) { /* an HTTP date */
      char date[64];
      time_t when;
      keep_header_value(date, sizeof date, v, vlen);
      when = curl_getdate(date, NULL);
      if (when != (time_t)-1) s = difftime(when, time(NULL));
    }
    m->retry_after = s;
  }
}

/* Back-off before retry number `attempt` (1-based): the server's word when
 * it is sane, else 0.5 s doubling to 8 s, less up to 25 % jitter. */
static double retry_delay(const struct response_meta *m, int attempt) {
  double base;
  unsigned char r = 0;
  if (m->retry_after > 0 && m->retry_after <= 60) return m->retry_after;
  base = 0.5 * pow(2.0, attempt - 1);
  if (base > 8) base = 8;
  (void)random_bytes(&r, 1);
  return base * (1.0 - 0.25 * (r / 255.0));
}

/* Decides whether the failed attempt may be re-sent as-is. */
static struct retry_verdict judge_retry(const struct operation *op, const struct attempt *a,
                                        int resend_ok, int attempt) {
  struct retry_verdict v = {0, 0};
  int may_have_arrived = 1, transient = 0, resend_safe;
  switch (a->outcome) {
    case OUT_NOT_SENT: may_have_arrived = 0; transient = !a->permanent; break;
    case OUT_TIMEOUT: case OUT_BROKEN: transient = 1; break;
    case OUT_RESPONSE:
      if (a->status < 400) return v; /* done (or redirected): never sent again */
      if (a->status < 500) {         /* refused: nothing was done */
        may_have_arrived = 0;
        transient = a->status == 408 || a->status == 429;
      } else {
        transient = 1;
      }
      break;
    default: return v;
  }
  resend_safe = !may_have_arrived || op->resend == RESEND_SAFE || resend_ok;
  v.retryable = transient && resend_safe;
  /* x-should-retry decides, but cannot make a possible second purchase safe */
  if (a->outcome == OUT_RESPONSE && a->meta.should_retry >= 0)
    v.retryable = a->meta.should_retry && resend_safe;
  if (v.retryable) v.delay = retry_delay(&a->meta, attempt);
  return v;
}

/* Turns cjson.null into absent fields and integral floats into integers,
 * walking the decoded tree once: one type test per value, so strings and
 * booleans cost nothing more. */
static void normalize(lua_State *L, int t) {
  luaL_checkstack(L, 4, "telnyx.sim: response nested too deeply");
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    switch (lua_type(L, -1)) {
      case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, -1) == NULL) { /* cjson.null */
          lua_pop(L, 1);
          lua_pushvalue(L, -1);
          lua_pushnil(L);
          lua_rawset(L, t); /* clearing a visited field is allowed during lua_next */
          continue;
        }
        break;
      case LUA_TTABLE:
        normalize(L, lua_gettop(L));
        break;
      case LUA_TNUMBER:
        if (compat_isfloat(L, -1)) {
          double d = (double)lua_tonumber(L, -1);
          if (floor(d) == d && fabs(d) <= MAX_SAFE_INTEGER) {
            lua_pushvalue(L, -2);
            compat_pushinteger_value(L, d);
            lua_rawset(L, t);
          }
        }
        break;
      default:
        break;
    }
    lua_pop(L, 1);
  }
}

static int body_is_object(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
  return i < n && s[i] == '{';
}

/* Decodes a JSON object body with the private cjson decode at `decode_idx`.
 * Pushes the table and returns 1, or pushes a reason string and returns 0. */
static int decode_object(lua_State *L, int decode_idx, const char *body, size_t len, int body_idx) {
  if (!body_is_object(body, len)) {
    lua_pushstring(L, len == 0 ? "empty body" : "body is not a JSON object");
    return 0;
  }
  lua_pushvalue(L, decode_idx);
  if (body_idx != 0) lua_pushvalue(L, body_idx); /* already a Lua string: no second copy */
  else lua_pushlstring(L, body, len);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    if (!lua_isstring(L, -1)) { lua_pop(L, 1); lua_pushstring(L, "invalid JSON"); }
    return 0;
  }
  if (lua_type(L, -1) != LUA_TTABLE) { /* cannot happen after the '{' check */
    lua_pop(L, 1);
    lua_pushstring(L, "body is not a JSON object");
    return 0;
  }
  normalize(L, lua_gettop(L));
  return 1;
}

/* Makes env[key] an array: absent becomes {}, anything else fails. */
static int ensure_array_field(lua_State *L, int env, const char *key) {
  const char *bad = NULL;
  lua_getfield(L, env, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_setfield(L, env, key);
    return 1;
  }
  if (lua_type(L, -1) != LUA_TTABLE || array_length(L, lua_gettop(L), &bad) < 0) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

/* A success's shape: `errors` an array (absent: {}); `data` an array of SIM
 * cards (absent: {}) or, for single-card operations, one SIM card object.
 * Returns NULL when fine, else what is wrong. */
static const char *result_problem(lua_State *L, const struct operation *op, int env) {
  int is_table;
  if (!ensure_array_field(L, env, "errors")) return "'errors' is not an array";
  if (op->result == DATA_LIST) return ensure_array_field(L, env, "data") ? NULL : "'data' is not an array";
  lua_getfield(L, env, "data");
  is_table = lua_type(L, -1) == LUA_TTABLE && compat_rawlen(L, -1) == 0; /* an object, not a list */
  lua_pop(L, 1);
  return is_table ? NULL : "'data' is not a SIM card object";
}

/* "Invalid parameter: amount is required" from the API's first error. */
static void push_api_error_summary(lua_State *L, int errors) {
  size_t n = compat_rawlen(L, errors);
  int top = lua_gettop(L), parts = 0;
  if (n > 0) {
    lua_rawgeti(L, errors, 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
      int e = lua_gettop(L);
      lua_getfield(L, e, "title");
      if (lua_type(L, -1) == LUA_TSTRING) parts++; else lua_pop(L, 1);
      lua_getfield(L, e, "detail");
      if (lua_type(L, -1) == LUA_TSTRING) {
        if (parts++) { lua_pushliteral(L, ": "); lua_insert(L, -2); }
      } else {
        lua_pop(L, 1);
      }
    }
    if (n > 1) lua_pushfstring(L, " (+%d more)", (int)(n > 1000000 ? 1000000 : n - 1));
  }
  lua_concat(L, lua_gettop(L) - top - (n > 0 ? 1 : 0)); /* the parts, or "" when none */
  if (n > 0) lua_remove(L, top + 1);                    /* the first error's table */
}

static const char *uncertain_hint(const struct operation *op, int resend_ok) {
  if (op->resend == RESEND_SAFE || resend_ok) return "";
  return "; it may have gone through: check the SIM card list before trying again";
}

/* Pushes err for an attempt that ended with an HTTP response that is not a
 * success. Decodes the API's error list when the body has one. */
static void push_http_error(lua_State *L, int decode_idx, const struct operation *op,
                            const struct attempt *a, int may_have_arrived, int resend_ok) {
  int have = decode_object(L, decode_idx, a->body, a->body_len, a->body_idx);
  int errors;
  if (have && ensure_array_field(L, lua_gettop(L), "errors")) {
    lua_getfield(L, -1, "errors");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  errors = lua_gettop(L);
  if (a->status >= 300 && a->status < 400) {
    push_error(L, "http", "%s: HTTP %d: redirects are not followed (Location: %s)", op->name,
               (int)a->status, a->meta.location[0] ? a->meta.location : "none");
  } else if (compat_rawlen(L, errors) > 0) {
    push_api_error_summary(L, errors);
    push_error(L, "http", "%s: HTTP %d: %s%s", op->name, (int)a->status, lua_tostring(L, -1),
               may_have_arrived ? uncertain_hint(op, resend_ok) : "");
    lua_remove(L, -2);
  } else {
    push_error(L, "http", "%s: HTTP %d%s%s%s%s", op->name, (int)a->status,
               a->body_len ? " with a non-JSON body" : " with no body",
               a->meta.content_type[0] ? " (" : "", a->meta.content_type,
               a->meta.content_type[0] ? ")" : "");
    if (may_have_arrived && *uncertain_hint(op, resend_ok)) {
      lua_getfield(L, -1, "message");
      lua_pushstring(L, uncertain_hint(op, resend_ok));
      lua_concat(L, 2);
      lua_setfield(L, -2, "message");
    }
  }
  lua_pushvalue(L, errors);
  lua_setfield(L, -2, "errors");
  set_int_field(L, "status", a->status);
  lua_remove(L, errors);
}

/*
 * The response half: pushes `res` and returns 1, or pushes `err` (with
 * retryable and, when retryable, retry_after) and returns 0.
 */
static int interpret(lua_State *L, int decode_idx, const struct operation *op,
                     const struct attempt *a, int resend_ok, int attempt,
                     struct retry_verdict *verdict) {
  *verdict = judge_retry(op, a, resend_ok, attempt);
  switch (a->outcome) {
    case OUT_NOT_SENT:
      push_error(L, a->timed_out ? "timeout" : "connection", "%s: %s before the request was sent: %s",
                 op->name, a->timed_out ? "timed out connecting" : "could not connect",
                 a->transport_message ? a->transport_message : "unknown error");
      break;
    case OUT_TIMEOUT:
      push_error(L, "timeout", "%s: timed out after the request was sent%s", op->name,
                 uncertain_hint(op, resend_ok));
      break;
    case OUT_BROKEN:
      push_error(L, "connection", "%s: connection failed after the request was sent (%s)%s",
                 op->name, a->transport_message ? a->transport_message : "unknown error",
                 uncertain_hint(op, resend_ok));
      break;
    case OUT_TOO_LARGE:
      push_error(L, "decode", "%s: response body larger than max_response_bytes (HTTP %d)%s",
                 op->name, (int)a->status,
                 a->status >= 200 && a->status < 300 && op->resend == RESEND_NEVER
                     ? "; the request was accepted: check the SIM card list"
                     : uncertain_hint(op, resend_ok));
      if (a->status > 0) set_int_field(L, "status", a->status);
      break;
    case OUT_NO_MEMORY:
      push_error(L, "decode", "%s: not enough memory for the response%s", op->name,
                 uncertain_hint(op, resend_ok));
      break;
    case OUT_RESPONSE:
      if (a->status < 200 || a->status >= 300) {
        /* only a 5xx may have done the work; a 4xx refused it */
        push_http_error(L, decode_idx, op, a, a->status >= 500, resend_ok);
        break;
      }
      if (a->body_len == 0 && a->status == 204) {
        lua_createtable(L, 0, 2);
      } else if (!decode_object(L, decode_idx, a->body, a->body_len, a->body_idx)) {
        push_error(L, "decode", "%s: HTTP %d response could not be decoded: %s%s", op->name,
                   (int)a->status, lua_tostring(L, -1),
                   op->resend == RESEND_NEVER ? "; the request was accepted: check the SIM card list" : "");
        lua_remove(L, -2);
        set_int_field(L, "status", a->status);
        break;
      }
      {
        const char *problem = result_problem(L, op, lua_gettop(L));
        if (problem == NULL) return 1;
        lua_pop(L, 1);
        push_error(L, "decode", "%s: HTTP %d response's %s%s", op->name, (int)a->status, problem,
                   op->resend == RESEND_NEVER ? "; the request was accepted: check the SIM card list" : "");
        set_int_field(L, "status", a->status);
        break;
      }
  }
  set_string_field(L, "request_id", a->meta.request_id);
  set_bool_field(L, "retryable", verdict->retryable);
  if (verdict->retryable) {
    lua_pushnumber(L, verdict->delay);
    lua_setfield(L, -2, "retry_after");
  }
  return 0;
}

/* ===================================================================== */
/* 7. Transport: libcurl                                                  */
/* ===================================================================== */

struct client {
  CURL *curl;                      /* created on first use, reused: keep-alive */
  struct curl_slist *base_headers; /* fixed for the client's life */
  struct curl_slist *call_headers; /* per attempt, when a call adds headers */
  char *api_key;
  char *base_url;
  char *ca_file, *ca_path;
  double timeout, connect_timeout;
  int max_retries;
  int resend_ok;                   /* the caller's retry_may_duplicate: our retries may re-send */
  size_t max_response_bytes;
  int sleep_ref;                   /* registry ref of a sleep(seconds) function, or LUA_NOREF */
  struct random_pool random;
  int closed;
  /* state of the attempt in flight; callbacks write only here */
  struct strbuf scratch;           /* request bodies and URLs are built here */
  struct strbuf response;
  struct response_meta meta;
  int sends;                       /* how often libcurl was about to send the request */
  int plain_http_guard;            /* http:// base_url without allow_insecure_http */
  char refusal[224];               /* why on_prereq stopped a request, or "" */
  int allow_resend;                /* this attempt: may libcurl itself re-send on a fresh connection? */
  int too_large, out_of_memory;
  char curl_error[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void init_curl_once(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* A numeric address in 127.0.0.0/8 or ::1 (also as ::ffff:127.x.x.x). */
static int ip_is_loopback(const char *ip) {
  unsigned char a[16];
  if (inet_pton(AF_INET, ip, a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, ip, a) != 1) return 0;
  if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0) return 1;
  return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && a[12] == 127;
}

/* --- callbacks: plain C, never a Lua call, never a longjmp --- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  struct client *c = (struct client *)ud;
  size_t n = size * nmemb;
  if (c->response.len + n > c->max_response_bytes) {
    c->too_large = 1;
    return 0;
  }
  if (!strbuf_reserve(&c->response, n)) {
    c->out_of_memory = 1;
    return 0;
  }
  memcpy(c->response.data + c->response.len, ptr, n);
  c->response.len += n;
  return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  struct client *c = (struct client *)ud;
  size_t n = size * nmemb, name_len, v, end;
  const char *colon;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* each response, 1xx included */
    meta_reset(&c->meta);
    return n;
  }
  colon = (const char *)memchr(line, ':', n);
  if (colon == NULL) return n;
  name_len = (size_t)(colon - line);
  v = name_len + 1;
  end = n;
  while (v < end && (line[v] == ' ' || line[v] == '\t')) v++;
  while (end > v && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' ')) end--;
  meta_note(&c->meta, line, name_len, line + v, end - v);
  return n;
}

/* libcurl re-sends a request by itself when a reused connection turns out
 * dead; for money-spending calls the first copy may have arrived, so stop. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
  struct client *c = (struct client *)ud;
  (void)conn_local_ip; (void)conn_primary_port; (void)conn_local_port;
  /* plain http is allowed to loopback only: check where the connection really
   * goes (an http_proxy, or a name resolving elsewhere), before the key is sent */
  if (c->plain_http_guard && !ip_is_loopback(conn_primary_ip)) {
    snprintf(c->refusal, sizeof c->refusal,
             "refused to send the API key over plain http to %.64s, which is not a loopback address "
             "(set allow_insecure_http = true to allow it)", conn_primary_ip);
    return CURL_PREREQFUNC_ABORT;
  }
  if (c->sends++ > 0 && !c->allow_resend) return CURL_PREREQFUNC_ABORT;
  return CURL_PREREQFUNC_OK;
}

/* --- the handle --- */

static int setup_curl(struct client *c) {
  CURL *h;
  CURLcode rc = CURLE_OK;
  if (c->curl != NULL) return 1;
  h = curl_easy_init();
  if (h == NULL) return 0;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val)
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, c);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, c);
  SET(CURLOPT_ERRORBUFFER, c->curl_error);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_ACCEPT_ENCODING, NULL);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)); /* deprecated in 7.85 */
#endif
  SET(CURLOPT_PREREQFUNCTION, on_prereq);
  SET(CURLOPT_PREREQDATA, c);
  if (c->ca_file) SET(CURLOPT_CAINFO, c->ca_file);
  if (c->ca_path) SET(CURLOPT_CAPATH, c->ca_path);
#undef SET
  if (rc != CURLE_OK) {
    curl_easy_cleanup(h);
    return 0;
  }
  c->curl = h;
  return 1;
}

/* Header lists hold the Authorization line, so wipe before freeing. */
static void free_headers_wiped(struct curl_slist **list) {
  struct curl_slist *h;
  for (h = *list; h != NULL; h = h->next) {
    volatile char *v = h->data;
    while (*v) *v++ = '\0';
  }
  curl_slist_free_all(*list);
  *list = NULL;
}

static struct curl_slist *slist_add(struct curl_slist *list, const char *line, int *ok) {
  struct curl_slist *next;
  if (!*ok) return list;
  next = curl_slist_append(list, line);
  if (next == NULL) { *ok = 0; return list; }
  return next;
}

/* Per-call headers: the client's own, then the call's. Owned by the client,
 * so an error while building leaks nothing. Returns 0 on no memory. */
static int build_call_headers(lua_State *L, struct client *c, const char *idempotency_key,
                              int headers_idx) {
  struct curl_slist *h;
  int ok = 1;
  free_headers_wiped(&c->call_headers);
  if (idempotency_key == NULL && headers_idx == 0) return 1;
  for (h = c->base_headers; h != NULL; h = h->next) c->call_headers = slist_add(c->call_headers, h->data, &ok);
  if (idempotency_key != NULL) {
    c->scratch.len = 0;
    sb_addlit(L, &c->scratch, "Idempotency-Key: ");
    sb_addstr(L, &c->scratch, idempotency_key);
    sb_addlit(L, &c->scratch, "\0");
    c->call_headers = slist_add(c->call_headers, c->scratch.data, &ok);
  }
  if (headers_idx != 0) {
    lua_pushnil(L);
    while (lua_next(L, headers_idx) != 0) {
      c->scratch.len = 0;
      sb_addstr(L, &c->scratch, lua_tostring(L, -2));
      sb_addlit(L, &c->scratch, ": ");
      sb_addstr(L, &c->scratch, lua_tostring(L, -1));
      sb_addlit(L, &c->scratch, "\0");
      c->call_headers = slist_add(c->call_headers, c->scratch.data, &ok);
      lua_pop(L, 1);
    }
  }
  return ok;
}

/* Sends one attempt and fills `a`. Blocks: this is the plain-Lua path. */
static void perform(struct client *c, const struct operation *op, const char *url,
                    const char *body, size_t body_len, double timeout, int allow_resend,
                    struct attempt *a) {
  CURL *h = c->curl;
  CURLcode rc;
  long ms = (long)(timeout * 1000.0), cms = (long)(c->connect_timeout * 1000.0);
  c->response.len = 0;
  c->sends = 0;
  c->allow_resend = allow_resend;
  c->too_large = c->out_of_memory = 0;
  c->curl_error[0] = c->refusal[0] = '\0';
  meta_reset(&c->meta);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->call_headers ? c->call_headers : c->base_headers);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cms > 0 && cms < ms ? cms : (ms > 0 ? ms : 1L));
  if (body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(op->method, "POST") ? op->method : NULL);
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(op->method, "GET") ? op->method : NULL);
  }
  rc = curl_easy_perform(h);

  a->status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
  a->body = c->response.data ? c->response.data : "";
  a->body_len = c->response.len;
  a->body_idx = 0;
  a->meta = c->meta;
  a->timed_out = a->permanent = 0;
  a->transport_message = c->refusal[0] ? c->refusal : c->curl_error[0] ? c->curl_error : curl_easy_strerror(rc);
  if (rc == CURLE_OK) a->outcome = OUT_RESPONSE;
  else if (c->too_large) a->outcome = OUT_TOO_LARGE;
  else if (c->out_of_memory) a->outcome = OUT_NO_MEMORY;
  else if (c->sends == 0) { /* never handed to a connection: provably not sent */
    a->outcome = OUT_NOT_SENT;
    a->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    a->permanent = c->refusal[0] || rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
                   rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_URL_MALFORMAT ||
                   rc == CURLE_UNSUPPORTED_PROTOCOL;
  } else if (rc == CURLE_OPERATION_TIMEDOUT) a->outcome = OUT_TIMEOUT;
  else a->outcome = OUT_BROKEN;
}

/* Waits between attempts: the client's sleep function (tests inject one),
 * else nanosleep. */
static void pause_for(lua_State *L, struct client *c, double seconds) {
  if (c->sleep_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->sleep_ref);
    lua_pushnumber(L, seconds);
    lua_call(L, 1, 0);
  } else if (seconds > 0) {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  }
}

/* ===================================================================== */
/* 8. Client                                                              */
/* ===================================================================== */

static const char *const client_options[] = {
  "api_key", "base_url", "timeout", "connect_timeout", "max_retries", "max_response_bytes",
  "ca_file", "ca_path", "allow_insecure_http", "retry_may_duplicate", "sleep", NULL
};

static const char *const call_options[] = {
  "timeout", "max_retries", "idempotency_key", "headers", "retry_may_duplicate", NULL
};

static struct client *check_client(lua_State *L, int idx) {
  return (struct client *)luaL_checkudata(L, idx, TSIM_CLIENT_MT);
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = (char *)malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

static void wipe_free(char *s) {
  if (s == NULL) return;
  {
    volatile char *v = s;
    while (*v) *v++ = '\0';
  }
  free(s);
}

static void release_client(lua_State *L, struct client *c) {
  if (c->curl != NULL) curl_easy_cleanup(c->curl);
  c->curl = NULL;
  free_headers_wiped(&c->call_headers);
  free_headers_wiped(&c->base_headers);
  wipe_free(c->api_key);
  c->api_key = NULL;
  free(c->base_url); c->base_url = NULL;
  free(c->ca_file); c->ca_file = NULL;
  free(c->ca_path); c->ca_path = NULL;
  strbuf_free(&c->scratch);
  strbuf_free(&c->response);
  if (c->sleep_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, c->sleep_ref);
  c->sleep_ref = LUA_NOREF;
  c->closed = 1;
}

static int client_gc(lua_State *L) {
  release_client(L, check_client(L, 1));
  return 0;
}

static int client_close(lua_State *L) {
  release_client(L, check_client(L, 1));
  return 0;
}

static int client_tostring(lua_State *L) {
  struct client *c = check_client(L, 1);
  if (c->closed) lua_pushstring(L, "telnyx.sim.client (closed)");
  else lua_pushfstring(L, "telnyx.sim.client (%s)", c->base_url);
  return 1;
}

/* --- option reading --- */

static int in_list(const char *const *list, const char *name) {
  for (; *list != NULL; list++)
    if (strcmp(*list, name) == 0) return 1;
  return 0;
}

/* sim.new raises on a misspelt or mistyped option: a programming error. */
static void check_option_names(lua_State *L, int idx, const char *const *known, const char *who) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(lua_tostring(L, -1)) != compat_rawlen(L, -1) ||
        !in_list(known, lua_tostring(L, -1))) {
      push_joined(L, known, "");
      luaL_error(L, "%s: unknown option '%s' (known options: %s)", who,
                 lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2),
                 lua_tostring(L, -1));
    }
  }
}

static double opt_number(lua_State *L, int idx, const char *name, double dflt, double min,
                         double max, int integral) {
  double d;
  compat_rawgetfield(L, idx, name);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return dflt; }
  d = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
  if (d != d || d < min || d > max || (integral && floor(d) != d)) {
    char rule[96];
    snprintf(rule, sizeof rule, "%s >= %g and <= %g", integral ? "an integer" : "a number", min, max);
    luaL_error(L, "telnyx.sim.new: option '%s' must be %s (got %s)", name, rule, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return d;
}

/* A string option. A NUL inside would cut it short in C: *has_nul reports
 * one (the caller returns a config error), or it raises when has_nul is NULL. */
static const char *opt_string(lua_State *L, int idx, const char *name, int *has_nul) {
  const char *s;
  size_t n;
  compat_rawgetfield(L, idx, name);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "telnyx.sim.new: option '%s' must be a string (got %s)", name, luaL_typename(L, -1));
  s = lua_tolstring(L, -1, &n);
  if (strlen(s) != n) {
    if (has_nul != NULL) *has_nul = 1;
    else luaL_error(L, "telnyx.sim.new: option '%s' must not contain NUL bytes", name);
  }
  lua_pop(L, 1); /* still referenced by the options table */
  return s;
}

static int opt_boolean(lua_State *L, int idx, const char *name) {
  int b;
  compat_rawgetfield(L, idx, name);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
  if (lua_type(L, -1) != LUA_TBOOLEAN)
    luaL_error(L, "telnyx.sim.new: option '%s' must be a boolean (got %s)", name, luaL_typename(L, -1));
  b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* Host part of an http(s) URL, for the loopback rule. */
/* The host of an http:// base_url is loopback: localhost or a loopback address. */
static int host_is_loopback(const char *authority, size_t n) {
  char host[64];
  size_t len = n;
  const char *end;
  if (n > 0 && authority[0] == '[') { /* [v6]:port */
    end = (const char *)memchr(authority, ']', n);
    if (end == NULL) return 0;
    authority++;
    len = (size_t)(end - authority);
  } else if ((end = (const char *)memchr(authority, ':', n)) != NULL) {
    len = (size_t)(end - authority);
  }
  if (len == 0 || len >= sizeof host) return 0;
  memcpy(host, authority, len);
  host[len] = '\0';
  return strcmp(host, "localhost") == 0 || ip_is_loopback(host);
}

/* Checks base_url; returns NULL when fine, else what is wrong with it. */
static const char *base_url_problem(const char *url, int allow_insecure_http) {
  size_t n = strlen(url), i, auth_len;
  const char *auth;
  int https;
  if (strncmp(url, "https://", 8) == 0) { https = 1; auth = url + 8; }
  else if (strncmp(url, "http://", 7) == 0) { https = 0; auth = url + 7; }
  else return "must start with https:// (or http:// for a loopback test server)";
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)url[i];
    if (ch <= 0x20 || ch == 0x7f) return "must not contain spaces or control characters (CR, LF, NUL)";
    if (ch == '?' || ch == '#') return "must not contain a query or a fragment";
  }
  auth_len = strcspn(auth, "/");
  if (auth_len == 0) return "has no host";
  if (memchr(auth, '@', auth_len) != NULL) return "must not contain credentials";
  if (!https && !allow_insecure_http && !host_is_loopback(auth, auth_len))
    return "uses plain http:// to a host that is not loopback; the API key would travel "
           "unencrypted (set allow_insecure_http = true to allow it)";
  return NULL;
}

static int config_error(lua_State *L, const char *fmt, const char *detail) {
  push_error(L, "config", fmt, detail);
  return return_error(L);
}

static int api_key_problem(const char *key) {
  const unsigned char *p;
  for (p = (const unsigned char *)key; *p; p++)
    if (*p < 0x20 || *p == 0x7f) return 1;
  return 0;
}

/* sim.new{...} -> client | nil, err */
static int sim_new(lua_State *L) {
  struct client *c;
  const char *api_key, *base_url, *problem, *ca_file, *ca_path;
  double timeout, connect_timeout, max_retries, max_bytes;
  int insecure, resend_ok, ok = 1, key_nul = 0, url_nul = 0;
  char line[256];
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  if (lua_type(L, 1) != LUA_TTABLE)
    return luaL_error(L, "telnyx.sim.new: options must be a table (got %s)", luaL_typename(L, 1));
  lua_settop(L, 1);
  check_option_names(L, 1, client_options, "telnyx.sim.new");
  api_key = opt_string(L, 1, "api_key", &key_nul);
  base_url = opt_string(L, 1, "base_url", &url_nul);
  timeout = opt_number(L, 1, "timeout", DEFAULT_TIMEOUT, 0.001, 86400, 0);
  connect_timeout = opt_number(L, 1, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, 0.001, 86400, 0);
  max_retries = opt_number(L, 1, "max_retries", DEFAULT_MAX_RETRIES, 0, MAX_RETRIES_LIMIT, 1);
  max_bytes = opt_number(L, 1, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, 1024, 1 << 30, 1);
  ca_file = opt_string(L, 1, "ca_file", NULL);
  ca_path = opt_string(L, 1, "ca_path", NULL);
  insecure = opt_boolean(L, 1, "allow_insecure_http");
  resend_ok = opt_boolean(L, 1, "retry_may_duplicate");
  lua_getfield(L, 1, "sleep");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TFUNCTION)
    return luaL_error(L, "telnyx.sim.new: option 'sleep' must be a function (got %s)", luaL_typename(L, -1));

  if (api_key == NULL) api_key = getenv("TELNYX_API_KEY");
  if (api_key == NULL || *api_key == '\0')
    return config_error(L, "%s", "no API key: pass api_key to telnyx.sim.new or set TELNYX_API_KEY");
  if (key_nul || api_key_problem(api_key) || strlen(api_key) > 200)
    return config_error(L, "%s", "the API key contains control characters (CR, LF, NUL) or is over 200 bytes");
  if (base_url == NULL) base_url = getenv("TELNYX_BASE_URL");
  if (base_url == NULL || *base_url == '\0') base_url = DEFAULT_BASE_URL;
  problem = url_nul ? "must not contain control characters (CR, LF, NUL)" : base_url_problem(base_url, insecure);
  if (problem != NULL) return config_error(L, "base_url %s", problem);

  c = (struct client *)lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->sleep_ref = LUA_NOREF;
  c->closed = 1; /* until fully built: __gc then frees whatever exists */
  luaL_getmetatable(L, TSIM_CLIENT_MT);
  lua_setmetatable(L, -2);

  c->timeout = timeout;
  c->connect_timeout = connect_timeout;
  c->max_retries = (int)max_retries;
  c->max_response_bytes = (size_t)max_bytes;
  c->resend_ok = resend_ok;
  c->plain_http_guard = strncmp(base_url, "http://", 7) == 0 && !insecure;
  c->api_key = dup_string(api_key);
  c->base_url = dup_string(base_url);
  if (ca_file) c->ca_file = dup_string(ca_file);
  if (ca_path) c->ca_path = dup_string(ca_path);
  if (c->api_key == NULL || c->base_url == NULL || (ca_file && !c->ca_file) || (ca_path && !c->ca_path))
    return luaL_error(L, "telnyx.sim.new: not enough memory");
  {
    size_t n = strlen(c->base_url);
    while (n > 0 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
  }
  c->base_headers = slist_add(c->base_headers, "Content-Type: application/json", &ok);
  c->base_headers = slist_add(c->base_headers, "Accept: application/json", &ok);
  c->base_headers = slist_add(c->base_headers, "Expect:", &ok); /* no 100-continue round trip */
  snprintf(line, sizeof line, "User-Agent: telnyx-sim-lua/%s (%s; libcurl/%s)", TSIM_VERSION,
           LUA_VERSION, curl_version_info(CURLVERSION_NOW)->version);
  c->base_headers = slist_add(c->base_headers, line, &ok);
  c->scratch.len = 0;
  sb_addlit(L, &c->scratch, "Authorization: Bearer ");
  sb_addstr(L, &c->scratch, c->api_key);
  sb_addlit(L, &c->scratch, "\0");
  c->base_headers = slist_add(c->base_headers, c->scratch.data, &ok);
  memset(c->scratch.data, 0, c->scratch.len);
  if (!ok) return luaL_error(L, "telnyx.sim.new: not enough memory");
  lua_pushvalue(L, 2);
  if (lua_isfunction(L, -1)) c->sleep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  c->closed = 0;
  return 1;
}

/* --- per-call options: bad ones are refused like bad params --- */

struct call_opts {
  double timeout;
  int max_retries;
  int resend_ok;
  int headers_idx; /* 0: none */
};

static int call_opt_error(lua_State *L, const struct operation *op, const char *name, const char *rule) {
  push_error(L, "invalid_params", "%s: option '%s' %s (got %s)", op->name, name, rule,
             luaL_typename(L, -1));
  lua_pushfstring(L, "opts.%s", name);
  lua_setfield(L, -2, "field");
  lua_remove(L, -2);
  return 0;
}

static int check_call_headers(lua_State *L, const struct operation *op, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t nlen, vlen;
    const char *name, *value;
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 2);
      lua_pushvalue(L, idx);
      return call_opt_error(L, op, "headers", "must map header names to string values");
    }
    name = lua_tolstring(L, -2, &nlen);
    value = lua_tolstring(L, -1, &vlen);
    if (!header_name_ok(name, nlen) || vlen == 0 || !header_safe(value, vlen) || header_reserved(name)) {
      push_joined(L, reserved_headers, "");
      push_error(L, "invalid_params",
                 "%s: option 'headers' has a header the module cannot send: '%s' (names must be "
                 "HTTP tokens, values non-empty and free of CR, LF and NUL; the module sets %s itself)",
                 op->name, header_name_ok(name, nlen) ? name : "(invalid name)", lua_tostring(L, -1));
      lua_remove(L, -2);
      lua_pushliteral(L, "opts.headers");
      lua_setfield(L, -2, "field");
      lua_replace(L, -3);
      lua_pop(L, 1);
      return 0;
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* Reads opts at idx; pushes the Idempotency-Key (string or nil) on success. */
static int read_call_opts(lua_State *L, struct client *c, const struct operation *op, int idx,
                          struct call_opts *o) {
  o->timeout = c->timeout;
  o->max_retries = c->max_retries;
  o->resend_ok = c->resend_ok;
  o->headers_idx = 0;
  if (lua_isnil(L, idx)) {
    lua_pushnil(L);
  } else if (lua_type(L, idx) != LUA_TTABLE) {
    push_error(L, "invalid_params", "%s: options must be a table (got %s)", op->name, luaL_typename(L, idx));
    return 0;
  } else {
    double d;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING || strlen(lua_tostring(L, -1)) != compat_rawlen(L, -1) ||
          !in_list(call_options, lua_tostring(L, -1))) {
        push_joined(L, call_options, "");
        push_error(L, "invalid_params", "%s: unknown option '%s' (known options: %s)", op->name,
                   lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2),
                   lua_tostring(L, -1));
        lua_replace(L, -3);
        lua_pop(L, 1);
        return 0;
      }
    }
    compat_rawgetfield(L, idx, "timeout");
    if (!lua_isnil(L, -1)) {
      d = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
      if (!(d > 0 && d <= 86400)) return call_opt_error(L, op, "timeout", "must be a number of seconds > 0");
      o->timeout = d;
    }
    lua_pop(L, 1);
    compat_rawgetfield(L, idx, "max_retries");
    if (!lua_isnil(L, -1)) {
      d = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
      if (!(d >= 0 && d <= MAX_RETRIES_LIMIT && floor(d) == d))
        return call_opt_error(L, op, "max_retries", "must be an integer from 0 to 10");
      o->max_retries = (int)d;
    }
    lua_pop(L, 1);
    compat_rawgetfield(L, idx, "retry_may_duplicate");
    if (!lua_isnil(L, -1)) {
      if (!lua_isboolean(L, -1)) return call_opt_error(L, op, "retry_may_duplicate", "must be a boolean");
      o->resend_ok = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    compat_rawgetfield(L, idx, "headers");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1)) return call_opt_error(L, op, "headers", "must be a table");
      if (!check_call_headers(L, op, lua_gettop(L))) { lua_remove(L, -2); return 0; }
      o->headers_idx = lua_gettop(L); /* stays on the stack for the call */
    } else {
      lua_pop(L, 1);
    }
    compat_rawgetfield(L, idx, "idempotency_key");
    if (!lua_isnil(L, -1)) {
      size_t n = 0;
      const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
      if (s == NULL || n == 0 || n > 255 || !header_safe(s, n))
        return call_opt_error(L, op, "idempotency_key", "must be a string of 1 to 255 bytes without CR, LF or NUL");
      return 1;
    }
  }
  /* a nil is on top: no key was given */
  if (op->resend == RESEND_NEVER) {
    char uuid[37];
    lua_pop(L, 1);
    if (!format_uuid4(&c->random, uuid)) {
      push_error(L, "config", "%s: could not read random bytes for the Idempotency-Key", op->name);
      return 0;
    }
    lua_pushstring(L, uuid);
  }
  return 1;
}

/* Where key (n bytes) first occurs in s (len bytes), NULs included, or NULL. */
static const char *find_bytes(const char *s, size_t len, const char *key, size_t n) {
  size_t i;
  for (i = 0; n > 0 && i + n <= len; i++)
    if (s[i] == key[0] && memcmp(s + i, key, n) == 0) return s + i;
  return NULL;
}

/* Pushes the string at idx with every copy of key replaced by [REDACTED];
 * returns 0 (pushing nothing) when it holds none or is not a string. */
static int push_redacted(lua_State *L, int idx, const char *key) {
  size_t len, n = strlen(key);
  const char *s, *hit;
  luaL_Buffer b;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  s = lua_tolstring(L, idx, &len);
  if (find_bytes(s, len, key, n) == NULL) return 0;
  luaL_buffinit(L, &b);
  while ((hit = find_bytes(s, len, key, n)) != NULL) {
    luaL_addlstring(&b, s, (size_t)(hit - s));
    luaL_addstring(&b, "[REDACTED]");
    len -= (size_t)(hit - s) + n;
    s = hit + n;
  }
  luaL_addlstring(&b, s, len);
  luaL_pushresult(&b);
  return 1;
}

/* Replaces the API key in every string of the err table at t, keys too and
 * at any depth (a server's error list is decoded JSON: strings may hold NULs,
 * nesting goes as deep as cjson decodes). */
static void redact_strings(lua_State *L, int t, const char *key, int depth) {
  int list, moved = 0, i;
  if (depth > 2000) return; /* deeper than cjson decodes: cannot happen */
  luaL_checkstack(L, 8, NULL);
  lua_newtable(L); /* keys holding the key: renamed after the walk, as a table */
  list = lua_gettop(L); /* cannot gain keys while lua_next walks it */
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (push_redacted(L, -1, key)) {
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, t);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      redact_strings(L, lua_gettop(L), key, depth + 1);
    }
    lua_pop(L, 1);
    if (push_redacted(L, -1, key)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_rawseti(L, list, ++moved);
    }
  }
  for (i = 1; i <= moved; i++) {
    lua_rawgeti(L, list, i);     /* old key */
    push_redacted(L, -1, key);   /* new key */
    lua_pushvalue(L, -2);
    lua_rawget(L, t);            /* value */
    lua_rawset(L, t);            /* t[new] = value */
    lua_pushnil(L);
    lua_rawset(L, t);            /* t[old] = nil */
  }
  lua_pop(L, 1);
}

/* Validates and builds a call from params at 2 and opts at 3. On success
 * leaves the Idempotency-Key (or nil), the URL and the body (or nil) on top. */
static int prepare_call(lua_State *L, struct client *c, const struct operation *op,
                        struct call_opts *o) {
  if (c->closed) {
    push_error(L, "config", "%s: the client is closed", op->name);
    return 0;
  }
  if (!validate_params(L, op, 2) || !read_call_opts(L, c, op, 3, o)) return 0;
  build_url(L, &c->scratch, c->base_url, op, 2);
  lua_pushlstring(L, c->scratch.data, c->scratch.len); /* the call's own copy: a nested call */
  if (has_body(op)) {                                  /* from sleep cannot clobber it */
    build_json_body(L, &c->scratch, op, 2);
    lua_pushlstring(L, c->scratch.data, c->scratch.len);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static void finish_error(lua_State *L, const struct client *c, int attempts) {
  set_int_field(L, "attempts", attempts);
  if (c->api_key != NULL && strlen(c->api_key) >= 4) redact_strings(L, lua_gettop(L), c->api_key, 0);
}

/* client:<operation>(params [, opts]) -> res | nil, err: the libcurl path. */
static int call_operation(lua_State *L) {
  const struct operation *op = &operations[lua_tointeger(L, lua_upvalueindex(1))];
  struct client *c = check_client(L, 1);
  struct call_opts o;
  struct attempt a;
  struct retry_verdict v;
  const char *idem, *url, *body;
  size_t body_len = 0;
  int attempt;
  lua_settop(L, 3);
  if (!prepare_call(L, c, op, &o)) return return_error(L);
  idem = lua_tostring(L, -3);
  url = lua_tostring(L, -2);
  body = lua_tolstring(L, -1, &body_len);
  if (!setup_curl(c)) {
    push_error(L, "connection", "%s: could not create a libcurl handle", op->name);
    return return_error(L);
  }
  for (attempt = 1;; attempt++) {
    if (!build_call_headers(L, c, idem, o.headers_idx))
      return luaL_error(L, "telnyx.sim: not enough memory");
    perform(c, op, url, body, body_len, o.timeout, o.resend_ok || op->resend == RESEND_SAFE, &a);
    if (interpret(L, lua_upvalueindex(2), op, &a, o.resend_ok, attempt, &v)) return 1;
    if (!v.retryable || attempt > o.max_retries) break;
    lua_pop(L, 1);
    pause_for(L, c, v.delay);
    if (c->closed) { /* the sleep function closed the client */
      push_error(L, "config", "%s: the client was closed while waiting to retry", op->name);
      break;
    }
  }
  finish_error(L, c, attempt);
  return return_error(L);
}

/* sim.error(kind, message [, fields]) -> err: for Lua transports and adapters
 * whose own failures should look like every other err. */
static int sim_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  push_error(L, kind, "%s", message);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 4);
    }
  }
  return 1;
}

/* --- the two I/O-free halves, for transports that live outside C --- */

static const struct operation *find_operation(const char *name) {
  size_t i;
  for (i = 0; name != NULL && i < N_OPERATIONS; i++)
    if (strcmp(operations[i].name, name) == 0) return &operations[i];
  return NULL;
}

static const struct operation *check_operation(lua_State *L, int idx) {
  const struct operation *op = find_operation(lua_tostring(L, idx));
  if (op == NULL) luaL_argerror(L, idx, "not an operation name (see telnyx.sim.operations)");
  return op;
}

static void set_header(lua_State *L, const char *line) {
  const char *colon = strchr(line, ':');
  const char *v;
  if (colon == NULL || colon[1] == '\0') return; /* "Expect:" only disables a libcurl habit */
  v = colon + 1;
  while (*v == ' ') v++;
  lua_pushlstring(L, line, (size_t)(colon - line));
  lua_pushstring(L, v);
  lua_rawset(L, -3);
}

/*
 * client:request(operation, params [, opts]) -> req | nil, err
 * req = { operation, method, url, path, headers = {name = value}, body, timeout,
 *         connect_timeout, max_retries, retry_may_duplicate }: what to send, checked and built.
 */
static int client_request(lua_State *L) {
  struct client *c = check_client(L, 1);
  const struct operation *op = check_operation(L, 2);
  struct call_opts o;
  struct curl_slist *h;
  int top;
  lua_settop(L, 4);
  lua_remove(L, 2);
  if (!prepare_call(L, c, op, &o)) return return_error(L);
  top = lua_gettop(L);
  lua_createtable(L, 0, 8);
  set_string_field(L, "operation", op->name);
  set_string_field(L, "method", op->method);
  lua_pushvalue(L, top - 1);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, lua_tostring(L, top - 1) + strlen(c->base_url)); /* for proxies that own base_url */
  lua_setfield(L, -2, "path");
  lua_pushnumber(L, c->connect_timeout);
  lua_setfield(L, -2, "connect_timeout");
  lua_pushvalue(L, top);
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, o.timeout);
  lua_setfield(L, -2, "timeout");
  set_int_field(L, "max_retries", o.max_retries);
  set_bool_field(L, "retry_may_duplicate", o.resend_ok);
  lua_newtable(L);
  for (h = c->base_headers; h != NULL; h = h->next) set_header(L, h->data);
  if (!lua_isnil(L, top - 2)) {
    lua_pushvalue(L, top - 2);
    lua_setfield(L, -2, "Idempotency-Key");
  }
  if (o.headers_idx != 0) {
    lua_pushnil(L);
    while (lua_next(L, o.headers_idx) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  lua_setfield(L, -2, "headers");
  return 1;
}

/* Reads the response headers the rules use from a {name = value} table
 * (any case; a list of values counts by its first). */
static void meta_from_table(lua_State *L, int idx, struct response_meta *m) {
  meta_reset(m);
  if (lua_type(L, idx) != LUA_TTABLE) return;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      lua_replace(L, -2);
    }
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      size_t nlen, vlen;
      const char *name = lua_tolstring(L, -2, &nlen);
      const char *value = lua_tolstring(L, -1, &vlen);
      while (vlen > 0 && (*value == ' ' || *value == '\t')) { value++; vlen--; }
      while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) vlen--;
      meta_note(m, name, nlen, value, vlen);
    }
    lua_pop(L, 1);
  }
}

static const char *const failure_names[] = {"not_sent", "connect_timeout", "timeout", "broken",
                                            "too_large", NULL};

/*
 * client:interpret(req, reply [, attempt]) -> res | nil, err, retry_in
 * reply = { status =, headers =, body = } when a response arrived, or
 * { failure = "not_sent" | "connect_timeout" | "timeout" | "broken" | "too_large",
 *   message = } when it did not. retry_in (seconds) is there when the caller
 * should send the same req again after waiting that long.
 */
static int client_interpret(lua_State *L) {
  struct client *c = check_client(L, 1);
  const struct operation *op;
  struct attempt a;
  struct retry_verdict v;
  int attempt, resend_ok, max_retries;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (c->closed) { /* its key is gone, so its errors could not be redacted */
    push_error(L, "config", "interpret: the client is closed");
    return return_error(L);
  }
  {
    double n = (double)luaL_optnumber(L, 4, 1);
    luaL_argcheck(L, n >= 1 && n <= 1000 && floor(n) == n, 4, "attempt must be an integer from 1 to 1000");
    attempt = (int)n;
  }
  lua_settop(L, 4);
  lua_getfield(L, 2, "operation");
  op = check_operation(L, -1);
  lua_getfield(L, 2, "retry_may_duplicate");
  resend_ok = lua_toboolean(L, -1);
  lua_getfield(L, 2, "max_retries");
  if (lua_type(L, -1) == LUA_TNUMBER) { /* a caller's req may hold anything: no UB cast of NaN or 1e300 */
    double d = (double)lua_tonumber(L, -1);
    max_retries = d >= 0 ? (d < MAX_RETRIES_LIMIT ? (int)d : MAX_RETRIES_LIMIT) : 0;
  } else {
    max_retries = c->max_retries;
  }
  lua_getfield(L, 3, "headers");   /* 8 */
  lua_getfield(L, 3, "body");      /* 9 */
  lua_getfield(L, 3, "failure");   /* 10 */
  lua_getfield(L, 3, "message");   /* 11 */
  memset(&a, 0, sizeof a);
  meta_from_table(L, 8, &a.meta);
  a.body = lua_isstring(L, 9) ? lua_tolstring(L, 9, &a.body_len) : "";
  a.body_idx = lua_type(L, 9) == LUA_TSTRING ? 9 : 0;
  a.transport_message = lua_tostring(L, 11);
  lua_getfield(L, 3, "status");
  if (lua_type(L, -1) == LUA_TNUMBER) { /* NaN, inf or 1e300 would make the cast undefined */
    double d = (double)lua_tonumber(L, -1);
    a.status = d >= 0 && d < 1e9 ? (long)d : 0;
  }
  lua_pop(L, 1);
  if (!lua_isnil(L, 10)) {
    int f = luaL_checkoption(L, 10, NULL, failure_names);
    const enum outcome outcomes[] = {OUT_NOT_SENT, OUT_NOT_SENT, OUT_TIMEOUT, OUT_BROKEN, OUT_TOO_LARGE};
    a.outcome = outcomes[f];
    a.timed_out = f == 1;
  } else {
    luaL_argcheck(L, a.status >= 100 && a.status <= 999, 3, "reply needs a status (100-999) or a failure");
    a.outcome = a.body_len > c->max_response_bytes ? OUT_TOO_LARGE : OUT_RESPONSE;
  }
  if (interpret(L, lua_upvalueindex(1), op, &a, resend_ok, attempt, &v)) return 1;
  finish_error(L, c, attempt);
  lua_pushnil(L);
  lua_insert(L, -2);
  if (v.retryable && attempt <= max_retries) {
    lua_pushnumber(L, v.delay);
    return 3;
  }
  return 2;
}

/* ===================================================================== */
/* Module                                                                 */
/* ===================================================================== */

static const luaL_Reg client_methods[] = {
  {"close", client_close},
  {"request", client_request},
  {"interpret", client_interpret},
  {NULL, NULL}
};

static void push_private_cjson_decode(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);
  lua_getfield(L, -1, "decode_invalid_numbers"); /* no NaN, Infinity or hex from a server */
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode");
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int luaopen_telnyx_sim(lua_State *L);

int luaopen_telnyx_sim(lua_State *L) {
  size_t i;
  pthread_once(&curl_once, init_curl_once);
  if (curl_init_result != CURLE_OK)
    return luaL_error(L, "telnyx.sim: curl_global_init failed: %s", curl_easy_strerror(curl_init_result));

  push_private_cjson_decode(L);
  lua_insert(L, 1);

  luaL_newmetatable(L, TSIM_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  luaL_newmetatable(L, TSIM_CLIENT_MT);
  lua_newtable(L); /* methods */
  lua_pushvalue(L, 1);
  compat_setfuncs(L, client_methods, 1); /* upvalue: the private cjson decode */
  for (i = 0; i < N_OPERATIONS; i++) {
    lua_pushinteger(L, (lua_Integer)i);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, call_operation, 2);
    lua_setfield(L, -2, operations[i].name);
  }
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, client_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, client_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, client_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, TSIM_CLIENT_MT);
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);

  lua_newtable(L);
  lua_pushcfunction(L, sim_new);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, sim_error);
  lua_setfield(L, -2, "error");
  lua_pushliteral(L, TSIM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_newtable(L);
  for (i = 0; i < N_OPERATIONS; i++) {
    lua_pushstring(L, operations[i].name);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "operations");
  return 1;
}
