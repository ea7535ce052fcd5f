--- Hub and request benchmark (docs/architecture.md "Threads and the path of
-- a message"): what the hub's Lua costs per message, and request/reply.
--   msrt-lua [--profile P] scripts/bench/hub.lua [--runs N] [--msgs N]
--            [--requests N] [--coroutines N]
--            [--only callbacks|backlog|requests|hub_requests|actor_requests]
-- Prints the machine, the command and, as the median of --runs runs (with
-- the range):
--   callbacks       an actor publishes --msgs messages to one hub
--                   subscription: messages delivered to the hub callback
--                   per second, from the first callback to the last (the
--                   sending actor's rate bounds it); then the CPU time
--                   (CLOCK_THREAD_CPUTIME_ID, medians over the runs) the
--                   sender's thread spent per publish and the hub's per
--                   message over the same span: unlike the rate, these
--                   hold when other programs take the CPUs
--   backlog         the same, with the hub kept busy until all of them
--                   are queued for it: the hub's own rate
--   requests        --coroutines hub coroutines make --requests
--                   msrt.requests in all (each its share, one after the
--                   other) to an echo actor: requests per second
--   hub_requests    the same to an echo hub subscription (msrt.publish
--                   of the reply from its callback): the hub alone
--   actor_requests  one actor makes --requests ctx:requests, one after the
--                   other, to an echo actor: requests per second
-- Each run does a fixed amount of work, so `valgrind --tool=callgrind` on
-- two sizes gives instructions per message (the difference over the
-- difference in size). Timing is wall-clock (uv.hrtime on the hub,
-- CLOCK_MONOTONIC in actors).
local msrt = require "msrt"
local uv = require "luv"
io.stdout:setvbuf("line")

local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ runs = 5, msgs = 200000, requests = 100000, coroutines = 1000, only = "" },
  "hub.lua [--runs N] [--msgs N] [--requests N] [--coroutines N] [--only callbacks|backlog|requests|hub_requests|actor_requests]")

local function echo(ctx, msg) ctx:publish(msg.reply, msg.data) end

-- Resume the main coroutine when done() says so, from any callback.
local function waiter()
  local co = coroutine.running()
  return function(...) assert(coroutine.resume(co, ...)) end, coroutine.yield
end

-- The calling thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID).
local THREAD_CPU = B.CLOCK:gsub("clock_gettime%(1,", "clock_gettime(3,")
local hub_cpu = loadstring(THREAD_CPU)()
local cpu = { sender = {}, hub = {} } -- us per message, one entry a run

