--- The time this thread's CPU was taken from it (docs/performance.md,
-- "The stall was chrt's"):
--   luajit scripts/bench/gaps.lua [SECONDS]     (default 10)
-- reads CLOCK_MONOTONIC in a loop for SECONDS and prints every gap
-- between two reads over 1 ms (when, in s from the start, and how long,
-- in ms), then a summary line: the gaps, how many of them 40 ms or
-- more, the longest. Nothing else runs in the loop, so a gap is time the
-- thread was not running: the kernel's other work, the hypervisor's, or
-- real-time throttling (a thread under `chrt -f|-r` that keeps its CPU
-- busy is stopped for the rest of each sched_rt_period_us once it has
-- run sched_rt_runtime_us: 50 ms of each second by default). Run one on
-- each vCPU at once to see both:
--   taskset -c 0 luajit scripts/bench/gaps.lua & taskset -c 1 luajit scripts/bench/gaps.lua
-- Plain LuaJIT: it needs no msrt and loads none (common.lua's clock is
-- plain FFI).
local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local now = loadstring(B.CLOCK)() -- CLOCK_MONOTONIC, seconds
local GAP_S, LONG_MS = 1e-3, 40

local secs = tonumber(arg[1] or 10)
if not secs or secs <= 0 then
  io.stderr:write("usage: luajit scripts/bench/gaps.lua [SECONDS > 0]\n")
  os.exit(2)
end
local start = now()
local last, stop = start, start + secs
local gaps = {}
while last < stop do
  local t = now()
  if t - last > GAP_S then gaps[#gaps + 1] = { at = last - start, ms = (t - last) * 1e3 } end
  last = t
end
local long, max = 0, 0
for _, g in ipairs(gaps) do
  print(("gap at %.3f s: %.1f ms"):format(g.at, g.ms))
  if g.ms >= LONG_MS then long = long + 1 end
  if g.ms > max then max = g.ms end
end
print(("%d gaps over 1 ms in %g s, %d of them %d ms or more, the longest %.1f ms")
  :format(#gaps, secs, long, LONG_MS, max))
