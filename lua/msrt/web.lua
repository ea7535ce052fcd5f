--- The web listener (README "HTTP endpoints and the dashboard"): HTTP on
-- one address, served by libwebsockets on the hub (src/web/web.h): the
-- Prometheus `/metrics`, the Kubernetes-style `/healthz` and `/readyz` of
-- the host, and the dashboard's files. The profile's `connections` figures
-- bound it: `max` open connections (over it: closed at once), `backlog`,
-- `nodelay`, `read_timeout_ms` (a request must arrive within it) and
-- `idle_timeout_ms` (a kept-alive connection going idle). Internal: started
-- by `msrt.listen{ http = ADDR }`, `msrt-lua --metrics ADDR` or
-- `msrt.start{ metrics = ADDR }`. Hub thread only.
-- @module msrt.web
local core = require "msrt.core"
local uv = require "luv"

local M = {}

local listeners = {}

-- "EADDRINUSE: address already in use" -> "address already in use"
local function uv_why(err) return (tostring(err):gsub("^E[%u_]+: ", "")) end

--- Resolve "HOST:PORT" (HOST a name, resolved now with getaddrinfo, or an
-- address; "[::1]:PORT" for IPv6), or ":PORT" for 127.0.0.1.
-- @tparam string what names the address in messages ("metrics")
-- @return {addresses...}, port | nil, err (invalid_arg: not HOST:PORT;
--   network: the name does not resolve)
function M.resolve(addr, what)
  local host, port = tostring(addr):match("^%[?([^%]]-)%]?:(%d+)$")
  port = tonumber(port)
  if not port or port > 65535 then
    return nil, core.error("invalid_arg", ("%s address '%s': expected HOST:PORT"):format(what, tostring(addr)))
  end
  if host == "" then host = "127.0.0.1" end
  local addrs, rerr = uv.getaddrinfo(host, nil, { socktype = "stream" })
  if not addrs or #addrs == 0 then
    return nil, core.error("network", ("cannot resolve %s host '%s': %s"):format(what, host, uv_why(rerr)))
  end
  local ips = {}
  for _, a in ipairs(addrs) do ips[#ips + 1] = a.addr end
  return ips, port
end

-- The directory of the project's files next to the Lua half (source
-- tree: the repository; installed: share/msrt).
local function root()
  return (package.msrt_dir or "lua") .. "/.."
end

--- The URL prefixes the listener serves files from: the dashboard, and
-- the npm packages it uses (uPlot, nats.ws: installed by scripts/setup
-- from package-lock.json), so the page needs no network.
function M.mounts()
  local r = root()
  return {
    { "/", r .. "/dashboard" },
    { "/vendor/uplot/", r .. "/node_modules/uplot/dist" },
    { "/vendor/nats.ws/", r .. "/node_modules/nats.ws/esm" },
  }
end

-- The answers computed per request; nil lets the files answer.
local routes = {
  ["/metrics"] = function()
    return 200, "text/plain; version=0.0.4", require("msrt.ops").metrics_text()
  end,
  ["/healthz"] = function() return 200, "text/plain; charset=utf-8", "ok\n" end,
  ["/readyz"] = function()
    local ok, why = require("msrt.ops").ready()
    if ok then return 200, "text/plain; charset=utf-8", "ready\n" end
    return 503, "text/plain; charset=utf-8", "not ready: " .. why .. "\n"
  end,
}

local function answer(path)
  local route = routes[path]
  if route then return route() end
end

local function limits()
  local c = (require("msrt.profile").current() or {}).connections or {}
  return {
    max = c.max or 1024, backlog = c.backlog or 511, nodelay = c.nodelay ~= false,
    read_timeout_ms = c.read_timeout_ms or 5000, idle_timeout_ms = c.idle_timeout_ms or 30000,
  }
end

local function loopback(ip) return ip:match("^127%.") or ip == "::1" end

--- Listen for HTTP on addr (as M.resolve reads it): the first resolved
-- address that can be bound is used.
-- @tparam[opt] table opts `what` (the name in messages, default "http"),
--   `nats` (a core.nats_server: NATS clients over WebSocket too),
--   `loopback_only` (refuse an address that is not loopback: permission),
--   `exchange` ({exchange_path, exchange_header, body_max, exchange, gone}:
--   requests on that path answered later by `:respond`, src/lua/lweb.c)
-- @return the listener (`:port()`, `:stats()` -> {open, accepted,
--   refused}, `:close()`) | nil, err (invalid_arg, network: `cannot
--   listen on IP:PORT: Address already in use` and the like)
function M.listen(addr, opts)
  local what = opts and opts.what or "http"
  local ips, port = M.resolve(addr, what)
  if not ips then return nil, port end
  local cfg = limits()
  cfg.port, cfg.mounts, cfg.answer, cfg.nats = port, M.mounts(), answer, opts and opts.nats
  for k, v in pairs(opts and opts.exchange or {}) do cfg[k] = v end
  local l, err
  for _, ip in ipairs(ips) do
    if opts and opts.loopback_only and not loopback(ip) then
      return nil, core.error("permission", ("listen address \"%s\" is not loopback: give an auth policy (auth = FILE) to listen there"):format(addr))
    end
    cfg.ip = ip
    l, err = core.web_listen(cfg)
    if l then
      listeners[#listeners + 1] = l
      return l
    end
  end
  return nil, err
end

--- Close every listener (shutdown).
function M.close()
  for _, l in ipairs(listeners) do l:close() end
  listeners = {}
end

return require("msrt.held").keep("msrt.web", M) -- closed at shutdown
