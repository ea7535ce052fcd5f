--- An MCP server reached by URL: the client side of MCP's streamable HTTP
-- transport (README "MCP servers";
-- https://modelcontextprotocol.io/specification/2025-06-18/basic/transports),
-- on msrt's HTTP client (libcurl's multi interface on the hub's loop,
-- src/http). It stands where a stdio server's process stands: a
-- `service` child of a supervisor (lua/msrt/supervisor.lua) that answers
-- the same subjects the jsonrpc codec does (src/proc/proc.h), so
-- lua/msrt/mcp.lua runs the handshake, tools, checks, progress,
-- cancellation and ping over it unchanged:
-- - a request on <rpc>.<method> is POSTed as a JSON-RPC request with a
--   fresh id; its response is the reply (an error as headers Rpc-Error
--   and Description, data its data); a message without a reply is POSTed
--   as a notification;
-- - the server's notifications are published on
--   <publish_as>.notify.<method>, its requests are msrt requests on
--   <publish_as>.request.<method>, answered back to it with its id;
-- - an answer is application/json (one message or a batch) or a
--   text/event-stream of messages (split across reads anyhow:
--   src/http/sse.h); a stream that closes before the response to its
--   request, having named event ids, is resumed with a GET carrying
--   Last-Event-ID once its retry time has passed;
-- - the initialize response's Mcp-Session-Id is sent on every later
--   request, with MCP-Protocol-Version (the version the server chose);
--   404 to a request carrying the session means the session expired: the
--   handle initializes a new one (the same initialize params, then
--   notifications/initialized) and sends the request again, once (those
--   sent meanwhile wait for it; a notification answered 404 is dropped);
-- - a request's transport failure (connection refused, reset, the server
--   gone; a notification's is only logged) fails every request in flight
--   at once (a 503 reply: no_responders, naming the URL and libcurl's
--   words) and ends the handle (its exit abnormal): its supervisor
--   restarts it within its intensity;
-- - stopping it DELETEs the session (bounded by its shutdown), then it
--   exits normally.
-- Hub thread only.
-- @module msrt.mcp_remote
local core = require "msrt.core"
local hub = require "msrt.hub"
local json = require "msrt.json"

local M = {}

--- The longest a stop waits for the session's DELETE (ms).
M.DELETE_MS = 2000
--- A stream closed before its response is resumed (GET, Last-Event-ID)
-- after its retry field, or this long without one (ms), at most RESUMES
-- times in a row.
M.RETRY_MS, M.RESUMES = 1000, 3

local client -- one HTTP client for every handle (core.http_client)

local function http()
  if not client then client = assert(core.http_client()) end
  return client
end

local Handle = {}
Handle.__index = Handle

local function log(h, level, text) require("msrt.mcp").log(level, ("mcp %s: %s"):format(h.name, text)) end

-- Reply to an msrt request waiting on inbox.
local function answer(inbox, data, headers)
  local ok, err = hub.publish(inbox, data, { headers = headers })
  if not ok and err.code ~= "no_responders" then return nil, err end
  return true
end

local function fail_request(h, id, why)
  local p = h.pending[id]
  if not p then return end
  h.pending[id], h.by_inbox[p.inbox] = nil, nil
  answer(p.inbox, nil, { Status = "503", Description = why })
end

-- ---- the end of the handle ------------------------------------------------

-- Every request in flight fails, the transfers stop, the exit is told.
local function finish(h, reason, normal)
  if h.over then return end
  h.over = true
  if h.sid then hub.unsubscribe(h.sid, h.hub_id) end
  for _, req in pairs(h.posts) do req:cancel() end
  h.posts = {}
  for id in pairs(h.pending) do fail_request(h, id, ("mcp %s: %s"):format(h.name, reason)) end
  for _, fn in ipairs(h.exits) do
    local ok, err = pcall(fn, { reason = reason, normal = normal })
    if not ok then core.report("mcp " .. h.name .. " exit", tostring(err)) end
  end
end

-- ---- incoming messages ------------------------------------------------------

local post -- forward

-- A request of the server's: an msrt request on <publish_as>.request.<method>,
-- its reply POSTed back as the response.
local function server_request(h, m)
  require("msrt").after(0, function()
    local data, err = hub.request(h.prefix .. ".request." .. m.method, m.params or {}, { timeout_ms = 60000 })
    if h.over then return end
    local r = { jsonrpc = "2.0", id = m.id }
    if data ~= nil or err == nil then r.result = data == nil and {} or data
    else r.error = { code = err.rpc_code or -32601, message = err.message } end
    post(h, r)
  end)
