/*
 * http1.c -- an HTTP/1.1 response reader with no I/O (see http1.h).
 *
 * A piece is read in place when nothing is pending; only what a step could
 * not finish (part of a head, of a chunk's size line) is kept, in `pend`, and
 * searched from where the last search stopped, so every byte is looked at a
 * bounded number of times whatever the cuts. Body bytes go straight to
 * `body`. Limits: all heads together (interim ones too) TSIM_HTTP1_MAX_HEAD,
 * and the trailers as much again; the body max_body, and a chunked body's
 * framing as much again. Running out of memory fails the read ("broken"):
 * nothing here raises in the middle of a step, so a reader is never left
 * half-updated.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "strbuf.h"
#include "http1.h"

#define READER_MT "telnyx.sim.http1"
#define MAX_CHUNK_LINE 1024 /* a chunk's size line, extensions included */
#define NOT_A_HEADER "a header line is not 'name: value'"

enum state { S_HEAD, S_LENGTH, S_CLOSE, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_END, S_TRAILERS, S_DONE };
enum step { MORE, AGAIN, WHOLE, FAILED }; /* FAILED: failure and why set */
enum framing_kind { FRAMED_NONE, FRAMED_LENGTH, FRAMED_CHUNKED, FRAMED_CLOSE };

struct tsim_http1 {
  enum state state;
  int head_method;            /* a HEAD request: no body, whatever the headers say */
  size_t max_body;
  struct strbuf pend;         /* bytes a step could not finish with */
  struct strbuf head;         /* the final head, for r.headers */
  struct strbuf body;
  size_t head_bytes, scanned; /* all heads so far; bytes of pend searched for a line's or head's end */
  size_t left, framing_bytes, trailer_bytes;
  unsigned long long length;  /* Content-Length */
  enum framing_kind framing;
  long status;                /* 0 until the final head is in */
  int keep_alive, reusable, have_headers;
  const char *failure, *why;  /* a failure's, static or in why_buf */
  char why_buf[96];
  struct response_meta meta;
};

/* The bytes a step works on: in[pos..n). */
struct input {
  const char *in;
  size_t pos, n;
};

/* ===================================================================== */
/* Small helpers                                                          */
/* ===================================================================== */

struct span {
  const char *p;
  size_t n;
};

static int is_blank(char c) {
  return c == ' ' || c == '\t';
}

static struct span trim(const char *p, size_t n) {
  struct span s;
  while (n > 0 && is_blank(*p)) { p++; n--; }
  while (n > 0 && is_blank(p[n - 1])) n--;
  s.p = p;
  s.n = n;
  return s;
}

/* Whether s is `lower` (a lower-case literal) in any case. */
static int span_is(struct span s, const char *lower) {
  return tsim_name_is(s.p, s.n, lower);
}

/* The first CRLF in [p, end), or NULL. */
static const char *find_crlf(const char *p, const char *end) {
  while (p < end) {
    const char *cr = memchr(p, '\r', (size_t)(end - p));
    if (cr == NULL || cr + 1 >= end) return NULL;
    if (cr[1] == '\n') return cr;
    p = cr + 1;
  }
  return NULL;
}

static enum step fail(struct tsim_http1 *r, const char *failure, const char *why) {
  r->failure = failure;
  r->why = why;
  return FAILED;
}

static enum step too_large_body(struct tsim_http1 *r) {
  snprintf(r->why_buf, sizeof r->why_buf, "the response body is over max_response_bytes (%zu)", r->max_body);
  return fail(r, "too_large", r->why_buf);
}

