-- Agent processes (README "Processes"): real children through /bin/sh, their stdout
-- published, subscriptions written to their stdin, stop and kill,
-- permissions, exit records.
--
-- Each spec runs as a hub coroutine through run(body): the loop is driven
-- until body has finished and every child it spawned has exited (a child
-- left running fails the spec and is stopped); afterwards no child and no
-- handle may be left.
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"
local core = require "msrt.core"

local children = {}

local function spawn(spec)
  local h, err = msrt.process(spec)
  if h then children[#children + 1] = h end
  return h, err
end

local function sh(name, script, extra)
  local spec = { name = name, cmd = { "/bin/sh", "-c", script } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spawn(spec)
end

-- S.drive (a failing body's children are killed, its handles closed, the
-- failure raised), and every child body spawned must have exited when it
-- returns.
local function run(body, limit_ms)
  children = {}
  S.drive(function()
    body()
    for _, h in ipairs(children) do
      if h:state() ~= "terminated" and h:state() ~= "failed" then
        error("process " .. h.name .. " left running", 0)
      end
    end
  end, limit_ms)
  children = {}
  assert.are.equal(0, core.proc_count(), "processes left behind")
end

local collect, poll = S.collector, S.wait_until

-- Messages reach hub subscribers through the hub's inbox, after the
-- publish: a marker published now arrives after everything published
-- before it.
local function drain()
  local co = coroutine.running()
  local sub
  sub = assert(msrt.subscribe("spec.drain", function()
    sub:unsubscribe()
    coroutine.resume(co)
  end))
  assert(msrt.publish("spec.drain", true))
  coroutine.yield()
end

-- Wait for the exit, then for what the child published to arrive.
local function finish(h)
  local rec = h:wait()
  drain()
  return rec
end

describe("msrt.process", function()
  it("gives the child only the environment it lists", function()
    run(function()
      local out = collect("agents.envp.out")
      local h = assert(sh("envp", "env", { codec = "lines", env = { FOO = "bar baz" },
        inherit_env = { "HOME" } }))
      finish(h)
      local lines = table.concat(out.data(), "\n")
      assert.matches("FOO=bar baz", lines, 1, true)
      assert.matches("HOME=" .. os.getenv("HOME"), lines, 1, true)
      assert.is_nil(lines:find("PATH=/", 1, true))
      assert.is_nil(lines:find("USER=", 1, true))
      out.close()
    end)
  end)

  it("runs in cwd and passes argv with spaces and quotes untouched", function()
    run(function()
      local out = collect("agents.argv.out")
      local h = assert(spawn { name = "argv", codec = "lines", cwd = "/tmp",
        cmd = { "/bin/sh", "-c", 'pwd; for a; do printf "%s\\n" "$a"; done', "sh",
                "a b", 'c"d', "it's", "$HOME", "  " } })
      finish(h)
      assert.are.same({ "/tmp", "a b", 'c"d', "it's", "$HOME", "  " }, out.data())
      out.close()
    end)
  end)

  it("publishes objects with a subject as messages and other values on .out", function()
    run(function()
      local res = collect("agents.pub.>")
      local h = assert(sh("pub", [[
        echo '{"subject":"agents.pub.result","reply":"agents.pub.r","headers":{"X-Id":"7"},"data":{"ok":true,"n":[1,2,null]}}'
        echo '[1,"two"]'
        echo '"text"']]))
      finish(h)
      assert.are.equal(3, #res.msgs)
      local m = res.msgs[1]
      assert.are.equal("agents.pub.result", m.subject)
      assert.are.equal("agents.pub.r", m.reply)
      assert.are.same({ ["X-Id"] = "7" }, m.headers)
      assert.is_true(m.data.ok)
      assert.are.equal(msrt.null, m.data.n[3])
      assert.are.same({ 1, "two" }, res.msgs[2].data)
      assert.are.equal("agents.pub.out", res.msgs[2].subject)
      assert.are.equal("text", res.msgs[3].data)
      res.close()
    end)
  end)

  it("delivers a 1 MiB line split across reads whole", function()
    -- a child host with max_payload above 1 MiB (the default is NATS' 1 MiB,
    -- which a 1 MiB line plus its encoding would exceed)
    local script = S.file([[
      local msrt = require "msrt"
      assert(msrt.start { profile = { max_payload = 4194304 } })
      local got = {}
      msrt.subscribe("agents.big.out", function(m) got[#got + 1] = m.data end)
      local h = assert(msrt.process { name = "big", cmd = { "/bin/sh", "-c",
        [=[printf '"'; head -c 1048574 /dev/zero | tr '\0' a; echo '"'; echo '"after"']=] } })
      msrt.after(0, function()
        h:wait()
        -- its lines reach this subscriber through the hub's inbox: a
        -- marker published after the exit arrives after them (as drain()
        -- below), however long that takes
        local sub
        sub = msrt.subscribe("spec.big.drained", function()
          sub:unsubscribe()
          print(#got, #got[1], got[1] == string.rep("a", 1048574), got[2])
        end)
        msrt.publish("spec.big.drained", true)
      end)
    ]])
    local r = S.run({ script })
    os.remove(script)
    assert.are.equal("2\t1048574\ttrue\tafter\n", r.out)
    assert.are.equal(0, r.code)
  end)

  it("refuses a 20 MiB line, reports it, and reads the next line", function()
    run(function()
      local out = collect("agents.huge.out")
      local bad = collect("msrt.process.huge.bad_output")
      local h = assert(sh("huge", [[head -c 20971520 /dev/zero | tr '\0' b; echo; echo '"next"']]))
      finish(h)
      assert.are.same({ "next" }, out.data())
      assert.are.equal(1, #bad.msgs)
      local b = bad.msgs[1].data
      assert.are.equal("line_too_long", b.reason)
      assert.are.equal(20971520, b.bytes)
      assert.are.equal(string.rep("b", 200), b.head)
      assert.are.equal(1, h:stats().bad_output)
      out.close(); bad.close()
    end)
  end)

  it("reports invalid JSON and binary garbage and loses no following line", function()
    run(function()
      local out = collect("agents.junk.out")
      local bad = collect("msrt.process.junk.bad_output")
      local h = assert(sh("junk", [[
        echo 1; echo '{"unterminated":'; echo 2
        printf '\377\376\000\001garbage\n'; echo 3
        printf '{"a":1} trailing\n'; echo 4]]))
      finish(h)
      assert.are.same({ 1, 2, 3, 4 }, out.data())
      assert.are.equal(3, #bad.msgs)
      assert.are.equal("invalid_json", bad.msgs[1].data.reason)
      assert.are.equal('{"unterminated":', bad.msgs[1].data.head)
      assert.are.equal("invalid_utf8", bad.msgs[2].data.reason)
      assert.are.equal("invalid_json", bad.msgs[3].data.reason)
      out.close(); bad.close()
    end)
  end)

  -- src/proc/proc.c reads the common message line (plain strings, no
  -- escapes) without cJSON: every form must publish what the full parse does
  it("publishes a message line the same in every JSON form", function()
    run(function()
      local got = collect("agents.forms.m")
      local out = collect("agents.forms.out")
      local bad = collect("msrt.process.forms.bad_output")
      local h = assert(sh("forms", [[printf '%s\n' \
        '{"subject":"agents.forms.m","data":"plain"}' \
        ' { "subject" : "agents.forms.m" ,	"data" : "blanks" } ' \
        '{"data":"data first","subject":"agents.forms.m"}' \
        '{"subject":"agents.forms.m","data":"esc\"aped"}' \
        '{"subject":"agents.forms.m","data":"caf\u00e9"}' \
        '{"subject":"agents.forms.m","data":{"k":[1,2]}}' \
        '{"subject":"agents.forms.m","reply":"agents.forms.r","data":"with reply"}' \
        '{"subject":"agents.forms.m","data":"with headers","headers":{"H":"v"}}' \
        '{"subject":"agents.forms.m"}' \
        '{"subject":"agents.forms.m","data":7}' \
        '{"data":"no subject"}' \
        '{"subject":"agents.forms.m","data":"unclosed"' \
        '{"subject":"agents.forms.m","data":"x"} tail']]))
      finish(h)
      local data = got.data()
      assert.are.same({ "plain", "blanks", "data first", 'esc"aped', "caf\u{e9}", { k = { 1, 2 } }, "with reply",
        "with headers" }, { unpack(data, 1, 8) })
      assert.are.equal(10, #got.msgs)
      assert.is_nil(data[9])
      assert.are.equal(7, data[10])
      assert.are.equal("agents.forms.r", got.msgs[7].reply)
      assert.is_nil(got.msgs[1].reply)
      assert.are.same({ H = "v" }, got.msgs[8].headers)
      assert.are.same({ { data = "no subject" } }, out.data())
      assert.are.equal(2, #bad.msgs)
      assert.are.equal("invalid_json", bad.msgs[1].data.reason)
      assert.are.equal("invalid_json", bad.msgs[2].data.reason)
      got.close(); out.close(); bad.close()
    end)
  end)

  it("kills a child that ignores TERM after the grace", function()
    run(function()
      local out = collect("agents.stubborn.out")
      local h = assert(sh("stubborn", [[trap '' TERM; echo '"ready"'; while :; do sleep 1; done]],
        { stop = { grace_ms = 200 } }))
      assert.is_true(poll(function() return #out.msgs == 1 end))
      h:stop()
      assert.are.equal("stopping", h:state())
      local rec = finish(h)
      assert.are.equal("KILL", rec.signal)
      assert.is_true(rec.stopped)
      assert.is_true(rec.normal)
      assert.are.equal("terminated", h:state())
      out.close()
    end)
  end)

  it("kills grandchildren with their parent", function()
    run(function()
      local out = collect("agents.family.out")
      local h = assert(sh("family", "sleep 1000 & echo $!; wait", { codec = "lines" }))
      assert.is_true(poll(function() return #out.msgs == 1 end))
      local grandchild = tonumber(out.msgs[1].data)
      h:stop()
      finish(h)
      -- gone, or a zombie waiting for init to reap it
      assert.is_true(poll(function()
        local f = io.open("/proc/" .. grandchild .. "/stat")
        if not f then return true end
        local st = f:read("*a"); f:close()
        return st:match("%) (%a)") == "Z"
      end))
      out.close()
    end)
  end)

  it("writes matching messages to stdin as JSON lines; the reply subject is allowed once", function()
    run(function()
      -- the child answers each message on its reply subject with the data.
      -- (A reply subject of our own rather than msrt.request: the hub's
      -- request inbox outlives this file's msrt module, see hub.lua.)
      local h = assert(sh("echoer", [[exec sed -u 's/^{"subject":"[^"]*","reply":"\([^"]*\)","data":\(.*\)}$/{"subject":"\1","data":\2}/']],
        { subscribe = "svc.echo" }))
      local replies = collect("spec.reply.>")
      assert.is_true(msrt.publish("svc.echo", { hello = "world", list = { 1, 2 } }, { reply = "spec.reply.1" }))
      assert.is_true(poll(function() return #replies.msgs == 1 end))
      assert.are.same({ hello = "world", list = { 1, 2 } }, replies.msgs[1].data)
      assert.are.equal("spec.reply.1", replies.msgs[1].subject)
      -- the same reply subject a second time is refused
      local bad = collect("msrt.process.echoer.bad_output")
      h:send({ subject = "spec.reply.1", data = "again" })
      assert.is_true(poll(function() return #bad.msgs == 1 end))
      assert.are.equal("permission", bad.msgs[1].data.reason)
      h:stop()
      finish(h)
      assert.are.equal(1, #replies.msgs)
      bad.close(); replies.close()
    end)
  end)

  it("answers a request it was handed but never replied to when it exits: no_responders at once", function()
    run(function()
      -- reads one message and exits without replying
      assert(sh("mute", "read -r line; exit 0", { subscribe = "svc.mute" }))
      local data, err = msrt.request("svc.mute", { q = 1 }, { timeout_ms = 600000 })
      assert.is_nil(data)
      assert.are.equal("no_responders", err.code)
      assert.matches("responder exited", err.message)
      -- from an actor: the same
      assert(sh("mute2", "read -r line; exit 0", { subscribe = "svc.mute2" }))
      local asker = assert(msrt.actor{ name = "asker", subscribe = "spec.ask", handle = function(ctx, msg)
        local d, e = ctx:request("svc.mute2", 1, { timeout_ms = 600000 })
        ctx:reply(msg, { d = d, code = e and e.code })
      end })
      local r = assert(msrt.request("spec.ask", true, { timeout_ms = 600000 }))
      assert.are.same({ code = "no_responders" }, r)
      asker:stop()
      asker:wait()
    end)
  end)

  it("refuses and counts publishes outside its permissions", function()
    run(function()
      local all = collect("tools.>")
      local own = collect("agents.perm.>")
      local bad = collect("msrt.process.perm.bad_output")
      local h = assert(sh("perm", [[
        echo '{"subject":"tools.run","data":1}'
        echo '{"subject":"tools.secret","data":2}'
        echo '{"subject":"agents.other.x","data":3}'
        echo '{"subject":"agents.perm.ok","data":4}'
        echo '{"subject":"agents.perm.hidden","data":5}']],
        { allow_publish = { "tools.*" }, deny_publish = { "tools.secret", "agents.perm.hidden" } }))
      finish(h)
      assert.are.same({ 1 }, all.data())
      assert.are.same({ 4 }, own.data())
      assert.are.equal(3, #bad.msgs)
      for _, m in ipairs(bad.msgs) do assert.are.equal("permission", m.data.reason) end
      assert.are.equal(3, h:stats().refused)
      all.close(); own.close(); bad.close()
    end)
  end)

  it("holds a child's output while a block mailbox is full, losing nothing", function()
    run(function()
      local done = collect("spec.slow.done")
      local states = collect("msrt.process.flood.state")
      local m0 = msrt.metrics().router
      local a = assert(msrt.actor { name = "slow", subscribe = "agents.flood.out",
        capacity = 8, overflow = "block", args = 20000,
        init = function(ctx, want) ctx.state = { want = want, n = 0, ordered = true } end,
        handle = function(ctx, msg)
          local s = ctx.state
          if msg.data ~= s.n then s.ordered = false end
          s.n = s.n + 1
          local x = 0
          for i = 1, 2000 do x = x + i end -- slower than the child
          if s.n == s.want then ctx:publish("spec.slow.done", { n = s.n, ordered = s.ordered }) end
        end })
      local h = assert(sh("flood", [[i=0; while [ $i -lt 20000 ]; do echo $i; i=$((i+1)); done]]))
      finish(h)
      assert.is_true(poll(function() return #done.msgs == 1 end, 20000))
      assert.are.same({ n = 20000, ordered = true }, done.msgs[1].data)
      assert.are.equal(0, h:stats().refused)
      assert.are.equal(0, msrt.metrics().router.refused - m0.refused)
      -- the held output shows as the paused state, and ends
      assert.is_true(poll(function() return states.msgs[#states.msgs].data.state == "terminated" end))
      local seen = {}
      for _, m in ipairs(states.msgs) do seen[m.data.state] = (seen[m.data.state] or 0) + 1 end
      assert.is_true((seen.paused or 0) > 0, "never paused")
      assert.is_true((seen.idle or 0) > 1, "not idle again after a pause")
      a:stop()
      a:wait()
      done.close()
      states.close()
    end)
  end)

  it("does not block the hub on a child that never reads stdin", function()
    run(function()
      local h = assert(sh("deaf", "exec sleep 1000", { subscribe = "to.deaf", capacity = 8 }))
      local drops = collect("msrt.dropped.to.deaf")
      local big = string.rep("x", 65536)
      local m0 = msrt.metrics().router
      -- 200 publishes of 64 KiB to a full stdin return in this same hub
      -- turn: a timer due at once has not run when the loop ends
      local turned = false
      msrt.after(0, function() turned = true end)
      for _ = 1, 200 do assert.is_true(msrt.publish("to.deaf", big)) end
      assert.is_false(turned, "a publish waited on the loop")
      -- the hub keeps running: timers fire while the child reads nothing
      local ticks = 0
      local t = msrt.every(1, function() ticks = ticks + 1 end)
      assert.is_true(poll(function() return h:stats().stdin_dropped > 0 and ticks > 3 end))
      t.stop()
      assert.is_true(poll(function() return #drops.msgs > 0 end))
      assert.are.equal("busy", h:state())
      local st = h:stats()
      assert.is_true(st.stdin_queued <= 8)
      assert.are.equal(200, st.stdin_queued + st.stdin_dropped + st.stdin_lines)
      -- the router's accounting agrees: the drops moved out of delivered
      local m1 = msrt.metrics().router
      assert.are.equal(st.stdin_dropped, m1.drop_newest - m0.drop_newest)
      local ok, err = h:send("more")
      assert.is_nil(ok)
      assert.are.equal("mailbox_full", err.code)
      h:stop(100)
      local rec = finish(h)
      assert.are.equal("TERM", rec.signal)
      drops.close()
      local m = msrt.metrics().router
      assert.are.equal(m.accepted, m.delivered + m.dropped + m.dead_lettered + m.refused + m.no_responders)
    end)
  end)

  it("publishes the exit reason after the last line of output", function()
    run(function()
      local order = {}
      local out = msrt.subscribe("agents.last.out", function(m) order[#order + 1] = m.data end)
      local ex = msrt.subscribe("msrt.process.last.exit", function(m) order[#order + 1] = m.data end)
      local h = assert(sh("last", [[i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); done; echo fatal >&2; exit 7]]))
      local rec = finish(h)
      assert.is_true(poll(function() return #order == 2001 end))
      for i = 1, 2000 do assert.are.equal(i - 1, order[i]) end
      local pub = order[2001]
      assert.are.equal(7, pub.code)
      assert.are.equal("exit 7", pub.reason)
      assert.is_false(pub.normal)
      assert.are.equal("fatal", pub.stderr)
      assert.are.equal("failed", h:state())
      assert.are.same(pub, rec)
      out:unsubscribe(); ex:unsubscribe()
    end)
  end)

  it("publishes lifecycle states and refuses bad specs and missing programs", function()
    run(function()
      local states = collect("msrt.process.life.state")
      local h = assert(sh("life", "exit 0"))
      finish(h)
      assert.is_true(poll(function() return #states.msgs == 2 end))
      local seen = {}
      for _, m in ipairs(states.msgs) do seen[#seen + 1] = m.data.state end
      assert.are.same({ "idle", "terminated" }, seen)
      states.close()
      local p, err = msrt.process { name = "nope", cmd = { "no-such-program-msrt" } }
      assert.is_nil(p)
      assert.are.equal("spawn_failed", err.code)
      assert.are.equal("process nope: cannot start no-such-program-msrt: " ..
        "No such file or directory", err.message)
      p, err = msrt.process { name = "a.b", cmd = { "true" } }
      assert.are.equal("invalid_arg", err.code)
      p, err = msrt.process { name = "x", cmd = { "true" }, limits = { files = 3 } }
      assert.are.equal("invalid_arg", err.code)
      p, err = msrt.process { name = "x", cmd = { "true" }, colour = "red" }
      assert.are.equal("invalid_arg", err.code)
      assert.has_error(function() msrt.process("x") end)
    end)
  end)

  it("reports an exec the kernel refuses, which comes after the start, as the exit", function()
    run(function()
      -- executable but of no format the kernel runs: found and X_OK, so
      -- the start succeeds; the exec fails in the child (spawn.c)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write("not a program\n")
      f:close()
      assert(os.execute("chmod 700 " .. path) == 0)
      local ex = collect("msrt.process.noexec.exit")
      local h = assert(spawn { name = "noexec", cmd = { path } })
      assert.is_true(h:pid() > 0)
      local rec = finish(h)
      os.remove(path)
      assert.are.equal(127, rec.code)
      assert.is_false(rec.normal)
      assert.are.equal("exec: Exec format error", rec.error)
      assert.are.equal("spawn failed: exec: Exec format error", rec.reason)
      assert.are.equal("failed", h:state())
      assert.is_true(poll(function() return #ex.msgs == 1 end))
      assert.are.equal("exec: Exec format error", ex.msgs[1].data.error)
      ex.close()
    end)
  end)

  it("publishes raw chunks with the raw codec, and leaves luv's own children to luv", function()
    run(function()
      local out = collect("agents.rawp.out")
      local h = assert(sh("rawp", [[printf 'no newline \000 here']], { codec = "raw" }))
      local luv_code
      local child = uv.spawn("/bin/sh", { args = { "-c", "exit 5" } }, function(code)
        luv_code = code
      end)
      finish(h)
      assert.are.equal("no newline \0 here", table.concat(out.data()))
      assert.is_true(poll(function() return luv_code ~= nil end))
      assert.are.equal(5, luv_code)
      child:close()
      out.close()
    end)
  end)

  it("applies limits in the child and sends signals to its group", function()
    run(function()
      local out = collect("agents.lim.out")
      local h = assert(sh("lim", [[ulimit -n; trap 'echo hup; exit 0' HUP; echo ready; while :; do sleep 0.01; done]],
        { codec = "lines", limits = { nofile = 19, cpu_s = 60 } }))
      assert.is_true(poll(function() return #out.msgs == 2 end))
      assert.are.same({ "19", "ready" }, out.data())
      assert.is_true(h:signal("HUP"))
      local rec = finish(h)
      assert.are.equal(0, rec.code)
      assert.are.same({ "19", "ready", "hup" }, out.data())
      local ok, err = h:signal("TERM")
      assert.is_nil(ok)
      assert.are.equal("closed", err.code)
      out.close()
    end)
  end)
end)

-- A process's stdin queue under each overflow policy, against children that
-- stop reading. Lines carry 70,000 bytes, more than a pipe holds (64 KiB):
-- the first line stays being written while the child reads nothing, so the
-- queue's slots stay taken until the child reads, whatever the timing.
-- Each spec publishes under stdin.<name> and checks the router's
-- accounting of class "stdin" since it began (one class for all: the
-- router counts at most 64 classes in a process, and the spec files
-- share them).
describe("msrt.process stdin overflow", function()
  local PAD = string.rep("x", 70000)
  local function big(i) return ("%03d"):format(i) .. PAD end

  local COUNTERS = { "accepted", "delivered", "dead_lettered", "refused", "no_responders", "dropped",
    "drop_newest", "drop_oldest", "drop_closed", "drop_other" }

  local function class(name) return msrt.metrics().router.classes[name] or {} end

  local function adds_up(d)
    return d.accepted == d.delivered + d.dropped + d.dead_lettered + d.refused + d.no_responders
  end

  -- The router's identity, for the whole router and for each class.
  local function identity_holds()
    local m = msrt.metrics().router
    if not adds_up(m) then return false end
    for _, c in pairs(m.classes) do
      if not adds_up(c) then return false end
    end
    return true
  end

  -- A child subscribed to stdin.<name> with capacity and overflow, for one
  -- spec. gated: it reads nothing until c.open(), then echoes its stdin
  -- lines on agents.<name>.out (codec lines); else it never reads.
  -- c.publish(i) publishes big(i) on stdin.<name> from the calling
  -- coroutine; c.counts(k...) lists the router's counters k of class
  -- "stdin" since the child started; c.lines() the line numbers echoed so
  -- far. c.done() stops it, waits for its exit and checks the router's
  -- identity.
  local function child(name, capacity, overflow, gated)
    local path = os.tmpname()
    os.remove(path)
    local script = gated and [[while [ ! -e "$GATE" ]; do sleep 0.01; done; exec cat]]
      or "exec sleep 1000"
    local c = { before = class("stdin"), out = collect("agents." .. name .. ".out") }
    c.h = assert(sh(name, script, { env = { GATE = path }, codec = "lines",
      subscribe = "stdin." .. name, capacity = capacity, overflow = overflow }))
    function c.open() assert(io.open(path, "w")):close() end
    function c.publish(i) return msrt.publish("stdin." .. name, big(i)) end
    function c.counts(...)
      local now, out = class("stdin"), {}
      for i, k in ipairs { ... } do out[i] = (now[k] or 0) - (c.before[k] or 0) end
      return out
    end
    function c.lines()
      local got = {}
      for i, line in ipairs(c.out.data()) do got[i] = tonumber(line:sub(1, 3)) end
      return got
    end
    function c.done()
      c.h:stop()
      local rec = finish(c.h)
      os.remove(path)
      c.out.close()
      local all = c.counts(unpack(COUNTERS))
      local d = {}
      for i, k in ipairs(COUNTERS) do d[k] = all[i] end
      assert.is_true(adds_up(d), "class stdin")
      assert.is_true(poll(identity_holds))
      return rec
    end
    return c
  end

  -- Run fn as a hub coroutine of its own (a second publisher beside the
  -- spec's body); the returned table's `done` turns true when fn returns.
  local function side(fn)
    local state = {}
    msrt.after(0, function()
      fn(state)
      state.done = true
    end)
    return state
  end

  -- A publisher waits: until stdin_blocked shows it, and every message
  -- before it has reached the hub.
  local function blocked(c)
    assert.is_true(poll(function() return c.h:stats().stdin_blocked == 1 end))
    drain()
  end

  it("drop_newest: the publisher drops on its own thread, counts and announces it", function()
    run(function()
      local c = child("dn", 4, nil, false)
      local notices = collect("msrt.dropped.stdin.dn")
      -- the hub publishes without yielding: its inbox is not drained
      -- meanwhile, so the first 4 copies hold the 4 slots
      for i = 1, 10 do assert.is_true(msrt.publish("stdin.dn", i)) end
      assert.are.same({ 10, 4, 6, 0 }, c.counts("accepted", "delivered", "drop_newest", "refused"))
      assert.are.equal(6, c.h:stats().stdin_dropped)
      assert.is_true(notices.wait(6))
      assert.are.equal("drop_newest process dn", notices.msgs[1].data)
      assert.is_true(poll(function() return c.h:stats().stdin_lines == 4 end))
      c.done()
      local st = c.h:stats()
      assert.are.same({ 4, 6, 0, 0 }, { st.stdin_lines, st.stdin_dropped, st.stdin_refused, st.stdin_blocked })
      notices.close()
    end)
  end)

  it("drop_oldest: the queue evicts its oldest line, announced with that message", function()
    run(function()
      local c = child("dold", 4, "drop_oldest", true)
      local notices = collect("msrt.dropped.stdin.dold")
      for i = 1, 10 do assert.is_true(c.publish(i)) end
      -- line 1 is being written (the pipe is full); 2..7 are evicted in
      -- turn by 5..10 while 3 lines wait behind it
      assert.is_true(notices.wait(6))
      assert.are.equal("drop_oldest process dold", notices.msgs[1].data)
      assert.are.equal(6, c.h:stats().stdin_dropped)
      c.open()
      assert.is_true(c.out.wait(4))
      assert.are.same({ 1, 8, 9, 10 }, c.lines())
      assert.are.same({ 10, 4, 6 }, c.counts("accepted", "delivered", "drop_oldest"))
      c.done()
      notices.close()
    end)
  end)

  it("error: a publish finding stdin full gets mailbox_full, from the hub and from an actor; other subscribers still get it", function()
    run(function()
      local c = child("err", 2, "error", true)
      local other = collect("stdin.err")
      assert.is_true(c.publish(1))
      assert.is_true(c.publish(2))
      local ok, err = c.publish(3)
      assert.is_nil(ok)
      assert.are.equal("mailbox_full", err.code)
      assert.is_true(other.wait(3)) -- the hub subscriber got all three
      -- an actor's ctx:publish hears the same, synchronously
      local result = collect("spec.err.result")
      local a = assert(S.spawn { name = "err_pub", subscribe = "spec.err.go",
        handle = function(ctx, msg)
          local r, e = ctx:publish("stdin.err", msg.data)
          ctx:publish("spec.err.result", { ok = r, code = e and e.code })
        end })
      assert(msrt.publish("spec.err.go", big(4)))
      assert.is_true(result.wait(1))
      assert.are.same({ code = "mailbox_full" }, result.msgs[1].data)
      -- 4 publishes, 2 endpoints each: 4 to the hub subscriber, 2 to
      -- stdin, 2 refused
      assert.are.same({ 8, 6, 2, 0 }, c.counts("accepted", "delivered", "refused", "dropped"))
      assert.are.same({ 2, 0 }, { c.h:stats().stdin_refused, c.h:stats().stdin_dropped })
      -- once the child reads, there is room again
      c.open()
      assert.is_true(c.out.wait(2))
      assert.is_true(c.publish(5))
      assert.is_true(c.out.wait(3))
      assert.are.same({ 1, 2, 5 }, c.lines())
      a:stop()
      a:wait()
      c.done()
      other.close(); result.close()
    end)
  end)

  it("block: a hub publisher waits for room, loses nothing, and goes on when the child reads", function()
    run(function()
      local c = child("blk", 2, "block", true)
      local producer = side(function(st)
        for i = 1, 6 do
          assert(c.publish(i))
          st.sent = i
        end
      end)
      -- 1 and 2 hold the slots; 3 waits. Nothing can free a slot before
      -- the child reads, so the producer is still at 2 however long this
      -- waits.
      blocked(c)
      assert.are.equal(2, producer.sent)
      assert.is_nil(producer.done)
      assert.are.equal(0, #c.out.msgs)
      c.open()
      assert.is_true(poll(function() return producer.done end))
      assert.is_true(c.out.wait(6))
      assert.are.same({ 1, 2, 3, 4, 5, 6 }, c.lines())
      assert.are.same({ 6, 6, 0, 0 }, c.counts("accepted", "delivered", "dropped", "refused"))
      local st = c.h:stats()
      assert.are.same({ 6, 0, 0 }, { st.stdin_lines, st.stdin_dropped, st.stdin_refused })
      assert.is_true(st.stdin_blocked >= 1)
      c.done()
    end)
  end)

  it("block: h:send waits in a hub coroutine for room, loses nothing; the child's exit releases a waiting one", function()
    run(function()
      local c = child("snd", 2, "block", true)
      local producer = side(function(st)
        for i = 1, 6 do
          assert(c.h:send(big(i)))
          st.sent = i
        end
      end)
      assert.is_true(poll(function() return c.h:stats().stdin_blocked == 1 end))
      assert.are.equal(2, producer.sent) -- 1 and 2 hold the slots; 3 waits
      c.open()
      assert.is_true(poll(function() return producer.done end))
      assert.is_true(c.out.wait(6))
      assert.are.same({ 1, 2, 3, 4, 5, 6 }, c.lines())
      local st = c.h:stats()
      assert.are.same({ 6, 0, 0 }, { st.stdin_lines, st.stdin_dropped, st.stdin_refused })
      c.done()
      local d = child("snd2", 1, "block", false)
      local waiter = side(function(st)
        assert(d.h:send(big(1)))
        st.r, st.err = d.h:send(big(2))
      end)
      assert.is_true(poll(function() return d.h:stats().stdin_blocked == 1 end))
      assert(d.h:signal("KILL"))
      assert.is_true(poll(function() return waiter.done end))
      assert.is_nil(waiter.r)
      assert.are.equal("closed", waiter.err.code)
      d.done()
    end)
  end)

  it("block: an actor's ctx:publish waits (its worker runs others) and resumes when the child reads", function()
    run(function()
      local c = child("blka", 2, "block", true)
      local progress = collect("spec.blka.sent")
      local pong = collect("spec.blka.pong")
      local a = assert(S.spawn { name = "blka_pub", subscribe = "spec.blka.go",
        handle = function(ctx, msg)
          local pad = string.rep("x", 70000)
          for i = 1, msg.data do
            assert(ctx:publish("stdin.blka", ("%03d"):format(i) .. pad))
            ctx:publish("spec.blka.sent", i)
          end
        end })
      local b = assert(S.spawn { name = "blka_pong", subscribe = "spec.blka.ping",
        handle = function(ctx) ctx:publish("spec.blka.pong", true) end })
      assert(msrt.publish("spec.blka.go", 5))
      blocked(c)
      -- the blocked actor does not hold the workers
      assert(msrt.publish("spec.blka.ping", true))
      assert.is_true(pong.wait(1))
      drain()
      assert.are.same({ 1, 2 }, progress.data())
      c.open()
      assert.is_true(progress.wait(5))
      assert.is_true(c.out.wait(5))
      assert.are.same({ 1, 2, 3, 4, 5 }, c.lines())
      assert.are.same({ 5, 5, 0, 0 }, c.counts("accepted", "delivered", "dropped", "refused"))
      a:stop(); b:stop()
      a:wait(); b:wait()
      c.done()
      progress.close(); pong.close()
    end)
  end)

  it("block: a child's output meeting another child's full stdin pauses its stdout; nothing lost", function()
    run(function()
      local c = child("bpipe", 2, "block", true)
      -- 8 lines of 70,000 bytes: more than the pipe, the read buffer and
      -- the 2 slots hold, so the writer cannot finish while c is closed
      local src = assert(sh("bsrc", [[pad=$(head -c 70000 /dev/zero | tr '\0' x)
        for i in 1 2 3 4 5 6 7 8; do printf '{"subject":"stdin.bpipe","data":"%03d%s"}\n' $i "$pad"; done]],
        { allow_publish = "stdin.bpipe" }))
      blocked(c)
      assert.are.equal(0, #c.out.msgs)
      assert.is_nil(src.exit)
      c.open()
      assert.is_true(c.out.wait(8))
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, c.lines())
      assert.are.equal(0, finish(src).code)
      assert.are.same({ 8, 8, 0, 0 }, c.counts("accepted", "delivered", "dropped", "refused"))
      assert.are.same({ 8, 0 }, { src:stats().lines_out, src:stats().refused })
      c.done()
    end)
  end)

  it("block: a child that exits releases a waiting publisher; the copy counts as drop_closed", function()
    run(function()
      local c = child("blkx", 1, "block", false)
      local producer = side(function(st)
        st.results = {}
        for i = 1, 2 do st.results[i] = { c.publish(i) } end
      end)
      blocked(c)
      assert.is_nil(producer.done)
      assert.is_true(c.h:signal("KILL")) -- an exit of its own, not a stop
      assert.are.equal("KILL", finish(c.h).signal)
      assert.is_true(poll(function() return producer.done end))
      -- both publishes returned true (the second's copy found stdin
      -- closed: dropped, not refused)
      assert.are.same({ { true }, { true } }, producer.results)
      assert.are.same({ 2, 1, 1, 1, 0 }, c.counts("accepted", "delivered", "drop_closed", "dropped", "refused"))
      -- after the exit the subscription is gone
      assert.is_true(c.publish(3))
      assert.are.same({ 3, 1 }, c.counts("accepted", "no_responders"))
      c.done()
    end)
  end)
end)
