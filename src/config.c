/*
 * config.c -- the client's configuration rules that need no I/O: which
 * base_url is acceptable, and what counts as loopback (plain http is allowed
 * only there, so the API key never travels unencrypted).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <string.h>

#include "core.h"

/* A numeric address in 127.0.0.0/8 or ::1 (also as ::ffff:127.x.x.x). */
int tsim_ip_is_loopback(const char *ip) {
  unsigned char a[16];
  if (inet_pton(AF_INET, ip, a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, ip, a) != 1) return 0;
  if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0) return 1;
  return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && a[12] == 127;
}

/* The host of an http:// base_url is loopback: localhost (any case) or a loopback address. */
static int host_is_loopback(const char *authority, size_t n) {
  char host[64];
  size_t len = n, i;
  const char *end;
  if (n > 0 && authority[0] == '[') { /* [v6]:port */
    end = (const char *)memchr(authority, ']', n);
    if (end == NULL) return 0;
    authority++;
    len = (size_t)(end - authority);
  } else if ((end = (const char *)memchr(authority, ':', n)) != NULL) {
    len = (size_t)(end - authority);
  }
  if (len == 0 || len >= sizeof host) return 0;
  for (i = 0; i < len; i++) host[i] = (char)(authority[i] >= 'A' && authority[i] <= 'Z' ? authority[i] + 32 : authority[i]);
  host[len] = '\0';
  if (strcmp(host, "localhost") == 0) return 1;
  return tsim_ip_is_loopback(host);
}

/* Checks base_url; returns NULL when fine, else what is wrong with it. */
const char *tsim_base_url_problem(const char *url, int allow_insecure_http) {
  size_t n = strlen(url), i, auth_len;
  const char *auth;
  int https;
  if (strncmp(url, "https://", 8) == 0) { https = 1; auth = url + 8; }
  else if (strncmp(url, "http://", 7) == 0) { https = 0; auth = url + 7; }
  else return "must start with https:// (or http:// for a loopback test server)";
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)url[i];
    if (ch <= 0x20 || ch == 0x7f) return "must not contain spaces or control characters (CR, LF, NUL)";
    if (ch == '?' || ch == '#') return "must not contain a query or a fragment";
  }
  auth_len = strcspn(auth, "/");
  if (auth_len == 0) return "has no host";
  if (memchr(auth, '@', auth_len) != NULL) return "must not contain credentials";
  if (!https && !allow_insecure_http && !host_is_loopback(auth, auth_len))
    return "uses plain http:// to a host that is not loopback; the API key would travel "
           "unencrypted (set allow_insecure_http = true to allow it)";
  return NULL;
}

