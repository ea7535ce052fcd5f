-- The README's examples run exactly as written (README "A tour", "Testing
-- your fleet with busted"): each code block marked
-- `<!-- readme_spec: NAME -->` is written to a fresh directory under NAME
-- and run there with msrt-lua, as a newcomer would run it.
local S = require "spec.support"

local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  return src:match("^(.*)/spec/[^/]*$") or "."
end

local function blocks()
  local f = assert(io.open(root() .. "/README.md", "rb"))
  local text = f:read("*a")
  f:close()
  local out = {}
  for name, code in text:gmatch("<!%-%- readme_spec: ([%w_.]+) %-%->\n```%w*\n(.-)```\n") do
    out[name] = code
  end
  return out
end

local function dir_with(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. S.quote(dir .. "/policies")) == 0)
  for name, text in pairs(files) do S.write(dir .. "/" .. name, text) end
  return dir
end

describe("the README", function()
  local code = blocks()

  it("has the blocks this spec runs", function()
    for _, name in ipairs({ "tour.lua", "fleet.lua", "fleet_spec.lua" }) do
      assert.is_string(code[name], "README has no block marked readme_spec: " .. name)
    end
  end)

  it("tour prints what its comments say", function()
    local dir = dir_with({ ["tour.lua"] = code["tour.lua"],
      -- the routing table the tour's comment describes
      ["policies/routes.lua"] = 'return { { match = "legacy.*.review", rewrite = "review.$1" } }\n' })
    local r = S.run({ "tour.lua" }, { cwd = dir, limit_s = 60, env = "MSRT_LOG_LEVEL=warn" })
    os.execute("rm -rf " .. S.quote(dir))
    local want = {}
    for line in code["tour.lua"]:gmatch("[^\n]*%-%->%s*([^\n]*)") do want[#want + 1] = line end
    assert.are.same({ "5", "REWRITTEN TO REVIEW.X" }, want)
    assert.are.equal(table.concat(want, "\n") .. "\n", r.out, r.err)
    assert.are.equal(0, r.code, r.err)
  end)

  it("newcomer's supervised agent passes its busted spec as written", function()
    local dir = dir_with({ ["fleet.lua"] = code["fleet.lua"], ["fleet_spec.lua"] = code["fleet_spec.lua"] })
    local r = S.run({ "/usr/bin/busted", "-o", "TAP", "fleet_spec.lua" },
      { cwd = dir, limit_s = 120, env = "MSRT_LOG_LEVEL=warn" })
    os.execute("rm -rf " .. S.quote(dir))
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.matches("ok 1 .*ok 2 ", r.out)
    assert.is_nil(r.out:find("not ok"), r.out)
  end)
end)
