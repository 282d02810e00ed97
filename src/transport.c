/* transport.c -- the libcurl path; see transport.h. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lauxlib.h"
#include "client.h"
#include "transport.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void init_curl_once(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

int tsim_transport_global_init(const char **why) {
  pthread_once(&curl_once, init_curl_once);
  *why = curl_easy_strerror(curl_init_result);
  return curl_init_result == CURLE_OK;
}

const char *tsim_transport_version(void) { return curl_version_info(CURLVERSION_NOW)->version; }

/* --- callbacks: plain C, never a Lua call, never a longjmp --- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  struct exchange *x = (struct exchange *)ud;
  size_t n = size * nmemb;
  if (x->response.len + n > x->t->max_response_bytes) {
    x->too_large = 1;
    return 0;
  }
  if (!strbuf_reserve(&x->response, n)) {
    x->out_of_memory = 1;
    return 0;
  }
  memcpy(x->response.data + x->response.len, ptr, n);
  x->response.len += n;
  return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  struct exchange *x = (struct exchange *)ud;
  size_t n = size * nmemb, name_len;
  const char *colon;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* each response, 1xx included */
    tsim_meta_reset(&x->meta);
    x->got_response = 1;
    x->headers_done = 0;
    return n;
  }
  if (n <= 2 && (line[0] == '\r' || line[0] == '\n')) { /* the blank line that ends them */
    x->headers_done = 1;
    return n;
  }
  colon = (const char *)memchr(line, ':', n);
  if (colon == NULL) return n;
  name_len = (size_t)(colon - line);
  tsim_meta_note(&x->meta, line, name_len, colon + 1, n - name_len - 1);
  return n;
}

/* libcurl re-sends a request by itself when a reused connection turns out
 * dead; for calls that must not go twice the first copy may have arrived. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
  struct exchange *x = (struct exchange *)ud;
  (void)conn_local_ip; (void)conn_primary_port; (void)conn_local_port;
  /* plain http is allowed to loopback only: check where the connection really
   * goes (an http_proxy, or a name resolving elsewhere), before the key is sent */
  if (x->t->plain_http_guard && !tsim_ip_is_loopback(conn_primary_ip)) {
    snprintf(x->refusal, sizeof x->refusal,
             "refused to send the API key over plain http to %.64s, which is not a loopback address "
             "(set allow_insecure_http = true to allow it)", conn_primary_ip);
    return CURL_PREREQFUNC_ABORT;
  }
  if (x->sends++ > 0 && !x->allow_resend) { /* libcurl's words would be "aborted by pre-request callback" */
    snprintf(x->refusal, sizeof x->refusal,
             "the connection was lost after the request went out (a kept-alive connection the server closed), "
             "and telnyx.sim did not send it again");
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

/* HTTP/2 has two ways to say a request was not processed: RST_STREAM with
 * REFUSED_STREAM, and a GOAWAY whose last-stream-id is below the request's
 * stream. libcurl has no API for either; its verbose text is the only place
 * it says so. Read (never kept) on attempts that must not go twice:
 *   "Using Stream ID: N (easy handle 0x...)"          the request's stream
 *   "recveived GOAWAY, error=E, last_stream=L"         7.88's spelling
 *   "REFUSED_STREAM, retrying a fresh connect"         from Curl_retry_request
 * Text libcurl words differently is simply not evidence: the attempt stays
 * "may have gone through". */
static int on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *ud) {
  struct exchange *x = (struct exchange *)ud;
  char line[128];
  const char *p;
  (void)h;
  if (type != CURLINFO_TEXT || !x->verbose) return 0;
  if (size >= sizeof line) size = sizeof line - 1;
  memcpy(line, data, size);
  line[size] = '\0';
  if (strncmp(line, "Using Stream ID: ", 17) == 0) {
    x->h2_stream = strtol(line + 17, NULL, 10);
    x->goaway_last = -1; /* a GOAWAY read earlier (a reuse check) was not about this stream */
  } else if ((p = strstr(line, "GOAWAY, error=")) != NULL && (p = strstr(p, "last_stream=")) != NULL) {
    long last = strtol(p + 12, NULL, 10);
    if (x->h2_stream > 0 && (x->goaway_last < 0 || last < x->goaway_last)) x->goaway_last = last;
  } else if (strncmp(line, "REFUSED_STREAM, retrying", 24) == 0 && x->sends == 1) {
    x->refused_retry = 1;
  }
  return 0;
}

