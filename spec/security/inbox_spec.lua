-- Inboxes cannot be guessed or hijacked (spec/security/README.md): reply
-- inboxes carry 132 random bits (a random prefix per requester and a
-- random token per request), and a requester takes only the first reply.
local S = require "spec.support"
local msrt = require "msrt"
local H = require "spec.security.helpers"

local drive, spawn, collector = H.drive, S.spawn, S.collector

msrt.start()

-- A slow trusted service: answers "trusted" after ms, from an actor.
local function slow_service(subject, ms)
  return assert(spawn { name = "slow_" .. subject:gsub("%.", "_"), subscribe = subject, args = ms,
    handle = function(ctx, msg)
      local reply = msg.reply
      ctx:after(ctx.args, function(c) c:publish(reply, "trusted") end)
    end })
end

-- The old inboxes were _INBOX.hub.<n> and _INBOX.<actor id>.<n>: spray
-- every such guess (as the reply of an allowed publish, and directly).
local function sprayer(name, allow)
  return H.child(name, [[
    i=1; while [ $i -le 60 ]; do
      echo "{\"subject\":\"svc.echo\",\"reply\":\"_INBOX.hub.$i\",\"data\":\"forged\"}"
      echo "{\"subject\":\"_INBOX.hub.$i\",\"data\":\"forged\"}"
      j=1; while [ $j -le 8 ]; do
        echo "{\"subject\":\"_INBOX.$j.$i\",\"data\":\"forged\"}"; j=$((j+1)); done
      i=$((i+1)); done
    echo '{"subject":"svc.echo","reply":"agents.]] .. name .. [[.done","data":"end"}']],
    { allow_publish = allow })
end

describe("security: inboxes", function()
  -- The issue's reproduction: an agent allowed only svc.echo names the
  -- hub's inbox as a reply while the hub waits on another service.
  for _, case in ipairs {
    { "allowed only svc.echo", "svc.echo" },
    { "allowed svc.echo and _INBOX.> (guessing is all that is left)", { "svc.echo", "_INBOX.>" } },
  } do
    it("gives the hub the trusted answer, an agent " .. case[1] .. " spraying guesses", function()
      drive(function()
        local echo = assert(msrt.subscribe("svc.echo", function(m)
          if m.reply then msrt.publish(m.reply, m.data) end
        end))
        slow_service("svc.slow", 300)
        local name = case[2] == "svc.echo" and "spray1" or "spray2"
        local done = collector("agents." .. name .. ".done")
        local got, err
        local waiting = true
        msrt.after(0, function()
          got, err = msrt.request("svc.slow", "q", { timeout_ms = 10000 })
          waiting = false
        end)
        S.sleep(20) -- the hub's request is in flight
        local p = sprayer(name, case[2])
        p:wait()
        assert.is_true(done.wait(1)) -- every guess had its chance before
        assert.is_true(S.wait_until(function() return not waiting end, 10000))
        assert.are.equal("trusted", got, err and tostring(err))
        echo.unsubscribe()
        done.close()
      end)
    end)
  end

  it("makes inboxes of tokens of 22 random characters, new for each request", function()
    drive(function()
      local seen = {}
      local svc = assert(msrt.subscribe("svc.inboxes", function(m)
        seen[#seen + 1] = m.reply
        msrt.publish(m.reply, true)
      end))
      assert(spawn { name = "inbox_asker", subscribe = "inbox.ask",
        handle = function(ctx)
          for _ = 1, 3 do ctx:request("svc.inboxes", 1, { timeout_ms = 5000 }) end
          ctx:publish("inbox.asked", true)
        end })
      local asked = collector("inbox.asked")
      for _ = 1, 3 do assert.is_true(msrt.request("svc.inboxes", 1, { timeout_ms = 5000 })) end
      assert.is_true(msrt.publish("inbox.ask", true))
      assert.is_true(asked.wait(1))
      assert.are.equal(6, #seen)
      local prefixes, tokens = {}, {}
      for _, r in ipairs(seen) do
        local prefix, token = r:match("^_INBOX%.([%w_%-]+)%.([%w_%-]+)$")
        assert.is_truthy(prefix, r)
        assert.are.equal(22, #prefix)
        -- 22 random characters; the hub's msrt.request adds its waiting
        -- slot's 4 (lua/msrt/hub.lua), which are not random
        assert.is_true(#token == 22 or #token == 26, r)
        prefixes[prefix] = true
        local random = token:sub(1, 22)
        assert.is_nil(tokens[random], "a token came twice")
        tokens[random] = true
      end
      local n = 0
      for _ in pairs(prefixes) do n = n + 1 end
      assert.are.equal(2, n) -- the hub's and the actor's
      svc.unsubscribe()
      asked.close()
    end)
  end)

  it("takes the first reply on an inbox and drops the rest (hub and actor requesters)", function()
    drive(function()
      local svc = assert(msrt.subscribe("svc.twice", function(m)
        msrt.publish(m.reply, "first")
        msrt.publish(m.reply, "second")
      end))
      assert(spawn { name = "twice_asker", subscribe = "twice.ask",
        handle = function(ctx)
          local a = ctx:request("svc.twice", 1, { timeout_ms = 5000 })
          local b = ctx:request("svc.twice", 2, { timeout_ms = 5000 })
          ctx:publish("twice.asked", { a, b })
        end })
      local asked = collector("twice.asked")
      assert.are.equal("first", msrt.request("svc.twice", 1, { timeout_ms = 5000 }))
      assert.are.equal("first", msrt.request("svc.twice", 2, { timeout_ms = 5000 }))
      assert.is_true(msrt.publish("twice.ask", true))
      assert.is_true(asked.wait(1))
      assert.are.same({ "first", "first" }, asked.msgs[1].data)
      svc.unsubscribe()
      asked.close()
    end)
  end)
end)
