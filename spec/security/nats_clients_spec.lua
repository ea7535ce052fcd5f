-- Attacks on the NATS listener (README "The network face"): each is a
-- client doing what no client should, and the host keeping its promises:
-- the bytes it holds are bounded, the attacker gets NATS' error and goes,
-- everyone else is served.
local S = require "spec.support"
local msrt = require "msrt"
local C = require "spec.nats_clients.clients"

assert(msrt.start())

-- A well-behaved client still answered: SUB, PUB to itself, PING.
local function still_served(port)
  local ok = C.raw(port)
  ok.send("SUB alive 1\r\nPUB alive 2\r\nok\r\nPING\r\n")
  local text = ok.wait_for("MSG alive 1 2\r\nok\r\nPONG\r\n", true)
  ok.close()
  return text ~= false
end

describe("a NATS client that attacks the listener", function()
  it("sends a control line of 1 MiB without an end: refused at 4 KiB, the others served", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local c = C.raw(l:port())
      c.send("SUB " .. ("a"):rep(1024 * 1024))
      assert.truthy(c.wait_for("-ERR 'maximum control line exceeded'\r\n", true))
      assert.is_true(S.wait_until(function() return c.eof end, 5000))
      assert.is_true(still_served(l:port()))
      c.close()
      l:close()
    end)
  end)

  it("announces a payload larger than max_payload: refused before it is read", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local c = C.raw(l:port())
      c.send("PUB big 1073741824\r\n" .. ("x"):rep(65536))
      assert.truthy(c.wait_for("-ERR 'Maximum Payload Violation'\r\n", true))
      assert.is_true(S.wait_until(function() return c.eof end, 5000))
      assert.is_true(still_served(l:port()))
      c.close()
      l:close()
    end)
  end)

  it("sends bad subjects in pedantic mode: each refused in NATS' words, the connection kept", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local got = S.collector("p.>")
      local c = C.raw(l:port())
      c.send('CONNECT {"pedantic":true,"verbose":true}\r\nPUB p.* 1\r\nx\r\nPUB p..q 1\r\nx\r\n'
        .. "PUB p.> 1\r\nx\r\nSUB p.>.a 1\r\nSUB .p 2\r\nPUB p.ok 1\r\nx\r\nPING\r\n")
      local text = c.wait_for("PONG\r\n", true)
      assert.truthy(text)
      local _, pubs = text:gsub("%-ERR 'Invalid Publish Subject'", "")
      local _, subs = text:gsub("%-ERR 'Invalid Subject'", "")
      assert.are.equal(3, pubs)
      assert.are.equal(2, subs)
      assert.is_true(got.wait(1))
      assert.are.equal("p.ok", got.msgs[1].subject)
      assert.is_falsy(c.eof)
      c.close()
      got.close()
      l:close()
    end)
  end)

  -- nats-server 2.9 with max_subscriptions sends these bytes for each SUB
  -- over and keeps the client (checked by hand against Debian's)
  local OVER = "-ERR 'maximum subscriptions exceeded'\r\n"

  it("subscribes past max_subscriptions: NATS' -ERR for each SUB over, stays connected and served", function()
    C.drive(function()
      local cap = require("msrt.profile").current().connections.max_subscriptions
      assert.are.equal(1000, cap) -- the default profile's (README "The network face")
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local before = msrt.metrics().router.subscriptions
      local c = C.raw(l:port())
      local parts = {}
      for i = 1, cap + 2 do parts[i] = ("SUB over.%d %d\r\n"):format(i, i) end
      c.send(table.concat(parts) .. ("PUB over.%d 1\r\nx\r\nPUB over.%d 1\r\ny\r\nPING\r\n")
        :format(cap, cap + 1))
      local want = OVER .. OVER .. ("MSG over.%d %d 1\r\nx\r\nPONG\r\n"):format(cap, cap)
      local text = c.wait_for(want, true)
      assert.are.equal(want, text and text:match("^INFO [^\r]*\r\n(.*)$"))
      assert.is_falsy(c.eof)
      assert.are.equal(before + cap, msrt.metrics().router.subscriptions)
      c.send("UNSUB 1\r\nSUB again 9999\r\nPUB again 1\r\nz\r\nPING\r\n") -- room again
      assert.truthy(c.wait_for("MSG again 9999 1\r\nz\r\nPONG\r\n", true))
      c.close()
      assert.is_true(S.wait_until(function() return msrt.metrics().router.subscriptions == before end, 5000))
      assert.is_true(still_served(l:port()))
      l:close()
    end)
  end)

  it("makes thousands of subscriptions and leaves: all of them go with it", function()
    C.drive(function()
      local p = require("msrt.profile").current()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      require("msrt.listen").retune({ max_payload = p.max_payload,
        connections = { max_subscriptions = 5000 } })
      local before = msrt.metrics().router and msrt.metrics().router.subscriptions
      local c = C.raw(l:port())
      local parts = {}
      for i = 1, 5001 do parts[i] = ("SUB many.%d %d\r\n"):format(i, i) end
      c.send(table.concat(parts) .. "PUB many.4999 1\r\nx\r\nPING\r\n")
      -- (a bound for an ASan build on a loaded machine, not a timing claim)
      assert.truthy(c.wait_for(OVER .. "MSG many.4999 4999 1\r\nx\r\nPONG\r\n", true, 60000))
      require("msrt.listen").retune(p)
      c.close()
      assert.is_true(S.wait_until(function() return l:stats().connections == 0 end, 5000))
      if before then
        assert.is_true(S.wait_until(function() return msrt.metrics().router.subscriptions == before end, 5000))
      end
      -- nothing is delivered to it any more: the publish finds nobody
      local n = msrt.metrics().router.no_responders
      assert.is_true(msrt.publish("many.1", "x", { reply = "nobody.listens" }) ~= nil)
      assert.is_true(still_served(l:port()))
      assert.is_true(msrt.metrics().router.no_responders >= n)
      l:close()
    end, 120000)
  end)

  it("floods without reading: a slow consumer, cut off, counted and announced; the host serves on", function()
    C.drive(function()
      local p = require("msrt.profile").current()
      local saved = p.connections
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      require("msrt.listen").retune({ max_payload = p.max_payload,
        connections = { max_pending = 256 * 1024, write_deadline_ms = 500 } })
      local announced = S.collector("msrt.nats.slow_consumer")
      local c = C.raw(l:port())
      c.send("SUB flood 1\r\nPING\r\n")
      assert.truthy(c.wait_for("PONG", true))
      c.tcp:read_stop() -- reads nothing from now on
      local chunk = ("y"):rep(8192)
      for _ = 1, 2000 do
        msrt.publish("flood", chunk)
        if #announced.msgs > 0 then break end
      end
      assert.is_true(announced.wait(1, 10000))
      assert.matches("^client %d+ 127%.0%.0%.1:%d+", announced.msgs[1].data)
      assert.is_true(S.wait_until(function() return l:stats().slow_consumers == 1 end, 5000))
      assert.are.equal(1, msrt.metrics().nats_clients.slow_consumers)
      assert.matches("\nmsrt_nats_clients_slow_consumers_total 1\n", require("msrt.ops").metrics_text())
      assert.is_true(still_served(l:port()))
      require("msrt.listen").retune({ max_payload = p.max_payload, connections = saved })
      c.close()
      announced.close()
      l:close()
    end, 60000)
  end)
end)
