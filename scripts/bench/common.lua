--- What the Lua benchmarks share: options, the header lines (machine and
-- command), medians. Loaded with dofile from a benchmark's own folder:
--   local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local B = {}

--- Parse `--name value` pairs into opts (a table of defaults: a number
-- default takes numbers); on anything else print usage and exit 2.
function B.options(opts, usage)
  local i = 1
  while arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    local v = arg[i + 1]
    if type(opts[k]) == "number" then v = tonumber(v) end
    if not k or opts[k] == nil or v == nil then
      io.stderr:write("usage: " .. usage .. "\n")
      os.exit(2)
    end
    opts[k] = v
    i = i + 2
  end
  return opts
end

local function cpu_model()
  local f = io.open("/proc/cpuinfo")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return s:match("model name%s*:%s*([^\n]+)") or "?"
end

-- A warning when this process runs under a real-time policy (chrt -f or
-- -r), else nil: Linux lets real-time threads use at most
-- sched_rt_runtime_us of each sched_rt_period_us (950 ms of each second
-- by default), so a worker that keeps its CPU busy stops for 50 ms every
-- second, a slow run in every series (docs/performance.md, "The stall
-- was chrt's"). scripts/bench/peers prints it too.
function B.rt_warning()
  local ffi = require "ffi"
  pcall(ffi.cdef, "int sched_getscheduler(int pid);")
  local policy = ffi.C.sched_getscheduler(0) % 0x40000000 -- less SCHED_RESET_ON_FORK
  if policy ~= 1 and policy ~= 2 then return nil end
  local function read(name)
    local f = io.open("/proc/sys/kernel/" .. name)
    local v = f and f:read("*l") or "?"
    if f then f:close() end
    return v
  end
  return ("warning: running under %s: real-time threads get %s us of each %s us, so a busy one stops for the rest; run without chrt for steady series")
    :format(policy == 1 and "SCHED_FIFO" or "SCHED_RR", read("sched_rt_runtime_us"), read("sched_rt_period_us"))
end

--- Print the machine (CPU model, cpus, the profile in force and `extra`),
-- the command that reproduces the run, and a warning when it runs under
-- a real-time policy.
function B.header(extra)
  local p = require("msrt").profile()
  print(("machine: %s, %d cpus; profile %s: %d workers%s"):format(cpu_model(),
    require("msrt.core").machine().cpus, p.name, p.workers, extra and (", " .. extra) or ""))
  print("command: msrt-lua " .. (p.name ~= "default" and ("--profile " .. p.name .. " ") or "")
    .. arg[0]:gsub("^.*/scripts/", "scripts/") .. " " .. table.concat(arg, " "))
  local warning = B.rt_warning()
  if warning then print(warning) end
end

--- The q-quantile (0..1) of a list of numbers (sorts it).
function B.quantile(t, q)
  table.sort(t)
  return t[math.max(1, math.ceil(#t * q))]
end

--- Source of a monotonic clock in seconds for actor states (CLOCK_MONOTONIC
-- through the FFI): an actor loads it with `loadstring(B.CLOCK)()` (a
-- string, since an actor's functions may not capture upvalues).
B.CLOCK = [[
  local ffi = require "ffi"
  pcall(ffi.cdef, "typedef struct { long s, ns; } msrt_ts; int clock_gettime(int, msrt_ts *);")
  local ts = ffi.new("msrt_ts")
  return function()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.s) + tonumber(ts.ns) * 1e-9
  end
]]

--- The median of a list of numbers (sorts it).
function B.median(t) return B.quantile(t, 0.5) end

return B
