-- Permissions apply after routing (spec/security/README.md): a rewrite or
-- split must not carry a child's message to a subject it may not publish
-- to. Real children through /bin/sh, the real routing table.
local S = require "spec.support"
local msrt = require "msrt"
local H = require "spec.security.helpers"

local drive, collector = H.drive, S.collector

msrt.start()

describe("security: permissions after routing", function()
  after_each(function() assert(msrt.routes({})) end)

  it("refuses a rewrite to a subject the child may not publish to, counted in its class", function()
    drive(function()
      assert(msrt.routes { { match = "legacy.*.x", rewrite = "tools.$1" } })
      local tools = collector("tools.>")
      local bad = collector("msrt.process.legacy.bad_output")
      local c0 = H.class("tools")
      local p = H.child("legacy", [[
        echo '{"subject":"legacy.admin.x","data":"escalate"}'
        echo '{"subject":"legacy.lint.x","data":"fine"}']],
        { allow_publish = { "legacy.>", "tools.lint" }, deny_publish = "tools.admin" })
      p:wait()
      assert.is_true(tools.wait(1)) -- the allowed one went through, after the other
      assert.is_true(bad.wait(1))
      assert.are.same({ "fine" }, tools.data())
      assert.are.equal("tools.lint", tools.msgs[1].subject)
      assert.are.equal("permission", bad.msgs[1].data.reason)
      assert.matches('publish to "tools.admin" is not allowed (routed there from "legacy.admin.x" by rule 1)',
        bad.msgs[1].data.detail, 1, true)
      assert.are.equal(1, p:stats().refused)
      local c1 = H.class("tools")
      assert.are.equal(1, c1.refused - (c0.refused or 0))
      assert.are.equal(2, c1.accepted - (c0.accepted or 0))
      tools.close(); bad.close()
    end)
  end)

  it("refuses a split target the child may not publish to", function()
    drive(function()
      assert(msrt.routes { { match = "canary.>", split = { { to = "admin.>", weight = 1 } } } })
      local admin = collector("admin.>")
      local bad = collector("msrt.process.splitter.bad_output")
      local marker = collector("agents.splitter.done")
      local p = H.child("splitter", [[
        echo '{"subject":"canary.reset","data":1}'
        echo '{"subject":"agents.splitter.done","data":1}']], { allow_publish = "canary.>" })
      p:wait()
      assert.is_true(marker.wait(1))
      assert.is_true(bad.wait(1))
      assert.are.equal(0, #admin.msgs)
      assert.are.equal("permission", bad.msgs[1].data.reason)
      admin.close(); bad.close(); marker.close()
    end)
  end)

  it("leaves hub and actor publishers (no permissions) routed as before", function()
    drive(function()
      assert(msrt.routes { { match = "legacy.*.x", rewrite = "tools.$1" } })
      local tools = collector("tools.admin")
      assert.is_true(msrt.publish("legacy.admin.x", 1))
      assert.is_true(tools.wait(1))
      tools.close()
    end)
  end)
end)
