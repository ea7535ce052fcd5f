-- Hot reload of policy files (README "Hot reload"):
-- routing tables and profiles, watched with libuv fs events, SIGHUP,
-- msrt.reload; failures keep the old policy.
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

assert(msrt.start())

local write = S.write

-- A fresh directory under /tmp with a routing-table file; returns dir, path.
local function policy_dir(rules_text)
  local dir = assert(uv.fs_mkdtemp("/tmp/msrt-reload-XXXXXX"))
  local path = dir .. "/routes.lua"
  write(path, rules_text)
  return dir, path
end

local function remove_dir(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

local REWRITE_TO = 'return { { match = "old.*", rewrite = "%s.$1" } }'

-- Drive body(path, events, dir, policy) with a policy from a watched file
-- (text, in a fresh directory) and a collector of msrt.reload.* events:
-- use(path) puts the policy in force and returns it and the function that
-- undoes it; everything is undone afterwards.
local function with_watched(name, text, use, body, limit_ms)
  local dir = assert(uv.fs_mkdtemp("/tmp/msrt-reload-XXXXXX"))
  local path = dir .. "/" .. name
  write(path, text)
  S.drive(function()
    local events = S.collector("msrt.reload.*")
    local policy, undo = use(path)
    local w = assert(msrt.watch(dir))
    body(path, events, dir, policy)
    w.close()
    events.close()
    undo()
  end, limit_ms)
  remove_dir(dir)
end

-- A routing table rewriting old.* to first.*, from a watched file.
local function with_watched_routes(first, body, limit_ms)
  with_watched("routes.lua", REWRITE_TO:format(first), function(path)
    assert(msrt.routes(path))
    return nil, function() msrt.routes({}) end
  end, body, limit_ms)
end

-- A supervision tree from a watched file (body gets the supervisor last).
local function with_watched_tree(text, body)
  with_watched("tree.lua", text, function(path)
    local sup = assert(msrt.supervisor(path))
    return sup, function() sup:stop() sup:wait() end
  end, body)
end

-- Publish old.<n> and return the subject it was delivered on (via a
-- collector on "*.<n>" patterns of the candidates).
local function where_does_old_go(n, candidates)
  local c = S.collector("*." .. n)
  assert(msrt.publish("old." .. n, n))
  assert.is_true(c.wait(1, 5000), "nothing arrived for old." .. n)
  local subject = c.msgs[1].subject
  c.close()
  for _, want in ipairs(candidates) do
    if subject == want .. "." .. n then return want end
  end
  return subject
end

describe("hot reload of a routing table", function()
  it("applies a valid change, keeps out a syntax error and a bad rule with file:line", function()
    with_watched_routes("v1", function(path, events)
      assert.are.equal("v1", where_does_old_go(1, { "v1", "v2" }))
      -- a valid change, written the way editors do: temp file, then rename
      write(path .. ".tmp", REWRITE_TO:format("v2"))
      assert(os.rename(path .. ".tmp", path))
      assert.is_true(events.wait(1, 5000))
      local ok = events.msgs[1]
      assert.are.equal("msrt.reload.ok", ok.subject)
      assert.are.equal("routes", ok.data.kind)
      assert.matches("routes%.lua$", ok.data.file)
      assert.are.equal("v2", where_does_old_go(2, { "v1", "v2" }))
      -- a syntax error: refused with file:line, the old table stays
      write(path, 'return { { match = "old.*", rewrite = "v3.$1" }')
      assert.is_true(events.wait(2, 5000))
      assert.are.equal("msrt.reload.failed", events.msgs[2].subject)
      assert.matches("routes%.lua:%d+:", events.msgs[2].data.error)
      assert.are.equal("v2", where_does_old_go(3, { "v2", "v3" }))
      -- a validation error (a bad subject in a rule): the same
      write(path, 'return {\n  { match = "old.*", rewrite = "v4..$1" },\n}')
      assert.is_true(events.wait(3, 5000))
      assert.are.equal("msrt.reload.failed", events.msgs[3].subject)
      assert.matches("routes%.lua:2: rule 1", events.msgs[3].data.error)
      assert.are.equal("v2", where_does_old_go(4, { "v2", "v4" }))
      -- fixed again: applied, the version counter has grown
      write(path, REWRITE_TO:format("v5"))
      assert.is_true(events.wait(4, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[4].subject)
      assert.is_true(events.msgs[4].data.version > ok.data.version)
      assert.are.equal("v5", where_does_old_go(5, { "v2", "v5" }))
    end)
  end)

  it("makes a burst of writes one reload", function()
    with_watched_routes("b0", function(path, events)
      -- five writes in one hub turn: their fs events reach the loop
      -- together, after the turn, so they restart one debounce timer
      -- whatever the machine's speed
      for i = 1, 5 do write(path, REWRITE_TO:format("b" .. i)) end
      assert.is_true(events.wait(1, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[1].subject)
      assert.are.equal("b5", where_does_old_go(6, { "b1", "b5" }))
      -- one more write, applied: a second reload of the burst would have
      -- come before this one's event (the hub delivers in order)
      write(path, REWRITE_TO:format("b6"))
      assert.is_true(S.wait_until(function() return where_does_old_go(61, { "b5", "b6" }) == "b6" end))
      assert.is_true(events.wait(2, 5000))
      assert.are.equal(2, #events.msgs)
      assert.is_true(events.msgs[2].data.version == events.msgs[1].data.version + 1)
    end)
  end)

  it("reloads on SIGHUP and on msrt.reload", function()
    local reload = require "msrt.reload"
    local debounce = reload.DEBOUNCE_MS
    -- the watcher's own reload (after its debounce) must not come within
    -- the spec: each change is applied by the signal or the call alone
    reload.DEBOUNCE_MS = 3600 * 1000
    finally(function() reload.DEBOUNCE_MS = debounce end)
    with_watched_routes("h1", function(path, events)
      write(path, REWRITE_TO:format("h2"))
      assert.are.equal("h1", where_does_old_go(7, { "h1", "h2" }))
      assert(uv.kill(uv.os_getpid(), "sighup"))
      assert.is_true(events.wait(1, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[1].subject)
      assert.are.equal("h2", where_does_old_go(8, { "h1", "h2" }))
      write(path, REWRITE_TO:format("h3"))
      assert(msrt.reload(path))
      assert.is_true(events.wait(2, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[2].subject)
      assert.are.equal("h3", where_does_old_go(9, { "h2", "h3" }))
      assert.are.equal(2, #events.msgs)
    end)
  end)

  it("refuses a file outside the watched directories, and a symlink out of them", function()
    local outside, opath = policy_dir(REWRITE_TO:format("s2"))
    with_watched_routes("s1", function(path, _, dir)
      assert(msrt.routes(opath))
      assert(msrt.routes(path))
      local ok, err = msrt.reload(opath)
      assert.is_nil(ok)
      assert.matches("not under a watched directory", err.message)
      assert(uv.fs_symlink(opath, dir .. "/link.lua"))
      ok, err = msrt.reload(dir .. "/link.lua")
      assert.is_nil(ok)
      assert.matches("not under a watched directory", err.message)
      ok, err = msrt.reload(dir .. "/missing.lua")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      assert.are.equal("s1", where_does_old_go(8, { "s1", "s2" }))
    end)
    remove_dir(outside)
  end)

  it("forgets a file once another table replaces it: editing the old file changes nothing", function()
    with_watched_routes("first", function(path, events)
      assert(msrt.routes { { match = "old.*", rewrite = "table.$1" } })
      write(path, REWRITE_TO:format("edited"))
      local ok, err = msrt.reload(path)
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      assert.are.equal("table", where_does_old_go(7, { "table", "edited", "first" }))
    end)
  end)

  it("swaps tables under load without losing or duplicating a message; the accounting adds up", function()
    local before = msrt.metrics().router
    with_watched_routes("l1", function(path)
      local total = 200000
      -- the flood goes to load.n (not routed); the table churns meanwhile
      local recv = assert(S.spawn { name = "lrecv", subscribe = "lflood.n", capacity = 4096,
        overflow = "block", args = { total = total },
        init = function(ctx) ctx.n, ctx.bad = 0, 0 end,
        handle = function(ctx, msg)
          ctx.n = ctx.n + 1
          if msg.data ~= ctx.n then ctx.bad = ctx.bad + 1 end
          if ctx.n == ctx.args.total then ctx:publish("lflood.done", { n = ctx.n, bad = ctx.bad }) end
        end })
      local done = S.collector("lflood.done")
      assert(S.spawn { name = "lsend", subscribe = "lflood.go", args = { total = total },
        handle = function(ctx)
          for i = 1, ctx.args.total do
            ctx:publish("lflood.n", i)
            if i % 20000 == 0 then assert(ctx:request("lflood.swap", i, { timeout_ms = 60000 })) end
          end
        end })
      local swaps = 0
      local swap = assert(msrt.subscribe("lflood.swap", function(m)
        swaps = swaps + 1
        write(path, REWRITE_TO:format("l" .. (swaps % 2 + 1)))
        assert(msrt.reload(path))
        msrt.publish(m.reply, true)
      end))
      assert(msrt.publish("lflood.go", true))
      assert.is_true(done.wait(1, 120000))
      assert.are.same({ n = total, bad = 0 }, done.msgs[1].data)
      assert.is_true(swaps >= 9)
      swap.unsubscribe()
      done.close()
      recv:stop()
      S.wait_until(function()
        local r = msrt.metrics().router
        local d = function(k) return r[k] - before[k] end
        return d("accepted") == d("delivered") + d("dropped") + d("dead_lettered") + d("refused") + d("no_responders")
      end, 5000)
      local r = msrt.metrics().router
      local d = function(k) return r[k] - before[k] end
      assert.are.equal(d("accepted"), d("delivered") + d("dropped") + d("dead_lettered") + d("refused") + d("no_responders"))
    end, 120000)
  end)
end)

describe("hot reload of a profile", function()
  it("applies batch, spin_us and mailbox_capacity live and names the fields that need a restart", function()
    local dir = assert(uv.fs_mkdtemp("/tmp/msrt-reload-XXXXXX"))
    local pfile = dir .. "/tuned.lua"
    write(pfile, "return { batch = 32, spin_us = 20, workers = 2 }")
    -- The child fills the mailbox of a gated actor (busy in its first
    -- message until it gets its gate's reply; overflow error, no capacity
    -- of its own: the profile's) with 200 messages, before the reload
    -- (profile default 4096: all fit) and after (100: only 100 fit).
    local script = S.file([[
      local msrt = require "msrt"
      local path = arg[1]
      local w = assert(msrt.watch(path:match("^(.*)/")))
      local function fill(tag)
        local gate
        msrt.subscribe("cap.gate." .. tag, function(m) gate = m end)
        local h = assert(msrt.actor({ name = "cap_" .. tag, subscribe = "cap." .. tag, overflow = "error",
          args = { gate = "cap.gate." .. tag },
          handle = function(ctx, msg)
            if msg.data == "gate" then ctx:request(ctx.args.gate, 1, { timeout_ms = 60000 }) end
          end }))
        assert(msrt.publish("cap." .. tag, "gate"))
        for _ = 1, 10000 do
          if gate then break end
          local co = coroutine.running()
          msrt.after(1, function() coroutine.resume(co) end)
          coroutine.yield()
        end
        assert(gate, "the gated actor never asked for its gate")
        local fit = 0
        for i = 1, 200 do if msrt.publish("cap." .. tag, i) then fit = fit + 1 end end
        msrt.publish(gate.reply, true)
        h:stop()
        return fit
      end
      msrt.subscribe("msrt.reload.*", function(m)
        local p = msrt.profile()
        print(m.subject, p.batch, p.spin_us, p.workers, p.mailbox_capacity,
          table.concat(m.data.needs_restart or {}, ","), p.steal_wait_us)
        print("fit after", fill("after"))
        w.close()
        msrt.stop()
      end)
      msrt.after(0, function()
        print("start", msrt.profile().batch, msrt.profile().spin_us, msrt.profile().workers)
        print("fit before", fill("before"))
        local f = io.open(path, "w")
        f:write("return { batch = 16, spin_us = 5, workers = 3, mailbox_capacity = 100, steal_wait_us = 5000 }")
        f:close()
      end)
    ]])
    local r = S.run({ "--profile", pfile, script, pfile }, { env = "timeout -k 5 60" })
    os.remove(script)
    remove_dir(dir)
    assert.are.equal(0, r.code, r.err)
    assert.matches("start\t32\t20\t2", r.out)
    assert.matches("fit before\t200", r.out)
    assert.matches("msrt.reload.ok\t16\t5\t2\t100\tworkers\t5000\n", r.out)
    assert.matches("fit after\t100\n", r.out)
  end)
end)

describe("hot reload of a supervision tree", function()
  -- A spec file: children ids (actor workers on t.<id> that crash on
  -- "crash"), the strategy and the intensity; migrate counts reloads.
  local function tree(ids, strategy, extra)
    local lines = { "return {", ("  name = 'rtree', strategy = %q, intensity = 5, period_ms = 5000,"):format(strategy),
      "  migrate = function(old) return (old or 0) + 1 end,", extra or "", "  children = {" }
    for _, id in ipairs(ids) do
      lines[#lines + 1] = ("    { id = %q, actor = { subscribe = 't.%s', handle = function(ctx, msg)"
        .. " if msg.data == 'crash' then error('crash!') end end } },"):format(id, id)
    end
    lines[#lines + 1] = "  },\n}\n"
    return table.concat(lines, "\n")
  end

  local function instances(sup)
    local out = {}
    for _, k in ipairs(sup:which_children()) do out[k.id] = k.handle and k.handle:ids()[1] or false end
    return out
  end

  -- (an actor's ctx:request, ctx:after... are built on first use, from
  -- lua/msrt/actor_ctx.lua: here in a sandboxed inline function of a
  -- child that a reload added)
  it("starts a new child whose inline functions use ctx:after and ctx:request", function()
    local echo = "    { id = 'echo', actor = { subscribe = 't.lz.echo', handle = function(ctx, m) ctx:reply(m, m.data .. '!') end } },\n"
    local asker = "    { id = 'asker', actor = { subscribe = 't.lz.go', init = function(ctx)\n"
      .. "      ctx:after(1, function(c) c:publish('t.lz.done', 'timer') end) end,\n"
      .. "      handle = function(ctx, m) ctx:publish('t.lz.done', (ctx:request('t.lz.echo', m.data, { timeout_ms = 10000 }))) end } },\n"
    local function text(children) return "return { name = 'lztree', strategy = 'one_for_one', children = {\n" .. children .. "} }\n" end
    with_watched_tree(text(echo), function(path, events)
      local done = S.collector("t.lz.done")
      write(path, text(echo .. asker))
      assert.is_true(events.wait(1, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[1].subject, tostring(events.msgs[1].data.error))
      assert.is_true(done.wait(1, 5000), "the new child's ctx:after did not fire")
      assert(msrt.publish("t.lz.go", "hi"))
      assert.is_true(done.wait(2, 5000), "the new child's ctx:request did not answer")
      assert.are.same({ "timer", "hi!" }, done.data())
      done.close()
    end)
  end)

  it("updates specs without restarting running children, starts new ids, swaps the strategy; keeps out a bad one", function()
    with_watched_tree(tree({ "a", "b" }, "one_for_one"), function(path, events, _, sup)
      local before = instances(sup)
      write(path, tree({ "a", "b", "c" }, "one_for_all", "  stop_removed = false,"))
      assert.is_true(events.wait(1, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[1].subject, tostring(events.msgs[1].data.error))
      assert.are.equal("supervisor", events.msgs[1].data.kind)
      local after = instances(sup)
      assert.are.equal(before.a, after.a) -- running children were not restarted
      assert.are.equal(before.b, after.b)
      assert.is_number(after.c) -- the new id started
      assert.are.equal(3, sup:count_children().active)
      -- the new strategy decides the next event: one_for_all restarts all
      assert(msrt.publish("t.a", "crash"))
      assert.is_true(S.wait_until(function()
        local now = instances(sup)
        return now.a and now.b and now.c and now.a ~= after.a and now.b ~= after.b and now.c ~= after.c
      end, 5000), "one_for_all did not restart every child")
      -- a bad strategy is kept out; the tree is as it was
      write(path, tree({ "a", "b", "c" }, "no_such_strategy"))
      assert.is_true(events.wait(2, 5000))
      assert.are.equal("msrt.reload.failed", events.msgs[2].subject)
      assert.matches("no_such_strategy", events.msgs[2].data.error)
      assert.are.equal(3, sup:count_children().active)
      assert.are.equal(1, require("msrt.reload").state(path)) -- migrate ran once
    end)
  end)
end)

describe("policy files of a tree that ended", function()
  it("stop applying to it: a new tree from the same file takes the reloads, an unused file is not_found", function()
    local dir = assert(uv.fs_mkdtemp("/tmp/msrt-reload-XXXXXX"))
    local path, spath = dir .. "/tree.lua", dir .. "/strategy.lua"
    write(spath, "return function(event) return { { op = 'restart', child = event.child } } end\n")
    local function tree(ids)
      local kids = {}
      for i, id in ipairs(ids) do kids[i] = ("{ id = %q, actor = { handle = function() end } }"):format(id) end
      return ("return { name = 'ended', strategy = %q, children = { %s } }"):format(spath, table.concat(kids, ", "))
    end
    write(path, tree({ "a" }))
    S.drive(function()
      local w = assert(msrt.watch(dir))
      local first = assert(msrt.supervisor(path))
      first:stop()
      first:wait()
      local ok, err = msrt.reload(path)
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      ok, err = msrt.reload(spath)
      assert.is_nil(ok, "the strategy file still applies to the tree that ended")
      assert.are.equal("not_found", err.code)
      local second = assert(msrt.supervisor(path))
      write(path, tree({ "a", "b" }))
      assert(msrt.reload(path))
      assert.are.equal(2, second:count_children().active)
      assert(msrt.reload(spath))
      second:stop()
      second:wait()
      w.close()
    end)
    remove_dir(dir)
  end)
end)

describe("hot reload of a child's health checks", function()
  it("starts the new probes of a running child without restarting it", function()
    local function tree(health)
      return ("return { name = 'htree', children = { { id = 'hchild', %s actor = { subscribe = 't.hchild',"
        .. " handle = function() end } } } }"):format(health or "")
    end
    with_watched_tree(tree(), function(path, events, _, sup)
      local before = sup:which_children()[1].handle:ids()[1]
      assert.is_nil(msrt.metrics().health.hchild)
      write(path, tree("health = { liveness = { lua = function() return true end, interval_ms = 20 } },"))
      assert.is_true(events.wait(1, 5000))
      assert.are.equal("msrt.reload.ok", events.msgs[1].subject, tostring(events.msgs[1].data.error))
      assert.is_true(S.wait_until(function()
        local h = msrt.metrics().health.hchild
        return h and h.state == "healthy"
      end, 5000), "the new liveness probe did not run")
      assert.are.equal(before, sup:which_children()[1].handle:ids()[1]) -- not restarted
    end)
  end)
end)

describe("msrt-lua --check of a supervision tree file", function()
  it("names the file, the child's line and why; a good tree passes", function()
    local bad = S.file(table.concat({
      "return {",
      "  name = 'x', strategy = 'one_for_one',",
      "  children = {",
      "    { id = 'a', actor = { handle = function() end } },",
      "    { id = 'b', actor = { handle = function() end }, restart = 'sometimes' },",
      "  },",
      "}",
    }, "\n"))
    local r = S.run({ "--check", bad })
    os.remove(bad)
    assert.are.equal(1, r.code)
    assert.matches(":5: child \"b\": restart must be one of permanent, transient, temporary, got 'sometimes'", r.err)
    local strat = S.file("return { strategy = 'no_such_strategy', children = {} }")
    r = S.run({ "--check", strat })
    os.remove(strat)
    assert.are.equal(1, r.code)
    assert.matches("no_such_strategy", r.err)
    r = S.run({ "--check", "examples/live_policy/policies/fleet.lua", "examples/live_policy/policies/routes.lua" })
    assert.are.equal(0, r.code, r.err)
  end)
end)
