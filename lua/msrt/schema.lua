--- The one way specs are checked (actor, process, supervisor, child,
-- health and its probes, backoff, profile; a routing rule's field names,
-- its values being src/router's to check): a declarative table of fields,
-- each with its kind and range. An unknown field is refused with the
-- closest valid name (`instance` -> did you mean `instances`?), a map
-- where a list is expected is refused, a wrong value says what was
-- expected and what came. Deeper rules (a subject's syntax, a backoff's
-- max >= initial) stay with the part that owns them. Pure; any thread.
-- @module msrt.schema
local M = {}

-- ---- the kinds ---------------------------------------------------------------

--- An integer in lo..hi (unit: "ms", "bytes"... for messages).
function M.int(lo, hi, unit) return { kind = "integer", lo = lo, hi = hi, unit = unit } end
--- A number in lo..hi.
function M.num(lo, hi, unit) return { kind = "number", lo = lo, hi = hi, unit = unit } end
--- One of the strings in values.
function M.enum(values) return { kind = "enum", values = values } end
--- A table with these fields (checked like the spec itself).
function M.fields(fields) return { kind = "table", fields = fields } end
--- A list (keys 1..n, nothing else) whose items are of (a kind) or anything.
function M.list(of) return { kind = "list", of = of } end
--- Any of the kinds given (e.g. a string or a list of strings).
function M.either(...) return { kind = "either", options = { ... } } end
M.string, M.boolean, M.func = { kind = "string" }, { kind = "boolean" }, { kind = "function" }
M.table, M.any = { kind = "any_table" }, { kind = "any" }

-- ---- names -------------------------------------------------------------------

-- Edit distance (insertions, deletions, substitutions, transpositions).
local function distance(a, b)
  local prev2, prev, cur = {}, {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end

local function sorted(known)
  local names = {}
  for k in pairs(known) do names[#names + 1] = k end
  table.sort(names)
  return names
end

--- The valid name closest to k (at most 2 edits, and fewer than half its
-- length; or k without the unit suffix: interval for interval_ms), or nil.
function M.closest(k, known)
  if type(k) ~= "string" then return nil end
  local best, best_d
  for _, name in ipairs(sorted(known)) do
    local d = distance(k:lower(), name)
    if #k >= 4 and name:sub(1, #k + 1) == k .. "_" then d = 1 end
    if d <= 2 and d < math.max(#name, #k) / 2 and (not best_d or d < best_d) then best, best_d = name, d end
  end
  return best
end

-- A field's dotted name under path ("" at the top).
local function at(path, name)
  if path == "" then return name end
  return path .. "." .. name
end

-- Messages start with what is checked ("actor spec: ", 'child "b": ').
local function label(where, msg)
  if not where or where == "" then return msg end
  return where .. ": " .. msg
end

-- "unknown field 'path.k' (did you mean 'x'?)", or "(known: ...)".
local function unknown(k, known, path)
  local near = M.closest(k, known)
  return ("unknown field '%s' (%s)"):format(at(path, tostring(k)),
    near and ("did you mean '" .. near .. "'?") or ("known: " .. table.concat(sorted(known), ", ")))
end

--- Refuse keys of t not in known (a set, or a table of fields); the
-- first in sorted order is named, with the closest valid name.
-- @return true | nil, message
function M.keys(t, known, where)
  local bad
  for k in pairs(t) do
    if not (type(k) == "string" and known[k]) and (not bad or tostring(k) < tostring(bad)) then bad = k end
  end
  if bad ~= nil then return nil, label(where, unknown(bad, known, "")) end
  return true
end

--- Whether t is a list: its keys are exactly 1..n. @return true | nil, why
function M.is_list(t, name)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then
      return nil, ("%s must be a list {...}, not a table with key '%s'"):format(name, tostring(k))
    end
    n = n + 1
  end
  if n ~= #t then return nil, ("%s must be a list without holes"):format(name) end
  return true
end

-- ---- values ------------------------------------------------------------------

--- Deep equality of two values (tables by their keys and values).
function M.same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not M.same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function describe(spec)
  if spec.kind == "integer" or spec.kind == "number" then
    local what = spec.kind == "integer" and "an integer" or "a number"
    if spec.lo and spec.hi then what = ("%s in %s..%s"):format(what, spec.lo, spec.hi)
    elseif spec.lo then what = ("%s >= %s"):format(what, spec.lo) end
    return what .. (spec.unit and (" " .. spec.unit) or "")
  elseif spec.kind == "enum" then
    return "one of " .. table.concat(spec.values, ", ")
  elseif spec.kind == "either" then
    local parts = {}
    for i, o in ipairs(spec.options) do parts[i] = describe(o) end
    return table.concat(parts, " or ")
  elseif spec.kind == "list" then
    return spec.of and ("a list of " .. describe(spec.of):gsub("^an? (%a+)", "%1s")) or "a list"
  elseif spec.kind == "any_table" then
    return "a table"
  end
  return (spec.kind == "integer" and "an " or "a ") .. spec.kind
end

local function shown(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  if type(v) == "table" or type(v) == "function" then return "a " .. type(v) end
  return tostring(v)
end

local check_fields -- forward

-- Check v against spec; problems get {key, message} appended.
local function check_value(spec, v, name, key, problems)
  local k = spec.kind
  local ok
  if k == "any" then return
  elseif k == "integer" or k == "number" then
    ok = type(v) == "number" and v == v and (k == "number" or v % 1 == 0)
      and (not spec.lo or v >= spec.lo) and (not spec.hi or v <= spec.hi)
  elseif k == "enum" then
    for _, x in ipairs(spec.values) do ok = ok or x == v end
  elseif k == "either" then
    for _, o in ipairs(spec.options) do
      local sub = {}
      check_value(o, v, name, key, sub)
      if #sub == 0 then return end
    end
  elseif k == "table" then
    if type(v) == "table" then return check_fields(v, spec.fields, name, problems) end
  elseif k == "any_table" then
    ok = type(v) == "table"
  elseif k == "list" then
    if type(v) == "table" then
      local lok, why = M.is_list(v, name)
      if not lok then problems[#problems + 1] = { key = key, message = why } return end
      for i, item in ipairs(v) do
        if spec.of then check_value(spec.of, item, ("%s[%d]"):format(name, i), key, problems) end
      end
      return
    end
  else
    ok = type(v) == k
  end
  if not ok then
    problems[#problems + 1] = { key = key, message = ("%s must be %s, got %s"):format(name, describe(spec), shown(v)) }
  end
end

function check_fields(t, fields, where, problems)
  for k, v in pairs(t) do
    local spec = type(k) == "string" and fields[k]
    if not spec then
      problems[#problems + 1] = { key = tostring(k), message = unknown(k, fields, where) }
    else
      check_value(spec, v, at(where, k), k, problems)
    end
  end
  return problems
end

--- Check table t against fields ({name = kind}); messages begin with
-- where (e.g. "actor spec: ") when given. @return true | nil, the first problem's message (in
-- sorted order), and every problem as {key (the innermost field's name, to
-- find its line), message}
function M.check(t, fields, where)
  local problems = check_fields(t, fields, "", {})
  if #problems == 0 then return true end
  for _, p in ipairs(problems) do p.message = label(where, p.message) end
  table.sort(problems, function(a, b) return a.message < b.message end)
  return nil, problems[1].message, problems
end

return M
