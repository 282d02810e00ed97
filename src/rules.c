/*
 * rules.c -- the rule engine: one recursive walk per job over the rule trees
 * of operations.h (and of the client's options).
 *
 *   validate   a Lua value against a rule -> ok, or an err naming the field path;
 *              for options, filling the caller's option struct in the same pass
 *   emit JSON  validated params -> the request body
 *   emit URL   validated params -> path and query (filter[a][b]=x,y)
 *   describe   a row and its rules -> plain Lua tables (sim.describe)
 *
 * Each kind's behaviour (check, emit, message words, option field) sits in
 * one row of `kinds[]` below; each string format's in TSIM_FORMATS (rules.h,
 * checked in formats.c). No I/O here.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "core.h"

/* --- Field paths: built only when an error needs one --- */

/* One step down the value being walked: a field name, or an array index. */
struct seg {
  const struct seg *up;
  const char *name; /* NULL: an array item */
  long index;
};

struct walk {
  const struct vctx *v;
  const struct seg *at;
  char *into; /* the option struct a top-level value fills, or NULL */
};

/* The walk one step down, to field `name` or (name NULL) item `index`, its
 * step kept in s: nothing below the top fills anything. */
static struct walk below(const struct walk *w, struct seg *s, const char *name, long index) {
  struct walk sub;
  s->up = w->at;
  s->name = name;
  s->index = index;
  sub.v = w->v;
  sub.at = s;
  sub.into = NULL;
  return sub;
}

/* Each kind's behaviour is one row of `kinds[]` (defined below its functions). */
typedef int (*check_fn)(lua_State *L, const struct rule *r, int idx, const struct walk *w);
typedef void (*emit_fn)(lua_State *L, struct strbuf *b, const struct rule *r, int idx);
typedef void (*query_fn)(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                         char *sep);
typedef void (*say_fn)(lua_State *L, const struct rule *r);
typedef void (*fill_fn)(lua_State *L, int idx, void *field);

struct kind_row {
  const char *name;      /* as sim.describe says it */
  check_fn check;
  emit_fn json;          /* NULL: cannot go in a body */
  emit_fn text;          /* NULL: not a scalar, cannot go in a path or a query value */
  query_fn query;        /* NULL: cannot go in a query */
  say_fn say;            /* pushes what the rule asks for: "must be ..." */
  const char *says;      /* say_plain's words */
  const char *bounds_as; /* say_plain: what comes before the bounds; NULL: none shown */
  fill_fn fill;          /* NULL: cannot be an option */
  size_t fill_size;      /* the size of the option struct's field it fills */
};

static const struct kind_row kinds[K_COUNT_];

static int push_path_parts(lua_State *L, const struct seg *s, const char *root) {
  int n;
  luaL_checkstack(L, 3, "telnyx.sim: field path too deep");
  if (s == NULL) {
    if (root == NULL) return 0;
    lua_pushstring(L, root);
    return 1;
  }
  n = push_path_parts(L, s->up, root);
  if (s->name == NULL) {
    lua_pushfstring(L, "[%d]", (int)s->index);
    return n + 1;
  }
  if (n > 0) { lua_pushliteral(L, "."); n++; }
  lua_pushstring(L, s->name);
  return n + 1;
}

/* Pushes "data_limit.unit", "filter.status[2]", "opts.timeout". */
static void push_path(lua_State *L, const struct walk *w) {
  int n = push_path_parts(L, w->at, w->v->root);
  if (n == 0) lua_pushliteral(L, "params");
  else lua_concat(L, n);
}

/* --- Describing values and rules, for messages --- */

/* The value at idx for a message: its type, a number's value, a string's
 * length -- never a string's bytes (they may be secrets or binary). */
