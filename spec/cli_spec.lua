local S = require "spec.support"

describe("msrt-lua as a lua command", function()
  it("runs -e chunks in order and prints", function()
    local r = S.run { "-e", "x = 20", "-e", "print(x + 1)" }
    assert.are.equal(0, r.code)
    assert.are.equal("21\n", r.out)
  end)

  it("gives a script its arguments in arg and ...", function()
    local path = S.file('print(arg[0] ~= nil, arg[1], arg[2], select("#", ...), ...)')
    local r = S.run { path, "a b", "c" }
    assert.are.equal(0, r.code)
    assert.are.equal("true\ta b\tc\t2\ta b\tc\n", r.out)
    os.remove(path)
  end)

  it("puts options before the script at negative arg indices", function()
    local path = S.file('print(arg[-1], arg[-2])')
    local r = S.run { "-e", "y=1", path }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("y=1\t-e\n", r.out)
    os.remove(path)
  end)

  it("runs standard input with -", function()
    local r = S.run({ "-" }, { stdin = "print('from stdin')" })
    assert.are.equal("from stdin\n", r.out)
    assert.are.equal(0, r.code, r.err)
  end)

  it("treats arguments after -- as the script", function()
    local path = S.file('print("dashdash", ...)')
    local r = S.run { "--", path, "-e" }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("dashdash\t-e\n", r.out)
    os.remove(path)
  end)

  it("loads a module with -l as a global", function()
    local r = S.run { "-l", "string", "-e", "print(type(string.rep))" }
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("function\n", r.out)
  end)

  it("prints its version with -v", function()
    local r = S.run { "-v" }
    assert.are.equal(0, r.code)
    assert.matches("^msrt%-lua %d+%.%d+%.%d+ %(LuaJIT", r.out)
  end)

  it("exits with os.exit's status", function()
    assert.are.equal(7, S.run({ "-e", "os.exit(7)" }).code)
    assert.are.equal(1, S.run({ "-e", "os.exit(false)" }).code)
  end)

  it("finds require 'msrt' from any directory", function()
    -- from / and from an empty directory, with no LUA_PATH or MSRT_LUA_DIR
    -- to help: msrt-lua finds its Lua tree from where it is
    local empty = assert(require("luv").fs_mkdtemp("/tmp/msrt-cli-XXXXXX"))
    local exe = S.exe:sub(1, 1) == "/" and S.exe or (assert(require("luv").cwd()) .. "/" .. S.exe)
    for _, dir in ipairs({ "/", empty }) do
      local r = S.run({ "-e", "print(type(require('msrt').publish), package.searchpath('msrt', package.path))" },
        { cwd = dir, exe = exe, env = "env -u LUA_PATH -u LUA_PATH_5_1 -u MSRT_LUA_DIR" })
      assert.are.equal(0, r.code, r.err)
      assert.matches("^function\t/.*/msrt/init%.lua\n$", r.out)
    end
    assert(os.remove(empty))
  end)
end)

describe("msrt-lua on bad input", function()
  it("reports a missing script in one line, exit 1", function()
    local r = S.run { "/nonexistent/script.lua" }
    assert.are.equal(1, r.code)
    assert.matches("^msrt%-lua: cannot open /nonexistent/script.lua", r.err)
  end)

  it("reports a syntax error with file:line, exit 1", function()
    local path = S.file("local x = 1\nlocal = 2\n")
    local r = S.run { path }
    assert.are.equal(1, r.code)
    assert.matches(path:gsub("%p", "%%%0") .. ":2:", r.err)
    os.remove(path)
  end)

  it("reports a runtime error with file:line and a traceback, exit 1", function()
    local path = S.file("local function f() error('boom') end\nf()\n")
    local r = S.run { path }
    assert.are.equal(1, r.code)
    assert.matches(":1: boom", r.err)
    assert.matches("stack traceback:", r.err)
    os.remove(path)
  end)

  it("refuses an unknown option with exit 2 and the usage", function()
    local r = S.run { "--bogus" }
    assert.are.equal(2, r.code)
    assert.matches("unknown option '%-%-bogus'", r.err)
    assert.matches("usage: msrt%-lua", r.err)
    assert.is_nil(r.err:find("--profile", 1, true), "the full usage reprinted") -- one line, not the list
    assert.are.equal(2, select(2, r.err:gsub("\n", "")))
  end)

  it("--help lists the options, then the ctl usage", function()
    local r = S.run { "--help" }
    assert.are.equal(0, r.code)
    local check, ctl = r.out:find("--check", 1, true), r.out:find("usage: msrt-lua ctl", 1, true)
    assert.is_number(ctl)
    assert.is_true(check < ctl and r.out:find("--help", 1, true) < ctl)
    assert.matches("restart PATH", r.out:sub(ctl))
  end)

  it("refuses a bad --workers value with exit 2", function()
    assert.are.equal(2, S.run({ "--workers", "zero", "-e", "" }).code)
    assert.are.equal(2, S.run({ "--workers", "0", "-e", "" }).code)
    assert.are.equal(2, S.run({ "--log-level", "loud", "-e", "" }).code)
    assert.are.equal(2, S.run({ "-e" }).code)
  end)

  it("refuses an unknown profile with the known names, exit 1", function()
    local r = S.run { "--profile", "nope", "-e", "print(1)" }
    assert.are.equal(1, r.code)
    assert.matches("unknown profile 'nope' %(known: cpu_bound, default, io_bound, websocket%)", r.err)
    assert.are.equal("", r.out)
  end)
end)
