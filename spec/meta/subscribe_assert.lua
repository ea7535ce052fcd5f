-- meta: fails "an error in an msrt.subscribe callback fails this test although its body finished" with "deliberate: raised in a subscription" within 30 s
local S = require "spec.support"
local msrt = require "msrt"

describe("meta", function()
  it("an error in an msrt.subscribe callback fails this test although its body finished", function()
    S.drive(function()
      local got = false
      local sub = assert(msrt.subscribe("meta.boom", function()
        got = true
        error("deliberate: raised in a subscription")
      end))
      assert(msrt.publish("meta.boom", 1))
      S.wait_until(function() return got end)
      sub:unsubscribe()
    end)
  end)
end)
