--- The code every actor state runs first (compiled once by the hub).
-- Called with `rt` (the C functions of src/lua/actor_rt.c bound to this
-- actor), the encoded spec and the actor id; returns the turn loop (run as
-- a coroutine: each resume gets the turn's budget, each yield says "idle"
-- or "waiting"), the exit-record encoder and the crash hook.
--
-- Only what every actor needs lives here: its module's loading, the turn
-- loop, ctx:publish, ctx:stop and the exit record. The rest of ctx
-- (reply, request, after, every, subscribe, log, ack, nak, in_progress,
-- term, a durable publish), waiting on the sys lane, the FFI path taken
-- at the first message (so what needs a message, as reply does, costs
-- nothing more to keep there) and the exit's answers to owed requests
-- are lua/msrt/actor_ctx.lua, loaded (rt.more, which also adds the rt
-- functions only it calls) the first time one of them is needed: each
-- line of bytecode here is memory in every idle actor
-- (docs/performance.md, RSS per idle actor).
local rt, spec_s, id = ...
-- string.buffer's encode and decode: dropped at the end of the first turn
-- (its module and method tables are ~1.9 KB an idle actor need not keep:
-- docs/performance.md, RSS per idle actor) and required again by the
-- first decode or encode after it (need_buffer). So an actor's own
-- require "string.buffer" after its first turn gets a fresh module table
-- (the same functions), not the one its init saw.
local encode, decode
local function need_buffer()
  local buffer = require "string.buffer"
  encode, decode = buffer.encode, buffer.decode
end
need_buffer()
local closed = rt.closed
local yield, byte = coroutine.yield, string.byte
-- envelope flags (a uint8): CONTROL is the top bit, BUFFER the lowest
-- (tested arithmetically: the bit library is opened lazily, and idle
-- actors should not need it)
local CONTROL, BUFFER = 0x80, 0x01

