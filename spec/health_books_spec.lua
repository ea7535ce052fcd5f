-- The health checks reach src/health's books one way (lua/msrt/health/
-- books.lua): msrt.core's health_new, and on the hot path the FFI entry
-- points with the books' pointer from books:pointer() and the probe kinds,
-- event bits and defaults as health/health.h states them (msrt.core's
-- health_kinds, health_events, health_defaults), not restated in Lua.
local core = require "msrt.core"
local books = require "msrt.health.books"

describe("the health books' C API", function()
  it("states the kinds, event bits and defaults once, in C", function()
    assert.are.same({ startup = 0, liveness = 1, readiness = 2 }, core.health_kinds)
    assert.are.same({ changed = 1, started = 2, restart = 4, ready = 8, unready = 16 }, core.health_events)
    assert.are.same({ initial_delay_ms = 0, interval_ms = 10000, timeout_ms = 1000,
      failure_threshold = 3, success_threshold = 1 }, core.health_defaults)
    assert.are.equal(core.health_defaults, books.DEFAULTS)
  end)

  it("runs a probe through the FFI on the books' own pointer", function()
    local b = assert(books.new({ liveness = { interval_ms = 100, failure_threshold = 1 } }, 0))
    assert.are.equal("userdata", type(b.ud:pointer()))
    assert.is_true(books.begin(b, "liveness", 0))
    assert.is_false(books.begin(b, "liveness", 0)) -- in flight
    local changed, restart, ready = books.record(b, "liveness", false, 5)
    assert.is_true(changed)
    assert.is_true(restart)
    assert.is_nil(ready)
    assert.are.equal("unhealthy", b.ud:probe("liveness").state)
    assert.are.equal(90, books.next(b, 10)) -- one interval after the run began at 0
    local bad, err = books.new({ liveness = { interval_ms = -1 } }, 0)
    assert.is_nil(bad)
    assert.are.equal("invalid_arg", err.code)
  end)
end)
