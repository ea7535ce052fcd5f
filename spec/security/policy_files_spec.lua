-- Policy files (routing tables, profiles, trees, strategies, whatever
-- `--check` is given) run sandboxed and bounded (README "Policy files"):
-- the attacks are files that reach for the host or never end.
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

assert(msrt.start())

local write = S.write

local function exists(path) return uv.fs_lstat(path) ~= nil end

-- A fresh directory, removed after body(dir).
local function in_dir(body)
  local dir = assert(uv.fs_mkdtemp("/tmp/msrt-policy-XXXXXX"))
  local ok, err = pcall(body, dir)
  os.execute("rm -rf '" .. dir .. "'")
  assert(ok, err)
end

-- Lua that tries to run a command which creates marker.
local function evil(marker, tail)
  return ('os.execute("touch %s") io.open("%s", "w")\n%s'):format(marker, marker, tail or "return {}")
end

describe("policy files are sandboxed", function()
  it("--check FILE does not run os.execute or io as the caller", function()
    in_dir(function(dir)
      local marker = dir .. "/pwned"
      local file = dir .. "/evil.lua"
      write(file, evil(marker))
      local r = S.run({ "--check", file })
      assert.are.equal(1, r.code)
      assert.matches("evil%.lua:1: attempt to call field 'execute'", r.err)
      assert.is_false(exists(marker))
    end)
  end)

  it("--check FILE finds none of io, os.execute, require, load*, dofile, string.dump, debug, ffi, jit", function()
    in_dir(function(dir)
      local file = dir .. "/probe.lua"
      write(file, [[
        local reached = {}
        for _, name in ipairs({ "io", "debug", "jit", "ffi", "load", "loadstring", "loadfile", "dofile",
          "module", "getfenv", "setfenv", "newproxy", "collectgarbage", "print", "package" }) do
          if _G[name] ~= nil then reached[#reached + 1] = name end
        end
        if os.execute or os.exit or os.remove then reached[#reached + 1] = "os" end
        if string.dump or ("").dump then reached[#reached + 1] = "string.dump" end
        for _, m in ipairs({ "ffi", "io", "os", "jit", "debug", "msrt", "luv" }) do
          if pcall(require, m) then reached[#reached + 1] = "require " .. m end
        end
        assert(pcall(load or loadstring or function() error("none") end, "\27LJ") == false)
        if #reached > 0 then error("reached: " .. table.concat(reached, ", ")) end
        return {}
      ]])
      local r = S.run({ "--check", file })
      assert.are.equal(0, r.code, r.err)
    end)
  end)

  it("a routing table, a profile, a tree and a strategy file (at load and on reload) cannot run os.execute", function()
    in_dir(function(dir)
      local marker = dir .. "/pwned"
      local routes, prof, tree, strat = dir .. "/routes.lua", dir .. "/prof.lua", dir .. "/tree.lua", dir .. "/strategy.lua"
      write(routes, evil(marker))
      write(prof, evil(marker))
      write(strat, evil(marker, "return function() return {} end"))
      write(tree, ("return { name = 'evil_tree', strategy = %q, children = {} }"):format(strat))
      S.drive(function()
        local ok, err = msrt.routes(routes)
        assert.is_nil(ok)
        assert.matches("attempt to call field 'execute'", err.message)
        ok, err = require("msrt.profile").load_file(prof, { cpus = 1, memory = 1 })
        assert.is_nil(ok)
        assert.matches("attempt to call field 'execute'", err.message)
        ok, err = msrt.supervisor(tree)
        assert.is_nil(ok)
        assert.matches("attempt to call field 'execute'", tostring(err))
        -- a tree naming a good strategy file, which then turns evil
        write(strat, "return function() return {} end")
        local sup = assert(msrt.supervisor(tree))
        local w = assert(msrt.watch(dir))
        write(strat, evil(marker, "return function() return {} end"))
        ok, err = msrt.reload(strat)
        assert.is_nil(ok)
        assert.matches("attempt to call field 'execute'", err.message)
        w.close()
        sup:stop()
        sup:wait()
      end)
      assert.is_false(exists(marker))
    end)
  end)

  it("a tree file's inline actor code runs in the actor with the policy library only (no io, os.execute, require...)", function()
    in_dir(function(dir)
      local marker = dir .. "/pwned"
      local tree = dir .. "/tree.lua"
      write(tree, ([[return { name = "inline_tree", children = {
        { id = "spy", actor = { name = "spy", subscribe = "spy.go", handle = function(ctx, m)
          local reached = {}
          for _, k in ipairs({ "io", "debug", "jit", "ffi", "require", "load", "loadstring", "loadfile",
            "dofile", "package", "getfenv", "setfenv", "collectgarbage", "module" }) do
            if _G[k] ~= nil then reached[#reached + 1] = k end
          end
          if os.execute or os.exit or string.dump then reached[#reached + 1] = "os.execute/os.exit/string.dump" end
          pcall(function() os.execute("touch %s") end)
          ctx:reply(m, table.concat(reached, ","))
        end } } } }]]):format(marker))
      S.drive_supervised(function()
        local sup = assert(msrt.supervisor(tree))
        assert.are.equal("", (assert(msrt.request("spy.go", 1, { timeout_ms = 10000 }))))
        sup:stop()
        sup:wait()
      end)
      assert.is_false(exists(marker))
    end)
  end)
end)

describe("policy evaluation has a budget", function()
  -- A watched routing table rewriting old.* to first.*; body(path, events).
  local function with_routes(body)
    in_dir(function(dir)
      local path = dir .. "/routes.lua"
      write(path, 'return { { match = "old.*", rewrite = "first.$1" } }')
      S.drive(function()
        local events = S.collector("msrt.reload.*")
        assert(msrt.routes(path))
        local w = assert(msrt.watch(dir))
        local ok, err = pcall(body, path, events, dir)
        w.close()
        events.close()
        msrt.routes({})
        assert(ok, err)
      end, 60000)
    end)
  end

  -- The old table is still in force and the hub still serves: a timer
  -- fires and a rewritten publish arrives.
  local function still_serving(n)
    local fired = false
    msrt.after(1, function() fired = true end)
    local c = S.collector("first." .. n)
    assert(msrt.publish("old." .. n, n))
    assert.is_true(c.wait(1, 5000))
    c.close()
    assert.is_true(S.wait_until(function() return fired end, 5000))
  end

  -- Write text to path, wait for its reload to fail; returns the error.
  local function fails_with(path, events, text, n)
    local before = #events.msgs
    if text then write(path, text) end
    assert.is_true(events.wait(before + 1, 20000), "no reload event")
    local m = events.msgs[before + 1]
    assert.are.equal("msrt.reload.failed", m.subject, m.data.error)
    still_serving(n)
    return m.data.error
  end

  it("a watched file that becomes an endless loop, or one that pcall guards, is refused on its time budget", function()
    with_routes(function(path, events)
      local t0 = uv.hrtime()
      assert.matches("routes%.lua:0: policy code ran past its time budget of 100 ms",
        fails_with(path, events, "while true do end", 1))
      assert.is_true((uv.hrtime() - t0) / 1e6 < 5000)
      assert.matches("ran past its time budget",
        fails_with(path, events, "while true do pcall(function() while true do end end) end", 2))
      assert.matches("ran past its time budget",
        fails_with(path, events, "local co = coroutine.create(function() while true do end end) while true do coroutine.resume(co) end", 3))
    end)
  end)

  it("a watched file that allocates 4 GiB is refused on its memory budget", function()
    with_routes(function(path, events)
      assert.matches("went past its memory budget of 67108864 bytes", fails_with(path, events,
        'local t = {} for i = 1, 4096 do t[i] = ("x"):rep(2^20) .. i end return t', 1))
      assert.matches("went past its memory budget", fails_with(path, events,
        'local s = "x" while true do s = s .. s end', 2))
    end)
  end)

  it("a FIFO, a directory, a symlink or an oversized file in its place is refused, never waited on, never an exit", function()
    with_routes(function(path, events, dir)
      os.remove(path)
      os.execute("mkfifo '" .. path .. "'")
      assert.are.equal("fifo", uv.fs_lstat(path).type)
      assert.matches("a FIFO, not a regular file", fails_with(path, events, nil, 1))
      os.remove(path)
      assert(uv.fs_mkdir(path, 448))
      assert.matches("a directory, not a regular file", fails_with(path, events, nil, 2))
      uv.fs_rmdir(path)
      write(path, "return {} --" .. string.rep("x", 1024 * 1024))
      assert.matches("more than the 1048576 allowed", fails_with(path, events, nil, 3))
      os.remove(path)
      local out = assert(uv.fs_mkdtemp("/tmp/msrt-policy-out-XXXXXX"))
      write(out .. "/routes.lua", 'return { { match = "old.*", rewrite = "outside.$1" } }')
      assert(uv.fs_symlink(out .. "/routes.lua", path))
      local ok, err = msrt.reload(path)
      os.execute("rm -rf '" .. out .. "'")
      assert.is_nil(ok)
      assert.matches("not under a watched directory", err.message)
      still_serving(4)
    end)
  end)

  it("a strategy whose decide never ends fails its event (strategy_failed), the host keeps serving", function()
    in_dir(function(dir)
      local strat = dir .. "/strategy.lua"
      write(strat, "return function() while true do end end")
      S.drive(function()
        local ev = S.collector("msrt.supervisor.loop_sup.event")
        -- under a parent, which restarts it when its strategy escalates
        local sup = assert(msrt.supervisor{ name = "loop_top", intensity = 5, children = {
          { id = "mid", supervisor = { name = "loop_sup", strategy = strat, children = {
            { id = "w", actor = { subscribe = "loop.w", handle = function() error("crash") end } } } } } } })
        msrt.publish("loop.w", 1)
        assert.is_true(S.wait_until(function()
          for _, m in ipairs(ev.msgs) do if m.data.event == "strategy_failed" then return true end end
        end, 20000))
        for _, m in ipairs(ev.msgs) do
          if m.data.event == "strategy_failed" then assert.matches("ran past its time budget", m.data.reason) end
        end
        local fired = false
        msrt.after(1, function() fired = true end)
        assert.is_true(S.wait_until(function() return fired end, 5000))
        ev.close()
        sup:stop()
        sup:wait()
      end)
    end)
  end)

  it("a directory of the path swapped for a symlink out of the watched one never gets a file read from outside", function()
    in_dir(function(root)
      local watched, outside = root .. "/w", root .. "/outside"
      assert(uv.fs_mkdir(watched, 448))
      assert(uv.fs_mkdir(outside, 448))
      assert(uv.fs_mkdir(watched .. "/real", 448))
      local inner = watched .. "/real/routes.lua"
      write(inner, 'return { { match = "old.*", rewrite = "first.$1" } }')
      write(outside .. "/routes.lua", 'return { { match = "old.*", rewrite = "outside.$1" } }')
      -- the attacker: w/real is a directory, then a symlink to outside, again and again
      local stop = root .. "/stop"
      local swapper
      local outside_applied, tried = 0, 0
      local ok, err = pcall(S.drive, function()
        assert(msrt.routes(inner))
        local w = assert(msrt.watch(watched))
        local real = assert(uv.fs_realpath(inner))
        swapper = io.popen(("%s -e %s"):format(S.quote(S.exe), S.quote(([[
          local uv, dir, stop, outside = require "luv", %q, %q, %q
          for _ = 1, 2e6 do
            if uv.fs_lstat(stop) then break end
            uv.fs_rename(dir .. "/real", dir .. "/real.d")
            uv.fs_symlink(outside, dir .. "/real")
            uv.fs_unlink(dir .. "/real")
            uv.fs_rename(dir .. "/real.d", dir .. "/real")
          end]]):format(watched, stop, outside))))
        local deadline = uv.hrtime() + 4e9
        while uv.hrtime() < deadline do
          tried = tried + 1
          if msrt.reload(real) then -- where does old.<n> go now?
            local c = S.collector("*." .. tried)
            assert(msrt.publish("old." .. tried, 1))
            assert.is_true(c.wait(1, 5000))
            if c.msgs[1].subject == "outside." .. tried then outside_applied = outside_applied + 1 end
            c.close()
          end
        end
        w.close()
        msrt.routes({})
      end, 60000)
      write(stop, "")
      if swapper then
        swapper:read("*a")
        swapper:close()
      end
      assert(ok, err)
      assert.is_true(tried > 100, "too few reloads tried: " .. tried)
      assert.are.equal(0, outside_applied)
    end)
  end)
end)
