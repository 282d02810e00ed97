-- A server that trickles a TLS handshake: it takes the client's hello, then
-- answers with the header of a 16 KiB handshake record and one byte of it
-- every INTERVAL seconds, so the client's TLS library keeps waiting for more
-- and every byte is a read event. For the spec that an attempt's deadline
-- holds through the TLS handshake (openresty_cosocket_spec.lua).
--
--   lua5.4 spec/support/tls_trickle.lua PORT_FILE INTERVAL DURATION
--
-- Writes its port to PORT_FILE once listening; serves one connection at a
-- time; exits after DURATION seconds whatever happens.

local socket = require "socket"

local port_file, interval, duration = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(port_file and interval and duration, "usage: tls_trickle.lua PORT_FILE INTERVAL DURATION")
local stop_at = socket.gettime() + duration

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local f = assert(io.open(port_file, "w"))
f:write(port, "\n")
f:close()

local RECORD_HEADER = "\22\3\3\64\0" -- handshake record, TLS 1.2, 16384 bytes to follow

while socket.gettime() < stop_at do
  server:settimeout(math.max(0.01, stop_at - socket.gettime()))
  local conn = server:accept()
  if conn then
    conn:settimeout(1)
    conn:receive(5) -- the start of the client's hello; the rest can stay unread
    conn:settimeout(interval)
    local ok = conn:send(RECORD_HEADER)
    while ok and socket.gettime() < stop_at do
      socket.sleep(interval)
      ok = conn:send("\0")
    end
    conn:close()
  end
end
server:close()
