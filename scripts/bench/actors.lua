--- Actor benchmark (docs/architecture.md "Threads and the path of a message"):
-- Lua actors on the worker
-- threads, through the real publish path (router, mailboxes, string.buffer).
--   msrt-lua [--profile P] scripts/bench/actors.lua [--runs N] [--msgs N]
--            [--secs S] [--actors N]
--            [--only flood|pingpong|memory|fanout|queue|request]
-- Prints the machine, the command and, as the median of --runs runs (5)
-- with their range (lowest-highest):
--   flood     1 sender actor -> 1 receiver actor, --msgs messages (msgs/s)
--   pingpong  1, 8, 64 pairs for --secs each: round trips/s, p50/p99 us
--   memory    --actors idle actors: spawn rate (actors/s, from msrt.actor
--             to every init having run) and RSS per idle actor (bytes);
--             the spawn's CPU (user, system) and page faults per actor,
--             and the CPU a fresh page's first touch costs this machine
--   fanout    1 sender -> 4 subscribers of one subject, --msgs messages
--             (messages published/s and deliveries/s)
--   queue     1 sender -> a 4-member queue group, --msgs messages (msgs/s)
--   (--each 1: fanout and queue also print each run: its rate, the
--   sender's thread CPU per published message, and the scheduler's turns,
--   steals, parks and wakes per million messages received; --warmup N:
--   they first make N runs that count in no figure, printed with --each
--   as "warm-up N": on the VMs this is measured on, the first 0.1 s of
--   work after the machine idled runs slow one time in five or so, for
--   one worker as for two, docs/performance.md "Warm-up")
--   request   ctx:request round trips actor -> actor for --secs, 1 and 64
--             pairs at once (p50/p99/p999 over every pair's round trips;
--             500 us and more count as 500)
-- Timing is wall-clock (CLOCK_MONOTONIC) measured inside the actors.
local msrt = require "msrt"
io.stdout:setvbuf("line")
local ffi = require "ffi"

local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ runs = 5, msgs = 1000000, secs = 1.0, actors = 10000, only = "", each = 0, warmup = 0 },
  "actors.lua [--runs N] [--msgs N] [--secs S] [--actors N] [--each 1] [--warmup N] [--only flood|pingpong|memory|fanout|queue|request]")

-- Wait (yielding the main coroutine) for the next message on subject.
local function await(subject)
  local co = coroutine.running()
  local sub
  sub = assert(msrt.subscribe(subject, function(m)
    sub.unsubscribe()
    assert(coroutine.resume(co, m))
  end))
  return coroutine.yield()
end

local median = B.median

-- "median (lo-hi)" of t scaled by 1/div, each number as fmt
local function mr(t, div, fmt)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return (fmt .. " (" .. fmt .. "-" .. fmt .. ")"):format(median(t) / div, lo / div, hi / div)
end

local CLOCK = B.CLOCK -- actors load it with loadstring (no upvalues)

-- ---- flood ---------------------------------------------------------------

local function flood_once(run)
  local recv = assert(msrt.actor{
    name = "recv", subscribe = "bench.flood." .. run, args = { n = opts.msgs, clock = CLOCK, run = run },
    init = function(ctx, a) ctx.now = loadstring(a.clock)(); ctx.n = 0 end,
    handle = function(ctx, msg)
      ctx.n = ctx.n + 1
      if ctx.n == ctx.args.n then
        ctx:publish("bench.flood_done." .. ctx.args.run, ctx.now())
        ctx:stop()
      end
    end,
  })
  local send = assert(msrt.actor{
    name = "send", subscribe = "bench.go." .. run, args = { n = opts.msgs, clock = CLOCK, run = run },
    init = function(ctx, a) ctx.now = loadstring(a.clock)() end,
    handle = function(ctx)
      local subject = "bench.flood." .. ctx.args.run
      ctx:publish("bench.flood_start." .. ctx.args.run, ctx.now())
      for i = 1, ctx.args.n do ctx:publish(subject, i) end
      ctx:stop()
    end,
  })
  local co = coroutine.running()
  local t0, t1
  local s1 = msrt.subscribe("bench.flood_start." .. run, function(m) t0 = m.data end)
  local s2 = msrt.subscribe("bench.flood_done." .. run, function(m) t1 = m.data; assert(coroutine.resume(co)) end)
  msrt.publish("bench.go." .. run, true)
  coroutine.yield()
  send:wait(); recv:wait()
  s1.unsubscribe(); s2.unsubscribe()
  return opts.msgs / (t1 - t0)
