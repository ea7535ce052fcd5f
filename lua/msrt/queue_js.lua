--- Durable work queues stored in NATS JetStream (`store = "jetstream"`,
-- README "Durable work queues"; the C half is src/bridge/js.h): the
-- stream with work-queue retention and the durable pull consumer live on
-- the NATS server the host's bridge (msrt.nats) is connected to, so every
-- host bridged there shares the queue. Internal: queue.lua declares it and
-- shares its consumers (hub callbacks, actors, processes) with the SQLite
-- store; this file is what differs. Hub thread only.
--
-- What the host keeps: `inflight` (stream seq -> the delivery a local
-- consumer holds: its JetStream ack subject, its ack deadline, its
-- count). JetStream keeps the rest (what is stored, redelivery after the
-- ack wait or a nak's delay, the delivery count); the host pulls only
-- what its consumers have room for (their max_ack_pending), and a
-- delivery whose ack wait ran out here is no longer its consumer's (its
-- ack is refused with not_found, as the SQLite store's is), JetStream
-- redelivering it to whichever host pulls next.
-- @module msrt.queue_js
local core = require "msrt.core"
local hub = require "msrt.hub"
local headers = require "msrt.headers"
local uv = require "luv"

local M = {}

local OPEN_TIMEOUT_MS = 10000

local function now_ns() return uv.hrtime() end

-- queue.lua's helpers, the same for both stores (M.declare's env):
-- data_of(flags, payload), current(msg), ack_wait_ns(q, n) (JetStream's
-- BackOff rule), pick_consumer(q), pub_ack(q, r), announce(q, event)
local E

local Q = {} -- the store's functions queue.lua calls (q.impl)

local function free_room(q)
  local room = 0
  for _, c in ipairs(q.consumers) do room = room + math.max(0, c.max_ack_pending - c.pending) end
  return room
end

local function update_room(q)
  if q.store and not q.closed then q.store:room(free_room(q)) end
end

local tick
-- Re-arm the tick timer for the earliest ack deadline (queue.lua's).
local function arm(q) E.arm(q) end

-- Deliveries whose ack wait ran out: no longer their consumers' (JetStream
-- redelivers them); their room goes back to pulling.
function tick(q)
  q.tick_at = nil
  local t = now_ns()
  for seq, d in pairs(q.inflight) do
    if d._deadline <= t then
      q.inflight[seq] = nil
      d._c.pending = d._c.pending - 1
    end
  end
  update_room(q)
  arm(q)
end

local Msg = {}
Msg.__index = Msg
Q.Msg = Msg

local function release(q, seq, d)
  q.inflight[seq] = nil
  d._c.pending = d._c.pending - 1
  update_room(q)
end

local function send(q, d, op, arg)
  local ok, err = q.store:ack(d.ack, op, arg)
  if not ok then require("msrt").log("warn", tostring(err)) end
  return ok, err
end

-- The dead letter: the message with its reason, announced.
local function dead_letter(q, seq, m, reason)
  q.counts.dead_lettered = q.counts.dead_lettered + 1
  if q.dead_letter then
    local h = m.hdr and headers.decode(m.hdr) or {}
    h["Msrt-Dead-Reason"], h["Msrt-Queue"], h["Msrt-Seq"] = reason, q.name, tostring(seq)
    hub.publish(q.dead_letter, E.data_of(m.flags, m.payload), { headers = h })
  end
  E.announce(q, { event = "dead_letter", seq = seq, reason = reason, subject = m.subject })
end

--- Acknowledge (JetStream +ACK). @return true | nil, err (not_found)
function Msg:ack()
  local q, d = E.current(self)
  if not q then return nil, d end
  release(q, self.seq, d)
  q.counts.acked = q.counts.acked + 1
  return send(q, d, "ack")
end

--- Redeliver after delay_ms (JetStream -NAK with its delay).
function Msg:nak(delay_ms)
  local q, d = E.current(self)
  if not q then return nil, d end
  release(q, self.seq, d)
  return send(q, d, "nak", delay_ms)
end

--- Still working (JetStream +WPI): the ack wait starts again.
function Msg:in_progress()
  local q, d = E.current(self)
  if not q then return nil, d end
  d._deadline = now_ns() + E.ack_wait_ns(q, d._n)
  arm(q)
  return send(q, d, "in_progress")
end

--- Never redeliver (JetStream +TERM); dead-lettered with the reason.
function Msg:term(reason)
  local q, d = E.current(self)
  if not q then return nil, d end
  release(q, self.seq, d)
  local ok, err = send(q, d, "term")
  dead_letter(q, self.seq, d.m, "terminated: " .. tostring(reason or "no reason given"))
  return ok, err
end

-- A message pulled: to a consumer with room; past max_deliver to the
-- dead letter (JetStream delivers it once more for that: js.h).
local function take_msg(q, ev)
  if ev.delivered > 1 then q.counts.redelivered = q.counts.redelivered + 1 end
  if q.max_deliver > 0 and ev.delivered > q.max_deliver then
    q.store:ack(ev.ack, "term")
    dead_letter(q, ev.seq, ev, ("max_deliver (%d deliveries)"):format(q.max_deliver))
    return
  end
  local old = q.inflight[ev.seq] -- held here past JetStream's ack wait
  if old then release(q, ev.seq, old) end
  local c = E.pick_consumer(q)
  if not c then q.store:ack(ev.ack, "nak") return end -- no room after all
  c.pending = c.pending + 1
  q.tokens = q.tokens + 1
  -- (the delivery's fields as queue.lua's: _c, _token, _n, _deadline)
  local d = { _c = c, _token = q.tokens, _n = ev.delivered, ack = ev.ack, m = ev,
    _deadline = now_ns() + E.ack_wait_ns(q, ev.delivered) }
  q.inflight[ev.seq] = d
  local ok, data = pcall(E.data_of, ev.flags, ev.payload)
  c.deliver(setmetatable({ _q = q, _token = d._token, seq = ev.seq, queue = q.name,
    subject = ev.subject, data = ok and data or ev.payload, delivered = ev.delivered,
    headers = ev.hdr and headers.decode(ev.hdr) or nil, priority = ev.priority }, Msg))
