/*
 * telnyx.sim -- manage Telnyx SIM cards (API v2) from Lua.
 *
 * This file is the Lua binding only: the client object and its options, the
 * methods, the two halves' Lua faces, and luaopen_telnyx_sim. The rest of
 * the C is in src/, none of which calls back into this file:
 *   rules.h, operations.h   the data: a rule tree per param, a row per operation
 *   rules.c                 the engine: validate, build body / URL, describe
 *   call.c                  a call: per-call options, prepare, the attempts over libcurl
 *   batch.c                 many calls at once on one libcurl multi handle
 *   interpret.c, err.c      the response half, the retry verdict, the one err shape
 *   json.c, strbuf.c        lua-cjson for bodies, growable buffer
 *   transport.c             libcurl (the only file that calls it)
 * rules.c, interpret.c and err.c do no I/O, so a transport outside C
 * (telnyx/sim/resty.lua) keeps every rule through client:request and
 * client:interpret.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/compat.h"
#include "src/core.h"
#include "src/json.h"
#include "src/transport.h"
#include "src/client.h"

/* --- Options: rule trees, checked by the same engine as params --- */

/* sim.new's options as the engine fills them; absent ones keep sim_new's defaults. */
struct client_opts {
  struct tsim_text api_key, base_url, ca_file, ca_path; /* the options table's bytes */
  double timeout, connect_timeout;
  long max_retries, max_response_bytes;
  int allow_insecure_http, retry_may_duplicate;
  int sleep; /* the stack slot of the sleep function, or 0 */
};

#define OPT(m) INTO(struct client_opts, m)
static const struct rule client_options[] = {
  {"api_key", K_STRING, OPT(api_key)},
  {"base_url", K_STRING, OPT(base_url)},
  {"timeout", K_NUMBER, MIN(0.001), MAX(86400), OPT(timeout)},
  {"connect_timeout", K_NUMBER, MIN(0.001), MAX(86400), OPT(connect_timeout)},
  {"max_retries", K_INTEGER, MIN(0), MAX(MAX_RETRIES_LIMIT), OPT(max_retries)},
  {"max_response_bytes", K_INTEGER, MIN(1024), MAX(1 << 30), OPT(max_response_bytes)},
  {"ca_file", K_STRING, OPT(ca_file)},
  {"ca_path", K_STRING, OPT(ca_path)},
  {"allow_insecure_http", K_BOOLEAN, OPT(allow_insecure_http)},
  {"retry_may_duplicate", K_BOOLEAN, OPT(retry_may_duplicate)},
  {"sleep", K_FUNCTION, OPT(sleep)},
  END
};
#undef OPT

/* --- The client --- */

/* Frees what the client holds (wiping the key first); its methods then refuse to run. */
static int client_close(lua_State *L) {
  struct client *c = tsim_check_client(L, 1);
  tsim_transport_free(&c->t);
  if (c->api_key != NULL) tsim_wipe(c->api_key);
  free(c->api_key);
  c->api_key = NULL;
  free(c->base_url);
  c->base_url = NULL;
  strbuf_free(&c->scratch);
  if (c->sleep_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, c->sleep_ref);
  c->sleep_ref = LUA_NOREF;
  c->closed = 1;
  return 0;
}

static int client_tostring(lua_State *L) {
  struct client *c = tsim_check_client(L, 1);
  if (c->closed) lua_pushstring(L, "telnyx.sim.client (closed)");
  else lua_pushfstring(L, "telnyx.sim.client (%s)", c->base_url);
  return 1;
}

/* --- sim.new --- */

/* Pushes a config err naming the option; returns 0 for configure's callers. */
static int config_fail(lua_State *L, const char *field, const char *fmt, const char *detail) {
  tsim_push_error(L, "config", fmt, detail);
  tsim_set_string(L, "field", field);
  return 0;
}

/* A string option that cannot be used: a NUL would cut it short in C, and
 * "" would quietly mean a default. */
static int unusable(const struct tsim_text *t) {
  return t->s != NULL && (t->len == 0 || strlen(t->s) != t->len);
}

