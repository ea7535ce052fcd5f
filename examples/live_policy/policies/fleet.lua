-- The fleet's supervision tree: workers of version v1 in one queue group.
-- Edit it while the fleet runs: new ids start, running ones keep going
-- with their new spec, the strategy and intensity apply from the next
-- event.
local function worker(id, version)
  return { id = id, restart = "permanent", actor = {
    subscribe = "work." .. version .. ".>", queue = version,
    args = { version = version },
    handle = function(ctx, msg)
      if msg.data.crash then error("asked to crash") end
      ctx:publish("done", { version = ctx.args.version, job = msg.data.n })
    end,
  } }
end

return {
  name = "fleet", strategy = "one_for_one", intensity = 3, period_ms = 5000,
  children = { worker("w1", "v1"), worker("w2", "v1") },
}
