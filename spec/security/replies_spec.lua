-- Replies are authorised (spec/security/README.md): the reply subject a
-- child names is a publish like any other, checked against allow_publish
-- and deny_publish, except an inbox it was handed with a request (valid
-- once, until the request's timeout: NATS allow_responses). Real children
-- through /bin/sh; the services are a hub callback, an actor and another
-- child.
local S = require "spec.support"
local msrt = require "msrt"
local H = require "spec.security.helpers"

local drive, spawn, collector = H.drive, S.spawn, S.collector

msrt.start()

-- sh: read one request line from stdin and put its reply subject in $r.
local READ_REPLY = [[read -r line; r=$(printf '%s' "$line" | sed 's/.*"reply":"\([^"]*\)".*/\1/')]] .. "\n"

describe("security: replies", function()
  it("checks a reply subject a child names like a publish (hub, actor and process services)", function()
    drive(function()
      local admin = collector("tools.admin")
      local bad = collector("msrt.process.forger.bad_output")
      local answers = collector("agents.forger.inbox")
      local hub_svc = assert(msrt.subscribe("svc.hub", function(m)
        if m.reply then msrt.publish(m.reply, "from hub") end
      end))
      assert(spawn { name = "svc_actor", subscribe = "svc.actor",
        handle = function(ctx, msg) if msg.reply then ctx:reply(msg, "from actor") end end })
      local svc_proc = H.child("svcproc", [[
        while read -r line; do
          r=$(printf '%s' "$line" | sed 's/.*"reply":"\([^"]*\)".*/\1/')
          echo "{\"subject\":\"$r\",\"data\":\"from process\"}"
        done]], { subscribe = "svc.proc", allow_publish = { "tools.>", "agents.>" } })
      local forger = H.child("forger", [[
        for s in svc.hub svc.actor svc.proc; do
          echo "{\"subject\":\"$s\",\"reply\":\"tools.admin\",\"data\":\"rm -rf\"}"
        done
        for s in svc.hub svc.actor svc.proc; do
          echo "{\"subject\":\"$s\",\"reply\":\"agents.forger.inbox\",\"data\":\"marker\"}"
        done]], { allow_publish = "svc.>" })
      forger:wait()
      -- the markers came back through every service: the forged ones had
      -- their chance first, in the same order
      assert.is_true(answers.wait(3, 10000))
      assert.is_true(bad.wait(3))
      assert.are.equal(0, #admin.msgs, "a forged reply reached tools.admin")
      for _, m in ipairs(bad.msgs) do
        assert.are.equal("permission", m.data.reason)
        assert.matches('reply subject "tools.admin" is not allowed', m.data.detail, 1, true)
      end
      assert.are.equal(3, forger:stats().refused)
      svc_proc:stop()
      svc_proc:wait()
      hub_svc.unsubscribe()
      admin.close(); bad.close(); answers.close()
    end)
  end)

  it("lets a child answer a request it was handed once", function()
    drive(function()
      local bad = collector("msrt.process.twice.bad_output")
      local p = H.child("twice", READ_REPLY .. [[
        echo "{\"subject\":\"$r\",\"data\":\"first\"}"
        echo "{\"subject\":\"$r\",\"data\":\"second\"}"
        echo "{\"subject\":\"$r\",\"reply\":\"$r\",\"data\":\"third\"}"]],
        { subscribe = "work.twice" })
      local data = msrt.request("work.twice", "go", { timeout_ms = 10000 })
      assert.are.equal("first", data)
      assert.is_true(bad.wait(2))
      assert.matches("is not allowed", bad.msgs[1].data.detail, 1, true)
      assert.are.equal(2, p:stats().refused)
      p:wait()
      bad.close()
    end)
  end)

  it("refuses a handed reply once its request's timeout has passed", function()
    drive(function()
      local bad = collector("msrt.process.late.bad_output")
      local p = H.child("late", READ_REPLY .. [[
        sleep 0.5
        echo "{\"subject\":\"$r\",\"data\":\"late\"}"]], { subscribe = "work.late" })
      local data, err = msrt.request("work.late", "go", { timeout_ms = 100 })
      assert.is_nil(data)
      assert.are.equal("timeout", err.code)
      assert.is_true(bad.wait(1))
      assert.are.equal("permission", bad.msgs[1].data.reason)
      assert.matches("past its request's timeout", bad.msgs[1].data.detail, 1, true)
      p:wait()
      bad.close()
    end)
  end)

  it("keeps a child's own subjects and allowed patterns usable as replies", function()
    drive(function()
      local got = collector("agents.asker.answers")
      assert(msrt.subscribe("svc.ok", function(m) msrt.publish(m.reply, m.data) end))
      local p = H.child("asker", [[
        echo '{"subject":"svc.ok","reply":"agents.asker.answers","data":1}'
        echo '{"subject":"svc.ok","reply":"results.x","data":2}']],
        { allow_publish = { "svc.ok", "results.*" } })
      local res = collector("results.x")
      p:wait()
      assert.is_true(got.wait(1))
      assert.is_true(res.wait(1))
      assert.are.equal(0, p:stats().refused)
      got.close(); res.close()
    end)
  end)
end)
