--- The code every actor state runs first (compiled once by the hub).
-- Called with `rt` (the C functions of src/lua/actor.c bound to this
-- actor), the encoded spec and the actor id; returns the turn loop (run as
-- a coroutine: each resume gets the turn's budget, each yield says "idle"
-- or "waiting"), the exit-record encoder and the crash hook.
local rt, spec_s, id = ...
local buffer = require "string.buffer"
local encode, decode = buffer.encode, buffer.decode
local closed, set_waiting = rt.closed, rt.set_waiting
local yield, byte = coroutine.yield, string.byte
-- envelope flags (a uint8): CONTROL is the top bit, BUFFER the lowest
-- (tested arithmetically: the bit library is opened lazily, and idle
-- actors should not need it)
local CONTROL, BUFFER, PUBACK = 0x80, 0x01, 0x04

local spec = decode(spec_s)
local M            -- the actor's module table
local stop_reason  -- set by ctx:stop or a _STOP control message
local timers, next_timer = {}, 0
local stash = {}   -- timer ids that fired while the actor waited
-- A request's deadline is watched by an alarm of the hub (rt.timer), but
-- not one per request: a request asks for one only when no alarm
-- outstanding is due at or before its deadline, and never cancels it;
-- when one fires before the deadline of the request waiting then, the
-- next is asked for the rest. So a stream of requests costs the hub one
-- alarm per timeout instead of two messages per request, and a timeout
-- still never ends early (the deadline is read from the CLOCK_MONOTONIC
-- the alarms count on, src/lua/actor_rt.c).
local alarms = {}  -- outstanding request alarm id -> its due time (ms, now_ms)
local alarm_due    -- the earliest of them

-- Request alarm tid fired: it is outstanding no more.
local function alarm_fired(tid)
  alarms[tid] = nil
  alarm_due = nil
  for _, due in pairs(alarms) do
    if not alarm_due or due < alarm_due then alarm_due = due end
  end