end

local function on_message(h, m)
  if type(m) ~= "table" then return log(h, "warn", "a message that is not an object ignored") end
  if m.method ~= nil then
    if type(m.method) ~= "string" then return log(h, "warn", "a message with a bad method ignored") end
    if m.id ~= nil then return server_request(h, m) end
    return hub.publish(h.prefix .. ".notify." .. m.method, m.params or {}, {})
  end
  local p = m.id ~= nil and h.pending[m.id]
  if not p then return log(h, "warn", ("a response with an unknown id ignored: %s"):format(tostring(m.id))) end
  h.pending[m.id], h.by_inbox[p.inbox] = nil, nil
  if type(m.error) == "table" then
    return answer(p.inbox, m.error.data, { ["Rpc-Error"] = tostring(tonumber(m.error.code) or -32603),
      Description = tostring(m.error.message or "error") })
  end
  if p.method == "initialize" and type(m.result) == "table" then
    h.protocol = type(m.result.protocolVersion) == "string" and m.result.protocolVersion or nil
  end
  answer(p.inbox, m.result)
end

local function on_messages(h, v)
  if type(v) == "table" and v[1] ~= nil and v.jsonrpc == nil then
    for _, m in ipairs(v) do on_message(h, m) end
  else
    on_message(h, v)
  end
end

-- ---- POSTing --------------------------------------------------------------