/* Each new socket. One after the request went out means libcurl began a
 * re-send, whose connect may have read other cached connections (and a GOAWAY
 * that was not about this request) before the guard stopped it. */
static int on_socket(void *ud, curl_socket_t fd, curlsocktype purpose) {
  struct exchange *x = (struct exchange *)ud;
  (void)fd; (void)purpose;
  if (x->sends > 0) x->socket_after_send = 1;
  return CURL_SOCKOPT_OK;
}

/* --- an exchange: one easy handle --- */

/* Header lists hold the Authorization line, so wipe before freeing. */
static void free_headers_wiped(struct curl_slist **list) {
  struct curl_slist *h;
  for (h = *list; h != NULL; h = h->next) tsim_wipe(h->data);
  curl_slist_free_all(*list);
  *list = NULL;
}

/* --- sockets: every one libcurl opens for the client is noted, so that a
 * forked child can let go of all of them (the batch's cached connections
 * too, which no easy handle reports once the transfer is over) --- */

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr) {
  struct transport *t = (struct transport *)ud;
  struct stat st;
  curl_socket_t s;
  int i, type = addr->socktype;
  (void)purpose;
#ifdef SOCK_CLOEXEC
  type |= SOCK_CLOEXEC; /* a program this process execs gets no API connection either */
#endif
  if (t->n_sockets == t->cap_sockets) {
    int cap = t->cap_sockets ? 2 * t->cap_sockets : 8;
    struct owned_socket *p = (struct owned_socket *)realloc(t->sockets, (size_t)cap * sizeof *p);
    if (p == NULL) return CURL_SOCKET_BAD; /* libcurl: could not connect (nothing sent) */
    t->sockets = p;
    t->cap_sockets = cap;
  }
  s = socket(addr->family, type, addr->protocol);
  if (s == CURL_SOCKET_BAD) return s;
  for (i = 0; i < t->n_sockets && t->sockets[i].fd != s; i++) {} /* a stale entry: the number was reused */
  t->sockets[i].fd = s;
  t->sockets[i].ino = fstat(s, &st) == 0 ? st.st_ino : 0;
  if (i == t->n_sockets) t->n_sockets++;
  return s;
}

static int on_close_socket(void *ud, curl_socket_t s) {
  struct transport *t = (struct transport *)ud;
  int i;
  for (i = 0; i < t->n_sockets; i++)
    if (t->sockets[i].fd == s) {
      t->sockets[i] = t->sockets[--t->n_sockets];
      break;
    }
  return close(s);
}

/* A forked child must never use (or shut down) its parent's connections:
 * point the child's copy of each socket at /dev/null, so that cleaning up the
 * handles (TLS close_notify included) writes nothing to the parent's peers.
 * Only a descriptor that is still the very socket libcurl opened (same inode)
 * is touched. */
static void detach_sockets(struct transport *t) {
  int i, null_fd;
  if (t->n_sockets == 0) return;
  null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) return;
  for (i = 0; i < t->n_sockets; i++) {
    struct stat st;
    if (fstat(t->sockets[i].fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == t->sockets[i].ino)
      (void)dup2(null_fd, t->sockets[i].fd);
  }
  close(null_fd);
}

static void exchange_free(struct exchange *x) {
  if (x->curl != NULL) curl_easy_cleanup(x->curl);
  x->curl = NULL;
  free_headers_wiped(&x->call_headers);
  strbuf_free(&x->response);
}

