-- Operator tools against a running fleet: `msrt-lua ctl SOCKET ...` and
-- Prometheus /metrics (msrt-lua --ctl PATH --metrics HOST:PORT).
local S = require "spec.support"
local uv = require "luv"

local FLEET = [[
local msrt = require "msrt"
msrt.supervisor{ name = "ops", children = {
  { id = "echo", actor = { subscribe = "ops.echo", handle = function(ctx, m) ctx:reply(m, m.data) end } },
  { id = "sleeper", process = { cmd = { "/bin/sh", "-c", "exec sleep 60" } } },
  { id = "inner", supervisor = { name = "inner", children = {
    { id = "worker", actor = { subscribe = "ops.work", handle = function() end } } } } },
} }
-- msrt.supervisor returns once every child has started (OTP start order):
-- the spec waits for this line before it asks for the tree
io.stderr:write("fleet started\n")
msrt.publish("ops.work", "one message for the per-class counters")
msrt.every(1000, function() end) -- keep running until ctl stop
]]

-- GET path from 127.0.0.1:port with luv, run as a child msrt-lua.
local function http_get(port, path)
  return S.run({ "-e", ([[
    local uv = require "luv"
    local c, out = uv.new_tcp(), {}
    c:connect("127.0.0.1", %d, function(err)
      assert(not err, err)
      c:write("GET %s HTTP/1.1\r\nHost: x\r\n\r\n")
      c:read_start(function(_, chunk) if chunk then out[#out + 1] = chunk else c:close() end end)
    end)
    uv.run()
    io.write(table.concat(out))
  ]]):format(port, path) })
end

describe("operator tools", function()
  it("ctl status/tree/metrics/stop and /metrics describe the running fleet", function()
    local sock = os.tmpname() .. ".sock"
    local script = S.file(FLEET)
    local errf = os.tmpname()
    local pid = io.popen(("%s --ctl %s --metrics 127.0.0.1:0 %s 2>%s & echo $!")
      :format(S.quote(S.exe), sock, script, errf)):read("*l")
    local port
    for _ = 1, 500 do -- until the fleet says where it listens
      local f = io.open(errf)
      local text = f and f:read("*a") or ""
      if f then f:close() end
      port = tonumber(text:match("metrics on http://127%.0%.0%.1:(%d+)/metrics"))
      if port and text:find("control socket", 1, true) and text:find("fleet started", 1, true) then break end
      uv.sleep(20)
    end
    assert.is_number(port, "the fleet did not start")
    assert.is_truthy(io.open(errf):read("*a"):find("fleet started", 1, true), "the fleet did not start")
    local ok, err = pcall(function()
      local tree = S.run({ "ctl", sock, "tree" })
      assert.are.equal(0, tree.code, tree.err)
      assert.matches("ops %(one_for_one, running%)", tree.out)
      assert.matches("echo%s+actor%s+running%s+actor#%d+%s+up [%d.]+s%s+restarts 0", tree.out)
      assert.matches("sleeper%s+process%s+running%s+%d+%s+up", tree.out)
      assert.matches("inner%s+supervisor%s+running", tree.out)
      assert.matches("\n%s+inner %(one_for_one, running%)\n%s+worker%s+actor%s+running", tree.out)
      local status = S.run({ "ctl", sock, "status" })
      assert.matches("actors 2, processes 1, supervisors 2", status.out)
      local m = http_get(port, "/metrics")
      assert.matches("^HTTP/1.1 200 OK", m.out)
      assert.matches("Content%-Type: text/plain; version=0.0.4", m.out)
      assert.matches("\nmsrt_actors 2\n", m.out)
      assert.matches("\nmsrt_processes 1\n", m.out)
      assert.matches('\nmsrt_restarts_total{supervisor="ops",child="echo"} 0\n', m.out)
      assert.matches('\nmsrt_router_messages_total{class="ops",outcome="accepted"} 1\n', m.out)
      assert.matches('\nmsrt_router_messages_total{class="ops",outcome="delivered"} 1\n', m.out)
      assert.matches('\nmsrt_router_messages_total{class="msrt",outcome="accepted"} %d+\n', m.out)
      assert.matches("^HTTP/1.1 404", http_get(port, "/other").out)
      local ctl_metrics = S.run({ "ctl", sock, "metrics" })
      assert.matches("# TYPE msrt_actors gauge", ctl_metrics.out)
      assert.are.equal(2, S.run({ "ctl", sock, "bogus" }).code)
      -- help, from the host and without one; tree says what its health states mean
      local help = S.run({ "ctl", sock, "help" })
      assert.are.equal(0, help.code, help.err)
      for _, line in ipairs({ "stop PATH", "start PATH", "restart PATH", "help", "fleet/workers/c%-1" }) do
        assert.matches(line, help.out)
      end
      assert.are.equal(help.out, S.run({ "ctl", "help" }).out)
      for _, state in ipairs({ "-", "starting", "unknown", "healthy", "degraded", "unhealthy" }) do
        assert.matches("\n%s+" .. state:gsub("%-", "%%-") .. "%s+%a", help.out)
        assert.matches("\n%s+" .. state:gsub("%-", "%%-") .. "%s+%a", tree.out)
      end
      assert.matches("unknown%s+no probe result yet %(the child has just started or restarted%)", tree.out)
      -- OTP's terminate_child / restart_child through a supervisor path
      local function ctl(...) return S.run({ "ctl", sock, ... }) end
      local pid_before = ctl("tree").out:match("sleeper%s+process%s+running%s+(%d+)")
      local r = ctl("stop", "ops/sleeper")
      assert.are.same({ 0, "stopped ops/sleeper\n" }, { r.code, r.out })
      assert.matches("sleeper%s+process%s+stopped", ctl("tree").out)
      r = ctl("start", "ops/sleeper")
      assert.are.same({ 0, "started ops/sleeper\n" }, { r.code, r.out })
      local pid_after = ctl("tree").out:match("sleeper%s+process%s+running%s+(%d+)")
      assert.is_string(pid_after)
      assert.are_not.equal(pid_before, pid_after)
      local worker = ctl("tree").out:match("worker%s+actor%s+running%s+(actor#%d+)")
      r = ctl("restart", "ops/inner/worker")
      assert.are.same({ 0, "restarted ops/inner/worker\n" }, { r.code, r.out })
      assert.are_not.equal(worker, ctl("tree").out:match("worker%s+actor%s+running%s+(actor#%d+)"))
      r = ctl("start", "ops/sleeper")
      assert.are.equal(1, r.code)
      assert.matches("ops/sleeper: child \"sleeper\" is running", r.err)
      r = ctl("stop", "ops/nope")
      assert.are.equal(1, r.code)
      assert.matches("no child \"nope\"", r.err)
      assert.matches("no root supervisor \"nope\"", ctl("restart", "nope/x").err)
      assert.matches("a child path is ROOT/.../CHILD", ctl("restart", "ops").err)
      assert.are.equal(2, ctl("start").code)
      assert.are.equal(2, ctl("tree", "extra").code)
      assert.are.equal(1, S.run({ "ctl", "/nonexistent.sock", "status" }).code)
      local stop = S.run({ "ctl", sock, "stop" })
      assert.matches("stopping", stop.out)
    end)
    for _ = 1, 500 do -- the fleet exits after stop, and removes its socket
      if not io.open(sock) then break end
      uv.sleep(20)
    end
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.remove(script)
    os.remove(errf)
    assert(ok, err)
    assert.is_nil(io.open(sock), "the control socket was not removed")
  end)
end)
