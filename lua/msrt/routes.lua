--- Routing tables (docs/architecture.md "Router semantics"): lists of rules compiled
-- into the router's C table. Compiling is a pure function of the list, so
-- a reload can compile a new table and swap it in only when it is good.
-- Internal: the public face is `msrt.routes` (init.lua). Hub thread only.
-- @module msrt.routes
local core = require "msrt.core"
local policy = require "msrt.policy"
local profile = require "msrt.profile"
local schema = require "msrt.schema"

local M = {}

--- Load a rules file: a Lua file returning the list, run as a policy
-- file (msrt.policy: sandboxed, bounded).
-- @return the list, its source | nil, err (`not_found`, `io`, `syntax`,
--   `bad_config`)
function M.load_file(path)
  local rules, source = policy.load_file(path)
  if rules == nil and type(source) == "table" then return nil, source end
  if type(rules) ~= "table" then
    return nil, core.error("bad_config", ("%s:0: a routing table file returns a list of rules, not %s"):format(path, type(rules)), { file = path })
  end
  return rules, source
end

local RULE = { match = true, rewrite = true, split = true, dead_letter = true }
local TARGET = { to = true, weight = true }

-- The fields (msrt.schema: an unknown one named with the closest valid
-- name) and the list shape; the values are src/router's to check.
local function check_fields(rules)
  if type(rules) ~= "table" then return true end -- src/router says what it must be
  local ok, why = schema.is_list(rules, "the routing table")
  if not ok then return nil, core.error("bad_config", why) end
  for i, r in ipairs(rules) do
    if type(r) == "table" then
      ok, why = schema.keys(r, RULE, "rule " .. i)
      for j, t in ipairs(ok and type(r.split) == "table" and r.split or {}) do
        if ok and type(t) == "table" then ok, why = schema.keys(t, TARGET, ("rule %d: split target %d"):format(i, j)) end
      end
      if not ok then return nil, core.error("bad_config", why, { rule = i }) end
    end
  end
  return true
end

--- Compile a list of rules into a table ready to install; installs nothing.
-- @return compiled | nil, err (`bad_config`, err.rule = the rule's position)
function M.compile(rules)
  local ok, err = check_fields(rules)
  if not ok then return nil, err end
  local cur = profile.current()
  return core.routes_compile(rules, cur and cur.max_subject)
end

-- The line where rule n's match pattern stands in source; 0 when unknown.
local function line_of_rule(source, rules, n)
  local rule = n and rules[n]
  local at = type(rule) == "table" and type(rule.match) == "string" and source
    and source:find(rule.match, 1, true)
  if not at then return 0 end
  local _, newlines = source:sub(1, at):gsub("\n", "")
  return newlines + 1
end

local function file_error(err, rules, path, source)
  return core.error("bad_config", ("%s:%d: %s"):format(path, line_of_rule(source, rules, err.rule), err.message),
    { file = path, rule = err.rule })
end

--- Validate a list of rules from a file for `msrt-lua --check`.
-- @return true | nil, err whose message reads `file:line: rule N: why`
function M.check(rules, path, source)
  local ok, err = M.compile(rules)
  if ok then return true end
  return nil, file_error(err, rules, path, source)
end

--- Load and compile a rules file; installs nothing (the reload loader).
-- @return compiled | nil, err (`not_found`, `syntax`, `bad_config` as
--   `file:line: rule N: why`)
function M.compile_file(path)
  local rules, source = M.load_file(path)
  if not rules then return nil, source end
  local compiled, err = M.compile(rules)
  if not compiled then return nil, file_error(err, rules, path, source) end
  return compiled
end

local forget_source = function() end

--- Compile rules (a list, or a path to a file returning one) and make
-- them the router's table. A bad table changes nothing. A file becomes
-- the routing table's source for msrt.reload / msrt.watch, until another
-- table replaces it (the router has one table: an older file, edited
-- later, must not come back over it).
-- @return true | nil, err
function M.set(rules_or_path)
  local compiled, err
  if type(rules_or_path) == "string" then
    compiled, err = M.compile_file(rules_or_path)
  else
    compiled, err = M.compile(rules_or_path)
  end
  if not compiled then return nil, err end
  local ok, ierr = core.routes_install(compiled)
  if not ok then return nil, ierr end
  forget_source()
  forget_source = function() end
  if type(rules_or_path) == "string" then
    forget_source = require("msrt.reload").register(rules_or_path, "routes", M.compile_file, core.routes_install)
  end
  return true
end

return M
