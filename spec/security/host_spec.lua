-- The host against what it runs next to: a peer that hangs up, a signal
-- nobody asked for, a child that floods stderr or writes terminal escapes,
-- a control socket that answers without end (spec/security/README.md).
local S = require "spec.support"

-- Run a script file under msrt-lua, bounded; returns {out, err, code}.
local function run(script, args, env)
  local path = S.file(script)
  local argv = { path }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = S.run(argv, { env = (env or "") .. " timeout -k 5 30" })
  os.remove(path)
  return r
end

local SIG = require "spec.signals"
local function signalled(script, steps) return SIG.signalled(S.exe, script, steps) end
local wait_lines, READY = SIG.wait_lines, SIG.READY

describe("the host", function()
  it("outlives ctl clients that hang up before reading the answer (SIGPIPE ignored)", function()
    local sock = os.tmpname() .. ".sock"
    local script = READY:gsub("^", "require('msrt').every(1000, function() end)\n")
    local rude = S.file(([[
      local uv = require "luv"
      for _ = 1, 20 do
        local c = uv.new_pipe(false)
        c:connect(%q, function(err) assert(not err, err) c:write("metrics\n") c:close() end)
      end
      uv.run()
    ]]):format(sock))
    local path = S.file(script)
    local cmd = table.concat({
      "exec 2>/dev/null",
      ("%s --ctl %s %s /dev/null >/dev/null 2>&1 & pid=$!"):format(S.quote(S.exe), S.quote(sock), S.quote(path)),
      ("n=0; while [ ! -S %s ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done"):format(S.quote(sock)),
      ("%s %s"):format(S.quote(S.exe), S.quote(rude)),
      ("%s ctl %s status >/dev/null; echo status=$?"):format(S.quote(S.exe), S.quote(sock)),
      ("%s ctl %s stop >/dev/null"):format(S.quote(S.exe), S.quote(sock)),
      "wait $pid; echo host=$?",
    }, "\n")
    local p = io.popen(cmd)
    local text = p:read("*a")
    p:close()
    os.remove(rude) os.remove(path)
    assert.are.equal("status=0\nhost=0\n", text)
  end)

  it("ignores SIGPIPE: a write to a closed pipe is EPIPE, not the end of the host", function()
    local ms = run([[
      local uv = require "luv"
      local fds = uv.pipe()
      uv.fs_close(fds.read)
      print(uv.fs_write(fds.write, "x"))
    ]])
    assert.are.same({ "nil\tEPIPE: broken pipe\tEPIPE\n", 0 }, { ms.out, ms.code })
  end)

  it("logs a SIGHUP that nothing watches and goes on", function()
    local script = READY:gsub("^", [[
      local uv = require "luv"
      local t = uv.new_timer()
      t:start(20000, 0, function() end)
    ]]) .. "\n"
    local steps = "kill -HUP $pid\n" .. wait_lines("SIGHUP", 1) .. "\nkill -TERM $pid"
    local code, out = signalled(script, steps)
    assert.are.equal(0, code)
    assert.are.equal("INFO SIGHUP: nothing to reload (no watched policy files)\n", out)
  end)

  it("msrt-lua ctl bounds what it reads: an endless answer or a silent host is an error", function()
    -- a fake host on a Unix socket, and the ctl client run against it
    local script = [[
      local uv = require "luv"
      local exe, mode = arg[1], arg[2]
      local path = os.tmpname() .. ".sock"
      local server, conns = uv.new_pipe(false), {}
      assert(server:bind(path))
      server:listen(8, function()
        local c = uv.new_pipe(false)
        server:accept(c)
        conns[#conns + 1] = c
        local chunk = string.rep("x", 65536)
        local function more(err)
          if not err and not c:is_closing() then c:write(chunk, more) end
        end
        if mode == "endless" then more() end
      end)
      local errp, err, code, eof = uv.new_pipe(false), {}, nil, false
      local function done()
        if not (code and eof) then return end
        print(code, table.concat(err))
        for _, c in ipairs(conns) do c:close() end
        server:close() errp:close() os.remove(path)
      end
      local child = uv.spawn(exe, { args = { "ctl", path, "status" }, stdio = { nil, nil, errp },
        env = { "MSRT_CTL_TIMEOUT_MS=" .. (mode == "endless" and 20000 or 300) } }, function(c) code = c done() end)
      errp:read_start(function(_, d) if d then err[#err + 1] = d else eof = true done() end end)
      child:unref()
      uv.run()
    ]]
    local endless = run(script, { S.exe, "endless" })
    assert.are.equal(0, endless.code, endless.err)
    assert.matches("^1\tmsrt%-lua ctl: the answer from [^ ]+ is larger than 16777216 bytes\n", endless.out)
    local silent = run(script, { S.exe, "silent" })
    assert.matches("^1\tmsrt%-lua ctl: no complete answer from [^ ]+ within 300 ms\n", silent.out)
  end)

  it("logs a child's stderr without stalling the hub when stderr is not read", function()
    -- 40,000 lines into a stderr pipe nobody reads: the hub still sees the
    -- child exit and the host ends (lines past the buffer are dropped)
    local script = S.file([[
      local msrt = require "msrt"
      local p = assert(msrt.process { name = "noisy", cmd = { "/bin/sh", "-c",
        "i=0; while [ $i -lt 40000 ]; do echo \"line $i of a noisy child\" >&2; i=$((i+1)); done" } })
      print("exit", p:wait().code)
    ]])
    local fifo = os.tmpname()
    os.remove(fifo)
    local p = io.popen(("mkfifo %s; ( exec 3<>%s; timeout -k 5 60 %s %s 2>&3; echo rc=$? ); rm -f %s")
      :format(fifo, fifo, S.quote(S.exe), script, fifo))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.are.equal("exit\t0\nrc=0\n", out)
  end)

  it("escapes control characters of a child's stderr in text logs", function()
    local r = run([[
      local msrt = require "msrt"
      msrt.process { name = "evil", cmd = { "/bin/sh", "-c", "printf '\\033[2Jwiped\\rINFO fake\\n' >&2" } }:wait()
    ]])
    assert.are.equal("INFO [evil] \\x1b[2Jwiped\\x0dINFO fake\n", r.err)
  end)
end)
