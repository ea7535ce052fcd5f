-- The network face (README "The network face"): msrt.listen speaks the
-- NATS client protocol over TCP. Raw protocol lines from a luv socket, and
-- the `nats` npm package (a client nobody here wrote) from Node.js against
-- actors, processes and hub subscriptions of this host.
local S = require "spec.support"
local msrt = require "msrt"
local uv = require "luv"

assert(msrt.start())

local NODE_CLIENT = "spec/nats_clients/node_client.js"

-- A raw client: c.send(text), c.wait_for(pattern) -> the text read so far
-- once it matches (false after 5 s), c.close().
local function raw(port)
  local c, buf = { tcp = uv.new_tcp() }, ""
  local co = coroutine.running()
  c.tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    c.tcp:read_start(function(_, chunk)
      if chunk then buf = buf .. chunk else c.eof = true end
    end)
    coroutine.resume(co)
  end)
  coroutine.yield()
  function c.send(text) c.tcp:write(text) end
  function c.wait_for(pat)
    local ok = S.wait_until(function() return buf:find(pat) ~= nil or c.eof end, 5000)
    return ok and buf:find(pat) ~= nil and buf
  end
  function c.close() if not c.tcp:is_closing() then c.tcp:close() end end
  return c
end

-- Run the Node client's scenario; returns its checks by name.
local function node(port, scenario)
  local out, co, done = "", coroutine.running(), false
  local stdout = uv.new_pipe()
  local h = uv.spawn("node", { args = { NODE_CLIENT, tostring(port), scenario }, stdio = { nil, stdout, 2 } },
    function(code)
      done = code
      if co then coroutine.resume(co) end
    end)
  assert(h, "node could not be started")
  stdout:read_start(function(_, chunk) if chunk then out = out .. chunk else stdout:close() end end)
  local t = msrt.after(30000, function() if not done then h:kill("sigkill") end end)
  if not done then coroutine.yield() end
  co = nil
  t:stop()
  h:close()
  S.wait_until(function() return stdout:is_closing() end, 2000)
  local checks = {}
  for line in out:gmatch("[^\n]+") do
    local name, ok = line:match('"check":"([^"]+)","ok":(%a+)')
    if name then checks[name] = { ok = ok == "true", line = line } end
  end
  return checks, out
end

local function expect(checks, out, names)
  for _, n in ipairs(names) do
    assert(checks[n], ("no result for %s in:\n%s"):format(n, out))
    assert(checks[n].ok, checks[n].line)
  end
end

describe("msrt.listen{nats = ...}", function()
  it("speaks the NATS protocol to a raw client: INFO, PING, PUB to Lua, MSG from Lua", function()
    S.drive(function()
      local l = assert(msrt.listen { nats = "127.0.0.1:0" })
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
    S.drive(function()
      local l = assert(msrt.listen { nats = "127.0.0.1:0" })
      local c = raw(l:port())
      c.send("SUB svc.raw 1\r\nPING\r\n")
      assert.truthy(c.wait_for("PONG"))
      local answer
      msrt.after(0, function()
        local text = c.wait_for("MSG svc.raw 1 (_INBOX%.[%w%.]+) 3\r\n")
        local reply = text:match("MSG svc.raw 1 (_INBOX%.[%w%.]+) 3\r\n")
        c.send(("PUB %s 6\r\nanswer\r\n"):format(reply))
      end)
      answer = msrt.request("svc.raw", "ask", { timeout_ms = 5000 })
      assert.are.equal("answer", answer)
      c.close()
      l:close()
    end)
  end)

  it("refuses a malformed address and a non-loopback one without an auth policy", function()
    S.drive(function()
      local l, err = msrt.listen { nats = "nowhere" }
      assert.is_nil(l)
      assert.are.equal("invalid_arg", err.code)
      l, err = msrt.listen { nats = "0.0.0.0:0" }
      assert.is_nil(l)
      assert.are.equal("permission", err.code)
      assert.matches("auth policy", err.message)
      assert.has_error(function() msrt.listen { nats = 4222 } end)
    end)
  end)

  it("serves the nats npm client: wildcards, queue groups, request/reply, headers, no responders", function()
    S.drive(function()
      local l = assert(msrt.listen { nats = "127.0.0.1:0" })
      local actor = S.spawn { name = "upper", subscribe = "svc.upper",
        handle = function(ctx, msg) ctx:reply(msg, msg.data:upper()) end }
      assert(actor)
      local proc = assert(msrt.process { name = "echo_proc", subscribe = "svc.proc",
        cmd = { "sed", "-u", [[s/^{"subject":"[^"]*","reply":"\([^"]*\)","data":\(.*\)}$/{"subject":"\1","data":\2}/]] } })
      local asked = assert(msrt.subscribe("ask.lua", function()
        msrt.publish("from.lua.table", { n = 1 })
        msrt.publish("from.lua.string", "plain bytes")
      end))
      local checks, out = node(l:port(), "basic")
      expect(checks, out, { "connect", "star", "full", "queue", "actor_reply", "process_reply",
        "headers", "no_responders", "lua_values", "done" })
      asked:unsubscribe()
      proc:stop()
      proc:wait()
      l:close()
    end, 60000)
  end)
end)
