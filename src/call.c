/*
 * call.c -- a call's own rules, shared by single calls (lua_telnyx_sim.c) and
 * batches (batch.c): prepare (per-call options, headers, the Idempotency-Key,
 * the id shorthand; then validate and build), and the attempts of one call
 * over libcurl (send, interpret, pause, retry). Nothing here calls into the
 * binding: the binding binds, this decides.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"

#include "client.h"
#include "compat.h"
#include "core.h"
#include "transport.h"

static const struct rule header_value = {"value", K_STRING, MIN(1), FORMAT(F_HEADER)};

/* A call's options as the engine fills them; absent ones keep the client's. */
struct call_opts {
  double timeout;
  long max_retries;
  struct tsim_text idempotency_key;
  int headers; /* the stack slot of the headers table, or 0 */
  int retry_may_duplicate;
};

#define OPT(m) INTO(struct call_opts, m)
static const struct rule call_options[] = {
  {"timeout", K_NUMBER, MIN(0.001), MAX(86400), OPT(timeout)},
  {"max_retries", K_INTEGER, MIN(0), MAX(MAX_RETRIES_LIMIT), OPT(max_retries)},
  {"idempotency_key", K_STRING, MIN(1), MAX(255), FORMAT(F_HEADER), OPT(idempotency_key)},
  {"headers", K_MAP, ITEMS(&header_value), OPT(headers)},
  {"retry_may_duplicate", K_BOOLEAN, OPT(retry_may_duplicate)},
  END
};
#undef OPT

struct client *tsim_check_client(lua_State *L, int idx) {
  return (struct client *)luaL_checkudata(L, idx, TSIM_CLIENT_MT);
}

/* A random UUIDv4. */
static int format_uuid4(struct random_pool *pool, char out[37]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char u[16];
  size_t i, o = 0;
  if (pool->left < sizeof u || pool->pid != getpid()) {
    if (!tsim_random_bytes(pool->bytes, sizeof pool->bytes)) return 0;
    pool->left = sizeof pool->bytes;
    pool->pid = getpid();
  }
  pool->left -= sizeof u;
  memcpy(u, pool->bytes + pool->left, sizeof u);
  memset(pool->bytes + pool->left, 0, sizeof u); /* a used key is not kept */
  u[6] = (unsigned char)((u[6] & 0x0F) | 0x40);
  u[8] = (unsigned char)((u[8] & 0x3F) | 0x80);
  for (i = 0; i < sizeof u; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[u[i] >> 4];
    out[o++] = hex[u[i] & 15];
  }
  out[o] = '\0';
  return 1;
}

/* HTTP token characters. */
static int header_name_ok(const char *s, size_t n) {
  size_t i;
  if (n == 0 || strlen(s) != n) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          strchr("!#$%&'*+-.^_`|~", c) != NULL))
      return 0;
  }
  return 1;
}

/* Headers the module owns: a caller's copy would be sent twice or forge auth. */
static const char *const reserved_headers[] = {
  "authorization", "content-type", "content-length", "accept", "user-agent", "host",
  "idempotency-key", "expect", "transfer-encoding", "connection", NULL
};

static int header_reserved(const char *name) {
  const char *const *r;
  for (r = reserved_headers; *r != NULL; r++)
    if (tsim_name_is(name, strlen(name), *r)) return 1;
  return 0;
}

/* Header names the engine cannot judge: tokens, and not the module's own. */
static int check_header_names(lua_State *L, const struct operation *op, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t n;
    const char *name = lua_tolstring(L, -2, &n);
    lua_pop(L, 1);
    if (!header_name_ok(name, n) || header_reserved(name)) {
      tsim_push_joined(L, reserved_headers, "");
      tsim_push_error(L, "invalid_params",
                      "%s: option 'opts.headers' has a header the module cannot send: '%s' (names must be HTTP "
                      "tokens; the module sets %s itself)", op->name, header_name_ok(name, n) ? name : "(invalid name)",
                      lua_tostring(L, -1));
      lua_remove(L, -2);
      tsim_set_string(L, "field", "opts.headers");
      lua_remove(L, -2); /* the key */
      return 0;
    }
  }
  return 1;
}

/* Replaces the table at idx by a shallow raw copy: a caller changing its
 * table later (from sleep, from a batch's progress) cannot reach the call. */
static void copy_table(lua_State *L, int idx) {
  lua_newtable(L);
  tsim_copy_into(L, idx);
  lua_replace(L, idx);
}

/* Pushes the Idempotency-Key of a call that must not go twice (the
 * caller's, else a fresh one), else nil. */