static int exchange_setup(struct exchange *x, struct transport *t) {
  CURL *h = curl_easy_init();
  CURLcode rc = CURLE_OK;
  if (h == NULL) return 0;
  x->t = t;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val)
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, x);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, x);
  SET(CURLOPT_PRIVATE, x);
  SET(CURLOPT_ERRORBUFFER, x->curl_error);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_ACCEPT_ENCODING, NULL);
  /* in a batch over TLS: wait for the HTTP/2 connection rather than open more (plain http is HTTP/1.1) */
  SET(CURLOPT_PIPEWAIT, t->https ? 1L : 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)); /* deprecated in 7.85 */
#endif
  SET(CURLOPT_PREREQFUNCTION, on_prereq);
  SET(CURLOPT_PREREQDATA, x);
  SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  SET(CURLOPT_OPENSOCKETDATA, t);
  SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  SET(CURLOPT_CLOSESOCKETDATA, t);
  SET(CURLOPT_DEBUGFUNCTION, on_debug); /* CURLOPT_VERBOSE is per attempt */
  SET(CURLOPT_DEBUGDATA, x);
  SET(CURLOPT_SOCKOPTFUNCTION, on_socket);
  SET(CURLOPT_SOCKOPTDATA, x);
  if (t->ca_file) SET(CURLOPT_CAINFO, t->ca_file);
  if (t->ca_path) SET(CURLOPT_CAPATH, t->ca_path);
#undef SET
  if (rc != CURLE_OK) {
    curl_easy_cleanup(h);
    return 0;
  }
  x->curl = h;
  return 1;
}

/* A new easy handle in place of x's. libcurl keeps per-handle state across
 * requests (7.88 clears its "stream was refused" flag only when it acts on
 * it), and an old refusal must not pass for evidence about a new request. */
static void exchange_renew(struct exchange *x) {
  CURL *old = x->curl;
  if (exchange_setup(x, x->t)) {
    curl_easy_cleanup(old);
    x->tainted = 0;
  }
}

static struct curl_slist *slist_add(struct curl_slist *list, const char *line, int *ok) {
  struct curl_slist *next;
  if (!*ok) return list;
  next = curl_slist_append(list, line);
  if (next == NULL) { *ok = 0; return list; }
  return next;
}

/* The attempt's own header list, when it adds to the client's: an
 * Idempotency-Key, the caller's headers. Raises on no memory (x owns it). */
static void call_headers(lua_State *L, struct exchange *x, struct strbuf *scratch, const struct call *k,
                         int headers_idx) {
  struct curl_slist *h;
  int ok = 1;
  free_headers_wiped(&x->call_headers);
  if (k->idempotency_key == NULL && headers_idx == 0) return;
  for (h = k->op->body == BODY_JSON ? x->t->json_headers : x->t->bare_headers; h != NULL; h = h->next)
    x->call_headers = slist_add(x->call_headers, h->data, &ok);
  if (k->idempotency_key != NULL) {
    scratch->len = 0;
    sb_addlit(L, scratch, "Idempotency-Key: ");
    sb_addstr(L, scratch, k->idempotency_key);
    sb_addlit(L, scratch, "\0");
    x->call_headers = slist_add(x->call_headers, scratch->data, &ok);
  }
  if (headers_idx != 0) {
    lua_pushnil(L);
    while (lua_next(L, headers_idx) != 0) {
      scratch->len = 0;
      sb_addstr(L, scratch, lua_tostring(L, -2));
      sb_addlit(L, scratch, ": ");
      sb_addstr(L, scratch, lua_tostring(L, -1));
      sb_addlit(L, scratch, "\0");
      x->call_headers = slist_add(x->call_headers, scratch->data, &ok);
      lua_pop(L, 1);
    }
  }
  if (!ok) luaL_error(L, "telnyx.sim: not enough memory");
}

