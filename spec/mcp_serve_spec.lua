-- `msrt-lua mcp serve POLICY.lua` (README "MCP servers"): the fleet as an
-- MCP server on stdio, driven by the MCP inspector's CLI
-- (@modelcontextprotocol/inspector-cli, pinned in package-lock.json) as a
-- real client, and by raw JSON-RPC lines for what the inspector does not
-- send (batches, bad input, unknown methods).
local S = require "spec.support"
local msrt = require "msrt"

local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$")) or "."
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end
-- inspector-cli 1.0.3 looks for its package.json relative to the working
-- directory: it runs in its own build directory
local INSPECTOR = ROOT .. "/node_modules/@modelcontextprotocol/inspector-cli/build"

local function policy_dir()
  local dir = S.dir()
  S.write(dir .. "/tree.lua", [[
return { name = "svc", children = {
  { id = "upper", actor = { subscribe = "svc.upper", handle = function(ctx, msg)
      ctx:reply(msg, { text = string.upper(msg.data.text) })
    end } },
  { id = "hidden", actor = { subscribe = "svc.hidden", handle = function(ctx, msg) ctx:reply(msg, "secret") end } } } }
]])
  S.write(dir .. "/policy.lua", ([[
return {
  name = "fleet", version = "7",
  fleet = "tree.lua",
  servers = { { name = "ev", inherit_env = { "PATH" },
    cmd = { "node", %q, "stdio" } } },
  tools = {
    { name = "upper", subject = "svc.upper", description = "Upper-case a text",
      input_schema = { type = "object", properties = { text = { type = "string" } }, required = { "text" } } },
    { name = "sum", server = "ev", tool = "get-sum" },
    { name = "gone", subject = "svc.nobody", description = "Nobody answers" },
    { name = "echo", server = "ev", tool = "echo" },
  },
}
]]):format(ROOT .. "/node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
  return dir
end

local text_of = S.read -- "" when there is no file yet

local function inspect(policy, ...)
  local r = S.run({ "index.js", S.exe, "mcp", "serve", policy, ... }, { exe = "node", cwd = INSPECTOR, limit_s = 120 })
  return r, r.code == 0 and msrt.json.decode(r.out:match("(%b{})%s*$") or "") or nil
end

describe("msrt-lua mcp serve", function()
  local dir
  setup(function() dir = policy_dir() end)
  teardown(function() os.execute("rm -rf " .. S.quote(dir)) end)

  it("lists only the policy's tools to the inspector, a server tool as its child describes it", function()
    local r, out = inspect(dir .. "/policy.lua", "--method", "tools/list")
    assert.are.equal(0, r.code, r.err)
    local names = {}
    for _, t in ipairs(out.tools) do names[#names + 1] = t.name end
    assert.are.same({ "upper", "sum", "gone", "echo" }, names)
    assert.are.equal("Upper-case a text", out.tools[1].description)
    assert.are.same({ "a", "b" }, out.tools[2].inputSchema.required)
    assert.are.equal("Returns the sum of two numbers", out.tools[2].description)
  end)

  it("makes tools/call an msrt.request on the tool's subject, or the MCP child's tool call", function()
    local r, out = inspect(dir .. "/policy.lua", "--method", "tools/call", "--tool-name", "upper", "--tool-arg", "text=hello")
    assert.are.equal(0, r.code, r.err)
    assert.are.same({ text = "HELLO" }, out.structuredContent)
    r, out = inspect(dir .. "/policy.lua", "--method", "tools/call", "--tool-name", "sum", "--tool-arg", "a=2", "b=3")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("The sum of 2 and 3 is 5.", out.content[1].text)
    -- an error (here nobody subscribes) is an isError result with its message
    r, out = inspect(dir .. "/policy.lua", "--method", "tools/call", "--tool-name", "gone")
    assert.are.equal(0, r.code, r.err)
    assert.is_true(out.isError)
    assert.matches("no responders for \"svc.nobody\"", out.content[1].text)
  end)

  it("refuses a tool not listed, though its subject answers in the fleet", function()
    local r = inspect(dir .. "/policy.lua", "--method", "tools/call", "--tool-name", "hidden")
    assert.are_not.equal(0, r.code)
    assert.matches("Unknown tool: hidden", r.out .. r.err)
  end)

  it("answers batches, bad JSON, unknown methods and bad arguments on raw stdio", function()
    local lines = {
      '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}',
      '{"jsonrpc":"2.0","method":"notifications/initialized"}',
      '[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"upper","arguments":{"text":"x"}}},{"jsonrpc":"2.0","id":3,"method":"nope"}]',
      'not json',
      '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"upper","arguments":{"txt":1}}}',
      '{"jsonrpc":"2.0","id":5,"method":"ping"}',
    }
    local r = S.run({ "mcp", "serve", dir .. "/policy.lua" }, { stdin = table.concat(lines, "\n") .. "\n", limit_s = 60 })
    assert.are.equal(0, r.code, r.err)
    local by_id, parse_error = {}, nil
    for line in r.out:gmatch("[^\n]+") do
      local m = assert(msrt.json.decode(line))
      if m.id == msrt.json.null then parse_error = m else by_id[m.id] = m end
    end
    assert.are.equal("2024-11-05", by_id[1].result.protocolVersion)
    assert.are.same({ version = "7", name = "fleet" }, by_id[1].result.serverInfo)
    assert.are.same({ text = "X" }, by_id[2].result.structuredContent)
    assert.are.equal(-32601, by_id[3].error.code)
    assert.are.equal(-32700, parse_error.error.code)
    assert.are.equal(-32602, by_id[4].error.code)
    assert.matches("'text' is required", by_id[4].error.message)
    assert.are.same({}, by_id[5].result)
  end)

  it("cancels a tool's call at its MCP child when the client sends notifications/cancelled (a server tool, a subject tool)", function()
    -- the client here is msrt itself: `mcp serve` as a codec = "jsonrpc" child
    local log = os.tmpname()
    local policy = S.file(([[
return { servers = { { name = "mc", cmd = { "python3", %q, %q } } },
  tools = { { name = "slow", server = "mc", tool = "slow" }, { name = "slow_subject", subject = "mcp.mc.tool.slow" } } }
]]):format(ROOT .. "/spec/mcp_child.py", log), ".lua")
    S.drive(function()
      local h = assert(msrt.process{ name = "served", codec = "jsonrpc", rpc = "served.rpc",
        cmd = { S.exe, "mcp", "serve", policy }, inherit_env = { "PATH" } })
      assert(msrt.request("served.rpc.initialize", { protocolVersion = "2025-06-18", capabilities = {},
        clientInfo = { name = "spec", version = "1" } }, { timeout_ms = 30000 }))
      local id, got
      msrt.after(0, function()
        got = { require("msrt.hub").request("served.rpc.tools/call", { name = "slow", arguments = { steps = 100 } },
          { timeout_ms = 30000 }, function(inbox) id = inbox end) }
      end)
      assert(S.wait_until(function() return id ~= nil and h:rpc_id(id) ~= nil end), "the call never went out")
      local function sent_to_child() return text_of(log) end
      assert(S.wait_until(function() return sent_to_child():find("tools/call") ~= nil end, 20000))
      msrt.publish("served.rpc.notifications/cancelled", { requestId = h:rpc_id(id), reason = "spec" })
      assert(S.wait_until(function() return sent_to_child():find("notifications/cancelled") ~= nil end, 20000),
        "the MCP child was not told")
      assert.is_nil(got) -- no response to a cancelled request
      -- a subject tool whose subject is an MCP child's tool: the same, at once
      local id2, got2
      msrt.after(0, function()
        got2 = { require("msrt.hub").request("served.rpc.tools/call", { name = "slow_subject", arguments = { steps = 300 } },
          { timeout_ms = 30000 }, function(inbox) id2 = inbox end) }
      end)
      local function count(what)
        local n = 0
        for _ in sent_to_child():gmatch(what) do n = n + 1 end
        return n
      end
      assert(S.wait_until(function() return count("tools/call") == 2 end, 20000))
      msrt.publish("served.rpc.notifications/cancelled", { requestId = h:rpc_id(id2), reason = "spec" })
      assert(S.wait_until(function() return count("notifications/cancelled") == 2 end, 5000),
        "the MCP child was not told of the subject tool's cancellation")
      assert.is_nil(got2)
      h:stop()
      h:wait()
      assert(S.wait_until(function() return got ~= nil end), "the request was never ended")
      assert.are.equal("no_responders", got[2].code) -- ended by the server's exit
    end, 60000)
    os.remove(log)
  end)

  it("cancels the calls in flight at once when the client closes stdin (it went away)", function()
    local log = os.tmpname()
    local policy = S.file(([[
return { servers = { { name = "mc", cmd = { "python3", %q, %q } } },
  tools = { { name = "slow", server = "mc", tool = "slow" } } }
]]):format(ROOT .. "/spec/mcp_child.py", log), ".lua")
    local function sent_to_child() return text_of(log) end
    S.drive(function()
      local h = assert(msrt.process{ name = "served2", codec = "jsonrpc", rpc = "served2.rpc",
        cmd = { S.exe, "mcp", "serve", policy }, inherit_env = { "PATH" } })
      assert(msrt.request("served2.rpc.initialize", { protocolVersion = "2025-06-18", capabilities = {},
        clientInfo = { name = "spec", version = "1" } }, { timeout_ms = 30000 }))
      local got
      msrt.after(0, function()
        -- 600 steps of 100 ms: only a cancel ends it before the spec's bound
        got = { msrt.request("served2.rpc.tools/call", { name = "slow", arguments = { steps = 600 } }, { timeout_ms = 90000 }) }
      end)
      assert(S.wait_until(function() return sent_to_child():find("tools/call") ~= nil end, 20000), "the call never reached the child")
      h:close_stdin()
      assert(S.wait_until(function() return sent_to_child():find("notifications/cancelled") ~= nil end, 20000),
        "the MCP child was not told:\n" .. sent_to_child())
      local rec = h:wait()
      assert.is_true(rec.normal, rec.reason)
      assert(S.wait_until(function() return got ~= nil end), "the request was never ended")
      assert.is_nil(got[1]) -- no response to a cancelled request: ended by the exit
    end, 60000)
    os.remove(log)
  end)

  it("refuses a bad policy file with its place", function()
    local bad = S.file('return { tools = { { name = "x" } } }', ".lua")
    local r = S.run({ "mcp", "serve", bad }, { limit_s = 30 })
    assert.are.equal(1, r.code)
    assert.matches("needs one of subject or server", r.err)
    -- --check knows a serve policy: a server tool of no server
    bad = S.file('return { tools = { { name = "x", server = "nope", tool = "t" } } }', ".lua")
    r = S.run({ "--check", bad }, { limit_s = 30 })
    assert.are.equal(1, r.code)
    assert.matches("no server nope in servers", r.err)
    r = S.run({ "--check", dir .. "/policy.lua" }, { limit_s = 30 })
    assert.are.equal(0, r.code, r.err)
    r = S.run({ "mcp", "bogus" }, { limit_s = 30 })
    assert.are.equal(2, r.code)
    assert.matches("usage: msrt%-lua mcp serve POLICY.lua", r.err)
  end)
end)
