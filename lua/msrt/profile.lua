--- Tuning profiles: load, validate and resolve (docs/architecture.md "Tuning
-- profiles").
-- A profile is a Lua file returning a table, or a function of the machine
-- `{cpus = n, memory = bytes}` returning one. Fields it leaves out come from
-- `default.lua`. Names without a slash or ".lua" are looked up as
-- `msrt.profiles.<name>` on package.path; anything else is a file path.
-- @module msrt.profile
local core = require "msrt.core"
local schema = require "msrt.schema"

local M = {}

local int = schema.int

--- The fields a profile may set, with their types and ranges (units in the
-- names or in `unit`). Later parts of the runtime read these.
M.schema = {
  name = schema.string,
  workers = int(1, 256),                   -- worker threads for actors
  blocking_threads = int(1, 1024),         -- libuv threadpool (its max is 1024)
  stack_size = int(65536, 268435456, "bytes"), -- per worker thread
  batch = int(1, 1000000),                 -- messages per actor turn
  spin_us = int(0, 1000000),               -- idle spin before parking
  steal_wait_us = int(1, 10000000),        -- a far worker takes cheap actors only after they waited this long (src/sched/hop.h)
  mailbox_capacity = int(1, 1073741824),      -- messages per mailbox
  mailbox_bytes = int(1024, 2^50, "bytes"),   -- bytes queued per mailbox
  stdin_bytes = int(1024, 2^50, "bytes"),     -- bytes queued per process stdin
  overflow = schema.enum(core.overflow_names), -- core/overflow.h's names
  slice_ms = int(1, 3600000),              -- handler budget before "overloaded"
  shutdown_timeout_ms = int(0, 3600000),   -- graceful shutdown budget
  max_payload = int(1, 1073741824, "bytes"),  -- NATS' max_payload, default 1 MiB
  max_subject = int(16, 65536, "bytes"),
  max_subscriptions = int(1, 1000000000),  -- held by one actor; more ctx:subscribe: resource_exhausted
  max_line_bytes = int(1024, 1073741824, "bytes"), -- JSON-lines framing
  gc = schema.fields{
    pause = int(10, 1000),                 -- LuaJIT setpause, per actor state
    stepmul = int(10, 10000),              -- LuaJIT setstepmul
  },
  queues = schema.fields{                  -- durable queues (msrt.queue)
    data_dir = schema.string,              -- default store directory (DATA_DIR/queues/NAME.db)
    commit_ms = int(0, 60000),             -- group commits over this period; 0: one per loop turn
    synchronous = schema.enum{ "full", "normal" }, -- SQLite's: survive power loss | a host crash
    spin_us = int(0, 1000000),             -- a queue's writer thread spins this long for the next commit before it sleeps
  },
  policy = schema.fields{                  -- policy files (msrt.policy)
    time_ms = int(1, 3600000),             -- wall clock per run or call
    memory_bytes = int(1048576, 68719476736, "bytes"), -- held by one file's state
    file_bytes = int(1, 1073741824, "bytes"), -- largest file read
  },
  nats = schema.fields{                    -- the NATS bridge (msrt.nats)
    reconnect_buffer = int(0, 2147483647, "bytes"), -- kept while disconnected; beyond: dropped_disconnected
    reconnect_wait_ms = int(1, 3600000),   -- between attempts on one server
    pending_msgs = int(1, 100000000),      -- per NATS subscription before a slow consumer
  },
  connections = schema.fields{
    keepalive_ms = int(0, 86400000),
    backlog = int(1, 65535),
    max = int(1, 1000000),                 -- open at once, per listener (web, ctl)
    nodelay = schema.boolean,
    read_timeout_ms = int(1, 3600000),     -- a request must arrive within this of the connection
    idle_timeout_ms = int(1, 3600000),     -- no byte in, or the answer not taken, for this long: closed
    max_pending = int(1024, 2^40, "bytes"), -- held for one NATS client before it is a slow consumer
    write_deadline_ms = int(1, 3600000),   -- a NATS client's socket refusing bytes this long: slow consumer
    max_subscriptions = int(0, 1000000000), -- held by one NATS client; 0 = no limit (nats-server's default)
  },
}

-- key as a Lua pattern that matches only itself: an unknown key is any
-- string the file chose ("(", "%"), and LuaJIT patterns take no raw NUL.
local function literal(key)
  return (key:gsub("[^%w_]", function(c) return c == "\0" and "%z" or "%" .. c end))
end

-- The line of `key =` in the file's source, for messages; 0 when unknown.
local function line_of(source, key)
  if not source then return 0 end
  local n = 0
  key = literal(key)
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find("%f[%w_]" .. key .. "%s*=") or line:find("%[%s*[\"']" .. key .. "[\"']%s*%]%s*=") then
      return n
    end
  end
  return 0
end

--- Validate a profile table.
-- @tparam table t the profile's fields
-- @tparam[opt] string file the file it came from, for messages
-- @tparam[opt] string source the file's text, to find lines
-- @return true, or nil and an error (code `bad_profile`) whose message is
--   `file:line: problem` for the first problem and whose `problems` field
--   lists them all.
function M.validate(t, file, source)
  local ok, _, problems = schema.check(t, M.schema)
  if ok then return true end
  local lines = {}
  for i, p in ipairs(problems) do
    lines[i] = ("%s:%d: %s"):format(file or "(profile)", line_of(source, p.key), p.message)
  end
  return nil, core.error("bad_profile", lines[1], { problems = lines, file = file })
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

--- Find a profile file by name or path.
-- @treturn string|nil path, or nil and a `not_found` error listing the known names
function M.find(name)
  if name:find("/") or name:find("%.lua$") then
    local f = io.open(name)
    if f then f:close() return name end
    return nil, core.error("not_found", ("profile file '%s' not found"):format(name))
  end
  local path = package.searchpath("msrt.profiles." .. name, package.path)
  if path then return path end
  return nil, core.error("not_found", ("unknown profile '%s' (known: %s)"):format(name, table.concat(M.list(), ", ")))
end

--- Names of the profiles that ship in msrt/profiles/.
function M.list()
  local dir = package.msrt_dir and (package.msrt_dir .. "/msrt/profiles") or nil
  local names = {}
  if dir then
    local p = io.popen('ls "' .. dir .. '" 2>/dev/null')
    for f in p:lines() do
      local n = f:match("^([%w_]+)%.lua$")
      if n then names[#names + 1] = n end
    end
    p:close()
  end
  table.sort(names)
  return names
end

--- Load one profile file (no merging with the default), run as a policy
-- file (msrt.policy: sandboxed, bounded; a function of the machine is
-- called there too).
-- @treturn table|nil the fields, or nil and an error (`not_found`, `io`,
--   `syntax`, `bad_profile`)
function M.load_file(path, machine)
  local policy = require "msrt.policy"
  local t, source = policy.load_file(path)
  if t == nil and type(source) == "table" then
    if source.code == "bad_config" then source = core.error("bad_profile", source.message, { file = path }) end
    return nil, source
  end
  if type(t) == "function" then
    local ok, v = policy.call(path, t, machine)
    if not ok then return nil, core.error("bad_profile", v.message, { file = path }) end
    t = v
  end
  if type(t) ~= "table" then
    return nil, core.error("bad_profile", ("%s:0: a profile returns a table or a function of the machine, not %s"):format(path, type(t)), { file = path })
  end
  local valid, verr = M.validate(t, path, source)
  if not valid then return nil, verr end
  return t, source
end

local function merge(base, over)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over) do
    if type(v) == "table" and type(out[k]) == "table" then out[k] = merge(out[k], v) else out[k] = v end
  end
  return out
end

--- Resolve a profile by name or path into a complete table: the default's
-- fields overlaid with the profile's, `workers` overridden by --workers.
-- @tparam[opt="default"] string name
-- @treturn table|nil the profile, or nil and an error
function M.resolve(name, machine)
  machine = machine or core.machine()
  local dpath = assert(M.find("default"))
  local base, err = M.load_file(dpath, machine)
  if not base then return nil, err end
  local t = base
  name = name or "default"
  if name ~= "default" then
    local path, ferr = M.find(name)
    if not path then return nil, ferr end
    local over, lerr = M.load_file(path, machine)
    if not over then return nil, lerr end
    t = merge(base, over)
  end
  t.name = t.name or name
  local cli = core.options()
  if cli.workers then t.workers = cli.workers end
  return t
end

local current, boot_threads

--- The profile in force (a copy).
function M.current() return current and merge(current, {}) end

--- Make t the profile in force: size the blocking pool when it has not
-- started yet. Returns true, or true and a warning string when a field
-- could not apply live.
function M.apply(t)
  local warning
  if current and t.blocking_threads ~= current.blocking_threads and core.threads() > boot_threads then
    warning = ("blocking_threads %d needs a restart: the libuv threadpool already runs %d threads (use --profile)")
      :format(t.blocking_threads, current.blocking_threads)
    t = merge(t, { blocking_threads = current.blocking_threads })
  else
    core.set_blocking_threads(t.blocking_threads)
  end
  current = t
  return true, warning
end

-- Fields a reload applies while the runtime runs (msrt_rt_tune); the
-- others need a restart.
local LIVE = { batch = true, spin_us = true, steal_wait_us = true, mailbox_capacity = true, mailbox_bytes = true,
  stdin_bytes = true, gc = true, connections = true, max_subscriptions = true }

local same = schema.same

--- Apply a reloaded profile t (resolved): the live fields (batch, spin_us,
-- steal_wait_us, mailbox_capacity and mailbox_bytes for actors made from now on,
-- stdin_bytes for processes made from now on, gc for actor states made
-- from now on, max_subscriptions for every ctx:subscribe from now on,
-- connections) take effect; the others stay as they are.
-- @return true, and the sorted names of the changed fields that need a
--   restart
function M.reload_apply(t)
  local merged, needs = merge(current, {}), {}
  for k, v in pairs(t) do
    if LIVE[k] then merged[k] = v
    elseif k ~= "name" and not same(v, current[k]) then needs[#needs + 1] = k end
  end
  current = merged
  core.rt_tune(merged)
  require("msrt.held").call("msrt.listen", "retune", merged)
  table.sort(needs)
  return true, needs
end

--- Called by msrt-lua before the script: resolve --profile, $MSRT_PROFILE
-- or "default" and apply it.
function M.boot()
  boot_threads = core.threads()
  local name = core.options().profile or os.getenv("MSRT_PROFILE")
  if name == "" then name = nil end
  local t, err = M.resolve(name)
  if not t then return nil, err end
  return M.apply(t)
end

return M
