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

struct transport;

/* One easy handle and the state of the attempt it carries; the callbacks
 * write only here. The plain call path has one; a batch has a pool. */
struct exchange {
  CURL *curl;
  struct transport *t;             /* the client's settings */
  struct curl_slist *call_headers; /* per attempt, when a call adds headers */
  struct strbuf response;
  struct response_meta meta;
  int sends;                       /* how often libcurl was about to send the request */
  int allow_resend;                /* may libcurl itself re-send on a fresh connection? */
  int too_large, out_of_memory;
  int busy;                        /* in the multi handle now */
  int tag;                         /* the batch's call index */
  /* HTTP/2 "not processed" evidence, read from libcurl's verbose text (see on_debug) */
  int verbose;                     /* this attempt asked for it (a call that must not go twice) */
  long h2_stream;                  /* the stream the request went on, 0: none yet */
  long goaway_last;                /* a GOAWAY's last-stream-id since, or -1 */
  int refused_retry;               /* libcurl retrying because this stream was REFUSED */
  int socket_after_send;           /* a connection was opened after the request went out */
  int got_response;                /* a status line arrived */
  int headers_done;                /* the latest response's headers ended (their blank line) */
  int tainted;                     /* a failure or a re-send left libcurl state that could mislead */
  char refusal[224];               /* why on_prereq stopped a request, or "" */
  char curl_error[CURL_ERROR_SIZE];
};

/* A socket libcurl opened for the client; the inode tells it from a later
 * file that got the same number. */
struct owned_socket {
  curl_socket_t fd;
  ino_t ino;
};

struct transport {
  struct exchange single;          /* the plain call path: one kept-alive connection */
  CURLM *multi;                    /* batches: created on first use, its connections reused */
  struct exchange **pool;          /* batches: one exchange per call in flight */
  int pool_size;
  int in_flight;                   /* exchanges in the multi handle now */
  int concurrency;                 /* the running batch's bound */
  int https;                       /* base_url is https: HTTP/2 may be offered */
  int protocol;                    /* what the batches' server speaks: 0 not known yet, 1 HTTP/1.x, 2 HTTP/2 */
  pid_t pid;                       /* the process whose connections these are */
  struct owned_socket *sockets;    /* every socket libcurl has open for this client */
  int n_sockets, cap_sockets;
  struct curl_slist *json_headers; /* the client's headers, for a JSON body */
  struct curl_slist *bare_headers; /* the same, for no body (no Content-Type) */
  char *ca_file, *ca_path;
  double connect_timeout;
  size_t max_response_bytes;
  int plain_http_guard;            /* http:// base_url without allow_insecure_http */
};

struct call; /* a prepared call (client.h): what each attempt sends */

int tsim_transport_global_init(const char **why);
/* The client's fixed headers; 0 on no memory. */
int tsim_transport_set_headers(struct transport *t, const char *api_key, const char *user_agent);
int tsim_transport_ready(struct transport *t); /* 0: no handle could be made */
/* One attempt of call k, blocking; headers_idx: the stack slot of the
 * caller's {name = value} headers, 0 for none. scratch builds header lines.
 * Raises (a Lua error) only on no memory. */
void tsim_transport_perform(lua_State *L, struct transport *t, struct strbuf *scratch, const struct call *k,
                            int headers_idx, struct attempt *a);

/* Batches over the multi interface: HTTP/2 multiplexing where the server
 * offers it, else up to `concurrency` kept-alive connections. */
int tsim_multi_ready(struct transport *t, int concurrency);      /* 0: no memory / no handle */
struct exchange *tsim_multi_free_slot(struct transport *t);      /* NULL: all busy */
/* Starts an attempt of k on x (headers as tsim_transport_perform's); 0: failed. */
int tsim_multi_start(lua_State *L, struct transport *t, struct exchange *x, struct strbuf *scratch,
                     const struct call *k, int headers_idx);
/* Drives transfers for at most `wait` seconds; returns a finished exchange
 * (its attempt in *a, removed from the multi) or NULL. */
struct exchange *tsim_multi_next(struct transport *t, double wait, struct attempt *a);
int tsim_multi_busy(const struct transport *t);                  /* transfers in flight */
void tsim_multi_cancel(struct transport *t);                     /* drop every transfer in flight */
void tsim_transport_free(struct transport *t);
const char *tsim_transport_version(void);

#endif