static const char *describe_value(lua_State *L, int idx, char *buf, size_t size) {
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER) {
    double d = (double)lua_tonumber(L, idx);
    if (d != d) snprintf(buf, size, "got NaN");
    else snprintf(buf, size, "got number %.17g", d);
  } else if (t == LUA_TSTRING) {
    size_t n = compat_rawlen(L, idx);
    snprintf(buf, size, "got a string of %lu byte%s", (unsigned long)n, n == 1 ? "" : "s");
  } else if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL) {
    snprintf(buf, size, "got sim.null");
  } else {
    snprintf(buf, size, "got %s", lua_typename(L, t));
  }
  return buf;
}

/* "from 1 to 250", ">= 1", "<= 255" or "" for a rule's bounds. */
static void bounds_text(const struct rule *r, char *buf, size_t size) {
  if (r->has_min && r->has_max) snprintf(buf, size, " from %.15g to %.15g", r->min, r->max);
  else if (r->has_min) snprintf(buf, size, " >= %.15g", r->min);
  else if (r->has_max) snprintf(buf, size, " <= %.15g", r->max);
  else buf[0] = '\0';
}

/* "must be an integer from 1 to 250", "must be a boolean". */
static void say_plain(lua_State *L, const struct rule *r) {
  const struct kind_row *k = &kinds[r->kind];
  char b[96];
  bounds_text(r, b, sizeof b);
  if (k->bounds_as == NULL || *b == '\0') lua_pushstring(L, k->says);
  else lua_pushfstring(L, "%s%s%s", k->says, k->bounds_as, b);
}

/* "must be one of ...", "must be a UUID (...)", "must be a non-empty UTF-8 string". */
static void say_string(lua_State *L, const struct rule *r) {
  const struct format_row *f = &tsim_formats[r->format];
  char b[96];
  if (r->choices != NULL) {
    tsim_push_joined(L, r->choices, "\"");
    lua_pushfstring(L, "must be one of %s", lua_tostring(L, -1));
    lua_remove(L, -2);
  } else if (!f->bounded) {
    lua_pushfstring(L, "must be %s", f->text);
  } else if (r->format == F_NONE && r->has_min && r->min == 1 && !r->has_max) {
    lua_pushliteral(L, "must be a non-empty UTF-8 string");
  } else {
    bounds_text(r, b, sizeof b);
    lua_pushfstring(L, "must be %s%s%s", f->text, *b ? ", length" : "", b);
  }
}

/* Pushes what the rule asks for: "must be an integer from 1 to 250". */
static void push_rule_text(lua_State *L, const struct rule *r) {
  kinds[r->kind].say(L, r);
  if (r->flags & R_NULLABLE) {
    lua_pushliteral(L, " or sim.null");
    lua_concat(L, 2);
  }
}

/* Every err of a walk: invalid_params, its field the path pushed at `path`,
 * its message fmt (whose arguments may read the path); leaves only the err,
 * in the path's slot. Returns 0 for the checks' callers. */
static int path_error(lua_State *L, int path, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  tsim_push_error(L, "invalid_params", "%s", lua_tostring(L, -1));
  lua_pushvalue(L, path);
  lua_setfield(L, -2, "field");
  lua_replace(L, path);
  lua_settop(L, path);
  return 0;
}

/* "who: 'path' rule (detail)". */
static int fail(lua_State *L, const struct walk *w, const struct rule *r, const char *detail) {
  int path = lua_gettop(L) + 1;
  push_path(L, w);
  push_rule_text(L, r);
  return path_error(L, path, "%s: %s'%s' %s (%s)", w->v->who, w->v->options ? "option " : "",
                    lua_tostring(L, path), lua_tostring(L, -1), detail);
}

static int fail_value(lua_State *L, const struct walk *w, const struct rule *r, int idx) {
  char what[64];
  return fail(L, w, r, describe_value(L, idx, what, sizeof what));
}

/* --- String formats --- */

static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], cp;
    size_t len, k;
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

static int format_ok(enum format f, const char *s, size_t n) {
  return tsim_formats[f].check == NULL || tsim_formats[f].check(s, n);
}

/* --- Validation: one check per kind --- */

static int check_value(lua_State *L, const struct rule *r, int idx, const struct walk *w);

