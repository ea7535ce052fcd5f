--- Debian's nats-server for specs, benchmarks and examples: a single
-- server or a cluster of servers joined by routes, every port on loopback
-- and chosen by the kernel (port -1: no race for a free port), each server
-- bounded in time (it never outlives `limit_s`, even when the spec that
-- started it dies), ready when `start` returns, stopped by `stop` (SIGTERM,
-- then SIGKILL). No spec depends on a server it did not start.
--
--   local N = require "spec.nats_server"
--   local s = N.start()                  -- one server
--   s.url                                -- "nats://127.0.0.1:PORT"
--   local c = N.start{ nodes = 3 }       -- a 3-node cluster
--   local j = N.start{ jetstream = true } -- with JetStream (nats-server -js)
--   c.urls, c.url                        -- each node's URL; c.url the first
--   c:kill(2)                            -- SIGKILL node 2 (a fault)
--   c:stop()                             -- stop every node left
--   N.with({ nodes = 3 }, function(c) ... end) -- stopped however fn ends
--
-- Blocking calls (os.execute, a bounded poll of each server's log): call
-- them from a spec body, setup or teardown, not from a hub callback that
-- must not block. @module spec.nats_server
local S = require "spec.support" -- quote, read, write, alive, now_ms
local N = {}

N.exe = os.getenv("NATS_SERVER") or "nats-server"

local sh_quote, read, write = S.quote, S.read, S.write

local function sleep_ms(ms) os.execute(("sleep %.3f"):format(ms / 1000)) end

local now_ms = S.now_ms

-- Poll pred() every 20 ms until it returns a value or limit_ms pass.
local function poll(pred, limit_ms)
  local deadline = now_ms() + limit_ms
  repeat
    local v = pred()
    if v then return v end
    sleep_ms(20)
  until now_ms() > deadline
  return nil
end

local function alive(pid)
  return pid and S.alive(pid)
end

-- Start one nats-server with config text in dir as node i; returns the
-- node {pid, log, conf, port, route_port, url} once its log says it is
-- ready (client port, and route port when clustered), or raises with the
-- log's text.
local function start_node(dir, i, conf, opts)
  local node = { conf = dir .. "/n" .. i .. ".conf", log = dir .. "/n" .. i .. ".log",
    pidfile = dir .. "/n" .. i .. ".pid" }
  write(node.conf, conf)
  -- timeout bounds its life; -P gives nats-server's own pid (SIGKILL of a
  -- node reaches the server, not timeout)
  local cmd = ("timeout -k 2 %d %s -c %s -l %s -P %s </dev/null >/dev/null 2>&1 &"):format(
    opts.limit_s, sh_quote(N.exe), sh_quote(node.conf), sh_quote(node.log), sh_quote(node.pidfile))
  assert(os.execute(cmd) == 0, "could not start " .. N.exe)
  local ok = poll(function()
    local log = read(node.log)
    local port = log:match("Listening for client connections on [%d%.]+:(%d+)")
    local ready = log:find("Server is ready", 1, true)
    local rport = log:match("Listening for route connections on [%d%.]+:(%d+)")
    if log:find("[FTL]", 1, true) then return "fatal" end
    if port and ready and (not opts.cluster or rport) then
      node.port, node.route_port = tonumber(port), tonumber(rport)
      return true
    end
  end, opts.ready_ms)
  node.pid = tonumber(read(node.pidfile):match("%d+"))
  if ok ~= true then
    if node.pid then os.execute("kill -9 " .. node.pid .. " 2>/dev/null") end
    error(("nats-server node %d did not become ready within %d ms:\n%s"):format(
      i, opts.ready_ms, read(node.log)), 3)
  end
  node.url = "nats://127.0.0.1:" .. node.port
  return node
end

-- Routes each node of the cluster holds now (created minus closed, as its
-- log tells).
local function routes(node)
  local log = read(node.log)
  local n = 0
  for _ in log:gmatch("Route connection created") do n = n + 1 end
  for _ in log:gmatch("Router connection closed") do n = n - 1 end
  return n
end

local Cluster = {}
Cluster.__index = Cluster

