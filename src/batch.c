/*
 * batch.c -- client:batch: many calls at once on one libcurl multi handle.
 *
 *   local results, err = client:batch({
 *     { "get_sim_card_activation_code", id1 },
 *     { "enable_sim_card", { id = id2 }, { timeout = 10 } },
 *   }, { concurrency = 16, progress = function(done, total, index, res, err) end })
 *   -- results[i] = { res = res } or { err = err }, in input order;
 *   -- results.ok / results.failed count them (through its metatable: sim.encode
 *   -- gives the items as a JSON array). nil, err: a call was invalid, nothing was sent.
 *
 * Every rule of a single call holds per call: the same validation (all of it
 * before anything is sent), the same request, the same interpret and retry
 * verdict (the money rule, libcurl's own re-send refused per exchange), the
 * same per-attempt timeout. A 429 or a Retry-After pauses the start of new
 * attempts for the whole batch. Lua runs only between libcurl calls (progress,
 * sleep), never inside one.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>

#include "compat.h"
#include "client.h"


/* The keep table holds each call's strings, four slots a call: its headers
 * table, Idempotency-Key, URL and body (KEEP(i, 1..4)). */
#define KEEP(i, slot) ((compat_index)4 * (i) - 4 + (slot))

/* client:batch's options as the engine fills them. */
struct batch_opts {
  long concurrency;
  int progress; /* the stack slot of the progress function, or 0 */
};

static const struct rule batch_options[] = {
  {"concurrency", K_INTEGER, MIN(1), MAX(1000), INTO(struct batch_opts, concurrency)},
  {"progress", K_FUNCTION, INTO(struct batch_opts, progress)},
  END
};

/* What the loop knows of one call besides its prepared request. */
struct slot_state {
  int attempt;       /* attempts started */
  int done;
  double not_before; /* a retry waits until then */
};

/* The loop's state; lives in a userdata, so a Lua error frees it. */
struct batch {
  int n, next_new, done, ok, concurrency;
  int retries_len;   /* indices waiting to be retried */
  double pause_until;
  struct call *calls;
  struct slot_state *st;
  int *retries;
  /* stack slots */
  int results, keep, progress, array_mt;
};

/* Monotonic seconds: batch deadlines, client:clock(). */
double tsim_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- validating and preparing every call, before anything is sent --- */

/* Prefixes the err on top with "batch: calls[i]: " and notes the index. */
static int fail_call(lua_State *L, int i) {
  lua_getfield(L, -1, "message");
  lua_pushfstring(L, "batch: calls[%d]: %s", i, lua_tostring(L, -1));
  lua_setfield(L, -3, "message");
  lua_pop(L, 1);
  tsim_set_int(L, "index", i);
  return 0;
}

/* Reads calls[i] = { name, params [, opts] } and prepares it into b->calls[i-1];
 * its strings (and headers table) stay referenced from the keep table. */
static int prepare_one(lua_State *L, struct client *c, struct batch *b, int list, int i) {
  struct call *k = &b->calls[i - 1];
  int base = lua_gettop(L);
  size_t len = 0;
  const char *name;
  lua_rawgeti(L, list, i);
  if (lua_type(L, -1) != LUA_TTABLE) {
    tsim_push_error(L, "invalid_params", "must be a table { name, params [, opts] } (got %s)", luaL_typename(L, -1));
    return fail_call(L, i);
  }
  lua_rawgeti(L, base + 1, 1);
  name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  k->op = tsim_find_operation(name, len);
  if (k->op == NULL) {
    tsim_push_unknown_operation(L, "[1]", -1, "name");
    return fail_call(L, i);
  }
  lua_rawgeti(L, base + 1, 2); /* params: base + 3 */
  lua_rawgeti(L, base + 1, 3); /* opts: base + 4 */
  if (!tsim_prepare_call_at(L, c, k, base + 3)) return fail_call(L, i);
  /* pushed: [headers table], idempotency key, url, body */
  lua_rawseti(L, b->keep, KEEP(i, 4));
  lua_rawseti(L, b->keep, KEEP(i, 3));
  lua_rawseti(L, b->keep, KEEP(i, 2));
  if (k->headers_idx != 0) {
    lua_pushvalue(L, k->headers_idx);
    lua_rawseti(L, b->keep, KEEP(i, 1));
    k->headers_idx = -1; /* "in keep": pushed again per attempt */
  }
  lua_settop(L, base);
  return 1;
}

