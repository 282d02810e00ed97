/*
 * no_transport.c -- the fuzz targets' stand-in for src/transport.c. They
 * exercise the no-I/O halves (client:request, client:interpret) and link
 * without libcurl: proof that the core and the binding call none of it.
 * Nothing here sends anything; a client method reports that it cannot.
 */
#include <stdlib.h>

#include "../src/transport.h"

int tsim_transport_global_init(const char **why) {
  *why = "no transport";
  return 1;
}

const char *tsim_transport_version(void) { return "none"; }

int tsim_transport_set_headers(struct transport *t, const char *api_key, const char *user_agent) {
  (void)t; (void)api_key; (void)user_agent;
  return 1;
}

int tsim_transport_ready(struct transport *t) {
  (void)t;
  return 0; /* run_call then answers "could not create a libcurl handle" */
}

void tsim_transport_perform(lua_State *L, struct transport *t, struct strbuf *scratch, const struct call *k,
                            int headers_idx, struct attempt *a) {
  (void)L; (void)t; (void)scratch; (void)k; (void)headers_idx;
  a->outcome = OUT_NOT_SENT;
}

int tsim_multi_ready(struct transport *t, int concurrency) {
  (void)t; (void)concurrency;
  return 0; /* batch then answers that it cannot send */
}

struct exchange *tsim_multi_free_slot(struct transport *t) {
  (void)t;
  return NULL;
}

int tsim_multi_start(lua_State *L, struct transport *t, struct exchange *x, struct strbuf *scratch,
                     const struct call *k, int headers_idx) {
  (void)L; (void)t; (void)x; (void)scratch; (void)k; (void)headers_idx;
  return 0;
}

struct exchange *tsim_multi_next(struct transport *t, double wait, struct attempt *a) {
  (void)t; (void)wait; (void)a;
  return NULL;
}

int tsim_multi_busy(const struct transport *t) {
  (void)t;
  return 0;
}

void tsim_multi_cancel(struct transport *t) { (void)t; }

void tsim_transport_free(struct transport *t) {
  free(t->ca_file);
  t->ca_file = NULL;
  free(t->ca_path);
  t->ca_path = NULL;
}
