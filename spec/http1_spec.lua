-- telnyx.sim.http1: the HTTP/1.1 bytes of the cosocket transport, without nginx.
-- Every response is read whole, a byte at a time and in pieces of 7 bytes:
-- the outcome may not depend on how the socket cut it.

local http1 = require "telnyx.sim.http1"

local CUTS = { false, 1, 7 }

-- Feeds `bytes` cut into pieces of `size` (false: whole), then the close when `close` is set.
-- -> done, failure, why, r, pieces fed
local function read(bytes, opts)
  opts = opts or {}
  local r = http1.response(opts.method or "GET", opts.max or 1024 * 1024)
  local size = opts.size or #bytes
  local done, failure, why = false, nil, nil
  local i, fed = 1, 0
  while i <= #bytes do
    done, failure, why = r:feed(bytes:sub(i, i + size - 1))
    fed, i = fed + 1, i + size
    if done ~= false then break end
  end
  if done == false and opts.close then done, failure, why = r:closed() end
  return done, failure, why, r, fed
end

-- The same checks for every cut of the bytes.
local function each_cut(bytes, opts, check)
  for _, size in ipairs(CUTS) do
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.size = size or nil
    check(read(bytes, o))
  end
end

local function response(head_lines, body)
  return table.concat(head_lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

describe("telnyx.sim.http1", function()
  describe("request", function()
    local bytes = http1.request

    it("a POST: request line, Host, the headers, its length, the body", function()
      local b = bytes("POST", "/v2/actions/purchase/esims", "api.telnyx.com",
        { Authorization = "Bearer K" }, '{"amount":1}')
      assert.equal("POST /v2/actions/purchase/esims HTTP/1.1\r\nHost: api.telnyx.com\r\nAuthorization: Bearer K\r\n"
        .. "Content-Length: 12\r\n\r\n{\"amount\":1}", b)
    end)

    it("a POST, PUT or PATCH without a body says Content-Length: 0; a GET or DELETE says nothing", function()
      for _, m in ipairs{ "POST", "PUT", "PATCH" } do
        assert.equal(m .. " /x HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 0\r\n\r\n", bytes(m, "/x", "h:8080", {}))
      end
      for _, m in ipairs{ "GET", "DELETE" } do
        assert.equal(m .. " /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\n", bytes(m, "/x?a=1", "h", {}))
      end
    end)

    it("every header once, each on its own line", function()
      local b = bytes("GET", "/", "h", { A = "1", B = "2", ["X-Request-Source"] = "batch 7" })
      for _, line in ipairs{ "A: 1\r\n", "B: 2\r\n", "X-Request-Source: batch 7\r\n" } do
        local _, n = b:gsub(line:gsub("%p", "%%%0"), "")
        assert.equal(1, n, line)
      end
      assert.equal(b:sub(-4), "\r\n\r\n")
    end)
  end)

  describe("response framing", function()
    it("Content-Length: the body, the headers as sent (a name sent twice: a list), reusable", function()
      each_cut(response({ "HTTP/1.1 202 Accepted", "Content-Length: 5", "X-Request-Id: abc", "Set-Thing: 1",
        "Set-Thing: 2" }, "hello"), nil, function(done, failure, _, r)
        assert.is_true(done, failure)
        assert.equal(202, r.status)
        assert.equal("hello", r.body)
        assert.equal("abc", r.headers["X-Request-Id"])
        assert.same({ "1", "2" }, r.headers["Set-Thing"])
        assert.is_true(r.reusable)
      end)
    end)

    it("chunked, with extensions and trailers: the chunks joined", function()
      each_cut(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" },
        "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"), nil, function(done, failure, _, r)
        assert.is_true(done, failure)
        assert.equal("hello 0123456789", r.body)
        assert.is_true(r.reusable)
      end)
    end)

    it("Transfer-Encoding wins over Content-Length", function()
      each_cut(response({ "HTTP/1.1 200 OK", "Content-Length: 99", "Transfer-Encoding: gzip, chunked" },
        "2\r\nok\r\n0\r\n\r\n"), nil, function(done, failure, _, r)
        assert.is_true(done, failure)
        assert.equal("ok", r.body)
      end)
    end)

    it("neither: the body ends when the server closes, and the connection is not reused", function()
      each_cut(response({ "HTTP/1.1 200 OK" }, "until the end"), { close = true }, function(done, failure, _, r)
        assert.is_true(done, failure)
        assert.equal("until the end", r.body)
        assert.is_false(r.reusable)
      end)
    end)

    it("no body for HEAD, 204 and 304, whatever the headers say", function()
      local cases = {
        { "HEAD", response{ "HTTP/1.1 200 OK", "Content-Length: 50" } },
        { "DELETE", response{ "HTTP/1.1 204 No Content" } },
        { "GET", response{ "HTTP/1.1 304 Not Modified", "Content-Length: 50" } },
      }
      for _, c in ipairs(cases) do
        each_cut(c[2], { method = c[1] }, function(done, failure, _, r)
          assert.is_true(done, failure)
          assert.equal("", r.body)
          assert.is_true(r.reusable)
        end)
      end
    end)

    it("an interim 100 Continue is skipped; the final response is the one returned", function()
      each_cut("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
        .. response({ "HTTP/1.1 422 Unprocessable Entity", "Content-Length: 2" }, "{}"), nil,
        function(done, failure, _, r)
          assert.is_true(done, failure)
          assert.equal(422, r.status)
          assert.equal("{}", r.body)
          assert.is_nil(r.headers.Link)
        end)
    end)

    it("keep-alive: HTTP/1.1 unless Connection: close; HTTP/1.0 only with Connection: keep-alive", function()
      local cases = {
        { { "HTTP/1.1 200 OK", "Content-Length: 0", "Connection: close" }, false },
        { { "HTTP/1.1 200 OK", "Content-Length: 0", "connection: Keep-Alive, Close" }, false },
        { { "HTTP/1.0 200 OK", "Content-Length: 0" }, false },
        { { "HTTP/1.0 200 OK", "Content-Length: 0", "Connection: keep-alive" }, true },
        { { "HTTP/1.1 200 OK", "Content-Length: 0", "Connection: keep-alive" }, true },
      }
      for i, c in ipairs(cases) do
        local done, failure, _, r = read(response(c[1]))
        assert.is_true(done, failure)
        assert.equal(c[2], r.reusable, i)
      end
    end)

    it("not reused after a 101, with Transfer-Encoding and Content-Length both, or Transfer-Encoding in HTTP/1.0",
      function()
        local cases = {
          response{ "HTTP/1.1 101 Switching Protocols", "Upgrade: x" },
          response({ "HTTP/1.1 200 OK", "Content-Length: 2", "Transfer-Encoding: chunked" }, "2\r\nok\r\n0\r\n\r\n"),
          response({ "HTTP/1.0 200 OK", "Connection: keep-alive", "Transfer-Encoding: chunked" },
            "2\r\nok\r\n0\r\n\r\n"),
        }
        for i, c in ipairs(cases) do
          each_cut(c, nil, function(done, failure, _, r)
            assert.is_true(done, failure)
            assert.is_false(r.reusable, i)
          end)
        end
      end)

    it("Content-Length sent twice with the same number (white space aside) is one length", function()
      local done, failure, _, r = read(response({ "HTTP/1.1 200 OK", "Content-Length: 2", "Content-Length: 2 " }, "ok"))
      assert.is_true(done, failure)
      assert.equal("ok", r.body)
    end)

    it("bytes beyond the response: it is whole, but the connection is not reused", function()
      local done, failure, _, r = read(response({ "HTTP/1.1 200 OK", "Content-Length: 2" }, "okHTTP/1.1 200"))
      assert.is_true(done, failure)
      assert.equal("ok", r.body)
      assert.is_false(r.reusable)
    end)

    it("status is known as soon as the head is in, before the body", function()
      local done, _, _, r = read(response({ "HTTP/1.1 500 Internal Server Error", "Content-Length: 10" }, "abc"))
      assert.is_false(done)
      assert.equal(500, r.status)
    end)
  end)

  describe("what is refused: broken (the request may have gone through) or too_large", function()
    local function refused(bytes, failure, pattern, opts)
      each_cut(bytes, opts, function(done, f, why)
        assert.is_nil(done)
        assert.equal(failure, f)
        assert.matches(pattern, why)
      end)
    end

    it("a response cut short, at the head or in the body", function()
      refused(response({ "HTTP/1.1 200 OK", "Content-Length: 10" }, "abc"), "broken",
        "cut short %(HTTP 200, the connection closed%)", { close = true })
      refused("HTTP/1.1 200 OK\r\nContent-Le", "broken", "before a whole response head", { close = true })
      refused(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "5\r\nhel"), "broken", "cut short",
        { close = true })
    end)

    it("no HTTP/1.x status line", function()
      refused(response{ "HTTP/2 200" }, "broken", "status line")
      refused(response{ "garbage" }, "broken", "status line")
      refused(response{ "HTTP/1.1 20 OK" }, "broken", "status line")
      refused(response{ "HTTP/1.1 2000 OK" }, "broken", "status line")
    end)

    it("a header line that is not 'name: value' (obsolete folding included)", function()
      refused(response{ "HTTP/1.1 200 OK", "Content-Length: 0", "no colon here" }, "broken", "not 'name: value'")
      refused(response{ "HTTP/1.1 200 OK", "X-A: 1", " folded", "Content-Length: 0" }, "broken", "not 'name: value'")
    end)

    it("Content-Length twice with two values, or not a number", function()
      refused(response{ "HTTP/1.1 200 OK", "Content-Length: 5", "content-length: 6" }, "broken", "sent twice")
      refused(response{ "HTTP/1.1 200 OK", "Content-Length: -5" }, "broken", "not a number")
      refused(response{ "HTTP/1.1 200 OK", "Content-Length: 1e3" }, "broken", "not a number")
      -- the same value twice is one length
      local done, failure, _, r = read(response({ "HTTP/1.1 200 OK", "Content-Length: 2", "Content-Length: 2" }, "ok"))
      assert.is_true(done, failure)
      assert.equal("ok", r.body)
    end)

    it("a chunk size that is not hexadecimal, or a chunk not ended by CRLF", function()
      refused(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "zz\r\n"), "broken", "hexadecimal")
      refused(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "2\r\nokX\r\n0\r\n\r\n"), "broken",
        "CRLF")
    end)

    it("a chunk size line with more than digits and an extension, or over 1 KiB even when whole", function()
      for _, line in ipairs{ "1zz", "1 2", "-1", "", ";ext", "1" .. string.rep(" ", 1100) } do
        refused(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, line .. "\r\na\r\n0\r\n\r\n"),
          "broken", "chunk's size", { size = false })
      end
      local done, failure, _, r = read(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" },
        "1 ;a=b\r\na\r\n0\r\n\r\n"))
      assert.is_true(done, failure)
      assert.equal("a", r.body)
    end)

    it("a chunk size line of exactly 1 KiB is read, however it is cut (between its CR and LF too)", function()
      local line = "1;" .. string.rep("e", 1022)
      local bytes = response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, line .. "\r\na\r\n0\r\n\r\n")
      local cr = bytes:find(line, 1, true) + #line -- the line's CR
      for _, cut in ipairs{ cr - 1, cr, cr + 1 } do
        local r = http1.response("GET", 4096)
        assert.is_false(r:feed(bytes:sub(1, cut)))
        assert.is_true(r:feed(bytes:sub(cut + 1)))
        assert.equal("a", r.body)
      end
    end)

    it("trailers over MAX_HEAD_BYTES, whole lines or not, whatever the cuts", function()
      local line = "X-T: " .. string.rep("t", 1000) .. "\r\n"
      local many = string.rep(line, math.ceil(http1.MAX_HEAD_BYTES / #line) + 1)
      refused(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "0\r\n" .. many .. "\r\n"), "broken",
        "trailers are too long")
      local done, failure = read(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" },
        "0\r\n" .. line:rep(3) .. "\r\n"))
      assert.is_true(done, failure)
      -- trailers of exactly MAX_HEAD_BYTES end well, even when the empty line's CR comes alone
      local pad = http1.MAX_HEAD_BYTES - 2 * #line - 2 - #"X-P: "
      local exact = line:rep(2) .. "X-P: " .. string.rep("p", pad) .. "\r\n"
      assert.equal(http1.MAX_HEAD_BYTES, #exact)
      local bytes = response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "0\r\n" .. exact .. "\r\n")
      local r = http1.response("GET", 4096)
      assert.is_false(r:feed(bytes:sub(1, -2)))
      assert.is_true(r:feed("\n"))
      assert.is_nil(read(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "0\r\n" .. exact .. "X\r\n\r\n")))
    end)

    it("trailers trickled a byte at a time (a line of bare CRs that never ends) still end at the limit",
      function()
        local r = http1.response("GET", 4096)
        assert.is_false(r:feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "))
        local done, failure, why
        for _ = 1, http1.MAX_HEAD_BYTES do
          done, failure, why = r:feed("\r")
          if done ~= false then break end
        end
        assert.is_nil(done)
        assert.equal("broken", failure)
        assert.matches("trailers are too long", why)
      end)

    it("interim responses without end: their heads count toward MAX_HEAD_BYTES together", function()
      local flood = string.rep("HTTP/1.1 100 Continue\r\n\r\n", math.ceil(http1.MAX_HEAD_BYTES / 25) + 1)
      local done, failure, why = read(flood .. response({ "HTTP/1.1 200 OK", "Content-Length: 0" }), { size = 4096 })
      assert.is_nil(done)
      assert.equal("too_large", failure)
      assert.matches("headers are over", why)
    end)

    it("a chunked body's framing counts too: a body of one-byte chunks with long extensions ends", function()
      local chunk = "1;" .. string.rep("e", 200) .. "\r\nx\r\n"
      local done, failure, why = read(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" },
        string.rep(chunk, 10)), { max = 1000, size = 4096 })
      assert.is_nil(done)
      assert.equal("too_large", failure)
      assert.matches("over max_response_bytes %(1000%)", why)
      -- and within max_body, framing included, such a body is whole
      done, failure = read(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" },
        string.rep(chunk, 3) .. "0\r\n\r\n"), { max = 1000 })
      assert.is_true(done, failure)
    end)

    it("a declared length over max_body: refused before the body is read", function()
      local done, failure, why, _, fed = read(response({ "HTTP/1.1 200 OK", "Content-Length: 101" }), { max = 100 })
      assert.is_nil(done)
      assert.equal("too_large", failure)
      assert.matches("Content%-Length 101 is over max_response_bytes %(100%)", why)
      assert.equal(1, fed)
    end)

    it("a chunked or until-close body stops at the piece that passes max_body", function()
      local big = string.rep("x", 64)
      refused(response({ "HTTP/1.1 200 OK", "Transfer-Encoding: chunked" }, "40\r\n" .. big .. "\r\n40\r\n" .. big),
        "too_large", "over max_response_bytes %(100%)", { max = 100 })
      refused(response({ "HTTP/1.1 200 OK" }, big .. big), "too_large", "over max_response_bytes", { max = 100 })
    end)

    it("a head over MAX_HEAD_BYTES, even one that never ends", function()
      local long = "X-Long: " .. string.rep("a", http1.MAX_HEAD_BYTES)
      refused(response{ "HTTP/1.1 200 OK", long, "Content-Length: 0" }, "too_large", "headers are over")
      local done, failure = read("HTTP/1.1 200 OK\r\n" .. string.rep(" ", http1.MAX_HEAD_BYTES + 10), { size = 4096 })
      assert.is_nil(done)
      assert.equal("too_large", failure)
    end)

    it("a head of 80 KiB of spaces and tabs in a value is parsed, not matched by a backtracking pattern", function()
      local pad = string.rep(" \t", 20 * 1024)
      local done, failure, _, r = read(response({ "HTTP/1.1 200 OK", "Retry-After:" .. pad .. "7" .. pad,
        "Content-Length: 0" }))
      assert.is_true(done, failure)
      assert.equal("7", http1.trim(r.headers["Retry-After"]))
      assert.equal("", http1.trim(pad))
      assert.equal("a b", http1.trim(" \ta b\t "))
    end)

    it("after a failure or a whole response, more bytes are refused", function()
      local done, _, _, r = read(response({ "HTTP/1.1 200 OK", "Content-Length: 0" }))
      assert.is_true(done)
      assert.is_nil((r:feed("HTTP/1.1 200 OK\r\n")))
    end)
  end)
  describe("is_response", function()
    it("tells a reader from anything else", function()
      assert.is_true(http1.is_response(http1.response("GET", 10)))
      for _, v in ipairs{ {}, "r", 1, io.stdout, true } do assert.is_false(http1.is_response(v)) end
      assert.is_false(http1.is_response(nil))
    end)

    it("a reader's fields: status once the final head is in, body and reusable once whole", function()
      local r = http1.response("GET", 100)
      assert.is_nil(r.status)
      assert.is_false(r:feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"))
      assert.equal(200, r.status)
      assert.same({ ["Content-Length"] = "4" }, r.headers)
      assert.is_nil(r.body)
      assert.is_nil(r.reusable)
      assert.is_true(r:feed("cd"))
      assert.equal("abcd", r.body)
      assert.is_true(r.reusable)
      assert.is_nil(r.nothing)
      assert.matches("^telnyx.sim.http1 response %(status 200, 4 body bytes%)$", tostring(r))
      -- bytes after the response: refused, and what was read stays
      assert.same({ nil, "broken", "bytes after the response" }, { r:feed("x") })
      assert.equal("abcd", r.body)
    end)
  end)

  describe("randomized (a fixed seed: the same cases every run)", function()
    -- Park-Miller: every product stays below 2^53, so the cases are the same under every Lua
    local seed = 20261201
    local function rand(n)
      seed = (seed * 16807) % 2147483647
      return seed % n + 1
    end

    local function random_response()
      local body = {}
      for i = 1, rand(40) - 1 do body[i] = string.char(31 + rand(95)) end
      body = table.concat(body) .. string.rep("x", rand(3) == 1 and rand(9000) or 0)
      local lines = { "HTTP/1.1 " .. (199 + rand(400)) .. " Any" }
      for i = 1, rand(6) - 1 do lines[#lines + 1] = "X-H" .. i .. ":" .. string.rep(" ", rand(3) - 1) .. rand(1e6) end
      local kind = rand(3)
      if kind == 1 then
        lines[#lines + 1] = "Content-Length: " .. #body
        return response(lines, body), body, true
      elseif kind == 2 then
        lines[#lines + 1] = "Transfer-Encoding: chunked"
        local out, i = {}, 1
        while i <= #body do
          local n = rand(700)
          local piece = body:sub(i, i + n - 1)
          out[#out + 1] = string.format("%x%s\r\n%s\r\n", #piece, rand(4) == 1 and ";e=1" or "", piece)
          i = i + n
        end
        out[#out + 1] = "0\r\n" .. (rand(3) == 1 and "T: 1\r\n" or "") .. "\r\n"
        return response(lines, table.concat(out)), body, true
      end
      return response(lines, body), body, false -- to the close
    end

    it("200 responses of every framing read the same however the socket cuts them", function()
      for n = 1, 200 do
        local bytes, body, framed = random_response()
        local status = tonumber(bytes:match("^HTTP/1.1 (%d+)"))
        local cuts = { false, rand(5), rand(300), rand(5000) }
        for _, size in ipairs(cuts) do
          local done, failure, why, r = read(bytes, { size = size or nil, close = not framed })
          assert.is_true(done, n .. ": " .. tostring(failure) .. " " .. tostring(why))
          assert.equal(status, r.status, n)
          local want = (status == 204 or status == 304) and "" or body
          assert.equal(want, r.body, n)
        end
      end
    end)

    it("random bytes never raise: each piece gives true, false, or nil with a failure", function()
      local alphabet = { "HTTP/1.1 200 OK\r\n", "\r\n", "Content-Length: ", "Transfer-Encoding: chunked\r\n",
        "0", "9", "f", ";", ":", " ", "\t", "\r", "\n", "x", "HTTP/1.0 100 C\r\n\r\n", "\0", "\255" }
      for n = 1, 500 do
        local t = {}
        for i = 1, rand(60) do t[i] = alphabet[rand(#alphabet)] end
        local bytes = table.concat(t)
        local r = http1.response(rand(2) == 1 and "GET" or "HEAD", rand(200))
        local i = 1
        while i <= #bytes do
          local size = rand(20)
          local ok, done, failure = pcall(r.feed, r, bytes:sub(i, i + size - 1))
          assert.is_true(ok, n .. ": " .. tostring(done))
          assert.is_true(done == true or done == false or (done == nil and (failure == "broken"
            or failure == "too_large")), n)
          if done ~= false then break end
          i = i + size
        end
        assert.is_true(pcall(r.closed, r))
      end
    end)
  end)
end)
