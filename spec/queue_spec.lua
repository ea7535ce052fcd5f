-- Durable work queues (README "Durable work queues") on the SQLite store:
-- msrt.queue, msrt.publish{durable = true} with its PubAck and Msg-Id
-- dedupe, durable batch publishes, forged PubAcks, grouped commits, a raising consumer, limits,
-- policy files, a corrupt store refused, what a SIGKILLed host leaves
-- (children run as real hosts on real files), actor consumers' mailboxes
-- and deaths, operators' tools. The semantics both stores share (ack,
-- nak, in_progress, term, ack waits, backoff, max_deliver,
-- max_ack_pending, actor and process consumers) are
-- queue_stores_spec.lua's, run against each store.
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

local Q = require "spec.queues"
local fresh_dir, recorder = Q.dir, Q.recorder

local function declare(dir, spec)
  spec.name = spec.name or "tasks"
  spec.subjects = spec.subjects or { "tasks.>" }
  spec.store = spec.store or ("sqlite:" .. dir .. "/" .. spec.name .. ".db")
  return assert(msrt.queue(spec))
end

describe("durable queues", function()
  it("stores a durable publish before answering with its PubAck, and dedupes Msg-Id", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, {})
      local a1 = assert(msrt.publish("tasks.one", { n = 1 }, { durable = true }))
      assert.are.same({ queue = "tasks", seq = 1 }, a1)
      local a2 = assert(msrt.publish("tasks.two", "x", { durable = true, headers = { ["Msg-Id"] = "k" } }))
      local a3 = assert(msrt.publish("tasks.two", "x again", { durable = true, headers = { ["Msg-Id"] = "k" } }))
      assert.are.equal(2, a2.seq)
      assert.are.same({ queue = "tasks", seq = 2, duplicate = true }, a3)
      assert.are.equal(2, q.stats().stored)
      local none, err = msrt.publish("elsewhere.x", 1, { durable = true })
      assert.is_nil(none)
      assert.are.equal("no_responders", err.code)
      -- what is stored is what a consumer gets, in order, decoded
      local r = recorder("tasks", function(m) assert(m:ack()) end)
      assert.is_true(r.wait(2))
      assert.are.same({ n = 1 }, r.msgs[1].data)
      assert.are.equal("tasks.one", r.msgs[1].subject)
      assert.are.equal(1, r.msgs[1].delivered)
      assert.are.equal("k", r.msgs[2].headers["Msg-Id"])
      assert.is_true(S.wait_until(function() return q.stats().stored == 0 end))
      assert.are.equal(2, q.stats().acked)
      q.close()
    end)
  end)

  it("takes a durable publish's PubAck from its queue only: a forged answer is not one, and it times out", function()
    S.drive(function()
      local forged = 0
      local sub = assert(msrt.subscribe("plain.x", function(m)
        forged = forged + 1
        msrt.publish(m.reply, { queue = "fake", seq = 99 })
      end))
      local t0 = uv.hrtime()
      local ack, err = msrt.publish("plain.x", 1, { durable = true, timeout_ms = 100 })
      assert.is_nil(ack)
      assert.are.equal("timeout", err.code)
      assert.are.equal(1, forged)
      assert.is_true((uv.hrtime() - t0) / 1e6 >= 100)
      sub.unsubscribe()
    end)
  end)

  it("groups the commits of a period when the profile's queues.commit_ms says so", function()
    local dir = fresh_dir()
    local prof = S.write(dir .. "/grouped.lua", "return { queues = { commit_ms = 300, synchronous = \"normal\" } }\n")
    local host = S.write(dir .. "/host.lua", ([[
local msrt = require "msrt"
local q = assert(msrt.queue { name = "g", subjects = "g.>", store = "sqlite:%s/g.db" })
local before, done = q.stats().commits, 0
for i = 1, 20 do
  msrt.after(0, function() assert(msrt.publish("g.x", i, { durable = true })) done = done + 1 end)
end
while done < 20 do msrt.sleep(5) end
print("commits", q.stats().commits - before, q.stats().stored)
]]):format(dir))
    local r = S.run({ "--profile", prof, host }, { limit_s = 60 })
    assert.are.equal(0, r.code, r.err)
    assert.matches("commits%s+1%s+20", r.out) -- 20 publishes from 20 coroutines, one transaction
  end)

  it("commits on the next loop turn with commit_ms 0, not on the clock's next millisecond", function()
    local dir = fresh_dir()
    local prof = S.write(dir .. "/turn.lua", "return { queues = { synchronous = \"normal\" } }\n")
    -- the loop's cached time (uv.now) moves on only between turns: a
    -- commit that waited for the next whole millisecond (as a 0 ms timer
    -- here did) is never answered within the millisecond it was asked in
    local host = S.write(dir .. "/host.lua", ([[
local msrt, uv = require "msrt", require "luv"
local q = assert(msrt.queue { name = "t", subjects = "t.>", store = "sqlite:%s/t.db" })
local same = 0
for i = 1, 50 do
  local t = uv.now()
  assert(msrt.publish("t.x", i, { durable = true }))
  if uv.now() == t then same = same + 1 end
end
print("same", same, q.stats().stored)
]]):format(dir))
    local r = S.run({ "--profile", prof, host }, { limit_s = 60 })
    assert.are.equal(0, r.code, r.err)
    local same, stored = r.out:match("same%s+(%d+)%s+(%d+)")
    assert.are.equal("50", stored)
    assert.is_true(tonumber(same) > 0, r.out)
  end)

  it("naks at once the message whose consumer raised", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, { ack_wait_ms = 60000 })
      local r = recorder("tasks", function(m)
        if m.delivered == 1 then error("consumer bug") end
        assert(m:ack())
      end)
      msrt.publish("tasks.a", "x")
      assert.is_true(r.wait(2, 30000))
      assert.are.equal(2, r.msgs[2].delivered)
      assert.is_true(S.wait_until(function() return q.stats().stored == 0 end))
      q.close()
    end)
  end)

  it("refuses durable publishes with resource_exhausted when full with discard new, and drops the oldest with discard old", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, { max_msgs = 2, discard = "new" })
      assert(msrt.publish("tasks.a", 1, { durable = true }))
      assert(msrt.publish("tasks.a", 2, { durable = true }))
      local no, err = msrt.publish("tasks.a", 3, { durable = true })
      assert.is_nil(no)
      assert.are.equal("resource_exhausted", err.code)
      assert.are.equal(2, q.stats().stored)
      q.close()
      local old = declare(dir, { name = "old", subjects = { "old.>" }, max_msgs = 2 })
      for i = 1, 4 do assert(msrt.publish("old.a", i, { durable = true })) end
      local r = recorder("old", function(m) assert(m:ack()) end)
      assert.is_true(r.wait(2))
      S.sleep(20)
      assert.are.same({ 3, 4 }, { r.msgs[1].data, r.msgs[2].data })
      old.close()
    end)
  end)

  it("answers a durable batch publish with a PubAck per message: refused ones as errors, a batch nothing captures as no_responders; checks the batch arguments", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, { max_msgs = 3, discard = "new" })
      local acks = assert(msrt.publish_batch("tasks.a", { 1, 2, 3, 4, 5 }, { durable = true }))
      assert.are.equal(5, #acks)
      for i = 1, 3 do assert.are.same({ queue = "tasks", seq = i }, acks[i]) end
      for i = 4, 5 do assert.are.equal("resource_exhausted", acks[i].error.code) end
      assert.are.equal(3, q.stats().stored)
      local none, err = msrt.publish_batch("elsewhere.x", { 1, 2 }, { durable = true })
      assert.is_nil(none)
      assert.are.equal("no_responders", err.code)
      assert.are.same({}, msrt.publish_batch("tasks.a", {}, { durable = true }))
      assert.has_error(function() msrt.publish_batch("tasks.a", "x", { durable = true }) end)
      assert.has_error(function() msrt.consume("tasks", function() end, { batch = 0 }) end)
      assert.has_error(function() msrt.consume("tasks", function() end, { batch = 1.5 }) end)
      q.close()
    end)
  end)

  it("takes a queue from a policy file, --check-able, its ack wait reloaded live", function()
    local dir = fresh_dir()
    local file = dir .. "/jobs.lua"
    local function write(wait)
      S.write(file, ('return { name = "jobs", subjects = { "jobs.>" }, store = "sqlite:%s/jobs.db", ack_wait_ms = %d }\n')
        :format(dir, wait))
    end
    write(60000)
    assert.are.equal(0, S.run({ "--check", file }).code)
    S.write(dir .. "/bad.lua", 'return { name = "jobs", subjects = "jobs.>", discard = "sometimes" }\n')
    local bad = S.run({ "--check", dir .. "/bad.lua" })
    assert.are_not.equal(0, bad.code)
    assert.matches('discard must be "old" or "new"', bad.err)
    S.drive(function()
      local q = assert(msrt.queue(file))
      local w = msrt.watch { dir }
      write(50)
      assert.is_true(msrt.reload(file))
      w.close()
      local r = recorder("jobs", function(m) if m.delivered > 1 then assert(m:ack()) end end)
      msrt.publish("jobs.x", "once")
      assert.is_true(r.wait(2, 30000)) -- redelivered after 50 ms, not 60 s
      assert.is_true(S.wait_until(function() return q.stats().stored == 0 end))
      q.close()
    end)
  end)

  it("refuses a corrupt store at declaration, and checks its arguments", function()
    S.drive(function()
      local dir = fresh_dir()
      S.write(dir .. "/bad.db", ("not a database "):rep(100))
      local q, err = msrt.queue { name = "bad", subjects = "bad.>", store = "sqlite:" .. dir .. "/bad.db" }
      assert.is_nil(q)
      assert.are.equal("io", err.code)
      assert.matches("corrupt", err.message)
      local _, e2 = msrt.queue { name = "x", subjects = "x.>", discard = "sometimes" }
      assert.are.equal("invalid_arg", e2.code)
      local _, e3 = msrt.consume("nosuch", function() end)
      assert.are.equal("not_found", e3.code)
      assert.has_error(function() msrt.queue(42) end)
      local _, e4 = msrt.queue(dir .. "/no-such-file.lua")
      assert.are.equal("not_found", e4.code)
      assert.has_error(function() msrt.consume("tasks", 1) end)
    end)
  end)

  it("keeps what a SIGKILLed host acknowledged, and redelivers what it had not acked", function()
    local dir = fresh_dir()
    local store = dir .. "/tasks.db"
    -- the child publishes durably, prints each PubAck's seq, takes two
    -- messages without acking them, and is killed by its own SIGKILL
    local child = S.file(([[
local msrt = require "msrt"
assert(msrt.queue { name = "tasks", subjects = "tasks.>", store = "sqlite:%s" })
for i = 1, 5 do
  local ack = assert(msrt.publish("tasks.x", i, { durable = true }))
  io.write(ack.seq, "\n") io.flush()
end
local held = 0
msrt.consume("tasks", function(m)
  held = held + 1
  if held == 2 then require("luv").kill(require("luv").os_getpid(), "sigkill") end
end, { max_ack_pending = 2 })
msrt.sleep(5000)
]]):format(store))
    local r = S.run({ child }, { limit_s = 60 })
    assert.are.equal(137, r.code)
    assert.are.equal("1\n2\n3\n4\n5\n", r.out)
    S.drive(function()
      local q = declare(dir, {})
      local got = recorder("tasks", function(m) assert(m:ack()) end)
      assert.is_true(got.wait(5))
      local seen = {}
      for _, m in ipairs(got.msgs) do seen[m.data] = m.delivered end
      assert.are.same({ 2, 2, 1, 1, 1 }, seen) -- the two it held come first, counted
      assert.is_true(S.wait_until(function() return q.stats().stored == 0 end))
      q.close()
    end)
  end)

  -- A flush's transaction runs on the queue's writer thread while the hub
  -- goes on (README "Durable work queues"): these two act in a loop turn
  -- in which one is in flight (an idle handle looks at every turn).
  local function when_in_flight(name, fn)
    local internal, idle = require("msrt.queue").get(name), uv.new_idle()
    idle:start(function()
      if internal.flight then idle:stop() idle:close() fn() end
    end)
  end

  it("closes a queue whose flush is in flight after committing it: every PubAck'd message stays stored, no publisher times out", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, {})
      local acked, failed, closed, running = 0, {}, false, 8
      for _ = 1, running do
        msrt.after(0, function()
          while true do
            local ack, err = msrt.publish("tasks.x", "t", { durable = true, timeout_ms = 10000 })
            if not ack then failed[#failed + 1] = err.code break end
            acked = acked + 1
          end
          running = running - 1
        end)
      end
      when_in_flight("tasks", function() closed = true q.close() end)
      assert.is_true(S.wait_until(function() return running == 0 end, 15000))
      assert.is_true(closed)
      for _, code in ipairs(failed) do assert.are.equal("no_responders", code) end
      q = declare(dir, {})
      assert.are.equal(acked, q.stats().stored)
      assert.is_true(acked > 0)
      q.close()
    end)
  end)

  it("gives each message of a batch its own headers table: a consumer changing one changes no other", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, {})
      local seen, done = {}, false
      local c = assert(msrt.consume("tasks", function(msgs)
        for i = 1, #msgs do
          local h = msgs[i].headers
          seen[#seen + 1] = h.K
          h.K = "changed by " .. i
          h.extra = i
        end
        msgs:ack()
        if #seen >= 6 then done = true end
      end, { batch = 8 }))
      for _ = 1, 2 do
        assert(msrt.publish_batch("tasks.a", { 1, 2, 3 }, { durable = true, headers = { K = "v" } }))
      end
      assert.is_true(S.wait_until(function() return done end))
      assert.are.same({ "v", "v", "v", "v", "v", "v" }, seen)
      c.stop()
      q.close()
    end)
  end)

  it("gives what a flush in flight had for a consumer that stopped meanwhile to another, once", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, {})
      local got, stopped = {}, false
      local a = recorder("tasks", function(m)
        assert.is_false(stopped)
        got[m.data] = (got[m.data] or 0) + 1
        assert(m:ack())
      end)
      local b
      local published, done = 0, false
      msrt.after(0, function()
        while not stopped and published < 5000 do
          published = published + 1
          assert(msrt.publish("tasks.x", published, { durable = true }))
        end
        done = true
      end)
      when_in_flight("tasks", function()
        stopped = true
        a.consumer.stop()
        b = recorder("tasks", function(m)
          got[m.data] = (got[m.data] or 0) + 1
          assert(m:ack())
        end)
      end)
      assert.is_true(S.wait_until(function() return done end))
      assert.is_true(stopped)
      assert.is_true(S.wait_until(function() return q.stats().stored == 0 end))
      for i = 1, published do assert.are.equal(1, got[i]) end
      q.close()
    end)
  end)
