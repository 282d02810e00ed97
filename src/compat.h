/*
 * compat.h -- the few places where Lua 5.1 .. 5.4 and LuaJIT differ, as
 * prefixed shims: code elsewhere calls compat_* and never tests a version.
 */
#ifndef TSIM_COMPAT_H
#define TSIM_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

#if LUA_VERSION_NUM >= 502
#define compat_rawlen(L, i) lua_rawlen((L), (i))
#else
#define compat_rawlen(L, i) lua_objlen((L), (i))
#endif

/* The index type of lua_rawgeti / lua_rawseti. */
#if LUA_VERSION_NUM >= 503
typedef lua_Integer compat_index;
#else
typedef int compat_index;
#endif

#if LUA_VERSION_NUM >= 503
#define compat_isinteger(L, i) lua_isinteger((L), (i))
#else
#define compat_isinteger(L, i) 0 /* every number is a double */
#endif

/* t[name] without metamethods: params and options are read raw, so an
 * __index cannot slip in a value that validation never saw. */
static inline void compat_rawgetfield(lua_State *L, int idx, const char *name) {
  lua_pushstring(L, name);
  lua_rawget(L, idx < 0 && idx > LUA_REGISTRYINDEX ? idx - 1 : idx);
}

/* An absolute stack index, for helpers that push. */
static inline int compat_absindex(lua_State *L, int idx) {
  return idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
}

#endif
