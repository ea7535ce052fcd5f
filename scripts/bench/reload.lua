--- Hot-reload benchmark (README "Hot reload").
--   msrt-lua [--profile P] scripts/bench/reload.lua [--samples N] [--msgs N]
-- Prints the machine, the command and:
--   latency  from a routing-table file's write (temp file + rename, as
--            editors do) to the new table in force (a probe message is
--            routed by it): p50 / p99 over --samples writes. The debounce
--            (msrt.reload.DEBOUNCE_MS, 10 ms) is part of it.
--   load     1 sender -> 1 receiver actor, --msgs messages, with no reload
--            and with a routing-table reload every 10 ms: msgs/s, lost and
--            duplicated (counted by the receiver); median of 3 runs each.
local msrt = require "msrt"
local uv = require "luv"
io.stdout:setvbuf("line")

local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ samples = 50, msgs = 2000000 }, "reload.lua [--samples N] [--msgs N]")

local dir = assert(uv.fs_mkdtemp("/tmp/msrt-bench-reload-XXXXXX"))
local path = dir .. "/routes.lua"
local function write_rules(to)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(('return { { match = "probe.*", rewrite = "%s.$1" } }'):format(to))
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

local pct = B.quantile

local function sleep(ms)
  local co = coroutine.running()
  msrt.after(ms, function() assert(coroutine.resume(co)) end)
  coroutine.yield()
end

-- latency: write, then probe every 1 ms until the probe lands on the new
-- target.
local function latency()
  write_rules("t0")
  assert(msrt.routes(path))
  local w = assert(msrt.watch(dir))
  local landed
  local sub = assert(msrt.subscribe("*.x", function(m) landed = m.subject end))
  local samples = {}
  for i = 1, opts.samples do
    local target = "t" .. i
    local t0 = uv.hrtime()
    write_rules(target)
    repeat
      landed = nil
      msrt.publish("probe.x", 0)
      sleep(1)
    until landed == target .. ".x"
    samples[i] = (uv.hrtime() - t0) / 1e6
    sleep(5)
  end
  sub.unsubscribe()
  w.close()
  return pct(samples, 0.5), pct(samples, 0.99)
end

local function RECV(ctx, msg)
  ctx.n = ctx.n + 1
  local i = msg.data
  if ctx.seen[i] then ctx.dup = ctx.dup + 1 end
  ctx.seen[i] = true
  if i == ctx.args.total then
    ctx:publish("rload.done", { n = ctx.n, dup = ctx.dup, t = os.clock() })
  end
end

local function load_once(with_reloads)
  local recv = assert(msrt.actor{ name = "rrecv", subscribe = "rload.data", args = { total = opts.msgs },
    init = function(ctx) ctx.n, ctx.dup, ctx.seen = 0, 0, {} end, handle = RECV })
  local send = assert(msrt.actor{ name = "rsend", subscribe = "rload.go", args = { total = opts.msgs },
    handle = function(ctx) for i = 1, ctx.args.total do ctx:publish("rload.data", i) end end })
  local co = coroutine.running()
  local result, reloads = nil, 0
  local sub = msrt.subscribe("rload.done", function(m) result = m.data; assert(coroutine.resume(co)) end)
  local ticker = with_reloads and msrt.every(10, function()
    reloads = reloads + 1
    write_rules("r" .. reloads % 2)
    assert(msrt.reload(path))
  end)
  local t0 = uv.hrtime()
  msrt.publish("rload.go", true)
  coroutine.yield()
  local secs = (uv.hrtime() - t0) / 1e9
  if ticker then ticker.stop() end
  sub.unsubscribe()
  recv:stop(); send:stop(); recv:wait(); send:wait()
  return opts.msgs / secs, opts.msgs - result.n + result.dup, result.dup, reloads
end

B.header()
local p50, p99 = latency()
print(("latency write -> in force: p50 %.2f ms, p99 %.2f ms over %d writes (debounce %d ms)")
  :format(p50, p99, opts.samples, require("msrt.reload").DEBOUNCE_MS))
local w = assert(msrt.watch(dir))
for _, with in ipairs({ false, true }) do
  local rates, lost, dup, n = {}, 0, 0, 0
  for run = 1, 3 do
    local r, l, d, k = load_once(with)
    rates[run], lost, dup, n = r, lost + l, dup + d, n + k
  end
  print(("load %s: %.2f M msgs/s (median of 3), lost %d, duplicated %d%s")
    :format(with and "with a reload every 10 ms" or "without reloads", pct(rates, 0.5) / 1e6, lost, dup,
      with and (", " .. n .. " reloads") or ""))
end
w.close()
msrt.routes({})
os.execute("rm -rf '" .. dir .. "'")
msrt.stop()
