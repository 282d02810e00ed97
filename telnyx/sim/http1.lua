--- telnyx.sim.http1: HTTP/1.1 on the wire, without I/O.
--
-- The bytes of a request, and a response read from whatever pieces a socket
-- gives: the status line, the headers, and a body framed by Content-Length,
-- by chunks or by the connection's close, with a limit on each. The cosocket
-- transport (telnyx.sim.resty) moves the bytes; this says what they mean.
-- The request is built here; the response is read by the C module
-- (src/http1.c). Runs in any Lua the module does: its spec runs without nginx.
--
--   local bytes = http1.request(method, target, host, headers, body)  -- one string, for one sock:send
--   local r = http1.response(method, max_body_bytes)
--   r:feed(piece)  -> true (whole: r.status, r.headers, r.body, r.reusable) | false (more, please)
--                   | nil, failure, message   (failure: "broken" or "too_large")
--   r:closed()     -> the same, when the server closed the connection (a body "until close" ends there)
--
-- r.status is set as soon as the final head is in. r.headers (a new table at
-- each read) has the names as the server sent them; a name sent twice has a
-- list of its values. r.body and r.reusable are there once the response is whole.

local http1 = {}

local sim = require "telnyx.sim"

local sub, byte = string.sub, string.byte
local concat = table.concat

-- A response's status line and headers, interim heads included (libcurl's limit for one header);
-- src/http1.c's TSIM_HTTP1_MAX_HEAD, for reading only.
http1.MAX_HEAD_BYTES = 100 * 1024
local BODY_METHODS = { POST = true, PUT = true, PATCH = true } -- Content-Length: 0 when they have no body

--- The bytes of a request: the request line, Host, the headers, the body's
-- length and the body, as one string (given a table, ngx_lua's send walks it
-- twice through the C API, which costs more than this concat).
-- `headers` comes from client:request: names and values already checked.
function http1.request(method, target, host, headers, body)
  local out = { method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n" }
  local n = 6
  for name, value in pairs(headers) do
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = name, ": ", value, "\r\n"
    n = n + 4
  end
  if body then
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = "Content-Length: ", tostring(#body), "\r\n\r\n", body
  elseif BODY_METHODS[method] then
    out[n + 1] = "Content-Length: 0\r\n\r\n"
  else
    out[n + 1] = "\r\n"
  end
  return concat(out)
end

---------------------------------------------------------------------------
-- The response: read in C (src/http1.c), fed with pieces
---------------------------------------------------------------------------

--- A reader for the response to a `method` request, its body at most max_body bytes:
-- r:feed(piece), r:closed(), r.status, r.headers, r.body, r.reusable (see the top).
-- client:interpret takes it whole as reply.response: its headers and body are
-- read where they are, never made into Lua values (in Lua, reading a response
-- was most of what the cosocket transport cost per call).
http1.response = sim.http1_response

local RESPONSE_MT = getmetatable(sim.http1_response("GET", 0))

--- Whether v is a reader made by http1.response.
function http1.is_response(v)
  return type(v) == "userdata" and getmetatable(v) == RESPONSE_MT
end

local SPACE, TAB = 32, 9

--- s without the spaces and tabs around it, in linear time (a pattern such as
-- "^[ \t]*(.-)[ \t]*$" takes quadratic time on a value of many spaces).
local function trim(s)
  local i, j = 1, #s
  while i <= j and (byte(s, i) == SPACE or byte(s, i) == TAB) do i = i + 1 end
  while j >= i and (byte(s, j) == SPACE or byte(s, j) == TAB) do j = j - 1 end
  return (i == 1 and j == #s) and s or sub(s, i, j)
end
http1.trim = trim

return http1
