-- The spec driver itself (spec/support.lua, S.drive): a failing body is
-- reported with its error, quickly, and leaves nothing open for the next
-- spec; an error in a hub callback fails the spec it happened in. Each
-- case drives a deliberately failing body under pcall and checks what
-- S.drive raised and what it left.
local S = require "spec.support"
local msrt = require "msrt"
local uv = require "luv"

-- pcall(S.drive, body, limit_ms) with short wind-down bounds; returns
-- ok, err and the wall-clock ms it took.
local function drive(body, limit_ms)
  local saved = S.bounds
  -- (stop_ms: the wind-down moves on as soon as the runtime is quiet;
  -- 5 s leave room for a loaded machine under ThreadSanitizer)
  S.bounds = { settle_ms = 300, stop_ms = 5000, close_ms = 500 }
  local t0 = uv.hrtime()
  local ok, err = pcall(S.drive, body, limit_ms)
  S.bounds = saved
  return ok, tostring(err), (uv.hrtime() - t0) / 1e6
end

-- After a failed drive: nothing it opened is open, no actor, process or
-- supervisor is left, and a next drive runs normally.
local function clean()
  assert.are.equal(0, S.open_handles())
  assert.are.equal(0, msrt.metrics().actors or 0)
  assert.are.equal(0, require("msrt.process").count())
  assert.are.equal(0, require("msrt.supervisor").count())
  local ran = false
  S.drive(function() S.sleep(1) ran = true end)
  assert.is_true(ran)
end

describe("S.drive", function()
  it("reports a failing assertion after closing the timer the body left running", function()
    local ticks = 0
    local ok, err = drive(function()
      local t = msrt.every(5, function() ticks = ticks + 1 end)
      S.wait_until(function() return ticks >= 2 end)
      assert.are.equal(1, 2)
      t.stop()
    end)
    assert.is_false(ok)
    assert.matches("Expected objects to be equal", err)
    assert.matches("support_spec.lua:%d+", err) -- the assertion's line
    clean()
  end)

  it("reports a failing assertion after closing a listening server and a connection", function()
    local ok, err = drive(function()
      local server = uv.new_tcp()
      assert(server:bind("127.0.0.1", 0))
      assert(server:listen(8, function() server:accept(uv.new_tcp()) end))
      local client = uv.new_tcp()
      local co = coroutine.running()
      client:connect("127.0.0.1", server:getsockname().port, function() coroutine.resume(co) end)
      coroutine.yield()
      error("deliberate failure with a server open")
    end)
    assert.is_false(ok)
    assert.matches("deliberate failure with a server open", err)
    clean()
  end)

  it("fails the spec when an msrt.after callback raises, with the error and its traceback", function()
    local ok, err = drive(function()
      local co = coroutine.running()
      msrt.after(1, function() assert.are.equal("x", "y") end)
      -- the body itself waits for something only the failed callback would do
      msrt.after(60000, function() coroutine.resume(co) end)
      coroutine.yield()
    end)
    assert.is_false(ok)
    assert.matches("error in callback", err)
    assert.matches("Expected objects to be equal", err)
    assert.matches("stack traceback", err)
    assert.matches("support_spec.lua:%d+", err)
    clean()
  end)

  it("fails the spec when an msrt.subscribe callback raises although the body finished", function()
    local ok, err = drive(function()
      local done = false
      local sub = assert(msrt.subscribe("spec.support.boom", function()
        done = true
        error("raised in a subscription")
      end))
      assert(msrt.publish("spec.support.boom", 1))
      S.wait_until(function() return done end)
      sub:unsubscribe()
    end)
    assert.is_false(ok)
    assert.matches("raised in a subscription", err)
    clean()
  end)

  it("stops the body at its time limit and closes what it waits on", function()
    local ok, err, ms = drive(function()
      S.sleep(60000)
    end, 100)
    assert.is_false(ok)
    assert.matches("did not finish within 100 ms", err)
    assert.is_true(ms < 100 + 5000 + 500 + 5000, "took " .. ms .. " ms") -- limit + stop + close, with room
    clean()
  end)

  it("fails a body that finished but left a timer running, naming it", function()
    local ok, err = drive(function()
      msrt.every(10, function() end)
    end)
    assert.is_false(ok)
    assert.matches("still open 300 ms after the body finished: timer", err)
    clean()
  end)

  it("stops the actors, processes and supervisors a failing body started", function()
    local ok, err = drive(function()
      assert(S.spawn({ name = "spec_support_a", handle = function() end }))
      assert(msrt.actor({ name = "spec_support_b", handle = function() end }))
      assert(msrt.process({ name = "spec_support_p", cmd = { "/bin/sh", "-c", "sleep 60" } }))
      assert(msrt.supervisor({ name = "spec_support_s", children = {
        { id = "c", process = { name = "spec_support_c", cmd = { "/bin/sh", "-c", "sleep 60" } } },
      } }))
      S.wait_until(function() return require("msrt.supervisor").count() == 1 end)
      error("deliberate failure with workers running")
    end)
    assert.is_false(ok)
    assert.matches("deliberate failure with workers running", err)
    clean()
  end)
end)
