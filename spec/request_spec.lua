-- Request/reply is written once (lua/msrt/request.lua) for both sides that
-- ask: msrt.request from a hub coroutine and ctx:request from an actor
-- give the same answer, code and message, to the same situation: a reply,
-- nothing subscribed, no reply in time, a responder's 503 status, a
-- JSON-RPC error header.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())

-- The responder: answers "echo" with the data, "rpc" with an Rpc-Error
-- header, "gone" with NATS' 503 status, and leaves "mute" unanswered.
local function responder()
  return assert(S.spawn { name = "rq_responder", subscribe = "rq.*",
    handle = function(ctx, msg)
      local verb = msg.subject:match("^rq%.(.*)$")
      if verb == "echo" then
        ctx:reply(msg, msg.data)
      elseif verb == "rpc" then
        ctx:publish(msg.reply, { why = "asked" }, { headers = { ["Rpc-Error"] = "-32000", Description = "it failed" } })
      elseif verb == "gone" then
        ctx:publish(msg.reply, nil, { headers = { Status = "503", Description = "went away" } })
      end
    end })
end

-- An actor that makes the request it is sent ({subject, timeout_ms}) and
-- publishes what came back on rq_out.
local function asker()
  return assert(S.spawn { name = "rq_asker", subscribe = "ask.rq",
    handle = function(ctx, msg)
      local data, err = ctx:request(msg.data.subject, "x", { timeout_ms = msg.data.timeout_ms })
      ctx:publish("rq_out", data == nil and { code = err.code, message = err.message, rpc_code = err.rpc_code }
        or { data = data })
    end })
end

local function shape(data, err) -- err: the reply msg when data came
  if data == nil then return { code = err.code, message = err.message, rpc_code = err.rpc_code } end
  return { data = data }
end

