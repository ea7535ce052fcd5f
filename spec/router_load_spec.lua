-- Subscription changes and routing-table swaps while 1,000,000 messages
-- flow between actors (README "Messages": nothing lost or
-- duplicated). scripts/test runs this file under ThreadSanitizer too.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())

-- The receiver checks that it sees 1, 2, 3, ... with no gap or repeat from
-- its first message on, and reports {first, last, n, bad} when asked.
local function RECV_INIT(ctx) ctx.n, ctx.bad = 0, 0 end
local function RECV(ctx, msg)
  if msg.subject == "load.report" then
    ctx:reply(msg, { first = ctx.first, last = ctx.last, n = ctx.n, bad = ctx.bad })
    return
  end
  local i = msg.data
  if ctx.last and i ~= ctx.last + 1 then ctx.bad = ctx.bad + 1 end
  ctx.first = ctx.first or i
  ctx.last, ctx.n = i, ctx.n + 1
  if i == ctx.args.total then
    ctx:publish("load.done." .. ctx.args.tag, { first = ctx.first, last = ctx.last, n = ctx.n, bad = ctx.bad })
  end
end

-- Every tenth of the flood the sender asks the hub to change the
-- subscriptions (and, halfway, to add a subscriber) before it goes on, so
-- the changes happen during the flood however fast it runs.
local function SEND(ctx)
  local total = ctx.args.total
  for i = 1, total do
    ctx:publish("load.x", i)
    if i % (total / 10) == 0 and i < total then
      assert(ctx:request("load.churn", i, { timeout_ms = 60000 }))
    end
  end
end

describe("the router under load", function()
  it("loses and duplicates nothing while subscriptions and routing tables change", function()
    local total = 1000000
    S.drive(function()
      local stable = assert(S.spawn { name = "stable", subscribe = { "load.x", "load.report" },
        capacity = 4096, overflow = "block", args = { total = total, tag = "stable" },
        init = RECV_INIT, handle = RECV })
      local done = S.collector("load.done.*")
      assert(S.spawn { name = "sender", subscribe = "load.go", args = { total = total }, handle = SEND })
      -- churn: subscriptions that match nothing of the flood, a wildcard
      -- and a queue group that do, and routing tables, swapped every ms
      local churned, asked, late = 0, 0, nil
      local function churn()
        churned = churned + 1
        local subs = {
          assert(msrt.subscribe("load.other." .. churned, function() end)),
          assert(msrt.subscribe("unrelated.>", function() end, { queue = "q" })),
        }
        assert(msrt.routes(churned % 2 == 0 and {} or { { match = "legacy.*", rewrite = "new.$1" } }))
        for _, s in ipairs(subs) do s.unsubscribe() end
      end
      local ticker = msrt.every(1, churn) -- and at random points in between
      local churn_sub = assert(msrt.subscribe("load.churn", function(m)
        churn()
        asked = asked + 1
        if m.data == total / 2 then -- a subscriber that joins mid-flood
          late = assert(S.spawn { name = "late", subscribe = "load.x", capacity = 4096,
            overflow = "block", args = { total = total, tag = "late" }, init = RECV_INIT, handle = RECV })
        end
        msrt.publish(m.reply, true)
      end))
      assert(msrt.publish("load.go", true))
      assert.is_true(done.wait(1, 120000), "the stable receiver did not get the last message")
      ticker.stop()
      churn_sub.unsubscribe()
      assert.are.equal(9, asked, "the subscriptions did not change during the flood")
      local r = assert(msrt.request("load.report", nil, { timeout_ms = 10000 }))
      assert.are.same({ first = 1, last = total, n = total, bad = 0 }, r)
      assert.is_true(done.wait(2, 60000), "the late receiver did not get the last message")
      assert.is_table(late)
      -- from its first message on, the late subscriber missed nothing
      local l = done.msgs[2].subject == "load.done.late" and done.msgs[2].data or done.msgs[1].data
      assert.are.equal(0, l.bad)
      assert.are.equal(total, l.last)
      assert.are.equal(total - l.first + 1, l.n)
      assert.is_true(l.first > total / 2, "the late subscriber joined before it was asked to")
      msrt.routes({})
      done.close()
      stable:stop()
    end, 180000)
  end)
end)
