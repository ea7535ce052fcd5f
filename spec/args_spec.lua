-- Wrong argument types raise at the caller's file:line (README "The Lua
-- API"), for every public function, however deep inside msrt the check
-- is made; data a message cannot carry is named with where it sits.
local S = require "spec.support"
local msrt = require "msrt"

-- f() must raise, at the line of this call (f is written on it), with a
-- message matching pattern.
local function raises_here(f, pattern)
  local line = debug.getinfo(2, "l").currentline
  local ok, err = pcall(f)
  assert.is_false(ok, "did not raise")
  err = tostring(err)
  assert.matches(("^[^\n]*args_spec%%.lua:%d: "):format(line), err, nil, "raised elsewhere: " .. err)
  assert.matches(pattern, err)
end

describe("argument errors", function()
  it("msrt.* raise at the caller's line", function()
    raises_here(function() msrt.publish(42, "x") end, "bad argument #1 to 'publish' %(subject string expected, got number%)")
    raises_here(function() msrt.publish("x", 1, 5) end, "bad argument #3 to 'publish'")
    raises_here(function() msrt.request(nil, "x") end, "bad argument #1 to 'request' %(subject string expected, got nil%)")
    raises_here(function() msrt.request("x", 1, "o") end, "bad argument #3 to 'request'")
    raises_here(function() msrt.subscribe(1, print) end, "bad argument #1 to 'subscribe'")
    raises_here(function() msrt.subscribe("x", 1) end, "bad argument #2 to 'subscribe' %(function expected%)")
    raises_here(function() msrt.actor(1) end, "bad argument #1 to 'actor'")
    raises_here(function() msrt.process(1) end, "bad argument #1 to 'process'")
    raises_here(function() msrt.supervisor(1) end, "bad argument #1 to 'supervisor'")
    raises_here(function() msrt.routes(1) end, "bad argument #1 to 'routes'")
    raises_here(function() msrt.watch(1) end, "bad argument #1 to 'watch'")
    raises_here(function() msrt.reload(1) end, "bad argument #1 to 'reload'")
    raises_here(function() msrt.log("loud") end, "bad argument #1 to 'log'")
    raises_here(function() msrt.after("x", print) end, "bad argument #1 to 'after'")
    raises_here(function() msrt.every(0, print) end, "bad argument #1 to 'every'")
    raises_here(function() msrt.on_shutdown(1) end, "bad argument #1 to 'on_shutdown'")
    raises_here(function() msrt.stop(1) end, "bad argument #1 to 'stop'")
    raises_here(function() msrt.start(1) end, "bad argument #1 to 'start'")
  end)

  it("data a message cannot carry is named with where it sits", function()
    raises_here(function() msrt.publish("x", { handler = print }) end,
      "bad argument #2 to 'publish' %(data%.handler: function cannot be sent")
    raises_here(function() msrt.publish("x", { list = { 1, 2, coroutine.create(print) } }) end,
      "data%.list%[3%]: thread cannot be sent")
    raises_here(function() msrt.publish("x", { ["a b"] = { f = print } }) end, 'data%["a b"%]%.f: function')
    raises_here(function() msrt.publish("x", print) end, "data: function cannot be sent")
    assert.is_true(msrt.publish("nobody.listens", { null = msrt.null, n = 1, s = "s", t = { true } }))
  end)

  it("an actor's ctx:publish names what cannot be sent, at the actor's line", function()
    S.drive(function()
      local said = S.collector("args.said")
      local line = debug.getinfo(1, "l").currentline + 3
      assert(S.spawn{ name = "args_pub", subscribe = "args.go", handle = function(ctx)
        local _, err = pcall(function()
          ctx:publish("args.x", { list = { print } })
        end)
        ctx:publish("args.said", err)
        ctx:stop()
      end })
      assert(msrt.publish("args.go", 1))
      assert.is_true(said.wait(1))
      assert.matches(("args_spec%%.lua:%d: bad argument #2 to 'publish' %%(data%%.list%%[1%%]: function cannot be sent"):format(line),
        said.msgs[1].data)
      said.close()
    end)
  end)

  -- (the messages come from lua/msrt/actor_ctx.lua, loaded at the first one)
  it("an actor's ctx:publish raises a bad subject, reply or priority type at the actor's line", function()
    S.drive(function()
      local said = S.collector("args.said2")
      local line = debug.getinfo(1, "l").currentline + 3
      assert(S.spawn{ name = "args_pub2", subscribe = "args.go2", handle = function(ctx)
        local out = {}
        for i, call in ipairs({ function() local r = ctx:publish(42) return r end,
                                function() local r = ctx:publish("a", 1, { reply = 7 }) return r end,
                                function() local r = ctx:publish("a", 1, { priority = "high" }) return r end }) do
          local ok, e = pcall(function() local r = call() return r end)
          out[i] = ok and "no error" or e
        end
        local r, e = ctx:publish("a", 1, { priority = 11 })
        out[4] = tostring(r) .. " " .. e.code .. " " .. e.message
        ctx:publish("args.said2", out)
        ctx:stop()
      end })
      assert(msrt.publish("args.go2", 1))
      assert.is_true(said.wait(1))
      local out = said.msgs[1].data
      assert.matches(("args_spec%%.lua:%d: bad argument #1 to 'publish' %%(subject string expected, got number%%)"):format(line), out[1])
      assert.matches(("args_spec%%.lua:%d: bad argument #3 to 'publish' %%(reply must be a subject string%%)"):format(line + 1), out[2])
      assert.matches(("args_spec%%.lua:%d: bad argument #3 to 'publish' %%(priority must be a number 1..10%%)"):format(line + 2), out[3])
      assert.are.equal("nil invalid_arg priority must be an integer 1..10 (got 11)", out[4])
      said.close()
    end)
  end)

  it("handles' methods raise at the caller's line", function()
    S.drive(function()
      local p = assert(msrt.process{ name = "args_cat", cmd = { "cat" } })
      raises_here(function() p:send({ f = print }) end, "bad argument #1 to 'send' %(data%.f: function cannot be sent")
      raises_here(function() p:signal(9) end, "bad argument #1 to 'signal'")
      raises_here(function() p:stop("soon") end, "bad argument #1 to 'stop'")
      raises_here(function() p:on_exit(1) end, "bad argument #1 to 'on_exit' %(function expected%)")
      p:stop()
      p:wait()
      local a = assert(S.spawn{ name = "args_a", handle = function() end })
      raises_here(function() a:stop(1) end, "bad argument #1 to 'stop'")
      raises_here(function() a:on_exit(1) end, "bad argument #1 to 'on_exit'")
      a:stop()
      a:wait()
      local sup = assert(msrt.supervisor{ name = "args_sup", children = {} })
      raises_here(function() sup:start_child(1) end, "bad argument #1 to 'start_child' %(child spec table expected%)")
      raises_here(function() sup:terminate_child(1) end, "bad argument #1 to 'terminate_child'")
      raises_here(function() sup:restart_child(false) end, "bad argument #1 to 'restart_child'")
      raises_here(function() sup:delete_child() end, "bad argument #1 to 'delete_child'")
      raises_here(function() sup:update(1) end, "bad argument #1 to 'update'")
      raises_here(function() sup:on_exit(1) end, "bad argument #1 to 'on_exit'")
      raises_here(function() sup:stop(1) end, "bad argument #1 to 'stop'")
      sup:stop()
      sup:wait()
    end)
  end)
end)
