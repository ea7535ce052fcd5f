local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

describe("the hub loop (driven inside the spec)", function()
  it("runs luv timers on the hub and leaves no handle open", function()
    local fired = 0
    local t = uv.new_timer()
    t:start(5, 0, function() fired = fired + 1 t:close() end)
    uv.run()
    assert.are.equal(1, fired)
    assert.are.equal(0, S.open_handles())
  end)

  it("runs msrt.after and msrt.every, and every stops", function()
    local order = {}
    local n = 0
    local ev
    ev = msrt.every(2, function()
      n = n + 1
      if n == 3 then ev.stop() end
    end)
    msrt.after(1, function() order[#order + 1] = "after" end)
    uv.run()
    assert.are.equal(3, n)
    assert.are.same({ "after" }, order)
    assert.are.equal(0, S.open_handles())
  end)

  it("runs callbacks as coroutines that can yield and be resumed", function()
    local co, got
    msrt.after(1, function()
      co = coroutine.running()
      got = coroutine.yield()
    end)
    msrt.after(5, function() coroutine.resume(co, "resumed") end)
    uv.run()
    assert.are.equal("resumed", got)
  end)

  it("does not re-enter libuv when uv.run is called inside a callback", function()
    local inner
    msrt.after(1, function() inner = uv.run() end)
    uv.run()
    assert.is_false(inner)
  end)

  it("tells a hub callback how long a request's requester still waits (reply_ttl_ms)", function()
    S.drive(function()
      local seen, n = {}, 0
      local sub = assert(msrt.subscribe("spec.ttl", function(m)
        n = n + 1
        seen[n] = m.reply_ttl_ms
        if m.reply then msrt.publish(m.reply, true) end
      end))
      local ok, err = msrt.request("spec.ttl", 1, { timeout_ms = 5000 })
      assert(ok, tostring(err))
      msrt.publish("spec.ttl", 2)
      assert(S.wait_until(function() return n == 2 end))
      assert.is_true(seen[1] > 0 and seen[1] <= 5000, tostring(seen[1]))
      assert.is_nil(seen[2])
      sub.unsubscribe()
    end)
  end)

  -- Callbacks run on coroutines kept for reuse (src/lua/host.h): one that
  -- finished runs later callbacks, one that waits is never handed another
  -- callback meanwhile.
  it("reuses finished callback coroutines, never a waiting one", function()
    S.drive(function()
      local finished, waiting, clash, n, order = {}, {}, 0, 0, {}
      local sub = assert(msrt.subscribe("spec.reuse", function(m)
        local co = coroutine.running()
        if waiting[co] then clash = clash + 1 end
        n = n + 1
        order[n] = m.data
        if m.data % 10 == 0 then -- waits: its coroutine is not free meanwhile
          waiting[co] = true
          S.sleep(5)
          waiting[co] = nil
        end
        finished[co] = true
      end))
      for i = 1, 200 do msrt.publish("spec.reuse", i) end
      assert(S.wait_until(function() return n == 200 and next(waiting) == nil end))
      sub.unsubscribe()
      local distinct = 0
      for _ in pairs(finished) do distinct = distinct + 1 end
      assert.are.equal(0, clash)
      for i = 1, 200 do assert.are.equal(i, order[i], "the callbacks started in order") end
      assert.is_true(distinct < 100, distinct .. " coroutines for 180 finished callbacks")
    end)
  end)

  it("refuses bad timer arguments with the caller's line", function()
    local ok, err = pcall(msrt.after, -1, function() end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'after'", err)
    assert.has_error(function() msrt.every(10) end)
  end)
end)

describe("msrt-lua's hub", function()
  it("prints ok from a luv timer and exits 0", function()
    local r = S.run { "-e", 'local uv=require"luv"; local t=uv.new_timer(); t:start(10,0,function() print("ok") t:close() end)' }
    assert.are.equal("ok\n", r.out)
    assert.are.equal(0, r.code)
    assert.are.equal("", r.err)
  end)

  it("keeps running after a callback error, reports it with a traceback, exits 1", function()
    local r = S.run { "-e", [[
      local msrt = require "msrt"
      msrt.after(1, function() error("bad callback") end)
      msrt.after(20, function() print("still running") end)
    ]] }
    assert.are.equal("still running\n", r.out)
    assert.matches("error in callback: %(command line%):2: bad callback", r.err)
    assert.matches("stack traceback", r.err)
    assert.are.equal(1, r.code)
  end)

  it("delivers the rest of a batch to hub callbacks after one raises", function()
    local r = S.run { "-e", [[
      local msrt = require "msrt"
      local seen = {}
      msrt.subscribe("spec.raise", function(m)
        if m.data == 2 then error("bad subscriber") end
        seen[#seen + 1] = m.data
        if m.data == 3 then print(table.concat(seen, " ")) msrt.stop() end
      end)
      for i = 1, 3 do msrt.publish("spec.raise", i) end
    ]] }
    assert.are.equal("1 3\n", r.out)
    assert.matches("error in hub callback: %(command line%):4: bad subscriber", r.err)
    assert.are.equal(1, r.code)
  end)

  it("reports an error of a coroutine resumed by its request's reply, and goes on", function()
    local r = S.run { "-e", [[
      local msrt = require "msrt"
      msrt.subscribe("spec.echo", function(m) msrt.publish(m.reply, m.data) end)
      coroutine.wrap(function()
        msrt.request("spec.echo", 1)
        error("after the reply")
      end)()
      msrt.after(50, function() print("still running") end)
    ]] }
    assert.are.equal("still running\n", r.out)
    assert.matches("error in callback: %(command line%):5: after the reply", r.err)
    assert.matches("stack traceback", r.err)
    assert.are.equal(1, r.code)
  end)

  it("lets a script call uv.run() itself, luvit-style", function()
    local r = S.run { "-e", [[
      local uv = require "luv"
      local t = uv.new_timer()
      t:start(1, 0, function() print("tick") t:close() end)
      uv.run()
      print("after run")
    ]] }
    assert.are.equal("tick\nafter run\n", r.out)
    assert.are.equal(0, r.code)
  end)

  it("returns the status from msrt.run and msrt.stop", function()
    local r = S.run { "-e", [[
      local msrt = require "msrt"
      msrt.every(5, function() end)
      msrt.after(10, function() msrt.stop("broken") end)
      print("status", msrt.run())
    ]] }
    assert.are.equal("status\t1\n", r.out)
    assert.are.equal(1, r.code)
    r = S.run { "-e", [[
      local msrt = require "msrt"
      msrt.every(5, function() end)
      msrt.after(10, function() msrt.stop() end)
    ]] }
    assert.are.equal(0, r.code)
  end)

  local function signalled(script, signals)
    local ready = os.tmpname()
    os.remove(ready)
    local path = S.file(script)
    -- each signal after the first once the shutdown hook has said
    -- "shutdown" (the host took the one before), each wait bounded (30 s)
    local kills = {}
    local until_ = "for i in $(seq 3000); do %s && break; sleep 0.01; done"
    for i, sig in ipairs(signals) do
      if i > 1 then kills[#kills + 1] = until_:format("grep -q shutdown " .. ready .. ".out") end
      kills[#kills + 1] = "kill -" .. sig .. " $pid"
    end
    local cmd = ("MSRT_READY=%s %s %s >%s.out 2>&1 & pid=$!; %s; %s; wait $pid; echo $?")
      :format(ready, S.quote(S.exe), path, ready, until_:format("[ -s " .. ready .. " ]"), table.concat(kills, "; "))
    local p = io.popen(cmd)
    local code = tonumber(p:read("*a"))
    p:close()
    local f = io.open(ready .. ".out")
    local out = f:read("*a")
    f:close()
    os.remove(ready) os.remove(ready .. ".out") os.remove(path)
    return code, out
  end

  -- Ready once the loop runs (a callback), not when the main chunk is
  -- near its end: a SIGINT while the chunk still runs is luajit's
  -- "interrupted!" (README "msrt-lua"), which a busy machine can
  -- preempt the chunk into after it wrote the file.
  local ready_script = [[
    local msrt = require "msrt"
    msrt.every(10, function() end)
    msrt.on_shutdown(function(reason) print("shutdown", reason) %s end)
    msrt.after(0, function()
      local f = io.open(os.getenv("MSRT_READY"), "w") f:write("1") f:close()
    end)
  ]]

  it("shuts down gracefully on SIGTERM, running the hooks, exit 0", function()
    local code, out = signalled(ready_script:format(""), { "TERM" })
    assert.are.equal(0, code)
    assert.are.equal("shutdown\tsignal:SIGTERM\n", out)
  end)

  it("shuts down gracefully on SIGINT", function()
    local code, out = signalled(ready_script:format(""), { "INT" })
    assert.are.equal(0, code)
    assert.are.equal("shutdown\tsignal:SIGINT\n", out)
  end)

  it("exits at once on a second signal during a stuck shutdown", function()
    local stuck = "io.stdout:flush() local t = os.time() while os.time() - t < 10 do end print('finished')"
    local code, out = signalled(ready_script:format(stuck), { "TERM", "TERM" })
    assert.are.equal(128 + 15, code)
    assert.matches("^shutdown\tsignal:SIGTERM\n$", out)
  end)
end)
