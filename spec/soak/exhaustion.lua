-- Soak: resource exhaustion (README "Reliability", fault injection).
--   msrt-lua spec/soak/exhaustion.lua nofile   (under `ulimit -n 256`)
--   msrt-lua spec/soak/exhaustion.lua nproc    (as an unprivileged user
--                                               under a low `ulimit -u`)
-- The host takes every free file descriptor (nofile) or process slot
-- (nproc: sleeper processes until a spawn fails), then a supervisor's
-- process children cannot be spawned (a restart after a SIGKILL, and
-- start_child): a clear error through the supervisor, no crash; when the
-- resource comes back the supervisor starts them again. Then, when not
-- root, a process spec with limits.nproc = 1 cannot fork (root is exempt
-- from RLIMIT_NPROC: reported, not checked). Exits 1 on any violated
-- invariant.
local msrt = require "msrt"

local MODE = arg[1] or "nofile"
assert(MODE == "nofile" or MODE == "nproc", "nofile or nproc")
local C = dofile(arg[0]:match("^(.*)/") .. "/common.lua")("exhaustion")
local check, say, sleep, wait_until = C.check, C.say, C.sleep, C.wait_until

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
    backoff = { initial_ms = 250, max_ms = 250, multiplier = 2 }, children = { agent("e1") } })
  check(msrt.request("ex.e1", 1, { timeout_ms = 2000 }), "e1 does not answer")
  -- take every descriptor (or process slot)
  local hoard = {}
  local function take()
    while true do
      local f
      if MODE == "nofile" then f = io.open("/dev/null")
      else f = msrt.process{ name = "hog" .. #hoard, cmd = { "/bin/sh", "-c", "exec sleep 600" } } end
      if not f then break end
      hoard[#hoard + 1] = f
    end
  end
  take()
  local h
  for _, k in ipairs(sup:which_children()) do if k.id == "e1" then h = k.handle end end
  h:signal("KILL")
  -- what e1 held comes back when it is reaped, before its restart (250 ms on): take that too
  check(wait_until(function() return count("child_exited") > 0 end, 3000), "e1's exit not seen")
  take()
  local held = #hoard
  say("holding %d %s", held, MODE == "nofile" and "descriptors" or "processes")
  local ok, err = sup:start_child(agent("e2"))
  check(not ok, "start_child succeeded while exhausted")
  say("start_child while exhausted: %s", tostring(err))
  check(err and tostring(err):find("e2") and (tostring(err):find("Too many open files")
    or tostring(err):find("Resource temporarily unavailable")), "unclear start error: %s", tostring(err))
  check(wait_until(function() return count("start_failed") >= 2 end, 5000), "the failed restarts were not reported")
  local seen = {}
  for _, e in ipairs(events) do seen[#seen + 1] = e.event .. (e.child and (" " .. e.child) or "") end
  say("events while exhausted: %s", table.concat(seen, ", "):sub(1, 400))
  check(count("start_failed") > 0, "no start_failed event while exhausted")
  local failed_starts = count("start_failed")
  -- the limit clears
  for _, f in ipairs(hoard) do
    if MODE == "nofile" then f:close() else f:signal("KILL") end
  end
  if MODE == "nproc" then for _, f in ipairs(hoard) do f:wait() end end
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
  -- limits.nproc: the child's shell cannot fork. RLIMIT_NPROC counts the
  -- user's processes and binds only an unprivileged user (root is exempt):
  -- checked wherever the soak runs unprivileged (exhaustion_nproc always
  -- does, as nobody), reported as unchecked as root.
  local uid = require("luv").getuid()
  if uid ~= 0 then
    local np = assert(msrt.process{ name = "np", cmd = { "/bin/sh", "-c", "/bin/true && echo forked; sleep 0.1" },
      codec = "lines", limits = { nproc = 1 } })
    local line
    local s = msrt.subscribe("agents.np.>", function(m) line = m.data end)
    local exit = np:wait()
    say("child with limits.nproc = 1: said %q, exit %s", tostring(line), tostring(exit and exit.code))
    s.unsubscribe()
    check(line == nil, "the child with limits.nproc = 1 could fork (it said %q)", tostring(line))
    check(exit and exit.code ~= 0, "the child with limits.nproc = 1 exited %s, not with its shell's fork error",
      tostring(exit and exit.code))
  else
    say("limits.nproc: not checked as root (exempt from RLIMIT_NPROC); exhaustion_nproc checks it as nobody")
  end
  local active = sup:count_children().active
  check(active == 2, "children not all running")
  C.row("faults", { { "injected", ("every free %s taken (%d), then a SIGKILL and start_child"):format(
      MODE == "nofile" and "fd" or "process slot", held) },
    { "outcome", ("%d start_failed (%s), no crash; %d children back when freed"):format(failed_starts,
      tostring(err):match("(Too many open files)") or tostring(err):match("(Resource temporarily unavailable)") or "?", active) } })
  sup:stop()
  sup:wait()
  C.accounting()
  C.finish()
end)