--- Start a server or a cluster.
-- @tparam[opt] table opts `nodes` (default 1; more make a cluster whose
--   nodes route to node 1, full mesh by gossip), `limit_s` (each server's
--   longest life, default 600), `ready_ms` (bound on becoming ready,
--   default 30000), `max_payload` (bytes, the servers' limit), `config`
--   (extra config text for every node, e.g. "authorization { token: x }"),
--   `jetstream` (true: JetStream enabled, its file store under `dir`)
-- @return the cluster object: `url`, `urls` (one per node, in order),
--   `nodes` (each with `pid`, `port`, `log`), `dir`; raises when a server
--   does not start or the routes do not form within ready_ms
function N.start(opts)
  opts = opts or {}
  local n = opts.nodes or 1
  local o = { limit_s = opts.limit_s or 600, ready_ms = opts.ready_ms or 30000, cluster = n > 1 }
  local tmp = os.tmpname()
  os.remove(tmp)
  local dir = tmp .. ".nats"
  assert(os.execute("mkdir -p " .. sh_quote(dir)) == 0)
  local c = setmetatable({ dir = dir, nodes = {}, urls = {}, limit_s = o.limit_s, ready_ms = o.ready_ms }, Cluster)
  local ok, err = pcall(function()
    for i = 1, n do
      local conf = { "listen: 127.0.0.1:-1", "server_name: n" .. i }
      if opts.max_payload then conf[#conf + 1] = "max_payload: " .. opts.max_payload end
      if opts.config then conf[#conf + 1] = opts.config end
      if opts.jetstream then -- file store in the server's own temp dir
        conf[#conf + 1] = ("jetstream { store_dir: %q }"):format(dir .. "/js" .. i)
      end
      if n > 1 then
        local seed = i > 1 and ("routes: [nats-route://127.0.0.1:%d]"):format(c.nodes[1].route_port) or ""
        conf[#conf + 1] = "cluster { name: msrt, listen: 127.0.0.1:-1\n " .. seed .. " }"
      end
      c.nodes[i] = start_node(dir, i, table.concat(conf, "\n") .. "\n", o)
      c.urls[i] = c.nodes[i].url
    end
    if n > 1 and not poll(function()
      for _, node in ipairs(c.nodes) do
        if routes(node) < n - 1 then return false end
      end
      return true
    end, o.ready_ms) then
      error(("the %d-node cluster's routes did not form within %d ms"):format(n, o.ready_ms))
    end
  end)
  if not ok then
    c:stop()
    error(err, 2)
  end
  c.url = c.urls[1]
  return c
end

--- SIGKILL node i (a fault: its clients must reconnect to the others).
-- Returns once the process is gone (bounded: 5 s).
function Cluster:kill(i)
  local node = assert(self.nodes[i], "no node " .. tostring(i))
  os.execute("kill -9 " .. node.pid .. " 2>/dev/null")
  poll(function() return not alive(node.pid) end, 5000)
  node.dead = true
end

--- Stop every node still running (SIGTERM, SIGKILL after 5 s) and remove
-- the files. Idempotent.
function Cluster:stop()
  for _, node in ipairs(self.nodes) do
    if node.pid and not node.dead then
      os.execute("kill " .. node.pid .. " 2>/dev/null")
      if not poll(function() return not alive(node.pid) end, 5000) then
        os.execute("kill -9 " .. node.pid .. " 2>/dev/null")
      end
      node.dead = true
    end
  end
  if self.dir then os.execute("rm -rf " .. sh_quote(self.dir)) end
  self.dir = nil
end

--- Start node i again after a kill or stop, on the same client port (its
-- clients reconnect to the URL they knew) and, in a cluster, routing to
-- the nodes still up. Returns once it is ready (bounded as start).
function Cluster:restart(i)
  local node = assert(self.nodes[i], "no node " .. tostring(i))
  assert(node.dead, "node " .. i .. " is still running")
  local conf = read(node.conf):gsub("^listen: 127%.0%.0%.1:%-?%d+", "listen: 127.0.0.1:" .. node.port, 1)
  if node.route_port then -- the others reconnect to the route port they knew
    conf = conf:gsub("cluster { name: msrt, listen: 127%.0%.0%.1:%-?%d+",
      "cluster { name: msrt, listen: 127.0.0.1:" .. node.route_port, 1)
  end
  os.remove(node.log)
  local fresh = start_node(self.dir, i, conf, { limit_s = self.limit_s, ready_ms = self.ready_ms,
    cluster = #self.nodes > 1 })
  for k, v in pairs(fresh) do node[k] = v end
  node.dead = nil
end

--- The text of node i's log (for a failing spec's message).
function Cluster:log(i) return read(self.nodes[i or 1].log) end

--- Start a server or cluster (opts as N.start), call fn(cluster), stop it
-- however fn ends; returns what fn returns, or raises its error.
function N.with(opts, fn)
  local c = N.start(opts)
  local function finish(ok, ...)
    c:stop()
    if not ok then error((...), 0) end
    return ...
  end
  return finish(pcall(fn, c))
end

return N
