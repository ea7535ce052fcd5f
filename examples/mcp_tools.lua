-- mcp_tools: a fleet of MCP tool servers from the npm registry behind msrt
-- subjects (README "MCP servers").
--   scripts/run mcp_tools [--keep]
-- One supervisor runs @modelcontextprotocol/server-everything,
-- server-filesystem (on this project, its tools reading it) and
-- server-memory (a knowledge graph in a temporary file), each a
-- msrt.mcp.server child (scripts/setup installs them, pinned). The script
-- prints every tool's subject, calls a tool of each server through
-- msrt.request, asks for progress from the long-running one, and shows the
-- tree as an operator sees it: `msrt-lua ctl SOCKET tree`, run as a child
-- against this host's control socket. With --keep it stays up until
-- Ctrl-C, for `msrt-lua ctl SOCKET tree` from another terminal.
local uv = require "luv"
local msrt = require "msrt"

local keep = ... == "--keep"
local here = uv.fs_realpath((arg and arg[0] or "examples/mcp_tools.lua"):match("^(.*)/[^/]*$") or "examples")
local project = here:match("^(.*)/examples$") or uv.cwd()
local NM = project .. "/node_modules/@modelcontextprotocol/"
if not uv.fs_stat(NM .. "server-everything") then
  io.stderr:write("mcp_tools: the npm servers are not installed (scripts/setup installs them)\n")
  os.exit(2)
end

-- A private directory for the control socket and the memory file.
local dir = assert(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/mcp_tools-XXXXXX"))
local sock = dir .. "/ctl.sock"
assert(msrt.start{ ctl = sock, log_level = keep and "info" or "warn" })

local function node(pkg, ...) return { "node", NM .. pkg .. "/dist/index.js", ... } end
local servers = {
  msrt.mcp.server{ name = "everything", cmd = node("server-everything", "stdio"), inherit_env = { "PATH" } },
  msrt.mcp.server{ name = "fs", cmd = node("server-filesystem", project), inherit_env = { "PATH" } },
  msrt.mcp.server{ name = "memory", cmd = node("server-memory"), inherit_env = { "PATH" },
    env = { MEMORY_FILE_PATH = dir .. "/memory.jsonl" } },
}
local sup = assert(msrt.supervisor{ name = "mcp_tools", children = servers, intensity = 5, period_ms = 10000 })

-- What each server offers, as subjects.
for _, name in ipairs(msrt.mcp.names()) do
  local info = msrt.mcp.info(name)
  local tools = {}
  for t in pairs(info.tools) do tools[#tools + 1] = t end
  table.sort(tools)
  print(("%s (%s %s, protocol %s): %d tools, %d resources, %d prompts"):format(name, info.server_info.name,
    info.server_info.version, info.protocol_version, #tools, #info.resources, #info.prompts))
  for _, t in ipairs(tools) do print("  mcp." .. name .. ".tool." .. t) end
end

local function text(r) return r and r.content and r.content[1] and r.content[1].text end
local function show(what, r, err)
  local said = r and (text(r) or msrt.json.encode(r)):gsub("%s+", " ") or ("error: " .. tostring(err))
  print(("%-34s %s"):format(what, #said > 90 and said:sub(1, 87) .. "..." or said))
end

print()
show("everything get-sum {a=2, b=3}", msrt.request("mcp.everything.tool.get-sum", { a = 2, b = 3 }))
show("fs list_directory examples", msrt.request("mcp.fs.tool.list_directory", { path = project .. "/examples" }))
show("memory create_entities", msrt.request("mcp.memory.tool.create_entities",
  { entities = { { name = "msrt", entityType = "runtime", observations = { "hosts MCP servers" } } } }))
show("memory read_graph", msrt.request("mcp.memory.tool.read_graph", {}))
show("fs read_text_file /etc/passwd", msrt.request("mcp.fs.tool.read_text_file", { path = "/etc/passwd" }))
show("everything get-sum {a=2}", msrt.request("mcp.everything.tool.get-sum", { a = 2 }))
local steps = 0
show("everything long-running (3 steps)", msrt.mcp.call("everything", "trigger-long-running-operation",
  { duration = 1, steps = 3 }, { progress = function() steps = steps + 1 end }))
print(("%-34s %d progress notifications"):format("", steps))

-- The tree as `msrt-lua ctl SOCKET tree` prints it (a child process
-- speaking to this host's control socket; its lines come back as messages).
print()
local lines = {}
local sub = msrt.subscribe("agents.ctl_tree.out", function(m) lines[#lines + 1] = m.data end)
local ctl = assert(msrt.process{ name = "ctl_tree", cmd = { uv.exepath(), "ctl", sock, "tree" }, codec = "lines" })
ctl:wait()
-- every line it printed was published before its exit: wait until each is here
while #lines < ctl:stats().lines_out do msrt.sleep(1) end
sub.unsubscribe()
print("$ msrt-lua ctl " .. sock .. " tree")
print(table.concat(lines, "\n"))

if keep then
  print(("\nrunning: msrt-lua ctl %s tree  (Ctrl-C to stop)"):format(sock))
  return
end
sup:stop()
sup:wait()
os.remove(dir .. "/memory.jsonl")
msrt.on_shutdown(function() uv.fs_rmdir(dir) end)
msrt.stop()
