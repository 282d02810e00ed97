/*
 * json.c -- a strict JSON decoder and a deterministic encoder (json.h).
 *
 * Decoding builds tables straight from the input: a string without escapes
 * is one lua_pushlstring from the text, an integer is parsed without strtod,
 * an object member whose value is null is skipped without pushing its key.
 * Only Lua-managed memory is used (luaL_Buffer for escaped strings), so a
 * memory error unwinding through here leaks nothing.
 *
 * Encoding appends to a malloc'd buffer owned by a userdata whose __gc frees
 * it (so a longjmp leaks nothing either); the same userdata owns the scratch
 * array used to sort object keys. The path to the value being encoded is a
 * chain of frames on the C stack, read only to word an error message.
 */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "json.h"

/* --- compat (to move to src/compat.h) --- */

#if LUA_VERSION_NUM >= 502
#define TSIM_RAWLEN(L, i) lua_rawlen((L), (i))
#else
#define TSIM_RAWLEN(L, i) lua_objlen((L), (i))
#endif

#if LUA_VERSION_NUM >= 503
#define TSIM_HAS_INTEGERS 1
#define TSIM_ISINTEGER(L, i) lua_isinteger((L), (i))
typedef lua_Integer tsim_idx; /* the index type of lua_rawgeti/lua_rawseti */
#define TSIM_IDX_MAX LUA_MAXINTEGER
#else
#define TSIM_HAS_INTEGERS 0
#define TSIM_ISINTEGER(L, i) 0
typedef int tsim_idx;
#define TSIM_IDX_MAX INT_MAX
#endif

/* --- shared pieces --- */

#define TSIM_JSON_STR_(x) #x
#define TSIM_JSON_STR(x) TSIM_JSON_STR_(x)
#define TSIM_JSON_DEPTH_TEXT TSIM_JSON_STR(TSIM_JSON_MAX_DEPTH)
#define TSIM_JSON_2P53 9007199254740992.0 /* 2^53: doubles are exact integers below */
#define TSIM_JSON_BUFFER_MT "telnyx.sim.json.buffer"
/* Depths below this pre-size decoded containers (dec_open). */
#define TSIM_JSON_HINTS 16
/* Stack slots one nesting level may need, a luaL_Buffer's included. */
#define TSIM_JSON_SLOTS (LUA_MINSTACK + 8)

/* Bytes that end a run of plain string bytes: '"', '\\' and controls. The
 * decoder stops on them; the encoder escapes exactly these. */
static const unsigned char special[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
};

/* The first special byte in [p, end), or end: the hot loop of both ways. */
static const char *scan_plain(const char *p, const char *end) {
  while (end - p >= 4) {
    if (special[(unsigned char)p[0]]) return p;
    if (special[(unsigned char)p[1]]) return p + 1;
    if (special[(unsigned char)p[2]]) return p + 2;
    if (special[(unsigned char)p[3]]) return p + 3;
    p += 4;
  }
  while (p < end && !special[(unsigned char)*p]) p++;
  return p;
}

/* Callers may pass relative indices; everything here keeps absolute ones
 * because the stack grows under them. */
