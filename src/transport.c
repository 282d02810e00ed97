/* transport.c -- the libcurl path; see transport.h. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lauxlib.h"
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
  struct transport *t = (struct transport *)ud;
  size_t n = size * nmemb;
  if (t->response.len + n > t->max_response_bytes) {
    t->too_large = 1;
    return 0;
  }
  if (!strbuf_reserve(&t->response, n)) {
    t->out_of_memory = 1;
    return 0;
  }
  memcpy(t->response.data + t->response.len, ptr, n);
  t->response.len += n;
  return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  struct transport *t = (struct transport *)ud;
  size_t n = size * nmemb, name_len, v, end;
  const char *colon;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* each response, 1xx included */
    tsim_meta_reset(&t->meta);
    return n;
  }
  colon = (const char *)memchr(line, ':', n);
  if (colon == NULL) return n;
  name_len = (size_t)(colon - line);
  v = name_len + 1;
  end = n;
  while (v < end && (line[v] == ' ' || line[v] == '\t')) v++;
  while (end > v && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' ')) end--;
  tsim_meta_note(&t->meta, line, name_len, line + v, end - v);
  return n;
}

/* libcurl re-sends a request by itself when a reused connection turns out
 * dead; for calls that must not go twice the first copy may have arrived. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
  struct transport *t = (struct transport *)ud;
  (void)conn_local_ip; (void)conn_primary_port; (void)conn_local_port;
  /* plain http is allowed to loopback only: check where the connection really
   * goes (an http_proxy, or a name resolving elsewhere), before the key is sent */
  if (t->plain_http_guard && !tsim_ip_is_loopback(conn_primary_ip)) {
    snprintf(t->refusal, sizeof t->refusal,
             "refused to send the API key over plain http to %.64s, which is not a loopback address "
             "(set allow_insecure_http = true to allow it)", conn_primary_ip);
    return CURL_PREREQFUNC_ABORT;
  }
  if (t->sends++ > 0 && !t->allow_resend) return CURL_PREREQFUNC_ABORT;
  return CURL_PREREQFUNC_OK;
}

/* --- the handle --- */

/* A forked child must never use (or shut down) its parent's connection:
 * point the child's copy of the socket at /dev/null, so that cleaning up the
 * handle (TLS close_notify included) writes nothing to the parent's peer. */
static void abandon_inherited(struct transport *t) {
  curl_socket_t s = CURL_SOCKET_BAD;
  if (curl_easy_getinfo(t->curl, CURLINFO_ACTIVESOCKET, &s) == CURLE_OK && s != CURL_SOCKET_BAD) {
    int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd >= 0) {
      (void)dup2(null_fd, s);
      close(null_fd);
    }
  }
  curl_easy_cleanup(t->curl);
  t->curl = NULL;
}

static int setup_curl(struct transport *t) {
  CURL *h = curl_easy_init();
  CURLcode rc = CURLE_OK;
  if (h == NULL) return 0;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val)
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, t);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, t);
  SET(CURLOPT_ERRORBUFFER, t->curl_error);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_ACCEPT_ENCODING, NULL);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)); /* deprecated in 7.85 */
#endif
  SET(CURLOPT_PREREQFUNCTION, on_prereq);
  SET(CURLOPT_PREREQDATA, t);
  if (t->ca_file) SET(CURLOPT_CAINFO, t->ca_file);
  if (t->ca_path) SET(CURLOPT_CAPATH, t->ca_path);
#undef SET
  if (rc != CURLE_OK) {
    curl_easy_cleanup(h);
    return 0;
  }
  t->curl = h;
  t->pid = getpid();
  return 1;
}

int tsim_transport_ready(struct transport *t) {
  if (t->curl != NULL && t->pid != getpid()) abandon_inherited(t);
  return t->curl != NULL || setup_curl(t);
}

/* Header lists hold the Authorization line, so wipe before freeing. */
static void free_headers_wiped(struct curl_slist **list) {
  struct curl_slist *h;
  for (h = *list; h != NULL; h = h->next) {
    volatile char *v = h->data;
    while (*v) *v++ = '\0';
  }
  curl_slist_free_all(*list);
  *list = NULL;
}

