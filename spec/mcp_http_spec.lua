-- `msrt-lua mcp serve POLICY.lua --http ADDR` (README "MCP servers"): the
-- fleet on MCP's streamable HTTP transport, driven by a client nobody here
-- wrote, the MCP TypeScript SDK's StreamableHTTPClientTransport
-- (spec/mcp_http_client.mjs; @modelcontextprotocol/sdk pinned in
-- package-lock.json): the session, tools/list and tools/call, progress, the SDK's
-- cancellation, a hostile Origin, no or an unknown session, GET, DELETE,
-- a body over the limit,
-- and a client whose connection drops mid-call (its call is cancelled at
-- the MCP child behind the tool).
local S = require "spec.support"
local msrt = require "msrt"

local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$")) or "."
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end

describe("msrt-lua mcp serve --http", function()
  it("serves the SDK's streamable HTTP client, checks Origin and sessions, and cancels what a dropped client asked", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. S.quote(dir)) == 0)
    local log = S.write(dir .. "/child.log", "")
    S.write(dir .. "/tree.lua", [[
return { name = "svc", children = {
  { id = "upper", actor = { subscribe = "svc.upper", handle = function(ctx, msg)
      ctx:reply(msg, { text = string.upper(msg.data.text) })
    end } } } }
]])
    S.write(dir .. "/policy.lua", ([[
return { name = "fleet", fleet = "tree.lua",
  servers = { { name = "mc", cmd = { "python3", %q, %q } } },
  tools = { { name = "upper", subject = "svc.upper",
      input_schema = { type = "object", properties = { text = { type = "string" } }, required = { "text" } } },
    { name = "slow", server = "mc", tool = "slow" } } }
]]):format(ROOT .. "/spec/mcp_child.py", log))
    local h = S.host({ "mcp", "serve", dir .. "/policy.lua", "--http", ":0" })
    local url = h.wait("mcp serve: (http://127%.0%.0%.1:%d+/mcp)")
    assert(url, h.text())
    local r = S.run({ ROOT .. "/spec/mcp_http_client.mjs", url, log }, { exe = "node", cwd = ROOT, limit_s = 60 })
    h.stop()
    assert.are.equal(0, r.code, r.err)
    local out = msrt.json.decode(r.out:match("(%b{})%s*$"))
    assert.are.same({ "upper", "slow" }, out.tools)
    assert.are.same({ text = "HELLO" }, out.upper)
    assert.are.same({ 1, 2, 3 }, out.progress)
    assert.are.equal(403, out.evil_origin)
    assert.are.equal(400, out.no_session)
    assert.are.equal(404, out.unknown_session)
    assert.are.equal(405, out.get)
    assert.are.equal(413, out.too_big)
    assert.are.equal(404, out.after_delete) -- DELETE ended the session
    -- both slow calls were cancelled at the child: the SDK's abort, then the dropped connection
    local f = assert(io.open(log))
    local sent = f:read("*a")
    f:close()
    local n = 0
    for _ in sent:gmatch("notifications/cancelled") do n = n + 1 end
    assert.are.equal(2, n, sent)
    os.execute("rm -rf " .. S.quote(dir))
  end)
end)