static int abs_index(lua_State *L, int i) {
  return (i < 0 && i > LUA_REGISTRYINDEX) ? lua_gettop(L) + i + 1 : i;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* ===================================================================== */
/* Decoding                                                              */
/* ===================================================================== */

struct dec {
  lua_State *L;
  const char *s, *p, *end; /* the input, the cursor, one past the input */
  const char *err;         /* a static message once something failed */
  const char *errp;        /* where it failed */
  int array_mt;            /* absolute stack index of the marker, or 0 */
  int depth;               /* containers open at the cursor */
  int hint[TSIM_JSON_HINTS][2]; /* per depth: the last object's, array's size */
};

/* Records the first failure; every parser returns its 0 up unchanged. */
static int dec_fail(struct dec *d, const char *at, const char *msg) {
  d->err = msg;
  d->errp = at;
  return 0;
}

static void dec_skip_ws(struct dec *d) {
  const char *p = d->p, *end = d->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  d->p = p;
}

/* Consumes the byte c at the cursor, or fails with msg (or end of input). */
static int dec_expect(struct dec *d, char c, const char *msg) {
  if (d->p >= d->end) return dec_fail(d, d->end, "unexpected end of input");
  if (*d->p != c) return dec_fail(d, d->p, msg);
  d->p++;
  return 1;
}

static int dec_value(struct dec *d);

/* Four hex digits at p (bounds-checked) into *out; 0 if they are not. */
static int dec_hex4(const char *p, const char *end, unsigned *out) {
  unsigned v = 0;
  int i;
  if (end - p < 4) return 0;
  for (i = 0; i < 4; i++) {
    unsigned c = (unsigned char)p[i];
    if (c >= '0' && c <= '9') c -= '0';
    else if ((c | 0x20u) >= 'a' && (c | 0x20u) <= 'f') c = (c | 0x20u) - 'a' + 10;
    else return 0;
    v = v << 4 | c;
  }
  *out = v;
  return 1;
}

/* Appends code point cp (<= 0x10FFFF, not a surrogate) as UTF-8. */
static void add_utf8(luaL_Buffer *b, unsigned cp) {
  unsigned char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (unsigned char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (unsigned char)(0xC0 | cp >> 6);
    u[1] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (unsigned char)(0xE0 | cp >> 12);
    u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (unsigned char)(0xF0 | cp >> 18);
    u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  luaL_addlstring(b, (const char *)u, n);
}

/* \uXXXX at p (the backslash), a surrogate pair taken whole; returns the
 * byte after it, or NULL on failure. */
static const char *dec_unicode(struct dec *d, luaL_Buffer *b, const char *p) {
  unsigned cp, lo;
  if (!dec_hex4(p + 2, d->end, &cp)) {
    dec_fail(d, p, "invalid \\u escape");
    return NULL;
  }
  if (cp < 0xD800 || cp > 0xDFFF) {
    add_utf8(b, cp);
    return p + 6;
  }
  if (cp > 0xDBFF || d->end - p < 12 || p[6] != '\\' || p[7] != 'u' || !dec_hex4(p + 8, d->end, &lo) ||
      lo < 0xDC00 || lo > 0xDFFF) {
    dec_fail(d, p, "lone surrogate in \\u escape");
    return NULL;
  }
  add_utf8(b, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
  return p + 12;
}

/* One escape at p (the backslash); returns the byte after it, or NULL. */
static const char *dec_escape(struct dec *d, luaL_Buffer *b, const char *p) {
  char c;
  if (d->end - p < 2) {
    dec_fail(d, d->end, "unexpected end of input");
    return NULL;
  }
  switch (p[1]) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': return dec_unicode(d, b, p);
    default: dec_fail(d, p, "invalid escape"); return NULL;
  }
  luaL_addlstring(b, &c, 1); /* not luaL_addchar: LuaJIT's trips clang-tidy */
  return p + 2;
}

/* The slow path of dec_string, from the first backslash at p: plain runs
 * and decoded escapes into a luaL_Buffer (nothing else touches the stack
 * until luaL_pushresult). Escapes only shrink, never past the input. */
static int dec_string_escaped(struct dec *d, const char *start, const char *p) {
  luaL_Buffer b;
  const char *end = d->end;
  luaL_buffinit(d->L, &b);
  for (;;) {
    luaL_addlstring(&b, start, (size_t)(p - start));
    if (p >= end) return dec_fail(d, end, "unexpected end of input");
    if (*p == '"') break;
    if (*p != '\\') return dec_fail(d, p, "control character in string");
    p = dec_escape(d, &b, p);
    if (p == NULL) return 0;
    start = p;
    p = scan_plain(p, end);
  }
  luaL_pushresult(&b);
  d->p = p + 1;
  return 1;
}

/* Pushes the string whose '"' is at the cursor. The common case, no
 * escapes, is a single lua_pushlstring straight from the input. */
static int dec_string(struct dec *d) {
  const char *start = d->p + 1, *p = scan_plain(start, d->end);
  if (p >= d->end) return dec_fail(d, d->end, "unexpected end of input");
  if (*p == '"') {
    lua_pushlstring(d->L, start, (size_t)(p - start));
    d->p = p + 1;
    return 1;
  }
  if (*p == '\\') return dec_string_escaped(d, start, p);
  return dec_fail(d, p, "control character in string");
}

/* strtod on a NUL-terminated copy of a validated number. snprintf/strtod
 * follow the C locale's decimal point; if that is not '.', retry with it. */
static double dec_strtod(char *buf, size_t n) {
  char *end;
  double v = strtod(buf, &end);
  if (end != buf + n) {
    char *dot = strchr(buf, '.');
    const char *point = localeconv()->decimal_point;
    if (dot != NULL && point != NULL && point[0] != '\0') {
      *dot = point[0];
      v = strtod(buf, NULL);
    }
  }
  return v;
}

/* Pushes v, as an integer when it is integral, |v| <= 2^53 and the Lua has
 * integers: 2.0 and 1e3 decode as the integers they mean. */
static void push_double(lua_State *L, double v) {
#if TSIM_HAS_INTEGERS
  if (v >= -TSIM_JSON_2P53 && v <= TSIM_JSON_2P53 && v >= (double)LUA_MININTEGER &&
      v < -(double)LUA_MININTEGER) {
    lua_Integer i = (lua_Integer)v;
    if ((double)i == v) {
      lua_pushinteger(L, i);
      return;
    }
  }
#endif
  lua_pushnumber(L, (lua_Number)v);
}

/* A number with a fraction, an exponent or too many digits: strtod on a
 * terminated copy (the input itself is not terminated). Overflow is an
 * error, so every decoded number can be encoded again. */
static int dec_float(struct dec *d, const char *start, const char *end) {
  char tmp[64];
  size_t n = (size_t)(end - start);
  char *buf = tmp;
  double v;
  if (n >= sizeof tmp) buf = (char *)lua_newuserdata(d->L, n + 1); /* Lua-managed */
  memcpy(buf, start, n);
  buf[n] = '\0';
  v = dec_strtod(buf, n);
  if (buf != tmp) lua_pop(d->L, 1);
  if (!isfinite(v)) return dec_fail(d, start, "number out of range");
  push_double(d->L, v);
  return 1;
}

/* Digits [p, end) (no sign, no fraction) without strtod; 0 when they need
 * the float path: 20 or more digits, or beyond lua_Integer on 5.3+. */
static int dec_integer(lua_State *L, const char *p, const char *end, int neg) {
  unsigned long long u = 0; /* 19 digits always fit in 64 bits */
  if (end - p > 19) return 0;
  for (; p < end; p++) u = u * 10 + (unsigned)(*p - '0');
#if TSIM_HAS_INTEGERS
  if (u == 0) {
    lua_pushinteger(L, 0); /* -0 too: integers have no sign of zero */
    return 1;
  }
  if (!neg && u <= (unsigned long long)LUA_MAXINTEGER) {
    lua_pushinteger(L, (lua_Integer)u);
    return 1;
  }
  if (neg && u - 1 <= (unsigned long long)LUA_MAXINTEGER) { /* down to LUA_MININTEGER */
    lua_pushinteger(L, -(lua_Integer)(u - 1) - 1);
    return 1;
  }
  return 0;
#else
  lua_pushnumber(L, (lua_Number)(neg ? -(double)u : (double)u));
  return 1;
#endif
}

/* Skips one or more digits; 0 if there is none at the cursor. */
static int dec_digits(struct dec *d, const char *msg) {
  if (d->p >= d->end || !is_digit(*d->p)) return dec_fail(d, d->p, msg);
  do d->p++;
  while (d->p < d->end && is_digit(*d->p));
  return 1;
}

/* A number per RFC 8259's grammar (no '+', no leading zeros, no hex, no
 * NaN/Infinity), pushed as dec_integer or dec_float says. */
static int dec_number(struct dec *d) {
  const char *start = d->p, *digits, *int_end;
  int neg = *d->p == '-';
  d->p += neg;
  digits = d->p;
  if (d->p < d->end && *d->p == '0') {
    d->p++;
    if (d->p < d->end && is_digit(*d->p)) return dec_fail(d, digits, "leading zero in number");
  } else if (!dec_digits(d, "invalid number")) {
    return 0;
  }
  int_end = d->p;
  if (d->p < d->end && *d->p == '.') {
    d->p++;
    if (!dec_digits(d, "expected a digit after '.'")) return 0;
  }
  if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
    d->p++;
    if (d->p < d->end && (*d->p == '+' || *d->p == '-')) d->p++;
    if (!dec_digits(d, "expected a digit in the exponent")) return 0;
  }
  if (int_end == d->p && dec_integer(d->L, digits, int_end, neg)) return 1;
  return dec_float(d, start, d->p);
}

/* The literal word at the cursor (true, false, null), bounds-checked. */
static int dec_literal(struct dec *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return dec_fail(d, d->p, "invalid literal");
  d->p += n;
  return 1;
}

/* Opens a container and pushes its table, pre-sized like the last one of
 * its kind that closed at this depth (API lists repeat one shape). A size
 * sizes at most one later container (same-depth ones cannot overlap) and an
 * empty one takes none, so no more slots are reserved than members were
 * decoded. Returns 0 on error, 1 if it was empty (now closed), 2 if not. */
static int dec_open(struct dec *d, char close, int array) {
  int empty, hint = 0;
  if (++d->depth > TSIM_JSON_MAX_DEPTH) {
    return dec_fail(d, d->p, "nesting deeper than " TSIM_JSON_DEPTH_TEXT);
  }
  luaL_checkstack(d->L, TSIM_JSON_SLOTS, "JSON nesting");
  d->p++; /* the '[' or '{' */
  dec_skip_ws(d);
  empty = d->p < d->end && *d->p == close;
  if (!empty && d->depth < TSIM_JSON_HINTS) hint = d->hint[d->depth][array];
  lua_createtable(d->L, array ? hint : 0, array ? 0 : hint);
  if (array && d->array_mt) {
    lua_pushvalue(d->L, d->array_mt);
    lua_setmetatable(d->L, -2);
  }
  if (!empty) return 2;
  d->p++;
  d->depth--;
  return 1;
}

/* Remembers a closed container's size for dec_open (dec_next has already
 * moved depth back to the parent's, hence + 1). */
static void dec_set_hint(struct dec *d, int array, size_t n) {
  int depth = d->depth + 1;
  if (depth < TSIM_JSON_HINTS) d->hint[depth][array] = n < 1024 ? (int)n : 1024;
}

/* After a member: 1 after a ',' (more follow), 0 after close, -1 on error. */
static int dec_next(struct dec *d, char close, const char *msg) {
  dec_skip_ws(d);
  if (d->p >= d->end) return dec_fail(d, d->end, "unexpected end of input") - 1;
  if (*d->p == close) {
    d->p++;
    d->depth--;
    return 0;
  }
  if (*d->p != ',') return dec_fail(d, d->p, msg) - 1;
  d->p++;
  dec_skip_ws(d);
  return 1;
}

/* An array: items at 1..n, null kept as lightuserdata NULL, the marker set. */
static int dec_array(struct dec *d) {
  lua_State *L = d->L;
  tsim_idx i = 0;
  int more = dec_open(d, ']', 1);
  if (more != 2) return more;
  do {
    if (!dec_value(d)) return 0;
    if (i == TSIM_IDX_MAX) return dec_fail(d, d->p, "array too long");
    lua_rawseti(L, -2, ++i);
    more = dec_next(d, ']', "expected ',' or ']'");
  } while (more > 0);
  if (more < 0) return 0;
  dec_set_hint(d, 1, (size_t)i);
  return 1;
}

/* An object key whose '"' is at the cursor: without escapes it is left as
 * a span (0) so a null member never pushes it; else pushed (1); -1 error. */
static int dec_key(struct dec *d, const char **key, size_t *len) {
  const char *start = d->p + 1, *p = scan_plain(start, d->end);
  if (p < d->end && *p == '"') {
    *key = start;
    *len = (size_t)(p - start);
    d->p = p + 1;
    return 0;
  }
  return dec_string(d) ? 1 : -1;
}

/* One "key": value member into the table on top; a null value is left out. */
static int dec_member(struct dec *d) {
  const char *key = NULL;
  size_t len = 0;
  int pushed;
  if (d->p >= d->end) return dec_fail(d, d->end, "unexpected end of input");
  if (*d->p != '"') return dec_fail(d, d->p, "expected a string key");
  pushed = dec_key(d, &key, &len);
  if (pushed < 0) return 0;
  dec_skip_ws(d);
  if (!dec_expect(d, ':', "expected ':'")) return 0;
  dec_skip_ws(d);
  if (d->p < d->end && *d->p == 'n') {
    if (!dec_literal(d, "null", 4)) return 0;
    if (pushed) lua_pop(d->L, 1);
    return 1;
  }
  if (!pushed) lua_pushlstring(d->L, key, len);
  if (!dec_value(d)) return 0;
  lua_rawset(d->L, -3);
  return 1;
}

/* An object: members with string keys, null members left out, no marker. */
static int dec_object(struct dec *d) {
  size_t n = 0;
  int more = dec_open(d, '}', 0);
  if (more != 2) return more;
  do {
    if (!dec_member(d)) return 0;
    n++;
    more = dec_next(d, '}', "expected ',' or '}'");
  } while (more > 0);
  if (more < 0) return 0;
  dec_set_hint(d, 0, n);
  return 1;
}

/* Any value at the cursor (whitespace already skipped); pushes one value. */
static int dec_value(struct dec *d) {
  if (d->p >= d->end) return dec_fail(d, d->end, "unexpected end of input");
  switch (*d->p) {
    case '"': return dec_string(d);
    case '{': return dec_object(d);
    case '[': return dec_array(d);
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      return dec_number(d);
    case 't':
      if (!dec_literal(d, "true", 4)) return 0;
      lua_pushboolean(d->L, 1);
      return 1;
    case 'f':
      if (!dec_literal(d, "false", 5)) return 0;
      lua_pushboolean(d->L, 0);
      return 1;
    case 'n':
      if (!dec_literal(d, "null", 4)) return 0;
      lua_pushlightuserdata(d->L, NULL);
      return 1;
    default: return dec_fail(d, d->p, "expected a value");
  }
}

int tsim_json_decode(lua_State *L, const char *s, size_t n, int array_mt) {
  struct dec d;
  int top = lua_gettop(L);
  char msg[160];
  if (s == NULL) s = ""; /* so s + 0 is defined */
  d.L = L;
  d.s = d.p = s;
  d.end = s + n;
  d.err = NULL;
  d.errp = s;
  d.array_mt = array_mt != 0 && lua_istable(L, array_mt) ? abs_index(L, array_mt) : 0;
  d.depth = 0;
  memset(d.hint, 0, sizeof d.hint);
  luaL_checkstack(L, TSIM_JSON_SLOTS, "JSON decode");
  dec_skip_ws(&d);
  if (dec_value(&d)) {
    dec_skip_ws(&d);
    if (d.p == d.end) return 1;
    dec_fail(&d, d.p, "unexpected data after the value");
  }
  lua_settop(L, top);
  snprintf(msg, sizeof msg, "invalid JSON at byte %zu: %s", (size_t)(d.errp - d.s) + 1, d.err);
  lua_pushstring(L, msg);
  return 0;
}

/* ===================================================================== */
/* Encoding                                                              */
/* ===================================================================== */

struct key { /* an object key being sorted; k: its slot in the anchor table */
  const char *s;
  size_t len;
  int k;
};

struct buf { /* the userdata's payload; __gc frees both arrays */
  char *out;
  size_t len, cap;
  struct key *keys; /* a stack of key lists, one per object being written */
  size_t nkeys, capkeys;
};

struct frame { /* one step of the path to the value being encoded */
  const struct frame *up; /* the container's own step; NULL: the top level */
  int tidx;               /* stack index of the container */
  int keyidx;             /* stack index of the member's key; 0: an array item */
  tsim_idx index;         /* the array item's position */
  int depth;              /* steps from the top, this one included */
};

struct enc {
  lua_State *L;
  struct buf *b;
  int array_mt; /* absolute stack index of the marker, or 0 */
};

static void buf_free(struct buf *b) {
  free(b->out);
  free(b->keys);
  b->out = NULL;
  b->keys = NULL;
  b->len = b->cap = b->nkeys = b->capkeys = 0;
}

/* __gc: the buffer's memory goes with the userdata, however the encode
 * ended (a memory error's longjmp included). Checked, so the function
 * reached through the debug library cannot free another userdata. */
static int buf_gc(lua_State *L) {
  buf_free((struct buf *)luaL_checkudata(L, 1, TSIM_JSON_BUFFER_MT));
  return 0;
}

/* Pushes the buffers' metatable, made once. It is registered only when
 * complete: luaL_newmetatable would register it first, and a memory error
 * before __gc is set (lua_pushcfunction allocates on 5.1) would leave every
 * later buffer without a finalizer. */
static void buf_push_mt(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, TSIM_JSON_BUFFER_MT);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, buf_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, TSIM_JSON_BUFFER_MT);
}