static int in_bounds(const struct rule *r, double d) {
  return !(r->has_min && d < r->min) && !(r->has_max && d > r->max);
}

static int check_integer(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  double d;
  if (lua_type(L, idx) != LUA_TNUMBER) return fail_value(L, w, r, idx);
  d = (double)lua_tonumber(L, idx);
  if (!compat_isinteger(L, idx) && (d != d || floor(d) != d || fabs(d) > MAX_SAFE_INTEGER))
    return fail_value(L, w, r, idx);
  return in_bounds(r, d) ? 1 : fail_value(L, w, r, idx);
}

static int check_number(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  double d;
  if (lua_type(L, idx) != LUA_TNUMBER) return fail_value(L, w, r, idx);
  d = (double)lua_tonumber(L, idx);
  return d == d && !isinf(d) && in_bounds(r, d) ? 1 : fail_value(L, w, r, idx);
}

static int check_boolean(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  return lua_type(L, idx) == LUA_TBOOLEAN ? 1 : fail_value(L, w, r, idx);
}

static int check_function(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  return lua_type(L, idx) == LUA_TFUNCTION ? 1 : fail_value(L, w, r, idx);
}

static int in_choices(const char *const *c, const char *s, size_t n) {
  for (; *c != NULL; c++)
    if (strlen(*c) == n && memcmp(*c, s, n) == 0) return 1;
  return 0;
}

/* Plain ASCII that may be quoted back in a message. */
static int printable(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] > 0x7e) return 0;
  return 1;
}

static int check_string(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  size_t n;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING) return fail_value(L, w, r, idx);
  s = lua_tolstring(L, idx, &n);
  if (!utf8_valid((const unsigned char *)s, n)) return fail(L, w, r, "got a string that is not valid UTF-8");
  if (r->choices != NULL && !in_choices(r->choices, s, n)) {
    char what[64];
    if (n <= 40 && printable(s, n)) snprintf(what, sizeof what, "got \"%s\"", s);
    else describe_value(L, idx, what, sizeof what);
    return fail(L, w, r, what);
  }
  if (!in_bounds(r, (double)n) || !format_ok(r->format, s, n)) return fail_value(L, w, r, idx);
  return 1;
}

