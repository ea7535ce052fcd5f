-- The dashboard (README "HTTP endpoints and the dashboard") in headless
-- Chromium (Debian's chromium, driven by playwright-core from npm; both
-- installed by scripts/setup), on loopback: the tree renders, a child
-- killed with SIGKILL shows its restart within one second, the charts move
-- while a load runs, nats.ws in the page reaches an actor. The screenshot
-- is kept under build/ (build/dashboard.png) as a test artefact.
local S = require "spec.support"

local FLEET = [[
local msrt = require "msrt"
local l = assert(msrt.listen{ websocket = "127.0.0.1:0" })
msrt.supervisor{ name = "fleet", children = {
  { id = "upper", actor = { subscribe = "svc.upper", handle = function(ctx, m) ctx:reply(m, m.data:upper()) end } },
  { id = "sleeper", process = { cmd = { "/bin/sh", "-c", "exec sleep 600" } } },
  { id = "workers", supervisor = { name = "workers", children = {
    { id = "w1", actor = { subscribe = "load.>", handle = function() end } } } } },
} }
msrt.every(20, function() for _ = 1, 5 do msrt.publish("load.tick", "x") end end) -- the load
io.stderr:write("dashboard on ", l:port("websocket"), "\n")
msrt.every(1000, function() end)
]]

local function browser(port, shot)
  local p = assert(io.popen(("cd %s && timeout -k 5 90 node spec/dashboard/browser.js %d %s 2>&1")
    :format(S.quote(os.getenv("PWD") or "."), port, S.quote(shot))))
  local out = p:read("*a")
  p:close()
  local checks = {}
  for line in out:gmatch("[^\n]+") do
    local name, ok = line:match('"check":"([^"]+)","ok":(%a+)')
    if name then checks[name] = { ok = ok == "true", line = line } end
  end
  return checks, out
end

describe("the dashboard in headless Chromium", function()
  it("renders the tree, shows a SIGKILLed child's restart within 1 s, moves its charts under load", function()
    local script = S.file(FLEET)
    local h = S.host({ script })
    local ok, err = pcall(function()
      -- (h.wait gives nil after 10 s, or when the host ended: say what
      -- the host wrote, not tonumber's complaint)
      local port = tonumber(h.wait("dashboard on (%d+)") or "")
      assert.is_number(port, "no port from the host; it wrote:\n" .. h.text())
      os.execute("mkdir -p build")
      local checks, out = browser(port, "build/dashboard.png")
      for _, n in ipairs({ "connected", "tree", "restart_shown", "charts_move", "page_request", "events",
        "page_errors", "done" }) do
        assert(checks[n], ("no result for %s in:\n%s"):format(n, out))
        assert(checks[n].ok, checks[n].line)
      end
      local f = io.open("build/dashboard.png", "rb")
      assert.is_truthy(f and f:read(8) == "\137PNG\r\n\26\n", "the screenshot")
      if f then f:close() end
    end)
    h.stop()
    os.remove(script)
    assert(ok, err)
  end)
end)