/* --- finishing calls --- */

/* Stores res or err (on top) as results[i], counts it, reports progress. */
static void finish(lua_State *L, struct batch *b, int i, int ok) {
  int value = lua_gettop(L);
  b->st[i - 1].done = 1;
  b->done++;
  b->ok += ok;
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, value);
  lua_setfield(L, -2, ok ? "res" : "err");
  lua_rawseti(L, b->results, i);
  if (b->progress != 0) {
    lua_pushvalue(L, b->progress);
    lua_pushinteger(L, b->done);
    lua_pushinteger(L, b->n);
    lua_pushinteger(L, i);
    if (ok) { lua_pushvalue(L, value); lua_pushnil(L); }
    else { lua_pushnil(L); lua_pushvalue(L, value); }
    lua_call(L, 5, 0); /* an error ends the batch: run_guarded cancels what is in flight */
  }
  lua_settop(L, value - 1);
}

/* Every call not finished yet gets a config err (the client was closed):
 * one never sent may be sent again; one that spends or creates and was sent
 * may have gone through, as after any failure once it left. */
static void finish_rest_closed(lua_State *L, struct batch *b) {
  int i;
  for (i = 1; i <= b->n; i++) {
    const struct operation *op = b->calls[i - 1].op;
    int sent = b->st[i - 1].attempt > 0;
    if (b->st[i - 1].done) continue;
    if (sent && op->resend != RESEND_SAFE)
      tsim_push_error(L, "config", "%s: the client was closed during the batch, after the request was sent; "
                      "it may have gone through: check %s before trying again", op->name, op->check);
    else
      tsim_push_error(L, "config", "%s: the client was closed during the batch%s", op->name,
                      sent ? "" : ", before this call was sent");
    tsim_set_int(L, "attempts", b->st[i - 1].attempt);
    tsim_set_bool(L, "retryable", !sent || op->resend == RESEND_SAFE);
    finish(L, b, i, 0);
  }
}

/* --- the loop --- */

/* The next call to start now: a retry whose wait is over, else a new one; 0: none. */
static int next_ready(struct batch *b, double t) {
  int r;
  for (r = 0; r < b->retries_len; r++) {
    int i = b->retries[r];
    if (b->st[i - 1].not_before <= t) {
      b->retries[r] = b->retries[--b->retries_len];
      return i;
    }
  }
  return b->next_new <= b->n ? b->next_new++ : 0;
}

/* Starts attempts while there are free exchanges, ready calls and no pause. */
static void start_ready(lua_State *L, struct client *c, struct batch *b) {
  struct exchange *x;
  double t = tsim_now();
  /* the pool may be larger (an earlier batch's): concurrency is this batch's bound */
  while (t >= b->pause_until && tsim_multi_busy(&c->t) < b->concurrency &&
         (x = tsim_multi_free_slot(&c->t)) != NULL) {
    int i = next_ready(b, t), hidx = 0, started;
    struct call *k;
    if (i == 0) return;
    k = &b->calls[i - 1];
    if (k->headers_idx != 0) {
      lua_rawgeti(L, b->keep, KEEP(i, 1));
      hidx = lua_gettop(L);
    }
    b->st[i - 1].attempt++;
    x->tag = i;
    started = tsim_multi_start(L, &c->t, x, &c->scratch, k, hidx);
    if (hidx) lua_pop(L, 1);
    if (!started) {
      tsim_push_error(L, "connection", "%s: libcurl could not start the transfer", k->op->name);
      tsim_finish_error(L, c, b->st[i - 1].attempt);
      finish(L, b, i, 0);
      if (c->closed) return;
    }
  }
}

