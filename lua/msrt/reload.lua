--- Hot reload of policy files (docs/architecture.md "Hot reload").
--
-- A policy file is registered by what uses it (`msrt.routes(path)` for a
-- routing table, `msrt.start{profile = path}` / `--profile FILE` for a
-- profile) with a loader (compile in a fresh sandbox and validate: the same
-- checks as `msrt-lua --check`) and an applier (swap one reference). Files
-- under watched directories (`msrt.watch`) are reloaded when they change
-- (libuv fs events, debounced DEBOUNCE_MS so an editor's write-rename-write
-- is one reload), on SIGHUP (every registered file under a watched
-- directory), or by `msrt.reload(path)`.
--
-- A reload builds the complete new policy before anything changes; on any
-- error the old policy stays in force and `msrt.reload.failed` is published
-- with {file, kind, error = "file:line: message"}; on success
-- `msrt.reload.ok` with {file, kind, version} (version: a counter of
-- successful reloads in this process, it only grows), plus `needs_restart`
-- (a list of field names) for a profile whose change cannot apply live.
-- A policy table may export `migrate(old_state)`: its result is the
-- policy's state from then on (`state` on the first load); nothing else
-- survives a reload implicitly.
--
-- Only files under watched directories are reloaded: a path outside them,
-- or a symlink that leads out of them (paths are compared after
-- realpath), is refused; the file read is checked again by the path of
-- its open descriptor, so a swap after the first check is refused too.
-- Policy files are read and run by msrt.policy: a regular file up to a
-- size cap, never a FIFO or directory, in a sandbox with a time and
-- memory budget; whatever fails is a msrt.reload.failed, never an exit.
-- Hub thread only.
-- @module msrt.reload
local core = require "msrt.core"
local uv = require "luv"

local M = {}

--- Milliseconds from the last fs event on a file to its reload.
M.DEBOUNCE_MS = 10

local policies = {} -- real path -> {kind, load, applies = {fn...}, state, version}
-- What the msrt.watch calls hold, each counted by the watchers holding it
-- (two watchers of one directory share its fs event; the last to close
-- ends it): directories whose files may be reloaded, files watched on
-- their own, and the fs event of each directory watched.
local dirs = {}     -- real directory -> count
local files = {}    -- real path of a file watched on its own -> count
local events = {}   -- real directory -> {ev = fs_event handle, count = n}
local timers = {}   -- real path -> debounce timer
local version = 0
local counts = { ok = 0, failed = 0 }
local sighup

local function publish(subject, data)
  require("msrt").publish(subject, data)
end

