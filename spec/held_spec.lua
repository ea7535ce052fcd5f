-- The modules holding handles (lua/msrt/held.lua): shutdown and a profile
-- reload reach them through msrt.held, not package.loaded, which a test
-- runner's insulation resets (busted restores it after each spec file)
-- while the module's servers stay open, and a second copy may load.
-- (spec/nats_bridge_spec.lua: a bridge still counted in /metrics.)

describe("modules holding handles", function()
  it("keep every copy once, newest first, in a book a second copy of msrt.held shares", function()
    local held = require "msrt.held"
    local one, two = {}, {}
    held.keep("spec.held.mod", one)
    held.keep("spec.held.mod", two)
    held.keep("spec.held.mod", one)
    assert.are.same({ two, one }, held.copies("spec.held.mod"))
    package.loaded["msrt.held"] = nil
    local again = require "msrt.held"
    assert.are_not.equal(held, again)
    assert.are.equal(two, again.copies("spec.held.mod")[1])
    assert.are.same({}, again.copies("spec.held.none"))
    package.loaded["msrt.held"] = held
  end)
end)
