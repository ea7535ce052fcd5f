--- MCP tool servers as supervised children (README "MCP"): `msrt.mcp`.
-- A server speaks the Model Context Protocol
-- (https://modelcontextprotocol.io/specification/2025-06-18) over stdio:
-- JSON-RPC 2.0, one message a line, which the process codec "jsonrpc"
-- carries (src/proc/rpc.h). `server{...}` makes the child spec; its
-- startup probe runs the `initialize` handshake and lists what the server
-- offers, its liveness probe is MCP's `ping`, and each tool becomes the
-- subject `mcp.<name>.tool.<tool>`. Hub thread only.
-- @module msrt.mcp
local core = require "msrt.core"
local hub = require "msrt.hub"
local args = require "msrt.args"
local schema = require "msrt.schema"
local jsonschema = require "msrt.jsonschema"
local request = require "msrt.request"

local M = {}

--- The protocol version msrt asks for (the server answers with its own).
M.PROTOCOL_VERSION = "2025-06-18"

--- Where reports go: set by init.lua to msrt.log.
M.log = function() end

local servers = {} -- name -> server record
local calls = {}   -- Call-Token -> the tool call in flight {rec, msg, inbox}
local cancel_sub   -- mcp.cancel.*, made with the first server spec

local INVALID_PARAMS, TOOL_ERROR = -32602, -32000

local SPEC = {
  name = schema.string, cmd = schema.list(schema.either(schema.string, schema.num())),
  env = schema.table, inherit_env = schema.either(schema.boolean, schema.list(schema.string)),
  cwd = schema.string, restart = schema.enum{ "permanent", "transient", "temporary" },
  shutdown = schema.either(schema.int(0, nil, "ms"), schema.enum{ "brutal_kill", "infinity" }),
  call_timeout_ms = schema.int(1, nil, "ms"), startup_timeout_ms = schema.int(1, nil, "ms"),
  ping = schema.either(schema.boolean, schema.fields{ interval_ms = schema.int(1, nil, "ms"),
    timeout_ms = schema.int(1, nil, "ms"), failure_threshold = schema.int(1) }),
  max_line_bytes = schema.int(1, nil, "bytes"), capacity = schema.int(1),
  limits = schema.table, stop = schema.table, allow_publish = schema.any, deny_publish = schema.any,
  client_info = schema.fields{ name = schema.string, version = schema.string },
  tool_subjects = schema.string, queue = schema.string,
  url = schema.string, connect_timeout_ms = schema.int(1, nil, "ms"),
}

local function bad(msg) return nil, core.error("invalid_arg", msg) end

-- ---- talking to the child ------------------------------------------------

-- A request to the server's method subject (mcp.<name>.rpc.<method>).
local function call(rec, method, params, timeout_ms, sent)
  return hub.request(rec.rpc .. "." .. method, params or {}, { timeout_ms = timeout_ms or rec.call_timeout_ms }, sent)
end

local function notify(rec, method, params)
  return hub.publish(rec.rpc .. "." .. method, params or {}, {})
end

local function reply(msg, data, headers)
  if not msg.reply then return end
  local ok, err = hub.publish(msg.reply, data, { headers = headers })
  if not ok and err.code ~= "no_responders" then M.log("warn", ("mcp %s: reply not sent: %s"):format(msg.subject, tostring(err))) end
end

local function reply_error(msg, code, text, data)
  reply(msg, data, { ["Rpc-Error"] = tostring(code), Description = text })
end

-- Each page of a list method (tools/list...): every item of `key`.
local function list_all(rec, method, key)
  local items, cursor = {}, nil
  for _ = 1, 100 do -- a server that pages forever is cut at 100 pages
    local r, err = call(rec, method, cursor and { cursor = cursor } or {})
    if not r then return nil, err end
    for _, it in ipairs(type(r[key]) == "table" and r[key] or {}) do items[#items + 1] = it end
    cursor = type(r.nextCursor) == "string" and r.nextCursor or nil
    if not cursor then break end
  end
  return items
end

-- ---- tools as subjects -----------------------------------------------------

local function unsubscribe_all(rec, which)
  for key, s in pairs(rec[which]) do
    hub.unsubscribe(s.sid, s.hub_id)
    rec[which][key] = nil
  end
end

local function text_of(result)
  local parts = {}
  for _, c in ipairs(type(result.content) == "table" and result.content or {}) do
    if type(c) == "table" and c.type == "text" and type(c.text) == "string" then parts[#parts + 1] = c.text end
  end
  return #parts > 0 and table.concat(parts, "\n") or "tool error"
end

-- The progress token a request asked for (header Progress-Token: one
-- subject token), published on mcp.<name>.progress.<token>.
local function progress_token(rec, msg)
  local t = msg.headers and msg.headers["Progress-Token"]
  if type(t) ~= "string" or not t:find("^[%w_%-]+$") then return nil end
  rec.progress[t] = rec.progress[t] or 0
  return t
end

-- notifications/cancelled for a request of ours still unanswered.
local function cancel(rec, inbox, why)
  local h = rec.handle
  local id = inbox and h and h:rpc_id(inbox)
  if id then notify(rec, "notifications/cancelled", { requestId = id, reason = why }) end
end

local on_tool_call -- forward

-- Stop a tool call in flight: the server is sent notifications/cancelled
-- and our own wait for its response ends (MCP: a cancelled request gets
-- none). Returns false when it was stopped already.
local function give_up(state, why)
  if state.cancelled then return false end
  state.cancelled = true
  cancel(state.rec, state.inbox, why)
  if state.inbox then hub.abandon(state.inbox, why) end
  return true
end

-- A message on mcp.cancel.<token>: the call made with header Call-Token
-- <token> is cancelled at its server and its requester answered at once
-- (rpc_code -32800, LSP's RequestCancelled; MCP names none).
local function on_cancel(msg)
  local state = calls[msg.subject:match("[^.]+$")]
  if not state then return end
  local why = type(msg.data) == "table" and type(msg.data.reason) == "string" and msg.data.reason
    or "cancelled by its requester"
  if give_up(state, why) then reply_error(state.msg, -32800, why) end
end

-- A request on mcp.<name>.tool.<tool>: its data the arguments, checked
-- against the tool's inputSchema, then tools/call; the reply is the
-- result, an error result or a JSON-RPC error an Rpc-Error reply (the
-- requester's nil, err). A requester that goes away first (its notice on
-- msrt.abandoned.<reply>, lua/msrt/request.lua) cancels the call at once.
local function on_tool(rec, tool, msg)
  local ctok = msg.headers and msg.headers["Call-Token"]
  local state = { rec = rec, msg = msg }
  if type(ctok) == "string" and ctok:find("^[%w_%-]+$") and not calls[ctok] then calls[ctok] = state
  else ctok = nil end
  local sid, hub_id
  if msg.reply then
    sid, hub_id = hub.subscribe(request.ABANDONED .. msg.reply, function()
      give_up(state, "its requester went away")
    end, {})
  end
  local ok, why = pcall(on_tool_call, rec, tool, msg, state)
  if sid then hub.unsubscribe(sid, hub_id) end
  if ctok then calls[ctok] = nil end
  if not ok then error(why, 0) end
end

function on_tool_call(rec, tool, msg, state)
  local t = rec.tools[tool]
  if not t then return reply_error(msg, -32601, ("mcp %s: no tool %q"):format(rec.name, tool)) end
  local arguments = msg.data
  if arguments == nil then arguments = {} end
  local ok, why = jsonschema.check(t.inputSchema or {}, arguments, "arguments")
  if not ok then return reply_error(msg, INVALID_PARAMS, ("mcp %s.%s: %s"):format(rec.name, tool, why)) end
  local params = { name = tool, arguments = arguments }
  local token = progress_token(rec, msg)
  if token then params._meta = { progressToken = token } end
  -- the call ends when its requester stops waiting (its timeout), or
  -- sooner by the header or the server's call_timeout_ms
  local timeout = math.min(tonumber(msg.headers and msg.headers["Timeout-Ms"]) or math.huge,
    msg.reply_ttl_ms or math.huge, rec.call_timeout_ms)
  if timeout < 1 or state.cancelled then return end -- its requester has given up already
  local r, err = call(rec, "tools/call", params, timeout, function(i) state.inbox = i end)
  if token then rec.progress[token] = nil end
  if state.cancelled then return end -- its requester was answered then
  if r == nil then
    -- timed out: cancelled at the server; the requester's own timeout
    -- tells it so
    if err.code == "timeout" then return cancel(rec, state.inbox, "the msrt request timed out") end
    if err.code == "no_responders" then return reply(msg, nil, { Status = "503", Description = err.message }) end
    return reply_error(msg, err.rpc_code or -32603, err.message, err.data)
  end
  if r.isError then return reply_error(msg, TOOL_ERROR, text_of(r), r) end
  reply(msg, r)
end

-- MCP's tool names ([A-Za-z0-9_.-], 1..128) whose dots split subject
-- tokens cleanly: no wildcard can come in through a server's tool list.
local function tool_name_ok(n)
  return type(n) == "string" and #n <= 128 and not n:find("[^%w_%-%.]") and not n:find("^%.")
    and not n:find("%.$") and not n:find("%.%.") and n ~= ""
end

-- Subscribe each listed tool's subject, drop those no longer listed.
local function sync_tools(rec, tools)
  local want = {}
  for _, t in ipairs(tools) do
    if tool_name_ok(t.name) then
      want[t.name] = t
    else
      M.log("warn", ("mcp %s: tool %q skipped: its name makes no valid subject"):format(rec.name, tostring(t.name)))
    end
  end
  for name in pairs(rec.subs) do
    if not want[name] then
      hub.unsubscribe(rec.subs[name].sid, rec.subs[name].hub_id)
      rec.subs[name] = nil
    end
  end
  rec.tools = want
  for name in pairs(want) do
    if not rec.subs[name] then
      local sid, hub_id = hub.subscribe(rec.tool_prefix .. "." .. name, function(msg) on_tool(rec, name, msg) end,
        { queue = rec.queue })
      if sid then rec.subs[name] = { sid = sid, hub_id = hub_id } end
    end
  end
end

local function relist_tools(rec)
  local tools, err = list_all(rec, "tools/list", "tools")
  if not tools then return nil, err end
  sync_tools(rec, tools)
  return true
end

-- ---- the handshake (startup probe) and ping (liveness probe) --------------

local function listen(rec, key, pattern, fn)
  if rec.own[key] then return end
  local sid, hub_id = hub.subscribe(pattern, fn, {})
  if sid then rec.own[key] = { sid = sid, hub_id = hub_id } end
end

-- What the server sends besides responses: list changes, progress, and
-- its own pings (answered: MCP's ping goes both ways).
local function listen_all(rec)
  local n = rec.prefix .. ".notify.notifications/"
  listen(rec, "tools", n .. "tools/list_changed", function()
    if rec.ready then relist_tools(rec) end
  end)
  for _, what in ipairs({ "resources", "prompts" }) do
    listen(rec, what, n .. what .. "/list_changed", function()
      if rec.ready and rec.caps[what] then rec[what] = list_all(rec, what .. "/list", what) or rec[what] end
    end)
  end
  listen(rec, "progress", n .. "progress", function(msg)
    local p = msg.data
    local token = type(p) == "table" and p.progressToken
    if type(token) == "string" and rec.progress[token] then
      hub.publish(rec.prefix .. ".progress." .. token, { progress = p.progress, total = p.total, message = p.message }, {})
    end
  end)
  listen(rec, "ping", rec.prefix .. ".request.ping", function(msg) reply(msg, {}) end)
end

-- Reading what the server offers besides tools: mcp.<name>.resource.read
-- ({uri}) is resources/read, mcp.<name>.prompt.get ({name, arguments})
-- prompts/get; the reply is the server's result, an error nil, err.
local READS = { resources = { "resource.read", "resources/read" }, prompts = { "prompt.get", "prompts/get" } }

local function offer_reads(rec)
  for what, r in pairs(READS) do
    if rec.caps[what] and not rec.reads[what] then
      local sid, hub_id = hub.subscribe(rec.prefix .. "." .. r[1], function(msg)
        if type(msg.data) ~= "table" then return reply_error(msg, INVALID_PARAMS, r[2] .. " needs a table of params") end
        local res, err = call(rec, r[2], msg.data, math.min(msg.reply_ttl_ms or math.huge, rec.call_timeout_ms))
        if res ~= nil then return reply(msg, res) end
        if err.code == "no_responders" then return reply(msg, nil, { Status = "503", Description = err.message }) end
        if err.code ~= "timeout" then reply_error(msg, err.rpc_code or -32603, err.message, err.data) end
      end, {})
      if sid then rec.reads[what] = { sid = sid, hub_id = hub_id } end
    end
  end
end

local function handshake(rec, h)
  local r, err = call(rec, "initialize", { protocolVersion = M.PROTOCOL_VERSION, capabilities = {},
    clientInfo = rec.client_info }, rec.startup_timeout_ms)
  if not r then return nil, "initialize: " .. tostring(err) end
  if rec.handle ~= h then return nil, "the server restarted during the handshake" end
  rec.protocol_version, rec.server_info, rec.caps = r.protocolVersion, r.serverInfo, r.capabilities or {}
  rec.instructions = r.instructions
  notify(rec, "notifications/initialized")
  for _, what in ipairs({ "resources", "prompts" }) do
    rec[what] = rec.caps[what] and list_all(rec, what .. "/list", what) or {}
  end
  if rec.caps.tools then
    local ok, lerr = relist_tools(rec)
    if not ok then return nil, "tools/list: " .. tostring(lerr) end
  end
  offer_reads(rec)
  rec.ready = true
  return true
end

-- A new instance of the server (a start or a restart): its tools go with
-- the one before, come back with its handshake.
local function new_instance(rec, h)
  rec.handle, rec.ready, rec.handshaking = h, false, nil
  unsubscribe_all(rec, "subs")
  unsubscribe_all(rec, "reads")
  rec.tools = {}
  h:on_exit(function()
    if rec.handle ~= h then return end
    rec.ready = false
    unsubscribe_all(rec, "subs")
  unsubscribe_all(rec, "reads")
    rec.tools = {}
  end)
end

local function startup_probe(rec)
  return function(child)
    local h = child.handle
    if rec.handle ~= h then new_instance(rec, h) end
    if rec.ready then return true end
    if rec.handshaking then return false, "handshake under way" end
    rec.handshaking = true
    local ok, why = handshake(rec, h)
    if rec.handle == h then rec.handshaking = nil end
    return ok, why
  end
end

local function ping_probe(rec)
  return function()
    if not rec.ready then return true end -- startup's to judge
    local r, err = call(rec, "ping", {}, rec.ping.timeout_ms)
    if r == nil then return false, "ping: " .. tostring(err) end
    return true
  end
end

-- ---- the child spec ---------------------------------------------------------

local function record(spec)
  local ping = spec.ping == nil and {} or spec.ping
  if ping == true then ping = {} end
  local rec = servers[spec.name] or { subs = {}, own = {}, reads = {}, tools = {}, progress = {},
    resources = {}, prompts = {} }
  rec.name, rec.prefix, rec.rpc = spec.name, "mcp." .. spec.name, "mcp." .. spec.name .. ".rpc"
  rec.tool_prefix, rec.queue = spec.tool_subjects or (rec.prefix .. ".tool"), spec.queue
  rec.call_timeout_ms = spec.call_timeout_ms or 60000
  rec.startup_timeout_ms = spec.startup_timeout_ms or 30000
  rec.ping = ping and { interval_ms = ping.interval_ms or 10000, timeout_ms = ping.timeout_ms or 5000,
    failure_threshold = ping.failure_threshold or 3 }
  rec.client_info = spec.client_info or { name = "msrt", version = "1" }
  servers[spec.name] = rec
  return rec
end

--- Check an MCP server spec (M.server's) without making anything.
-- @return true | nil, err (invalid_arg)
function M.check(spec)
  if type(spec) ~= "table" then return bad("mcp server spec must be a table") end
  local ok, why = schema.check(spec, SPEC, "mcp server spec")
  if not ok then return bad(why) end
  if type(spec.name) ~= "string" or not spec.name:find("^[%w_%-]+$") then
    return bad("mcp server spec needs a name: one subject token (letters, digits, _ and -)")
  end
  if spec.url ~= nil then
    if spec.cmd ~= nil then return bad("mcp server spec has both cmd and url: one of them") end
    if not spec.url:find("^https?://[^/]") then return bad("mcp server spec's url must be http:// or https://") end
    return true
  end
  if type(spec.cmd) ~= "table" or #spec.cmd == 0 then return bad("mcp server spec needs cmd = {\"program\", ...} or url") end
  return true
end

--- A child spec (for msrt.supervisor's children) running an MCP server
-- over stdio, or reaching one by `url` over the streamable HTTP transport
-- (lua/msrt/mcp_remote.lua: a `service` child whose exit is a transport
-- failure, the server gone). spec: `name` (one subject token: its
-- subjects are mcp.<name>.*), `cmd` or `url` (http:// or https://, with
-- `connect_timeout_ms`, default 5000), and for `cmd`: `env`,
-- `inherit_env`, `cwd`, `limits`, `stop`, `capacity`, `max_line_bytes`,
-- `allow_publish`, `deny_publish` as for msrt.process; `restart`, `shutdown` as for a child spec;
-- `call_timeout_ms` (a tool call's longest timeout, default 60000; a
-- call ends sooner when its requester's own timeout passes, or by its
-- header Timeout-Ms), `startup_timeout_ms` (the handshake's,
-- default 30000), `ping` ({interval_ms = 10000, timeout_ms = 5000,
-- failure_threshold = 3}, or false for no liveness probe), `client_info`
-- ({name, version} sent in initialize), `tool_subjects` (the tools'
-- subject prefix instead of mcp.<name>.tool: several servers of one kind
-- can share it) and `queue` (a queue group for the tools' subscriptions:
-- each call goes to one of the servers sharing it).
-- The child starts ready (start = "ready") once `initialize` has been
-- answered, notifications/initialized sent and the tools, resources and
-- prompts listed. Then each tool answers requests on
-- mcp.<name>.tool.<tool>: the data is the tool's arguments (nil: none),
-- checked against its inputSchema first (msrt.jsonschema: invalid params,
-- rpc_code -32602, without reaching the server); the reply is the
-- CallToolResult ({content, structuredContent}); an isError result comes
-- back as nil, err (rpc_error, rpc_code -32000, message its text, data
-- the result) and a JSON-RPC error as nil, err with its code. With the
-- header Progress-Token (one subject token) the call asks for progress,
-- published on mcp.<name>.progress.<token> as {progress, total, message}.
-- A call whose requester's timeout passes is cancelled at the server
-- (notifications/cancelled with its request id). A call in flight when
-- the server dies fails at once (no_responders); its tools are
-- unsubscribed until the restarted server's handshake lists them again.
-- notifications/tools/list_changed lists them again. A server offering
-- resources or prompts answers mcp.<name>.resource.read ({uri}: its
-- resources/read result) and mcp.<name>.prompt.get ({name, arguments}:
-- its prompts/get result).
-- @return child spec | nil, err (invalid_arg)
function M.server(spec)
  args.check(type(spec) == "table", 1, "mcp.server", "spec table expected")
  local ok, err = M.check(spec)
  if not ok then return nil, err end
  local rec = record(spec)
  listen_all(rec)
  if not cancel_sub then cancel_sub = hub.subscribe("mcp.cancel.*", on_cancel, {}) end
  local health = { startup = { lua = startup_probe(rec), interval_ms = 50, timeout_ms = rec.startup_timeout_ms,
    failure_threshold = math.max(3, math.ceil(rec.startup_timeout_ms / 50)) } }
  if rec.ping then
    health.liveness = { lua = ping_probe(rec), interval_ms = rec.ping.interval_ms, timeout_ms = rec.ping.timeout_ms,
      failure_threshold = rec.ping.failure_threshold }
  end
  if spec.url then
    local service = { start = require("msrt.mcp_remote").start, name = spec.name, url = spec.url, rpc = rec.rpc,
      publish_as = rec.prefix, connect_timeout_ms = spec.connect_timeout_ms }
    return { id = spec.name, service = service, restart = spec.restart, shutdown = spec.shutdown,
      health = health, start = "ready" }
  end
  local process = { name = spec.name, cmd = spec.cmd, env = spec.env, inherit_env = spec.inherit_env, cwd = spec.cwd,
    codec = "jsonrpc", rpc = rec.rpc, publish_as = rec.prefix, limits = spec.limits, stop = spec.stop,
    capacity = spec.capacity, max_line_bytes = spec.max_line_bytes or 16 * 1024 * 1024,
    allow_publish = spec.allow_publish, deny_publish = spec.deny_publish }
  return { id = spec.name, process = process, restart = spec.restart, shutdown = spec.shutdown,
    health = health, start = "ready" }
end

--- What a server offered at its last handshake: {name, ready,
-- protocol_version, server_info, capabilities, instructions, tools (name
-- -> tool: {name, description, inputSchema, ...}), resources, prompts}; nil
-- for a name no server spec was made for.
function M.info(name)
  local rec = servers[name]
  if not rec then return nil end
  return { name = rec.name, ready = rec.ready or false, protocol_version = rec.protocol_version,
    server_info = rec.server_info, capabilities = rec.caps, instructions = rec.instructions,
    tools = rec.tools, resources = rec.resources, prompts = rec.prompts }
end

--- The names of the servers specs were made for, sorted.
function M.names()
  local n = {}
  for k in pairs(servers) do n[#n + 1] = k end
  table.sort(n)
  return n
end

--- Call a tool from a hub coroutine: msrt.request on
-- mcp.<server>.tool.<tool> with opts.timeout_ms (default 60000; the server
-- is told to cancel when it passes) and, when opts.progress is a
-- function, progress(p) for each progress notification ({progress, total,
-- message}), and with opts.token (one subject token) a call that
-- msrt.mcp.cancel(opts.token) can cancel. opts.sent(inbox), when given,
-- is called once the call is out with its reply subject, which
-- msrt.hub.abandon(inbox) gives up (the server is told at once).
-- @return the CallToolResult | nil, err (as for the tool's subject)
function M.call(server, tool, arguments, opts)
  args.check(type(server) == "string", 1, "mcp.call", "server name expected")
  args.check(type(tool) == "string", 2, "mcp.call", "tool name expected")
  opts = opts or {}
  local timeout = opts.timeout_ms or 60000
  local headers = { ["Call-Token"] = opts.token }
  local sid, hub_id
  if type(opts.progress) == "function" then
    local token, terr = core.token()
    if not token then return nil, terr end
    token = token:gsub("[^%w_%-]", "_")
    headers["Progress-Token"] = token
    sid, hub_id = hub.subscribe(("mcp.%s.progress.%s"):format(server, token), function(msg) opts.progress(msg.data) end, {})
  end
  local rec = servers[server]
  local prefix = rec and rec.tool_prefix or ("mcp." .. server .. ".tool")
  local r, err = hub.request(prefix .. "." .. tool, arguments, { headers = headers, timeout_ms = timeout }, opts.sent)
  if sid then hub.unsubscribe(sid, hub_id) end
  return r, err
end

--- Cancel the tool call made with header Call-Token `token` (msrt.mcp.call's
-- opts.token): the server is sent notifications/cancelled and the call's
-- requester gets nil, err (rpc_error, rpc_code -32800) at once. A token
-- no call holds (done already) is ignored.
function M.cancel(token, reason)
  args.check(type(token) == "string" and token:find("^[%w_%-]+$") ~= nil, 1, "mcp.cancel", "call token expected")
  return hub.publish("mcp.cancel." .. token, { reason = reason }, {})
end

--- Drop the record of server `name` (its subjects go; a running child
-- keeps running until its supervisor stops it). For tests.
function M.forget(name)
  local rec = servers[name]
  if not rec then return end
  unsubscribe_all(rec, "subs")
  unsubscribe_all(rec, "reads")
  unsubscribe_all(rec, "own")
  servers[name] = nil
end

return M
