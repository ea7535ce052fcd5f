-- The NATS bridge's costs (docs/performance.md, README "More than one host"), on
-- one nats-server on loopback (Debian's, started here), same payloads:
--   1->1      msgs/s from one msrt host (msrt.publish from the hub, this
--             process) to another (an actor counting on its workers)
--             against a libnats publisher and subscriber (build/
--             bench_nats_raw, two connections in one process, counting in
--             libnats' delivery callback); the same strings both ways;
--             libnats' pending limit per subscription 65,536 messages on
--             msrt's side (pending_msgs), unlimited on raw's;
--   queue     msgs/s into a queue group with members on 2 hosts, against
--             2 libnats connections in one queue group;
--   reqrep    msrt.request from one host to a responder on another (a
--             hub subscription answering), both bridges send_asap, against
--             natsConnection_Request to a libnats responder whose
--             connection is SendAsap: p50/p99 in us;
--   local A/B the local path alone (hub publish -> hub subscription on
--             the same host), without and with a bridge attached that
--             exports other subjects.
-- --profile names the receiving hosts' tuning profile (default
-- "default"); the 1->1 receiving host's CPU time (every thread, from
-- ready to its report) is printed too: its workers' idle spin is in it.
-- Each kind runs `--runs` times (default 5), msrt and raw alternately;
-- medians with their range.
--   msrt-lua scripts/bench/nats.lua [--count N] [--size BYTES] [--requests N] [--runs N] [--profile NAME]
local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local msrt = require "msrt"
local uv = require "luv"

local opts = B.options({ count = 100000, size = 128, requests = 2000, runs = 5, profile = "default" },
  "msrt-lua scripts/bench/nats.lua [--count N] [--size BYTES] [--requests N] [--runs N] [--profile NAME]")
local root = uv.fs_realpath(arg[0]:match("^(.*)/scripts/bench/") or ".")
package.path = root .. "/?.lua;" .. package.path
local N = require "spec.nats_server"
local H = require "spec.hosts"
local raw = root .. "/build/bench_nats_raw"
msrt.start { log_level = "error" }

B.header(("payload %d bytes, %d msgs, %d requests, %d runs, receiving hosts' profile %s"):format(
  opts.size, opts.count, opts.requests, opts.runs, opts.profile))
local nats = N.start()
local payload = string.rep("x", opts.size)

local function run_raw(mode, count)
  local p = io.popen(("%s %s %s %d %d"):format(raw, nats.url, mode, count, opts.size))
  local out = p:read("*a")
  p:close()
  return out
end

