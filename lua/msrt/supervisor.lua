--- Supervisors on the hub (docs/architecture.md "Supervision"), after
-- Erlang/OTP's supervisor: the
-- child table, restart intensity, backoff and the checking and ordering
-- of a strategy's actions are in C (src/super, through msrt.core); this
-- file starts and stops children, runs the strategy (a Lua function from
-- an event to actions), keeps delayed restarts as hub timers and
-- publishes every decision on `msrt.supervisor.<name>.event`.
-- Internal: the public face is `msrt.supervisor` (init.lua). Hub thread.
-- @module msrt.supervisor
local core = require "msrt.core"
local args = require "msrt.args"
local schema = require "msrt.schema"
local exits = require "msrt.exits"
local hub = require "msrt.hub"
local actors = require "msrt.actors"
local process = require "msrt.process"
local health = require "msrt.health"
local uv = require "luv"
local nkeys = require "table.nkeys" -- LuaJIT: the number of keys

local M = {}

--- Where decisions are logged: set by init.lua to msrt.log.
M.log = function() end

local live = {} -- supervisor -> true, while it runs
local kinds = {}
local unnamed = 0
local born = 0 -- supervisors made so far: shutdown stops the newest root first

local function bad(msg, fields) return nil, core.error("invalid_arg", msg, fields) end

local function after(ms, fn)
  local t = uv.new_timer()
  t:start(core.timeout_ms(ms), 0, function() -- never early: from this call
    t:close()
    fn()
  end)
  return t
end

local function cancel(t)
  if t and not t:is_closing() then t:close() end
end

-- ---- child kinds: start(spec, sup) -> handle | nil, err; started(h,
-- done) when the start returns later than start (an actor's init); watch(h,
-- fn(reason, normal)) once, when the child is wholly gone; stop(h,
-- shutdown) begins a graceful stop; kill(h) -> true when the child is
-- abandoned at once rather than reported gone later. `timed` kinds keep
-- their own shutdown deadline; for the others the supervisor kills them
-- when `shutdown` ms have passed.

kinds.actor = {
  start = function(spec) return actors.new(spec, { notify_started = true }) end,
  -- started once every instance's init has returned (OTP's start_link)
  started = function(h, done) h:on_started(done) end,
  -- The first instance's exit is the child's: the other instances are
  -- stopped, and the child is gone when the last one is.
  watch = function(h, fn)
    local first
    h:on_exit(function(rec)
      first = first or rec
      local left = h:ids()
      if #left == 0 then return fn(first.reason, first.normal) end
      if first == rec then h:stop("shutdown") end
    end)
  end,
  stop = function(h) h:stop("shutdown") end,
  -- An actor cannot be interrupted inside a handler: it is told to stop
  -- ("killed") and left to finish alone; the supervisor goes on.
  kill = function(h)
    h:stop("killed")
    return true
  end,
}

kinds.process = {
  timed = true,
  start = function(spec) return process.new(spec) end,
  watch = function(h, fn) h:on_exit(function(rec) fn(rec.reason, rec.normal) end) end,
  stop = function(h, shutdown)
    if shutdown == "brutal_kill" then -- KILL first: a stop signal could win the race
      h:signal("KILL")
      return h:stop(0)
    end
    h:stop(shutdown == "infinity" and 2 ^ 31 - 1 or shutdown)
  end,
  kill = function(h)
    h:signal("KILL")
    return false
  end,
}

-- A service: a child that lives on the hub, made by its spec's own
-- start(spec) -> handle | nil, err (msrt.mcp.server's remote server,
-- lua/msrt/mcp_remote.lua). The handle has on_exit(fn({reason, normal})),
-- stop(ms | "brutal_kill") keeping its own deadline, and kill() ending it
-- at once (its exit told before kill returns).
kinds.service = {
  timed = true,
  start = function(spec)
    if type(spec.start) ~= "function" then return nil, core.error("invalid_arg", "a service spec needs start = function(spec)") end
    return spec.start(spec)
  end,
  watch = function(h, fn) h:on_exit(function(rec) fn(rec.reason, rec.normal) end) end,
  stop = function(h, shutdown) h:stop(shutdown == "infinity" and 2 ^ 31 - 1 or shutdown) end,
  kill = function(h)
    h:kill()
    return false
  end,
}

-- A nested supervisor's handle exists before its children start, so its
-- parent can stop it meanwhile; it has started when they all have.
kinds.supervisor = {
  start = function(spec, parent) return M.build(spec, parent) end,
  started = function(h, done)
    local co = coroutine.create(function() if M.boot(h) then done() end end)
    local ok, err = coroutine.resume(co)
    if not ok then core.report("supervisor " .. h.name, debug.traceback(co, tostring(err))) end
  end,
  watch = function(h, fn) h:on_exit(function(rec) fn(rec.reason, rec.normal) end) end,
  stop = function(h) h:stop("shutdown") end,
  kill = function(h)
    h:stop("killed", true)
    return false
  end,
}

