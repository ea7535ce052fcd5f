--- Message headers: a table of name = value strings (NATS-style), and
-- their wire form in an envelope: "name\0value\0" pairs, which the C core
-- (the process bridge) can read without Lua. Names: printable ASCII without
-- ':' or spaces (as NATS headers); values: strings without CR, LF or NUL
-- (numbers are converted with tostring). Used by the hub and every actor.
-- @module msrt.headers
local buffer = require "string.buffer"
local find, sub = string.find, string.sub

local M = {}
local out = buffer.new() -- reused by encode (one thread: each state has its own)
-- Names encode found valid, checked once each (the pattern match cost a
-- durable message's publish ~3% on the hub); at most GOOD_MAX of them.
local good, ngood, GOOD_MAX = {}, 0, 64

--- Encode a headers table.
-- @tparam table|nil h name = value
-- @return the wire string, or nil when h is nil or empty; or nil, message
--   naming the bad name or value
function M.encode(h)
  if h == nil then return nil end
  if type(h) ~= "table" then return nil, "headers must be a table of name = value strings" end
  local n = 0
  out:reset()
  for k, v in pairs(h) do
    if not good[k] then
      if type(k) ~= "string" or k == "" or k:find("[%z%c :\127-\255]") then
        return nil, ("invalid header name %q: printable ASCII without ':' or spaces"):format(tostring(k))
      end
      if ngood < GOOD_MAX then good[k], ngood = true, ngood + 1 end
    end
    if type(v) == "number" then v = tostring(v) end
    -- (plain finds: LuaJIT compiles them; a pattern's runs in C)
    if type(v) ~= "string" or find(v, "\0", 1, true) or find(v, "\r", 1, true) or find(v, "\n", 1, true) then
      return nil, ("invalid value for header %q: a string without CR, LF or NUL"):format(k)
    end
    out:put(k, "\0", v, "\0")
    n = n + 1
  end
  if n == 0 then return nil end
  return out:tostring()
end

--- Decode the wire form (a string) into a new table.
function M.decode(s)
  -- plain finds, not gmatch: LuaJIT compiles these (gmatch's iterator is
  -- not), and headers are decoded for every message that has them
  local h, i = {}, 1
  while true do
    local a = find(s, "\0", i, true)
    local b = a and find(s, "\0", a + 1, true)
    if not b then return h end
    h[sub(s, i, a - 1)] = sub(s, a + 1, b - 1)
    i = b + 1
  end
end

return M
