-- A process's stdin through p:send and p:close_stdin (README "Processes"):
-- every line accepted is written before the EOF, or counted as dropped;
-- a send is bounded as a published message is. Real children: wc -c and
-- cat.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())
local MAX_PAYLOAD = msrt.profile().max_payload

-- S.drive, stopping every child the body spawned when it ends (a failing
-- body leaves none running).
local children = {}
local function drive(body)
  children = {}
  S.drive(function()
    local ok, err = xpcall(body, debug.traceback)
    for _, p in ipairs(children) do
      p:stop(0)
      p:wait()
    end
    if not ok then error(err, 0) end
  end, 120000)
end

-- Line i of a case: size bytes of one letter (the letter tells the order).
local function line(i, size) return string.rep(string.char(97 + i % 26), size) end

-- The child's stdout lines (codec lines) as they are published.
local function outputs(name)
  local got = { lines = {}, bytes = 0 }
  got.sub = assert(msrt.subscribe("agents." .. name .. ".out", function(m)
    got.lines[#got.lines + 1] = m.data
    got.bytes = got.bytes + #m.data
  end))
  return got
end

-- Published output reaches the hub after the exit record may: a marker
-- published now arrives after everything published before it.
local function settle()
  local c = S.collector("spec.stdin.settle")
  assert(msrt.publish("spec.stdin.settle", true))
  assert(c.wait(1))
  c.close()
end

local function child(name, script, extra)
  local spec = { name = name, cmd = { "/bin/sh", "-c", script }, codec = "lines" }
  for k, v in pairs(extra or {}) do spec[k] = v end
  local p = assert(msrt.process(spec))
  children[#children + 1] = p
  return p
end

-- The biggest line p:send takes: max_payload less the encoding's header.
local BIG = MAX_PAYLOAD - 16

describe("p:close_stdin", function()
  local grid = { { 1, 1 }, { 10000, 1 }, { 100, 1000 }, { 100, 70000 }, { 3, BIG } }
  for _, case in ipairs(grid) do
    local n, size = case[1], case[2]
    it(("writes all %d lines of %d bytes before the EOF (wc -c and cat)"):format(n, size), function()
      drive(function()
        local wc_out, cat_out = outputs("stdin_wc"), outputs("stdin_cat")
        -- block: a sender waits for room instead of losing lines
        local wc = child("stdin_wc", "exec wc -c", { overflow = "block", capacity = 64 })
        local cat = child("stdin_cat", "exec cat", { overflow = "block", capacity = 64 })
        for i = 1, n do
          local l = line(i, size)
          assert(wc:send(l))
          assert(cat:send(l))
        end
        wc:close_stdin()
        cat:close_stdin()
        local _, err = wc:send("late")
        assert.are.equal("closed", err.code)
        assert.are.equal(0, wc:wait().code)
        assert.are.equal(0, cat:wait().code)
        settle()
        assert.are.same({ tostring(n * (size + 1)) }, { (wc_out.lines[1] or ""):match("%d+") })
        assert.are.equal(n, #cat_out.lines)
        assert.are.equal(n * size, cat_out.bytes)
        for i = 1, n do
          if cat_out.lines[i] ~= line(i, size) then error(("cat's line %d differs"):format(i)) end
        end
        assert.are.equal(n, wc:stats().stdin_lines)
        assert.are.equal(0, wc:stats().stdin_dropped)
        wc_out.sub.unsubscribe()
        cat_out.sub.unsubscribe()
      end)
    end)
  end

  it("counts the lines a stop leaves unwritten as dropped", function()
    drive(function()
      -- never reads: the pipe takes 64 KiB, the rest waits in the queue
      local p = child("stdin_deaf", "exec sleep 1000")
      for i = 1, 20 do assert(p:send(line(i, 70000))) end
      p:stop(0)
      p:wait()
      local st = p:stats()
      assert.are.equal(20, st.stdin_lines + st.stdin_dropped)
      assert.is_true(st.stdin_dropped > 0)
    end)
  end)
end)

describe("p:send", function()
  it("refuses data over max_payload with payload_too_big and sends nothing", function()
    drive(function()
      local out = outputs("stdin_big")
      local p = child("stdin_big", "exec wc -c")
      local ok, err = p:send(string.rep("q", 2e7))
      assert.is_nil(ok)
      assert.are.equal("payload_too_big", err.code)
      assert.matches("max_payload", err.message)
      ok, err = p:send(string.rep("q", MAX_PAYLOAD + 1))
      assert.are.equal("payload_too_big", err.code)
      assert(p:send("x"))
      p:close_stdin()
      p:wait()
      settle()
      assert.are.equal("2", out.lines[1]:match("%d+"))
      out.sub.unsubscribe()
    end)
  end)

  it("refuses a line over max_line_bytes, from p:send and from a publish", function()
    drive(function()
      local out = outputs("stdin_line")
      local p = child("stdin_line", "exec wc -c", { max_line_bytes = 1024, subscribe = "spec.stdin.line" })
      local ok, err = p:send(string.rep("q", 1025))
      assert.is_nil(ok)
      assert.are.equal("payload_too_big", err.code)
      assert.matches("max_line_bytes %(1024%)", err.message)
      assert(p:send(string.rep("q", 1024)))
      local before = msrt.metrics().router.drop_other
      assert(msrt.publish("spec.stdin.line", string.rep("q", 1025)))
      assert(S.wait_until(function() return msrt.metrics().router.drop_other > before end))
      p:close_stdin()
      p:wait()
      settle()
      assert.are.equal("1025", out.lines[1]:match("%d+"))
      out.sub.unsubscribe()
    end)
  end)
end)
