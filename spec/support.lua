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

--- The text of the file at path ("" when there is none, yet).
function S.read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s or ""
end

--- A fresh empty directory under the temporary directory; its path.
function S.dir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. S.quote(dir)) == 0, dir)
  return dir
end

--- The wall clock in milliseconds (date(1): no loop needed, unlike uv.now).
function S.now_ms()
  local p = io.popen("date +%s%3N")
  local ms = tonumber(p:read("*l"))
  p:close()
  return ms
end

--- Run msrt-lua with args (a list); opts.stdin feeds standard input,
-- opts.env is a prefix like "MSRT_PROFILE=x", opts.cwd the directory it
-- runs in, opts.limit_s its bound (default 300: a child that hangs is
-- stopped, SIGTERM then SIGKILL 5 s later, and reads as status 124 or
-- 137). Returns {out, err, code} (code: its exit status).
function S.run(args, opts)
  opts = opts or {}
  local parts = { opts.cwd and ("cd " .. S.quote(opts.cwd) .. " &&") or "", opts.env or "",
    "timeout -k 5 " .. (opts.limit_s or 300), S.quote(opts.exe or S.exe) }
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

--- Start msrt-lua with args (a list) in the background, stderr kept;
-- env is a prefix like "MSRT_PROFILE=x". Returns h: h.pid, h.text() (its
-- stderr so far), h.wait(pattern) (the first capture of pattern in its
-- stderr, waiting up to 10 s; nil when it never comes or the host ended),
-- h.stop() (SIGTERM, then waits up to 5 s for it to end).
--- Whether process pid runs: false once it has exited, even while it is
-- a zombie nobody has reaped yet (a spec's runtime can make the busted
-- process the subreaper of hosts started through a shell, and it reaps
-- only its own children, so kill(pid, 0) keeps succeeding).
function S.alive(pid)
  local f = io.open("/proc/" .. tonumber(pid) .. "/stat")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  return stat:match("%) (%a)") ~= "Z" -- the state follows the command's name
end

