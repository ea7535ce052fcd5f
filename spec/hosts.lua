--- msrt hosts for multi-host specs: msrt-lua processes run in the
-- background (each bounded by timeout), their output in a file, awaited
-- with bounds. With spec/nats_server.lua they make fleets of several hosts
-- on this machine.
-- @module spec.hosts
local S = require "spec.support"
local H = {}

--- A host: script text run by msrt-lua in the background (bounded by
-- timeout), its stdout in a file. Returns {out = path, pid = n}.
function H.start(script, env)
  local path = S.file(script)
  local out = os.tmpname()
  local p = io.popen(("%s timeout -k 2 180 %s %s >%s 2>&1 </dev/null & echo $!"):format(
    env or "", S.quote(S.exe), S.quote(path), S.quote(out)))
  local pid = tonumber(p:read("*a"))
  p:close()
  return { out = out, pid = pid, script = path }
end

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Wait (bounded) until the host's output matches pattern; returns the
-- capture (or whole match), or fails with the output.
function H.await(h, pattern, ms)
  local deadline = os.time() + (ms or 60000) / 1000
  repeat
    local text = read(h.out)
    local got = text:match(pattern)
    if got then return got end
    os.execute("sleep 0.05")
  until os.time() > deadline
  error(("host output never matched %q:\n%s"):format(pattern, read(h.out)), 2)
end

-- Wait (bounded) for the host to exit; returns its output.
function H.finish(h, ms)
  local deadline = os.time() + (ms or 60000) / 1000
  while S.alive(h.pid) do
    if os.time() > deadline then
      os.execute("kill -9 " .. h.pid)
      error("host did not exit:\n" .. read(h.out), 2)
    end
    os.execute("sleep 0.05")
  end
  local text = read(h.out)
  os.remove(h.out)
  os.remove(h.script)
  return text
end

-- The prelude of every host script: the bridge to URL with cfg's extra
-- fields, connected and flushed before the script goes on.
function H.prelude(url, extra)
  return ([[
io.stdout:setvbuf("line")
local msrt = require "msrt"
local json = require "msrt.json"
local br = assert(msrt.nats{ url = %q %s })
-- a bridge alone does not keep a host running (as a hub subscription
-- does not): msrt.stop() ends it, this bound if nothing does
msrt.after(120000, function() msrt.stop("bound") end)
for _ = 1, 3000 do if br:info().state == "connected" then break end msrt.sleep(10) end
assert(br:info().state == "connected", "not connected")
]]):format(url, extra or "")
end

--- SIGKILL a host (a fault): the msrt-lua process under its timeout.
function H.kill(h)
  os.execute("kill -9 $(pgrep -P " .. h.pid .. ") 2>/dev/null")
end

return H
