--- Operator tools (README "Operator tools"): the Prometheus /metrics endpoint
-- and the control socket that `msrt-lua ctl SOCKET status|tree|metrics|
-- reload|stop` talks to, as users of supervisorctl, s6-svstat and Erlang's
-- observer expect. Both run on the hub loop (luv) and never keep it alive.
-- Internal: started by `msrt-lua --metrics ADDR` / `--ctl PATH` or
-- `msrt.start{metrics = ADDR, ctl = PATH}`. Hub thread only.
-- @module msrt.ops
local core = require "msrt.core"
local uv = require "luv"

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
-- restarts and health.
function M.tree()
  local lines = {}
  local health = require("msrt").metrics().health
  for _, sup in ipairs(supervisors()) do draw(sup, "", lines, health) end
  if #lines == 0 then lines[1] = "(no supervisors)" end
  return table.concat(lines, "\n") .. "\n"
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

local function metric(out, name, kind, help, samples)
  out[#out + 1] = ("# HELP msrt_%s %s\n# TYPE msrt_%s %s"):format(name, help, name, kind)
  for _, s in ipairs(samples) do
    out[#out + 1] = ("msrt_%s%s %s"):format(name, s[1] or "", tostring(s[2] or 0))
  end
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
      if k ~= "dropped" then router[#router + 1] = { ('{class="%s",outcome="%s"}'):format(class, k), v } end
    end
  end
  table.sort(router, function(a, b) return a[1] < b[1] end)
  metric(out, "router_messages_total", "counter",
    "Message copies the router handled, by subject class (first token) and outcome.", router)
  metric(out, "router_subscriptions", "gauge", "Subscriptions in the router.", { { nil, (m.router or {}).subscriptions } })
  for _, f in ipairs({ "handled", "turns", "parks", "wakes", "steals" }) do
    local per = {}
    for i, w in ipairs(m.per_worker or {}) do per[i] = { ('{worker="%d"}'):format(i), w[f] } end
    metric(out, "worker_" .. f .. "_total", "counter", "Per worker: " .. f .. ".", per)
  end
  metric(out, "actors", "gauge", "Live actors.", { { nil, m.actors } })
  metric(out, "runnable", "gauge", "Actors waiting for a worker.", { { nil, m.runnable } })
  local depth, high = require("msrt.actors").mailboxes()
  metric(out, "mailbox_depth", "gauge", "Messages waiting in actor mailboxes.", { { nil, depth } })
  metric(out, "mailbox_high_water", "gauge", "Highest mailbox high-water mark of a live actor.", { { nil, high } })
  local drops = {}
  for k, v in pairs(m.drops or {}) do drops[#drops + 1] = { ('{reason="%s"}'):format(k), v } end
  table.sort(drops, function(a, b) return a[1] < b[1] end)
  metric(out, "mailbox_drops_total", "counter", "Mailbox drops and refusals, by reason.", drops)
  metric(out, "processes", "gauge", "Child processes.", { { nil, require("msrt.process").count() } })
  local sups, restarts = 0, {}
  for _, sup in ipairs(supervisors()) do
    sups = sups + 1
    for _, k in ipairs(sup:which_children()) do
      restarts[#restarts + 1] = { ('{supervisor="%s",child="%s"}'):format(sup.name, k.id), k.restarts or 0 }
    end
  end
  metric(out, "supervisors", "gauge", "Root supervisors.", { { nil, sups } })
  metric(out, "restarts_total", "counter", "Child restarts, by supervisor and child.", restarts)
  local health = {}
  for id, h in pairs(type(m.health) == "table" and m.health or {}) do
    local state = type(h) == "table" and h.state or h
    health[#health + 1] = { ('{child="%s",state="%s"}'):format(id, tostring(state)), 1 }
  end
  metric(out, "health", "gauge", "Health state of each probed child.", health)
  local reloads = require("msrt.reload").counts()
  metric(out, "reloads_total", "counter", "Policy reloads, by result.",
    { { '{result="ok"}', reloads.ok }, { '{result="failed"}', reloads.failed } })
  return table.concat(out, "\n") .. "\n"
end

-- ---- the servers -----------------------------------------------------------

local function listen(handle, new_client, on_client)
  handle:listen(64, function(err)
    if err then return end
    local client = new_client()
    if handle:accept(client) then on_client(client) else client:close() end
  end)
end

-- Read until a newline (or the end), then answer(line) -> text; close.
local function serve(client, answer)
  local buf = ""
  client:read_start(function(err, chunk)
    if err or not chunk then
      if not client:is_closing() then client:close() end
      return
    end
    buf = buf .. chunk
    local line = buf:match("^([^\r\n]*)\r?\n")
    if not line and #buf < 8192 then return end
    client:read_stop()
    local ok, text = pcall(answer, line or buf, buf)
    client:write(ok and text or ("error: " .. tostring(text) .. "\n"), function()
      if not client:is_closing() then client:close() end
    end)
  end)
end

local function http_answer(line)
  local method, path = line:match("^(%u+) (%S+) HTTP/1%.[01]$")
  local status, body, ctype = "404 Not Found", "not found\n", "text/plain"
  if method == "GET" and (path == "/metrics" or path:find("^/metrics%?")) then
    status, body, ctype = "200 OK", M.metrics_text(), "text/plain; version=0.0.4"
  elseif not method then
    status, body = "400 Bad Request", "bad request\n"
  end
  return ("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
    :format(status, ctype, #body, body)
end

--- Serve /metrics on addr ("127.0.0.1:9464", or ":9464" for 127.0.0.1).
-- @return the port | nil, err (invalid_arg, network)
function M.serve_metrics(addr)
  local host, port = tostring(addr):match("^([^:]*):(%d+)$")
  if not port then return nil, core.error("invalid_arg", ("metrics address '%s': expected HOST:PORT"):format(tostring(addr))) end
  local tcp = uv.new_tcp()
  local ok, err = tcp:bind(host ~= "" and host or "127.0.0.1", tonumber(port))
  if not ok then tcp:close() return nil, core.error("network", ("cannot listen on %s: %s"):format(addr, err)) end
  listen(tcp, uv.new_tcp, function(c) serve(c, http_answer) end)
  tcp:unref()
  servers[#servers + 1] = tcp
  return tcp:getsockname().port
end

local commands = {
  status = function() return M.status() end,
  tree = function() return M.tree() end,
  metrics = function() return M.metrics_text() end,
  reload = function()
    local n = require("msrt.reload").reload_all()
    return ("reloaded %d policy file(s)\n"):format(n)
  end,
  stop = function()
    require("msrt").after(10, function() require("msrt").stop("ctl") end)
    return "stopping\n"
  end,
}

--- Serve the control socket at path (a Unix socket; an old file there is
-- replaced). Commands, one per connection: status, tree, metrics, reload,
-- stop. @return path | nil, err
function M.serve_ctl(path)
  os.remove(path)
  local pipe = uv.new_pipe(false)
  local ok, err = pipe:bind(path)
  if not ok then pipe:close() return nil, core.error("io", ("cannot bind control socket %s: %s"):format(path, err)) end
  listen(pipe, function() return uv.new_pipe(false) end, function(c)
    serve(c, function(line)
      local cmd = commands[line:match("^%s*(%S*)")]
      if not cmd then return "unknown command (status, tree, metrics, reload, stop)\n" end
      return cmd()
    end)
  end)
  pipe:unref()
  servers[#servers + 1] = pipe
  sockets[#sockets + 1] = path
  return path
end

--- Close the servers and remove the control sockets' files (shutdown).
function M.close()
  for _, h in ipairs(servers) do if not h:is_closing() then h:close() end end
  for _, path in ipairs(sockets) do os.remove(path) end
  servers, sockets = {}, {}
end

return M
