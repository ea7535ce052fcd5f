-- Soak: crash storm (README "Reliability"), optionally with the reload
-- storm. Process agents (a mawk JSON-lines echo) and actors under one
-- supervision tree; a random child is killed (SIGKILL for a process, an
-- error() for an actor) every few ms while requests flow through two queue
-- groups with retry. Prints what it accounts; exits 1 on any violated
-- invariant. Run by scripts/soak:
--   msrt-lua spec/soak/crash_storm.lua SECONDS PROCS ACTORS REQUESTS KILL_MS [reload DIR | - -] [CONCURRENT]
-- Requests are issued (CONCURRENT at a time, default 256) until REQUESTS
-- have been or the storm's SECONDS are over, whichever comes first; those
-- in flight then finish (with their retries) before the accounting.
local msrt = require "msrt"
local uv = require "luv"

local SECONDS = tonumber(arg[1]) or 10
local PROCS, ACTORS = tonumber(arg[2]) or 20, tonumber(arg[3]) or 200
local REQUESTS, KILL_MS = tonumber(arg[4]) or 20000, tonumber(arg[5]) or 5
local RELOAD, DIR = arg[6] == "reload", arg[7]
local GROUP = 10 -- children per robust supervisor
local ATTEMPTS, TIMEOUT_MS = 8, 250

local C = dofile(arg[0]:match("^(.*)/") .. "/common.lua")("crash_storm")
local check, say = C.check, C.say
local function rss_kib()
  local f = io.open("/proc/self/statm")
  local pages = f:read("*n") and f:read("*n")
  f:close()
  return pages * 4
end

-- ---- the tree ---------------------------------------------------------------
-- root (one_for_one, never gives up) -> robust supervisors (within their
-- intensity: must never give up) + fragile supervisors (intensity 0: any
-- kill of their child must make them give up; root restarts them).
-- The agent: a JSON-lines echo in mawk (Debian's required awk), which
-- reads its stdin a buffer at a time and, under -W interactive (stdout
-- unbuffered, so each reply goes at once), writes each reply in one
-- system call: the line is made first and printed whole through "%s",
-- since an unbuffered printf writes its format's literal text a byte per
-- call (~40 writes a reply, each able to wake the host for a part of a
-- line: the agents then held most of the CPU). /bin/sh's `read` took a
-- line a byte per system call likewise. Either way the storm's rate
-- measured the agents, not the host.
local ECHO = [[{ r = $0; sub(/.*"reply":"/, "", r); sub(/".*/, "", r); ]]
  .. [[printf "%s", "{\"subject\":\"" r "\",\"data\":\"p\"}\n" }]]
local function proc_child(id)
  return { id = id, shutdown = "brutal_kill",
    process = { name = id, cmd = { "mawk", "-W", "interactive", ECHO }, subscribe = "req.p", queue = "wp" } }
end
local function actor_child(id)
  return { id = id, shutdown = "brutal_kill", actor = { name = id, subscribe = { "req.a", "kill." .. id }, queue = "wa",
    handle = function(ctx, msg)
      if msg.data == "die" then error("killed by the soak") end
      ctx:reply(msg, "a")
    end } }
end

local strategy = "one_for_one"
if RELOAD then strategy = DIR .. "/strategy.lua" end
local kids, victims, robust = {}, {}, {}
local function group(name, list, intensity)
  kids[#kids + 1] = { id = name, supervisor = { name = name, strategy = strategy, intensity = intensity,
    period_ms = 1000, backoff = { initial_ms = 1, max_ms = 20, multiplier = 2 }, children = list } }