/* Seconds until something waiting (a retry, the pause) may start. */
static double next_wakeup(const struct batch *b, double t) {
  double w = b->pause_until > t ? b->pause_until - t : 0;
  int r;
  if (b->retries_len > 0 && b->next_new > b->n) {
    double soonest = -1;
    for (r = 0; r < b->retries_len; r++) {
      double d = b->st[b->retries[r] - 1].not_before - t;
      if (soonest < 0 || d < soonest) soonest = d;
    }
    if (soonest > w) w = soonest;
  }
  return w > 0 ? w : 0;
}

/* One finished attempt: res, a scheduled retry (maybe pausing the batch), or err. */
static void settle(lua_State *L, struct client *c, struct batch *b, struct exchange *x, const struct attempt *a) {
  int i = x->tag;
  struct call *k = &b->calls[i - 1];
  struct retry_verdict v;
  int attempt = b->st[i - 1].attempt;
  if (tsim_interpret(L, b->array_mt, k->op, a, k->resend_ok, attempt, &v)) {
    finish(L, b, i, 1);
    return;
  }
  if (v.retryable && attempt <= k->max_retries) {
    double t = tsim_now();
    lua_pop(L, 1);
    b->st[i - 1].not_before = t + v.delay;
    b->retries[b->retries_len++] = i;
    /* the server asked everyone to slow down: no new attempt starts before then */
    if (v.pause > 0 && t + v.pause > b->pause_until) b->pause_until = t + v.pause;
    return;
  }
  tsim_finish_error(L, c, attempt);
  finish(L, b, i, 0);
}

/* Nothing in flight, something waiting: the client's sleep, whose word is
 * taken (a test's or a scheduler's sleep may return at once: the waits count
 * as over, as a single call's would). */
static void wait_idle(lua_State *L, struct client *c, struct batch *b, double wait) {
  int r;
  tsim_pause_for(L, c, wait);
  if (c->closed || c->sleep_ref == LUA_NOREF) return;
  b->pause_until -= wait;
  for (r = 0; r < b->retries_len; r++) b->st[b->retries[r] - 1].not_before -= wait;
}

static void run(lua_State *L, struct client *c, struct batch *b) {
  while (b->done < b->n) {
    struct attempt a;
    struct exchange *x;
    double wait;
    if (c->closed) { finish_rest_closed(L, b); return; }
    start_ready(L, c, b);
    if (c->closed) continue;
    wait = next_wakeup(b, tsim_now());
    if (tsim_multi_busy(&c->t) == 0) { /* nothing in flight: wait the client's way */
      if (wait > 0) wait_idle(L, c, b, wait);
      continue;
    }
    x = tsim_multi_next(&c->t, wait > 0 && wait < 1 ? wait : 1, &a);
    if (x != NULL) settle(L, c, b, x, &a);
  }
}

/* The loop, under lua_pcall: whatever raises (progress, sleep, no memory),
 * nothing is left in flight and the client can run the next batch. */
static int run_protected(lua_State *L) {
  struct client *c = (struct client *)lua_touserdata(L, 5);
  struct batch *b = (struct batch *)lua_touserdata(L, 6);
  b->results = 1; b->keep = 2; b->array_mt = 3;
  b->progress = lua_isfunction(L, 4) ? 4 : 0;
  lua_settop(L, 4);
  run(L, c, b);
  return 0;
}

static void run_guarded(lua_State *L, struct client *c, struct batch *b) {
  int rc;
  lua_pushcfunction(L, run_protected);
  lua_pushvalue(L, b->results);
  lua_pushvalue(L, b->keep);
  lua_pushvalue(L, b->array_mt);
  if (b->progress) lua_pushvalue(L, b->progress);
  else lua_pushnil(L);
  lua_pushlightuserdata(L, c);
  lua_pushlightuserdata(L, b);
  c->in_batch = 1;
  rc = lua_pcall(L, 6, 0, 0);
  c->in_batch = 0;
  if (rc != 0) {
    if (!c->closed) tsim_multi_cancel(&c->t);
    lua_error(L);
  }
}