end

local function opened(q, ok, err)
  q.opening = nil
  local w = q.waiter
  q.waiter = nil
  if w then core.resume(w, "error in msrt.queue", ok, err) end
end

--- The hub was told the queue has events: take them all.
function Q.wake(q)
  if q.closed then return end
  for _, ev in ipairs(q.store:take()) do
    if ev.kind == "msg" then take_msg(q, ev)
    elseif ev.kind == "puback" then E.pub_ack(q, ev)
    elseif ev.kind == "ready" then opened(q, true)
    else
      local err = core.error(ev.code, ev.message)
      if q.opening then opened(q, nil, err)
      else require("msrt").log("error", tostring(err)) end
    end
  end
  E.run_batches(q)
  update_room(q)
  arm(q)
end

-- Register consumer c; its stop() naks what it holds (at once to any host).
function Q.add_consumer(q, c)
  c.pending = 0
  q.consumers[#q.consumers + 1] = c
  update_room(q)
  return function()
    for i, x in ipairs(q.consumers) do
      if x == c then table.remove(q.consumers, i) break end
    end
    for seq, d in pairs(q.inflight) do
      if d._c == c then q.inflight[seq] = nil send(q, d, "nak") end
    end
    c.pending = 0
    update_room(q)
    arm(q)
  end
end

function Q.close(q)
  for _, s in ipairs(q.sids) do core.unsubscribe(s) end
  for seq, d in pairs(q.inflight) do q.inflight[seq] = nil send(q, d, "nak") end
  q.closed = true
  if not q.tick_timer:is_closing() then q.tick_timer:close() end
  q.store:close()
  if q.forget then q.forget() end
end

-- The row of M.stats: stored, bytes, pending and last_seq are
-- JetStream's (at most a second old), ack_pending and the totals this
-- host's.
function Q.stats(q)
  local s = q.store and not q.closed and q.store:stats() or {}
  local ack_pending = 0
  for _ in pairs(q.inflight) do ack_pending = ack_pending + 1 end
  return { name = q.name, path = "jetstream", stored = s.stored or 0, bytes = s.bytes or 0,
    pending = s.pending or 0, ack_pending = ack_pending, last_seq = s.last_seq or 0,
    acked = q.counts.acked, redelivered = q.counts.redelivered,
    dead_lettered = q.counts.dead_lettered, refused = s.refused or 0,
    published = s.published or 0, duplicates = s.duplicates or 0,
    pulled = s.pulled or 0, consumers = #q.consumers }
end

--- Declare a JetStream queue on the first open bridge (msrt.nats): waits
-- (a hub coroutine) until its stream and consumer are in place, at most
-- 10 s. wake: its MSRT_IN_QUEUE id; env: queue.lua's helpers (E above)
-- and register(q) / unregister(q) (its tables by name and wake id).
-- @return q | nil, err (bad_config: no bridge, or the server refused the
--   stream or consumer; no_responders: JetStream is not enabled; timeout)
function M.declare(spec, wake, env)
  local bridge = require("msrt.nats").list()[1]
  if not bridge then
    return nil, core.error("bad_config", ("queue \"%s\": store = \"jetstream\" needs a NATS bridge (msrt.nats) opened first"):format(spec.name))
  end
  hub.check_wait("msrt.queue")
  E = env
  local store, err = core.jsq_open(bridge.box, {
    name = spec.name, subjects = spec.subjects, max_msgs = spec.max_msgs,
    max_bytes = spec.max_bytes, discard = spec.discard,
    dedupe_window_ms = spec.dedupe_window_ms or 120000,
    ack_wait_ms = spec.ack_wait_ms or 30000, max_deliver = spec.max_deliver,
    backoff = spec.backoff, max_ack_pending = spec.max_ack_pending, wake_id = wake })
  if not store then return nil, err end
  local q = { name = spec.name, store = store, impl = Q, wake = wake,
    path = "jetstream", ack_wait_ms = spec.ack_wait_ms or 30000,
    max_deliver = spec.max_deliver or 0, backoff = spec.backoff, dead_letter = spec.dead_letter,
    inflight = {}, consumers = {}, rr = 0, tokens = 0, sids = {},
    counts = { acked = 0, redelivered = 0, dead_lettered = 0 },
    tick_timer = uv.new_timer(), opening = true, waiter = coroutine.running() }
  q.on_tick = function() tick(q) end
  env.register(q)
  local function fail(e)
    env.unregister(q)
    Q.close(q)
    return nil, e
  end
  for _, subject in ipairs(spec.subjects) do
    local sid, serr = store:subscribe(subject)
    if not sid then return fail(serr) end
    q.sids[#q.sids + 1] = sid
  end
  local timer = uv.new_timer()
  timer:start(OPEN_TIMEOUT_MS, 0, function()
    if q.opening then
      opened(q, nil, core.error("timeout", ("queue \"%s\": JetStream did not make its stream within %d ms"):format(q.name, OPEN_TIMEOUT_MS)))
    end
  end)
  local ok, oerr = coroutine.yield()
  timer:close()
  if not ok then return fail(oerr) end
  q.forget = bridge:on_close(function() require("msrt.queue").close(q.name) end)
  return q
end

return M