-- Wait until begin's done(...) is called (at once if it was); its
-- arguments are the result. A hub coroutine yields meanwhile; the main
-- chunk before the hub loop runs (or a spec's body) runs the loop until
-- then, so that a later msrt.run() still runs it. Neither blocks the hub.
-- Outside a coroutine, or when nothing left on the loop can call done,
-- nothing waits: the result is then empty.
local function await(begin)
  local co, finished, waiting, result = coroutine.running(), false, false, nil
  begin(function(...)
    if finished then return end
    finished, result = true, { n = select("#", ...), ... }
    if waiting then
      local ok, err = coroutine.resume(co, ...)
      if not ok then core.report("error in callback", debug.traceback(co, tostring(err))) end
    end
  end)
  if not finished and co and not core.running() then
    while not finished and core.run_once() do end
  end
  if finished then return unpack(result, 1, result.n) end
  if not co or not core.running() then return end
  waiting = true
  return coroutine.yield()
end

-- OTP's supervisor handles one message at a time: a restart (its stops,
-- then each start waiting for the child's init) ends before the next exit
-- is looked at. Queued fns run in turn in a coroutine of their own, from
-- now unless one is under way (sup.busy).
local function drain(sup)
  if sup.busy or not sup.queue[1] then return end
  sup.busy = true
  local co = coroutine.create(function()
    while sup.queue[1] do
      local ok, err = pcall(table.remove(sup.queue, 1))
      if not ok then core.report("supervisor " .. sup.name, tostring(err)) end
    end
    sup.busy = false
  end)
  local ok, err = coroutine.resume(co)
  if not ok then core.report("supervisor " .. sup.name, debug.traceback(co, tostring(err))) end
end

local function serial(sup, fn)
  sup.queue[#sup.queue + 1] = fn
  drain(sup)
end

-- ---- events --------------------------------------------------------------

local LEVEL = { child_exited = "warn", start_failed = "error", strategy_failed = "error",
  gave_up = "error", escalated = "error" }

-- Publish an event on msrt.supervisor.<name>.event and log it.
local function event(sup, what, fields)
  fields = fields or {}
  fields.supervisor, fields.event = sup.name, what
  fields.restarts = fields.restarts or sup.core:restarts()
  local level = LEVEL[what] or "info"
  if what == "child_exited" and fields.normal then level = "info" end
  local text = ("supervisor %s: %s"):format(sup.name, what)
  if fields.child then text = text .. " " .. fields.child end
  if fields.reason ~= nil then text = text .. ": " .. tostring(fields.reason):match("^[^\n]*") end
  if fields.delay_ms then text = text .. (" (in %d ms)"):format(fields.delay_ms) end
  M.log(level, text)
  local ok, err = hub.publish("msrt.supervisor." .. sup.name .. ".event", fields, {})
  -- a full subscriber must not fail the host: the event is in the log
  if not ok and err and err.code ~= "no_responders" then M.log("warn", "supervisor event not published: " .. tostring(err)) end
end

-- ---- child specs ---------------------------------------------------------

local SHUTDOWN = { brutal_kill = -1, infinity = -2 }

--- The fields of a child spec (msrt.supervisor documents them); each
-- kind's own spec is checked when it starts, health by msrt.health.
M.CHILD = {
  id = schema.string, actor = schema.table, process = schema.table, supervisor = schema.table,
  service = schema.table,
  restart = schema.enum{ "permanent", "transient", "temporary" },
  shutdown = schema.either(schema.int(0, nil, "ms"), schema.enum{ "brutal_kill", "infinity" }),
  type = schema.enum{ "worker", "supervisor" }, significant = schema.boolean, health = schema.table,
  start = schema.enum{ "init", "ready" },
}

--- The defaults of what a supervisor spec and a child spec leave out
-- (OTP's: one restart in 5 s, a worker's shutdown 5000 ms and a
-- supervisor's infinity; auto_shutdown never; no backoff, and of a
-- backoff table: no delay, doubling, no jitter, max_ms its initial_ms),
-- stated once (src/lua/lsuper.c has none of its own).
M.DEFAULTS = { intensity = 1, period_ms = 5000, restart = "permanent",
  shutdown = { worker = 5000, supervisor = "infinity" }, auto_shutdown = "never",
  backoff = { initial_ms = 0, multiplier = 2, jitter = 0 } }
local D = M.DEFAULTS

--- A spec's backoff table with the defaults filled in (nil: none).
function M.backoff_of(b)
  if b == nil then return nil end
  local initial = b.initial_ms or D.backoff.initial_ms
  return { initial_ms = initial, max_ms = b.max_ms or initial,
    multiplier = b.multiplier or D.backoff.multiplier, jitter = b.jitter or D.backoff.jitter }
end

-- The flags core.super_new and configure take, defaults filled in.
local function flags_of(spec)
  return { intensity = spec.intensity or D.intensity, period_ms = spec.period_ms or D.period_ms,
    backoff = M.backoff_of(spec.backoff) }
end

local function kind_of(cs)
  local found
  for _, k in ipairs({ "actor", "process", "supervisor", "service" }) do
    if cs[k] ~= nil then
      if found then return nil, "has both " .. found .. " and " .. k end
      if type(cs[k]) ~= "table" then return nil, k .. " must be a spec table" end
      found = k
    end
  end
  if not found then return nil, "needs one of actor, process, supervisor or service" end
  return found
end

-- Check a child spec; returns the child record (not yet in the table).
local function child_of(cs, where)
  if type(cs) ~= "table" then return bad(where .. ": child spec must be a table") end
  if type(cs.id) == "string" and cs.id ~= "" then where = ("child \"%s\""):format(cs.id) end
  local ok, why = schema.check(cs, M.CHILD, where)
  if not ok then return bad(why) end
  if type(cs.id) ~= "string" or cs.id == "" then return bad(where .. ": child spec needs an id (string)") end
  local kind
  kind, why = kind_of(cs)
  if not kind then return bad(where .. " " .. why) end
  local restart = cs.restart or D.restart
  local shutdown = cs.shutdown or D.shutdown[kind == "supervisor" and "supervisor" or "worker"]
  local sd = SHUTDOWN[shutdown] or shutdown
  if cs.health ~= nil then
    local hok, herr = health.check(cs.health)
    if not hok then return bad(where .. ": " .. herr) end
  end
  if cs.start == "ready" and not (cs.health and (cs.health.startup or cs.health.readiness)) then
    return bad(where .. ": start = \"ready\" needs a startup or readiness probe (health)")
  end
  local ctype = cs.type or (kind == "supervisor" and "supervisor" or "worker")
  -- books: what src/super keeps (add hands them over; the table owns them)
  return { id = cs.id, kind = kind, spec = cs[kind], start = cs.start, source = cs,
           books = { restart = restart, shutdown_ms = sd, supervisor = ctype == "supervisor",
                     significant = cs.significant and true or false } }
end

-- A copy of a child's own spec with a default name (its id).
local function own_spec(c)
  local s = {}
  for k, v in pairs(c.spec) do s[k] = v end
  if s.name == nil then s.name = c.id end
  return s
end

-- ---- starting and stopping children ---------------------------------------

local Sup = {}
Sup.__index = Sup

local child_exited -- forward

-- Its probes end when a child stops, exits or is restarted (src/health).
local function stop_health(c)
  if c.health then
    c.health:stop()
    c.health = nil
  end
end

-- Start the probes of a child whose spec has `health` (checked with the
-- spec); a liveness failure comes back as an unhealthy event.
local function start_health(sup, c)
  if not c.source.health then return end
  local chk, err = health.start(c.id, c.source.health, { kind = c.kind, handle = c.handle,
    unhealthy = function(why) sup:unhealthy(c.id, why) end,
    ready = function()
      local f = c.on_ready
      c.on_ready = nil
      if f then f() end
    end })
  if not chk then return M.log("error", ("supervisor %s: child %s: health checks not started: %s"):format(sup.name, c.id, tostring(err))) end
  c.health = chk
end

-- Wait until child c's start has returned, as OTP's start_link does: an
-- actor's init has run in every instance (a process: spawned), and with
-- start = "ready" its probes say ready. The result, once: true; or false,
-- reason when the child exited first or failed its probe; or false,
-- reason, true when its supervisor stopped it meanwhile (stop_child).
-- Outside a coroutine nothing waits (true at once).
local function await_start(c, h)
  if not coroutine.running() then return true end
  return await(function(done)
    c.starting = done
    local function ready()
      -- the start failed or was stopped meanwhile (Sup:unhealthy,
      -- stop_child took c.starting): its result comes once the child is
      -- stopped, and an init that ends first must not turn it into a success
      if c.starting ~= done then return end
      if c.start ~= "ready" or not c.health or c.health:ready() then return done(true) end
      c.on_ready = function() done(true) end
    end
    if kinds[c.kind].started then kinds[c.kind].started(h, ready) else ready() end
  end)
end

-- Start child c and wait for its start (await_start); returns true | nil,
-- err [, true when the supervisor stopped it meanwhile]. Its exit comes to
-- child_exited later (or to c.on_down while the supervisor stops it).
local function start(sup, c)
  local h, err = kinds[c.kind].start(own_spec(c), sup)
  if not h then return nil, err end
  c.handle, c.pending, c.gen = h, nil, (c.gen or 0) + 1
  sup.core:set_state(c.id, "starting")
  stop_health(c)
  start_health(sup, c)
  kinds[c.kind].watch(h, function(reason, normal)
    if c.handle ~= h then return end -- an abandoned instance
    c.handle = nil
    stop_health(c)
    if c.on_down then
      local f = c.on_down
      c.on_down = nil
      return f(reason)
    end
    local starting = c.starting
    if starting then -- it exited in its init: a start failure
      c.starting, c.on_ready = nil, nil
      sup.core:set_state(c.id, "stopped")
      return starting(false, reason)
    end
    child_exited(sup, c, reason, normal)
  end)
  local ok, why, stopped = await_start(c, h)
  c.starting, c.on_ready = nil, nil
  if not ok then return nil, why, stopped end
  sup.core:set_state(c.id, "running")
  return true
end

-- A child's spec goes when its run ends for good if it is temporary, or
-- one of simple_one_for_one's children (OTP keeps no spec for those).
local function forget(sup, c)
  if sup.core:record(c.id) ~= c then return end
  if sup.dynamic or sup.core:child(c.id).restart == "temporary" then sup.core:delete(c.id) end
end

-- Stop child c as its shutdown says; done(reason) once it is gone. keep:
-- it is to be restarted (its spec stays whatever its type).
local function stop_child(sup, c, brutal, done, keep)
  c.pending = nil -- a restart timer skips it now
  stop_health(c)
  -- a start waiting on this child ends: stopped, not failed
  local starting = c.starting
  c.starting, c.on_ready = nil, nil
  if not c.handle then
    if sup.core:child(c.id) then sup.core:set_state(c.id, "stopped") end
    return done("not running")
  end
  local kind, h = kinds[c.kind], c.handle
  local timer
  -- already being stopped (a restart's stop, then the supervisor's own):
  -- this stop takes over, and the earlier one's kill timer goes with it;
  -- whoever waited for the earlier one still hears of the end
  cancel(c.stop_timer)
  local dones = c.stop_dones or {}
  if starting then dones[#dones + 1] = function(reason) starting(false, reason, true) end end
  dones[#dones + 1] = done
  c.stop_dones = dones
  sup.core:set_state(c.id, "stopping")
  c.on_down = function(reason)
    cancel(timer)
    c.stop_dones = nil
    sup.core:set_state(c.id, "stopped")
    event(sup, "child_stopped", { child = c.id, reason = reason })
    if not keep then forget(sup, c) end
    for _, d in ipairs(dones) do d(reason) end
  end
  local function kill()
    if kind.kill(h) and c.handle == h then
      c.handle = nil
      local f = c.on_down
      c.on_down = nil
      f("killed")
    end
  end
  local sd = brutal and "brutal_kill" or sup.core:child(c.id).shutdown
  if sd == "brutal_kill" and not kind.timed then return kill() end
  kind.stop(h, sd)
  if sd ~= "infinity" and not kind.timed then timer = after(sd, kill) end
  c.stop_timer = timer
end

-- Stop the children named in ids one after the other (OTP terminates them
-- in turn, each waiting for the one before), then done(). keep: a set of
-- ids to be restarted.
local function stop_each(sup, ids, brutal, done, keep)
  local i = 0
  local function next_one()
    i = i + 1
    local c = ids[i] and sup.core:record(ids[i])
    if not ids[i] then return done() end
    if not c then return next_one() end
    stop_child(sup, c, brutal, next_one, keep and keep[c.id])
  end
  next_one()
end

-- Every child, in reverse start order.
local function reverse_ids(sup)
  local ids = {}
  local kids = sup.core:children()
  for i = #kids, 1, -1 do ids[#ids + 1] = kids[i].id end
  return ids
end

-- ---- ending a supervisor --------------------------------------------------

local function finish(sup, reason, normal)
  sup.state = "stopped"
  live[sup] = nil
  sup.exit = { name = sup.name, reason = reason, normal = normal }
  event(sup, "stopped", { reason = reason, normal = normal })
  exits.done(sup, sup.exit, "supervisor")
end

-- Stop every child in reverse start order, then end with reason. A root
-- supervisor that gives up (gave_up) ends msrt.run() with status 1.
local function terminate(sup, reason, normal, brutal, gave_up)
  if sup.state == "stopping" or sup.state == "stopped" then return end
  sup.state = "stopping"
  for _, c in ipairs(sup.core:records()) do cancel(c.pending_timer) end
  stop_each(sup, reverse_ids(sup), brutal, function()
    finish(sup, reason, normal)
    if gave_up and not sup.parent and not core.stopping() then
      local why = ("supervisor %s gave up: %s"):format(sup.name, gave_up)
      core.report("supervision", why)
      core.stop(why, 1)
    end
  end)
end

-- Give up: OTP's supervisor reaching its restart intensity exits with
-- reason shutdown (normal to a transient parent, restarted by a permanent
-- one); an escalation by the strategy is abnormal.
local function give_up(sup, why, intensity)
  event(sup, intensity and "gave_up" or "escalated", { reason = why })
  if intensity then return terminate(sup, "shutdown", true, false, why) end
  terminate(sup, why, false, false, why)
end

-- ---- deciding ------------------------------------------------------------

local function view_of(sup)
  local children = sup.core:children()
  local by_id = {}
  for _, c in ipairs(children) do
    local rec = sup.core:record(c.id)
    c.kind = rec and rec.kind
    by_id[c.id] = c
  end
  local s = sup.core
  return {
    name = sup.name, children = children, child = by_id,
    restarts = { count = s:restarts(), intensity = sup.intensity, period_ms = sup.period_ms },
    --- ids a failure of child affects ("one", "rest", "all"), start order
    group = function(which, id) return s:group(which, id) end,
  }
end

local function should_count(restart, normal)
  return restart == "permanent" or (restart == "transient" and not normal)
end

-- Run the strategy; returns the checked plan | nil, why (then escalate).
local function decide(sup, c, reason, normal, kind)
  local restart = sup.core:child(c.id).restart
  local delay = should_count(restart, normal) and sup.core:next_delay(c.id) or 0
  local child = sup.core:child(c.id) -- after next_delay: its attempts counted
  local ev = { child = c.id, reason = reason, normal = normal, kind = kind, restart = restart,
    restarts = { count = sup.core:restarts(), intensity = sup.intensity, period_ms = sup.period_ms,
                 attempts = child.attempts, delay_ms = delay } }
  local ok, actions = pcall(sup.strategy, ev, view_of(sup))
  if not ok then return nil, "strategy error: " .. tostring(actions) end
  if type(actions) ~= "table" then
    return nil, ("strategy returned %s, not a list of actions"):format(type(actions))
  end
  local plan, err = sup.core:plan(actions)
  if not plan then return nil, "strategy returned nonsense: " .. err.message end
  return plan
end

local run_plan -- forward

-- After the plan's delay, start its children in start order, each once
-- the one before has started (a serial step). A start that fails comes
-- back as an exit of that child (OTP tries again, and each try counts
-- against the intensity); one the supervisor stopped meanwhile is skipped.
local function start_all(sup, ids, token)
  for _, id in ipairs(ids) do
    local c = sup.core:record(id)
    if c and c.pending == token and sup.state == "running" then
      local ok, err, stopped = start(sup, c)
      if ok then
        c.restarts = (c.restarts or 0) + 1
        event(sup, "child_restarted", { child = id })
      elseif not stopped then
        sup.core:set_state(id, "stopped")
        event(sup, "start_failed", { child = id, reason = tostring(err) })
        for _, rest in ipairs(ids) do
          local r = sup.core:record(rest)
          if r and r.pending == token then r.pending = nil sup.core:set_state(rest, "stopped") end
        end
        -- OTP tries again through its mailbox, not by recursion
        local t = after(0, function() child_exited(sup, c, "start failed: " .. tostring(err), false) end)
        c.pending_timer = t
        return
      end
    end
  end
end

-- Carry out a plan (within a serial step): its stops, one after the
-- other, then its starts, now or as a serial step after its delay.
function run_plan(sup, plan)
  local token, keep = {}, {}
  for _, id in ipairs(plan.starts) do keep[id] = true end
  await(function(done) stop_each(sup, plan.stops, false, done, keep) end)
  if sup.state ~= "running" then return end
  -- marked now: stopping a child clears its mark (a newer plan wins)
  for _, id in ipairs(plan.starts) do sup.core:record(id).pending = token end
  for _, id in ipairs(plan.starts) do
    local c = sup.core:record(id)
    if c and c.pending == token then
      sup.core:set_state(id, "restarting")
      if plan.delay_ms > 0 then event(sup, "restart_scheduled", { child = id, delay_ms = plan.delay_ms }) end
    end
  end
  if plan.delay_ms <= 0 then return start_all(sup, plan.starts, token) end
  local t = after(plan.delay_ms, function() serial(sup, function() start_all(sup, plan.starts, token) end) end)
  for _, id in ipairs(plan.starts) do sup.core:record(id).pending_timer = t end
end

-- OTP's auto_shutdown: a significant child that ended and is not being
-- restarted may end the supervisor (reason shutdown, normal).
local function auto_shutdown(sup, c, significant)
  if not significant or sup.auto_shutdown == "never" then return false end
  if sup.auto_shutdown == "all_significant" then
    for _, k in ipairs(sup.core:children()) do
      if k.significant and k.state ~= "stopped" then return false end
    end
  end
  event(sup, "auto_shutdown", { child = c.id })
  terminate(sup, "shutdown", true)
  return true
end

-- A child's exit (or unhealthy report): ask the strategy, check, act.
local function handle_exit(sup, c, reason, normal, kind)
  event(sup, kind == "unhealthy" and "child_unhealthy" or "child_exited",
    { child = c.id, reason = reason, normal = normal })
  local plan, why = decide(sup, c, reason, normal, kind or "exit")
  if not plan then
    event(sup, "strategy_failed", { child = c.id, reason = why })
    return give_up(sup, why, false)
  end
  if plan.escalate then return give_up(sup, "escalated by the strategy after " .. c.id .. ": " .. tostring(reason), false) end
  if #plan.starts > 0 then
    local within, n = sup.core:add_restart()
    if not within then
      return give_up(sup, ("reached max restart intensity: %d restarts within %d ms (intensity %d)"):format(
        n, sup.period_ms, sup.intensity), true)
    end
  end
  local restarting = false
  for _, id in ipairs(plan.starts) do restarting = restarting or id == c.id end
  if not restarting and not c.handle then
    local significant = sup.core:child(c.id).significant -- read before forget deletes it
    forget(sup, c)
    if auto_shutdown(sup, c, significant) then return end
  end
  run_plan(sup, plan)
end

-- A child's exit (or unhealthy report), handled as a serial step: after a
-- restart under way, and only if that run of the child is still the
-- current one (OTP ignores an EXIT from a pid it no longer has).
function child_exited(sup, c, reason, normal, kind)
  if (sup.state ~= "running" and sup.state ~= "starting") or core.stopping() then return end
  if c.handle == nil then sup.core:set_state(c.id, "stopped") end
  local gen = c.gen
  serial(sup, function()
    if sup.state ~= "running" or c.gen ~= gen or c.pending or sup.core:record(c.id) ~= c then return end
    if (kind == "unhealthy") ~= (c.handle ~= nil) then return end -- restarted or gone meanwhile
    handle_exit(sup, c, reason, normal, kind)
  end)
end

-- ---- the supervisor --------------------------------------------------------

local BUILTIN = { one_for_one = true, one_for_all = true, rest_for_one = true, simple_one_for_one = true }

-- A strategy: a function, a table {decide = fn, dynamic = bool}, a
-- built-in's name, a module name or a path to a Lua file returning one.
local function strategy_of(s)
  s = s or "one_for_one"
  local name = type(s) == "string" and s or "custom"
  if type(s) == "string" then
    local ok, v
    if BUILTIN[s] then ok, v = pcall(require, "msrt.strategies." .. s)
    elseif s:find("/") or s:find("%.lua$") then -- a policy file: sandboxed, bounded
      local st, err = require("msrt.policy").strategy_file(s)
      if not st then return nil, err end
      ok, v = true, st
    elseif not package.searchpath(s, package.path) then
      return nil, core.error("bad_config", ("unknown strategy '%s' (built-in: one_for_one, one_for_all, rest_for_one, simple_one_for_one; or a module name on package.path, or a path to a Lua file)"):format(s))
    else ok, v = pcall(require, s) end
    if not ok then return nil, core.error("bad_config", ("strategy %s: %s"):format(s, tostring(v))) end
    s = v
  end
  if type(s) == "function" then return { decide = s, name = name } end
  if type(s) == "table" and type(s.decide) == "function" then
    return { decide = s.decide, dynamic = s.dynamic and true or false, name = name }
  end
  return bad("strategy must be a function, a table with decide, or a module name or path")
end

--- The fields of a supervisor spec (msrt.supervisor documents them); the
-- backoff's ranges and its max_ms >= initial_ms are src/super's.
M.SPEC = {
  name = schema.string, strategy = schema.either(schema.string, schema.func, schema.table),
  intensity = schema.int(0, nil), period_ms = schema.int(1, nil, "ms"),
  backoff = schema.fields{ initial_ms = schema.num(0, nil, "ms"), max_ms = schema.num(0, nil, "ms"),
    multiplier = schema.num(1, nil), jitter = schema.num(0, 1) },
  stop_removed = schema.boolean, migrate = schema.any, -- read by Sup:update / msrt.reload only
  auto_shutdown = schema.enum{ "never", "any_significant", "all_significant" },
  children = schema.list(schema.table),
}

local function check_sup(spec)
  local ok, why = schema.check(spec, M.SPEC, "supervisor spec")
  if not ok then return bad(why) end
  if spec.name ~= nil and not spec.name:find("^[%w_%-]+$") then
    return bad("supervisor name must be one subject token (letters, digits, _ and -)")
  end
  return true
end

-- Put child c in the table (refusing what OTP refuses).
local function add(sup, c)
  local b = c.books
  if b.significant and sup.auto_shutdown == "never" then
    return bad(("child \"%s\": significant children need auto_shutdown any_significant or all_significant"):format(c.id))
  end
  local pos, err = sup.core:add(c.id, b.restart, b.shutdown_ms, b.supervisor, b.significant, c)
  if not pos then return nil, err end
  c.books = nil -- src/super's now: read them with sup.core:child(id)
  return true
end

-- Start the children in order; a failure stops those started (reverse).
-- Start the children in order, each once the one before has started
-- (OTP's start_link order); a failure stops those started (reverse
-- order, each waited for) and ends the supervisor with it. Stopped
-- meanwhile (sup:stop, shutdown): the stop goes on, this fails.
local function start_children(sup)
  local records = sup.core:records()
  for i, c in ipairs(records) do
    local ok, err = start(sup, c)
    if not ok then
      local e = core.error("start_failed", ("supervisor %s: child \"%s\" failed to start: %s"):format(
        sup.name, c.id, tostring(err)), { child = c.id, reason = err })
      if sup.state ~= "starting" then return nil, e end
      sup.state = "stopping"
      event(sup, "start_failed", { child = c.id, reason = tostring(err) })
      await(function(done) stop_each(sup, reverse_ids(sup), false, done) end)
      finish(sup, e.message, false)
      return nil, e
    end
    event(sup, "child_started", { child = c.id })
    -- A child whose start did not wait (a process: spawned at once) lets
    -- the hub's loop turn before the next: a tree of many processes
    -- would otherwise start them all in one turn, each spawn holding the
    -- hub until its child execs (~1-10 ms, more on a loaded machine).
    -- Exits meanwhile wait, as they do during an actor's init (sup.busy).
    if not kinds[c.kind].started and records[i + 1] then
      await(function(done) after(0, done) end)
      -- stopped meanwhile (its started children stopped): start no more
      if sup.state ~= "starting" then
        return nil, core.error("start_failed", ("supervisor %s: stopped while starting its children"):format(sup.name))
      end
    end
  end
  return true
end

-- Start sup's children (a built supervisor); then the exits that came
-- meanwhile are handled. @return true | nil, err
local function boot(sup)
  sup.busy = true -- exits wait for the start (child_exited queues them)
  local ok, err = start_children(sup)
  sup.busy = false
  if not ok then return nil, err end
  sup.state = "running"
  drain(sup)
  return true
end

--- Load a supervisor spec from a Lua file returning it, run as a policy
-- file (msrt.policy: sandboxed, bounded). Its functions stay sandboxed:
-- a strategy, a migrate or a lua health probe is called in the file's
-- own state, with its budget; an inline actor function (handle, init,
-- terminate) runs in the actor with the same library as the file and
-- its ctx (README "Policy files"; name a module for more). Checked when
-- it is used.
-- @return spec | nil, err (not_found, io, syntax, bad_config)
function M.load_file(path)
  local spec, err = require("msrt.policy").load_file(path)
  if spec == nil and type(err) == "table" then return nil, err end
  if type(spec) ~= "table" then
    return nil, core.error("bad_config", ("%s:0: a supervisor file returns a spec table, not %s"):format(path, type(spec)), { file = path })
  end
  return spec
end

local function watch_strategy(sup, s)
  if type(s) ~= "string" or BUILTIN[s] or not (s:find("/") or s:find("%.lua$")) then return end
  local forget = require("msrt.reload").register(s, "strategy", require("msrt.policy").strategy_file, function(v)
    local st = assert(strategy_of(v))
    sup.strategy = st.decide
    return true
  end)
  sup:on_exit(forget) -- a restarted supervisor registers anew: no stale appliers
end

local function build(spec, parent)
  local ok, err = check_sup(spec)
  if not ok then return nil, err end
  local strategy, serr = strategy_of(spec.strategy)
  if not strategy then return nil, serr end
  local flags = flags_of(spec)
  local intensity, period = flags.intensity, flags.period_ms
  local s, cerr = core.super_new(flags)
  if not s then return nil, cerr end
  if not spec.name then unnamed = unnamed + 1 end
  born = born + 1
  return setmetatable(exits.init({ name = spec.name or ("sup" .. unnamed), core = s,
    strategy = strategy.decide, strategy_name = strategy.name, dynamic = strategy.dynamic,
    intensity = intensity, period_ms = period, auto_shutdown = spec.auto_shutdown or D.auto_shutdown,
    parent = parent, state = "starting", seq = 0, queue = {}, born = born }), Sup)
end

--- Make a supervisor from a spec with its child table, starting nothing
-- (state "starting"; M.boot starts the children).
-- @return supervisor | nil, err
function M.build(spec, parent)
  local sup, err = build(spec, parent)
  if not sup then return nil, err end
  local ok, herr = hub.start()
  if not ok then return nil, herr end
  for i, cs in ipairs(spec.children or {}) do
    local c, cerr = child_of(cs, "child " .. i)
    if not c then return nil, cerr end
    if sup.dynamic then
      if #spec.children ~= 1 then return bad("simple_one_for_one needs exactly one child spec (the template)") end
      if sup.auto_shutdown ~= "never" then return bad("simple_one_for_one takes no auto_shutdown (OTP)") end
      sup.template = c
    else
      local aok, aerr = add(sup, c)
      if not aok then return nil, aerr end
    end
  end
  live[sup] = true
  watch_strategy(sup, spec.strategy)
  return sup
end

--- Start a built supervisor's children in order, from a coroutine waiting
-- for each child's start (see msrt.supervisor). @return true | nil, err
-- (start_failed naming the child and why; the supervisor has ended then)
M.boot = boot

--- Start a supervisor from a spec (see msrt.supervisor): from a coroutine
-- it returns once every child has started.
-- @return supervisor | nil, err
function M.new(spec, parent)
  local sup, err = M.build(spec, parent)
  if not sup then return nil, err end
  local ok, berr = boot(sup)
  if not ok then return nil, berr end
  return sup
end

-- ---- the supervisor's API (documented in init.lua) ------------------------

local function need_running(sup)
  if sup.state ~= "running" then
    return nil, core.error("closed", ("supervisor %s is %s"):format(sup.name, sup.state))
  end
  return true
end

-- simple_one_for_one: a child from the template, args as its actor
-- args or extra process arguments.
local function from_template(sup, args)
  sup.seq = sup.seq + 1
  local t = sup.template
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  c.id = ("%s_%d"):format(t.id, sup.seq)
  c.spec = {}
  for k, v in pairs(t.spec) do c.spec[k] = v end
  c.spec.name = t.spec.name or t.id
  if args ~= nil and t.kind == "actor" then c.spec.args = args end
  if type(args) == "table" and t.kind == "process" then
    local cmd = { unpack(t.spec.cmd) }
    for _, a in ipairs(args) do cmd[#cmd + 1] = a end
    c.spec.cmd = cmd
  end
  return c
end

--- Add a child (a child spec; for simple_one_for_one the template's
-- args) and start it. @return handle, id | nil, err
function Sup:start_child(spec)
  args.check(self.dynamic or type(spec) == "table", 1, "start_child", "child spec table expected")
  local ok, err = need_running(self)
  if not ok then return nil, err end
  local c
  if self.dynamic then c = from_template(self, spec)
  else
    c, err = child_of(spec, "child")
    if not c then return nil, err end
  end
  ok, err = add(self, c)
  if not ok then return nil, err end
  ok, err = start(self, c)
  if not ok then
    self.core:delete(c.id)
    return nil, core.error("start_failed", ("child \"%s\" failed to start: %s"):format(c.id, tostring(err)),
      { child = c.id, reason = err })
  end
  event(self, "child_started", { child = c.id })
  return c.handle, c.id
end

--- Stop a child (its shutdown applies) and keep its spec (a temporary
-- child's, or simple_one_for_one's, is dropped). From a coroutine it
-- waits until the child is gone.
-- @return true | nil, err (not_found)
function Sup:terminate_child(id)
  args.check(type(id) == "string", 1, "terminate_child", "child id string expected")
  local c = self.core:record(id)
  if not c then return nil, core.error("not_found", ("supervisor %s: no child \"%s\""):format(self.name, tostring(id))) end
  await(function(done) stop_child(self, c, false, done) end)
  return true
end

-- OTP: simple_one_for_one keeps no specs to restart or delete.
local function not_dynamic(sup, fname)
  return nil, core.error("invalid_arg", ("supervisor %s: %s is not for simple_one_for_one (its children go when they end)"):format(sup.name, fname))
end

--- Start again a child that terminate_child stopped. @return handle | nil, err
function Sup:restart_child(id)
  args.check(type(id) == "string", 1, "restart_child", "child id string expected")
  local ok, err = need_running(self)
  if not ok then return nil, err end
  if self.dynamic then return not_dynamic(self, "restart_child") end
  local c = self.core:record(id)
  if not c then return nil, core.error("not_found", ("supervisor %s: no child \"%s\""):format(self.name, tostring(id))) end
  if c.handle or c.pending then return nil, core.error("invalid_arg", ("child \"%s\" is running"):format(id)) end
  ok, err = start(self, c)
  if not ok then return nil, err end
  event(self, "child_restarted", { child = id })
  return c.handle
end

--- Remove the spec of a child that is not running. @return true | nil, err
function Sup:delete_child(id)
  args.check(type(id) == "string", 1, "delete_child", "child id string expected")
  if self.dynamic then return not_dynamic(self, "delete_child") end
  local c = self.core:record(id)
  if c and (c.handle or c.pending) then
    return nil, core.error("invalid_arg", ("child \"%s\" is running: terminate it first"):format(id))
  end
  local ok, err = self.core:delete(tostring(id))
  if not ok then return nil, err end
  return true
end

--- The children in start order: {id, kind, type, restart, state,
-- significant, handle (nil when not running), restarts (by this
-- supervisor, since it started), started_ms (monotonic, core.now_ms)}.
function Sup:which_children()
  local out = self.core:children()
  for _, k in ipairs(out) do
    local c = self.core:record(k.id)
    k.kind, k.handle, k.restarts = c.kind, c.handle, c.restarts or 0
  end
  return out
end

--- {specs, active, supervisors, workers} as OTP counts them.
function Sup:count_children()
  local n = { specs = 0, active = 0, supervisors = 0, workers = 0 }
  for _, k in ipairs(self.core:children()) do
    n.specs = n.specs + 1
    if k.state == "running" then n.active = n.active + 1 end
    if k.type == "supervisor" then n.supervisors = n.supervisors + 1 else n.workers = n.workers + 1 end
  end
  return n
end

--- Stop every child in reverse start order, then end (reason default
-- "shutdown"); brutal kills them at once. Not an escalation.
function Sup:stop(reason, brutal)
  args.check(reason == nil or type(reason) == "string", 1, "stop", "reason string expected")
  terminate(self, reason or "shutdown", reason == nil or reason == "shutdown" or reason == "normal", brutal)
end

--- Check a supervisor spec (and its nested supervisors) without starting
-- anything: fields, strategy, child specs, duplicate ids, significance
-- (msrt-lua --check). @return true | nil, err (invalid_arg, bad_config,
-- syntax; err.child names the child when one is at fault)
function M.validate(spec)
  local ok, err = check_sup(spec)
  if not ok then return nil, err end
  local st, serr = strategy_of(spec.strategy)
  if not st then return nil, serr end
  local seen = {}
  for i, cs in ipairs(spec.children or {}) do
    local c, cerr = child_of(cs, "child " .. i)
    if not c then
      cerr.child = type(cs) == "table" and type(cs.id) == "string" and cs.id or nil
      return nil, cerr
    end
    local why = seen[c.id] and ("duplicate child id \"%s\""):format(c.id)
      or c.books.significant and (spec.auto_shutdown or D.auto_shutdown) == "never"
        and ("child \"%s\": significant children need auto_shutdown any_significant or all_significant"):format(c.id)
    if why then return bad(why, { child = c.id }) end
    seen[c.id] = true
    if c.kind == "supervisor" then
      local nok, nerr = M.validate(c.spec)
      if not nok then
        nerr.child = nerr.child or c.id
        return nil, nerr
      end
    end
  end
  return true
end

-- ---- reload (OTP code_change) ----------------------------------------------

-- The new records for a reloaded spec, all checked before anything changes.
local function reload_plan(sup, spec)
  local ok, err = check_sup(spec)
  if not ok then return nil, err end
  local strategy, serr = strategy_of(spec.strategy)
  if not strategy then return nil, serr end
  if strategy.dynamic ~= sup.dynamic then
    return bad(("supervisor %s: changing to or from simple_one_for_one needs a restart"):format(sup.name))
  end
  local plan = { strategy = strategy, children = {}, seen = {} }
  for i, cs in ipairs(spec.children or {}) do
    local c, cerr = child_of(cs, "child " .. i)
    if not c then return nil, cerr end
    local old = sup.core:record(c.id)
    if old and old.kind ~= c.kind and (old.handle or old.pending) then
      return bad(("child \"%s\": changing a running child from %s to %s needs a restart"):format(c.id, old.kind, c.kind))
    end
    if c.books.significant and (spec.auto_shutdown or D.auto_shutdown) == "never" then
      return bad(("child \"%s\": significant children need auto_shutdown any_significant or all_significant"):format(c.id))
    end
    plan.children[i], plan.seen[c.id] = c, true
  end
  return plan
end

--- Apply a reloaded spec, as OTP's code_change does: the flags
-- (intensity, period_ms, backoff) and the strategy apply from the next
-- event; children with ids already here get their new spec (restart,
-- shutdown, type, significant at once; the start spec at their next
-- start) and are not restarted; new ids are started (after the others);
-- removed ids keep running unless spec.stop_removed is true, in which
-- case they are stopped and their specs deleted. Everything is checked
-- before anything changes. @return true | nil, err
function Sup:update(spec)
  args.check(type(spec) == "table", 1, "update", "supervisor spec table expected")
  local ok, err = need_running(self)
  if not ok then return nil, err end
  local plan, perr = reload_plan(self, spec)
  if not plan then return nil, perr end
  local flags = flags_of(spec)
  ok, err = self.core:configure(flags)
  if not ok then return nil, err end
  self.strategy, self.strategy_name = plan.strategy.decide, plan.strategy.name
  self.intensity, self.period_ms = flags.intensity, flags.period_ms
  self.auto_shutdown = spec.auto_shutdown or D.auto_shutdown
  for _, c in ipairs(plan.children) do
    local old = self.core:record(c.id)
    if self.dynamic then
      self.template = c
    elseif old then -- the running instance keeps its record: update it
      local b = c.books
      assert(self.core:update(c.id, b.restart, b.shutdown_ms, b.supervisor, b.significant))
      local probed = old.source.health or c.source.health
      if probed then stop_health(old) end
      for _, k in ipairs({ "kind", "spec", "source" }) do old[k] = c[k] end
      if probed and old.handle then start_health(self, old) end -- the new probes from now on
    else
      local aok, aerr = add(self, c)
      if aok then aok, aerr = start(self, c) end
      if aok then event(self, "child_started", { child = c.id }) else
        event(self, "start_failed", { child = c.id, reason = tostring(aerr) })
      end
    end
  end
  if spec.stop_removed and not self.dynamic then
    for _, c in ipairs(self.core:records()) do
      if not plan.seen[c.id] then
        stop_child(self, c, false, function() self.core:delete(c.id) end)
      end
    end
  end
  event(self, "reloaded", { strategy = self.strategy_name })
  return true
end

--- A child failed its liveness probe: the strategy decides as for an exit
-- (kind "unhealthy", abnormal). For src/health. @return true | nil, err
function Sup:unhealthy(id, why)
  local c = self.core:record(id)
  if not c or not c.handle then return nil, core.error("not_found", ("no running child \"%s\""):format(tostring(id))) end
  if c.starting then -- still starting: a start failure, once it is stopped
    local f = c.starting
    c.starting, c.on_ready = nil, nil
    stop_child(self, c, false, function() f(false, why or "unhealthy") end, true)
    return true
  end
  child_exited(self, c, why or "unhealthy", false, "unhealthy")
  return true
end

--- Call fn(record) when the supervisor ends: {name, reason, normal}.
function Sup:on_exit(fn) return exits.on_exit(self, fn) end

--- Wait (yielding the coroutine) until the supervisor ends; its record.
function Sup:wait() return exits.wait(self, "supervisor:wait()") end

--- The running supervisors without a parent (for operator tools).
function M.roots()
  local out = {}
  for sup in pairs(live) do
    if not sup.parent then out[#out + 1] = sup end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- Supervisors alive (for tests and metrics).
function M.count()
  return nkeys(live)
end

--- Begin stopping every running root supervisor at once.
function M.stop_all(reason)
  for sup in pairs(live) do
    if not sup.parent then sup:stop(reason) end
  end
end

--- Shutdown (OTP's application stop): stop the root supervisors one after
-- the other, the newest first, each waited for (its tree top-down, every
-- child in reverse start order with its shutdown budget); then done().
function M.stop_trees(done)
  local roots = {}
  for sup in pairs(live) do
    if not sup.parent then roots[#roots + 1] = sup end
  end
  table.sort(roots, function(a, b) return a.born > b.born end)
  local i = 0
  local function next_root()
    i = i + 1
    local sup = roots[i]
    if not sup then return done() end
    sup:on_exit(next_root)
    sup:stop("shutdown")
  end
  next_root()
end

return M
