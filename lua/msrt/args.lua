--- Argument checks of the public functions (README "The Lua API"): a
-- wrong type raises at the caller's file:line, meaning the first frame
-- outside msrt's own Lua files however deep in msrt the check is made;
-- data that cannot be sent is named with where it sits (`data.handler:
-- function`). The hub's state (frames are told apart by package.msrt_dir);
-- actor states use M.unsendable.
-- @module msrt.args
-- msrt.null (a NULL lightuserdata) travels; actor states have no msrt.core
local has_core, core = pcall(require, "msrt.core")
local NULL = has_core and core.json_null or nil

local M = {}

local own = package.msrt_dir and ("@" .. package.msrt_dir .. "/msrt/") or nil

-- Whether a frame's source is one of msrt's Lua files.
local function internal(source)
  return own ~= nil and source:sub(1, #own) == own
end

--- Raise msg at the first caller outside msrt's Lua files.
function M.raise(msg)
  -- debug.getinfo's level k and error's level k name the same frame
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or not internal(info.source) then break end
    level = level + 1
  end
  error(msg, level)
end

--- Raise `bad argument #n to 'fname' (msg)` at the caller unless ok.
function M.check(ok, n, fname, msg)
  if not ok then M.raise(("bad argument #%d to '%s' (%s)"):format(n, fname, msg)) end
end

local PLAIN = { ["nil"] = true, boolean = true, number = true, string = true }

-- data.key, data[1], data["a b"]
local function index(path, k)
  if type(k) == "string" and k:find("^[%a_][%w_]*$") then return path .. "." .. k end
  if type(k) == "string" then return ("%s[%q]"):format(path, k) end
  return ("%s[%s]"):format(path, tostring(k))
end

local function find(v, path, seen)
  local t = type(v)
  if PLAIN[t] or v == NULL then return nil end
  if t == "cdata" then return nil end -- 64-bit integers travel; the encoder decides
  if t ~= "table" then return ("%s: %s"):format(path, t) end
  if seen[v] then return nil end
  seen[v] = true
  for k, x in pairs(v) do
    if not PLAIN[type(k)] then return ("%s: a %s as a key"):format(path, type(k)) end
    local bad = find(x, index(path, k), seen)
    if bad then return bad end
  end
  return nil
end

--- Where in v (named name) the first value a message cannot carry sits
-- (functions, coroutines, userdata other than msrt.null), as
-- "data.handler: function"; nil when there is none. (Actor states too.)
function M.unsendable(v, name)
  return find(v, name, {})
end

--- Raise, at the caller, that data (argument #n of fname) cannot be sent,
-- naming where it sits (M.unsendable), else the encoder's message why.
function M.cannot_send(data, why, n, fname)
  M.raise(("bad argument #%d to '%s' (%s cannot be sent: a message carries nil, booleans, numbers, strings, msrt.null and tables of them)")
    :format(n, fname, find(data, "data", {}) or tostring(why)))
end

return M
