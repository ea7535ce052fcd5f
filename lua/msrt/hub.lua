--- The hub's side of messaging: publish, subscribe and request from the
-- main state, and the dispatcher for what workers hand to the hub.
-- Internal: the public face is `msrt` (init.lua). Hub thread only.
-- @module msrt.hub
local core = require "msrt.core"
local request = require "msrt.request"
local profile = require "msrt.profile"
local buffer = require "string.buffer"
local ffi = require "ffi"
local headers = require "msrt.headers"
local deadlines = require "msrt.deadlines"

local decode = buffer.decode
local BUFFER = 0x01

local M = {}

local started = false
local subs = {}         -- hub subscription id -> fn(msg)
local waiting = {}      -- wake id -> coroutine blocked on a full mailbox
local book              -- their deadlines (msrt.deadlines), below
-- Ids handed to the C side (subscriptions, wake-ups, request inboxes) must
-- not repeat within the process even when this module is loaded again
-- (busted clears package.loaded between spec files while the runtime and
-- its subscriptions stay): the counters live in the registry, so a stale
-- subscription's id finds nothing instead of a newer callback.
local ids = debug.getregistry()["msrt.hub.ids"] or { sub = 0, wake = 0 }
debug.getregistry()["msrt.hub.ids"] = ids
-- The hub's inbox prefix: random per host (core/token.h), kept in the
-- registry like the ids; each request adds a random token of its own, so
-- no other party can guess an inbox and answer in the responder's place.
local inbox_prefix = debug.getregistry()["msrt.hub.inbox"]
local exit_handlers = {}  -- actor id -> fn(id, record)
local overload_handler
local started_handler

-- An error of the resumed coroutine is an uncaught error, reported as
-- luajit's lua.c would (a nil error object, busted's way out, only
-- counts). coroutine.resume, not core.resume: LuaJIT runs it without a
-- call through the C API (~1k instructions less per msrt.request).
-- (Two values at most, and no vararg: what every waiter here takes.)
local co_resume = coroutine.resume
local function resume(co, a, b)
  local ok, err = co_resume(co, a, b)
  if not ok then core.uncaught(co, "error in callback", err) end
end

local function data_of(flags, payload)
  if flags % 2 == BUFFER then return decode(payload) end
  return payload
end

local dispatch = {}

-- The drained items, taken one FFI call each (src/lua/lrt.h: the pump).
if not pcall(ffi.typeof, "msrt_lhub_item") then -- (this module may be loaded again)
  ffi.cdef [[
typedef struct {
  int kind; int priority, flags;
  double target, ptr, id, ttl_ms;
  const char *subject, *reply, *payload, *headers;
  size_t subject_len, reply_len, payload_len, headers_len;
} msrt_lhub_item;
int msrt_lhub_next(msrt_lhub_item *out);
int msrt_lhub_token(char *out);
long msrt_lhub_publish(void *rt, const char *s, size_t slen, const char *r,
                       size_t rlen, const void *p, size_t plen, int prio,
                       const char *h, size_t hlen, double ttl_ms);
double msrt_lactor_ffi_now_ms(void);
int memcmp(const void *a, const void *b, size_t n);
]]
end
local C, str = ffi.C, ffi.string
local item, rbuf, pbuf = ffi.new("msrt_lhub_item"), buffer.new(), buffer.new()
local rt -- the runtime (core.hub_rt), msrt_lhub_publish's first argument
-- src/bus/bus.h's MSRT_IN_* kinds the hub's Lua is handed
local DELIVER, EXIT, WAKE, OVERLOAD, STARTED, QUEUE = 1, 2, 4, 5, 7, 8
local TOKEN_LEN = 22 -- core/token.h's MSRT_TOKEN_LEN

-- A copy this receiver cannot decode (a duplicate table key, memory) is
-- its own per-message error: counted drop_other and announced on
-- msrt.dropped.<subject> (core.undecodable); the hub goes on.
local function undecodable(subject, why)
  core.undecodable(subject, tostring(why):gsub("^.-:%d+: ", ""), "hub")
end

local inbox_hub, inbox_subject -- the inbox's subscription (hub id), below

