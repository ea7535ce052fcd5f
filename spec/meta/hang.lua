-- meta: times out within 10 s
-- A file that hangs outside the spec driver: only the runner's per-file
-- bound stops it.
local uv = require "luv"

describe("meta", function()
  it("hangs in a loop of its own", function()
    while true do uv.sleep(100) end -- blocks the loop too: no signal is handled
  end)
end)
