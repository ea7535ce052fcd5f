--- JSON for Lua code (`msrt.json`): the rules the process edge uses for
-- a child's JSON lines and what is written to its stdin (src/proc/codec.h,
-- on the cJSON the runtime links), so a script needs no other JSON
-- library and sees exactly what its agents see.
-- Decode: valid UTF-8 only; objects become tables (of a repeated key the
-- last wins), arrays sequences, JSON null `msrt.null`; nesting up to 100
-- levels; a NUL byte (raw or `\u0000`) is refused rather than cut short.
-- Encode: a table whose keys are exactly 1..n is an array, any other an
-- object (number and boolean keys written as strings), the empty table
-- `{}`; NaN and infinities are null; bytes that are not UTF-8 become
-- U+FFFD; functions, coroutines and userdata other than `msrt.null`
-- cannot be written.
-- @module msrt.json
local core = require "msrt.core"
local args = require "msrt.args"
local buffer = require "string.buffer"

local M = {}

--- JSON null (the NULL lightuserdata, as lua-cjson's cjson.null).
M.null = core.json_null

--- The JSON text of value.
-- @return string | nil, err (invalid_arg naming what cannot be written and
--   where, e.g. "value.handler: function")
function M.encode(value)
  local ok, bytes = pcall(buffer.encode, value)
  if not ok then
    return nil, core.error("invalid_arg", ("cannot be written as JSON: %s")
      :format(args.unsendable(value, "value") or tostring(bytes)))
  end
  return core.json_encode(bytes)
end

--- The Lua value of a JSON text (surrounding blanks allowed).
-- @return value | nil, err (invalid_arg: "invalid JSON at byte 7",
--   "invalid UTF-8 at byte 3", nesting, NUL; nomem)
function M.decode(text)
  args.check(type(text) == "string", 1, "decode", "string expected, got " .. type(text))
  local bytes, err = core.json_decode(text)
  if not bytes then return nil, err end
  local ok, v = pcall(buffer.decode, bytes)
  if not ok then return nil, core.error("nomem", tostring(v)) end
  return v
end

return M