/* Pushes an empty buffer userdata; nothing is malloc'd until it has its
 * finalizer. */
static struct buf *buf_push(lua_State *L) {
  struct buf *b = (struct buf *)lua_newuserdata(L, sizeof *b);
  b->out = NULL;
  b->keys = NULL;
  b->len = b->cap = b->nkeys = b->capkeys = 0;
  buf_push_mt(L);
  lua_setmetatable(L, -2);
  return b;
}

/* A capacity of at least need, doubling from have (or min): amortised O(1)
 * appends. Callers have checked that need itself does not overflow. */
static size_t grow_to(size_t have, size_t need, size_t min) {
  size_t cap = have > min ? have : min;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) return need;
    cap *= 2;
  }
  return cap;
}

/* Room for n more output bytes; returns where they go. */
static char *buf_reserve(struct enc *e, size_t n) {
  struct buf *b = e->b;
  if (b->out == NULL || b->cap - b->len < n) {
    size_t cap;
    char *p;
    if (n > SIZE_MAX - b->len) luaL_error(e->L, "JSON text too large");
    cap = grow_to(b->cap, b->len + n, 256);
    p = (char *)realloc(b->out, cap);
    if (p == NULL) luaL_error(e->L, "not enough memory");
    b->out = p;
    b->cap = cap;
  }
  return b->out + b->len;
}

