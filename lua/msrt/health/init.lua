--- Health checks on the hub (docs/architecture.md "Health checks"), with
-- Kubernetes probe semantics:
-- startup, liveness and readiness probes of a supervised child. The
-- thresholds, states and startup gating are in C (src/health, reached
-- through health/books.lua only); the specs are health/spec.lua's, the
-- probe runners health/probes.lua's; this file runs each child's check on
-- the hub loop (one timer for all), never blocking it, and acts on what
-- the books answer: a liveness failure goes to the supervisor
-- (`unhealthy`), a readiness failure takes the child's subscriptions out
-- of their queue groups until it recovers. States are published on
-- `msrt.health.<id>`.
-- Internal: supervisor.lua starts and stops checks; `msrt.metrics().health`
-- reads M.metrics(). Hub thread only.
-- @module msrt.health
local core = require "msrt.core"
local hub = require "msrt.hub"
local uv = require "luv"
local books = require "msrt.health.books"
local hspec = require "msrt.health.spec"
local probes = require "msrt.health.probes"
local nkeys = require "table.nkeys" -- LuaJIT: the number of keys

local M = {}

--- Where state changes are logged: set by init.lua to msrt.log.
M.log = function() end

M.SPEC, M.PROBE, M.check, M.configs = hspec.SPEC, hspec.PROBE, hspec.check, hspec.configs
local KINDS, probe_type = hspec.KINDS, hspec.probe_type
local sync, run, close = probes.sync, probes.run, probes.close
local beat_use, beat_release = probes.beat_use, probes.beat_release

local live = {} -- child id -> check (the most recent one for that id)

-- ---- a child's check ---------------------------------------------------------

local Check = {}
Check.__index = Check

-- Publish the child's state on msrt.health.<id> (and log it).
local function announce(c, kind, why)
  local probe = c.books.ud:probe(kind)
  local state = c.books.ud:state()
  local rec = { id = c.id, state = state, ready = c.books.ud:ready(), probe = kind,
    probe_state = probe.state, failures = probe.failures, successes = probe.successes, reason = why }
  c.state = state
  local level = (probe.state == "unhealthy" or probe.state == "degraded") and "warn" or "info"
  M.log(level, ("health %s: %s %s (%s)%s"):format(c.id, kind, probe.state, state, why and (": " .. why) or ""))
  local ok, err = hub.publish("msrt.health." .. c.id, rec, {})
  if not ok and err and err.code ~= "no_responders" then M.log("warn", "health state not published: " .. tostring(err)) end
end

-- Put the child's subscriptions in or out of their queue groups.
local function set_ready(c, ready)
  local h = c.child.handle
  if not h or not h.subscriptions then return end
  for _, sid in ipairs(h:subscriptions()) do core.set_ready(sid, ready) end
end

-- ---- one timer for every check: a min-heap of due times ------------------
-- A luv timer per check would cost a timer callback (a coroutine on the
-- hub) per probe run; checks due in the same millisecond share one here.
-- Entries are lazy: one whose seq is not its check's current one is skipped.

local hdue, hcheck, hseq = {}, {}, {}
local hlen = 0
local wheel, armed_at -- the luv timer (open while checks live), its due time
local nlive = 0

local function hswap(i, j)
  hdue[i], hdue[j] = hdue[j], hdue[i]
  hcheck[i], hcheck[j] = hcheck[j], hcheck[i]
  hseq[i], hseq[j] = hseq[j], hseq[i]
end

local function hpush(due, c)
  hlen = hlen + 1
  local i = hlen
  hdue[i], hcheck[i], hseq[i] = due, c, c.seq
  while i > 1 do
    local up = math.floor(i / 2)
    if hdue[up] <= hdue[i] then break end
    hswap(i, up)
    i = up
  end
end

local function hpop()
  local c, seq = hcheck[1], hseq[1]
  hswap(1, hlen)
  hdue[hlen], hcheck[hlen], hseq[hlen] = nil, nil, nil
  hlen = hlen - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= hlen and hdue[l] < hdue[m] then m = l end
    if r <= hlen and hdue[r] < hdue[m] then m = r end
    if m == i then break end
    hswap(i, m)
    i = m
  end
  return c, seq
end

local fire -- forward

local function arm()
  if hlen == 0 or not wheel then return end
  if armed_at and armed_at <= hdue[1] then return end
  armed_at = hdue[1]
  wheel:stop()
  wheel:start(math.max(0, armed_at - uv.now()), 0, fire)
end

local schedule -- forward

-- A result of probe kind: into the books, then act on their answer.
local function record(c, kind, ok, why, now)
  if c.stopped then return end
  c.running[kind] = nil
  local changed, restart, ready = books.record(c.books, kind, ok, now or uv.now())
  if ok then why = nil end -- a passing probe's words are not a reason
  c.last[kind] = why
  if changed or ready ~= nil then announce(c, kind, why) end
  if ready ~= nil then set_ready(c, ready) end
  if ready and c.child.ready then c.child.ready() end
  if restart then
    local what = kind == "startup" and "startup probe failed" or "liveness probe failed"
    c.child.unhealthy(what .. (why and (": " .. why) or ""))
  end
  if not c.stopped and not c.ticking then schedule(c) end
end

