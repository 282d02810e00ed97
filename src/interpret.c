/*
 * interpret.c -- the response half: what came back (or did not) -> res or
 * err, and whether the same request may be sent again. No I/O: the libcurl
 * path and every Lua transport run on this one function.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "core.h"
#include "json.h"

/* --- Response headers --- */

void tsim_meta_reset(struct response_meta *m) {
  m->request_id[0] = m->location[0] = m->content_type[0] = '\0';
  m->retry_after = -1;
  m->have_retry_ms = 0;
  m->should_retry = -1;
  m->seen = 0;
}

int tsim_name_is(const char *name, size_t n, const char *lower) {
  size_t i;
  if (strlen(lower) != n) return 0;
  for (i = 0; i < n; i++)
    if (tolower((unsigned char)name[i]) != lower[i]) return 0;
  return 1;
}

/* Keeps a header value only when it fits whole: a cut copy could hold part
 * of an echoed API key that redaction would then miss. */
static void keep_header_value(char *dst, size_t size, const char *v, size_t n) {
  if (n >= size) n = 0;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

/* A non-negative decimal number, or -1. */
static double parse_seconds(const char *v, size_t n) {
  double d = 0, scale = 0;
  size_t i;
  if (n == 0 || n > 24) return -1;
  for (i = 0; i < n; i++) {
    if (v[i] == '.' && scale == 0) { scale = 1; continue; }
    if (!isdigit((unsigned char)v[i])) return -1; /* no hex, exponent, sign or inf */
    if (scale > 0) d += (v[i] - '0') * (scale /= 10);
    else d = d * 10 + (v[i] - '0');
  }
  return d;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static long days_from_civil(long y, long m, long d) {
  long era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* Seconds from now until an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or -1. */
static double seconds_until_http_date(const char *v, size_t n) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char mon[4] = {0}, wday[4], gmt[4];
  int day, year, hh, mm, ss, used = 0;
  char buf[40];
  const char *m;
  if (n >= sizeof buf) return -1;
  memcpy(buf, v, n);
  buf[n] = '\0';
  if (sscanf(buf, "%3s, %d %3s %d %d:%d:%d %3s%n", wday, &day, mon, &year, &hh, &mm, &ss, gmt, &used) != 8 ||
      (size_t)used != n || strcmp(gmt, "GMT") != 0 || (m = strstr(months, mon)) == NULL ||
      (m - months) % 3 != 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || year < 1970)
    return -1;
  return (double)(days_from_civil(year, (m - months) / 3 + 1, day) * 86400L + hh * 3600L + mm * 60L + ss) -
         (double)time(NULL);
}

/* The headers the rules read; response_meta.seen has a bit for each. */
enum meta_header { M_REQUEST_ID, M_LOCATION, M_CONTENT_TYPE, M_SHOULD_RETRY, M_RETRY_MS, M_RETRY_AFTER };
static const char *const meta_names[] = {"x-request-id", "location", "content-type", "x-should-retry",
                                         "retry-after-ms", "retry-after", NULL};

/* Notes one response header (its value trimmed here). A header sent twice
 * counts by its first copy, whichever transport read it (a headers table
 * gives a list's first value). */
void tsim_meta_note(struct response_meta *m, const char *name, size_t nlen, const char *v, size_t vlen) {
  int i;
  for (i = 0; meta_names[i] != NULL && !tsim_name_is(name, nlen, meta_names[i]); i++) {}
  if (meta_names[i] == NULL || (m->seen & (1u << i))) return;
  m->seen |= 1u << i;
  while (vlen > 0 && (*v == ' ' || *v == '\t')) { v++; vlen--; }
  while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t' || v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
    vlen--;
  switch ((enum meta_header)i) {
    case M_REQUEST_ID: keep_header_value(m->request_id, sizeof m->request_id, v, vlen); break;
    case M_LOCATION: keep_header_value(m->location, sizeof m->location, v, vlen); break;
    case M_CONTENT_TYPE: keep_header_value(m->content_type, sizeof m->content_type, v, vlen); break;
    case M_SHOULD_RETRY:
      if (vlen == 4 && strncmp(v, "true", 4) == 0) m->should_retry = 1;
      else if (vlen == 5 && strncmp(v, "false", 5) == 0) m->should_retry = 0;
      break;
    case M_RETRY_MS: {
      double ms = parse_seconds(v, vlen);
      if (ms >= 0) { m->retry_after = ms / 1000.0; m->have_retry_ms = 1; }
      break;
    }
    case M_RETRY_AFTER:
      if (!m->have_retry_ms) {
        double s = parse_seconds(v, vlen);
        m->retry_after = s >= 0 ? s : seconds_until_http_date(v, vlen);
      }
  }
}

/* --- The retry verdict --- */

/* Back-off before retry number `attempt` (1-based): the server's word when
 * it is sane, else 0.5 s doubling to 8 s, less up to 25 % jitter. */
static double retry_delay(const struct response_meta *m, int attempt) {
  double base;
  unsigned char r = 0;
  if (m->retry_after > 0 && m->retry_after <= 60) return m->retry_after;
  base = 0.5 * pow(2.0, attempt - 1);
  if (base > 8) base = 8;
  (void)tsim_random_bytes(&r, 1);
  return base * (1.0 - 0.25 * (r / 255.0));
}

/* What each outcome means for the rules (enum outcome order). `arrived`:
 * whether the request may have reached the server (-1: the status says);
 * `sent`: the err's word for it; `status`: the err names the HTTP status
 * (a response began); `text`: the err's message, {op}, {why}, {hint} and
 * {status} filled in (hint: what to check before trying again). */
static const struct outcome_row {
  int transient, arrived;
  const char *sent, *kind;
  int status;
  const char *text;
} outcomes[OUT_COUNT_] = {
  /* OUT_RESPONSE */ {0, -1, "yes", "http", 1, NULL}, /* push_http_error words it */
  /* OUT_NOT_SENT */ {1, 0, "no", "connection", 0, "{op}: could not connect before the request was sent: {why}"},
  /* OUT_CONNECT_TIMEOUT */
  {1, 0, "no", "timeout", 0, "{op}: timed out connecting before the request was sent: {why}"},
  /* OUT_TIMEOUT */ {1, 1, "maybe", "timeout", 0, "{op}: timed out after the request was sent{hint}"},
  /* OUT_BROKEN */ {1, 1, "maybe", "connection", 0, "{op}: connection failed after the request was sent ({why}){hint}"},
  /* OUT_TOO_LARGE */
  {0, 1, "yes", "decode", 1, "{op}: response body larger than max_response_bytes (HTTP {status}){hint}"},
  /* OUT_NO_MEMORY */ {0, 1, "yes", "decode", 0, "{op}: not enough memory for the response{hint}"},
  /* OUT_REFUSED */
  {1, 0, "no", "connection", 0,
   "{op}: the server refused the request before processing it ({why}): not done, safe to send again"},
  /* OUT_HEADERS_TOO_LARGE */
  {0, 1, "yes", "decode", 1, "{op}: the response headers were larger than libcurl accepts (libcurl: {why}{http}){hint}"},
};

const char *const tsim_failure_names[] = {"not_sent", "connect_timeout", "timeout", "broken", "too_large", NULL};
const enum outcome tsim_failure_outcomes[] = {OUT_NOT_SENT, OUT_CONNECT_TIMEOUT, OUT_TIMEOUT, OUT_BROKEN,
                                              OUT_TOO_LARGE};

/* Whether the attempt's request may have reached the server. */
static int may_have_arrived(const struct attempt *a) {
  int arrived = outcomes[a->outcome].arrived;
  if (arrived >= 0) return arrived;
  return a->status >= 500 || a->status < 200; /* a 3xx or 4xx refused it */
}

/* Whether trying again may help: the row's word, a response's status. */
static int transient(const struct attempt *a) {
  if (a->outcome == OUT_RESPONSE) return a->status == 408 || a->status == 429 || a->status >= 500;
  return outcomes[a->outcome].transient && !a->permanent;
}

/* Decides what follows the attempt: whether it may be re-sent as-is, after
 * how long, and whether the server asked every call to wait. */
static struct retry_verdict judge_retry(const struct operation *op, const struct attempt *a, int resend_ok,
                                        int attempt) {
  struct retry_verdict v = {0, 0, 0, NULL};
  int resend_safe = !may_have_arrived(a) || op->resend == RESEND_SAFE || resend_ok;
  v.sent = outcomes[a->outcome].sent;
  if (a->outcome == OUT_RESPONSE && a->status < 400) return v; /* done (or redirected): never sent again */
  v.retryable = transient(a) && resend_safe;
  /* x-should-retry decides, but cannot make a possible second purchase safe */
  if (a->outcome == OUT_RESPONSE && a->meta.should_retry >= 0) v.retryable = a->meta.should_retry && resend_safe;
  if (!v.retryable) return v;
  v.delay = retry_delay(&a->meta, attempt);
  if ((a->outcome == OUT_RESPONSE && a->status == 429) || a->meta.retry_after > 0) v.pause = v.delay;
  return v;
}

/* --- Decoding and shape --- */

static int body_is_object(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
  return i < n && s[i] == '{';
}

/* Pushes the decoded JSON object and returns 1, or pushes why not and returns 0. */
static int decode_object(lua_State *L, int array_mt, const char *body, size_t len) {
  if (!body_is_object(body, len)) {
    lua_pushstring(L, len == 0 ? "empty body" : "body is not a JSON object");
    return 0;
  }
  return tsim_json_decode(L, body, len, array_mt);
}

/* Whether the value at idx is a table decoded from a JSON array. */
static int is_array(lua_State *L, int idx, int array_mt) {
  int yes;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  yes = lua_rawequal(L, -1, array_mt);
  lua_pop(L, 1);
  return yes;
}

/* Whether the table at idx is empty and unmarked: where cjson does not mark
 * arrays (Debian's 2.1.0), the [] that a list field holds looks like this. */
static int unmarked_empty(lua_State *L, int idx) {
  int empty;
  idx = compat_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (lua_getmetatable(L, idx)) { lua_pop(L, 1); return 0; }
  lua_pushnil(L);
  empty = !lua_next(L, idx);
  if (!empty) lua_pop(L, 2);
  return empty && !tsim_json_marks_arrays(L);
}

/* Makes env[key] an array: absent (or, under a cjson that does not mark
 * arrays, empty) becomes an empty marked one; anything else fails. */
static int ensure_array_field(lua_State *L, int env, const char *key, int array_mt) {
  int ok;
  lua_getfield(L, env, key);
  if (lua_isnil(L, -1) || unmarked_empty(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, array_mt);
    lua_setmetatable(L, -2);
    lua_setfield(L, env, key);
    return 1;
  }
  ok = is_array(L, -1, array_mt);
  lua_pop(L, 1);
  return ok;
}

/* A success's shape, per the row's result kind. Returns NULL when fine,
 * else what is wrong (pushing the noun-bearing text when it needs one). */
static const char *result_problem(lua_State *L, const struct operation *op, int env, int array_mt) {
  int ok;
  if (!ensure_array_field(L, env, "errors", array_mt)) return "'errors' is not an array";
  if (op->result == RESULT_NONE) return NULL;
  if (op->result == RESULT_LIST) return ensure_array_field(L, env, "data", array_mt) ? NULL : "'data' is not an array";
  lua_getfield(L, env, "data");
  ok = lua_type(L, -1) == LUA_TTABLE && !is_array(L, -1, array_mt);
  lua_pop(L, 1);
  return ok ? NULL : "'data' is not an object";
}

/* --- Errors --- */

/* Pushes the first error's "title: detail" (escaped), with " (+N more)". */
static void push_api_error_summary(lua_State *L, int errors) {
  size_t n = compat_rawlen(L, errors);
  int parts = 0, e;
  lua_rawgeti(L, errors, 1);
  e = lua_gettop(L);
  if (lua_type(L, e) == LUA_TTABLE) {
    lua_getfield(L, e, "title");
    lua_getfield(L, e, "detail");
    if (lua_type(L, e + 1) == LUA_TSTRING) {
      tsim_push_escaped_at(L, e + 1);
      parts++;
    }
    if (lua_type(L, e + 2) == LUA_TSTRING) {
      if (parts) { lua_pushliteral(L, ": "); parts++; }
      tsim_push_escaped_at(L, e + 2);
      parts++;
    }
  }
  if (n > 1) {
    lua_pushfstring(L, " (+%d more)", (int)(n > 1000000 ? 1000000 : n - 1));
    parts++;
  }
  lua_concat(L, parts); /* "" when there are none */
  lua_replace(L, e);
  lua_settop(L, e);
}

/* The words for a request that may have done its work: what to check first. */
static void push_uncertain_hint(lua_State *L, const struct operation *op, int resend_ok) {
  if (op->resend == RESEND_SAFE || resend_ok) lua_pushliteral(L, "");
  else lua_pushfstring(L, "; it may have gone through: check %s before trying again", op->check);
}

/* Pushes the API's error list from a decoded body at idx: its `errors`
 * array, or a bare error object ({code, title, detail}) as a list of one. */
static void push_api_errors(lua_State *L, int idx, int array_mt) {
  lua_newtable(L);
  lua_pushvalue(L, array_mt);
  lua_setmetatable(L, -2);
  if (idx == 0) return;
  lua_getfield(L, idx, "errors");
  if (is_array(L, -1, array_mt)) { lua_replace(L, -2); return; }
  if (lua_isnil(L, -1)) {
    lua_getfield(L, idx, "title");
    lua_getfield(L, idx, "detail");
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -2) == LUA_TSTRING) {
      lua_pushvalue(L, idx);
      lua_rawseti(L, -5, 1);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* The server's own words in an error body without an error list
 * ({"message": "Card 77 is not here"}, {"error": {"detail": ...}}): pushes
 * them escaped and returns 1, or pushes nothing and returns 0. */
static int push_server_words(lua_State *L, int body) {
  static const char *const names[] = {"message", "detail", "title", "error", NULL};
  int top = lua_gettop(L), place, i;
  lua_getfield(L, body, "error"); /* top + 1: searched second when a table */
  for (place = body; place != 0; place = place == body && lua_istable(L, top + 1) ? top + 1 : 0) {
    for (i = 0; names[i] != NULL; i++) {
      lua_getfield(L, place, names[i]);
      if (lua_type(L, -1) == LUA_TSTRING && compat_rawlen(L, -1) > 0) {
        tsim_push_escaped_at(L, -1);
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return 1;
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  return 0;
}

/* Pushes err for an attempt that ended with an HTTP response that is not a
 * success, with the API's error list when the body has one. */
static void push_http_error(lua_State *L, int array_mt, const struct operation *op, const struct attempt *a,
                            int resend_ok) {
  int top = lua_gettop(L), have = decode_object(L, array_mt, a->body, a->body_len); /* top + 1 */
  int status = (int)a->status, redirect = status >= 300 && status < 400;
  const char *quoted = redirect ? a->meta.location : a->meta.content_type;
  push_api_errors(L, have ? top + 1 : 0, array_mt); /* top + 2 */
  if (may_have_arrived(a)) push_uncertain_hint(L, op, resend_ok); else lua_pushliteral(L, ""); /* top + 3 */
  tsim_push_escaped(L, quoted, strlen(quoted)); /* top + 4: a header's value, escaped like the API's words */
  if (redirect) {
    tsim_push_error(L, "http", "%s: HTTP %d: redirects are not followed (Location: %s)", op->name, status,
                    *quoted ? lua_tostring(L, top + 4) : "none");
  } else if (compat_rawlen(L, top + 2) > 0 || (have && push_server_words(L, top + 1))) {
    if (compat_rawlen(L, top + 2) > 0) push_api_error_summary(L, top + 2); /* top + 5, as the words are */
    tsim_push_error(L, "http", "%s: HTTP %d: %s%s", op->name, status, lua_tostring(L, top + 5),
                    lua_tostring(L, top + 3));
  } else {
    tsim_push_error(L, "http", "%s: HTTP %d%s%s%s%s%s", op->name, status,
                    !a->body_len ? " with no body" : have ? " with a JSON body that names no error"
                                                          : " with a non-JSON body",
                    *quoted ? " (" : "", lua_tostring(L, top + 4), *quoted ? ")" : "", lua_tostring(L, top + 3));
  }
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "errors");
  tsim_set_int(L, "status", status);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* The words for a success that could not be read: for calls that spend or
 * create, it did happen, and the caller must look before trying again. */
static const char *accepted_hint(const struct operation *op) {
  return op->resend == RESEND_SAFE ? "" : "; the request was accepted: check ";
}

/* Pushes res (returns 1) or a decode err (returns 0) for a 2xx response. */
static int push_success(lua_State *L, int array_mt, const struct operation *op, const struct attempt *a) {
  const char *problem;
  if (a->body_len == 0 && (a->status == 204 || op->result == RESULT_NONE)) {
    lua_createtable(L, 0, 2); /* No Content: empty lists; a one-object result has no data */
    ensure_array_field(L, lua_gettop(L), "errors", array_mt);
    if (op->result == RESULT_LIST) ensure_array_field(L, lua_gettop(L), "data", array_mt);
    tsim_set_int(L, "status", a->status);
    return 1;
  } else if (!decode_object(L, array_mt, a->body, a->body_len)) {
    tsim_push_error(L, "decode", "%s: HTTP %d response could not be decoded: %s%s%s", op->name, (int)a->status,
                    lua_tostring(L, -1), accepted_hint(op), op->check ? op->check : "");
    lua_remove(L, -2);
    tsim_set_int(L, "status", a->status);
    return 0;
  }
  problem = result_problem(L, op, lua_gettop(L), array_mt);
  if (problem == NULL) {
    tsim_set_int(L, "status", a->status);
    return 1;
  }
  lua_pop(L, 1);
  tsim_push_error(L, "decode", "%s: HTTP %d response's %s (expected %s %s)%s%s", op->name, (int)a->status, problem,
                  op->result == RESULT_LIST ? "a list of" : "one", op->noun, accepted_hint(op),
                  op->check ? op->check : "");
  tsim_set_int(L, "status", a->status);
  return 0;
}

/* Pushes the value a text's {name} stands for: the operation, the status,
 * or one of the strings pushed at words: why, hint, http. */
static void push_field(lua_State *L, const char *name, size_t n, const struct operation *op, int words, long status) {
  static const char *const pushed[] = {"why", "hint", "http", NULL};
  int i;
  if (n == 2 && memcmp(name, "op", 2) == 0) { lua_pushstring(L, op->name); return; }
  if (n == 6 && memcmp(name, "status", 6) == 0) { lua_pushfstring(L, "%d", (int)status); return; }
  for (i = 0; pushed[i] != NULL && !(strlen(pushed[i]) == n && memcmp(name, pushed[i], n) == 0); i++) {}
  lua_pushvalue(L, words + i); /* every {name} of the table is one of these */
}

/* Pushes an outcome row's text with its {fields} filled in. */
static void push_text(lua_State *L, const char *text, const struct operation *op, int words, long status) {
  int parts = 0;
  for (;;) {
    const char *brace = strchr(text, '{'), *end = brace ? strchr(brace, '}') : NULL;
    lua_pushlstring(L, text, end ? (size_t)(brace - text) : strlen(text));
    parts++;
    if (!end) break;
    push_field(L, brace + 1, (size_t)(end - brace - 1), op, words, status);
    parts++;
    text = end + 1;
  }
  lua_concat(L, parts);
}

/* Pushes err for an attempt that got no (whole) response: its row's kind
 * and words. */
static void push_transport_error(lua_State *L, const struct operation *op, const struct attempt *a, int resend_ok) {
  const struct outcome_row *row = &outcomes[a->outcome];
  const char *why = a->transport_message ? a->transport_message : "unknown error";
  int base = lua_gettop(L) + 1, accepted = row->status && a->status >= 200 && a->status < 300;
  tsim_push_escaped(L, why, strlen(why)); /* libcurl's or a Lua transport's words may quote the server */
  if (accepted) lua_pushfstring(L, "%s%s", accepted_hint(op), op->check ? op->check : "");
  else push_uncertain_hint(L, op, resend_ok);
  if (a->status > 0) lua_pushfstring(L, "; HTTP %d", (int)a->status); else lua_pushliteral(L, "");
  push_text(L, row->text, op, base, a->status);
  tsim_push_error(L, row->kind, "%s", lua_tostring(L, -1));
  if (row->status && a->status > 0) tsim_set_int(L, "status", a->status);
  lua_replace(L, base);
  lua_settop(L, base);
}

int tsim_interpret(lua_State *L, int array_mt, const struct operation *op, const struct attempt *a, int resend_ok,
                   int attempt, struct retry_verdict *verdict) {
  luaL_checkstack(L, 12, "telnyx.sim: no stack space");
  *verdict = judge_retry(op, a, resend_ok, attempt);
  if (a->outcome != OUT_RESPONSE) push_transport_error(L, op, a, resend_ok);
  else if (a->status < 200 || a->status >= 300) push_http_error(L, array_mt, op, a, resend_ok);
  else if (push_success(L, array_mt, op, a)) return 1;
  tsim_set_string(L, "request_id", a->meta.request_id);
  tsim_set_bool(L, "retryable", verdict->retryable);
  tsim_set_string(L, "sent", verdict->sent);
  if (verdict->retryable) {
    lua_pushnumber(L, verdict->delay);
    lua_setfield(L, -2, "retry_after");
  }
  if (verdict->pause > 0) {
    lua_pushnumber(L, verdict->pause);
    lua_setfield(L, -2, "pause");
  }
  return 0;
}