end

-- ---- ping-pong -----------------------------------------------------------

-- The q-quantile in us of a histogram of 0.05 us buckets (bucket -> count).
local function quantile(hist, n, q)
  local want, seen = math.ceil(n * q), 0
  for b = 0, 10000 do
    seen = seen + (hist[b] or 0)
    if seen >= want then return (b + 0.5) * 0.05 end
  end
end

local PONG = function(ctx, msg) ctx:publish(msg.reply, msg.data) end

local function PING_INIT(ctx, a)
  ctx.now = loadstring(a.clock)()
  ctx.back = "bench.back." .. ctx.id
  ctx:subscribe(ctx.back)
  ctx.hist, ctx.n = {}, 0 -- round-trip histogram: 0.05 us buckets up to 500 us
end

local function PING(ctx, msg)
  local now = ctx.now()
  if msg.subject ~= ctx.back then -- the start: data is the pong's subject
    ctx.to, ctx.t_start, ctx.t = msg.data, now, now
    ctx:publish(ctx.to, 0, { reply = ctx.back })
    return
  end
  local b = math.min(math.floor((now - ctx.t) * 2e7), 10000)
  ctx.hist[b] = (ctx.hist[b] or 0) + 1
  ctx.n = ctx.n + 1
  if now - ctx.t_start >= ctx.args.secs then
    ctx:publish("bench.pp_done." .. ctx.args.tag, { n = ctx.n, secs = now - ctx.t_start, hist = ctx.hist })
    return
  end
  ctx.t = now
  ctx:publish(ctx.to, msg.data + 1, { reply = ctx.back })
end

