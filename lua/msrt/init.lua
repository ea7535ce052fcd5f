--- msrt: the Lua face of the runtime (DESIGN.md "The Lua surface").
-- Errors come back as `nil, err` (err: table with code, category,
-- severity, recovery, message; tostring reads well); wrong argument types
-- raise with the caller's file:line. Every function here is for the hub
-- (main) thread.
-- @module msrt
local core = require "msrt.core"
local profile = require "msrt.profile"
local uv = require "luv"

local M = {}

--- Make an error object: `msrt.error(code, message [, fields])`.
M.error = core.error
M.is_error = core.is_error

local started = false
local shutdown_hooks = {}

local function check_arg(cond, n, fname, msg)
  if not cond then error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3) end
end

--- Start the runtime. Optional: the first use of anything that needs it
-- starts it with the profile chosen on the command line (or the default).
-- @tparam[opt] table opts `{ profile = NAME|FILE|table, workers = n, log_level = s }`
-- @return true (and a warning string when part of the profile needs a
--   restart), or nil and an error (`not_found`, `syntax`, `bad_profile`)
function M.start(opts)
  check_arg(opts == nil or type(opts) == "table", 1, "start", "table expected")
  opts = opts or {}
  local warning
  if opts.profile then
    local t, err
    if type(opts.profile) == "table" then
      local ok, verr = profile.validate(opts.profile)
      if not ok then return nil, verr end
      t = profile.resolve()
      for k, v in pairs(opts.profile) do t[k] = v end
    else
      t, err = profile.resolve(opts.profile)
      if not t then return nil, err end
    end
    if opts.workers then t.workers = opts.workers end
    local _, w = profile.apply(t)
    warning = w
  end
  if opts.log_level then core.set_log_level(opts.log_level) end
  started = true
  if warning then M.log("warn", warning) end
  return true, warning
end

--- The resolved tuning profile in force (a copy; changing it changes nothing).
function M.profile()
  return profile.current()
end

local levels = { debug = 0, info = 1, warn = 2, error = 3 }

--- Log a line on stderr: `msrt.log(level, ...)`, level one of debug, info,
-- warn, error; below the --log-level threshold it is dropped.
function M.log(level, ...)
  check_arg(levels[level], 1, "log", "debug, info, warn or error expected")
  if levels[level] < levels[core.options().log_level] then return end
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  io.stderr:write(("%s %s\n"):format(level:upper(), table.concat(parts, " ")))
end

local function timer(ms, repeat_ms, fn, fname)
  check_arg(type(ms) == "number" and ms >= 0, 1, fname, "non-negative number of ms expected")
  check_arg(type(fn) == "function", 2, fname, "function expected")
  local t = uv.new_timer()
  t:start(ms, repeat_ms, function()
    if repeat_ms == 0 then t:close() end
    fn()
  end)
  return {
    handle = t,
    --- Stop the timer; calling it twice is harmless.
    stop = function() if not t:is_closing() then t:close() end end,
  }
end

--- Run fn once after ms milliseconds, on the hub, as a coroutine.
-- @return a timer with `:stop()`
function M.after(ms, fn) return timer(ms, 0, fn, "after") end

--- Run fn every ms milliseconds (first after ms), on the hub, as a coroutine.
-- @return a timer with `:stop()`
function M.every(ms, fn)
  check_arg(type(ms) == "number" and ms > 0, 1, "every", "positive number of ms expected")
  return timer(ms, ms, fn, "every")
end

--- Call fn(reason) when shutdown begins (msrt.stop, SIGINT, SIGTERM).
function M.on_shutdown(fn)
  check_arg(type(fn) == "function", 1, "on_shutdown", "function expected")
  shutdown_hooks[#shutdown_hooks + 1] = fn
end

--- Begin a graceful shutdown: hooks run, every handle closes, the host
-- exits. reason nil, "normal" or "shutdown" exits 0, anything else 1,
-- unless status (an integer) is given.
function M.stop(reason, status)
  check_arg(reason == nil or type(reason) == "string", 1, "stop", "string expected")
  if status == nil then
    status = (reason == nil or reason == "normal" or reason == "shutdown") and 0 or 1
  end
  core.stop(reason or "normal", status)
end

--- Run the hub until msrt.stop, a signal, or nothing is left that can
-- produce work. Returns the exit status. From inside a hub callback (the
-- loop already running) it returns nil, "running" instead of re-entering.
function M.run()
  return core.run()
end

core.on_shutdown(function(reason)
  for i = #shutdown_hooks, 1, -1 do
    local ok, err = pcall(shutdown_hooks[i], reason)
    if not ok then core.report("error in shutdown hook", tostring(err)) end
  end
end)

return M