static int push_idempotency_key(lua_State *L, struct client *c, const struct call *k, const struct call_opts *o) {
  char uuid[37];
  if (o->idempotency_key.s != NULL) {
    lua_pushlstring(L, o->idempotency_key.s, o->idempotency_key.len); /* the call's own reference */
  } else if (k->op->resend != RESEND_SAFE) {
    if (!format_uuid4(&c->random, uuid)) {
      tsim_push_error(L, "config", "%s: could not read random bytes for the Idempotency-Key", k->op->name);
      return 0;
    }
    lua_pushstring(L, uuid);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

/* Reads opts at idx into k in one pass (the client's settings where absent),
 * then pushes the Idempotency-Key or nil. */
static int read_call_opts(lua_State *L, struct client *c, struct call *k, int idx) {
  const struct vctx who = {k->op->name, "opts", 1};
  struct call_opts o = {.timeout = c->timeout, .max_retries = c->max_retries, .retry_may_duplicate = c->resend_ok};
  if (!lua_isnil(L, idx) && !tsim_fill_options(L, &who, call_options, idx, &o)) return 0;
  k->timeout = o.timeout;
  k->max_retries = (int)o.max_retries;
  k->resend_ok = o.retry_may_duplicate;
  k->headers_idx = o.headers; /* stays on the stack for the call */
  if (o.headers != 0) {
    if (!check_header_names(L, k->op, o.headers)) return 0;
    copy_table(L, o.headers); /* what was checked is what every attempt sends */
  }
  return push_idempotency_key(L, c, k, &o);
}

/* The path id an operation takes alone (client:enable_sim_card(id)): its one
 * required param, when that is in the path; else NULL. */
static const struct rule *id_shorthand(const struct operation *op) {
  const struct rule *f, *only = NULL;
  for (f = op->params; f->name != NULL; f++)
    if (f->flags & R_REQUIRED) {
      if (only != NULL) return NULL;
      only = f;
    }
  return only != NULL && only->place == IN_PATH ? only : NULL;
}

/* Makes an id given alone at idx into { id = ... }; returns 0 with an err
 * pushed when params is neither a table nor (for such an operation) an id. */
static int expand_id_shorthand(lua_State *L, const struct operation *op, int idx) {
  const struct rule *id = id_shorthand(op);
  int t = lua_type(L, idx);
  if (id == NULL || t == LUA_TTABLE || t == LUA_TNIL || t == LUA_TNONE) return 1;
  if (t != LUA_TSTRING) {
    tsim_push_error(L, "invalid_params", "%s: params must be a table, or the %s alone as a string (got %s)",
                    op->name, id->name, luaL_typename(L, idx));
    tsim_set_string(L, "field", "params");
    return 0;
  }
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, id->name);
  lua_replace(L, idx);
  return 1;
}

int tsim_prepare_call_at(lua_State *L, struct client *c, struct call *k, int p) {
  const struct vctx who = {k->op->name, NULL, 0};
  if (c->closed) {
    tsim_push_error(L, "config", "%s: the client is closed", k->op->name);
    return 0;
  }
  if (!expand_id_shorthand(L, k->op, p)) return 0;
  if (lua_isnil(L, p)) { lua_newtable(L); lua_replace(L, p); } /* no params: an empty table */
  if (!tsim_validate(L, &who, k->op->params, p) || !read_call_opts(L, c, k, p + 1)) return 0;
  k->idempotency_key = lua_tostring(L, -1);
  tsim_build_url(L, &c->scratch, c->base_url, k->op, p);
  lua_pushlstring(L, c->scratch.data, c->scratch.len); /* the call's own copy: a nested call */
  k->url = lua_tostring(L, -1);                        /* from sleep cannot clobber it */
  if (k->op->body == BODY_JSON) {
    tsim_build_body(L, &c->scratch, k->op->params, p);
    lua_pushlstring(L, c->scratch.data, c->scratch.len);
  } else if (strcmp(k->op->method, "POST") == 0 || strcmp(k->op->method, "PATCH") == 0) {
    lua_pushliteral(L, ""); /* Content-Length: 0 */
  } else {
    lua_pushnil(L);
  }
  k->body = lua_tolstring(L, -1, &k->body_len);
  return 1;
}

/* Waits between attempts: the client's sleep function (tests and schedulers
 * inject one), else nanosleep. */
void tsim_pause_for(lua_State *L, struct client *c, double seconds) {
  if (c->sleep_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->sleep_ref);
    lua_pushnumber(L, seconds);
    lua_call(L, 1, 0);
  } else if (seconds > 0) {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  }
}

void tsim_finish_error(lua_State *L, const struct client *c, int attempts) {
  tsim_set_int(L, "attempts", attempts);
  tsim_redact(L, -1, c->api_key);
}

/* The attempts of one prepared call; returns 1 (res) or 2 (nil, err). */
int tsim_run_call(lua_State *L, struct client *c, struct call *k, int array_mt) {
  struct attempt a;
  struct retry_verdict v;
  int attempt;
  if (!tsim_transport_ready(&c->t)) {
    tsim_push_error(L, "connection", "%s: could not create a libcurl handle", k->op->name);
    return tsim_return_error(L);
  }
  for (attempt = 1;; attempt++) {
    tsim_transport_perform(L, &c->t, &c->scratch, k, k->headers_idx, &a);
    if (tsim_interpret(L, array_mt, k->op, &a, k->resend_ok, attempt, &v)) return 1;
    if (!v.retryable || attempt > k->max_retries) break;
    lua_pop(L, 1);
    tsim_pause_for(L, c, v.delay);
    if (c->closed) { /* the sleep function closed the client */
      tsim_push_error(L, "config", "%s: the client was closed while waiting to retry", k->op->name);
      break;
    }
  }
  tsim_finish_error(L, c, attempt);
  return tsim_return_error(L);
}

