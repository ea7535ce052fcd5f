--- OTP's rest_for_one: when a child is to be restarted, the children
-- started after it are stopped (in reverse start order) and they and it
-- are restarted (in start order); temporary ones are stopped and dropped.
-- @module msrt.strategies.rest_for_one
local rules = require "msrt.strategies.rules"

--- @tparam table event {child, reason, normal, kind, restart, restarts}
-- @tparam table view the supervisor's view (a copy)
-- @return list of actions
return function(event, view)
  return rules.group("rest", event, view)
end
