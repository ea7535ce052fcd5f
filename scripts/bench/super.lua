--- Supervisor benchmark (docs/performance.md): restart latency of a Lua actor child.
--   msrt-lua [--profile P] scripts/bench/super.lua [--restarts N] [--runs N]
-- A one_for_one supervisor keeps one permanent actor child. The child is
-- told to crash; just before it raises it publishes its clock; the new
-- instance publishes its clock from init. Latency = init time - crash time
-- (CLOCK_MONOTONIC in both actor states): the exit travelling to the hub,
-- the strategy, the checks in C, a new actor state built on a worker and
-- its init running. Prints p50/p99 in ms, each the median of --runs runs.
-- Target (docs/performance.md): p50 <= 0.2 ms. Then a process child (restarts / 10
-- of them): SIGKILL from the hub to the new instance's first stdout line
-- on the hub (target p50 <= 1.5 ms, p99 <= 5 ms).
local msrt = require "msrt"
io.stdout:setvbuf("line")

local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ restarts = 2000, runs = 3 }, "super.lua [--restarts N] [--runs N]")

local CLOCK = B.CLOCK -- actors load it with loadstring (no upvalues)

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

-- One run for a process child: the hub kills it (SIGKILL) and waits for
-- the new instance's first stdout line; both times on the hub's clock, so
-- this includes the kill, the reaping, a fork+exec of /bin/sh and a pipe.
local function run_process(run, n)
  local name = "pbench" .. run
  local co = coroutine.running()
  local lat, t_kill = {}, nil
  local sup
  local function kill()
    t_kill = require("msrt.core").now_ms()
    sup:which_children()[1].handle:signal("KILL")
  end
  local s = assert(msrt.subscribe("agents." .. name .. ".out", function()
    if t_kill then lat[#lat + 1] = require("msrt.core").now_ms() - t_kill end
    if #lat >= n then return assert(coroutine.resume(co)) end
    msrt.after(0, kill)
  end))
  sup = assert(msrt.supervisor{ name = name, intensity = n + 10, period_ms = 60000, children = {
    { id = "child", process = { name = name, cmd = { "/bin/sh", "-c", "echo '{}'; exec sleep 1000" } } } } })
  coroutine.yield()
  sup:stop()
  sup:wait()
  s.unsubscribe()
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
p50s, p99s = {}, {}
local np = math.max(1, math.floor(opts.restarts / 10))
for run = 1, opts.runs do
  local lat = run_process(run, np)
  p50s[run] = B.quantile(lat, 0.5)
  p99s[run] = B.quantile(lat, 0.99)
end
print(("process child restart (SIGKILL to the new instance's first line), %d restarts x %d runs: p50 %.3f ms, p99 %.3f ms")
  :format(np, opts.runs, B.median(p50s), B.median(p99s)))