-- A receiving host: an actor counts bench.x (queue group q when queued:
-- the messages go to the workers, as an agent fleet's do) and, asked on
-- bench.stats, says when it had its first and last message
-- (CLOCK_MONOTONIC, shared by the processes of one machine).
local function receiver(queue)
  return H.start(H.prelude(nats.url, ', export = { "_INBOX.>" }') .. ([[
local clock, c0 = %q, 0
local counter = assert(msrt.actor {
  name = "counter", subscribe = "bench.x", %s
  init = function(ctx) ctx.now, ctx.n, ctx.first, ctx.last = loadstring(ctx.args.clock)(), 0, 0, 0
    ctx:subscribe("bench.stats") end,
  handle = function(ctx, msg)
    if msg.subject == "bench.stats" then
      return ctx:reply(msg, { n = ctx.n, first = ctx.first, last = ctx.last })
    end
    local t = ctx.now()
    if ctx.n == 0 then ctx.first = t end
    ctx.n, ctx.last = ctx.n + 1, t
  end,
  args = { clock = clock },
})
msrt.subscribe("bench.done", function()
  msrt.after(300, function()
    local s = assert(msrt.request("bench.stats", true, { timeout_ms = 5000 }))
    print(("got %%d %%.0f %%.0f cpu %%.3f"):format(s.n, s.first * 1e9, s.last * 1e9, os.clock() - c0))
    counter:stop()
    msrt.stop()
  end)
end)
br:flush()
c0 = os.clock()
print("ready")
]]):format(B.CLOCK, queue and 'queue = "q",' or ""), "MSRT_PROFILE=" .. opts.profile)
end

local bridge = assert(msrt.nats { url = nats.url, export = { "bench.>" } })
while bridge:info().state ~= "connected" do msrt.sleep(5) end

local publish_s = {} -- msrt.publish calls/s on the exporting host
local fewest = math.huge -- the fewest messages an msrt run received
local recv_cpu = {} -- the 1->1 receiving host's CPU seconds per run
local function run_msrt_stream(members)
  local hosts = {}
  for i = 1, members do hosts[i] = receiver(members > 1) end
  for i = 1, members do H.await(hosts[i], "ready") end
  local t0 = uv.hrtime()
  for _ = 1, opts.count do msrt.publish("bench.x", payload) end
  publish_s[#publish_s + 1] = opts.count / ((uv.hrtime() - t0) / 1e9)
  bridge:flush(30000)
  msrt.publish("bench.done", true)
  bridge:flush()
  local n, first, last = 0, math.huge, 0
  for i = 1, members do
    local c, f, l, cpu = H.finish(hosts[i], 60000):match("got (%d+) (%d+) (%d+) cpu ([%d.]+)")
    n, first, last = n + tonumber(c), math.min(first, tonumber(f)), math.max(last, tonumber(l))
    if members == 1 then recv_cpu[#recv_cpu + 1] = tonumber(cpu) end
  end
  fewest = math.min(fewest, n)
  return n / ((last - first) / 1e9), n
end

-- Request/reply between two hosts of their own, both bridges send_asap
-- (as the raw responder's connection): p50, p99 in us.
local function run_msrt_reqrep()
  local h = H.start(H.prelude(nats.url, ', export = { "_INBOX.>" }, send_asap = true') .. [[
msrt.subscribe("bench.rr", function(m) msrt.publish(m.reply, m.data) end)
msrt.subscribe("bench.done", function() msrt.after(100, function() msrt.stop() end) end)
br:flush()
print("ready")
]])
  H.await(h, "ready")
  local q = H.start(H.prelude(nats.url, ', export = { "bench.>" }, send_asap = true') .. ([[
local uv = require "luv"
local payload = string.rep("x", %d)
assert(msrt.request("bench.rr", payload, { timeout_ms = 5000 }))
local lat = {}
for i = 1, %d do
  local t0 = uv.hrtime()
  assert(msrt.request("bench.rr", payload, { timeout_ms = 5000 }))
  lat[i] = (uv.hrtime() - t0) / 1e3
end
table.sort(lat)
print(("p50 %%.0f p99 %%.0f"):format(lat[math.ceil(#lat * 0.5)], lat[math.ceil(#lat * 0.99)]))
msrt.publish("bench.done", true)
br:flush()
msrt.stop()
]]):format(opts.size, opts.requests))
  local p50, p99 = H.finish(q, 120000):match("p50 (%d+) p99 (%d+)")
  H.finish(h)
  return tonumber(p50), tonumber(p99)
end

-- The local path: N publishes to a hub subscription on this host, with
-- or without a bridge (exporting other subjects) attached, in a fresh
-- msrt-lua each time.
local function run_local(with_bridge)
  local script = ([[
local msrt, uv = require "msrt", require "luv"
msrt.start { log_level = "error" }
%s
local n, t0 = 0, nil
local done = false
msrt.subscribe("local.x", function() n = n + 1 if n == %d then done = uv.hrtime() end end)
local payload = string.rep("x", %d)
t0 = uv.hrtime()
for _ = 1, %d do msrt.publish("local.x", payload) end
while not done do msrt.sleep(1) end
print(("rate %%.0f"):format(%d / ((done - t0) / 1e9)))
msrt.stop()
]]):format(with_bridge and ('local br = assert(msrt.nats{ url = %q, export = { "other.>" } }) br:flush()'):format(nats.url) or "",
    opts.count, opts.size, opts.count, opts.count)
  local h = H.start(script)
  return tonumber(H.finish(h, 60000):match("rate (%d+)"))
end

local function summary(name, unit, xs)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
  local med = B.median and B.median(xs) or B.quantile(xs, 0.5)
  print(("%-34s %12.0f %s (range %.0f..%.0f)"):format(name, med, unit, lo, hi))
  return med
end

local r = { m11 = {}, r11 = {}, mq = {}, rq = {}, m50 = {}, m99 = {}, r50 = {}, r99 = {}, la = {}, lb = {} }
for _ = 1, opts.runs do
  r.m11[#r.m11 + 1] = run_msrt_stream(1)
  r.r11[#r.r11 + 1] = tonumber(run_raw("pubsub", opts.count):match("msgs_per_s (%d+)"))
  r.mq[#r.mq + 1] = run_msrt_stream(2)
  r.rq[#r.rq + 1] = tonumber(run_raw("queue", opts.count):match("msgs_per_s (%d+)"))
  local p50, p99 = run_msrt_reqrep()
  r.m50[#r.m50 + 1], r.m99[#r.m99 + 1] = p50, p99
  local out = run_raw("reqrep", opts.requests)
  r.r50[#r.r50 + 1], r.r99[#r.r99 + 1] = tonumber(out:match("p50_us (%d+)")), tonumber(out:match("p99_us (%d+)"))
  r.la[#r.la + 1] = run_local(false)
  r.lb[#r.lb + 1] = run_local(true)
end
local a = summary("1->1 msrt host -> NATS -> msrt host", "msgs/s", r.m11)
local b = summary("1->1 libnats -> NATS -> libnats", "msgs/s", r.r11)
print(("  ratio %.2f"):format(a / b))
summary("  (msrt.publish with the export, host A)", "calls/s", publish_s)
print(("  (received by the msrt hosts: at least %d of %d in every run)"):format(fewest, opts.count))
local function secs(xs) -- median and range, in seconds
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
  return ("%.2f s (range %.2f..%.2f)"):format(B.median(xs), lo, hi)
end
print("  (the receiving host's CPU, profile " .. opts.profile .. ": " .. secs(recv_cpu) .. ")")
a = summary("queue group on 2 msrt hosts", "msgs/s", r.mq)
b = summary("queue group of 2 libnats conns", "msgs/s", r.rq)
print(("  ratio %.2f"):format(a / b))
a = summary("request/reply msrt p50", "us", r.m50)
b = summary("request/reply libnats p50", "us", r.r50)
print(("  ratio %.2f"):format(a / b))
a = summary("request/reply msrt p99", "us", r.m99)
b = summary("request/reply libnats p99", "us", r.r99)
print(("  ratio %.2f"):format(a / b))
a = summary("local path, no bridge", "msgs/s", r.la)
b = summary("local path, bridge attached", "msgs/s", r.lb)
print(("  ratio %.2f"):format(b / a))
bridge:close()
nats:stop()
msrt.stop()
