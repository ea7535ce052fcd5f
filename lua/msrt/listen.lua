--- The network face: NATS clients over TCP (README "The network face").
-- One NATS server per host (src/nats/conn.h) shares the bus with actors and
-- processes; each `msrt.listen` adds a listener to it. Its figures come
-- from the tuning profile in force and follow a profile reload:
-- max_payload, and `connections`: keepalive_ms (a NATS PING this often; two
-- unanswered end the client with -ERR 'Stale Connection'), backlog, max
-- (clients at once), nodelay (TCP_NODELAY), max_pending (bytes held for a
-- client before it is a slow consumer), write_deadline_ms (how long its
-- socket may refuse bytes before it is one) and max_subscriptions (per
-- client; past it a SUB gets -ERR 'maximum subscriptions exceeded').
--
-- The auth policy file (README "Authorisation") is a policy file like the
-- others (msrt.policy: sandboxed, bounded, `--check`-able, reloaded when it
-- changes under a watched directory); its users replace the old ones at
-- once and every open connection keeps only what it is still allowed.
-- Hub thread only.
-- @module msrt.listen
local core = require "msrt.core"
local hub = require "msrt.hub"
local policy = require "msrt.policy"
local profile = require "msrt.profile"
local reload = require "msrt.reload"
local schema = require "msrt.schema"

local M = {}

M.DEFAULT_NATS = "127.0.0.1:4222"

local server          -- core.nats_server, made by the first listen
local listeners = {}  -- every open listener handle
local auth_path       -- the auth policy file in force, or nil

local function server_opts(p)
  local c = p.connections or {}
  return {
    max_payload = p.max_payload, ping_interval_ms = c.keepalive_ms,
    max_conns = c.max, max_pending = c.max_pending,
    max_subs = c.max_subscriptions,
    write_deadline_ms = c.write_deadline_ms,
  }
end

local function listen_opts(p)
  local c = p.connections or {}
  return { backlog = c.backlog, nodelay = c.nodelay ~= false }
end

