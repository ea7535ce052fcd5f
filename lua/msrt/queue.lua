--- Durable work queues (README "Durable work queues", docs/architecture.md
-- "Durable queues"): JetStream's work-queue semantics over the SQLite
-- store of src/queue (queue/queue.h says exactly what a commit survives).
-- Internal: the public face is msrt.queue, msrt.consume and
-- msrt.publish{durable = true} (init.lua). Hub thread only.
--
-- A queue's state on the hub: `ready` (seqs waiting for a consumer, in
-- order; redeliveries go first), `inflight` (seq -> the delivery a
-- consumer holds: the message handed to it, whose _c, _token, _n and
-- _deadline say whose it is and until when), `delayed` (seq -> when a nak'd
-- or backed-off message is due again) and `delivered` (seq -> its
-- delivery count, as stored). Everything the queue writes in a hub loop
-- turn (new messages, delivery counts, acks, dead letters) goes to the
-- store in one transaction (flush), run on the queue's writer thread (one
-- in flight, q.flight; queue.h msrt_queue_flush_begin); a message is
-- handed to a consumer only after the transaction that counts its
-- delivery has committed, so after a crash msg.delivered is never lower
-- than what consumers saw.
-- @module msrt.queue
local core = require "msrt.core"
local hub = require "msrt.hub"
local profile = require "msrt.profile"
local headers = require "msrt.headers"
local buffer = require "string.buffer"
local uv = require "luv"

local M = {}

local queues = {}   -- name -> queue
local by_wake = {}  -- wake id -> queue
-- wake ids must not repeat within the process (hub.lua keeps its ids the
-- same way): a stale MSRT_IN_QUEUE item then finds nothing
local ids = debug.getregistry()["msrt.queue.ids"] or { wake = 0 }
debug.getregistry()["msrt.queue.ids"] = ids

local function now_ns() return uv.hrtime() end

-- coroutine.resume, not core.resume: LuaJIT runs it without a call
-- through the C API (hub.lua's resume); an error is reported as
-- core.resume would.
local co_resume = coroutine.resume
local function resume(co, what, a, b)
  local ok, err = co_resume(co, a, b)
  if not ok then core.uncaught(co, what, err) end
end

local function data_of(flags, payload)
  if flags % 2 == 1 then return buffer.decode(payload) end
  return payload
end

--- The default directory of queue stores: the profile's `queues.data_dir`,
-- else $MSRT_DATA_DIR, else $XDG_DATA_HOME/msrt, else ~/.local/share/msrt
-- (XDG Base Directory).
function M.data_dir()
  local p = profile.current().queues
  if p and p.data_dir then return p.data_dir end
  local d = os.getenv("MSRT_DATA_DIR")
  if d and d ~= "" then return d end
  local x = os.getenv("XDG_DATA_HOME")
  if x and x ~= "" then return x .. "/msrt" end
  return (os.getenv("HOME") or ".") .. "/.local/share/msrt"
end

local function mkdirs(dir)
  local path = dir:sub(1, 1) == "/" and "" or "."
  for part in dir:gmatch("[^/]+") do
    path = path .. "/" .. part
    uv.fs_mkdir(path, tonumber("700", 8))
  end
end

local function settings()
  local p = profile.current().queues or {}
  return p.commit_ms or 0, (p.synchronous or "full") == "full", p.spin_us or 300
end

---------------------------------------------------------------------------
-- flushing: one transaction per turn

local flush

-- Run flush soon: on the next loop turn, or after the profile's commit_ms
-- (commits grouped over that period). The next turn is an idle handle's:
-- libuv runs it once per turn and does not block in its poll while it is
-- active; a timer of 0 ms waited for the next whole millisecond (a timer
-- here never fires early, hub/timer.h), which bounded a queue to one
-- commit per millisecond or two whatever its load.
local function schedule(q)
  if q.scheduled or q.closed then return end
  q.scheduled = true
  if q.commit_ms > 0 then
    q.flush_timer:start(core.timeout_ms(q.commit_ms), 0, q.on_flush)
  else
    q.flush_idle:start(q.on_idle)
  end
end

local function announce(q, event)
  event.queue = q.name
  hub.publish("msrt.queue." .. q.name .. ".event", event, {})
end

-- The earliest deadline (an ack wait, or a delay when the store keeps
-- them: q.delayed) re-arms the tick timer, which calls q.on_tick. Both
-- stores' (queue_js.lua's through its env).
local tick
local function arm(q)
  local due
  for _, d in pairs(q.inflight) do
    if not due or d._deadline < due then due = d._deadline end
  end
  for _, t in pairs(q.delayed or {}) do
    if not due or t < due then due = t end
  end
  if not due or q.closed then
    if q.tick_at and not q.closed then q.tick_timer:stop() end
    q.tick_at = nil
    return
  end
  if q.tick_at and q.tick_at <= due then return end
  q.tick_at = due
  local ms = math.max(0, (due - now_ns()) / 1e6)
  q.tick_timer:start(core.timeout_ms(ms), 0, q.on_tick)
  q.tick_timer:unref() -- ack waits do not keep the host alive (subscriptions do not)
end

