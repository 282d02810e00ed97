/*
 * json.h -- response bodies and sim.encode through lua-cjson.
 *
 * The module loads a private lua-cjson instance (cjson.new(), so no other
 * code's settings reach ours) and calls its decode and encode. Either
 * flavour works: OpenResty's fork (what LuaRocks' lua-cjson and OpenResty
 * install) marks decoded arrays and keeps integers exact; Debian 12's 2.1.0
 * does neither, and the walk after decoding makes its results the same
 * shape, except that an empty array cannot be told from an empty object.
 *
 * Request bodies are not built here: src/rules.c writes them from the rule
 * tree, which knows which fields are arrays (strbuf.c's escaper).
 */
#ifndef TSIM_JSON_H
#define TSIM_JSON_H

#include <stddef.h>

#include "lua.h"

/* Loads and configures the instance, keeping its functions in the registry,
 * then pushes the array marker: cjson.array_mt where the installed cjson has
 * one (so its encode writes an empty marked table as []), else a new table.
 * Returns 1; or pushes why lua-cjson could not be loaded and returns 0. */
int tsim_json_open(lua_State *L);

/* Whether the loaded cjson marks the arrays it decodes (OpenResty's fork):
 * where it does not, an empty table may have been []. */
int tsim_json_marks_arrays(lua_State *L);

/* Decodes the JSON text s[0..n) and pushes the value (returns 1), or pushes
 * lua-cjson's reason and returns 0. The value is then as documented for
 * results: objects without their null members; arrays marked with the table
 * at stack index array_mt (sim.null kept in them, for positions); on Lua
 * 5.3+ integral numbers up to 2^53 as integers (2.0 -> 2). A number too big
 * for a double (1e400) is inf, not an error. Raises only what any Lua API
 * call may (out of memory). */
int tsim_json_decode(lua_State *L, const char *s, size_t n, int array_mt);

/* Encodes the value at idx with lua-cjson and pushes the text (returns 1),
 * or pushes lua-cjson's reason and returns 0. */
int tsim_json_encode(lua_State *L, int idx);

#endif /* TSIM_JSON_H */
