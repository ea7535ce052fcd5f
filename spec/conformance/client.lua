-- msrt's MCP client under the MCP conformance suite's client scenarios
-- (spec/mcp_conformance_spec.lua): `conformance client --command
-- "msrt-lua spec/conformance/client.lua"` appends the scenario server's URL
-- and names the scenario in MCP_CONFORMANCE_SCENARIO. The client is
-- msrt.mcp.server{url} under a supervisor, as an application runs it: the
-- handshake (initialize, notifications/initialized, tools/list), then each
-- listed tool called once with arguments made from its input schema, then
-- the supervisor stopped (the session's DELETE).
local msrt = require "msrt"

local url = assert(arg[1], "usage: msrt-lua spec/conformance/client.lua URL")

-- An argument of each required or listed property, by its type.
local SAMPLE = { number = 1, integer = 1, string = "msrt", boolean = true, array = {}, object = {} }

local function arguments(schema)
  local a = {}
  for k, p in pairs(type(schema) == "table" and type(schema.properties) == "table" and schema.properties or {}) do
    local v = p.default
    if v == nil then v = SAMPLE[p.type] end
    if v ~= nil then a[k] = v end
  end
  return a
end

local sup = assert(msrt.supervisor{ name = "conformance", children = {
  assert(msrt.mcp.server{ name = "srv", url = url, ping = false, startup_timeout_ms = 10000 }) } })
local info = msrt.mcp.info("srv")
io.stderr:write(("client: %s speaks %s\n"):format(url, tostring(info.protocol_version)))
local names = {}
for name in pairs(info.tools or {}) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local r, err = msrt.request("mcp.srv.tool." .. name, arguments(info.tools[name].inputSchema), { timeout_ms = 10000 })
  io.stderr:write(("client: %s -> %s\n"):format(name, r and msrt.json.encode(r) or tostring(err)))
end
sup:stop()
sup:wait()
msrt.stop("done", 0)
