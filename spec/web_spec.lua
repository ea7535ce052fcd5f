-- The web listener (README "HTTP endpoints and the dashboard"):
-- msrt.listen{ http = ADDR } serves /metrics, /healthz, /readyz and the
-- dashboard's files to a real HTTP client (curl), within the profile's
-- connection cap and timeouts.
local S = require "spec.support"

-- curl with args; -> {code = HTTP status, body = text, headers = text}
local function curl(args)
  local hdr = os.tmpname()
  local p = assert(io.popen(("curl -s -m 20 -D %s -w '\\n%%{http_code}' %s"):format(hdr, args)))
  local out = p:read("*a")
  p:close()
  local f = io.open(hdr)
  local headers = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(hdr)
  local body, code = out:match("^(.*)\n(%d+)$")
  return { code = tonumber(code), body = body, headers = headers }
end

-- A fleet whose child "db" is ready only while the file flag exists.
local function fleet(flag, extra)
  return S.file(([[
local msrt = require "msrt"
local l = assert(msrt.listen{ http = "127.0.0.1:0" })
io.stderr:write("listening on ", l:port("http"), "\n")
msrt.supervisor{ name = "fleet", children = {
  { id = "echo", actor = { subscribe = "web.echo", handle = function(ctx, m) ctx:reply(m, m.data) end } },
  { id = "db", process = { cmd = { "/bin/sh", "-c", "exec sleep 60" } },
    health = { readiness = { lua = function() return io.open(%q) ~= nil end, interval_ms = 20,
      failure_threshold = 1, success_threshold = 1 } } },
} }
io.stderr:write("fleet started\n")
%s
msrt.every(1000, function() end)
]]):format(flag, extra or ""))
end

-- Run body(port, flag, h) against a background host running the fleet
-- (args before the script: e.g. a profile); stopped and cleaned after,
-- whatever body does.
local function with_fleet(args, body)
  local flag = os.tmpname()
  local script = fleet(flag)
  args[#args + 1] = script
  local h = S.host(args)
  local ok, err = pcall(function()
    local port = h.wait("listening on (%d+)")
    assert.is_truthy(port, h.text())
    assert.is_truthy(h.wait("(fleet started)"), h.text())
    body(tonumber(port), flag, h)
  end)
  h.stop()
  os.remove(script)
  os.remove(flag)
  assert(ok, err)
end

describe("msrt.listen{ http = ADDR }", function()
  it("serves /metrics, /healthz, /readyz (503 while a readiness probe fails) and the dashboard", function()
    with_fleet({}, function(port, flag)
      local base = "http://127.0.0.1:" .. port
      local m = curl(base .. "/metrics")
      assert.are.equal(200, m.code)
      assert.matches("Content%-Type: text/plain; version=0.0.4", m.headers)
      assert.matches("# TYPE msrt_actors gauge", m.body)
      assert.matches('msrt_restarts_total{supervisor="fleet",child="db"} 0', m.body, 1, true)
      local hz = curl(base .. "/healthz")
      assert.are.same({ 200, "ok\n" }, { hz.code, hz.body })
      local ready = curl(base .. "/readyz")
      assert.are.same({ 200, "ready\n" }, { ready.code, ready.body })
      os.remove(flag)
      local r
      for _ = 1, 500 do
        r = curl(base .. "/readyz")
        if r.code ~= 200 then break end
        require("luv").sleep(10)
      end
      assert.are.equal(503, r.code)
      assert.matches("^not ready: fleet/db: not ready", r.body)
      local page = curl(base .. "/")
      assert.are.equal(200, page.code)
      assert.matches("content%-type: text/html", page.headers:lower())
      assert.matches("<title>msrt", page.body)
    end)
  end)

  it("answers GET and HEAD only, and never a file outside its mounts", function()
    with_fleet({}, function(port)
      local base = "http://127.0.0.1:" .. port
      assert.are.equal(405, curl("-X POST -d x=1 " .. base .. "/metrics").code)
      local head = curl("-I " .. base .. "/healthz") -- -I: the headers are all curl prints
      assert.are.equal(200, head.code)
      assert.matches("Content%-Length: 3\r\n", head.body)
      assert.is_nil(head.body:find("\nok"), head.body)
      for _, path in ipairs({ "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/vendor/../../etc/passwd",
        "/nope.html", "//etc/passwd" }) do
        local r = curl("--path-as-is " .. base .. path)
        assert.are_not.equal(200, r.code, path)
        assert.is_nil(r.body:find("root:", 1, true), path)
      end
    end)
  end)

  it("holds at most connections.max, closes a silent one after read_timeout_ms, refuses oversized headers", function()
    local prof = S.file("return { connections = { max = 3, read_timeout_ms = 1000, idle_timeout_ms = 1000 } }\n")
    with_fleet({ "--profile", prof }, function(port)
      -- three silent connections fill the cap; a fourth is closed at once;
      -- all three are closed by the read timeout, then a request works
      local probe = S.file(([[
        local uv = require "luv"
        local conns, closed, t0 = {}, 0, uv.now()
        local function open(i, on_eof)
          local c = uv.new_tcp()
          c:connect("127.0.0.1", %d, function(e)
            assert(not e, e)
            c:read_start(function(_, chunk) if not chunk then c:close() on_eof(i) end end)
          end)
          conns[i] = c
        end
        for i = 1, 3 do open(i, function() closed = closed + 1 end) end
        uv.new_timer():start(300, 0, function()
          open(4, function() io.write("fourth closed after ", uv.now() - t0, "\n") end)
        end)
        local t = uv.new_timer()
        t:start(50, 50, function()
          if closed == 3 then io.write("three closed\n") t:close() end
        end)
        uv.run()
      ]]):format(port))
      local r = S.run({ probe }, { limit_s = 20 })
      assert.matches("fourth closed after", r.out, 1, true)
      assert.matches("three closed", r.out, 1, true)
      assert.are.equal(200, curl("http://127.0.0.1:" .. port .. "/healthz").code)
      local big = curl(("-H 'X-Big: %s' http://127.0.0.1:%d/healthz"):format(("a"):rep(20000), port))
      assert.are_not.equal(200, big.code)
      assert.are.equal(200, curl("http://127.0.0.1:" .. port .. "/healthz").code)
    end)
    os.remove(prof)
  end)

  it("refuses a bad address and an address in use with one clear error", function()
    local r = S.run({ "-e", [[
      local msrt = require "msrt"
      local a = assert(msrt.listen{ http = "127.0.0.1:0" })
      local _, err = msrt.listen{ http = "127.0.0.1:" .. a:port() }
      print(err.code, err.message)
      _, err = msrt.listen{ http = "no-port" }
      print(err.code, err.message)
      print(pcall(msrt.listen, { gopher = "127.0.0.1:0" }))
    ]] })
    assert.are.equal(0, r.code, r.err)
    assert.matches("network\tcannot listen on 127%.0%.0%.1:%d+: address already in use", r.out)
    assert.matches("invalid_arg\thttp address 'no%-port': expected HOST:PORT", r.out)
    assert.matches("false\t[^\n]*unknown key 'gopher'", r.out)
  end)
end)