static struct curl_slist *slist_add(struct curl_slist *list, const char *line, int *ok) {
  struct curl_slist *next;
  if (!*ok) return list;
  next = curl_slist_append(list, line);
  if (next == NULL) { *ok = 0; return list; }
  return next;
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
  if (auth != NULL) {
    volatile char *v = auth;
    while (*v) *v++ = '\0';
    free(auth);
  }
  return ok;
}

int tsim_transport_call_headers(lua_State *L, struct transport *t, struct strbuf *scratch, int json,
                                const char *idempotency_key, int headers_idx) {
  struct curl_slist *h;
  int ok = 1;
  free_headers_wiped(&t->call_headers);
  if (idempotency_key == NULL && headers_idx == 0) return 1;
  for (h = json ? t->json_headers : t->bare_headers; h != NULL; h = h->next)
    t->call_headers = slist_add(t->call_headers, h->data, &ok);
  if (idempotency_key != NULL) {
    scratch->len = 0;
    sb_addlit(L, scratch, "Idempotency-Key: ");
    sb_addstr(L, scratch, idempotency_key);
    sb_addlit(L, scratch, "\0");
    t->call_headers = slist_add(t->call_headers, scratch->data, &ok);
  }
  if (headers_idx != 0) {
    lua_pushnil(L);
    while (lua_next(L, headers_idx) != 0) {
      scratch->len = 0;
      sb_addstr(L, scratch, lua_tostring(L, -2));
      sb_addlit(L, scratch, ": ");
      sb_addstr(L, scratch, lua_tostring(L, -1));
      sb_addlit(L, scratch, "\0");
      t->call_headers = slist_add(t->call_headers, scratch->data, &ok);
      lua_pop(L, 1);
    }
  }
  return ok;
}

static void set_request(struct transport *t, const struct send_spec *s) {
  CURL *h = t->curl;
  long ms = (long)(s->timeout * 1000.0), cms = (long)(t->connect_timeout * 1000.0);
  curl_easy_setopt(h, CURLOPT_URL, s->url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER,
                   t->call_headers ? t->call_headers : s->json ? t->json_headers : t->bare_headers);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cms > 0 && cms < ms ? cms : (ms > 0 ? ms : 1L));
  if (s->body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(s->method, "POST") ? s->method : NULL);
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(s->method, "GET") ? s->method : NULL);
  }
}

/* What a failed perform means for the rules. */
static void classify(struct transport *t, CURLcode rc, struct attempt *a) {
  a->timed_out = a->permanent = 0;
  if (rc == CURLE_OK) a->outcome = OUT_RESPONSE;
  else if (t->too_large) a->outcome = OUT_TOO_LARGE;
  else if (t->out_of_memory) a->outcome = OUT_NO_MEMORY;
  else if (t->sends == 0) { /* never handed to a connection: provably not sent */
    a->outcome = OUT_NOT_SENT;
    a->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    a->permanent = t->refusal[0] || rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
                   rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
  } else if (rc == CURLE_OPERATION_TIMEDOUT) a->outcome = OUT_TIMEOUT;
  else a->outcome = OUT_BROKEN;
}

/* Sends one attempt and fills `a`. Blocks: this is the plain-Lua path. */
void tsim_transport_perform(struct transport *t, const struct send_spec *s, struct attempt *a) {
  CURLcode rc;
  t->response.len = 0;
  t->sends = 0;
  t->allow_resend = s->allow_resend;
  t->too_large = t->out_of_memory = 0;
  t->curl_error[0] = t->refusal[0] = '\0';
  tsim_meta_reset(&t->meta);
  set_request(t, s);
  rc = curl_easy_perform(t->curl);
  a->status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &a->status);
  a->body = t->response.data ? t->response.data : "";
  a->body_len = t->response.len;
  a->meta = t->meta;
  a->transport_message = t->refusal[0] ? t->refusal : t->curl_error[0] ? t->curl_error : curl_easy_strerror(rc);
  classify(t, rc, a);
}

void tsim_transport_free(struct transport *t) {
  if (t->curl != NULL) {
    if (t->pid != getpid()) abandon_inherited(t);
    else curl_easy_cleanup(t->curl);
  }
  t->curl = NULL;
  free_headers_wiped(&t->call_headers);
  free_headers_wiped(&t->json_headers);
  free_headers_wiped(&t->bare_headers);
  free(t->ca_file); t->ca_file = NULL;
  free(t->ca_path); t->ca_path = NULL;
  strbuf_free(&t->response);
}
