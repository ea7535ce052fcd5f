-- Soak: multi_host (README "Reliability", "More than one host"). A 3-node
-- nats-server cluster (Debian's, spec/nats_server.lua) and three msrt
-- hosts, each an msrt-lua of its own joined to one node, each running a
-- queue group of process agents (/bin/sh JSON-lines echo) under a
-- supervisor while a random agent is SIGKILLed every KILL_MS (a crash
-- storm across the hosts); this host dispatches REQUESTS requests through
-- the cluster with retry. Checked: every request ends answered or failed
-- exactly once; each host's router accounting and its bridge's identity
-- hold per subject class; across hosts, every request this host exported
-- was imported by one host or answered by NATS' no-responders status, and
-- every reply the hosts exported (an agent's, or the 503 a host sends for
-- an agent that died holding the request) was imported here. Run by scripts/soak:
--   msrt-lua spec/soak/multi_host.lua REQUESTS KILL_MS AGENTS
-- (and, for each agents host it starts: ... host URL NAME AGENTS KILL_MS).
local msrt = require "msrt"
local uv = require "luv"

if arg[1] == "host" then ----------------------------------------------------
  local URL, NAME, AGENTS, KILL_MS = arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5])
  io.stdout:setvbuf("line")
  msrt.start { log_level = "error" }
  local ECHO = [[while IFS= read -r l; do r=${l#*\"reply\":\"}; r=${r%%\"*}; ]]
    .. [[printf '{"subject":"%s","data":"p"}\n' "$r"; done]]
  local kids = {}
  for i = 1, AGENTS do
    kids[i] = { id = NAME .. "-p" .. i, shutdown = "brutal_kill",
      process = { name = NAME .. "-p" .. i, cmd = { "/bin/sh", "-c", ECHO }, subscribe = "req.p", queue = "wp" } }
  end
  local sup = assert(msrt.supervisor { name = NAME, strategy = "one_for_one", intensity = 100000,
    period_ms = 1000, backoff = { initial_ms = 1, max_ms = 20, multiplier = 2 }, children = kids })
  local br = assert(msrt.nats { url = URL, name = NAME, export = { "_INBOX.>" } })
  while br:info().state ~= "connected" do msrt.sleep(5) end
  local kills, storming = 0, true
  local timer = msrt.every(KILL_MS, function()
    if not storming then return end
    local list = sup:which_children()
    local c = list[math.random(#list)]
    local h = c and c.handle
    if h and h.signal and h:pid() then h:signal("KILL") kills = kills + 1 end
  end)
  msrt.subscribe("soak.stop", function()
    storming = false
    timer.stop()
    sup:stop()
    msrt.after(300, function()
      local bad = {}
      local r = msrt.metrics().router
      for class, m in pairs(r.classes) do
        local sum = m.delivered + m.dropped + m.dead_lettered + m.refused + m.no_responders
        if sum ~= m.accepted then bad[#bad + 1] = ("router %s: accepted %d, outcomes %d"):format(class, m.accepted, sum) end
      end
      local st = br:stats()
      for class, s in pairs(st) do
        local sum = s.exported + s.dropped_disconnected + s.refused_by_server + s.local_only + s.unconvertible
        if sum ~= s.handed then bad[#bad + 1] = ("bridge %s: handed %d, outcomes %d"):format(class, s.handed, sum) end
      end
      local req, inbox = st.req or {}, st._INBOX or {}
      print(("host %s kills %d accepted %d imported_req %d exported_inbox %d identity %s"):format(NAME, kills,
        r.accepted, req.imported or 0, inbox.exported or 0, #bad == 0 and "holds" or table.concat(bad, "; ")))
      msrt.stop()
    end)
  end)
  br:flush()
  print("ready " .. NAME)
  return
end

-- ---- the dispatcher ---------------------------------------------------------
local REQUESTS, KILL_MS, AGENTS = tonumber(arg[1]) or 3000, tonumber(arg[2]) or 20, tonumber(arg[3]) or 4
local ATTEMPTS, TIMEOUT_MS, CONCURRENT = 10, 500, 64
local C = dofile(arg[0]:match("^(.*)/") .. "/common.lua")("multi_host")
local check, say = C.check, C.say
package.path = "./?.lua;" .. package.path
local N = require "spec.nats_server"
local H = require "spec.hosts"
msrt.start { log_level = "error" }

local cluster = N.start { nodes = 3 }
local hosts, br = {}, nil
-- The run; whatever way it fails, the hosts and the cluster are stopped.
local function run()
  for i = 1, 3 do
    local name = "h" .. i
    hosts[i] = H.start(("arg = { [0] = %q, 'host', %q, %q, '%d', '%d' }\n"):format(arg[0], cluster.urls[i], name,
      AGENTS, KILL_MS) .. "dofile(arg[0])\n")
  end
  for i = 1, 3 do H.await(hosts[i], "ready h" .. i, 30000) end
  br = assert(msrt.nats { url = cluster.urls[1], name = "dispatcher", export = { "req.>", "soak.>" } })
  while br:info().state ~= "connected" do msrt.sleep(5) end

  local t0 = uv.hrtime()
  local ended, answered, failed, n503, retries = {}, 0, 0, 0, 0
  local next_id, running = 1, 0
  local function one(id)
    for attempt = 1, ATTEMPTS do
      local data, err = msrt.request("req.p", id, { timeout_ms = TIMEOUT_MS })
      if data == "p" then answered = answered + 1 return "answered" end
      if err and err.code == "no_responders" then n503 = n503 + 1 end
      if attempt < ATTEMPTS then retries = retries + 1 msrt.sleep(5 * attempt) end
    end
    failed = failed + 1
    return "failed"
  end
  local done = false
  for _ = 1, CONCURRENT do
    running = running + 1
    msrt.after(0, function()
      while next_id <= REQUESTS do
        local id = next_id
        next_id = next_id + 1
        local how = one(id)
        check(ended[id] == nil, "request %d ended twice", id)
        ended[id] = how
      end
      running = running - 1
      if running == 0 then done = true end
    end)
  end
  while not done do msrt.sleep(20) end
  local secs = (uv.hrtime() - t0) / 1e9
  br:flush()
  msrt.publish("soak.stop", true)
  br:flush()
  msrt.sleep(200) -- late replies in flight land before the counts are read

  local kills, imported_req, exported_inbox = 0, 0, 0
  for i = 1, 3 do
    local out = H.finish(hosts[i], 30000)
    local k, _, ireq, einb, identity = out:match("host h%d kills (%d+) accepted (%d+) imported_req (%d+) exported_inbox (%d+) identity ([^\n]+)")
    check(k ~= nil, "host h%d said nothing at the end:\n%s", i, out)
    if k then
      kills, imported_req, exported_inbox = kills + k, imported_req + ireq, exported_inbox + einb
      check(identity == "holds", "host h%d: %s", i, identity)
      C.row("accounting", { { "class", "host h" .. i }, { "identity", identity == "holds" and "holds" or "BROKEN" } })
    end
  end
  local mine = br:stats()
  local ereq, iinbox = (mine.req or {}).exported or 0, (mine._INBOX or {}).imported or 0
  local n = 0
  for _ in pairs(ended) do n = n + 1 end
  check(n == REQUESTS, "%d of %d requests ended", n, REQUESTS)
  check(failed == 0, "%d requests failed after %d attempts", failed, ATTEMPTS)
  check(kills > 0, "no agent was killed")
  -- across hosts: each exported request was imported by one host or
  -- answered by NATS' no-responders status (no host's group ready at that
  -- instant); each reply the hosts exported was imported here, and so was
  -- each of those statuses: the two differences are the same count
  local nats503 = iinbox - exported_inbox
  check(nats503 >= 0 and ereq - imported_req == nats503,
    "exported requests %d - imported by the hosts %d ~= replies imported %d - exported by the hosts %d",
    ereq, imported_req, iinbox, exported_inbox)
  say("%d requests across 3 hosts in %.1f s: %d answered, %d failed, %d retries, %d no_responders, %d agents killed",
    REQUESTS, secs, answered, failed, retries, n503, kills)
  C.row("load", { { "requests", REQUESTS }, { "seconds", ("%.1f"):format(secs) },
    { "requests_per_s", ("%.0f"):format(REQUESTS / secs) }, { "messages_per_s", ("%.0f"):format((ereq + iinbox) / secs) } })
  C.row("faults", { { "injected", ("3-node cluster, 3 hosts x %d agents, %d SIGKILLed (one every %d ms per host)"):format(AGENTS, kills, KILL_MS) },
    { "outcome", ("%d/%d answered once, %d retries; across hosts %d requests out = %d in + %d NATS no-responders"):format(
      answered, REQUESTS, retries, ereq, imported_req, iinbox - exported_inbox) } })
  C.accounting()

end
local ok, err = pcall(run)
check(ok, "%s", tostring(err))
for _, h in ipairs(hosts) do H.kill(h) end
if br then br:close() end
cluster:stop()
C.finish()
