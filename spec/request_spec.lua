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
end)