local function is_inside(real)
  if files[real] then return true end
  for dir in pairs(dirs) do
    if real:sub(1, #dir + 1) == dir .. "/" then return true end
  end
  return false
end

local function failed(file, kind, err)
  counts.failed = counts.failed + 1
  local message = type(err) == "table" and err.message or tostring(err)
  publish("msrt.reload.failed", { file = file, kind = kind, error = message })
  require("msrt").log("warn", "reload of " .. file .. " failed: " .. message)
  if type(err) ~= "table" then err = core.error("bad_config", message, { file = file }) end
  return nil, err
end

--- Register the file `path` as the source of a policy.
-- kind: a word for events ("routes", "profile", ...); load(path) -> policy
-- | nil, err (compiles and validates; changes nothing); apply(policy) ->
-- true [, needs_restart list] | nil, err (makes it the one in force).
-- The first load is the caller's; this only remembers how to redo it.
-- Registering the same file again for the same kind adds an applier (a
-- strategy file two supervisors use); for another kind it replaces it.
-- @return a function that takes this applier back (for a user that ends:
--   a supervisor; the file is forgotten with its last applier)
function M.register(path, kind, load, apply, policy)
  local real = uv.fs_realpath(path) or path
  local p = policies[real]
  if p and p.kind == kind then
    p.applies[#p.applies + 1] = apply
  else
    local state
    if type(policy) == "table" then state = policy.state end
    p = { kind = kind, load = load, applies = { apply }, state = state, version = 0 }
    policies[real] = p
  end
  return function()
    for i, a in ipairs(p.applies) do
      if a == apply then table.remove(p.applies, i) break end
    end
    if #p.applies == 0 and policies[real] == p then policies[real] = nil end
  end
end

--- Reload one file now (see the module doc).
-- @treturn true|nil true, or nil and the error (also published)
function M.reload(path)
  local real = uv.fs_realpath(path)
  if not real then return failed(path, nil, core.error("not_found", ("cannot reload '%s': no such file"):format(path))) end
  if not is_inside(real) then
    return failed(real, nil, core.error("invalid_arg",
      ("%s is not under a watched directory (msrt.watch); symlinks are followed before the check"):format(real)))
  end
  local p = policies[real]
  if not p then
    return failed(real, nil, core.error("not_found", ("%s is not the source of any policy (msrt.routes(path), a profile file)"):format(real)))
  end
  -- the file read must be under a watched directory too: a directory of
  -- the path swapped for a symlink after the check above is caught here
  local lok, policy, err = pcall(require("msrt.policy").guarded, real, function(read)
    if is_inside(read) then return true end
    return nil, core.error("invalid_arg", ("%s: the file read is %s, not under a watched directory"):format(real, read))
  end, p.load, real)
  if not lok then policy, err = nil, policy end
  if not policy then return failed(real, p.kind, err) end
  local state = p.state
  if type(policy) == "table" and type(policy.migrate) == "function" then
    local ok, s = pcall(policy.migrate, p.state)
    if not ok then return failed(real, p.kind, ("%s: migrate failed: %s"):format(real, tostring(s))) end
    state = s
  end
  local needs = {}
  for _, apply in ipairs(p.applies) do
    local ok, n = apply(policy)
    if not ok then return failed(real, p.kind, n) end
    for _, f in ipairs(type(n) == "table" and n or {}) do needs[#needs + 1] = f end
  end
  p.state = state
  version = version + 1
  counts.ok = counts.ok + 1
  p.version = version
  publish("msrt.reload.ok", { file = real, kind = p.kind, version = version,
    needs_restart = #needs > 0 and needs or nil })
  return true
end

--- The state a policy's migrate() returned (nil before any), for path.
function M.state(path)
  local p = policies[uv.fs_realpath(path) or path]
  return p and p.state
end

local function on_change(dir, name)
  local path = dir .. "/" .. name
  local t = timers[path]
  if not t then -- referenced: a reload under way keeps the hub alive
    t = uv.new_timer()
    timers[path] = t
  end
  t:start(M.DEBOUNCE_MS, 0, function()
    timers[path] = nil
    t:close()
    local real = uv.fs_realpath(path)
    if real and policies[real] then M.reload(real) end
  end)
end

--- Reload every registered file under a watched directory (SIGHUP, the
-- control socket's `reload`). @return how many were tried
function M.reload_all()
  local n = 0
  for real in pairs(policies) do
    if is_inside(real) then
      n = n + 1
      M.reload(real)
    end
  end
  return n
end

--- Reloads so far: {ok = n, failed = n} (a copy).
function M.counts() return { ok = counts.ok, failed = counts.failed } end

local function on_sighup() M.reload_all() end

-- Stop the watches one msrt.watch call made: {handles = {dir key -> fs
-- event}, files = {real path -> true}}.
-- Add d to the count of key in t (the entry goes at 0); returns the count.
local function hold(t, key, d)
  local n = (t[key] or 0) + d
  t[key] = n > 0 and n or nil
  return n
end

local function watch_dir(dir)
  local e = events[dir]
  if not e then
    e = { ev = uv.new_fs_event(), count = 0 }
    e.ev:start(dir, {}, function(err, name)
      if not err and name then on_change(dir, name) end
    end)
    e.ev:unref()
    events[dir] = e
  end
  e.count = e.count + 1
end

local function unwatch_dir(dir)
  local e = events[dir]
  e.count = e.count - 1
  if e.count > 0 then return end
  events[dir] = nil
  if not e.ev:is_closing() then e.ev:close() end
end

-- Let go of what one msrt.watch call held: {dirs, files, events}, lists.
local function unwatch(mine)
  for _, dir in ipairs(mine.dirs) do hold(dirs, dir, -1) end
  for _, real in ipairs(mine.files) do hold(files, real, -1) end
  for _, dir in ipairs(mine.events) do unwatch_dir(dir) end
  mine.dirs, mine.files, mine.events = {}, {}, {}
  if next(events) == nil and sighup then
    sighup:close()
    sighup = nil
    for path, t in pairs(timers) do
      timers[path] = nil
      if not t:is_closing() then t:close() end
    end
  end
end

--- Watch directories (or single files) for changes; see the module doc.
-- The watches do not keep the hub alive.
-- @tparam string|table paths a path or a list of paths
-- @return a watcher with :close() (stops these watches) | nil, err
--   (not_found: a path that does not exist; nothing is watched then)
function M.watch(paths)
  if type(paths) == "string" then paths = { paths } end
  local mine = { dirs = {}, files = {}, events = {} }
  for _, path in ipairs(paths) do
    local real = uv.fs_realpath(path)
    if not real then
      unwatch(mine)
      return nil, core.error("not_found", ("cannot watch '%s': no such file or directory"):format(path))
    end
    local dir = real
    if uv.fs_stat(real).type == "directory" then
      hold(dirs, real, 1)
      mine.dirs[#mine.dirs + 1] = real
    else -- only this file: its directory's events, but not its other files
      dir = real:match("^(.*)/[^/]+$")
      hold(files, real, 1)
      mine.files[#mine.files + 1] = real
    end
    watch_dir(dir)
    mine.events[#mine.events + 1] = dir
  end
  if not sighup then
    sighup = uv.new_signal()
    sighup:start("sighup", on_sighup)
    sighup:unref()
  end
  return { close = function() unwatch(mine) end }
end

return M
