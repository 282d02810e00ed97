/*
 * The limit for `make bench`: the least a Lua caller can pay, in bare libcurl + cjson.
 *
 *   limit purchase URL BODY ROUND MIN_ROUNDS MAX_ROUNDS N 'Header: value'...
 *     One purchase_esims call: the same POST the module sends (URL, header lines and body bytes
 *     come from the command line, taken from client:request by bench/bench.lua) with one reused
 *     easy handle over one kept-alive connection, each response body handed to cjson.decode in a
 *     Lua 5.4 state. Nothing else: no validation, no header parsing, no result normalisation.
 *   limit single PREFIX CA ROUND MIN_ROUNDS MAX_ROUNDS N 'Header: value'...
 *     GET PREFIX/sim_cards/{id}/activation_code one after another on one easy handle, + cjson.decode.
 *   limit fanout PREFIX CA N CONCURRENCY MIN_ROUNDS MAX_ROUNDS TIMED SINGLE_PREFIX 'Header: value'...
 *     The same N GETs on one multi handle, CONCURRENCY in flight (curl_multi_perform/poll, every
 *     finished transfer read after each perform, its easy handle reused for the next GET), + cjson.decode.
 *     Over https, HTTP/2 on one connection (PIPEWAIT, CURLMOPT_MAX_CONCURRENT_STREAMS = CONCURRENCY,
 *     CURLMOPT_MAX_HOST_CONNECTIONS = 1); over http, up to CONCURRENCY HTTP/1.1 connections.
 *     SINGLE_PREFIX (or "-"): before each timed fan-out, N single GETs there (as `single`, on an easy
 *     handle of their own, after their own warm-up), so both CPU figures come from one process;
 *     cpus_s and singles_s list them per pair (one fan-out, the single calls just before it).
 *     What libcurl itself costs for a fan-out: the floor under client:batch.
 *
 * CA is a CA file for https ("-": none). Warm-up rounds (ROUND calls each; for fanout, one fan-out
 * each) run until the per-round figure (CPU per call; for fanout, wall time) stops falling: two
 * rounds in a row no more than 3 % below the best before them, after at least MIN_ROUNDS (the same
 * rule as bench/client.lua and bench/node_client.js). Prints one JSON line with calls, cpu_s,
 * wall_s (the timed part only: user+sys from getrusage, CLOCK_MONOTONIC), the warm-up figures and
 * hwm_kb/rss_kb (VmHWM, VmRSS).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#define MAX_ROUNDS 64

struct buf {
  char *data;
  size_t len, cap;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  struct buf *b = (struct buf *)ud;
  size_t n = size * nmemb;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    char *p;
    while (cap < b->len + n) cap *= 2;
    p = (char *)realloc(b->data, cap);
    if (p == NULL) return 0;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  return n;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long status_kb(const char *field) {
  char line[256];
  long kb = -1;
  size_t n = strlen(field);
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, field, n) == 0 && line[n] == ':') { kb = strtol(line + n + 1, NULL, 10); break; }
  fclose(f);
  return kb;
}

static lua_State *L;

/* cjson.decode of the body: a table, or the process fails. */
static void decode(const struct buf *b) {
  lua_pushvalue(L, 1); /* cjson.decode */
  lua_pushlstring(L, b->data, b->len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
    fprintf(stderr, "limit: decode failed: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  lua_pop(L, 1);
}

static void check(CURL *h, CURLcode rc, long want) {
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK || status != want) {
    fprintf(stderr, "limit: request failed: %s (HTTP %ld)\n", curl_easy_strerror(rc), status);
    exit(1);
  }
}

/* The warm-up rule; figures[] gets each round's figure, returns how many rounds ran. */
static int warm_up(double (*round)(void *), void *ud, int min_rounds, int max_rounds, double *figures) {
  double best = 1e300;
  int k, flat = 0;
  if (max_rounds > MAX_ROUNDS) max_rounds = MAX_ROUNDS;
  for (k = 1; k <= max_rounds; k++) {
    double f = round(ud);
    figures[k - 1] = f;
    flat = f >= 0.97 * best ? flat + 1 : 0;
    if (f < best) best = f;
    if (k >= min_rounds && flat >= 2) return k;
  }
  return max_rounds;
}

static void print_list(const char *name, const double *xs, int n, double scale) {
  int i;
  printf(",\"%s\":[", name);
  for (i = 0; i < n; i++) printf("%s%.3f", i ? "," : "", xs[i] * scale);
  printf("]");
}

static CURL *new_handle(struct curl_slist *headers, const char *ca, struct buf *b) {
  CURL *h = curl_easy_init();
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)b);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  if (ca != NULL) curl_easy_setopt(h, CURLOPT_CAINFO, ca);
  return h;
}

