--- Supervisor benchmark (issue 6): restart latency of a Lua actor child.
--   msrt-lua [--profile P] scripts/bench/super.lua [--restarts N] [--runs N]
-- A one_for_one supervisor keeps one permanent actor child. The child is
-- told to crash; just before it raises it publishes its clock; the new
-- instance publishes its clock from init. Latency = init time - crash time
-- (CLOCK_MONOTONIC in both actor states): the exit travelling to the hub,
-- the strategy, the checks in C, a new actor state built on a worker and
-- its init running. Prints p50/p99 in ms, each the median of --runs runs.
-- Target (issue 6): p50 <= 0.2 ms.
local msrt = require "msrt"
io.stdout:setvbuf("line")

local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ restarts = 2000, runs = 3 }, "super.lua [--restarts N] [--runs N]")

local CLOCK = [[
  local ffi = require "ffi"
  pcall(ffi.cdef, "typedef struct { long s, ns; } msrt_ts; int clock_gettime(int, msrt_ts *);")
  local ts = ffi.new("msrt_ts")
  return function()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.s) + tonumber(ts.ns) * 1e-9
  end
]]

-- One run: n restarts; returns the latencies in ms.
local function run_once(run, n)
  local name = "bench" .. run
  local co = coroutine.running()
  local lat, t_crash = {}, nil
  local crash_subject = "bench.crash." .. run
  local s1 = assert(msrt.subscribe("bench.down." .. run, function(m) t_crash = m.data end))
  local s2 = assert(msrt.subscribe("bench.up." .. run, function(m)
    if t_crash then lat[#lat + 1] = (m.data - t_crash) * 1000 end
    t_crash = nil
    if #lat >= n then return assert(coroutine.resume(co)) end
    msrt.publish(crash_subject, true)
  end))
  local sup = assert(msrt.supervisor{ name = name, intensity = n + 10, period_ms = 60000, children = {
    { id = "child", actor = { subscribe = crash_subject, args = { clock = CLOCK, run = run },
      init = function(ctx, a)
        ctx.now = loadstring(a.clock)()
        ctx:publish("bench.up." .. a.run, ctx.now())
      end,
      handle = function(ctx)
        ctx:publish("bench.down." .. ctx.args.run, ctx.now())
        error("crash", 0)
      end } } } })
  coroutine.yield()
  sup:stop()
  sup:wait()
  s1.unsubscribe()
  s2.unsubscribe()
  return lat
end

-- The supervisor logs every decision at info: keep the figures readable.
require("msrt.core").set_log_level("error")
B.header()
local p50s, p99s = {}, {}
for run = 1, opts.runs do
  local lat = run_once(run, opts.restarts)
  p50s[run] = B.quantile(lat, 0.5)
  p99s[run] = B.quantile(lat, 0.99)
end
print(("actor child restart (exit to new instance running), %d restarts x %d runs: p50 %.3f ms, p99 %.3f ms")
  :format(opts.restarts, opts.runs, B.median(p50s), B.median(p99s)))