static const char *unusable_option(const struct client_opts *o) {
  if (unusable(&o->api_key)) return "api_key";
  if (unusable(&o->base_url)) return "base_url";
  if (unusable(&o->ca_file)) return "ca_file";
  return unusable(&o->ca_path) ? "ca_path" : NULL;
}

static int api_key_problem(const char *key) {
  const unsigned char *p;
  for (p = (const unsigned char *)key; *p; p++)
    if (*p < 0x20 || *p == 0x7f) return 1;
  return strlen(key) > 200;
}

/* The API key and base URL to use: the options', else TELNYX_API_KEY and
 * TELNYX_BASE_URL, else the default URL. Returns 0 with a config err pushed. */
static int pick_key_and_url(lua_State *L, const struct client_opts *o, const char **api_key, const char **base_url) {
  const char *problem;
  *api_key = o->api_key.s != NULL ? o->api_key.s : getenv("TELNYX_API_KEY");
  *base_url = o->base_url.s;
  if (*api_key == NULL || **api_key == '\0')
    return config_fail(L, "api_key", "%s", "sim.new: no API key: pass api_key or set TELNYX_API_KEY");
  if (api_key_problem(*api_key))
    return config_fail(L, "api_key", "%s",
                       "sim.new: the API key contains control characters (CR, LF, NUL) or is over 200 bytes");
  if (*base_url == NULL && (*base_url = getenv("TELNYX_BASE_URL")) != NULL && **base_url == '\0')
    /* set but empty (TELNYX_BASE_URL=$UNSET_VAR): a test setup, never a wish for production */
    return config_fail(L, "base_url", "%s",
                       "sim.new: TELNYX_BASE_URL is set but empty: unset it to use " DEFAULT_BASE_URL ", or give a URL");
  if (*base_url == NULL) *base_url = DEFAULT_BASE_URL;
  if ((problem = tsim_base_url_problem(*base_url, o->allow_insecure_http)) != NULL)
    return config_fail(L, "base_url", "sim.new: base_url %s", problem);
  return 1;
}

/* Fills the client from the filled options; returns 0 with err pushed. */
static int configure(lua_State *L, struct client *c, const struct client_opts *o) {
  const char *bad = unusable_option(o), *api_key, *base_url;
  if (bad != NULL)
    return config_fail(L, bad, "sim.new: option '%s' is empty or contains a NUL byte (leave it out to use the default)",
                       bad);
  if (!pick_key_and_url(L, o, &api_key, &base_url)) return 0;
  c->timeout = o->timeout;
  c->t.connect_timeout = o->connect_timeout;
  c->max_retries = (int)o->max_retries;
  c->t.max_response_bytes = (size_t)o->max_response_bytes;
  c->resend_ok = o->retry_may_duplicate;
  c->t.plain_http_guard = strncmp(base_url, "http://", 7) == 0 && !o->allow_insecure_http;
  c->t.https = strncmp(base_url, "https://", 8) == 0;
  c->api_key = strdup(api_key);
  c->base_url = strdup(base_url);
  if (o->ca_file.s) c->t.ca_file = strdup(o->ca_file.s);
  if (o->ca_path.s) c->t.ca_path = strdup(o->ca_path.s);
  if (c->api_key == NULL || c->base_url == NULL || (o->ca_file.s && !c->t.ca_file) || (o->ca_path.s && !c->t.ca_path))
    luaL_error(L, "telnyx.sim: not enough memory");
  return 1;
}

