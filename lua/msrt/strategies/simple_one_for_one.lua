--- OTP's simple_one_for_one: one child spec is a template; children are
-- only started with sup:start_child(args), all alike, and are restarted
-- one by one as in one_for_one. `dynamic = true` tells the supervisor to
-- treat the spec list that way.
-- @module msrt.strategies.simple_one_for_one
return { dynamic = true, decide = require "msrt.strategies.one_for_one" }
