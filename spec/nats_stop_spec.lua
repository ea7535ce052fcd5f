-- A host stopping while its NATS bridge's import waits for room in a full
-- `block` subscriber (README "More than one host"; the shutdown order of
-- "msrt-lua"): the wait, on libnats' delivery thread, ends when the
-- subscriber goes or the host stops, not when the backlog is drained;
-- what was imported is delivered or counted.
local S = require "spec.support"
local N = require "spec.nats_server"
local H = require "spec.hosts"

describe("a host whose NATS import waits for a full block subscriber", function()
  local nats -- one server; each case's hosts are gone before the next starts
  setup(function() nats = N.start() end)
  teardown(function() if nats then nats:stop() end end)

  -- Host B: a slow `block` actor (4 messages of mailbox), made by `make`
  -- (Lua text around the actor spec `spec`), imports flood.x; `then_`
  -- (Lua text) runs once it has had 5. After its hub ends (the bridge
  -- closed), B prints the flood class's router outcomes.
  local function slow_host(make, then_)
    return H.start(H.prelude(nats.url, ', name = "B"') .. ([[
local spec = { name = "slow", subscribe = "flood.x", capacity = 4, overflow = "block",
  init = function(ctx) ctx.n = 0 end,
  handle = function(ctx)
    local x = 0
    for i = 1, 2000000 do x = x + i %% 7 end -- ms: the backlog would take minutes
    ctx.n = ctx.n + 1
    if ctx.n == 5 then ctx:publish("flood.five", x) end
  end }
local slow = %s
msrt.subscribe("flood.five", function() print("five") %s end)
br:flush()
print("ready")
msrt.run()
local o, t = {}, 0
for line in require("msrt.ops").metrics_text():gmatch("[^\n]+") do
  local k, n = line:match('^msrt_router_messages_total{class="flood",outcome="([%%w_]+)"} (%%d+)')
  if k then o[#o + 1] = k .. " " .. n end
  if k and k ~= "accepted" then t = t + tonumber(n) end
end
print(table.concat(o, " ") .. " outcomes " .. t)
]]):format(make, then_))
  end

  -- Host A floods B's subject with 1 .. n.
  local function flood(n)
    return H.start(H.prelude(nats.url, ', name = "A", export = { "flood.>" }')
      .. ("for i = 1, %d do msrt.publish('flood.x', i) end\nbr:flush()\nmsrt.stop()\n"):format(n))
  end

  local now_ms = S.now_ms

  -- B stops (by then_ or a signal) mid-flood: it exits within a bound
  -- (far less than the actor's backlog would take), and every copy of what it imported was delivered or counted; returns
  -- its output.
  local function stops(make, then_, signal)
    local b = slow_host(make, then_)
    H.await(b, "ready")
    local a = flood(20000)
    H.await(b, "five")
    if signal then os.execute("kill -" .. signal .. " $(pgrep -P " .. b.pid .. ")") end
    local t0 = now_ms()
    local out = H.finish(b, 20000)
    print(("  exited %d ms after the stop"):format(now_ms() - t0))
    H.finish(a)
    -- README "Metrics": accepted == delivered + dropped + dead_lettered +
    -- refused + no_responders, once nothing is in flight
    local accepted, outcomes = out:match("accepted (%d+).* outcomes (%d+)")
    assert(accepted, out)
    assert.is_nil(out:find("Sanitizer", 1, true), out) -- ASan/TSan builds: clean
    accepted = tonumber(accepted)
    assert.is_true(accepted >= 5, out)
    assert.are.equal(accepted, tonumber(outcomes), out)
    return out
  end

  it("ends the wait when the host stops: msrt.stop()", function()
    stops("assert(msrt.actor(spec))", "msrt.stop()")
  end)

  it("ends the wait when the host stops: SIGTERM, the actor in a supervision tree", function()
    stops('assert(msrt.supervisor { name = "t", children = { { id = "slow", actor = spec } } })', "", "TERM")
  end)

  it("counts what libnats still holds when the bridge closes: dropped_at_close", function()
    -- B closes its bridge once NATS has sent it 1,000 messages (the actor
    -- has taken ~10: the rest wait in libnats' queue); they are drained
    -- and counted, so what the connection received is all accounted for
    local out = stops("assert(msrt.actor(spec))", [[
for _ = 1, 1000 do if br:info().received >= 1000 then break end msrt.sleep(10) end
br:close()
local i, s = br:info(), br:stats().flood
print(("closed %s received %d imported %d at_close %d slow %d"):format(i.state, i.received,
  s.imported, s.dropped_at_close, i.slow_dropped))
msrt.stop()]])
    local rcv, imp, at_close, slow = out:match("closed closed received (%d+) imported (%d+) at_close (%d+) slow (%d+)")
    assert(rcv, out)
    print("  " .. out:match("closed [^\n]*"))
    assert.are.equal(tonumber(rcv), tonumber(imp) + tonumber(slow), out)
    assert.is_true(tonumber(at_close) >= 900, out)
  end)

  it("ends the wait when the subscriber stops: the import goes on to the others", function()
    -- a hub subscription takes every message too; it sees the last one
    -- (a NATS subscription's messages come in order) only if the import
    -- stopped waiting for the stopped actor
    local out = stops([[assert(msrt.actor(spec))
local got = 0
msrt.subscribe("flood.x", function(m)
  got = got + 1
  if m.data == 20000 then print("hub got " .. got) msrt.stop() end
end)]], "slow:stop()")
    assert.matches("hub got 20000", out, 1, true)
  end)
end)
