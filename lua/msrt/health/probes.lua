--- The probe runners (docs/architecture.md "Health checks"): heartbeats
-- read from a stamp slot, tcp and http on the hub loop, exec through
-- msrt.process, lua as a coroutine, alive from the child's handle; none
-- blocks the loop. Internal to msrt.health. Hub thread only.
-- @module msrt.health.probes
local core = require "msrt.core"
local hub = require "msrt.hub"
local spec = require "msrt.health.spec"
local uv = require "luv"
local ffi = require "ffi"

ffi.cdef [[ uint64_t msrt_lhub_stamp(const void *slot); ]]
local stamp_of = ffi.C.msrt_lhub_stamp

local M = {}
local ip_port, parse_url = spec.ip_port, spec.parse_url

-- ---- heartbeats: one stamp subscription per subject, shared ----------------
-- A heartbeat never reaches the hub: the publishing thread stores the time
-- it came into a slot (a stamp endpoint, src/bus/endpoints.h), which a probe
-- reads with an atomic load (msrt_lhub_stamp, through the FFI).

local beats = {} -- subject -> {users, sid, lud, slot (the lud as a cdata: the JIT passes no light userdata to C)}

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
  b = { users = 1, sid = sid, lud = lud, slot = ffi.cast("const void *", lud) }
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
  local ns = b and tonumber(stamp_of(b.slot)) or 0
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

-- The command through msrt.process (clone + exec: no fork of a large host);
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


M.sync, M.run, M.close = sync, run, close
M.beat_use, M.beat_release = beat_use, beat_release

return M
