-- Subscription changes and routing-table swaps while 1,000,000 messages
-- flow between actors (issue "The local message router": nothing lost or
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

local function SEND(ctx)
  for i = 1, ctx.args.total do ctx:publish("load.x", i) end
end

describe("the router under load", function()
  it("loses and duplicates nothing while subscriptions and routing tables change", function()
    local total = os.getenv("MSRT_SPEC_QUICK") and 100000 or 1000000
    S.drive(function()
      local stable = assert(S.spawn { name = "stable", subscribe = { "load.x", "load.report" },
        capacity = 4096, overflow = "block", args = { total = total, tag = "stable" },
        init = RECV_INIT, handle = RECV })
      local done = S.collector("load.done.*")
      assert(S.spawn { name = "sender", subscribe = "load.go", args = { total = total }, handle = SEND })
      -- churn: subscriptions that match nothing of the flood, a wildcard
      -- and a queue group that do, and routing tables, swapped every ms
      local churned, late = 0, nil
      local ticker = msrt.every(1, function()
        churned = churned + 1
        local subs = {
          assert(msrt.subscribe("load.other." .. churned, function() end)),
          assert(msrt.subscribe("unrelated.>", function() end, { queue = "q" })),
        }
        assert(msrt.routes(churned % 2 == 0 and {} or { { match = "legacy.*", rewrite = "new.$1" } }))
        for _, s in ipairs(subs) do s.unsubscribe() end
        if churned == 20 and not late then -- a subscriber that joins mid-flood
          late = assert(S.spawn { name = "late", subscribe = "load.x", capacity = 4096,
            overflow = "block", args = { total = total, tag = "late" }, init = RECV_INIT, handle = RECV })
        end
      end)
      assert(msrt.publish("load.go", true))
      assert.is_true(done.wait(1, 120000), "the stable receiver did not get the last message")
      ticker.stop()
      assert.is_true(churned > 20, "the subscriptions did not change during the flood")
      local r = assert(msrt.request("load.report", nil, { timeout_ms = 10000 }))
      assert.are.same({ first = 1, last = total, n = total, bad = 0 }, r)
      assert.is_true(done.wait(2, 60000), "the late receiver did not get the last message")
      assert.is_table(late)
      -- from its first message on, the late subscriber missed nothing
      local l = done.msgs[2].subject == "load.done.late" and done.msgs[2].data or done.msgs[1].data
      assert.are.equal(0, l.bad)
      assert.are.equal(total, l.last)
      assert.are.equal(total - l.first + 1, l.n)
      assert.is_true(l.first > 1, "the late subscriber joined before the flood began")
      msrt.routes({})
      done.close()
      stable:stop()
    end, 180000)
  end)
end)
