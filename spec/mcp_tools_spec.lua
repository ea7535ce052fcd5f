-- examples/mcp_tools.lua (README "Examples"): the npm MCP servers behind
-- subjects, each tool listed and called, and `msrt-lua ctl SOCKET tree`
-- showing the three supervised servers healthy.
local S = require "spec.support"

describe("examples/mcp_tools.lua", function()
  it("lists the servers' tools as subjects, calls them, and shows the tree", function()
    local r = S.run({ "examples/mcp_tools.lua" }, { limit_s = 120 })
    assert.are.equal(0, r.code, r.err)
    for _, subject in ipairs({ "mcp.everything.tool.get-sum", "mcp.fs.tool.read_text_file", "mcp.memory.tool.read_graph" }) do
      assert.matches(subject, r.out, 1, true)
    end
    assert.matches("The sum of 2 and 3 is 5.", r.out, 1, true)
    assert.matches("Access denied", r.out, 1, true)
    assert.matches("'b' is required", r.out, 1, true)
    assert.matches("3 progress notifications", r.out, 1, true)
    assert.matches("mcp_tools %(one_for_one, running%)", r.out)
    for _, name in ipairs({ "everything", "fs", "memory" }) do
      assert.matches("\n  " .. name .. " +process +running +%d+ .* health healthy", r.out)
    end
  end)
end)