end
local n = 0
local function add_groups(count, make, prefix)
  local list
  for i = 1, count do
    if (i - 1) % GROUP == 0 then list = {} end
    local id = prefix .. i
    list[#list + 1] = make(id)
    victims[#victims + 1] = { id = id, kind = prefix == "p" and "process" or "actor" }
    if #list == GROUP or i == count then
      n = n + 1
      local name = "r" .. prefix .. n
      robust[name] = true
      -- within intensity: at most GROUP*? kills a second reach one group
      group(name, list, 100000)
    end
  end
end
add_groups(PROCS, proc_child, "p")
add_groups(ACTORS, actor_child, "a")
for i = 1, 2 do -- fragile: one actor each, intensity 0
  local id = "f" .. i
  group("frag" .. i, { actor_child(id) }, 0)
  victims[#victims + 1] = { id = id, kind = "actor", fragile = true }
end

local gave_up, restarts_by = {}, {}
msrt.subscribe("msrt.supervisor.*.event", function(m)
  local d = m.data
  if d.event == "gave_up" then gave_up[d.supervisor] = (gave_up[d.supervisor] or 0) + 1 end
  if d.event == "child_restarted" then restarts_by[d.supervisor] = (restarts_by[d.supervisor] or 0) + 1 end
end)

-- the reload storm: routing tables and the strategy rewritten every 10 ms
local reloads = { routes_ok = 0, routes_failed = 0, strategy_ok = 0, strategy_failed = 0, events_ok = 0, events_failed = 0 }
local GOOD_ROUTES = {
  'return { { match = "work.a", rewrite = "req.a" }, { match = "work.p", rewrite = "req.p" }, { match = "ver.now", rewrite = "ver.%d" } }\n',
  'return { { match = "work.*", rewrite = "req.$1" }, { match = "ver.now", rewrite = "ver.%d" } }\n',
  'return { { match = "work.a", split = { { to = "req.a", weight = 100 } } }, { match = "work.p", rewrite = "req.p" }, { match = "ver.now", rewrite = "ver.%d" } }\n',
}
local GOOD_STRATEGY = 'return function(event, view) -- v%d\n  if event.restart == "temporary" then return {} end\n'
  .. '  return { { op = "restart", child = event.child, delay_ms = event.restarts and event.restarts.delay_ms } }\nend\n'
local BROKEN = { 'return { { match = "work.a", rewrite = "req.$3" } }\n', 'return {{{ syntax error\n',
  'return 42\n', 'error("broken on purpose")\n' }
local function write(path, text)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(text) f:close()
  assert(os.rename(path .. ".tmp", path))
end
local prefix = "req."
if RELOAD then
  write(DIR .. "/routes.lua", GOOD_ROUTES[1]:format(0))
  write(DIR .. "/strategy.lua", GOOD_STRATEGY:format(0))
  assert(msrt.routes(DIR .. "/routes.lua"))
  prefix = "work."
  msrt.subscribe("msrt.reload.*", function(m)
    if m.subject == "msrt.reload.ok" then reloads.events_ok = reloads.events_ok + 1
    else reloads.events_failed = reloads.events_failed + 1 end
  end)
end

local root = assert(msrt.supervisor{ name = "storm", intensity = 100000, period_ms = 1000,
  backoff = { initial_ms = 1, max_ms = 5 }, children = kids })
local watcher = RELOAD and assert(msrt.watch(DIR))
say("tree up: %d process agents, %d actors, %d supervisors", PROCS, ACTORS + 2, n + 3)

-- ---- requests ---------------------------------------------------------------
local acct = { issued = 0, replied = 0, retried_replied = 0, failed = 0, attempts = 0, retries = 0 }
local reasons = {}
local next_req, done_req = 0, 0
local CONC = tonumber(arg[8]) or 256
local storming = true
local function worker()
  while next_req < REQUESTS and storming do
    next_req = next_req + 1
    acct.issued = acct.issued + 1
    local subject = prefix .. ((next_req % 2 == 0) and "a" or "p")
    local ok, why
    for attempt = 1, ATTEMPTS do
      acct.attempts = acct.attempts + 1
      local data, err = msrt.request(subject, next_req, { timeout_ms = TIMEOUT_MS })
      if data then ok = attempt break end
      why = err and err.code or "?"
      acct.retries = acct.retries + 1
      C.sleep(math.min(2 ^ attempt, 50))
    end
    if ok == 1 then acct.replied = acct.replied + 1
    elseif ok then acct.retried_replied = acct.retried_replied + 1
    else acct.failed = acct.failed + 1 reasons[why] = (reasons[why] or 0) + 1 end
    done_req = done_req + 1
  end
end

-- ---- the storm ----------------------------------------------------------------
local t0 = uv.now()
local kills = { process = 0, actor = 0, fragile = 0 }
local by_id = {}
local function refresh()
  by_id = {}
  for _, k in ipairs(root:which_children()) do
    local h = k.handle
    if h and h.which_children then
      for _, c in ipairs(h:which_children()) do by_id[c.id] = c.handle end
    end
  end
end
local kill_timer, refresh_timer, frag_timer, storm_t0
local function kill_one()
  if not storming then return end
  local v = victims[math.random(#victims - 2)] -- the fragile two are the last
  if v.kind == "process" then
    local h = by_id[v.id]
    if h and h.signal and h:pid() then h:signal("KILL") kills.process = kills.process + 1 end
  else
    msrt.publish("kill." .. v.id, "die")
    kills.actor = kills.actor + 1
  end
end
-- one kill every KILL_MS on average: a busy hub fires its timer late, so
-- each tick makes up the kills that came due since the last one
local kills_due = 0
local function kill_tick()
  local due = math.floor((uv.now() - storm_t0) / KILL_MS)
  local n = math.min(due - kills_due, 50)
  kills_due = due
  for _ = 1, n do kill_one() end
end
-- a fragile supervisor's child every second: beyond its intensity (0)
local frag_n = 0
local function kill_fragile()
  if not storming then return end
  frag_n = frag_n + 1
  msrt.publish("kill.f" .. (frag_n % 2 + 1), "die")
  kills.fragile = kills.fragile + 1
end

local rss_warm, warm_s, rss_peak, acc0, acc1
local timeline = {}
local reload_n = 0
local last_routes, ver_seen = 0, 0
msrt.subscribe("ver.*", function(m)
  local v = tonumber(m.subject:match("^ver%.(%d+)$"))
  check(v == m.data, "ver.now published under table %s went to %s", tostring(m.data), m.subject)
  ver_seen = math.max(ver_seen, v or 0)
end)
local function reload_step()
  reload_n = reload_n + 1
  local broken = reload_n % 5 == 0
  local which = (reload_n % 2 == 0) and "routes" or "strategy"
  local path = DIR .. "/" .. which .. ".lua"
  if broken then write(path, BROKEN[math.floor(reload_n / 5) % #BROKEN + 1])
  elseif which == "routes" then write(path, GOOD_ROUTES[reload_n % #GOOD_ROUTES + 1]:format(reload_n))
  else write(path, GOOD_STRATEGY:format(reload_n)) end
  local ok, err = msrt.reload(path)
  if broken then
    check(not ok, "broken %s file %d was applied", which, reload_n)
    reloads[which .. "_failed"] = reloads[which .. "_failed"] + 1
  else
    check(ok, "good %s file %d refused: %s", which, reload_n, tostring(err))
    reloads[which .. "_ok"] = reloads[which .. "_ok"] + 1
    if ok and which == "routes" then last_routes = reload_n msrt.publish("ver.now", reload_n) end
  end
end

msrt.after(0, function()
  refresh()
  refresh_timer = msrt.every(50, refresh)
  storm_t0 = uv.now()
  kill_timer = msrt.every(KILL_MS, kill_tick)
  frag_timer = msrt.every(1000, kill_fragile)
  local reload_timer = RELOAD and msrt.every(10, reload_step)
  for _ = 1, CONC do msrt.after(0, worker) end
  acc0 = msrt.metrics().router.accepted
  say("storm running")
  -- warm-up: the tree, the request backlog and the allocators' pools
  -- grow to their working size: the first quarter of the run (at least
  -- 2 s), and then until the requests are done. A quiet machine has done
  -- them in its first second; a loaded one can take most of the storm,
  -- its RSS growing all the while (the pools only give back while work
  -- goes on: idle, RSS holds), and a warm size sampled in the middle of
  -- that was one the storm had not reached (end +11..+14% under load,
  -- -15..-27% quiet). A storm that ends first is sampled at its end.
  msrt.after(math.max(2000, SECONDS * 250), function()
    local function warm()
      if done_req < REQUESTS and storming then return msrt.after(50, warm) end
      collectgarbage()
      rss_warm, warm_s = rss_kib(), (uv.now() - storm_t0) / 1000
    end
    warm()
  end)
  local watchdog = msrt.every(100, function()
    local now = rss_kib()
    rss_peak = math.max(rss_peak or 0, now)
    local at = (uv.now() - storm_t0) / 1000
    if at >= (#timeline + 1) * SECONDS / 10 then timeline[#timeline + 1] = ("%ds %d MiB"):format(math.floor(at), math.floor(now / 1024)) end
  end)
  local function finish()
    storming = false
    kill_timer.stop() refresh_timer.stop() watchdog.stop() frag_timer.stop()
    if reload_timer then reload_timer.stop() end
  end
  -- the storm lasts SECONDS; then the requests still in flight finish
  msrt.after(SECONDS * 1000, function()
    finish()
    acc1 = msrt.metrics().router.accepted
    local elapsed = (uv.now() - t0) / 1000
    local function wait_done(k)
      if done_req < next_req and k < 200 then return msrt.after(50, function() wait_done(k + 1) end) end
      -- quiesce, then measure
      msrt.after(1500, function()
        collectgarbage() collectgarbage()
        local rss_end = rss_kib()
        say("load: %d requests in %.1f s (%.0f requests/s, %d attempts), %.0f messages/s through the router",
          acct.issued, elapsed, acct.issued / elapsed, acct.attempts, (acc1 - acc0) / elapsed)
        local restarts = 0
        for k, v in pairs(restarts_by) do if robust[k] then restarts = restarts + v end end
        say("faults: %d processes SIGKILLed, %d actors crashed, %d fragile kills; restarts by robust supervisors %d",
          kills.process, kills.actor, kills.fragile, restarts)
        local rs = {}
        for k, v in pairs(reasons) do rs[#rs + 1] = k .. "=" .. v end
        say("requests: issued %d = replied %d + retried-then-replied %d + failed %d (%s)",
          acct.issued, acct.replied, acct.retried_replied, acct.failed, table.concat(rs, " "))
        check(acct.issued == acct.replied + acct.retried_replied + acct.failed, "requests not all accounted")
        check(done_req == acct.issued, "%d requests still in flight", acct.issued - done_req)
        check(acct.failed <= acct.issued / 1000, "%d requests failed", acct.failed)
        for k, v in pairs(restarts_by) do if robust[k] then check(not gave_up[k], "robust supervisor %s gave up", k) end end
        local frag_gave, robust_gave = (gave_up.frag1 or 0) + (gave_up.frag2 or 0), 0
        for k, v in pairs(gave_up) do if robust[k] then robust_gave = robust_gave + v end end
        say("supervisors: fragile gave up %d times (kills %d), robust gave up %d", frag_gave, kills.fragile, robust_gave)
        -- every fragile kill is beyond its supervisor's intensity (0)
        check(frag_gave == kills.fragile, "fragile supervisors gave up %d times for %d kills", frag_gave, kills.fragile)
        check(not gave_up.storm, "the root gave up")
        say("rss: warm %d KiB (at %.1f s), peak %d KiB, end %d KiB (%+.1f%%)", rss_warm or 0, warm_s or 0,
          rss_peak or 0, rss_end, rss_warm and (rss_end - rss_warm) * 100 / rss_warm or 0)
        say("rss timeline: %s", table.concat(timeline, ", "))
        check(rss_warm and rss_end <= rss_warm * 1.10, "RSS %d KiB not within 10%% of warm %d KiB", rss_end, rss_warm or 0)
        if RELOAD then
          say("reloads: routes %d ok %d refused, strategy %d ok %d refused; events ok %d failed %d",
            reloads.routes_ok, reloads.routes_failed, reloads.strategy_ok, reloads.strategy_failed,
            reloads.events_ok, reloads.events_failed)
          check(ver_seen == last_routes, "the last good routing table (%d) not in force (%d)", last_routes, ver_seen)
          check(reloads.routes_failed > 0 and reloads.strategy_failed > 0, "no broken file tried")
          check(reloads.events_failed >= reloads.routes_failed + reloads.strategy_failed, "a refused reload was not published")
          watcher.close()
        end
        local num = C.num
        C.row("load", { { "requests", acct.issued }, { "seconds", ("%.1f"):format(elapsed) },
          { "requests_per_s", ("%.0f"):format(acct.issued / elapsed) },
          { "messages_per_s", ("%.0f"):format((acc1 - acc0) / elapsed) } })
        local injected = ("%s SIGKILLs, %s actor crashes, %s fragile kills"):format(num(kills.process), num(kills.actor), num(kills.fragile))
        if RELOAD then
          injected = injected .. (", %s reloads (%s broken)"):format(
            num(reloads.routes_ok + reloads.routes_failed + reloads.strategy_ok + reloads.strategy_failed),
            num(reloads.routes_failed + reloads.strategy_failed))
        end
        local outcome = ("%s restarts; %s of %s requests failed (%s retried); gave up: robust %d (due 0), fragile %d"
          .. " (due %d); RSS %+.1f%% (limit +10%%)"):format(num(restarts), num(acct.failed), num(acct.issued),
          num(acct.retried_replied), robust_gave, frag_gave, kills.fragile, rss_warm and (rss_end - rss_warm) * 100 / rss_warm or 0)
        if RELOAD then
          outcome = outcome .. ("; %s reloads applied, %s refused"):format(num(reloads.routes_ok + reloads.strategy_ok),
            num(reloads.routes_failed + reloads.strategy_failed))
        end
        C.row("faults", { { "injected", injected }, { "outcome", outcome } })
        root:stop()
        root:wait()
        C.accounting()
        C.finish()
      end)
    end
    wait_done(0)
  end)
end)
