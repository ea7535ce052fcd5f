--- JSON-RPC benchmark (docs/performance.md): request round trips hub ->
-- child -> hub through a codec = "jsonrpc" child against the same child
-- logic speaking msrt's JSON lines (scripts/bench/rpc_echo.py: parse one
-- message, write its answer), one at a time and 32 in flight.
--   msrt-lua scripts/bench/mcp.lua [--runs N] [--trips N]
-- Prints the machine, the command and the medians of --runs runs:
-- round trips/s for each codec and the ratio.
local msrt = require "msrt"
local uv = require "luv"
local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
io.stdout:setvbuf("line")

local opts = B.options({ runs = 3, trips = 20000 }, "mcp.lua [--runs N] [--trips N]")
local here = arg[0]:match("^(.*)/")

local function child(codec)
  local spec = { name = "bench_" .. codec, cmd = { "python3", here .. "/rpc_echo.py", codec },
    inherit_env = { "PATH" }, codec = codec == "jsonrpc" and "jsonrpc" or "json_lines", capacity = 4096 }
  if codec ~= "jsonrpc" then spec.subscribe = "bench.lines.echo" end
  return assert(msrt.process(spec))
end

-- n requests on subject, width at a time: round trips/s.
local function trips(subject, n, width)
  local co, sent, done = coroutine.running(), 0, 0
  local t0 = uv.hrtime()
  local function one()
    sent = sent + 1
    local i = sent
    msrt.after(0, function()
      local r = msrt.request(subject, { i = i }, { timeout_ms = 60000 })
      assert(type(r) == "table" and r.i == i, "a wrong answer")
      done = done + 1
      if sent < n then one() elseif done == n then assert(coroutine.resume(co)) end
    end)
  end
  for _ = 1, math.min(width, n) do one() end
  coroutine.yield()
  return n / ((uv.hrtime() - t0) / 1e9)
end

B.header()
msrt.after(0, function()
  local ok, err = xpcall(function()
    local lines, rpc = child("lines"), child("jsonrpc")
    for _, width in ipairs({ 1, 32 }) do
      local a, b = {}, {}
      for _ = 1, opts.runs do -- interleaved: a drift of the machine hits both
        a[#a + 1] = trips("bench.lines.echo", opts.trips, width)
        b[#b + 1] = trips("bench_jsonrpc.rpc.echo", opts.trips, width)
      end
      local ma, mb = B.median(a), B.median(b)
      print(("%2d in flight, %d round trips: JSON lines %.0f rt/s, jsonrpc %.0f rt/s (jsonrpc/lines %.2f)")
        :format(width, opts.trips, ma, mb, mb / ma))
    end
    lines:stop()
    rpc:stop()
    lines:wait()
    rpc:wait()
  end, debug.traceback)
  if not ok then io.stderr:write(err, "\n") end
  msrt.stop(ok and "normal" or "failed")
end)
