/* strbuf.c -- see strbuf.h. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "strbuf.h"

int strbuf_reserve(struct strbuf *b, size_t extra) {
  size_t need = b->len + extra, cap;
  char *p;
  if (need < b->len) return 0; /* overflow */
  if (need <= b->cap) return 1;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = (char *)realloc(b->data, cap);
  if (p == NULL) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

void strbuf_free(struct strbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void sb_add(lua_State *L, struct strbuf *b, const char *s, size_t n) {
  if (!strbuf_reserve(b, n)) luaL_error(L, "telnyx.sim: not enough memory");
  if (n > 0) memcpy(b->data + b->len, s, n);
  b->len += n;
}

void sb_addstr(lua_State *L, struct strbuf *b, const char *s) { sb_add(L, b, s, strlen(s)); }

void sb_add_json_string(lua_State *L, struct strbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t i, start = 0;
  sb_addlit(L, b, "\"");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    sb_add(L, b, s + start, i - start);
    start = i + 1;
    switch (c) {
      case '"': sb_addlit(L, b, "\\\""); break;
      case '\\': sb_addlit(L, b, "\\\\"); break;
      case '\n': sb_addlit(L, b, "\\n"); break;
      case '\r': sb_addlit(L, b, "\\r"); break;
      case '\t': sb_addlit(L, b, "\\t"); break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        sb_add(L, b, esc, sizeof esc);
      }
    }
  }
  sb_add(L, b, s + start, n - start);
  sb_addlit(L, b, "\"");
}

/* RFC 3986 unreserved characters stay; everything else is %XX. */
void sb_add_urlencoded(lua_State *L, struct strbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i, start = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') continue;
    sb_add(L, b, s + start, i - start);
    start = i + 1;
    {
      const char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
      sb_add(L, b, esc, 3);
    }
  }
  sb_add(L, b, s + start, n - start);
}

void sb_add_integer(lua_State *L, struct strbuf *b, long long v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%lld", v);
  sb_add(L, b, tmp, (size_t)n);
}
