/*
 * libFuzzer target: src/json.c on arbitrary bytes, standalone (no module,
 * no harness.h): a fresh Lua 5.4 state per input, the input decoded once
 * without and once with an array marker.
 *
 * Invariants (a broken one aborts, which libFuzzer records as a crash):
 *   - decode pushes exactly one value; on failure that value is a message
 *     starting "invalid JSON at byte ";
 *   - whatever decodes encodes (the decoder only makes encodable values),
 *     the encoding decodes again, and encoding that gives the same bytes:
 *     encode . decode is a fixed point after one step.
 * Leaks (the encoder's malloc'd buffer included) are caught by lua_close
 * and LeakSanitizer.
 *
 *   clang-14 -O1 -g -fsanitize=fuzzer,address,undefined -I/usr/include/lua5.4 \
 *     fuzz/fuzz_json.c src/json.c -llua5.4 -lm -o /tmp/fuzz_json
 *   UBSAN_OPTIONS=halt_on_error=1 /tmp/fuzz_json -max_total_time=60 -max_len=4096
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "../src/json.h"

#define MARKER 1 /* stack index of the array marker table */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_json: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

/* The string at idx, which must be one. */
static const char *string_at(lua_State *L, int idx, size_t *n, const char *what) {
  if (lua_type(L, idx) != LUA_TSTRING) fail(what, "not a string");
  return lua_tolstring(L, idx, n);
}

/* Decode once with array_mt = mt (0 or MARKER); on success check the
 * encode/decode fixed point. Leaves the stack as it found it. */
static void check(lua_State *L, const char *s, size_t n, int mt) {
  int top = lua_gettop(L);
  size_t n1, n2;
  const char *e1, *e2;
  int ok = tsim_json_decode(L, s, n, mt);
  if (lua_gettop(L) != top + 1) fail("decode did not push exactly one value", NULL);
  if (!ok) {
    const char *msg = string_at(L, -1, &n1, "decode error");
    if (strncmp(msg, "invalid JSON at byte ", 21) != 0) fail("odd decode error", msg);
    lua_settop(L, top);
    return;
  }
  if (!tsim_json_encode(L, top + 1, mt)) fail("a decoded value did not encode", lua_tostring(L, -1));
  e1 = string_at(L, top + 2, &n1, "first encoding");
  if (!tsim_json_decode(L, e1, n1, mt)) fail("an encoding did not decode", lua_tostring(L, -1));
  if (!tsim_json_encode(L, top + 3, mt)) fail("the second value did not encode", lua_tostring(L, -1));
  e2 = string_at(L, top + 4, &n2, "second encoding");
  if (n1 != n2 || memcmp(e1, e2, n1) != 0) {
    fprintf(stderr, "first:  %.*s\nsecond: %.*s\n", (int)n1, e1, (int)n2, e2);
    fail("encode(decode(encode(v))) differs from encode(v)", NULL);
  }
  if (lua_gettop(L) != top + 4) fail("encode/decode left the stack unbalanced", NULL);
  lua_settop(L, top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  if (L == NULL) fail("luaL_newstate", NULL);
  lua_newtable(L); /* MARKER */
  check(L, (const char *)data, size, 0);
  check(L, (const char *)data, size, MARKER);
  lua_close(L);
  return 0;
}
