-- Soak: resource exhaustion (issue 9, fault injection). Run with a low
-- RLIMIT_NOFILE (scripts/soak: `ulimit -n 256`): the host takes every free
-- descriptor, then a supervisor's process children cannot be spawned (a
-- restart after a SIGKILL, and start_child): a clear error through the
-- supervisor, no crash; when the descriptors come back the supervisor
-- starts them again. Then RLIMIT_NPROC: a process spec with limits.nproc
-- whose child cannot fork reports it and is restarted as any crash.
-- Exits 1 on any violated invariant.
local msrt = require "msrt"

local failures = {}
local function check(ok, fmt, ...)
  if not ok then failures[#failures + 1] = fmt:format(...) end
end
local function say(fmt, ...) io.stdout:write(("soak exhaustion: " .. fmt .. "\n"):format(...)) io.stdout:flush() end
local function sleep(ms)
  local co = coroutine.running()
  msrt.after(ms, function() coroutine.resume(co) end)
  coroutine.yield()
end
local function wait_until(fn, ms)
  for _ = 1, (ms or 5000) / 10 do
    if fn() then return true end
    sleep(10)
  end
  return fn()
end

local ECHO = [[while IFS= read -r l; do r=${l#*\"reply\":\"}; r=${r%%\"*}; ]]
  .. [[printf '{"subject":"%s","data":"p"}\n' "$r"; done]]
local function agent(id, limits)
  return { id = id, shutdown = "brutal_kill",
    process = { name = id, cmd = { "/bin/sh", "-c", ECHO }, subscribe = "ex." .. id, limits = limits } }
end
local events = {}
msrt.subscribe("msrt.supervisor.ex.event", function(m) events[#events + 1] = m.data end)
local function count(what)
  local n = 0
  for _, e in ipairs(events) do if e.event == what then n = n + 1 end end
  return n
end

msrt.after(0, function()
  local sup = assert(msrt.supervisor{ name = "ex", intensity = 100000, period_ms = 1000,
    backoff = { initial_ms = 20, max_ms = 100, multiplier = 2 }, children = { agent("e1") } })
  check(msrt.request("ex.e1", 1, { timeout_ms = 2000 }), "e1 does not answer")
  -- take every descriptor
  local hoard = {}
  while true do
    local f = io.open("/dev/null")
    if not f then break end
    hoard[#hoard + 1] = f
  end
  -- leave none: the next spawn's pipes cannot be made
  say("holding %d descriptors", #hoard)
  local h
  for _, k in ipairs(sup:which_children()) do if k.id == "e1" then h = k.handle end end
  h:signal("KILL")
  local ok, err = sup:start_child(agent("e2"))
  check(not ok, "start_child succeeded with no descriptors")
  say("start_child with no descriptors: %s", tostring(err))
  check(err and tostring(err):find("e2") and (tostring(err):find("descriptor") or tostring(err):find("EMFILE")
    or tostring(err):find("files")), "unclear start error: %s", tostring(err))
  check(wait_until(function() return count("start_failed") + count("restart_failed") > 0
    or #events > 2 end, 3000), "the failed restart was not reported")
  sleep(300)
  local seen = {}
  for _, e in ipairs(events) do seen[#seen + 1] = e.event .. (e.child and (" " .. e.child) or "") end
  say("events while exhausted: %s", table.concat(seen, ", "):sub(1, 400))
  check(count("start_failed") > 0, "no start_failed event while exhausted")
  -- the limit clears
  for _, f in ipairs(hoard) do f:close() end
  hoard = nil
  collectgarbage()
  check(wait_until(function()
    for _, k in ipairs(sup:which_children()) do if k.id == "e1" and k.handle and k.handle:pid() then return true end end
  end, 5000), "e1 not restarted once descriptors came back")
  check(msrt.request("ex.e1", 1, { timeout_ms = 2000 }), "e1 does not answer after recovery")
  local ok2, err2 = sup:start_child(agent("e2"))
  check(ok2, "start_child after recovery: %s", tostring(err2))
  check(msrt.request("ex.e2", 1, { timeout_ms = 2000 }), "e2 does not answer")
  say("recovered: %d children running", sup:count_children().active)
  -- RLIMIT_NPROC: the child's shell cannot fork
  local np = assert(msrt.process{ name = "np", cmd = { "/bin/sh", "-c", "/bin/true && echo forked || echo nofork; sleep 0.1" },
    codec = "lines", limits = { nproc = 1 } })
  local line
  local s = msrt.subscribe("agents.np.>", function(m) line = m.data end)
  local exit = np:wait()
  say("child with limits.nproc = 1: said %q, exit %s", tostring(line), tostring(exit and exit.code))
  s.unsubscribe()
  -- (root is exempt from RLIMIT_NPROC: then the child forks anyway)
  check(exit ~= nil, "the nproc-limited child never exited")
  check(sup:count_children().active == 2, "children not all running")
  sup:stop()
  sup:wait()
  for _, f in ipairs(failures) do say("FAILED: %s", f) end
  say(#failures == 0 and "passed" or "failed")
  msrt.stop(#failures == 0 and "normal" or "failed", #failures == 0 and 0 or 1)
end)
