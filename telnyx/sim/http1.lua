--- telnyx.sim.http1: HTTP/1.1 on the wire, without I/O.
--
-- The bytes of a request, and a response read from whatever pieces a socket
-- gives: the status line, the headers, and a body framed by Content-Length,
-- by chunks or by the connection's close, with a limit on each. The cosocket
-- transport (telnyx.sim.resty) moves the bytes; this says what they mean.
-- Plain Lua (5.1-5.4, LuaJIT): its spec runs without nginx.
--
--   local bytes = http1.request(method, target, host, headers, body)  -- one string, for one sock:send
--   local r = http1.response(method, max_body_bytes)
--   r:feed(piece)  -> true (whole: r.status, r.headers, r.body, r.reusable) | false (more, please)
--                   | nil, failure, message   (failure: "broken" or "too_large")
--   r:closed()     -> the same, when the server closed the connection (a body "until close" ends there)
--
-- r.status is set as soon as the status line is in. r.headers has the names
-- as the server sent them; a name sent twice has a list of its values.

local http1 = {}

local find, sub, byte, lower, match = string.find, string.sub, string.byte, string.lower, string.match
local concat = table.concat

http1.MAX_HEAD_BYTES = 100 * 1024 -- a response's status line and headers (libcurl's limit for one header)
local MAX_CHUNK_LINE = 1024       -- a chunk's size line, extensions included
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
-- The response: a small state machine fed with pieces
---------------------------------------------------------------------------

local Response = {}
Response.__index = Response

--- A reader for the response to a `method` request, its body at most max_body bytes.
function http1.response(method, max_body)
  return setmetatable({ method = method, max_body = max_body, state = "head", buf = "", parts = {}, got = 0 },
    Response)
end

local function broken(message) return nil, "broken", message end

-- Plain finds and byte tests below, not Lua patterns: a pattern's character
-- class is matched a character at a time in C that LuaJIT cannot compile
-- (measured: most of the parsing cost of a response).
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

