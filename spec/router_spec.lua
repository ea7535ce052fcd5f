-- The local message router through the public API (README "Messages"): subject
-- rules, wildcards, queue groups, request/reply, routing
-- tables, priorities, overflow policies and the router's accounting.
-- Specs that need the hub loop drive it inside the `it` block (drive: S.drive
-- in spec/support.lua).
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

assert(msrt.start())
local MAX_SUBJECT, MAX_PAYLOAD = msrt.profile().max_subject, msrt.profile().max_payload

-- Loop-driving helpers shared with the other specs (spec/support.lua). The
-- router's specs get a minute each unless they say otherwise.
local spawn, wait_until, collector = S.spawn, S.wait_until, S.collector
local function drive(body, limit_ms) return S.drive(body, limit_ms or 60000) end

local COUNTERS = { "accepted", "delivered", "dead_lettered", "refused", "no_responders", "dropped",
  "drop_newest", "drop_oldest", "drop_not_ready", "drop_closed", "drop_other" }

local function router() return msrt.metrics().router end

-- What the router counted since `before`.
local function delta(before)
  local now, d = router(), {}
  for _, k in ipairs(COUNTERS) do d[k] = now[k] - before[k] end
  return d
end

-- The identity documented in msrt.metrics.
local function adds_up(d)
  return d.accepted == d.delivered + d.dropped + d.dead_lettered + d.refused + d.no_responders
end

-- The router's counters since before, once every copy has an outcome.
local function settled(before)
  wait_until(function() return adds_up(delta(before)) end, 3000)
  return delta(before)
end

