-- A real language server under codec = "lsp" (README "Processes"):
-- clangd (Debian's) is initialized, opens a file of the project's src/
-- (with one line of ours added that does not compile), publishes its
-- diagnostics as a notification, answers a go-to-definition, and shuts
-- down cleanly on shutdown + exit.
local S = require "spec.support"
local msrt = require "msrt"
local core = require "msrt.core"
local uv = require "luv"

local ROOT = uv.cwd()
local FILE = ROOT .. "/src/proc/rpc.c"
local URI = "file://" .. FILE

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- 0-based line and character of the first occurrence of needle
local function position(text, needle)
  local at = assert(text:find(needle, 1, true), needle)
  local before = text:sub(1, at - 1)
  local _, line = before:gsub("\n", "")
  local col = #before - (before:match(".*()\n") or 0)
  return { line = line, character = col }
end

describe("clangd under codec = \"lsp\"", function()
  local clangd = "/usr/bin/clangd" -- Debian's clangd (scripts/setup)

  it("initializes, diagnoses an opened src/ file, finds a definition and shuts down cleanly", function()
    S.drive(function()
      local diags = S.collector("agents.clangd.notify.textDocument/publishDiagnostics")
      local h = assert(msrt.process{
        name = "clangd", codec = "lsp", cwd = ROOT, inherit_env = { "PATH", "HOME" },
        -- no background index: it would write .cache/ into the tree
        cmd = { clangd, "--background-index=false", "--log=error", "--pch-storage=memory" },
      })
      local init = assert(msrt.request("clangd.rpc.initialize", {
        processId = msrt.null, rootUri = "file://" .. ROOT, capabilities = {},
        -- clangd's extension: the flags for a file no compile database names
        initializationOptions = { fallbackFlags = { "-std=c11", "-I" .. ROOT .. "/src" } },
      }, { timeout_ms = 60000 }))
      assert.is_table(init.capabilities)
      assert.is_not_nil(init.capabilities.definitionProvider)
      assert(msrt.publish("clangd.rpc.initialized", {}))

      local text = read(FILE) .. "\nint msrt_spec_broken = msrt_spec_undeclared;\n"
      assert(msrt.publish("clangd.rpc.textDocument/didOpen", {
        textDocument = { uri = URI, languageId = "c", version = 1, text = text } }))
      local found
      assert.is_true(S.wait_until(function()
        for _, m in ipairs(diags.msgs) do
          for _, d in ipairs(m.data.diagnostics or {}) do
            if m.data.uri == URI and d.message:find("msrt_spec_undeclared", 1, true) then found = d end
          end
        end
        return found ~= nil
      end, 60000), "no diagnostic for the broken line")
      assert.are.equal(1, found.severity) -- Error
      assert.are.equal(position(text, "msrt_spec_undeclared").line, found.range.start.line)

      -- msrt_json_put_string is declared in src/proc/codec.h
      local at = position(text, "msrt_json_put_string(b, m")
      local defs = assert(msrt.request("clangd.rpc.textDocument/definition",
        { textDocument = { uri = URI }, position = at }, { timeout_ms = 60000 }))
      local loc = defs[1] or defs
      assert.matches("/src/proc/codec%.[ch]$", loc.uri)

      local bye = msrt.request("clangd.rpc.shutdown", nil, { timeout_ms = 60000 })
      assert.are.equal(msrt.null, bye) -- result null
      assert(msrt.publish("clangd.rpc.exit", nil))
      local rec = h:wait()
      assert.are.equal(0, rec.code)
      assert.is_true(rec.normal)
      assert.are.equal(0, h:stats().bad_output)
      diags.close()
    end, 120000)
    assert.are.equal(0, core.proc_count())
  end)
end)