local function callbacks_once(run, backlog)
  local n, t0, t1, c0, sender_cpu = 0
  local wake, wait = waiter()
  local function done() if t1 and sender_cpu then wake() end end
  local sub = assert(msrt.subscribe("bench.hub.cb." .. run, function()
    n = n + 1
    if n == 1 then t0, c0 = uv.hrtime(), hub_cpu() end
    if n == opts.msgs then
      t1 = uv.hrtime()
      cpu.hub[#cpu.hub + 1] = (hub_cpu() - c0) * 1e6 / (opts.msgs - 1)
      done()
    end
  end))
  local csub = assert(msrt.subscribe("bench.hub.cpu." .. run, function(m) sender_cpu = m.data done() end))
  local send = assert(msrt.actor{ name = "send", subscribe = "bench.hub.go." .. run,
    args = { n = opts.msgs, subject = "bench.hub.cb." .. run, cpu = THREAD_CPU, run = run },
    init = function(ctx, a) ctx.cpu = loadstring(a.cpu)() end,
    handle = function(ctx)
      local c = ctx.cpu()
      for i = 1, ctx.args.n do ctx:publish(ctx.args.subject, i) end
      ctx:publish("bench.hub.cpu." .. ctx.args.run, ctx.cpu() - c)
    end })
  msrt.publish("bench.hub.go." .. run, true)
  if backlog then -- the hub busy (not draining) until every message waits for it
    repeat uv.sleep(5) until (msrt.metrics().hub_inbox or 0) >= opts.msgs
  end
  wait()
  sub.unsubscribe(); csub.unsubscribe()
  send:stop(); send:wait()
  cpu.sender[#cpu.sender + 1] = sender_cpu * 1e6 / opts.msgs
  return (opts.msgs - 1) / ((t1 - t0) / 1e9)
end

-- An echo responder on subject: an actor, or a hub subscription.
local function responder(subject, on_hub)
  if not on_hub then
    local a = assert(msrt.actor{ name = "echo", subscribe = subject, handle = echo })
    return function() a:stop(); a:wait() end
  end
  local sub = assert(msrt.subscribe(subject, function(m) msrt.publish(m.reply, m.data) end))
  return sub.unsubscribe
end

local function requests_once(run, on_hub)
  local subject = "bench.hub.echo." .. run
  local stop = responder(subject, on_hub)
  local per = math.floor(opts.requests / opts.coroutines)
  local wake, wait = waiter()
  local left = opts.coroutines
  local t0 = uv.hrtime()
  for c = 1, opts.coroutines do
    local co = coroutine.create(function()
      for i = 1, per do assert(msrt.request(subject, i)) end
      left = left - 1
      if left == 0 then wake() end
    end)
    assert(coroutine.resume(co))
  end
  wait()
  local secs = (uv.hrtime() - t0) / 1e9
  stop()
  return per * opts.coroutines / secs
end

local function actor_requests_once(run)
  local subject = "bench.hub.aecho." .. run
  local resp = assert(msrt.actor{ name = "echo", subscribe = subject, handle = echo })
  local wake, wait = waiter()
  local sub = assert(msrt.subscribe("bench.hub.adone." .. run, function(m) wake(m.data) end))
  local req = assert(msrt.actor{ name = "req", subscribe = "bench.hub.ago." .. run,
    args = { n = opts.requests, subject = subject, clock = B.CLOCK, run = run },
    init = function(ctx, a) ctx.now = loadstring(a.clock)() end,
    handle = function(ctx)
      local a = ctx.args
      local t0 = ctx.now()
      for i = 1, a.n do assert(ctx:request(a.subject, i)) end
      ctx:publish("bench.hub.adone." .. a.run, ctx.now() - t0)
    end })
  msrt.publish("bench.hub.ago." .. run, true)
  local secs = wait()
  sub.unsubscribe()
  req:stop(); resp:stop(); req:wait(); resp:wait()
  return opts.requests / secs
end

B.header()
local function want(what) return opts.only == "" or opts.only == what end

local function report(what, once, unit, scale)
  if not want(what) then return end
  local r = {}
  for run = 1, opts.runs do r[run] = once(run) end
  local lo, hi = math.min(unpack(r)), math.max(unpack(r))
  print(("%s: %.1f %s (median of %d, range %.1f-%.1f)"):format(what, B.median(r) / scale, unit,
    opts.runs, lo / scale, hi / scale))
end

-- The CPU figures of the runs report() just made, then forgotten.
local function report_cpu(what)
  if #cpu.hub == 0 then return end
  local function fmt(t) return ("%.3f (%.3f-%.3f)"):format(B.median(t), math.min(unpack(t)), math.max(unpack(t))) end
  print(("%s: us of thread CPU per message: sender %s, hub %s"):format(what, fmt(cpu.sender), fmt(cpu.hub)))
  cpu = { sender = {}, hub = {} }
end

report("callbacks", callbacks_once, ("k msgs/s delivered to a hub callback (%d msgs)"):format(opts.msgs), 1e3)
report_cpu("callbacks")
report("backlog", function(run) return callbacks_once(run, true) end,
  ("k msgs/s delivered to a hub callback from a backlog (%d msgs)"):format(opts.msgs), 1e3)
report_cpu("backlog")
report("requests", requests_once, ("k msrt.requests/s (%d coroutines, %d requests)"):format(opts.coroutines, opts.requests), 1e3)
report("hub_requests", function(run) return requests_once(run, true) end,
  ("k msrt.requests/s to a hub responder (%d coroutines, %d requests)"):format(opts.coroutines, opts.requests), 1e3)
report("actor_requests", actor_requests_once, ("k ctx:requests/s (one actor, %d requests)"):format(opts.requests), 1e3)
msrt.stop()
