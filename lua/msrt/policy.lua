--- Policy files, sandboxed and bounded (README "Policy files").
-- Every policy file — a routing table, a profile, a supervision tree, a
-- strategy, whatever `msrt-lua --check` is given — is read and run here:
-- read only when it is a regular file of at most `policy.file_bytes`
-- (its real path opened with O_NOFOLLOW, checked with fstat on that
-- descriptor: a FIFO or a directory is refused, never waited on), and run in a Lua state of
-- its own (src/lua/lpolicy.h) with the pure parts of the standard library
-- and os.getenv: no io, os.execute, require (but of
-- msrt.strategies.rules), load*, string.dump, debug, jit or ffi. Each run,
-- and each later call of a function the file returned (a strategy's
-- decide, a migrate, a profile's function of the machine), stops with an
-- error after `policy.time_ms` of wall clock or `policy.memory_bytes` of
-- memory (profile fields). What comes back is a copy: tables and plain
-- values, functions as proxies into the file's state.
-- Internal. Hub thread only.
-- @module msrt.policy
local core = require "msrt.core"

local M = {}

--- Limits when the profile in force sets none (and before any is).
M.DEFAULTS = { time_ms = 100, memory_bytes = 64 * 1024 * 1024, file_bytes = 1024 * 1024 }

--- The limits in force: {time_ms, memory_bytes, file_bytes}.
function M.limits()
  local p = package.loaded["msrt.profile"]
  local cur = p and p.current()
  local set = cur and cur.policy or {}
  local out = {}
  for k, v in pairs(M.DEFAULTS) do out[k] = set[k] or v end
  return out
end

local boot, modules -- policy_boot.lua's text; {name = source} policy code may require

local function source_of(name)
  local path = assert(package.searchpath(name, package.path), name)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

-- While M.guarded runs: the path it guards and the check of the real path
-- read for it (msrt.reload's "under a watched directory").
local guard, guarded_path

--- Read a policy file (see the module doc).
-- @return text, real path of the file read | nil, err (not_found, io,
--   bad_config: a symlink, not a regular file, too large; or guard's)
function M.read(path)
  -- symlinks the caller named are followed (a config mounted through
  -- links works); the real path is opened without following one
  local text, real = core.read_policy(path, M.limits().file_bytes)
  if text and guard and path == guarded_path then
    local ok, err = guard(real)
    if not ok then return nil, err end
  end
  return text, real
end

--- Run fn(...) with check(real_path) -> true | nil, err applied to what
-- M.read reads for path meanwhile (the real path of its descriptor).
-- @return what fn returns
function M.guarded(path, check, fn, ...)
  guard, guarded_path = check, path
  local r = { pcall(fn, ...) }
  guard, guarded_path = nil, nil
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, table.maxn(r))
end

-- "path:0: why" unless the message already names a place.
local function placed(chunkname, msg)
  msg = tostring(msg)
  local path = chunkname:sub(2)
  if msg:sub(1, #path + 1) == path .. ":" then return msg end
  return ("%s:0: %s"):format(path, msg)
end

--- Run source in a fresh policy state.
-- @return value, ops (the state's calls: ops.strategy) | nil, err
--   (syntax; bad_config for an error or a spent budget, `file:line: why`)
function M.run(source, chunkname)
  local lim = M.limits()
  if not boot then
    boot = source_of("msrt.policy_boot")
    modules = { ["msrt.sandbox"] = source_of("msrt.sandbox"),
      ["msrt.strategies.rules"] = source_of("msrt.strategies.rules") }
  end
  local ok, ops = pcall(core.policy_state, boot, lim.memory_bytes, lim.time_ms, modules)
  if not ok then return nil, core.error("bad_config", placed(chunkname, ops)) end
  local value, serr
  ok, value, serr = pcall(ops.load, source, chunkname)
  if not ok then return nil, core.error("bad_config", placed(chunkname, value)) end
  if value == nil and serr then return nil, core.error("syntax", serr) end
  return value, ops
end

--- Read and run a policy file.
-- @return value, source, real path, ops | nil, err (as M.read, M.run;
--   err.file is path)
function M.load_file(path)
  local source, real = M.read(path)
  if not source then
    real.file = path
    return nil, real
  end
  local value, ops = M.run(source, "@" .. path)
  if value == nil and type(ops) == "table" and ops.code then
    ops.file = path
    return nil, ops
  end
  return value, source, real, ops
end

--- Call f(...) (a proxy from a policy file, or any function) protected.
-- @return true, results | nil, err (bad_config, the message placed in path)
function M.call(path, f, ...)
  local r = { pcall(f, ...) }
  if r[1] then return unpack(r, 1, table.maxn(r)) end
  return nil, core.error("bad_config", placed("@" .. path, r[2]), { file = path })
end

--- A strategy file: decide(event, view) and whether it is dynamic.
-- @return {decide, dynamic} | nil, err
function M.strategy_file(path)
  local value, source, _, ops = M.load_file(path)
  if value == nil and type(source) == "table" then return nil, source end
  local decide, dynamic = ops.strategy(value)
  if not decide then return nil, core.error("bad_config", path .. ":0: " .. dynamic, { file = path }) end
  -- (the view's group() is the host's and stays out: the sandbox makes its own)
  return { decide = decide, dynamic = dynamic }
end

return M
