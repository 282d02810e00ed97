/* json.c -- lua-cjson for response bodies and sim.encode; see json.h. */
#include <math.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "compat.h"
#include "json.h"

#define TWO_TO_53 9007199254740992.0 /* doubles are exact integers up to here */

/* Registry keys: the addresses are unique, their values unused. */
static const char DECODE_KEY = 'd', ENCODE_KEY = 'e', MARKS_KEY = 'm';

/* The instance's settings, each tried when that cjson has it: one without
 * a setting keeps its default (Debian's 2.1.0 has the first two, and takes
 * a precision of at most 14). */
static const struct setting {
  const char *name;
  int boolean; /* 1: the value is a boolean, 0: an integer */
  int value;
} settings[] = {
  {"decode_invalid_numbers", 1, 0},      /* NaN, Infinity and hex are not JSON */
  {"encode_number_precision", 0, 16},    /* the most the fork takes */
  {"decode_array_with_array_mt", 1, 1},  /* the fork: [] stays an array */
  {"encode_escape_forward_slash", 1, 0}, /* the fork: "/" as itself */
};

static void set_registry(lua_State *L, const char *key) { /* registry[key] = pop() */
  lua_pushlightuserdata(L, (void *)key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static void get_registry(lua_State *L, const char *key) {
  lua_pushlightuserdata(L, (void *)key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* Applies the settings to the instance on top; returns whether it marks arrays. */
static int configure(lua_State *L) {
  size_t i;
  int marks = 0;
  for (i = 0; i < sizeof settings / sizeof settings[0]; i++) {
    lua_getfield(L, -1, settings[i].name);
    if (!lua_isfunction(L, -1)) { lua_pop(L, 1); continue; }
    if (settings[i].boolean) lua_pushboolean(L, settings[i].value);
    else lua_pushinteger(L, settings[i].value);
    if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1); /* refused: the default stays */
    else if (strcmp(settings[i].name, "decode_array_with_array_mt") == 0) marks = 1;
  }
  return marks;
}

/* Pushes the array marker: the fork's cjson.array_mt, else a table of ours. */
static void push_array_mt(lua_State *L, int cjson) {
  lua_getfield(L, cjson, "array_mt");
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushliteral(L, "telnyx.sim.array");
  lua_setfield(L, -2, "__name");
}

int tsim_json_open(lua_State *L) {
  int cjson;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != 0) return 0;
  cjson = lua_gettop(L);
  lua_getfield(L, cjson, "new");
  if (!lua_isfunction(L, -1) || lua_pcall(L, 0, 1, 0) != 0 || !lua_istable(L, -1)) {
    lua_settop(L, cjson - 1);
    lua_pushliteral(L, "the loaded cjson has no working cjson.new()");
    return 0;
  }
  lua_pushboolean(L, configure(L));
  set_registry(L, &MARKS_KEY);
  lua_getfield(L, -1, "decode");
  set_registry(L, &DECODE_KEY);
  lua_getfield(L, -1, "encode");
  set_registry(L, &ENCODE_KEY);
  lua_pop(L, 1);
  push_array_mt(L, cjson);
  lua_remove(L, cjson);
  return 1;
}

int tsim_json_marks_arrays(lua_State *L) {
  int marks;
  get_registry(L, &MARKS_KEY);
  marks = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return marks;
}

/* On 5.3+, the number on top as an integer when it is integral and exact
 * (cjson 2.1.0 decodes every number as a float there; the fork, 2.0 as one). */
static int integral(lua_State *L) {
#if LUA_VERSION_NUM >= 503
  lua_Number d;
  if (lua_isinteger(L, -1)) return 0;
  d = lua_tonumber(L, -1);
  if (!(fabs(d) <= TWO_TO_53) || d != floor(d)) return 0; /* also NaN, inf */
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)d);
  return 1;
#else
  (void)L;
  return 0;
#endif
}

/* Gives the decoded table at t the module's shape, nested tables first:
 * marks it as an array when it is one (its keys are numbers: JSON object
 * keys are strings), drops an object's null members, makes integral numbers
 * integers. Only existing fields are assigned, as lua_next allows. cjson's
 * depth limit (1000) bounds the recursion. */
static void shape(lua_State *L, int t, int array_mt) {
  int array = lua_getmetatable(L, t), first = 1;
  if (array) lua_pop(L, 1);
  luaL_checkstack(L, 4, "decoding a response");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (first && !array && lua_type(L, -2) == LUA_TNUMBER) {
      lua_pushvalue(L, array_mt);
      lua_setmetatable(L, t);
      array = 1;
    }
    first = 0;
    switch (lua_type(L, -1)) {
      case LUA_TTABLE: shape(L, lua_gettop(L), array_mt); break;
      case LUA_TNUMBER:
        if (integral(L)) { lua_pushvalue(L, -2); lua_insert(L, -2); lua_rawset(L, t); continue; }
        break;
      case LUA_TLIGHTUSERDATA: /* null: kept in arrays, for positions */
        if (!array) { lua_pushvalue(L, -2); lua_pushnil(L); lua_rawset(L, t); }
        break;
      default: break;
    }
    lua_pop(L, 1);
  }
}

int tsim_json_decode(lua_State *L, const char *s, size_t n, int array_mt) {
  int rc;
  array_mt = compat_absindex(L, array_mt);
  get_registry(L, &DECODE_KEY);
  lua_pushlstring(L, s, n);
  rc = lua_pcall(L, 1, 1, 0);
  if (rc == LUA_ERRMEM) lua_error(L); /* out of memory is not the body's fault: raised as any API call's */
  if (rc != 0) {
    lua_pushfstring(L, "invalid JSON (%s)", lua_tostring(L, -1));
    lua_remove(L, -2);
    return 0;
  }
  if (lua_istable(L, -1)) shape(L, lua_gettop(L), array_mt);
  return 1;
}

int tsim_json_encode(lua_State *L, int idx) {
  idx = compat_absindex(L, idx);
  get_registry(L, &ENCODE_KEY);
  lua_pushvalue(L, idx);
  return lua_pcall(L, 1, 1, 0) == 0;
}
