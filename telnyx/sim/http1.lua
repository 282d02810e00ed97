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
  return setmetatable({ method = method, max_body = max_body, state = "head", buf = "", pos = 1, parts = {},
    got = 0, framing = 0, scanned = 0, head_bytes = 0 }, Response)
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
    for i = 2, #cl do
      if trim(cl[i]) ~= trim(cl[1]) then return nil, "Content-Length is sent twice, with two values" end
    end
    cl = cl[1]
  end
  cl = trim(cl)
  if #cl == 0 or #cl > 15 or find(cl, "%D") then return nil, "Content-Length is not a number of bytes" end
  return tonumber(cl)
end

-- The parser keeps the bytes not yet consumed in self.buf from self.pos on:
-- a step moves pos, and feed cuts the buffer once per piece, so a piece of
-- many small chunks costs linear time. The body may have max_body bytes, and
-- a chunked body's framing as many again: the bytes on the wire are bounded too.

local function too_large(self)
  return nil, "too_large", "the response body is over max_response_bytes (" .. self.max_body .. ")"
end

-- Counts n bytes of a chunked body's framing (size lines, CRLFs) against max_body.
local function spend(self, n)
  self.framing = self.framing + n
  return self.framing <= self.max_body
end

-- Keeps buf[i..j] as body bytes.
local function keep(self, i, j)
  if j < i then return true end
  self.got = self.got + j - i + 1
  if self.got > self.max_body then return too_large(self) end
  local buf = self.buf
  self.parts[#self.parts + 1] = (i == 1 and j == #buf) and buf or sub(buf, i, j)
  return true
end

-- The response is whole: the body joined; the connection reusable when the
-- server allows it and sent nothing beyond this response.
local function finish(self)
  local parts = self.parts
  self.body = #parts == 1 and parts[1] or concat(parts)
  self.reusable = self.keep_alive and self.length ~= "close" and self.pos > #self.buf
  self.parts, self.buf, self.state = nil, nil, "done"
  return true
end

-- Whether the server lets the connection serve another request after this response.
local function keeps_alive(minor, status, f)
  if status == 101 then return false end -- it switched protocols
  if f["transfer-encoding"] and (f["content-length"] or minor == "0") then return false end -- RFC 9112 6.1, 6.3
  local connection = f.connection
  if minor == "0" then return connection ~= nil and has_token(connection, "keep-alive") end
  return not (connection ~= nil and has_token(connection, "close"))
end

local step = {} -- step[state](self) -> true (whole) | false (more bytes needed) | "again" | nil, failure, why

-- The status line and headers; interim (1xx) heads are skipped, and every head
-- counts toward MAX_HEAD_BYTES, so endless interim responses end too.
function step.head(self)
  local buf, pos, max = self.buf, self.pos, http1.MAX_HEAD_BYTES
  local e = find(buf, "\r\n\r\n", pos + (self.scanned > 3 and self.scanned - 3 or 0), true)
  if not e then
    self.scanned = #buf - pos + 1
    if self.head_bytes + self.scanned > max then
      return nil, "too_large", "the response headers are over " .. max .. " bytes"
    end
    return false
  end
  self.head_bytes = self.head_bytes + e + 4 - pos
  if self.head_bytes > max then return nil, "too_large", "the response headers are over " .. max .. " bytes" end
  local head = sub(buf, pos, e - 1)
  self.pos, self.scanned = e + 4, 0
  local minor, status, after = match(head, "^HTTP/1%.([01]) ([1-9]%d%d)(.?)")
  if not status or (after ~= "" and after ~= " " and after ~= "\r") then
    return broken("the response does not start with an HTTP/1.x status line")
  end
  status = tonumber(status)
  local line_end = find(head, "\r\n", 1, true)
  local headers, f = parse_headers(head, line_end and line_end + 2 or #head + 1)
  if not headers then return broken(f) end
  if status < 200 and status ~= 101 then return "again" end -- an interim response: the final one follows
  self.status = status -- known from here on, for a failure's report too
  local length, why = framing(self.method, status, f)
  if not length then return broken(why) end
  if type(length) == "number" and length > self.max_body then
    return nil, "too_large", "Content-Length " .. length .. " is over max_response_bytes (" .. self.max_body .. ")"
  end
  self.headers, self.length, self.keep_alive = headers, length, keeps_alive(minor, status, f)
  if length == "none" or length == 0 then return finish(self) end
  self.state = length == "chunked" and "chunk_size" or length == "close" and "close" or "length"
  self.left = type(length) == "number" and length or nil
  return "again"
end

-- Keeps what the buffer has of the self.left body bytes still to come:
-- true once they are all in, false when more are needed, or a failure.
local function take_left(self)
  local pos, left = self.pos, self.left
  local take = math.min(#self.buf - pos + 1, left)
  local ok, failure, why = keep(self, pos, pos + take - 1)
  if not ok then return nil, failure, why end
  self.pos, self.left = pos + take, left - take
  return self.left == 0
end

function step.length(self)
  local all, failure, why = take_left(self)
  if not all then return all, failure, why end
  return finish(self)
end

function step.close(self)
  local ok, failure, why = keep(self, self.pos, #self.buf)
  if not ok then return nil, failure, why end
  self.pos = #self.buf + 1
  return false
end

local HEX = {} -- byte -> its value as a hexadecimal digit
for i = 0, 9 do HEX[48 + i] = i end
for i = 0, 5 do HEX[65 + i], HEX[97 + i] = 10 + i, 10 + i end

-- A chunk's size line: hexadecimal digits, then nothing, white space or ";" and extensions (ignored).
function step.chunk_size(self)
  local buf, pos = self.buf, self.pos
  local e = find(buf, "\r\n", pos, true)
  if (e or #buf + 1) - pos > MAX_CHUNK_LINE then return broken("a chunk's size line is too long") end
  if not e then return false end
  local size, i = 0, pos
  while i < e and HEX[byte(buf, i)] do
    size, i = size * 16 + HEX[byte(buf, i)], i + 1
  end
  local digits = i - pos
  while i < e and (byte(buf, i) == SPACE or byte(buf, i) == TAB) do i = i + 1 end
  if digits == 0 or digits > 12 or (i < e and byte(buf, i) ~= 59) then -- 59: ";"
    return broken("a chunk's size is not a hexadecimal number")
  end
  if not spend(self, e + 2 - pos) then return too_large(self) end
  self.pos = e + 2
  if size == 0 then
    self.state, self.trailer_bytes = "trailers", 0
  else
    self.state, self.left = "chunk_data", size
  end
  return "again"
end

function step.chunk_data(self)
  local all, failure, why = take_left(self)
  if not all then return all, failure, why end
  self.state = "chunk_end"
  return "again"
end

function step.chunk_end(self)
  local buf, pos = self.buf, self.pos
  local a, b = byte(buf, pos, pos + 1)
  if a == nil or (a == 13 and b == nil) then return false end
  if a ~= 13 or b ~= 10 then return broken("a chunk does not end with CRLF") end
  if not spend(self, 2) then return too_large(self) end
  self.pos, self.state = pos + 2, "chunk_size"
  return "again"
end

-- After the last chunk: trailer lines (ignored) up to an empty line.
function step.trailers(self)
  local buf, pos = self.buf, self.pos
  local e = find(buf, "\r\n", pos, true)
  if not e then
    if self.trailer_bytes + #buf - pos + 1 > http1.MAX_HEAD_BYTES then return broken("the trailers are too long") end
    return false
  end
  self.pos = e + 2
  if e == pos then return finish(self) end
  self.trailer_bytes = self.trailer_bytes + e + 2 - pos
  return "again"
end

--- Takes the next piece of the response.
function Response:feed(piece)
  if self.state == "done" then return broken("bytes after the response") end
  local buf, pos = self.buf, self.pos
  if pos > #buf then
    self.buf = piece
  else -- what is left of the last piece, and this one: one copy per piece
    self.buf = (pos == 1 and buf or sub(buf, pos)) .. piece
  end
  self.pos = 1
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
  if self.state == "close" then return finish(self) end
  if self.state == "done" then return true end
  self.state = "done"
  if self.status then
    return broken("the response body was cut short (HTTP " .. self.status .. ", the connection closed)")
  end
  return broken("the connection closed before a whole response head arrived")
end

return http1