/* Keys exactly 1..n: returns n, or -1 with *bad saying why not. */
static long sequence_length(lua_State *L, int idx, const char **bad) {
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

static int check_array(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  const char *bad = NULL;
  long n, i;
  if (lua_type(L, idx) != LUA_TTABLE) return fail_value(L, w, r, idx);
  n = sequence_length(L, idx, &bad);
  if (n < 0) return fail(L, w, r, bad);
  if (!in_bounds(r, (double)n)) {
    char what[64];
    snprintf(what, sizeof what, "got %ld item%s", n, n == 1 ? "" : "s");
    return fail(L, w, r, what);
  }
  for (i = 1; i <= n; i++) {
    struct seg s;
    struct walk sub;
    int ok;
    sub = below(w, &s, NULL, i);
    lua_rawgeti(L, idx, (int)i);
    ok = check_value(L, r->items, lua_gettop(L), &sub);
    if (!ok) { lua_remove(L, -2); return 0; }
    lua_pop(L, 1);
  }
  return 1;
}

static const struct rule *find_field(const struct rule *fields, const char *name, size_t len) {
  const struct rule *f;
  if (strlen(name) != len) return NULL; /* "tags\0x" is no "tags" */
  for (f = fields; f->name != NULL; f++)
    if (f->name[0] == name[0] && strcmp(f->name, name) == 0) return f; /* the first byte rules most out */
  return NULL;
}

/* A key no path can name ([true] = 1, [2.5] = 1): the table that has it. */
static int fail_key_type(lua_State *L, const struct walk *w, const char *noun, int key) {
  char what[64];
  int path = lua_gettop(L) + 1;
  push_path(L, w);
  return path_error(L, path, "%s: %s takes %s names as keys (%s as a key)", w->v->who, lua_tostring(L, path), noun,
                    describe_value(L, key, what, sizeof what));
}

/* "unknown field 'x' (known fields: a, b)", naming the unknown key's path. */
static int fail_unknown(lua_State *L, const struct walk *w, const struct rule *fields, int key) {
  luaL_Buffer b;
  const struct rule *f;
  const char *noun = w->v->options ? "option" : "field";
  const char *name = lua_type(L, key) == LUA_TSTRING ? lua_tostring(L, key) : NULL;
  double d = lua_type(L, key) == LUA_TNUMBER ? (double)lua_tonumber(L, key) : 0;
  long index = d >= 1 && d <= 1e9 && floor(d) == d ? (long)d : 0; /* an array-style key reads as one: filter[1] */
  int path = lua_gettop(L) + 1;
  struct seg s;
  struct walk sub;
  if (name == NULL && index == 0) return fail_key_type(L, w, noun, key);
  sub = below(w, &s, name, index);
  push_path(L, &sub);
  luaL_buffinit(L, &b);
  for (f = fields; f->name != NULL; f++) {
    if (f != fields) luaL_addstring(&b, ", ");
    luaL_addstring(&b, f->name);
  }
  luaL_pushresult(&b);
  return path_error(L, path, "%s: unknown %s '%s' (known %ss: %s)", w->v->who, noun, lua_tostring(L, path), noun,
                    lua_tostring(L, -1));
}

/* "who: 'path' is required (missing)". */
static int fail_missing(lua_State *L, const struct walk *w, const struct rule *f) {
  struct seg s;
  struct walk sub = below(w, &s, f->name, 0);
  int path = lua_gettop(L) + 1;
  push_path(L, &sub);
  return path_error(L, path, "%s: %s'%s' is required (missing)", w->v->who, w->v->options ? "option " : "",
                    lua_tostring(L, path));
}

/* A valid option's value into its field of the option struct. */
static void fill_option(lua_State *L, const struct rule *f, int idx, char *into) {
  if (!tsim_is_nullable_null(L, idx)) kinds[f->kind].fill(L, idx, into + f->into);
}

/* Walks the table's keys (each must be a known field, with a valid value;
 * at the top of options, filling its field), then the rules (each required one must be there). */
static int check_fields(lua_State *L, const struct rule *fields, int idx, const struct walk *w) {
  const struct rule *f;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int ok;
    f = lua_type(L, -2) == LUA_TSTRING ? find_field(fields, lua_tostring(L, -2), compat_rawlen(L, -2)) : NULL;
    if (f == NULL) {
      ok = fail_unknown(L, w, fields, lua_gettop(L) - 1);
    } else {
      struct seg s;
      struct walk sub;
      sub = below(w, &s, f->name, 0);
      ok = check_value(L, f, lua_gettop(L), &sub);
      if (ok && w->into != NULL) fill_option(L, f, lua_gettop(L), w->into);
    }
    if (!ok) { lua_replace(L, -3); lua_pop(L, 1); return 0; } /* err where the key was */
    lua_pop(L, 1);
  }
  for (f = fields; f->name != NULL; f++) {
    int missing;
    if (!(f->flags & R_REQUIRED)) continue;
    compat_rawgetfield(L, idx, f->name);
    missing = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (missing) return fail_missing(L, w, f);
  }
  return 1;
}

static int check_object(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  if (lua_type(L, idx) != LUA_TTABLE) return fail_value(L, w, r, idx);
  return check_fields(L, r->fields, idx, w);
}

/* Options only: string keys (no NUL) to values obeying `items`. */
static int check_map(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  if (lua_type(L, idx) != LUA_TTABLE) return fail_value(L, w, r, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    struct seg s;
    struct walk sub;
    if (lua_type(L, -2) != LUA_TSTRING || strlen(lua_tostring(L, -2)) != compat_rawlen(L, -2)) {
      char what[64];
      snprintf(what, sizeof what, "a key: %s", describe_value(L, -2, what + 7, sizeof what - 7));
      fail(L, w, r, what);
      lua_replace(L, -3); lua_pop(L, 1);
      return 0;
    }
    sub = below(w, &s, lua_tostring(L, -2), 0);
    if (!check_value(L, r->items, lua_gettop(L), &sub)) { lua_replace(L, -3); lua_pop(L, 1); return 0; }
    lua_pop(L, 1);
  }
  return 1;
}

