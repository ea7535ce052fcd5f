--- JSON Schema checks of Lua values (README "MCP"): the part of JSON Schema
-- (draft-07 and 2020-12, https://json-schema.org/draft/2020-12/json-schema-validation)
-- that MCP tools' `inputSchema`s use: type (string, number, integer,
-- boolean, object, array, null; or a list of them), enum, const,
-- properties, required, additionalProperties (false or a schema), items
-- (a schema), minItems/maxItems, minLength/maxLength (in UTF-8 code points),
-- minimum/maximum/exclusiveMinimum/exclusiveMaximum, multipleOf, allOf,
-- anyOf, oneOf, not, and local `$ref`s ("#/..."). Keywords outside that
-- (pattern, format, $dynamicRef...) are not checked: a value they alone
-- would refuse passes, and the server decides. Why not msrt.schema: that is
-- msrt's own spec checker, which refuses unknown fields with a near name;
-- JSON Schema lets unknown properties through unless the schema says not.
-- A Lua table is an array when its keys are exactly 1..n (the empty table
-- passes as either); JSON null is nil (an absent property). Pure; any thread.
-- @module msrt.jsonschema
local schema = require "msrt.schema"
local null = require("msrt.core").json_null

local M = {}

local function json_type(v)
  local t = type(v)
  if t == "nil" or v == null then return "null" end
  if t == "number" then return (v % 1 == 0 and v == v and v ~= math.huge and v ~= -math.huge) and "integer" or "number" end
  if t == "table" then
    if next(v) == nil then return "empty" end
    return schema.is_list(v, "") and "array" or "object"
  end
  return t -- string, boolean; anything else matches no JSON type
end

local function is_type(v, want)
  local t = json_type(v)
  if t == want then return true end
  if want == "number" and t == "integer" then return true end
  return t == "empty" and (want == "object" or want == "array")
end

local deep_equal = schema.same

local function utf8_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

local check -- forward

local function resolve(root, ref)
  if type(ref) ~= "string" or ref:sub(1, 1) ~= "#" then return nil end
  local node = root
  for part in ref:sub(3):gmatch("[^/]+") do
    part = part:gsub("~1", "/"):gsub("~0", "~")
    if type(node) ~= "table" then return nil end
    node = node[part]
  end
  return node
end

local function check_type(s, v, path)
  local want = s.type
  if want == nil then return true end
  local list = type(want) == "table" and want or { want }
  for _, w in ipairs(list) do if is_type(v, w) then return true end end
  local got = json_type(v)
  return nil, ("%s must be %s, got %s"):format(path, table.concat(list, " or "), got == "empty" and "an empty table" or got)
end

local function check_number(s, v, path)
  if type(v) ~= "number" then return true end
  if s.minimum and v < s.minimum then return nil, ("%s must be >= %s"):format(path, s.minimum) end
  if s.maximum and v > s.maximum then return nil, ("%s must be <= %s"):format(path, s.maximum) end
  if type(s.exclusiveMinimum) == "number" and v <= s.exclusiveMinimum then return nil, ("%s must be > %s"):format(path, s.exclusiveMinimum) end
  if type(s.exclusiveMaximum) == "number" and v >= s.exclusiveMaximum then return nil, ("%s must be < %s"):format(path, s.exclusiveMaximum) end
  if s.multipleOf and (v / s.multipleOf) % 1 ~= 0 then return nil, ("%s must be a multiple of %s"):format(path, s.multipleOf) end
  return true
end

local function check_string(s, v, path)
  if type(v) ~= "string" then return true end
  local n = (s.minLength or s.maxLength) and utf8_len(v)
  if s.minLength and n < s.minLength then return nil, ("%s must be at least %d characters"):format(path, s.minLength) end
  if s.maxLength and n > s.maxLength then return nil, ("%s must be at most %d characters"):format(path, s.maxLength) end
  return true
end

local function check_object(s, v, path, root)
  if json_type(v) ~= "object" and json_type(v) ~= "empty" then return true end
  for _, k in ipairs(s.required or {}) do
    if v[k] == nil then return nil, ("%s: '%s' is required"):format(path, k) end
  end
  local props = type(s.properties) == "table" and s.properties or {}
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local sub = props[k] or s.additionalProperties
    if sub == false then
      local near = schema.closest(k, props)
      return nil, ("%s: unknown property '%s'%s"):format(path, k, near and (" (did you mean '" .. near .. "'?)") or "")
    end
    if type(sub) == "table" then
      local ok, why = check(sub, v[k], path .. "." .. k, root)
      if not ok then return nil, why end
    end
  end
  return true
end

local function check_array(s, v, path, root)
  if json_type(v) ~= "array" and json_type(v) ~= "empty" then return true end
  if s.minItems and #v < s.minItems then return nil, ("%s must have at least %d items"):format(path, s.minItems) end
  if s.maxItems and #v > s.maxItems then return nil, ("%s must have at most %d items"):format(path, s.maxItems) end
  if type(s.items) == "table" then
    for i, item in ipairs(v) do
      local ok, why = check(s.items, item, ("%s[%d]"):format(path, i), root)
      if not ok then return nil, why end
    end
  end
  return true
end

local function check_combined(s, v, path, root)
  for _, sub in ipairs(s.allOf or {}) do
    local ok, why = check(sub, v, path, root)
    if not ok then return nil, why end
  end
  if s.anyOf then
    local first
    for _, sub in ipairs(s.anyOf) do
      local ok, why = check(sub, v, path, root)
      if ok then first = nil break end
      first = first or why
    end
    if first then return nil, first end
  end
  if s.oneOf then
    local n = 0
    for _, sub in ipairs(s.oneOf) do if check(sub, v, path, root) then n = n + 1 end end
    if n ~= 1 then return nil, ("%s must match exactly one of %d schemas (matches %d)"):format(path, #s.oneOf, n) end
  end
  if type(s["not"]) == "table" and check(s["not"], v, path, root) then
    return nil, ("%s must not match the schema under 'not'"):format(path)
  end
  return true
end

function check(s, v, path, root)
  if s == false then return nil, path .. ": no value is allowed" end
  if type(s) ~= "table" then return true end
  if s["$ref"] then
    local target = resolve(root, s["$ref"])
    if target then
      local ok, why = check(target, v, path, root)
      if not ok then return nil, why end
    end
  end
  if s.enum then
    local found = false
    for _, x in ipairs(s.enum) do found = found or deep_equal(x, v) end
    if not found then return nil, ("%s must be one of the schema's enum values, got %s"):format(path, tostring(v)) end
  end
  if s.const ~= nil and not deep_equal(s.const, v) then return nil, ("%s must be %s"):format(path, tostring(s.const)) end
  for _, step in ipairs({ check_type, check_number, check_string, check_object, check_array, check_combined }) do
    local ok, why = step(s, v, path, root)
    if not ok then return nil, why end
  end
  return true
end

--- Check value v against JSON Schema s (a decoded schema table).
-- name: what v is called in the message (default "arguments").
-- @return true | nil, message (the first problem, with its path)
function M.check(s, v, name)
  return check(s, v, name or "arguments", s)
end

return M