/* Appends s[0..n) to b: 1, or 0 (failed: no memory). */
static int keep(struct tsim_http1 *r, struct strbuf *b, const char *s, size_t n) {
  if (n == 0) return 1;
  if (!strbuf_reserve(b, n)) {
    fail(r, "broken", "not enough memory to read the response");
    return 0;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 1;
}

/* ===================================================================== */
/* A head: the status line and the header lines                           */
/* ===================================================================== */

/* What the framing and keep-alive rules read, gathered line by line. */
struct framing {
  int cl_count;        /* Content-Length lines */
  struct span cl;      /* the first one's value, trimmed */
  int cl_differs;      /* a later one says something else */
  int te_count;        /* Transfer-Encoding lines */
  struct span te_last; /* the last token of all of them (chunked must be it) */
  int conn_close, conn_keep_alive; /* Connection tokens */
};

/* The next comma-separated token of [*p, end), trimmed (maybe empty); moves *p past it. */
static struct span next_token(const char **p, const char *end) {
  const char *start = *p, *comma = memchr(start, ',', (size_t)(end - start));
  const char *stop = comma ? comma : end;
  *p = comma ? comma + 1 : end;
  return trim(start, (size_t)(stop - start));
}

/* Notes a header the framing reads (any other is let by). */
static void note_framing(struct framing *f, struct span name, struct span value) {
  const char *p = value.p, *end = value.p + value.n;
  int te = span_is(name, "transfer-encoding");
  if (span_is(name, "content-length")) {
    struct span v = trim(value.p, value.n);
    if (f->cl_count++ == 0) f->cl = v;
    else if (v.n != f->cl.n || memcmp(v.p, f->cl.p, v.n) != 0) f->cl_differs = 1;
    return;
  }
  if (!te && !span_is(name, "connection")) return;
  if (te) f->te_count++;
  while (p < end) {
    struct span t = next_token(&p, end);
    if (t.n == 0) continue;
    if (te) f->te_last = t;
    else if (span_is(t, "close")) f->conn_close = 1;
    else if (span_is(t, "keep-alive")) f->conn_keep_alive = 1;
  }
}

/* One header line [p, e) split into name and value: 0 if it is not 'name:
 * value'. No white space in a name (a line starting with it is obsolete
 * folding), no bare CR or LF anywhere. The value keeps what follows it. */
static int split_line(const char *p, const char *e, struct span *name, struct span *value) {
  const char *colon = memchr(p, ':', (size_t)(e - p)), *v, *c;
  if (colon == NULL || colon == p) return 0;
  if (memchr(p, '\r', (size_t)(e - p)) || memchr(p, '\n', (size_t)(e - p))) return 0;
  for (c = p; c < colon; c++) {
    if (is_blank(*c)) return 0;
  }
  for (v = colon + 1; v < e && is_blank(*v);) v++;
  name->p = p;
  name->n = (size_t)(colon - p);
  value->p = v;
  value->n = (size_t)(e - v);
  return 1;
}

/* The line after the status line's CRLF, or end when there is none. */
static const char *first_header(const char *p, const char *end) {
  const char *eol = find_crlf(p, end);
  return eol ? eol + 2 : end;
}

/* Checks the header lines [p, end) and notes what the rules read: 1, or 0. */
static int read_headers(struct tsim_http1 *r, const char *p, const char *end, struct framing *f) {
  tsim_meta_reset(&r->meta); /* an interim head's headers are not the response's */
  while (p < end) {
    const char *e = find_crlf(p, end);
    struct span name, value, v;
    if (e == NULL) e = end;
    if (!split_line(p, e, &name, &value)) return 0;
    note_framing(f, name, value);
    v = trim(value.p, value.n);
    tsim_meta_note(&r->meta, name.p, name.n, v.p, v.n);
    p = e + 2;
  }
  return 1;
}

/* "HTTP/1.x NNN" then nothing, a space or a CR: 1 with *minor and *status. */
static int status_line(const char *p, const char *end, int *minor, long *status) {
  size_t n = (size_t)(end - p);
  if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') return 0;
  if (p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') return 0;
  if (n > 12 && p[12] != ' ' && p[12] != '\r') return 0;
  *minor = p[7] - '0';
  *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  return 1;
}

/* The body's framing (RFC 9112 6.3) into r->framing and r->left: 1, or 0 (failed). */
static int body_framing(struct tsim_http1 *r, const struct framing *f) {
  size_t i;
  unsigned long long length = 0;
  r->framing = FRAMED_CLOSE;
  if (r->head_method || r->status < 200 || r->status == 204 || r->status == 304) {
    r->framing = FRAMED_NONE;
  } else if (f->te_count > 0) { /* it wins over Content-Length; not chunked last: until close */
    if (span_is(f->te_last, "chunked")) r->framing = FRAMED_CHUNKED;
  } else if (f->cl_count > 0) {
    if (f->cl_differs) {
      fail(r, "broken", "Content-Length is sent twice, with two values");
      return 0;
    }
    for (i = 0; i < f->cl.n && i < 15 && f->cl.p[i] >= '0' && f->cl.p[i] <= '9'; i++) {
      length = length * 10 + (unsigned long long)(f->cl.p[i] - '0'); /* 15 digits: no overflow */
    }
    if (f->cl.n == 0 || f->cl.n > 15 || i < f->cl.n) {
      fail(r, "broken", "Content-Length is not a number of bytes");
      return 0;
    }
    r->framing = FRAMED_LENGTH;
    r->length = length;
  }
  return 1;
}

/* Whether the server lets the connection serve another request (RFC 9112 9.3, 6.1). */
static int keeps_alive(int minor, long status, const struct framing *f) {
  if (status == 101) return 0; /* it switched protocols */
  if (f->te_count > 0 && (f->cl_count > 0 || minor == 0)) return 0;
  if (minor == 0) return f->conn_keep_alive;
  return !f->conn_close;
}

/* ===================================================================== */
/* The steps: each consumes from x and says what next                     */
/* ===================================================================== */

/* The response is whole: the connection reusable when the server allows it
 * and sent nothing beyond this response. */
static enum step finish(struct tsim_http1 *r, const struct input *x) {
  r->reusable = r->keep_alive && r->framing != FRAMED_CLOSE && x->pos == x->n;
  r->state = S_DONE;
  return WHOLE;
}

/* Keeps up to r->left body bytes of x: AGAIN once they are all in, MORE if not. */
static enum step take_left(struct tsim_http1 *r, struct input *x) {
  size_t take = x->n - x->pos < r->left ? x->n - x->pos : r->left;
  if (r->body.len + take > r->max_body) return too_large_body(r);
  if (!keep(r, &r->body, x->in + x->pos, take)) return FAILED;
  x->pos += take;
  r->left -= take;
  return r->left == 0 ? AGAIN : MORE;
}

/* A final head is in: its framing decides the next state. */
static enum step begin_body(struct tsim_http1 *r, struct input *x, const struct framing *f, int minor) {
  if (!body_framing(r, f)) return FAILED;
  if (r->framing == FRAMED_LENGTH && r->length > r->max_body) {
    snprintf(r->why_buf, sizeof r->why_buf, "Content-Length %llu is over max_response_bytes (%zu)", r->length,
             r->max_body);
    return fail(r, "too_large", r->why_buf);
  }
  r->left = (size_t)r->length; /* at most max_body */
  r->keep_alive = keeps_alive(minor, r->status, f);
  r->have_headers = 1;
  if (r->framing == FRAMED_NONE || (r->framing == FRAMED_LENGTH && r->left == 0)) return finish(r, x);
  /* one allocation for a typical answer, not more than 64 KiB on the server's word alone */
  if (r->framing == FRAMED_LENGTH) (void)strbuf_reserve(&r->body, r->left < 65536 ? r->left : 65536);
  r->state = r->framing == FRAMED_CHUNKED ? S_CHUNK_SIZE : r->framing == FRAMED_CLOSE ? S_CLOSE : S_LENGTH;
  return AGAIN;
}

/* A head [p, end) (its empty line not included): interim ones are skipped. */
static enum step one_head(struct tsim_http1 *r, struct input *x, const char *p, const char *end) {
  struct framing f;
  int minor = 0;
  long status = 0;
  memset(&f, 0, sizeof f);
  if (!status_line(p, end, &minor, &status)) {
    return fail(r, "broken", "the response does not start with an HTTP/1.x status line");
  }
  if (!read_headers(r, first_header(p, end), end, &f)) return fail(r, "broken", NOT_A_HEADER);
  if (status < 200 && status != 101) return AGAIN; /* an interim response: the final one follows */
  r->status = status; /* known from here on, for a failure's report too */
  r->head.len = 0;
  if (!keep(r, &r->head, p, (size_t)(end - p))) return FAILED;
  return begin_body(r, x, &f, minor);
}

static enum step head_too_large(struct tsim_http1 *r) {
  snprintf(r->why_buf, sizeof r->why_buf, "the response headers are over %zu bytes", TSIM_HTTP1_MAX_HEAD);
  return fail(r, "too_large", r->why_buf);
}

static enum step step_head(struct tsim_http1 *r, struct input *x) {
  const char *start = x->in + x->pos, *end = x->in + x->n, *from, *e = NULL;
  size_t skip = r->scanned > 3 ? r->scanned - 3 : 0, len;
  for (from = start + skip; from + 4 <= end; from++) {
    from = memchr(from, '\r', (size_t)(end - from));
    if (from == NULL || from + 4 > end) break;
    if (memcmp(from, "\r\n\r\n", 4) == 0) { e = from; break; }
  }
  if (e == NULL) {
    r->scanned = (size_t)(end - start);
    return r->head_bytes + r->scanned > TSIM_HTTP1_MAX_HEAD ? head_too_large(r) : MORE;
  }
  len = (size_t)(e - start) + 4;
  r->head_bytes += len;
  if (r->head_bytes > TSIM_HTTP1_MAX_HEAD) return head_too_large(r);
  x->pos += len;
  r->scanned = 0;
  return one_head(r, x, start, e);
}

static enum step step_length(struct tsim_http1 *r, struct input *x) {
  enum step s = take_left(r, x);
  return s == AGAIN ? finish(r, x) : s;
}

static enum step step_close(struct tsim_http1 *r, struct input *x) {
  if (r->body.len + (x->n - x->pos) > r->max_body) return too_large_body(r);
  if (!keep(r, &r->body, x->in + x->pos, x->n - x->pos)) return FAILED;
  x->pos = x->n;
  return MORE;
}

/* Counts n bytes of a chunked body's framing (size lines, CRLFs) against max_body. */
static int spend(struct tsim_http1 *r, size_t n) {
  r->framing_bytes += n;
  return r->framing_bytes <= r->max_body;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A chunk's size line: hexadecimal digits, then nothing, white space or ";" and extensions (ignored). */
static enum step step_chunk_size(struct tsim_http1 *r, struct input *x) {
  const char *p = x->in + x->pos, *end = x->in + x->n, *e = find_crlf(p, end), *c = p;
  unsigned long long size = 0;
  /* counted with its CRLF, so a line cut between CR and LF is not over when it is whole */
  if ((size_t)((e ? e + 2 : end) - p) > MAX_CHUNK_LINE + 2) return fail(r, "broken", "a chunk's size line is too long");
  if (e == NULL) return MORE;
  for (; c < e && hex_value(*c) >= 0 && c - p <= 12; c++) size = size * 16 + (unsigned long long)hex_value(*c);
  if (c == p || c - p > 12) return fail(r, "broken", "a chunk's size is not a hexadecimal number");
  while (c < e && is_blank(*c)) c++;
  if (c < e && *c != ';') return fail(r, "broken", "a chunk's size is not a hexadecimal number");
  if (!spend(r, (size_t)(e - p) + 2)) return too_large_body(r);
  x->pos += (size_t)(e - p) + 2;
  if (size == 0) {
    r->state = S_TRAILERS;
    r->trailer_bytes = r->scanned = 0;
  } else {
    r->state = S_CHUNK_DATA;
    r->left = size > SIZE_MAX ? SIZE_MAX : (size_t)size; /* over max_body: fails as its bytes arrive */
  }
  return AGAIN;
}

static enum step step_chunk_data(struct tsim_http1 *r, struct input *x) {
  enum step s = take_left(r, x);
  if (s == AGAIN) r->state = S_CHUNK_END;
  return s;
}

static enum step step_chunk_end(struct tsim_http1 *r, struct input *x) {
  size_t have = x->n - x->pos;
  const char *p = x->in + x->pos;
  if (have == 0 || (have == 1 && p[0] == '\r')) return MORE;
  if (p[0] != '\r' || p[1] != '\n') return fail(r, "broken", "a chunk does not end with CRLF");
  if (!spend(r, 2)) return too_large_body(r);
  x->pos += 2;
  r->state = S_CHUNK_SIZE;
  return AGAIN;
}

/* After the last chunk: trailer lines (ignored) up to an empty line, all of
 * them within TSIM_HTTP1_MAX_HEAD. A partial line is searched from where the
 * last search stopped, and counted by the least it will be once whole, so
 * the cuts never change the verdict (a lone CR may be the empty line's). */
static enum step step_trailers(struct tsim_http1 *r, struct input *x) {
  const char *p = x->in + x->pos, *end = x->in + x->n;
  const char *e = find_crlf(p + (r->scanned > 0 ? r->scanned - 1 : 0), end);
  size_t have = (size_t)(end - p), line;
  if (e == NULL) {
    r->scanned = have;
    if (have > 0 && !(have == 1 && *p == '\r')) {
      size_t least = have + (end[-1] == '\r' ? 1 : 2); /* the line once whole, its CRLF included */
      if (r->trailer_bytes + least > TSIM_HTTP1_MAX_HEAD) return fail(r, "broken", "the trailers are too long");
    }
    return MORE;
  }
  r->scanned = 0;
  line = (size_t)(e - p) + 2;
  x->pos += line;
  if (e == p) return finish(r, x);
  if (r->trailer_bytes + line > TSIM_HTTP1_MAX_HEAD) return fail(r, "broken", "the trailers are too long");
  r->trailer_bytes += line;
  return AGAIN;
}

static enum step step(struct tsim_http1 *r, struct input *x) {
  switch (r->state) {
    case S_HEAD: return step_head(r, x);
    case S_LENGTH: return step_length(r, x);
    case S_CLOSE: return step_close(r, x);
    case S_CHUNK_SIZE: return step_chunk_size(r, x);
    case S_CHUNK_DATA: return step_chunk_data(r, x);
    case S_CHUNK_END: return step_chunk_end(r, x);
    case S_TRAILERS: return step_trailers(r, x);
    default: return fail(r, "broken", "bytes after the response");
  }
}

/* ===================================================================== */
/* The Lua face                                                           */
/* ===================================================================== */

static struct tsim_http1 *check_reader(lua_State *L) {
  return (struct tsim_http1 *)luaL_checkudata(L, 1, READER_MT);
}

/* true | false | nil, failure, why, from a step's outcome. */
static int push_outcome(lua_State *L, struct tsim_http1 *r, enum step s) {
  if (s == FAILED) {
    r->state = S_DONE;
    lua_pushnil(L);
    lua_pushstring(L, r->failure);
    lua_pushstring(L, r->why);
    return 3;
  }
  lua_pushboolean(L, s == WHOLE);
  return 1;
}

/* Keeps x's unconsumed bytes in pend (they may be pend's own): MORE, or FAILED. */
static enum step keep_rest(struct tsim_http1 *r, const struct input *x) {
  size_t rest = x->n - x->pos;
  if (x->in == r->pend.data) {
    if (x->pos > 0 && rest > 0) memmove(r->pend.data, r->pend.data + x->pos, rest);
    r->pend.len = rest;
    return MORE;
  }
  return keep(r, &r->pend, x->in + x->pos, rest) ? MORE : FAILED;
}

/* r:feed(piece): the next piece of the response. */
static int reader_feed(lua_State *L) {
  struct tsim_http1 *r = check_reader(L);
  struct input x;
  size_t n;
  const char *piece = luaL_checklstring(L, 2, &n);
  enum step s = MORE;
  if (r->state == S_DONE) { /* r.body and the rest stay as they were */
    lua_pushnil(L);
    lua_pushliteral(L, "broken");
    lua_pushliteral(L, "bytes after the response");
    return 3;
  }
  if (r->pend.len > 0) { /* what is left of the last piece, and this one */
    if (!keep(r, &r->pend, piece, n)) return push_outcome(L, r, FAILED);
    piece = r->pend.data;
    n = r->pend.len;
  }
  x.in = piece;
  x.pos = 0;
  x.n = n;
  do { s = step(r, &x); } while (s == AGAIN);
  if (s == MORE) s = keep_rest(r, &x);
  else r->pend.len = 0;
  return push_outcome(L, r, s);
}

/* r:closed(): the server closed the connection: the end of a body "until close", else a response cut short. */
static int reader_closed(lua_State *L) {
  struct tsim_http1 *r = check_reader(L);
  struct input x = {NULL, 0, 0};
  if (r->state == S_CLOSE) return push_outcome(L, r, finish(r, &x));
  if (r->state == S_DONE) return push_outcome(L, r, WHOLE);
  if (r->status != 0) {
    snprintf(r->why_buf, sizeof r->why_buf, "the response body was cut short (HTTP %ld, the connection closed)",
             r->status);
    return push_outcome(L, r, fail(r, "broken", r->why_buf));
  }
  return push_outcome(L, r, fail(r, "broken", "the connection closed before a whole response head arrived"));
}

/* headers[name] = value, or a list of the values when the name comes again. */
static void add_header(lua_State *L, int t, struct span name, struct span value) {
  lua_pushlstring(L, name.p, name.n);
  lua_pushvalue(L, -1);
  lua_rawget(L, t);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushlstring(L, value.p, value.n);
    lua_rawset(L, t);
    return;
  }
  if (!lua_istable(L, -1)) { /* the second value: {first, second} */
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, t);
  }
  lua_pushlstring(L, value.p, value.n);
  lua_rawseti(L, -2, (compat_index)compat_rawlen(L, -2) + 1);
  lua_pop(L, 2);
}

/* r.headers: a new table of the final head's headers (checked when it came in). */
static void push_headers(lua_State *L, const struct tsim_http1 *r) {
  const char *p = r->head.data, *end = r->head.data + r->head.len;
  int t;
  lua_createtable(L, 0, 8);
  t = lua_gettop(L);
  if (r->status == 0) return;
  for (p = first_header(p, end); p < end;) {
    const char *e = find_crlf(p, end);
    struct span name, value;
    if (e == NULL) e = end;
    if (split_line(p, e, &name, &value)) add_header(L, t, name, value);
    p = e + 2;
  }
}

static int reader_index(lua_State *L) {
  struct tsim_http1 *r = check_reader(L);
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
  int whole = r->state == S_DONE && r->failure == NULL;
  if (strcmp(k, "feed") == 0) lua_pushvalue(L, lua_upvalueindex(1)); /* made once: no closure per lookup */
  else if (strcmp(k, "closed") == 0) lua_pushvalue(L, lua_upvalueindex(2));
  else if (strcmp(k, "status") == 0 && r->status != 0) lua_pushinteger(L, (lua_Integer)r->status);
  else if (strcmp(k, "headers") == 0 && r->have_headers) push_headers(L, r);
  else if (strcmp(k, "body") == 0 && whole) lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
  else if (strcmp(k, "reusable") == 0 && whole) lua_pushboolean(L, r->reusable);
  else lua_pushnil(L);
  return 1;
}

static int reader_gc(lua_State *L) {
  struct tsim_http1 *r = check_reader(L);
  strbuf_free(&r->pend);
  strbuf_free(&r->head);
  strbuf_free(&r->body);
  return 0;
}

static int reader_tostring(lua_State *L) {
  struct tsim_http1 *r = check_reader(L);
  lua_pushfstring(L, "telnyx.sim.http1 response (status %d, %d body bytes)", (int)r->status, (int)r->body.len);
  return 1;
}

/* sim.http1_response(method, max_body_bytes) -> a reader. */
int tsim_http1_response(lua_State *L) {
  const char *method = luaL_checkstring(L, 1);
  lua_Number max = luaL_checknumber(L, 2);
  struct tsim_http1 *r;
  luaL_argcheck(L, max >= 0 && max <= 1073741824.0, 2, "max_body_bytes must be from 0 to 2^30");
  r = (struct tsim_http1 *)lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  r->state = S_HEAD;
  r->head_method = strcmp(method, "HEAD") == 0;
  r->max_body = (size_t)max;
  tsim_meta_reset(&r->meta);
  if (luaL_newmetatable(L, READER_MT)) {
    lua_pushcfunction(L, reader_feed);
    lua_pushcfunction(L, reader_closed);
    lua_pushcclosure(L, reader_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, reader_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, reader_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
  return 1;
}

int tsim_http1_whole(lua_State *L, int idx, long *status, struct response_meta *meta, const char **body,
                     size_t *body_len) {
  struct tsim_http1 *r = (struct tsim_http1 *)lua_touserdata(L, idx);
  int same;
  if (r == NULL || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, READER_MT);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same || r->state != S_DONE || r->failure != NULL) return 0;
  *status = r->status;
  *meta = r->meta;
  *body = r->body.data ? r->body.data : "";
  *body_len = r->body.len;
  return 1;
}