local function explain(d)
  local parts = {}
  for _, k in ipairs(COUNTERS) do parts[#parts + 1] = k .. "=" .. d[k] end
  return table.concat(parts, " ")
end

local function subjects_of(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.subject end
  table.sort(out)
  return out
end

describe("subjects (NATS rules)", function()
  it("accepts valid published subjects, wildcard characters inside a token included", function()
    for _, s in ipairs { "a", "a.b.c", "foo-bar_baz.$SYS.x", "a.b*c", "a.>b", "a.*b", "*a", "caf\195\169.x",
      ("a"):rep(MAX_SUBJECT) } do
      local ok, err = msrt.publish(s, 1)
      assert.is_true(ok, ("%q: %s"):format(s, tostring(err)))
    end
  end)

  it("refuses invalid published subjects, naming the subject and the rule", function()
    local cases = {
      { "", "empty subject" },
      { ".a", "empty token at position 1" },
      { "a.", "empty token at position 2" },
      { "a..b", "empty token at position 2" },
      { "a b", "whitespace ' ' (0x20) at offset 1" },
      { "a\tb", "whitespace '\\t' (0x09) at offset 1" },
      { "a\nb", "whitespace '\\n' (0x0a) at offset 1" },
      { "a\rb", "whitespace '\\r' (0x0d) at offset 1" },
      { "a\0b", "control character 0x00 at offset 1" },
      { "a\1b", "control character 0x01 at offset 1" },
      { "a\127b", "control character 0x7f at offset 1" },
      { "a.*", "wildcard '*' at position 2 is not allowed in a published subject" },
      { "a.*.b", "wildcard '*' at position 2 is not allowed in a published subject" },
      { "a.>", "wildcard '>' at position 2 is not allowed in a published subject" },
      { ">", "wildcard '>' at position 1 is not allowed in a published subject" },
      { "*", "wildcard '*' at position 1 is not allowed in a published subject" },
    }
    for _, c in ipairs(cases) do
      local ok, err = msrt.publish(c[1], 1)
      assert.is_nil(ok, ("%q was accepted"):format(c[1]))
      assert.are.equal("invalid_subject", err.code)
      assert.are.equal("router", err.category)
      assert.truthy(err.message:find("invalid subject", 1, true), err.message)
      assert.truthy(err.message:find(c[2], 1, true), ("%q: %s"):format(c[1], err.message))
    end
  end)

  it("refuses an oversized subject or payload with an error naming the limit, and counts it", function()
    local before = router()
    local ok, err = msrt.publish(("a"):rep(MAX_SUBJECT + 1), 1)
    assert.is_nil(ok)
    assert.are.equal("invalid_subject", err.code)
    local want = ("length %d exceeds max_subject (%d bytes)"):format(MAX_SUBJECT + 1, MAX_SUBJECT)
    assert.truthy(err.message:find(want, 1, true), err.message)
    ok, err = msrt.publish("big.payload", ("x"):rep(MAX_PAYLOAD + 1))
    assert.is_nil(ok)
    assert.are.equal("payload_too_big", err.code)
    assert.truthy(err.message:find(("exceeds max_payload (%d bytes)"):format(MAX_PAYLOAD), 1, true), err.message)
    ok, err = msrt.publish("ok.subject", 1, { reply = "bad reply" })
    assert.is_nil(ok)
    assert.are.equal("invalid_subject", err.code)
    local d = delta(before)
    assert.are.equal(3, d.refused)
    assert.are.equal(3, d.accepted)
    assert.is_true(adds_up(d), explain(d))
  end)

  it("accepts valid patterns: '*' as any whole token, '>' as the last", function()
    for _, p in ipairs { "a", "a.*", "*.b", "*", ">", "a.>", "*.*.>", "a.*.c.>", "a.b*", "a.>b.c" } do
      local sub, err = msrt.subscribe(p, function() end)
      assert.truthy(sub, ("%q: %s"):format(p, tostring(err)))
      sub.unsubscribe()
    end
  end)

  it("refuses invalid patterns and queue names, naming the rule", function()
    local cases = {
      { "", "empty pattern" },
      { "a.>.b", "'>' must be the last token but is at position 2 of 3" },
      { ">.a", "'>' must be the last token but is at position 1 of 2" },
      { "a..b", "empty token at position 2" },
      { ".a", "empty token at position 1" },
      { "a b", "whitespace ' ' (0x20) at offset 1" },
      { "a\tb.>", "whitespace '\\t' (0x09) at offset 1" },
      { "a\0", "control character 0x00 at offset 1" },
      { ("a"):rep(MAX_SUBJECT + 1), ("exceeds max_subject (%d bytes)"):format(MAX_SUBJECT) },
    }
    for _, c in ipairs(cases) do
      local sub, err = msrt.subscribe(c[1], function() end)
      assert.is_nil(sub, ("%q was accepted"):format(c[1]))
      assert.are.equal("invalid_subject", err.code)
      assert.truthy(err.message:find("invalid pattern", 1, true), err.message)
      assert.truthy(err.message:find(c[2], 1, true), ("%q: %s"):format(c[1], err.message))
    end
    local sub, err = msrt.subscribe("a.b", function() end, { queue = "a b" })
    assert.is_nil(sub)
    assert.truthy(err.message:find("invalid queue group", 1, true), err.message)
    assert.has_error(function() msrt.subscribe(42, function() end) end)
    assert.has_error(function() msrt.publish(nil, 1) end)
  end)

  it("matches '*' (one token), '>' (one or more trailing tokens) and mixed patterns", function()
    drive(function()
      local patterns = {
        ["m.*"] = { "m.a", "m.b*", "m.bc" },
        ["m.>"] = { "m.a", "m.a.b", "m.a.b.c", "m.b*", "m.bc", "m.x.c", "m.x.c.d", "m.x.c.d.e", "m.x.y",
          "m.x.y.d" },
        ["m.*.c.>"] = { "m.x.c.d", "m.x.c.d.e" },
        ["m.*.*"] = { "m.a.b", "m.x.c", "m.x.y" },
        ["*.a.b"] = { "m.a.b" },
        ["m.b*"] = { "m.b*" },
        ["m.a.b"] = { "m.a.b" },
      }
      local published = { "m", "m.a", "m.a.b", "m.a.b.c", "m.b*", "m.bc", "m.x.c", "m.x.c.d", "m.x.c.d.e",
        "m.x.y.d", "m.x.y", "n.a.b.c" }
      local got, expected = {}, 0
      for p, want in pairs(patterns) do
        table.sort(want)
        got[p] = collector(p)
        expected = expected + #want
      end
      for _, s in ipairs(published) do assert(msrt.publish(s, s)) end
      local function total()
        local n = 0
        for _, g in pairs(got) do n = n + #g.msgs end
        return n
      end
      assert.is_true(wait_until(function() return total() >= expected end))
      -- nothing more arrives: a marker published now reaches the hub after
      -- every copy of what was published before it
      local marker = collector("spec.marker")
      assert(msrt.publish("spec.marker", true))
      assert.is_true(marker.wait(1))
      marker.close()
      for p, want in pairs(patterns) do
        assert.are.same(want, subjects_of(got[p].msgs), p)
        for _, m in ipairs(got[p].msgs) do assert.are.equal(m.subject, m.data) end
        got[p].close()
      end
    end)
  end)
end)

describe("queue groups", function()
  it("spread 100,000 messages over 4 hub subscribers within 5%, while a plain subscriber gets all", function()
    drive(function()
      local counts, subs = { 0, 0, 0, 0 }, {}
      for i = 1, 4 do
        subs[i] = assert(msrt.subscribe("hq.work", function() counts[i] = counts[i] + 1 end, { queue = "hq" }))
      end
      local plain = 0
      subs[5] = assert(msrt.subscribe("hq.*", function() plain = plain + 1 end))
      local before = router()
      for i = 1, 100000 do assert(msrt.publish("hq.work", i)) end
      local function sum() return counts[1] + counts[2] + counts[3] + counts[4] end
      assert.is_true(wait_until(function() return sum() == 100000 and plain == 100000 end, 20000))
      for i = 1, 4 do
        assert.is_true(math.abs(counts[i] - 25000) <= 1250, ("member %d got %d"):format(i, counts[i]))
      end
      local d = settled(before)
      assert.are.equal(200000, d.accepted) -- one copy for the group, one for the plain subscriber
      assert.are.equal(200000, d.delivered)
      for _, s in ipairs(subs) do s.unsubscribe() end
    end)
  end)

  it("spread 100,000 messages over 4 actors in a queue group within 5%", function()
    drive(function()
      local reports = collector("qa.count")
      -- mailboxes big enough never to fill: a full member is skipped (by
      -- design), which would measure the scheduler instead of the group
      local h = assert(spawn {
        name = "qa", instances = 4, subscribe = "qa.work", queue = "qa", capacity = 100000,
        handle = function(ctx) ctx.n = (ctx.n or 0) + 1 end,
        terminate = function(ctx) ctx:publish("qa.count", ctx.n or 0) end,
      })
      for i = 1, 100000 do assert(msrt.publish("qa.work", i)) end
      assert.is_true(wait_until(function() return (h:mailbox()) == 0 end, 20000))
      h:stop()
      h:wait()
      assert.is_true(wait_until(function() return #reports.msgs == 4 end))
      local sum = 0
      for _, m in ipairs(reports.msgs) do
        sum = sum + m.data
        assert.is_true(math.abs(m.data - 25000) <= 1250, ("an actor got %d"):format(m.data))
      end
      assert.are.equal(100000, sum)
      reports.close()
    end)
  end)
end)

describe("request/reply", function()
  it("fails with no_responders at once when nothing is subscribed", function()
    drive(function()
      local before = router()
      local t0 = uv.hrtime()
      local data, err = msrt.request("nobody.home", 1, { timeout_ms = 600000 })
      local ms = (uv.hrtime() - t0) / 1e6
      assert.is_nil(data)
      assert.are.equal("no_responders", err.code)
      -- at once, not at the (10 min) timeout: the bound only tells the two apart
      assert.is_true(ms < 30000, ("took %.1f ms"):format(ms))
      assert.are.equal(1, delta(before).no_responders)
    end)
  end)

  it("times out after timeout_ms when a subscriber does not reply", function()
    drive(function()
      local slow = collector("slow.svc")
      local t0 = uv.hrtime()
      local data, err = msrt.request("slow.svc", 1, { timeout_ms = 50 })
      local ms = (uv.hrtime() - t0) / 1e6
      assert.is_nil(data)
      assert.are.equal("timeout", err.code)
      -- not before timeout_ms (the upper bound only catches "never")
      assert.is_true(ms >= 50 and ms < 30000, ("took %.1f ms"):format(ms))
      slow.close()
    end)
  end)

  it("returns the reply, through a unique _INBOX subject", function()
    drive(function()
      local inboxes = {}
      local sub = assert(msrt.subscribe("svc.echo", function(m)
        inboxes[#inboxes + 1] = m.reply
        msrt.publish(m.reply, m.data .. "!")
      end))
      assert.are.equal("hi!", (msrt.request("svc.echo", "hi")))
      assert.are.equal("ho!", (msrt.request("svc.echo", "ho")))
      assert.truthy(inboxes[1]:find("^_INBOX%."), inboxes[1])
      assert.are_not.equal(inboxes[1], inboxes[2])
      sub.unsubscribe()
    end)
  end)

  it("gives an actor's ctx:request no_responders at once too", function()
    drive(function()
      local results = collector("areq.result")
      local h = assert(spawn {
        name = "areq", subscribe = "areq.go",
        handle = function(ctx)
          local _, err = ctx:request("nobody.actor", 1, { timeout_ms = 600000 })
          ctx:publish("areq.result", err.code)
        end,
      })
      assert(msrt.publish("areq.go", 1))
      -- at once, not at the (10 min) timeout: the 30 s bound only tells the
      -- two apart (an actor's start and a request take far less, even
      -- under TSan on a loaded machine)
      assert.is_true(wait_until(function() return #results.msgs == 1 end, 30000))
      assert.are.equal("no_responders", results.msgs[1].data)
      h:stop()
      h:wait()
      results.close()
    end)
  end)
end)

describe("routing tables", function()
  after_each(function() assert(msrt.routes({})) end)

  it("rewrite: the subscriber sees the rewritten subject; data, reply and priority are kept", function()
    drive(function()
      local tasks = collector("tasks.>")
      local legacy = collector("legacy.>")
      assert.is_true(msrt.routes {
        { match = "legacy.*.task", rewrite = "tasks.$1" },
        { match = "old.*.>", rewrite = "new.$1.>" },
      })
      local new = collector("new.>")
      assert(msrt.publish("legacy.abc.task", { n = 1 }, { priority = 2, reply = "r.x" }))
      assert(msrt.publish("old.k.a.b", "tail"))
      assert(msrt.publish("legacy.abc.other", "unrouted"))
      assert.is_true(wait_until(function() return #tasks.msgs == 1 and #new.msgs == 1 and #legacy.msgs == 1 end))
      local task = tasks.msgs[1]
      assert.are.equal("tasks.abc", task.subject)
      assert.are.same({ n = 1 }, task.data)
      assert.are.equal("r.x", task.reply)
      assert.are.equal(2, task.priority)
      assert.are.equal("new.k.a.b", new.msgs[1].subject)
      assert.are.equal("legacy.abc.other", legacy.msgs[1].subject) -- only the first matching rule applies
      -- a request through a rewrite gets its reply
      local sub = assert(msrt.subscribe("svc2.*", function(m) msrt.publish(m.reply, m.subject) end))
      assert(msrt.routes { { match = "svc1.*", rewrite = "svc2.$1" } })
      assert.are.equal("svc2.ping", (msrt.request("svc1.ping", 1)))
      for _, c in ipairs { tasks, legacy, new } do c.close() end
      sub.unsubscribe()
    end)
  end)

  it("split: 100,000 messages follow the weights within 2%", function()
    drive(function()
      local counts = { v1 = 0, v2 = 0, v3 = 0 }
      local subs = {}
      for k in pairs(counts) do
        subs[#subs + 1] = assert(msrt.subscribe(k .. ".>", function(m)
          counts[k] = counts[k] + 1
          assert(m.subject == k .. ".orders.new")
        end))
      end
      assert(msrt.routes {
        { match = "canary.>", split = { { to = "v1.>", weight = 90 }, { to = "v2.>", weight = 10 } } },
        { match = "three.>", split = { { to = "v1.>", weight = 5 }, { to = "v2.>", weight = 3 }, { to = "v3.>", weight = 2 } } },
      })
      local N = 100000
      -- N messages to prefix.orders.new: every one reaches one of the rule's
      -- targets, each target's share within 2% of its weight's
      for _, c in ipairs {
        { "canary", { v1 = 0.9, v2 = 0.1 } },
        { "three", { v1 = 0.5, v2 = 0.3, v3 = 0.2 } },
      } do
        local prefix, shares = c[1], c[2]
        for k in pairs(counts) do counts[k] = 0 end
        local function arrived()
          local n = 0
          for k in pairs(shares) do n = n + counts[k] end
          return n
        end
        for _ = 1, N do assert(msrt.publish(prefix .. ".orders.new", 1)) end
        assert.is_true(wait_until(function() return arrived() == N end, 20000), prefix)
        for k, share in pairs(shares) do
          assert.is_true(math.abs(counts[k] - share * N) <= 0.02 * N, prefix .. ": " .. k .. " got " .. counts[k])
        end
      end
      for _, s in ipairs(subs) do s.unsubscribe() end
    end)
  end)

  it("dead_letter: a message nobody subscribes to goes to the dead-letter subject, counted once", function()
    drive(function()
      local dlq = collector("dlq.>")
      assert(msrt.routes {
        { match = "orders.>", dead_letter = "dlq.orders" },
        { match = "legacy.*", rewrite = "new.$1", dead_letter = "dlq.legacy" },
        { match = "loop.>", dead_letter = "loop.again" },
      })
      local before = router()
      assert(msrt.publish("orders.new", { id = 7 }, { reply = "r.1" }))
      assert(msrt.publish("legacy.x", "old"))
      assert.is_true(wait_until(function() return #dlq.msgs == 2 end))
      local dead = dlq.msgs
      table.sort(dead, function(a, b) return a.subject < b.subject end)
      assert.are.equal("dlq.legacy", dead[1].subject)
      assert.are.equal("old", dead[1].data)
      assert.are.equal("dlq.orders", dead[2].subject)
      assert.are.same({ id = 7 }, dead[2].data)
      assert.are.equal("r.1", dead[2].reply)
      local d = settled(before)
      assert.are.equal(2, d.dead_lettered)
      assert.are.equal(0, d.no_responders)
      assert.are.equal(2, d.delivered)
      assert.are.equal(4, d.accepted) -- each original and its dead-letter copy
      -- with a subscriber, no dead letter
      local orders = collector("orders.*")
      before = router()
      assert(msrt.publish("orders.paid", 1))
      assert.is_true(wait_until(function() return #orders.msgs == 1 end))
      assert.are.equal(0, delta(before).dead_lettered)
      -- a dead-letter subject nobody listens to: no_responders, and no loop
      before = router()
      assert(msrt.publish("loop.x", 1))
      d = settled(before)
      assert.are.equal(1, d.dead_lettered)
      assert.are.equal(1, d.no_responders)
      assert.are.equal(2, d.accepted)
      dlq.close()
      orders.close()
    end)
  end)

  it("refuses a routed subject longer than max_subject, to the sender", function()
    local before = router()
    assert(msrt.routes { { match = "long.*", rewrite = ("x"):rep(MAX_SUBJECT - 10) .. ".$1" } })
    local ok, err = msrt.publish("long." .. ("y"):rep(30), 1)
    assert.is_nil(ok)
    assert.are.equal("limit", err.code)
    assert.truthy(err.message:find("rule 1: routing", 1, true), err.message)
    local d = delta(before)
    assert.are.equal(1, d.refused)
    assert.is_true(adds_up(d), explain(d))
  end)

  it("refuses a bad table whole, naming the rule's position and why; the old table stays", function()
    drive(function()
      local b = collector("b.>")
      assert.is_true(msrt.routes { { match = "a.*", rewrite = "b.$1" } })
      local good = { match = "x.*", rewrite = "y.$1" }
      local cases = {
        { { match = "a.*.*", rewrite = "x.$3" }, "rewrite \"x.$3\" refers to $3 but \"a.*.*\" has only 2 wildcards" },
        { { match = "a..b", rewrite = "x" }, "invalid pattern \"a..b\": empty token at position 2" },
        { { match = "a.>.b", rewrite = "x" }, "'>' must be the last token" },
        { { rewrite = "x" }, "no match pattern" },
        { { match = 5, rewrite = "x" }, "match must be a string, got number" },
        { { match = "a.*", rewrite = "x.*" }, "wildcard '*' at position 2" },
        { { match = "a.*", rewrite = "x.>" }, "uses '>' but the pattern \"a.*\" does not end in '>'" },
        { { match = "a.>", rewrite = "x", split = { { to = "y", weight = 1 } } }, "both rewrite and split" },
        { { match = "a.>", split = {} }, "empty split" },
        { { match = "a.>", split = { { to = "v1.>", weight = 1 }, { to = "v2.>", weight = 0 } } },
          "split target 2 weight must be > 0 and finite (got 0)" },
        { { match = "a.>", split = { { to = "v1.>", weight = -1 } } }, "split target 1 weight must be > 0" },
        { { match = "a.>", split = { { to = "v1.>", weight = 0 / 0 } } }, "split target 1 weight must be > 0" },
        { { match = "a.>", split = { { to = "v1.>", weight = "9" } } }, "split target 1: weight must be a number" },
        { { match = "a.>", split = { { weight = 1 } } }, "split target 1: no 'to' subject" },
        { { match = "a.>", split = { "v1.>" } }, "split target 1: a target is a table" },
        { { match = "a.>", split = { { to = "v1..x", weight = 1 } } }, "split target 1 \"v1..x\": empty token" },
        { { match = "a.>", split = "v1" }, "split must be a list of {to, weight}, got string" },
        { { match = "a.>" }, "no action (rewrite, split or dead_letter)" },
        { { match = "a.>", dead_letter = "dl.*" }, "dead_letter: invalid subject \"dl.*\"" },
        { { match = "a.>", dead_leter = "dl" }, "unknown field 'dead_leter'" },
        { { match = "a.>", rewrite = "x\0y" }, "rewrite holds a NUL byte" },
        { "a.> -> b", "a rule is a table, got string" },
      }
      for _, c in ipairs(cases) do
        local ok, err = msrt.routes { good, c[1], good }
        assert.is_nil(ok, c[2])
        assert.are.equal("bad_config", err.code)
        assert.are.equal("config", err.category)
        assert.are.equal(2, err.rule, err.message)
        assert.are.equal("rule 2: ", err.message:sub(1, 8))
        assert.truthy(err.message:find(c[2], 1, true), err.message)
      end
      local ok, err = msrt.routes { { match = "x" } }
      assert.is_nil(ok)
      assert.are.equal(1, err.rule)
      assert.has_error(function() msrt.routes(42) end)
      -- the first table still routes
      assert(msrt.publish("a.q", 1))
      assert.is_true(wait_until(function() return #b.msgs == 1 end))
      assert.are.equal("b.q", b.msgs[1].subject)
      b.close()
    end)
  end)

  it("msrt.routes({}) removes every rule", function()
    drive(function()
      local a = collector("a.*")
      assert(msrt.routes { { match = "a.*", rewrite = "b.$1" } })
      assert(msrt.routes {})
      assert(msrt.publish("a.q", 1))
      assert.is_true(wait_until(function() return #a.msgs == 1 end))
      assert.are.equal("a.q", a.msgs[1].subject)
      a.close()
    end)
  end)

  it("loads a table from a file, and reports a bad file with file:line", function()
    local good = S.file('return { { match = "f.*", rewrite = "g.$1" } }\n')
    local bad = S.file('return {\n  { match = "f.*", rewrite = "g.$1" },\n  { match = "a.*.*",\n    rewrite = "x.$3" },\n}\n')
    local syntax = S.file("return {{ match = \n")
    local ok, err = msrt.routes(good)
    assert.is_true(ok, tostring(err))
    ok, err = msrt.routes(bad)
    assert.is_nil(ok)
    assert.are.equal("bad_config", err.code)
    assert.are.equal(bad .. ":3: rule 2: rewrite \"x.$3\" refers to $3 but \"a.*.*\" has only 2 wildcards", err.message)
    assert.are.equal(2, err.rule)
    ok, err = msrt.routes(syntax)
    assert.is_nil(ok)
    assert.are.equal("syntax", err.code)
    ok, err = msrt.routes(good .. ".missing")
    assert.is_nil(ok)
    assert.are.equal("not_found", err.code)
    local r = S.run { "--check", bad }
    assert.are.equal(1, r.code)
    assert.are.equal(bad .. ":3: rule 2: rewrite \"x.$3\" refers to $3 but \"a.*.*\" has only 2 wildcards\n", r.err)
    assert.are.equal(0, S.run({ "--check", good }).code)
    for _, p in ipairs { good, bad, syntax } do os.remove(p) end
  end)
end)

-- An actor that, on "hold", waits inside its handler for the hub to open
-- gate.<name> (its mailbox fills meanwhile), records every other message's
-- data and priority, and on "end" publishes what it saw on report.<name>.
local function recorder(name, opts)
  return {
    name = name, subscribe = opts.subscribe or "rec." .. name, capacity = opts.capacity, overflow = opts.overflow,
    handle = function(ctx, msg)
      if msg.data == "hold" then
        ctx:request("gate." .. ctx.name, 1, { timeout_ms = 20000 })
      elseif msg.data == "end" then
        ctx:publish("report." .. ctx.name, ctx.seen or {})
      else
        ctx.seen = ctx.seen or {}
        ctx.seen[#ctx.seen + 1] = { msg.data, msg.priority }
      end
    end,
  }
end

-- Start a recorder and hold it: returns its handle, a function that opens
-- the gate, and the list its report will land in.
local function held_recorder(name, opts)
  local gate
  local gsub = assert(msrt.subscribe("gate." .. name, function(m) gate = m.reply end))
  local report = collector("report." .. name)
  local h = assert(spawn(recorder(name, opts)))
  assert(msrt.publish("rec." .. name, "hold", { priority = 1 }))
  assert(wait_until(function() return gate ~= nil end), "the actor never asked for the gate")
  local function open() assert(msrt.publish(gate, "go")) end
  local function finish()
    assert(wait_until(function() return (h:mailbox()) == 0 end))
    assert(msrt.publish("rec." .. name, "end"))
    assert(wait_until(function() return #report.msgs == 1 end), "no report from " .. name)
    h:stop()
    h:wait()
    gsub.unsubscribe()
    report.close()
    return report.msgs[1].data
  end
  return h, open, finish
end

describe("priorities", function()
  it("a mailbox serves priority 1 before 10, FIFO within a priority, without starving 10", function()
    drive(function()
      local _, open, finish = held_recorder("prio", {})
      for i = 1, 20 do
        assert(msrt.publish("rec.prio", "low" .. i, { priority = 10 }))
        assert(msrt.publish("rec.prio", "high" .. i, { priority = 1 }))
      end
      open()
      local seen = finish()
      assert.are.equal(40, #seen)
      assert.are.equal(1, seen[1][2], "the first served is not priority 1")
      local last_high, first_low, lows, highs = 0, nil, {}, {}
      for i, s in ipairs(seen) do
        if s[2] == 1 then
          last_high = i
          highs[#highs + 1] = s[1]
        else
          first_low = first_low or i
          lows[#lows + 1] = s[1]
        end
      end
      assert.is_true(last_high <= 30, "priority 1 was not served first: last at " .. last_high)
      assert.is_true(first_low < last_high, "priority 10 starved until every priority 1 was served")
      for i = 1, 20 do
        assert.are.equal("high" .. i, highs[i])
        assert.are.equal("low" .. i, lows[i])
      end
    end)
  end)
end)

local function range(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = i end
  return t
end

local function data_of(seen)
  local t = {}
  for i, s in ipairs(seen) do t[i] = s[1] end
  return t
end

describe("overflow policies", function()
  -- Publish 1..100 into a recorder of capacity 10 held busy; returns what
  -- it saw, the publish errors, the drop notices and the router's counts.
  local function overflow(policy)
    local result
    drive(function()
      local notices = collector("msrt.dropped.rec." .. policy)
      local before = router()
      local _, open, finish = held_recorder(policy, { capacity = 10, overflow = policy })
      local errors, sent = {}, 0
      for i = 1, 100 do
        local ok, err = msrt.publish("rec." .. policy, i)
        if not ok then errors[#errors + 1] = err end
        sent = i
      end
      assert.are.equal(100, sent)
      open()
      local seen = finish()
      local d = settled(before)
      notices.close()
      result = { seen = data_of(seen), errors = errors, notices = notices.msgs, d = d }
    end)
    return result
  end

  for _, c in ipairs {
    { "drop_newest", "keeps the first 10, drops", range(1, 10) },
    { "drop_oldest", "keeps the last 10, evicts", range(91, 100) },
  } do
    local policy = c[1]
    it(policy .. " " .. c[2] .. " and announces the other 90; the counts add up", function()
      local r = overflow(policy)
      assert.are.same(c[3], r.seen)
      assert.are.equal(0, #r.errors)
      assert.are.equal(90, r.d[policy])
      assert.are.equal(90, r.d.dropped)
      assert.are.equal(90, #r.notices)
      assert.truthy(r.notices[1].data:find("^" .. policy .. " %d+$"), r.notices[1].data)
      assert.is_true(adds_up(r.d), explain(r.d))
    end)
  end

  it("drop_oldest evicting a copy of another subject class keeps each class's counts", function()
    drive(function()
      local function class(name) return router().classes[name] or {} end
      local ba, bb = class("xclsa"), class("xclsb")
      local _, open, finish = held_recorder("xcls", { capacity = 2, overflow = "drop_oldest",
        subscribe = { "rec.xcls", "xclsa.in", "xclsb.in" } })
      for i = 1, 2 do assert(msrt.publish("xclsa.in", i)) end
      for i = 3, 4 do assert(msrt.publish("xclsb.in", i)) end -- evict 1 and 2
      open()
      assert.are.same({ 3, 4 }, data_of(finish()))
      local a, b = class("xclsa"), class("xclsb")
      local function d(now, before, k) return (now[k] or 0) - (before[k] or 0) end
      assert.are.same({ 2, 0, 2 }, { d(a, ba, "accepted"), d(a, ba, "delivered"), d(a, ba, "drop_oldest") })
      assert.are.same({ 2, 2, 0 }, { d(b, bb, "accepted"), d(b, bb, "delivered"), d(b, bb, "dropped") })
    end)
  end)

  it("error refuses the overflow to the sender with mailbox_full; the counts add up", function()
    local r = overflow("error")
    assert.are.same(range(1, 10), r.seen)
    assert.are.equal(90, #r.errors)
    assert.are.equal("mailbox_full", r.errors[1].code)
    assert.truthy(r.errors[1].message:find("rec.error", 1, true), r.errors[1].message)
    assert.are.equal(90, r.d.refused)
    assert.are.equal(0, r.d.dropped)
    assert.is_true(adds_up(r.d), explain(r.d))
  end)

  it("block makes the publishing coroutine wait for room and loses nothing; the counts add up", function()
    drive(function()
      local before = router()
      local _, open, finish = held_recorder("block", { capacity = 10, overflow = "block" })
      local sent, done = 0, false
      msrt.after(0, function()
        for i = 1, 100 do
          assert(msrt.publish("rec.block", i))
          sent = i
        end
        done = true
      end)
      assert.is_true(wait_until(function() return sent >= 9 end))
      -- the publishing coroutine yields only when it waits: had it not
      -- waited, all 100 were sent in the turn it ran, before this check
      assert.is_true(sent < 100, "the publisher did not wait for room")
      open()
      assert.is_true(wait_until(function() return done end))
      local seen = finish()
      assert.are.same(range(1, 100), data_of(seen))
      local d = settled(before)
      assert.are.equal(0, d.dropped)
      assert.are.equal(0, d.refused)
      assert.is_true(adds_up(d), explain(d))
    end)
  end)

  it("a publish meeting full error and block mailboxes waits, then returns the refusal", function()
    drive(function()
      local before = router()
      local _, open_b, finish_b = held_recorder("mixblk", { capacity = 2, overflow = "block", subscribe = { "rec.mixblk", "rec.mix" } })
      local _, open_e, finish_e = held_recorder("mixerr", { capacity = 2, overflow = "error", subscribe = { "rec.mixerr", "rec.mix" } })
      local results, done = {}, false
      msrt.after(0, function()
        for i = 1, 3 do results[i] = { msrt.publish("rec.mix", i) } end
        done = true
      end)
      assert.is_true(wait_until(function() return #results >= 2 end))
      -- (as above: had it not waited, done would be true by now)
      assert.is_false(done, "the publisher did not wait for the block mailbox")
      open_b()
      assert.is_true(wait_until(function() return done end))
      open_e()
      assert.is_true(results[1][1] and results[2][1], "the first two fit both mailboxes")
      assert.is_nil(results[3][1])
      assert.are.equal("mailbox_full", results[3][2].code)
      assert.truthy(results[3][2].message:find("rec.mix", 1, true), results[3][2].message)
      assert.are.same({ 1, 2, 3 }, data_of(finish_b()))
      assert.are.same({ 1, 2 }, data_of(finish_e()))
      local d = settled(before)
      assert.are.equal(1, d.refused)
      assert.are.equal(0, d.dropped)
    end)
  end)

  it("an actor's ctx:publish meeting full error and block mailboxes waits, then returns the refusal", function()
    drive(function()
      local h_b, open_b, finish_b = held_recorder("amixblk", { capacity = 2, overflow = "block", subscribe = { "rec.amixblk", "rec.amix" } })
      local h_e, open_e, finish_e = held_recorder("amixerr", { capacity = 2, overflow = "error", subscribe = { "rec.amixerr", "rec.amix" } })
      local out = collector("amix.result")
      local p = assert(spawn { name = "amix_pub", subscribe = "amix.go", handle = function(ctx)
        local r = {}
        for i = 1, 3 do
          local ok, err = ctx:publish("rec.amix", i)
          r[i] = ok and "ok" or err.code
        end
        ctx:publish("amix.result", r)
      end })
      assert(msrt.publish("amix.go", 1))
      -- the actor has made its first two publishes (both mailboxes hold
      -- them) and is at its third; its result comes only once that returns.
      -- The proof that it waited is finish_b below: three copies in a
      -- mailbox of two, the third delivered when open_b made room.
      assert.is_true(wait_until(function() return (h_b:mailbox()) == 2 and (h_e:mailbox()) == 2 end))
      assert.are.equal(0, #out.msgs, "the actor did not wait for the block mailbox")
      open_b()
      assert.is_true(wait_until(function() return #out.msgs == 1 end))
      open_e()
      assert.are.same({ "ok", "ok", "mailbox_full" }, out.msgs[1].data)
      assert.are.same({ 1, 2, 3 }, data_of(finish_b()))
      assert.are.same({ 1, 2 }, data_of(finish_e()))
      p:stop()
      p:wait()
      out.close()
    end)
  end)

  it("fan-out counts one copy per subscriber", function()
    drive(function()
      local subs = {}
      for i = 1, 3 do subs[i] = collector("fan.out") end
      local before = router()
      assert(msrt.publish("fan.out", 1))
      local d = settled(before)
      assert.are.equal(3, d.accepted)
      assert.are.equal(3, d.delivered)
      for _, c in ipairs(subs) do c.close() end
    end)
  end)

  -- In a host of its own: the class table (64 first tokens) is the host's,
  -- and the spec files before this one have used some of it.
  local CLASSES = [[
    local msrt = require "msrt"
    local got = 0
    local function sub(p) assert(msrt.subscribe(p, function() got = got + 1 end)) end
    sub("pcfan.x") sub("pcfan.*") sub("pcnew.>") sub("pcdlq.>")
    assert(msrt.routes {
      { match = "pcold.*", rewrite = "pcnew.$1" },
      { match = "pcorders.>", dead_letter = "pcdlq.orders" },
    })
    assert(msrt.publish("pcfan.x", 1))            -- 2 copies delivered
    assert(msrt.publish("pcnobody.x", 1))         -- no_responders
    assert(not msrt.publish("pcbad..x", 1))       -- refused: invalid subject
    assert(msrt.publish("pcold.a", 1))            -- counted as pcnew
    assert(msrt.publish("pcorders.new", 1))       -- dead_lettered, copy to pcdlq
    assert(msrt.publish("caf\xc3\xa9.x", 1))      -- not ASCII: _other
    for i = 1, 70 do msrt.publish("many" .. i .. ".x", i) end -- past 64 classes: _other
    local function report()
      if got < 4 then return msrt.after(5, report) end
      local r = msrt.metrics().router
      for _, c in ipairs { "_total", "_other", "pcfan", "pcnobody", "pcbad", "pcnew", "pcold", "pcorders", "pcdlq", "many1", "many70" } do
        local m = c == "_total" and r or r.classes[c]
        if m then
          print(c, m.accepted, m.delivered, m.dead_lettered, m.refused, m.no_responders, m.dropped)
        end
      end
      local n = 0
      for _ in pairs(r.classes) do n = n + 1 end
      print("classes", n)
      msrt.stop()
    end
    report()
  ]]

  it("keeps the identity per subject class (first token, 64 at most); totals are the classes' sum", function()
    local r = S.run({ S.file(CLASSES, ".lua") })
    assert.are.equal(0, r.code, r.err)
    local got, classes = {}, nil
    for line in r.out:gmatch("[^\n]+") do
      local f = {}
      for w in line:gmatch("%S+") do f[#f + 1] = w end
      if f[1] == "classes" then classes = tonumber(f[2])
      else got[f[1]] = { accepted = tonumber(f[2]), delivered = tonumber(f[3]), dead_lettered = tonumber(f[4]),
        refused = tonumber(f[5]), no_responders = tonumber(f[6]), dropped = tonumber(f[7]) } end
    end
    assert.are.equal(64, classes, r.out)
    local want = {
      pcfan = { accepted = 2, delivered = 2 }, pcnobody = { accepted = 1, no_responders = 1 },
      pcbad = { accepted = 1, refused = 1 }, pcnew = { accepted = 1, delivered = 1 },
      pcorders = { accepted = 1, dead_lettered = 1 }, pcdlq = { accepted = 1, delivered = 1 },
      many1 = { accepted = 1, no_responders = 1 },
    }
    for name, w in pairs(want) do
      assert.is_table(got[name], name .. " has no class: " .. r.out)
      for _, k in ipairs { "accepted", "delivered", "dead_lettered", "refused", "no_responders", "dropped" } do
        assert.are.equal(w[k] or 0, got[name][k], name .. " " .. k)
      end
    end
    assert.is_nil(got.pcold, "a rewritten copy counts in its new subject's class")
    assert.is_nil(got.many70, "a first token past the 64th class got a class of its own")
    -- _other: the non-ASCII one, and the many* past the 63 named classes
    -- (6 pc* classes came first)
    assert.are.equal(1 + 70 - (63 - 6), got._other.no_responders, r.out)
    for name, m in pairs(got) do
      assert.are.equal(m.accepted, m.delivered + m.dropped + m.dead_lettered + m.refused + m.no_responders, name)
    end
  end)

  it("the accounting adds up under load: actors publishing to every policy at once", function()
    drive(function()
      local before = router()
      local notices = 0
      local nsub = assert(msrt.subscribe("msrt.dropped.load.>", function() notices = notices + 1 end))
      local consumer = {
        handle = function(ctx, msg)
          for _ = 1, ctx.args.spin do end
        end,
      }
      local consumers = {}
      for _, c in ipairs {
        { "drop_newest", 20000 }, { "drop_oldest", 20000 }, { "error", 20000 }, { "block", 0 },
      } do
        consumers[#consumers + 1] = assert(spawn {
          -- the error actor alone on its subject: a refusal reaches the sender
          -- only when no `block` mailbox makes the publish wait
          name = "load_" .. c[1], subscribe = c[1] == "error" and "load.error" or "load.all", capacity = 32,
          overflow = c[1], args = { spin = c[2] }, handle = consumer.handle,
        })
      end
      consumers[#consumers + 1] = assert(spawn {
        name = "load_q", instances = 2, queue = "lq", subscribe = "load.all", capacity = 32,
        overflow = "drop_newest", args = { spin = 5000 }, handle = consumer.handle,
      })
      local done = collector("load.done")
      local producers = assert(spawn {
        name = "load_p", instances = 2, subscribe = "load.go", queue = "lp",
        handle = function(ctx, msg)
          local refused = 0
          for i = 1, msg.data do
            local ok = ctx:publish(i % 2 == 0 and "load.all" or "load.error", i, { priority = i % 10 + 1 })
            if not ok then refused = refused + 1 end
          end
          ctx:publish("load.done", refused)
        end,
      })
      assert(msrt.publish("load.go", 20000))
      assert(msrt.publish("load.go", 20000))
      assert.is_true(wait_until(function() return #done.msgs == 2 end, 60000), "the producers did not finish")
      for _, h in ipairs(consumers) do
        assert.is_true(wait_until(function() return (h:mailbox()) == 0 end, 20000))
        h:stop()
        h:wait()
      end
      producers:stop()
      producers:wait()
      local d = settled(before)
      nsub.unsubscribe()
      assert.is_true(adds_up(d), explain(d))
      assert.is_true(d.drop_newest > 0 and d.drop_oldest > 0 and d.refused > 0, explain(d))
      -- notices reach the hub's callbacks through its inbox, after the counts
      wait_until(function() return notices == d.drop_newest + d.drop_oldest end)
      assert.are.equal(d.drop_newest + d.drop_oldest, notices)
      assert.are.equal(done.msgs[1].data + done.msgs[2].data, d.refused)
      done.close()
    end, 120000)
  end)
end)
