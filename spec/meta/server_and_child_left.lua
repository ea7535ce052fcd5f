-- meta: fails "a failing assertion with a server and a child process left open" with "deliberate: server and child open" within 30 s
local S = require "spec.support"
local msrt = require "msrt"
local uv = require "luv"

describe("meta", function()
  it("a failing assertion with a server and a child process left open", function()
    S.drive(function()
      local server = uv.new_tcp()
      assert(server:bind("127.0.0.1", 0))
      assert(server:listen(8, function() end))
      assert(msrt.process({ name = "meta_child", cmd = { "/bin/sh", "-c", "sleep 600" } }))
      assert.is_nil("deliberate: server and child open")
    end)
  end)
end)
