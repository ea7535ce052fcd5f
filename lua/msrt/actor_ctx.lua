--- The rest of an actor's ctx (lua/msrt/actor_boot.lua has the part every
-- actor needs): reply, requests, timers, subscribe, unsubscribe, log, a durable queue's
-- acks, a durable publish, waiting on the sys lane and the FFI path an
-- actor takes at its first message. Compiled once by the hub; an actor
-- state loads it (rt.more) the first time it needs one of these, so an
-- actor that never does carries none of its bytecode.
-- Called with what actor_boot.lua shares (core: rt, ctx, err, send,
-- control, check_opts, pop, publish, stopping); returns the table
-- actor_boot.lua calls (ctx: the functions it puts in ctx; fast,
-- wait_blocked, publish_durable, timer_fired, run_timers, undecodable,
-- answer_owed, bad_send, bad_data).
local core = ...
local rt, err, send, control = core.rt, core.err, core.send, core.control
local stopping, check_opts = core.stopping, core.check_opts
local pop, publish = core.pop, core.publish
local closed, set_waiting, now_ms = rt.closed, rt.set_waiting, rt.now_ms -- now_ms: monotonic ms (fractional)
local yield = coroutine.yield
local CONTROL, BUFFER, PUBACK = 0x80, 0x01, 0x04
local GIVE_WAY_EVERY = 64 -- publishes between asking whether to give way (fast's publish)
local ctx = {}
local more = { ctx = ctx }

-- msg.headers from the wire form (msrt.headers), loaded on first use.
local function headers_of(hdr)
  if hdr == nil then return nil end
  return require("msrt.headers").decode(hdr)
end

-- A copy this actor cannot decode (a duplicate table key, memory) is a
-- per-message error, not a crash: counted drop_other and announced on
-- msrt.dropped.<subject> (rt.undecodable); the actor takes the next one.
function more.undecodable(subject, why)
  rt.undecodable(subject, (tostring(why):gsub("^.-:%d+: ", "")))
end
local undecodable = more.undecodable

-- At the exit (actor_boot.lua's exit_record): the 503 to every request
-- handled and not answered (owed: reply subject -> true), and to every
-- one still queued, the first of them (flags, reply) already popped: no
-- one will handle them now (best effort: a publish that cannot be made
-- now is left to the requester's timeout; a request that comes after
-- this drain is dropped with the mailbox, unanswered). pop and publish
-- are the actor's current ones (the C API's or the FFI's).
function more.answer_owed(owed, normal, flags, reply, pop, publish)
  local hdr = "Status\0" .. "503\0Description\0" .. (normal and "responder exited" or "responder crashed") .. "\0"
  for r in pairs(owed) do pcall(publish, r, nil, nil, 1, hdr) end
  local ok, _ = true, nil
  while ok and flags do
    if reply and flags < CONTROL then pcall(publish, reply, nil, nil, 1, hdr) end
    ok, flags, _, reply = pcall(pop)
  end
end

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

-- A _TIMER control message (actor_boot.lua's control).
function more.timer_fired(tid)
  if alarms[tid] then alarm_fired(tid) -- no request waits for it now
  elseif timers[tid] then stash[#stash + 1] = tid end
end

-- Run the timers that fired (after each control message of a turn).
function more.run_timers()
  while #stash > 0 do
    local tid = table.remove(stash, 1)
    local t = timers[tid]
    if t then
      if not t.every then timers[tid] = nil end
      t.fn(core.ctx)
    end
  end
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
asker.inbox = c_inbox -- fast() swaps in the FFI version
-- (the actor is stopping: its notice must not wait for room)
asker.abandon = function(subject) pcall(publish, subject, nil) end

-- The msg a handler gets (actor_boot.lua's turn loop; headers in their
-- wire form). One without a reply subject or headers, most of them, is
-- a table of four keys: a table of seven is 96 bytes more, and where
-- the handler keeps its msg the collector's work follows the bytes made
-- (~1,100 instructions a message more: docs/performance.md, fan-out:
-- the receiving side).
local function msg_of(subject, reply, data, mid, prio, hdr)
  if reply == nil and hdr == nil then
    return { subject = subject, data = data, id = mid, priority = prio }
  end
  local h = headers_of(hdr)
  return { subject = subject, reply = reply, data = data, id = mid, priority = prio,
           headers = h, delivered = h and tonumber(h["Msrt-Delivered"]) }
end

-- The FFI path: swaps in the FFI versions of pop, publish, closed,
-- set_waiting, now_ms and the inbox maker, and returns pop, publish,
-- closed and msg_of for actor_boot.lua.
function more.fast()
  rt.jit_on()
  local ffi = require "ffi"
  local buffer = require "string.buffer"
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
int msrt_lactor_ffi_give_way(void *la);
double msrt_lactor_ffi_now_ms(void);
int msrt_memcmp(const void *a, const void *b, size_t n) __asm__("memcmp");
]]
  -- a cdata pointer: the JIT cannot pass a lightuserdata as void *
  local C, me, str, cast = ffi.C, ffi.cast("void *", rt.self()), ffi.string, ffi.cast
  local rbuf, bbuf, wbuf, last_error = buffer.new(), buffer.new(), buffer.new(), rt.last_error
  local dbl = ffi.typeof("const double *")
  now_ms = C.msrt_lactor_ffi_now_ms
  closed = function() return C.msrt_lactor_ffi_closed(me) ~= 0 end
  set_waiting = function(on) C.msrt_lactor_ffi_set_waiting(me, on and 1 or 0) end
  local ibuf = ffi.new("char[64]")
  asker.inbox = function()
    local n = tonumber(C.msrt_lactor_ffi_inbox(me, ibuf))
    if n < 0 then return c_inbox() end -- it says why
    return str(ibuf, n)
  end
  -- The data of a string.buffer encoding at p (n bytes): true, value, or
  -- false, why. The one-value encodings most messages are (a number: tag
  -- 7 and a little-endian double, NaN and infinities left to decode,
  -- which makes NaN canonical; a string of up to 8,127 bytes: tag 0x20
  -- + its length, in one byte or two; false 1, true 2) are read here:
  -- decode costs ~85 instructions more. The rest, up to SMALL bytes, is
  -- copied into rbuf and decoded there: bbuf:set(p, n) keeps p, so
  -- LuaJIT makes a cdata object for it, ~200 instructions with its
  -- collection (docs/performance.md, fan-out: the receiving side), which
  -- only a larger one is worth (its copy would cost more, and stay in
  -- rbuf).
  local SMALL, NUM = 1024, ffi.abi("le") and 7 or -1 -- (the encoding is little-endian)
  local function data_of(p, n)
    local tag = n > 0 and p[0] or 0 -- (0: nil, to decode, as any other)
    if tag == NUM then
      if n == 9 and (p[8] % 128 ~= 127 or p[7] < 0xf0) then return true, cast(dbl, p + 1)[0] end
    elseif tag >= 0x20 then
      if tag < 0xe0 then
        if n == tag - 0x1f then return true, str(p + 1, n - 1) end
      elseif tag < 0xff and n > 2 and n == (tag - 0xe0) * 256 + p[1] + 0xc2 then
        return true, str(p + 2, n - 2) -- (192 to 8,127 bytes: a two-byte length)
      end
    elseif n == 1 and (tag == 1 or tag == 2) then
      return true, tag == 2
    end
    if n <= SMALL then return pcall(rbuf.decode, rbuf:reset():putcdata(p, n)) end
    return pcall(bbuf.decode, bbuf:set(p, n))
  end
  -- The last subject's string, given again while the next envelope's
  -- subject has the same bytes: one memcmp instead of hashing and
  -- looking up the interned string (~110 instructions a message). It is
  -- the string ffi.string would return (Lua strings are interned).
  local last_subject = ""
  pop = function()
    local e = C.msrt_lactor_ffi_pop(me)
    if e == nil then return nil end
    local flags, ok, data = e.flags, true
    if flags % 2 == BUFFER then
      ok, data = data_of(e.payload, e.payload_len)
    else
      data = str(e.payload, e.payload_len)
    end
    local sp, sn, subject = e.subject, e.subject_len, last_subject
    if sn ~= #subject or C.msrt_memcmp(sp, subject, sn) ~= 0 then
      subject = str(sp, sn)
      last_subject = subject
    end
    if not ok then
      undecodable(subject, data)
      C.msrt_lactor_ffi_unref(e)
      return pop()
    end
    local reply = e.reply ~= nil and str(e.reply, e.reply_len) or nil
    local mid, prio = tonumber(e.id), e.priority
    local hdr = e.headers_len > 0 and str(e.headers, e.headers_len) or nil
    C.msrt_lactor_ffi_unref(e)
    return flags, subject, reply, data, mid, prio, hdr
  end
  -- A number's encoding written here (tag 7, the double's bytes), as
  -- data_of reads it: string.buffer's encoder costs ~50 instructions more.
  local nenc = ffi.new("uint8_t[9]", NUM)
  local nslot = cast("double *", nenc + 1)
  -- Giving way: every GIVE_WAY_EVERY publishes the scheduler is asked
  -- whether this turn has sent enough while others wait on its worker
  -- (src/sched/sched.h msrt_actor_should_yield); then the actor yields
  -- and goes on in a later turn. Only from the actor's own coroutine and
  -- where a yield can cross (not in table.sort's comparator, a gsub
  -- callback...): elsewhere it goes on, as before.
  local sent, co, running, yieldable = 0, coroutine.running(), coroutine.running, coroutine.isyieldable
  local function give_way()
    sent = 0
    if C.msrt_lactor_ffi_give_way(me) ~= 0 and running() == co and yieldable() then
      yield("more")
    end
  end
  publish = function(subject, data, reply, prio, hdr, ttl)
    local p, n
    if type(data) == "number" and NUM == 7 then
      nslot[0], p, n = data, nenc, 9
    else
      p, n = wbuf:reset():encode(data):ref()
    end
    local r = tonumber(C.msrt_lactor_ffi_publish(me, subject, #subject, reply,
      reply and #reply or 0, p, n, prio or 5, hdr, hdr and #hdr or 0, ttl or 0))
    if r >= 0 then
      sent = sent + 1
      if sent >= GIVE_WAY_EVERY then give_way() end
      return r
    end
    return last_error()
  end
  return pop, publish, closed, msg_of
end

-- Wait (yielding "waiting": only the sys lane is served) until want(a, b,
-- is_control, subject, payload, ...) returns a result; other control
-- messages are kept. (a, b: what want needs, passed rather than captured:
-- a closure made per wait would stop LuaJIT compiling the request path.)
-- One message of the sys lane (pop's values) to want: true, a, b when
-- the wait is over (want's result, or the actor stopping); false when
-- the wait goes on (a control message other than want's is run).
local function take(want, a0, b0, flags, subject, reply, payload, mid, prio, hdr)
  local is_control = flags >= CONTROL
  local a, b = want(a0, b0, is_control, subject, payload, flags, reply, mid, prio, hdr)
  if a ~= nil or b ~= nil then return true, a, b end
  if is_control then control(subject, payload) end
  local stop_reason = stopping()
  if stop_reason then return true, nil, err("closed", "the actor is stopping (" .. stop_reason .. ")") end
  return false
end

local function wait_loop(want, a0, b0)
  while true do
    local flags, subject, reply, payload, mid, prio, hdr = pop()
    if not flags then
      yield("waiting")
    else
      local done, a, b = take(want, a0, b0, flags, subject, reply, payload, mid, prio, hdr)
      if done then return a, b end
    end
  end
end

-- The common wait, a reply after one yield, runs no loop: a loop here
-- became the first hot loop of a requesting actor, a root trace that
-- LuaJIT aborts when it leaves the loop (it does, with the reply), and
-- the request path was then compiled in a dozen pieces (~3,000
-- instructions a request more: docs/performance.md).
local function wait_sys(want, a0, b0)
  set_waiting(true)
  local flags, subject, reply, payload, mid, prio, hdr = pop()
  if not flags then
    yield("waiting")
    flags, subject, reply, payload, mid, prio, hdr = pop()
  end
  local done, a, b = false, nil, nil
  if flags then done, a, b = take(want, a0, b0, flags, subject, reply, payload, mid, prio, hdr) end
  if not done then a, b = wait_loop(want, a0, b0) end
  set_waiting(false)
  return a, b
end

-- actor_boot.lua's send found a bad subject, reply or priority: raise
-- at the caller of ctx's function (send tail-calls this, so level 3 is
-- still that caller), or nil, err for a priority out of range.
function more.bad_send(subject, reply, prio, fname)
  if type(subject) ~= "string" then
    error(("bad argument #1 to '%s' (subject string expected, got %s)"):format(fname, type(subject)), 3)
  end
  if prio ~= nil then
    if type(prio) ~= "number" then
      error(("bad argument #3 to '%s' (priority must be a number 1..10)"):format(fname), 3)
    end
    if not (prio >= 1 and prio <= 10 and prio % 1 == 0) then
      return nil, err("invalid_arg", ("priority must be an integer 1..10 (got %s)"):format(tostring(prio)))
    end
  end
  error(("bad argument #3 to '%s' (reply must be a subject string)"):format(fname), 3)
end

-- actor_boot.lua's send could not encode data (why): data a message
-- cannot carry is named, at the caller's line (tail-called, as bad_send).
function more.bad_data(why, data, fname)
  local where = require("msrt.args").unsendable(data, "data")
  if not where then error(why, 0) end
  error(("bad argument #2 to '%s' (%s cannot be sent: a message carries nil, booleans, numbers, strings, msrt.null and tables of them)")
    :format(fname, where), 3)
end

local function is_room(_, _, is_control, s) if is_control and s == "_ROOM" then return true end end

-- A publish blocked on full `block` mailboxes: wait for room, retry.
function more.wait_blocked()
  local r, e
  repeat
    if rt.wait_room() then wait_sys(is_room) end
    r, e = rt.retry()
  until r ~= nil or not e.blocked
  return r, e
end

local durable_request -- below, with the requests

-- waits for the queue's PubAck, as msrt.publish{durable = true} does
function more.publish_durable(subject, data, opts)
  return require("msrt.puback").publish(durable_request, err, subject, data, opts)
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


-- How many 503s the request waiting now lets pass (lua/msrt/request.lua's
-- passes: a 503 is no_responders once every taker has said so).
local passes = 0
local request_mod -- lua/msrt/request.lua, loaded by the first request

function asker.send(subject, data, inbox, opts, timeout)
  local n, e = send(subject, data, inbox, opts.priority, "request", opts.headers, timeout)
  passes = request_mod.passes(n)
  return n, e
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
    local h = headers_of(hdr)
    if request_mod.passes_503(h, passes) then passes = passes - 1 return nil end
    return true, { subject = s, reply = reply, data = payload, id = mid, priority = prio, headers = h }
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
  if stopping() or closed() then return nil, err("closed", "the actor is stopping") end
  -- loaded at the first request: an actor that never asks never loads it
  request_mod = request_mod or require("msrt.request")
  return request_mod.request(asker, subject, data, opts)
end

function durable_request(subject, data, opts)
  if not coroutine.isyieldable() then
    error("ctx:publish{durable = true} cannot wait here: it is called inside a C function's callback", 3)
  end
  if stopping() or closed() then return nil, err("closed", "the actor is stopping") end
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
-- @return the subscription id | nil, err (invalid_subject;
--   resource_exhausted when the actor holds the profile's max_subscriptions)
function ctx:subscribe(pattern, opts)
  opts = check_opts(opts, "subscribe")
  local sid, serr = rt.subscribe(pattern, opts.queue)
  if not sid then return nil, serr end
  return sid
end

--- Drop one of this actor's subscriptions (an id from ctx:subscribe).
-- Copies already in its mailbox still arrive, as after NATS' UNSUB; the
-- slot counts again against max_subscriptions.
-- @return true | nil, err (not_found: this actor holds no subscription
--   by that id; another actor's id is not_found too)
function ctx:unsubscribe(sid)
  if type(sid) ~= "number" then
    error(("bad argument #1 to 'unsubscribe' (subscription id expected, got %s)"):format(type(sid)), 2)
  end
  return rt.unsubscribe(sid)
end

--- Reply to a message that carries a reply subject.
function ctx:reply(msg, data)
  if type(msg) ~= "table" or not msg.reply then
    return nil, err("invalid_arg", "the message has no reply subject")
  end
  return self:publish(msg.reply, data)
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

return more
