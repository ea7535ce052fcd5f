--- OTP's one_for_one: only the child that exited is restarted (when its
-- restart type says so), after its backoff delay.
-- @module msrt.strategies.one_for_one
local rules = require "msrt.strategies.rules"

--- @tparam table event {child, reason, normal, kind, restart, restarts}
-- @tparam table view the supervisor's view (a copy)
-- @return list of actions
return function(event, view)
  if not rules.restarts(event) then return {} end
  return { { op = "restart", child = event.child, delay_ms = event.restarts.delay_ms } }
end
