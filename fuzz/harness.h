/*
 * Shared pieces of the libFuzzer targets: a fresh Lua 5.4 state per input
 * with telnyx.sim preloaded (compiled into the fuzzer) and Debian's cjson.so
 * on package.cpath, a reader that takes structure from the front of the
 * input, and a generator of arbitrary Lua values.
 *
 * The invariants themselves are Lua code (each target's CHECKS chunk): a
 * failed invariant raises, and the harness turns that into abort(), which
 * libFuzzer records as a crash with the input that caused it.
 */
#ifndef TSIM_FUZZ_HARNESS_H
#define TSIM_FUZZ_HARNESS_H

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#ifndef CJSON_CPATH
#define CJSON_CPATH "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
#endif

/* The key every fuzzed client is made with; fuzz/telnyx.dict lists it so the
 * fuzzer can put it into bodies, headers and params. */
#define FUZZ_API_KEY "KEYfz0SECRET"
#define FUZZ_BASE_URL "https://api.example.test/v2"

/* FUZZ_TRACE=1: the checks print each input as Lua (show), to turn a crash
 * into a spec. Spliced into both targets' Lua checks. */
#define FUZZ_LUA_SHOW \
  "local function show(v, depth)\n" \
  "  depth = depth or 0\n" \
  "  if type(v) == 'string' then return (string.format('%q', v):gsub('\\\\\\n', '\\\\n')) end\n" \
  "  if type(v) == 'number' then\n" \
  "    if v ~= v then return '0/0' elseif v == math.huge then return 'math.huge' elseif v == -math.huge then return '-math.huge' end\n" \
  "    return math.type(v) == 'integer' and string.format('%d', v) or string.format('%.17g', v)\n" \
  "  end\n" \
  "  if type(v) ~= 'table' or depth > 6 then return tostring(v) end\n" \
  "  local parts = {}\n" \
  "  for k, x in pairs(v) do parts[#parts + 1] = '[' .. show(k, depth + 1) .. '] = ' .. show(x, depth + 1) end\n" \
  "  return '{ ' .. table.concat(parts, ', ') .. ' }'\n" \
  "end\n" \
  "local trace = os.getenv('FUZZ_TRACE')\n"

int luaopen_telnyx_sim(lua_State *L);

/* --- reading the input --- */

struct in {
  const uint8_t *p;
  size_t n;
};

static inline uint8_t in_u8(struct in *in) {
  uint8_t v;
  if (in->n == 0) return 0;
  v = in->p[0];
  in->p++;
  in->n--;
  return v;
}

static inline uint16_t in_u16(struct in *in) {
  uint16_t hi = in_u8(in);
  return (uint16_t)((hi << 8) | in_u8(in));
}

static inline uint64_t in_u64(struct in *in) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = (v << 8) | in_u8(in);
  return v;
}

/* The next n bytes of the input (fewer when it ends first) as a string. */
static inline void push_in_n(lua_State *L, struct in *in, size_t n) {
  if (n > in->n) n = in->n;
  lua_pushlstring(L, (const char *)in->p, n);
  in->p += n;
  in->n -= n;
}

/* Up to max bytes (the length comes from the input too). */
static inline void push_in_bytes(lua_State *L, struct in *in, size_t max) {
  push_in_n(L, in, in_u8(in) % (max + 1));
}

/* Up to max bytes, max up to 65535. */
static inline void push_in_long_bytes(lua_State *L, struct in *in, size_t max) {
  push_in_n(L, in, in_u16(in) % (max + 1));
}

static inline void push_in_rest(lua_State *L, struct in *in) {
  push_in_n(L, in, in->n);
}

/* --- arbitrary Lua values --- */

static const double special_numbers[] = {
  0.0, -0.0, 1.0, 3.0, -1.0, 0.5, 1.5, 1e-300, 1e308, -1e308, 9007199254740991.0,
  9007199254740992.0, 9007199254740993.0, 9223372036854775807.0, -9223372036854775808.0,
  18446744073709551616.0, 4294967296.0, 2147483648.0, 86400.0, 86400.5, 10.0, 11.0, 1000.0
};

static const char *const some_strings[] = {
  "", "enabled", "disabled", "standby", "Enabled", "whitelabel", "Acme Mobile 2", "\t \t",
  "6a09cdc3-8948-47f0-aa62-74ac943d6c58", "6a09cdc3-8948-47f0-aa62-74ac943d6c5g",
  "6a09cdc3_8948_47f0_aa62_74ac943d6c58", "0000000001", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80",
  "\xe2\x98\x83", "a\r\nb", "%s%d%n", "[REDACTED]", FUZZ_API_KEY
};

static inline void push_value(lua_State *L, struct in *in, int depth);

/* With a table, a key and a value on top: sets table[key] = value, or drops
 * the pair when the table cannot hold it (a nil or NaN key, a nil value). */
static inline void set_pair(lua_State *L) {
  if (lua_isnil(L, -2) || lua_isnil(L, -1) ||
      (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2))) {
    lua_pop(L, 2);
    return;
  }
  lua_rawset(L, -3);
}

