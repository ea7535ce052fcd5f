-- msrt.jsonschema: the JSON Schema keywords MCP tools' inputSchemas use
-- (README "MCP servers"), checked on plain Lua values.
local js = require "msrt.jsonschema"
local null = require("msrt").json.null

local function fails(s, v, pattern)
  local ok, why = js.check(s, v)
  assert.is_nil(ok)
  assert.matches(pattern, why)
end

describe("msrt.jsonschema", function()
  local obj = { type = "object", required = { "a" }, additionalProperties = false,
    properties = { a = { type = "integer", minimum = 1, maximum = 3 }, list = { type = "array", items = { type = "string" }, maxItems = 2 },
      name = { type = "string", minLength = 2, maxLength = 3 }, kind = { enum = { "x", "y" } } } }

  it("passes values the schema allows", function()
    assert.is_true(js.check(obj, { a = 2, list = { "p", "q" }, name = "né", kind = "y" }))
    assert.is_true(js.check({ type = "object" }, {}))           -- the empty table is an object
    assert.is_true(js.check({ type = "array" }, {}))            -- and an array
    assert.is_true(js.check({ type = { "string", "null" } }, null))
    assert.is_true(js.check({ type = "object", properties = { p = { pattern = "^z" } } }, { p = "a" })) -- pattern: the server's
  end)

  it("refuses each kind of problem with its path", function()
    fails(obj, {}, "arguments: 'a' is required")
    fails(obj, { a = 1.5 }, "arguments.a must be integer, got number")
    fails(obj, { a = 9 }, "arguments.a must be <= 3")
    fails(obj, { a = 1, list = { "p", 2 } }, "arguments.list%[2%] must be string")
    fails(obj, { a = 1, list = { "p", "q", "r" } }, "at most 2 items")
    fails(obj, { a = 1, name = "n" }, "at least 2 characters")
    fails(obj, { a = 1, kind = "z" }, "enum")
    fails(obj, { a = 1, nam = "xx" }, "unknown property 'nam' %(did you mean 'name'%?%)")
    fails({ type = "object" }, "s", "must be object, got string")
  end)

  it("follows anyOf, oneOf, allOf, not and local $refs", function()
    local s = { ["$defs"] = { pos = { type = "number", exclusiveMinimum = 0 } },
      anyOf = { { ["$ref"] = "#/$defs/pos" }, { type = "string" } } }
    assert.is_true(js.check(s, 2))
    assert.is_true(js.check(s, "x"))
    fails(s, -1, "must be > 0")
    fails({ oneOf = { { type = "number" }, { type = "integer" } } }, 1, "exactly one")
    fails({ ["not"] = { type = "string" } }, "x", "not")
    fails({ allOf = { { type = "number" }, { multipleOf = 2 } } }, 3, "multiple of 2")
  end)
end)
