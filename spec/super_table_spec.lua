-- One owner for each fact of a supervisor's children (docs/architecture.md
-- "Supervision"): src/super's table holds the child list (order, restart
-- type, shutdown, type, significance, state, attempts) and each child's
-- Lua record (handle, start spec, probes) hangs off its entry, so one add
-- puts both in and one delete takes both out.
local core = require "msrt.core"

describe("the supervisor's child table", function()
  it("takes its defaults from supervisor.lua alone: a flag left out is refused, not defaulted again", function()
    local sup = require "msrt.supervisor"
    local s, err = core.super_new({})
    assert.is_nil(s)
    assert.are.equal("invalid_arg", err.code)
    assert.matches("intensity", err.message)
    s, err = core.super_new({ intensity = 1, period_ms = 5000, backoff = { initial_ms = 10 } })
    assert.is_nil(s)
    assert.matches("backoff.max_ms", err.message)
    assert.are.same({ initial_ms = 10, max_ms = 10, multiplier = 2, jitter = 0 },
      sup.backoff_of({ initial_ms = 10 }))
    assert(core.super_new({ intensity = 1, period_ms = 5000, backoff = sup.backoff_of({ initial_ms = 10 }) }))
    assert.are.equal(40, core.backoff_delay(sup.backoff_of({ initial_ms = 10, max_ms = 100 }), 2, 0.5))
  end)

  it("keeps each child's record with its entry, in start order", function()
    local s = assert(core.super_new({ intensity = 1, period_ms = 5000 }))
    local a, b = { id = "a" }, { id = "b" }
    assert.are.equal(1, s:add("a", "permanent", 5000, false, false, a))
    assert.are.equal(2, s:add("b", "temporary", -1, true, false, b))
    assert.are.equal(a, s:record("a"))
    assert.are.same({ a, b }, s:records())
    assert.are.equal(b, s:records()[2])
    -- the facts are the table's: read from it, not from the record
    local kb = s:child("b")
    assert.are.equal("temporary", kb.restart)
    assert.are.equal("brutal_kill", kb.shutdown)
    assert.are.equal("supervisor", kb.type)
    assert.is_nil(b.restart)
  end)

  it("drops the record with the entry, and refuses what it refuses without keeping one", function()
    local s = assert(core.super_new({ intensity = 1, period_ms = 5000 }))
    local a = { id = "a" }
    assert(s:add("a", "permanent", 5000, false, false, a))
    local ok, err = s:add("a", "permanent", 5000, false, false, { id = "a", dup = true })
    assert.is_nil(ok)
    assert.are.equal("invalid_arg", err.code)
    assert.are.equal(a, s:record("a"))
    assert.is_true(s:delete("a"))
    assert.is_nil(s:record("a"))
    assert.is_nil(s:child("a"))
    assert.are.same({}, s:records())
    ok, err = s:delete("a")
    assert.is_nil(ok)
    assert.are.equal("not_found", err.code)
  end)
end)