static void buf_add(struct enc *e, const char *s, size_t n) {
  memcpy(buf_reserve(e, n), s, n);
  e->b->len += n;
}

static void buf_addc(struct enc *e, char c) {
  *buf_reserve(e, 1) = c;
  e->b->len++;
}

/* Room for n more keys on the key stack. */
static void keys_reserve(struct enc *e, size_t n) {
  struct buf *b = e->b;
  if (b->keys == NULL || b->capkeys - b->nkeys < n) {
    size_t cap;
    struct key *p;
    if (n > SIZE_MAX / sizeof *p - b->nkeys) luaL_error(e->L, "JSON object too large");
    cap = grow_to(b->capkeys, b->nkeys + n, 16);
    if (cap > SIZE_MAX / sizeof *p) cap = b->nkeys + n;
    p = (struct key *)realloc(b->keys, cap * sizeof *p);
    if (p == NULL) luaL_error(e->L, "not enough memory");
    b->keys = p;
    b->capkeys = cap;
  }
}

/* --- error messages --- */

/* A key that reads well after a '.': an identifier. */
static int is_ident(const char *s, size_t n) {
  size_t i;
  if (n == 0 || is_digit(s[0])) return 0;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (!(is_digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return 0;
  }
  return 1;
}

/* Appends the path to f's member, root first: data[2].tags, ["a b"].x. The
 * recursion is as deep as the nesting, which is bounded. */
static void add_path(lua_State *L, luaL_Buffer *b, const struct frame *f) {
  size_t n;
  const char *s;
  if (f == NULL) return;
  add_path(L, b, f->up);
  if (f->keyidx == 0) {
    char tmp[48];
    snprintf(tmp, sizeof tmp, "[%lld]", (long long)f->index);
    luaL_addstring(b, tmp);
    return;
  }
  s = lua_tolstring(L, f->keyidx, &n);
  if (is_ident(s, n)) {
    if (f->up != NULL) luaL_addlstring(b, ".", 1);
    luaL_addlstring(b, s, n);
  } else {
    luaL_addstring(b, "[\"");
    luaL_addlstring(b, s, n);
    luaL_addstring(b, "\"]");
  }
}

/* Pushes "cannot encode <what> at <path>" and returns 0 for the callers to
 * pass up; tsim_json_encode moves the message into place. */
static int enc_fail(struct enc *e, const struct frame *f, const char *what) {
  luaL_Buffer b;
  luaL_checkstack(e->L, TSIM_JSON_SLOTS, "JSON error message");
  luaL_buffinit(e->L, &b);
  luaL_addstring(&b, "cannot encode ");
  luaL_addstring(&b, what);
  luaL_addstring(&b, " at ");
  if (f == NULL) luaL_addstring(&b, "the top level");
  else add_path(e->L, &b, f);
  luaL_pushresult(&b);
  return 0;
}

/* --- scalars --- */

/* Writes "\uXXXX"-style or short escapes for one special byte. */
static void enc_escape(struct enc *e, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char *o = buf_reserve(e, 6);
  char x;
  switch (c) {
    case '"': x = '"'; break;
    case '\\': x = '\\'; break;
    case '\b': x = 'b'; break;
    case '\f': x = 'f'; break;
    case '\n': x = 'n'; break;
    case '\r': x = 'r'; break;
    case '\t': x = 't'; break;
    default: x = 0; break;
  }
  o[0] = '\\';
  if (x != 0) {
    o[1] = x;
    e->b->len += 2;
    return;
  }
  o[1] = 'u';
  o[2] = '0';
  o[3] = '0';
  o[4] = hex[c >> 4];
  o[5] = hex[c & 15];
  e->b->len += 6;
}

/* A string per RFC 8259: plain runs copied whole, '/' and bytes >= 0x80
 * as they are. */
static void enc_string(struct enc *e, const char *s, size_t n) {
  const char *end = s + n;
  buf_reserve(e, n + 2);
  buf_addc(e, '"');
  while (s < end) {
    const char *run = s;
    s = scan_plain(s, end);
    buf_add(e, run, (size_t)(s - run));
    if (s == end) break;
    enc_escape(e, (unsigned char)*s++);
  }
  buf_addc(e, '"');
}

/* Decimal digits of v into out (>= 21 bytes); returns the length. */
static size_t fmt_integer(char *out, long long v) {
  char tmp[24];
  size_t n = 0, i = 0;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    tmp[n++] = (char)('0' + (int)(u % 10));
    u /= 10;
  } while (u != 0);
  if (v < 0) out[i++] = '-';
  while (n > 0) out[i++] = tmp[--n];
  return i;
}