function S.host(args, env)
  local uv = require("luv")
  local errf = os.tmpname()
  local parts = { env or "", S.quote(S.exe) }
  for _, a in ipairs(args) do parts[#parts + 1] = S.quote(a) end
  local pid = assert(io.popen(("%s 2>%s </dev/null & echo $!"):format(table.concat(parts, " "), errf)):read("*l"))
  local h = { pid = pid }
  local function alive() return S.alive(pid) end
  function h.text()
    local f = io.open(errf, "rb")
    local t = f and f:read("*a") or ""
    if f then f:close() end
    return t
  end
  function h.wait(pattern)
    for _ = 1, 500 do
      local m = h.text():match(pattern)
      if m then return m end
      if not alive() then return h.text():match(pattern) end
      uv.sleep(20)
    end
  end
  function h.stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    for _ = 1, 250 do
      if not alive() then break end
      uv.sleep(20)
    end
    os.remove(errf)
  end
  return h
end

--- Write text to the file at path (created or replaced); returns path.
function S.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

--- Write text to a fresh temporary file ending in suffix; returns its path.
function S.file(text, suffix)
  local base = os.tmpname() -- created empty: keep the name, not the file
  os.remove(base)
  return S.write(base .. (suffix or ".lua"), text)
end

--- A loopback port nothing listens on now (bound, read, closed): for a
-- server to start on, or a connection to be refused.
function S.free_port()
  local uv = require("luv")
  local t = uv.new_tcp()
  assert(t:bind("127.0.0.1", 0))
  local port = t:getsockname().port
  t:close()
  return port
end

--- Count luv handles still open on the hub loop.
function S.open_handles()
  local n = 0
  require("luv").walk(function() n = n + 1 end)
  return n
end

-- Driving the hub loop inside an `it` block. S.drive(body) runs body as a
-- hub coroutine; inside it, S.sleep, S.wait_until and a collector's wait
-- yield to the loop. Whatever way the body fails (an error in it, an
-- error in any hub callback meanwhile, its time limit), what it left is
-- stopped and closed and the failure is raised in the spec, so a failing
-- spec neither hangs the run nor leaves work for the next one.

local spawned = {}

--- msrt.actor(spec), remembering the handle so S.drive stops it when its
-- body ends. Returns what msrt.actor returns.
function S.spawn(spec)
  local h, err = require("msrt").actor(spec)
  if h then spawned[#spawned + 1] = h end
  return h, err
end

-- How long the loop may take to wind down after a body (wall-clock bounds
-- of a harness, not claims about the runtime: each is many times what the
-- slowest spec needs under ASan on a loaded 2-core machine). A body that
-- finished must leave nothing running after SETTLE_MS (actors finish their
-- message, children exit); a failed body's supervisors, processes and
-- actors get STOP_MS to stop; then every luv handle it opened is closed
-- and the loop gets CLOSE_MS more before it is stopped regardless.
-- (S.bounds: support_spec shortens them to see the wind-down itself.)
S.bounds = { settle_ms = 10000, stop_ms = 6000, close_ms = 2000 }

-- The luv handles open now, as a set.
local function handle_set()
  local set = setmetatable({}, { __mode = "k" })
  require("luv").walk(function(h) set[h] = true end)
  return set
end

-- The luv handles opened since `before` and still open, except `keep`.
local function new_handles(before, keep)
  local out = {}
  require("luv").walk(function(h)
    if not before[h] and not keep[h] then out[#out + 1] = h end
  end)
  return out
end

local function kinds(handles)
  local names = {}
  for i, h in ipairs(handles) do names[i] = h:get_type() end
  table.sort(names)
  return table.concat(names, ", ")
end

-- Stop what runs on the runtime's side: supervisors (their children with
-- them), processes (at once: SIGKILL), actors, the operator servers.
local function stop_runtime(actors_before)
  local loaded = package.loaded
  if loaded["msrt.supervisor"] then loaded["msrt.supervisor"].stop_all("shutdown") end
  if loaded["msrt.process"] then
    for _, p in ipairs(loaded["msrt.process"].live()) do p:stop(0) end
  end
  for _, h in ipairs(spawned) do h:stop("shutdown") end
  -- every actor only when none was alive before the body (else they are
  -- not all the body's)
  if actors_before == 0 and loaded["msrt.actors"] then loaded["msrt.actors"].stop_all("shutdown") end
  if loaded["msrt.ops"] then loaded["msrt.ops"].close() end
end

local function runtime_quiet(actors_before)
  local loaded = package.loaded
  return (not loaded["msrt.supervisor"] or loaded["msrt.supervisor"].count() == 0)
    and (not loaded["msrt.process"] or loaded["msrt.process"].count() == 0)
    and (require("msrt").metrics().actors or 0) <= actors_before
end

--- Run body() as a hub coroutine and drive the loop until body is done
-- and nothing is left on it. Fails the spec (here), with the error and
-- its traceback, when body raises, when a hub callback raises meanwhile
-- (msrt.after, msrt.subscribe, an exit handler: anything the runtime
-- would report as an uncaught error), when body has not finished within
-- limit_ms (default 30000), when something it opened is still open
-- bounds.settle_ms after it finished, or when an actor started meanwhile is
-- still alive. After a failure it stops every supervisor, process and
-- actor the body left, closes every luv handle it opened (timers,
-- servers, sockets) and stops the loop after at most bounds.stop_ms + close_ms:
-- a driven spec never waits without a bound.
function S.drive(body, limit_ms)
  local msrt, uv, assert = require("msrt"), require("luv"), require("luassert")
  local core = require("msrt.core")
  limit_ms = limit_ms or 30000
  spawned = {}
  local before = handle_set()
  local actors_before = msrt.metrics().actors or 0 -- nil: the runtime is not started
  local err, finished, phase -- phase: nil (body running), settle, stop, close
  local limit, tick = uv.new_timer(), uv.new_timer()
  local keep = { [limit] = true, [tick] = true }
  tick:unref() -- the wind-down watch must not itself keep the loop alive
  local since
  local SETTLE_MS, STOP_MS, CLOSE_MS = S.bounds.settle_ms, S.bounds.stop_ms, S.bounds.close_ms
  local function enter(p)
    phase, since = p, uv.now()
    if not limit:is_closing() then limit:close() end
    if p == "stop" then stop_runtime(actors_before) end
    if p == "close" then
      for _, h in ipairs(new_handles(before, keep)) do
        if not h:is_closing() then h:close() end
      end
    end
  end
  local function watch()
    local waited = uv.now() - since
    if phase == "settle" and waited >= SETTLE_MS then
      local left = new_handles(before, keep)
      err = err or ("still open " .. SETTLE_MS .. " ms after the body finished: "
        .. (#left > 0 and kinds(left) or "runtime work (actors, processes or supervisors)"))
      enter("stop")
    elseif phase == "stop" and (runtime_quiet(actors_before) or waited >= STOP_MS) then
      enter("close")
    elseif phase == "close" and waited >= CLOSE_MS then
      err = err .. "\n(the loop was stopped " .. CLOSE_MS .. " ms after closing what the body left: "
        .. "something of it is still running)"
      tick:stop()
      uv.stop()
    end
  end
  -- The watch's own errors (this file's) stop the loop at once: the error
  -- hook would otherwise take them, tick after tick.
  local function guarded(fn)
    return function()
      local ok, e = xpcall(fn, debug.traceback)
      if not ok then
        err = (err and (err .. "\n") or "") .. "spec/support.lua's S.drive failed: " .. tostring(e)
        tick:stop()
        uv.stop()
      end
    end
  end
  local function fail(e)
    err = err or e
    if phase == nil or phase == "settle" then
      -- not from here: fail may run in the error hook, which must not
      -- yield; the watch timer's callback is a coroutine of its own
      phase = "failing"
      tick:start(0, 20, guarded(function()
        if phase == "failing" then enter("stop") end
        watch()
      end))
    end
  end
  core.set_error_hook(function(what, msg)
    fail((what ~= "" and (what .. ": ") or "") .. msg)
    return true
  end)
  uv.update_time() -- the limit counts from now, not from when the loop last ran (seconds ago after blocking specs)
  limit:start(limit_ms, 0, function()
    fail("the spec did not finish within " .. limit_ms .. " ms")
  end)
  msrt.after(0, function()
    local ok, e = xpcall(body, debug.traceback)
    finished = true
    if not ok then return fail(e) end
    if phase then return end -- failed meanwhile (a callback raised)
    for _, h in ipairs(spawned) do h:stop("shutdown") end
    enter("settle")
    tick:start(20, 20, guarded(watch))
  end)
  uv.run()
  core.set_error_hook(nil)
  for h in pairs(keep) do
    if not h:is_closing() then h:close() end
  end
  spawned = {}
  -- An exit record reaches the hub just before the worker releases the
  -- actor: give the release a moment (after a failure too, so the next
  -- spec starts clean), then every actor must be gone.
  for _ = 1, 5000 do
    if (msrt.metrics().actors or 0) <= actors_before then break end
    uv.sleep(1)
  end
  if err then error(err, 0) end
  assert.is_true(finished)
  assert.are.equal(0, S.open_handles())
  assert.are.equal(actors_before, msrt.metrics().actors or 0, "actors left behind")
end

--- S.drive (which stops the supervisors a failing body left, so that they
-- do not restart children into the next spec). Kept for the specs that
-- name it.
S.drive_supervised = S.drive

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
