--- `msrt-lua mcp serve POLICY.lua`: the fleet as an MCP server over stdio
-- (README "MCP servers"), for agent CLIs that speak the Model Context
-- Protocol (https://modelcontextprotocol.io/specification/2025-06-18):
-- JSON-RPC 2.0 one message a line on stdin/stdout, the log on stderr.
-- The policy file (run sandboxed, lua/msrt/policy.lua) returns
--   { name = "fleet", version = "1", instructions = "...",
--     fleet = "tree.lua",           -- a supervision tree file started first
--     servers = { {name, cmd, ...} },-- msrt.mcp.server specs, supervised
--     tools = {                      -- the only tools offered
--       { name = "echo", subject = "svc.echo", description = "...",
--         input_schema = { type = "object", ... }, timeout_ms = 5000 },
--       { name = "fs_read", server = "fs", tool = "read_text_file" } } }
-- (paths relative to the policy file's directory). A subject tool's
-- `tools/call` is msrt.request(subject, arguments): a reply that is a
-- CallToolResult (a table with a `content` list) goes back as it is, any
-- other reply as a text content of its JSON (and as structuredContent
-- when it is a table); an error is an isError result with its message. A
-- server tool is that MCP child's tool (its description and inputSchema
-- as the child lists them now, progress passed through). Arguments are
-- checked against the tool's schema first. Hub thread only.
-- @module msrt.mcp_serve
local core = require "msrt.core"
local hub = require "msrt.hub"
local schema = require "msrt.schema"
local jsonschema = require "msrt.jsonschema"
local policy = require "msrt.policy"
local json = require "msrt.json"
local mcp = require "msrt.mcp"
local uv = require "luv"

local M = {}

--- Protocol versions a client may ask for; another gets the newest.
M.VERSIONS = { ["2025-06-18"] = true, ["2025-03-26"] = true, ["2024-11-05"] = true }
M.VERSION = "2025-06-18"
--- The longest line (bytes) read from the client; a longer one ends the session.
M.MAX_LINE = 16 * 1024 * 1024

local TOOL = {
  name = schema.string, subject = schema.string, description = schema.string, input_schema = schema.table,
  timeout_ms = schema.int(1, nil, "ms"), server = schema.string, tool = schema.string, title = schema.string,
}
local POLICY = {
  name = schema.string, version = schema.string, instructions = schema.string, fleet = schema.string,
  servers = schema.list(schema.table), tools = schema.list(schema.fields(TOOL)),
  -- --http only (lua/msrt/mcp_http.lua): sessions open at once, and how
  -- long one may stay idle
  max_sessions = schema.int(1), session_idle_ms = schema.int(1, nil, "ms"),
}

local function bad(path, msg) return nil, core.error("bad_config", path .. ":0: " .. msg, { file = path }) end

local function dir_of(path) return path:match("^(.*)/[^/]*$") or "." end
local function rel(base, p) return p:sub(1, 1) == "/" and p or base .. "/" .. p end

--- Load and check a serve policy file. @return policy | nil, err (bad_config...)
function M.load(path)
  local p, err = policy.load_file(path)
  if p == nil then return nil, err end
  if type(p) ~= "table" then return bad(path, "must return a table {tools = {...}}") end
  local ok, why = schema.check(p, POLICY, "mcp serve policy")
  if not ok then return bad(path, why) end
  local names = {}
  for i, sv in ipairs(p.servers or {}) do
    local ok2, serr = mcp.check(sv)
    if not ok2 then return bad(path, ("servers[%d]: %s"):format(i, serr.message)) end
    names[sv.name] = true
  end
  local seen = {}
  for i, t in ipairs(p.tools or {}) do
    local where = ("tools[%d]"):format(i)
    if type(t.name) ~= "string" or not t.name:find("^[%w_%-%.]+$") or #t.name > 128 then
      return bad(path, where .. ": name must be 1..128 of A-Z a-z 0-9 _ - .")
    end
    if seen[t.name] then return bad(path, where .. ": tool " .. t.name .. " listed twice") end
    seen[t.name] = true
    if (t.subject == nil) == (t.server == nil) then return bad(path, where .. ": needs one of subject or server") end
    if t.server and not t.tool then return bad(path, where .. ": a server tool needs tool (its name there)") end
    if t.server and not names[t.server] then return bad(path, where .. ": no server " .. t.server .. " in servers") end
  end
  p.dir = dir_of(path)
  return p
end

-- ---- the session ----------------------------------------------------------

--- How long a client's going away waits for the MCP children to exit
-- after their stdin closed (ms), before the host stops them.
M.GONE_GRACE_MS = 2000

local servers_sup -- the supervisor of the policy's servers (start_fleet)

local S = {}
S.__index = S

function S:send(msg)
  local text = json.encode(msg)
  if not text or self.closed then return end
  if self.out then return self.out:write(text .. "\n") end
  io.stdout:write(text, "\n") -- a file: written at once
  io.stdout:flush()
end

function S:result(id, r) self:send({ jsonrpc = "2.0", id = id, result = r }) end
function S:error(id, code, message) self:send({ jsonrpc = "2.0", id = id, error = { code = code, message = message } }) end

-- The tool's description and schema as offered now (a server tool's from
-- its child's latest listing; nil while that child is not ready).
function S:describe(t)
  if t.subject then
    return { name = t.name, title = t.title, description = t.description or ("msrt subject " .. t.subject),
      inputSchema = t.input_schema or { type = "object" } }
  end
  local info = mcp.info(t.server)
  local remote = info and info.ready and info.tools[t.tool]
  if not remote then return nil end
  return { name = t.name, title = t.title or remote.title, description = t.description or remote.description,
    inputSchema = t.input_schema or remote.inputSchema or { type = "object" }, outputSchema = remote.outputSchema,
    annotations = remote.annotations }
end

local function as_result(r)
  if type(r) == "table" and type(r.content) == "table" then return r end
  local text = type(r) == "string" and r or json.encode(r == nil and json.null or r) or tostring(r)
  return { content = { { type = "text", text = text } }, structuredContent = type(r) == "table" and r or nil }
end

local function error_result(err)
  if type(err.data) == "table" and err.data.isError then return err.data end -- the child's own
  return { content = { { type = "text", text = tostring(err.message or err) } }, isError = true }
end

function S:call(id, p)
  local t = type(p) == "table" and self.tools[p.name]
  if not t then return self:error(id, -32602, "Unknown tool: " .. tostring(type(p) == "table" and p.name)) end
  local d = self:describe(t)
  if not d then return self:result(id, error_result({ message = ("tool %s: server %s is not ready"):format(t.name, t.server) })) end
  local args = p.arguments
  if args == nil or args == json.null then args = {} end
  local ok, why = jsonschema.check(d.inputSchema, args, "arguments")
  if not ok then return self:error(id, -32602, ("tool %s: %s"):format(t.name, why)) end
  if self.cancelled[id] then return end -- before it started
  local r, err
  -- the request's reply subject, by which the client's cancellation
  -- abandons it (msrt.hub.abandon: the responder is told at once)
  local function sent(inbox) self.inflight[id] = inbox end
  if t.subject then
    r, err = hub.request(t.subject, args, { timeout_ms = t.timeout_ms or 60000 }, sent)
  else
    local token = type(p._meta) == "table" and p._meta.progressToken or nil
    local progress = token ~= nil and function(pr)
      self:send({ jsonrpc = "2.0", method = "notifications/progress",
        params = { progressToken = token, progress = pr.progress, total = pr.total, message = pr.message } })
    end or nil
    r, err = mcp.call(t.server, t.tool, args, { timeout_ms = t.timeout_ms or 60000, progress = progress, sent = sent })
  end
  self.inflight[id] = nil
  if self.cancelled[id] then return end -- MCP: a cancelled request gets no response
  -- a request's second value is the reply message when it succeeded
  if r == nil and core.is_error(err) then return self:result(id, error_result(err)) end
  self:result(id, as_result(r))
end

-- notifications/cancelled from the client: the tool's msrt request is
-- abandoned, so that an MCP tool behind it (a server tool, or a subject
-- tool whose subject is one) is cancelled at its child at once; the call
-- gets no response (MCP "Cancellation").
function S:cancel(p)
  local id = type(p) == "table" and p.requestId
  if id == nil or self.cancelled[id] then return end
  local inbox = self.inflight[id]
  if inbox == nil and not self.calls[id] then return end -- done, or never asked
  self.cancelled[id] = true
  if inbox then hub.abandon(inbox, type(p.reason) == "string" and p.reason or "cancelled by the MCP client") end
end

-- Every call in flight cancelled, as by the client's notifications/cancelled.
function S:cancel_all(why)
  for id in pairs(self.calls) do self:cancel({ requestId = id, reason = why }) end
end

function S:list()
  local out = {}
  for _, t in ipairs(self.order) do out[#out + 1] = self:describe(t) end
  return { tools = out }
end

function S:initialize(id, p)
  local want = type(p) == "table" and p.protocolVersion
  self:result(id, { protocolVersion = M.VERSIONS[want] and want or M.VERSION,
    capabilities = { tools = { listChanged = false } },
    serverInfo = { name = self.policy.name or "msrt", version = self.policy.version or "1" },
    instructions = self.policy.instructions })
end

local METHODS = {
  initialize = S.initialize,
  ping = function(self, id) self:result(id, {}) end,
  ["tools/list"] = function(self, id) self:result(id, self:list()) end,
  ["tools/call"] = S.call,
}

-- One message (not a batch element: batches are taken apart first).
function S:handle(m)
  if type(m) ~= "table" or m.jsonrpc ~= "2.0" then return self:error(json.null, -32600, "Invalid Request") end
  if m.method == nil then return end -- a response to nothing we asked
  local fn = METHODS[m.method]
  if m.id == nil then -- notifications: initialized, cancelled...
    if m.method == "notifications/cancelled" then self:cancel(m.params) end
    return
  end
  if not fn then return self:error(m.id, -32601, "Method not found: " .. tostring(m.method)) end
  self.calls[m.id] = true
  fn(self, m.id, m.params)
  self.calls[m.id], self.cancelled[m.id] = nil, nil
end

function S:line(text)
  if text:find("^%s*$") then return end
  local m, err = json.decode(text)
  if m == nil then return self:error(json.null, -32700, "Parse error: " .. tostring(err and err.message)) end
  local batch = type(m) == "table" and m[1] ~= nil and m.jsonrpc == nil
  for _, one in ipairs(batch and m or { m }) do
    -- each message in a coroutine of its own: a slow tool holds up no other
    self.pending = self.pending + 1
    require("msrt").after(0, function()
      local ok, err = pcall(self.handle, self, one)
      if not ok then core.log_line("ERROR mcp serve: " .. tostring(err)) end
      self.pending = self.pending - 1
      if self.eof and self.pending == 0 then self:finish() end
    end)
  end
end

-- Read fd 0 in chunks: a pipe or a terminal on the loop; a regular file
-- (which epoll cannot watch) through the blocking pool.
local function read_input(s, on_chunk)
  local kind = uv.guess_handle(0)
  if kind == "file" then
    local function next_chunk()
      uv.fs_read(0, 65536, -1, function(err, chunk)
        if chunk == "" then chunk = nil end
        on_chunk(err, chunk)
        if chunk and not err and not s.closed then next_chunk() end
      end)
    end
    return next_chunk()
  end
  s.inp = kind == "tty" and uv.new_tty(0, true) or uv.new_pipe(false)
  if kind ~= "tty" then s.inp:open(0) end
  s.inp:read_start(on_chunk)
end

function S:read()
  local buf = {}
  local held = 0
  read_input(self, function(err, chunk)
    if err or not chunk then
      self.eof = true
      -- a pipe or a terminal closed: the client went away, and what it
      -- asked is cancelled at once (a file's end is only the end of what
      -- it asked: that is answered, then the host ends)
      if self.inp and next(self.calls) then
        self.gone = true
        self:cancel_all("the MCP client closed its input")
      end
      if self.pending == 0 then self:finish() end
      return
    end
    local at = 1
    while true do
      local nl = chunk:find("\n", at, true)
      if not nl then break end
      buf[#buf + 1] = chunk:sub(at, nl - 1)
      local line = table.concat(buf)
      buf, held = {}, 0
      self:line(line)
      at = nl + 1
    end
    if at <= #chunk then
      buf[#buf + 1] = chunk:sub(at)
      held = held + #chunk - at + 1
      if held > M.MAX_LINE then
        core.log_line(("ERROR mcp serve: a line over %d bytes from the client"):format(M.MAX_LINE))
        return self:finish(1)
      end
    end
  end)
end

-- The MCP children of calls the client's going away cancelled hear it
-- before the host stops them: once the cancellations have been handed
-- on (a request through the hub inbox after them), each child's stdin is
-- closed once its lines are written, and the host waits for the children
-- to exit, at most M.GONE_GRACE_MS (MCP's stdio shutdown order: close
-- the server's input, wait, then SIGTERM).
local function let_children_hear(done)
  local msrt = require "msrt"
  local subject = "_mcp_serve.flush." .. assert(core.token()):gsub("[^%w]", "")
  local sub = msrt.subscribe(subject, function(m) msrt.publish(m.reply, true) end)
  msrt.request(subject, true, { timeout_ms = 1000 })
  if sub then sub.unsubscribe() end
  local left = 0
  for _, k in ipairs(servers_sup and servers_sup:which_children() or {}) do
    local h = k.handle
    if h and h.close_stdin then
      left = left + 1
      h:on_exit(function()
        left = left - 1
        if left == 0 then done() end
      end)
      h:close_stdin()
    end
  end
  if left == 0 then return done() end
  msrt.after(M.GONE_GRACE_MS, done)
end

function S:finish(status)
  if self.closed then return end
  self.closed = true
  if self.inp and not self.inp:is_closing() then self.inp:close() end
  local stopped = false
  local function stop()
    if stopped then return end
    stopped = true
    require("msrt").stop("normal", status or 0)
  end
  if self.gone then
    return require("msrt").after(0, function() let_children_hear(stop) end)
  end
  -- what is written goes out before the host stops (a write queued
  -- behind the shutdown could be cut)
  if self.out then return self.out:shutdown(stop) end
  stop()
end

-- ---- the command --------------------------------------------------------

local function start_fleet(p)
  local msrt = require "msrt"
  if p.fleet then
    local sup, err = msrt.supervisor(rel(p.dir, p.fleet))
    if not sup then return nil, err end
  end
  if p.servers and #p.servers > 0 then
    local children = {}
    for i, s in ipairs(p.servers) do
      local cs, err = mcp.server(s)
      if not cs then return nil, core.error("bad_config", ("servers[%d]: %s"):format(i, err.message)) end
      if cs.process and cs.process.cwd == nil then cs.process.cwd = p.dir end
      children[#children + 1] = cs
    end
    local sup, err = msrt.supervisor{ name = "mcp_servers", children = children, intensity = 10, period_ms = 60000 }
    if not sup then return nil, err end
    servers_sup = sup
  end
  return true
end

local function usage()
  io.stderr:write("usage: msrt-lua mcp serve POLICY.lua [--http ADDR]\n")
  os.exit(2)
end

--- A session with the client over policy p (a loaded policy): its
-- methods handle(msg) (one JSON-RPC message, from a hub coroutine that
-- may wait), cancel(params) and send(msg) (to the client: stdout here; a
-- transport may shadow it). For lua/msrt/mcp_http.lua.
function M.session(p)
  local s = setmetatable({ policy = p, tools = {}, order = {}, pending = 0, inflight = {}, cancelled = {}, calls = {} }, S)
  for _, t in ipairs(p.tools or {}) do
    s.tools[t.name] = t
    s.order[#s.order + 1] = t
  end
  return s
end

--- The command: main("serve", POLICY [, "--http", ADDR]) from `msrt-lua
-- mcp serve POLICY`: MCP on stdio, or with --http on MCP's streamable
-- HTTP transport at http://ADDR/mcp (lua/msrt/mcp_http.lua).
function M.main(cmd, path, ...)
  local n, opt, addr = select("#", ...), ...
  if cmd ~= "serve" or type(path) ~= "string" or not (n == 0 or (n == 2 and opt == "--http")) then usage() end
  local p, err = M.load(path)
  if not p then
    io.stderr:write("msrt-lua mcp serve: ", tostring(err.message or err), "\n")
    os.exit(1)
  end
  local ok, ferr = start_fleet(p)
  if not ok then
    io.stderr:write("msrt-lua mcp serve: ", tostring(ferr.message or ferr), "\n")
    require("msrt").stop("error", 1)
    return
  end
  if addr then
    local l, lerr = require("msrt.mcp_http").listen(addr, p)
    if not l then
      io.stderr:write("msrt-lua mcp serve: ", tostring(lerr.message or lerr), "\n")
      require("msrt").stop("error", 1)
    end
    return
  end
  local s = M.session(p)
  if uv.guess_handle(1) == "pipe" then
    s.out = uv.new_pipe(false)
    s.out:open(1)
  end
  s:read()
end

return M