/* --- client:batch --- */

static struct batch *new_batch(lua_State *L, int n, int concurrency) {
  size_t calls = (size_t)n * sizeof(struct call), st = (size_t)n * sizeof(struct slot_state);
  struct batch *b = (struct batch *)lua_newuserdata(L, sizeof *b + calls + st + (size_t)n * sizeof(int));
  memset(b, 0, sizeof *b + calls + st + (size_t)n * sizeof(int));
  b->n = n;
  b->next_new = 1;
  b->concurrency = concurrency;
  b->calls = (struct call *)(void *)(b + 1);
  b->st = (struct slot_state *)(void *)((char *)b->calls + calls);
  b->retries = (int *)(void *)((char *)b->st + st);
  return b;
}

/* Reads the options at 3 in one pass; leaves the progress function (or nil)
 * at 4. Returns 0 with the err on top. */
static int read_batch_opts(lua_State *L, struct batch_opts *o) {
  static const struct vctx who = {"batch", "opts", 1};
  o->concurrency = DEFAULT_CONCURRENCY;
  o->progress = 0;
  if (lua_isnil(L, 3)) {
    lua_pushnil(L);
    return 1;
  }
  return tsim_fill_options(L, &who, batch_options, 3, o); /* its one slot: 4 */
}

/* Pushes the results with their counts in its metatable (results.ok reads
 * them), so that the list holds only its items and sim.encode gives a JSON
 * array (as flow.results does for the Lua clients). */
static void push_results(lua_State *L, const struct batch *b, int results) {
  lua_pushvalue(L, results);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "telnyx.sim.results");
  lua_setfield(L, -2, "__name");
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, b->ok);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, b->done - b->ok);
  lua_setfield(L, -2, "failed");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
}

/* client:batch(calls [, opts]) -> results | nil, err */
int tsim_client_batch(lua_State *L) {
  struct client *c = tsim_check_client(L, 1);
  struct batch_opts o;
  struct batch *b;
  int n, i;
  lua_settop(L, 3);
  if (c->closed) {
    tsim_push_error(L, "config", "batch: the client is closed");
    return tsim_return_error(L);
  }
  if (c->in_batch) { /* from a progress or sleep function of this client's batch */
    tsim_push_error(L, "config", "batch: this client is running a batch already (use another client, "
                    "or start it after this one returns)");
    return tsim_return_error(L);
  }
  if (lua_type(L, 2) != LUA_TTABLE) {
    tsim_push_error(L, "invalid_params", "batch: calls must be an array of { name, params [, opts] } (got %s)",
                    luaL_typename(L, 2));
    return tsim_return_error(L);
  }
  if (!read_batch_opts(L, &o)) return tsim_return_error(L);
  n = (int)compat_rawlen(L, 2);
  b = new_batch(L, n, (int)o.concurrency); /* 5 */
  lua_createtable(L, n, 0);                /* 6: results */
  lua_createtable(L, 4 * n, 0);            /* 7: keep */
  lua_pushvalue(L, UV_ARRAY_MT);           /* 8 */
  b->results = 6; b->keep = 7; b->array_mt = 8;
  b->progress = o.progress; /* 4 or 0 */
  for (i = 1; i <= n; i++)
    if (!prepare_one(L, c, b, 2, i)) return tsim_return_error(L);
  if (n > 0) {
    if (!tsim_multi_ready(&c->t, b->concurrency < n ? b->concurrency : n)) {
      tsim_push_error(L, "connection", "batch: could not create libcurl handles");
      return tsim_return_error(L);
    }
    run_guarded(L, c, b);
  }
  push_results(L, b, 6); /* not b->results: run_protected renumbered it for its own frame */
  return 1;
}
