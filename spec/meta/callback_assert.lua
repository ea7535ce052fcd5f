-- meta: fails "an assertion in an msrt.after callback fails this test" with "Expected objects to be equal" within 30 s
-- The failure must be this test's, not the next one's nor the run's: the
-- test after it passes.
local S = require "spec.support"
local msrt = require "msrt"

describe("meta", function()
  it("an assertion in an msrt.after callback fails this test", function()
    S.drive(function()
      local co = coroutine.running()
      msrt.after(1, function()
        assert.are.equal("callback", "fails")
        coroutine.resume(co)
      end)
      coroutine.yield() -- never resumed: the callback failed first
    end)
  end)

  it("a test after it passes", function()
    S.drive(function() S.sleep(1) end)
  end)
end)
