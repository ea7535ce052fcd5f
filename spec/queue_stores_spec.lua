-- Durable work queues on both stores (README "Durable work queues"): one
-- table of cases (durable publish with its sequence, Msg-Id dedupe, ack,
-- nak with a delay, in_progress, term, redelivery after the ack wait,
-- max_deliver to the dead letter, max_ack_pending) run against the SQLite
-- store and against JetStream (Debian's nats-server -js, started here,
-- spec/nats_server.lua); then two hosts sharing one JetStream queue.
local S = require "spec.support"
local N = require "spec.nats_server"
local H = require "spec.hosts"
local Q = require "spec.queues"
local uv = require "luv"
local msrt = require "msrt"

local nats -- the JetStream server of this file
local serial = 0

-- A store: open(name) -> a context {declare(spec), close()} for one case,
-- run in a driven coroutine. Each case gets a queue of its own name and
-- subjects (JetStream refuses streams with overlapping subjects).
local STORES = {
  sqlite = function(name)
    local dir = Q.dir()
    return {
      declare = function(spec)
        spec.store = "sqlite:" .. dir .. "/" .. name .. ".db"
        return assert(msrt.queue(spec))
      end,
      close = function() end,
    }
  end,
  jetstream = function()
    -- exports nothing: the queue's own endpoint is what stores (bridge/js.h)
    local br = assert(msrt.nats { url = nats.url, import = {}, export = {} })
    return {
      declare = function(spec)
        spec.store = "jetstream"
        local q, err = msrt.queue(spec)
        return assert(q, err and err.message)
      end,
      close = function() br:close() end,
    }
  end,
}

local recorder = Q.recorder

local function acked(q, n) return S.wait_until(function() return q.stats().acked >= n end) end

