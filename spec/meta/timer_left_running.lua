-- meta: fails "a failing assertion with an msrt.every timer left running" with "Expected objects to be equal" within 30 s
-- (before the driver closed what a failed body left, this run never ended)
local S = require "spec.support"
local msrt = require "msrt"

describe("meta", function()
  it("a failing assertion with an msrt.every timer left running", function()
    S.drive(function()
      local ticks = 0
      local t = msrt.every(5, function() ticks = ticks + 1 end)
      S.wait_until(function() return ticks >= 2 end)
      assert.are.equal(1, 2)
      t.stop()
    end)
  end)
end)
