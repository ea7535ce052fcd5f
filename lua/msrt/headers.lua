--- Message headers: a table of name = value strings (NATS-style), and
-- their wire form in an envelope: "name\0value\0" pairs, which the C core
-- (the process bridge) can read without Lua. Names: printable ASCII without
-- ':' or spaces (as NATS headers); values: strings without CR, LF or NUL
-- (numbers are converted with tostring). Used by the hub and every actor.
-- @module msrt.headers
local M = {}

--- Encode a headers table.
-- @tparam table|nil h name = value
-- @return the wire string, or nil when h is nil or empty; or nil, message
--   naming the bad name or value
function M.encode(h)
  if h == nil then return nil end
  if type(h) ~= "table" then return nil, "headers must be a table of name = value strings" end
  local parts, n = {}, 0
  for k, v in pairs(h) do
    if type(k) ~= "string" or k == "" or k:find("[%z%c :\127-\255]") then
      return nil, ("invalid header name %q: printable ASCII without ':' or spaces"):format(tostring(k))
    end
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" or v:find("[%z\r\n]") then
      return nil, ("invalid value for header %q: a string without CR, LF or NUL"):format(k)
    end
    parts[n + 1], parts[n + 2] = k, v
    n = n + 2
  end
  if n == 0 then return nil end
  return table.concat(parts, "\0") .. "\0"
end

--- Decode the wire form (a string) into a new table.
function M.decode(s)
  local h = {}
  for k, v in s:gmatch("([^%z]*)%z([^%z]*)%z") do h[k] = v end
  return h
end

return M