static void set_client_headers(lua_State *L, struct client *c) {
  char line[160];
  size_t n = strlen(c->base_url);
  while (n > 0 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
  snprintf(c->user_agent, sizeof c->user_agent, "telnyx-sim-lua/%s (%s; libcurl/%s)", TSIM_VERSION, LUA_VERSION,
           tsim_transport_version());
  snprintf(line, sizeof line, "User-Agent: %s", c->user_agent);
  if (!tsim_transport_set_headers(&c->t, c->api_key, line)) luaL_error(L, "telnyx.sim: not enough memory");
}

/* sim.new{...} -> client | nil, err (a bad option too: it never raises for input). */
static int sim_new(lua_State *L) {
  static const struct vctx who = {"sim.new", NULL, 1};
  struct client_opts o = {.timeout = DEFAULT_TIMEOUT, .connect_timeout = DEFAULT_CONNECT_TIMEOUT,
                          .max_retries = DEFAULT_MAX_RETRIES, .max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES};
  struct client *c;
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  lua_settop(L, 1);
  if (!tsim_fill_options(L, &who, client_options, 1, &o)) return tsim_return_error(L);
  c = (struct client *)lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->sleep_ref = LUA_NOREF;
  c->closed = 1; /* until fully built: __gc then frees whatever exists */
  luaL_getmetatable(L, TSIM_CLIENT_MT);
  lua_setmetatable(L, -2);
  if (!configure(L, c, &o)) return tsim_return_error(L);
  set_client_headers(L, c);
  if (o.sleep != 0) {
    lua_pushvalue(L, o.sleep);
    c->sleep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  c->closed = 0;
  return 1;
}

/* --- A call (call.c prepares and runs it) --- */

/* client:sleep(seconds): the client's way of waiting, for telnyx.sim.flow. */
static int client_sleep(lua_State *L) {
  struct client *c = tsim_check_client(L, 1);
  double s = (double)luaL_checknumber(L, 2);
  luaL_argcheck(L, s >= 0 && s <= 86400, 2, "seconds must be from 0 to 86400");
  tsim_pause_for(L, c, s);
  return 0;
}

/* client:clock() -> seconds on a monotonic clock, for telnyx.sim.flow's deadlines. */
static int client_clock(lua_State *L) {
  tsim_check_client(L, 1);
  lua_pushnumber(L, tsim_now());
  return 1;
}

/* client, params at 2, opts at 3 -> res | nil, err */
static int call_operation(lua_State *L, const struct operation *op) {
  struct client *c = tsim_check_client(L, 1);
  struct call k;
  int array_mt;
  memset(&k, 0, sizeof k);
  k.op = op;
  lua_settop(L, 3);
  lua_pushvalue(L, UV_ARRAY_MT);
  array_mt = lua_gettop(L);
  if (!tsim_prepare_call_at(L, c, &k, 2)) return tsim_return_error(L);
  return tsim_run_call(L, c, &k, array_mt);
}

/* client:<operation>(params [, opts]): the generated methods. */
static int client_method(lua_State *L) {
  return call_operation(L, &tsim_operations[lua_tointeger(L, lua_upvalueindex(2))]);
}

/* The operation named at idx, or NULL with its err pushed (who: the function called). */
static const struct operation *check_operation(lua_State *L, int idx, const char *who) {
  size_t n = 0;
  const char *name = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
  const struct operation *op = tsim_find_operation(name, n);
  if (op == NULL) tsim_push_unknown_operation(L, who, idx, "name");
  return op;
}

/* client:call(name, params [, opts]): the primitive under the methods. */
static int client_call(lua_State *L) {
  const struct operation *op;
  tsim_check_client(L, 1);
  if ((op = check_operation(L, 2, "call")) == NULL) return tsim_return_error(L);
  lua_remove(L, 2);
  return call_operation(L, op);
}

/* --- The two I/O-free halves, for transports that live outside C --- */

/* The headers of a call, as the libcurl path sends them (transport.c builds
 * the same lines): the client's, Content-Type with a JSON body, the call's. */
static void push_request_headers(lua_State *L, const struct client *c, const struct call *k) {
  lua_newtable(L);
  if (k->op->body == BODY_JSON) {
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "Content-Type");
  }
  lua_pushliteral(L, "application/json");
  lua_setfield(L, -2, "Accept");
  lua_pushstring(L, c->user_agent);
  lua_setfield(L, -2, "User-Agent");
  lua_pushfstring(L, "Bearer %s", c->api_key);
  lua_setfield(L, -2, "Authorization");
  if (k->idempotency_key != NULL) {
    lua_pushstring(L, k->idempotency_key);
    lua_setfield(L, -2, "Idempotency-Key");
  }
  if (k->headers_idx != 0) tsim_copy_into(L, k->headers_idx);
}

/*
 * client:request(operation, params [, opts]) -> req | nil, err
 * req = { operation, method, url, path, headers = {name = value}, body, timeout,
 *         connect_timeout, max_retries, retry_may_duplicate }: what to send, checked and built.
 */
static int client_request(lua_State *L) {
  struct client *c = tsim_check_client(L, 1);
  struct call k;
  memset(&k, 0, sizeof k);
  if ((k.op = check_operation(L, 2, "request")) == NULL) return tsim_return_error(L);
  lua_settop(L, 4);
  lua_remove(L, 2);
  if (!tsim_prepare_call_at(L, c, &k, 2)) return tsim_return_error(L);
  lua_createtable(L, 0, 10);
  tsim_set_string(L, "operation", k.op->name);
  tsim_set_string(L, "method", k.op->method);
  tsim_set_string(L, "url", k.url);
  lua_pushstring(L, k.url + strlen(c->base_url)); /* for proxies that own base_url */
  lua_setfield(L, -2, "path");
  if (k.body != NULL) {
    lua_pushlstring(L, k.body, k.body_len);
    lua_setfield(L, -2, "body");
  }
  lua_pushnumber(L, c->t.connect_timeout);
  lua_setfield(L, -2, "connect_timeout");
  lua_pushnumber(L, k.timeout);
  lua_setfield(L, -2, "timeout");
  tsim_set_int(L, "max_retries", k.max_retries);
  tsim_set_bool(L, "retry_may_duplicate", k.resend_ok);
  push_request_headers(L, c, &k);
  lua_setfield(L, -2, "headers");
  return 1;
}

/* Reads the response headers the rules use from a {name = value} table
 * (any case; a list of values counts by its first). */
static void meta_from_table(lua_State *L, int idx, struct response_meta *m) {
  tsim_meta_reset(m);
  if (lua_type(L, idx) != LUA_TTABLE) return;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      lua_replace(L, -2);
    }
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      size_t nlen, vlen;
      const char *name = lua_tolstring(L, -2, &nlen);
      const char *value = lua_tolstring(L, -1, &vlen);
      tsim_meta_note(m, name, nlen, value, vlen);
    }
    lua_pop(L, 1);
  }
}

