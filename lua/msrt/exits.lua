--- The end of a process handle or a supervisor, told once to whoever asked:
-- callbacks registered with on_exit and coroutines waiting in wait().
-- The object keeps `exit` (its exit record, nil while it runs),
-- `exit_fns` and `waiters`. Hub thread only.
-- @module msrt.exits
local core = require "msrt.core"

local M = {}

--- Give obj the fields the functions below use; returns obj.
function M.init(obj)
  obj.exit_fns, obj.waiters = {}, {}
  return obj
end

--- Call fn(record) when obj ends (at once when it has ended).
function M.on_exit(obj, fn)
  require("msrt.args").check(type(fn) == "function", 1, "on_exit", "function expected")
  if obj.exit then return fn(obj.exit) end
  obj.exit_fns[#obj.exit_fns + 1] = fn
end

--- Yield the calling coroutine until obj ends; returns its record. what
-- names the method for the error raised at its caller where it cannot
-- wait (hub.check_wait).
function M.wait(obj, what)
  if obj.exit then return obj.exit end
  require("msrt.hub").check_wait(what)
  local co = coroutine.running()
  obj.waiters[#obj.waiters + 1] = co
  return coroutine.yield()
end

--- obj has ended with record rec: set obj.exit, run the callbacks (an
-- error in one is reported as `error in <what> exit handler` and the
-- others still run), then resume the waiters.
function M.done(obj, rec, what)
  obj.exit = rec
  for _, fn in ipairs(obj.exit_fns) do
    local ok, err = pcall(fn, rec)
    if not ok then core.report("error in " .. what .. " exit handler", tostring(err)) end
  end
  local ws = obj.waiters
  obj.waiters = {}
  for _, co in ipairs(ws) do
    local ok, err = coroutine.resume(co, rec)
    if not ok then core.report("error in callback", debug.traceback(co, tostring(err))) end
  end
end

return M
