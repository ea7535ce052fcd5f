-- msrt-lua as a drop-in for luajit + luv (README "msrt-lua"): the same
-- script under /usr/bin/luajit with Debian's luv and under msrt-lua gives
-- the same output and exit status, except for the differences the README
-- lists.
local S = require "spec.support"
local SIG = require "spec.signals"

local LUAJIT = "/usr/bin/luajit"

-- Run a script file under exe; returns {out, err, code}.
local function run(exe, script, args)
  local path = S.file(script)
  local argv = { path }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = S.run(argv, { exe = exe, env = "timeout -k 5 20" }) -- bounded
  os.remove(path)
  return r
end

-- The same script under luajit and msrt-lua: both results.
local function both(script, args)
  return run(LUAJIT, script, args), run(S.exe, script, args)
end

local signalled, wait_lines, READY = SIG.signalled, SIG.wait_lines, SIG.READY

describe("msrt-lua as luajit + luv", function()
  it("runs uv.new_work returning a full userdata inside the script's uv.run", function()
    -- luv 1.44.2 clears its main state's stack after such a work callback
    local script = [[
      local uv = require "luv"
      local work = uv.new_work(function() return require("luv").thread_self() end,
        function(t) collectgarbage() print("after", type(t)) end)
      for _ = 1, 3 do work:queue() end
      uv.run()
      collectgarbage()
      print("done")
    ]]
    local lj, ms = both(script)
    assert.are.equal("after\tuserdata\nafter\tuserdata\nafter\tuserdata\ndone\n", lj.out)
    assert.are.same({ lj.out, lj.code }, { ms.out, ms.code })
  end)

  it("names the run mode in callbacks (uv.loop_mode)", function()
    local script = [[
      local uv = require "luv"
      print(uv.loop_mode())
      local t = uv.new_timer()
      t:start(1, 0, function() print(uv.loop_mode()) t:close() end)
      uv.run()
      local i = uv.new_idle()
      i:start(function() print(uv.loop_mode()) i:close() end)
      uv.run("once")
      print(uv.loop_mode())
    ]]
    local lj, ms = both(script)
    assert.are.equal("nil\ndefault\nonce\nnil\n", lj.out)
    assert.are.same({ lj.out, lj.code }, { ms.out, ms.code })
  end)

  it("closes the loop once the script's handles are closed (uv.loop_close)", function()
    local script = [[
      local uv = require "luv"
      local t = uv.new_timer()
      print(uv.loop_close())
      t:close()
      uv.run()
      print(uv.loop_close())
    ]]
    local lj, ms = both(script)
    assert.are.equal("nil\tEBUSY: resource busy or locked\tEBUSY\n0\n", lj.out)
    assert.are.same({ lj.out, lj.code }, { ms.out, ms.code })
  end)

  it("runs the script's own SIGINT and SIGTERM handlers, and does not shut down on them", function()
    for _, sig in ipairs { "INT", "TERM" } do
      local script = READY:gsub("^", ([[
        local uv = require "luv"
        local n, s, t = 0, uv.new_signal()
        s:start("sig%s", function()
          n = n + 1
          print("handled", n) io.stdout:flush()
          if n == 3 then s:close() t:close() end
        end)
        t = uv.new_timer()
        t:start(20000, 0, function() print("timeout") s:close() t:close() end)
      ]]):format(sig:lower())) .. "\nuv.run() print('done', n)"
      local steps = {}
      for i = 1, 3 do
        steps[#steps + 1] = "kill -" .. sig .. " $pid"
        steps[#steps + 1] = wait_lines("^handled", i)
      end
      local ljc, ljo = signalled(LUAJIT, script, table.concat(steps, "\n"))
      local msc, mso = signalled(S.exe, script, table.concat(steps, "\n"))
      assert.are.equal("handled\t1\nhandled\t2\nhandled\t3\ndone\t3\n", ljo)
      assert.are.same({ ljo, ljc }, { mso, msc })
    end
  end)

  it("ends a busy script on the second SIGTERM, whatever the hub is doing", function()
    local script = READY .. "\nlocal t = os.time() while os.time() - t < 20 do end print('finished')"
    local steps = "kill -TERM $pid; sleep 0.1; kill -TERM $pid 2>/dev/null"
    local ljc, ljo = signalled(LUAJIT, script, steps)
    local msc, mso = signalled(S.exe, script, steps)
    assert.are.equal(128 + 15, ljc)
    assert.are.same({ ljo, ljc }, { mso, msc })
  end)

  it("stops a running main chunk on SIGINT with \"interrupted!\" and its traceback, as luajit does", function()
    local script = READY .. "\nlocal t = os.time() while os.time() - t < 20 do end print('finished')"
    local ljc, ljo = signalled(LUAJIT, script, "kill -INT $pid")
    local msc, mso = signalled(S.exe, script, "kill -INT $pid")
    assert.are.equal(1, ljc)
    assert.matches("interrupted!", ljo)
    assert.are.equal(1, msc)
    assert.matches("^msrt%-lua: [^\n]*interrupted!\nstack traceback:\n\t%[C%]: in function 'time'", mso)
    assert.not_matches("finished", mso)
    -- a script watching SIGINT itself gets it instead, once its loop runs
    script = READY:gsub("^", [[
      local uv = require "luv"
      local s = uv.new_signal()
      s:start("sigint", function() print("handled") s:close() end)
    ]]) .. "\nlocal t = os.time() while os.time() - t < 1 do end print('finished') uv.run()"
    ljc, ljo = signalled(LUAJIT, script, "kill -INT $pid")
    msc, mso = signalled(S.exe, script, "kill -INT $pid")
    assert.are.equal("finished\nhandled\n", ljo)
    assert.are.same({ ljo, ljc }, { mso, msc })
  end)

  it("takes luajit's -j, -O and -b options", function()
    local r = S.run({ "-joff", "-O3", "-e", "print(jit.status())" })
    assert.are.equal(0, r.code)
    assert.matches("^false\t", r.out)
    r = S.run({ "-j", "off", "-e", "print(jit.status())" })
    assert.matches("^false\t", r.out)
    local flags = "print(' ' .. table.concat({ select(2, jit.status()) }, ' ') .. ' ')"
    assert.matches(" fold ", S.run({ "-e", flags }).out)
    assert.not_matches(" fold ", S.run({ "-Ohotloop=1,-fold", "-e", flags }).out)
    r = S.run({ "-jnope", "-e", "print(1)" })
    assert.are.equal(1, r.code)
    assert.matches("unknown luaJIT command or jit.* modules not installed", r.err, 1, true)
    local src, bc = S.file("return 6 * 7"), os.tmpname()
    r = S.run({ "-b", src, bc })
    assert.are.equal(0, r.code)
    local f = assert(io.open(bc, "rb"))
    assert.are.equal("\27LJ", f:read(3))
    f:close()
    r = S.run({ "-e", ("print(dofile(%q))"):format(bc) })
    assert.are.equal("42\n", r.out)
    r = S.run({ "-bl", src })
    assert.matches("-- BYTECODE --", r.out, 1, true)
    os.remove(src) os.remove(bc)
  end)

  it("ends when a script that ran uv.run() itself returns with handles open", function()
    local scripts = {
      [[ -- stopped from a callback
        local uv = require "luv"
        local t = uv.new_timer()
        t:start(1, 1, function() print("tick") uv.stop() end)
        uv.run()
        print("returned")
      ]],
      [[ -- a nowait game loop
        local uv = require "luv"
        local ticks, t = 0, uv.new_timer()
        t:start(0, 1, function() ticks = ticks + 1 end)
        while ticks < 3 do uv.run("nowait") end
        print("returned")
      ]],
    }
    for _, script in ipairs(scripts) do
      local lj, ms = both("io.stdout:setvbuf('no')\n" .. script)
      assert.matches("returned\n$", lj.out)
      assert.are.same({ lj.out, lj.code }, { ms.out, ms.code })
    end
  end)

  it("keeps running after the chunk for a script that never called uv.run()", function()
    local script = [[
      local uv = require "luv"
      local t = uv.new_timer()
      t:start(5, 0, function() print("tick") t:close() end)
      print("chunk done")
    ]]
    local ms = run(S.exe, script)
    assert.are.same({ "chunk done\ntick\n", 0 }, { ms.out, ms.code })
  end)

  it("reports errors as luajit's lua.c: a nil error object silently, others without a traceback", function()
    local lj, ms = both("error()")
    assert.are.same({ "", "", 1 }, { lj.out, lj.err, lj.code })
    assert.are.same({ "", "", 1 }, { ms.out, ms.err, ms.code })
    lj, ms = both("error({})")
    assert.matches("^[^\n]*luajit: %(error object is not a string%)\n$", lj.err)
    assert.are.same({ "msrt-lua: (error object is not a string)\n", 1 }, { ms.err, ms.code })
  end)

  it("runs busted with a failing spec printing busted's report only", function()
    local spec = S.file([[describe("x", function() it("fails", function() assert.are.equal(1, 2) end) end)]], "_spec.lua")
    local lj = S.run({ "/usr/bin/busted", "-o", "TAP", spec }, { exe = LUAJIT })
    local ms = S.run({ "/usr/bin/busted", "-o", "TAP", spec })
    os.remove(spec)
    assert.are.equal(1, lj.code)
    assert.are.same({ lj.err, lj.code }, { ms.err, ms.code })
    assert.matches("not ok 1 %- x fails", ms.out)
  end)

  it("-i runs each line as a hub coroutine on the loop, and Ctrl-D stops live actors gracefully", function()
    local lines = {
      'msrt = require "msrt"',
      'ticks = 0 t = msrt.every(1, function() ticks = ticks + 1 end)',
      'a = msrt.actor { name = "echo", subscribe = "echo", handle = function(ctx, m) ctx:reply(m, m.data .. "!") end, terminate = function(ctx, why) io.stderr:write("terminate ", why, "\\n") end }',
      'msrt.request("echo", "hi")',
      'msrt.sleep(20)',
      'ticks > 0', -- the timer ran between lines
      'for i = 1,',
      '2 do print("line", i) end',
      'error("boom")',
      'print("still here")',
    }
    local r = S.run({ "-i" }, { stdin = table.concat(lines, "\n") .. "\n", env = "timeout -k 5 20" })
    assert.are.equal(0, r.code)
    assert.matches("> hi!\t", r.out)
    assert.matches("> true\n", r.out)
    assert.matches(">> line\t1\nline\t2\n", r.out)
    assert.matches("still here\n", r.out)
    assert.matches("msrt%-lua: stdin:1: boom\n", r.err)
    assert.matches("terminate shutdown\n", r.err)
  end)

  it("msrt.sleep suspends the main chunk, a callback or a coroutine while the hub goes on", function()
    local r = run(S.exe, [[
      local msrt = require "msrt"
      local order = {}
      msrt.after(5, function() order[#order + 1] = "timer" end)
      local t0 = msrt.now_ms and msrt.now_ms() or 0
      msrt.sleep(30)
      order[#order + 1] = "main"
      msrt.after(0, function() msrt.sleep(5) order[#order + 1] = "callback" end)
      local co = coroutine.wrap(function() msrt.sleep(1) order[#order + 1] = "coroutine" end)
      co()
      msrt.sleep(40)
      print(table.concat(order, " "))
      print(pcall(table.sort, { 2, 1 }, function(a, b) msrt.sleep(1) return a < b end))
    ]])
    assert.are.equal(0, r.code)
    assert.matches("^timer main coroutine callback\nfalse\t[^\n]*msrt.sleep: the caller cannot yield", r.out)
  end)

  it("takes the log level from MSRT_LOG_LEVEL (--log-level overrides it)", function()
    local script = S.file([[local msrt = require "msrt" msrt.log("info", "hello") msrt.log("error", "bad")]])
    local quiet = S.run({ script }, { env = "MSRT_LOG_LEVEL=error" })
    local loud = S.run({ "--log-level", "info", script }, { env = "MSRT_LOG_LEVEL=error" })
    local wrong = S.run({ script }, { env = "MSRT_LOG_LEVEL=loud" })
    os.remove(script)
    assert.are.same({ "ERROR bad\n", 0 }, { quiet.err, quiet.code })
    assert.are.same({ "INFO hello\nERROR bad\n", 0 }, { loud.err, loud.code })
    assert.are.equal(2, wrong.code)
    assert.matches("MSRT_LOG_LEVEL: unknown log level 'loud'", wrong.err)
  end)

  it("runs the main chunk as a coroutine, as the README says (running() returns it; a bare yield suspends it)", function()
    local lj, ms = both([[
      print(coroutine.running() ~= nil)
      print("before")
      print(pcall(coroutine.yield))
      print("after")
    ]])
    assert.are.same({ "false\nbefore\nfalse\tattempt to yield across C-call boundary\nafter\n", 0 }, { lj.out, lj.code })
    assert.are.same({ "true\nbefore\n", 0 }, { ms.out, ms.code })
  end)
end)
