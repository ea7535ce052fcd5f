local S = require "spec.support"
local profile = require "msrt.profile"
local core = require "msrt.core"

local function resolved(name)
  local r = S.run { "--profile", name, "-e",
    "local p = require'msrt'.profile() print(p.workers, p.blocking_threads, p.batch, p.stack_size)" }
  assert.are.equal(0, r.code, r.err)
  return r.out
end

describe("tuning profiles", function()
  local cpus = core.machine().cpus

  it("each shipped profile resolves to different figures", function()
    local seen = {}
    for _, name in ipairs { "default", "cpu_bound", "io_bound", "websocket" } do
      local out = resolved(name)
      assert.is_nil(seen[out], name .. " resolves like " .. tostring(seen[out]))
      seen[out] = name
    end
  end)

  it("follow the seed figures", function()
    local io = assert(profile.resolve("io_bound"))
    assert.are.equal(4 * cpus, io.workers)
    assert.are.equal(1024, io.blocking_threads)
    assert.are.equal(120000, io.connections.keepalive_ms)
    local cpu = assert(profile.resolve("cpu_bound"))
    assert.are.equal(cpus, cpu.workers)
    assert.are.equal(128, cpu.blocking_threads)
    assert.are.equal(4 * 1024 * 1024, cpu.stack_size)
    local ws = assert(profile.resolve("websocket"))
    assert.are.equal(2 * cpus, ws.workers)
    assert.are.equal(768, ws.blocking_threads)
  end)

  it("prints the resolved figure from the command line", function()
    local r = S.run { "--profile", "io_bound", "-e", 'print(require"msrt".profile().workers)' }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(tostring(4 * cpus) .. "\n", r.out)
  end)

  it("lets --workers override the profile and MSRT_PROFILE choose it", function()
    local r = S.run { "--profile", "io_bound", "--workers", "3", "-e", 'print(require"msrt".profile().workers)' }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("3\n", r.out)
    r = S.run({ "-e", 'print(require"msrt".profile().name)' }, { env = "MSRT_PROFILE=websocket" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("websocket\n", r.out)
  end)

  it("fill what a profile leaves out from the default", function()
    local path = S.file("return { batch = 7 }\n")
    local t = assert(profile.resolve(path))
    assert.are.equal(7, t.batch)
    assert.are.equal(1024 * 1024, t.max_payload)
    os.remove(path)
  end)

  it("may be a function of the machine", function()
    local path = S.file("return function(m) return { workers = m.cpus + 1 } end\n")
    local t = assert(profile.resolve(path, { cpus = 5, memory = 1e9 }))
    assert.are.equal(6, t.workers)
    os.remove(path)
  end)

  it("report a wrong field with file and line, exit 1", function()
    local path = S.file("return {\n  batch = 8,\n  workers = 'many',\n}\n")
    local r = S.run { "--profile", path, "-e", "print('ran')" }
    assert.are.equal(1, r.code)
    assert.matches(path:gsub("%p", "%%%0") .. ":3: workers must be an integer in 1..256, got 'many'", r.err)
    assert.are.equal("", r.out)
    os.remove(path)
  end)

  it("report an unknown key with file and line", function()
    local path = S.file("return {\n  batch = 8,\n\n  wrkers = 2,\n}\n")
    local t, err = profile.resolve(path)
    assert.is_nil(t)
    assert.are.equal("bad_profile", err.code)
    assert.matches(":4: unknown field 'wrkers' %(did you mean 'workers'%?%)", err.message)
    os.remove(path)
  end)

  it("report a nested field out of range", function()
    local path = S.file("return { gc = { pause = 5 } }\n")
    local _, err = profile.resolve(path)
    os.remove(path)
    assert.matches(":1: gc.pause must be an integer in 10..1000", err.message)
  end)

  it("set the steal wait: 1 ms, checked", function()
    assert.are.equal(1000, assert(profile.resolve("default")).steal_wait_us)
    assert.are.equal(1000, assert(profile.resolve("cpu_bound")).steal_wait_us)
    local path = S.file("return {\n  steal_wait_us = 0,\n}\n")
    local _, err = profile.resolve(path)
    os.remove(path)
    assert.matches(":2: steal_wait_us must be an integer in 1..10000000", err.message)
  end)

  it("report a syntax error in a profile with file:line", function()
    local path = S.file("return {\n  batch = ,\n}\n")
    local _, err = profile.resolve(path)
    assert.are.equal("syntax", err.code)
    assert.matches(":2:", err.message)
    os.remove(path)
  end)

  it("size the libuv threadpool", function()
    -- libuv starts every pool thread at its first use; count them.
    local script = S.file([[
      local uv, core = require "luv", require "msrt.core"
      local before = core.threads()
      uv.fs_stat(".", function() print(core.threads() - before) end)
    ]])
    for name, want in pairs { default = 4, cpu_bound = 128, websocket = 768 } do
      local r = S.run { "--profile", name, script }
      assert.are.equal(0, r.code, r.err)
      assert.are.equal(tostring(want) .. "\n", r.out, name)
    end
    os.remove(script)
  end)

  it("warn when a later profile cannot resize a started pool", function()
    local r = S.run { "-e", [[
      local uv, msrt = require "luv", require "msrt"
      uv.fs_stat(".", function()
        local ok, warn = msrt.start { profile = "cpu_bound" }
        print(ok, warn ~= nil, msrt.profile().blocking_threads, msrt.profile().batch)
      end)
    ]] }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("true\ttrue\t4\t256\n", r.out)
    assert.matches("needs a restart", r.err)
  end)
end)

describe("msrt-lua --check", function()
  it("passes valid files", function()
    local dir = package.msrt_dir .. "/msrt/profiles/"
    local r = S.run { "--check", dir .. "default.lua", dir .. "io_bound.lua" }
    assert.are.equal(0, r.code, r.err)
  end)

  it("prints file:line: message for each bad file and exits 1", function()
    local bad1 = S.file("return {\n  spin_us = -1,\n}\n")
    local bad2 = S.file("return {\n  x = = 1\n}\n")
    local good = S.file("return { batch = 2 }\n")
    local r = S.run { "--check", bad1, good, bad2 }
    assert.are.equal(1, r.code)
    assert.matches(bad1:gsub("%p", "%%%0") .. ":2: spin_us must be", r.err)
    assert.matches(bad2:gsub("%p", "%%%0") .. ":2:", r.err)
    assert.is_nil(r.err:find(good, 1, true))
    os.remove(bad1) os.remove(bad2) os.remove(good)
  end)
end)
