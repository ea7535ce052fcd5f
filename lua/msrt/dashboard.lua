--- What the dashboard reads (README "HTTP endpoints and the dashboard"):
-- once a second, and at once (within 20 ms) after each supervisor event
-- (`msrt.supervisor.<name>.event`: a restart shows with its new pid), the
-- host publishes `msrt.stats` (a table; NATS clients get it as JSON) while
-- a `websocket` listener is open, and answers requests
-- on `msrt.ctl.restart`, `msrt.ctl.stop` and `msrt.ctl.start` (data: a
-- child path "ROOT/.../CHILD", as `msrt-lua ctl`; reply: "restarted
-- PATH" or "error: ..."). Who may send those is the NATS auth policy's
-- say (a publish permission on `msrt.ctl.>`). Everything here is data the
-- host already keeps (msrt.metrics, the supervisors' books, each
-- process's stats), read on the hub. Hub thread only.
-- @module msrt.dashboard
local core = require "msrt.core"
local uv = require "luv"

local M = {}

M.STATS = "msrt.stats"
M.INTERVAL_MS = 1000

local timer, soon, ctl_subs
local cpu_seen, stdin_high = {}, {} -- by pid: last CPU ticks; by name: stdin high-water
local TICKS = 100                    -- sysconf(_SC_CLK_TCK) on Linux
local PAGE = 4096

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- CPU (percent of one core since the last sample) and RSS (bytes) of pid
-- from /proc (proc(5)).
local function usage(pid, now)
  local stat, statm = read("/proc/" .. pid .. "/stat"), read("/proc/" .. pid .. "/statm")
  if not stat or not statm then return nil, nil end
  local rest = stat:match("%) (.*)$") or ""
  local f = {}
  for v in rest:gmatch("%S+") do f[#f + 1] = v end
  local ticks = (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0) -- utime, stime
  local last = cpu_seen[pid]
  cpu_seen[pid] = { ticks = ticks, t = now }
  local cpu = last and now > last.t and (ticks - last.ticks) / TICKS / ((now - last.t) / 1000) * 100 or 0
  return cpu, (tonumber(statm:match("^%S+%s+(%S+)")) or 0) * PAGE
end

local function health_of(health, id)
  local h = type(health) == "table" and health[id]
  if type(h) ~= "table" then return nil end
  return h.state, h.ready
end

local function tree_of(sup, path, health, now)
  local node = { name = sup.name, path = path, strategy = sup.strategy_name, state = sup.state, children = {} }
  for _, k in ipairs(sup:which_children()) do
    local c = { id = k.id, path = path .. "/" .. k.id, kind = k.kind, state = k.state, restarts = k.restarts or 0 }
    if k.state == "running" and k.started_ms then c.uptime_ms = now - k.started_ms end
    if k.kind == "process" and k.handle and k.handle.pid then c.pid = k.handle:pid() end
    c.health, c.ready = health_of(health, k.id)
    if k.kind == "supervisor" and k.handle then c.tree = tree_of(k.handle, c.path, health, now) end
    node.children[#node.children + 1] = c
  end
  return node
end

local function processes(now)
  local out = {}
  for _, h in ipairs(require("msrt.process").live()) do
    local pid = h.pid and h:pid()
    local st = h:stats() or {}
    local q = st.stdin_queued or 0
    stdin_high[h.name] = math.max(stdin_high[h.name] or 0, q)
    local p = { name = h.name, pid = pid, state = h:state(), stdin_queued = q, stdin_high = stdin_high[h.name] }
    if pid then p.cpu, p.rss = usage(pid, now) end
    out[#out + 1] = p
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- One snapshot: {t (wall ms), pid, cpu and rss of the host, tree (root
-- supervisors, children with state, pid, uptime_ms, restarts, health,
-- ready; nested supervisors as `tree`), router (msrt.metrics().router:
-- totals and classes by outcome), mailbox {depth, high} (the actors'
-- mailboxes; high the highest live high-water mark), processes (name,
-- pid, state, cpu %, rss bytes, stdin_queued, stdin_high: the highest
-- queue seen by these samples)}.
function M.snapshot()
  local now = core.now_ms()
  local m = require("msrt").metrics()
  local tree = {}
  for _, sup in ipairs(require("msrt.supervisor").roots()) do tree[#tree + 1] = tree_of(sup, sup.name, m.health, now) end
  local depth, high = require("msrt.actors").mailboxes()
  local me = uv.os_getpid()
  local cpu, rss = usage(me, now)
  local sec, usec = uv.gettimeofday()
  return {
    t = sec * 1000 + usec / 1000, pid = me, cpu = cpu, rss = rss, tree = tree, router = m.router,
    mailbox = { depth = depth, high = high }, processes = processes(now),
  }
end

local function on_ctl(verb)
  return function(msg)
    local path = type(msg.data) == "string" and msg.data or ""
    local text = require("msrt.ops").child(verb, path)
    if msg.reply then require("msrt").publish(msg.reply, text) end
  end
end

local function publish()
  local msrt = require("msrt")
  local ok, snap = pcall(M.snapshot)
  if ok then msrt.publish(M.STATS, snap) else msrt.log("warn", "dashboard stats: " .. tostring(snap)) end
end

local users = 0 -- websocket listeners open

--- Start publishing msrt.stats and answering msrt.ctl.* for one more
-- websocket listener (each start is matched by a release). The timers do
-- not keep the host alive.
function M.start()
  users = users + 1
  if timer then return end
  local msrt = require("msrt")
  timer = uv.new_timer()
  timer:start(M.INTERVAL_MS, M.INTERVAL_MS, publish)
  timer:unref()
  soon = uv.new_timer()
  soon:unref()
  local pending = false
  ctl_subs = { assert(msrt.subscribe("msrt.supervisor.*.event", function()
    if pending or soon:is_closing() then return end
    pending = true
    soon:start(20, 0, function() pending = false publish() end)
  end)) }
  for _, verb in ipairs({ "restart", "stop", "start" }) do
    ctl_subs[#ctl_subs + 1] = assert(msrt.subscribe("msrt.ctl." .. verb, on_ctl(verb)))
  end
end

--- One websocket listener less: at none, stop.
function M.release()
  users = math.max(0, users - 1)
  if users == 0 then M.stop() end
end

--- Stop (shutdown).
function M.stop()
  users = 0
  if not timer then return end
  for _, t in ipairs({ timer, soon }) do if not t:is_closing() then t:close() end end
  for _, s in ipairs(ctl_subs or {}) do s:unsubscribe() end
  timer, soon, ctl_subs = nil, nil, nil
end

return require("msrt.held").keep("msrt.dashboard", M) -- closed at shutdown
