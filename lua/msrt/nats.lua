--- The NATS bridge (README "More than one host", docs/architecture.md
-- "More than one host"): this host's router joined to a NATS server or
-- cluster, so that fleets on several machines share subjects, queue groups
-- and request/reply. The C half is src/bridge/bridge.h. Internal: the
-- public face is `msrt.nats` (init.lua). Hub thread only.
-- @module msrt.nats
local core = require "msrt.core"
local policy = require "msrt.policy"
local profile = require "msrt.profile"

local M = {}

local FIELDS = { url = "string", servers = "table", user = "string", password = "string",
  token = "string", creds = "string", name = "string", import = "table", export = "table",
  reconnect_buffer = "number", reconnect_wait_ms = "number", pending_msgs = "number",
  connect_timeout_ms = "number", send_asap = "boolean" }

local open = {} -- bridges not closed yet, in opening order

local function bad(msg) return nil, core.error("bad_config", "msrt.nats: " .. msg) end

local function list_of_strings(t, what)
  if t == nil then return true end
  for i = 1, #t do
    if type(t[i]) ~= "string" then return bad(("%s[%d] must be a string, got %s"):format(what, i, type(t[i]))) end
  end
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > #t or k % 1 ~= 0 then return bad(what .. " must be a list of strings") end
  end
  return true
end

--- Check a bridge's configuration (a table from msrt.nats or a policy
-- file) without opening anything: the fields and their types, one server
-- at least, the lists.
-- @return true | nil, err (`bad_config`)
function M.validate(cfg)
  if type(cfg) ~= "table" then return bad("a table of options expected, got " .. type(cfg)) end
  for k, v in pairs(cfg) do
    local want = FIELDS[k]
    if not want then return bad(("unknown field '%s'"):format(tostring(k))) end
    if type(v) ~= want then return bad(("'%s' must be a %s, got %s"):format(k, want, type(v))) end
  end
  if not cfg.url and not (cfg.servers and #cfg.servers > 0) then return bad("'url' or 'servers' is required") end
  for _, f in ipairs { "servers", "import", "export" } do
    local ok, err = list_of_strings(cfg[f], f)
    if not ok then return nil, err end
  end
  for _, u in ipairs(cfg.servers or { cfg.url }) do
    if not u:match("^nats://[^%s]+$") and not u:match("^[%w%.%-]+:%d+$") then
      return bad(("server '%s' is not a nats:// URL"):format(u))
    end
  end
  if (cfg.user == nil) ~= (cfg.password == nil) then return bad("'user' and 'password' go together") end
  return true
end

-- The options core.nats_open reads, from cfg and the profile in force.
local function open_opts(cfg)
  local cur = profile.current() or {}
  local n = cur.nats or {}
  local o = {}
  for k, v in pairs(cfg) do o[k] = v end
  o.servers = cfg.servers or { cfg.url }
  o.reconnect_buffer = cfg.reconnect_buffer or n.reconnect_buffer
  o.reconnect_wait_ms = cfg.reconnect_wait_ms or n.reconnect_wait_ms
  o.pending_msgs = cfg.pending_msgs or n.pending_msgs
  o.max_payload = cur.max_payload or 1024 * 1024
  return o
end

local Bridge = {}
Bridge.__index = Bridge

--- The bridge's state and counters: `state` ("connecting", "connected",
-- "disconnected", "closed"), `url` (the server it is connected to),
-- `reconnects`, `slow_consumer`, `loops`, `nats_subs` (NATS subscriptions
-- its interest made), `server_max_payload`, `max_payload` (the smaller of
-- the server's and the profile's: the largest message that crosses),
-- `slow_dropped`, `received` (messages NATS sent the connection),
-- `last_error`. Once closed: the counters when it closed, state "closed".
function Bridge:info()
  if not self.box then return self.last_info or { state = "closed" } end
  return core.nats_info(self.box)
end

