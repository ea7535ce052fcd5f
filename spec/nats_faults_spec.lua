-- The NATS bridge under faults (README "More than one host"): the server
-- lost and regained (libnats' reconnect buffer, bounded in bytes: what
-- fits is delivered after the reconnect, what does not is counted and
-- announced per subject class), msrt.nats.<state> events and the
-- readiness probe, a node of a 3-node cluster SIGKILLed (the bridges go
-- on through the others), the server's max_payload, a slow consumer.
local N = require "spec.nats_server"
local H = require "spec.hosts"
local json = require "dkjson"

describe("the NATS bridge under faults", function()
  -- Host A, exporting subject's class, publishes 1 .. n on subject (then
  -- `after`, Lua text) and ends once the server has them all.
  local function burst(nats, subject, n, after)
    H.finish(H.start(H.prelude(nats.url, (', name = "A", export = { %q }'):format(subject:match("^[^.]+") .. ".>"))
      .. ("for i = 1, %d do msrt.publish(%q, i) end\nbr:flush()\n%s\nbr:flush()\nmsrt.stop()\n"):format(n, subject, after or "")))
  end

  it("buffers within reconnect_buffer while the server is gone, counts and announces the rest, and delivers the buffered after the reconnect", function()
    N.with({}, function(nats)
      -- B reconnects fast, A slowly: B is subscribed again before A's
      -- buffer flushes (NATS delivers to who is subscribed then)
      local b = H.start(H.prelude(nats.url, ', name = "B", reconnect_wait_ms = 50') .. [[
local got = 0
msrt.subscribe("ev.x", function() got = got + 1 end)
msrt.subscribe("ev.done", function()
  msrt.after(300, function() print("got " .. got) msrt.stop() end)
end)
br:flush()
print("ready")
]])
      H.await(b, "ready")
      local a = H.start(H.prelude(nats.url, ', name = "A", export = { "ev.>" }, reconnect_buffer = 4096, reconnect_wait_ms = 1500') .. [[
local events, notices = {}, 0
msrt.subscribe("msrt.nats.*", function(m) events[#events + 1] = m.data.state end)
msrt.subscribe("msrt.dropped.ev.>", function(m)
  if m.data:find("^dropped_disconnected nats") then notices = notices + 1 end
end)
msrt.publish("ev.x", 0)
br:flush()
print("published")
while br:info().state == "connected" do msrt.sleep(5) end
print("probe " .. tostring(select(2, br:ready())))
local payload = string.rep("x", 200)
for i = 1, 40 do msrt.publish("ev.x", payload) end -- ~10 KB into 4 KB
local s = br:stats().ev
print("while " .. s.handed .. " " .. s.exported .. " " .. s.dropped_disconnected)
while br:info().state ~= "connected" do msrt.sleep(5) end
br:flush()
msrt.publish("ev.done", true)
br:flush()
msrt.sleep(100)
s = br:stats().ev
print("after " .. json.encode({ handed = s.handed, exported = s.exported,
  dropped = s.dropped_disconnected, notices = notices, events = events,
  reconnects = br:info().reconnects }))
msrt.stop()
]])
      H.await(a, "published")
      nats:kill(1)
      local probe = H.await(a, "probe ([^\n]+)")
      assert.matches("nats bridge disconnected", probe)
      local handed, exported, dropped = H.await(a, "while (%d+ %d+ %d+)"):match("(%d+) (%d+) (%d+)")
      assert.are.equal("41", handed)
      assert.is_true(tonumber(dropped) > 0 and tonumber(exported) > 1, exported .. " " .. dropped)
      nats:restart(1)
      local out = H.finish(a)
      local r = json.decode(out:match("after (%b{})") or "null")
      assert.is_table(r, out)
      assert.are.equal(42, r.handed) -- 41 and ev.done
      assert.are.equal(r.handed, r.exported + r.dropped, "every copy ends in one outcome")
      assert.are.equal(r.dropped, r.notices, "every drop announced")
      assert.are.equal(1, r.reconnects)
      assert.are.same({ "disconnected", "connected" }, r.events)
      -- what was exported arrived: the one before, the buffered ones
      assert.are.equal(r.exported - 1, tonumber(H.finish(b):match("got (%d+)")))
    end)
  end)

  it("goes on through the other nodes when one node of a cluster is SIGKILLed", function()
    N.with({ nodes = 3 }, function(c)
      local b = H.start(H.prelude(c.urls[2], ', name = "B"') .. [[
local got = {}
msrt.subscribe("job.*", function(m) got[#got + 1] = m.data end)
msrt.subscribe("job.done", function()
  msrt.after(300, function() print("got " .. #got) msrt.stop() end)
end)
br:flush()
print("ready")
]])
      H.await(b, "ready")
      os.execute("sleep 0.3") -- B's interest crosses the routes
      local a = H.start(H.prelude(c.urls[1], ', name = "A", export = { "job.>" }') .. [[
for i = 1, 50 do msrt.publish("job.n", i) end
br:flush()
print("before " .. br:info().url)
-- libnats goes to a server it knows of at once: the disconnected state
-- may pass between two polls, the reconnect count stays
while br:info().state == "connected" and br:info().reconnects == 0 do msrt.sleep(5) end
for i = 51, 100 do msrt.publish("job.n", i) end -- buffered, or sent at once
while br:info().state ~= "connected" do msrt.sleep(5) end
br:flush()
msrt.publish("job.done", true)
br:flush()
local s = br:stats().job
print("after " .. br:info().url .. " " .. s.exported .. " " .. s.dropped_disconnected)
msrt.stop()
]])
      local before = H.await(a, "before (%S+)")
      assert.are.equal(c.urls[1], before)
      c:kill(1)
      local out = H.finish(a)
      local url, exported, dropped = out:match("after (%S+) (%d+) (%d+)")
      assert.is_not_nil(url, out)
      assert.are_not.equal(c.urls[1], url)
      assert.are.same({ "101", "0" }, { exported, dropped })
      assert.are.equal("101", H.finish(b):match("got (%d+)"))
    end)
  end)

  it("lets through at most the smaller of the server's and the profile's max_payload", function()
    N.with({ max_payload = 2048 }, function(nats)
      local a = H.start(H.prelude(nats.url, ', name = "A", export = { "big.>" }') .. [[
local notice
msrt.subscribe("msrt.dropped.big.>", function(m) notice = m.data end)
print("max " .. br:info().max_payload .. " " .. br:info().server_max_payload)
msrt.publish("big.x", string.rep("y", 4000))
msrt.sleep(50)
local s = br:stats().big
print("big " .. s.refused_by_server .. " " .. s.exported .. " " .. tostring(notice))
msrt.stop()
]])
      local out = H.finish(a)
      assert.matches("max 2048 2048", out)
      assert.matches("big 1 0 refused_by_server nats", out)
    end)
  end)

  it("counts a slow consumer: what libnats drops past pending_msgs", function()
    N.with({}, function(nats)
      -- messages wait in libnats (and past pending_msgs are dropped)
      -- only while the bus holds their key's import back: here a `block`
      -- actor with a mailbox of one (a subscriber that keeps up takes
      -- each message as it is read)
      -- "ready" once the actor's init has subscribed it to flood.count
      -- (init runs on a worker, whenever that gets to it): the count's
      -- request must find it there, however late the worker was.
      local b = H.start(H.prelude(nats.url, ', name = "B", pending_msgs = 1') .. [[
local up = false
msrt.subscribe("flood.up", function() up = true end)
assert(msrt.actor { name = "slow", subscribe = "flood.x", capacity = 1, overflow = "block",
  init = function(ctx) ctx.n = 0 assert(ctx:subscribe("flood.count")) ctx:publish("flood.up", true) end,
  handle = function(ctx, m)
    if m.subject == "flood.count" then return ctx:reply(m, ctx.n) end
    ctx.n = ctx.n + 1
  end })
-- flood.done comes on a key of its own, not held: flood.x messages can
-- still wait in libnats, or be imported and wait for the actor's room
-- (where the count's request can pass them). Read once each is imported
-- or dropped (flood.done is imported too), and the actor has had every
-- one imported, however long it takes.
msrt.subscribe("flood.done", function()
  local function imported() return br:stats().flood.imported end
  local t0 = os.time()
  while br:info().slow_dropped + imported() - 1 < 20000 do
    if os.time() - t0 > 30 then -- says which wait failed, if one does
      print(("flood not in after 30 s: dropped %d, imported %d"):format(br:info().slow_dropped, imported()))
      break
    end
    msrt.sleep(10)
  end
  local got
  t0 = os.time()
  repeat
    got = assert(msrt.request("flood.count", true, { timeout_ms = 5000 }))
    if got >= imported() - 1 then break end
    msrt.sleep(10)
  until os.time() - t0 > 30
  local i = br:info()
  print("slow " .. i.slow_consumer .. " " .. i.slow_dropped .. " " .. got .. " " .. imported())
  msrt.stop()
end)
br:flush()
for _ = 1, 6000 do if up then break end msrt.sleep(10) end
assert(up, "the actor's init never ran")
print("ready")
]])
      H.await(b, "ready")
      burst(nats, "flood.x", 20000, 'msrt.publish("flood.done", true)')
      -- the host's two waits are bounded at 30 s each: finish waits longer
      local out = H.finish(b, 90000)
      local sc, dropped, got, imported = out:match("slow (%d+) (%d+) (%d+) (%d+)")
      assert.is_not_nil(sc, out)
      sc, dropped, got, imported = tonumber(sc), tonumber(dropped), tonumber(got), tonumber(imported)
      assert.is_true(sc > 0 and dropped > 0, "no slow consumer seen")
      -- every flood message is either dropped by libnats or imported
      assert.are.equal(20000, dropped + imported - 1)
      assert.are.equal(imported - 1, got)
    end)
  end)

  it("holds an import while a block subscriber's mailbox is full, so that every message reaches it", function()
    N.with({}, function(nats)
      -- the actor (4 messages of mailbox, `block`) is slower than the
      -- import; it says how many it had when the last one (500) comes,
      -- messages of one NATS subscription arriving in order
      local b = H.start(H.prelude(nats.url, ', name = "B"') .. [[
local slow = assert(msrt.actor { name = "slow", subscribe = "burst.x", capacity = 4, overflow = "block",
  init = function(ctx) ctx.n = 0 end,
  handle = function(ctx, m)
    local x = 0
    for i = 1, 20000 do x = x + i % 7 end -- slower than the import
    ctx.n = ctx.n + 1
    if m.data == 500 then ctx:publish("burst.done", ctx.n + x * 0) end
  end })
local function finish(n)
  local refused = 0
  for line in require("msrt.ops").metrics_text():gmatch("[^\n]+") do
    refused = refused + (tonumber(line:match('^msrt_router_messages_total{class="burst",outcome="refused"} (%d+)')) or 0)
  end
  print("burst " .. n .. " refused " .. refused .. " slow_dropped " .. br:info().slow_dropped)
  slow:stop()
  msrt.stop()
end
msrt.subscribe("burst.done", function(m) finish(m.data) end)
msrt.after(20000, function() finish("not all") end)
br:flush()
print("ready")
]])
      H.await(b, "ready")
      burst(nats, "burst.x", 500)
      assert.matches("burst 500 refused 0 slow_dropped 0", H.finish(b, 30000), 1, true)
    end)
  end)
end)
