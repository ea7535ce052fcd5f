-- Out of memory is an error, not a panic: a script that makes actors until
-- memory runs out gets nil, err (resource_exhausted) from msrt.actor, and
-- the host keeps its other actors. Before, the first state that could not
-- be made ended the whole host (LuaJIT's panic: exit status 1, or a crash
-- inside lua_newstate). The memory is capped with RLIMIT_AS on a child
-- msrt-lua, so the spec takes a second, not 24 GiB.
local S = require "spec.support"

local LIMIT_KIB = 400000

local SCRIPT = [[
local msrt = require "msrt"
msrt.after(0, function()
  local keep = assert(msrt.actor{ name = "keeper", subscribe = "keep",
    handle = function(ctx, msg) ctx:reply(msg, msg.data + 1) end })
  assert(msrt.request("keep", 1) == 2)
  local hogs, err = {}
  while true do
    local h, e = msrt.actor{ name = "hog", handle = function() end }
    if not h then err = e break end
    hogs[#hogs + 1] = h
  end
  print("made " .. #hogs)
  print("error " .. tostring(err.code) .. " " .. tostring(err.message))
  for _, h in ipairs(hogs) do h:stop("shutdown") end
  for _, h in ipairs(hogs) do h:wait() end
  hogs = nil
  collectgarbage()
  print("keeper " .. tostring(msrt.request("keep", 41, { timeout_ms = 20000 })))
  msrt.stop()
end)
]]

local function run_capped(script_path)
  local cmd = ("ulimit -v %d && exec %s %s"):format(LIMIT_KIB, S.quote(S.exe), S.quote(script_path))
  return S.run({ "-e", ("os.exit(os.execute(%q) == 0 and 0 or 1)"):format(cmd) })
end

describe("out of memory", function()
  it("making actors until memory runs out returns resource_exhausted; the host goes on", function()
    local probe = S.file('print("up")')
    local up = S.run({ "-e", ("os.exit(os.execute(%q) == 0 and 0 or 1)"):format(
      ("ulimit -v %d && exec %s %s >/dev/null 2>&1"):format(LIMIT_KIB, S.quote(S.exe), S.quote(probe))) })
    os.remove(probe)
    if up.code ~= 0 then
      -- a sanitizer build reserves terabytes of address space at start
      pending("msrt-lua cannot start under RLIMIT_AS " .. LIMIT_KIB .. " KiB here (sanitizer build)")
      return
    end
    local path = S.file(SCRIPT)
    local r = run_capped(path)
    os.remove(path)
    assert.are.equal(0, r.code, r.out .. r.err)
    local made = tonumber(r.out:match("made (%d+)"))
    assert.is_true(made and made > 100, r.out)
    assert.matches("error resource_exhausted actor hog: out of memory", r.out, 1, true)
    assert.matches("keeper 42", r.out, 1, true)
  end)
end)