-- Start an asynchronous run of probe p (kind), with its timeout.
local function launch_async(c, kind, p)
  local token, timer, cancel = {}, nil, nil
  c.running[kind] = token
  local function finish(ok, why)
    if c.running[kind] ~= token then return end -- timed out or stopped
    if timer then close(timer) end
    record(c, kind, ok, why)
  end
  cancel = run[p.type](p, c, finish)
  if c.running[kind] ~= token then return end -- finished at once
  timer = uv.new_timer()
  timer:start(core.timeout_ms(p.timeout_ms), 0, function() -- never early
    close(timer)
    if c.running[kind] ~= token then return end
    if cancel then cancel() end
    record(c, kind, false, ("timed out after %d ms"):format(p.timeout_ms))
  end)
  c.cancels[kind] = function()
    close(timer)
    if cancel then cancel() end
  end
end

-- Start a run of probe kind. Kept free of closures: a function that
-- makes one is not compiled by LuaJIT, and this is the hot path.
local function launch(c, kind, now)
  local p = c.probes[kind]
  local f = sync[p.type]
  if not f then return launch_async(c, kind, p) end
  local ok, why = f(p, c, now)
  return record(c, kind, ok, why, now)
end

local function tick(c, now)
  c.ticking = true
  for _, kind in ipairs(c.kinds) do
    if books.begin(c.books, kind, now) then launch(c, kind, now) end
    if c.stopped then return end
  end
  c.ticking = false
  schedule(c, now)
end

-- Run every check that is due, then wait for the next.
function fire()
  armed_at = nil
  local now = uv.now()
  while hlen > 0 and hdue[1] <= now do
    local c, seq = hpop()
    if c.seq == seq and not c.stopped then tick(c, now) end
  end
  arm()
end

-- Put check c on the heap at its next due run (none while every probe of
-- it is in flight: a result schedules it again).
function schedule(c, now)
  now = now or uv.now()
  local d = books.next(c.books, now)
  c.seq = c.seq + 1
  if d < 0 then return end
  hpush(now + d, c)
  if not armed_at or armed_at > now + d then arm() end
end

--- Stop the probes (the child stopped or is being restarted); runs in
-- flight are cancelled and their results ignored.
function Check:stop()
  if self.stopped then return end
  self.stopped = true
  nlive = nlive - 1
  if nlive == 0 then -- nothing left to check: the loop may end
    close(wheel)
    wheel, armed_at = nil, nil
    hdue, hcheck, hseq, hlen = {}, {}, {}, 0
  end
  for kind, cancel in pairs(self.cancels) do
    if self.running[kind] then cancel() end
  end
  self.running = {}
  for _, kind in ipairs(self.kinds) do
    local p = self.probes[kind]
    if p.type == "heartbeat" then beat_release(p.heartbeat) end
  end
  if live[self.id] == self then live[self.id] = nil end
end

--- The child's state: starting, unknown, healthy, degraded or unhealthy.
function Check:state() return self.books.ud:state() end

--- Whether the child takes queue-group messages.
function Check:ready() return self.books.ud:ready() end

--- Start checking a child. id: its id (msrt.health.<id>); spec: its
-- `health` table (checked with M.check); child: {id, kind, handle,
-- unhealthy = fn(why)} (unhealthy is called when liveness or startup
-- reaches its failure threshold; ready, if given, when it becomes ready).
-- @return check | nil, err
function M.start(id, spec, child)
  local ok, why = M.check(spec)
  if not ok then return nil, core.error("invalid_arg", why) end
  local b, err = books.new(M.configs(spec), uv.now())
  if not b then return nil, err end
  local c = setmetatable({ id = id, child = child, books = b, probes = {}, kinds = {},
    running = {}, cancels = {}, last = {}, seq = 0 }, Check)
  c.child.id = c.child.id or id
  nlive = nlive + 1
  wheel = wheel or uv.new_timer()
  for _, kind in ipairs(KINDS) do
    local p = spec[kind]
    if p then
      local t = assert(probe_type(p))
      local cp = { type = t, interval_ms = p.interval_ms or books.DEFAULTS.interval_ms,
        timeout_ms = p.timeout_ms or books.DEFAULTS.timeout_ms }
      cp[t] = p[t]
      if t == "heartbeat" then
        local b, berr = beat_use(p.heartbeat)
        if not b then
          c:stop()
          return nil, berr
        end
      end
      c.probes[kind] = cp
      c.kinds[#c.kinds + 1] = kind
    end
  end
  -- Kubernetes: not ready until readiness (and startup) have succeeded
  if not b.ud:ready() then set_ready(c, false) end
  c.state = b.ud:state()
  live[id] = c
  schedule(c)
  return c
end

--- Health of every checked child: {[id] = {state, ready, startup,
-- liveness, readiness}} (each probe {state, successes, failures, runs,
-- oks, fails, interval_ms, timeout_ms, last_error}).
function M.metrics()
  local out = {}
  for id, c in pairs(live) do
    local rec = { state = c.books.ud:state(), ready = c.books.ud:ready() }
    for _, kind in ipairs(c.kinds) do
      rec[kind] = c.books.ud:probe(kind)
      rec[kind].last_error = c.last[kind]
    end
    out[id] = rec
  end
  return out
end

--- Checks running (for tests).
function M.count()
  return nkeys(live)
end

return M