-- Ack waits that ran out and delays that are over: back to ready.
function tick(q)
  q.tick_at = nil
  local t = now_ns()
  local back = {}
  for seq, d in pairs(q.inflight) do
    if d._deadline <= t then
      q.inflight[seq] = nil
      d._c.pending = d._c.pending - 1
      back[#back + 1] = seq
    end
  end
  for seq, due in pairs(q.delayed) do
    if due <= t then q.delayed[seq] = nil back[#back + 1] = seq end
  end
  table.sort(back)
  for i = #back, 1, -1 do table.insert(q.retry, 1, back[i]) end
  if #back > 0 then schedule(q) end
  arm(q)
end

-- The next ready seq (redeliveries first), or nil.
local function take_ready(q)
  local seq = table.remove(q.retry, 1)
  if seq then return seq end
  if q.head <= q.tail then
    seq = q.ready[q.head]
    q.ready[q.head] = nil
    q.head = q.head + 1
    return seq
  end
end

local function unread(q, seq) table.insert(q.retry, 1, seq) end

-- A consumer with room, round robin.
local function pick_consumer(q)
  local n = #q.consumers
  for i = 1, n do
    local c = q.consumers[(q.rr + i - 1) % n + 1]
    if c.pending < c.max_ack_pending then
      q.rr = (q.rr + i) % n
      return c
    end
  end
end

-- Deliveries of this turn: which ready messages go to which consumer;
-- a message past max_deliver goes to the dead letter instead.
local function plan(q)
  local picks = {}
  while true do
    local c = pick_consumer(q)
    if not c then break end
    local seq = take_ready(q)
    if not seq then break end
    local n = q.delivered[seq]
    if n then -- still stored
      if q.max_deliver > 0 and n >= q.max_deliver then
        q.dead[#q.dead + 1] = { seq = seq, reason = ("max_deliver (%d deliveries)"):format(n) }
      else
        c.pending = c.pending + 1
        picks[#picks + 1] = { seq = seq, consumer = c }
      end
    end
  end
  return picks
end

-- Durable publishes from the hub waiting for their PubAck: reply subject
-- -> {co, deadline}. The PubAck goes to them directly, never through the
-- bus: nothing is subscribed to their reply subjects, so no other
-- receiver of the message can answer in the queue's place.
local waiting_pub, npub, pub_prefix, sweep = {}, 0, nil, nil
-- Waits of single publishes whose PubAck came (M.publish), each with its
-- reply subject, reused by the next: a reply string and a table made per
-- publish were a tenth of its cost on the hub. Only a wait whose message
-- reached one endpoint (the queue, which answered) is reused; one that
-- timed out or reached more than one queue never is, so a late or second
-- PubAck cannot find a later publish in its place.
local free_waits, FREE_MAX = {}, 1024

-- The PubAck of a message the queue was handed with reply subject reply:
-- stored as seq (duplicate: a Msg-Id seen, seq the first one's), or
-- refused with code (and message).
local function ack_of(q, seq, duplicate, code, message)
  if code then
    return { error = { code = code, message = message or ("queue \"%s\" did not store the message (%s)"):format(q.name, code) } }
  end
  return { queue = q.name, seq = seq, duplicate = duplicate or nil }
end

local function pub_ack(q, reply, seq, duplicate, code, message)
  if not reply then return end
  local ack = ack_of(q, seq, duplicate, code, message)
  local w = waiting_pub[reply]
  if w then
    local n = w.n
    if n then -- a batch's (M.publish_batch): its PubAcks come in its order
      local k = w.got + 1
      w.got, w.acks[k] = k, ack
      if k < n or w.publishing then return end
    end
    waiting_pub[reply], npub = nil, npub - 1
    local co = w.co
    -- a single publish that reached this queue alone gets no other
    -- answer: its wait (reply subject and table) is free for the next
    if w.one and #free_waits < FREE_MAX then w.co, free_waits[#free_waits + 1] = nil, w end
    resume(co, "error in callback", true, n and w.acks or ack)
    return
  end
  -- an actor's (puback.lua): marked as the queue's, which no one else can
  -- do, so that an answer of a subscriber on the same reply is not taken
  local ok, err = core.queue_puback(reply, buffer.encode(ack))
  if not ok then require("msrt").log("warn", tostring(err)) end
end

-- Times out the durable publishes whose PubAck did not come in time
-- (never early: checked against the monotonic clock; late by at most the
-- sweep's 50 ms). Runs only while some wait.
local function sweep_waits()
  local t, late = now_ns(), {}
  for reply, w in pairs(waiting_pub) do
    -- (a batch still publishing is not waiting here: it may be waiting
    -- for room, and looks at its PubAcks when done)
    if w.deadline <= t and not w.publishing then late[#late + 1] = reply end
  end
  for _, reply in ipairs(late) do
    local w = waiting_pub[reply]
    waiting_pub[reply], npub = nil, npub - 1
    resume(w.co, "error in callback", false, core.error("timeout",
      ("no PubAck from a durable queue for \"%s\" within %d ms"):format(w.subject, w.timeout)))
  end
  if npub == 0 then sweep:close() sweep = nil end -- no handle left while nothing waits
end

-- A durable publish's wait for its PubAck(s): the reply subject of this
-- host's (random prefix, a counter) its messages carry, and w (what
-- pub_ack and the sweep resume), registered. @return reply, w | nil, err
local function new_wait(subject, opts, w)
  local reply = w.reply
  if not reply then
    if not pub_prefix then
      local token, terr = core.token()
      if not token then return nil, terr end
      pub_prefix = "_QPUB." .. token
    end
    ids.pub = (ids.pub or 0) + 1
    reply = pub_prefix .. "." .. ids.pub
    w.reply = reply
  end
  local timeout = opts.timeout_ms or 5000
  w.co, w.deadline, w.subject, w.timeout = coroutine.running(), now_ns() + timeout * 1e6, subject, timeout
  waiting_pub[reply], npub = w, npub + 1
  if not sweep then
    sweep = uv.new_timer()
    sweep:start(50, 50, sweep_waits)
  end
  return reply, w
end

local function no_queue(subject)
  return core.error("no_responders", ("no durable queue captures \"%s\""):format(subject))
end

--- msrt.publish(subject, data, {durable = true}) from a hub coroutine:
-- published with a reply subject of its own, waiting (yielding) for the
-- capturing queue's PubAck, handed over directly by its flush.
-- @return the PubAck | nil, err
function M.publish(subject, data, opts)
  hub.check_wait("msrt.publish")
  local nf = #free_waits
  local fw = free_waits[nf]
  if fw then free_waits[nf] = nil end
  local reply, w = new_wait(subject, opts, fw or {})
  if not reply then return nil, w end
  w.one = false -- (until the publish says it reached one endpoint)
  -- opts as given: hub.publish reads neither durable nor opts.reply when
  -- handed a reply. Through the FFI: LuaJIT compiles this path (its trace
  -- stitches across the yield below), and the C API's call made the
  -- payload a Lua string first (64 publishers: the PubAcks and the
  -- publishes they resume ~95-115 -> ~75-90 us per flush of 64)
  local n, err = hub.publish(subject, data, opts, reply, w.timeout)
  if not n or n == 0 then
    waiting_pub[reply], npub = nil, npub - 1
    -- (an error may come after some endpoint took the message: then its
    -- reply is never reused)
    if n == 0 and nf <= FREE_MAX then w.co, free_waits[#free_waits + 1] = nil, w end
    return nil, err or no_queue(subject)
  end
  w.one = n == 1
  local ok, ack = coroutine.yield()
  if not ok then return nil, ack end
  if ack.error then return nil, core.error(ack.error.code, ack.error.message) end
  return ack
end

--- msrt.publish_batch(subject, list, {durable = true}) from a hub
-- coroutine: list's items published in order with one reply subject, and
-- one wait for all their PubAcks (JetStream's async publish window: many
-- in flight, then one wait). @return the list of PubAcks, in list's order
-- (a message the queue refused: {error = err}) | nil, err
function M.publish_batch(subject, list, opts)
  hub.check_wait("msrt.publish_batch")
  local n = #list
  if n == 0 then return {} end
  local hdr, herr = hub.encode_headers(opts.headers) -- once for the batch
  if hdr == nil then return nil, herr end
  local reply, w = new_wait(subject, opts, { n = n, got = 0, acks = {}, publishing = true })
  if not reply then return nil, w end
  local perr
  for i = 1, n do
    local c, err = hub.publish(subject, list[i], opts, reply, w.timeout, hdr)
    if not c or c == 0 then -- not published: the ones before are waited for
      perr = err or no_queue(subject)
      w.n = i - 1
      break
    end
  end
  w.publishing = nil
  local acks
  if w.got >= w.n then -- (all PubAcks came while it published, or none will)
    waiting_pub[reply], npub = nil, npub - 1
    if w.n == 0 then return nil, perr end
    acks = w.acks
  else
    local ok, a = coroutine.yield()
    if not ok then return nil, a end
    acks = a
  end
  for i = 1, n do
    local a = acks[i]
    if not a then acks[i] = { error = perr }
    elseif a.error then acks[i] = { error = core.error(a.error.code, a.error.message) } end
  end
  return acks
end

local deliver, start, finish
-- q.store:flush_state()'s (and flush_run's) answer for a flush that is
-- done, its outcome waiting for flush_end (queue.h msrt_queue_flush_state)
local FLUSH_DONE = 2

-- A flush: its transaction runs on the queue's writer thread (queue.h
-- msrt_queue_flush_begin) while the hub goes on; one is in flight at a
-- time (q.flight), and what comes meanwhile (intake, acks) waits for the
-- next one, begun as soon as this one's outcome is in (finish).
function flush(q)
  q.scheduled = false
  if q.closed then return end
  if q.flight then
    -- run here when the writer has not begun it (a busy machine: the hub
    -- would wait for the writer's turn with nothing to do); its
    -- completion item (lost only when the hub's inbox refused it) is not
    -- waited for when the outcome is there
    if q.store:flush_run() == FLUSH_DONE then finish(q) else q.want = true end
    return
  end
  start(q)
end

-- What a flush that applied nothing leaves: the picks go back (first in
-- line), the acks and dead letters wait for the next flush, the intake
-- was refused (its publishers told); another try after 100 ms.
local function failed(q, picks, aseq, dead, res, err)
  for i = #picks, 1, -1 do
    local c = picks[i].consumer
    if not c.stopped then c.pending = c.pending - 1 end
    unread(q, picks[i].seq)
  end
  for i, s in ipairs(q.acks) do aseq[#aseq + 1] = s q.acks[i] = nil end
  q.acks = aseq
  for _, d in ipairs(q.dead) do dead[#dead + 1] = d end
  q.dead = dead
  if res then
    local replies, codes = res.reply, res.code
    for i = 1, res.n do pub_ack(q, replies[i], 0, nil, codes[i], err.message) end
  end
  if not q.failing then
    q.failing = true
    require("msrt").log("error", tostring(err))
    announce(q, { event = "store_failed", error = err.message })
  end
  if not q.closed and (#q.acks > 0 or #dead > 0 or #picks > 0) then
    q.flush_timer:start(core.timeout_ms(math.max(q.commit_ms, 100)), 0, q.on_flush)
    q.scheduled = true
  end
end

-- Begin a flush of what this turn has (nothing to write: none). open:
-- its intake is taken at q.store:flush_seal() (queue.h
-- msrt_queue_flush_open), what publishers about to be resumed publish.
function start(q, open)
  local picks = plan(q)
  local aseq, dead = q.acks, q.dead -- (replaced, not emptied)
  if #picks == 0 and #aseq == 0 and #dead == 0 and q.store:intake() == 0 then return end
  local dseq, xseq = {}, {}
  for i, p in ipairs(picks) do dseq[i] = p.seq end
  for i, d in ipairs(dead) do xseq[i] = d.seq end
  -- a dead letter is read before its row goes
  local letters = {}
  for i, d in ipairs(dead) do letters[i] = q.store:get(d.seq) end
  -- with nothing older waiting, new messages go straight to consumers
  -- with room, counted delivered in this same transaction (room counts
  -- the deliveries of the flush before, handed out after this begins)
  local room = 0
  if #q.retry == 0 and q.head > q.tail then
    for _, c in ipairs(q.consumers) do room = room + (c.max_ack_pending - c.pending) end
  end
  q.acks, q.dead, q.want = {}, {}, false
  local ok, err = q.store:flush_begin(dseq, aseq, xseq, room, open)
  if not ok then return failed(q, picks, aseq, dead, nil, err) end
  q.flight = { picks = picks, aseq = aseq, dead = dead, letters = letters, room = room }
end

-- The dead letters of a committed flush: published (when the queue has a
-- dead_letter subject) and announced.
local function bury(q, dead, letters)
  for i, d in ipairs(dead) do
    q.delivered[d.seq] = nil
    local m = letters[i]
    if q.dead_letter and m then
      local h = m.hdr and headers.decode(m.hdr) or {}
      h["Msrt-Dead-Reason"] = d.reason
      h["Msrt-Queue"] = q.name
      h["Msrt-Seq"] = tostring(d.seq)
      hub.publish(q.dead_letter, data_of(m.flags, m.payload), { headers = h })
    end
    announce(q, { event = "dead_letter", seq = d.seq, reason = d.reason, subject = m and m.subject })
  end
end

-- The flush in flight's outcome (waited for when it still runs): the
-- books first, then the PubAcks (publishers resume and publish the next
-- messages), then the next flush begins, and only then are this one's
-- messages made Lua values and handed to consumers, so the writer commits
-- the next while the hub delivers these.
function finish(q)
  local f = q.flight
  q.flight = nil
  -- the messages' own columns later (res.view, lqueue.c l_flush_end):
  -- what comes before the next flush begins is what that flush waits for
  local ok, err, res, evicted = q.store:flush_end(true)
  local picks, aseq, dead = f.picks, f.aseq, f.dead
  if not ok then
    if res.view then res.view:fields(res) end -- (their messages released now)
    return failed(q, picks, aseq, dead, res, err)
  end
  q.failing = false
  for _, s in ipairs(aseq) do q.delivered[s] = nil end
  bury(q, dead, f.letters)
  for _, s in ipairs(evicted) do
    q.delivered[s], q.delayed[s] = nil, nil
    local d = q.inflight[s]
    if d then q.inflight[s] = nil d._c.pending = d._c.pending - 1 end
  end
  -- the outcome of each intake message, by column (lqueue.c l_flush_end)
  local direct, to, nd, room = {}, {}, 0, f.room
  local seqs, replies, codes, dups = res.seq, res.reply, res.code, res.duplicate
  for i = 1, res.n do
    local seq, dup, code = seqs[i], dups[i], codes[i]
    if seq > 0 and not dup and not code then
      if room > 0 then -- stored as delivered once (queue.h deliver_new)
        room = room - 1
        q.delivered[seq] = 1
        local c = pick_consumer(q)
        if c then
          c.pending = c.pending + 1
          nd = nd + 1
          direct[nd], to[nd] = i, c
        else -- its consumer stopped meanwhile: again, counted
          q.retry[#q.retry + 1] = seq
        end
      else
        q.tail = q.tail + 1
        q.ready[q.tail] = seq
        q.delivered[seq] = 0
      end
    end
  end
  local later, back = {}, {}
  for _, p in ipairs(picks) do
    local n, c = q.delivered[p.seq], p.consumer
    if n then q.delivered[p.seq] = n + 1 end
    if c.stopped then -- its consumer stopped meanwhile: first in line again
      if n then back[#back + 1] = p.seq end
    elseif n then
      later[#later + 1] = p
    else
      c.pending = c.pending - 1
    end
  end
  for i = #back, 1, -1 do unread(q, back[i]) end
  -- the next flush begins before the PubAcks: its transaction opens and
  -- applies its acks and deliveries on the writer while they run, and
  -- takes the intake, which the resumed publishers fill, once sealed
  local go = not q.closed and not q.hold and (q.want or q.commit_ms == 0)
  if go then start(q, true) end
  for i = 1, res.n do pub_ack(q, replies[i], seqs[i], dups[i], codes[i]) end
  if q.flight then q.store:flush_seal()
  elseif go and not q.closed and not q.hold then start(q) end
  if res.view then res.view:fields(res) end
  local t = now_ns()
  for k, i in ipairs(direct) do deliver(q, to[k], seqs[i], t, res, i) end
  for _, p in ipairs(later) do deliver(q, p.consumer, p.seq, t) end
  M.run_batches(q)
  if not q.flight and (#q.retry > 0 or q.head <= q.tail) and pick_consumer(q) then schedule(q) end
  arm(q)
end

---------------------------------------------------------------------------
-- consumers

local Msg = {}
Msg.__index = Msg

-- A message's headers: a batch's messages share their headers' bytes
-- (lqueue.c's put_str hands the same string again), so a string seen
-- again is decoded once more, kept unchanged, and each message gets a copy
-- of it (a consumer may change its table); a string seen once (messages
-- published one by one each have their own) is decoded for its message
-- alone. Decoding each (two substrings and a table; LuaJIT leaves
-- decode's loop uncompiled inside deliver's trace) cost the hub ~1,000
-- instructions a message more than a copy does.
local clone = require "table.clone" -- LuaJIT's (OpenResty): a shallow copy
local last_hdr, last_headers
local function headers_of(hdr)
  if hdr ~= last_hdr then
    last_hdr, last_headers = hdr, nil
    return headers.decode(hdr)
  end
  if not last_headers then last_headers = headers.decode(hdr) end
  return clone(last_headers)
end

-- The delivery this message stands for, while it is still the consumer's.
local function current(msg)
  local q = msg._q
  local d = q.inflight[msg.seq]
  if d and d._token == msg._token then return q, d end
  return nil, core.error("not_found", ("message %d of queue \"%s\" is no longer yours (acknowledged, redelivered or gone)"):format(msg.seq, q.name))
end

local function release(q, seq, d)
  q.inflight[seq] = nil
  d._c.pending = d._c.pending - 1
end

--- Acknowledge: the message is done and leaves the queue (at the next
-- commit). @return true | nil, err (not_found: no longer this consumer's)
function Msg:ack()
  local q, d = current(self)
  if not q then return nil, d end
  release(q, self.seq, d)
  q.acks[#q.acks + 1] = self.seq
  schedule(q)
  return true
end

--- Negative acknowledgement: redeliver, after delay_ms (default 0).
function Msg:nak(delay_ms)
  local q, d = current(self)
  if not q then return nil, d end
  release(q, self.seq, d)
  if delay_ms and delay_ms > 0 then
    q.delayed[self.seq] = now_ns() + delay_ms * 1e6
    arm(q)
  else
    unread(q, self.seq)
  end
  schedule(q)
  return true
end

--- Work in progress: the ack wait starts again.
function Msg:in_progress()
  local q, d = current(self)
  if not q then return nil, d end
  d._deadline = now_ns() + q:ack_wait_ns(d._n)
  arm(q)
  return true
end

--- Terminate: never redeliver; the message goes to the dead letter
-- subject (when the queue has one) with the reason, and is announced.
function Msg:term(reason)
  local q, d = current(self)
  if not q then return nil, d end
  release(q, self.seq, d)
  q.dead[#q.dead + 1] = { seq = self.seq, reason = "terminated: " .. tostring(reason or "no reason given") }
  schedule(q)
  return true
end

-- t: now (ns), the flush's; the message is res's i-th (the flush's
-- results, by column) when given, else read from the store.
function deliver(q, c, seq, t, res, i)
  local subject, payload, hdr, flags, prio, text
  if res then
    subject, payload, hdr, flags, prio = res.subject[i], res.payload[i], res.hdr[i], res.flags[i], res.priority[i]
    text = res.text[i] -- a string payload, decoded already
  else
    local m, err = q.store:get(seq)
    if not m then -- unreadable: counted a delivery, tried again after the wait
      require("msrt").log("error", tostring(err))
      release(q, seq, { _c = c })
      q.delayed[seq] = t + q:ack_wait_ns(1)
      return
    end
    subject, payload, hdr, flags, prio = m.subject, m.payload, m.hdr, m.flags, m.priority
  end
  q.tokens = q.tokens + 1
  local n = q.delivered[seq]
  local ok, data = true, text
  if not text then ok, data = pcall(data_of, flags, payload) end
  -- the message is also its delivery's record in q.inflight (one table a
  -- delivery, not two): _c its consumer, _token, _n its delivery count,
  -- _deadline its ack deadline (ns); current() checks the token
  local msg = setmetatable({ _q = q, _token = q.tokens, _c = c, _n = n,
    _deadline = t + q:ack_wait_ns(n), seq = seq, queue = q.name,
    subject = subject, data = ok and data or payload, delivered = n,
    headers = hdr and headers_of(hdr) or nil, priority = prio }, Msg)
  q.inflight[seq] = msg
  c.deliver(msg)
end

-- The ack wait of a delivery: backoff[n] (JetStream's BackOff: the wait
-- before the n-th redelivery) when given, else ack_wait_ms.
local function ack_wait_ns(q, n)
  local b = q.backoff
  if b and #b > 0 then return b[math.min(n, #b)] * 1e6 end
  return q.ack_wait_ms * 1e6
end

-- Register a consumer c ({deliver = fn(msg), max_ack_pending = n}) on q.
-- Returns its stop(): the messages it holds go back at once, first in line.
local function add_consumer(q, c)
  c.pending = 0
  q.consumers[#q.consumers + 1] = c
  schedule(q)
  return function()
    for i, x in ipairs(q.consumers) do
      if x == c then table.remove(q.consumers, i) break end
    end
    local mine = {}
    for seq, d in pairs(q.inflight) do
      if d._c == c then mine[#mine + 1] = seq end
    end
    table.sort(mine)
    for i = #mine, 1, -1 do
      q.inflight[mine[i]] = nil
      unread(q, mine[i])
    end
    c.pending, c.stopped = 0, true
    schedule(q)
    arm(q)
  end
end

-- The SQLite store's side of what consumers call (queue_js.lua has the
-- JetStream store's).
local SQL = { Msg = Msg, add_consumer = add_consumer, wake = function(q)
  -- an MSRT_IN_QUEUE item: intake came, or the flush in flight is done
  if q.flight and q.store:flush_state() == FLUSH_DONE then finish(q) else schedule(q) end
end }

local function need(name)
  local q = queues[name]
  if q then return q end
  return nil, core.error("not_found", ("no queue \"%s\" (declare it with msrt.queue first)"):format(name))
end

-- Hub consumers' callbacks run on coroutines kept for reuse (making and
-- collecting one per message was a tenth of a durable message's cost): a
-- worker whose callback returned waits in `idle` for the next one; one
-- whose callback yielded stays with what it waits on and comes back to
-- `idle` when the callback is done. A resume without RUN (someone's stale
-- wake) leaves an idle worker idle.
local idle, RUN, IDLE_MAX = {}, {}, 64

local function run_callback(q, fn, msg)
  local ok, e = pcall(fn, msg)
  if not ok then
    require("msrt").log("error", ("consumer of queue \"%s\" failed message %d: %s"):format(q.name, msg.seq, tostring(e)))
    msg:nak() -- not_found when it is no longer the consumer's
  end
end

-- run(q, fn, arg) on a coroutine of pool (one for each runner), made
-- when none is idle; it goes back to the pool when run returns.
local function worker(_, q, fn, arg, run, pool)
  local me = coroutine.running()
  while true do
    run(q, fn, arg)
    if #pool >= IDLE_MAX then return end
    pool[#pool + 1] = me
    local go
    repeat go, q, fn, arg = coroutine.yield() until go == RUN
  end
end

local function run_on(pool, run, q, fn, arg)
  local co = pool[#pool]
  if co then pool[#pool] = nil else co = coroutine.create(worker) end
  local ok, e = co_resume(co, RUN, q, fn, arg, run, pool)
  if not ok then core.uncaught(co, "error in queue consumer", e) end
end

-- A batch of messages handed to a batch consumer's fn (M.consume with
-- opts.batch): an array of the queue's messages, each with its own ack,
-- nak, in_progress and term, and ack() for all it still holds.
local Batch = {}
Batch.__index = Batch

--- Acknowledge every message of the batch that is still this consumer's
-- (one call for the batch: JetStream's pull consumers ack each message;
-- here they go to the store in the same commit).
-- @return how many were acknowledged (the others were no longer the
--   consumer's: acked, nak'd or redelivered already)
function Batch:ack()
  local n = 0
  for i = 1, #self do
    if self[i]:ack() then n = n + 1 end
  end
  return n
end

local function run_batch(q, fn, batch)
  local ok, e = pcall(fn, batch)
  if not ok then
    require("msrt").log("error", ("consumer of queue \"%s\" failed a batch of %d: %s"):format(q.name, #batch, tostring(e)))
    for i = 1, #batch do batch[i]:nak() end -- not_found for those no longer held
  end
end

local idle_batch = {} -- batch consumers' idle workers (idle's, for batches)

-- The messages a callback consumer was handed during one flush, run one
-- after another on one worker while each callback returns (a resume of
-- a worker per message was ~10% of a durable message's cost on the hub);
-- when one yields, run_batches goes on with the rest on another worker,
-- so each still starts as soon as the one before it returned or yielded.
-- A consumer stopped meanwhile is handed nothing more (its messages went
-- back to the queue).
local function run_list(q, fn, l)
  local c = l.c
  while true do
    local i = l.i
    local msg = l[i]
    if not msg or c.stopped then return end
    l.i = i + 1
    run_callback(q, fn, msg)
  end
end

-- The messages a consumer was handed during a flush (or a JetStream
-- wake) go to its fn once the flush is done: a batch consumer's at most
-- c.batch_max at once, a callback consumer's one by one (run_list): the
-- stores call this after handing out.
function M.run_batches(q)
  for _, c in ipairs(q.consumers) do
    local b = c.batch
    if b and #b > 0 then
      c.batch, c.nb = setmetatable({}, Batch), 0
      run_on(idle_batch, run_batch, q, c.fn, b)
    end
    local l = c.list
    if l then
      c.list = nil
      repeat run_on(idle, run_list, q, c.fn, l) until not l[l.i] or c.stopped
    end
  end
end

--- A hub callback consumer: fn(msg) runs as a coroutine per message, at
-- most max_ack_pending unacknowledged at once. An error in fn naks the
-- message at once (the consumer failed it). With opts.batch = N, fn(msgs)
-- runs as a coroutine per batch of up to N messages (the messages one
-- commit hands this consumer), msgs:ack() acknowledging them all; an
-- error in fn naks the batch's messages it still holds.
function M.consume(name, fn, opts)
  local q, err = need(name)
  if not q then return nil, err end
  local c = { max_ack_pending = opts.max_ack_pending or 1000 }
  if opts.batch then
    local max = opts.batch
    c.fn, c.batch, c.nb = fn, setmetatable({}, Batch), 0
    function c.deliver(msg) -- (c.nb: #c.batch, counted)
      local k = c.nb + 1
      c.batch[k], c.nb = msg, k
      if k >= max then M.run_batches(q) end
    end
  else
    c.fn = fn
    function c.deliver(msg) -- (run by M.run_batches: run_list)
      local l = c.list
      if not l then l = { i = 1, c = c } c.list = l end
      l[#l + 1] = msg
    end
  end
  return { stop = q.impl.add_consumer(q, c) }
end

-- Acks from actors and processes: an op on the delivery (queue, seq,
-- token) it names; one that is no longer current is ignored (as
-- JetStream ignores a late ack).
local OPS = { ack = Msg.ack, nak = Msg.nak, in_progress = Msg.in_progress, term = Msg.term }
local function apply_op(q, seq, token, op, arg)
  if not q or not OPS[op] then return end
  local fn = q.impl.Msg[op]
  fn(setmetatable({ _q = q, seq = seq, _token = token }, q.impl.Msg), arg)
end

-- The hub's subscription for actors' acks: "_QACK.<random>.<queue>.<seq>.<token>"
-- with data {op = ..., delay_ms = ..., reason = ...}; the random part,
-- per host, keeps other parties from naming a delivery they were not given.
local ack_prefix
local function ack_subject(q, seq, token)
  if not ack_prefix then
    local t = assert(core.token())
    ack_prefix = "_QACK." .. t
    assert(hub.subscribe(ack_prefix .. ".>", function(m)
      local name, seq_s, tok = m.subject:sub(#ack_prefix + 2):match("^([^.]+)%.(%d+)%.(%d+)$")
      local d = type(m.data) == "table" and m.data or { op = m.data }
      if name then
        apply_op(queues[name], tonumber(seq_s), tonumber(tok), d.op, d.op == "term" and d.reason or d.delay_ms)
      end
    end, {}))
  end
  return ("%s.%s.%d.%d"):format(ack_prefix, q.name, seq, token)
end

--- An actor instance as a consumer: each message is published to its
-- private subject (delivery headers Msrt-Queue, Msrt-Seq, Msrt-Delivered;
-- reply the ack subject ctx:ack and the others publish to). Returns
-- stop(), for the instance's exit (its messages redelivered at once).
function M.consume_actor(name, subject, max_ack_pending)
  local q, err = need(name)
  if not q then return nil, err end
  local c = { max_ack_pending = max_ack_pending or 1 }
  function c.deliver(msg)
    local h = msg.headers or {}
    h["Msrt-Queue"], h["Msrt-Seq"], h["Msrt-Delivered"] = q.name, tostring(msg.seq), tostring(msg.delivered)
    -- nowait: a flush never waits for room in a mailbox (it would be
    -- suspended halfway); a full one gets the message again later
    local ok, perr = hub.publish(subject, msg.data, { headers = h, priority = msg.priority,
      reply = ack_subject(q, msg.seq, msg._token), nowait = true })
    if not ok or ok == 0 then -- gone or full: again after a pause
      if perr then require("msrt").log("warn", tostring(perr)) end
      msg:nak(100)
    end
  end
  return q.impl.add_consumer(q, c)
end

--- A child process as a consumer: each message is written to its stdin
-- as {"subject", "headers", "data", "queue", "seq", "delivered",
-- "token"}; the child answers on stdout with {"ack": token}, {"nak":
-- token, "delay_ms": n}, {"in_progress": token} or {"term": token,
-- "reason": s} (published on "<publish_as>.out", which the queue
-- subscribes to for it). send(data) writes a line (the handle's :send);
-- out is the child's "<publish_as>.out". Returns stop().
function M.consume_process(name, send, out, max_ack_pending)
  local q, err = need(name)
  if not q then return nil, err end
  local c = { max_ack_pending = max_ack_pending or 1 }
  function c.deliver(msg)
    local ok, serr = send { subject = msg.subject, headers = msg.headers, data = msg.data,
      queue = q.name, seq = msg.seq, delivered = msg.delivered, token = msg._token }
    if not ok then
      require("msrt").log("warn", tostring(serr))
      msg:nak(100)
    end
  end
  local sid, hid = hub.subscribe(out, function(m)
    local d = m.data
    if type(d) ~= "table" then return end
    for op in pairs(OPS) do
      local tok = tonumber(d[op])
      if tok then
        for seq, dl in pairs(q.inflight) do
          if dl._token == tok and dl._c == c then
            apply_op(q, seq, tok, op, op == "term" and d.reason or d.delay_ms)
            break
          end
        end
      end
    end
  end, {})
  local stop = q.impl.add_consumer(q, c)
  return function()
    if sid then hub.unsubscribe(sid, hid) sid = nil end
    stop()
  end
end

---------------------------------------------------------------------------
-- declaring

local function positive(v) return v == nil or (type(v) == "number" and v >= 0 and v % 1 == 0) end

--- Check a queue spec (msrt.queue documents its fields).
-- @return true | nil, err (invalid_arg naming the field)
function M.check(spec)
  local function bad(msg) return nil, core.error("invalid_arg", "msrt.queue: " .. msg) end
  if type(spec.name) ~= "string" or not spec.name:match("^[%w_%-]+$") then
    return bad("name must be one subject token of letters, digits, _ or -")
  end
  if type(spec.subjects) == "string" then spec.subjects = { spec.subjects } end
  if type(spec.subjects) ~= "table" or #spec.subjects == 0 then
    return bad("subjects must be a pattern or a list of patterns")
  end
  for _, k in ipairs { "ack_wait_ms", "max_deliver", "max_msgs", "max_bytes", "dedupe_window_ms", "max_ack_pending" } do
    if not positive(spec[k]) then return bad(k .. " must be a non-negative integer") end
  end
  if spec.ack_wait_ms == 0 then return bad("ack_wait_ms must be positive") end
  if spec.backoff ~= nil then
    if type(spec.backoff) ~= "table" then return bad("backoff must be a list of ms") end
    for _, v in ipairs(spec.backoff) do
      if type(v) ~= "number" or v <= 0 then return bad("backoff must be a list of positive ms") end
    end
  end
  if spec.discard ~= nil and spec.discard ~= "old" and spec.discard ~= "new" then
    return bad('discard must be "old" or "new"')
  end
  if spec.dead_letter ~= nil and type(spec.dead_letter) ~= "string" then
    return bad("dead_letter must be a subject")
  end
  if spec.store ~= nil and (type(spec.store) ~= "string" or not (spec.store == "jetstream" or spec.store:match("^sqlite:"))) then
    return bad('store must be "sqlite:PATH" or "jetstream"')
  end
  return true
end


local function store_path(spec)
  local store = spec.store or "sqlite:"
  local path = store:match("^sqlite:(.*)$")
  if not path then return nil, ("store must be \"sqlite:PATH\" (got %q)"):format(store) end
  if path == "" then
    local dir = M.data_dir() .. "/queues"
    mkdirs(dir)
    path = dir .. "/" .. spec.name .. ".db"
  end
  return path
end

local function load(q)
  local after = 0
  while true do
    local seqs, counts = q.store:scan(after, 10000)
    if not seqs then return nil, counts end
    if #seqs == 0 then return true end
    for i, s in ipairs(seqs) do
      q.delivered[s] = counts[i]
      -- delivered before a crash and never acked: due again at once
      if counts[i] > 0 then q.retry[#q.retry + 1] = s
      else q.tail = q.tail + 1 q.ready[q.tail] = s end
    end
    after = seqs[#seqs]
  end
end

--- Declare (or open again) a queue; spec checked by init.lua.
function M.declare(spec)
  if queues[spec.name] then
    return nil, core.error("invalid_arg", ("queue \"%s\" is declared already"):format(spec.name))
  end
  local ok, err = hub.start()
  if not ok then return nil, err end
  if spec.store == "jetstream" then
    ids.wake = ids.wake + 1
    return require("msrt.queue_js").declare(spec, ids.wake, {
      pub_ack = function(q, r) pub_ack(q, r.reply, r.seq, r.duplicate, r.code, r.message) end,
      announce = announce, pick_consumer = pick_consumer, arm = arm,
      run_batches = function(q) M.run_batches(q) end,
      current = current, ack_wait_ns = ack_wait_ns, data_of = data_of,
      register = function(q) queues[q.name], by_wake[q.wake] = q, q end,
      unregister = function(q) queues[q.name], by_wake[q.wake] = nil, nil end })
  end
  local path, perr = store_path(spec)
  if not path then return nil, core.error("invalid_arg", perr) end
  local commit_ms, sync_full, spin_us = settings()
  ids.wake = ids.wake + 1
  local store, oerr = core.queue_open {
    name = spec.name, path = path, sync_full = sync_full,
    max_msgs = spec.max_msgs, max_bytes = spec.max_bytes, discard = spec.discard,
    dedupe_window_ms = spec.dedupe_window_ms or 120000, wake_id = ids.wake,
    spin_us = spin_us,
  }
  if not store then return nil, oerr end
  local q = {
    name = spec.name, path = path, store = store, wake = ids.wake, impl = SQL,
    commit_ms = commit_ms, sync = sync_full and "full" or "normal",
    ack_wait_ms = spec.ack_wait_ms or 30000, max_deliver = spec.max_deliver or 0,
    backoff = spec.backoff, dead_letter = spec.dead_letter,
    ready = {}, head = 1, tail = 0, retry = {}, inflight = {}, delayed = {},
    delivered = {}, consumers = {}, rr = 0, acks = {}, dead = {},
    tokens = 0, sids = {}, ack_wait_ns = ack_wait_ns,
    flush_timer = uv.new_timer(), tick_timer = uv.new_timer(), flush_idle = uv.new_idle(),
  }
  -- made once: a closure made on the per-message path (schedule, arm)
  -- stops LuaJIT compiling it (FNEW is not compiled)
  q.on_flush = function() flush(q) end
  q.on_idle = function() q.flush_idle:stop() flush(q) end
  q.on_tick = function() tick(q) end
  local lok, lerr = load(q)
  if not lok then store:close() return nil, lerr end
  for _, subject in ipairs(spec.subjects) do
    local sid, serr = store:subscribe(subject)
    if not sid then
      for _, s in ipairs(q.sids) do core.unsubscribe(s) end
      store:close()
      return nil, serr
    end
    q.sids[#q.sids + 1] = sid
  end
  queues[q.name], by_wake[q.wake] = q, q
  return q
end

--- Close a queue: it captures nothing more; what it stored stays stored.
function M.close(name)
  local q = queues[name]
  if not q then return nil end
  if q.impl ~= SQL then
    queues[name], by_wake[q.wake] = nil, nil
    q.impl.close(q)
    return true
  end
  for _, s in ipairs(q.sids) do core.unsubscribe(s) end
  -- the flush in flight is waited for and its outcome handed out, then
  -- what is left (this turn's acks) committed, and no flush after it
  q.hold = true
  if q.flight then finish(q) end
  start(q)
  if q.flight then finish(q) end
  q.closed = true
  queues[name], by_wake[q.wake] = nil, nil
  for _, t in ipairs { q.flush_timer, q.tick_timer, q.flush_idle } do
    if not t:is_closing() then t:close() end
  end
  q.store:close()
  return true
end

function M.get(name) return queues[name] end

-- The fields a reload applies to a running queue; the others need a restart.
local LIVE = { ack_wait_ms = 30000, max_deliver = 0, backoff = false, dead_letter = false }

--- Read a queue policy file: a Lua file returning a queue spec, run as a
-- policy file (msrt.policy: sandboxed, bounded) and checked.
-- @return spec | nil, err (not_found, io, syntax, bad_config naming the file)
function M.load_file(path)
  local spec, source = require("msrt.policy").load_file(path)
  if spec == nil and type(source) == "table" then return nil, source end
  if type(spec) ~= "table" then
    return nil, core.error("bad_config", ("%s:0: a queue file returns a queue spec, not %s"):format(path, type(spec)), { file = path })
  end
  local ok, err = M.check(spec)
  if not ok then return nil, core.error("bad_config", ("%s:0: %s"):format(path, err.message), { file = path }) end
  return spec
end

--- Declare the queue a policy file returns, and reload it when the file
-- changes: the LIVE fields apply to the running queue, the others are
-- listed as needing a restart. @return the queue | nil, err
function M.declare_file(path)
  local spec, err = M.load_file(path)
  if not spec then return nil, err end
  local q, qerr = M.declare(spec)
  if not q then return nil, qerr end
  local name = spec.name
  require("msrt.reload").register(path, "queue", M.load_file, function(new)
    local cur = queues[name]
    if not cur or new.name ~= name then
      return nil, core.error("bad_config", ("%s: the file now declares \"%s\", not \"%s\" (a restart declares it)"):format(path, tostring(new.name), name))
    end
    local restart = {}
    -- a JetStream queue's settings are its stream's and consumer's: all
    -- of them need a restart (which updates both)
    local live = cur.impl == SQL and LIVE or {}
    for k, v in pairs(new) do
      if live[k] == nil and k ~= "name" and require("msrt.json").encode(v) ~= require("msrt.json").encode(spec[k]) then
        restart[#restart + 1] = k
      end
    end
    for k, default in pairs(live) do
      local v = new[k]
      if v == nil then v = default or nil end
      cur[k] = v
    end
    if cur.impl == SQL then arm(cur) end
    for k in pairs(live) do spec[k] = new[k] end -- the next reload compares with what is in force
    table.sort(restart)
    return true, #restart > 0 and restart or nil
  end)
  return q
end

--- Delete every stored message of a queue (ctl queue NAME purge); what
-- consumers hold is no longer theirs (their acks are not_found).
-- @return how many | nil, err
function M.purge(name)
  local q = queues[name]
  if q.impl ~= SQL then return nil, core.error("invalid_arg", ("queue \"%s\" is stored in JetStream: use JetStream's own tools for its messages"):format(name)) end
  -- the flush in flight's outcome first (its messages are purged too),
  -- and none begun after it until the purge is done
  q.hold = true
  if q.flight then finish(q) end
  q.hold = false
  local n, err = q.store:purge()
  if not n then schedule(q) return nil, err end
  for _, d in pairs(q.inflight) do d._c.pending = d._c.pending - 1 end
  q.inflight, q.delayed, q.delivered, q.retry = {}, {}, {}, {}
  q.ready, q.head, q.tail, q.acks, q.dead = {}, 1, 0, {}, {}
  arm(q)
  announce(q, { event = "purged", count = n })
  return n
end

--- Stored messages with seq > after, at most limit (default 1000), in
-- order, without delivering them (JetStream's direct get): {seq, subject,
-- data, headers, delivered}. @return list | nil, err
function M.messages(name, after, limit)
  local q = queues[name]
  if q.impl ~= SQL then return nil, core.error("invalid_arg", ("queue \"%s\" is stored in JetStream: use JetStream's own tools for its messages"):format(name)) end
  local seqs, counts = q.store:scan(after or 0, limit or 1000)
  if not seqs then return nil, counts end
  local out = {}
  for i, seq in ipairs(seqs) do
    local m, err = q.store:get(seq)
    if not m then return nil, err end
    local ok, data = pcall(data_of, m.flags, m.payload)
    out[#out + 1] = { seq = seq, subject = m.subject, data = ok and data or m.payload,
      headers = m.hdr and headers.decode(m.hdr) or nil, delivered = counts[i] }
  end
  return out
end

--- The first n stored messages of a queue (ctl queue NAME peek N):
-- {seq, subject, delivered, state, bytes, preview}.
function M.peek(name, n)
  local q = queues[name]
  if q.impl ~= SQL then return nil, core.error("invalid_arg", ("queue \"%s\" is stored in JetStream: use JetStream's own tools for its messages"):format(name)) end
  local seqs, counts = q.store:scan(0, n)
  if not seqs then return nil, counts end
  local out = {}
  for i, seq in ipairs(seqs) do
    local m = q.store:get(seq)
    if m then
      local state = q.inflight[seq] and "ack_pending" or q.delayed[seq] and "delayed" or "pending"
      local ok, data = pcall(data_of, m.flags, m.payload)
      local preview = ok and (type(data) == "string" and data or require("msrt.json").encode(data)) or "?"
      preview = preview:sub(1, 80):gsub("[%c]", "?")
      out[#out + 1] = { seq = seq, subject = m.subject, delivered = counts[i], state = state,
        bytes = #m.payload + #(m.hdr or ""), preview = preview }
    end
  end
  return out
end

local sql_stats

--- Counts of every queue (ctl queues, /metrics).
function M.stats()
  local out = {}
  for name, q in pairs(queues) do
    out[#out + 1] = q.impl == SQL and sql_stats(name, q) or q.impl.stats(q)
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

function sql_stats(name, q)
  local s = q.store:stats()
  local ack_pending = 0
  for _ in pairs(q.inflight) do ack_pending = ack_pending + 1 end
  return { name = name, stored = s.stored, bytes = s.bytes,
    pending = s.stored - ack_pending, ack_pending = ack_pending,
    redelivered = s.redelivered, dead_lettered = s.dead_lettered,
    acked = s.acked, refused = s.refused, last_seq = s.last_seq, commits = s.commits,
    consumers = #q.consumers, path = q.path }
end

hub.on_queue(function(wake)
  local q = by_wake[wake]
  if q then q.impl.wake(q) end
end)

-- Commit what is left at shutdown (acks of the last turn).
function M.close_all()
  local names = {}
  for name in pairs(queues) do names[#names + 1] = name end
  for _, name in ipairs(names) do M.close(name) end
end

return M