/* --- Emitting: JSON bodies and URL text --- */

static long long integer_value(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) return (long long)lua_tointeger(L, idx);
#endif
  return (long long)lua_tonumber(L, idx); /* validated: integral, |d| <= 2^53 */
}

static void json_value(lua_State *L, struct strbuf *b, const struct rule *r, int idx);

/* {"name":value,...}: the fields present, in rule order (equal params give
 * equal bytes), optionally only those travelling in `place`. */
static void json_fields(lua_State *L, struct strbuf *b, const struct rule *fields, int idx, int place) {
  const struct rule *f;
  int first = 1;
  sb_addlit(L, b, "{");
  for (f = fields; f->name != NULL; f++) {
    if (place >= 0 && (int)f->place != place) continue;
    compat_rawgetfield(L, idx, f->name);
    if (!lua_isnil(L, -1)) {
      if (!first) sb_addlit(L, b, ",");
      first = 0;
      sb_add_json_string(L, b, f->name, strlen(f->name));
      sb_addlit(L, b, ":");
      json_value(L, b, f, lua_gettop(L));
    }
    lua_pop(L, 1);
  }
  sb_addlit(L, b, "}");
}

static void json_object(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  json_fields(L, b, r->fields, idx, -1);
}

static void json_array(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  size_t i, n = compat_rawlen(L, idx);
  sb_addlit(L, b, "[");
  for (i = 1; i <= n; i++) {
    if (i > 1) sb_addlit(L, b, ",");
    lua_rawgeti(L, idx, (int)i);
    json_value(L, b, r->items, lua_gettop(L));
    lua_pop(L, 1);
  }
  sb_addlit(L, b, "]"); /* an empty array stays [] */
}

static void json_string(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  (void)r;
  sb_add_json_string(L, b, s, n);
}

/* Scalars read the same in JSON and in a URL: 2, true, and (in URLs) the
 * string percent-encoded. */
static void text_integer(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  (void)r;
  sb_add_integer(L, b, integer_value(L, idx));
}

static void text_boolean(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  (void)r;
  sb_addstr(L, b, lua_toboolean(L, idx) ? "true" : "false");
}

static void text_string(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  (void)r;
  sb_add_urlencoded(L, b, s, n);
}

/* --- Filling option structs (the field types: struct tsim_text in rules.h) --- */

static void fill_long(lua_State *L, int idx, void *field) {
  *(long *)field = (long)integer_value(L, idx); /* validated: options' integers are small */
}

static void fill_double(lua_State *L, int idx, void *field) {
  *(double *)field = (double)lua_tonumber(L, idx);
}

static void fill_bool(lua_State *L, int idx, void *field) {
  *(int *)field = lua_toboolean(L, idx);
}

static void fill_text(lua_State *L, int idx, void *field) {
  struct tsim_text *t = (struct tsim_text *)field;
  t->s = lua_tolstring(L, idx, &t->len);
}

/* Tables and functions stay Lua values: into the stack slot tsim_fill_options
 * reserved for them, which the field names already. */
static void fill_slot(lua_State *L, int idx, void *field) {
  lua_pushvalue(L, idx);
  lua_replace(L, *(int *)field);
}

/* --- The kinds --- */

static void query_object(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                         char *sep);
static void query_array(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                        char *sep);
static void query_scalar(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                         char *sep);

