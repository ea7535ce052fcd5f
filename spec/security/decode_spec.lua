-- Decoding never crashes a consumer (spec/security/README.md): a child's
-- JSON line with a repeated key, a message a receiver cannot decode, a NUL
-- byte where C strings would cut it short. Real children through /bin/sh,
-- real actors and hub subscribers.
local S = require "spec.support"
local msrt = require "msrt"
local H = require "spec.security.helpers"
local core = require "msrt.core"

local drive, spawn, collector = H.drive, S.spawn, S.collector

-- What string.buffer would make of {a = false, a = true}: a hash of two
-- pairs with the same key, which its decoder refuses.
local DUP = "\9\2\33a\1\33a\2"

msrt.start()

describe("security: decoding", function()
  it("takes the last of repeated keys; actors and hub callbacks keep running", function()
    drive(function()
      local hub = collector("dupkey.>")
      local a = assert(spawn { name = "dupkey_rx", subscribe = "dupkey.in",
        init = function(ctx) ctx.state = { n = 0, sum = 0 } end,
        handle = function(ctx, msg)
          local s = ctx.state
          s.n, s.sum = s.n + 1, s.sum + msg.data.k + msg.data.inner.k
          if s.n == 50 then ctx:publish("dupkey.done", s) end
        end })
      local done = collector("dupkey.done")
      local p = H.child("dupkey", [[
        i=0; while [ $i -lt 50 ]; do
          echo '{"subject":"dupkey.in","data":{"k":1,"k":2,"inner":{"k":"x","k":3}}}'
          i=$((i+1)); done]], { allow_publish = "dupkey.>" })
      local rec = p:wait()
      assert.is_true(rec.normal)
      assert.is_true(done.wait(1, 10000), "the actor did not handle every line")
      assert.are.same({ n = 50, sum = 250 }, done.msgs[1].data)
      assert.is_true(hub.wait(51, 10000))
      assert.are.equal(2, hub.msgs[1].data.k)
      assert.are.equal(3, hub.msgs[1].data.inner.k)
      assert.are.equal(0, p:stats().bad_output)
      assert.are.same({ a:ids()[1] }, a:ids()) -- the same actor, never restarted
      hub.close(); done.close()
    end)
  end)

  it("keeps a supervisor (intensity 1) and its host alive through 200 such lines", function()
    -- before the fix each line crashed the actor: the supervisor gave up
    -- after the second and the host exited
    local script = S.file([=[
      local msrt = require "msrt"
      local events = {}
      msrt.subscribe("msrt.supervisor.>", function(m) events[#events + 1] = m.subject end)
      local sup = assert(msrt.supervisor { name = "dsup", intensity = 1, period_ms = 60000, children = {
        { id = "rx", actor = { subscribe = "dsup.in", handle = function(ctx, msg)
          ctx.state = (ctx.state or 0) + msg.data.k
          if ctx.state == 400 then ctx:publish("dsup.done", ctx.state) end
        end } } } })
      msrt.subscribe("dsup.done", function(m)
        print("done", m.data)
        sup:stop()
        msrt.stop()
      end)
      assert(msrt.process { name = "dsupfeed", allow_publish = "dsup.in", cmd = { "/bin/sh", "-c",
        [[i=0; while [ $i -lt 200 ]; do echo '{"subject":"dsup.in","data":{"k":1,"k":2}}'; i=$((i+1)); done]] } })
    ]=])
    local r = S.run({ script }, { limit_s = 60 })
    os.remove(script)
    assert.are.equal("done\t400\n", r.out, r.err)
    assert.are.equal(0, r.code, r.err)
    assert.is_nil(r.err:find("restart"), r.err)
  end)

  it("takes the last key among many (the sorted path for large objects)", function()
    drive(function()
      local got = collector("dupwide.in")
      local keys = {}
      for i = 1, 40 do keys[#keys + 1] = ('"k%d":%d'):format(i % 20, i) end
      local p = H.child("dupwide", "echo '{\"subject\":\"dupwide.in\",\"data\":{" ..
        table.concat(keys, ",") .. "}}'", { allow_publish = "dupwide.in" })
      p:wait()
      assert.is_true(got.wait(1))
      local want = {}
      for i = 21, 40 do want["k" .. (i % 20)] = i end
      assert.are.same(want, got.msgs[1].data)
      got.close()
    end)
  end)

  it("makes an undecodable copy a per-message error of its receiver: counted, announced", function()
    drive(function()
      local notes = collector("msrt.dropped.undec.>")
      local hub = collector("undec.x")
      local a = assert(spawn { name = "undec_rx", subscribe = "undec.x",
        handle = function(ctx, msg) ctx:publish("undec.ok", msg.data) end })
      local ok = collector("undec.ok")
      local c0 = H.class("undec")
      -- string.buffer's own encoder never makes this; a foreign encoder could
      assert.are.equal(2, core.publish("undec.x", DUP))
      assert.is_true(msrt.publish("undec.x", "fine"))
      assert.is_true(ok.wait(1), "the actor did not go on to the next message")
      assert.are.equal("fine", ok.msgs[1].data)
      assert.is_true(hub.wait(1))
      assert.are.equal("fine", hub.msgs[1].data)
      assert.is_true(notes.wait(2))
      local texts = {}
      for _, m in ipairs(notes.msgs) do
        assert.are.equal("msrt.dropped.undec.x", m.subject)
        texts[#texts + 1] = m.data
      end
      table.sort(texts)
      assert.are.equal("undecodable (duplicate table key) actor " .. a:ids()[1], texts[1])
      assert.are.equal("undecodable (duplicate table key) hub", texts[2])
      local c1 = H.class("undec")
      assert.are.equal(2, c1.drop_other - (c0.drop_other or 0))
      -- "fine" to both, the actor's undec.ok; the two bad copies moved out
      assert.are.equal(3, c1.delivered - (c0.delivered or 0))
      notes.close(); hub.close(); ok.close()
    end)
  end)

  -- (the test above's copy is its actor's first message, read through
  -- the C API; after it the actor reads through the FFI, actor_ctx.lua)
  it("makes an undecodable copy a per-message error after the actor's first message too", function()
    drive(function()
      local notes = collector("msrt.dropped.undec2.>")
      local a = assert(spawn { name = "undec2_rx", subscribe = "undec2.x",
        handle = function(ctx, msg) ctx:publish("undec2.ok", msg.data) end })
      local ok = collector("undec2.ok")
      assert.is_true(msrt.publish("undec2.x", "first"))
      assert.is_true(ok.wait(1))
      assert.are.equal(1, core.publish("undec2.x", DUP))
      assert.is_true(msrt.publish("undec2.x", "next"))
      assert.is_true(ok.wait(2), "the actor did not go on to the next message")
      assert.are.same({ "first", "next" }, ok.data())
      assert.is_true(notes.wait(1))
      assert.are.equal("msrt.dropped.undec2.x", notes.msgs[1].subject)
      assert.are.equal("undecodable (duplicate table key) actor " .. a:ids()[1], notes.msgs[1].data)
      notes.close(); ok.close()
    end)
  end)

  it("refuses a raw NUL byte inside a child's JSON string instead of cutting it", function()
    drive(function()
      local got = collector("nulbyte.>")
      local bad = collector("msrt.process.nulbyte.bad_output")
      local p = H.child("nulbyte", [[
        printf '{"subject":"nulbyte.x","data":"a\000b"}\n'
        printf '{"subject":"nulbyte.x","data":"ok"}\n']], { allow_publish = "nulbyte.>" })
      p:wait()
      assert.is_true(got.wait(1))
      assert.is_true(bad.wait(1))
      assert.are.same({ "ok" }, got.data())
      assert.are.equal("invalid_json", bad.msgs[1].data.reason)
      assert.matches("NUL", bad.msgs[1].data.detail)
      got.close(); bad.close()
    end)
  end)

  it("refuses an env value, an argument or a cwd with a NUL byte", function()
    local cases = {
      { env = { X = "a\0b" }, cmd = { "/bin/true" } },
      { cmd = { "/bin/echo", "a\0b" } },
      { cmd = { "/bin/true" }, cwd = "/tmp\0/x" },
    }
    for _, c in ipairs(cases) do
      c.name = "nulspec"
      local h, err = msrt.process(c)
      assert.is_nil(h)
      assert.are.equal("invalid_arg", err.code)
      assert.matches("NUL", err.message)
    end
  end)
end)