local function headers_of(h, init)
  local hs = { "Content-Type: application/json", "Accept: application/json, text/event-stream" }
  if not init and h.session then hs[#hs + 1] = "Mcp-Session-Id: " .. h.session end
  if not init and h.protocol then hs[#hs + 1] = "MCP-Protocol-Version: " .. h.protocol end
  return hs
end

-- A message's requests that the POST's answer left unanswered fail.
local function unanswered(h, m, why)
  if m.id ~= nil and m.method ~= nil then fail_request(h, m.id, why) end
end

-- 404 to m, sent with session `sent`: m goes again in a session that
-- is open. The first 404 of a session starts a new one (Handle:renew);
-- requests meanwhile wait for it. A notification is dropped: it spoke of
-- the session that ended.
local function expired(h, m, sent)
  if m.id == nil then return end
  if h.renewing then
    h.held[#h.held + 1] = m
  elseif sent ~= h.session then -- renewed since it left
    post(h, m, true)
  else
    h.held[#h.held + 1] = m
    h:renew()
  end
end

-- Bytes of an event stream: each message event handled; st.last_id
-- keeps the last event id (for a resumption). false when the stream broke.
local function read_stream(h, st, bytes)
  local events, err = st.parser:feed(bytes)
  if not events then
    finish(h, "the server's event stream broke: " .. tostring(err), false)
    return false
  end
  for _, ev in ipairs(events) do
    if ev.id ~= "" then st.last_id = ev.id end
    if ev.type == "message" and ev.data ~= "" then
      local v, derr = json.decode(ev.data)
      if v == nil then log(h, "warn", "an event that is not JSON ignored: " .. tostring(derr)) else on_messages(h, v) end
    end
  end
  return true
end

-- The stream answering request m closed before its response: once the
-- stream's retry (ms; M.RETRY_MS without one) has passed, a GET with
-- Last-Event-ID resumes it (MCP's "Resumability and Redelivery"), at most
-- M.RESUMES times; the GET ends once m is answered.
local function resume(h, m, st, n)
  if n > M.RESUMES or not st.last_id then
    return unanswered(h, m, ("mcp %s: the server's stream for %s ended without its response"):format(h.name, tostring(m.method)))
  end
  require("msrt").after(st.parser:retry() or M.RETRY_MS, function()
    local p = h.pending[m.id]
    if h.over or not p then return end
    local key, gst = {}, { parser = core.sse_parser(), last_id = st.last_id }
    local hs = headers_of(h, false)
    hs[1] = "Last-Event-ID: " .. st.last_id -- in place of Content-Type: a GET has no body
    local req, err
    req, err = http():request({ method = "GET", url = h.url, headers = hs, connect_timeout_ms = h.connect_timeout_ms },
      function(what, a)
        if h.over then return end
        if what == "body" then
          if read_stream(h, gst, a) and not h.pending[m.id] then -- answered: this stream has done its part
            req:cancel()
            h.posts[key] = nil
          end
        elseif what == "done" then
          h.posts[key] = nil
          if a then return finish(h, ("the server at %s is gone: %s"):format(h.url, a.message), false) end
          if h.pending[m.id] then resume(h, m, gst, n + 1) end
        end
      end)
    if not req then return unanswered(h, m, ("mcp %s: %s"):format(h.name, tostring(err))) end
    h.posts[key], p.req, p.key = req, req, key
  end)
end

-- The answer to one POST: head, body pieces, done.
local function on_post(h, m, key, retried, sent)
  local status, stream, st, chunks = nil, false, nil, {}
  return function(what, a, b)
    if h.over then return end
    if what == "head" then
      status = a
      local ctype = (b["content-type"] or ""):lower()
      stream = ctype:find("text/event-stream", 1, true) ~= nil
      if stream then st = { parser = core.sse_parser() } end
      if m.method == "initialize" and status == 200 then h.session = b["mcp-session-id"] end
    elseif what == "body" then
      if not stream then chunks[#chunks + 1] = a return end
      read_stream(h, st, a)
    else -- done
      h.posts[key] = nil
      if a then -- no answer: the server is gone (a request's failure says so; a notification's is only noted)
        if m.id == nil then return log(h, "warn", ("%s not delivered: %s"):format(tostring(m.method), a.message)) end
        return finish(h, ("the server at %s is gone: %s"):format(h.url, a.message), false)
      end
      if status == 404 and sent and m.method ~= "initialize" and not retried then return expired(h, m, sent) end
      local body = table.concat(chunks)
      if status >= 200 and status < 300 and not stream and body ~= "" then
        local v, derr = json.decode(body)
        if v == nil then log(h, "warn", "an answer that is not JSON ignored: " .. tostring(derr)) else on_messages(h, v) end
      elseif status >= 300 then
        local v = json.decode(body)
        local e = type(v) == "table" and type(v.error) == "table" and v.error
        local why = ("HTTP %d from %s%s"):format(status, h.url, e and (": " .. tostring(e.message)) or
          (body ~= "" and (": " .. body:sub(1, 200)) or ""))
        if m.id ~= nil and m.method ~= nil and h.pending[m.id] then
          local p = h.pending[m.id]
          h.pending[m.id], h.by_inbox[p.inbox] = nil, nil
          answer(p.inbox, nil, { ["Rpc-Error"] = tostring(e and tonumber(e.code) or -32603), Description = why })
        end
        return
      end
      if stream and m.id ~= nil and m.method ~= nil and h.pending[m.id] then return resume(h, m, st, 1) end
      unanswered(h, m, ("mcp %s: the server's answer to %s had no response"):format(h.name, tostring(m.method)))
    end
  end
end

function post(h, m, retried, renewal)
  if h.over then return end
  if h.renewing and not renewal then -- after the new session's initialize
    h.held[#h.held + 1] = m
    return
  end
  local key, init = {}, m.method == "initialize"
  local req, err = http():request({ method = "POST", url = h.url, body = json.encode(m),
    headers = headers_of(h, init), connect_timeout_ms = h.connect_timeout_ms },
    on_post(h, m, key, retried, not init and h.session or nil))
  if not req then
    unanswered(h, m, ("mcp %s: %s"):format(h.name, tostring(err)))
    return
  end
  h.posts[key] = req
  if m.id ~= nil and m.method ~= nil and h.pending[m.id] then h.pending[m.id].req, h.pending[m.id].key = req, key end
end

-- A new session (the same initialize params, then
-- notifications/initialized); the requests held meanwhile go out in it,
-- once each, or fail when it cannot be had.
function Handle:renew()
  log(self, "info", "session expired (404): initializing a new one")
  self.session, self.protocol, self.renewing = nil, nil, true
  local function release(why)
    self.renewing = false
    local held = self.held
    self.held = {}
    for _, m in ipairs(held) do
      if why then unanswered(self, m, why) else post(self, m, true) end
    end
  end
  if not self.init_params then return release("the session expired before any initialize") end
  self.next_id = self.next_id + 1
  local id = self.next_id
  local inbox = "_mcp_renew." .. assert(core.token()):gsub("[^%w]", "") -- its response is handled here
  self.pending[id] = { inbox = inbox, method = "initialize" }
  local sid, hub_id
  sid, hub_id = hub.subscribe(inbox, function(msg)
    hub.unsubscribe(sid, hub_id)
    if self.over then return end
    if msg.headers and (msg.headers.Status or msg.headers["Rpc-Error"]) then
      return release("the session expired and a new initialize failed: " .. tostring(msg.headers.Description))
    end
    post(self, { jsonrpc = "2.0", method = "notifications/initialized" }, false, true)
    release()
  end, {})
  post(self, { jsonrpc = "2.0", id = id, method = "initialize", params = self.init_params }, false, true)
end

-- ---- what mcp.lua sends -----------------------------------------------------

local function on_rpc(h, msg)
  if h.over then return end
  local method = msg.subject:sub(#h.rpc + 2)
  local params = msg.data -- nil: none
  if not msg.reply then
    if method == "notifications/cancelled" and type(params) == "table" and params.requestId ~= nil then
      -- the server sends no response to it: our wait ends, its transfer too
      local p = h.pending[params.requestId]
      if p then
        h.pending[params.requestId], h.by_inbox[p.inbox] = nil, nil
        if p.req and p.key then p.req:cancel() h.posts[p.key] = nil end
      end
    end
    return post(h, { jsonrpc = "2.0", method = method, params = params })
  end
  h.next_id = h.next_id + 1
  local id = h.next_id
  h.pending[id], h.by_inbox[msg.reply] = { inbox = msg.reply, method = method }, id
  if method == "initialize" then h.init_params, h.session, h.protocol = params, nil, nil end
  post(h, { jsonrpc = "2.0", id = id, method = method, params = params })
end

-- ---- the handle (a supervisor's service child) -----------------------------

--- The JSON-RPC id of the request sent with reply subject `reply`, while
-- it waits for its response (nil after). As a process handle's rpc_id.
function Handle:rpc_id(reply) return self.by_inbox[reply] end

--- fn({reason, normal}) once, when the handle ends.
function Handle:on_exit(fn) self.exits[#self.exits + 1] = fn end

--- Stop: DELETE the session (waiting at most ms, at most M.DELETE_MS),
-- then end normally ("shutdown"). ms "brutal_kill": end at once.
function Handle:stop(ms)
  if self.over or self.stopping then return end
  self.stopping = true
  if ms == "brutal_kill" or not self.session then return finish(self, "shutdown", true) end
  local limit = math.min(type(ms) == "number" and ms or M.DELETE_MS, M.DELETE_MS)
  local req = http():request({ method = "DELETE", url = self.url, headers = headers_of(self, false),
    timeout_ms = math.max(1, limit) }, function(what)
    if what == "done" then finish(self, "shutdown", true) end
  end)
  if not req then finish(self, "shutdown", true) end
end

--- End at once (no DELETE), abnormally ("killed").
function Handle:kill() finish(self, "killed", false) end

--- Whether the handle still runs.
function Handle:alive() return not self.over end

--- A handle for spec: {name, url, rpc (the request subject prefix),
-- publish_as (where the server's notifications and requests go),
-- connect_timeout_ms}.
-- @return handle | nil, err (invalid_arg)
function M.start(spec)
  if type(spec.url) ~= "string" or not spec.url:find("^https?://[^/]") then
    return nil, core.error("invalid_arg", "mcp server url must be http:// or https://")
  end
  local h = setmetatable({ name = spec.name, url = spec.url, rpc = spec.rpc, prefix = spec.publish_as,
    connect_timeout_ms = spec.connect_timeout_ms or 5000, next_id = 0, pending = {}, by_inbox = {},
    posts = {}, exits = {}, held = {} }, Handle)
  h.sid, h.hub_id = hub.subscribe(h.rpc .. ".>", function(msg) on_rpc(h, msg) end, {})
  if not h.sid then return nil, h.hub_id end
  return h
end

--- Close the HTTP client: every transfer stops, nothing more is called
-- (shutdown, once the supervision trees have stopped; idempotent).
function M.close_all()
  if client then client:close() end
  client = nil
end

return require("msrt.held").keep("msrt.mcp_remote", M) -- closed at shutdown
