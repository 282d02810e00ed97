/*
 * The limit for `make bench`: the least a Lua caller can pay for one purchase_esims call.
 * The same POST the module sends (URL, header lines and body bytes come from the command
 * line, taken from client:request by bench/bench.lua) with one reused libcurl easy handle
 * over one kept-alive connection, each response body handed to cjson.decode in a Lua 5.4
 * state. Nothing else: no validation, no header parsing, no result normalisation.
 *
 * Usage: limit URL BODY WARMUP N 'Header: value'...
 * Prints one JSON line: {"calls":N,"cpu_s":...,"wall_s":...,"hwm_kb":...,"rss_kb":...}
 * cpu_s is user+sys (getrusage) over the N timed calls only, after WARMUP untimed ones.
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

static void call(CURL *h, struct buf *b, lua_State *L) {
  CURLcode rc;
  long status = 0;
  b->len = 0;
  rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK || status != 202) {
    fprintf(stderr, "limit: request failed: %s (HTTP %ld)\n", curl_easy_strerror(rc), status);
    exit(1);
  }
  lua_pushvalue(L, 1); /* cjson.decode */
  lua_pushlstring(L, b->data, b->len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
    fprintf(stderr, "limit: decode failed: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  lua_pop(L, 1);
}

int main(int argc, char **argv) {
  struct curl_slist *headers = NULL;
  struct buf b = {NULL, 0, 0};
  lua_State *L;
  CURL *h;
  long warmup, n, i;
  double cpu0, wall0, cpu, wall;
  int a;
  if (argc < 5) {
    fprintf(stderr, "usage: limit URL BODY WARMUP N 'Header: value'...\n");
    return 2;
  }
  warmup = strtol(argv[3], NULL, 10);
  n = strtol(argv[4], NULL, 10);
  if (n <= 0 || warmup < 0) return 2;

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
  h = curl_easy_init();
  for (a = 5; a < argc; a++) headers = curl_slist_append(headers, argv[a]);
  curl_easy_setopt(h, CURLOPT_URL, argv[1]);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, argv[2]);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(argv[2]));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);

  for (i = 0; i < warmup; i++) call(h, &b, L);
  cpu0 = cpu_seconds();
  wall0 = wall_seconds();
  for (i = 0; i < n; i++) call(h, &b, L);
  cpu = cpu_seconds() - cpu0;
  wall = wall_seconds() - wall0;
  printf("{\"calls\":%ld,\"cpu_s\":%.6f,\"wall_s\":%.6f,\"hwm_kb\":%ld,\"rss_kb\":%ld}\n", n, cpu, wall,
         status_kb("VmHWM"), status_kb("VmRSS"));

  curl_easy_cleanup(h);
  curl_slist_free_all(headers);
  free(b.data);
  lua_close(L);
  curl_global_cleanup();
  return 0;
}