end)

describe("durable queue consumers that are actors and processes", function()
  it("lets an actor publish durably with ctx:publish and get the PubAck", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, {})
      local acks = S.collector("acks")
      local h = assert(S.spawn { name = "producer", subscribe = "go",
        handle = function(ctx, msg)
          local a1 = ctx:publish("tasks.a", msg.data, { durable = true, headers = { ["Msg-Id"] = "one" } })
          local a2 = ctx:publish("tasks.a", msg.data, { durable = true, headers = { ["Msg-Id"] = "one" } })
          local none, e = ctx:publish("nowhere.a", 1, { durable = true })
          ctx:publish("acks", { a1.seq, a1.queue, a2.seq, a2.duplicate, none == nil and e.code })
        end })
      msrt.publish("go", "payload")
      assert.is_true(acks.wait(1))
      assert.are.same({ 1, "tasks", 1, true, "no_responders" }, acks.msgs[1].data)
      assert.are.equal(1, q.stats().stored)
      h:stop() h:wait()
      acks.close()
      q.close()
    end)
  end)

  it("takes an actor's PubAck from its queue only: a subscriber answering the message's reply first is not the queue", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, {})
      local forged = 0
      -- a subscriber of the captured subject (here a hub callback; a process
      -- or a NATS client sees the same reply subject) answers at once, before
      -- the queue's commit
      local sub = assert(msrt.subscribe("tasks.>", function(m)
        forged = forged + 1
        msrt.publish(m.reply, { queue = "fake", seq = 99 })
      end))
      local acks = S.collector("acks")
      local h = assert(S.spawn { name = "producer", subscribe = "go",
        handle = function(ctx, msg)
          local a = ctx:publish("tasks.a", msg.data, { durable = true })
          local b, e = ctx:publish("plain.a", msg.data, { durable = true, timeout_ms = 100 })
          ctx:publish("acks", { a and a.queue, a and a.seq, b == nil and e.code })
        end })
      local plain = assert(msrt.subscribe("plain.a", function(m)
        forged = forged + 1
        msrt.publish(m.reply, { queue = "fake", seq = 98 })
      end))
      msrt.publish("go", "payload")
      assert.is_true(acks.wait(1))
      assert.are.equal(2, forged)
      assert.are.same({ "tasks", 1, "timeout" }, acks.msgs[1].data)
      h:stop() h:wait()
      sub.unsubscribe() plain.unsubscribe()
      acks.close()
      q.close()
    end)
  end)

  it("goes on serving other consumers while an actor consumer's mailbox is full", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, { ack_wait_ms = 60000 })
      local events = {}
      local ev = assert(msrt.subscribe("ev.>", function(m) events[#events + 1] = m.subject end))
      -- busy for 0.5 s of CPU on "fill"
      local h = assert(S.spawn { name = "slow", consume = "tasks", subscribe = "fill", capacity = 1, overflow = "block",
        handle = function(ctx, msg)
          if msg.subject == "fill" then
            if msg.data == 1 then
              ctx:publish("ev.busy", 1)
              local t = os.clock()
              while os.clock() - t < 0.5 do end
              ctx:publish("ev.busy_done", 1)
            end
            return
          end
          ctx:publish("ev.actor_got", 1)
          assert(ctx:ack(msg))
        end })
      msrt.publish("fill", 1)
      assert.is_true(S.wait_until(function() return events[1] == "ev.busy" end))
      -- its one-message mailbox is full while it handles that one
      local c = assert(msrt.consume("tasks", function(m)
        events[#events + 1] = "hub_got"
        assert(m:ack())
      end))
      assert(msrt.publish("tasks.x", "for anyone", { durable = true }))
      assert(msrt.publish("tasks.x", "for anyone", { durable = true }))
      assert.is_true(S.wait_until(function() return q.stats().acked == 2 end))
      assert.are.equal("hub_got", events[2]) -- while the actor was still busy
      c.stop()
      h:stop() h:wait()
      ev.unsubscribe()
      q.close()
    end)
  end)

  it("redelivers at once what an actor instance held when it died", function()
    S.drive(function()
      local dir = fresh_dir()
      local q = declare(dir, { ack_wait_ms = 60000 })
      local done = S.collector("done.>")
      local h = assert(S.spawn { name = "flaky", consume = "tasks", instances = 1,
        handle = function(ctx, msg)
          if msg.data == "crash" and msg.delivered == 1 then error("crashed on it") end
          ctx:publish("done." .. msg.data, msg.delivered)
          assert(ctx:ack(msg))
        end })
      msrt.publish("tasks.x", "crash")
      assert.is_true(S.wait_until(function() return #h.exits == 1 end))
      local h2 = assert(S.spawn { name = "steady", consume = "tasks",
        handle = function(ctx, msg)
          ctx:publish("done." .. msg.data, msg.delivered)
          assert(ctx:ack(msg))
        end })
      assert.is_true(done.wait(1, 30000)) -- not after the 60 s ack wait
      assert.are.equal(2, done.msgs[1].data)
      h2:stop() h2:wait()
      done.close()
      q.close()
    end)
  end)

end)

describe("durable queues for operators", function()
  it("shows each queue's counts in ctl queues and /metrics, peeks and purges", function()
    local dir = fresh_dir()
    local sock = dir .. "/ctl.sock"
    local host = S.write(dir .. "/host.lua", ([[
local msrt = require "msrt"
assert(msrt.start { ctl = "%s" })
assert(msrt.queue { name = "jobs", subjects = "jobs.>", store = "sqlite:%s/jobs.db", ack_wait_ms = 60000 })
for i = 1, 5 do assert(msrt.publish("jobs.x", "job " .. i, { durable = true })) end
local held = 0
msrt.consume("jobs", function(m) held = held + 1 end, { max_ack_pending = 2 })
while held < 2 do msrt.sleep(5) end
print("ready") io.stdout:flush()
msrt.sleep(60000)
]]):format(sock, dir))
    local cmd = ("%s %s > %s/out 2>&1 & echo $!"):format(S.quote(S.exe), S.quote(host), dir)
    local p = io.popen(cmd)
    local pid = p:read("*l")
    p:close()
    local ok = false
    for _ = 1, 1000 do
      local f = io.open(dir .. "/out")
      local t = f and f:read("*a") or ""
      if f then f:close() end
      if t:find("ready") then ok = true break end
      uv.sleep(10)
    end
    assert.is_true(ok)
    local function ctl(...) return S.run({ "ctl", sock, ... }, { limit_s = 30 }) end
    local r = ctl("queues")
    assert.are.equal(0, r.code, r.err)
    assert.matches("jobs%s+5%s+3%s+2%s+0%s+0%s+0%s+1", r.out)
    r = ctl("metrics")
    assert.matches('msrt_queue_messages{queue="jobs",state="ack_pending"} 2', r.out, 1, true)
    r = ctl("queue", "jobs", "peek", "3")
    assert.matches("^1 jobs.x delivered=1 state=ack_pending bytes=%d+ job 1\n2 .-\n3 jobs.x delivered=0 state=pending", r.out)
    r = ctl("queue", "jobs", "purge")
    assert.matches("purged 5 message", r.out)
    assert.matches("jobs%s+0%s+0%s+0", ctl("queues").out)
    assert.are.equal(1, ctl("queue", "nosuch", "purge").code)
    assert.are.equal(2, ctl("queue", "jobs", "peek").code)
    os.execute("kill -9 " .. pid)
  end)
end)
