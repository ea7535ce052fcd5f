-- The operator surfaces (--ctl, --metrics) against a local user who is not
-- to be trusted: what the control socket may replace, who may connect,
-- how many connections and for how long, and what a label may carry.
local S = require "spec.support"
local uv = require "luv"

local host = S.host -- a background msrt-lua

local IDLE = S.file("require('msrt').every(1000, function() end)\n")

local function mode_of(path)
  local st = uv.fs_lstat(path)
  return st and st.mode % 512
end

describe("--ctl", function()
  it("refuses to replace a file that is not a stale socket (the file is kept)", function()
    local precious = S.file("precious\n", ".txt")
    local r = S.run({ "--ctl", precious, IDLE })
    assert.are.equal(1, r.code)
    assert.matches("is a regular file, not a stale socket", r.err)
    assert.are.equal("precious\n", io.open(precious):read("*a"))
    r = S.run({ "--ctl", IDLE, IDLE }) -- the script itself
    assert.are.equal(1, r.code)
    assert.matches("require%('msrt'%)", io.open(IDLE):read("*a"))
    local dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, 448))
    r = S.run({ "--ctl", dir, IDLE })
    assert.are.equal(1, r.code)
    assert.matches("is a directory", r.err)
    assert.are.equal("directory", uv.fs_stat(dir).type)
    uv.fs_rmdir(dir)
    os.remove(precious)
  end)

  it("replaces a stale socket, refuses a live host's, and makes it 0600 whatever the umask", function()
    local sock = os.tmpname() .. ".sock"
    -- a stale socket: bound, never removed, nobody listening
    -- (killed: libuv would remove it on close)
    S.run({ "-e", ([[local uv = require "luv"
      local p = uv.new_pipe(false) assert(p:bind(%q)) uv.kill(uv.os_getpid(), "sigkill")]]):format(sock) })
    assert.are.equal("socket", uv.fs_lstat(sock).type)
    local h = host({ "--ctl", sock, IDLE }, "umask 000;")
    local ok, err = pcall(function()
      assert.is_truthy(h.wait("control socket (%S+)"), h.text())
      assert.are.equal(384, mode_of(sock)) -- 0600
      local st = S.run({ "ctl", sock, "status" })
      assert.are.equal(0, st.code, st.err)
      local second = S.run({ "--ctl", sock, IDLE })
      assert.are.equal(1, second.code)
      assert.matches("control socket of a running host", second.err)
    end)
    h.stop()
    os.remove(sock)
    assert(ok, err)
  end)

  it("auto: a random name in $XDG_RUNTIME_DIR, or else in a 0700 directory of the host's own", function()
    local xdg = os.tmpname()
    os.remove(xdg)
    assert(uv.fs_mkdir(xdg, 448))
    local paths = {}
    for i, env in ipairs({ "XDG_RUNTIME_DIR=" .. xdg, "XDG_RUNTIME_DIR=", "XDG_RUNTIME_DIR=" }) do
      local h = host({ "--ctl", "auto", IDLE }, "umask 000; " .. env)
      local path = h.wait("control socket (%S+)")
      local ok, err = pcall(function()
        assert.is_string(path, h.text())
        paths[i] = path
        assert.matches("/msrt%-%d+%-%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%.sock$", path)
        local dir = path:match("^(.*)/[^/]+$")
        if i == 1 then assert.are.equal(xdg, dir) else
          assert.are_not.equal("/tmp", dir)
          assert.are.equal(448, mode_of(dir)) -- 0700
          assert.are.equal(uv.getuid(), uv.fs_stat(dir).uid)
        end
        assert.are.equal(384, mode_of(path))
        assert.are.equal(0, S.run({ "ctl", path, "status" }).code)
      end)
      h.stop()
      assert(ok, err)
      assert.is_nil(uv.fs_lstat(path), "the socket stays after the host ends")
      if i > 1 then assert.is_nil(uv.fs_lstat(path:match("^(.*)/")), "the private directory stays") end
    end
    assert.are_not.equal(paths[2], paths[3])
    uv.fs_rmdir(xdg)
  end)

  it("closes a connection from another user (SO_PEERCRED), even when the socket's mode lets it in", function()
    local function as_nobody(...)
      return S.run({ "--reuid=nobody", "--regid=nogroup", "--clear-groups", S.exe, ... }, { exe = "setpriv" })
    end
    if uv.getuid() ~= 0 or as_nobody("-v").code ~= 0 then
      pending("needs root, setpriv and an msrt-lua that nobody may run (a clone under /root is not)")
      return
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, 493)) -- 0755: nobody may reach the socket
    local sock = dir .. "/ctl.sock"
    local h = host({ "--ctl", sock, IDLE })
    local ok, err = pcall(function()
      assert.is_truthy(h.wait("control socket"), h.text())
      assert(uv.fs_chmod(sock, 438)) -- 0666, as a careless admin might
      local r = as_nobody("ctl", sock, "status")
      assert.are_not.matches("pid %d+", r.out)
      assert.matches("refused a connection from uid 65534", h.wait("(refused a connection from uid %d+)") or "")
      assert.matches("^pid %d+", S.run({ "ctl", sock, "status" }).out) -- its own user still gets in
    end)
    h.stop()
    os.remove(sock)
    uv.fs_rmdir(dir)
    assert(ok, err)
  end)
