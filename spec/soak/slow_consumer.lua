-- Soak: slow consumer (README "Reliability"). For each overflow policy
-- an actor with a small mailbox stops reading (its handler waits on a
-- request nobody answers until the soak releases it) while the hub
-- produces N messages to it. Checks: drop_newest, drop_oldest and error
-- never hold the producer (it finishes while the consumer is stalled);
-- block holds it until there is room and loses nothing; every drop is
-- counted in msrt.metrics() and published on msrt.dropped.<subject>;
-- every refusal comes back to the sender; the router's accounting identity
-- holds at the end. Exits 1 on any violated invariant.
--   msrt-lua spec/soak/slow_consumer.lua [N]
local msrt = require "msrt"

local N, CAP = tonumber(arg[1]) or 2000, 16
local C = dofile(arg[0]:match("^(.*)/") .. "/common.lua")("slow_consumer")
local check, say, sleep, wait_until = C.check, C.say, C.sleep, C.wait_until

-- the consumer's stall: its handler requests "stall.<policy>"; the hub
-- holds the reply until released
local held = {}
msrt.subscribe("stall.*", function(m) held[#held + 1] = m end)
local got = {}
msrt.subscribe("got.*", function(m)
  local p = m.subject:match("^got%.(.+)$")
  got[p] = (got[p] or 0) + 1
end)
local announced = {}
msrt.subscribe("msrt.dropped.>", function(m)
  local p = m.subject:match("^msrt%.dropped%.slow%.(.+)$")
  if p then announced[p] = (announced[p] or 0) + 1 end
end)

local function router() return msrt.metrics().router end

msrt.after(0, function()
  for _, policy in ipairs({ "drop_newest", "drop_oldest", "error", "block" }) do
    held = {}
    local h = assert(msrt.actor{ name = "slow_" .. policy, subscribe = "slow." .. policy, capacity = CAP,
      overflow = policy, args = { policy = policy },
      handle = function(ctx, msg)
        if msg.data == 1 then ctx:request("stall." .. ctx.args.policy, 1, { timeout_ms = 60000 }) end
        ctx:publish("got." .. ctx.args.policy, msg.data)
      end })
    local before = router()
    -- the first message stalls the consumer
    assert(msrt.publish("slow." .. policy, 1))
    check(wait_until(function() return #held == 1 end), "%s: the consumer never stalled", policy)
    local sent, refused, producer_done = 1, 0, false
    local produce = function()
      for i = 2, N do
        local ok, err = msrt.publish("slow." .. policy, i)
        if ok then sent = sent + 1
        elseif err and err.code == "mailbox_full" then refused = refused + 1
        else check(false, "%s: publish %d: %s", policy, i, tostring(err)) end
      end
      producer_done = true
    end
    msrt.after(0, produce)
    sleep(200)
    local stalled_done = producer_done
    local during = (got[policy] or 0)
    -- release the consumer
    for _, m in ipairs(held) do msrt.publish(m.reply, true) end
    check(wait_until(function() return producer_done end, 20000), "%s: the producer never finished", policy)
    local expect_delivered = policy == "block" and N or nil
    wait_until(function()
      local r = router()
      return (got[policy] or 0) >= (expect_delivered or 0) and (announced[policy] or 0) >= (r.dropped - before.dropped) - 0
        and r.accepted == r.delivered + r.dropped + r.dead_lettered + r.refused + r.no_responders
    end, 2000)
    sleep(100)
    local after = router()
    local dn, dold = after.drop_newest - before.drop_newest, after.drop_oldest - before.drop_oldest
    local ref = after.refused - before.refused
    local g = got[policy] or 0
    say("%-11s producer %s while stalled; sent %d, refused %d; consumer got %d; drop_newest %d, drop_oldest %d, refused %d, announced %d",
      policy, stalled_done and "finished" or "held", sent, refused, g, dn, dold, ref, announced[policy] or 0)
    local outcome = ("producer %s; %s got, "):format(stalled_done and "not held" or "held until room", C.num(g))
      .. (policy == "block" and ("%s lost"):format(C.num(N - g))
        or policy == "error" and ("%s refused to the sender"):format(C.num(ref))
        or ("%s dropped, %s announced"):format(C.num(dn + dold), C.num(announced[policy] or 0)))
    C.row("faults", { { "injected", ("%s: consumer stalled (mailbox %d), %s published"):format(policy, CAP, C.num(N)) },
      { "outcome", outcome } })
    check(during == 0, "%s: the stalled consumer handled %d messages", policy, during)
    if policy == "block" then
      check(not stalled_done, "block: the producer was not held by a full mailbox")
      check(g == N and dn + dold + ref == 0, "block: lost %d", N - g)
    else
      check(stalled_done, "%s: the producer was held by a full mailbox", policy)
      check(g + dn + dold + refused == N, "%s: %d got + %d dropped + %d refused ~= %d", policy, g, dn + dold, refused, N)
      check(g <= CAP + 1, "%s: consumer got %d, more than its mailbox", policy, g)
      if policy == "error" then check(refused == ref and refused > 0 and dn + dold == 0, "error: refusals not returned") end
      if policy == "drop_newest" then check(dn > 0 and dold == 0 and refused == 0, "drop_newest: wrong drops") end
      if policy == "drop_oldest" then check(dold > 0 and dn == 0 and refused == 0, "drop_oldest: wrong drops") end
      check((announced[policy] or 0) == dn + dold, "%s: %d drops but %d announced", policy, dn + dold, announced[policy] or 0)
    end
    h:stop("normal")
    h:wait()
  end
  sleep(100)
  C.accounting()
  C.finish()
end)
