-- What a user reads when a process's cwd or the metrics address is wrong
-- (README "Processes", "Operator tools"): the cause in one line, not a
-- missing program or a traceback.
local S = require "spec.support"
local uv = require "luv"

describe("a process whose cwd cannot be entered", function()
  it("says cwd and why, not that the program is missing", function()
    local r = S.run({ "-e", [[
      local msrt = require "msrt"
      local _, err = msrt.process{ name = "nope", cmd = { "/bin/echo", "hi" }, cwd = "/nonexistent/dir" }
      print(err.code, err.message)
      _, err = msrt.process{ name = "file", cmd = { "/bin/echo", "hi" }, cwd = "/etc/hostname" }
      print(err.message)
    ]] })
    assert.are.equal(0, r.code, r.err)
    local first, second = r.out:match("^([^\n]*)\n([^\n]*)")
    assert.are.equal("spawn_failed\tprocess nope: cwd /nonexistent/dir: No such file or directory", first)
    assert.are.equal("process file: cwd /etc/hostname: Not a directory", second)
  end)
end)

describe("--metrics", function()
  local IDLE = S.file("require('msrt').after(1, function() end)\n")

  it("takes a host name (resolved) as well as an address", function()
    local probe = uv.new_tcp() -- a free port, for the host to take
    assert(probe:bind("127.0.0.1", 0))
    local port = probe:getsockname().port
    probe:close()
    uv.run("nowait")
    local r = S.run({ "--metrics", "localhost:" .. port, "-e", ([[
      local uv = require "luv"
      local c, out = uv.new_tcp(), {}
      c:connect("127.0.0.1", %d, function(err)
        assert(not err, err)
        c:write("GET /metrics HTTP/1.1\r\n\r\n")
        c:read_start(function(_, s) if s then out[#out + 1] = s else c:close() io.write(table.concat(out)) end end)
      end)
    ]]):format(port) })
    assert.are.equal(0, r.code, r.err)
    assert.matches(("metrics on http://localhost:%d/metrics"):format(port), r.err)
    assert.matches("^HTTP/1.1 200 OK", r.out)
  end)

  it("an address in use is one line naming the address, with no traceback", function()
    local busy = uv.new_tcp()
    assert(busy:bind("127.0.0.1", 0))
    assert(busy:listen(1, function() end))
    local port = busy:getsockname().port
    local r = S.run({ "--metrics", "127.0.0.1:" .. port, IDLE })
    busy:close()
    uv.run("nowait")
    assert.are.equal(1, r.code)
    assert.matches(("^msrt%%-lua: cannot listen on 127%%.0%%.0%%.1:%d: address already in use"):format(port), r.err)
    assert.is_nil(r.err:find("traceback", 1, true), r.err)
    local bad = S.run({ "--metrics", "no-such-host.invalid:9471", IDLE })
    assert.are.equal(1, bad.code)
    assert.matches("^msrt%-lua: cannot resolve metrics host 'no%-such%-host%.invalid'", bad.err)
    assert.is_nil(bad.err:find("traceback", 1, true), bad.err)
  end)
end)
