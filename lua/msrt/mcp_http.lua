--- `msrt-lua mcp serve POLICY.lua --http ADDR`: the fleet as an MCP server
-- on MCP's streamable HTTP transport (README "MCP servers";
-- https://modelcontextprotocol.io/specification/2025-06-18/basic/transports),
-- on msrt's web listener (lua/msrt/web.lua, src/web/web.h "exchange"):
-- - POST /mcp carries one JSON-RPC message or a batch. Requests are
--   answered once every one of them is done, as application/json (one
--   response, or an array for a batch), or as a text/event-stream of
--   `message` events when the client's Accept names only that, or names
--   it and there are notifications (progress) to carry before them;
--   notifications and responses alone get 202 Accepted.
-- - `initialize` opens a session: its response carries Mcp-Session-Id,
--   which every later request must carry (400 without, 404 for one that
--   is not open); DELETE /mcp with it ends the session (its calls in
--   flight are abandoned). A session with no request and no call in
--   flight for the policy's session_idle_ms (default M.SESSION_IDLE_MS)
--   is ended (404 after: the client initializes a new one). At most the
--   policy's max_sessions (default M.MAX_SESSIONS) are open: an
--   initialize past it is answered 503 with a JSON-RPC error. GET /mcp is 405: this server sends nothing on
--   its own.
-- - The Origin header, when present, must name a loopback host (403
--   otherwise): the transport's guard against DNS rebinding. The listener
--   binds loopback addresses only.
-- - A client whose connection closes before its answer abandons the calls
--   that POST made, as its notifications/cancelled would.
-- The web listener's limits apply (connections.max, read timeout), and a
-- body is at most mcp_serve.MAX_LINE bytes (413 past it). Hub thread only.
-- @module msrt.mcp_http
local core = require "msrt.core"
local uv = require "luv"
local json = require "msrt.json"
local serve = require "msrt.mcp_serve"

local M = {}