/* A number field of a caller's table, without a UB cast of NaN or 1e300:
 * absent gives dflt, below lo (or NaN) lo, above hi `over`. */
static long clamped_field(lua_State *L, int t, const char *key, long lo, long hi, long over, long dflt) {
  double d;
  lua_getfield(L, t, key);
  d = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : (double)dflt;
  lua_pop(L, 1);
  if (!(d >= (double)lo)) return lo;
  return d > (double)hi ? over : (long)d;
}

/* Fills `a` from a reply table at 3: a response or a failure. */
static void attempt_from_reply(lua_State *L, const struct client *c, struct attempt *a) {
  memset(a, 0, sizeof *a);
  lua_getfield(L, 3, "headers");
  meta_from_table(L, lua_gettop(L), &a->meta);
  lua_pop(L, 1);
  lua_getfield(L, 3, "body"); /* kept on the stack while `a` points into it */
  a->body = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &a->body_len) : "";
  lua_getfield(L, 3, "message");
  a->transport_message = lua_tostring(L, -1);
  a->status = clamped_field(L, 3, "status", 0, 999999999, 0, 0);
  lua_getfield(L, 3, "failure");
  if (!lua_isnil(L, -1)) {
    a->outcome = tsim_failure_outcomes[luaL_checkoption(L, -1, NULL, tsim_failure_names)];
    lua_getfield(L, 3, "permanent"); /* not sent, and trying again cannot help (TLS trust) */
    a->permanent = (a->outcome == OUT_NOT_SENT || a->outcome == OUT_CONNECT_TIMEOUT) && lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else {
    luaL_argcheck(L, a->status >= 100 && a->status <= 999, 3, "reply needs a status (100-999) or a failure");
    a->outcome = a->body_len > c->t.max_response_bytes ? OUT_TOO_LARGE : OUT_RESPONSE;
  }
  lua_pop(L, 1);
}

