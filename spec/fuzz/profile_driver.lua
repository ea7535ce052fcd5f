-- The Lua half of the "profile" fuzz target: spec/fuzz/fuzz_profile.c
-- documents the modes and invariants. Runs once per input in a fresh
-- LuaJIT state; a finding is raised as "INVARIANT: ...".
local lua_dir, mode, path, input = ...
local pairs, ipairs, type, tostring, error, pcall = pairs, ipairs, type, tostring, error, pcall
local floor = math.floor

package.path = lua_dir .. "/?.lua;" .. lua_dir .. "/?/init.lua"

-- msrt.core stand-in: error() checks its arguments as src/lua/lerror.c
-- does (luaL_checkstring + a known code name, from src/core/error.h).
local KNOWN = {}
for name in ([[ok internal nomem invalid_arg bad_config bad_profile syntax
  not_found io limit invalid_subject payload_too_big no_responders timeout
  mailbox_full closed actor_failed spawn_failed process_exit bad_input
  intensity start_failed strategy_failed unhealthy network]]):gmatch("%S+") do
  KNOWN[name] = true
end
local real_core = msrt_core_c
package.preload["msrt.core"] = function()
  return { read_policy = real_core.read_policy, policy_state = real_core.policy_state,
    policy_bytecode = real_core.policy_bytecode,
    overflow_names = real_core.overflow_names, error = function(code, message, fields)
    if not KNOWN[code] then error("bad argument #1 to 'error' (unknown error code)", 2) end
    if type(message) ~= "string" and type(message) ~= "number" then
      error("bad argument #2 to 'error' (string expected, got " .. type(message) .. ")", 2)
    end
    local e = { code = code, message = tostring(message) }
    if type(fields) == "table" then for k, v in pairs(fields) do e[k] = v end end
    return e
  end }
end
local P = require "msrt.profile"

local function check(cond, what)
  if not cond then error("INVARIANT: " .. what, 2) end
end

-- The libraries a sandbox hands out: a policy file must not change them.
local LIBS = { "string", "table", "math", "os" }
local function snapshot()
  local s = {}
  for _, lib in ipairs(LIBS) do
    local t = {}
    for k, v in pairs(_G[lib]) do t[k] = v end
    s[lib] = t
  end
  return s
end
local function same_libs(s)
  for lib, t in pairs(s) do
    for k, v in pairs(_G[lib]) do check(t[k] == v, lib .. "." .. tostring(k) .. " changed by a profile file") end
    for k, v in pairs(t) do check(_G[lib][k] == v, lib .. "." .. tostring(k) .. " changed by a profile file") end
  end
end

local function check_error(err, codes)
  check(type(err) == "table", "the error is a table, got " .. type(err))
  check(codes[err.code], "error code " .. tostring(err.code))
  check(type(err.message) == "string", "the error message is a string")
end

-- What validate must accept: the schema, read plainly.
local function conforms(t, fields)
  for k, v in pairs(t) do
    local spec = type(k) == "string" and fields[k]
    if not spec then return false end
    if spec.kind == "table" then
      if type(v) ~= "table" or not conforms(v, spec.fields) then return false end
    elseif spec.kind == "integer" then
      if type(v) ~= "number" or v ~= floor(v) or v < spec.lo or v > spec.hi then return false end
    elseif spec.kind == "enum" then
      local found = false
      for _, x in ipairs(spec.values) do found = found or x == v end
      if not found then return false end
    elseif type(v) ~= spec.kind then
      return false
    end
  end
  return true
end

local function check_validate(t, file, source)
  local ok, a, b = pcall(P.validate, t, file, source)
  check(ok, "validate raised: " .. tostring(a))
  check((a == true) == conforms(t, P.schema), "validate disagrees with the schema")
  if a == true then return true end
  check(a == nil, "validate returns true or nil, err")
  check_error(b, { bad_profile = true })
  local f = (file or "(profile)") .. ":"
  local function well_formed(line)
    return type(line) == "string" and line:sub(1, #f) == f and line:find("^%d+: ", #f + 1) ~= nil
  end
  check(well_formed(b.message), "message is file:line: problem, got " .. b.message)
  check(type(b.problems) == "table" and b.problems[1] == b.message, "problems starts with the message")
  for _, line in ipairs(b.problems) do check(well_formed(line), "problem line " .. tostring(line)) end
  return false
end

-- Mode 0: the input is a profile file.
local function load_mode()
  local snap = snapshot()
  local ok, t, src = pcall(P.load_file, path, { cpus = 2, memory = 2 ^ 31 })
  check(ok, "load_file raised: " .. tostring(t))
  same_libs(snap)
  if t == nil then
    check_error(src, { syntax = true, bad_profile = true })
  else
    check(type(t) == "table" and src == input, "load_file returns the table and its source")
    check(check_validate(t, path, src), "a loaded profile validates")
  end
end

-- Mode 1: the input is a recipe for a table given to validate.
local pos = 0
local function byte()
  pos = pos + 1
  return input:byte(pos) or 0
end
local NAMES = { "pause", "stepmul", "keepalive_ms", "backlog", "max", "nodelay" }
for k in pairs(P.schema) do NAMES[#NAMES + 1] = k end
table.sort(NAMES)
local NUMS = { 0, -1, 1, 0.5, 1 / 0, -1 / 0, 0 / 0, 2 ^ 31, 2 ^ 53, 10, 16, 15, 1000,
  1001, 1024, 1023, 65535, 65536, 256, 257, 268435456, 268435457, 1073741824,
  1073741825, 3600000, 86400000, 1e308 }
local STRS = { "block", "drop_oldest", "drop_newest", "error", "", "x" }
local function pick(list) return list[byte() % #list + 1] end
local function str()
  local n = byte() % 12
  local s = input:sub(pos + 1, pos + n)
  pos = pos + n
  return s
end
local function key()
  local b = byte() % 4
  if b <= 1 then return pick(NAMES) elseif b == 2 then return str() end
  return pick(NUMS)
end
local make
local function value(depth)
  local b = byte() % 6
  if b == 0 then return pick(NUMS)
  elseif b == 1 then return pick(STRS)
  elseif b == 2 then return str()
  elseif b == 3 then return byte() % 2 == 1
  elseif b == 4 and depth < 3 then return make(depth + 1)
  end
  return (byte() * 7919) % 300000 - 1000
end
function make(depth)
  local t = {}
  for _ = 1, byte() % 8 do
    local k = key()
    if k == k then t[k] = value(depth) end -- a NaN key is not a table key
  end
  return t
end

local function table_mode()
  local file = ({ "fuzz.lua", "(%s)[x].lua", false })[byte() % 3 + 1] or nil
  check_validate(make(0), file, input)
end

if mode == 0 then load_mode() else table_mode() end
