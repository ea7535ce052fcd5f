--- Process benchmark (README "Processes"), through msrt.process.
--   msrt-lua scripts/bench/proc.lua [--runs N] [--spawns N] [--lines N]
--            [--trips N] [--hogged N] [--only spawn|lines|echo|hogged]
-- Prints the machine, the command and, as the median of --runs runs:
--   spawn  spawn-and-reap of /bin/true (msrt.process to the final exit),
--          --spawns processes one after another and 16 in flight, with
--          the host's RSS brought to 50 MiB and then 1 GiB (ballast
--          allocated and touched): processes/s
--   lines  one child printing --lines JSON lines of 200 bytes: lines/s
--          into the router (nothing subscribed), and into one Lua actor
--          (profile mailbox; `block` pauses the child when it is full)
--   echo   hub -> child -> hub round trips through a sed echo agent
--          (subscription -> stdin JSON line -> stdout -> publish), one at
--          a time, --trips of them: p50 / p99 in microseconds
--   hogged (only with --only hogged: it loads every CPU) the hub's stall
--          per process start on a loaded machine: one busy-loop child per
--          CPU at normal priority, then --hogged starts of /bin/true one
--          after another (each to its exit): how long msrt.process holds
--          the hub (p50 / p99 / max us, per run), and the worst lateness
--          of a 10 ms hub timer meanwhile (ms); the medians of the runs
-- Timing is wall-clock (uv.hrtime) on the hub.
local msrt = require "msrt"
local uv = require "luv"
local ffi = require "ffi"
io.stdout:setvbuf("line")

local opts = { runs = 3, spawns = 2000, lines = 1000000, trips = 5000, hogged = 200, only = "" }
do
  local i = 1
  while arg[i] do
    local k = arg[i]:match("^%-%-(%w+)$")
    if not k or opts[k] == nil or arg[i + 1] == nil then
      io.stderr:write("usage: proc.lua [--runs N] [--spawns N] [--lines N] [--trips N] [--hogged N] [--only spawn|lines|echo|hogged]\n")
      os.exit(2)
    end
    opts[k] = type(opts[k]) == "number" and tonumber(arg[i + 1]) or arg[i + 1]
    i = i + 2
  end
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local function now() return uv.hrtime() / 1e9 end

local function rss_bytes()
  local f = assert(io.open("/proc/self/statm"))
  local _, res = f:read("*a"):match("(%d+)%s+(%d+)")
  f:close()
  return tonumber(res) * 4096
end