static const struct kind_row kinds[K_COUNT_] = {
  [K_INTEGER] = {"integer", check_integer, text_integer, text_integer, query_scalar,
                 say_plain, "must be an integer", "", fill_long, sizeof(long)},
  [K_STRING] = {"string", check_string, json_string, text_string, query_scalar,
                say_string, NULL, NULL, fill_text, sizeof(struct tsim_text)},
  [K_BOOLEAN] = {"boolean", check_boolean, text_boolean, text_boolean, query_scalar,
                 say_plain, "must be a boolean", NULL, fill_bool, sizeof(int)},
  [K_OBJECT] = {"object", check_object, json_object, NULL, query_object,
                say_plain, "must be a table of fields", NULL, NULL, 0},
  [K_ARRAY] = {"array", check_array, json_array, NULL, query_array,
               say_plain, "must be an array (a sequence 1..n)", ", length", NULL, 0},
  [K_NUMBER] = {"number", check_number, NULL, NULL, NULL,
                say_plain, "must be a number", "", fill_double, sizeof(double)},
  [K_FUNCTION] = {"function", check_function, NULL, NULL, NULL,
                  say_plain, "must be a function", NULL, fill_slot, sizeof(int)},
  [K_MAP] = {"map", check_map, NULL, NULL, NULL,
             say_plain, "must be a table of names to values", NULL, fill_slot, sizeof(int)},
};

int tsim_is_nullable_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

static int check_value(lua_State *L, const struct rule *r, int idx, const struct walk *w) {
  luaL_checkstack(L, 8, "telnyx.sim: params nested too deeply");
  if ((r->flags & R_NULLABLE) && tsim_is_nullable_null(L, idx)) return 1;
  return kinds[r->kind].check(L, r, idx, w);
}

static void json_value(lua_State *L, struct strbuf *b, const struct rule *r, int idx) {
  luaL_checkstack(L, 4, "telnyx.sim: params nested too deeply");
  if (tsim_is_nullable_null(L, idx)) sb_addlit(L, b, "null"); /* validated: nullable */
  else kinds[r->kind].json(L, b, r, idx);
}

/* --- Entry points: validate, build --- */

/* "who: options must be a table (got string)", naming where it was given. */
static int fail_not_table(lua_State *L, const struct vctx *v, int idx) {
  char what[64];
  tsim_push_error(L, "invalid_params", "%s: %s must be a table (%s)", v->who, v->options ? "options" : "params",
                  describe_value(L, idx, what, sizeof what));
  tsim_set_string(L, "field", v->root ? v->root : v->options ? "options" : "params");
  return 0;
}

int tsim_validate(lua_State *L, const struct vctx *v, const struct rule *fields, int idx) {
  struct walk w;
  w.v = v;
  w.at = NULL;
  w.into = NULL;
  idx = compat_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return fail_not_table(L, v, idx);
  return check_fields(L, fields, idx, &w);
}

/* Every rule of an options list fills a field of the kind's size: a wrong
 * INTO is a programming error, found on the first call. */
static void check_into(lua_State *L, const struct vctx *v, const struct rule *fields) {
  const struct rule *f;
  for (f = fields; f->name != NULL; f++)
    if (kinds[f->kind].fill == NULL || f->into_size != kinds[f->kind].fill_size)
      luaL_error(L, "telnyx.sim: %s: option '%s' has no INTO field of its kind's size", v->who, f->name);
}

/* One slot per Lua-valued option (nil until filled), named by its field. */
static void reserve_slots(lua_State *L, const struct rule *fields, char *into) {
  const struct rule *f;
  for (f = fields; f->name != NULL; f++) {
    if (kinds[f->kind].fill != fill_slot) continue;
    luaL_checkstack(L, 2, "telnyx.sim: too many options");
    lua_pushnil(L);
    *(int *)(void *)(into + f->into) = lua_gettop(L);
  }
}

/* A slot still nil: the option was absent, its field says 0. */
static void clear_empty_slots(lua_State *L, const struct rule *fields, char *into) {
  const struct rule *f;
  for (f = fields; f->name != NULL; f++) {
    int *slot = (int *)(void *)(into + f->into);
    if (kinds[f->kind].fill == fill_slot && lua_isnil(L, *slot)) *slot = 0;
  }
}

