-- Soak: hostile agents (README "Reliability"). Next to a trusted service
-- (an echo actor queue group on svc.echo) and a guarded one (tools.admin,
-- a hub subscription no agent may reach), agents that nobody trusts, each
-- allowed to publish only to svc.echo:
--   forger    puts tools.admin, and guessed request inboxes
--             (_INBOX.hub.<n>), as the reply of its messages to svc.echo
--   dupkeys   sprays lines with duplicate JSON keys, to svc.echo and to a
--             hub subscriber
--   flooder   floods its stderr
--   holder    never reads its stdin while 1 MiB messages are sent to it
--   forker    starts children and grandchildren in new sessions (setsid),
--             every pid written to the pids file
-- while the hub makes N requests to svc.echo. Checks: every trusted
-- request is answered with its own data; tools.admin is never reached; the
-- holder's stdin holds at most stdin_bytes plus one line; the forger's and
-- dupkeys' refusals are reported as bad output; the router's accounting
-- identity holds per class once the noisy agents are stopped. Then it says
-- "ready <host pid>" and waits: scripts/soak SIGKILLs the host and checks
-- that no pid of the pids file (every agent, child and grandchild) is left.
--   msrt-lua spec/soak/hostile_agent.lua N SECONDS PIDS_FILE
local msrt = require "msrt"

local N, SECONDS, PIDS = tonumber(arg[1]) or 2000, tonumber(arg[2]) or 5, assert(arg[3], "pids file")
local C = dofile(arg[0]:match("^(.*)/") .. "/common.lua")("hostile_agent")
local check, say, sleep, wait_until = C.check, C.say, C.sleep, C.wait_until
local MiB = 1024 * 1024

local function sh(name, script, extra)
  local spec = { name = name, cmd = { "/bin/sh", "-c", "echo $$ >> " .. PIDS .. "; " .. script },
    allow_publish = { "svc.echo" }, codec = "json_lines" }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return assert(msrt.process(spec))
end

-- each round: 500 forged replies to tools.admin and 500 to guessed inboxes
local FORGER = [[i=0; while :; do
  for k in $(seq 1 500); do i=$((i+1))
    printf '{"subject":"svc.echo","reply":"tools.admin","data":"forged"}\n'
    printf '{"subject":"svc.echo","reply":"_INBOX.hub.%d","data":"forged"}\n' $i
  done; sleep 0.05; done]]
local DUPKEYS = [[while :; do for k in $(seq 1 500); do
    printf '{"subject":"svc.echo","data":{"k":1,"k":2}}\n{"k":1,"k":2,"k":3}\n'
  done; sleep 0.05; done]]
local FLOODER = [[while :; do seq 1 20000 | sed 's/$/ stderr flood line/' >&2; sleep 1; done]]
local HOLDER = [[exec sleep 100000]]
local FORKER = ([[sleep 100000 & echo $! >> %s
  for i in 1 2 3; do setsid -f sh -c 'echo $$ >> %s; sleep 100000 & echo $! >> %s; wait'; done
  echo forked; exec sleep 100000]]):format(PIDS, PIDS, PIDS)

msrt.after(0, function()
  local admin_hits, dup_seen, bad = 0, 0, {}
  msrt.subscribe("tools.admin", function() admin_hits = admin_hits + 1 end)
  msrt.subscribe("agents.dupkeys.out", function() dup_seen = dup_seen + 1 end)
  msrt.subscribe("msrt.process.*.bad_output", function(m)
    local who = m.subject:match("^msrt%.process%.([^.]+)%.")
    bad[who] = (bad[who] or 0) + 1
  end)
  assert(msrt.actor{ name = "echo", instances = 2, subscribe = "svc.echo", queue = "echo",
    handle = function(ctx, msg) if msg.reply then ctx:reply(msg, msg.data) end end })
  local forked = false
  msrt.subscribe("agents.forker.out", function() forked = true end)
  local agents = {
    forger = sh("forger", FORGER), dupkeys = sh("dupkeys", DUPKEYS), flooder = sh("flooder", FLOODER),
    holder = sh("holder", HOLDER, { subscribe = "hold.in" }), forker = sh("forker", FORKER, { codec = "lines" }),
  }
  check(wait_until(function() return forked end, 10000), "the forker never forked")

  -- the holder: 40 messages of 1 MiB it never reads
  local big = string.rep("x", MiB - 64)
  for _ = 1, 40 do msrt.publish("hold.in", big) end

  -- the trusted requests, while the agents do their worst
  local wrong, failed, reasons = 0, 0, {}
  local deadline = require("luv").now() + SECONDS * 1000
  local done = 0
  for i = 1, N do
    local data, err = msrt.request("svc.echo", i, { timeout_ms = 5000 })
    if data == nil then
      failed = failed + 1
      reasons[tostring(err and err.code)] = (reasons[tostring(err and err.code)] or 0) + 1
    elseif data ~= i then
      wrong = wrong + 1
    end
    done = i
  end
  while require("luv").now() < deadline do sleep(50) end
  local held = agents.holder:stats()
  local queued_mib = held.stdin_queued_bytes and held.stdin_queued_bytes / MiB or -1
  say("trusted requests %d: %d wrong, %d failed; tools.admin reached %d times; holder queued %.1f MiB, dropped %d;"
    .. " dupkeys lines seen %d; bad output forger %d, dupkeys %d", done, wrong, failed, admin_hits, queued_mib,
    held.stdin_dropped, dup_seen, bad.forger or 0, bad.dupkeys or 0)
  local stdin_bound = (msrt.profile().stdin_bytes or 0) / MiB
  check(wrong == 0, "%d trusted requests got a forged answer (reply forging, inbox guessing)", wrong)
  check(failed == 0, "%d trusted requests failed: %s", failed, (function()
    local t = {}
    for k, v in pairs(reasons) do t[#t + 1] = k .. " " .. v end
    return table.concat(t, ", ")
  end)())
  check(admin_hits == 0, "tools.admin was reached %d times through forged replies", admin_hits)
  check(queued_mib >= 0 and queued_mib <= stdin_bound + 1,
    "the holder's stdin holds %.1f MiB (bound %.0f MiB + one line)", queued_mib, stdin_bound)
  check(dup_seen > 0, "no duplicate-key line reached the hub subscriber")
  check((bad.forger or 0) > 0, "the forger's forged replies were not refused as bad output")

  -- the noisy agents stop; at rest the accounting must hold
  for _, k in ipairs({ "forger", "dupkeys", "flooder" }) do agents[k]:stop(200) end
  for _, k in ipairs({ "forger", "dupkeys", "flooder" }) do agents[k]:wait() end
  wait_until(function()
    local r = msrt.metrics().router
    return r.accepted == r.delivered + r.dropped + r.dead_lettered + r.refused + r.no_responders
  end, 5000)
  C.accounting()
  C.row("faults", { { "injected", ("forged replies and guessed inboxes, duplicate keys, stderr flood, stdin held"
    .. " (40 x 1 MiB), setsid grandchildren; %s trusted requests"):format(C.num(done)) },
    { "outcome", ("%d wrong, %d failed; tools.admin reached %d times; stdin held %.1f MiB (bound %.0f MiB)")
      :format(wrong, failed, admin_hits, queued_mib, stdin_bound) } })
  for _, f in ipairs(C.failures) do say("FAILED: %s", f) end
  say(#C.failures == 0 and "checks passed" or "checks failed")
  local f = io.open("/proc/self/stat")
  say("ready %s", f:read("*l"):match("^%d+"))
  f:close()
  msrt.every(1000, function() end) -- until scripts/soak's SIGKILL
end)
