--- A fleet whose routing and restart policy are edited while it runs
-- (README "Hot reload").
--   scripts/run live_policy [DIR]
-- DIR holds routes.lua and fleet.lua (default: a fresh copy of this
-- example's policies/, which the script then edits itself, step by step,
-- to show each reload). With a DIR of your own nothing is edited for you:
-- change the files while it runs and watch the counts move; Ctrl-C ends.
local msrt = require "msrt"
local uv = require "luv"

local here = arg[0]:match("^(.*)/") or "."
local dir, demo = arg[1], arg[1] == nil
if demo then
  dir = assert(uv.fs_mkdtemp("/tmp/msrt-live-policy-XXXXXX"))
  for _, f in ipairs({ "routes.lua", "fleet.lua" }) do
    assert(uv.fs_copyfile(here .. "/policies/" .. f, dir .. "/" .. f))
  end
end
local t0 = uv.now()
local function say(fmt, ...) print(("[%4.1fs] " .. fmt):format((uv.now() - t0) / 1000, ...)) end

assert(msrt.routes(dir .. "/routes.lua"))
local fleet = assert(msrt.supervisor(dir .. "/fleet.lua"))
local watch = assert(msrt.watch(dir))
say("fleet up from %s: %d workers; edit routes.lua or fleet.lua to change it", dir, fleet:count_children().active)

local after_reload -- the demo's next step once fleet.lua has reloaded
msrt.subscribe("msrt.reload.*", function(m)
  local d = m.data
  say("%s %s%s", m.subject, d.file:match("[^/]+$"), d.error and (": " .. d.error) or (" (version " .. d.version .. ")"))
  if after_reload and m.subject == "msrt.reload.ok" and d.file:match("fleet%.lua$") then
    local step = after_reload
    after_reload = nil
    step()
  end
end)
msrt.subscribe("msrt.supervisor.fleet.event", function(m)
  local d = m.data
  if d.event ~= "reloaded" then say("supervisor: %s %s %s", d.event, d.child or "", d.reason and tostring(d.reason):match("[^\n]*") or "") end
end)

-- Jobs every 5 ms; per second, how many each version finished.
local n, per = 0, {}
local jobs = msrt.every(5, function()
  n = n + 1
  msrt.publish("jobs." .. n, { n = n })
end)
msrt.subscribe("done", function(m) per[m.data.version] = (per[m.data.version] or 0) + 1 end)
msrt.subscribe("jobs.unrouted", function() per.unrouted = (per.unrouted or 0) + 1 end)
local report = msrt.every(1000, function()
  local parts = {}
  for _, v in ipairs({ "v1", "v2", "unrouted" }) do parts[#parts + 1] = ("%s %d"):format(v, per[v] or 0) end
  say("jobs done in the last second: %s", table.concat(parts, ", "))
  per = {}
end)

local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(dir .. "/" .. name .. ".tmp", dir .. "/" .. name)) -- as editors do
end

local function finish()
  jobs.stop(); report.stop(); watch.close()
  fleet:stop()
  if demo then os.execute("rm -rf '" .. dir .. "'") end
  msrt.stop()
end

if not demo then
  msrt.on_shutdown(function() jobs.stop(); report.stop(); watch.close() end)
  return
end

-- The demo's edits, one per step.
local fleet_src = assert(io.open(dir .. "/fleet.lua")):read("*a")
local steps = {
  { 1500, "add two v2 workers to fleet.lua (w1 and w2 keep running)", function()
    fleet_src = fleet_src:gsub('worker%("w2", "v1"%) }', 'worker("w2", "v1"), worker("w3", "v2"), worker("w4", "v2") }')
    write("fleet.lua", fleet_src)
  end },
  { 3000, "split jobs 50/50 between v1 and v2 in routes.lua", function()
    write("routes.lua", 'return { { match = "jobs.>", split = { { to = "work.v1.>", weight = 50 }, '
      .. '{ to = "work.v2.>", weight = 50 } } } }\n')
  end },
  { 4500, "a broken edit: the old table stays in force", function()
    write("routes.lua", 'return { { match = "jobs.>", rewrite = "work.v3.$9" } }\n')
  end },
  { 6000, "strategy one_for_all in fleet.lua, then a v2 worker crashes: all restart", function()
    -- the crash once the new strategy is in force (a loaded machine may
    -- take a while to see the file change), the end a second later
    after_reload = function()
      msrt.publish("work.v2.crash", { crash = true, n = 0 }) -- w3 or w4
      msrt.after(1000, finish)
    end
    write("fleet.lua", (fleet_src:gsub('strategy = "one_for_one"', 'strategy = "one_for_all"')))
  end },
}
for _, s in ipairs(steps) do
  msrt.after(s[1], function() say("edit: %s", s[2]) s[3]() end)
end
msrt.after(30000, finish) -- (never reached unless a reload never came)