end)

-- Open n connections to 127.0.0.1:port, each sending only the start of a
-- request; report when all are open and then how many the host closed
-- (within limit_ms).
local ATTACK = [[
local uv = require "luv"
local port, n, limit = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local connected, closed = 0, 0
for _ = 1, n do
  local c = uv.new_tcp()
  c:connect("127.0.0.1", port, function(err)
    connected = connected + 1
    if connected == n then io.stdout:write("connected\n") io.stdout:flush() end
    if err then closed = closed + 1 c:close() return end
    c:write("GET /metr")
    c:read_start(function(_, chunk)
      if chunk then return end
      closed = closed + 1
      c:read_stop() c:close()
      if closed == n then uv.stop() end
    end)
  end)
end
local t = uv.new_timer()
t:start(limit, 0, function() uv.stop() end)
t:unref()
uv.run()
io.stdout:write(("closed %d\n"):format(closed))
io.stdout:flush()
uv.walk(function(h) if not h:is_closing() then h:close() end end)
]]

describe("/metrics and the control socket under a connection flood", function()
  it("300 half-sent requests hold at most connections.max descriptors, go after the read timeout, and spawns go on", function()
    local prof = S.file("return { connections = { max = 20, read_timeout_ms = 1000, idle_timeout_ms = 1000 } }\n")
    local marks = os.tmpname()
    local fleet = S.file(([[
      local msrt = require "msrt"
      local n = 0
      msrt.every(50, function()
        local p = msrt.process{ name = "t", cmd = { "/bin/true" } }
        if p then n = n + 1 local f = io.open(%q, "w") f:write(n) f:close() end
      end)
    ]]):format(marks))
    local h = host({ "--profile", prof, "--metrics", "127.0.0.1:0", fleet })
    local attack = S.file(ATTACK)
    local ok, err = pcall(function()
      local port = tonumber(h.wait("metrics on http://127%.0%.0%.1:(%d+)/metrics"))
      assert.is_number(port, h.text())
      -- sockets only: the processes spawned meanwhile hold pipes (three
      -- each while they run; how many run at once depends on the load)
      local function fds()
        return tonumber(io.popen("ls -l /proc/" .. h.pid .. "/fd | grep -c 'socket:'"):read("*l"))
      end
      local function spawned() local f = io.open(marks) local v = f and tonumber(f:read("*a")) if f then f:close() end return v or 0 end
      local base = fds()
      local p = io.popen(("%s %s %d 300 15000"):format(S.quote(S.exe), S.quote(attack), port))
      assert.are.equal("connected", p:read("*l"))
      local held = fds()
      local before = spawned()
      for _ = 1, 500 do if spawned() > before then break end uv.sleep(10) end
      assert.is_true(spawned() > before, "no process was spawned during the flood")
      local closed = p:read("*l")
      p:close()
      assert.is_true(held <= base + 20 + 8, ("%d sockets with the flood, %d before"):format(held, base))
      assert.are.equal("closed 300", closed) -- the refused at once and the held at their timeout
      local m = S.run({ "-e", ([[local uv = require "luv"
        local c, out = uv.new_tcp(), {}
        c:connect("127.0.0.1", %d, function() c:write("GET /metrics HTTP/1.1\r\n\r\n")
          c:read_start(function(_, s) if s then out[#out + 1] = s else c:close() end end) end)
        uv.run() io.write(table.concat(out))]]):format(port) })
      assert.matches("^HTTP/1.1 200 OK", m.out) -- served again
    end)
    h.stop()
    for _, f in ipairs({ prof, marks, fleet, attack }) do os.remove(f) end
    assert(ok, err)
  end)
end)

describe("/metrics label values", function()
  it("escape backslash, double quote and newline: a child id cannot inject a series", function()
    local fleet = S.file([[
      local msrt = require "msrt"
      assert(msrt.supervisor{ name = "inj", children = {
        { id = 'x"} 1\nmsrt_injected{a="b', process = { name = "p", cmd = { "sleep", "10" } } },
        { id = "back\\slash", process = { name = "q", cmd = { "sleep", "10" } } } } })
      msrt.after(0, function() io.write(require("msrt.ops").metrics_text()) msrt.stop() end)
    ]])
    local r = S.run({ fleet })
    os.remove(fleet)
    assert.are.equal(0, r.code, r.err)
    assert.is_nil(r.out:find("\nmsrt_injected", 1, true), "a label value started a series of its own")
    assert.is_truthy(r.out:find('msrt_restarts_total{supervisor="inj",child="x\\"} 1\\nmsrt_injected{a=\\"b"} 0\n', 1, true))
    assert.is_truthy(r.out:find('child="back\\\\slash"', 1, true))
  end)
end)