local spec = decode(spec_s)
local M            -- the actor's module table
local stop_reason  -- set by ctx:stop or a _STOP control message
local more         -- actor_ctx.lua's table, once loaded
-- Reply subjects of requests this actor handled and has not answered (nor
-- forwarded as a publish's reply): at its exit each gets NATS' 503
-- no-responders status, so that the requester fails at once instead of at
-- its timeout (as a gen_server:call fails when the callee dies). At most
-- OWED_MAX are kept; a request past them waits for its timeout.
local owed, nowed, OWED_MAX = {}, 0, 1024

local err = rt.error -- (code, message, fields) -> an error object

local ctx = { name = spec.name, id = id, args = spec.args }

-- pop() -> nil | flags, subject, reply, data, id, priority (data decoded
-- when the payload is a string.buffer encoding, else the raw text).
-- publish(subject, data, reply, priority) -> delivered | nil, err
--   (err.blocked: held for room in full `block` mailboxes; wait_blocked).
-- These use the C API until the first message is handled, then go_fast()
-- swaps in the FFI versions: idle actors never load ffi (16 KB a state).
local c_pop, c_publish = rt.pop, rt.publish

local load_more -- below: actor_ctx.lua's table, loaded on first call

local function pop()
  local flags, subject, reply, payload, mid, prio, hdr = c_pop()
  if not flags then return nil end
  if flags % 2 == BUFFER then
    if not decode then need_buffer() end
    local ok, v = pcall(decode, payload)
    if not ok then -- cdata needs the ffi library loaded to decode
      require "ffi"
      ok, v = pcall(decode, payload)
    end
    if not ok then -- a per-message error, not a crash (actor_ctx.lua's undecodable)
      load_more().undecodable(subject, v)
      return pop()
    end
    payload = v
  end
  return flags, subject, reply, payload, mid, prio, hdr
end

local function publish(subject, data, reply, prio, hdr, ttl)
  if not encode then need_buffer() end
  return c_publish(subject, encode(data), reply, prio, hdr, ttl)
end

local function control(subject, payload)
  if subject == "_TIMER" then
    -- (a timer or a request's alarm: only actor_ctx.lua asks for them)
    if more then more.timer_fired(tonumber(payload)) end
  elseif subject == "_STOP" then
    stop_reason = stop_reason or payload
  end -- _START and stale _ROOM need nothing
end

local send -- below

-- Options absent: one empty table, read and never written, for every
-- call (a table made per publish or request was garbage the GC collected
-- in steps, each a slow request: docs/performance.md). Unlike the hub's
-- (lua/msrt/init.lua) it has no guard against writes: a metatable and its
-- function would be bytes in every idle actor.
local NO_OPTS = {}
local function check_opts(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #3 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  return opts or NO_OPTS
end

-- The rest of ctx, built on first use: until actor_ctx.lua is loaded,
-- reading ctx.request (after, every...) finds no field and ctx's
-- metatable loads it, which puts the real functions in ctx where the
-- actor has not put its own, drops the metatable and returns the real
-- one (so a field read and kept in a local before works as well). A
-- metatable and one closure cost an idle actor less than a stub per name.
local LAZY = " reply request after every subscribe unsubscribe log ack nak in_progress term "
function load_more()
  if not more then
    more = rt.more(rt)({
      rt = rt, ctx = ctx, err = err, send = send, control = control,
      check_opts = check_opts,
      pop = pop, publish = publish, stopping = function() return stop_reason end,
    })
    setmetatable(ctx, nil)
    for name, fn in pairs(more.ctx) do
      if rawget(ctx, name) == nil then ctx[name] = fn end
    end
  end
  return more
end
setmetatable(ctx, { __index = function(_, name)
  if type(name) == "string" and LAZY:find(" " .. name .. " ", 1, true) then
    return load_more().ctx[name]
  end
end })

local msg_of -- actor_ctx.lua's: (subject, reply, data, id, priority, headers) -> msg

-- The FFI path (actor_ctx.lua's fast): pop, publish and closed replaced,
-- and the maker of the handler's msg.
local function go_fast()
  pop, publish, closed, msg_of = load_more().fast()
end

-- ttl: a request's timeout, how long its inbox stays valid to a process
-- it is handed to (NATS allow_responses' expiry).
-- (A bad argument is named by actor_ctx.lua's bad_send, through a tail
-- call, so its error still points at the caller of ctx's function: the
-- messages are bytes every idle actor would otherwise carry.)
function send(subject, data, reply, prio, fname, headers, ttl)
  if type(subject) ~= "string" or (reply ~= nil and type(reply) ~= "string") or (prio ~= nil
      and not (type(prio) == "number" and prio >= 1 and prio <= 10 and prio % 1 == 0)) then -- NaN fails
    return load_more().bad_send(subject, reply, prio, fname)
  end
  local hdr
  if headers ~= nil then
    local herr
    hdr, herr = require("msrt.headers").encode(headers)
    if herr then return nil, err("invalid_arg", herr) end
  end
  local ok, r, e = pcall(publish, subject, data, reply, prio, hdr, ttl)
  if not ok then return load_more().bad_data(r, data, fname) end
  -- held for room in a full `block` mailbox: wait for it (its own
  -- function, so send's hot path has no loop the JIT cannot compile)
  if r == nil and e.blocked then r, e = load_more().wait_blocked() end
  if r == nil then return nil, e end
  if nowed > 0 then -- an answer, or a request passed on with its reply subject
    if owed[subject] then owed[subject], nowed = nil, nowed - 1 end
    if reply and owed[reply] then owed[reply], nowed = nil, nowed - 1 end
  end
  return r
end

-- (Its own function: a closure inside ctx:publish, even on a branch never
-- taken, made every publish 3x slower: LuaJIT stops compiling the caller.)
local function publish_durable(_, subject, data, opts)
  return load_more().publish_durable(subject, data, opts)
end

--- Publish data on subject. opts: priority (1..10), reply (subject),
-- headers (name = value strings, see msrt.publish), durable (wait for the
-- capturing durable queue's commit, as msrt.publish{durable = true}:
-- returns its PubAck {queue, seq, duplicate}).
-- @return true (the PubAck when durable) | nil, err
function ctx:publish(subject, data, opts)
  opts = check_opts(opts, "publish")
  if opts.durable then return publish_durable(self, subject, data, opts) end
  local r, e = send(subject, data, opts.reply, opts.priority, "publish", opts.headers)
  if r == nil then return nil, e end
  return true
end

--- Stop this actor after the current message; terminate(ctx, reason) runs.
function ctx:stop(reason)
  stop_reason = stop_reason or reason or "normal"
  rt.stop(stop_reason)
end

local function load_module()
  if spec.code then
    local chunk = assert(loadstring(spec.code))
    M = chunk(spec.module)
    if spec.module then package.loaded[spec.module] = M end
  else
    M = {}
  end
  if type(M) ~= "table" then
    error(("actor module %s returned %s, not a table"):format(spec.module or "", type(M)), 0)
  end
  local env
  for k, bc in pairs(spec.fns or {}) do
    M[k] = assert(loadstring(bc))
    if spec.sandboxed and spec.sandboxed[k] then
      -- a tree file's inline function: the policy library (msrt.sandbox),
      -- not this state's io, os, require, load*, debug, jit or ffi
      env = env or require("msrt.sandbox")(os.getenv)
      setfenv(M[k], env)
    end
  end
  if type(M.handle) ~= "function" then
    error(("actor %s: its module has no handle(ctx, msg) function"):format(spec.name), 0)
  end
end

local function loop(budget)
  load_module()
  load_module = nil -- run once: its code is garbage now (src/lua/actor.c collects after the first turn)
  if M.init then M.init(ctx, spec.args) end
  if spec.notify_started then rt.started() end -- a supervisor waits for it
  spec = { name = spec.name } -- the module's code and args are not needed again
  local handle = M.handle
  local slow = true -- go_fast() with the first message handled
  local first = true
  while true do
    local n = 0
    while n < budget and not stop_reason do
      local flags, subject, reply, payload, mid, prio, hdr = pop()
      if not flags then break end
      n = n + 1
      if flags >= CONTROL then
        control(subject, payload)
        if more then more.run_timers() end
      elseif byte(subject) ~= 95 or subject:sub(1, 7) ~= "_INBOX." then -- 95: '_'
        if slow then go_fast() slow = false end
        if reply and nowed < OWED_MAX and not owed[reply] then owed[reply], nowed = true, nowed + 1 end
        handle(ctx, msg_of(subject, reply, payload, mid, prio, hdr))
      end -- else: a reply that came after its request timed out
    end
    if stop_reason or closed() then
      -- The last turn: take a _STOP that may be queued, then terminate.
      while not stop_reason do
        local flags, subject, _, payload = pop()
        if not flags then break end
        if flags >= CONTROL then control(subject, payload) end
      end
      local reason = stop_reason or "shutdown"
      if M.terminate then M.terminate(ctx, reason) end
      return reason
    end
    if first then -- the first turn's end: string.buffer goes (need_buffer)
      encode, decode, package.loaded["string.buffer"], first = nil, nil, nil, nil
    end
    budget = yield("idle")
  end
end

-- Called once at the exit, crash or not, with the state still whole.
-- Every request handled and not answered, and every one still queued,
-- gets NATS' 503 (actor_ctx.lua's answer_owed, loaded only when there is
-- one: most actors owe nothing when they end).
local function exit_record(reason, normal)
  local ok, flags, _, reply = pcall(pop)
  if nowed > 0 or (ok and flags) then
    local got, m = pcall(load_more)
    if got then m.answer_owed(owed, normal, ok and flags, reply, pop, publish) end
  end
  if not encode then need_buffer() end
  return encode({ id = id, name = spec.name, reason = reason, normal = normal })
end

-- After a crash in init/handle: terminate(ctx, reason) as OTP's gen_server
-- does, protected (its own error is appended to the reason).
local function on_crash(reason)
  if M and M.terminate then
    local ok, e = pcall(M.terminate, ctx, reason)
    if not ok then return reason .. "\n(terminate also failed: " .. tostring(e) .. ")" end
  end
  return reason
end

return loop, exit_record, on_crash