/* snprintf writes the C locale's decimal point; JSON wants '.'. Anything
 * that is not a digit, sign or 'e' is that point (maybe multibyte). */
static size_t fix_point(char *s, size_t n) {
  size_t i, j = 0;
  int in_point = 0;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (is_digit(c) || c == '-' || c == '+' || c == 'e') {
      s[j++] = c;
      in_point = 0;
    } else if (!in_point) {
      s[j++] = '.';
      in_point = 1;
    }
  }
  return j;
}

/* A finite non-integral (or huge) double: %.14g when it reads back exactly
 * (the shorter, friendlier form), else %.17g, which always does. */
static size_t fmt_double(char *out, size_t size, double v) {
  int n = snprintf(out, size, "%.14g", v);
  if (n < 0 || (size_t)n >= size || strtod(out, NULL) != v) n = snprintf(out, size, "%.17g", v);
  if (n < 0 || (size_t)n >= size) n = 0;
  return fix_point(out, (size_t)n);
}

/* Integers as integers; integral floats below 2^53 as integers too. */
static int enc_number(struct enc *e, int idx, const struct frame *f) {
  char tmp[64];
  size_t n;
  double v;
  if (TSIM_ISINTEGER(e->L, idx)) {
    n = fmt_integer(tmp, (long long)lua_tointeger(e->L, idx));
    buf_add(e, tmp, n);
    return 1;
  }
  v = (double)lua_tonumber(e->L, idx);
  if (isnan(v)) return enc_fail(e, f, "NaN");
  if (isinf(v)) return enc_fail(e, f, v > 0 ? "inf" : "-inf");
  if (v > -TSIM_JSON_2P53 && v < TSIM_JSON_2P53 && (double)(long long)v == v) {
    n = fmt_integer(tmp, (long long)v);
  } else {
    n = fmt_double(tmp, sizeof tmp, v);
  }
  buf_add(e, tmp, n);
  return 1;
}