end
-- Reply subjects of requests this actor handled and has not answered (nor
-- forwarded as a publish's reply): at its exit each gets NATS' 503
-- no-responders status, so that the requester fails at once instead of at
-- its timeout (as a gen_server:call fails when the callee dies). At most
-- OWED_MAX are kept; a request past them waits for its timeout.
local owed, nowed, OWED_MAX = {}, 0, 1024

local function err(code, message, fields) return rt.error(code, message, fields) end

local ctx = { name = spec.name, id = id, args = spec.args }

-- pop() -> nil | flags, subject, reply, data, id, priority (data decoded
-- when the payload is a string.buffer encoding, else the raw text).
-- publish(subject, data, reply, priority) -> delivered | nil, err
--   (err.blocked: held for room in full `block` mailboxes; wait_blocked).
-- These use the C API until the first message is handled, then go_fast()
-- swaps in the FFI versions: idle actors never load ffi (16 KB a state).
local c_pop, c_publish = rt.pop, rt.publish
local now_ms = rt.now_ms -- monotonic ms (fractional)

-- A copy this actor cannot decode (a duplicate table key, memory) is a
-- per-message error, not a crash: counted drop_other and announced on
-- msrt.dropped.<subject> (rt.undecodable); the actor takes the next one.
local function undecodable(subject, why)
  rt.undecodable(subject, (tostring(why):gsub("^.-:%d+: ", "")))
end

local function pop()
  local flags, subject, reply, payload, mid, prio, hdr = c_pop()
  if not flags then return nil end
  if flags % 2 == BUFFER then
    local ok, v = pcall(decode, payload)
    if not ok then -- cdata needs the ffi library loaded to decode
      require "ffi"
      ok, v = pcall(decode, payload)
    end
    if not ok then
      undecodable(subject, v)
      return pop()
    end
    payload = v
  end
  return flags, subject, reply, payload, mid, prio, hdr
end

local function publish(subject, data, reply, prio, hdr, ttl)
  return c_publish(subject, encode(data), reply, prio, hdr, ttl)
end

-- This actor's side of a request (lua/msrt/request.lua): its reply
-- subjects are under its own random inbox prefix, and the reply comes to
-- its sys lane, which it waits on (yielding: its worker runs others).
local asker = { error = err }

local function c_inbox()
  local prefix, perr = rt.inbox()
  local token, terr = rt.token()
  if not prefix or not token then return nil, perr or terr end
  return prefix .. "." .. token
end
asker.inbox = c_inbox -- go_fast() swaps in the FFI version
-- (the actor is stopping: its notice must not wait for room)
asker.abandon = function(subject) pcall(publish, subject, nil) end

local function go_fast()
  rt.jit_on()
  local ffi = require "ffi"
  -- msrt_envelope must match src/core/envelope.h (actor.c asserts offsets)
  ffi.cdef [[
typedef struct msrt_envelope {
  uint32_t refs; uint8_t priority, flags;
  uint32_t subject_len, reply_len, headers_len, payload_len;
  uint64_t id, trace_id, ts_ns;
  const char *subject, *reply, *headers; const uint8_t *payload;
} msrt_envelope;
msrt_envelope *msrt_lactor_ffi_pop(void *la);
void msrt_lactor_ffi_unref(msrt_envelope *e);
long msrt_lactor_ffi_publish(void *la, const char *s, size_t slen,
  const char *r, size_t rlen, const void *p, size_t plen, int prio,
  const char *h, size_t hlen, double ttl_ms);
long msrt_lactor_ffi_inbox(void *la, char *out);
int msrt_lactor_ffi_closed(void *la);
void msrt_lactor_ffi_set_waiting(void *la, int on);
double msrt_lactor_ffi_now_ms(void);
]]
  -- a cdata pointer: the JIT cannot pass a lightuserdata as void *
  local C, me, str = ffi.C, ffi.cast("void *", rt.self()), ffi.string
  local rbuf, wbuf, last_error = buffer.new(), buffer.new(), rt.last_error
  now_ms = C.msrt_lactor_ffi_now_ms
  closed = function() return C.msrt_lactor_ffi_closed(me) ~= 0 end
  set_waiting = function(on) C.msrt_lactor_ffi_set_waiting(me, on and 1 or 0) end
  local ibuf = ffi.new("char[64]")
  asker.inbox = function()
    local n = tonumber(C.msrt_lactor_ffi_inbox(me, ibuf))
    if n < 0 then return c_inbox() end -- it says why
    return str(ibuf, n)
  end
  pop = function()
    local e = C.msrt_lactor_ffi_pop(me)
    if e == nil then return nil end
    local flags, ok, data = e.flags, true
    if flags % 2 == BUFFER then
      ok, data = pcall(rbuf.decode, rbuf:set(e.payload, e.payload_len))
    else
      data = str(e.payload, e.payload_len)
    end
    if not ok then
      undecodable(str(e.subject, e.subject_len), data)
      C.msrt_lactor_ffi_unref(e)
      return pop()
    end
    local reply = e.reply ~= nil and str(e.reply, e.reply_len) or nil
    local subject, mid, prio = str(e.subject, e.subject_len), tonumber(e.id), e.priority
    local hdr = e.headers_len > 0 and str(e.headers, e.headers_len) or nil
    C.msrt_lactor_ffi_unref(e)
    return flags, subject, reply, data, mid, prio, hdr
  end
  publish = function(subject, data, reply, prio, hdr, ttl)
    local p, n = wbuf:reset():encode(data):ref()
    local r = tonumber(C.msrt_lactor_ffi_publish(me, subject, #subject, reply,
      reply and #reply or 0, p, n, prio or 5, hdr, hdr and #hdr or 0, ttl or 0))
    if r >= 0 then return r end
    return last_error()
  end
end

local function control(subject, payload)
  if subject == "_TIMER" then
    local tid = tonumber(payload)
    if alarms[tid] then alarm_fired(tid) -- no request waits for it now
    elseif timers[tid] then stash[#stash + 1] = tid end
  elseif subject == "_STOP" then
    stop_reason = stop_reason or payload
  end -- _START and stale _ROOM need nothing
end

-- Wait (yielding "waiting": only the sys lane is served) until want(a, b,
-- is_control, subject, payload, ...) returns a result; other control
-- messages are kept. (a, b: what want needs, passed rather than captured:
-- a closure made per wait would stop LuaJIT compiling the request path.)
local function wait_sys(want, a0, b0)
  set_waiting(true)
  while true do
    local flags, subject, reply, payload, mid, prio, hdr = pop()
    if not flags then
      yield("waiting")
    else
      local is_control = flags >= CONTROL
      local a, b = want(a0, b0, is_control, subject, payload, flags, reply, mid, prio, hdr)
      if a ~= nil or b ~= nil then
        set_waiting(false)
        return a, b
      end
      if is_control then control(subject, payload) end
      if stop_reason then
        set_waiting(false)
        return nil, err("closed", "the actor is stopping (" .. stop_reason .. ")")
      end
    end
  end
end

local function is_room(_, _, is_control, s) if is_control and s == "_ROOM" then return true end end

-- A publish blocked on full `block` mailboxes: wait for room, retry. (Kept
-- out of send so that send's hot path has no loop the JIT cannot compile.)
local function wait_blocked()
  local r, e
  repeat
    if rt.wait_room() then wait_sys(is_room) end
    r, e = rt.retry()
  until r ~= nil or not e.blocked
  return r, e
end

-- Publish, waiting for room when a `block` mailbox is full.
-- msg.headers from the wire form (msrt.headers), loaded on first use.
local function headers_of(hdr)
  if hdr == nil then return nil end
  return require("msrt.headers").decode(hdr)
end

-- ttl: a request's timeout, how long its inbox stays valid to a process
-- it is handed to (NATS allow_responses' expiry).
local function send(subject, data, reply, prio, fname, headers, ttl)
  if type(subject) ~= "string" then
    error(("bad argument #1 to '%s' (subject string expected, got %s)"):format(fname, type(subject)), 3)
  end
  if prio ~= nil then
    if type(prio) ~= "number" then
      error(("bad argument #3 to '%s' (priority must be a number 1..10)"):format(fname), 3)
    end
    if not (prio >= 1 and prio <= 10 and prio % 1 == 0) then -- NaN fails every test
      return nil, err("invalid_arg", ("priority must be an integer 1..10 (got %s)"):format(tostring(prio)))
    end
  end
  if reply ~= nil and type(reply) ~= "string" then
    error(("bad argument #3 to '%s' (reply must be a subject string)"):format(fname), 3)
  end
  local hdr
  if headers ~= nil then
    local herr
    hdr, herr = require("msrt.headers").encode(headers)
    if herr then return nil, err("invalid_arg", herr) end
  end
  local ok, r, e = pcall(publish, subject, data, reply, prio, hdr, ttl)
  if not ok then -- data a message cannot carry: named, at the caller's line
    local where = require("msrt.args").unsendable(data, "data")
    if not where then error(r, 0) end
    error(("bad argument #2 to '%s' (%s cannot be sent: a message carries nil, booleans, numbers, strings, msrt.null and tables of them)")
      :format(fname, where), 3)
  end
  if r == nil and e.blocked then r, e = wait_blocked() end
  if r == nil then return nil, e end
  if nowed > 0 then -- an answer, or a request passed on with its reply subject
    if owed[subject] then owed[subject], nowed = nil, nowed - 1 end
    if reply and owed[reply] then owed[reply], nowed = nil, nowed - 1 end
  end
  return r
end

local function check_opts(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #3 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  return opts or {}
end

local durable_request -- below, with the requests

-- (Its own function: a closure inside ctx:publish, even on a branch never
-- taken, made every publish 3x slower: LuaJIT stops compiling the caller.)
local function publish_durable(_, subject, data, opts)
  -- waits for the queue's PubAck, as msrt.publish{durable = true} does
  return require("msrt.puback").publish(durable_request, err, subject, data, opts)
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

--- Reply to a message that carries a reply subject.
function ctx:reply(msg, data)
  if type(msg) ~= "table" or not msg.reply then
    return nil, err("invalid_arg", "the message has no reply subject")
  end
  return self:publish(msg.reply, data)
end

-- A durable queue's message (the actor's spec has `consume`): its
-- delivery is answered on its reply subject (queue.lua).
local function queue_op(msg, fname, op)
  if type(msg) ~= "table" or not (msg.headers and msg.headers["Msrt-Queue"] and msg.reply) then
    error(("bad argument #1 to '%s' (a message of a durable queue expected)"):format(fname), 3)
  end
  op.seq = tonumber(msg.headers["Msrt-Seq"])
  local r, e = send(msg.reply, op, nil, nil, fname)
  if r == nil then return nil, e end
  return true
end

--- Acknowledge a durable queue's message (spec `consume`): done, it
-- leaves the queue. Like JetStream's ack, it is a message to the queue:
-- one that is no longer this actor's (redelivered after its ack wait) is
-- ignored there. @return true | nil, err
function ctx:ack(msg) return queue_op(msg, "ack", { op = "ack" }) end
--- Redeliver it, after delay_ms (default 0).
function ctx:nak(msg, delay_ms) return queue_op(msg, "nak", { op = "nak", delay_ms = delay_ms }) end
--- Still working on it: its ack wait starts again.
function ctx:in_progress(msg) return queue_op(msg, "in_progress", { op = "in_progress" }) end
--- Never redeliver it: to the queue's dead letter with reason.
function ctx:term(msg, reason) return queue_op(msg, "term", { op = "term", reason = reason }) end


function asker.send(subject, data, inbox, opts, timeout)
  return send(subject, data, inbox, opts.priority, "request", opts.headers, timeout)
end

-- Ask for a request alarm due at deadline unless one outstanding is
-- due no later (see `alarms` above).
local function arm(deadline)
  if alarm_due and alarm_due <= deadline then return end
  next_timer = next_timer + 1
  alarms[next_timer] = deadline
  alarm_due = deadline
  rt.timer(next_timer, math.max(deadline - now_ms(), 0), 0) -- (< 0 would cancel)
end

-- The reply to the request on inbox, or false at its deadline.
local function want_reply(inbox, deadline, is_control, s, payload, flags, reply, mid, prio, hdr)
  if is_control then
    local tid = s == "_TIMER" and tonumber(payload)
    if tid and alarms[tid] then
      alarm_fired(tid)
      if now_ms() >= deadline then return false, false end
      arm(deadline) -- fired for an earlier request's deadline
    end
  elseif s == inbox then
    return true, { subject = s, reply = reply, data = payload, id = mid, priority = prio, headers = headers_of(hdr) }
  end -- a late reply to an earlier request: dropped
end

-- A durable publish's PubAck on inbox: only a message flagged PUBACK,
-- which only the hub's queue.lua can make (core/envelope.h); any other
-- answer on it (a subscriber of the published subject answering its
-- reply) is dropped, as a late reply is.
local function want_puback(inbox, deadline, is_control, s, payload, flags, reply, mid, prio, hdr)
  if not is_control and s == inbox and flags % (2 * PUBACK) < PUBACK then return nil end
  return want_reply(inbox, deadline, is_control, s, payload, flags, reply, mid, prio, hdr)
end

function asker.wait(inbox, timeout)
  local deadline = now_ms() + timeout
  arm(deadline)
  return wait_sys(want_reply, inbox, deadline)
end

-- The asker of a durable publish (puback.lua): a request whose answer
-- must be the queue's PubAck.
local durable_asker = setmetatable({
  wait = function(inbox, timeout)
    local deadline = now_ms() + timeout
    arm(deadline)
    return wait_sys(want_puback, inbox, deadline)
  end,
}, { __index = asker })

local request_mod -- lua/msrt/request.lua

--- Request: publish with an unguessable _INBOX reply subject (this actor's
-- random prefix and a random token per request, 132 bits each: no other
-- party can answer in the responder's place) and wait (yielding
-- this actor; its worker runs others) for the reply or opts.timeout_ms
-- (default 5000, lua/msrt/request.lua's TIMEOUT_MS).
-- @return data, msg | nil, err (no_responders, timeout, closed, rpc_error)
function ctx:request(subject, data, opts)
  opts = check_opts(opts, "request")
  if not coroutine.isyieldable() then -- a yield would fail with the request made
    error("ctx:request cannot wait here: it is called inside a C function's callback (table.sort's "
      .. "comparator, a gsub callback...), which the actor cannot yield across", 2)
  end
  if stop_reason or closed() then return nil, err("closed", "the actor is stopping") end
  -- loaded at the first request: an actor that never asks never loads it
  request_mod = request_mod or require("msrt.request")
  return request_mod.request(asker, subject, data, opts)
end

function durable_request(subject, data, opts)
  if not coroutine.isyieldable() then
    error("ctx:publish{durable = true} cannot wait here: it is called inside a C function's callback", 3)
  end
  if stop_reason or closed() then return nil, err("closed", "the actor is stopping") end
  request_mod = request_mod or require("msrt.request")
  return request_mod.request(durable_asker, subject, data, opts)
end

local function timer(ms, repeat_ms, fn, fname)
  if type(ms) ~= "number" or ms < 0 then error(("bad argument #1 to '%s' (non-negative ms expected)"):format(fname), 3) end
  if type(fn) ~= "function" then error(("bad argument #2 to '%s' (function expected)"):format(fname), 3) end
  next_timer = next_timer + 1
  local tid = next_timer
  timers[tid] = { fn = fn, every = repeat_ms > 0 }
  rt.timer(tid, ms, repeat_ms)
  return { stop = function() if timers[tid] then timers[tid] = nil rt.timer(tid, -1) end end }
end

--- Run fn(ctx) once after ms, as a message to this actor.
function ctx:after(ms, fn) return timer(ms, 0, fn, "after") end
--- Run fn(ctx) every ms, as messages to this actor.
function ctx:every(ms, fn) return timer(ms, ms, fn, "every") end

--- Subscribe this actor to more subjects. opts: queue.
function ctx:subscribe(pattern, opts)
  opts = check_opts(opts, "subscribe")
  local sid, serr = rt.subscribe(pattern, opts.queue)
  if not sid then return nil, serr end
  return sid
end

local LEVELS = { debug = "DEBUG", info = "INFO", warn = "WARN", error = "ERROR" }
--- Log a line on stderr with the actor's name and id.
function ctx:log(level, ...)
  local tag = LEVELS[level]
  if not tag then error("bad argument #1 to 'log' (debug, info, warn or error expected)", 2) end
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  rt.log(tag, table.concat(parts, " "))
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

local function run_timers()
  while #stash > 0 do
    local tid = table.remove(stash, 1)
    local t = timers[tid]
    if t then
      if not t.every then timers[tid] = nil end
      t.fn(ctx)
    end
  end
end

local function loop(budget)
  load_module()
  if M.init then M.init(ctx, spec.args) end
  if spec.notify_started then rt.started() end -- a supervisor waits for it
  local handle = M.handle
  local slow = true -- go_fast() with the first message handled
  while true do
    local n = 0
    while n < budget and not stop_reason do
      local flags, subject, reply, payload, mid, prio, hdr = pop()
      if not flags then break end
      n = n + 1
      if flags >= CONTROL then
        control(subject, payload)
        run_timers()
      elseif byte(subject) ~= 95 or subject:sub(1, 7) ~= "_INBOX." then -- 95: '_'
        if slow then go_fast() slow = false end
        if reply and nowed < OWED_MAX and not owed[reply] then owed[reply], nowed = true, nowed + 1 end
        local h = hdr and headers_of(hdr)
        handle(ctx, { subject = subject, reply = reply, data = payload, id = mid, priority = prio,
                      headers = h, delivered = h and tonumber(h["Msrt-Delivered"]) })
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
    budget = yield("idle")
  end
end

-- The 503 to every request handled and not answered, and to every one
-- still queued: no one will handle them now (best effort: a publish that
-- cannot be made now is left to the requester's timeout; a request that
-- comes after this drain is dropped with the mailbox, unanswered).
local function answer_owed(normal)
  local hdr = "Status\0" .. "503\0Description\0" .. (normal and "responder exited" or "responder crashed") .. "\0"
  for r in pairs(owed) do pcall(publish, r, nil, nil, 1, hdr) end
  owed, nowed = {}, 0
  while true do
    local ok, flags, _, reply = pcall(pop)
    if not ok or not flags then break end
    if reply and flags < CONTROL then pcall(publish, reply, nil, nil, 1, hdr) end
  end
end

-- Called once at the exit, crash or not, with the state still whole.
local function exit_record(reason, normal)
  answer_owed(normal)
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
