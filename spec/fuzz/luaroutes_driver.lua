-- The Lua half of the "luaroutes" fuzz target: spec/fuzz/fuzz_luaroutes.c
-- documents the recipe and the invariants. Runs once per input in a fresh
-- LuaJIT state; a finding is raised as "INVARIANT: ...".
local _, core, strict, input = ...
local pcall, type, tostring, error = pcall, type, tostring, error

local function check(cond, what)
  if not cond then error("INVARIANT: " .. what, 2) end
end

local pos = 0
local function byte()
  pos = pos + 1
  return input:byte(pos) or 0
end
local function pick(list) return list[byte() % #list + 1] end
local function str()
  local n = byte() % 10
  local s = input:sub(pos + 1, pos + n)
  pos = pos + n
  return s
end

local PATTERNS = { "a.>", "a.*", "legacy.*.task", "*", ">", "a.*.*", "canary.>",
  "agents.*.*.task", "a..b", "", " x", "a.>.b", "a.b\0c" }
local TEMPLATES = { "tasks.$1", "v1.>", "b.$1.$2", "$1", "x.*", "$3", "a b", "",
  "$SYS.x", "$0", "dead.letters", "x.$1.>", "$1$1.$2" }
local WEIGHTS = { 1, 0, -1, 0.5, 1 / 0, 0 / 0, 1e308, 90, 10, "1", true }

-- A field value: usually from the pool, sometimes made up or the wrong type.
local function field(pool)
  local b = byte() % 8
  if b <= 3 then return pick(pool)
  elseif b == 4 then return str()
  elseif b == 5 then return byte()
  elseif b == 6 then return {}
  end
  return nil
end

local function target()
  if byte() % 8 == 0 then return field(TEMPLATES) end
  local t = { to = field(TEMPLATES), weight = pick(WEIGHTS) }
  if byte() % 8 == 0 then t.extra = 1 end
  return t
end

local nul_key = false -- a rule has a key with a NUL byte in it

local function rule()
  if byte() % 10 == 0 then -- not a table (nor nil: a hole would end the list)
    local v = field(PATTERNS)
    if v == nil then return false end
    return v
  end
  local r = { match = field(PATTERNS) }
  local action = byte() % 4
  if action == 0 or byte() % 8 == 0 then r.rewrite = field(TEMPLATES) end
  if action == 1 then
    r.split = {}
    for i = 1, byte() % 4 do r.split[i] = target() end
  end
  if action == 2 or byte() % 4 == 0 then r.dead_letter = field(TEMPLATES) end
  local odd = byte() % 16
  if odd == 0 then r.extra = true elseif odd == 1 then r["match\0x"] = "a"; nul_key = true end
  return r
end

-- A proxy: every read of a field builds a fresh value (strings no table
-- holds, split lists that grow) after a full collection.
local function proxy(r)
  local reads = 0
  return setmetatable({}, { __index = function(_, k)
    reads = reads + 1
    collectgarbage()
    local v = type(r) == "table" and r[k]
    if k == "split" and type(v) == "table" then
      local grown = {}
      for i = 1, #v * reads + reads do grown[i] = { to = "b." .. reads .. "." .. i, weight = 1 } end
      return grown
    end
    if type(v) == "string" then return reads .. "." .. v end -- a new string each time
    return v
  end })
end

local rules = {}
for i = 1, byte() % 6 do rules[i] = rule() end
if byte() % 2 == 1 then -- rules read through __index (lroutes.c reads them raw)
  for i = 1, #rules do rules[i] = proxy(rules[i]) end
end
local max = pick({ 0, 0, 16, 4096 })

-- Compile; check the shape of the answer. Returns the rule it names or 0.
local function compile(list)
  local ok, t, err = pcall(core.routes_compile, list, max)
  check(ok, "routes_compile raised: " .. tostring(t))
  if t then
    check(type(t) == "userdata" and err == nil, "compiled table is userdata")
    return 0
  end
  check(type(err) == "table" and err.code == "bad_config", "error is bad_config, got " .. tostring(err and err.code))
  check(type(err.message) == "string", "error message")
  check(err.rule == nil or (err.rule >= 1 and err.rule <= #list), "err.rule is a rule's position")
  return err.rule or -1
end

local whole = compile(rules)
if getmetatable(rules[1] or {}) then return end -- proxies: no crash is the check
local first = 0
for i = 1, #rules do
  if compile({ rules[i] }) ~= 0 then first = i break end
end
check((whole == 0) == (first == 0), ("list refused at rule %d, alone the first refused is %d"):format(whole, first))
if whole > 0 then check(compile({ rules[whole] }) ~= 0, ("list refused at rule %d, which compiles alone"):format(whole)) end
-- The refusal names the first bad rule, as routes.c does (also when a
-- later rule's fields are wrong and an earlier rule's pattern or action).
check(whole == first, ("list refused at rule %d, alone the first refused is %d"):format(whole, first))
-- A key with a NUL in it is an unknown field, not the field its first
-- bytes spell (check_keys compares lengths too).
if nul_key then check(whole ~= 0, "a key holding a NUL byte was taken for a known field") end