/* --- tables --- */

static int enc_value(struct enc *e, int idx, const struct frame *f);

enum shape { SHAPE_EMPTY, SHAPE_ARRAY, SHAPE_OBJECT, SHAPE_BAD };

/* The key at i as a sequence position (> 0), or 0 when it is not one. */
static double key_index(lua_State *L, int i) {
#if TSIM_HAS_INTEGERS
  lua_Integer k;
  if (!lua_isinteger(L, i)) return 0; /* integral float keys are integers on 5.3+ */
  k = lua_tointeger(L, i);
  return k > 0 ? (double)k : 0;
#else
  double v = (double)lua_tonumber(L, i);
  if (v >= 1 && v <= TSIM_JSON_2P53 && (double)(long long)v == v) return v;
  return 0;
#endif
}

/* Walks the keys once: array (exactly 1..n), object (only string keys),
 * empty, or bad (pushes the error). *count gets the number of keys. */
static enum shape enc_shape(struct enc *e, int idx, size_t *count, const struct frame *f) {
  lua_State *L = e->L;
  size_t n = 0, strings = 0, indices = 0;
  double max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int t = lua_type(L, -2);
    n++;
    if (t == LUA_TSTRING) {
      strings++;
    } else if (t == LUA_TNUMBER) {
      double k = key_index(L, -2);
      indices += k > 0;
      if (k > max) max = k;
    } else {
      const char *name = lua_typename(L, t);
      lua_pop(L, 2);
      lua_pushfstring(L, "a table with a %s key", name);
      enc_fail(e, f, lua_tostring(L, -1));
      return SHAPE_BAD;
    }
    lua_pop(L, 1);
  }
  *count = n;
  if (n == 0) return SHAPE_EMPTY;
  if (indices == n && max == (double)n) return SHAPE_ARRAY;
  if (strings == n) return SHAPE_OBJECT;
  enc_fail(e, f, "a table with a number key that is not part of a sequence");
  return SHAPE_BAD;
}