-- The tokens of a comma-separated header value (or a list of them), in lower case, in order.
local function tokens(value)
  if type(value) == "table" then value = concat(value, ",") end
  value = lower(value)
  local list, pos = {}, 1
  while pos <= #value + 1 do
    local comma = find(value, ",", pos, true) or #value + 1
    local t = trim(sub(value, pos, comma - 1))
    if t ~= "" then list[#list + 1] = t end
    pos = comma + 1
  end
  return list
end

local function has_token(value, token)
  for _, t in ipairs(tokens(value)) do if t == token then return true end end
  return false
end

-- Adds a header's value to t[name]: a string, or a list when sent twice.
local function add(t, name, value)
  local had = t[name]
  if had == nil then
    t[name] = value
  elseif type(had) == "table" then
    had[#had + 1] = value
  else
    t[name] = { had, value }
  end
end

-- The names the framing reads, by their length (a cheap test before lower()).
local FRAMING = { [14] = "content-length", [17] = "transfer-encoding", [10] = "connection" }

-- The headers of a head (the lines after the status line) -> headers, and the
-- framing ones by their lower-case names | nil, why. Each line is found by a
-- plain find, so a hostile head costs linear time.
local function parse_headers(head, pos)
  local headers, framing_headers, last = {}, {}, #head
  while pos <= last do
    local e = find(head, "\r\n", pos, true) or last + 1
    local colon = find(head, ":", pos, true)
    if not colon or colon >= e or colon == pos then return nil, "a header line is not 'name: value'" end
    local v = colon + 1 -- the value, after the white space that may lead it
    while byte(head, v) == SPACE or byte(head, v) == TAB do v = v + 1 end
    local name, value = sub(head, pos, colon - 1), sub(head, v, e - 1)
    -- no white space in a name (a line starting with it is obsolete folding), no bare CR or LF anywhere
    if find(name, " ", 1, true) or find(name, "\t", 1, true) or find(value, "\r", 1, true)
      or find(value, "\n", 1, true) or find(name, "\n", 1, true) or find(name, "\r", 1, true) then
      return nil, "a header line is not 'name: value'"
    end
    add(headers, name, value)
    local f = FRAMING[#name]
    if f and lower(name) == f then add(framing_headers, f, value) end
    pos = e + 2
  end
  return headers, framing_headers
end

-- The body's framing (RFC 9112 6.3) -> "none" | "chunked" | "close" | a length; or nil, why.
local function framing(method, status, f)
  if method == "HEAD" or status < 200 or status == 204 or status == 304 then return "none" end
  local te = f["transfer-encoding"]
  if te then -- it wins over Content-Length; a body not chunked last ends with the connection
    local list = tokens(te)
    return list[#list] == "chunked" and "chunked" or "close"
  end
  local cl = f["content-length"]
  if cl == nil then return "close" end
  if type(cl) == "table" then -- sent twice: only when every copy says the same
    for i = 2, #cl do if cl[i] ~= cl[1] then return nil, "Content-Length is sent twice, with two values" end end
    cl = cl[1]
  end
  cl = trim(cl)
  if #cl == 0 or #cl > 15 or find(cl, "%D") then return nil, "Content-Length is not a number of bytes" end
  return tonumber(cl)
end

-- Adds body bytes, within max_body.
local function keep(self, bytes)
  if bytes == "" then return true end
  self.got = self.got + #bytes
  if self.got > self.max_body then
    return nil, "too_large", "the response body is over max_response_bytes (" .. self.max_body .. ")"
  end
  self.parts[#self.parts + 1] = bytes
  return true
end

-- The response is whole: the body joined; the connection reusable when the
-- server allows it and sent nothing beyond this response.
local function finish(self, rest)
  local parts = self.parts
  self.body = #parts == 1 and parts[1] or concat(parts)
  self.parts, self.buf, self.state = nil, nil, "done"
  self.reusable = self.keep_alive and self.length ~= "close" and rest == ""
  return true
end

local step = {} -- step[state](self) -> true (whole) | false (more bytes needed) | "again" | nil, failure, why

function step.head(self)
  local buf = self.buf
  local e = find(buf, "\r\n\r\n", 1, true)
  if not e then
    if #buf > http1.MAX_HEAD_BYTES then
      return nil, "too_large", "the response headers are over " .. http1.MAX_HEAD_BYTES .. " bytes"
    end
    return false
  end
  if e > http1.MAX_HEAD_BYTES then
    return nil, "too_large", "the response headers are over " .. http1.MAX_HEAD_BYTES .. " bytes"
  end
  local head, rest = sub(buf, 1, e - 1), sub(buf, e + 4)
  local minor, status, after = match(head, "^HTTP/1%.([01]) ([1-9]%d%d)(.?)")
  if not status or (after ~= "" and after ~= " " and after ~= "\r") then
    return broken("the response does not start with an HTTP/1.x status line")
  end
  status = tonumber(status)
  local line_end = find(head, "\r\n", 1, true)
  local headers, f = parse_headers(head, line_end and line_end + 2 or #head + 1)
  if not headers then return broken(f) end
  if status >= 100 and status < 200 and status ~= 101 then -- an interim response: the final one follows
    self.buf = rest
    return "again"
  end
  self.status = status -- known from here on, for a failure's report too
  local length, why = framing(self.method, status, f)
  if not length then return broken(why) end
  if type(length) == "number" and length > self.max_body then
    return nil, "too_large", "Content-Length " .. length .. " is over max_response_bytes (" .. self.max_body .. ")"
  end
  local connection = f.connection
  if minor == "0" then
    self.keep_alive = connection ~= nil and has_token(connection, "keep-alive")
  else
    self.keep_alive = not (connection ~= nil and has_token(connection, "close"))
  end
  self.headers, self.length, self.buf = headers, length, rest
  if length == "none" or length == 0 then return finish(self, rest) end
  self.state = length == "chunked" and "chunk_size" or length == "close" and "close" or "length"
  self.left = type(length) == "number" and length or nil
  return "again"
end

function step.length(self)
  local buf, left = self.buf, self.left
  local ok, failure, why
  if #buf < left then
    self.left, self.buf = left - #buf, ""
    ok, failure, why = keep(self, buf)
    if not ok then return nil, failure, why end
    return false
  end
  ok, failure, why = keep(self, #buf == left and buf or sub(buf, 1, left))
  if not ok then return nil, failure, why end
  return finish(self, sub(buf, left + 1))
end

function step.close(self)
  local buf = self.buf
  self.buf = ""
  local ok, failure, why = keep(self, buf)
  if not ok then return nil, failure, why end
  return false
end

function step.chunk_size(self)
  local buf = self.buf
  local e = find(buf, "\r\n", 1, true)
  if not e then
    if #buf > MAX_CHUNK_LINE then return broken("a chunk's size line is too long") end
    return false
  end
  local hex = match(sub(buf, 1, e - 1), "^(%x+)[ \t]*;?")
  if not hex or #hex > 12 then return broken("a chunk's size is not a hexadecimal number") end
  local size = tonumber(hex, 16)
  self.buf = sub(buf, e + 2)
  if size == 0 then
    self.state, self.trailer_bytes = "trailers", 0
  else
    self.state, self.left = "chunk_data", size
  end
  return "again"
end

function step.chunk_data(self)
  local buf, left = self.buf, self.left
  local take = #buf < left and buf or sub(buf, 1, left)
  local ok, failure, why = keep(self, take)
  if not ok then return nil, failure, why end
  self.left, self.buf = left - #take, sub(buf, #take + 1)
  if self.left > 0 then return false end
  self.state = "chunk_end"
  return "again"
end

function step.chunk_end(self)
  local buf = self.buf
  if #buf < 2 and (buf == "" or byte(buf) == 13) then return false end
  if sub(buf, 1, 2) ~= "\r\n" then return broken("a chunk does not end with CRLF") end
  self.buf, self.state = sub(buf, 3), "chunk_size"
  return "again"
end

-- After the last chunk: trailer lines (ignored) up to an empty line.
function step.trailers(self)
  local buf = self.buf
  local e = find(buf, "\r\n", 1, true)
  if not e then
    if self.trailer_bytes + #buf > http1.MAX_HEAD_BYTES then return broken("the trailers are too long") end
    return false
  end
  self.buf = sub(buf, e + 2)
  if e == 1 then return finish(self, self.buf) end
  self.trailer_bytes = self.trailer_bytes + e + 1
  return "again"
end

--- Takes the next piece of the response.
function Response:feed(piece)
  if self.state == "done" then return broken("bytes after the response") end
  self.buf = self.buf == "" and piece or self.buf .. piece
  while true do
    local r, failure, why = step[self.state](self)
    if r ~= "again" then
      if r == nil then self.state = "done" end
      return r, failure, why
    end
  end
end

--- The server closed the connection: the end of a body "until close", else a response cut short.
function Response:closed()
  if self.state == "close" then return finish(self, "") end
  if self.state == "done" then return true end
  self.state = "done"
  if self.status then
    return broken("the response body was cut short (HTTP " .. self.status .. ", the connection closed)")
  end
  return broken("the connection closed before a whole response head arrived")
end

return http1