ffi.cdef [[ void *malloc(size_t); void *memset(void *, int, size_t); ]]
local ballast = {}
-- Bring the RSS up to target bytes with touched memory.
local function grow_to(target)
  local need = target - rss_bytes()
  if need <= 0 then return end
  local p = ffi.C.malloc(need)
  assert(p ~= nil, "cannot allocate ballast")
  ffi.C.memset(p, 1, need)
  ballast[#ballast + 1] = p -- never freed: the RSS must stay
end

-- One process to its final exit; yields the calling coroutine.
local function true_once()
  local h = assert(msrt.process { name = "bt", cmd = { "/bin/true" } })
  h:wait()
end

local function spawn_sequential(n)
  local t0 = now()
  for _ = 1, n do true_once() end
  return n / (now() - t0)
end

local function spawn_parallel(n, width)
  local co = coroutine.running()
  local started, done = 0, 0
  local t0 = now()
  local function one()
    started = started + 1
    local h = assert(msrt.process { name = "bt", cmd = { "/bin/true" } })
    h:on_exit(function()
      done = done + 1
      if started < n then one()
      elseif done == n then assert(coroutine.resume(co)) end
    end)
  end
  for _ = 1, math.min(width, n) do one() end
  coroutine.yield()
  return n / (now() - t0)
end

local function bench_spawn()
  for _, mib in ipairs { 50, 1024 } do
    grow_to(mib * 1048576)
    local seq, par = {}, {}
    for _ = 1, opts.runs do
      seq[#seq + 1] = spawn_sequential(opts.spawns)
      par[#par + 1] = spawn_parallel(opts.spawns, 16)
    end
    print(("spawn  rss %4d MiB (now %d MiB): sequential %.0f/s, 16 in flight %.0f/s")
      :format(mib, math.floor(rss_bytes() / 1048576), median(seq), median(par)))
  end
end

-- A child printing n JSON lines of 200 bytes (199 + newline).
local LINE = '{"type":"progress","text":"' .. string.rep("x", 199 - 29) .. '"}'
assert(#LINE == 199)
local function printer(n)
  return { name = "printer", cmd = { "/bin/sh", "-c", ("yes '%s' | head -n %d"):format(LINE, n) } }
end

local function lines_router(n)
  local t0 = now()
  local h = assert(msrt.process(printer(n)))
  h:wait()
  local dt = now() - t0
  assert(h:stats().lines_out == n, "lines lost")
  return n / dt
end

local function lines_actor(n)
  local co = coroutine.running()
  local done = msrt.subscribe("bench.lines.done", function() assert(coroutine.resume(co)) end)
  local a = assert(msrt.actor { name = "counter", subscribe = "agents.printer.out", args = n,
    init = function(ctx, want) ctx.state = { want = want, n = 0 } end,
    handle = function(ctx, msg)
      local s = ctx.state
      s.n = s.n + 1
      if s.n == s.want then ctx:publish("bench.lines.done", s.n) end
    end })
  local t0 = now()
  local h = assert(msrt.process(printer(n)))
  coroutine.yield()
  local dt = now() - t0
  h:wait()
  a:stop()
  a:wait()
  done:unsubscribe()
  return n / dt
end

local function bench_lines()
  local r, a = {}, {}
  for _ = 1, opts.runs do
    r[#r + 1] = lines_router(opts.lines)
    a[#a + 1] = lines_actor(opts.lines)
  end
  print(("lines  %d x 200 B from one child: into the router %.0f lines/s, to one actor %.0f lines/s")
    :format(opts.lines, median(r), median(a)))
end

local function bench_echo()
  local h = assert(msrt.process { name = "echo", subscribe = "to.echo",
    cmd = { "sed", "-u", "s/\"subject\":\"to.echo\"/\"subject\":\"agents.echo.back\"/" } })
  local co = coroutine.running()
  local sub = msrt.subscribe("agents.echo.back", function() assert(coroutine.resume(co)) end)
  local p50s, p99s = {}, {}
  for _ = 1, opts.runs do
    local lat = {}
    for i = 1, opts.trips do
      local t0 = uv.hrtime()
      msrt.publish("to.echo", i)
      coroutine.yield()
      lat[i] = (uv.hrtime() - t0) / 1e3
    end
    table.sort(lat)
    p50s[#p50s + 1] = lat[math.ceil(#lat * 0.5)]
    p99s[#p99s + 1] = lat[math.ceil(#lat * 0.99)]
  end
  sub:unsubscribe()
  h:stop()
  h:wait()
  print(("echo   hub -> child -> hub, %d round trips: p50 %.1f us, p99 %.1f us")
    :format(opts.trips, median(p50s), median(p99s)))
end

local function ncpus()
  local f = io.popen("nproc")
  local n = tonumber(f:read("*l"))
  f:close()
  return n or 1
end

-- One run of `hogged`: the spawn calls' p50, p99, max (us) and the timer's
-- worst lateness (ms).
local function hogged_once(n)
  local hogs = {}
  for i = 1, ncpus() do
    hogs[i] = assert(msrt.process { name = "hog" .. i, cmd = { "/bin/sh", "-c", "while :; do :; done" } })
  end
  local worst, last = 0, uv.hrtime()
  local timer = uv.new_timer()
  timer:start(10, 10, function()
    local t = uv.hrtime()
    worst = math.max(worst, (t - last) / 1e6 - 10)
    last = t
  end)
  local calls = {}
  for i = 1, n do
    local t0 = uv.hrtime()
    local h = assert(msrt.process { name = "bt", cmd = { "/bin/true" } })
    calls[i] = (uv.hrtime() - t0) / 1e3
    h:wait()
  end
  timer:stop()
  timer:close()
  for _, h in ipairs(hogs) do h:stop(0) end
  for _, h in ipairs(hogs) do h:wait() end
  table.sort(calls)
  return calls[math.ceil(n * 0.5)], calls[math.ceil(n * 0.99)], calls[n], worst
end

local function bench_hogged()
  local p50, p99, max, late = {}, {}, {}, {}
  for r = 1, opts.runs do
    p50[r], p99[r], max[r], late[r] = hogged_once(opts.hogged)
    print(("hogged run %d: msrt.process holds the hub p50 %.0f us, p99 %.0f us, max %.0f us; "
      .. "10 ms timer worst late %.1f ms"):format(r, p50[r], p99[r], max[r], late[r]))
  end
  print(("hogged %d starts with every CPU busy: msrt.process holds the hub p50 %.0f us, p99 %.0f us, "
    .. "max %.0f us; 10 ms timer worst late %.1f ms (medians of %d runs)")
    :format(opts.hogged, median(p50), median(p99), median(max), median(late), opts.runs))
end

local function machine()
  local f = io.popen("uname -srm; nproc")
  local s = f:read("*a"):gsub("\n", " ")
  f:close()
  return s
end

print("machine: " .. machine() .. "cpus")
print("command: msrt-lua scripts/bench/proc.lua " .. table.concat(arg, " "))
msrt.after(0, function()
  local ok, err = xpcall(function()
    if opts.only == "" or opts.only == "lines" then bench_lines() end
    if opts.only == "" or opts.only == "echo" then bench_echo() end
    if opts.only == "" or opts.only == "spawn" then bench_spawn() end
    if opts.only == "hogged" then bench_hogged() end
  end, debug.traceback)
  if not ok then io.stderr:write(err, "\n") end
  msrt.stop(ok and "normal" or "failed")
end)