/* Items 1..n; a nil hole (possible in a marked table) is written as null. */
static int enc_array(struct enc *e, int idx, tsim_idx n, const struct frame *f) {
  struct frame fr;
  tsim_idx i;
  fr.up = f;
  fr.tidx = idx;
  fr.keyidx = 0;
  fr.depth = f ? f->depth + 1 : 1;
  buf_addc(e, '[');
  for (i = 1; i <= n; i++) {
    if (i > 1) buf_addc(e, ',');
    lua_rawgeti(e->L, idx, i);
    fr.index = i;
    if (!enc_value(e, lua_gettop(e->L), &fr)) return 0;
    lua_pop(e->L, 1);
  }
  buf_addc(e, ']');
  return 1;
}

/* Orders keys by bytes, shorter first on a common prefix. */
static int key_cmp(const void *pa, const void *pb) {
  const struct key *a = (const struct key *)pa, *b = (const struct key *)pb;
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->s, b->s, n);
  if (c != 0) return c;
  return (a->len > b->len) - (a->len < b->len);
}

/* Pushes an anchor table holding the (at most n) string keys, so they stay
 * alive whatever a finalizer does, and stacks them for sorting. Returns how
 * many it took. */
static size_t enc_collect_keys(struct enc *e, int idx, size_t n) {
  lua_State *L = e->L;
  struct buf *b = e->b;
  int anchor, k = 0;
  keys_reserve(e, n);
  lua_createtable(L, (int)n, 0);
  anchor = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if ((size_t)k == n) {
      lua_pop(L, 1); /* the table grew since enc_shape: take only n */
      break;
    }
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    b->keys[b->nkeys].s = lua_tolstring(L, -1, &b->keys[b->nkeys].len);
    b->keys[b->nkeys++].k = ++k;
    lua_pushvalue(L, -1);
    lua_rawseti(L, anchor, k);
  }
  return (size_t)k;
}

