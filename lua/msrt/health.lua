--- Health checks on the hub (docs/architecture.md "Health checks"), with
-- Kubernetes probe semantics:
-- startup, liveness and readiness probes of a supervised child. The
-- thresholds, states and startup gating are in C (src/health, through
-- msrt.core); this file runs the probes on the hub loop (timers, luv tcp,
-- msrt.process for exec), never blocking it, and acts on what the C books
-- answer: a liveness failure goes to the supervisor (`unhealthy`), a
-- readiness failure takes the child's subscriptions out of their queue
-- groups until it recovers. States are published on `msrt.health.<id>`.
-- Internal: supervisor.lua starts and stops checks; `msrt.metrics().health`
-- reads M.metrics(). Hub thread only.
-- @module msrt.health
local core = require "msrt.core"
local hub = require "msrt.hub"
local schema = require "msrt.schema"
local uv = require "luv"
local ffi = require "ffi"
local band = require("bit").band
local nkeys = require "table.nkeys" -- LuaJIT: the number of keys

local M = {}

-- The hot path (a run begun, recorded, the next one found: ten thousand
-- times a second for a thousand children at 100 ms) calls src/health
-- through the FFI, which LuaJIT compiles; msrt-lua exports these symbols.
-- The books are the msrt.core userdata (its payload is the msrt_health).
pcall(ffi.cdef, [[
  int msrt_health_begin(void *h, int kind, int64_t now_ms);
  int64_t msrt_health_next(const void *h, int64_t now_ms);
  unsigned msrt_health_record(void *h, int kind, int ok, int64_t now_ms);
]])
local C = ffi.C
local KIND_NO = { startup = 0, liveness = 1, readiness = 2 }
local EV_CHANGED, EV_RESTART, EV_READY, EV_UNREADY = 1, 4, 8, 16

--- Where state changes are logged: set by init.lua to msrt.log.
M.log = function() end

local KINDS = { "startup", "liveness", "readiness" }
local PROBE_TYPES = { "heartbeat", "tcp", "http", "exec", "lua", "alive" }
--- A health table's fields: its probes.
M.SPEC = { startup = schema.table, liveness = schema.table, readiness = schema.table }
local int = schema.int
--- A probe's fields (msrt.schema): the Kubernetes ones (the C books,
-- health/health.h, check their ranges and defaults) and its type, exactly
-- one of heartbeat..alive (probe_type checks the target's syntax).
M.PROBE = { initial_delay_ms = int(0, nil, "ms"), interval_ms = int(0, nil, "ms"),
  timeout_ms = int(0, nil, "ms"), failure_threshold = int(0, nil), success_threshold = int(0, nil),
  heartbeat = schema.string, tcp = schema.string, http = schema.string, exec = schema.table,
  lua = schema.func, alive = schema.boolean }

local live = {} -- child id -> check (the most recent one for that id)

-- ---- probe specs -----------------------------------------------------------

local function ip_port(s)
  local host, port = s:match("^%[?([^%]]+)%]?:(%d+)$")
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then return nil end
  if host == "localhost" then host = "127.0.0.1" end
  return host, port
end

-- http://host:port/path -> host, port, path
local function parse_url(s)
  local hostport, path = s:match("^http://([^/]+)(.*)$")
  if not hostport then return nil end
  local host, port = ip_port(hostport)
  if not host then host, port = hostport, 80 end
  if host == "localhost" then host = "127.0.0.1" end
  if path == "" then path = "/" end
  if path:find("[%s%c]") then return nil end
  return host, port, path, hostport
end

-- Which probe type a probe table has, and its target; nil, why if it is
-- not exactly one of them with a well-formed target.
local function probe_type(p)
  local found
  for _, t in ipairs(PROBE_TYPES) do
    if p[t] ~= nil then
      if found then return nil, ("has both %s and %s"):format(found, t) end
      found = t
    end
  end
  if not found then return nil, "needs one of heartbeat, tcp, http, exec, lua or alive" end
  local v = p[found]
  if found == "heartbeat" and (type(v) ~= "string" or v:find("[%*>%s]") or v == "") then
    return nil, "heartbeat must be a subject (no wildcards)"
  elseif found == "tcp" and (type(v) ~= "string" or not ip_port(v)) then
    return nil, "tcp must be \"host:port\""
  elseif found == "http" and (type(v) ~= "string" or not parse_url(v)) then
    return nil, "http must be \"http://host:port/path\""
  elseif found == "exec" and (type(v) ~= "table" or type(v[1]) ~= "string") then
    return nil, "exec must be a list {\"cmd\", \"arg\", ...}"
  elseif found == "lua" and type(v) ~= "function" then
    return nil, "lua must be a function(child) returning ok, why"
  end
  return found
end

--- Check a child spec's `health` table: {startup = probe, liveness =
-- probe, readiness = probe}; a probe is one of {heartbeat = subject},
-- {tcp = "host:port"}, {http = "http://host:port/path"} (a host name is
-- resolved at each probe, on the loop), {exec = {cmd, ...}},
-- {lua = fn(child)}, {alive = true} with the Kubernetes fields.
-- @return true | nil, message
function M.check(spec)
  if type(spec) ~= "table" then return nil, "health must be a table {liveness = probe, ...}" end
  local ok, why = schema.check(spec, M.SPEC, "health")
  if not ok then return nil, (why:gsub("unknown field", "unknown probe kind", 1)) end
  for _, kind in ipairs(KINDS) do
    local p = spec[kind]
    if p ~= nil then
      ok, why = schema.check(p, M.PROBE, "health." .. kind)
      if not ok then return nil, why end
      local t, why = probe_type(p)
      if not t then return nil, ("health.%s %s"):format(kind, why) end
    end
  end
  -- the thresholds and times are checked by the C books
  local books, err = core.health_new(M.configs(spec), 0)
  if not books then return nil, err.message end
  return true
