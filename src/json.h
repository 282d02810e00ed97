/*
 * json.h -- a small, strict JSON codec for API bodies (RFC 8259).
 *
 * Debian's lua-cjson 2.1.0 cannot tell [] from {} after decoding and turns
 * integers above 2^53 into doubles; this unit decodes faithfully: arrays get
 * a marker metatable (so they re-encode as arrays, even empty), nulls are
 * kept where they carry a position, and big integers stay exact on Lua 5.3+.
 *
 * Neither function raises for bad data: both push either the result or an
 * error message and say which with their return value. They may raise only
 * what any Lua API call may (out of memory, C stack overflow). Nothing leaks
 * on any path: the decoder uses only Lua-managed memory, the encoder's
 * buffer is owned by a userdata whose __gc frees it.
 */
#ifndef TSIM_JSON_H
#define TSIM_JSON_H

#include <stddef.h>

#include "lua.h"

/* Containers nested deeper than this are an error, both ways. */
#define TSIM_JSON_MAX_DEPTH 1000

/* Decodes the JSON text s[0..n) (need not be NUL-terminated) and pushes the
 * value (returns 1), or pushes an error message string such as
 * "invalid JSON at byte 17: expected ':'" (1-based byte offset; n + 1 means
 * "at the end") and returns 0.
 *
 * Objects become tables whose null members are left out; arrays become
 * tables 1..n with the metatable at stack index array_mt (0, or anything
 * but a table there: no marker);
 * a null inside an array, or a top-level null, becomes lightuserdata NULL
 * (sim.null / cjson.null / ngx.null), keeping positions. Duplicate keys: the
 * last non-null value wins.
 *
 * Numbers: on Lua 5.3+ a number written without fraction or exponent that
 * fits lua_Integer is pushed exactly as an integer; any other number whose
 * value is integral with |v| <= 2^53 is pushed as an integer too (2.0 -> 2);
 * others are floats. A number too large for a double (1e400) is an error.
 * On 5.1/5.2/LuaJIT all numbers are lua_Number.
 *
 * Strings: raw bytes kept as they are, escapes decoded (\uXXXX with
 * surrogate pairs -> UTF-8, \u0000 -> a NUL byte; a lone surrogate is an
 * error). Raw control bytes < 0x20 inside strings are an error. Nesting
 * deeper than TSIM_JSON_MAX_DEPTH, trailing non-whitespace, NaN, Infinity,
 * hex, leading zeros and '+' are errors. */
int tsim_json_decode(lua_State *L, const char *s, size_t n, int array_mt);

/* Encodes the value at idx as compact JSON into a new string and pushes it
 * (returns 1), or pushes an error message naming the problem and where
 * ("cannot encode a function at data[2].tags") and returns 0.
 *
 * Tables: an array when its metatable is the table at array_mt (0: none) --
 * items 1..#t, a nil hole written as null -- or when its keys are exactly
 * 1..n with n >= 1; an empty table without the marker is {}; otherwise an
 * object, whose keys must be strings (a number key in a non-sequence table
 * is an error), written in sorted byte order so output is deterministic.
 * Metamethods are never called. lightuserdata NULL and nil -> null.
 *
 * Numbers: Lua integers as integers; floats that are integral with
 * |v| < 2^53 as integers; other finite floats in the shortest of %.14g and
 * %.17g that reads back exactly; NaN and +-inf are errors. Strings escaped
 * per RFC 8259 (", \, control chars as \n \r \t \b \f or \u00XX; '/' and
 * bytes >= 0x80 copied as they are). Cycles and nesting deeper than
 * TSIM_JSON_MAX_DEPTH are errors. Functions, threads and userdata (other
 * than NULL lightuserdata) are errors. */
int tsim_json_encode(lua_State *L, int idx, int array_mt);

#endif /* TSIM_JSON_H */
