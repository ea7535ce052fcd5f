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
