-- Priorities out of 1..10 are refused, never mapped to the highest; drop
-- notices are published for subjects of any length
-- (spec/security/README.md).
local S = require "spec.support"
local msrt = require "msrt"
local core = require "msrt.core"

local drive, spawn, collector = S.drive, S.spawn, S.collector

msrt.start()

local BAD = { 0, -1, 11, 2.5, 0 / 0, math.huge, -math.huge, 1e300 }

describe("security: priorities", function()
  it("refuses priorities outside 1..10 from the hub (publish, request)", function()
    drive(function()
      local got = collector("prio.hub")
      local refused0 = msrt.metrics().router.refused
      for _, p in ipairs(BAD) do
        local ok, err = msrt.publish("prio.hub", p, { priority = p })
        assert.is_nil(ok, "priority " .. tostring(p) .. " accepted")
        assert.are.equal("invalid_arg", err.code)
        assert.matches("priority must be an integer 1..10", err.message, 1, true)
        local r, rerr = msrt.request("prio.hub", p, { priority = p, timeout_ms = 1000 })
        assert.is_nil(r)
        assert.are.equal("invalid_arg", rerr.code)
      end
      -- the C binding refuses too (and counts it) when called directly
      local n, err = core.publish("prio.hub", require("string.buffer").encode(1), nil, 0 / 0)
      assert.is_nil(n)
      assert.are.equal("invalid_arg", err.code)
      assert.are.equal(1, msrt.metrics().router.refused - refused0)
      for p = 1, 10 do assert.is_true(msrt.publish("prio.hub", p, { priority = p })) end
      assert.is_true(got.wait(10))
      for i, m in ipairs(got.msgs) do assert.are.equal(i, m.priority) end
      got.close()
    end)
  end)

  it("refuses priorities outside 1..10 from an actor", function()
    drive(function()
      local out = collector("prio.actor.out")
      assert(spawn { name = "prio_pub", subscribe = "prio.actor.go",
        handle = function(ctx, msg)
          local res = {}
          for i, p in ipairs(msg.data) do
            local ok, err = ctx:publish("prio.actor.sink", 1, { priority = p })
            res[i] = ok and "ok" or err.code
          end
          ctx:publish("prio.actor.out", res)
        end })
      local list = { 0, -1, 11, 2.5, 0 / 0, math.huge, -math.huge, 1e300, 1, 10 }
      assert.is_true(msrt.publish("prio.actor.go", list))
      assert.is_true(out.wait(1))
      local want = {}
      for i = 1, 8 do want[i] = "invalid_arg" end
      want[9], want[10] = "ok", "ok"
      assert.are.same(want, out.msgs[1].data)
      out.close()
    end)
  end)
end)

