-- Supervisors (README "Supervisors"), case by case against Erlang/OTP's supervisor:
-- each strategy's restart sets and orders, transient and temporary,
-- intensity escalating through two levels, start failure, shutdown order
-- and timeouts, the backoff schedule, a custom strategy, a failing one,
-- dynamic children. Orders are read from the supervisor's events (it
-- stops children one after the other) and from the children's terminate.
local S = require "spec.support"
local msrt = require "msrt"
local core = require "msrt.core"
local supervisor = require "msrt.supervisor"
assert(msrt.start())

local drive = S.drive_supervised

-- A worker child: "crash" makes it fail, "stop" / "stop:<reason>" stop
-- it; its terminate publishes down.<id> with the reason.
local function worker(id, extra)
  local spec = { id = id, actor = {
    subscribe = "t." .. id,
    handle = function(ctx, msg)
      if msg.data == "crash" then error("crash!") end
      if msg.data == "stop" then ctx:stop() end
      if type(msg.data) == "string" and msg.data:sub(1, 5) == "stop:" then ctx:stop(msg.data:sub(6)) end
    end,
    terminate = function(ctx, reason) ctx:publish("down." .. ctx.name, reason) end,
  } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

local function children_of(ids, extra)
  local list = {}
  for i, id in ipairs(ids) do list[i] = worker(id, extra) end
  return list
end

-- Events of one supervisor; ev.ids(name) lists the children of event name
-- in the order they came; ev.wait(name, n) waits for n of them.
local function events(name)
  local c = S.collector("msrt.supervisor." .. name .. ".event")
  local ev = { c = c }
  function ev.of(what)
    local out = {}
    for _, m in ipairs(c.msgs) do
      if m.data.event == what then out[#out + 1] = m.data end
    end
    return out
  end
  function ev.ids(what)
    local out = {}
    for i, d in ipairs(ev.of(what)) do out[i] = d.child or d.supervisor end
    return out
  end
  function ev.wait(what, n)
    return S.wait_until(function() return #ev.of(what) >= (n or 1) end)
  end
  return ev
end

-- The instance id of each child, by child id.
local function instances(sup)
  local out = {}
  for _, k in ipairs(sup:which_children()) do
    out[k.id] = k.handle and k.handle:ids()[1] or false
  end
  return out
end

local function stop(sup)
  sup:stop()
  return sup:wait()
end

describe("msrt.supervisor strategies", function()
  it("one_for_one restarts only the child that failed", function()
    drive(function()
      local ev = events("s11")
      local sup = assert(msrt.supervisor{ name = "s11", intensity = 5, children = children_of{ "a", "b", "c" } })
      assert.is_true(ev.wait("child_started", 3))
      assert.are.same({ "a", "b", "c" }, ev.ids("child_started"))
      local before = instances(sup)
      msrt.publish("t.b", "crash")
      assert.is_true(ev.wait("child_restarted"))
      assert.are.same({ "b" }, ev.ids("child_exited"))
      assert.are.same({ "b" }, ev.ids("child_restarted"))
      assert.are.same({}, ev.ids("child_stopped"))
      local after = instances(sup)
      assert.are.equal(before.a, after.a)
      assert.are.equal(before.c, after.c)
      assert.are_not.equal(before.b, after.b)
      assert.matches("crash!", ev.of("child_exited")[1].reason)
      assert.are.equal(0, ev.of("child_exited")[1].restarts)
      assert.are.equal(1, ev.of("child_restarted")[1].restarts)
      stop(sup)
      ev.c.close()
    end)
  end)

  it("one_for_all stops the others in reverse start order and restarts all in start order", function()
    drive(function()
      local ev = events("s12")
      local down = S.collector("down.>")
      local sup = assert(msrt.supervisor{ name = "s12", strategy = "one_for_all", intensity = 5,
        children = children_of{ "a", "b", "c", "d" } })
      local before = instances(sup)
      msrt.publish("t.b", "crash")
      assert.is_true(ev.wait("child_restarted", 4))
      assert.are.same({ "d", "c", "a" }, ev.ids("child_stopped"))
      assert.are.same({ "a", "b", "c", "d" }, ev.ids("child_restarted"))
      -- terminate ran in that order too (b crashed: its terminate first)
      assert.is_true(down.wait(4))
      local order = {}
      for i, m in ipairs(down.msgs) do order[i] = m.subject end
      assert.are.same({ "down.b", "down.d", "down.c", "down.a" }, order)
      local after = instances(sup)
      for _, id in ipairs{ "a", "b", "c", "d" } do assert.are_not.equal(before[id], after[id]) end
      stop(sup)
      ev.c.close() down.close()
    end)
  end)

  it("rest_for_one restarts the failed child and those started after it", function()
    drive(function()
      local ev = events("s13")
      local sup = assert(msrt.supervisor{ name = "s13", strategy = "rest_for_one", intensity = 5,
        children = children_of{ "a", "b", "c", "d" } })
      local before = instances(sup)
      msrt.publish("t.b", "crash")
      assert.is_true(ev.wait("child_restarted", 3))
      assert.are.same({ "d", "c" }, ev.ids("child_stopped"))
      assert.are.same({ "b", "c", "d" }, ev.ids("child_restarted"))
      assert.are.equal(before.a, instances(sup).a)
      stop(sup)
      ev.c.close()
    end)
  end)

  it("one_for_all drops a temporary sibling instead of restarting it", function()
    drive(function()
      local ev = events("s14")
      local sup = assert(msrt.supervisor{ name = "s14", strategy = "one_for_all", intensity = 5,
        children = { worker("a"), worker("t", { restart = "temporary" }), worker("b") } })
      msrt.publish("t.a", "crash")
      assert.is_true(ev.wait("child_restarted", 2))
      assert.are.same({ "b", "t" }, ev.ids("child_stopped"))
      assert.are.same({ "a", "b" }, ev.ids("child_restarted"))
      assert.are.equal(2, sup:count_children().specs)
      stop(sup)
      ev.c.close()
    end)
  end)
end)

describe("restart types", function()
  it("transient: restarted after an abnormal exit only; normal and shutdown keep the spec", function()
    drive(function()
      local ev = events("s21")
      local sup = assert(msrt.supervisor{ name = "s21", intensity = 5,
        children = { worker("n", { restart = "transient" }), worker("s", { restart = "transient" }),
                     worker("x", { restart = "transient" }) } })
      msrt.publish("t.n", "stop")
      msrt.publish("t.s", "stop:shutdown")
      msrt.publish("t.x", "stop:failure")
      assert.is_true(ev.wait("child_exited", 3))
      assert.is_true(ev.wait("child_restarted"))
      assert.are.same({ "x" }, ev.ids("child_restarted"))
      local state = {}
      for _, k in ipairs(sup:which_children()) do state[k.id] = k.state end
      assert.are.same({ n = "stopped", s = "stopped", x = "running" }, state)
      assert.are.same({ specs = 3, active = 1, supervisors = 0, workers = 3 }, sup:count_children())
      stop(sup)
      ev.c.close()
    end)
  end)

  it("permanent: restarted after a normal exit too", function()
    drive(function()
      local ev = events("s22")
      local sup = assert(msrt.supervisor{ name = "s22", intensity = 5, children = { worker("p") } })
      msrt.publish("t.p", "stop")
      assert.is_true(ev.wait("child_restarted"))
      assert.is_true(ev.of("child_exited")[1].normal)
      stop(sup)
      ev.c.close()
    end)
  end)

  it("temporary: never restarted, and its spec is dropped", function()
    drive(function()
      local ev = events("s23")
      local sup = assert(msrt.supervisor{ name = "s23", intensity = 5,
        children = { worker("t", { restart = "temporary" }), worker("k") } })
      msrt.publish("t.t", "crash")
      assert.is_true(ev.wait("child_exited"))
      assert.is_true(S.wait_until(function() return sup:count_children().specs == 1 end))
      assert.are.same({}, ev.ids("child_restarted"))
      assert.are.equal("k", sup:which_children()[1].id)
      stop(sup)
      ev.c.close()
    end)
  end)
end)

describe("restart intensity", function()
  it("more than intensity restarts in period_ms: children stopped in reverse order, the supervisor exits and its parent restarts it", function()
    drive(function()
      local top = events("s31")
      local mid = events("s31m")
      local sup = assert(msrt.supervisor{ name = "s31", intensity = 5, children = {
        { id = "mid", supervisor = { name = "s31m", intensity = 1, period_ms = 60000,
          children = children_of{ "a", "b" } } } } })
      msrt.publish("t.b", "crash")
      assert.is_true(mid.wait("child_restarted"))
      msrt.publish("t.b", "crash") -- the second restart within the window: too many
      assert.is_true(top.wait("child_restarted"))
      assert.are.same({ "s31m" }, mid.ids("gave_up"))
      assert.matches("max restart intensity", mid.of("gave_up")[1].reason)
      assert.are.same({ "a" }, mid.ids("child_stopped"))
      local exited = top.of("child_exited")[1]
      assert.are.same({ "mid", "shutdown", true }, { exited.child, exited.reason, exited.normal })
      assert.are.same({ "mid" }, top.ids("child_restarted"))
      -- the new instance of mid runs a and b again
      assert.is_true(S.wait_until(function() return #mid.ids("child_started") == 4 end))
      stop(sup)
      top.c.close() mid.c.close()
    end)
  end)

  it("through two levels: the root giving up ends msrt.run() with status 1 and the reason", function()
    local script = S.file([[
      local msrt = require "msrt"
      msrt.subscribe("msrt.supervisor.*.event", function(m)
        io.stdout:write(m.data.supervisor, " ", m.data.event, " ", tostring(m.data.child), "\n")
      end)
      assert(msrt.supervisor{ name = "root", intensity = 1, period_ms = 60000, children = {
        { id = "mid", supervisor = { name = "mid", intensity = 0, children = {
          { id = "leaf", actor = { subscribe = "crash", handle = function() error("leaf down") end } } } } } } })
      msrt.every(20, function() msrt.publish("crash", 1) end)
      print("status", msrt.run())
    ]])
    local r = S.run({ script })
    os.remove(script)
    assert.are.equal(1, r.code)
    assert.matches("supervisor root gave up: reached max restart intensity", r.err)
    -- the log (events published once the runtime stops are not delivered)
    local _, mid_gave_up = r.err:gsub("supervisor mid: gave_up", "")
    assert.are.equal(2, mid_gave_up) -- mid gave up, was restarted once, gave up again
    -- (the log: mid's restart is published once mid's children have
    -- started, which may be after the shutdown began)
    assert.matches("supervisor root: child_restarted mid", r.err)
    assert.matches("supervisor root: gave_up: reached max restart intensity: 2 restarts", r.err)
    assert.matches("status\t1", r.out)
  end)
end)

describe("starting", function()
  it("a start failure stops the children already started (reverse order) and names the child", function()
    drive(function()
      local ev = events("s41")
      local sup, err = msrt.supervisor{ name = "s41", children = {
        worker("a"), worker("b"), { id = "bad", actor = { module = "no.such.module" } }, worker("c") } }
      assert.is_nil(sup)
      assert.are.equal("start_failed", err.code)
      assert.are.equal("supervision", err.category)
      assert.are.equal("bad", err.child)
      assert.matches("child \"bad\" failed to start: .*no%.such%.module", err.message)
      assert.is_true(ev.wait("child_stopped", 2))
      assert.are.same({ "b", "a" }, ev.ids("child_stopped"))
      ev.c.close()
    end)
  end)

  it("a restart that fails to start is tried again, each try counted against the intensity", function()
    drive(function()
      local top = events("s42")
      local mid = events("s42m")
      local prog = S.file("#!/bin/sh\nexec sleep 30\n", ".sh")
      os.execute("chmod +x " .. prog)
      local sup = assert(msrt.supervisor{ name = "s42", intensity = 5, children = {
        { id = "mid", restart = "transient", supervisor = { name = "s42m", intensity = 2, period_ms = 60000,
          children = { worker("a"), { id = "p", process = { cmd = { prog } } } } } } } })
      assert.is_true(mid.wait("child_started", 2))
      os.remove(prog) -- the restart cannot spawn it any more
      local p = sup:which_children()[1].handle:which_children()[2].handle
      p:signal("KILL")
      assert.is_true(top.wait("child_exited"))
      assert.are.equal(2, #mid.of("start_failed")) -- restart 1 and 2 fail; 3 is one too many
      assert.matches("No such file", mid.of("start_failed")[1].reason)
      assert.are.same({ "s42m" }, mid.ids("gave_up"))
      -- transient: OTP's give-up reason is shutdown, a normal exit: not restarted
      assert.are.same({}, top.ids("child_restarted"))
      stop(sup)
      top.c.close() mid.c.close()
    end)
  end)

  it("refuses bad specs: duplicate ids, two kinds, significant without auto_shutdown", function()
    drive(function()
      local _, e1 = msrt.supervisor{ children = { worker("a"), worker("a") } }
      assert.matches("duplicate child id \"a\"", e1.message)
      local _, e2 = msrt.supervisor{ children = { { id = "x", actor = {}, process = {} } } }
      assert.matches("both actor and process", e2.message)
      local _, e3 = msrt.supervisor{ children = { worker("a", { restart = "transient", significant = true }) } }
      assert.matches("significant children need auto_shutdown", e3.message)
      local _, e4 = msrt.supervisor{ auto_shutdown = "any_significant",
        children = { worker("a", { significant = true }) } }
      assert.matches("transient or temporary", e4.message)
      local _, e5 = msrt.supervisor{ strategy = "no.such.strategy" }
      assert.are.equal("bad_config", e5.code)
      local _, e6 = msrt.supervisor{ backoff = { initial_ms = 10, max_ms = 5 } }
      assert.matches("max_ms", e6.message)
      local _, e7 = msrt.supervisor{ children = { worker("a", { shutdown = -3 }) } }
      assert.matches("shutdown must be", e7.message)
      assert.has_error(function() msrt.supervisor(42) end)
      local _, e8 = msrt.supervisor("/no/such/supervisor.lua") -- a spec file
      assert.are.equal("not_found", e8.code)
    end)
  end)
end)

describe("shutdown", function()
  it("stops children in reverse start order, each waited for", function()
    drive(function()
      local ev = events("s51")
      local down = S.collector("down.>")
      local sup = assert(msrt.supervisor{ name = "s51", children = children_of{ "a", "b", "c" } })
      local rec = stop(sup)
      assert.are.same({ name = "s51", reason = "shutdown", normal = true }, rec)
      assert.is_true(ev.wait("stopped"))
      assert.are.same({ "c", "b", "a" }, ev.ids("child_stopped"))
      assert.is_true(down.wait(3))
      local order = {}
      for i, m in ipairs(down.msgs) do order[i] = m.subject .. "=" .. m.data end
      assert.are.same({ "down.c=shutdown", "down.b=shutdown", "down.a=shutdown" }, order)
      ev.c.close() down.close()
    end)
  end)

  it("kills a process that outlives its shutdown ms; brutal_kill at once; infinity waits", function()
    drive(function()
      local ev = events("s52")
      local out = S.collector("agents.*.out")
      local stubborn = { "/bin/sh", "-c", "trap '' TERM; echo '{}'; while :; do sleep 0.05; done" }
      local polite = { "/bin/sh", "-c", "trap 'exit 0' TERM; echo '{}'; while :; do sleep 0.05; done" }
      local sup = assert(msrt.supervisor{ name = "s52", children = {
        { id = "inf", process = { cmd = polite }, shutdown = "infinity" },
        { id = "brutal", process = { cmd = polite }, shutdown = "brutal_kill" },
        { id = "slow", process = { cmd = stubborn }, shutdown = 100 } } })
      assert.is_true(out.wait(3)) -- each has set its trap
      out.close()
      stop(sup)
      assert.is_true(ev.wait("stopped"))
      local reasons = {}
      for _, d in ipairs(ev.of("child_stopped")) do reasons[#reasons + 1] = d.child .. "=" .. d.reason end
      assert.are.same({ "slow=signal KILL", "brutal=signal KILL", "inf=normal" }, reasons)
      ev.c.close()
    end)
  end)

  it("gives up on an actor stuck past its shutdown ms (reason killed) and goes on", function()
    drive(function()
      local ev = events("s53")
      local sup = assert(msrt.supervisor{ name = "s53", children = {
        worker("a"),
        { id = "busy", shutdown = 50, actor = { subscribe = "t.busy", handle = function(ctx)
          ctx:publish("busy.in", true)
          local t = os.clock() + 0.4
          while os.clock() < t do end
        end } } } })
      local inside = S.collector("busy.in")
      msrt.publish("t.busy", "spin")
      assert.is_true(inside.wait(1))
      inside.close()
      stop(sup)
      assert.is_true(ev.wait("stopped"))
      local reasons = {}
      for _, d in ipairs(ev.of("child_stopped")) do reasons[#reasons + 1] = d.child .. "=" .. d.reason end
      assert.are.same({ "busy=killed", "a=shutdown" }, reasons)
      S.wait_until(function() return msrt.metrics().actors == 0 end, 5000)
      ev.c.close()
    end)
  end)
end)

describe("backoff", function()
  it("follows initial_ms * multiplier^n capped at max_ms, within the jitter bounds", function()
    drive(function()
      local ev = events("s61")
      local sup = assert(msrt.supervisor{ name = "s61", intensity = 20, period_ms = 60000,
        backoff = { initial_ms = 10, max_ms = 40, multiplier = 2, jitter = 0.25 }, children = { worker("a") } })
      for i = 1, 5 do
        msrt.publish("t.a", "crash")
        assert.is_true(ev.wait("child_restarted", i))
      end
      local want = { 10, 20, 40, 40, 40 }
      local got = ev.of("restart_scheduled")
      assert.are.equal(5, #got)
      for i, d in ipairs(got) do
        assert.is_true(d.delay_ms >= want[i] * 0.75 and d.delay_ms <= want[i] * 1.25,
          ("restart %d: %s ms, want %d +/- 25%%"):format(i, tostring(d.delay_ms), want[i]))
      end
      stop(sup)
      ev.c.close()
    end)
  end)

  it("starts afresh once a child stayed up period_ms", function()
    drive(function()
      local ev = events("s62")
      local sup = assert(msrt.supervisor{ name = "s62", intensity = 20, period_ms = 1000,
        backoff = { initial_ms = 10, max_ms = 1000, multiplier = 4 }, children = { worker("a") } })
      msrt.publish("t.a", "crash")
      assert.is_true(ev.wait("child_restarted", 1))
      msrt.publish("t.a", "crash")
      assert.is_true(ev.wait("child_restarted", 2))
      S.sleep(1100)
      msrt.publish("t.a", "crash")
      assert.is_true(ev.wait("child_restarted", 3))
      local d = {}
      for i, e in ipairs(ev.of("restart_scheduled")) do d[i] = e.delay_ms end
      assert.are.same({ 10, 40, 10 }, d)
      stop(sup)
      ev.c.close()
    end)
  end)

  it("the schedule itself (core.backoff_delay)", function()
    local b = { initial_ms = 100, max_ms = 1000, multiplier = 3, jitter = 0.1 }
    assert.are.equal(100, core.backoff_delay(b, 0, 0.5))
    assert.are.equal(900, core.backoff_delay(b, 2, 0.5))
    assert.are.equal(1000, core.backoff_delay(b, 9, 0.5))
    assert.are.equal(900, core.backoff_delay(b, 9, 0))
    assert.is_true(math.abs(core.backoff_delay(b, 9, 1) - 1100) < 1e-9)
  end)
end)

describe("strategies written in Lua", function()
  it("a custom strategy decides: here, a failure of a restarts b instead, after 5 ms", function()
    drive(function()
      local ev = events("s71")
      local seen
      local sup = assert(msrt.supervisor{ name = "s71", intensity = 5,
        strategy = function(event, view)
          seen = { event = event, view = view }
          if event.child == "a" then return { { op = "restart", child = "b", delay_ms = 5 } } end
          return {}
        end,
        children = children_of{ "a", "b" } })
      msrt.publish("t.a", "crash")
      assert.is_true(ev.wait("child_restarted"))
      assert.are.same({ "b" }, ev.ids("child_stopped"))
      assert.are.same({ "b" }, ev.ids("child_restarted"))
      assert.are.equal(5, ev.of("restart_scheduled")[1].delay_ms)
      assert.are.equal("exit", seen.event.kind)
      assert.are.equal("permanent", seen.event.restart)
      assert.are.equal(false, seen.event.normal)
      assert.are.equal(5, seen.event.restarts.intensity)
      assert.are.same({ "a", "b" }, { seen.view.children[1].id, seen.view.children[2].id })
      assert.are.same({ "a", "b" }, seen.view.group("all", "a"))
      assert.are.equal("stopped", sup:which_children()[1].state)
      stop(sup)
      ev.c.close()
    end)
  end)

  it("a strategy module given by path is used the same way", function()
    drive(function()
      local ev = events("s72")
      local path = S.file([[return { decide = function(event, view)
        return { { op = "restart", child = event.child, delay_ms = 1 } } end }]])
      local sup = assert(msrt.supervisor{ name = "s72", strategy = path, intensity = 5,
        children = { worker("a", { restart = "transient" }) } })
      msrt.publish("t.a", "stop") -- a normal exit: this strategy restarts anyway
      assert.is_true(ev.wait("child_restarted"))
      os.remove(path)
      stop(sup)
      ev.c.close()
    end)
  end)

  local function escalating(strategy, check)
    drive(function()
      local top = events("s73")
      local mid = events("s73m")
      local sup = assert(msrt.supervisor{ name = "s73", intensity = 5, children = {
        { id = "mid", supervisor = { name = "s73m", strategy = strategy, children = children_of{ "a", "b" } } } } })
      msrt.publish("t.b", "crash")
      assert.is_true(top.wait("child_restarted"))
      local failed = mid.of("strategy_failed")[1]
      assert.are.equal("b", failed.child)
      check(failed.reason)
      assert.are.same({ "a" }, mid.ids("child_stopped"))
      local exited = top.of("child_exited")[1]
      assert.are.equal(false, exited.normal) -- an escalation is abnormal
      assert.are.equal(failed.reason, exited.reason)
      stop(sup)
      top.c.close() mid.c.close()
    end)
  end

  it("a strategy that errors counts as escalate, and the error is reported", function()
    escalating(function() error("policy bug") end, function(reason)
      assert.matches("strategy error: .*policy bug", reason)
    end)
  end)

  it("a strategy returning nonsense counts as escalate, with why", function()
    escalating(function() return { { op = "reboot", child = "b" } } end, function(reason)
      assert.matches("op must be restart, stop, escalate or ignore, not \"reboot\"", reason)
    end)
    escalating(function() return "restart" end, function(reason)
      assert.matches("not a list of actions", reason)
    end)
    escalating(function() return { { op = "restart", child = "zz" } } end, function(reason)
      assert.matches("unknown child \"zz\"", reason)
    end)
    escalating(function() return { { op = "restart", child = "b", delay_ms = -1 } } end, function(reason)
      assert.matches("delay_ms must be a number >= 0", reason)
    end)
  end)

  it("an unhealthy report goes through the strategy like an exit (the built-ins restart)", function()
    drive(function()
      local ev = events("s74")
      local sup = assert(msrt.supervisor{ name = "s74", intensity = 5,
        children = { worker("a", { restart = "transient" }) } })
      local before = instances(sup).a
      assert.is_true(sup:unhealthy("a", "liveness failed"))
      assert.is_true(ev.wait("child_restarted"))
      assert.are.same({ "a" }, ev.ids("child_unhealthy"))
      assert.are.same({ "a" }, ev.ids("child_stopped"))
      assert.are_not.equal(before, instances(sup).a)
      stop(sup)
      ev.c.close()
    end)
  end)
end)

describe("dynamic children", function()
  it("start_child, terminate_child, restart_child, delete_child, which_children, count_children", function()
    drive(function()
      local sup = assert(msrt.supervisor{ name = "s81", children = { worker("a") } })
      local h, id = sup:start_child(worker("b", { restart = "transient" }))
      assert.is_truthy(h)
      assert.are.equal("b", id)
      local _, dup = sup:start_child(worker("b"))
      assert.matches("duplicate", dup.message)
      local _, bad = sup:start_child({ id = "m", actor = { module = "no.such.module" } })
      assert.are.equal("start_failed", bad.code)
      assert.are.equal(2, sup:count_children().specs)
      local _, running = sup:delete_child("b")
      assert.matches("running", running.message)
      assert.is_true(sup:terminate_child("b"))
      assert.are.equal("stopped", sup:which_children()[2].state)
      assert.are.same({ specs = 2, active = 1, supervisors = 0, workers = 2 }, sup:count_children())
      assert.is_truthy(sup:restart_child("b"))
      local _, again = sup:restart_child("b")
      assert.matches("running", again.message)
      assert.is_true(sup:terminate_child("b"))
      assert.is_true(sup:delete_child("b"))
      assert.are.equal("not_found", select(2, sup:delete_child("b")).code)
      assert.are.equal("not_found", select(2, sup:terminate_child("zz")).code)
      assert.are.same({ "a" }, { sup:which_children()[1].id, sup:which_children()[2] })
      stop(sup)
      local _, closed = sup:start_child(worker("c"))
      assert.are.equal("closed", closed.code)
    end)
  end)

  it("simple_one_for_one: children from the template with their own args, restarted one by one", function()
    drive(function()
      local ev = events("s82")
      local echo = S.collector("echo.>")
      local sup = assert(msrt.supervisor{ name = "s82", strategy = "simple_one_for_one", intensity = 5,
        children = { { id = "w", actor = { subscribe = "w.crash",
          init = function(ctx, args) ctx:publish("echo." .. args.n, args.n) end,
          handle = function(ctx, msg) if msg.data == ctx.args.n then error("x") end end } } } })
      assert.are.equal(0, sup:count_children().specs)
      for n = 1, 3 do
        local h, id = sup:start_child({ n = n })
        assert.is_truthy(h)
        assert.are.equal("w_" .. n, id)
      end
      assert.is_true(echo.wait(3))
      msrt.publish("w.crash", 2)
      assert.is_true(ev.wait("child_restarted"))
      assert.are.same({ "w_2" }, ev.ids("child_restarted"))
      assert.is_true(echo.wait(4))
      assert.are.equal("echo.2", echo.msgs[4].subject)
      -- OTP: a terminated child of simple_one_for_one is gone, spec and all
      assert.is_true(sup:terminate_child("w_1"))
      assert.are.same({ specs = 2, active = 2, supervisors = 0, workers = 2 }, sup:count_children())
      assert.matches("not for simple_one_for_one", select(2, sup:restart_child("w_2")).message)
      assert.matches("not for simple_one_for_one", select(2, sup:delete_child("w_2")).message)
      stop(sup)
      ev.c.close() echo.close()
    end)
  end)

  it("auto_shutdown any_significant: a significant transient child ending normally ends the supervisor", function()
    drive(function()
      local ev = events("s83")
      local sup = assert(msrt.supervisor{ name = "s83", auto_shutdown = "any_significant", children = {
        worker("a"), worker("s", { restart = "transient", significant = true }) } })
      msrt.publish("t.s", "stop")
      local rec = sup:wait()
      assert.are.same({ name = "s83", reason = "shutdown", normal = true }, rec)
      assert.is_true(ev.wait("stopped"))
      assert.are.same({ "s" }, ev.ids("auto_shutdown"))
      assert.are.same({ "a" }, ev.ids("child_stopped"))
      ev.c.close()
    end)
  end)

  it("auto_shutdown all_significant waits for the last significant child", function()
    drive(function()
      local ev = events("s84")
      local sup = assert(msrt.supervisor{ name = "s84", auto_shutdown = "all_significant", children = {
        worker("s1", { restart = "temporary", significant = true }),
        worker("s2", { restart = "transient", significant = true }) } })
      msrt.publish("t.s1", "crash")
      -- s1's exit handled: the supervisor decides on auto_shutdown in the
      -- same step as it announces child_exited
      assert.is_true(ev.wait("child_exited"))
      assert.are.same({ "s1" }, ev.ids("child_exited"))
      assert.is_nil(sup.exit)
      assert.are.equal("running", sup.state)
      assert.are.same({}, ev.ids("auto_shutdown"))
      msrt.publish("t.s2", "stop")
      assert.are.equal("shutdown", sup:wait().reason)
      ev.c.close()
    end)
  end)
end)

-- OTP's start_link order: a child's start returns once its init has (an
-- actor's init on a worker, a process spawned, with start = "ready" its
-- probes passed), and only then does the next child start.
describe("start order", function()
  -- A child whose init spins ms milliseconds, then says so on inits.
  local function slow(id, ms, extra)
    local spec = { id = id, actor = { args = { ms = ms },
      init = function(ctx, args)
        local t0 = os.clock()
        while os.clock() - t0 < args.ms / 1000 do end
        ctx:publish("inits", ctx.name)
      end,
      handle = function(_, msg) if msg.data == "crash" then error("crash!") end end } }
    spec.actor.subscribe = "t." .. id
    for k, v in pairs(extra or {}) do spec[k] = v end
    return spec
  end

  it("children a, b, c with inits of varied duration start in order, 30 times", function()
    drive(function()
      local inits = S.collector("inits")
      for round = 1, 30 do
        local sup = assert(msrt.supervisor{ name = "s90",
          children = { slow("a", 15), slow("b", 0), slow("c", 5) } })
        -- msrt.supervisor returned: every init has run, in order
        assert.are.equal(3 * round, #inits.msgs)
        local got = {}
        for i = 3 * round - 2, 3 * round do got[#got + 1] = inits.msgs[i].data end
        assert.are.same({ "a", "b", "c" }, got)
        for _, k in ipairs(sup:which_children()) do assert.are.equal("running", k.state) end
        stop(sup)
      end
      inits.close()
    end, 60000)
  end)

  it("an error in init is a start failure naming the child and the error", function()
    drive(function()
      local inits = S.collector("inits")
      local ev = events("s91")
      local bad = slow("b", 0)
      bad.actor.init = function() error("database unreachable") end
      local sup, err = msrt.supervisor{ name = "s91", children = { slow("a", 5), bad, slow("c", 0) } }
      assert.is_nil(sup)
      assert.are.equal("start_failed", err.code)
      assert.are.equal("b", err.child)
      assert.matches("child \"b\" failed to start: .*database unreachable", err.message)
      assert.are.same({ "a" }, inits.data()) -- c never started
      assert.is_true(ev.wait("stopped"))
      assert.are.same({ "a" }, ev.ids("child_stopped"))
      inits.close() ev.c.close()
    end)
  end)

  -- The probe reaches its threshold while init spins; init ends only
  -- once the probe has failed twice (a file the probe writes), so the
  -- stop that follows lands after init has said it started. The start
  -- has already failed: init's late word must not turn it into a success
  -- (the child would then be stopped and never restarted).
  it("a startup probe failing during a slow init is a start failure, though the init ends before the stop", function()
    drive(function()
      local ev = events("s94")
      local flag = os.tmpname()
      os.remove(flag)
      local fails = 0
      local probe = { lua = function()
        fails = fails + 1
        if fails == 2 then assert(io.open(flag, "w")):close() end
        return false, "not ready"
      end, interval_ms = 5, failure_threshold = 2 }
      local b = slow("b", 0, { health = { startup = probe } })
      b.actor.args.flag = flag
      b.actor.init = function(ctx, args)
        for _ = 1, 10000 do -- at most ~10 s
          local f = io.open(args.flag)
          if f then f:close() break end
          local t0 = os.clock()
          while os.clock() - t0 < 0.001 do end
        end
      end
      local sup, err = msrt.supervisor{ name = "s94", children = { slow("a", 0), b } }
      os.remove(flag)
      assert.is_nil(sup)
      assert.are.equal("start_failed", err.code)
      assert.are.equal("b", err.child)
      assert.matches("startup probe failed: not ready", err.message)
      assert.is_true(ev.wait("stopped"))
      ev.c.close()
    end)
  end)

  it("one_for_all restarts in order, each once the one before has started", function()
    drive(function()
      local inits = S.collector("inits")
      local ev = events("s92")
      local sup = assert(msrt.supervisor{ name = "s92", strategy = "one_for_all", intensity = 10,
        children = { slow("a", 15), slow("b", 0), slow("c", 5) } })
      for round = 1, 5 do
        msrt.publish("t.b", "crash")
        assert.is_true(ev.wait("child_restarted", 3 * round))
        assert.are.same({ "a", "b", "c" }, { inits.data()[3 * round + 1], inits.data()[3 * round + 2],
          inits.data()[3 * round + 3] })
      end
      stop(sup)
      inits.close() ev.c.close()
    end)
  end)

  it("start = \"ready\" waits for the child's probes before the next child starts", function()
    drive(function()
      local inits = S.collector("inits")
      local probes, q_before_ready = 0, nil
      local sup = assert(msrt.supervisor{ name = "s93", children = {
        { id = "p", process = { cmd = { "sleep", "30" } }, start = "ready",
          health = { readiness = { interval_ms = 10, lua = function()
            probes = probes + 1
            if probes == 3 then q_before_ready = #inits.msgs > 0 end
            return probes >= 3
          end } } },
        slow("q", 0) } })
      -- ready at the third probe, and q started after it (the probe goes
      -- on every 10 ms while q starts: more runs by now on a busy host)
      assert.is_true(probes >= 3)
      assert.is_false(q_before_ready)
      assert.are.same({ "q" }, inits.data())
      local _, err = msrt.supervisor{ children = { { id = "p", process = { cmd = { "true" } }, start = "ready" } } }
      assert.matches("start = \"ready\" needs a startup or readiness probe", err.message)
      stop(sup)
      inits.close()
    end)
  end)

  -- Children whose start does not wait (processes, services) let the
  -- hub's loop turn between them: a tree of many processes is not one
  -- long turn (scripts/bench/stalls.lua on the crash storm's start).
  it("lets the hub loop turn between the starts of process and service children", function()
    drive(function()
      local order = {}
      local function svc(id)
        return { id = id, service = { start = function()
          order[#order + 1] = id
          local h = {}
          function h.on_exit(_, fn) h.exit = fn end
          function h.stop() if h.exit then local f = h.exit h.exit = nil f({ reason = "shutdown", normal = true }) end end
          function h.kill() h.stop() end
          return h
        end } }
      end
      msrt.after(0, function() order[#order + 1] = "tick" end)
      local sup = assert(msrt.supervisor{ name = "s_turns", children = { svc("s1"), svc("s2"), svc("s3") } })
      assert.are.same({ "s1", "tick", "s2", "s3" }, order)
      stop(sup)
      -- stopped in such a turn: the started child is stopped, no other starts
      order = {}
      msrt.after(0, function()
        for _, r in ipairs(supervisor.roots()) do if r.name == "s_turns2" then r:stop() end end
      end)
      local none, err = msrt.supervisor{ name = "s_turns2", children = { svc("s1"), svc("s2") } }
      assert.is_nil(none)
      assert.are.equal("start_failed", err and err.code)
      assert.are.same({ "s1" }, order)
    end)
  end)
end)

-- OTP's application stop: msrt.stop(), SIGTERM and `ctl stop` stop the
-- supervision trees first (the newest root first, each top-down, children
-- in reverse start order, each waited for), then what is outside any tree.
describe("host shutdown", function()
  -- The host: two roots and a process outside any tree, each child a
  -- shell that appends its name to a file when TERM reaches it; once all
  -- six have said they are up, `how` stops the host.
  local HOST = [[
    local msrt = require "msrt"
    local uv = require "luv"
    local file, how, ctl = ...
    local function child(name)
      -- (it ends with the host if the host dies first)
      return { allow_publish = { "up" }, cmd = { "sh", "-c", "trap 'echo " .. name .. " >> " .. file .. "; exit 0' TERM; " ..
        "echo '{\"subject\":\"up\",\"data\":\"" .. name .. "\"}'; while kill -0 $PPID 2>/dev/null; do sleep 0.02; done" } }
    end
    local function kid(name) return { id = name, process = child(name), shutdown = 3000 } end
    local loner = child("loner")
    loner.name = "loner"
    msrt.subscribe("msrt.supervisor.*.event", function(m)
      if m.data.event == "child_stopped" then print(m.data.supervisor .. " child_stopped " .. m.data.child) end
    end)
    local up = 0
    msrt.subscribe("up", function()
      up = up + 1
      if up < 6 then return end
      if how == "stop" then msrt.stop()
      elseif how == "term" then uv.kill(uv.os_getpid(), "sigterm")
      else
        local pipe = uv.new_pipe(false)
        pipe:connect(ctl, function() pipe:write("stop\n") end)
      end
    end)
    if how == "ctl" then assert(msrt.start{ ctl = ctl }) end
    assert(msrt.supervisor{ name = "app", children = { kid("db"), kid("api"),
      { id = "workers", supervisor = { name = "workers", children = { kid("w1"), kid("w2") } } } } })
    assert(msrt.process(loner))
    assert(msrt.supervisor{ name = "later", children = { kid("l1") } })
  ]]

  for _, how in ipairs({ "stop", "term", "ctl" }) do
    it("by " .. how .. ": trees first, newest root first, each child in reverse start order", function()
      local script = S.file(HOST)
      local file = os.tmpname()
      local ctl = os.tmpname() .. ".sock"
      local r = S.run({ script, file, how, ctl }, { env = "timeout 60" })
      os.remove(script)
      local f = assert(io.open(file))
      local order = {}
      for line in f:lines() do order[#order + 1] = line end
      f:close()
      os.remove(file)
      assert.are.equal(0, r.code, r.err)
      assert.are.same({ "l1", "w2", "w1", "api", "db", "loner" }, order)
      local events = {}
      for line in r.out:gmatch("[^\n]+") do events[#events + 1] = line end
      assert.are.same({ "later child_stopped l1", "workers child_stopped w2", "workers child_stopped w1",
        "app child_stopped workers", "app child_stopped api", "app child_stopped db" }, events)
      assert.matches("supervisor app: child_stopped db", r.err)
    end)
  end
end)

describe("a stop that takes over another", function()
  it("terminate_child of a child a restart is stopping: the restart ends and later exits are handled", function()
    drive(function()
      local ev = events("s95")
      -- a takes 300 ms to go after TERM (once it says so); b crashes on demand
      local up = S.collector("agents.a.up")
      local sup = assert(msrt.supervisor{ name = "s95", strategy = "one_for_all", intensity = 10, children = {
        { id = "a", shutdown = 5000, process = { cmd = { "sh", "-c",
          "trap 'sleep 0.3; exit 0' TERM; echo '{\"subject\":\"agents.a.up\"}'; while :; do sleep 0.02; done" } } },
        worker("b") } })
      assert.is_true(up.wait(1))
      msrt.publish("t.b", "crash")
      assert.is_true(S.wait_until(function() return sup:which_children()[1].state == "stopping" end))
      assert.is_true(sup:terminate_child("a")) -- takes over the restart's stop of a
      assert.is_true(ev.wait("child_restarted", 2)) -- the restart went on: a, then b
      msrt.publish("t.b", "crash") -- and the next exit is handled
      assert.is_true(ev.wait("child_exited", 2))
      assert.is_true(ev.wait("child_restarted", 4))
      stop(sup)
      ev.c.close() up.close()
    end)
  end)
end)
