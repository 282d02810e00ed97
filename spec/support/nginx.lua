-- Run Debian's nginx (with libnginx-mod-http-lua) as an ordinary process for
-- tests and demos: its own prefix, config, logs and temp dirs in a temporary
-- folder, a free loopback port, stopped by :stop() (or when the Lua process
-- that started it is gone).
--
--   local nginx = require "spec.support.nginx"
--   local srv = nginx.start{ conf = text }   -- text with {{PORT}}, {{DIR}}, {{REPO}},
--                                            -- {{MODULES}}, {{USER}}, {{TEMP_PATHS}} placeholders
-- The command line sets daemon off, master_process on and pid (unless the conf
-- has its own top-level pid): the conf must not set the first two.
-- {{VENDOR_LUA_PATH}} (only computed when the conf uses it): lua_package_path
-- entries for lua-resty-http and resty.string (nginx.vendor_lua_path); nginx.start
-- errors when they are not there.
--   helpers.http{ port = srv.port, path = "/" }
--   srv:stop()
--
-- Works under Lua 5.1 - 5.4 and LuaJIT (needs luasocket).

local socket = require "socket"

local nginx = {}

local helpers = require "spec.support.helpers"
local shell_quote, run, read_file, pid_alive = helpers.shell_quote, helpers.run, helpers.read_file, helpers.pid_alive

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function capture(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end


-- The repository root: two levels above this file.
function nginx.repo_dir()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$")
  if not dir or dir == "" then dir = "." end
  if dir:sub(1, 1) ~= "/" then dir = capture("pwd"):gsub("%s+$", "") .. (dir == "." and "" or "/" .. dir) end
  return dir
end

-- Absolute paths of the two dynamic modules Debian's libnginx-mod-http-lua needs.
function nginx.module_paths()
  local found = {}
  for _, name in ipairs{ "ndk_http_module.so", "ngx_http_lua_module.so" } do
    for _, dir in ipairs{ "/usr/lib/nginx/modules", "/usr/share/nginx/modules" } do
      if read_file(dir .. "/" .. name) then found[#found + 1] = dir .. "/" .. name; break end
    end
  end
  if #found < 2 then return nil, "libnginx-mod-http-lua is not installed (no ngx_http_lua_module.so)" end
  return found
end

--- Whether nginx and its Lua module are there; nil, reason when not.
function nginx.available()
  if not run("command -v nginx >/dev/null 2>&1") then return nil, "nginx is not installed" end
  local _, err = nginx.module_paths()
  if err then return nil, err end
  return true
end

--- A loopback port nothing listens on right now.
nginx.free_port = helpers.free_port

--- Builds build/luajit/telnyx/sim.so (what nginx's LuaJIT loads), quietly.
function nginx.build_luajit_module()
  local repo = nginx.repo_dir()
  local log = os.tmpname()
  if not run("make -s -C " .. shell_quote(repo) .. " LUA=luajit >" .. shell_quote(log) .. " 2>&1") then
    local out = read_file(log) or ""
    os.remove(log)
    error("make LUA=luajit failed:\n" .. out, 2)
  end
  os.remove(log)
  return repo .. "/build/luajit"
end

-- The folder of third-party packages the registries here do not carry:
-- $TELNYX_SIM_VENDOR_DIR, else ../shared/vendor beside the repository (as CI has it).
function nginx.vendor_dir()
  local dir = os.getenv("TELNYX_SIM_VENDOR_DIR")
  if dir and dir ~= "" then return dir end
  return nginx.repo_dir():gsub("/[^/]+/?$", "") .. "/shared/vendor"
end

-- The newest folder in `dir` matching `glob` that has lib/<file>, or nil.
local function vendored_lib(dir, glob, file)
  local p = io.popen("ls -d " .. shell_quote(dir) .. "/" .. glob .. " 2>/dev/null | sort -V")
  local found
  for line in p:lines() do
    if read_file(line .. "/lib/" .. file) then found = line .. "/lib" end
  end
  p:close()
  return found
end

--- lua_package_path entries (";"-joined, no ";;") for lua-resty-http and
-- resty.string (which it requires; OpenResty ships it, Debian's module does not),
-- from nginx.vendor_dir(); nil and why when either is missing.
function nginx.vendor_lua_path()
  local dir = nginx.vendor_dir()
  local http = vendored_lib(dir, "lua-resty-http-*", "resty/http.lua")
  local str = vendored_lib(dir, "lua-resty-string-*", "resty/string.lua")
  if not http or not str then
    return nil, "lua-resty-http and lua-resty-string are not in " .. dir .. ": set TELNYX_SIM_VENDOR_DIR to a "
      .. "folder holding lua-resty-http-0.17.2/ and lua-resty-string-0.17/ (their release archives, "
      .. "github.com/ledgetech/lua-resty-http and github.com/openresty/lua-resty-string, unpacked)"
  end
  return http .. "/?.lua;" .. str .. "/?.lua"
end

local Server = {}
Server.__index = Server

function Server:error_log()
  return read_file(self.dir .. "/logs/error.log") or ""
end

--- Stops nginx (QUIT, then TERM, then KILL) and removes its folder unless keep.
function Server:stop(keep)
  if self.stopped then return end
  self.stopped = true
  local function wait(seconds)
    local deadline = socket.gettime() + seconds
    while pid_alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  end
  if pid_alive(self.pid) then
    run("kill -QUIT " .. self.pid .. " 2>/dev/null")
    wait(3)
    if pid_alive(self.pid) then run("kill -TERM " .. self.pid .. " 2>/dev/null"); wait(2) end
    if pid_alive(self.pid) then run("kill -KILL " .. self.pid .. " 2>/dev/null"); wait(1) end
  end
  if not keep then run("rm -rf " .. shell_quote(self.dir)) end
end

--- Starts nginx with opts.conf (placeholders filled in, see the top of this
-- file) and waits until it accepts connections. Errors with its log if it
-- does not come up within 10 s. Returns { port, dir, pid, stop, error_log }.
function nginx.start(opts)
  local ok, why = nginx.available()
  if not ok then error(why, 2) end
  local modules = assert(nginx.module_paths())
  local dir = helpers.tmpname()
  assert(run("mkdir -p " .. shell_quote(dir .. "/logs") .. " " .. shell_quote(dir .. "/tmp")
    .. " " .. shell_quote(dir .. "/conf")))
  local port = opts.port or nginx.free_port()
  local load = {}
  for _, m in ipairs(modules) do load[#load + 1] = "load_module " .. m .. ";" end
  local temp = {}
  for _, t in ipairs{ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
    temp[#temp + 1] = t .. "_temp_path " .. dir .. "/tmp/" .. t .. ";"
  end
  -- As root, nginx's workers would switch to "nobody", who may not read the
  -- repository or the 0700 temporary folder: keep them as the current user.
  local user = capture("id -u"):match("^0%s*$") and "user root;" or ""
  local values = {
    PORT = tostring(port), DIR = dir, REPO = nginx.repo_dir(), MODULES = table.concat(load, "\n"),
    USER = user, TEMP_PATHS = table.concat(temp, "\n    "),
  }
  if opts.conf:find("{{VENDOR_LUA_PATH}}", 1, true) then
    values.VENDOR_LUA_PATH = assert(nginx.vendor_lua_path())
  end
  for k, v in pairs(opts.values or {}) do values[k] = tostring(v) end
  local conf = opts.conf:gsub("{{([%w_]+)}}", function(name)
    return values[name] or error("nginx.start: no value for {{" .. name .. "}}", 3)
  end)
  -- make test CJSON=fork: nginx's LuaJIT loads OpenResty's lua-cjson fork first
  local fork = os.getenv("TELNYX_SIM_CJSON_CPATH")
  if fork then conf = conf:gsub('lua_package_cpath "', 'lua_package_cpath "' .. fork:gsub("%%", "%%%%")) end
  local conf_path = dir .. "/conf/nginx.conf"
  write_file(conf_path, conf)
  local pid_file = dir .. "/start.pid"
  -- A watchdog shell stops nginx when the process that started it is gone.
  local parent = helpers.my_pid() or "0"
  local env = opts.env and (opts.env .. " ") or ""
  local pid = ("\n" .. conf):match("\n%s*pid%s") and "" or " pid " .. dir .. "/nginx.pid;"
  local cmd = "(" .. env .. "nginx -p " .. shell_quote(dir .. "/") .. " -c " .. shell_quote(conf_path)
    .. " -e " .. shell_quote(dir .. "/logs/error.log")
    .. " -g " .. shell_quote("daemon off; master_process on;" .. pid)
    .. " </dev/null >>" .. shell_quote(dir .. "/logs/stdout.log") .. " 2>&1 & n=$!; echo $n > "
    .. shell_quote(pid_file) .. "; while kill -0 " .. parent .. " 2>/dev/null && kill -0 $n 2>/dev/null;"
    .. " do sleep 1; done; kill -QUIT $n 2>/dev/null) >/dev/null 2>&1 &"
  if not run(cmd) then error("could not launch nginx: " .. cmd, 2) end

  local self = setmetatable({ port = port, dir = dir, conf = conf }, Server)
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    self.pid = self.pid or (read_file(pid_file) or ""):match("(%d+)")
    if self.pid and not pid_alive(self.pid) then break end
    local s = socket.tcp()
    s:settimeout(0.2)
    local connected = s:connect("127.0.0.1", port)
    s:close()
    if connected and self.pid then return self end
    socket.sleep(0.05)
  end
  local log = self:error_log() .. (read_file(dir .. "/logs/stdout.log") or "")
  self:stop()
  error("nginx did not start within 10 s:\n" .. log, 2)
end

return nginx
