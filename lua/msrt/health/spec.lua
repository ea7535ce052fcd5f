--- Health specs (docs/architecture.md "Health checks"): a child spec's
-- `health` table, its probes' fields (msrt.schema) and the deeper rules of
-- each probe type's target. Pure but for M.check, which also asks the C
-- books (health/books.lua) to check the thresholds and times.
-- Internal to msrt.health. Hub thread only.
-- @module msrt.health.spec
local schema = require "msrt.schema"
local books = require "msrt.health.books"

local M = {}

--- The probe kinds, in the order they are looked at.
M.KINDS = { "startup", "liveness", "readiness" }
--- The probe types.
M.TYPES = { "heartbeat", "tcp", "http", "exec", "lua", "alive" }
local KINDS, PROBE_TYPES = M.KINDS, M.TYPES
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

-- ---- probe specs -----------------------------------------------------------

--- "host:port" ("[v6]:port"; localhost as 127.0.0.1) -> host, port | nil
function M.ip_port(s)
  local host, port = s:match("^%[?([^%]]+)%]?:(%d+)$")
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then return nil end
  if host == "localhost" then host = "127.0.0.1" end
  return host, port
end

--- "http://host:port/path" -> host, port (default 80), path, "host:port"
-- | nil
function M.parse_url(s)
  local hostport, path = s:match("^http://([^/]+)(.*)$")
  if not hostport then return nil end
  local host, port = M.ip_port(hostport)
  if not host then host, port = hostport, 80 end
  if host == "localhost" then host = "127.0.0.1" end
  if path == "" then path = "/" end
  if path:find("[%s%c]") then return nil end
  return host, port, path, hostport
end

--- Which probe type a probe table has (one of M.TYPES); nil, why if it
-- is not exactly one of them with a well-formed target.
function M.probe_type(p)
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
  elseif found == "tcp" and (type(v) ~= "string" or not M.ip_port(v)) then
    return nil, "tcp must be \"host:port\""
  elseif found == "http" and (type(v) ~= "string" or not M.parse_url(v)) then
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
      local t, why = M.probe_type(p)
      if not t then return nil, ("health.%s %s"):format(kind, why) end
    end
  end
  -- the thresholds and times are checked by the C books
  local b, err = books.new(M.configs(spec), 0)
  if not b then return nil, err.message end
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
        c.initial_delay_ms = (c.initial_delay_ms or 0) + (c.interval_ms or books.DEFAULTS.interval_ms)
      end
      out[kind] = c
    end
  end
  return out
end

return M