/* Readies x for an attempt of k: its state reset, the request set. */
static void exchange_prepare(lua_State *L, struct exchange *x, struct strbuf *scratch, const struct call *k,
                             int headers_idx) {
  CURL *h;
  const struct transport *t = x->t;
  const char *method = k->op->method;
  int json = k->op->body == BODY_JSON, allow_resend = k->resend_ok || k->op->resend == RESEND_SAFE;
  long ms = (long)(k->timeout * 1000.0), cms = (long)(t->connect_timeout * 1000.0);
  if (x->tainted && !allow_resend) exchange_renew(x);
  call_headers(L, x, scratch, k, headers_idx);
  h = x->curl;
  x->response.len = 0;
  x->sends = 0;
  x->allow_resend = allow_resend;
  x->too_large = x->out_of_memory = 0;
  x->curl_error[0] = x->refusal[0] = '\0';
  tsim_meta_reset(&x->meta);
  x->verbose = !allow_resend;
  x->h2_stream = 0;
  x->goaway_last = -1;
  x->refused_retry = x->got_response = x->socket_after_send = 0;
  x->headers_done = 0;
  curl_easy_setopt(h, CURLOPT_VERBOSE, (long)x->verbose);
  curl_easy_setopt(h, CURLOPT_URL, k->url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->call_headers ? x->call_headers : json ? t->json_headers : t->bare_headers);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cms > 0 && cms < ms ? cms : (ms > 0 ? ms : 1L));
  if (k->body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, k->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k->body_len);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
  }
}

/* Whether HTTP/2 said the request was not processed (see on_debug), with no
 * part of a response come back. Only libcurl's own retry on REFUSED_STREAM
 * (needing a handle with no stale refusal), or a GOAWAY after the request
 * whose last-stream-id is below its stream, count. */
static int refused_unprocessed(const struct exchange *x, CURLcode rc) {
  if (!x->verbose || x->got_response || x->sends == 0) return 0;
  if (x->refused_retry && !x->tainted && x->sends <= 2) return 1;
  /* a GOAWAY only with no re-send begun: a re-send's connect checks the other
   * cached connections, and could read a GOAWAY that was not about this stream */
  return x->sends == 1 && !x->socket_after_send && rc != CURLE_OPERATION_TIMEDOUT && x->h2_stream > 0 &&
         x->goaway_last >= 0 && x->goaway_last < x->h2_stream;
}

/* libcurl refusing a response's headers as too long: a line over its limit
 * reads "Out of memory" in 7.88 (CURLE_TOO_LARGE from 8.6), too many in all a
 * receive error saying so. Only while headers were being read. */
static int headers_too_large(const struct exchange *x, CURLcode rc) {
  if (x->sends == 0 || x->headers_done || x->out_of_memory) return 0;
#if LIBCURL_VERSION_NUM >= 0x080600
  if (rc == CURLE_TOO_LARGE) return 1;
#endif
  return rc == CURLE_OUT_OF_MEMORY || (rc == CURLE_RECV_ERROR && strstr(x->curl_error, "response header") != NULL);
}

/* What a finished transfer means for the rules. */
static void exchange_result(struct exchange *x, CURLcode rc, struct attempt *a) {
  a->status = 0;
  curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &a->status);
  a->body = x->response.data ? x->response.data : "";
  a->body_len = x->response.len;
  a->meta = x->meta;
  a->transport_message = x->refusal[0] ? x->refusal : x->curl_error[0] ? x->curl_error : curl_easy_strerror(rc);
  a->permanent = 0;
  if (rc == CURLE_OK) a->outcome = OUT_RESPONSE;
  else if (x->too_large) a->outcome = OUT_TOO_LARGE;
  else if (x->out_of_memory) a->outcome = OUT_NO_MEMORY;
  else if (headers_too_large(x, rc)) a->outcome = OUT_HEADERS_TOO_LARGE;
  else if (x->sends == 0) { /* never handed to a connection: provably not sent */
    a->outcome = rc == CURLE_OPERATION_TIMEDOUT ? OUT_CONNECT_TIMEOUT : OUT_NOT_SENT;
    a->permanent = x->refusal[0] || rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
                   rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
  } else if (refused_unprocessed(x, rc)) {
    a->outcome = OUT_REFUSED;
    if (x->refused_retry)
      snprintf(x->curl_error, sizeof x->curl_error, "HTTP/2 stream %ld closed with REFUSED_STREAM", x->h2_stream);
    else snprintf(x->curl_error, sizeof x->curl_error, "HTTP/2 GOAWAY with last-stream-id %ld, below stream %ld",
                  x->goaway_last, x->h2_stream);
    a->transport_message = x->curl_error;
  } else if (rc == CURLE_OPERATION_TIMEDOUT) a->outcome = OUT_TIMEOUT;
  else a->outcome = OUT_BROKEN;
  if (rc != CURLE_OK || x->sends > 1) x->tainted = 1;
}

