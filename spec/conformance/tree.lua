-- The tools the MCP conformance suite's server scenarios call
-- (@modelcontextprotocol/conformance), as one actor answering
-- conformance.<tool> with each tool's CallToolResult (spec/mcp_conformance_spec.lua).
return { name = "conformance", children = {
  { id = "tools", actor = { subscribe = "conformance.>", handle = function(ctx, msg)
    -- a 1x1 PNG and a 44-byte silent WAV, base64
    local png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    local wav = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA="
    local resource = { type = "resource", resource = { uri = "test://embedded-resource", mimeType = "text/plain",
      text = "This is an embedded resource content." } }
    local results = {
      test_simple_text = { content = { { type = "text", text = "This is a simple text response for testing." } } },
      test_image_content = { content = { { type = "image", data = png, mimeType = "image/png" } } },
      test_audio_content = { content = { { type = "audio", data = wav, mimeType = "audio/wav" } } },
      test_embedded_resource = { content = { resource } },
      test_multiple_content_types = { content = { { type = "text", text = "Multiple content types test:" },
        { type = "image", data = png, mimeType = "image/png" }, resource } },
      test_error_handling = { isError = true,
        content = { { type = "text", text = "This tool intentionally returns an error for testing" } } },
    }
    ctx:reply(msg, results[msg.subject:match("[^.]+$")])
  end } } } }
