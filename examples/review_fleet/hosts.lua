-- review_fleet --hosts N (main.lua): an N-node nats-server cluster routed
-- on loopback (the project's spec/nats_server.lua: Debian's nats-server,
-- ports chosen by the kernel) and N agents hosts, each an msrt-lua of its
-- own (`main.lua --nats URL_i --role agents --host-name h<i>`) joined to
-- node i, all on this machine; the caller dispatches. Returns
-- {url, hosts = {{name, pid}...}, kill(host), stop()}.
local uv = require "luv"
local msrt = require "msrt"

local M = {}

function M.start(opts, here, project)
  package.path = project .. "/?.lua;" .. package.path
  local cluster = require("spec.nats_server").start { nodes = opts.hosts }
  local fleet = { url = cluster.urls[1], hosts = {} }
  for i = 1, opts.hosts do
    local h = { name = "h" .. i }
    local args = { here .. "/main.lua", "--nats", cluster.urls[i], "--role", "agents", "--host-name", h.name,
      "--agents", tostring(opts.agents), "--liveness-ms", tostring(opts.liveness_ms),
      "--chaos", tostring(opts.chaos), "--hang", tostring(opts.hang) }
    if opts.verbose then args[#args + 1] = "--verbose" end
    local handle, pid = uv.spawn(uv.exepath(), { args = args, cwd = project, stdio = { nil, 2, 2 } },
      function(code, signal)
        h.exit = { code = code, signal = signal }
        if h.handle and not h.handle:is_closing() then h.handle:close() end
      end)
    if not handle then
      cluster:stop()
      error("cannot start agents host " .. h.name .. ": " .. tostring(pid))
    end
    h.handle, h.pid = handle, pid
    fleet.hosts[i] = h
  end

  --- SIGKILL an agents host (the fault --kill-host-after asks for).
  function fleet.kill(h) uv.kill(h.pid, "sigkill") end

  --- After review_fleet.stop went out: wait for every agents host to end
  -- (bounded: 10 s, then SIGKILL), then stop the cluster.
  function fleet.stop()
    local deadline = uv.now() + 10000
    for _, h in ipairs(fleet.hosts) do
      while not h.exit and uv.now() < deadline do msrt.sleep(20) end
      if not h.exit then uv.kill(h.pid, "sigkill") end
    end
    for _, h in ipairs(fleet.hosts) do
      while not h.exit and uv.now() < deadline + 2000 do msrt.sleep(20) end
    end
    cluster:stop()
  end
  return fleet
end

return M