/* --- the client's transport --- */

static void free_multi(struct transport *t) {
  int i;
  for (i = 0; i < t->pool_size; i++) {
    if (t->pool[i]->busy && t->multi != NULL) curl_multi_remove_handle(t->multi, t->pool[i]->curl);
    exchange_free(t->pool[i]);
    free(t->pool[i]);
  }
  free(t->pool);
  t->pool = NULL;
  t->pool_size = 0;
  if (t->multi != NULL) curl_multi_cleanup(t->multi); /* closes the connections it cached */
  t->multi = NULL;
}

/* After fork(): drop every handle the parent opened, without touching its peers. */
static void drop_inherited(struct transport *t) {
  detach_sockets(t);
  exchange_free(&t->single);
  free_multi(t);
}

int tsim_transport_ready(struct transport *t) {
  if (t->pid != 0 && t->pid != getpid()) drop_inherited(t);
  t->pid = getpid();
  return t->single.curl != NULL || exchange_setup(&t->single, t);
}

int tsim_transport_set_headers(struct transport *t, const char *api_key, const char *user_agent) {
  static const char bearer[] = "Authorization: Bearer ";
  size_t n = sizeof bearer - 1 + strlen(api_key) + 1;
  char *auth = (char *)malloc(n);
  int ok = auth != NULL, i;
  if (ok) snprintf(auth, n, "%s%s", bearer, api_key);
  for (i = 0; i < 2; i++) {
    struct curl_slist **list = i ? &t->json_headers : &t->bare_headers;
    /* "Content-Type:" with no value stops libcurl's form type on a bodiless POST */
    *list = slist_add(*list, i ? "Content-Type: application/json" : "Content-Type:", &ok);
    *list = slist_add(*list, "Accept: application/json", &ok);
    *list = slist_add(*list, "Expect:", &ok); /* no 100-continue round trip */
    *list = slist_add(*list, user_agent, &ok);
    *list = slist_add(*list, auth ? auth : "", &ok);
  }
  if (auth != NULL) tsim_wipe(auth);
  free(auth);
  return ok;
}

void tsim_transport_perform(lua_State *L, struct transport *t, struct strbuf *scratch, const struct call *k,
                            int headers_idx, struct attempt *a) {
  CURLcode rc;
  exchange_prepare(L, &t->single, scratch, k, headers_idx);
  rc = curl_easy_perform(t->single.curl);
  exchange_result(&t->single, rc, a);
}

/* --- batches: the multi interface --- */

/* How many connections a batch may open. Over TLS the server may speak
 * HTTP/2: then one connection carries every call (streams beyond the
 * server's limit wait for one, rather than each opening a connection), until
 * a response shows HTTP/1.x, which needs up to `concurrency` connections. */
static void apply_limits(struct transport *t) {
  long conns = t->https && t->protocol != 1 ? 1L : (long)t->concurrency;
  curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
  curl_multi_setopt(t->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
  curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, (long)t->concurrency); /* kept for the next batch */
  curl_multi_setopt(t->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, 1000L);
}

/* The first response of a batch says what the server speaks. */
static void note_protocol(struct transport *t, const struct exchange *x, CURLcode rc) {
  long v = 0;
  if (t->protocol != 0 || rc != CURLE_OK) return;
  curl_easy_getinfo(x->curl, CURLINFO_HTTP_VERSION, &v);
  t->protocol = v == CURL_HTTP_VERSION_2_0 || v == CURL_HTTP_VERSION_3 ? 2 : 1;
  if (t->protocol == 1) apply_limits(t);
}

