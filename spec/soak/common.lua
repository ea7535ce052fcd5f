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

  --- One table row: "soak NAME: row SECTION|k=v|..." with the keys in the
  -- order given (fields is a list of {key, value}).
  function C.row(section, fields)
    local parts = { "row " .. section }
    for _, f in ipairs(fields) do parts[#parts + 1] = f[1] .. "=" .. tostring(f[2]) end
    C.say("%s", table.concat(parts, "|"))
  end

  --- n with thousands separators (1234567 -> "1,234,567").
  function C.num(n)
    local s = ("%d"):format(n)
    return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^(-?),", "%1"))
  end

  local OUTCOMES = { "delivered", "dropped", "dead_lettered", "refused", "no_responders" }
  --- The router's accounting identity at rest, per subject class and in
  -- total: accepted = delivered + dropped + dead_lettered + refused +
  -- no_responders. A failure names the class and its figures; one table row
  -- per class (sorted) and one for the total.
  function C.accounting()
    local r = msrt.metrics().router
    local function account(class, m)
      local sum = 0
      for _, k in ipairs(OUTCOMES) do sum = sum + m[k] end
      local fields = { { "class", class }, { "accepted", m.accepted } }
      for _, k in ipairs(OUTCOMES) do fields[#fields + 1] = { k, m[k] } end
      fields[#fields + 1] = { "lost", m.accepted - sum }
      fields[#fields + 1] = { "identity", m.accepted == sum and "holds" or "BROKEN" }
      local why = {}
      for _, k in ipairs({ "newest", "oldest", "not_ready", "closed", "other" }) do
        if (m["drop_" .. k] or 0) > 0 then why[#why + 1] = k .. " " .. C.num(m["drop_" .. k]) end
      end
      fields[#fields + 1] = { "drops_by_reason", #why > 0 and table.concat(why, ", ") or "-" }
      C.row("accounting", fields)
      C.check(m.accepted == sum, "accounting, class %s: accepted %d ~= delivered %d + dropped %d + dead_lettered %d"
        .. " + refused %d + no_responders %d (= %d)", class, m.accepted, m.delivered, m.dropped, m.dead_lettered,
        m.refused, m.no_responders, sum)
    end
    C.check(r.classes ~= nil, "no per-class counters (msrt.metrics().router.classes is nil)")
    local names = {}
    for k in pairs(r.classes or {}) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do account(k, r.classes[k]) end
    if not r.classes then C.row("accounting", { { "class", "(per class)" }, { "identity", "MISSING" } }) end
    account("total", r)
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
