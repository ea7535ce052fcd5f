-- A responder that dies holding a request's reply subject (README
-- "Messages"): the requester fails at once with no_responders, as a
-- gen_server:call fails when the callee dies, instead of waiting for its
-- timeout. Actors and processes, asked by msrt.request from the hub and
-- by ctx:request from an actor. The requests' timeouts are long: a spec
-- that waited for one would fail on the timeout's error code.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())
local spawn, collector = S.spawn, S.collector
local LONG = 20000

local function drive(body) return S.drive(body, 60000) end

-- A child that takes one stdin line and exits without replying.
local function silent_child(name, subject)
  return assert(msrt.process { name = name, cmd = { "/bin/sh", "-c", "read line; exit 3" },
    subscribe = subject })
end

-- An actor that asks `target` once (on any message) and publishes the
-- error code (or "reply: <data>") on `out`.
local function asker(name, go, target, out)
  return assert(spawn {
    name = name, subscribe = go, args = { target = target, out = out },
    handle = function(ctx)
      local data, err = ctx:request(ctx.args.target, 1, { timeout_ms = 20000 })
      ctx:publish(ctx.args.out, err and err.code or ("reply: " .. tostring(data)))
    end,
  })
end

describe("a responder that dies without replying", function()
  it("fails msrt.request at once when the actor crashes on the request", function()
    drive(function()
      assert(spawn { name = "resp_crash", subscribe = "resp.crash",
        handle = function() error("boom") end })
      local data, err = msrt.request("resp.crash", 1, { timeout_ms = LONG })
      assert.is_nil(data)
      assert.are.equal("no_responders", err.code)
      assert.matches("responder crashed", err.message)
    end)
  end)

  it("fails msrt.request at once when the actor stops without replying", function()
    drive(function()
      local h = assert(spawn { name = "resp_stop", subscribe = "resp.stop",
        handle = function(ctx) ctx:stop() end })
      local _, err = msrt.request("resp.stop", 1, { timeout_ms = LONG })
      assert.are.equal("no_responders", err.code)
      assert.matches("responder exited", err.message)
      h:wait()
    end)
  end)

  it("fails a request still queued in the mailbox of an actor that crashes", function()
    drive(function()
      local gate = collector("resp.gate")
      local h = assert(spawn { name = "resp_queued", subscribe = "resp.queued",
        handle = function(ctx, msg)
          if msg.data ~= "crash" then return ctx:reply(msg, "served") end
          ctx:request("resp.gate", 1, { timeout_ms = 20000 }) -- only its sys lane meanwhile
          error("boom")
        end })
      assert(msrt.publish("resp.queued", "crash"))
      assert.is_true(gate.wait(1))
      local result
      msrt.after(0, function()
        local _, err = msrt.request("resp.queued", "ask", { timeout_ms = LONG })
        result = err and err.code or "a reply"
      end)
      assert.is_true(S.wait_until(function() return (h:mailbox()) == 1 end))
      assert(msrt.publish(gate.msgs[1].reply, "go"))
      assert.is_true(S.wait_until(function() return result ~= nil end, LONG * 2))
      assert.are.equal("no_responders", result)
      gate.close()
    end)
  end)

  it("fails an actor's ctx:request at once when the actor it asks crashes", function()
    drive(function()
      local out = collector("resp.actor.out")
      assert(spawn { name = "resp_crash2", subscribe = "resp.crash2",
        handle = function() error("boom") end })
      asker("resp_asker", "resp.asker.go", "resp.crash2", "resp.actor.out")
      assert(msrt.publish("resp.asker.go", true))
      assert.is_true(out.wait(1, LONG * 2))
      assert.are.same({ "no_responders" }, out.data())
      out.close()
    end)
  end)

  it("fails msrt.request and ctx:request at once when the process exits without replying", function()
    drive(function()
      local p = silent_child("resp_proc", "resp.proc")
      local _, err = msrt.request("resp.proc", 1, { timeout_ms = LONG })
      assert.are.equal("no_responders", err.code)
      p:wait()
      local out = collector("resp.proc.out")
      local p2 = silent_child("resp_proc2", "resp.proc2")
      asker("resp_asker2", "resp.asker2.go", "resp.proc2", "resp.proc.out")
      assert(msrt.publish("resp.asker2.go", true))
      assert.is_true(out.wait(1, LONG * 2))
      assert.are.same({ "no_responders" }, out.data())
      p2:wait()
      out.close()
    end)
  end)

  it("still lets an answer through that is sent later or by the actor a request was passed on to", function()
    drive(function()
      -- answers from a timer, after the message that asked
      assert(spawn { name = "resp_later", subscribe = "resp.later",
        handle = function(ctx, msg) ctx:after(20, function() ctx:reply(msg, "later") end) end })
      assert.are.equal("later", (msrt.request("resp.later", 1, { timeout_ms = LONG })))
      -- passes the request on with its reply subject, then stops
      assert(spawn { name = "resp_worker", subscribe = "resp.worker",
        handle = function(ctx, msg) ctx:after(20, function() ctx:reply(msg, "worked") end) end })
      assert(spawn { name = "resp_front", subscribe = "resp.front",
        handle = function(ctx, msg)
          ctx:publish("resp.worker", msg.data, { reply = msg.reply })
          ctx:stop()
        end })
      assert.are.equal("worked", (msrt.request("resp.front", 1, { timeout_ms = LONG })))
    end)
  end)
end)
