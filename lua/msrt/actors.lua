--- Actor specs and handles on the hub (docs/architecture.md "Threads and the
-- path of a message").
-- Internal: the public face is `msrt.actor` (init.lua). Hub thread only.
-- @module msrt.actors
local core = require "msrt.core"
local args = require "msrt.args"
local schema = require "msrt.schema"
local hub = require "msrt.hub"
local buffer = require "string.buffer"

local M = {}

local live = {}        -- actor id -> handle
local live_count = 0
local module_code = {} -- module name -> bytecode (compiled once)
local HANDLERS = { "init", "handle", "terminate" }

local function bad(msg) return nil, core.error("invalid_arg", msg) end

-- Bytecode of a module found on package.path; syntax errors surface here,
-- on the hub, with file:line.
local function compile_module(name)
  if module_code[name] then return module_code[name] end
  local path = package.searchpath(name, package.path)
  if not path then return nil, core.error("not_found", ("actor module '%s' not found on package.path"):format(name)) end
  local chunk, err = loadfile(path)
  if not chunk then return nil, core.error("syntax", err) end
  module_code[name] = string.dump(chunk)
  return module_code[name]
end

--- Forget compiled modules (a reload makes new actors use new code).
function M.forget(name) module_code[name] = nil end

-- A handler given as a function: it runs in another Lua state, so it may
-- not capture locals (upvalues); it is carried as bytecode.
-- A function from a policy file (a tree file's inline handler) comes as
-- its bytecode and true: the actor runs it sandboxed (actor_boot.lua).
local function dump_fn(key, fn)
  local pbc, why = core.policy_bytecode(fn)
  if pbc then return pbc, true end
  if why then return nil, core.error("invalid_arg", key .. " " .. why) end
  local nups = debug.getinfo(fn, "u").nups
  if nups > 0 then
    local names = {}
    for i = 1, nups do names[i] = debug.getupvalue(fn, i) end
    return nil, core.error("invalid_arg", ("%s has %d upvalue(s) (%s): actor functions run in their own Lua state and cannot capture locals; pass values in args"):format(key, nups, table.concat(names, ", ")))
  end
  return string.dump(fn)
end

--- The fields of an actor spec (msrt.actor documents them).
M.SPEC = {
  name = schema.string, module = schema.string, args = schema.any,
  init = schema.func, handle = schema.func, terminate = schema.func,
  instances = schema.int(1, nil), capacity = schema.int(1, nil, "messages"),
  mailbox_bytes = schema.int(1, nil, "bytes"),
  overflow = schema.enum(core.overflow_names), -- core/overflow.h's names
  subscribe = schema.either(schema.string, schema.list(schema.string)), queue = schema.string,
  consume = schema.string, max_ack_pending = schema.int(1, nil, "messages"),
}

local function validate(spec)
  local ok, why = schema.check(spec, M.SPEC, "actor spec")
  if not ok then return bad(why) end
  if spec.name == nil then return bad("actor spec needs a name (string)") end
  if not spec.module and not spec.handle then
    return bad("actor spec needs a module name or a handle function")
  end
  return true
end

local function encode_spec(spec, notify_started)
  local s = { name = spec.name, module = spec.module, args = spec.args, fns = {}, notify_started = notify_started }
  if spec.module then
    local code, err = compile_module(spec.module)
    if not code then return nil, err end
    s.code = code
  end
  for _, k in ipairs(HANDLERS) do
    if spec[k] ~= nil then
      if type(spec[k]) ~= "function" then return bad(k .. " must be a function") end
      local bc, err = dump_fn(k, spec[k])
      if not bc then return nil, err end
      s.fns[k] = bc
      if err then s.sandboxed = s.sandboxed or {} s.sandboxed[k] = true end
    end
  end
  local ok, enc = pcall(buffer.encode, s)
  if not ok then return bad("args cannot be sent to another Lua state: " .. tostring(enc)) end
  return enc
end

local Handle = {}
Handle.__index = Handle

--- Ask every instance to stop (reason defaults to "normal").
function Handle:stop(reason)
  args.check(reason == nil or type(reason) == "string", 1, "stop", "reason string expected")
  for _, a in pairs(self.alive) do core.actor_stop(a.cell, reason or "normal") end
end

--- Wait (yielding the calling coroutine) until every instance has exited.
-- @return the list of exit records {id, name, reason, normal}
function Handle:wait()
  if next(self.alive) == nil then return self.exits end
  hub.check_wait("handle:wait()")
  local co = coroutine.running()
  self.waiters[#self.waiters + 1] = co
  coroutine.yield()
  return self.exits
end

--- Call fn(record) for each instance's exit.
function Handle:on_exit(fn)
  args.check(type(fn) == "function", 1, "on_exit", "function expected")
  self.exit_fns[#self.exit_fns + 1] = fn
end

--- Call fn() once every instance's init has returned (at once if they
-- have). Only for handles made with opts.notify_started; an instance that
-- exits first means it never comes (watch on_exit for that).
function Handle:on_started(fn)
  if self.unstarted == 0 then return fn() end
  self.start_fns[#self.start_fns + 1] = fn
end

--- Mailbox depth (messages) and high-water mark, summed over live
-- instances, and the bytes they hold (msrt_env_size of each message).
-- @return depth, high, bytes
function Handle:mailbox()
  local depth, high, bytes = 0, 0, 0
  for _, a in pairs(self.alive) do
    local d, h, b = core.actor_mailbox(a.cell)
    depth, high, bytes = depth + d, math.max(high, h), bytes + b
  end
  return depth, high, bytes
end

--- Router ids of the live instances' spec subscriptions (not those made
-- with ctx:subscribe): readiness takes them out of their queue groups.
function Handle:subscriptions()
  local out = {}
  for _, a in pairs(self.alive) do
    for _, sid in ipairs(a.subs) do out[#out + 1] = sid end
  end
  return out
end

--- Ids of the live instances.
function Handle:ids()
  local ids = {}
  for id in pairs(self.alive) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

local function exited(handle, id, rec)
  local a = handle.alive[id]
  if not a then return end
  handle.alive[id] = nil
  if a.unconsume then a.unconsume() end -- its queue messages go to others at once
  core.actor_release(a.cell)
  live[id] = nil
  live_count = live_count - 1
  if live_count == 0 then
    core.keep_alive(false)
    -- the fleet has ended: what its states freed of the hub's heap goes
    -- back now (src/core/mem.h msrt_mem_state_collect)
    core.actor_collect()
  end
  if not rec.normal then -- a crash report, as OTP's logger gives one
    io.stderr:write(("ERROR actor %s#%s exited: %s\n"):format(handle.name, tostring(id), tostring(rec.reason)))
  end
  handle.exits[#handle.exits + 1] = rec
  for _, fn in ipairs(handle.exit_fns) do fn(rec) end
  if next(handle.alive) == nil then
    local ws = handle.waiters
    handle.waiters = {}
    for _, co in ipairs(ws) do
      local ok, err = coroutine.resume(co)
      if not ok then core.report("error in callback", debug.traceback(co, tostring(err))) end
    end
  end
end

-- An instance's init has returned: the handle's start_fns run once all have.
local function started(id)
  local handle = live[id]
  local a = handle and handle.alive[id]
  if not a or a.started then return end
  a.started = true
  handle.unstarted = handle.unstarted - 1
  if handle.unstarted > 0 then return end
  local fns = handle.start_fns
  handle.start_fns = {}
  for _, fn in ipairs(fns) do fn() end
end
hub.on_started(started)

--- Start actors from a spec (see msrt.actor). opts.notify_started: each
-- instance tells the hub when its init has returned (Handle:on_started;
-- for supervisors, which start a child once the one before has started).
-- @return handle | nil, err
function M.new(spec, opts)
  local ok, err = validate(spec)
  if not ok then return nil, err end
  ok, err = hub.start()
  if not ok then return nil, err end
  local notify = opts and opts.notify_started or nil
  local enc, eerr = encode_spec(spec, notify)
  if not enc then return nil, eerr end
  local subscribe = spec.subscribe
  if type(subscribe) == "string" then subscribe = { subscribe } end
  local handle = setmetatable({ name = spec.name, alive = {}, exits = {}, exit_fns = {}, waiters = {},
    unstarted = notify and (spec.instances or 1) or 0, start_fns = {} }, Handle)
  for _ = 1, spec.instances or 1 do
    -- a consumer of a durable queue: each instance gets its deliveries on
    -- a private subject of its own (queue.lua consume_actor)
    local subs, private = subscribe, nil
    if spec.consume then
      local token, terr = core.token()
      if not token then handle:stop("shutdown") return nil, terr end
      private = "_QDLV." .. token
      subs = { private, unpack(subscribe or {}) }
    end
    local id, cell, sids = core.actor_new(spec.name, enc, spec.capacity, spec.overflow, subs, spec.queue, spec.mailbox_bytes)
    if not id then
      handle:stop("shutdown")
      return nil, cell
    end
    handle.alive[id] = { cell = cell, subs = sids }
    if private then
      local unconsume, qerr = require("msrt.queue").consume_actor(spec.consume, private, spec.max_ack_pending)
      if not unconsume then
        handle:stop("shutdown")
        return nil, qerr
      end
      handle.alive[id].unconsume = unconsume
    end
    live[id] = handle
    live_count = live_count + 1
    hub.on_exit(id, function(aid, rec) exited(handle, aid, rec) end)
  end
  core.keep_alive(true)
  return handle
end

--- The handle an actor id belongs to, or nil.
function M.find(id) return live[id] end

--- Mailbox depth summed over live actors and the highest high-water mark
-- of any (for operator tools). @return depth, high
function M.mailboxes()
  local depth, high, seen = 0, 0, {}
  for _, handle in pairs(live) do
    if not seen[handle] then
      seen[handle] = true
      local d, h = handle:mailbox()
      depth, high = depth + d, math.max(high, h)
    end
  end
  return depth, high
end

--- Stop every live actor (used by shutdown).
function M.stop_all(reason)
  for id, handle in pairs(live) do
    local a = handle.alive[id]
    if a then core.actor_stop(a.cell, reason) end
  end
end

--- After the runtime has stopped (workers joined): drop the hub's
-- reference on every cell whose exit record never reached the hub (an
-- actor stopped just before shutdown), so nothing is left allocated.
function M.release_all()
  for id, handle in pairs(live) do
    local a = handle.alive[id]
    if a then
      handle.alive[id] = nil
      core.actor_release(a.cell)
    end
    live[id] = nil
  end
  live_count = 0
end

hub.on_overload(function(id, ms)
  local handle = live[id]
  local name = handle and handle.name or "?"
  io.stderr:write(("WARN actor %s#%d overloaded: one turn has run for %d ms (slice_ms)\n"):format(name, id, ms))
  hub.publish("msrt.actor." .. name .. ".overloaded", { id = id, ms = ms }, {})
end)

return M