describe("msrt.request and ctx:request", function()
  it("answer alike: a reply, no responders, a timeout, a 503 status, an Rpc-Error", function()
    S.drive(function()
      responder()
      asker()
      local out = S.collector("rq_out")
      local cases = {
        { subject = "rq.echo", timeout_ms = 20000 },
        { subject = "nobody.listens", timeout_ms = 20000 },
        { subject = "rq.mute", timeout_ms = 50 },
        { subject = "rq.gone", timeout_ms = 20000 },
        { subject = "rq.rpc", timeout_ms = 20000 },
      }
      local want = { "x", "no_responders", "timeout", "no_responders", "rpc_error" }
      for i, c in ipairs(cases) do
        local hub = shape(msrt.request(c.subject, "x", { timeout_ms = c.timeout_ms }))
        assert(msrt.publish("ask.rq", c))
        assert.is_true(out.wait(i, 30000), "the actor's answer to " .. c.subject)
        assert.are.same(hub, out.msgs[i].data, c.subject)
        assert.are.equal(want[i], hub.code or hub.data, c.subject)
      end
      assert.matches('no reply from "rq.mute" within 50 ms', out.msgs[3].data.message)
      assert.are.equal(-32000, out.msgs[5].data.rpc_code)
    end, 120000)
  end)

  -- An actor's requests share the alarms that watch their deadlines
  -- (lua/msrt/actor_boot.lua): a shorter timeout after a long one still
  -- ends in time, and an alarm asked for an earlier, shorter request does
  -- not end a later, longer one early.
  it("an actor's timeouts hold whatever timeouts its earlier requests had", function()
    S.drive(function()
      responder()
      local out = S.collector("rq_timeouts")
      assert(S.spawn { name = "rq_timeouts", subscribe = "ask.timeouts",
        handle = function(ctx)
          local ffi = require "ffi"
          pcall(ffi.cdef, "struct rq_ts { long s, ns; }; int clock_gettime(int, struct rq_ts *);")
          local ts = ffi.new("struct rq_ts")
          local function now() ffi.C.clock_gettime(1, ts) return tonumber(ts.s) * 1e3 + tonumber(ts.ns) / 1e6 end
          local got = {}
          local function ask(subject, timeout_ms)
            local t0 = now()
            local data, err = ctx:request(subject, "x", { timeout_ms = timeout_ms })
            got[#got + 1] = { data = data, code = err and err.code, ms = now() - t0 }
          end
          ask("rq.echo", 20000) -- answered: its deadline's alarm stays outstanding
          ask("rq.mute", 50)    -- shorter: must not wait for that alarm
          ask("rq.echo", 30)    -- answered: an alarm due in 30 ms is outstanding
          ask("rq.mute", 200)   -- that alarm fires first: not a timeout yet
          ctx:publish("rq_timeouts", got)
        end })
      assert(msrt.publish("ask.timeouts", true))
      assert.is_true(out.wait(1, 30000), "the actor's answers")
      local got = out.msgs[1].data
      assert.are.same({ "x", "timeout", "x", "timeout" },
        { got[1].data, got[2].code, got[3].data, got[4].code })
      assert.is_true(got[2].ms >= 50 and got[2].ms < 10000, ("the 50 ms timeout took %.1f ms"):format(got[2].ms))
      assert.is_true(got[4].ms >= 200 and got[4].ms < 10000, ("the 200 ms timeout took %.1f ms"):format(got[4].ms))
    end, 60000)
  end)

  -- The hub's requests share one timer (lua/msrt/deadlines.lua): each of
  -- many waiting coroutines times out no earlier than its own timeout,
  -- answered ones never time out (and, hundreds of them, are forgotten
  -- while a long wait stays), and the timer is closed once none waits.
  it("msrt.request from many hub coroutines: each its own timeout, one timer", function()
    S.drive(function()
      responder()
      local uv = require "luv"
      local handles = S.open_handles()
      local left, results, co = 0, {}, coroutine.running()
      local function go(i, subject, timeout_ms)
        left = left + 1
        coroutine.wrap(function()
          local t0 = uv.hrtime()
          local data, err = msrt.request(subject, i, { timeout_ms = timeout_ms })
          results[i] = { data = data, code = err and err.code, ms = (uv.hrtime() - t0) / 1e6, want = timeout_ms }
          left = left - 1
          if left == 0 then assert(coroutine.resume(co)) end
        end)()
      end
      go(1, "rq.mute", 400) -- the long wait, while hundreds of answered requests come and go
      for i = 2, 21 do go(i, "rq.mute", 20 + (21 - i) * 5) end -- armed latest first
      left = left + 1
      coroutine.wrap(function() -- one after the other: their entries outnumber the waits
        for i = 22, 321 do results[i] = { data = msrt.request("rq.echo", i, { timeout_ms = 20000 }) } end
        left = left - 1
        if left == 0 then assert(coroutine.resume(co)) end
      end)()
      coroutine.yield()
      for i = 1, 21 do
        local r = results[i]
        assert.are.equal("timeout", r.code, "request " .. i)
        assert.is_true(r.ms >= r.want and r.ms < r.want + 5000, ("request %d: %.1f ms for %d"):format(i, r.ms, r.want))
      end
      for i = 22, 321 do assert.are.equal(i, results[i].data) end
      assert.is_true(S.wait_until(function() return S.open_handles() == handles end, 10000),
        "the deadline timer is closed")
    end, 60000)
  end)

  -- A hub request's reply finds its waiter by the inbox it names
  -- (lua/msrt/hub.lua): a late reply to a request that timed out, whose
  -- place the next request took, and a reply to a forged inbox beside
  -- it are dropped; the next request gets its own reply.
  it("msrt.request takes only the reply to its own inbox, with thousands in flight", function()
    S.drive(function()
      local inboxes, n = {}, 0
      local sub = assert(msrt.subscribe("rq.hub.*", function(m)
        n = n + 1
        inboxes[n] = m.reply
        if m.subject == "rq.hub.mute" then return end
        if m.subject == "rq.hub.after" then
          local forged = m.reply:sub(1, -27) .. ("A"):rep(22) .. m.reply:sub(-4)
          msrt.publish(inboxes[1], "late")
          msrt.publish(forged, "forged")
        end
        msrt.publish(m.reply, m.data)
      end))
      local data, err = msrt.request("rq.hub.mute", 1, { timeout_ms = 30 })
      assert.are.equal("timeout", err and err.code)
      data, err = msrt.request("rq.hub.after", "mine", { timeout_ms = 5000 })
      assert.are.equal("mine", data, tostring(err))
      assert.are_not.equal(inboxes[1], inboxes[2])
      assert.are.equal(inboxes[1]:sub(-4), inboxes[2]:sub(-4), "the second took the first's place")
      local left, got, co = 2000, {}, coroutine.running()
      for i = 1, 2000 do
        coroutine.wrap(function()
          got[i] = msrt.request("rq.hub.echo", i, { timeout_ms = 20000 })
          left = left - 1
          if left == 0 then assert(coroutine.resume(co)) end
        end)()
      end
      if left > 0 then coroutine.yield() end
      for i = 1, 2000 do assert.are.equal(i, got[i]) end
      sub.unsubscribe()
    end, 60000)
  end)

  -- A request whose data cannot be encoded raises; the place it took is
  -- given back (it held the coroutine forever): the next request, with
  -- nothing else in flight, takes that place again.
  it("msrt.request gives its place back when its publish raises", function()
    S.drive(function()
      local last
      local sub = assert(msrt.subscribe("rq.back", function(m)
        last = m.reply
        msrt.publish(m.reply, m.data)
      end))
      assert.are.equal(1, msrt.request("rq.back", 1, { timeout_ms = 5000 }))
      local first = last
      local ok, err = pcall(msrt.request, "rq.back", function() end, { timeout_ms = 5000 })
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("function", 1, true), tostring(err))
      assert.are.equal(2, msrt.request("rq.back", 2, { timeout_ms = 5000 }))
      assert.are.equal(first:sub(-4), last:sub(-4))
      sub.unsubscribe()
    end, 10000)
  end)
end)
