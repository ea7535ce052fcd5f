-- Processes speaking JSON-RPC 2.0 (README "Processes", codec = "jsonrpc"
-- and "lsp"): a real Python child (spec/rpc_child.py) answering requests
-- made to its method subjects, notifying, asking the fleet, batching,
-- answering with errors and ids nobody issued, and exiting mid-request.
local S = require "spec.support"
local msrt = require "msrt"
local core = require "msrt.core"

local CHILD = "spec/rpc_child.py"
local collect = S.collector

local function each_framing(fn)
  for _, f in ipairs({ { codec = "jsonrpc", arg = "lines" }, { codec = "lsp", arg = "lsp" } }) do
    fn(f.codec, f.arg)
  end
end

local function child(name, codec, arg, extra)
  local spec = { name = name, codec = codec, cmd = { "python3", CHILD, arg }, inherit_env = { "PATH" } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return assert(msrt.process(spec))
end

local function run(body)
  S.drive(body)
  assert.are.equal(0, core.proc_count(), "processes left behind")
end

local function finish(h)
  h:stop()
  h:wait()
end

each_framing(function(codec, arg)
  describe("codec = " .. codec, function()
    it("makes a request to <rpc>.<method> a JSON-RPC request and its response the reply", function()
      run(function()
        local h = child("rpc1", codec, arg)
        local r = assert(msrt.request("rpc1.rpc.echo", { a = 1, list = { 1, 2 } }))
        assert.are.same({ a = 1, list = { 1, 2 } }, r)
        -- a method subject named by the spec
        finish(h)
        h = child("rpc2", codec, arg, { rpc = "fs.tools" })
        assert.are.same({ "x" }, assert(msrt.request("fs.tools.echo", { "x" })))
        finish(h)
      end)
    end)

    it("returns a JSON-RPC error as nil, err with its code, message and data", function()
      run(function()
        local h = child("rpc3", codec, arg)
        local d, err = msrt.request("rpc3.rpc.fail", {})
        assert.is_nil(d)
        assert.are.equal("rpc_error", err.code)
        assert.are.equal(-32000, err.rpc_code)
        assert.are.equal("it failed", err.message)
        assert.are.same({ why = "asked" }, err.data)
        -- the same from an actor's ctx:request
        local asker = assert(msrt.actor{ name = "rpcasker", subscribe = "spec.rpcask", handle = function(ctx, msg)
          local _, e = ctx:request("rpc3.rpc.fail", {})
          ctx:reply(msg, { code = e.code, rpc_code = e.rpc_code, message = e.message, data = e.data })
        end })
        assert.are.same({ code = "rpc_error", rpc_code = -32000, message = "it failed", data = { why = "asked" } },
          assert(msrt.request("spec.rpcask", true)))
        asker:stop()
        asker:wait()
        finish(h)
      end)
    end)

    it("publishes notifications on <publish_as>.notify.<method>, batches too, and writes ours as notifications", function()
      run(function()
        local notes = collect("agents.rpc4.notify.>")
        local h = child("rpc4", codec, arg)
        assert.are.equal("done", assert(msrt.request("rpc4.rpc.shout", {})))
        assert.are.equal("batched", assert(msrt.request("rpc4.rpc.batch", {})))
        assert(notes.wait(2))
        assert.are.equal("agents.rpc4.notify.progress", notes.msgs[1].subject)
        assert.are.same({ { n = 1 }, { n = 2 } }, { notes.msgs[1].data, notes.msgs[2].data })
        -- a publish without a reply is a notification to the child
        local told = collect("agents.rpc4.notify.told")
        assert(msrt.publish("rpc4.rpc.tell", { hi = true }))
        assert(told.wait(1))
        assert.are.same({ hi = true }, told.msgs[1].data)
        notes.close(); told.close()
        finish(h)
      end)
    end)

    it("makes the child's requests msrt requests on <publish_as>.request.<method>, answered with its id", function()
      run(function()
        local h = child("rpc5", codec, arg)
        local sub = assert(msrt.subscribe("agents.rpc5.request.roots/list", function(m)
          msrt.publish(m.reply, { roots = { { uri = "file:///work" } }, asked = m.data })
        end))
        local r = assert(msrt.request("rpc5.rpc.ask", { x = 1 }))
        assert.are.same({ roots = { { uri = "file:///work" } }, asked = { x = 1 } }, r)
        sub:unsubscribe()
        -- nobody to ask: the child hears -32601 at once
        r = assert(msrt.request("rpc5.rpc.ask", {}))
        assert.are.same({ error = { code = -32601, message = "no responders" } }, r)
        finish(h)
      end)
    end)

    it("reports a response whose id it never issued on bad_output and keeps reading", function()
      run(function()
        local bad = collect("msrt.process.rpc6.bad_output")
        local h = child("rpc6", codec, arg)
        assert.are.equal("ok", assert(msrt.request("rpc6.rpc.stray", {})))
        assert(bad.wait(1))
        assert.are.equal("unknown_id", bad.msgs[1].data.reason)
        assert.matches("987654", bad.msgs[1].data.head)
        assert.are.equal(1, h:stats().bad_output)
        bad.close()
        finish(h)
      end)
    end)

    it("fails a request outstanding when the child exits at once, with no_responders", function()
      run(function()
        local h = child("rpc7", codec, arg)
        local d, err = msrt.request("rpc7.rpc.die", {}, { timeout_ms = 600000 })
        assert.is_nil(d)
        assert.are.equal("no_responders", err.code)
        h:wait()
      end)
    end)

    it("applies publish permissions and counts as JSON lines do", function()
      run(function()
        local bad = collect("msrt.process.rpc9.bad_output")
        local notes = collect("agents.rpc9.notify.>")
        local h = child("rpc9", codec, arg, { deny_publish = "agents.rpc9.notify.progress" })
        -- the notification is refused, the response still answers
        assert.are.equal("done", assert(msrt.request("rpc9.rpc.shout", {})))
        assert(bad.wait(1))
        assert.are.equal("permission", bad.msgs[1].data.reason)
        assert.matches("agents.rpc9.notify.progress", bad.msgs[1].data.detail, 1, true)
        assert.are.equal(0, #notes.msgs)
        local st = h:stats()
        assert.are.equal(1, st.lines_out)
        assert.are.equal(1, st.refused)
        assert.are.equal(1, st.stdin_lines)
        bad.close(); notes.close()
        finish(h)
      end)
    end)

    it("refuses a message over max_line_bytes from the child, unbuffered, and reads on", function()
      run(function()
        local bad = collect("msrt.process.rpc8.bad_output")
        local h = child("rpc8", codec, arg, { max_line_bytes = 4096 })
        local d, err = msrt.request("rpc8.rpc.big", { n = 100000 }, { timeout_ms = 1000 })
        assert.is_nil(d)
        assert.are.equal("timeout", err.code) -- its answer was refused
        assert(bad.wait(1))
        assert.are.equal("line_too_long", bad.msgs[1].data.reason)
        assert.is_true(bad.msgs[1].data.bytes > 100000)
        assert.are.same({ 1 }, assert(msrt.request("rpc8.rpc.echo", { 1 })))
        bad.close()
        finish(h)
      end)
    end)
  end)
end)

