--- Health-check benchmark (docs/performance.md): probe overhead on the hub.
--   msrt-lua scripts/bench/health.lua [--children N] [--interval N] [--seconds N]
-- A supervisor keeps N idle actor children; one "beater" actor publishes a
-- heartbeat on each child's subject every interval ms (one ctx:every for
-- all, so the senders cost the same in both phases). Phase A: no probes.
-- Phase B: the same tree with a liveness heartbeat probe per child at that
-- interval (the hub receives every heartbeat and runs every probe). For
-- each phase the hub thread's CPU time (getrusage RUSAGE_THREAD on the hub,
-- which runs this script) and the process's (RUSAGE_SELF) over --seconds,
-- as % of one core. Target (docs/performance.md): 1,000 children at 100 ms, the
-- probes' hub CPU (B - A) < 5% of one core.
local msrt = require "msrt"
local ffi = require "ffi"
io.stdout:setvbuf("line")

local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ children = 1000, interval = 100, seconds = 5 },
  "health.lua [--children N] [--interval N] [--seconds N]")

ffi.cdef [[
  typedef struct { long tv_sec, tv_usec; } msrt_tv;
  typedef struct { msrt_tv ru_utime, ru_stime; long rest[14]; } msrt_rusage;
  int getrusage(int who, msrt_rusage *usage);
]]
local RUSAGE_SELF, RUSAGE_THREAD = 0, 1

local function cpu_s(who)
  local ru = ffi.new("msrt_rusage")
  assert(ffi.C.getrusage(who, ru) == 0)
  local function s(tv) return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) * 1e-6 end
  return s(ru.ru_utime) + s(ru.ru_stime)
end

local function sleep(ms)
  local co = coroutine.running()
  msrt.after(ms, function() assert(coroutine.resume(co)) end)
  coroutine.yield()
end

-- Hub and process CPU (% of one core) over opts.seconds.
local function measure()
  local uv = require "luv"
  local h0, p0, t0 = cpu_s(RUSAGE_THREAD), cpu_s(RUSAGE_SELF), uv.hrtime()
  sleep(opts.seconds * 1000)
  local wall = (uv.hrtime() - t0) / 1e9
  return (cpu_s(RUSAGE_THREAD) - h0) / wall * 100, (cpu_s(RUSAGE_SELF) - p0) / wall * 100
end

local function tree(name, probes)
  local children = {}
  for i = 1, opts.children do
    children[i] = { id = "c" .. i, actor = { handle = function() end },
      health = probes and { liveness = { heartbeat = "hb.c" .. i, interval_ms = opts.interval } } or nil }
  end
  return assert(msrt.supervisor{ name = name, children = children })
end

local function phase(name, probes)
  local sup = tree(name, probes)
  sleep(2 * opts.interval + 200) -- every probe past its first window
  local hub, proc = measure()
  local states = {}
  for _, rec in pairs(msrt.metrics().health) do states[rec.state] = (states[rec.state] or 0) + 1 end
  sup:stop()
  sup:wait()
  return hub, proc, states
end

B.header(("%d children, heartbeats every %d ms, %d s per phase"):format(opts.children, opts.interval, opts.seconds))
local beater = assert(msrt.actor{ name = "beater", args = { n = opts.children, every = opts.interval },
  init = function(ctx, a)
    ctx:every(a.every, function()
      for i = 1, a.n do ctx:publish("hb.c" .. i, true) end
    end)
  end, handle = function() end })
local ha, pa = phase("bench_a", false)
local hb, pb, states = phase("bench_b", true)
beater:stop()
local st = {}
for k, v in pairs(states) do st[#st + 1] = k .. " " .. v end
print(("A, no probes:        hub %.2f%% of a core, process %.1f%%"):format(ha, pa))
print(("B, heartbeat probes: hub %.2f%% of a core, process %.1f%% (children: %s)"):format(hb, pb, table.concat(st, ", ")))
print(("probe overhead on the hub (B - A): %.2f%% of one core (target < 5%%)"):format(hb - ha))
msrt.stop()
