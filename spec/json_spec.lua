-- msrt.json: JSON for Lua code on the runtime's own cJSON, by the rules a
-- process's JSON lines meet (README "Processes"), checked against a real
-- child's lines both ways.
local S = require "spec.support"
local msrt = require "msrt"

local json = msrt.json

describe("msrt.json", function()
  it("encodes by the process edge's rules", function()
    assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.are.equal('{"a":1}', json.encode({ a = 1 }))
    assert.are.equal("{}", json.encode({}))
    assert.are.equal("null", json.encode(msrt.null))
    assert.are.equal("null", json.encode(nil))
    assert.are.equal("null", json.encode(0 / 0))
    assert.are.equal('"\\ufffd"', json.encode("\255"))
    assert.are.equal('{"1":true,"3":false}', json.encode({ [1] = true, [3] = false }))
    assert.are.equal("0.1", json.encode(0.1))
    assert.is_true(json.null == msrt.null)
  end)

  it("decodes by the process edge's rules: last key wins, null is msrt.null", function()
    local v = assert(json.decode(' {"k":1,"k":2,"a":[1,null,"x"],"o":{}} \n'))
    assert.are.equal(2, v.k)
    assert.are.same({ 1, msrt.null, "x" }, v.a)
    assert.are.same({}, v.o)
    assert.are.equal("é", json.decode('"\\u00e9"'))
  end)

  it("refuses what a child's line would be refused for, naming why", function()
    for text, why in pairs {
      ['{"a":'] = "invalid JSON at byte",
      ['[1] x'] = "invalid JSON at byte",
      ['"\255"'] = "invalid UTF-8 at byte 1",
      ['"a\\u0000b"'] = "\\u0000",
      ['"a\0b"'] = "NUL byte",
      [string.rep("[", 101) .. string.rep("]", 101)] = "nested deeper than 100",
    } do
      local v, err = json.decode(text)
      assert.is_nil(v)
      assert.are.equal("invalid_arg", err.code)
      assert.matches(why, err.message, 1, true)
    end
    local v, err = json.encode({ handler = print })
    assert.is_nil(v)
    assert.are.equal("invalid_arg", err.code)
    assert.matches("value.handler: function", err.message, 1, true)
    assert.has_error(function() json.decode(42) end, "bad argument #1 to 'decode' (string expected, got number)")
  end)

  it("agrees with a real child's lines both ways", function()
    S.drive(function()
      local value = { n = 1.5, s = "é\t\"q\"", list = { 1, "two", msrt.null, { x = false } }, empty = {} }
      local got = S.collector("agents.jsonpeer.out")
      -- the child echoes the data of the line it reads back on stdout
      local p = assert(msrt.process { name = "jsonpeer", subscribe = "jsonpeer.in",
        cmd = { "/bin/sh", "-c", [[read -r line; printf '%s\n' "$line" >&2
          printf '%s\n' "$line" | sed 's/.*"data":\(.*\)}$/\1/']] } })
      assert.is_true(msrt.publish("jsonpeer.in", value))
      assert.is_true(got.wait(1))
      local rec = p:wait()
      -- what the child read is what msrt.json.encode writes
      local data = rec.stderr:match('"data":(.*)}$')
      assert.are.equal(json.encode(value), data)
      -- what the child's line became is what msrt.json.decode makes of it
      assert.are.same(json.decode(data), got.msgs[1].data)
      assert.are.same(value, json.decode(data))
      got.close()
    end)
  end)
end)
