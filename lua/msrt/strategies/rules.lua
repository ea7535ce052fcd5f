--- What the built-in strategies share: OTP's restart rules and the
-- actions for a group of children. A user's strategy may use it too.
-- @module msrt.strategies.rules
local M = {}

--- Whether OTP restarts the child of this event: permanent always,
-- transient after an abnormal exit (a failed liveness probe is abnormal),
-- temporary never.
-- @tparam table event the supervisor's event
-- @treturn boolean
function M.restarts(event)
  if event.restart == "permanent" then return true end
  if event.restart == "transient" then return not event.normal end
  return false
end

--- Actions for a group failure (one_for_all, rest_for_one): every child
-- of the group (view.group(which, child), in start order) is restarted
-- after the failed child's backoff delay, but a temporary sibling is
-- stopped instead (OTP drops it). Nothing at all when the failed child
-- itself is not to be restarted.
-- @tparam string which "all" or "rest"
-- @return list of actions
function M.group(which, event, view)
  if not M.restarts(event) then return {} end
  local actions = {}
  for _, id in ipairs(view.group(which, event.child)) do
    local c = view.child[id]
    if id ~= event.child and c.restart == "temporary" then
      actions[#actions + 1] = { op = "stop", child = id }
    else
      actions[#actions + 1] = { op = "restart", child = id, delay_ms = event.restarts.delay_ms }
    end
  end
  return actions
end

return M