/*
 * client:interpret(req, reply [, attempt]) -> res | nil, err, retry_in
 * reply = { status =, headers =, body = } when a response arrived, or
 * { failure = "not_sent" | "connect_timeout" | "timeout" | "broken" | "too_large",
 *   message =, permanent = } when it did not (permanent: not sent, and trying
 *   again cannot help). retry_in (seconds) is there when the caller
 * should send the same req again after waiting that long.
 */
static int client_interpret(lua_State *L) {
  struct client *c = tsim_check_client(L, 1);
  const struct operation *op;
  struct attempt a;
  struct retry_verdict v;
  int attempt, resend_ok, max_retries;
  double n;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (c->closed) { /* its key is gone, so its errors could not be redacted */
    tsim_push_error(L, "config", "interpret: the client is closed");
    return tsim_return_error(L);
  }
  n = (double)luaL_optnumber(L, 4, 1);
  luaL_argcheck(L, n >= 1 && n <= 1000 && floor(n) == n, 4, "attempt must be an integer from 1 to 1000");
  attempt = (int)n;
  lua_settop(L, 3);
  lua_pushvalue(L, UV_ARRAY_MT); /* 4 */
  lua_getfield(L, 2, "operation"); /* 5 */
  op = tsim_find_operation(lua_type(L, 5) == LUA_TSTRING ? lua_tostring(L, 5) : NULL, compat_rawlen(L, 5));
  luaL_argcheck(L, op != NULL, 2, "req.operation is not an operation name (a req comes from client:request)");
  lua_getfield(L, 2, "retry_may_duplicate");
  resend_ok = lua_toboolean(L, -1);
  lua_pop(L, 2);
  max_retries = (int)clamped_field(L, 2, "max_retries", 0, MAX_RETRIES_LIMIT, MAX_RETRIES_LIMIT, c->max_retries);
  attempt_from_reply(L, c, &a);
  if (tsim_interpret(L, 4, op, &a, resend_ok, attempt, &v)) return 1;
  tsim_finish_error(L, c, attempt);
  lua_pushnil(L);
  lua_insert(L, -2);
  if (v.retryable && attempt <= max_retries) {
    lua_pushnumber(L, v.delay);
    return 3;
  }
  return 2;
}

/* --- Module functions --- */

/* sim.error(kind, message [, fields]) -> err: for Lua transports and adapters
 * whose own failures should look like every other err. */
static int sim_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  tsim_push_error(L, kind, "%s", message);
  if (lua_istable(L, 3)) tsim_copy_into(L, 3);
  return 1;
}

/* sim.describe(name) -> the row and its rule tree | nil, err */
static int sim_describe(lua_State *L) {
  const struct operation *op = check_operation(L, 1, "describe");
  if (op == NULL) return tsim_return_error(L);
  tsim_describe(L, op);
  return 1;
}

/* sim.encode(value) -> JSON text | nil, err: arrays (marked, or 1..n) as
 * arrays -- an empty marked one as [] -- and sim.null as null. */
static int sim_encode(lua_State *L) {
  lua_settop(L, 1);
  if (tsim_json_encode(L, 1)) return 1;
  tsim_push_error(L, "invalid_params", "encode: %s", lua_tostring(L, -1));
  return tsim_return_error(L);
}

/* --- luaopen --- */

static void set_closures(lua_State *L, const luaL_Reg *l, int array_mt) {
  for (; l->name != NULL; l++) {
    lua_pushvalue(L, array_mt);
    lua_pushcclosure(L, l->func, 1);
    lua_setfield(L, -2, l->name);
  }
}

