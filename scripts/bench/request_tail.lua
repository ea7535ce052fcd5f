--- Where ctx:request's tail comes from (docs/performance.md): one pair
-- of actors, --requests round trips, each timed, then what the slow ones
-- have in common.
--   msrt-lua [--profile P] [--workers N] scripts/bench/request_tail.lua
--            [--requests N] [--slow_us U] [--classify 0|1]
-- Prints p50/p90/p99/p999 and the share over --slow_us (5); the most
-- common gaps, in requests, between slow ones (a period points at
-- something done every so many requests: a GC step, a refill); with
-- --classify 1, a getrusage(RUSAGE_THREAD) after each request (it adds
-- its own cost) counts the slow ones that took a page fault or an
-- involuntary context switch of the requester's thread. The latencies are
-- kept in C memory: in the actor's own heap they would grow it, and the
-- GC's pause would let the allocator commit fresh pages, each first touch
-- a page fault of its own.
local msrt = require "msrt"
io.stdout:setvbuf("line")
local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ requests = 200000, slow_us = 5, classify = 0 },
  "request_tail.lua [--requests N] [--slow_us U] [--classify 0|1]")
B.header()

local RUSAGE = "typedef struct { long tv[4]; long maxrss, ixrss, idrss, isrss, minflt, majflt, nswap,"
  .. " inblock, oublock, msgsnd, msgrcv, nsignals, nvcsw, nivcsw; } msrt_ru; int getrusage(int, msrt_ru *);"
  .. " void *calloc(size_t, size_t); void free(void *);"

assert(msrt.actor{ name = "resp", subscribe = "bench.tail", handle = function(ctx, m) ctx:publish(m.reply, m.data) end })
assert(msrt.actor{ name = "req", subscribe = "bench.tail.go",
  args = { n = opts.requests, slow = opts.slow_us, classify = opts.classify == 1, clock = B.CLOCK, cdef = RUSAGE },
  handle = function(ctx, msg)
    local ffi, a = require "ffi", ctx.args
    local now = loadstring(a.clock)()
    pcall(ffi.cdef, a.cdef)
    local n = a.n
    local lat = ffi.cast("double *", ffi.C.calloc(n, 8))
    local ev = ffi.cast("int32_t *", ffi.C.calloc(a.classify and n or 1, 4))
    local r0, r1 = ffi.new("msrt_ru"), ffi.new("msrt_ru")
    ffi.C.getrusage(1, r0)
    for i = 0, n - 1 do
      local t = now()
      assert(ctx:request("bench.tail", i))
      lat[i] = (now() - t) * 1e6
      if a.classify then
        ffi.C.getrusage(1, r1)
        ev[i] = (r1.minflt + r1.majflt > r0.minflt + r0.majflt and 1 or 0) + (r1.nivcsw > r0.nivcsw and 2 or 0)
        r0, r1 = r1, r0
      end
    end
    local sorted = {}
    for i = 0, n - 1 do sorted[i + 1] = lat[i] end
    table.sort(sorted)
    local function q(p) return sorted[math.max(1, math.ceil(n * p))] end
    local out = { ("%d requests: p50 %.2f us, p90 %.2f, p99 %.2f, p999 %.1f, max %.0f")
      :format(n, q(.5), q(.9), q(.99), q(.999), sorted[n]) }
    local slow, gaps, kinds, last = 0, {}, { [0] = 0, 0, 0, 0 }, nil
    for i = 0, n - 1 do
      if lat[i] > a.slow then
        slow = slow + 1
        if last then gaps[i - last] = (gaps[i - last] or 0) + 1 end
        last = i
        kinds[ev[a.classify and i or 0]] = kinds[ev[a.classify and i or 0]] + 1
      end
    end
    ffi.C.free(lat); ffi.C.free(ev)
    out[#out + 1] = ("over %g us: %d (%.2f%%)"):format(a.slow, slow, 100 * slow / n)
    local g = {}
    for gap, c in pairs(gaps) do g[#g + 1] = { gap, c } end
    table.sort(g, function(x, y) return x[2] > y[2] end)
    local top = {}
    for i = 1, math.min(8, #g) do top[i] = ("%d: %d"):format(g[i][1], g[i][2]) end
    out[#out + 1] = "gaps between them (requests: times): " .. table.concat(top, ", ")
    if a.classify then
      out[#out + 1] = ("of them: %d with a page fault, %d with a context switch, %d both, %d neither")
        :format(kinds[1], kinds[2], kinds[3], kinds[0])
    end
    ctx:reply(msg, table.concat(out, "\n"))
  end })

print((assert(msrt.request("bench.tail.go", true, { timeout_ms = 600000 }))))
msrt.stop()