end

--- The C books' configs from a health spec: a heartbeat's first look
-- comes one interval after its initial delay (the window must pass).
function M.configs(spec)
  local out = {}
  for _, kind in ipairs(KINDS) do
    local p = spec[kind]
    if p then
      local c = {}
      for k in pairs(M.PROBE) do c[k] = p[k] end
      if p.heartbeat and type(c.initial_delay_ms or 0) == "number" and type(c.interval_ms or 0) == "number" then
        c.initial_delay_ms = (c.initial_delay_ms or 0) + (c.interval_ms or 10000)
      end
      out[kind] = c
    end
  end
  return out
end

-- ---- heartbeats: one stamp subscription per subject, shared ----------------
-- A heartbeat never reaches the hub: the publishing thread stores the time
-- it came into a slot (a stamp endpoint, src/bus/endpoints.h), which a probe reads through the FFI.

local beats = {} -- subject -> {slot (uint64_t * of monotonic ns), users, sid, lud}

local function beat_use(subject)
  local b = beats[subject]
  if b then
    b.users = b.users + 1
    return b
  end
  local ok, err = hub.start()
  if not ok then return nil, err end
  local sid, lud = core.stamp_subscribe(subject)
  if not sid then return nil, lud end
  b = { users = 1, sid = sid, lud = lud, slot = ffi.cast("uint64_t *", lud) }
  beats[subject] = b
  return b
end

local function beat_release(subject)
  local b = beats[subject]
  if not b then return end
  b.users = b.users - 1
  if b.users == 0 then
    beats[subject] = nil
    core.stamp_unsubscribe(b.sid, b.lud)
  end
end

-- ---- runners: run(probe, check, finish) -> cancel | nil -------------------
-- finish(ok, why) exactly once unless cancelled (a timeout or a stop).

local run = {}

-- Any message on the subject within the last interval; a heartbeat may be
-- up to timeout_ms late (a sender's timer drifts against the probe's).
-- Synchronous (no timeout needed): returns ok, why.
local sync = {}
function sync.heartbeat(p, _, now)
  local b = beats[p.heartbeat]
  local ns = b and tonumber(b.slot[0]) or 0
  -- the stamp is CLOCK_MONOTONIC, as is the loop's time (uv.now)
  if ns > 0 and now - ns / 1e6 <= p.interval_ms + p.timeout_ms then return true end
  return false, ("no message on %s within %d ms"):format(p.heartbeat, p.interval_ms)
end

local function close(h)
  if h and not h:is_closing() then h:close() end
end

