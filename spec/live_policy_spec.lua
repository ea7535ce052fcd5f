-- examples/live_policy: a fleet whose routing table and supervision tree
-- are edited while it runs (the example edits its own copy step by step).
local S = require "spec.support"

describe("examples/live_policy", function()
  it("applies each edit while the fleet runs and keeps out the broken one", function()
    local r = S.run({ "examples/live_policy/main.lua" })
    assert.are.equal(0, r.code, r.err)
    local out = r.out
    -- new v2 workers start without restarting w1 and w2
    assert.matches("child_started w3", out)
    assert.matches("msrt.reload.ok fleet.lua", out)
    assert.is_nil(out:match("edit: add two v2.-child_restarted w1.-edit: split"), "w1 restarted by the reload")
    -- after the split, v2 workers do jobs
    local after_split = out:match("edit: split(.*)")
    assert.is_string(after_split, "the split edit did not run")
    assert.matches("v2 [1-9]%d*", after_split)
    -- the broken table is refused with file:line, jobs keep flowing
    assert.matches("msrt.reload.failed routes.lua: [^\n]*routes.lua:1: rule 1", out)
    assert.matches("unrouted 0", out:match("reload.failed(.*)") or "")
    -- one_for_all from the next event: a crash (of w3 or w4, whichever the
    -- v2 queue group picked) restarts every worker
    local after_crash = out:match("child_exited w[34](.*)")
    assert.is_string(after_crash, "no v2 worker crashed")
    for _, w in ipairs({ "w1", "w2", "w3", "w4" }) do assert.matches("child_restarted " .. w, after_crash) end
  end)
end)
