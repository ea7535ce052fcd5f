--- Operator tools (README "Operator tools"): the Prometheus /metrics text
-- (served by the web listener, msrt.web), the host's readiness, and the
-- control socket that `msrt-lua ctl SOCKET COMMAND` talks to
-- (msrt.ctl.USAGE), as users of supervisorctl, s6-svstat and Erlang's
-- observer expect. All run on the hub thread and never keep it alive.
-- Internal: started by `msrt-lua --metrics ADDR` / `--ctl PATH` or
-- `msrt.start{metrics = ADDR, ctl = PATH}`. Hub thread only.
-- @module msrt.ops
local core = require "msrt.core"
local uv = require "luv"
local held = require "msrt.held"

local M = {}

local started_ms = core.now_ms()
local servers, sockets = {}, {}

-- ---- what the tools show ---------------------------------------------------

local function supervisors() return require("msrt.supervisor").roots() end

-- The state of child id in health (msrt.metrics().health, read once per
-- tree), or nil.
local function health_of(health, id)
  local s = type(health) == "table" and health[id]
  return type(s) == "table" and s.state or s
end

local function uptime(ms)
  if not ms or ms <= 0 then return "-" end
  local s = (core.now_ms() - ms) / 1000
  if s < 60 then return ("%.1fs"):format(s) end
  if s < 3600 then return ("%dm%02ds"):format(s / 60, s % 60) end
  return ("%dh%02dm"):format(s / 3600, (s % 3600) / 60)
end

local function pid_of(k)
  if k.kind == "process" and k.handle and k.handle.pid then return tostring(k.handle:pid() or "-") end
  if k.kind == "actor" and k.handle then return "actor#" .. tostring(k.handle:ids()[1] or "-") end
  return "-"
end

