/*
 * strbuf.h -- a growable byte buffer. Its owner (a client) frees it in __gc,
 * so a Lua error that unwinds mid-build cannot leak it.
 */
#ifndef TSIM_STRBUF_H
#define TSIM_STRBUF_H

#include <stddef.h>
#include "lua.h"

struct strbuf {
  char *data;
  size_t len, cap;
};

int strbuf_reserve(struct strbuf *b, size_t extra); /* 0: no memory */
void strbuf_free(struct strbuf *b);

/* Appends, or raises "not enough memory" (safe: the buffer is owned). */
void sb_add(lua_State *L, struct strbuf *b, const char *s, size_t n);
void sb_addstr(lua_State *L, struct strbuf *b, const char *s);
#define sb_addlit(L, b, lit) sb_add((L), (b), (lit), sizeof(lit) - 1)
void sb_add_json_string(lua_State *L, struct strbuf *b, const char *s, size_t n);
void sb_add_urlencoded(lua_State *L, struct strbuf *b, const char *s, size_t n);
void sb_add_integer(lua_State *L, struct strbuf *b, long long v);

#endif
