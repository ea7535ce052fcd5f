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
  -- the first pair concatenated, any others in the buffer: one header (a
  -- Msg-Id, a timestamp) cost ~3,000 instructions through the buffer's
  -- methods (LuaJIT's interpreter ran them here), ~1,500 concatenated
  local s, many
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
    if not s then
      s = k .. "\0" .. v .. "\0"
    else
      if not many then many = true out:reset() out:put(s) end
      out:put(k, "\0", v, "\0")
    end
  end
  if many then return out:tostring() end
  return s -- (nil: no pairs)
end

--- Decode the wire form (a string) into a new table.
function M.decode(s)
  -- plain finds, not gmatch: LuaJIT compiles these (gmatch's iterator is
  -- not), and headers are decoded for every message that has them. The
  -- first pair outside the loop: one header (a message's own) decodes
  -- with no loop, ~500 instructions less.
  local a = find(s, "\0", 1, true)
  local b = a and find(s, "\0", a + 1, true)
  if not b then return {} end
  local h, i = { [sub(s, 1, a - 1)] = sub(s, a + 1, b - 1) }, b + 1
  while i <= #s do
    a = find(s, "\0", i, true)
    b = a and find(s, "\0", a + 1, true)
    if not b then return h end
    h[sub(s, i, a - 1)] = sub(s, a + 1, b - 1)
    i = b + 1
  end
  return h
end

return M
