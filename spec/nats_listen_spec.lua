-- The network face (README "The network face"): msrt.listen speaks the
-- NATS client protocol over TCP. Raw protocol lines from a luv socket, and
-- the `nats` npm package (a client nobody here wrote) from Node.js against
-- actors, processes and hub subscriptions of this host.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())

local C = require "spec.nats_clients.clients"
local raw, node, expect = C.raw, C.node, C.expect

describe("msrt.listen{nats = ...}", function()
  it("speaks the NATS protocol to a raw client: INFO, PING, PUB to Lua, MSG from Lua", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local got = S.collector("from.raw.*")
      local c = raw(l:port())
      assert.truthy(c.wait_for('^INFO {.-"max_payload":1048576'))
      c.send('CONNECT {"verbose":false}\r\nSUB to.raw 7\r\nPUB from.raw.x 5\r\nhello\r\nPING\r\n')
      assert.truthy(c.wait_for("PONG\r\n"))
      assert.is_true(got.wait(1))
      assert.are.equal("hello", got.msgs[1].data)
      assert.is_true(msrt.publish("to.raw", "bytes"))
      assert.is_true(msrt.publish("to.raw", { n = 1 }))
      local text = c.wait_for('MSG to.raw 7 7\r\n{"n":1}\r\n')
      assert.truthy(text, "the table as JSON")
      assert.truthy(text:find("MSG to.raw 7 5\r\nbytes\r\n", 1, true))
      c.send("BOGUS\r\n")
      assert.truthy(c.wait_for("%-ERR 'Unknown Protocol Operation'\r\n"))
      assert.is_true(S.wait_until(function() return c.eof end, 5000))
      c.close()
      got.close()
      l:close()
    end)
  end)

  it("answers an msrt.request from a client that subscribed", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local c = raw(l:port())
      c.send("SUB svc.raw 1\r\nPING\r\n")
      assert.truthy(c.wait_for("PONG"))
      local answer
      msrt.after(0, function()
        local text = c.wait_for("MSG svc.raw 1 (_INBOX%.%S+) 3\r\n")
        local reply = text:match("MSG svc.raw 1 (_INBOX%.%S+) 3\r\n")
        c.send(("PUB %s 6\r\nanswer\r\n"):format(reply))
      end)
      answer = msrt.request("svc.raw", "ask", { timeout_ms = 5000 })
      assert.are.equal("answer", answer)
      c.close()
      l:close()
    end)
  end)

  it("keeps the profile's connections fields: keep-alive PINGs, Stale Connection, the connection cap", function()
    C.drive(function()
      local listen = require("msrt.listen")
      local p = require("msrt.profile").current()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      listen.retune({ max_payload = p.max_payload, connections = { keepalive_ms = 100, max = 1 } })
      local c = raw(l:port())
      assert.truthy(c.wait_for("PING\r\n", true)) -- the keep-alive
      c.send("PONG\r\n")
      local other = raw(l:port())
      assert.truthy(other.wait_for("-ERR 'maximum connections exceeded'\r\n", true))
      assert.is_true(S.wait_until(function() return other.eof end, 5000))
      -- two PINGs left unanswered: stale
      assert.truthy(c.wait_for("-ERR 'Stale Connection'\r\n", true))
      assert.is_true(S.wait_until(function() return c.eof end, 5000))
      listen.retune(p)
      c.close()
      other.close()
    end)
  end)

  it("answers CONNECT's verbose, echo, headers and no_responders as nats-server 2.9 does, byte for byte", function()
    -- each exchange ends with PONG (or the connection's end): both had
    -- their chance to write everything before it. Each CONNECT names
    -- verbose, as clients do: nats-server takes an absent verbose,
    -- pedantic or echo as true, msrt an absent verbose or pedantic as false
    local exchanges = {
      'CONNECT {"verbose":true}\r\nPING\r\nSUB a 1\r\nPUB a 2\r\nhi\r\nPING\r\n',
      'CONNECT {"verbose":false,"echo":false,"headers":true,"no_responders":true}\r\nSUB e 1\r\nPUB e 1\r\nx\r\n'
        .. 'SUB _INBOX.x 2\r\nPUB e _INBOX.x 1\r\ny\r\nPING\r\n',
      'CONNECT {"verbose":false}\r\nHPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n',
    }
    require("spec.nats_server").with({}, function(ns)
      local ns_port = tonumber(ns.url:match(":(%d+)$"))
      C.drive(function()
        local l = assert(C.listen { nats = "127.0.0.1:0" })
        for _, text in ipairs(exchanges) do
          local got = {}
          for i, port in ipairs { ns_port, l:port() } do
            local c = raw(port)
            assert.truthy(c.wait_for("INFO .-\r\n"))
            c.send(text)
            local pongs = select(2, text:gsub("PING", ""))
            S.wait_until(function()
              return c.eof or select(2, c.text():gsub("PONG", "")) >= pongs
            end, 5000)
            got[i] = c.text():gsub("^INFO [^\n]*\n", "")
            c.close()
          end
          assert.are.equal(got[1], got[2])
        end
        l:close()
      end)
    end)
  end)

  it("answers a SUB past max_subscriptions as nats-server 2.9 does, byte for byte, and keeps the client", function()
    local text = 'CONNECT {"verbose":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB b 1\r\nx\r\n'
      .. 'UNSUB 1\r\nSUB c 4\r\nPUB c 1\r\ny\r\nPING\r\n'
    require("spec.nats_server").with({ config = "max_subscriptions: 2" }, function(ns)
      local ns_port = tonumber(ns.url:match(":(%d+)$"))
      C.drive(function()
        local p = require("msrt.profile").current()
        local l = assert(C.listen { nats = "127.0.0.1:0" })
        require("msrt.listen").retune({ max_payload = p.max_payload,
          connections = { max_subscriptions = 2 } })
        local got = {}
        for i, port in ipairs { ns_port, l:port() } do
          local c = raw(port)
          assert.truthy(c.wait_for("INFO .-\r\n"))
          c.send(text)
          assert.truthy(c.wait_for("PONG", true))
          got[i] = c.text():gsub("^INFO [^\n]*\n", "")
          assert.is_falsy(c.eof)
          c.close()
        end
        require("msrt.listen").retune(p)
        assert.are.equal("-ERR 'maximum subscriptions exceeded'\r\nMSG b 2 1\r\nx\r\nMSG c 4 1\r\ny\r\nPONG\r\n", got[1])
        assert.are.equal(got[1], got[2])
        l:close()
      end)
    end)
  end)

  it("opens from the command line: --listen with every kind msrt.listen takes", function()
    local r = S.run({ "--listen", "nats=127.0.0.1:0,websocket=127.0.0.1:0,http=127.0.0.1:0",
      "-e", "os.exit(0)" }) -- a NATS listener keeps the host running
    assert.are.equal(0, r.code, r.err)
    for _, says in ipairs { "NATS clients", "NATS clients over WebSocket and HTTP", "HTTP" } do
      local port = r.err:match("msrt%-lua: " .. says .. " on 127%.0%.0%.1:0 %(port (%d+)%)")
      assert.truthy(port and tonumber(port) > 0, r.err)
    end
    r = S.run({ "--listen", "nats=127.0.0.1:0,nats=127.0.0.1:0", "-e", "" })
    assert.are.equal(1, r.code)
    assert.matches("%-%-listen nats=127.0.0.1:0,nats=127.0.0.1:0: expected nats=, websocket= or http=", r.err)
  end)

  it("refuses a malformed address and a non-loopback one without an auth policy", function()
    C.drive(function()
      local l, err = C.listen { nats = "nowhere" }
      assert.is_nil(l)
      assert.are.equal("invalid_arg", err.code)
      l, err = C.listen { nats = "0.0.0.0:0" }
      assert.is_nil(l)
      assert.are.equal("permission", err.code)
      assert.matches("auth policy", err.message)
      assert.has_error(function() msrt.listen { nats = 4222 } end)
    end)
  end)

  it("serves the nats npm client: wildcards, queue groups, request/reply to an actor and a supervised process, headers, no responders", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local stop = C.basic_fleet()
      local checks, out = node(l:port(), "basic")
      expect(checks, out, C.BASIC)
      stop()
      l:close()
    end, 60000)
  end)

  it("keeps a noEcho client's own publishes from its subscriptions and its queue group turn (the nats npm client)", function()
    C.drive(function()
      local l = assert(C.listen { nats = "127.0.0.1:0" })
      local checks, out = node(l:port(), "no_echo")
      expect(checks, out, { "no_echo", "no_echo_queue", "done" })
      l:close()
    end, 60000)
  end)
end)