/* --- purchase and single: one easy handle, one call after another --- */

struct seq {
  CURL *h;
  struct buf b;
  const char *prefix; /* single: GET PREFIX/sim_cards/{id}/activation_code; NULL: the purchase */
  long round, next_id;
};

static void set_code_url(CURL *h, const char *prefix, long id) {
  char url[1024];
  snprintf(url, sizeof url, "%s/sim_cards/6a09cdc3-8948-47f0-aa62-%012lx/activation_code", prefix, id);
  curl_easy_setopt(h, CURLOPT_URL, url);
}

static void seq_call(struct seq *s) {
  s->b.len = 0;
  if (s->prefix != NULL) set_code_url(s->h, s->prefix, s->next_id++ % 1000 + 1);
  check(s->h, curl_easy_perform(s->h), s->prefix != NULL ? 200 : 202);
  decode(&s->b);
}

static double seq_round(void *ud) {
  struct seq *s = (struct seq *)ud;
  double c0 = cpu_seconds();
  long i;
  for (i = 0; i < s->round; i++) seq_call(s);
  return (cpu_seconds() - c0) / (double)s->round;
}

/* --- fanout: one multi handle --- */

struct fan {
  CURLM *m;
  CURL **h;
  struct buf *b;
  const char *prefix;
  long n, concurrency;
};

static void fan_start(struct fan *f, long slot, long id) {
  f->b[slot].len = 0;
  set_code_url(f->h[slot], f->prefix, id);
  curl_multi_add_handle(f->m, f->h[slot]);
}

/* One fan-out of N GETs; returns its wall time, adds its CPU time to *cpu. */
static double fan_once(struct fan *f, double *cpu) {
  long next = 0, done = 0, slot;
  double c0 = cpu_seconds(), w0 = wall_seconds();
  for (slot = 0; slot < f->concurrency && next < f->n; slot++) fan_start(f, slot, ++next);
  while (done < f->n) {
    int running = 0, left = 0;
    CURLMsg *msg;
    curl_multi_perform(f->m, &running);
    while ((msg = curl_multi_info_read(f->m, &left)) != NULL) {
      char *p = NULL;
      struct buf *b;
      if (msg->msg != CURLMSG_DONE) continue;
      check(msg->easy_handle, msg->data.result, 200);
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
      b = (struct buf *)(void *)p;
      decode(b);
      curl_multi_remove_handle(f->m, msg->easy_handle);
      done++;
      if (next < f->n) fan_start(f, b - f->b, ++next);
    }
    if (done < f->n) curl_multi_poll(f->m, NULL, 0, 1000, NULL);
  }
  if (cpu != NULL) *cpu += cpu_seconds() - c0;
  return wall_seconds() - w0;
}

static double fan_round(void *ud) { return fan_once((struct fan *)ud, NULL); }

