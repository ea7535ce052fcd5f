local msrt = require "msrt"

describe("errors", function()
  it("carry the taxonomy of the code", function()
    local err = msrt.error("no_responders", "nobody listens on a.b")
    assert.are.equal("no_responders", err.code)
    assert.are.equal("router", err.category)
    assert.are.equal("medium", err.severity)
    assert.are.equal("retry", err.recovery)
    assert.are.equal("nobody listens on a.b", err.message)
    assert.is_true(msrt.is_error(err))
    assert.is_false(msrt.is_error({ code = "x" }))
  end)

  it("read well with tostring", function()
    local err = msrt.error("timeout", "no reply within 50 ms")
    assert.are.equal("no reply within 50 ms (task/timeout)", tostring(err))
  end)

  it("take extra fields and overrides", function()
    local err = msrt.error("bad_config", "x", { file = "a.lua", line = 3, severity = "critical" })
    assert.are.equal("a.lua", err.file)
    assert.are.equal(3, err.line)
    assert.are.equal("critical", err.severity)
  end)

  it("refuse an unknown code as a programming error", function()
    assert.has_error(function() msrt.error("nope", "x") end)
  end)

  it("come back as nil, err from the API", function()
    local ok, err = msrt.start { profile = "no_such_profile" }
    assert.is_nil(ok)
    assert.are.equal("not_found", err.code)
    assert.are.equal("config", err.category)
  end)
end)