static const luaL_Reg client_methods[] = {
  {"close", client_close},
  {"call", client_call},
  {"request", client_request},
  {"interpret", client_interpret},
  {"sleep", client_sleep},
  {"clock", client_clock},
  {"batch", tsim_client_batch},
  {NULL, NULL}
};

static const luaL_Reg module_functions[] = {
  {"new", sim_new},
  {"error", sim_error},
  {"describe", sim_describe},
  {"encode", sim_encode},
  {NULL, NULL}
};

/* The methods written in Lua (telnyx/sim/flow.lua: each, wait_for_action),
 * into the method table on top. */
static void install_flow(lua_State *L) {
  int i, n;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "telnyx.sim.flow");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "methods");
  luaL_checktype(L, -1, LUA_TTABLE);
  n = (int)compat_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_pushvalue(L, -1);
    lua_gettable(L, -4);
    lua_settable(L, -5);
  }
  lua_pop(L, 2);
}

static void make_client_metatable(lua_State *L, int array_mt) {
  size_t i;
  luaL_newmetatable(L, TSIM_CLIENT_MT);
  lua_newtable(L); /* methods */
  set_closures(L, client_methods, array_mt);
  for (i = 0; i < tsim_n_operations; i++) {
    lua_pushvalue(L, array_mt);
    lua_pushinteger(L, (lua_Integer)i);
    lua_pushcclosure(L, client_method, 2);
    lua_setfield(L, -2, tsim_operations[i].name);
  }
  install_flow(L);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, client_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, client_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, client_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, TSIM_CLIENT_MT);
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "locked");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

/* sim.defaults and sim.failures, into the module table on top: what a
 * transport outside C (telnyx.sim.resty) reads instead of keeping copies. */
static void export_constants(lua_State *L) {
  int i;
  lua_createtable(L, 0, 6);
  tsim_set_string(L, "base_url", DEFAULT_BASE_URL);
  lua_pushnumber(L, DEFAULT_TIMEOUT);
  lua_setfield(L, -2, "timeout");
  lua_pushnumber(L, DEFAULT_CONNECT_TIMEOUT);
  lua_setfield(L, -2, "connect_timeout");
  tsim_set_int(L, "max_retries", DEFAULT_MAX_RETRIES);
  tsim_set_int(L, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES);
  tsim_set_int(L, "concurrency", DEFAULT_CONCURRENCY);
  lua_setfield(L, -2, "defaults");
  lua_newtable(L); /* the reply.failure names client:interpret takes */
  for (i = 0; tsim_failure_names[i] != NULL; i++) tsim_set_bool(L, tsim_failure_names[i], 1);
  lua_setfield(L, -2, "failures");
}

int luaopen_telnyx_sim(lua_State *L);

int luaopen_telnyx_sim(lua_State *L) {
  const char *why;
  size_t i;
  int array_mt;
  if (!tsim_transport_global_init(&why)) return luaL_error(L, "telnyx.sim: curl_global_init failed: %s", why);
  lua_settop(L, 0);
  if (!tsim_json_open(L))
    return luaL_error(L, "telnyx.sim needs lua-cjson (luarocks install lua-cjson, or apt-get install lua-cjson): %s",
                      lua_tostring(L, -1));
  array_mt = 1;
  lua_pushvalue(L, array_mt);
  lua_setfield(L, LUA_REGISTRYINDEX, TSIM_ARRAY_MT);

  luaL_newmetatable(L, TSIM_ERROR_MT);
  lua_pushcfunction(L, tsim_error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  make_client_metatable(L, array_mt);

  lua_newtable(L);
  set_closures(L, module_functions, array_mt);
  lua_pushliteral(L, TSIM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushlightuserdata(L, NULL); /* the same value as cjson.null and ngx.null */
  lua_setfield(L, -2, "null");
  lua_pushvalue(L, array_mt);
  lua_setfield(L, -2, "array_mt");
  lua_newtable(L);
  for (i = 0; i < tsim_n_operations; i++) {
    lua_pushstring(L, tsim_operations[i].name);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "operations");
  export_constants(L);
  return 1;
}
