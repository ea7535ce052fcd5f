-- msrt.request and ctx:request where the caller cannot yield (README
-- "Messages"): inside a C function's callback (table.sort's comparator, a
-- gsub callback) a yield fails, so the call is refused up front with an
-- error at the caller's line, and no request is left behind.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())

describe("a request where the caller cannot yield", function()
  it("raises at the caller's line inside table.sort and gsub callbacks; the host goes on", function()
    local path = S.file([[
local msrt = require "msrt"
msrt.subscribe("svc", function(m) msrt.publish(m.reply, m.data * 2) end)
local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
  local r = msrt.request("svc", a) -- line 4
  return a < b
end)
print("sort", ok, err)
ok, err = pcall(string.gsub, "abc", "%w", function(c)
  local r = msrt.request("svc", 1) -- line 9
  return c
end)
print("gsub", ok, err)
-- LuaJIT yields across metamethods: a request there works
local t = setmetatable({}, { __index = function(_, k) return (msrt.request("svc", k)) end })
print("index", t[21])
print("after", (msrt.request("svc", 5, { timeout_ms = 10000 })))
local h = msrt.actor { name = "w", handle = function() end }
ok, err = pcall(table.sort, { 1, 2 }, function() h:wait() return false end) -- line 18
print("wait", ok, err)
h:stop()
h:wait()
]])
    local r = S.run({ path }, { limit_s = 60 })
    os.remove(path)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.err)
    local name = path:match("[^/]+$")
    local msg = "msrt%.request cannot wait here: it is called inside a C function's callback"
    assert.matches("sort\tfalse\t[^\n]*" .. name:gsub("%p", "%%%0") .. ":4: " .. msg, r.out)
    assert.matches("gsub\tfalse\t[^\n]*" .. name:gsub("%p", "%%%0") .. ":9: " .. msg, r.out)
    assert.matches("index\t42", r.out, 1, true)
    assert.matches("after\t10", r.out, 1, true)
    assert.matches("wait\tfalse\t[^\n]*" .. name:gsub("%p", "%%%0") .. ":18: handle:wait%(%) cannot wait here", r.out)
  end)

  it("refuses an actor's ctx:request inside table.sort's comparator; the actor goes on", function()
    S.drive(function()
      local out = S.collector("rw.out")
      local svc = assert(msrt.subscribe("rw.svc", function(m) msrt.publish(m.reply, m.data + 1) end))
      assert(S.spawn { name = "rw", subscribe = "rw.go",
        handle = function(ctx)
          local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
            ctx:request("rw.svc", a)
            return a < b
          end)
          ctx:publish("rw.out", tostring(ok) .. " " .. tostring(err))
          ctx:publish("rw.out", (ctx:request("rw.svc", 1, { timeout_ms = 10000 })))
        end })
      assert(msrt.publish("rw.go", true))
      assert.is_true(out.wait(2))
      assert.matches("^false .*ctx:request cannot wait here", out.msgs[1].data)
      assert.are.equal(2, out.msgs[2].data)
      out.close()
      svc.unsubscribe()
    end)
  end)
end)