int main(int argc, char **argv) {
  struct curl_slist *headers = NULL;
  double figures[MAX_ROUNDS], cpu = 0, wall = 0, walls[MAX_ROUNDS];
  const char *mode = argc > 1 ? argv[1] : "";
  int a, first_header, rounds = 0;
  long calls = 0;

  L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "limit: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_getfield(L, -1, "decode");
  lua_replace(L, 1); /* stack: [1] = cjson.decode */
  lua_settop(L, 1);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  if ((strcmp(mode, "purchase") == 0 && argc >= 8) || (strcmp(mode, "single") == 0 && argc >= 8)) {
    int purchase = mode[0] == 'p';
    struct seq s;
    const char *ca = purchase || strcmp(argv[3], "-") == 0 ? NULL : argv[3];
    long min_rounds = strtol(argv[5], NULL, 10), max_rounds = strtol(argv[6], NULL, 10);
    long n = strtol(argv[7], NULL, 10), i;
    double c0, w0;
    memset(&s, 0, sizeof s);
    first_header = 8;
    for (a = first_header; a < argc; a++) headers = curl_slist_append(headers, argv[a]);
    s.h = new_handle(headers, ca, &s.b);
    s.round = strtol(argv[4], NULL, 10);
    if (purchase) {
      curl_easy_setopt(s.h, CURLOPT_URL, argv[2]);
      curl_easy_setopt(s.h, CURLOPT_POSTFIELDS, argv[3]);
      curl_easy_setopt(s.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(argv[3]));
    } else {
      s.prefix = argv[2];
    }
    if (n <= 0 || s.round <= 0) return 2;
    seq_call(&s);
    rounds = warm_up(seq_round, &s, (int)min_rounds, (int)max_rounds, figures);
    c0 = cpu_seconds();
    w0 = wall_seconds();
    for (i = 0; i < n; i++) seq_call(&s);
    cpu = cpu_seconds() - c0;
    wall = wall_seconds() - w0;
    calls = n;
    printf("{\"calls\":%ld,\"cpu_s\":%.6f,\"wall_s\":%.6f,\"warmup_calls\":%ld", calls, cpu, wall,
           1 + rounds * s.round);
    print_list("warmup_us", figures, rounds, 1e6);
    curl_easy_cleanup(s.h);
    free(s.b.data);
  } else if (strcmp(mode, "fanout") == 0 && argc >= 10) {
    struct fan f;
    struct seq s;
    const char *ca = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
    long min_rounds = strtol(argv[6], NULL, 10), max_rounds = strtol(argv[7], NULL, 10);
    long timed = strtol(argv[8], NULL, 10), i;
    double single_figures[MAX_ROUNDS], single_cpu = 0, cpus[MAX_ROUNDS], singles[MAX_ROUNDS];
    int single_rounds = 0;
    memset(&f, 0, sizeof f);
    memset(&s, 0, sizeof s);
    f.prefix = argv[2];
    f.n = strtol(argv[4], NULL, 10);
    f.concurrency = strtol(argv[5], NULL, 10);
    if (f.n <= 0 || f.concurrency <= 0 || timed <= 0 || timed > MAX_ROUNDS) return 2;
    if (f.concurrency > f.n) f.concurrency = f.n;
    first_header = 10;
    for (a = first_header; a < argc; a++) headers = curl_slist_append(headers, argv[a]);
    if (strcmp(argv[9], "-") != 0) {
      s.prefix = argv[9];
      s.round = f.n;
      s.h = new_handle(headers, ca, &s.b);
    }
    f.m = curl_multi_init();
    curl_multi_setopt(f.m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Over https (the bench's is HTTP/2) one connection: libcurl 7.88 otherwise opens a connection
     * per stream beyond the 100 it assumes until the server's SETTINGS arrive (~900 of them). */
    curl_multi_setopt(f.m, CURLMOPT_MAX_HOST_CONNECTIONS, strncmp(f.prefix, "https:", 6) == 0 ? 1L : f.concurrency);
    curl_multi_setopt(f.m, CURLMOPT_MAXCONNECTS, f.concurrency);
    curl_multi_setopt(f.m, CURLMOPT_MAX_CONCURRENT_STREAMS, f.concurrency);
    f.h = (CURL **)calloc((size_t)f.concurrency, sizeof *f.h);
    f.b = (struct buf *)calloc((size_t)f.concurrency, sizeof *f.b);
    if (f.h == NULL || f.b == NULL) return 1;
    for (i = 0; i < f.concurrency; i++) f.h[i] = new_handle(headers, ca, &f.b[i]);
    rounds = warm_up(fan_round, &f, (int)min_rounds, (int)max_rounds, figures);
    if (s.h != NULL) {
      seq_call(&s);
      single_rounds = warm_up(seq_round, &s, 2, 20, single_figures);
    }
    for (i = 0; i < timed; i++) { /* pairs: N single calls, then one fan-out */
      singles[i] = s.h != NULL ? seq_round(&s) * (double)s.round : 0;
      cpus[i] = 0;
      walls[i] = fan_once(&f, &cpus[i]);
    }
    for (i = 0; i < timed; i++) {
      wall += walls[i];
      cpu += cpus[i];
      single_cpu += singles[i];
    }
    calls = f.n * timed;
    printf("{\"calls\":%ld,\"n\":%ld,\"cpu_s\":%.6f,\"wall_s\":%.6f,\"warmup_calls\":%ld", calls, f.n, cpu, wall,
           f.n * rounds);
    print_list("walls_s", walls, (int)timed, 1);
    print_list("cpus_s", cpus, (int)timed, 1);
    print_list("warmup_wall_s", figures, rounds, 1);
    if (s.h != NULL) {
      printf(",\"single_calls\":%ld,\"single_cpu_s\":%.6f", calls, single_cpu);
      print_list("singles_s", singles, (int)timed, 1);
      print_list("single_warmup_us", single_figures, single_rounds, 1e6);
      curl_easy_cleanup(s.h);
      free(s.b.data);
    }
    for (i = 0; i < f.concurrency; i++) {
      curl_easy_cleanup(f.h[i]);
      free(f.b[i].data);
    }
    curl_multi_cleanup(f.m);
    free(f.h);
    free(f.b);
  } else {
    fprintf(stderr, "usage: see the head of bench/limit.c\n");
    return 2;
  }
  printf(",\"hwm_kb\":%ld,\"rss_kb\":%ld}\n", status_kb("VmHWM"), status_kb("VmRSS"));
  curl_slist_free_all(headers);
  lua_close(L);
  curl_global_cleanup();
  return 0;
}
