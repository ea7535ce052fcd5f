--- The hub loop's stalls, and why (docs/performance.md, the hub):
--   msrt-lua scripts/bench/stalls.lua [--ms N] SCRIPT [ARGS...]
-- runs SCRIPT (any msrt program, e.g. spec/soak/crash_storm.lua) with a
-- 10 ms luv timer on the hub; a tick later than N ms (default 40) is a
-- stall, printed on stderr with what the hub did meanwhile:
--   stall   how late the tick was (ms), and when (s since the start)
--   hub     the hub thread's CPU time in the window (user + sys, ms;
--           CLOCK_THREAD_CPUTIME_ID) and its context switches
--           (getrusage RUSAGE_THREAD): involuntary ones with little CPU
--           mean the hub was runnable and not scheduled (the machine's
--           other work), CPU near the window's length means its own work
--   threads each thread of the process that ran in the window (ms, from
--           /proc/self/task/*/stat: 10 ms ticks) and its state then
--   lua     the hub's Lua stacks sampled every 1 ms (LuaJIT's jit.profile)
--           in the window, the most frequent first (vmstate N native, I
--           interpreted, C in a C function, G garbage collector, J JIT)
-- At exit, a summary line: ticks, stalls, and the stalls' hub CPU
-- against their length.
-- A caution: the profiler's timer thread updates the VM's dispatch table
-- itself, which races with the hub doing the same (a trace starting or
-- ending), and LuaJIT 2.1 as Debian 12 packages it has that race: the
-- VM can then loop for good in its dispatch with no Lua running and no
-- sample taken. The crash storm under this tracer did so 3 times in 41
-- runs (2026-12-05); never without it. A run that ends no stall report
-- for seconds and keeps a CPU busy is that: kill it and run again.
local uv = require "luv"
local ffi = require "ffi"
local profile = require "jit.profile"

local LIMIT = 40
if arg[1] == "--ms" then
  LIMIT = assert(tonumber(arg[2]), "--ms takes a number")
  table.remove(arg, 1) table.remove(arg, 1)
end
local script = table.remove(arg, 1)
if not script then
  io.stderr:write("usage: msrt-lua scripts/bench/stalls.lua [--ms N] SCRIPT [ARGS...]\n")
  os.exit(2)
end

ffi.cdef [[
typedef struct { long tv_sec, tv_nsec; } stalls_timespec;
typedef struct { long tv_sec, tv_usec; } stalls_timeval;
typedef struct {
  stalls_timeval ru_utime, ru_stime;
  long ru_maxrss, ru_ixrss, ru_idrss, ru_isrss, ru_minflt, ru_majflt, ru_nswap,
    ru_inblock, ru_oublock, ru_msgsnd, ru_msgrcv, ru_nsignals, ru_nvcsw, ru_nivcsw;
} stalls_rusage;
int clock_gettime(int clk, stalls_timespec *ts);
int getrusage(int who, stalls_rusage *ru);
]]
local CLOCK_THREAD_CPUTIME_ID, RUSAGE_THREAD = 3, 1 -- Linux's values
local ts, ru = ffi.new("stalls_timespec"), ffi.new("stalls_rusage")

-- The hub thread's CPU ms, voluntary and involuntary switches.
local function hub_now()
  ffi.C.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts)
  ffi.C.getrusage(RUSAGE_THREAD, ru)
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6, tonumber(ru.ru_nvcsw), tonumber(ru.ru_nivcsw)
end

-- Each thread's name, state and CPU ticks (utime + stime, fields 14-15).
local function threads()
  local out = {}
  local dir = uv.fs_scandir("/proc/self/task")
  for tid in uv.fs_scandir_next, dir do
    local f = io.open("/proc/self/task/" .. tid .. "/stat")
    if f then
      local line = f:read("*l")
      f:close()
      local comm, rest = line:match("^%d+ %((.-)%) (.*)$")
      local fields = {}
      for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
      out[tid] = { comm = comm, state = fields[1], ticks = tonumber(fields[12]) + tonumber(fields[13]) }
    end
  end
  return out
end

-- The last RING Lua samples: {time ns, vmstate, stack}.
local RING, ring, nsamples = 8192, {}, 0
profile.start("i1", function(th, _, vmstate)
  nsamples = nsamples + 1
  ring[nsamples % RING] = { uv.hrtime(), vmstate, profile.dumpstack(th, "F;", -8) }
end)

local function lua_in(from_ns)
  local count, keys = {}, {}
  for i = nsamples, math.max(1, nsamples - RING + 1), -1 do
    local s = ring[i % RING]
    if s[1] < from_ns then break end
    local k = s[2] .. " " .. s[3]
    if not count[k] then keys[#keys + 1] = k end
    count[k] = (count[k] or 0) + 1
  end
  table.sort(keys, function(a, b) return count[a] > count[b] end)
  local out = {}
  for i = 1, math.min(5, #keys) do out[i] = ("    %d %s"):format(count[keys[i]], keys[i]) end
  return out
end

local PERIOD = 10
local ticks, nstalls, stall_ms, stall_cpu = 0, 0, 0, 0
local t_start, last = uv.hrtime(), uv.hrtime()
local cpu0, vol0, inv0 = hub_now()
local th0 = threads()
local timer = uv.new_timer()
timer:start(PERIOD, PERIOD, function()
  local now = uv.hrtime()
  local late = (now - last) / 1e6 - PERIOD
  local cpu, vol, inv = hub_now()
  local th = threads()
  ticks = ticks + 1
  if late > LIMIT then
    nstalls, stall_ms, stall_cpu = nstalls + 1, stall_ms + late + PERIOD, stall_cpu + cpu - cpu0
    local ran = {}
    for tid, t in pairs(th) do
      local d = (t.ticks - (th0[tid] and th0[tid].ticks or t.ticks)) * 10
      if d > 0 or t.state == "R" then ran[#ran + 1] = ("%s %d ms %s"):format(t.comm, d, t.state) end
    end
    io.stderr:write(("stall %.0f ms at %.1f s\n  hub %.1f ms CPU in %.0f ms; switches %d voluntary, %d involuntary\n"
      .. "  threads: %s\n  lua:\n%s\n"):format(late, (now - t_start) / 1e9, cpu - cpu0, late + PERIOD,
      vol - vol0, inv - inv0, table.concat(ran, ", "), table.concat(lua_in(last), "\n")))
  end
  last, cpu0, vol0, inv0, th0 = now, cpu, vol, inv, th
end)
timer:unref()

-- The summary, once, at exit: os.exit (which does not close the state)
-- or the state's close.
local said = false
local function summary()
  if said then return end
  said = true
  io.stderr:write(("stalls: %d ticks, %d stalls over %d ms (%.0f ms in all, the hub's CPU %.0f ms of it)\n")
    :format(ticks, nstalls, LIMIT, stall_ms, stall_cpu))
end
local exit = os.exit
os.exit = function(...) summary() return exit(...) end
local guard = newproxy(true)
getmetatable(guard).__gc = summary
_G.__stalls_guard = guard

arg[0] = script
dofile(script)