-- One supervisor and its children, indented, into lines.
local function draw(sup, indent, lines, health)
  lines[#lines + 1] = ("%s%s (%s, %s)"):format(indent, sup.name, sup.strategy_name or "?", sup.state)
  for _, k in ipairs(sup:which_children()) do
    lines[#lines + 1] = ("%s  %-16s %-10s %-8s %-12s up %-8s restarts %-3d health %s"):format(indent,
      k.id, k.kind, k.state, pid_of(k), k.state == "running" and uptime(k.started_ms) or "-",
      k.restarts or 0, health_of(health, k.id) or "-")
    if k.kind == "supervisor" and k.handle then draw(k.handle, indent .. "    ", lines, health) end
  end
end

--- The supervision trees as text: each child's state, pid, uptime,
-- restarts and health, then what each health state means.
function M.tree()
  local lines = {}
  local health = require("msrt").metrics().health
  for _, sup in ipairs(supervisors()) do draw(sup, "", lines, health) end
  if #lines == 0 then return "(no supervisors)\n" end
  return table.concat(lines, "\n") .. "\n" .. require("msrt.ctl").HEALTH
end

-- "root/sup/.../child" (the root supervisor's name, then child ids) ->
-- the supervisor holding the child, and its id | nil, why.
local function resolve(path)
  local parts = {}
  for p in path:gmatch("[^/]+") do parts[#parts + 1] = p end
  if #parts < 2 then return nil, ("%s: a child path is ROOT/.../CHILD, e.g. fleet/workers/c-1"):format(path) end
  local sup
  for _, r in ipairs(supervisors()) do
    if r.name == parts[1] then sup = r end
  end
  if not sup then return nil, ("%s: no root supervisor \"%s\""):format(path, parts[1]) end
  for i = 2, #parts - 1 do
    local nested
    for _, k in ipairs(sup:which_children()) do
      if k.id == parts[i] and k.kind == "supervisor" then nested = k.handle end
    end
    if not nested then return nil, ("%s: %s has no running supervisor child \"%s\""):format(path, sup.name, parts[i]) end
    sup = nested
  end
  return sup, parts[#parts]
end

--- OTP's terminate_child / restart_child through a child path
-- ("ROOT/.../CHILD"); verb "stop", "start" or "restart". Waits (yielding
-- the hub coroutine) for the child's shutdown and start.
-- @return the answer line: "restarted PATH\n" and the like, or
--   "error: ...\n"
function M.child(verb, path)
  local sup, id = resolve(path)
  if not sup then return "error: " .. id .. "\n" end
  local ok, err = true, nil
  if verb ~= "start" then ok, err = sup:terminate_child(id) end
  if ok and verb ~= "stop" then ok, err = sup:restart_child(id) end
  if not ok then return ("error: %s: %s\n"):format(path, err.message or tostring(err)) end
  return ("%s %s\n"):format(verb == "stop" and "stopped" or verb == "start" and "started" or "restarted", path)
end

--- One screen of status: pid, uptime, profile, workers, actors,
-- processes, supervisors, router totals, reloads.
function M.status()
  local m = require("msrt").metrics()
  local p = require("msrt").profile() or {}
  local r = m.router or {}
  local reloads = require("msrt.reload").counts()
  return table.concat({
    ("pid %d, up %s, profile %s, %s workers"):format(uv.os_getpid(), uptime(started_ms), tostring(p.name), tostring(m.workers)),
    ("actors %s, processes %d, supervisors %d"):format(tostring(m.actors), require("msrt.process").count(), require("msrt.supervisor").count()),
    ("router: accepted %s, delivered %s, dropped %s, refused %s, no_responders %s"):format(
      tostring(r.accepted), tostring(r.delivered), tostring(r.dropped), tostring(r.refused), tostring(r.no_responders)),
    ("reloads: %d ok, %d failed"):format(reloads.ok, reloads.failed),
  }, "\n") .. "\n"
end

-- A label value as the Prometheus text format writes it: backslash,
-- double quote and line feed escaped (so a child id cannot end the label
-- or start a series of its own).
local function esc(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function metric(out, name, kind, help, samples)
  out[#out + 1] = ("# HELP msrt_%s %s\n# TYPE msrt_%s %s"):format(name, help, name, kind)
  for _, s in ipairs(samples) do
    out[#out + 1] = ("msrt_%s%s %s"):format(name, s[1] or "", tostring(s[2] or 0))
  end
end

-- Each durable queue's counts (README "Durable work queues").
local function queue_metrics(out)
  local qs = require("msrt.queue").stats()
  local qm, qr, qd, qa = {}, {}, {}, {}
  for _, q in ipairs(qs) do
    local l = ('queue="%s"'):format(esc(q.name))
    for _, st in ipairs { "stored", "pending", "ack_pending" } do
      qm[#qm + 1] = { ('{%s,state="%s"}'):format(l, st), q[st] }
    end
    qr[#qr + 1] = { "{" .. l .. "}", q.redelivered }
    qd[#qd + 1] = { "{" .. l .. "}", q.dead_lettered }
    qa[#qa + 1] = { "{" .. l .. "}", q.acked }
  end
  metric(out, "queue_messages", "gauge", "Messages of each durable queue: stored, pending (not in a consumer's hands), ack_pending.", qm)
  metric(out, "queue_redelivered_total", "counter", "Deliveries after the first, per durable queue.", qr)
  metric(out, "queue_dead_lettered_total", "counter", "Messages terminated or past max_deliver, per durable queue.", qd)
  metric(out, "queue_acked_total", "counter", "Messages acknowledged, per durable queue.", qa)
end

-- Each NATS bridge's state and accounting (README "More than one host"),
-- labelled by its name on the wire.
local function bridge_metrics(out)
  local bridges = {}
  for _, nats in ipairs(held.copies("msrt.nats")) do
    for _, b in ipairs(nats.list()) do bridges[#bridges + 1] = b end
  end
  local msgs, up, slow, recon = {}, {}, {}, {}
  for _, b in ipairs(bridges) do
    local i = b:info()
    local l = ('bridge="%s"'):format(esc(b.name or "?"))
    up[#up + 1] = { "{" .. l .. "}", i.state == "connected" and 1 or 0 }
    slow[#slow + 1] = { "{" .. l .. "}", i.slow_dropped or 0 }
    recon[#recon + 1] = { "{" .. l .. "}", i.reconnects or 0 }
    for class, st in pairs(b:stats()) do
      for k, v in pairs(st) do
        msgs[#msgs + 1] = { ('{%s,class="%s",outcome="%s"}'):format(l, esc(class), esc(k)), v }
      end
    end
  end
  table.sort(msgs, function(a, b) return a[1] < b[1] end)
  metric(out, "nats_bridge_messages_total", "counter",
    "Copies handed to each NATS bridge and what became of them, and what it imported, by subject class.", msgs)
  metric(out, "nats_bridge_connected", "gauge", "1 while the bridge is connected to a NATS server.", up)
  metric(out, "nats_bridge_slow_consumer_dropped_total", "counter", "Messages libnats dropped for a slow consumer.", slow)
  metric(out, "nats_bridge_reconnects_total", "counter", "Times the bridge's connection came back.", recon)
end

-- The NATS clients of msrt.listen (README "The network face"), once a
-- NATS listener was opened.
local function client_metrics(out, st)
  if not st then return end
  metric(out, "nats_clients_connections", "gauge", "NATS client connections open now.", { { "", st.connections } })
  metric(out, "nats_clients_accepted_total", "counter", "NATS client connections accepted.", { { "", st.accepted } })
  metric(out, "nats_clients_refused_total", "counter",
    "NATS client connections refused (over connections.max, or not authorised).", { { "", st.refused } })
  metric(out, "nats_clients_slow_consumers_total", "counter", "NATS clients ended as slow consumers.",
    { { "", st.slow_consumers } })
  metric(out, "nats_clients_messages_total", "counter", "Messages from and to NATS clients.",
    { { '{direction="in"}', st.in_msgs }, { '{direction="out"}', st.out_msgs } })
end

--- The metrics in the Prometheus text exposition format (version 0.0.4).
function M.metrics_text()
  local m = require("msrt").metrics()
  local out = {}
  -- by class and outcome; `dropped` is left out (the drop_* sum: a
  -- sum() over outcomes would count drops twice)
  local router = {}
  for class, c in pairs((m.router or {}).classes or {}) do
    for k, v in pairs(c) do
      if k ~= "dropped" then router[#router + 1] = { ('{class="%s",outcome="%s"}'):format(esc(class), esc(k)), v } end
    end
  end
  table.sort(router, function(a, b) return a[1] < b[1] end)
  metric(out, "router_messages_total", "counter",
    "Message copies the router handled, by subject class (first token) and outcome.", router)
  metric(out, "router_subscriptions", "gauge", "Subscriptions in the router.", { { nil, (m.router or {}).subscriptions } })
  for _, f in ipairs({ "handled", "turns", "parks", "wakes", "steals", "declined", "gave_way" }) do
    local per = {}
    for i, w in ipairs(m.per_worker or {}) do per[i] = { ('{worker="%d"}'):format(i), w[f] } end
    metric(out, "worker_" .. f .. "_total", "counter", "Per worker: " .. f .. ".", per)
  end
  local hops = {}
  for i, w in ipairs(m.per_worker or {}) do hops[i] = { ('{worker="%d"}'):format(i), w.hop_ns } end
  metric(out, "worker_hop_ns", "gauge",
    "Per worker: ns a cache line written on another worker's CPU takes to read here (0: not measured yet).", hops)
  metric(out, "actors", "gauge", "Live actors.", { { nil, m.actors } })
  metric(out, "runnable", "gauge", "Actors waiting for a worker.", { { nil, m.runnable } })
  local depth, high = require("msrt.actors").mailboxes()
  metric(out, "mailbox_depth", "gauge", "Messages waiting in actor mailboxes.", { { nil, depth } })
  metric(out, "mailbox_high_water", "gauge", "Highest mailbox high-water mark of a live actor.", { { nil, high } })
  local drops = {}
  for k, v in pairs(m.drops or {}) do drops[#drops + 1] = { ('{reason="%s"}'):format(esc(k)), v } end
  table.sort(drops, function(a, b) return a[1] < b[1] end)
  metric(out, "mailbox_drops_total", "counter", "Mailbox drops and refusals, by reason.", drops)
  metric(out, "processes", "gauge", "Child processes.", { { nil, require("msrt.process").count() } })
  local sups, restarts = 0, {}
  for _, sup in ipairs(supervisors()) do
    sups = sups + 1
    for _, k in ipairs(sup:which_children()) do
      restarts[#restarts + 1] = { ('{supervisor="%s",child="%s"}'):format(esc(sup.name), esc(k.id)), k.restarts or 0 }
    end
  end
  metric(out, "supervisors", "gauge", "Root supervisors.", { { nil, sups } })
  metric(out, "restarts_total", "counter", "Child restarts, by supervisor and child.", restarts)
  local health = {}
  for id, h in pairs(type(m.health) == "table" and m.health or {}) do
    local state = type(h) == "table" and h.state or h
    health[#health + 1] = { ('{child="%s",state="%s"}'):format(esc(id), esc(state)), 1 }
  end
  metric(out, "health", "gauge", "Health state of each probed child.", health)
  queue_metrics(out)
  bridge_metrics(out)
  client_metrics(out, m.nats_clients)
  local reloads = require("msrt.reload").counts()
  metric(out, "reloads_total", "counter", "Policy reloads, by result.",
    { { '{result="ok"}', reloads.ok }, { '{result="failed"}', reloads.failed } })
  return table.concat(out, "\n") .. "\n"
end

--- The durable queues as text (ctl queues): one line each.
function M.queues()
  local lines = { ("%-20s %9s %9s %11s %11s %13s %9s %9s"):format("queue", "stored", "pending",
    "ack_pending", "redelivered", "dead_lettered", "acked", "consumers") }
  for _, q in ipairs(require("msrt.queue").stats()) do
    lines[#lines + 1] = ("%-20s %9d %9d %11d %11d %13d %9d %9d"):format(q.name, q.stored, q.pending,
      q.ack_pending, q.redelivered, q.dead_lettered, q.acked, q.consumers)
  end
  return table.concat(lines, "\n") .. "\n"
end

--- ctl queue NAME peek N | purge.
function M.queue(name, rest)
  local queue = require("msrt.queue")
  if not name or not queue.get(name) then return ("error: no queue '%s'\n"):format(tostring(name)) end
  local verb, n = (rest or ""):match("^(%S*)%s*(%S*)$")
  if verb == "purge" then
    local k, err = queue.purge(name)
    if not k then return "error: " .. tostring(err) .. "\n" end
    return ("purged %d message(s) from %s\n"):format(k, name)
  elseif verb == "peek" and tonumber(n) then
    local list, err = queue.peek(name, tonumber(n))
    if not list then return "error: " .. tostring(err) .. "\n" end
    local lines = {}
    for _, m in ipairs(list) do
      lines[#lines + 1] = ("%d %s delivered=%d state=%s bytes=%d %s"):format(m.seq, m.subject, m.delivered,
        m.state, m.bytes, m.preview)
    end
    return table.concat(lines, "\n") .. (#lines > 0 and "\n" or "")
  end
  return "error: queue NAME purge | queue NAME peek N\n"
end

-- ---- the servers -----------------------------------------------------------

-- The control socket answers one request per connection, with a bound on
-- open connections (the profile's connections.max; the web listener of
-- /metrics keeps its own, msrt.web), so a local user who opens
-- connections and never finishes a request can hold at most that many
-- descriptors, each for at most connections.read_timeout_ms.
local open = 0

local function conn_limits()
  local c = (require("msrt.profile").current() or {}).connections or {}
  return c.max or 1024, c.read_timeout_ms or 5000, c.idle_timeout_ms or 30000, c.backlog or 511
end

-- accept(client) -> whether to serve it; a refused client is closed.
-- @return true | nil, why (libuv's text: a TCP bind reports an address
--   in use only here)
local function listen(handle, new_client, on_client, accept)
  local _, _, _, backlog = conn_limits()
  return handle:listen(backlog, function(err)
    if err then return end
    local client = new_client()
    if not handle:accept(client) then client:close() return end
    local max = conn_limits()
    if open >= max or (accept and not accept(client)) then client:close() return end
    on_client(client)
  end)
end

-- "EADDRINUSE: address already in use" -> "address already in use"
local function uv_why(err) return (tostring(err):gsub("^E[%u_]+: ", "")) end

-- Read until a newline (or 8 KiB), then answer(line) -> text; close. The
-- request must arrive within read_timeout_ms of the connection; the
-- connection goes after idle_timeout_ms without a byte in or the answer
-- taken.
local function serve(client, answer)
  local _, read_ms, idle_ms = conn_limits()
  open = open + 1
  local timer, done = uv.new_timer(), false
  timer:unref()
  local function finish()
    if done then return end
    done, open = true, open - 1
    timer:close()
    if not client:is_closing() then client:close() end
  end
  local deadline = uv.now() + read_ms
  local function arm(ms) timer:start(math.max(0, ms), 0, finish) end
  arm(math.min(read_ms, idle_ms))
  local buf = ""
  client:read_start(function(err, chunk)
    if err or not chunk then return finish() end
    buf = buf .. chunk
    local line = buf:match("^([^\r\n]*)\r?\n")
    if not line and #buf < 8192 then return arm(math.min(idle_ms, deadline - uv.now())) end
    client:read_stop()
    arm(idle_ms)
    local ok, text = pcall(answer, line or buf, buf)
    client:write(ok and text or ("error: " .. tostring(text) .. "\n"), finish)
  end)
end

--- Serve /metrics (and the web listener's other paths: /healthz,
-- /readyz, the dashboard) on addr, as msrt.web.listen reads it.
-- @return the port | nil, err (invalid_arg: not HOST:PORT; network: the
--   name does not resolve, or `cannot listen on IP:PORT: address already
--   in use` and the like)
function M.serve_metrics(addr)
  local l, err = require("msrt.web").listen(addr, { what = "metrics" })
  if not l then return nil, err end
  return l:port()
end

--- Whether the host is ready (`/readyz`, as a Kubernetes readiness
-- probe reads it): every root supervisor has started all its children
-- (nested supervisors too: none starting or restarting, no permanent one
-- down) and every child with a readiness or startup probe passes it; not
-- while the host shuts down.
-- @return true | false, why (the first thing not ready, e.g.
--   "fleet/db: readiness probe failing")
function M.ready()
  if core.stopping and core.stopping() then return false, "shutting down" end
  local function walk(sup, path)
    if sup.state ~= "running" then return false, ("%s: %s"):format(path, sup.state) end
    for _, k in ipairs(sup:which_children()) do
      local where = path .. "/" .. k.id
      local down = k.state == "starting" or k.state == "restarting" or (k.state ~= "running" and k.restart == "permanent")
      if down then return false, ("%s: %s"):format(where, k.state) end
      local c = sup.core:record(k.id)
      if c and c.health and not c.health:ready() then return false, where .. ": not ready (health probe)" end
      if k.kind == "supervisor" and k.handle then
        local ok, why = walk(k.handle, where)
        if not ok then return false, why end
      end
    end
    return true
  end
  for _, sup in ipairs(supervisors()) do
    local ok, why = walk(sup, sup.name)
    if not ok then return false, why end
  end
  return true
end

-- The control socket's commands: fn(PATH or nil) -> the answer (an error
-- as "error: ...\n"); msrt.ctl.USAGE says what each does.
local commands = {
  status = function() return M.status() end,
  tree = function() return M.tree() end,
  metrics = function() return M.metrics_text() end,
  help = function() return require("msrt.ctl").USAGE end,
  reload = function()
    local n = require("msrt.reload").reload_all()
    return ("reloaded %d policy file(s)\n"):format(n)
  end,
  stop = function(path)
    if path then return M.child("stop", path) end
    -- graceful, as SIGTERM: exit status 0
    require("msrt").after(10, function() require("msrt").stop("ctl", 0) end)
    return "stopping\n"
  end,
  start = function(path) return path and M.child("start", path) or "error: start needs a child PATH\n" end,
  restart = function(path) return path and M.child("restart", path) or "error: restart needs a child PATH\n" end,
  queues = function() return M.queues() end,
  queue = function(name, rest) return M.queue(name, rest) end,
}

-- A 0700 directory of this user's own for `auto`: $XDG_RUNTIME_DIR when
-- it is one (XDG Base Directory: the user's, mode 0700), else a fresh one
-- from mkdtemp under $TMPDIR or /tmp (removed again at close).
local function private_dir()
  local dir = os.getenv("XDG_RUNTIME_DIR")
  local st = dir and dir:sub(1, 1) == "/" and uv.fs_lstat(dir)
  if st and st.type == "directory" and st.uid == uv.getuid() and st.mode % 512 == 448 then return dir end
  local tmp = os.getenv("TMPDIR")
  local made, err = uv.fs_mkdtemp(((tmp and tmp ~= "") and tmp or "/tmp") .. "/msrt-XXXXXX")
  if not made then return nil, err end
  return made, true
end

-- The path `auto` stands for: msrt-PID-RANDOM.sock in a private directory
-- (64 random bits: another user cannot guess it to squat on it).
local function auto_path()
  local dir, made = private_dir()
  if not dir then return nil, made end
  local hex = uv.random(8, {}):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  return ("%s/msrt-%d-%s.sock"):format(dir, uv.os_getpid(), hex), made and dir
end

-- Make way for a socket at path: nothing there, or a stale socket (one
-- nobody accepts on) which goes; anything else is refused untouched.
local function clear_socket(path)
  local state, what = core.socket_state(path)
  if state == "absent" then return true end
  if state == "stale" then return os.remove(path) or true end
  if state == "live" then return nil, ("%s is the control socket of a running host"):format(path) end
  return nil, ("%s exists and is %s, not a stale socket: not replacing it"):format(path, what or "something else")
end

-- Only the host's own user, or root, may use the control socket
-- (SO_PEERCRED: the uid of the connecting process).
local function same_user(client)
  local uid = core.peer_uid(client:fileno())
  if uid == uv.getuid() or uid == 0 then return true end
  require("msrt").log("warn", ("control socket: refused a connection from uid %s"):format(tostring(uid)))
  return false
end

--- Serve the control socket at path, or at a fresh private path for
-- "auto" (see private_dir, auto_path). Only a stale socket at path is
-- replaced; a file, a directory or a live host's socket is refused. The
-- socket is mode 0600 whatever the umask (set before listen(2), so no
-- connection comes first) and a peer of another uid than the host's (or
-- root) is closed at once. Commands, one per connection: msrt.ctl.USAGE.
-- @return the path | nil, err (io)
function M.serve_ctl(path)
  local dir
  if path == "auto" or path == true then
    local p, d = auto_path()
    if not p then return nil, core.error("io", "cannot make a private directory for the control socket: " .. tostring(d)) end
    path, dir = p, d
  end
  local ok, err = clear_socket(path)
  local pipe, bound = uv.new_pipe(false), false
  if ok then ok, err = pipe:bind(path) bound = ok end
  if ok then ok, err = uv.fs_chmod(path, 384) end -- 0600
  if ok then
    ok, err = listen(pipe, function() return uv.new_pipe(false) end, function(c)
      serve(c, function(line)
        local name, path, rest = line:match("^%s*(%S*)%s*(%S*)%s*(.-)%s*$")
        local cmd = commands[name]
        if not cmd then return ("error: unknown command '%s' (help lists them)\n"):format(name) end
        return cmd(path ~= "" and path or nil, rest)
      end)
    end, same_user)
  end
  if not ok then
    pipe:close()
    if bound then os.remove(path) end
    if dir then uv.fs_rmdir(dir) end
    return nil, core.error("io", ("cannot serve the control socket %s: %s"):format(path, uv_why(err)))
  end
  pipe:unref()
  servers[#servers + 1] = pipe
  sockets[#sockets + 1] = { path = path, dir = dir }
  return path
end

--- Start the servers asked for (either may be nil), saying on stderr
-- where they listen. @return true | nil, err (as serve_metrics,
-- serve_ctl)
function M.start(metrics, ctl)
  if metrics then
    local port, err = M.serve_metrics(metrics)
    if not port then return nil, err end
    local host = tostring(metrics):match("^(.*):") or ""
    io.stderr:write(("msrt-lua: metrics on http://%s:%d/metrics\n"):format(host ~= "" and host or "127.0.0.1", port))
  end
  if ctl then
    local path, err = M.serve_ctl(ctl)
    if not path then return nil, err end
    io.stderr:write(("msrt-lua: control socket %s (msrt-lua ctl %s help)\n"):format(path, path))
  end
  return true
end

--- msrt-lua --watch/--metrics/--ctl/--nats, before the script: load msrt
-- (which starts the watches), start the servers of the command line and
-- the NATS bridge of --nats URL (msrt.nats{url = URL}: import and export
-- everything but msrt.>).
-- @return true | nil, err
function M.boot()
  local msrt = require "msrt"
  local o = core.options()
  if o.nats then
    local b, err = msrt.nats { url = o.nats }
    if not b then return nil, err end
  end
  return M.start(o.metrics, o.ctl)
end

--- Close the servers and remove the control sockets' files (shutdown).
function M.close()
  held.call("msrt.dashboard", "stop")
  held.call("msrt.web", "close")
  for _, h in ipairs(servers) do if not h:is_closing() then h:close() end end
  for _, s in ipairs(sockets) do
    local st = uv.fs_lstat(s.path)
    if st and st.type == "socket" then os.remove(s.path) end
    if s.dir then uv.fs_rmdir(s.dir) end
  end
  servers, sockets = {}, {}
end

return require("msrt.held").keep("msrt.ops", M) -- closed at shutdown