int tsim_multi_ready(struct transport *t, int concurrency) {
  if (!tsim_transport_ready(t)) return 0;
  if (t->multi == NULL) {
    t->multi = curl_multi_init();
    if (t->multi == NULL) return 0;
    curl_multi_setopt(t->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  }
  t->concurrency = concurrency;
  apply_limits(t);
  if (t->pool_size >= concurrency) return 1;
  {
    struct exchange **pool = (struct exchange **)realloc(t->pool, (size_t)concurrency * sizeof(struct exchange *));
    if (pool == NULL) return 0;
    t->pool = pool;
  }
  while (t->pool_size < concurrency) { /* one allocation each: the callbacks hold its address */
    struct exchange *x = (struct exchange *)calloc(1, sizeof *x);
    if (x == NULL || !exchange_setup(x, t)) {
      free(x);
      return 0;
    }
    t->pool[t->pool_size++] = x;
  }
  return 1;
}

struct exchange *tsim_multi_free_slot(struct transport *t) {
  int i;
  for (i = 0; i < t->pool_size; i++)
    if (!t->pool[i]->busy) return t->pool[i];
  return NULL;
}

int tsim_multi_busy(const struct transport *t) { return t->in_flight; }

int tsim_multi_start(lua_State *L, struct transport *t, struct exchange *x, struct strbuf *scratch,
                     const struct call *k, int headers_idx) {
  exchange_prepare(L, x, scratch, k, headers_idx);
  if (curl_multi_add_handle(t->multi, x->curl) != CURLM_OK) return 0;
  x->busy = 1;
  t->in_flight++;
  return 1;
}

/* Takes a finished transfer out of the multi handle: its attempt goes to *a. */
static struct exchange *next_done(struct transport *t, struct attempt *a) {
  int left = 0;
  CURLMsg *msg;
  while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
    char *p = NULL;
    struct exchange *x;
    CURLcode rc = msg->data.result;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
    x = (struct exchange *)(void *)p;
    curl_multi_remove_handle(t->multi, msg->easy_handle);
    x->busy = 0;
    t->in_flight--;
    exchange_result(x, rc, a);
    note_protocol(t, x, rc);
    return x;
  }
  return NULL;
}

/* Drives the transfers: a finished one now, or after waiting up to `wait`
 * seconds (at most 1 s, so the caller keeps its clock), else NULL. */
struct exchange *tsim_multi_next(struct transport *t, double wait, struct attempt *a) {
  int running = 0;
  struct exchange *x;
  if ((x = next_done(t, a)) != NULL) return x; /* finished ones first: a perform walks every transfer */
  curl_multi_perform(t->multi, &running);
  if ((x = next_done(t, a)) != NULL || running == 0 || wait <= 0) return x;
  curl_multi_poll(t->multi, NULL, 0, wait >= 1 ? 1000 : (int)(wait * 1000.0) + 1, NULL);
  curl_multi_perform(t->multi, &running);
  return next_done(t, a);
}

void tsim_multi_cancel(struct transport *t) {
  int i;
  for (i = 0; i < t->pool_size; i++) {
    if (!t->pool[i]->busy) continue;
    curl_multi_remove_handle(t->multi, t->pool[i]->curl);
    t->pool[i]->busy = 0;
    t->pool[i]->tainted = 1; /* stopped mid-transfer */
  }
  t->in_flight = 0;
}

void tsim_transport_free(struct transport *t) {
  if (t->pid != 0 && t->pid != getpid()) detach_sockets(t);
  exchange_free(&t->single);
  free_multi(t);
  free(t->sockets); /* after the cleanups: their close callbacks use it */
  t->sockets = NULL;
  t->n_sockets = t->cap_sockets = 0;
  free_headers_wiped(&t->json_headers);
  free_headers_wiped(&t->bare_headers);
  free(t->ca_file); t->ca_file = NULL;
  free(t->ca_path); t->ca_path = NULL;
}