int tsim_fill_options(lua_State *L, const struct vctx *v, const struct rule *fields, int idx, void *into) {
  struct walk w;
  w.v = v;
  w.at = NULL;
  w.into = (char *)into;
  idx = compat_absindex(L, idx);
  check_into(L, v, fields);
  if (lua_type(L, idx) != LUA_TTABLE) return fail_not_table(L, v, idx);
  reserve_slots(L, fields, w.into);
  if (!check_fields(L, fields, idx, &w)) return 0;
  clear_empty_slots(L, fields, w.into);
  return 1;
}

void tsim_build_body(lua_State *L, struct strbuf *b, const struct rule *fields, int idx) {
  b->len = 0;
  json_fields(L, b, fields, compat_absindex(L, idx), IN_BODY);
}

/* One query key: filter[name][starts_with], each name percent-encoded. */
static void query_key(lua_State *L, struct strbuf *b, const struct seg *s) {
  if (s->up != NULL) {
    query_key(L, b, s->up);
    sb_addlit(L, b, "[");
    sb_add_urlencoded(L, b, s->name, strlen(s->name));
    sb_addlit(L, b, "]");
  } else {
    sb_add_urlencoded(L, b, s->name, strlen(s->name));
  }
}

/* Appends key=value pairs for the value at idx, as its kind writes them. */
static void query_value(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                        char *sep) {
  kinds[r->kind].query(L, b, r, idx, key, sep);
}

/* "&key=" (or "?key=" first). */
static void query_start(lua_State *L, struct strbuf *b, const struct seg *key, char *sep) {
  sb_add(L, b, sep, 1);
  *sep = '&';
  query_key(L, b, key);
  sb_addlit(L, b, "=");
}

/* An object: one level deeper per field present. */
static void query_object(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                         char *sep) {
  const struct rule *f;
  for (f = r->fields; f->name != NULL; f++) {
    struct seg s;
    s.up = key; s.name = f->name; s.index = 0;
    compat_rawgetfield(L, idx, f->name);
    if (!lua_isnil(L, -1)) query_value(L, b, f, lua_gettop(L), &s, sep);
    lua_pop(L, 1);
  }
}

/* An array: its items comma-joined (an empty one adds nothing). */
static void query_array(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                        char *sep) {
  size_t i, n = compat_rawlen(L, idx);
  if (n == 0) return;
  query_start(L, b, key, sep);
  for (i = 1; i <= n; i++) {
    if (i > 1) sb_addlit(L, b, ",");
    lua_rawgeti(L, idx, (int)i);
    kinds[r->items->kind].text(L, b, r->items, lua_gettop(L));
    lua_pop(L, 1);
  }
}

static void query_scalar(lua_State *L, struct strbuf *b, const struct rule *r, int idx, const struct seg *key,
                         char *sep) {
  query_start(L, b, key, sep);
  kinds[r->kind].text(L, b, r, idx);
}