/* A table with `n` entries under arbitrary keys. */
static inline void push_table(lua_State *L, struct in *in, int depth, int array_like) {
  int n = in_u8(in) % 7, i;
  luaL_checkstack(L, 8, "fuzz: deep");
  lua_newtable(L);
  for (i = 1; i <= n && in->n > 0; i++) {
    uint8_t k = in_u8(in);
    if (array_like) {
      /* mostly 1..n, sometimes a hole, 0, a negative or a float key */
      switch (k % 8) {
        case 0: lua_pushinteger(L, i + 1); break;
        case 1: lua_pushinteger(L, (lua_Integer)(int8_t)in_u8(in)); break;
        case 2: lua_pushnumber(L, i + 0.5); break;
        default: lua_pushinteger(L, i); break;
      }
    } else {
      switch (k % 6) {
        case 0: lua_pushinteger(L, (lua_Integer)(int8_t)in_u8(in)); break;
        case 1: lua_pushboolean(L, k & 8); break;
        case 2: lua_pushstring(L, some_strings[in_u8(in) % (sizeof some_strings / sizeof *some_strings)]); break;
        default: push_in_bytes(L, in, 24); break;
      }
    }
    push_value(L, in, depth + 1);
    set_pair(L);
  }
}

static inline void push_value(lua_State *L, struct in *in, int depth) {
  uint8_t sel = in_u8(in);
  luaL_checkstack(L, 8, "fuzz: deep");
  if (depth > 4) sel = (uint8_t)(sel % 10);
  switch (sel % 16) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, sel & 16); break;
    case 2: lua_pushinteger(L, (lua_Integer)(int8_t)in_u8(in)); break;
    case 3: lua_pushinteger(L, (lua_Integer)in_u64(in)); break;
    case 4: {
      uint8_t k = in_u8(in);
      double d;
      switch (k % 4) {
        case 0: d = NAN; break;
        case 1: d = (k & 4) ? -INFINITY : INFINITY; break;
        default: d = special_numbers[k % (sizeof special_numbers / sizeof *special_numbers)];
      }
      lua_pushnumber(L, d);
      break;
    }
    case 5: {
      uint64_t bits = in_u64(in);
      double d;
      memcpy(&d, &bits, sizeof d);
      lua_pushnumber(L, d);
      break;
    }
    case 6: case 7: push_in_bytes(L, in, 64); break;
    case 8: case 9:
      lua_pushstring(L, some_strings[in_u8(in) % (sizeof some_strings / sizeof *some_strings)]);
      break;
    case 10: case 11: { /* an array of strings, the shape lists want */
      int n = in_u8(in) % 6, i;
      lua_createtable(L, n, 0);
      for (i = 1; i <= n; i++) {
        if (in_u8(in) % 8 == 0) push_value(L, in, depth + 1);
        else push_in_bytes(L, in, 16);
        lua_rawseti(L, -2, i);
      }
      break;
    }
    case 12: push_table(L, in, depth, 1); break;
    case 13: push_table(L, in, depth, 0); break;
    case 14: lua_newtable(L); break;
    default: lua_pushlightuserdata(L, NULL); break; /* what cjson.null is */
  }
}

/* --- the Lua state --- */

static inline void fuzz_fail(lua_State *L, const char *what) {
  fprintf(stderr, "\n*** fuzz invariant broken (%s): %s\n", what, lua_tostring(L, -1));
  fflush(stderr);
  abort();
}

struct dump { char *p; size_t n; };

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  struct dump *d = (struct dump *)ud;
  char *grown = (char *)realloc(d->p, d->n + n);
  (void)L;
  if (grown == NULL) return 1;
  memcpy(grown + d->n, p, n);
  d->p = grown;
  d->n += n;
  return 0;
}

/* A fresh state with the libraries, cjson on cpath, telnyx.sim preloaded,
 * and the target's CHECKS chunk run; its result (a table of functions) is
 * left on the stack. A fresh state per input keeps inputs independent and
 * lets LeakSanitizer see any block the module fails to free; the chunk is
 * compiled once and cjson.so stays mapped, which keeps that cheap. */
static lua_State *fuzz_state(const char *checks, const char *chunkname) {
  static struct dump bytecode;
  lua_State *L;
  if (bytecode.p == NULL) {
    char path[256];
    snprintf(path, sizeof path, "%s", CJSON_CPATH);
    if (strstr(path, "?.so") != NULL) {
      memcpy(strstr(path, "?.so"), "cjson.so", 9);
      if (dlopen(path, RTLD_NOW) == NULL) fprintf(stderr, "fuzz: %s\n", dlerror());
    }
    L = luaL_newstate();
    if (L == NULL) abort();
    if (luaL_loadbuffer(L, checks, strlen(checks), chunkname) != LUA_OK ||
        lua_dump(L, dump_writer, &bytecode, 0) != 0)
      fuzz_fail(L, "compile");
    lua_close(L);
  }
  L = luaL_newstate();
  if (L == NULL) abort();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, CJSON_CPATH);
  lua_setfield(L, -2, "cpath");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_telnyx_sim);
  lua_setfield(L, -2, "telnyx.sim");
  /* each and wait_for_action (Lua, telnyx/sim/flow.lua) are not fuzzed: an
   * empty stand-in keeps a fresh state per input cheap */
  if (luaL_loadstring(L, "return { methods = {} }") != LUA_OK) fuzz_fail(L, "flow");
  lua_setfield(L, -2, "telnyx.sim.flow");
  lua_pop(L, 2);
  if (luaL_loadbufferx(L, bytecode.p, bytecode.n, chunkname, "b") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    fuzz_fail(L, "setup");
  return L;
}

/* Calls checks[name] with the `nargs` values on top; aborts when it raises. */
static inline void fuzz_check(lua_State *L, int checks_idx, const char *name, int nargs) {
  lua_getfield(L, checks_idx, name);
  lua_insert(L, -(nargs + 1));
  if (lua_pcall(L, nargs, 0, 0) != LUA_OK) fuzz_fail(L, name);
}

#endif
