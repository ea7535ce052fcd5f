-- docs/errors.md lists every code of src/core/error.h (MSRT_ERROR_CODES)
-- with the same category, severity and recovery, and nothing else: the
-- error table users read cannot drift from the one the runtime uses.
local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  return (src:match("^(.*)/spec/[^/]*$") or ".")
end

local function read(path)
  local f = assert(io.open(root() .. "/" .. path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function from_header()
  local codes, order = {}, {}
  for name, cat, sev, rec in read("src/core/error.h"):gmatch(
      'X%(%s*[%w_]+,%s*"([%w_]+)",%s*(%u+),%s*(%u+),%s*([%u_]+)%)') do
    codes[name] = { cat:lower(), sev:lower(), rec:lower() }
    order[#order + 1] = name
  end
  return codes, order
end

local function from_doc()
  local rows = {}
  for name, cat, sev, rec in read("docs/errors.md"):gmatch(
      "\n| `([%w_]+)` | (%S+) | (%S+) | (%S+) |") do
    assert.is_nil(rows[name], "docs/errors.md lists " .. name .. " twice")
    rows[name] = { cat, sev, rec }
  end
  return rows
end

describe("docs/errors.md", function()
  it("lists every code of src/core/error.h with its taxonomy, and no other", function()
    local codes, order = from_header()
    assert.is_true(#order >= 20, "cannot read MSRT_ERROR_CODES")
    local rows = from_doc()
    for _, name in ipairs(order) do
      assert.is_not_nil(rows[name], "docs/errors.md has no row for " .. name ..
        ": add `| `" .. name .. "` | " .. table.concat(codes[name], " | ") .. " | meaning |`")
      assert.are.same(codes[name], rows[name], "docs/errors.md row of " .. name)
    end
    for name in pairs(rows) do
      assert.is_not_nil(codes[name], "docs/errors.md lists " .. name .. ", which error.h does not define")
    end
  end)

  it("agrees with what the runtime reports for each code", function()
    local msrt = require "msrt"
    local _, order = from_header()
    local rows = from_doc()
    for _, name in ipairs(order) do
      if name ~= "ok" then
        local e = msrt.error(name, "x")
        assert.are.same(rows[name], { e.category, e.severity, e.recovery }, name)
      end
    end
  end)
end)