-- The data of the string.buffer encoding of n bytes at p: true, value,
-- or false, why. One short string (tag 0x20 + its length, up to 95
-- bytes: a reply as "ok", the crash storm's "a" and "p") is read here,
-- as actor_ctx.lua's data_of reads it on an actor's side: rbuf:set(p, n)
-- keeps p, which made LuaJIT box it in a cdata for the collector, and
-- the decode is a call more.
local function item_data(p, n)
  local tag = n > 0 and p[0] or 0 -- (a signed char: 0x80.. decode)
  if tag >= 0x20 and n == tag - 0x1f then return true, str(p + 1, n - 1) end
  return pcall(rbuf.decode, rbuf:set(p, n))
end

-- A message to hub subscription it.target: its callback gets the msg.
local function deliver(it)
  local target = it.target
  local fn = subs[target]
  if not fn then return end
  -- a reply to a waiting request: its inbox string, made by the request,
  -- rather than a second copy of it hashed and looked up again
  local subject = target == inbox_hub and inbox_subject(it) or str(it.subject, it.subject_len)
  local reply = it.reply ~= nil and str(it.reply, it.reply_len) or nil
  local ok, data, h = true, nil, nil
  if it.flags % 2 == BUFFER then
    ok, data = item_data(it.payload, tonumber(it.payload_len))
  else
    data = str(it.payload, it.payload_len)
  end
  if not ok then return undecodable(subject, data) end
  if it.headers ~= nil then
    ok, h = pcall(headers.decode, str(it.headers, it.headers_len))
    if not ok then return undecodable(subject, h) end
  end
  local ttl = it.ttl_ms
  if reply == nil and h == nil and ttl < 0 then -- (a reply): a table of four keys, not seven
    return fn({ subject = subject, data = data, id = it.id, priority = it.priority })
  end
  fn({ subject = subject, reply = reply, data = data, id = it.id, priority = it.priority, headers = h,
    reply_ttl_ms = ttl >= 0 and ttl or nil })
end

function dispatch.exit(actor_id, subject, reply, payload, id, priority, flags)
  local rec = data_of(flags, payload)
  if type(rec) ~= "table" then -- a plain reason: the state could make no record
    local reason = tostring(rec)
    rec = { id = actor_id, reason = reason, normal = reason == "normal" or reason == "shutdown" }
  end
  local fn = exit_handlers[actor_id]
  exit_handlers[actor_id] = nil
  if fn then fn(actor_id, rec) end
end

function dispatch.wake(wake_id)
  local co = waiting[wake_id]
  waiting[wake_id] = nil
  if co then resume(co) end
end

function dispatch.overload(actor_id, ms)
  if overload_handler then overload_handler(actor_id, ms) end
end

function dispatch.started(actor_id)
  if started_handler then started_handler(actor_id) end
end

local queue_handler
function dispatch.queue(wake_id)
  if queue_handler then queue_handler(wake_id) end
end

-- The dispatcher (core.set_dispatch): called as a hub coroutine for each
-- run of drained items, it takes them until none is left, or until a
-- callback yielded: a callback keeps the coroutine it yielded on, and
-- the drain calls this again, on another, for the rest. So the coroutine
-- checks it is still the one pumping after each item.
local pumping
local function pump()
  local me = coroutine.running()
  pumping = me
  while pumping == me and C.msrt_lhub_next(item) ~= 0 do
    local kind, it = item.kind, item
    if kind == DELIVER then
      deliver(it)
    elseif kind == EXIT then
      local payload = it.payload ~= nil and str(it.payload, it.payload_len)
        or (it.ptr == 2 and "shutdown" or "out of memory (no exit record)")
      dispatch.exit(it.target, nil, nil, payload, nil, nil, it.flags)
    elseif kind == WAKE then
      dispatch.wake(it.target)
    elseif kind == OVERLOAD then
      dispatch.overload(it.target, it.ptr)
    elseif kind == STARTED then
      dispatch.started(it.target)
    elseif kind == QUEUE then
      dispatch.queue(it.target)
    end
  end
end

--- Start the runtime (workers, router) with the profile in force. Idempotent.
-- @return true | nil, err
function M.start()
  if started then return true end
  -- stripped: debug info would cost every actor state 4 KB (its own
  -- frames then show as "?" in tracebacks; the user's code keeps its lines)
  local function dump(name)
    return string.dump(assert(loadfile(assert(package.searchpath(name, package.path)))), true)
  end
  local ok, err = core.rt_start(profile.current(), dump("msrt.actor_boot"), dump("msrt.actor_ctx"))
  if not ok then return nil, err end
  core.set_dispatch(pump)
  rt = ffi.cast("void *", core.hub_rt()) -- a cdata: the JIT passes no light userdata to C
  started = true
  return true
end

function M.started() return started end

function M.on_exit(actor_id, fn) exit_handlers[actor_id] = fn end
function M.on_overload(fn) overload_handler = fn end
--- fn(actor_id) when an actor whose spec asked for it has run its init.
function M.on_started(fn) started_handler = fn end
--- fn(wake_id) when a durable queue has intake to flush (queue.lua).
function M.on_queue(fn) queue_handler = fn end

local function ensure()
  if started then return true end
  return M.start()
end

--- From a hub coroutine: call register(wake_id), which returns true when
-- a wake for that id will come (core.pending_wait, core.proc_send), and
-- then yield until it comes. For waits for room.
function M.await_wake(register)
  ids.wake = ids.wake + 1
  local wid = ids.wake
  if register(wid) then
    waiting[wid] = coroutine.running()
    coroutine.yield()
  end
end

-- Deliver a blocked publish: yield the calling coroutine until there is room.
local function wait_room(pending)
  local function register(wid) return core.pending_wait(pending, wid) end
  while true do
    M.await_wake(register)
    local r, err = core.pending_retry(pending)
    if r ~= nil or not err.blocked then return r, err end
  end
end

--- Publish from the hub. opts: reply, priority, nowait. A full `block`
-- mailbox makes the calling coroutine wait for room (outside a coroutine,
-- or with nowait, it is refused with mailbox_full). ttl: a request's timeout (ms), how long its
-- inbox stays valid to a process it is handed to. hdr: opts.headers
-- already encoded (M.encode_headers; false: none), for a caller
-- publishing many messages with the same headers.
-- @return number of endpoints reached | nil, err
function M.publish(subject, data, opts, reply, ttl, hdr)
  local ok, err = ensure()
  if not ok then return nil, err end
  local prio = opts.priority
  if type(prio) == "number" and not (prio >= 1 and prio <= 10 and prio % 1 == 0) then
    -- refused, never clamped: NaN or 1e300 must not become the highest
    return nil, core.error("invalid_arg", ("priority must be an integer 1..10 (got %s)"):format(tostring(prio)))
  end
  if hdr == nil then
    local herr
    hdr, herr = headers.encode(opts.headers)
    if herr then return nil, core.error("invalid_arg", herr) end
  end
  -- encoded in place (no Lua string for the payload), published through
  -- the FFI, which LuaJIT compiles into the caller's trace
  local eok, why = pcall(pbuf.encode, pbuf:reset(), data)
  if not eok then require("msrt.args").cannot_send(data, why, 2, "publish") end
  reply = reply or opts.reply
  if hdr == false then hdr = nil end
  local r, perr, pending
  if (prio == nil or type(prio) == "number") and (reply == nil or type(reply) == "string") then
    local p, n = pbuf:ref()
    r = tonumber(C.msrt_lhub_publish(rt, subject, #subject, reply, reply and #reply or 0, p, n,
      prio or 5, hdr, hdr and #hdr or 0, ttl or 0))
    if r >= 0 then return r end
    r, perr, pending = core.publish_error()
  else -- other types: read (and refused) by the C binding, as they always were
    r, perr, pending = core.publish(subject, pbuf:tostring(), reply, prio, hdr, ttl)
  end
  if r == nil and perr.blocked then
    if opts.nowait or not coroutine.isyieldable() then
      return nil, core.error("mailbox_full", ("mailbox full on \"%s\" and the caller cannot wait (not a coroutine, or inside a C function's callback)"):format(subject))
    end
    return wait_room(pending)
  end
  return r, perr
end

--- Headers (a table, or nil) in their wire form for M.publish's hdr.
-- @return the string, or false when there are none | nil, err (invalid_arg)
function M.encode_headers(h)
  local hdr, herr = headers.encode(h)
  if herr then return nil, core.error("invalid_arg", herr) end
  return hdr or false
end

--- Subscribe fn(msg) on the hub. opts: queue.
-- @return sub id | nil, err
function M.subscribe(pattern, fn, opts)
  local ok, err = ensure()
  if not ok then return nil, err end
  ids.sub = ids.sub + 1
  local hub_id = ids.sub
  local sid, serr = core.subscribe(pattern, opts.queue, hub_id)
  if not sid then return nil, serr end
  subs[hub_id] = fn
  return sid, hub_id
end

function M.unsubscribe(sid, hub_id)
  subs[hub_id] = nil
  return core.unsubscribe(sid)
end

-- Requests waiting for their reply, by slot. A slot's number is the last
-- SLOT_LEN characters of its inbox's token, after the MSRT_TOKEN_LEN
-- random ones (in the token's alphabet, core/token.h), so a reply finds
-- its waiter by array index. (A table keyed by inbox, as they were, held
-- ~1,000 live keys among single-use ones at 1,000 requests in flight:
-- LuaJIT sized its hash part just over them and rehashed it every few
-- dozen inserts, ~5k instructions a request.) A reply counts only when it
-- names the slot's current inbox: a late one for an earlier request on
-- the same slot, or a forged one, finds nothing.
local SLOT_LEN = 4 -- (side.inbox writes the four digits)
local band, rshift = require("bit").band, require("bit").rshift
local SLOTS_MAX = 64 ^ SLOT_LEN - 1
local DIGITS, VALUE = ffi.new("char[64]"), {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  for i = 1, 64 do
    DIGITS[i - 1] = alphabet:byte(i)
    VALUE[alphabet:byte(i)] = i - 1
  end
end
local waiter, inbox_of = {}, {} -- slot -> its coroutine (false: none yet), its inbox
-- slot -> how many 503s (a taker that will not answer: NATS' no-responders
-- status, a responder's exit) it lets pass while others that took the
-- request may still answer (request.passes: 0 for a request one endpoint
-- took)
local passes = {}
local free, nfree, nslots = {}, 0, 0
local ilen -- #inbox_prefix + 1, once the first inbox is made (side.inbox)

-- Whether a subject of len bytes has an inbox's length, and the slot its
-- last SLOT_LEN bytes a, b, c, d name, or nil.
local function inbox_len(len) return ilen and len == ilen + TOKEN_LEN + SLOT_LEN end
local function slot_digits(a, b, c, d)
  a, b, c, d = VALUE[a], VALUE[b], VALUE[c], VALUE[d]
  if not (a and b and c and d) then return nil end
  return ((a * 64 + b) * 64 + c) * 64 + d
end

-- The slot an inbox names, or nil for a subject no inbox of ours has.
local byte = string.byte
local function slot_of(inbox)
  if not inbox_len(#inbox) then return nil end
  return slot_digits(byte(inbox, ilen + TOKEN_LEN + 1, ilen + TOKEN_LEN + SLOT_LEN))
end

local function release(slot)
  waiter[slot], inbox_of[slot], passes[slot] = false, false, 0
  nfree = nfree + 1
  free[nfree] = slot
end

-- The inbox string of the request waiting on subject (the item's bytes),
-- or nil.
local memcmp = C.memcmp
function inbox_subject(it)
  local len = tonumber(it.subject_len)
  if not inbox_len(len) then return nil end
  local at = it.subject + (len - SLOT_LEN)
  local slot = slot_digits(at[0], at[1], at[2], at[3])
  local inbox = slot and inbox_of[slot]
  if inbox and memcmp(it.subject, inbox, len) == 0 then return inbox end
end

-- The coroutine waiting on inbox, or nil.
local function waiting_on(inbox)
  local slot = slot_of(inbox)
  if slot and inbox_of[slot] == inbox then return waiter[slot] or nil, slot end
end

-- The coroutine waiting on inbox, its slot released: nil when none waits.
local function take(inbox)
  local co, slot = waiting_on(inbox)
  if co then release(slot) end
  return co
end

local inbox_ready = false
local function open_inbox()
  if not inbox_prefix then
    local token, err = core.token()
    if not token then return nil, err end
    inbox_prefix = "_INBOX." .. token
    debug.getregistry()["msrt.hub.inbox"] = inbox_prefix
  end
  local sid, hub_id = M.subscribe(inbox_prefix .. ".>", function(msg)
    local co, slot = waiting_on(msg.subject)
    if not co then return end
    -- a 503 is no_responders only once every taker has said so: a
    -- request a bridge exported beside a local responder gets NATS' 503
    -- at once (NATS does not echo the host its own interest)
    if request.passes_503(msg.headers, passes[slot] or 0) then
      passes[slot] = passes[slot] - 1
      return
    end
    release(slot)
    resume(co, true, msg)
    book:done()
  end, {})
  if not sid then return nil, hub_id end
  inbox_hub, inbox_ready = hub_id, true
  return true
end

-- (The fast path apart: a function that makes a closure, even on a path
-- not taken, is not compiled by LuaJIT.)
local function ensure_inbox()
  if inbox_ready then return true end
  return open_inbox()
end

--- Raise at the caller unless it can wait (yield); what names the
-- function. Outside a coroutine, or inside a callback of a C function
-- (table.sort's comparator, a gsub callback), a yield fails, and would
-- leave what it waits for dangling: refused before anything is sent.
-- (LuaJIT yields across metamethods and pcall: those can wait.)
function M.check_wait(what)
  if coroutine.isyieldable() then return end
  local args = require "msrt.args"
  if not coroutine.running() then
    args.raise(what .. " must be called from a coroutine (the main chunk and hub callbacks are)")
  end
  args.raise(what .. " cannot wait here: it is called inside a C function's callback (table.sort's "
    .. "comparator, a gsub callback...), which a coroutine cannot yield across")
end

-- A hub coroutine's side of a request (msrt.request): its reply subject
-- is under the hub's inbox, whose one subscription hands each reply to
-- the coroutine waiting for it.
local side = { error = core.error }

-- "<inbox_prefix>." with room for a token after it, made once: each
-- inbox is then one string, its token written in place (msrt_lhub_token).
local ibuf
function side.inbox()
  local ok, err = ensure()
  if ok then ok, err = ensure_inbox() end
  if not ok then return nil, err end
  if not ibuf then
    ilen = #inbox_prefix + 1
    ibuf = ffi.new("char[?]", ilen + TOKEN_LEN + SLOT_LEN + 1)
    ffi.copy(ibuf, inbox_prefix .. ".")
  end
  if C.msrt_lhub_token(ibuf + ilen) == 0 then return nil, select(2, core.token()) end
  local slot = nfree > 0 and free[nfree] or nslots + 1
  if slot > SLOTS_MAX then
    return nil, core.error("resource_exhausted", ("more than %d msrt.requests wait at once"):format(SLOTS_MAX))
  end
  if slot > nslots then nslots = slot else nfree = nfree - 1 end
  -- (four digits written out: a loop here aborted the caller's trace)
  local at = ibuf + ilen + TOKEN_LEN
  at[0], at[1] = DIGITS[rshift(slot, 18)], DIGITS[band(rshift(slot, 12), 63)]
  at[2], at[3] = DIGITS[band(rshift(slot, 6), 63)], DIGITS[band(slot, 63)]
  local inbox = str(ibuf, ilen + TOKEN_LEN + SLOT_LEN)
  inbox_of[slot] = inbox
  return inbox
end

function side.send(subject, data, inbox, opts, timeout)
  local slot = slot_of(inbox)
  waiter[slot] = coroutine.running()
  -- (a publish that raises, e.g. data that cannot be encoded, gives its
  -- slot back before the error goes on: the slot would hold the
  -- coroutine forever)
  local ok, n, err = pcall(M.publish, subject, data, opts, inbox, timeout)
  if not ok then release(slot) error(n, 0) end
  if not n or n == 0 then release(slot) else passes[slot] = request.passes(n) end
  return n, err
end

-- Requests past their deadline. A reply already queued for the hub (the
-- loop runs timers before its inbox) came in time: it goes through first.
book = deadlines.new(function(inbox) return waiting_on(inbox) ~= nil end, function(due)
  core.drain_inbox()
  for _, inbox in ipairs(due) do
    local co = take(inbox)
    if co then
      resume(co, false)
      book:done()
    end
  end
end)

function side.wait(inbox, timeout)
  -- core.now_ms's clock (CLOCK_MONOTONIC), read through the FFI: no C
  -- function call to stop the request's trace
  book:add(inbox, C.msrt_lactor_ffi_now_ms() + timeout)
  return coroutine.yield()
end

function side.abandon(subject)
  M.publish(subject, nil, { nowait = true })
end

--- Give up the request waiting on reply subject inbox (the one its sent
-- callback was given) before its deadline: its coroutine gets nil, err
-- (closed, message why) at once, and the responder is told on
-- msrt.abandoned.<inbox> (lua/msrt/request.lua). For a hub coroutine
-- whose reason to wait went away (an MCP client's cancellation, its
-- connection closed). Hub thread only.
-- @return true | false when no request waits on inbox (answered, expired)
function M.abandon(inbox, why)
  local co = take(inbox)
  if not co then return false end
  resume(co, nil, core.error("closed", why or "the request was abandoned by its requester"))
  book:done()
  return true
end

--- Request from a hub coroutine (msrt.request; lua/msrt/request.lua: an
-- unguessable _INBOX reply subject, the first reply on it taken and any
-- later one dropped, opts.timeout_ms (default request.TIMEOUT_MS),
-- no_responders at once when nothing is subscribed). sent(inbox), when
-- given, is called once the request is out, with its reply subject
-- (msrt.mcp: the JSON-RPC id a cancellation names).
-- @return data, msg | nil, err
function M.request(subject, data, opts, sent)
  M.check_wait("msrt.request")
  return request.request(side, subject, data, opts, sent)
end

--- Stop the runtime: actors finish their message and terminate; workers
-- join within the profile's shutdown_timeout_ms.
function M.stop()
  if not started then return true end
  return core.rt_stop()
end

return M
