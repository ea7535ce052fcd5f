-- NATS clients over WebSocket (README "The network face"): msrt.listen{
-- websocket = ADDR } carries the NATS client protocol in the framing
-- nats.ws uses, for the `nats.ws` npm package (a client nobody here wrote,
-- from Node.js; spec/dashboard_spec.lua runs it in a browser page), and
-- still answers HTTP on the same address.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())

local C = require "spec.nats_clients.clients"

describe("msrt.listen{ websocket = ADDR }", function()
  it("serves nats.ws: wildcards, queue groups, request/reply, headers, no responders", function()
    C.drive(function()
      local l = assert(C.listen { websocket = "127.0.0.1:0" })
      local stop = C.basic_fleet()
      local checks, out = C.node(l:port("websocket"), "basic", "ws")
      C.expect(checks, out, C.BASIC)
      stop()
      l:close()
    end, 60000)
  end)

  it("refuses a non-loopback address without an auth policy", function()
    S.drive(function()
      local l, err = msrt.listen { websocket = "0.0.0.0:0" }
      assert.is_nil(l)
      assert.are.equal("permission", err.code)
      assert.matches("auth policy", err.message)
      l = assert(msrt.listen { http = "0.0.0.0:0" }) -- no NATS clients there
      l:close()
    end)
  end)

  -- last: the host's NATS server keeps its auth policy once it has one
  it("lets nats.ws in with credentials and refuses a denied publish, in NATS' words", function()
    C.drive(function()
      local _, path = C.auth_dir(C.AUTH_POLICY)
      local l = assert(C.listen { websocket = "127.0.0.1:0", auth = path })
      local checks, out = C.node(l:port("websocket"), "auth", "ws")
      C.expect(checks, out, { "bad_password", "credentials", "allowed", "denied_publish", "done" })
      l:close()
    end, 60000)
  end)
end)
