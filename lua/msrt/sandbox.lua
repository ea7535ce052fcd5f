--- The library policy code sees (README "Policy files"): the pure parts
-- of the standard library and os.getenv, as copies (a file that assigns
-- string.rep = nil changes only its own). Used by the policy state
-- (policy_boot.lua, for policy files) and by an actor state for a tree
-- file's inline functions (actor_boot.lua).
-- @module msrt.sandbox

--- A fresh environment.
-- @tparam function getenv os.getenv
-- @tparam[opt] table guarded replacements for pcall, xpcall and resume
-- @treturn table
return function(getenv, guarded)
  local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
  end
  local env = {
    math = copy(math), string = copy(string), table = copy(table), bit = copy(bit),
    coroutine = copy(coroutine), os = { getenv = getenv },
    pairs = pairs, ipairs = ipairs, next = next, type = type, tonumber = tonumber,
    tostring = tostring, error = error, assert = assert, select = select, unpack = unpack,
    pcall = pcall, xpcall = xpcall, rawget = rawget, rawset = rawset, rawequal = rawequal,
    setmetatable = setmetatable, getmetatable = getmetatable, _VERSION = _VERSION,
  }
  env.string.dump = nil
  if guarded then
    env.pcall, env.xpcall, env.coroutine.resume = guarded.pcall, guarded.xpcall, guarded.resume
  end
  env._G = env
  return env
end
