--- Helpers for specs: run msrt-lua as a child and capture what it says,
-- and drive the hub loop inside a spec.
local S = {}

S.exe = os.getenv("MSRT_LUA") or require("msrt.core").exe()

function S.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  os.remove(path)
  return s
end

--- Run msrt-lua with args (a list); opts.stdin feeds standard input,
-- opts.env is a prefix like "MSRT_PROFILE=x". Returns {out, err, code}.
function S.run(args, opts)
  opts = opts or {}
  local parts = { opts.env or "", S.quote(opts.exe or S.exe) }
  for _, a in ipairs(args) do parts[#parts + 1] = S.quote(a) end
  local errf = os.tmpname()
  local cmd = table.concat(parts, " ") .. " 2>" .. errf
  if opts.stdin then
    local inf = os.tmpname()
    local f = assert(io.open(inf, "wb"))
    f:write(opts.stdin)
    f:close()
    cmd = cmd .. " <" .. inf .. "; rc=$?; rm -f " .. inf
  else
    cmd = cmd .. " </dev/null; rc=$?"
  end
  local p = assert(io.popen(cmd .. '; printf "\\n::%d" "$rc"'))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("::(%d+)$"))
  out = out:gsub("\n::%d+$", "")
  return { out = out, err = slurp(errf), code = code }
end

--- Write text to a fresh temporary file ending in suffix; returns its path.
function S.file(text, suffix)
  local base = os.tmpname() -- created empty: keep the name, not the file
  os.remove(base)
  local path = base .. (suffix or ".lua")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

--- Count luv handles still open on the hub loop.
function S.open_handles()
  local n = 0
  require("luv").walk(function() n = n + 1 end)
  return n
end

-- Driving the hub loop inside an `it` block. S.drive(body) runs body as a
-- hub coroutine; inside it, S.sleep, S.wait_until and a collector's wait
-- yield to the loop. Actors started with S.spawn are stopped when body
-- ends, so a failing body does not leave them (and the loop) running.

local spawned = {}

--- msrt.actor(spec), remembering the handle so S.drive stops it when its
-- body ends. Returns what msrt.actor returns.
function S.spawn(spec)
  local h, err = require("msrt").actor(spec)
  if h then spawned[#spawned + 1] = h end
  return h, err
end

--- Run body() as a hub coroutine and drive the loop until body is done
-- and nothing is left on it. Fails the spec (here) when body raises, when
-- body has not finished within limit_ms (default 30000; every actor from
-- S.spawn is then stopped, and the loop too a second later), when a luv
-- handle is still open afterwards, or when an actor started meanwhile is
-- still alive.
function S.drive(body, limit_ms)
  local msrt, uv, assert = require("msrt"), require("luv"), require("luassert")
  limit_ms = limit_ms or 30000
  spawned = {}
  local actors_before = msrt.metrics().actors
  local err, finished, guard
  local function stop_all()
    for _, h in ipairs(spawned) do h:stop("shutdown") end
  end
  msrt.after(0, function()
    local ok, e = xpcall(body, debug.traceback)
    finished = true
    if not ok then err = e end
    guard.stop()
    stop_all()
  end)
  guard = msrt.after(limit_ms, function()
    err = err or ("the spec did not finish within " .. limit_ms .. " ms")
    stop_all()
    -- a body still waiting on the loop must not hold the suite
    guard = msrt.after(1000, function() uv.stop() end)
  end)
  uv.run()
  spawned = {}
  if err then error(err, 0) end
  assert.is_true(finished)
  assert.are.equal(0, S.open_handles())
  -- An exit record reaches the hub just before the worker releases the
  -- actor: give the release a moment, then every actor must be gone.
  for _ = 1, 5000 do
    if msrt.metrics().actors == actors_before then break end
    uv.sleep(1)
  end
  assert.are.equal(actors_before, msrt.metrics().actors, "actors left behind")
end

--- S.drive, but a failing body first stops the supervisors it left (so
-- that they do not restart children into the next spec).
function S.drive_supervised(body, limit_ms)
  local supervisor = require "msrt.supervisor"
  S.drive(function()
    local ok, err = xpcall(body, debug.traceback)
    if not ok then
      supervisor.stop_all("shutdown")
      S.wait_until(function() return supervisor.count() == 0 end, 5000)
      error(err, 0)
    end
  end, limit_ms)
end

--- From a driven coroutine: wait ms on the hub loop.
function S.sleep(ms)
  local co = coroutine.running()
  require("msrt").after(ms, function() assert(coroutine.resume(co)) end)
  coroutine.yield()
end

--- From a driven coroutine: yield until pred() holds (checked every
-- millisecond) or limit_ms (default 10000) pass. Returns whether it held.
function S.wait_until(pred, limit_ms)
  local uv = require("luv")
  local deadline = uv.now() + (limit_ms or 10000)
  while not pred() do
    if uv.now() > deadline then return false end
    S.sleep(1)
  end
  return true
end

--- A hub subscription (msrt.subscribe(subject, fn, opts)) that keeps what
-- it receives: c.msgs (the messages, in order), c.data() (their data),
-- c.wait(n, ms) (from a driven coroutine: yields until n messages came;
-- false after ms, default 10000), c.close() (unsubscribes).
function S.collector(subject, opts)
  local msrt = require("msrt")
  local c = { msgs = {} }
  local waiter, want
  c.sub = assert(msrt.subscribe(subject, function(m)
    c.msgs[#c.msgs + 1] = m
    if waiter and #c.msgs >= want then
      local co = waiter
      waiter = nil
      coroutine.resume(co, true)
    end
  end, opts))
  function c.wait(n, ms)
    if #c.msgs >= n then return true end
    want, waiter = n, coroutine.running()
    local t = msrt.after(ms or 10000, function()
      if waiter then
        local co = waiter
        waiter = nil
        coroutine.resume(co, false)
      end
    end)
    local ok = coroutine.yield()
    t.stop()
    return ok
  end
  function c.data()
    local out = {}
    for i, m in ipairs(c.msgs) do out[i] = m.data end
    return out
  end
  function c.close() c.sub:unsubscribe() end
  return c
end

return S
