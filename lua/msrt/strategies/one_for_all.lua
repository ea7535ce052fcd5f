--- OTP's one_for_all: when a child is to be restarted, every other child
-- is stopped (in reverse start order) and all are restarted (in start
-- order); temporary siblings are stopped and dropped.
-- @module msrt.strategies.one_for_all
local rules = require "msrt.strategies.rules"

--- @tparam table event {child, reason, normal, kind, restart, restarts}
-- @tparam table view the supervisor's view (a copy)
-- @return list of actions
return function(event, view)
  return rules.group("all", event, view)
end