describe("security: drop notices", function()
  -- A queue group with no ready member drops every copy (drop_not_ready)
  -- and announces it: on a subject of len bytes.
  local function drop_on(len)
    local subject = "longdrop." .. string.rep("a", len - 9)
    local notes = collector("msrt.dropped.longdrop.>")
    local sub = assert(msrt.subscribe(subject, function() end, { queue = "q" }))
    assert(core.set_ready(sub.id, false))
    local before = msrt.metrics().router.drop_not_ready
    assert.is_true(msrt.publish(subject, "x"))
    assert.is_true(notes.wait(1), "no notice for a subject of " .. len .. " bytes")
    assert.are.equal(1, msrt.metrics().router.drop_not_ready - before)
    sub.unsubscribe()
    notes.close()
    return subject, notes.msgs[1]
  end

  it("announces a drop on a subject longer than 512 bytes in full", function()
    drive(function()
      local subject, note = drop_on(1000)
      assert.are.equal("msrt.dropped." .. subject, note.subject)
      assert.are.equal("drop_not_ready", note.data)
    end)
  end)

  it("announces a drop on a subject at max_subject, cut to fit, with its length", function()
    drive(function()
      local max = require("msrt.profile").current().max_subject or 4096
      local subject, note = drop_on(max)
      assert.are.equal(max, #note.subject)
      assert.are.equal(("msrt.dropped." .. subject):sub(1, max), note.subject)
      assert.are.equal(("drop_not_ready (subject of %d bytes cut)"):format(max), note.data)
    end)
  end)
end)

describe("security: subscriptions an actor holds", function()
  it("an actor's ctx:subscribe past the profile's max_subscriptions gets resource_exhausted; what it holds still works", function()
    drive(function()
      local cap = require("msrt.profile").current().max_subscriptions
      assert.are.equal(1000, cap) -- the default profile's (README "Tuning profiles")
      local out = collector("subcap.out")
      assert(spawn { name = "subcap", subscribe = "subcap.go",
        handle = function(ctx, msg)
          if msg.subject ~= "subcap.go" then
            ctx:publish("subcap.out", msg.subject)
            return
          end
          local made, err = 0, nil
          for i = 1, 2000 do
            local sid, e = ctx:subscribe("subcap.n." .. i)
            if not sid then err = e break end
            made = made + 1
          end
          ctx:publish("subcap.out", { made = made, code = err and err.code, message = err and err.message })
        end })
      assert.is_true(msrt.publish("subcap.go", true))
      assert.is_true(out.wait(1))
      local r = out.msgs[1].data
      -- its spec's subscription and those it made: cap in all
      assert.are.equal(cap - 1, r.made)
      assert.are.equal("resource_exhausted", r.code)
      assert.matches("max_subscriptions", r.message, 1, true)
      assert.is_true(msrt.publish("subcap.n." .. (cap - 1), true))
      assert.is_true(out.wait(2))
      assert.are.equal("subcap.n." .. (cap - 1), out.msgs[2].subject == "subcap.out" and out.msgs[2].data)
      out.close()
    end)
  end)

  -- An actor's code is an agent's: it may guess another's subscription
  -- ids. It drops only what it holds; the slot it frees counts again.
  it("ctx:unsubscribe drops only the actor's own subscriptions; another's id is not_found; the slot frees", function()
    drive(function()
      local out = collector("unsub.out")
      assert(spawn { name = "unsub_a", subscribe = "unsub.a.go",
        handle = function(ctx, msg)
          if msg.subject == "unsub.a.go" then
            ctx:publish("unsub.out", { a_sid = assert(ctx:subscribe("unsub.a.mine")) })
          else
            ctx:publish("unsub.out", { a_got = msg.subject })
          end
        end })
      assert(msrt.publish("unsub.a.go", true))
      assert.is_true(out.wait(1))
      local a_sid = out.msgs[1].data.a_sid
      assert(spawn { name = "unsub_b", subscribe = "unsub.b.go",
        handle = function(ctx, msg)
          local r = {}
          local _, e = ctx:unsubscribe(msg.data) -- a's id
          r.other = e and e.code
          local mine = assert(ctx:subscribe("unsub.b.mine"))
          r.own = ctx:unsubscribe(mine)
          _, e = ctx:unsubscribe(mine)
          r.again = e and e.code
          r.bad = select(2, pcall(function() local v = ctx:unsubscribe("x") return v end))
          -- up to the cap, one dropped, one more taken
          local last
          repeat
            local sid = ctx:subscribe("unsub.b.n." .. (last or 0) + 1)
            if sid then last = (last or 0) + 1 r.held = sid end
          until not sid
          r.full = last
          r.dropped = ctx:unsubscribe(r.held)
          r.again_taken = ctx:subscribe("unsub.b.after") ~= nil
          ctx:publish("unsub.out", r)
        end })
      assert(msrt.publish("unsub.b.go", a_sid))
      assert.is_true(out.wait(2))
      local r = out.msgs[2].data
      assert.are.equal("not_found", r.other)
      assert.is_true(r.own)
      assert.are.equal("not_found", r.again)
      assert.matches("limits_spec.lua:%d+: bad argument #1 to 'unsubscribe'", r.bad)
      assert.is_true(r.full > 0)
      assert.is_true(r.dropped)
      assert.is_true(r.again_taken)
      -- a's subscription still takes; b's dropped ones have no subscriber
      assert(msrt.publish("unsub.a.mine", true))
      assert.is_true(out.wait(3))
      assert.are.equal("unsub.a.mine", out.msgs[3].data.a_got)
      local ok, err = msrt.request("unsub.b.mine", true, { timeout_ms = 10000 })
      assert.is_nil(ok)
      assert.are.equal("no_responders", err.code)
      out.close()
    end)
  end)
end)
