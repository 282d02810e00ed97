/*
 * client.h -- the client object and a prepared call: the binding
 * (lua_telnyx_sim.c) makes clients; the call unit (call.c) prepares and runs
 * calls for single calls and batches (batch.c).
 */
#ifndef TSIM_CLIENT_H
#define TSIM_CLIENT_H

#include <sys/types.h>

#include "core.h"
#include "transport.h"

#define TSIM_CLIENT_MT "telnyx.sim.client"

/* Defaults, exported as sim.defaults (telnyx.sim.resty reads them there). */
#define DEFAULT_BASE_URL "https://api.telnyx.com/v2"
#define DEFAULT_TIMEOUT 60.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_RETRIES 2
#define DEFAULT_MAX_RESPONSE_BYTES (16L * 1024L * 1024L)
#define DEFAULT_CONCURRENCY 16 /* client:batch */
#define UV_ARRAY_MT lua_upvalueindex(1) /* every module function's first upvalue: the array marker */

/* A client draws its Idempotency-Keys from a pool: one system call per
 * 32 keys rather than one per call. */
struct random_pool {
  unsigned char bytes[512];
  size_t left;
  pid_t pid; /* a forked child must not reuse its parent's keys */
};

struct client {
  struct transport t;
  char *api_key;
  char *base_url;
  double timeout;
  int max_retries;
  int resend_ok;         /* the caller's retry_may_duplicate: our retries may re-send */
  int sleep_ref;         /* registry ref of a sleep(seconds) function, or LUA_NOREF */
  struct random_pool random;
  struct strbuf scratch; /* request bodies, URLs and header lines are built here */
  char user_agent[128];
  int in_batch; /* client:batch is running (a nested one is refused) */
  int closed;
};

struct call {
  const struct operation *op;
  double timeout;
  int max_retries;
  int resend_ok;
  int headers_idx;             /* the caller's extra headers, or 0 */
  const char *idempotency_key; /* NULL: none (safe operations) */
  const char *url, *body;      /* body NULL: none */
  size_t body_len;
};

/* --- call.c: the call unit --- */
struct client *tsim_check_client(lua_State *L, int idx);
/* Validates params and opts in stack slots p, p + 1 and builds the call,
 * leaving pushed: the headers slot (when opts is a table), the
 * Idempotency-Key (or nil), the URL and the body (or nil). */
int tsim_prepare_call_at(lua_State *L, struct client *c, struct call *k, int p);
void tsim_pause_for(lua_State *L, struct client *c, double seconds);
void tsim_finish_error(lua_State *L, const struct client *c, int attempts); /* attempts, redaction */
/* The attempts of one prepared call over libcurl: 1 (res pushed) or 2 (nil, err). */
int tsim_run_call(lua_State *L, struct client *c, struct call *k, int array_mt);

/* --- batch.c --- */
int tsim_client_batch(lua_State *L); /* client:batch */

#endif
