--- Child processes on the hub (README "Processes"): specs, handles,
-- and the events src/proc reports (exit, bad output, stderr, states).
-- Internal: the public face is `msrt.process` (init.lua). Hub thread only.
-- The per-line work (framing, JSON, permissions, publishing) is in C.
-- @module msrt.process
local core = require "msrt.core"
local args = require "msrt.args"
local schema = require "msrt.schema"
local exits = require "msrt.exits"
local hub = require "msrt.hub"
local profile = require "msrt.profile"
local buffer = require "string.buffer"
local uv = require "luv"
local nkeys = require "table.nkeys" -- LuaJIT: the number of keys

local M = {}

--- Where stderr lines and reports go: set by init.lua to msrt.log.
M.log = function() end

local live = {} -- process id -> handle
local RPC = { jsonrpc = true, lsp = true }
local int, strings = schema.int, schema.either(schema.string, schema.table)

--- The fields of a process spec (msrt.process documents them), checked
-- by msrt.schema before the deeper rules below (a name's syntax, NUL
-- bytes, list-ness of the subject lists, signal names).
M.SPEC = {
  name = schema.string, cmd = schema.table, env = schema.table,
  inherit_env = schema.either(schema.boolean, schema.table), cwd = schema.string,
  codec = schema.enum{ "json_lines", "lines", "raw", "jsonrpc", "lsp" },
  subscribe = strings, queue = schema.string, publish_as = schema.string,
  allow_publish = strings, deny_publish = strings,
  limits = schema.table, stop = schema.table, -- their own fields below
  capacity = int(1, nil, "lines"), stdin_bytes = int(1, 2^53, "bytes"),
  overflow = schema.enum(core.overflow_names), -- core/overflow.h's names
  max_line_bytes = int(1, nil, "bytes"), eof_wait_ms = int(0, nil, "ms"),
  rpc = schema.string, consume = schema.string, max_ack_pending = int(1, nil),
}
--- spec.limits's fields (setrlimit's, per child).
M.LIMITS = { nofile = int(0, nil), as_bytes = int(0, nil, "bytes"), cpu_s = int(0, nil, "s"), nproc = int(0, nil) }
--- spec.stop's fields: the first signal and the grace before SIGKILL.
M.STOP = { signal = schema.string, grace_ms = schema.num(0, nil, "ms") }
--- The defaults of what a spec leaves out (stated once; the profile's
-- stdin_bytes and max_line_bytes apply to those).
M.DEFAULTS = { codec = "json_lines", capacity = 1024, overflow = "drop_newest",
  stop = { signal = "TERM", grace_ms = 5000 } }

local function bad(msg) return nil, core.error("invalid_arg", msg) end

local function list_of_strings(v, what)
  if v == nil then return {} end
  if type(v) == "string" then return { v } end
  if type(v) ~= "table" then return nil, what .. " must be a string or a list of strings" end
  local ok, why = schema.is_list(v, what) -- a map would pass as an empty list
  if not ok then return nil, why end
  for i, s in ipairs(v) do
    if type(s) ~= "string" then return nil, ("%s[%d] must be a string"):format(what, i) end
  end
  return v
end

-- The schema's checks: the spec's fields, then limits' and stop's.
local function check_fields(spec)
  local ok, why = schema.check(spec, M.SPEC, "process spec")
  if ok and spec.limits then ok, why = schema.check(spec.limits, M.LIMITS, "process spec: limits") end
  if ok and spec.stop then ok, why = schema.check(spec.stop, M.STOP, "process spec: stop") end
  if not ok then return bad(why) end
  return true
end

local function check_cmd(cmd)
  if cmd == nil or #cmd == 0 or not schema.is_list(cmd, "cmd") then
    return bad("cmd must be a list {\"program\", \"arg\", ...}")
  end
  local argv = {}
  for i, a in ipairs(cmd) do
    if type(a) ~= "string" and type(a) ~= "number" then return bad(("cmd[%d] must be a string"):format(i)) end
    if type(a) == "string" and a:find("%z") then return bad(("cmd[%d] holds a NUL byte"):format(i)) end
    argv[i] = tostring(a)
  end
  return argv
end