/* Members in sorted key order. The key list sits on the shared key stack;
 * deeper objects may move that array, so entries are re-read by index. */
static int enc_object(struct enc *e, int idx, size_t n, const struct frame *f) {
  lua_State *L = e->L;
  size_t base = e->b->nkeys, i;
  int anchor;
  struct frame fr;
  n = enc_collect_keys(e, idx, n);
  anchor = lua_gettop(L);
  qsort(e->b->keys + base, n, sizeof *e->b->keys, key_cmp);
  fr.up = f;
  fr.tidx = idx;
  fr.keyidx = anchor + 1;
  fr.index = 0;
  fr.depth = f ? f->depth + 1 : 1;
  buf_addc(e, '{');
  for (i = 0; i < n; i++) {
    size_t klen;
    const char *ks;
    lua_rawgeti(L, anchor, e->b->keys[base + i].k);
    ks = lua_tolstring(L, -1, &klen);
    if (i > 0) buf_addc(e, ',');
    enc_string(e, ks, klen);
    buf_addc(e, ':');
    lua_pushvalue(L, -1);
    lua_rawget(L, idx);
    if (!enc_value(e, anchor + 2, &fr)) return 0;
    lua_pop(L, 2);
  }
  buf_addc(e, '}');
  e->b->nkeys = base;
  lua_pop(L, 1); /* the anchor */
  return 1;
}

/* 1 when the table at idx carries the array marker. */
static int is_marked(struct enc *e, int idx) {
  int r;
  if (e->array_mt == 0 || !lua_getmetatable(e->L, idx)) return 0;
  r = lua_rawequal(e->L, -1, e->array_mt);
  lua_pop(e->L, 1);
  return r;
}

/* A table: depth and cycle checks (against the containers on the path),
 * then array or object by marker or by keys. */
static int enc_table(struct enc *e, int idx, const struct frame *f) {
  const struct frame *a;
  size_t n = 0;
  if (f != NULL && f->depth >= TSIM_JSON_MAX_DEPTH) {
    return enc_fail(e, f, "tables nested deeper than " TSIM_JSON_DEPTH_TEXT);
  }
  for (a = f; a != NULL; a = a->up) {
    if (lua_rawequal(e->L, a->tidx, idx)) return enc_fail(e, f, "a table that contains itself");
  }
  luaL_checkstack(e->L, TSIM_JSON_SLOTS, "JSON nesting");
  if (is_marked(e, idx)) return enc_array(e, idx, (tsim_idx)TSIM_RAWLEN(e->L, idx), f);
  switch (enc_shape(e, idx, &n, f)) {
    case SHAPE_EMPTY: buf_add(e, "{}", 2); return 1;
    case SHAPE_ARRAY:
      if (n > (size_t)TSIM_IDX_MAX) return enc_fail(e, f, "an array this long");
      return enc_array(e, idx, (tsim_idx)n, f);
    case SHAPE_OBJECT:
      if (n > (size_t)INT_MAX) return enc_fail(e, f, "an object this large");
      return enc_object(e, idx, n, f);
    default: return 0;
  }
}

/* Any value at absolute index idx; f is the path to it (NULL: the top). */
static int enc_value(struct enc *e, int idx, const struct frame *f) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL: buf_add(e, "null", 4); return 1;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) buf_add(e, "true", 4);
      else buf_add(e, "false", 5);
      return 1;
    case LUA_TNUMBER: return enc_number(e, idx, f);
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &n);
      enc_string(e, s, n);
      return 1;
    case LUA_TTABLE: return enc_table(e, idx, f);
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        buf_add(e, "null", 4);
        return 1;
      }
      return enc_fail(e, f, "a userdata");
    case LUA_TFUNCTION: return enc_fail(e, f, "a function");
    case LUA_TTHREAD: return enc_fail(e, f, "a thread");
    default: return enc_fail(e, f, "a userdata");
  }
}

int tsim_json_encode(lua_State *L, int idx, int array_mt) {
  struct enc e;
  int base, ok;
  idx = abs_index(L, idx);
  e.L = L;
  e.array_mt = array_mt != 0 && lua_istable(L, array_mt) ? abs_index(L, array_mt) : 0;
  luaL_checkstack(L, TSIM_JSON_SLOTS, "JSON encode");
  base = lua_gettop(L);
  e.b = buf_push(L);
  ok = enc_value(&e, idx, NULL);
  if (ok) lua_pushlstring(L, e.b->out, e.b->len);
  buf_free(e.b); /* now rather than at the next GC cycle */
  lua_replace(L, base + 1); /* the result or the message, over the buffer */
  lua_settop(L, base + 1);
  return ok;
}
