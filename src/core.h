/*
 * core.h -- the no-I/O core: errors, the rule engine (validate, build,
 * describe), and the response half (interpret, retry verdict, redaction).
 * Every transport (libcurl in transport.c, nginx in telnyx/sim/resty.lua)
 * runs on these, so each rule exists once. Nothing here calls libcurl.
 */
#ifndef TSIM_CORE_H
#define TSIM_CORE_H

#include <stddef.h>
#include "lua.h"
#include "rules.h"
#include "strbuf.h"

#define TSIM_VERSION "0.2.0"
#define TSIM_ERROR_MT "telnyx.sim.error"
#define TSIM_ARRAY_MT "telnyx.sim.array" /* registry key of the array marker */
#define MAX_RETRIES_LIMIT 10
#define MAX_SAFE_INTEGER 9007199254740991.0 /* 2^53 - 1: exact in a double */

/* --- err.c: the one err shape --- */
void tsim_push_error(lua_State *L, const char *kind, const char *fmt, ...);
void tsim_set_string(lua_State *L, const char *key, const char *value);
void tsim_set_int(lua_State *L, const char *key, long value);
void tsim_set_bool(lua_State *L, const char *key, int value);
void tsim_copy_into(lua_State *L, int from); /* every pair of the table at from into the one on top (raw) */
int tsim_return_error(lua_State *L);      /* nil, err (err on top) */
int tsim_error_tostring(lua_State *L);    /* __tostring of an err */
void tsim_push_escaped(lua_State *L, const char *s, size_t n); /* control characters as \n, \x1b */
void tsim_push_escaped_at(lua_State *L, int idx); /* the string (or number) at idx, escaped */
void tsim_push_joined(lua_State *L, const char *const *names, const char *quote);
void tsim_redact(lua_State *L, int t, const char *key); /* the key -> [REDACTED], at any depth */
void tsim_wipe(char *s); /* zeroes a string that held the key, before free */

/* --- batch.c --- */
double tsim_now(void); /* monotonic seconds */

/* --- operations.c: the table --- */
extern const struct operation *const tsim_operations;
extern const size_t tsim_n_operations;
const struct operation *tsim_find_operation(const char *name, size_t len);
/* err for a value at idx that names no operation (field: where it was given) */
void tsim_push_unknown_operation(lua_State *L, const char *who, int idx, const char *field);

/* --- formats.c: the string formats (TSIM_FORMATS in rules.h) --- */
struct format_row {
  const char *name;                     /* as sim.describe says it; NULL for F_NONE */
  int (*check)(const char *s, size_t n); /* NULL: any UTF-8 string */
  const char *text;                     /* what a message says the string must be */
  int bounded;                          /* the text takes the length bounds after it */
};
extern const struct format_row tsim_formats[F_COUNT_];

/* --- rules.c: the engine --- */
/* How field paths and messages read: params ("'data_limit.unit'") or options
 * ("option 'opts.timeout'"). */
struct vctx {
  const char *who;   /* the function the user called: the operation, or "sim.new" */
  const char *root;  /* prefix of every field path ("opts"), or NULL */
  int options;       /* say "option" and "known options" */
};
int tsim_validate(lua_State *L, const struct vctx *v, const struct rule *fields, int idx);
/* Validates the options table at idx and, in the same pass, fills the option
 * struct `into` (each rule's INTO field; see struct tsim_text in rules.h).
 * Pushes one slot per K_FUNCTION / K_MAP option, which its int field names.
 * Returns 0 with the err on top. */
int tsim_fill_options(lua_State *L, const struct vctx *v, const struct rule *fields, int idx, void *into);
void tsim_build_body(lua_State *L, struct strbuf *b, const struct rule *fields, int idx);
void tsim_build_url(lua_State *L, struct strbuf *b, const char *base_url,
                    const struct operation *op, int idx);
void tsim_describe(lua_State *L, const struct operation *op);
int tsim_is_nullable_null(lua_State *L, int idx);

/* --- interpret.c: the response half --- */

/* How an attempt ended, as far as the transport can tell; what each means
 * for the rules is a row of interpret.c's outcome table. */
enum outcome {
  OUT_RESPONSE,  /* a whole HTTP response arrived */
  OUT_NOT_SENT,  /* failed before the request was handed to a connection */
  OUT_CONNECT_TIMEOUT, /* the same, because connecting timed out */
  OUT_TIMEOUT,   /* timed out after the request may have reached the server */
  OUT_BROKEN,    /* connection failed after the request may have reached the server */
  OUT_TOO_LARGE, /* the body passed max_response_bytes */
  OUT_NO_MEMORY,
  OUT_REFUSED,   /* sent, but the server said it did not process it (HTTP/2 REFUSED_STREAM, GOAWAY) */
  OUT_HEADERS_TOO_LARGE, /* a response came, with headers over libcurl's limit (read as nothing more) */
  OUT_COUNT_
};

/* The reply.failure names a transport outside C may give (client:interpret),
 * NULL-terminated; tsim_failure_outcomes[i] is what name i means. */
extern const char *const tsim_failure_names[];
extern const enum outcome tsim_failure_outcomes[];

/* The few response headers the rules read. */
struct response_meta {
  char request_id[128];
  char location[256];
  char content_type[96];
  double retry_after; /* seconds from retry-after-ms or Retry-After; < 0: none */
  int have_retry_ms;  /* retry-after-ms wins over Retry-After */
  int should_retry;   /* x-should-retry: -1 absent, 0 false, 1 true */
  unsigned seen;      /* the headers noted so far: a header sent twice counts by its first copy */
};

/* One attempt as the rules see it, whichever transport produced it. */
struct attempt {
  enum outcome outcome;
  int permanent;  /* not sent, and trying again cannot help (TLS trust, bad URL) */
  long status;
  const char *body;
  size_t body_len;
  const char *transport_message;
  struct response_meta meta;
};

/* What follows an attempt. */
struct retry_verdict {
  int retryable; /* re-sending as-is cannot duplicate anything (or the caller accepted that) */
  double delay;  /* seconds to wait first */
  double pause;  /* > 0: the server asked every call to wait that long (a 429, Retry-After) */
  const char *sent; /* "no", "maybe" (it may have arrived) or "yes" (the server answered) */
};

/* Whether name[0..n) is `lower` (a lower-case literal) in any case. */
int tsim_name_is(const char *name, size_t n, const char *lower);
void tsim_meta_reset(struct response_meta *m);
void tsim_meta_note(struct response_meta *m, const char *name, size_t nlen, const char *v, size_t vlen);
/* Pushes res and returns 1, or pushes err (retryable, retry_after, sent, pause) and returns 0. */
int tsim_interpret(lua_State *L, int array_mt, const struct operation *op, const struct attempt *a,
                   int resend_ok, int attempt, struct retry_verdict *verdict);

/* --- config.c --- */
int tsim_ip_is_loopback(const char *ip); /* 127.0.0.0/8, ::1, ::ffff:127.x */
const char *tsim_base_url_problem(const char *url, int allow_insecure_http); /* NULL when fine */

/* --- random.c --- */
int tsim_random_bytes(unsigned char *out, size_t n);

#endif
