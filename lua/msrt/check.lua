--- `msrt-lua --check FILE...`: compile and validate policy files.
-- Each file is read and run as a policy file (msrt.policy: sandboxed,
-- bounded, as when it is used), and its value handed to the
-- first validator whose `detects(value, path)` is true; policy kinds added
-- by later parts register a validator with `M.register`.
-- @module msrt.check
local core = require "msrt.core"
local policy = require "msrt.policy"
local profile = require "msrt.profile"
local routes = require "msrt.routes"

local M = {}

local validators = {}

--- Register a validator: `{ name = "routes", detects = fn(value, path) -> bool,
-- validate = fn(value, path, source) -> true | nil, err }`. Validators
-- registered later are tried first.
function M.register(v)
  table.insert(validators, 1, v)
end

M.register {
  name = "profile",
  detects = function(value, path)
    if path:find("profiles/[^/]+%.lua$") then return true end
    if type(value) == "function" then return true end
    if type(value) ~= "table" then return false end
    for k in pairs(value) do
      if type(k) == "string" and profile.schema[k] and k ~= "name" then return true end
    end
    return false
  end,
  validate = function(_, path) local ok, err = profile.load_file(path, core.machine()) return ok and true, err end,
}

M.register {
  name = "routes",
  detects = function(value)
    return type(value) == "table" and type(value[1]) == "table" and value[1].match ~= nil
  end,
  validate = routes.check,
}

M.register {
  name = "nats",
  detects = function(value)
    return type(value) == "table" and (value.url ~= nil or value.servers ~= nil)
      and (value.import ~= nil or value.export ~= nil)
  end,
  validate = function(value, path)
    local ok, err = require("msrt.nats").validate(value)
    if ok then return true end
    return nil, core.error("bad_config", ("%s:0: %s"):format(path, err.message))
  end,
}

M.register {
  name = "queue",
  detects = function(value)
    return type(value) == "table" and value.subjects ~= nil and value.name ~= nil
  end,
  validate = function(value, path)
    local ok, err = require("msrt.queue").check(value)
    if ok then return true end
    return nil, core.error("bad_config", ("%s:0: %s"):format(path, err.message))
  end,
}

-- The line where `id = "<id>"` stands in source; 0 when unknown.
local function line_of_id(source, id)
  local at = id and source:find("id%s*=%s*[\"']" .. id:gsub("%p", "%%%0") .. "[\"']")
  if not at then return 0 end
  local _, n = source:sub(1, at):gsub("\n", "")
  return n + 1
end

M.register {
  name = "supervisor",
  detects = function(value)
    return type(value) == "table" and (type(value.children) == "table" or value.strategy ~= nil)
  end,
  validate = function(value, path, source)
    local ok, err = require("msrt.supervisor").validate(value)
    if ok then return true end
    return nil, core.error(err.code, ("%s:%d: %s"):format(path, line_of_id(source, err.child), err.message))
  end,
}

M.register {
  name = "mcp serve",
  detects = function(value) return type(value) == "table" and type(value.tools) == "table" end,
  validate = function(_, path)
    local ok, err = require("msrt.mcp_serve").load(path)
    return ok and true, err
  end,
}

M.register {
  name = "auth",
  detects = function(value)
    return type(value) == "table" and value.users ~= nil
  end,
  validate = function(value, path, source)
    local listen = require("msrt.listen")
    local ok, err = listen.check_auth(value)
    if ok then return true end
    return nil, core.error(err.code, ("%s:%d: %s"):format(path, listen.line_of_user(source, err.user), err.message))
  end,
}

--- Check one file.
-- @treturn boolean|nil true, or nil and an error whose message reads `file:line: message`
function M.file(path)
  local value, source = policy.load_file(path)
  if value == nil and type(source) == "table" then return nil, source end
  for _, v in ipairs(validators) do
    if v.detects(value, path) then return v.validate(value, path, source) end
  end
  return true -- plain Lua that compiles and runs: nothing more to check
end

--- Check every file; prints each problem as `file:line: message` on stderr.
-- @treturn number 0 when all are valid, 1 otherwise
function M.main(files)
  local failed = 0
  for _, path in ipairs(files) do
    local ok, err = M.file(path)
    if not ok then
      failed = failed + 1
      for _, line in ipairs(err.problems or { err.message }) do
        io.stderr:write(line, "\n")
      end
    end
  end
  return failed > 0 and 1 or 0
end

return M