static const struct rule *path_rule(const struct operation *op, const char *name, size_t len) {
  const struct rule *f;
  for (f = op->params; f->name != NULL; f++)
    if (f->place == IN_PATH && strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
  return NULL;
}

/* base_url + path with each {x} filled in, then the query params given. */
void tsim_build_url(lua_State *L, struct strbuf *b, const char *base_url, const struct operation *op,
                    int idx) {
  const char *p = op->path;
  const struct rule *f;
  char sep = '?';
  idx = compat_absindex(L, idx);
  b->len = 0;
  sb_addstr(L, b, base_url);
  while (*p) {
    const char *open = strchr(p, '{'), *close = open ? strchr(open, '}') : NULL;
    if (close == NULL) { sb_addstr(L, b, p); break; }
    sb_add(L, b, p, (size_t)(open - p));
    f = path_rule(op, open + 1, (size_t)(close - open - 1)); /* operations_spec checks the table: it exists */
    compat_rawgetfield(L, idx, f->name);
    kinds[f->kind].text(L, b, f, lua_gettop(L));
    lua_pop(L, 1);
    p = close + 1;
  }
  for (f = op->params; f->name != NULL; f++) {
    struct seg s;
    if (f->place != IN_QUERY) continue;
    s.up = NULL; s.name = f->name; s.index = 0;
    compat_rawgetfield(L, idx, f->name);
    if (!lua_isnil(L, -1)) query_value(L, b, f, lua_gettop(L), &s, &sep);
    lua_pop(L, 1);
  }
}

/* --- sim.describe --- */

static const char *const place_names[] = {"body", "path", "query"};
static const char *const resend_names[] = {"safe", "duplicates", "spends_money"};
static const char *const body_names[] = {"none", "json"};
static const char *const result_names[] = {"list", "one", "none"};

static void push_rule(lua_State *L, const struct rule *r, int top);

static void push_fields(lua_State *L, const struct rule *fields, int top) {
  const struct rule *f;
  int i = 0;
  lua_newtable(L);
  for (f = fields; f->name != NULL; f++) {
    push_rule(L, f, top);
    lua_rawseti(L, -2, ++i);
  }
}

static void set_number(lua_State *L, const char *key, double d) {
  if (floor(d) == d && fabs(d) <= MAX_SAFE_INTEGER) lua_pushinteger(L, (lua_Integer)d);
  else lua_pushnumber(L, d);
  lua_setfield(L, -2, key);
}

/* { name, kind, place, required, nullable, format, enum, min, max, fields | items } */
static void push_rule(lua_State *L, const struct rule *r, int top) {
  luaL_checkstack(L, 6, "telnyx.sim: rule tree too deep");
  lua_createtable(L, 0, 6);
  tsim_set_string(L, "name", r->name);
  tsim_set_string(L, "kind", kinds[r->kind].name);
  if (top) tsim_set_string(L, "place", place_names[r->place]);
  if (r->flags & R_REQUIRED) tsim_set_bool(L, "required", 1);
  if (r->flags & R_NULLABLE) tsim_set_bool(L, "nullable", 1);
  if (r->format != F_NONE) tsim_set_string(L, "format", tsim_formats[r->format].name);
  if (r->has_min) set_number(L, "min", r->min);
  if (r->has_max) set_number(L, "max", r->max);
  if (r->choices != NULL) {
    const char *const *c;
    int i = 0;
    lua_newtable(L);
    for (c = r->choices; *c != NULL; c++) {
      lua_pushstring(L, *c);
      lua_rawseti(L, -2, ++i);
    }
    lua_setfield(L, -2, "enum");
  }
  if (r->kind == K_OBJECT) {
    push_fields(L, r->fields, 0);
    lua_setfield(L, -2, "fields");
  } else if (r->items != NULL) {
    push_rule(L, r->items, 0);
    lua_setfield(L, -2, "items");
  }
}

/* Whether client:each can walk it: a list that takes a `page` object. The
 * one definition: flow.lua and tools/generate.lua read it from sim.describe. */
static int is_paged(const struct operation *op) {
  const struct rule *f;
  if (op->result != RESULT_LIST) return 0;
  for (f = op->params; f->name != NULL; f++)
    if (f->kind == K_OBJECT && strcmp(f->name, "page") == 0) return 1;
  return 0;
}

void tsim_describe(lua_State *L, const struct operation *op) {
  lua_createtable(L, 0, 11);
  tsim_set_string(L, "name", op->name);
  tsim_set_string(L, "method", op->method);
  tsim_set_string(L, "path", op->path);
  tsim_set_string(L, "body", body_names[op->body]);
  tsim_set_string(L, "result", result_names[op->result]);
  tsim_set_string(L, "resend", resend_names[op->resend]);
  tsim_set_string(L, "noun", op->noun);
  tsim_set_string(L, "check", op->check);
  tsim_set_bool(L, "paged", is_paged(op));
  lua_createtable(L, 0, 2);
  tsim_set_string(L, "kind", "object");
  push_fields(L, op->params, 1);
  lua_setfield(L, -2, "fields");
  lua_setfield(L, -2, "params");
}