-- Each case: fn(declare, name) with declare(spec) making the case's queue
-- `name` capturing `name.>`.
local CASES = {
  { "answers a durable publish with its PubAck's sequence, stores a Msg-Id once, and hands what it stored in order", function(declare, name)
    local q = declare { ack_wait_ms = 5000 }
    local a1 = assert(msrt.publish(name .. ".one", { n = 1 }, { durable = true }))
    assert.are.same({ queue = name, seq = 1 }, a1)
    local a2 = assert(msrt.publish(name .. ".two", "x", { durable = true, headers = { ["Msg-Id"] = "k" } }))
    local a3 = assert(msrt.publish(name .. ".two", "x again", { durable = true, headers = { ["Msg-Id"] = "k" } }))
    assert.are.equal(2, a2.seq)
    assert.are.same({ queue = name, seq = 2, duplicate = true }, a3)
    local r = recorder(name, function(m) assert(m:ack()) end)
    assert.is_true(r.wait(2))
    assert.are.same({ n = 1 }, r.msgs[1].data)
    assert.are.equal(name .. ".one", r.msgs[1].subject)
    assert.are.equal(1, r.msgs[1].delivered)
    assert.are.equal("x", r.msgs[2].data)
    assert.are.equal("k", r.msgs[2].headers["Msg-Id"])
    assert.is_true(acked(q, 2))
    -- operators see it (ctl queues, /metrics)
    local ops = require "msrt.ops"
    assert.matches("\n" .. name .. " +%d+ +%d+ +0 +0 +0 +2 +1\n", ops.queues())
    assert.matches(('msrt_queue_acked_total{queue="%s"} 2'):format(name), ops.metrics_text(), 1, true)
    return q
  end },
  { "redelivers a nak'd message after its delay and one whose ack wait ran out, counting deliveries; a stale ack is not_found", function(declare, name)
    local q = declare { ack_wait_ms = 150 }
    local r = recorder(name, function(m)
      if m.data == "nak" and m.delivered == 1 then assert(m:nak(50))
      elseif m.data == "slow" and m.delivered == 1 then -- never acked: the wait runs out
      else assert(m:ack()) end
    end)
    local t0 = uv.hrtime()
    assert(msrt.publish(name .. ".a", "nak", { durable = true }))
    assert(msrt.publish(name .. ".a", "slow", { durable = true }))
    assert.is_true(r.wait(4))
    local by, second = {}, {}
    for _, m in ipairs(r.msgs) do
      by[m.data] = (by[m.data] or 0) + 1
      if by[m.data] == 2 then second[m.data] = m end
    end
    assert.are.same({ nak = 2, slow = 2 }, by)
    assert.are.equal(2, second.nak.delivered)
    assert.are.equal(2, second.slow.delivered)
    assert.is_true((uv.hrtime() - t0) / 1e6 >= 150) -- the ack wait was waited
    assert.is_true(acked(q, 2))
    assert.are.equal(2, q.stats().redelivered)
    local first_slow
    for _, m in ipairs(r.msgs) do if m.data == "slow" then first_slow = first_slow or m end end
    local stale, err = first_slow:ack()
    assert.is_nil(stale)
    assert.are.equal("not_found", err.code)
    return q
  end },
  { "keeps a message with in_progress past its ack wait, and backs off per delivery", function(declare, name)
    -- each wait 200 ms or more, each in_progress 40 ms after the last: a
    -- loaded machine has 160 ms of slack
    local q = declare { ack_wait_ms = 200, backoff = { 200, 250 } }
    local done
    local r = recorder(name, function(m)
      if m.data == "long" then
        for _ = 1, 5 do msrt.sleep(40) assert(m:in_progress()) end
        assert(m:ack())
      elseif m.delivered < 3 then -- let the backoff run out twice
      else assert(m:ack()) done = m end
    end)
    assert(msrt.publish(name .. ".a", "long", { durable = true }))
    assert(msrt.publish(name .. ".a", "backoff", { durable = true }))
    assert.is_true(S.wait_until(function() return done ~= nil end))
    local n = { long = 0, backoff = 0 }
    for _, m in ipairs(r.msgs) do n[m.data] = n[m.data] + 1 end
    assert.are.same({ long = 1, backoff = 3 }, n) -- 200 ms of work (its first wait), never redelivered
    assert.is_true(acked(q, 2))
    return q
  end },
  { "dead-letters a message after max_deliver and one terminated, with the reason, announced", function(declare, name)
    local dead = S.collector("dead." .. name)
    local events = S.collector("msrt.queue." .. name .. ".event")
    local q = declare { ack_wait_ms = 60, max_deliver = 2, dead_letter = "dead." .. name }
    recorder(name, function(m)
      if m.data == "bad" then assert(m:term("unparseable")) end
      -- "never" is never acked
    end)
    assert(msrt.publish(name .. ".a", "never", { durable = true, headers = { Trace = "t1" } }))
    assert(msrt.publish(name .. ".a", "bad", { durable = true }))
    assert.is_true(dead.wait(2))
    local by = {}
    for _, m in ipairs(dead.msgs) do by[m.data] = m.headers end
    assert.are.equal("terminated: unparseable", by.bad["Msrt-Dead-Reason"])
    assert.are.equal("max_deliver (2 deliveries)", by.never["Msrt-Dead-Reason"])
    assert.are.equal("t1", by.never.Trace)
    assert.is_true(events.wait(2))
    assert.are.equal("dead_letter", events.msgs[1].data.event)
    assert.are.equal(2, q.stats().dead_lettered)
    dead.close() events.close()
    return q
  end },
  { "holds at most max_ack_pending per consumer, and a stopped consumer's messages go to another at once", function(declare, name)
    local q = declare { ack_wait_ms = 60000 }
    local a = recorder(name, nil, { max_ack_pending = 3 })
    for i = 1, 10 do assert(msrt.publish(name .. ".x", i, { durable = true })) end
    assert.is_true(a.wait(3))
    local b = recorder(name, function(m) assert(m:ack()) end)
    assert.is_true(b.wait(7))
    assert.are.equal(3, #a.msgs) -- held, never acked: no more for a
    assert.are.equal(3, q.stats().ack_pending)
    a.consumer.stop() -- its three go to b now, not after the 60 s wait
    assert.is_true(b.wait(10))
    local seen = {}
    for _, m in ipairs(b.msgs) do seen[m.data] = m.delivered end
    for _, m in ipairs(a.msgs) do assert.are.equal(2, seen[m.data]) end
    assert.is_true(acked(q, 10))
    return q
  end },
  { "publishes a batch with a PubAck per message in order, and hands a batch consumer at most its batch, acked with one call; a raising batch is redelivered", function(declare, name)
    local q = declare { ack_wait_ms = 60000 }
    local acks = assert(msrt.publish_batch(name .. ".b", { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, { durable = true }))
    assert.are.equal(10, #acks)
    for i = 1, 10 do assert.are.same({ queue = name, seq = i }, acks[i]) end
    local dup = assert(msrt.publish_batch(name .. ".b", { "x", "y" }, { durable = true, headers = { ["Msg-Id"] = "same" } }))
    assert.are.same({ { queue = name, seq = 11 }, { queue = name, seq = 11, duplicate = true } }, dup)
    local batches = {}
    local c = assert(msrt.consume(name, function(msgs)
      batches[#batches + 1] = msgs
      if #batches == 1 then error("the first batch fails") end -- its messages nak'd
      assert.are.equal(#msgs, msgs:ack())
    end, { batch = 4, max_ack_pending = 6 }))
    assert.is_true(acked(q, 11))
    local seen = {}
    for _, b in ipairs(batches) do
      assert.is_true(#b >= 1 and #b <= 4)
      for _, m in ipairs(b) do seen[m.data] = m.delivered end
    end
    assert.are.equal(11, (function() local n = 0 for _ in pairs(seen) do n = n + 1 end return n end)())
    for _, m in ipairs(batches[1]) do assert.are.equal(2, seen[m.data]) end -- came again
    assert.are.equal(0, batches[1]:ack()) -- none of it is still held
    c.stop()
    return q
  end },
  { "refuses a durable publish with resource_exhausted at max_msgs with discard new, and takes one again once acks made room", function(declare, name)
    local q = declare { max_msgs = 2, discard = "new" }
    assert(msrt.publish(name .. ".a", 1, { durable = true }))
    assert(msrt.publish(name .. ".a", 2, { durable = true }))
    local no, err = msrt.publish(name .. ".a", 3, { durable = true })
    assert.is_nil(no)
    assert.are.equal("resource_exhausted", err.code)
    local r = recorder(name, function(m) assert(m:ack()) end)
    assert.is_true(r.wait(2))
    assert.is_true(acked(q, 2))
    assert.is_true(S.wait_until(function() -- JetStream removes acked messages as it takes the acks
      return msrt.publish(name .. ".a", 4, { durable = true }) ~= nil
    end))
    assert.is_true(r.wait(3))
    assert.are.same({ 1, 2, 4 }, { r.msgs[1].data, r.msgs[2].data, r.msgs[3].data })
    return q
  end },
  { "delivers to an actor instance, which answers with ctx:ack, ctx:nak and ctx:term, and publishes durably with ctx:publish", function(declare, name)
    local q = declare { ack_wait_ms = 60000, dead_letter = "dead." .. name }
    local done = S.collector("done." .. name .. ".>")
    local dead = S.collector("dead." .. name)
    local h = assert(S.spawn { name = "worker_" .. name, consume = name, max_ack_pending = 2,
      handle = function(ctx, msg) -- (sent to the actor as code: no upvalues)
        local qn = msg.headers["Msrt-Queue"]
        if msg.data == "nak" and msg.delivered == 1 then return assert(ctx:nak(msg, 10)) end
        if msg.data == "bad" then return assert(ctx:term(msg, "no")) end
        if msg.data == "a" then -- an actor's durable publish: the PubAck's sequence
          local ack, e = ctx:publish(qn .. ".y", "actor", { durable = true })
          if not ack then error(e.code .. ": " .. e.message) end
          ctx:publish(("done.%s.seq"):format(qn), { ack.queue, ack.seq })
        end
        ctx:publish(("done.%s.%s"):format(qn, msg.data), msg.delivered)
        assert(ctx:ack(msg))
      end })
    for _, d in ipairs { "a", "nak", "bad", "b" } do assert(msrt.publish(name .. ".x", d, { durable = true })) end
    assert.is_true(done.wait(5))
    local by = {}
    for _, m in ipairs(done.msgs) do by[m.subject:match("[^.]+$")] = m.data end
    local seq = by.seq
    by.seq = nil
    assert.are.same({ a = 1, b = 1, nak = 2, actor = 1 }, by)
    assert.are.equal(name, seq[1])
    assert.is_true(seq[2] >= 2 and seq[2] <= 5) -- stored among the four the hub published
    assert.is_true(dead.wait(1))
    assert.are.equal("terminated: no", dead.msgs[1].headers["Msrt-Dead-Reason"])
    assert.is_true(acked(q, 4))
    h:stop() h:wait()
    done.close() dead.close()
    return q
  end },
  { "writes each message with its ack token to a process, which answers on stdout; its death naks at once", function(declare, name)
    local q = declare { ack_wait_ms = 60000 }
    local log = S.file("", ".log")
    local child = S.file([[
import json, sys, os
log = open(sys.argv[1], "a")
for line in sys.stdin:
    m = json.loads(line)
    log.write("%s %s %d\n" % (sys.argv[2], m["data"], m["delivered"])); log.flush()
    if m["data"] == "die" and sys.argv[2] == "a":
        os._exit(3)
    if m["data"] == "nak" and m["delivered"] == 1:
        print(json.dumps({"nak": m["token"], "delay_ms": 5}), flush=True)
        continue
    print(json.dumps({"in_progress": m["token"]}), flush=True)
    print(json.dumps({"ack": m["token"]}), flush=True)
]], ".py")
    local a = assert(msrt.process { name = "a_" .. name, cmd = { "python3", child, log, "a" }, consume = name })
    assert(msrt.publish(name .. ".x", "one", { durable = true }))
    assert(msrt.publish(name .. ".x", "nak", { durable = true }))
    assert.is_true(acked(q, 2))
    assert(msrt.publish(name .. ".x", "die", { durable = true }))
    assert.are.equal(3, a:wait().code)
    local b = assert(msrt.process { name = "b_" .. name, cmd = { "python3", child, log, "b" }, consume = name })
    assert.is_true(acked(q, 3)) -- not after the 60 s ack wait
    local f = assert(io.open(log))
    local text = f:read("*a")
    f:close()
    assert.are.equal("a one 1\na nak 1\na nak 2\na die 1\nb die 2\n", text)
    b:stop() b:wait()
    return q
  end },
}

describe("durable queues on both stores", function()
  setup(function() nats = N.start { jetstream = true } end)
  teardown(function() if nats then nats:stop() end end)

  for _, store in ipairs { "sqlite", "jetstream" } do
    for _, case in ipairs(CASES) do
      it(store .. ": " .. case[1], function()
        S.drive(function()
          serial = serial + 1
          local name = ("q%d%s"):format(serial, store:sub(1, 1))
          local ctx = STORES[store](name)
          local ok, q = pcall(case[2], function(spec)
            spec.name, spec.subjects = name, { name .. ".>" }
            return ctx.declare(spec)
          end, name)
          if q and q.close then q.close() end
          ctx.close()
          if not ok then error(q, 0) end
        end)
      end)
    end
  end

  it("jetstream: refuses a queue without a bridge (bad_config) and on a server without JetStream (no_responders)", function()
    local plain = N.start()
    local ok, e = pcall(S.drive, function()
      local none, err = msrt.queue { name = "nobridge", subjects = "nobridge.>", store = "jetstream" }
      assert.is_nil(none)
      assert.are.equal("bad_config", err.code)
      assert.matches("needs a NATS bridge", err.message)
      local br = assert(msrt.nats { url = plain.url, import = {}, export = {} })
      assert(S.wait_until(function() return br:info().state == "connected" end))
      local q, jerr = msrt.queue { name = "nojs", subjects = "nojs.>", store = "jetstream" }
      assert.is_nil(q)
      assert.are.equal("no_responders", jerr.code)
      assert.matches("is the server run with %-js", jerr.message)
      br:close()
    end)
    plain:stop()
    assert(ok, e)
  end)

  it("jetstream: a bridge exporting every subject leaves the queue's to it (stored once, not twice)", function()
    S.drive(function()
      local br = assert(msrt.nats { url = nats.url }) -- export ">"
      local q = assert(msrt.queue { name = "exported", subjects = "exported.>", store = "jetstream" })
      assert.are.equal(1, assert(msrt.publish("exported.a", "one", { durable = true })).seq)
      -- had the bridge exported "one" too, the stream would have stored it
      -- again (seq 2) before this one, published after it on the same
      -- connection
      assert.are.equal(2, assert(msrt.publish("exported.a", "two", { durable = true })).seq)
      q.close()
      br:close()
    end)
  end)

  it("jetstream: refuses a queue whose subjects overlap another stream's (bad_config, JetStream's words)", function()
    S.drive(function()
      local br = assert(msrt.nats { url = nats.url, import = {}, export = {} })
      local a = assert(msrt.queue { name = "ovA", subjects = "ov.>", store = "jetstream" })
      local b, err = msrt.queue { name = "ovB", subjects = "ov.x.>", store = "jetstream" }
      assert.is_nil(b)
      assert.are.equal("bad_config", err.code)
      assert.matches("subjects overlap with an existing stream %(JetStream error 10065%)", err.message)
      a.close()
      br:close()
    end)
  end)

  it("jetstream: two hosts share one queue, each task done once", function()
    local hosts = {}
    for i = 1, 2 do
      hosts[i] = H.start(H.prelude(nats.url, (', name = "W%d", export = {}'):format(i)) .. [[
io.stdout:setvbuf("line")
local q = assert(msrt.queue { name = "shared", subjects = "shared.>", store = "jetstream", ack_wait_ms = 5000 })
local done = {}
msrt.consume("shared", function(m)
  msrt.sleep(2) -- a task's work: the other host pulls meanwhile
  done[#done + 1] = m.data
  assert(m:ack())
  print("did " .. m.data)
end, { max_ack_pending = 1 })
msrt.subscribe("shared_ctl.stop", function()
  print("done " .. json.encode(done))
  q.close()
  msrt.stop()
end)
assert(br:flush())
print("ready")
]])
    end
    for i = 1, 2 do H.await(hosts[i], "ready") end
    local function did()
      local set, n = {}, 0
      for i = 1, 2 do
        local f = io.open(hosts[i].out)
        for d in (f and f:read("*a") or ""):gmatch("did (%d+)") do
          if not set[d] then n = n + 1 end
          set[d] = true
        end
        if f then f:close() end
      end
      return n
    end
    S.drive(function()
      local br = assert(msrt.nats { url = nats.url, import = {}, export = { "shared_ctl.>" } })
      local q = assert(msrt.queue { name = "shared", subjects = "shared.>", store = "jetstream", ack_wait_ms = 5000 })
      for i = 1, 100 do assert(msrt.publish("shared.task", i, { durable = true })) end
      assert.is_true(S.wait_until(function() return did() == 100 end, 20000), "tasks done: " .. did())
      q.close()
      msrt.publish("shared_ctl.stop", true)
      assert(br:flush())
      br:close()
    end)
    local count, per = {}, {}
    for i = 1, 2 do
      -- the host's last words, not its exit: this process, whose runtime
      -- ran before, is the subreaper of the hosts' `timeout` and reaps it
      -- only when its loop runs again (H.finish would see a zombie)
      local list = require("dkjson").decode(H.await(hosts[i], "done (%b[])"))
      os.remove(hosts[i].out) os.remove(hosts[i].script)
      per[i] = #list
      for _, n in ipairs(list) do count[n] = (count[n] or 0) + 1 end
    end
    for n = 1, 100 do assert.are.equal(1, count[n], "task " .. n) end
    assert.is_true(per[1] > 0 and per[2] > 0, ("both hosts worked: %d and %d"):format(per[1], per[2]))
  end)

  -- A host's JetStream queues are as many as it declares: the old bridge
  -- kept the patterns of at most 64 and refused the 65th declared while
  -- 64 were still opening, as "could not start the queue's thread" (CI
  -- under TSan, 2026-12-06, where opening is slow).
  it("jetstream: one host declaring 100 queues at one moment gets them all", function()
    S.drive(function()
      local br = assert(msrt.nats { url = nats.url, import = {}, export = {} })
      local qs, failed, seen = {}, {}, 0
      local sub = msrt.subscribe("many_ctl.*", function(m)
        local k = m.subject:match("%d+$")
        local q, err = msrt.queue { name = "many_" .. k, subjects = "many_" .. k .. ".>", store = "jetstream" }
        if q then qs[#qs + 1] = q else failed[#failed + 1] = k .. ": " .. err.message end
        seen = seen + 1
      end)
      for k = 1, 100 do msrt.publish("many_ctl." .. k, true) end
      assert(S.wait_until(function() return seen == 100 end, 20000), "declared " .. seen)
      sub:unsubscribe()
      for _, q in ipairs(qs) do q.close() end
      br:close()
      assert.are.same({}, failed)
      assert.are.equal(100, #qs)
    end, 40000)
  end)

  -- nats-server 2.9 can answer two creates of one stream at one moment
  -- with "subjects overlap with an existing stream" (10065); the racing
  -- stream is the same one, so a host asks again rather than failing the
  -- queue. Six hosts create each of 200 queues on one signal (the old code
  -- failed a queue in 2 of 3 runs).
  it("jetstream: hosts declaring the same queues at one moment all get them", function()
    local hosts, N_HOSTS, N_QUEUES = {}, 6, 200
    for i = 1, N_HOSTS do
      hosts[i] = H.start(H.prelude(nats.url, ', export = {}') .. ([[
local ok, seen = 0, 0
msrt.subscribe("race_ctl.go.*", function(m)
  local k = m.subject:match("%%d+$")
  local q, err = msrt.queue { name = "race_" .. k, subjects = "race_" .. k .. ".>", store = "jetstream" }
  if q then ok = ok + 1; q.close() else print("failed race_" .. k .. ": " .. err.message) end
  seen = seen + 1
  if seen == %d then print("declared " .. ok); msrt.stop() end
end)
assert(br:flush())
print("ready")
]]):format(N_QUEUES))
    end
    for i = 1, N_HOSTS do H.await(hosts[i], "ready") end
    S.drive(function()
      local br = assert(msrt.nats { url = nats.url, import = {}, export = { "race_ctl.>" } })
      for k = 1, N_QUEUES do -- one queue a go: the hosts create it at one moment
        msrt.publish("race_ctl.go." .. k, true)
        assert(br:flush())
        msrt.sleep(5)
      end
      br:close()
    end)
    for i = 1, N_HOSTS do
      local out = H.finish(hosts[i])
      assert.are.equal(tostring(N_QUEUES), out:match("declared (%d+)"), out)
    end
  end)
end)