-- The child's whole environment: nothing unless listed.
local function build_env(spec)
  local vars = {}
  local inherit = spec.inherit_env
  if inherit == true then
    for k, v in pairs(uv.os_environ()) do vars[k] = v end
  elseif type(inherit) == "table" then
    for i, k in ipairs(inherit) do
      if type(k) ~= "string" then return bad(("inherit_env[%d] must be a variable name"):format(i)) end
      vars[k] = os.getenv(k)
    end
  end
  for k, v in pairs(spec.env or {}) do
    if type(k) ~= "string" or k == "" or k:find("[=%z]") then return bad(("env: bad variable name %q"):format(tostring(k))) end
    if type(v) ~= "string" and type(v) ~= "number" then return bad(("env.%s must be a string"):format(k)) end
    -- execve takes C strings: a NUL would cut the value short silently
    if type(v) == "string" and v:find("%z") then return bad(("env.%s holds a NUL byte"):format(k)) end
    vars[k] = tostring(v)
  end
  local env = {}
  for k, v in pairs(vars) do env[#env + 1] = k .. "=" .. v end
  table.sort(env)
  return env
end

local SIGNALS = { TERM = 15, KILL = 9, INT = 2, HUP = 1, QUIT = 3, USR1 = 10, USR2 = 12 }

-- The table lproc.c reads, from a user's spec.
local function compile(spec)
  local ok, err = check_fields(spec)
  if not ok then return nil, err end
  if type(spec.name) ~= "string" or not spec.name:find("^[%w_%-]+$") then
    return bad("process spec needs a name: one subject token (letters, digits, _ and -)")
  end
  local argv, aerr = check_cmd(spec.cmd)
  if not argv then return nil, aerr end
  local env, eerr = build_env(spec)
  if not env then return nil, eerr end
  if spec.cwd ~= nil and spec.cwd:find("%z") then return bad("cwd must be a string without NUL bytes") end
  if spec.rpc ~= nil and not RPC[spec.codec] then
    return bad("rpc (the method subjects' prefix) is a string, for codec jsonrpc or lsp")
  end
  local stop, dstop = spec.stop or {}, M.DEFAULTS.stop
  local sig, grace = stop.signal or dstop.signal, stop.grace_ms or dstop.grace_ms
  local signum = SIGNALS[sig:gsub("^SIG", "")]
  if not signum then return bad("stop.signal must be one of TERM, INT, HUP, QUIT, USR1, USR2, KILL") end
  local allow, al = list_of_strings(spec.allow_publish, "allow_publish")
  if not allow then return bad(al) end
  local deny, de = list_of_strings(spec.deny_publish, "deny_publish")
  if not deny then return bad(de) end
  local subs, se = list_of_strings(spec.subscribe, "subscribe")
  if not subs then return bad(se) end
  local prof = profile.current()
  local rpc, inbox
  if RPC[spec.codec] then
    -- method subjects "<rpc>.<method>"; the child's requests answered on
    -- "<inbox>.<n>", a random inbox as msrt.request's
    rpc = spec.rpc or (spec.name .. ".rpc")
    local token, terr = core.token()
    if not token then return nil, terr end
    inbox = "_INBOX.proc." .. token
    subs = { rpc .. ".>", unpack(subs) }
  end
  return {
    name = spec.name, argv = argv, env = env, cwd = spec.cwd,
    codec = spec.codec or M.DEFAULTS.codec,
    publish_as = spec.publish_as or ("agents." .. spec.name),
    allow = allow, deny = deny, limits = spec.limits,
    stop_signal = signum, grace_ms = grace,
    max_line = spec.max_line_bytes or prof.max_line_bytes or 16 * 1024 * 1024,
    capacity = spec.capacity or M.DEFAULTS.capacity, stdin_bytes = spec.stdin_bytes or prof.stdin_bytes,
    overflow = spec.overflow or M.DEFAULTS.overflow,
    eof_wait_ms = spec.eof_wait_ms, rpc = rpc, inbox = inbox,
  }, subs
end

local Handle = {}
Handle.__index = Handle

--- The child's pid (its process group id too); nil once it has exited.
function Handle:pid()
  if self.exit then return nil end
  return core.proc_pid(self.box)
end

--- Write data to the child's stdin: JSON lines get its JSON, lines the
-- string (or JSON) and a newline, raw the bytes; jsonrpc and lsp its JSON
-- as one message, framed (a line, or behind Content-Length), as it is. With the stdin queue
-- full, the overflow policy decides as for a publish: `block` makes the
-- calling coroutine wait for room (counted in stdin_blocked; outside a
-- coroutine it is refused), `error` returns mailbox_full (stdin_refused),
-- drop_newest returns mailbox_full and counts the drop (stdin_dropped),
-- drop_oldest drops the oldest queued line instead. Bounded as a
-- published message is: the encoded data by the profile's max_payload,
-- the line by max_line_bytes; a send over either is refused whole.
-- Data a message cannot carry (a function...) raises at the caller's
-- line, naming where it is (`data.handler: function`), as msrt.publish.
-- @return true | nil, err (closed after the exit, after close_stdin, or
--   when the child exits while the sender waits; mailbox_full; bad_input
--   when the data cannot be written as JSON; payload_too_big)
function Handle:send(data)
  local ok, enc = pcall(buffer.encode, data)
  if not ok then args.cannot_send(data, enc, 1, "send") end
  if self.exit then return nil, core.error("closed", "process " .. self.name .. " has exited") end
  if not coroutine.isyieldable() then return core.proc_send(self.box, enc) end
  local r, err
  local function send(wid)
    r, err = core.proc_send(self.box, enc, wid)
    return r == nil and err.blocked
  end
  repeat hub.await_wake(send) until r ~= nil or not err.blocked
  return r, err
end

--- The JSON-RPC id msrt gave the request it sent this jsonrpc/lsp child
-- with reply subject `reply`, while it is unanswered: what a cancellation
-- names (MCP's notifications/cancelled requestId). @return id | nil
function Handle:rpc_id(reply)
  args.check(type(reply) == "string", 1, "rpc_id", "reply subject expected")
  if self.exit then return nil end
  return core.proc_rpc_id(self.box, reply)
end

--- Send a signal ("TERM", "HUP", "USR1"...) to the child's process group.
-- @return true | nil, err (closed once it has exited)
function Handle:signal(name)
  args.check(type(name) == "string", 1, "signal", "signal name expected")
  if self.exit then return nil, core.error("closed", "process " .. self.name .. " has exited") end
  return core.proc_signal(self.box, name)
end

--- Stop the child: its stop signal to the whole group (stdin closed too),
-- SIGKILL after grace_ms (default the spec's stop.grace_ms). Idempotent.
function Handle:stop(grace_ms)
  args.check(grace_ms == nil or type(grace_ms) == "number" and grace_ms >= 0, 1, "stop", "grace_ms: ms >= 0 expected")
  if not self.exit then core.proc_stop(self.box, grace_ms) end
  return true
end

--- Close the child's stdin: it reads every line already sent or queued,
-- then EOF. Sends from now on are refused (closed). A stop or the
-- child's exit first closes it at once; lines left unwritten then are
-- counted in stdin_dropped.
function Handle:close_stdin()
  if not self.exit then core.proc_close_stdin(self.box) end
end

--- Router ids of the child's subscriptions (empty once it has exited):
-- readiness takes them out of their queue groups.
function Handle:subscriptions()
  if self.exit then return {} end
  return { unpack(self.subs) }
end

--- Lifecycle state: initializing, idle, busy (stdin backlog over half the
-- capacity), paused (its output held until a `block` mailbox or stdin it
-- publishes to has room), stopping, terminated or failed.
function Handle:state() return self.state_name end

--- Counters: lines_out, bad_output, refused (the child's publishes
-- refused), stderr_lines, stdin_lines (written), stdin_dropped (lines
-- dropped on overflow: drop_newest, drop_oldest; or left unwritten when
-- stdin closed under them: exit, stop), stdin_refused (copies
-- refused to their sender with mailbox_full: `error`, sends that found no
-- room, `block` publishes that could not wait), stdin_blocked (`block`
-- publishes that found stdin full and waited for room),
-- stdin_queued (lines queued or being written now); the last values after
-- the exit.
function Handle:stats()
  return self.exit and self.final_stats or core.proc_stats(self.box)
end

--- Wait (yielding the calling coroutine) for the exit; returns the exit
-- record at once when it has happened.
function Handle:wait() return exits.wait(self, "handle:wait()") end

--- Call fn(record) at the exit (for supervisors).
function Handle:on_exit(fn) exits.on_exit(self, fn) end

local function announce(subject, data)
  local ok, err = hub.publish(subject, data, {})
  if not ok and err and err.code ~= "no_responders" then
    core.report("process event", tostring(err))
  end
end

local function reason_of(rec)
  if rec.error then return "spawn failed: " .. rec.error end
  if rec.signal then return "signal " .. tostring(rec.signal) end
  if rec.code == 0 then return "normal" end
  return "exit " .. tostring(rec.code)
end

local events = {}

function events.state(h, state)
  h.state_name = state
  announce("msrt.process." .. h.name .. ".state", { name = h.name, state = state })
end

function events.stderr(h, line)
  M.log("info", ("[%s] %s"):format(h.name, line))
end

function events.bad_output(h, reason, detail, head, bytes)
  h.bad_count = h.bad_count + 1
  M.log("warn", ("process %s: bad output (%s): %s"):format(h.name, reason, detail))
  announce("msrt.process." .. h.name .. ".bad_output",
    { name = h.name, reason = reason, detail = detail, head = head, bytes = bytes, count = h.bad_count })
end

function events.bad_input(h, message, subject)
  M.log("warn", ("process %s: message on %s not written to stdin: %s"):format(h.name, subject, message))
end

function events.exit(h, rec)
  rec.name, rec.pid, rec.reason = h.name, h.pid_at_start, reason_of(rec)
  if rec.error then M.log("warn", ("process %s: cannot start: %s"):format(h.name, rec.error)) end
  h.final_stats = core.proc_stats(h.box)
  h.exit = rec
  live[h.id] = nil
  for _, sid in ipairs(h.subs) do core.unsubscribe(sid) end
  core.proc_release(h.box)
  announce("msrt.process." .. h.name .. ".exit", rec)
  exits.done(h, rec, "process")
end

local function on_event(kind, id, ...)
  local h = live[id]
  if h and events[kind] then events[kind](h, ...) end
end

--- Spawn a child process from a spec (see msrt.process).
-- @return handle | nil, err
function M.new(spec)
  local cspec, subs = compile(spec)
  if not cspec then return nil, subs end
  local ok, err = hub.start()
  if not ok then return nil, err end
  core.proc_set_events(on_event)
  local box, id, warning = core.proc_spawn(cspec)
  if warning then M.log("warn", warning) end
  if not box then return nil, id end
  local h = setmetatable(exits.init({ name = spec.name, id = id, box = box, subs = {},
    bad_count = 0, state_name = core.proc_state(box) }), Handle)
  h.pid_at_start = core.proc_pid(box)
  live[id] = h
  local patterns = { unpack(subs) }
  if cspec.inbox then patterns[#patterns + 1] = cspec.inbox .. ".>" end
  for i, pattern in ipairs(patterns) do
    local sid, serr = core.proc_subscribe(box, pattern, i <= #subs and spec.queue or nil)
    if not sid then
      core.proc_stop(box, 0)
      return nil, serr
    end
    h.subs[#h.subs + 1] = sid
  end
  if spec.consume then -- a durable queue's consumer (queue.lua consume_process)
    local stop, qerr = require("msrt.queue").consume_process(spec.consume,
      function(d) return h:send(d) end, cspec.publish_as .. ".out", spec.max_ack_pending)
    if not stop then
      core.proc_stop(box, 0)
      return nil, qerr
    end
    h:on_exit(stop) -- its unacked messages go to others at once
  end
  announce("msrt.process." .. h.name .. ".state", { name = h.name, state = h.state_name })
  return h
end

--- Live processes (for tests and metrics).
function M.count()
  return nkeys(live)
end

--- The handles of the live processes, in no order (for test drivers that
-- stop what a failed test left).
function M.live()
  local out = {}
  for _, h in pairs(live) do out[#out + 1] = h end
  return out
end

--- Stop every child at shutdown: stop signals, SIGKILL after the longest
-- grace (capped at the profile's shutdown_timeout_ms), exit events.
function M.stop_all()
  local prof = profile.current()
  core.proc_shutdown(prof.shutdown_timeout_ms or 5000)
end

--- JSON null as it reaches Lua from a child (a NULL lightuserdata, like
-- lua-cjson's cjson.null); send it to write a JSON null.
M.null = core.json_null

return M
