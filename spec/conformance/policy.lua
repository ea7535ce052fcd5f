-- `msrt-lua mcp serve` for the MCP conformance suite's server scenarios
-- (spec/mcp_conformance_spec.lua): the tools it calls, from tree.lua.
local tools = {}
for _, name in ipairs({ "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
  "test_multiple_content_types", "test_error_handling" }) do
  tools[#tools + 1] = { name = name, subject = "conformance." .. name, description = "conformance: " .. name }
end
return { name = "msrt-conformance", version = "1", fleet = "tree.lua", tools = tools }