--- Follow a profile change (msrt.profile's reload applier calls it).
function M.retune(p)
  if not server then return end
  server:tune(server_opts(p))
  for l in pairs(listeners) do
    if l.parts.nats then l.parts.nats:tune(listen_opts(p)) end
  end
end

-- ---- the auth policy file -------------------------------------------------

local list = schema.list(schema.string)
local rules = schema.fields { allow = list, deny = list }
local USER = {
  user = schema.string, password = schema.string, token = schema.string,
  max_connections = schema.int(1, 1000000),
  permissions = schema.fields {
    publish = rules, subscribe = rules,
    allow_responses = schema.either(schema.boolean,
      schema.fields { max = schema.int(1, 1000000), expires_ms = schema.int(0, 86400000) }),
  },
}

--- Check an auth policy's value: `{ users = { {user=, password=,
-- permissions = {publish = {allow, deny}, subscribe = {allow, deny},
-- allow_responses = true | {max, expires_ms}}, max_connections = n}, ...} }`
-- (a token entry has `token` instead of user and password).
-- @return the users as core.nats_server's set_auth takes them | nil, err
function M.check_auth(value)
  if type(value) ~= "table" then
    return nil, core.error("bad_config", "an auth policy returns a table { users = {...} }")
  end
  local ok, why = schema.keys(value, { users = true }, "auth policy")
  if not ok then return nil, core.error("bad_config", why) end
  if type(value.users) ~= "table" then return nil, core.error("bad_config", "auth policy: users must be a list") end
  ok, why = schema.is_list(value.users, "users")
  if not ok then return nil, core.error("bad_config", why) end
  local out = {}
  for i, u in ipairs(value.users) do
    local where = ("user %d"):format(i)
    local function bad(msg) return nil, core.error("bad_config", msg, { user = i }) end
    if type(u) ~= "table" then return bad(where .. ": a table expected") end
    ok, why = schema.check(u, USER, where)
    if not ok then return bad(why) end
    if not ((u.user and u.password and not u.token) or (u.token and not u.user)) then
      return bad(where .. ": needs user and password, or token")
    end
    local p = u.permissions or {}
    for _, kind in ipairs { "publish", "subscribe" } do
      for _, side in ipairs { "allow", "deny" } do
        for j, pat in ipairs((p[kind] or {})[side] or {}) do
          if not core.pattern_check(pat) then
            return bad(("%s: permissions.%s.%s[%d] \"%s\" is not a valid subject pattern"):format(where, kind, side, j, pat))
          end
        end
      end
    end
    local pub, sub, resp = p.publish or {}, p.subscribe or {}, p.allow_responses
    out[i] = {
      user = u.user, password = u.password, token = u.token, max_connections = u.max_connections,
      publish_allow = pub.allow, publish_deny = pub.deny,
      subscribe_allow = sub.allow, subscribe_deny = sub.deny,
      allow_responses = resp ~= nil and resp ~= false,
      max_responses = type(resp) == "table" and resp.max or nil,
      responses_ms = type(resp) == "table" and resp.expires_ms or nil,
    }
  end
  return out
end

--- The line of the n-th user entry (its `user =` or `token =`) in source;
-- 0 when unknown.
function M.line_of_user(source, n)
  if not (source and n) then return 0 end
  local line, seen = 0, 0
  for text in (source .. "\n"):gmatch("([^\n]*)\n") do
    line = line + 1
    if text:find("%f[%w_]user%s*=") or text:find("%f[%w_]token%s*=") then
      seen = seen + 1
      if seen == n then return line end
    end
  end
  return 0
end

--- Load an auth policy file. @return users | nil, err (`file:line:`)
function M.load_auth(path)
  local value, source = policy.load_file(path)
  if value == nil and type(source) == "table" then return nil, source end
  local users, err = M.check_auth(value)
  if not users then
    return nil, core.error(err.code, ("%s:%d: %s"):format(path, M.line_of_user(source, err.user), err.message),
      { file = path })
  end
  return users
end

local function apply_auth(users)
  local ok, err = server:set_auth(users)
  if not ok then return nil, err end
  return true
end

-- ---- listen -----------------------------------------------------------------

local Listener = {}
Listener.__index = Listener

local KINDS = { "nats", "websocket", "http" }

local function part(self, kind)
  kind = kind or self.first
  return self.parts[kind], kind
end

--- The port the listener took for kind (default: the first kind given;
-- useful with port 0), or nil when it has none of that kind.
function Listener:port(kind)
  local p = part(self, kind)
  return p and p:port()
end
--- The address it was given for kind (default as for port).
function Listener:address(kind)
  local _, k = part(self, kind)
  return self.addrs[k]
end
--- Stop accepting; NATS connections already open stay until msrt.stop
-- (a web listener closes its connections).
function Listener:close()
  if listeners[self] then
    listeners[self] = nil
    for _, p in pairs(self.parts) do p:close() end
    if self.parts.websocket then require("msrt.dashboard").release() end
  end
end
--- The NATS server's counters (M.stats).
function Listener:stats() return M.stats() end

--- The counters of the NATS clients of this host: connections (open now),
-- accepted, slow_consumers, refused (over the cap or unauthorised),
-- in_msgs, in_bytes, out_msgs, out_bytes; nil before any NATS listener.
function M.stats() return server and server:stats() end

--- Open a listener (see init.lua `msrt.listen`).
function M.listen(spec)
  local ok, err = hub.start()
  if not ok then return nil, err end
  local p = profile.current() or {}
  if not (spec.nats or spec.websocket) then return M.listen_web(spec) end
  if not server then
    local s, serr = core.nats_server(server_opts(p))
    if not s then return nil, serr end
    server = s
  end
  if spec.auth and spec.auth ~= auth_path then
    local users, aerr = M.load_auth(spec.auth)
    if not users then return nil, aerr end
    ok, err = apply_auth(users)
    if not ok then return nil, err end
    auth_path = spec.auth
    reload.register(spec.auth, "auth", M.load_auth, apply_auth)
  end
  return M.listen_web(spec, p)
end

-- The listener's parts, each kind asked for (the NATS server made).
function M.listen_web(spec, p)
  local l = setmetatable({ parts = {}, addrs = {} }, Listener)
  l.addrs.nats = spec.nats == true and M.DEFAULT_NATS or spec.nats
  l.addrs.websocket, l.addrs.http = spec.websocket, spec.http
  for _, kind in ipairs(KINDS) do
    local addr = l.addrs[kind]
    if addr then
      local handle, lerr
      if kind == "nats" then handle, lerr = server:listen(addr, listen_opts(p or {}))
      else
        handle, lerr = require("msrt.web").listen(addr, { what = kind,
          nats = kind == "websocket" and server or nil, loopback_only = kind == "websocket" and not auth_path })
      end
      if not handle then
        for _, h in pairs(l.parts) do h:close() end
        if l.parts.websocket then require("msrt.dashboard").release() end
        return nil, lerr
      end
      l.parts[kind], l.first = handle, l.first or kind
      if kind == "websocket" then require("msrt.dashboard").start() end
    end
  end
  listeners[l] = true
  return l
end

--- Parse `--listen`'s value: "KIND=HOST:PORT[,KIND=HOST:PORT...][,auth=FILE]"
-- with KIND nats, websocket or http (msrt.listen's keys), each at most once.
-- @return a spec for M.listen | nil, err
function M.parse_option(text)
  local spec, usage = {}, "expected nats=, websocket= or http=HOST:PORT, and auth=FILE, joined by commas"
  for item in (text .. ","):gmatch("([^,]*),") do
    local k, v = item:match("^(%w+)=(.+)$")
    if not (k == "nats" or k == "websocket" or k == "http" or k == "auth") or spec[k] then
      return nil, core.error("invalid_arg", ("--listen %s: %s"):format(text, usage))
    end
    spec[k] = v
  end
  if not (spec.nats or spec.websocket or spec.http) then
    return nil, core.error("invalid_arg", ("--listen %s: no address (%s)"):format(text, usage))
  end
  return spec
end

local SAYS = { nats = "NATS clients", websocket = "NATS clients over WebSocket and HTTP", http = "HTTP" }

--- msrt-lua --listen, before the script: open the listener it names.
-- @return true | nil, err
function M.boot()
  require "msrt"
  local spec, err = M.parse_option(core.options().listen)
  if not spec then return nil, err end
  local l, lerr = M.listen(spec)
  if not l then return nil, lerr end
  for _, kind in ipairs { "nats", "websocket", "http" } do
    if spec[kind] then
      io.stderr:write(("msrt-lua: %s on %s (port %d)\n"):format(SAYS[kind], spec[kind], l:port(kind)))
    end
  end
  return true
end

--- Close every listener and every client connection (at shutdown).
function M.close_all()
  require("msrt.held").call("msrt.dashboard", "stop")
  for l in pairs(listeners) do l:close() end
  if server then server:close() end
  server, auth_path = nil, nil
end

return require("msrt.held").keep("msrt.listen", M) -- closed at shutdown