--- Per subject class, what became of the copies handed to the bridge and
-- what it imported: `{[class] = {handed, exported, dropped_disconnected,
-- refused_by_server, local_only, unconvertible, imported, served_there,
-- dropped_at_close}}`, where handed == exported + dropped_disconnected +
-- refused_by_server + local_only + unconvertible, and dropped_at_close
-- counts imported messages still in libnats' queue when their NATS
-- subscription closed (README "More than one host"). Once closed: the
-- counts when it closed.
function Bridge:stats()
  if not self.box then return self.last_stats or {} end
  return core.nats_stats(self.box)
end

--- A readiness probe (README "Health checks", kind `lua`): true while
-- connected, else false and why.
function Bridge:ready()
  local i = self:info()
  if i.state == "connected" then return true end
  return false, "nats bridge " .. i.state .. (i.last_error ~= "" and i.last_error and (": " .. i.last_error) or "")
end

--- Replace the import and export patterns (what a reload of the bridge's
-- file does). @return true | nil, err
function Bridge:set(import, export)
  if not self.box then return nil, core.error("closed", "the NATS bridge is closed") end
  local ok, err = core.nats_filters(self.box, import or { ">" }, export or { ">" })
  if not ok then return nil, err end
  self.import, self.export = import, export
  return true
end

--- Wait until the server has seen what this host sent so far (its
-- subscriptions too): one round trip, at most timeout_ms (default 2000).
-- Blocks the hub for that round trip: for startup and tests.
-- @return true | nil, err (`timeout`, `closed` when not connected)
function Bridge:flush(timeout_ms)
  if not self.box then return nil, core.error("closed", "the NATS bridge is closed") end
  return core.nats_flush(self.box, timeout_ms)
end

--- Close the bridge: its exports go, its NATS subscriptions are drained
-- (what libnats still holds for them counted dropped_at_close), libnats
-- flushes what it holds (within 1 s). Idempotent.
function Bridge:close()
  if not self.box then return end
  -- what uses the connection goes first (JetStream queues, queue_js.lua)
  for _, fn in pairs(self.closers or {}) do fn() end
  self.closers = nil
  if self.forget then self.forget() end
  self.last_info, self.last_stats = core.nats_close(self.box)
  self.box = nil
  for i, b in ipairs(open) do
    if b == self then table.remove(open, i) break end
  end
end

--- Run fn when the bridge closes, before its connection goes (for what
-- uses the connection: a JetStream queue). @return forget()
function Bridge:on_close(fn)
  self.closers = self.closers or {}
  local key = {}
  self.closers[key] = fn
  return function() if self.closers then self.closers[key] = nil end end
end

--- Load a bridge file: a policy file (sandboxed, bounded) returning the
-- options table. @return cfg | nil, err
function M.load_file(path)
  local cfg, source = policy.load_file(path)
  if cfg == nil and type(source) == "table" then return nil, source end
  local ok, err = M.validate(cfg)
  if not ok then return nil, core.error("bad_config", ("%s:0: %s"):format(path, err.message), { file = path }) end
  return cfg
end

--- Open a bridge (see msrt.nats in init.lua for the options).
-- @return the bridge | nil, err
function M.open(cfg_or_path)
  local cfg, err = cfg_or_path, nil
  if type(cfg_or_path) == "string" then
    cfg, err = M.load_file(cfg_or_path)
    if not cfg then return nil, err end
  else
    local ok, verr = M.validate(cfg)
    if not ok then return nil, verr end
  end
  local box, oerr = core.nats_open(open_opts(cfg))
  if not box then return nil, oerr end
  local b = setmetatable({ box = box, name = cfg.name or "msrt" }, Bridge)
  open[#open + 1] = b
  local ok, ferr = b:set(cfg.import, cfg.export)
  if not ok then b:close() return nil, ferr end
  if type(cfg_or_path) == "string" then
    b.forget = require("msrt.reload").register(cfg_or_path, "nats", M.load_file, function(new)
      return b:set(new.import, new.export)
    end)
  end
  return b
end

--- Close every bridge (the runtime stops: before its bus goes).
function M.close_all()
  for i = #open, 1, -1 do open[i]:close() end
end

--- The bridges open now (for /metrics and ctl).
function M.list()
  local out = {}
  for i, b in ipairs(open) do out[i] = b end
  return out
end

return require("msrt.held").keep("msrt.nats", M) -- closed at shutdown
