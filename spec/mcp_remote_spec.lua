-- msrt.mcp.server{ name, url } (README "MCP servers"): an MCP server over
-- the streamable HTTP transport (lua/msrt/mcp_remote.lua on src/http's
-- libcurl client) as a supervised child, against two servers nobody
-- wrote for this client: `msrt-lua mcp serve --http` (its JSON and
-- event-stream answers, sessions, 404 of a session it does not know) and
-- the npm registry's server-everything in its streamableHttp mode (the
-- MCP TypeScript SDK's server transport). Tools, checked arguments,
-- progress, cancellation, ping, an expired session, the server gone
-- (calls fail at once, the supervisor restarts the child), DELETE at stop.
local S = require "spec.support"
local msrt = require "msrt"
local uv = require "luv"

local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$")) or "."
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end

local read = S.read

local free_port = S.free_port

local serve_policy = require "spec.mcp_policy"

describe("msrt.mcp.server{url} against msrt-lua mcp serve --http", function()
  it("calls tools with checks, progress, cancellation and ping, survives an expired session, fails at once when the server goes", function()
    local dir = S.dir()
    local log = S.write(dir .. "/child.log", "")
    local policy = serve_policy(dir, log)
    local port = free_port()
    local addr = "127.0.0.1:" .. port
    local h = S.host({ "mcp", "serve", policy, "--http", addr })
    local url = h.wait("mcp serve: (http://127%.0%.0%.1:%d+/mcp)")
    assert(url, h.text())
    S.drive(function()
      local events = S.collector("msrt.supervisor.remote.event")
      local sup = assert(msrt.supervisor{ name = "remote", intensity = 100, period_ms = 60000,
        backoff = { initial_ms = 200 }, children = {
        assert(msrt.mcp.server{ name = "rem", url = url, ping = false }) } })
      local info = msrt.mcp.info("rem")
      assert.is_true(info.ready)
      assert.is_table(info.tools.upper.inputSchema)
      assert.is_table(info.tools.slow)
      -- a subject tool (an application/json answer)
      local r = assert(msrt.request("mcp.rem.tool.upper", { text = "hello" }))
      assert.are.same({ text = "HELLO" }, r.structuredContent)
      -- checked before it is sent
      local d, err = msrt.request("mcp.rem.tool.upper", {})
      assert.is_nil(d)
      assert.are.equal(-32602, err.rpc_code)
      -- ping over the transport
      assert.are.same({}, assert(msrt.request("mcp.rem.rpc.ping", {})))
      -- progress (a text/event-stream answer carrying it before the result)
      local seen = {}
      r = assert(msrt.mcp.call("rem", "slow", { steps = 3 }, { progress = function(p) seen[#seen + 1] = p.progress end }))
      assert.are.equal("done", r.content[1].text)
      assert.are.same({ 1, 2, 3 }, seen)
      -- a call whose requester stops waiting is cancelled at the MCP child behind mcp serve
      d, err = msrt.request("mcp.rem.tool.slow", { steps = 100 }, { timeout_ms = 300 })
      assert.is_nil(d)
      assert.are.equal("timeout", err.code)
      assert(S.wait_until(function() return read(log):find("notifications/cancelled", 1, true) end, 10000),
        "the child heard no cancel:\n" .. read(log))
      -- mcp serve restarted on the same port knows no session: 404, a new session, the call goes through
      h.stop()
      h = S.host({ "mcp", "serve", policy, "--http", addr })
      assert(h.wait("mcp serve: (http://127%.0%.0%.1:%d+/mcp)"), h.text())
      r = assert(msrt.request("mcp.rem.tool.upper", { text = "again" }))
      assert.are.same({ text = "AGAIN" }, r.structuredContent)
      assert.are.equal(0, sup:which_children()[1].restarts)
      -- the server gone: the call fails at once, naming it; the child exits and is restarted
      h.stop()
      local t0 = uv.hrtime()
      d, err = msrt.request("mcp.rem.tool.upper", { text = "x" }, { timeout_ms = 20000 })
      assert.is_nil(d)
      assert.are.equal("no_responders", err.code)
      assert.matches("is gone", err.message)
      assert.matches(url, err.message, 1, true)
      assert.is_true((uv.hrtime() - t0) / 1e6 < 5000)
      assert(S.wait_until(function()
        for _, m in ipairs(events.msgs) do
          if m.data.event == "child_exited" and m.data.reason:find("is gone", 1, true) then return true end
        end
      end, 10000), "the child did not exit")
      assert(S.wait_until(function()
        for _, m in ipairs(events.msgs) do if m.data.event == "restart_scheduled" then return true end end
      end, 10000), "no restart")
      sup:stop()
      sup:wait()
      msrt.mcp.forget("rem")
    end, 60000)
    h.stop()
    os.execute("rm -rf " .. S.quote(dir))
  end)
end)

describe("msrt.mcp.server{url} against server-everything (streamableHttp)", function()
  it("calls each kind of tool, gets progress and error results, and ends its session with DELETE", function()
    local port = free_port()
    local out = os.tmpname()
    local pid = assert(io.popen(("cd %s && PORT=%d node node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp >%s 2>&1 </dev/null & echo $!")
      :format(S.quote(ROOT), port, S.quote(out))):read("*l"))
    local function up() return read(out):find("listening on port", 1, true) end
    for _ = 1, 500 do
      if up() then break end
      uv.sleep(20)
    end
    assert(up(), read(out))
    local ok, why = pcall(S.drive, function()
      local sup = assert(msrt.supervisor{ name = "everything", children = {
        assert(msrt.mcp.server{ name = "evh", url = ("http://127.0.0.1:%d/mcp"):format(port) }) } })
      local info = msrt.mcp.info("evh")
      assert.is_true(info.ready)
      assert.are.equal("2025-06-18", info.protocol_version)
      local function text(r) return r.content[1].text end
      assert.are.equal("Echo: hi", text(assert(msrt.request("mcp.evh.tool.echo", { message = "hi" }))))
      assert.are.equal("The sum of 1 and 2 is 3.", text(assert(msrt.request("mcp.evh.tool.get-sum", { a = 1, b = 2 }))))
      local st = assert(msrt.request("mcp.evh.tool.get-structured-content", { location = "Chicago" }))
      assert.is_number(st.structuredContent.temperature)
      local img = assert(msrt.request("mcp.evh.tool.get-tiny-image", {}))
      local kinds = {}
      for _, c in ipairs(img.content) do kinds[c.type] = true end
      assert.is_true(kinds.image)
      local d, err = msrt.request("mcp.evh.tool.gzip-file-as-resource", { data = "http://127.0.0.1:1/x" })
      assert.is_nil(d)
      assert.are.equal("rpc_error", err.code)
      local seen = {}
      local r = assert(msrt.mcp.call("evh", "trigger-long-running-operation", { duration = 1, steps = 4 },
        { progress = function(p) seen[#seen + 1] = p end }))
      assert.matches("completed", text(r))
      assert.are.equal(4, #seen)
      sup:stop()
      sup:wait()
      msrt.mcp.forget("evh")
      -- the stop sent DELETE: the server closed the session's transport
      assert(S.wait_until(function() return read(out):find("Transport closed for session", 1, true) end, 5000), read(out))
    end, 60000)
    os.execute("kill " .. pid .. " 2>/dev/null")
    local text = read(out)
    os.remove(out)
    assert(ok, tostring(why) .. "\n" .. text)
  end)
end)
