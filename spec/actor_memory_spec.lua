-- Where actor states' memory comes from (src/core/mem.h, the states'
-- region; src/lua/actor.c, when a growing fleet takes its fresh pages 2 MiB
-- at a time): the region's mapping seen from /proc/self/smaps.
local S = require "spec.support"
local msrt = require "msrt"

msrt.start { profile = { workers = 2 } }

local drive, spawn, collector, wait_until = S.drive, S.spawn, S.collector, S.wait_until

-- The region's Rss (KiB) and whether it is marked for huge pages ("hg")
-- or against them ("nh"); nil when there is no region.
local function region()
  local f = assert(io.open("/proc/self/smaps"))
  local s = f:read("*a")
  f:close()
  local block = s:match("\nSize: +16777216 kB\n.-VmFlags:[^\n]*")
  if not block then return nil end
  local flags = block:match("VmFlags:([^\n]*)") .. " "
  return { rss = tonumber(block:match("\nRss: +(%d+) kB")),
           hg = flags:find(" hg ", 1, true) ~= nil, nh = flags:find(" nh ", 1, true) ~= nil }
end

local function mimalloc()
  local f = assert(io.open("/proc/self/maps"))
  local s = f:read("*a")
  f:close()
  return s:find("libmimalloc", 1, true) ~= nil
end

describe("actor states' memory", function()
  it("is given back when a fleet shrinks", function()
    if not mimalloc() then
      pending("libc's malloc in this build (sanitizers): no states' region")
      return
    end
    drive(function()
      local N = 2000
      local up = collector("t.mem2.up")
      local h = assert(spawn { name = "t_mem2", instances = N,
        init = function(ctx) ctx:publish("t.mem2.up", true) end, handle = function() end })
      assert.is_true(up.wait(N), "the actors did not start")
      local grown = region().rss
      h:stop()
      h:wait()
      -- A state is closed just after its exit reaches the hub, so the hub's
      -- collect at its last exit may come before the last closes: each
      -- look that finds too much ends one more fleet of one (its exit is
      -- the hub's last again), until the closes are done (bounded).
      local left, k = nil, 0
      wait_until(function()
        left = region().rss
        if left < grown * 3 / 4 then return true end
        k = k + 1
        local one = assert(spawn { name = "t_mem3_" .. k, handle = function() end })
        one:stop()
        one:wait()
        return false
      end, 5000)
      assert.is_true(left < grown * 3 / 4, ("the region kept %d of %d KiB"):format(left, grown))
      up.close()
    end)
  end)

  it("comes from the states' region, in huge pages while a fleet grows and not once it shrinks", function()
    if not mimalloc() then
      pending("libc's malloc in this build (sanitizers): no states' region")
      return
    end
    drive(function()
      local N = 300 -- past src/lua/actor.c's BULK_MIN (256)
      local up = collector("t.mem.up")
      local h = assert(spawn { name = "t_mem", instances = N,
        init = function(ctx) ctx:publish("t.mem.up", true) end, handle = function() end })
      assert.is_true(up.wait(N), "the actors did not start")
      local grown = assert(region(), "no states' region mapped")
      assert.is_true(grown.hg, "a growing fleet's region is not marked for huge pages")
      assert.is_true(grown.rss >= N * 16, "the states are not in the region: Rss " .. grown.rss .. " KiB")
      h:stop()
      h:wait()
      -- (the states are closed after their exits reach the hub: bounded wait)
      assert.is_true(wait_until(function() return region().nh end, 5000),
        "a shrunk fleet's region is still open to khugepaged")
      assert.is_false(region().hg)
      up.close()
    end)
  end)
end)
