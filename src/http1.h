/*
 * http1.h -- an HTTP/1.1 response read from whatever pieces a socket gives,
 * without I/O: the status line, the headers (the few the rules read noted as
 * they go by), and a body framed by Content-Length, by chunks or by the
 * connection's close, with a limit on each. The cosocket transport
 * (telnyx/sim/resty.lua) moves the bytes; client:interpret takes the reader
 * itself, so neither the headers nor the body become Lua values on the way.
 *
 * Lua (telnyx.sim.http1 is the documented face of it):
 *   local r = sim.http1_response(method, max_body_bytes)
 *   r:feed(piece) -> true (whole) | false (more, please) | nil, failure, why
 *                    (failure: "broken" or "too_large")
 *   r:closed()    -> the same, when the server closed the connection
 *   r.status      the final status, once its head is in (nil before)
 *   r.headers     a new table per read: the names as sent, a name sent twice a list of its values
 *   r.body        the body, once whole
 *   r.reusable    once whole: the server lets the connection serve another request
 */
#ifndef TSIM_HTTP1_H
#define TSIM_HTTP1_H

#include <stddef.h>

#include "lua.h"
#include "core.h"

/* A response's status line and headers, interim heads included (libcurl's limit for one header);
 * its trailers as much again. The fuzz build makes it small enough to reach. */
#ifndef TSIM_HTTP1_MAX_HEAD
#define TSIM_HTTP1_MAX_HEAD ((size_t)100 * 1024)
#endif

struct tsim_http1;

/* sim.http1_response(method, max_body_bytes) -> a new reader (lua_CFunction). */
int tsim_http1_response(lua_State *L);

/* The reader at idx when it holds a whole response, with its status, the
 * headers the rules read and its body (valid while the reader is); else 0. */
int tsim_http1_whole(lua_State *L, int idx, long *status, struct response_meta *meta, const char **body,
                     size_t *body_len);

#endif
