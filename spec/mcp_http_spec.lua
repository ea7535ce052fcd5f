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
    local dir = S.dir()
    local log = S.write(dir .. "/child.log", "")
    require("spec.mcp_policy")(dir, log)
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

  it("ends a session idle for session_idle_ms, and answers an initialize past max_sessions 503 with a JSON-RPC error", function()
    local policy = S.file([[
return { tools = { { name = "t", subject = "spec.nobody" } }, max_sessions = 2, session_idle_ms = 300 }
]], ".lua")
    local h = S.host({ "mcp", "serve", policy, "--http", ":0" })
    local url = h.wait("mcp serve: (http://127%.0%.0%.1:%d+/mcp)")
    assert(url, h.text())
    S.drive(function()
      local client = assert(require("msrt.core").http_client())
      local function post(body, sid)
        local hs = { "Content-Type: application/json", "Accept: application/json, text/event-stream" }
        if sid then hs[#hs + 1] = "Mcp-Session-Id: " .. sid end
        local r = { chunks = {} }
        assert(client:request({ method = "POST", url = url, body = body, headers = hs, timeout_ms = 10000 },
          function(what, a, b)
            if what == "head" then r.status, r.headers = a, b
            elseif what == "body" then r.chunks[#r.chunks + 1] = a
            else r.err, r.done = a, true end
          end))
        assert(S.wait_until(function() return r.done end, 15000), "no answer")
        assert(not r.err, tostring(r.err))
        r.text = table.concat(r.chunks)
        return r
      end
      local INIT = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        .. '"capabilities":{},"clientInfo":{"name":"spec","version":"1"}}}'
      local PING = '{"jsonrpc":"2.0","id":2,"method":"ping"}'
      local a, b = post(INIT), post(INIT)
      assert.are.equal(200, a.status)
      assert.are.equal(200, b.status)
      local sa, sb = a.headers["mcp-session-id"], b.headers["mcp-session-id"]
      local full = post(INIT)
      assert.are.equal(503, full.status)
      local e = msrt.json.decode(full.text)
      assert.are.equal(-32000, e.error.code)
      assert.matches("2 MCP sessions are open", e.error.message)
      -- B kept in use; A left idle: a slot frees once A has expired
      local again
      for _ = 1, 200 do
        assert.are.equal(200, post(PING, sb).status)
        again = post(INIT)
        if again.status == 200 then break end
        S.sleep(50)
      end
      assert.are.equal(200, again.status)
      assert.are.equal(404, post(PING, sa).status) -- expired: its client must initialize again
      assert.are.equal(200, post(PING, sb).status)
      client:close()
    end, 30000)
    h.stop()
  end)
end)