--- The path served.
M.PATH = "/mcp"
--- Sessions open at once (a policy's max_sessions instead); an
-- initialize past it is refused (503).
M.MAX_SESSIONS = 256
--- How long a session may stay idle (ms: no request, no call in flight;
-- a policy's session_idle_ms instead): 30 minutes.
M.SESSION_IDLE_MS = 30 * 60 * 1000

local sessions = {}   -- Mcp-Session-Id -> session (mcp_serve.session)
local nsessions = 0
local exchanges = {}  -- exchange id -> {session, ids = {request id...}}
local listener
local limits = { max = M.MAX_SESSIONS, idle_ms = M.SESSION_IDLE_MS }
local sweeper -- the luv timer ending idle sessions

local function respond(id, status, type, body, hname, hvalue)
  listener:respond(id, status, type, body or "", hname, hvalue)
end

local function plain(id, status, text, hname, hvalue)
  respond(id, status, "text/plain; charset=utf-8", text .. "\n", hname, hvalue)
end

local function rpc_error(id, status, code, message)
  respond(id, status, "application/json",
    json.encode({ jsonrpc = "2.0", id = json.null, error = { code = code, message = message } }))
end

-- http(s)://localhost, 127.x.x.x or [::1], any port.
local function origin_ok(origin)
  if origin == "" then return true end -- not a browser
  local host = origin:match("^https?://%[([^%]]+)%]") or origin:match("^https?://([^:/]+)")
  return host == "localhost" or host == "::1" or (host ~= nil and host:match("^127%.%d+%.%d+%.%d+$") ~= nil)
end

local function wants(accept, what) return accept:find(what, 1, true) ~= nil end

-- The answer to a POST once each request in it is done: a stream when
-- the client takes only that, or when there are notifications to carry
-- (progress) and it takes a stream at all.
local function answer(x, responses, notes, batch, sid)
  local sse = wants(x.accept, "text/event-stream")
  local stream = sse and (#notes > 0 or not wants(x.accept, "application/json"))
  local body
  if stream then
    local ev = {}
    for _, n in ipairs(notes) do ev[#ev + 1] = "event: message\ndata: " .. json.encode(n) .. "\n\n" end
    for _, r in ipairs(responses) do ev[#ev + 1] = "event: message\ndata: " .. json.encode(r) .. "\n\n" end
    body = table.concat(ev)
  else
    body = json.encode(batch and responses or responses[1] or json.null)
  end
  respond(x.id, 200, stream and "text/event-stream" or "application/json", body,
    sid and "Mcp-Session-Id" or nil, sid)
end

-- Run each message of a POST as stdio's line does, collecting what the
-- session sends back to answer the POST with.
local function run(x, s, msgs, batch, new_sid)
  local requests = {}
  for _, m in ipairs(msgs) do
    if type(m) == "table" and m.method ~= nil and m.id ~= nil then requests[#requests + 1] = m.id end
  end
  if #requests == 0 then respond(x.id, 202, "text/plain", "") end
  local responses, notes, left = {}, {}, #requests
  local view = setmetatable({
    send = function(_, msg)
      if msg.id ~= nil then responses[#responses + 1] = msg else notes[#notes + 1] = msg end
    end,
  }, { __index = s })
  if left > 0 then exchanges[x.id] = { session = s, ids = requests } end
  for _, m in ipairs(msgs) do
    require("msrt").after(0, function()
      local ok, err = pcall(s.handle, view, m)
      if not ok then core.log_line("ERROR mcp serve: " .. tostring(err)) end
      if type(m) == "table" and m.method ~= nil and m.id ~= nil then
        left = left - 1
        if left == 0 and exchanges[x.id] then
          exchanges[x.id] = nil
          answer(x, responses, notes, batch, new_sid)
        end
      end
    end)
  end
end

local function post(x, policy)
  if not (wants(x.accept, "application/json") or wants(x.accept, "text/event-stream") or wants(x.accept, "*/*")) then
    return plain(x.id, 406, "Accept must name application/json or text/event-stream")
  end
  local m, err = json.decode(x.body)
  if m == nil then return rpc_error(x.id, 400, -32700, "Parse error: " .. tostring(err and err.message)) end
  local batch = type(m) == "table" and m[1] ~= nil and m.jsonrpc == nil
  local msgs = batch and m or { m }
  local init = not batch and type(m) == "table" and m.method == "initialize"
  if init then
    if nsessions >= limits.max then
      return rpc_error(x.id, 503, -32000, ("Service Unavailable: %d MCP sessions are open, the most this server takes;"
        .. " retry later, or end one (DELETE)"):format(limits.max))
    end
    local sid = assert(core.token()):gsub("[^%w]", "")
    sessions[sid], nsessions = serve.session(policy), nsessions + 1
    sessions[sid].last_ms = uv.now()
    return run(x, sessions[sid], msgs, false, sid)
  end
  if x.header == "" then return rpc_error(x.id, 400, -32600, "Bad Request: Mcp-Session-Id header required") end
  local s = sessions[x.header]
  if not s then return rpc_error(x.id, 404, -32001, "Session not found") end
  s.last_ms = uv.now()
  run(x, s, msgs, batch)
end

-- The session ends: each call it has in flight is abandoned.
local function close_session(sid)
  local s = sessions[sid]
  sessions[sid], nsessions = nil, nsessions - 1
  for id in pairs(s.calls) do s:cancel({ requestId = id, reason = "the MCP session ended" }) end
end

local function on_exchange(policy, x)
  if not origin_ok(x.origin) then return plain(x.id, 403, "Origin not allowed") end
  if x.method == "POST" then return post(x, policy) end
  if x.method == "DELETE" then
    if not sessions[x.header] then return plain(x.id, 404, "Session not found") end
    close_session(x.header)
    return respond(x.id, 200, "text/plain", "")
  end
  plain(x.id, 405, "method not allowed: POST and DELETE", "Allow", "POST, DELETE")
end

-- End each session idle for limits.idle_ms: no request since, and no
-- call in flight (a call's end counts as its session's last use).
local function sweep()
  local now = uv.now()
  local idle = {}
  for sid, s in pairs(sessions) do
    if next(s.calls) then s.last_ms = now
    elseif now - s.last_ms >= limits.idle_ms then idle[#idle + 1] = sid end
  end
  for _, sid in ipairs(idle) do
    close_session(sid)
    core.log_line(("INFO mcp serve: session %s... ended after %d ms idle"):format(sid:sub(1, 6), limits.idle_ms))
  end
end

-- A POST's client went away before its answer: its calls are abandoned.
local function on_gone(id)
  local e = exchanges[id]
  if not e then return end
  exchanges[id] = nil
  for _, rid in ipairs(e.ids) do
    e.session:cancel({ requestId = rid, reason = "the client's connection closed" })
  end
end

--- Serve policy p (mcp_serve.load's) at http://addr/mcp (addr as
-- msrt.web reads it: ":PORT" is 127.0.0.1; loopback only). Prints
-- `mcp serve: http://IP:PORT/mcp` on stderr once listening.
-- @return the listener | nil, err (invalid_arg, network, permission)
function M.listen(addr, p)
  local l, err = require("msrt.web").listen(addr, { what = "mcp http", loopback_only = true, exchange = {
    exchange_path = M.PATH, exchange_header = "Mcp-Session-Id", body_max = serve.MAX_LINE,
    exchange = function(x) on_exchange(p, x) end, gone = on_gone } })
  if not l then return nil, err end
  listener = l
  limits = { max = p.max_sessions or M.MAX_SESSIONS, idle_ms = p.session_idle_ms or M.SESSION_IDLE_MS }
  -- idle sessions end within a quarter of the idle time (at most a minute) past it
  local every = math.max(10, math.min(60000, math.floor(limits.idle_ms / 4)))
  -- (it also holds the host up: the web listener alone does not, and a
  -- policy may start no fleet)
  sweeper = uv.new_timer()
  sweeper:start(every, every, sweep)
  local ip = addr:match("^%[?([^%]]-)%]?:%d+$")
  if ip == "" then ip = "127.0.0.1" end
  io.stderr:write(("mcp serve: http://%s:%d%s\n"):format(ip:find(":") and "[" .. ip .. "]" or ip, l:port(), M.PATH))
  io.stderr:flush()
  return l
end

return M
