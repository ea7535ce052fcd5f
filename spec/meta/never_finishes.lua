-- meta: fails "a body that never finishes fails at its limit" with "did not finish within 500 ms" within 30 s
local S = require "spec.support"

describe("meta", function()
  it("a body that never finishes fails at its limit", function()
    S.drive(function() S.sleep(3600 * 1000) end, 500)
  end)
end)