-- Connect tcp to host:port, then cb(err | nil): an address at once, a
-- host name once getaddrinfo has resolved it on the loop (libuv's
-- threadpool; the probe's timeout covers both). Nothing happens after
-- tcp is closed.
local function connect(tcp, host, port, cb)
  local function go(addr)
    local ok, err = pcall(tcp.connect, tcp, addr, port, cb)
    if not ok then cb(tostring(err)) end
  end
  if host:find("^[%d.]+$") or host:find(":", 1, true) then return go(host) end
  uv.getaddrinfo(host, tostring(port), { socktype = "stream" }, function(err, res)
    if tcp:is_closing() then return end
    if err or not res or not res[1] then return cb(("cannot resolve %s: %s"):format(host, tostring(err or "no address"))) end
    go(res[1].addr)
  end)
end

function run.tcp(p, _, finish)
  local host, port = ip_port(p.tcp)
  local tcp = uv.new_tcp()
  connect(tcp, host, port, function(cerr)
    close(tcp)
    if cerr then finish(false, "tcp connect " .. p.tcp .. ": " .. tostring(cerr)) else finish(true) end
  end)
  return function() close(tcp) end
end

-- The status code of an HTTP/1.x status line, or nil.
local function status_of(line)
  local code = line:match("^HTTP/1%.%d (%d%d%d)")
  return tonumber(code)
end

-- A plain HTTP/1.1 GET; 2xx is healthy. Only the status line is read, then
-- the connection is closed.
function run.http(p, _, finish)
  local host, port, path, hostport = parse_url(p.http)
  local tcp = uv.new_tcp()
  local got = ""
  local function done(ok, why)
    close(tcp)
    finish(ok, why)
  end
  local function on_read(rerr, chunk)
    if rerr then return done(false, "http read: " .. tostring(rerr)) end
    if not chunk then return done(false, "http: connection closed before a status line") end
    got = got .. chunk
    local line = got:match("^([^\r\n]*)\r?\n")
    if not line then
      if #got > 8192 then done(false, "http: status line too long") end
      return
    end
    local code = status_of(line)
    if not code then return done(false, "http: bad status line: " .. line:sub(1, 80)) end
    if code >= 200 and code < 300 then return done(true) end
    done(false, ("http GET %s: status %d"):format(p.http, code))
  end
  connect(tcp, host, port, function(cerr)
    if cerr then return done(false, "http connect " .. hostport .. ": " .. tostring(cerr)) end
    local req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: msrt-health\r\nAccept: */*\r\nConnection: close\r\n\r\n")
      :format(path, hostport)
    tcp:write(req)
    tcp:read_start(on_read)
  end)
  return function() close(tcp) end
end

local exec_seq = 0

-- The command through msrt.process (vfork + exec: no fork of a large host);
-- exit status 0 is healthy; a timeout kills its process group.
function run.exec(p, check, finish)
  local process = require "msrt.process"
  exec_seq = exec_seq + 1
  local name = ("health-%d"):format(exec_seq)
  local h, err = process.new({ name = name, cmd = p.exec, codec = "raw", inherit_env = { "PATH", "HOME" },
    publish_as = "_HEALTH.exec." .. name, stop = { grace_ms = 0 } })
  if not h then return finish(false, "exec: " .. tostring(err)) end
  h:close_stdin()
  h:on_exit(function(rec)
    if rec.code == 0 and not rec.signal then return finish(true) end
    finish(false, ("exec %s: %s"):format(p.exec[1], rec.reason))
  end)
  return function() h:signal("KILL") end
end

-- A Lua function(child) -> ok, why, run as a coroutine (it may yield on
-- msrt.request and the like); an error is a failure.
function run.lua(p, check, finish)
  local co = coroutine.create(function()
    local ok, res, why = pcall(p.lua, check.child)
    if not ok then return finish(false, "lua probe error: " .. tostring(res)) end
    finish(res and true or false, why)
  end)
  local ok, err = coroutine.resume(co)
  if not ok then finish(false, "lua probe error: " .. tostring(err)) end
end

-- The child is running: a process with a pid, an actor with live instances.
function sync.alive(_, check)
  local h = check.child.handle
  local up
  if check.child.kind == "process" then up = h:pid() ~= nil
  elseif check.child.kind == "actor" then up = #h:ids() > 0
  else up = h.state == "running" end
  return up, not up and "not running" or nil
end

-- ---- a child's check ---------------------------------------------------------

local Check = {}
Check.__index = Check

-- Publish the child's state on msrt.health.<id> (and log it).
local function announce(c, kind, why)
  local probe = c.books:probe(kind)
  local state = c.books:state()
  local rec = { id = c.id, state = state, ready = c.books:ready(), probe = kind,
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
  local ev = C.msrt_health_record(c.ptr, KIND_NO[kind], ok and 1 or 0, now or uv.now())
  local changed, restart = band(ev, EV_CHANGED) ~= 0, band(ev, EV_RESTART) ~= 0
  local ready
  if band(ev, EV_READY) ~= 0 then ready = true elseif band(ev, EV_UNREADY) ~= 0 then ready = false end
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
    if C.msrt_health_begin(c.ptr, KIND_NO[kind], now) ~= 0 then launch(c, kind, now) end
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
  local d = tonumber(C.msrt_health_next(c.ptr, now))
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
function Check:state() return self.books:state() end

--- Whether the child takes queue-group messages.
function Check:ready() return self.books:ready() end

--- Start checking a child. id: its id (msrt.health.<id>); spec: its
-- `health` table (checked with M.check); child: {id, kind, handle,
-- unhealthy = fn(why)} (unhealthy is called when liveness or startup
-- reaches its failure threshold; ready, if given, when it becomes ready).
-- @return check | nil, err
function M.start(id, spec, child)
  local ok, why = M.check(spec)
  if not ok then return nil, core.error("invalid_arg", why) end
  local books, err = core.health_new(M.configs(spec), uv.now())
  if not books then return nil, err end
  local c = setmetatable({ id = id, child = child, books = books, probes = {}, kinds = {},
    running = {}, cancels = {}, last = {}, seq = 0, ptr = ffi.cast("void *", books) }, Check)
  c.child.id = c.child.id or id
  nlive = nlive + 1
  wheel = wheel or uv.new_timer()
  for _, kind in ipairs(KINDS) do
    local p = spec[kind]
    if p then
      local t = assert(probe_type(p))
      local cp = { type = t, interval_ms = p.interval_ms or 10000, timeout_ms = p.timeout_ms or 1000 }
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
  if not books:ready() then set_ready(c, false) end
  c.state = books:state()
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
    local rec = { state = c.books:state(), ready = c.books:ready() }
    for _, kind in ipairs(c.kinds) do
      rec[kind] = c.books:probe(kind)
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
