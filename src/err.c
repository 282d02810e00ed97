/*
 * err.c -- the one err shape every failure returns:
 * { kind, message, errors = {...}, field, status, request_id, retryable,
 *   retry_after, attempts }, with a __tostring that reads as one line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "core.h"

/* Pushes an err table {kind=, message=, errors={}}; callers add fields. */
void tsim_push_error(lua_State *L, const char *kind, const char *fmt, ...) {
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
  lua_newtable(L); /* the API's error list, when a response brings one: an array */
  lua_getfield(L, LUA_REGISTRYINDEX, TSIM_ARRAY_MT);
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "errors");
}

void tsim_set_string(lua_State *L, const char *key, const char *value) {
  if (value == NULL || *value == '\0') return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

void tsim_set_int(lua_State *L, const char *key, long value) {
  lua_pushinteger(L, (lua_Integer)value);
  lua_setfield(L, -2, key);
}

void tsim_set_bool(lua_State *L, const char *key, int value) {
  lua_pushboolean(L, value);
  lua_setfield(L, -2, key);
}

/* t[k] = v (raw) into the table on top, for every pair of the table at from. */
void tsim_copy_into(lua_State *L, int from) {
  lua_pushnil(L);
  while (lua_next(L, from) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

/* Pushes "a, b, c" (each in `quote` marks) for a NULL-terminated name list. */
void tsim_push_joined(lua_State *L, const char *const *names, const char *quote) {
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

/* Pushes s with control characters escaped (\n, \r, \t, \x1b...): text from
 * a server (or a transport) goes into one-line messages and must not forge
 * another log line. The escapes are printable, so escaping twice changes nothing. */
void tsim_push_escaped(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != 0x7f) { luaL_addchar(&b, (char)c); continue; }
    if (c == '\n') luaL_addstring(&b, "\\n");
    else if (c == '\r') luaL_addstring(&b, "\\r");
    else if (c == '\t') luaL_addstring(&b, "\\t");
    else {
      char esc[5];
      snprintf(esc, sizeof esc, "\\x%02x", c);
      luaL_addstring(&b, esc);
    }
  }
  luaL_pushresult(&b);
}

void tsim_push_escaped_at(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  tsim_push_escaped(L, s, n);
}

int tsim_return_error(lua_State *L) {
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* tostring(err): "telnyx.sim: <message> (request_id ...)", always one line:
 * control characters are escaped whoever put them there (a server's
 * x-request-id, a Lua transport's message, sim.error's caller). */
int tsim_error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "request_id");
  lua_pushliteral(L, "telnyx.sim: ");
  if (lua_isstring(L, 2)) tsim_push_escaped_at(L, 2); else lua_pushliteral(L, "error");
  if (lua_isstring(L, 3)) {
    lua_pushliteral(L, " (request_id ");
    tsim_push_escaped_at(L, 3);
    lua_pushliteral(L, ")");
  }
  lua_concat(L, lua_gettop(L) - 3);
  return 1;
}

/* --- redaction: the API key never leaves in an err --- */

/* Zeroes a string that held the key before its memory is freed. */
void tsim_wipe(char *s) {
  volatile char *v = s;
  while (*v) *v++ = '\0';
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

/* Renames the keys holding the key, collected in `list`, after the walk. */
static void rename_keys(lua_State *L, int t, int list, int moved, const char *key) {
  int i;
  for (i = 1; i <= moved; i++) {
    lua_rawgeti(L, list, i);   /* old key */
    push_redacted(L, -1, key); /* new key */
    lua_pushvalue(L, -2);
    lua_rawget(L, t);          /* value */
    lua_rawset(L, t);          /* t[new] = value */
    lua_pushnil(L);
    lua_rawset(L, t);          /* t[old] = nil */
  }
}

/* Replaces the key in every string of the table at t, keys too and at any
 * depth (a server's error list is decoded JSON: strings may hold NULs). */
static void redact_table(lua_State *L, int t, const char *key, int depth) {
  int list, moved = 0;
  if (depth > 2000) return; /* deeper than the decoder allows: cannot happen */
  luaL_checkstack(L, 8, NULL);
  lua_newtable(L); /* keys to rename: a table cannot gain keys while lua_next walks it */
  list = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (push_redacted(L, -1, key)) {
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, t);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      redact_table(L, lua_gettop(L), key, depth + 1);
    }
    lua_pop(L, 1);
    if (push_redacted(L, -1, key)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_rawseti(L, list, ++moved);
    }
  }
  rename_keys(L, t, list, moved, key);
  lua_pop(L, 1);
}

void tsim_redact(lua_State *L, int t, const char *key) {
  if (key != NULL && strlen(key) >= 4) redact_table(L, compat_absindex(L, t), key, 0);
}
