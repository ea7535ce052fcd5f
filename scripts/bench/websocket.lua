-- 10,000 WebSocket connections (docs/performance.md), under the profile
-- given (the `websocket` one: scripts/bench/run websocket): each a NATS
-- client (scripts/bench/ws_clients.js, Node.js) subscribed to its own
-- subject c.<i> and to "all"; for --seconds the host publishes one message
-- a second to each c.<i> (spread over the second in 10 ms steps) and one
-- a second to "all" (a fan-out to every connection). Prints the host's RSS
-- per connection (RSS with the connections minus before, over N: kernel
-- socket buffers are not in RSS), the delivery latency p50/p99 as the
-- clients measure it (publisher's wall clock to the client's), and the hub
-- thread's CPU (its own /proc task: the web listener, the NATS
-- connections' flushes and the publishing script all run there).
--   msrt-lua --profile websocket scripts/bench/websocket.lua [--conns N] [--seconds S]
local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local msrt = require "msrt"
local uv = require "luv"

local opts = B.options({ conns = 10000, seconds = 10 },
  "msrt-lua --profile websocket scripts/bench/websocket.lua [--conns N] [--seconds S]")
local root = uv.fs_realpath(arg[0]:match("^(.*)/scripts/bench/") or ".")
msrt.start { log_level = "error" }

local function rss()
  local f = io.open("/proc/self/statm")
  local pages = tonumber(f:read("*a"):match("^%S+%s+(%S+)"))
  f:close()
  return pages * 4096
end

-- utime + stime of the hub thread (the main thread: task id = pid), s
local function hub_cpu()
  local pid = uv.os_getpid()
  local f = io.open(("/proc/%d/task/%d/stat"):format(pid, pid))
  local s = f:read("*a")
  f:close()
  local fields = {}
  for v in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

local l = assert(msrt.listen { websocket = "127.0.0.1:0" })
collectgarbage()
local rss0 = rss()
local stdin, stdout = uv.new_pipe(), uv.new_pipe()
local child = assert(uv.spawn("node", {
  args = { "--experimental-websocket", "--no-warnings", "--max-old-space-size=4096",
    root .. "/scripts/bench/ws_clients.js", tostring(l:port()), tostring(opts.conns) },
  stdio = { stdin, stdout, 2 } }, function(code) if code ~= 0 then io.stderr:write("client exited ", code, "\n") end end))

local co = coroutine.running()
local lines = {}
stdout:read_start(function(_, chunk)
  if not chunk then return end
  for line in chunk:gmatch("[^\n]+") do
    lines[#lines + 1] = line
    if co and coroutine.status(co) == "suspended" then coroutine.resume(co) end
  end
end)
local function wait_line(pat)
  while true do
    for _, line in ipairs(lines) do if line:match(pat) then return line end end
    coroutine.yield()
  end
end

local t0 = uv.hrtime()
wait_line("^ready")
local connect_s = (uv.hrtime() - t0) / 1e9
collectgarbage()
local rss1 = rss()
local stats = l:stats()

local function now_us() -- luv's gettimeofday: seconds, then microseconds
  local sec, usec = uv.gettimeofday()
  return string.format("%.0f", sec * 1e6 + usec)
end
local steps, step = 100, 0
local per = math.ceil(opts.conns / steps)
local cpu0, w0 = hub_cpu(), uv.hrtime()
local sent = 0
local tick = msrt.every(10, function()
  local first = (step % steps) * per
  for i = first, math.min(opts.conns, first + per) - 1 do
    msrt.publish("c." .. i, now_us())
    sent = sent + 1
  end
  if step % steps == 0 then msrt.publish("all", now_us()) sent = sent + opts.conns end
  step = step + 1
end)
msrt.sleep(opts.seconds * 1000)
tick.stop()
local cpu = (hub_cpu() - cpu0) / ((uv.hrtime() - w0) / 1e9)
msrt.sleep(500)
stdin:write("report\n")
local report = wait_line("^{")
local r = msrt.json.decode(report)

B.header(("%d WebSocket connections, %d s"):format(opts.conns, opts.seconds))
print(("connections open       %d (%.1f s to connect all)"):format(stats.connections or r.conns, connect_s))
print(("host RSS per conn      %.1f KiB (RSS %.1f -> %.1f MiB)"):format((rss1 - rss0) / opts.conns / 1024,
  rss0 / 1048576, rss1 / 1048576))
print(("deliveries             %d received of %d sent"):format(r.msgs, sent))
print(("delivery latency       p50 %.2f ms, p99 %.2f ms, max %.2f ms"):format(r.p50_us / 1000, r.p99_us / 1000, r.max_us / 1000))
print(("hub CPU                %.0f%% of one core"):format(cpu * 100))
stdout:read_stop()
child:kill("sigterm")
l:close()
msrt.stop()
