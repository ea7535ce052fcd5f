-- MCP tool servers as supervised children (README "MCP", msrt.mcp.server):
-- the reference servers from the npm registry (server-everything,
-- server-filesystem, server-memory; scripts/setup installs them pinned in
-- package-lock.json) and spec/mcp_child.py (SDK-free) under a supervisor:
-- the handshake, each kind of tool, checked arguments, error results,
-- progress, cancellation, list changes, ping, and a SIGKILL mid-call.
local S = require "spec.support"
local msrt = require "msrt"

local NM = "node_modules/@modelcontextprotocol/"
local EVERYTHING = { "node", NM .. "server-everything/dist/index.js", "stdio" }

local function server(name, cmd, extra)
  local spec = { name = name, cmd = cmd, inherit_env = { "PATH" } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return assert(msrt.mcp.server(spec))
end

local function supervise(name, child)
  return assert(msrt.supervisor{ name = name, children = { child }, intensity = 5, period_ms = 60000 })
end

local function finish(sup, name)
  sup:stop()
  sup:wait()
  msrt.mcp.forget(name)
end

local function text(r) return r.content[1].text end

describe("msrt.mcp.server (server-everything)", function()
  it("runs the handshake, lists tools, resources and prompts, and calls each kind of tool", function()
    S.drive(function()
      local sup = supervise("mcp_ev1", server("ev1", EVERYTHING))
      local info = msrt.mcp.info("ev1")
      assert.is_true(info.ready)
      assert.are.equal("2025-06-18", info.protocol_version)
      assert.is_table(info.capabilities.tools)
      assert.is_table(info.tools.echo.inputSchema)
      assert.is_true(#info.resources > 0)
      assert.is_true(#info.prompts > 0)
      -- text, computed, structured, image and resource-link results
      assert.are.equal("Echo: hi", text(assert(msrt.request("mcp.ev1.tool.echo", { message = "hi" }))))
      assert.are.equal("The sum of 1 and 2 is 3.", text(assert(msrt.request("mcp.ev1.tool.get-sum", { a = 1, b = 2 }))))
      local st = assert(msrt.request("mcp.ev1.tool.get-structured-content", { location = "Chicago" }))
      assert.is_number(st.structuredContent.temperature)
      local img = assert(msrt.request("mcp.ev1.tool.get-tiny-image", {}))
      local kinds = {}
      for _, c in ipairs(img.content) do kinds[c.type] = c end
      assert.are.equal("image/png", kinds.image.mimeType)
      local links = assert(msrt.request("mcp.ev1.tool.get-resource-links", { count = 2 }))
      local n = 0
      for _, c in ipairs(links.content) do if c.type == "resource_link" then n = n + 1 end end
      assert.are.equal(2, n)
      -- a listed resource read, a listed prompt got
      local res = info.resources[1]
      local read = assert(msrt.request("mcp.ev1.resource.read", { uri = res.uri }))
      assert.are.equal(res.uri, read.contents[1].uri)
      local prompt
      for _, p in ipairs(info.prompts) do if not p.arguments or #p.arguments == 0 then prompt = p break end end
      local got = assert(msrt.request("mcp.ev1.prompt.get", { name = prompt.name }))
      assert.is_true(#got.messages > 0)
      finish(sup, "ev1")
    end, 60000)
  end)

  it("checks arguments against inputSchema before sending, and returns error results as nil, err", function()
    S.drive(function()
      local sup = supervise("mcp_ev2", server("ev2", EVERYTHING))
      local d, err = msrt.request("mcp.ev2.tool.get-sum", { a = 1 })
      assert.is_nil(d)
      assert.are.equal(-32602, err.rpc_code)
      assert.matches("'b' is required", err.message)
      d, err = msrt.request("mcp.ev2.tool.get-structured-content", { location = "Paris" })
      assert.is_nil(d)
      assert.are.equal(-32602, err.rpc_code)
      -- an isError result (the fetch of a closed port fails in the tool)
      d, err = msrt.request("mcp.ev2.tool.gzip-file-as-resource", { data = "http://127.0.0.1:1/x" })
      assert.is_nil(d)
      assert.are.equal("rpc_error", err.code)
      assert.are.equal(-32000, err.rpc_code)
      assert.is_true(err.data.isError)
      -- a tool nobody offers: no responders
      d, err = msrt.request("mcp.ev2.tool.no-such-tool", {})
      assert.are.equal("no_responders", err.code)
      finish(sup, "ev2")
    end, 60000)
  end)

  it("publishes the long-running tool's progress on mcp.<name>.progress.<token>", function()
    S.drive(function()
      local sup = supervise("mcp_ev3", server("ev3", EVERYTHING))
      local seen = {}
      local r = assert(msrt.mcp.call("ev3", "trigger-long-running-operation", { duration = 1, steps = 4 },
        { progress = function(p) seen[#seen + 1] = p end }))
      assert.matches("completed", text(r))
      assert.are.equal(4, #seen)
      assert.are.same({ progress = 4, total = 4 }, { progress = seen[4].progress, total = seen[4].total })
      finish(sup, "ev3")
    end, 60000)
  end)

  it("fails a call at once when the server is SIGKILLed mid-call, restarts it, and the next call works", function()
    S.drive(function()
      local sup = supervise("mcp_ev4", server("ev4", EVERYTHING))
      local h = sup:which_children()[1].handle
      local started, got = false, nil
      msrt.after(0, function()
        got = { msrt.mcp.call("ev4", "trigger-long-running-operation", { duration = 30, steps = 30 },
          { timeout_ms = 60000, progress = function() started = true end }) }
      end)
      assert(S.wait_until(function() return started end, 20000), "the call never made progress")
      assert(h:signal("KILL"))
      assert(S.wait_until(function() return got ~= nil end, 20000), "the call did not fail")
      assert.is_nil(got[1])
      assert.are.equal("no_responders", got[2].code)
      assert(S.wait_until(function()
        local k = sup:which_children()[1]
        return k.handle and k.handle ~= h and msrt.mcp.info("ev4").ready
      end, 30000), "not restarted")
      assert.are.equal("Echo: again", text(assert(msrt.request("mcp.ev4.tool.echo", { message = "again" }))))
      finish(sup, "ev4")
    end, 90000)
  end)
end)

describe("msrt.mcp.server (spec/mcp_child.py)", function()
  local function child(name, log, extra)
    return server(name, { "python3", "spec/mcp_child.py", log }, extra)
  end

  it("cancels a call whose msrt request timed out (notifications/cancelled with its id)", function()
    S.drive(function()
      local notes = S.collector("mcp.mc1.notify.notifications/message")
      local sup = supervise("mcp_mc1", child("mc1", os.tmpname()))
      -- a plain request: the requester's own timeout is the call's
      local d, err = msrt.request("mcp.mc1.tool.slow", { steps = 100 }, { timeout_ms = 300 })
      assert.is_nil(d)
      assert.are.equal("timeout", err.code)
      assert(notes.wait(1), "the server never heard of the cancellation")
      assert.is_number(notes.msgs[1].data.data.cancelled)
      -- cancelled by its requester (msrt.mcp.cancel): answered at once, the server told
      local got, started
      msrt.after(0, function()
        got = { msrt.mcp.call("mc1", "slow", { steps = 100 }, { token = "tok1", progress = function() started = true end }) }
      end)
      assert(S.wait_until(function() return started end), "the call never made progress")
      msrt.mcp.cancel("tok1", "changed my mind")
      assert(S.wait_until(function() return got ~= nil end), "not answered")
      assert.are.equal(-32800, got[2].rpc_code)
      assert(notes.wait(2), "the server never heard of the second cancellation")
      notes.close()
      finish(sup, "mc1")
    end)
  end)

  it("cancels a call at once when its requester goes away before its deadline (a hub coroutine, an actor)", function()
    S.drive(function()
      local notes = S.collector("mcp.mc5.notify.notifications/message")
      local progress = S.collector("mcp.mc5.progress.>")
      local sup = supervise("mcp_mc5", child("mc5", os.tmpname()))
      local hub = require "msrt.hub"
      -- a hub coroutine whose request is given up (msrt.hub.abandon) 30 s before its deadline
      local inbox, got
      msrt.after(0, function()
        got = { hub.request("mcp.mc5.tool.slow", { steps = 300 },
          { timeout_ms = 30000, headers = { ["Progress-Token"] = "p1" } }, function(i) inbox = i end) }
      end)
      assert(progress.wait(1), "the call never made progress")
      assert.is_true(hub.abandon(inbox, "spec"))
      assert.are.equal("closed", got[2].code)
      assert(notes.wait(1, 5000), "the server was not told of the first")
      -- an actor stopped while it waits for its 30 s request
      local h = assert(S.spawn { name = "mc5_asker", subscribe = "t.mc5.ask", handle = function(ctx)
        ctx:request("mcp.mc5.tool.slow", { steps = 300 }, { timeout_ms = 30000, headers = { ["Progress-Token"] = "p2" } })
      end })
      assert(msrt.publish("t.mc5.ask", true))
      assert(S.wait_until(function()
        for _, m in ipairs(progress.msgs) do if m.subject:find("p2$") then return true end end
      end), "the actor's call never made progress")
      h:stop()
      assert(notes.wait(2, 5000), "the server was not told of the second")
      assert.are_not.equal(notes.msgs[1].data.data.cancelled, notes.msgs[2].data.data.cancelled)
      notes.close()
      progress.close()
      finish(sup, "mc5")
    end)
  end)

  it("lists the tools again on notifications/tools/list_changed", function()
    S.drive(function()
      local sup = supervise("mcp_mc2", child("mc2", os.tmpname()))
      assert.is_nil(msrt.mcp.info("mc2").tools.extra)
      assert.are.equal("grown", text(assert(msrt.request("mcp.mc2.tool.grow", {}))))
      assert(S.wait_until(function() return msrt.mcp.info("mc2").tools.extra ~= nil end), "not listed again")
      local d, err = msrt.request("mcp.mc2.tool.extra", {})
      assert.is_nil(d)
      assert.are.equal("extra", err.message)
      -- additionalProperties = false: an unknown argument with its near name
      d, err = msrt.request("mcp.mc2.tool.echo", { txt = "x" })
      assert.are.equal(-32602, err.rpc_code)
      finish(sup, "mc2")
    end)
  end)

  it("pings the server as its liveness probe", function()
    S.drive(function()
      local log = os.tmpname()
      local sup = supervise("mcp_mc3", child("mc3", log, { ping = { interval_ms = 100, timeout_ms = 2000 } }))
      assert(S.wait_until(function()
        local f = io.open(log)
        local all = f:read("*a")
        f:close()
        return all:find("ping\n") ~= nil
      end), "no ping reached the server")
      finish(sup, "mc3")
      os.remove(log)
    end)
  end)

  it("offers no tool whose name is a wildcard or breaks subject tokens (a hostile tool list)", function()
    S.drive(function()
      local sup = supervise("mcp_mc4", server("mc4", { "python3", "spec/mcp_child.py", os.tmpname(), "hostile" }))
      local names = {}
      for name in pairs(msrt.mcp.info("mc4").tools) do names[#names + 1] = name end
      table.sort(names)
      assert.are.same({ "echo", "grow", "slow" }, names)
      -- nothing subscribed a wildcard under the tools' prefix
      local d, err = msrt.request("mcp.mc4.tool.anything", {})
      assert.is_nil(d)
      assert.are.equal("no_responders", err.code)
      finish(sup, "mc4")
    end)
  end)

  it("refuses a bad spec", function()
    local cs, err = msrt.mcp.server{ name = "a.b", cmd = { "x" } }
    assert.is_nil(cs)
    assert.are.equal("invalid_arg", err.code)
    cs, err = msrt.mcp.server{ name = "x", cmd = { "x" }, call_timeout = 5 }
    assert.is_nil(cs)
    assert.matches("did you mean 'call_timeout_ms'", err.message)
  end)
end)

describe("msrt.mcp.server (server-filesystem, server-memory)", function()
  it("reads and writes files through server-filesystem's tools", function()
    S.drive(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir) == 0)
      S.write(dir .. "/a.txt", "alpha\n")
      local sup = supervise("mcp_fs", server("fs", { "node", NM .. "server-filesystem/dist/index.js", dir }))
      assert.are.equal("alpha\n", text(assert(msrt.request("mcp.fs.tool.read_text_file", { path = dir .. "/a.txt" }))))
      assert(msrt.request("mcp.fs.tool.write_file", { path = dir .. "/b.txt", content = "beta" }))
      local f = assert(io.open(dir .. "/b.txt"))
      assert.are.equal("beta", f:read("*a"))
      f:close()
      local listing = text(assert(msrt.request("mcp.fs.tool.list_directory", { path = dir })))
      assert.matches("b.txt", listing)
      -- outside the allowed directory: the server's error result
      local d, err = msrt.request("mcp.fs.tool.read_text_file", { path = "/etc/hostname" })
      assert.is_nil(d)
      assert.are.equal(-32000, err.rpc_code)
      finish(sup, "fs")
      os.execute("rm -rf " .. dir)
    end, 60000)
  end)

  it("keeps a knowledge graph through server-memory's tools", function()
    S.drive(function()
      local file = os.tmpname() .. ".jsonl"
      local sup = supervise("mcp_mem", server("mem", { "node", NM .. "server-memory/dist/index.js" },
        { env = { MEMORY_FILE_PATH = file } }))
      assert(msrt.request("mcp.mem.tool.create_entities", { entities = {
        { name = "msrt", entityType = "runtime", observations = { "hosts agents" } } } }))
      local g = assert(msrt.request("mcp.mem.tool.read_graph", {}))
      local graph = g.structuredContent or msrt.json.decode(text(g))
      assert.are.equal("msrt", graph.entities[1].name)
      finish(sup, "mem")
      os.remove(file)
    end, 60000)
  end)
end)
