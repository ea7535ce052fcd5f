--- The first code of a policy state (src/lua/lpolicy.h), the host's own:
-- it makes the sandbox that policy files run in and returns what the host
-- calls (lua/msrt/policy.lua). Runs in the policy state, never the hub's.
-- Argument: {module name = source}: msrt.sandbox (the library policy
-- code sees) and the modules policy code may require (pure ones:
-- msrt.strategies.rules).
local modules = ...
local getenv, spent = getenv, spent
local load, type, pairs, ipairs, error, tostring, setmetatable =
  load, type, pairs, ipairs, error, tostring, setmetatable

-- Nothing in this state reads files, compiles code or dumps it but the
-- loader below: gone for good, not merely hidden from the sandbox.
for _, k in ipairs({ "getenv", "spent", "load", "loadstring", "loadfile", "dofile", "print",
  "collectgarbage", "gcinfo", "newproxy", "module", "getfenv", "setfenv" }) do _G[k] = nil end
string.dump = nil

-- A pcall, xpcall or coroutine.resume in policy code does not catch the
-- time budget's error: once it is spent, a failure is raised on.
local function pass(ok, ...)
  if not ok and spent() then error((...), 0) end
  return ok, ...
end
local pcall, xpcall, resume = pcall, xpcall, coroutine.resume
local guarded = {
  pcall = function(...) return pass(pcall(...)) end,
  xpcall = function(...) return pass(xpcall(...)) end,
  resume = function(...) return pass(resume(...)) end,
}

local make_env = assert(load(modules["msrt.sandbox"], "@msrt.sandbox", "t"))()

-- The sandbox of one file, with require for the modules listed.
local function sandbox()
  local env = make_env(getenv, guarded)
  local loaded = {}
  env.require = function(name)
    if loaded[name] then return loaded[name] end
    local source = type(name) == "string" and name ~= "msrt.sandbox" and modules[name]
    if not source then error(("module '%s' is not available to policy code"):format(tostring(name)), 2) end
    local chunk = assert(load(source, "@" .. name, "t", env))
    loaded[name] = chunk(name) or true
    return loaded[name]
  end
  return env
end

local ops = {}

--- Compile source (text only: a binary chunk is refused) and run it in a
-- fresh sandbox. @return its value | nil, message (syntax)
function ops.load(source, chunkname)
  if source:byte(1) == 27 then return nil, chunkname:sub(2) .. ":0: binary chunks are refused" end
  local chunk, err = load(source, chunkname, "t", sandbox())
  if not chunk then return nil, err end
  return chunk()
end

-- view.group(which, id): the ids a failure of id affects, in start order
-- (as the host's src/super does: one = id, rest = id and those after it,
-- all = every child).
local function group_of(view)
  return function(which, id)
    local out, seen = {}, false
    for _, c in ipairs(view.children or {}) do
      seen = seen or c.id == id
      if which == "all" or (which == "rest" and seen) or (which == "one" and c.id == id) then
        out[#out + 1] = c.id
      end
    end
    return out
  end
end

--- A strategy file's value as the host uses it: decide(event, view) with
-- view.group restored, and whether it is dynamic.
-- @return decide, dynamic | nil, why
function ops.strategy(v)
  local decide = type(v) == "function" and v or type(v) == "table" and v.decide
  if type(decide) ~= "function" then return nil, "a strategy file returns a function or a table with decide" end
  return function(event, view)
    view.group = group_of(view)
    return decide(event, view)
  end, type(v) == "table" and v.dynamic and true or false
end

return ops