-- Each pair: its own pong subject, so a pair's traffic never fans out.
local function pingpong_once(npairs, run)
  local tag = npairs .. "." .. run
  local handles = {}
  for i = 1, npairs do
    handles[#handles + 1] = assert(msrt.actor{ name = "pong", subscribe = ("bench.pong.%s.%d"):format(tag, i), handle = PONG })
    handles[#handles + 1] = assert(msrt.actor{
      name = "ping", subscribe = ("bench.ping.%s.%d"):format(tag, i),
      args = { secs = opts.secs, clock = CLOCK, tag = tag }, init = PING_INIT, handle = PING })
  end
  local co = coroutine.running()
  local results = {}
  local sub = msrt.subscribe("bench.pp_done." .. tag, function(m)
    results[#results + 1] = m.data
    if #results == npairs then assert(coroutine.resume(co)) end
  end)
  for i = 1, npairs do
    assert(msrt.publish(("bench.ping.%s.%d"):format(tag, i), ("bench.pong.%s.%d"):format(tag, i)))
  end
  coroutine.yield()
  sub.unsubscribe()
  for _, h in ipairs(handles) do h:stop() end
  for _, h in ipairs(handles) do h:wait() end
  local hist, n, rate = {}, 0, 0
  for _, r in ipairs(results) do
    rate, n = rate + r.n / r.secs, n + r.n
    for b, c in pairs(r.hist) do hist[b] = (hist[b] or 0) + c end
  end
  return rate, quantile(hist, n, 0.5), quantile(hist, n, 0.99)
end

-- ---- memory and spawn rate ------------------------------------------------

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, res = f:read("*n", "*n")
  f:close()
  return res * 4096
end

-- The whole process's CPU seconds (user, system) and minor page faults
-- so far (every thread: the hub makes the states, the workers boot them).
local function usage()
  local u = require("luv").getrusage()
  return u.utime.sec + u.utime.usec / 1e6, u.stime.sec + u.stime.usec / 1e6, u.minflt
end

-- CPU us per first touch of a fresh 4 KiB page on this machine (64 MiB
-- mapped and written a byte a page): what every page an actor's memory
-- takes costs its spawn (on the 2-vCPU VM ~10-15 us, next to ~0.3 us for
-- 1,000 instructions: docs/performance.md, spawn rate).
local function page_cost()
  pcall(ffi.cdef, [[void *mmap(void *, size_t, int, int, int, long);
    int munmap(void *, size_t);]])
  local n = 64 * 2 ^ 20
  local p = ffi.C.mmap(nil, n, 3, 0x22, -1, 0) -- read|write, private|anonymous
  assert(ffi.cast("intptr_t", p) ~= -1, "mmap failed")
  local b = ffi.cast("volatile char *", p)
  local u0, s0 = usage()
  for i = 0, n - 1, 4096 do b[i] = 1 end
  local u1, s1 = usage()
  ffi.C.munmap(p, n)
  return (u1 - u0 + s1 - s0) * 1e6 / (n / 4096)
end

local function memory_once(run)
  collectgarbage()
  local before = rss()
  local co = coroutine.running()
  local up = 0
  local sub = msrt.subscribe("bench.up." .. run, function()
    up = up + 1
    if up == opts.actors then assert(coroutine.resume(co)) end
  end)
  local u0, s0, f0 = usage()
  local t0 = require("luv").hrtime()
  local h = assert(msrt.actor{
    name = "idle", instances = opts.actors, args = { run = run },
    init = function(ctx, a) ctx:publish("bench.up." .. a.run, true) end,
    handle = function() end,
  })
  coroutine.yield()
  local secs = (require("luv").hrtime() - t0) / 1e9
  local u1, s1, f1 = usage()
  collectgarbage()
  local per = (rss() - before) / opts.actors
  sub.unsubscribe()
  h:stop(); h:wait()
  local n = opts.actors
  return n / secs, per, (u1 - u0) * 1e6 / n, (s1 - s0) * 1e6 / n, (f1 - f0) / n
end

-- ---- through the router: fan-out, queue group, request/reply ------------

-- A receiver counts its messages; on "bench.r.end.<run>" (which follows the
-- sender's messages in FIFO order) it reports its count and the time.
local function R_INIT(ctx, a)
  ctx.now = loadstring(a.clock)()
  ctx.n = 0
  ctx:subscribe("bench.r.end." .. a.run)
end

local function R_HANDLE(ctx, msg)
  if msg.subject == "bench.r.end." .. ctx.args.run then
    ctx:publish("bench.r.count." .. ctx.args.run, { n = ctx.n, t = ctx.now() })
  else
    ctx.n = ctx.n + 1
  end
end

local function S_HANDLE(ctx)
  local a = ctx.args
  local cpu0 = ctx.cpu()
  ctx:publish("bench.r.start." .. a.run, ctx.now())
  for i = 1, a.n do ctx:publish(a.subject, i) end
  ctx:publish("bench.r.cpu." .. a.run, ctx.cpu() - cpu0)
  ctx:publish("bench.r.end." .. a.run, true)
end

-- The calling thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID).
local THREAD_CPU = B.CLOCK:gsub("clock_gettime%(1,", "clock_gettime(3,")

-- 4 receivers on subject (queue: in one queue group); returns the messages
-- each got (summed) per second, from the first publish to the last report.
-- label: how --each names the run ("run 3", "warm-up 1").
local function router_once(kind, run, label)
  local subject = "bench.r." .. kind .. "." .. run
  local recv = assert(msrt.actor{ name = "recv", instances = 4, subscribe = subject,
    queue = kind == "queue" and "q" or nil, capacity = 65536,
    args = { clock = CLOCK, run = run }, init = R_INIT, handle = R_HANDLE })
  local send = assert(msrt.actor{ name = "send", subscribe = "bench.r.go." .. run,
    args = { clock = CLOCK, cpu = THREAD_CPU, run = run, n = opts.msgs, subject = subject },
    init = function(ctx, a) ctx.now = loadstring(a.clock)(); ctx.cpu = loadstring(a.cpu)() end,
    handle = S_HANDLE })
  local co = coroutine.running()
  local t0, t1, got, reports, cpu = nil, 0, 0, 0, 0
  local m0 = msrt.metrics().total
  local s1 = msrt.subscribe("bench.r.start." .. run, function(m) t0 = m.data end)
  local s3 = msrt.subscribe("bench.r.cpu." .. run, function(m) cpu = m.data end)
  local s2 = msrt.subscribe("bench.r.count." .. run, function(m)
    got, t1, reports = got + m.data.n, math.max(t1, m.data.t), reports + 1
    if reports == 4 then assert(coroutine.resume(co)) end
  end)
  msrt.publish("bench.r.go." .. run, true)
  coroutine.yield()
  s1.unsubscribe(); s2.unsubscribe(); s3.unsubscribe()
  local m1 = msrt.metrics().total
  recv:stop(); send:stop(); recv:wait(); send:wait()
  local want = kind == "queue" and opts.msgs or 4 * opts.msgs
  assert(got == want, ("%s: %d of %d messages arrived"):format(kind, got, want))
  if opts.each ~= 0 then
    local function per(f) return (m1[f] - m0[f]) * 1e6 / got end
    print(("  %s: %.2f M/s; sender %.3f us CPU per publish; per million received: turns %.0f, steals %.0f, parks %.0f, wakes %.0f, gave way %.0f")
      :format(label, got / (t1 - t0) / 1e6, cpu * 1e6 / opts.msgs, per("turns"), per("steals"), per("parks"), per("wakes"), per("gave_way")))
  end
  return got / (t1 - t0)
end

-- npairs requester -> responder pairs, each its own subject; the
-- quantiles are over every pair's round trips.
local function request_once(run, npairs)
  local tag = "bench.rr." .. run .. "." .. npairs
  local handles = {}
  for i = 1, npairs do
    handles[#handles + 1] = assert(msrt.actor{ name = "resp", subscribe = tag .. "." .. i, handle = PONG })
    handles[#handles + 1] = assert(msrt.actor{ name = "req", subscribe = tag .. ".go",
      args = { secs = opts.secs, clock = CLOCK, tag = tag, to = tag .. "." .. i },
      init = function(ctx, a) ctx.now = loadstring(a.clock)() end,
      handle = function(ctx)
        local hist, n, t_start = {}, 0, ctx.now()
        repeat
          local t = ctx.now()
          assert(ctx:request(ctx.args.to, n))
          local now = ctx.now()
          local b = math.min(math.floor((now - t) * 2e7), 10000)
          hist[b] = (hist[b] or 0) + 1
          n = n + 1
        until now - t_start >= ctx.args.secs
        ctx:publish(ctx.args.tag .. ".done", { n = n, hist = hist })
      end })
  end
  local co = coroutine.running()
  local hist, n, got = {}, 0, 0
  local sub = msrt.subscribe(tag .. ".done", function(m)
    n, got = n + m.data.n, got + 1
    for b, c in pairs(m.data.hist) do hist[b] = (hist[b] or 0) + c end
    if got == npairs then assert(coroutine.resume(co)) end
  end)
  msrt.publish(tag .. ".go", true)
  coroutine.yield()
  sub.unsubscribe()
  for _, h in ipairs(handles) do h:stop() end
  for _, h in ipairs(handles) do h:wait() end
  return quantile(hist, n, 0.5), quantile(hist, n, 0.99), quantile(hist, n, 0.999)
end

-- ---- main ------------------------------------------------------------------

local p = msrt.profile()
B.header(("batch %d, spin %d us, mailbox %d"):format(p.batch, p.spin_us, p.mailbox_capacity))

local function want(what) return opts.only == "" or opts.only == what end

if want("flood") then
  local r = {}
  for run = 1, opts.runs do r[run] = flood_once(run) end
  print(("flood 1->1, %d msgs: %s M msgs/s (median of %d)"):format(opts.msgs, mr(r, 1e6, "%.2f"), opts.runs))
end

if want("pingpong") then
  for _, pairs in ipairs({ 1, 8, 64 }) do
    local rates, p50s, p99s = {}, {}, {}
    for run = 1, opts.runs do rates[run], p50s[run], p99s[run] = pingpong_once(pairs, run) end
    print(("pingpong %2d pairs: %s M round trips/s, p50 %s us, p99 %s us (median of %d)")
      :format(pairs, mr(rates, 1e6, "%.2f"), mr(p50s, 1, "%.2f"), mr(p99s, 1, "%.2f"), opts.runs))
  end
end

if opts.only == "memory1" then -- one fresh-host run, for the parent below
  print(("memory1 %f %f %f %f %f"):format(memory_once(1)))
elseif want("memory") then
  -- each run in a fresh host: freed memory that the allocator keeps would
  -- make a second run in the same process look almost free
  local rates, per, user, sys, faults, page = {}, {}, {}, {}, {}, {}
  local cmd = ("%s --profile %s %s --only memory1 --actors %d"):format(
    require("msrt.core").exe(), p.name, arg[0], opts.actors)
  for run = 1, opts.runs do
    local f = assert(io.popen(cmd))
    local out = f:read("*a")
    f:close()
    local r, b, u, s, pf = out:match("memory1 ([%d.]+) ([%d.]+) ([%d.]+) ([%d.]+) ([%d.]+)")
    assert(r, "the memory run failed: " .. out)
    rates[run], per[run], user[run], sys[run], faults[run] = tonumber(r), tonumber(b), tonumber(u), tonumber(s), tonumber(pf)
    page[run] = page_cost()
  end
  print(("spawn %d actors: %.0f actors/s; RSS per idle actor: %.1f KiB (median of %d)")
    :format(opts.actors, median(rates), median(per) / 1024, opts.runs))
  print(("  per spawn, every thread: CPU %s us user + %s us system, %s page faults;"
    .. " a fresh 4 KiB page's first touch here: %s us")
    :format(mr(user, 1, "%.0f"), mr(sys, 1, "%.0f"), mr(faults, 1, "%.1f"), mr(page, 1, "%.1f")))
end
for _, kind in ipairs({ "fanout", "queue" }) do
  if want(kind) then
    local r = {}
    for w = 1, opts.warmup do router_once(kind, -w, "warm-up " .. w) end
    for run = 1, opts.runs do r[run] = router_once(kind, run, "run " .. run) end
    if kind == "fanout" then
      print(("fanout 1->4 subscribers, %d msgs: %s M msgs/s published, %s M deliveries/s (median of %d)")
        :format(opts.msgs, mr(r, 4e6, "%.2f"), mr(r, 1e6, "%.2f"), opts.runs))
    else
      print(("queue group of 4, %d msgs: %s M msgs/s (median of %d)"):format(opts.msgs, mr(r, 1e6, "%.2f"), opts.runs))
    end
  end
end

if want("request") then
  for _, npairs in ipairs({ 1, 64 }) do
    local p50s, p99s, p999s = {}, {}, {}
    for run = 1, opts.runs do p50s[run], p99s[run], p999s[run] = request_once(run, npairs) end
    print(("request/reply actor->actor (ctx:request), %2d pairs: p50 %s us, p99 %s us, p999 %s us (median of %d)")
      :format(npairs, mr(p50s, 1, "%.2f"), mr(p99s, 1, "%.2f"), mr(p999s, 1, "%.1f"), opts.runs))
  end
end
msrt.stop()
