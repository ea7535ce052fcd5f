--- What the soak programs share: the failures found, report lines, waits
-- on the hub loop and the verdict. Each program loads it with
--   local C = dofile(arg[0]:match("^(.*)/") .. "/common.lua")("NAME")
-- and ends with C.finish(), which prints every failure, then "passed" or
-- "failed" (the line scripts/soak counts), and stops the host with status
-- 0 or 1.
return function(name)
  local msrt = require "msrt"
  local C = { failures = {} }

  --- Record a failure (fmt with the arguments) unless ok.
  function C.check(ok, fmt, ...)
    if not ok then C.failures[#C.failures + 1] = fmt:format(...) end
  end

  --- One report line, "soak NAME: ...".
  function C.say(fmt, ...)
    io.stdout:write(("soak " .. name .. ": " .. fmt .. "\n"):format(...))
    io.stdout:flush()
  end

  --- From a hub coroutine: wait ms on the loop.
  function C.sleep(ms)
    local co = coroutine.running()
    msrt.after(ms, function() coroutine.resume(co) end)
    coroutine.yield()
  end

  --- From a hub coroutine: wait until fn() holds (checked every 10 ms) or
  -- ms (default 5000) pass; returns fn()'s last answer.
  function C.wait_until(fn, ms)
    for _ = 1, (ms or 5000) / 10 do
      if fn() then return true end
      C.sleep(10)
    end
    return fn()
  end

  function C.finish()
    for _, f in ipairs(C.failures) do C.say("FAILED: %s", f) end
    local ok = #C.failures == 0
    C.say(ok and "passed" or "failed")
    msrt.stop(ok and "normal" or "failed", ok and 0 or 1)
  end

  return C
end
