--- The fleet `msrt-lua mcp serve` serves in the MCP specs over HTTP
-- (spec/mcp_http_spec.lua, spec/mcp_remote_spec.lua): an actor tool
-- `upper` with an inputSchema and the `slow` tool of spec/mcp_child.py,
-- which logs what it hears to log. Writes tree.lua and policy.lua in dir;
-- returns the policy's path. Not a spec itself.
local S = require "spec.support"

local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$")) or "."
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end

return function(dir, log)
  S.write(dir .. "/tree.lua", [[
return { name = "svc", children = {
  { id = "upper", actor = { subscribe = "svc.upper", handle = function(ctx, msg)
      ctx:reply(msg, { text = string.upper(msg.data.text) })
    end } } } }
]])
  return S.write(dir .. "/policy.lua", ([[
return { name = "fleet", fleet = "tree.lua",
  servers = { { name = "mc", cmd = { "python3", %q, %q } } },
  tools = { { name = "upper", subject = "svc.upper",
      input_schema = { type = "object", properties = { text = { type = "string" } }, required = { "text" } } },
    { name = "slow", server = "mc", tool = "slow" } } }
]]):format(ROOT .. "/spec/mcp_child.py", log))
end
