--- Helpers shared by the attack specs in spec/security/.
local H = {}

local children = {}

--- Start a child running script under /bin/sh (spec fields in extra, e.g.
-- allow_publish); fails the spec when it cannot start. Returns the handle;
-- H.drive stops it when the spec's body ends.
function H.child(name, script, extra)
  local spec = { name = name, cmd = { "/bin/sh", "-c", script } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  local h = assert(require("msrt").process(spec))
  children[#children + 1] = h
  return h
end

--- S.drive(body), stopping (and waiting for) every child H.child started
-- once body ends, failed or not: a child left running would keep the hub
-- loop, and so the spec, alive.
function H.drive(body, limit_ms)
  require("spec.support").drive(function()
    children = {}
    local ok, err = xpcall(body, debug.traceback)
    for _, h in ipairs(children) do
      h:stop(0)
      h:wait()
    end
    children = {}
    if not ok then error(err, 0) end
  end, limit_ms)
end

--- The router counters of one subject class ({} before its first message).
function H.class(name)
  return require("msrt").metrics().router.classes[name] or {}
end

return H
