/*
 * transport.h -- libcurl: one easy handle per client (kept-alive connection),
 * callbacks that never touch Lua, and the prereq guard that stops libcurl
 * from re-sending a request that must not go twice.
 */
#ifndef TSIM_TRANSPORT_H
#define TSIM_TRANSPORT_H

#include <sys/types.h>
#include <curl/curl.h>

#include "core.h"

/* The prereq callback is what lets us see, and stop, libcurl re-sending a
 * request on its own: without it a purchase could go out twice. */
#if LIBCURL_VERSION_NUM < 0x075000
#error "telnyx.sim needs libcurl >= 7.80.0 (CURLOPT_PREREQFUNCTION)"
#endif

struct transport {
  CURL *curl;                      /* created on first use, reused: keep-alive */
  pid_t pid;                       /* the process whose connections it holds */
  struct curl_slist *json_headers; /* the client's headers, for a JSON body */
  struct curl_slist *bare_headers; /* the same, for no body (no Content-Type) */
  struct curl_slist *call_headers; /* per attempt, when a call adds headers */
  char *ca_file, *ca_path;
  double connect_timeout;
  size_t max_response_bytes;
  int plain_http_guard;            /* http:// base_url without allow_insecure_http */
  /* state of the attempt in flight; callbacks write only here */
  struct strbuf response;
  struct response_meta meta;
  int sends;                       /* how often libcurl was about to send the request */
  int allow_resend;                /* may libcurl itself re-send on a fresh connection? */
  int too_large, out_of_memory;
  char refusal[224];               /* why on_prereq stopped a request, or "" */
  char curl_error[CURL_ERROR_SIZE];
};

/* What one attempt sends. */
struct send_spec {
  const char *method, *url, *body; /* body NULL: none */
  size_t body_len;
  double timeout;
  int allow_resend;
  int json;                        /* the body is JSON (else no Content-Type) */
};

int tsim_transport_global_init(const char **why);
/* The client's fixed headers; 0 on no memory. */
int tsim_transport_set_headers(struct transport *t, const char *api_key, const char *user_agent);
/* The per-call header list: the fixed ones, an Idempotency-Key, the caller's
 * {name = value} table at headers_idx (0: none). 0 on no memory. */
int tsim_transport_call_headers(lua_State *L, struct transport *t, struct strbuf *scratch, int json,
                                const char *idempotency_key, int headers_idx);
int tsim_transport_ready(struct transport *t); /* 0: no handle could be made */
void tsim_transport_perform(struct transport *t, const struct send_spec *s, struct attempt *a);
void tsim_transport_free(struct transport *t);
const char *tsim_transport_version(void);

#endif
