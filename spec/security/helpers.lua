--- Helpers shared by the attack specs in spec/security/.
local H = {}

--- Start a child running script under /bin/sh (spec fields in extra, e.g.
-- allow_publish); fails the spec when it cannot start. Returns the handle.
function H.child(name, script, extra)
  local spec = { name = name, cmd = { "/bin/sh", "-c", script } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return assert(require("msrt").process(spec))
end

--- The router counters of one subject class ({} before its first message).
function H.class(name)
  return require("msrt").metrics().router.classes[name] or {}
end

return H
