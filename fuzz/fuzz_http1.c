/*
 * libFuzzer target: src/http1.c, the response reader, standalone (no
 * module): a fresh Lua 5.4 state per input.
 *
 * Input: byte 0 picks max_body (0, 16, 512, 4096 or 1 MiB), byte 1 the
 * method (GET, HEAD, POST), byte 2 seeds the cuts; the rest is what the
 * server sent. The Makefile builds the fuzz targets with a head limit of
 * 600 bytes (TSIM_HTTP1_MAX_HEAD) so that inputs of a few KiB reach it. It is read twice: in one piece, and cut into pieces of 1 to
 * 64 bytes; each read stops at the first piece that is not "more, please",
 * or ends with r:closed().
 *
 * Invariants (a broken one aborts, which libFuzzer records as a crash):
 *   - the cuts change nothing: the same outcome (whole, or the same failure
 *     and message), and when whole the same status, headers and body; a
 *     reusable connection in one piece is reusable when cut;
 *   - a whole body is at most max_body bytes; a failure is "broken" or
 *     "too_large" with a message;
 *   - the headers a whole read has are checked lines: no name with white
 *     space, CR or LF, no value with CR or LF.
 * Leaks (the reader's buffers are malloc'd) are caught by lua_close and
 * LeakSanitizer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "../src/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_http1: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

/* r:method(args...) with the reader at index r; leaves the results on the stack, returns how many. */
static int call(lua_State *L, int r, const char *method, const char *piece, size_t n) {
  int top = lua_gettop(L);
  lua_getfield(L, r, method);
  lua_pushvalue(L, r);
  if (piece) lua_pushlstring(L, piece, n);
  lua_call(L, piece ? 2 : 1, LUA_MULTRET);
  return lua_gettop(L) - top;
}

/* Reads s[0..n) in pieces (cut: 0 for one piece, else an LCG seed); pushes
 * the reader and a summary string of the outcome. */
static void read_all(lua_State *L, const char *method, double max, const char *s, size_t n, unsigned cut) {
  size_t pos = 0;
  int r, got = 0;
  lua_pushcfunction(L, tsim_http1_response);
  lua_pushstring(L, method);
  lua_pushnumber(L, max);
  lua_call(L, 2, 1);
  r = lua_gettop(L);
  do {
    size_t take = n - pos;
    if (cut != 0) {
      cut = cut * 1103515245u + 12345u;
      if (take > 1 + (cut >> 16) % 64) take = 1 + (cut >> 16) % 64;
    }
    lua_settop(L, r);
    got = call(L, r, "feed", s + pos, take);
    pos += take;
  } while (got == 1 && !lua_toboolean(L, -1) && pos < n);
  if (got == 1 && !lua_toboolean(L, -1)) {
    lua_settop(L, r);
    got = call(L, r, "closed", NULL, 0);
  }
  if (got == 3) {
    if (!lua_isnil(L, r + 1) || !lua_isstring(L, r + 2) || !lua_isstring(L, r + 3)) fail("odd failure", NULL);
    if (strcmp(lua_tostring(L, r + 2), "broken") != 0 && strcmp(lua_tostring(L, r + 2), "too_large") != 0) {
      fail("unknown failure", lua_tostring(L, r + 2));
    }
    lua_pushfstring(L, "failed %s: %s", lua_tostring(L, r + 2), lua_tostring(L, r + 3));
  } else if (got != 1 || !lua_toboolean(L, -1)) {
    fail("feed or closed gave neither true nor a failure", NULL);
  } else {
    lua_pushliteral(L, "whole");
  }
  lua_replace(L, r + 1);
  lua_settop(L, r + 1);
}

/* Pushes the headers table at idx as one string, "name=value\n" lines sorted
 * (a list's values joined by "\1"), so two tables compare as strings. */
static void push_canonical(lua_State *L, int idx) {
  static const char canon[] =
    "local h = ... local lines = {} "
    "for k, v in pairs(h) do lines[#lines + 1] = k .. '=' .. (type(v) == 'table' and table.concat(v, '\\1') or v) end "
    "table.sort(lines) return table.concat(lines, '\\n')";
  idx = lua_absindex(L, idx);
  if (luaL_loadstring(L, canon) != LUA_OK) fail("canon", lua_tostring(L, -1));
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
}

/* Checks the headers table on top (popped). */
static void check_headers(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    size_t nlen, i;
    const char *name = lua_tolstring(L, -2, &nlen);
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      lua_replace(L, -2);
    }
    if (name == NULL || nlen == 0 || !lua_isstring(L, -1)) fail("a header that is not name = string", NULL);
    for (i = 0; i < nlen; i++) {
      if (strchr(" \t\r\n:", name[i]) != NULL && name[i] != '\0') fail("a header name with space, CR, LF or ':'", name);
    }
    if (strchr(lua_tostring(L, -1), '\r') || strchr(lua_tostring(L, -1), '\n')) fail("a header value with CR or LF", name);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Pushes r.field (the reader at r). */
static void field(lua_State *L, int r, const char *name) {
  lua_getfield(L, r, name);
}

/* Compares the fields of two whole reads: a (in one piece) and b (cut). */
static void compare_whole(lua_State *L, int a, int b, double max) {
  size_t na, nb;
  const char *ba, *bb;
  field(L, a, "status");
  field(L, b, "status");
  if (!lua_rawequal(L, -1, -2)) fail("the cuts changed the status", NULL);
  field(L, a, "body");
  field(L, b, "body");
  ba = lua_tolstring(L, -2, &na);
  bb = lua_tolstring(L, -1, &nb);
  if (ba == NULL || bb == NULL || na != nb || memcmp(ba, bb, na) != 0) fail("the cuts changed the body", NULL);
  if ((double)na > max) fail("a body over max_body", NULL);
  field(L, a, "reusable");
  field(L, b, "reusable");
  if (lua_toboolean(L, -2) && !lua_toboolean(L, -1)) fail("reusable in one piece, not when cut", NULL);
  lua_pop(L, 6);
  field(L, a, "headers");
  field(L, b, "headers");
  push_canonical(L, -2);
  push_canonical(L, -2);
  if (strcmp(lua_tostring(L, -1), lua_tostring(L, -2)) != 0) fail("the cuts changed the headers", NULL);
  lua_pop(L, 2);
  check_headers(L);
  check_headers(L);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const double maxes[] = {0, 16, 512, 4096, 1048576};
  static const char *const methods[] = {"GET", "HEAD", "POST"};
  lua_State *L;
  const char *method, *s;
  double max;
  if (size < 3) return 0;
  L = luaL_newstate();
  if (L == NULL) fail("luaL_newstate", NULL);
  luaL_openlibs(L);
  max = maxes[data[0] % 5];
  method = methods[data[1] % 3];
  s = (const char *)data + 3;
  read_all(L, method, max, s, size - 3, 0);           /* 1, 2 */
  read_all(L, method, max, s, size - 3, data[2] | 1u); /* 3, 4 */
  if (strcmp(lua_tostring(L, 2), lua_tostring(L, 4)) != 0) {
    fprintf(stderr, "one piece: %s\ncut:       %s\n", lua_tostring(L, 2), lua_tostring(L, 4));
    fail("the cuts changed the outcome", NULL);
  }
  if (strcmp(lua_tostring(L, 2), "whole") == 0) compare_whole(L, 1, 3, max);
  lua_close(L);
  return 0;
}
