-- Timers never fire before their delay, measured from the call (README
-- "Timers and timeouts"): libuv's cached loop time is stale after a busy
-- callback, so each case busies its caller first, then measures the delay
-- with CLOCK_MONOTONIC. Each runs 1,000 times: ~30 ms of work before a
-- 50 ms timeout every 40th time, a few ms of work before a 1-4 ms timeout
-- otherwise (where the loop's millisecond truncation shows).
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

assert(msrt.start())
local spawn, collector = S.spawn, S.collector
local function drive(body) return S.drive(body, 120000) end

local N = 1000

local function busy(ms)
  local t0 = uv.hrtime()
  while uv.hrtime() - t0 < ms * 1e6 do end
end

-- The work and the delay of round i.
local function round(i)
  if i % 40 == 0 then return 30, 50 end
  return (i % 5) * 0.7, 1 + i % 4
end

local function early_list() return {} end

local function note(early, i, ms, delay)
  if ms < delay then early[#early + 1] = ("round %d: %.3f ms < %d ms"):format(i, ms, delay) end
end

describe("timers", function()
  it("msrt.request's timeout_ms counts from the call, after a busy hub callback", function()
    drive(function()
      local silent = collector("timing.silent")
      local early = early_list()
      for i = 1, N do
        local work, delay = round(i)
        busy(work)
        local t0 = uv.hrtime()
        local data, err = msrt.request("timing.silent", i, { timeout_ms = delay })
        local ms = (uv.hrtime() - t0) / 1e6
        assert.is_nil(data)
        assert.are.equal("timeout", err.code)
        note(early, i, ms, delay)
      end
      assert.are.same({}, early)
      silent.close()
    end)
  end)

  it("msrt.after counts from the call, after a busy hub callback", function()
    drive(function()
      local early = early_list()
      local co = coroutine.running()
      for i = 1, N do
        local work, delay = round(i)
        busy(work)
        local t0 = uv.hrtime()
        msrt.after(delay, function() assert(coroutine.resume(co, uv.hrtime())) end)
        local t1 = coroutine.yield()
        note(early, i, (t1 - t0) / 1e6, delay)
      end
      assert.are.same({}, early)
    end)
  end)

  it("an actor's ctx:after and ctx:request timeout count from its call, while the hub is busy", function()
    drive(function()
      -- the hub busies itself for what the actor asks, and its cached time
      -- goes stale meanwhile; the actor's timer request arrives then
      local hub_busy = assert(msrt.subscribe("timing.hub.busy", function(m) busy(m.data) end))
      local silent = collector("timing.silent.actor")
      local done = collector("timing.actor.done")
      assert(spawn {
        name = "timing", subscribe = "timing.actor.go", args = { n = N },
        handle = function(ctx)
          local ffi = require "ffi"
          pcall(ffi.cdef, "struct timing_ts { long s, ns; }; int clock_gettime(int, struct timing_ts *);")
          local ts = ffi.new("struct timing_ts")
          local function now() ffi.C.clock_gettime(1, ts) return tonumber(ts.s) * 1e3 + tonumber(ts.ns) / 1e6 end
          local function spin(ms) local t = now() while now() - t < ms do end end
          local early, i = {}, 0
          local step
          local function note(ms, delay, what)
            if ms < delay then early[#early + 1] = ("round %d (%s): %.3f ms < %d ms"):format(i, what, ms, delay) end
          end
          function step()
            i = i + 1
            if i > ctx.args.n then return ctx:publish("timing.actor.done", early) end
            local work, delay = (i % 5) * 0.7, 1 + i % 4
            if i % 40 == 0 then work, delay = 30, 50 end
            ctx:publish("timing.hub.busy", work + 2)
            spin(work) -- the hub is inside its busy callback by now
            local t0 = now()
            if i % 2 == 0 then
              local _, err = ctx:request("timing.silent.actor", i, { timeout_ms = delay })
              if err.code ~= "timeout" then error("request: " .. tostring(err)) end
              note(now() - t0, delay, "ctx:request")
              return step()
            end
            ctx:after(delay, function()
              note(now() - t0, delay, "ctx:after")
              step()
            end)
          end
          step()
        end,
      })
      assert(msrt.publish("timing.actor.go", true))
      assert.is_true(done.wait(1, 100000), "the actor did not finish its rounds")
      assert.are.same({}, done.msgs[1].data)
      hub_busy.unsubscribe()
      silent.close()
      done.close()
    end)
  end)
end)
