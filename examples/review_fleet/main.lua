-- review_fleet: review source trees with a supervised fleet of agent processes.
--   scripts/run [review_fleet] [DIR|FILE...] [--chaos P] [--json FILE]
--              [--agents N] [--timeout-ms MS] [--attempts N] [--hang P]
--              [--liveness-ms MS] [--state FILE] [--verbose]
--              [--nats URL --role dispatcher|agents [--host-name NAME]]
--              [--hosts N [--kill-host-after TASKS]]
-- Default: the project's own src/, lua/ and examples/.
--
-- Across hosts (README "More than one host"): `--nats URL --role agents`
-- runs only the supervised agents, joined to NATS (their queue groups
-- span every agents host); `--nats URL --role dispatcher` only walks and
-- dispatches, through NATS, once agents of each kind beat. `--hosts N`
-- (hosts.lua) starts an N-node nats-server cluster and N agents hosts on
-- this machine and dispatches from this one; `--kill-host-after TASKS`
-- SIGKILLs one agents host once that many tasks are done: what it held
-- times out and is retried on the others.
--
-- The hub (this script) walks the trees and sends one task per file with
-- msrt.request through a queue group of reviewer agents, real processes
-- speaking JSON lines (msrt.process), N of each kind:
--   lua-I  lua_reviewer.lua, run with msrt-lua itself: `luajit -bl` (syntax)
--          and a bytecode scan for assignments to globals;
--   c-I    c_reviewer.py (Python 3): `gcc -fsyntax-only -Wall -Wextra` with
--          the file's flags from compile_commands.json when a build has one,
--          and cppcheck when it is installed;
--   py-I   py_reviewer.py, an MCP tool server (msrt.mcp.server: the SDK-free
--          stdio protocol), started when there are .py files: its tool
--          `review` compiles the file with every warning shown. Its tools
--          share the subject review.py.review in the queue group
--          reviewers.py; its liveness probe is MCP's ping.
-- The agents are children of msrt.supervisor (one_for_one, exponential
-- backoff), each with a liveness probe on the heartbeat it publishes every
-- second (agents.reviewer.<name>.heartbeat): an agent that dies, or that
-- stops beating for two 3 s windows (--liveness-ms), is restarted. A
-- task whose agent dies or does not answer within the timeout is sent again
-- with exponential backoff (the seed's RunWithRetry); each agent announces
-- the tasks it has read, so an agent's death retries what it held at once
-- rather than at the timeout. `--chaos P` makes every agent crash with
-- probability P per task, `--hang P` hang (no work, no heartbeat: the
-- liveness probe's case; `--liveness-ms` sets its window). Every task id ends done or failed exactly once;
-- the report says so (tasks.accounted) along with the findings.
--
-- `--state FILE`: the tasks go through a durable queue stored in FILE
-- (msrt.queue, README "Durable work queues"), each with Msg-Id = its path
-- and a hash of its content, and each result is stored durably in
-- FILE.results (Msg-Id the same) before its task is acked. A run killed
-- (SIGKILL included) resumes on the next run with the same FILE where it
-- stopped: the results stored are kept, the tasks left are done, and the
-- report counts each file reviewed exactly once (a file changed meanwhile
-- is a new task).
local uv = require "luv"
local msrt = require "msrt"
local json = require "dkjson"

local USAGE = "usage: review_fleet [DIR|FILE...] [--chaos P] [--json FILE] [--agents N] [--timeout-ms MS] [--attempts N] [--hang P] [--liveness-ms MS] [--state FILE] [--verbose] [--nats URL --role dispatcher|agents [--host-name NAME]] [--hosts N [--kill-host-after TASKS]]"

-- Where this script and the project are.
local here = uv.fs_realpath((arg and arg[0] or "examples/review_fleet/main.lua"):match("^(.*)/[^/]*$") or ".")
local project = here:match("^(.*)/examples/review_fleet$") or uv.cwd()

local function die(msg)
  io.stderr:write("review_fleet: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local opts = { roots = {}, chaos = 0, hang = 0, agents = 2, timeout_ms = 5000, attempts = 8, liveness_ms = 3000 }
do
  local a, i = { ... }, 1
  local function value(name)
    i = i + 1
    if a[i] == nil then die(name .. " needs a value") end
    return a[i]
  end
  local function number(name, lo, hi)
    local v = tonumber(value(name))
    if not v or v < lo or v > hi then die(("%s must be a number in [%g, %g]"):format(name, lo, hi)) end
    return v
  end
  while i <= #a do
    local s = a[i]
    if s == "--chaos" then opts.chaos = number(s, 0, 1)
    elseif s == "--hang" then opts.hang = number(s, 0, 1)
    elseif s == "--liveness-ms" then opts.liveness_ms = number(s, 30, 600000)
    elseif s == "--json" then opts.json = value(s)
    elseif s == "--state" then opts.state = value(s)
    elseif s == "--agents" then opts.agents = math.floor(number(s, 1, 64))
    elseif s == "--timeout-ms" then opts.timeout_ms = number(s, 1, 3600000)
    elseif s == "--attempts" then opts.attempts = math.floor(number(s, 1, 100))
    elseif s == "--verbose" then opts.verbose = true
    elseif s == "--nats" then opts.nats = value(s)
    elseif s == "--role" then
      opts.role = value(s)
      if opts.role ~= "dispatcher" and opts.role ~= "agents" then die("--role is dispatcher or agents") end
    elseif s == "--host-name" then opts.host_name = value(s)
    elseif s == "--hosts" then opts.hosts = math.floor(number(s, 1, 16))
    elseif s == "--kill-host-after" then opts.kill_after = math.floor(number(s, 1, 1e9))
    elseif s == "-h" or s == "--help" then print(USAGE) os.exit(0)
    elseif s:sub(1, 2) == "--" then die("unknown option " .. s)
    else opts.roots[#opts.roots + 1] = s end
    i = i + 1
  end
end
if opts.role and not opts.nats and not opts.hosts then die("--role needs --nats URL") end
if opts.hosts then opts.role = "dispatcher" end -- hosts.lua starts the agents hosts
if opts.nats and not opts.role then die("--nats needs --role dispatcher or agents") end
-- The supervisor's and the agents' own lines (child started, restarted,
-- "[c-1] chaos: ...") are info: shown with --verbose only.
if not opts.verbose then msrt.start{ log_level = "warn" } end
local default_roots = #opts.roots == 0
if default_roots then
  opts.roots = { project .. "/src", project .. "/lua", project .. "/examples" }
end

---------------------------------------------------------------------------
-- The files: one task each. Hidden entries and symlinks are skipped.

local KIND = { c = "c", h = "c", lua = "lua", py = "py" }
local files, skipped = {}, 0
local cwd = uv.cwd()

local function display(path) -- relative to the working directory when under it
  if path:sub(1, #cwd + 1) == cwd .. "/" then return path:sub(#cwd + 2) end
  return path
end

local function walk(path)
  local st = uv.fs_lstat(path)
  if not st then io.stderr:write("review_fleet: cannot read ", path, "\n") skipped = skipped + 1 return end
  if st.type == "directory" then
    local req = uv.fs_scandir(path)
    local names = {}
    while req do
      local name = uv.fs_scandir_next(req)
      if not name then break end
      if name:sub(1, 1) ~= "." then names[#names + 1] = name end
    end
    table.sort(names)
    for _, name in ipairs(names) do walk(path .. "/" .. name) end
  elseif st.type == "file" then
    local kind = KIND[path:match("%.(%w+)$") or ""]
    if kind then
      files[#files + 1] = { id = ("t%d"):format(#files + 1), path = path, file = display(path), kind = kind,
        attempts = 0, reasons = {} }
    else
      skipped = skipped + 1
    end
  end
end

for _, root in ipairs(opts.role == "agents" and {} or opts.roots) do
  local abs = root:sub(1, 1) == "/" and root or (cwd .. "/" .. root)
  walk((uv.fs_realpath(abs) or abs):gsub("/+$", ""))
end
if #files == 0 and opts.role ~= "agents" then die("no .c, .h, .lua or .py files under " .. table.concat(opts.roots, " ")) end

---------------------------------------------------------------------------
-- Compiler flags for C files: the file's own -D/-I/-std from a
-- compile_commands.json (the project's build/, or one under a root), else
-- the project's usual flags plus pkg-config's for its dependencies.

local function shell_words(s)
  local words, w, i, q = {}, nil, 1, nil
  while i <= #s do
    local c = s:sub(i, i)
    if q == "'" then
      if c == "'" then q = nil else w = w .. c end
    elseif c == "\\" and q ~= "'" then
      i = i + 1
      w = (w or "") .. s:sub(i, i)
    elseif q == '"' then
      if c == '"' then q = nil else w = w .. c end
    elseif c == '"' or c == "'" then
      q, w = c, w or ""
    elseif c:match("%s") then
      if w then words[#words + 1] = w end
      w = nil
    else
      w = (w or "") .. c
    end
    i = i + 1
  end
  if w then words[#words + 1] = w end
  return words
end

local function keep_flags(argv)
  local out, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    if a == "-I" or a == "-isystem" or a == "-D" or a == "-include" then
      out[#out + 1], out[#out + 2] = a, argv[i + 1]
      i = i + 1
    elseif a:match("^%-[ID]") or a:match("^%-std=") then
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

local flags_of, generic = {}, { "-std=gnu11", "-D_GNU_SOURCE" }
do
  local dbs = { (uv.exepath():match("^(.*)/[^/]*$") or ".") .. "/compile_commands.json",
    project .. "/build/compile_commands.json" }
  for _, root in ipairs(opts.roots) do dbs[#dbs + 1] = root .. "/compile_commands.json" end
  for _, db in ipairs(dbs) do
    local f = io.open(db)
    if f then
      local list = json.decode(f:read("*a"))
      f:close()
      for _, e in ipairs(type(list) == "table" and list or {}) do
        local file = e.file and uv.fs_realpath(e.file)
        if file and not flags_of[file] then
          flags_of[file] = keep_flags(e.arguments or shell_words(e.command or ""))
        end
      end
    end
  end
  local seen = {}
  local function add(flag) if not seen[flag] then seen[flag] = true generic[#generic + 1] = flag end end
  for _, root in ipairs(opts.roots) do
    local abs = uv.fs_realpath(root)
    if abs and uv.fs_stat(abs).type == "directory" then add("-I" .. abs) end
  end
  if default_roots then add("-I" .. project .. "/src") end
  local p = io.popen("pkg-config --cflags-only-I luajit libuv libcjson 2>/dev/null")
  for flag in (p:read("*a") or ""):gmatch("%S+") do add(flag) end
  p:close()
  if uv.fs_stat("/usr/include/lua5.1/luv") then add("-I/usr/include/lua5.1/luv") end
end

---------------------------------------------------------------------------
-- The fleet. Each agent is a process child of one supervisor.

local PYTHON = uv.fs_stat("/usr/bin/python3") and "/usr/bin/python3" or "python3"
local env = { PATH = os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin", LC_ALL = "C",
  REVIEW_CHAOS = tostring(opts.chaos), REVIEW_HANG = tostring(opts.hang),
  REVIEW_HEARTBEAT_MS = tostring(math.floor(math.min(1000, opts.liveness_ms / 3))) }

local function agent_spec(kind, i)
  -- across hosts each name carries its host's: one heartbeat subject each
  local name = opts.host_name and ("%s-%d-%s"):format(kind, i, opts.host_name) or ("%s-%d"):format(kind, i)
  local e = {}
  for k, v in pairs(env) do e[k] = v end
  e.REVIEWER_NAME = name
  local cmd = kind == "lua" and { uv.exepath(), here .. "/lua_reviewer.lua" }
    or { PYTHON, here .. "/c_reviewer.py" }
  return {
    id = name, restart = "permanent", shutdown = 2000,
    health = { liveness = { heartbeat = "agents.reviewer." .. name .. ".heartbeat",
      interval_ms = opts.liveness_ms, failure_threshold = 2 } },
    process = { name = name, cmd = cmd, env = e, cwd = project,
      subscribe = "review." .. kind, queue = "reviewers." .. kind,
      publish_as = "agents.reviewer." .. name, stop = { signal = "TERM", grace_ms = 2000 } },
  }
end

-- The MCP kind: its tools answer on review.py.review, one server per call
-- (queue group); a server that dies fails its call at once, and the
-- supervisor restarts it.
local function mcp_spec(i)
  local name = ("py-%d"):format(i)
  local e = {}
  for k, v in pairs(env) do e[k] = v end
  e.REVIEWER_NAME = name
  local cs = assert(msrt.mcp.server{ name = name, cmd = { PYTHON, here .. "/py_reviewer.py" }, env = e, cwd = project,
    tool_subjects = "review.py", queue = "reviewers.py", call_timeout_ms = opts.timeout_ms,
    ping = { interval_ms = opts.liveness_ms, timeout_ms = opts.liveness_ms, failure_threshold = 2 },
    stop = { signal = "TERM", grace_ms = 2000 }, shutdown = 2000 })
  return cs
end

local has_py = false
for _, t in ipairs(files) do has_py = has_py or t.kind == "py" end
local children = {}
for _, kind in ipairs(opts.role == "dispatcher" and {} or { "lua", "c", "py" }) do
  for i = 1, opts.agents do
    if kind ~= "py" then children[#children + 1] = agent_spec(kind, i)
    elseif has_py then children[#children + 1] = mcp_spec(i) end
  end
end
local SUPERVISOR = {
  name = "review_fleet", strategy = "one_for_one",
  intensity = 10000, period_ms = 2000, -- chaos is the point here: never give up
  backoff = { initial_ms = 10, max_ms = 400, multiplier = 2, jitter = 0.2 },
  children = children,
}

---------------------------------------------------------------------------
-- Bookkeeping: agents, the tasks they hold, restarts, progress.

local agents = {} -- name -> {kind, heartbeats, tasks, crashes, unhealthy, pids}
for _, c in ipairs(children) do agents[c.id] = { name = c.id, kind = c.id:match("^%a+"), heartbeats = 0, tasks = 0, crashes = 0, unhealthy = 0, pids = {} } end
local held = {}      -- reply subject -> {id, pid, agent}: tasks an agent has read
local inflight = {}  -- task id -> task, while an attempt is out
local dead = {}      -- pid -> exit reason, for agents that are gone
local restarts = 0
local tasks = { retried = 0, retried_ids = 0, late = 0 }
local started = uv.hrtime()

local subs = {}
-- The host an agent runs on: its name's last part across hosts.
local function host_of(name) return opts.role and name:match("^%a+%-%d+%-(.+)$") or "local" end

-- The record of agent name; the dispatcher makes one for another host's
-- agent the first time it hears of it, by a heartbeat or by a result
-- (its supervisor starts agents a loop turn apart, so one may take a
-- task before its first heartbeat reaches here).
local function agent(name)
  local a = agents[name]
  if not a and opts.role == "dispatcher" and type(name) == "string" then -- another host's
    a = { name = name, kind = name:match("^%a+"), heartbeats = 0, tasks = 0, crashes = 0, unhealthy = 0, pids = {} }
    agents[name] = a
  end
  return a
end

subs[#subs + 1] = msrt.subscribe("agents.reviewer.*.heartbeat", function(m)
  local a = agent(m.data.agent)
  if a then a.heartbeats, a.pids[m.data.pid] = a.heartbeats + 1, true end
end)

-- An agent that died holding tasks: their requests end now, as crashed.
local function crashed(reply, h)
  held[reply] = nil
  msrt.publish(reply, { id = h.id, crashed = true, agent = h.agent, reason = dead[h.pid] })
end

subs[#subs + 1] = msrt.subscribe("agents.reviewer.*.progress", function(m)
  local d = m.data
  local h = { id = d.id, pid = d.pid, agent = d.agent }
  if dead[d.pid] then return crashed(d.reply, h) end
  held[d.reply] = h
  local t = inflight[d.id]
  if t then t.read_by = d.pid end
end)

subs[#subs + 1] = msrt.subscribe("msrt.process.*.exit", function(m)
  local a = agents[m.data.name]
  if not a then return end
  local reason = m.data.reason or "exit"
  dead[m.data.pid] = reason
  if not m.data.stopped then a.crashes = a.crashes + 1 end
  -- What it said before it died may still be on its way to us: after a
  -- moment, what it read ends as crashed, and a task of its kind sent
  -- before its death and read by nobody is taken as lost in its stdin.
  local seen_at, kind = uv.now(), a.kind
  msrt.after(20, function()
    for reply, h in pairs(held) do
      if h.pid == m.data.pid then crashed(reply, h) end
    end
    for _, t in pairs(inflight) do -- (an MCP call fails at once by itself)
      if t.kind == kind and kind ~= "py" and not t.read_by and t.sent_at <= seen_at then
        t.abandon(("lost with agent %s (%s)"):format(m.data.name, reason))
      end
    end
  end)
end)

-- Restarts under way (an agent found unhealthy or crashed, not back
-- yet): the report waits for them, so its counts agree (finish).
local restarting = {}
subs[#subs + 1] = msrt.subscribe("msrt.supervisor.review_fleet.event", function(m)
  local ev, child = m.data.event, m.data.child
  if ev == "child_restarted" then
    restarts = restarts + 1
    restarting[child] = nil
  elseif child and (ev == "child_unhealthy" or (ev == "child_exited" and not m.data.normal)) then
    restarting[child] = true
  end
  local a = ev == "child_unhealthy" and agents[child]
  if a then a.unhealthy = a.unhealthy + 1 end
end)

local tty = uv.guess_handle(2) == "tty"
local finished, next_decile = 0, 1
local fleet -- --hosts: the cluster and the agents hosts (hosts.lua)
local killed_hosts -- host name -> true, once --kill-host-after struck
local function progress()
  local n, total = finished, #files
  if fleet and opts.kill_after and n >= opts.kill_after and not killed_hosts then
    killed_hosts = { [fleet.hosts[1].name] = true }
    fleet.kill(fleet.hosts[1])
    io.stderr:write(("review_fleet: SIGKILL of host %s after %d tasks\n"):format(fleet.hosts[1].name, n))
  end
  if tty then
    local width = 30
    local fill = math.floor(width * n / total)
    io.stderr:write(("\r[%s%s] %d/%d files, %d retried, %d restarts "):format(
      ("#"):rep(fill), ("."):rep(width - fill), n, total, tasks.retried, restarts))
    if n == total then io.stderr:write("\n") end
  else
    while next_decile <= 10 and n * 10 >= next_decile * total do
      io.stderr:write(("review_fleet: %d%% (%d/%d files, %d retried, %d restarts)\n"):format(
        next_decile * 10, n, total, tasks.retried, restarts))
      next_decile = next_decile + 1
    end
  end
end

---------------------------------------------------------------------------
-- Tasks: msrt.request with retries and exponential backoff.

local RETRY = { initial_ms = 50, max_ms = 2000, multiplier = 2, jitter = 0.2 }
local findings = {}

local function sleep(ms)
  local co = coroutine.running()
  msrt.after(ms, function() assert(coroutine.resume(co)) end)
  coroutine.yield()
end

local function forget(id)
  for reply, h in pairs(held) do
    if h.id == id then held[reply] = nil end
  end
end

-- One attempt: msrt.request in a coroutine of its own, so that a task lost
-- with a dead agent can be given up (t.abandon) without waiting for the
-- timeout; a reply that comes after that is counted as late and ignored.
local function try_once(t, payload)
  local co, over = coroutine.running(), false
  local function settle(data, err)
    if over then return false end
    over = true
    inflight[t.id], t.abandon = nil, nil
    assert(coroutine.resume(co, data, err))
    return true
  end
  t.sent_at, t.read_by, t.abandon = uv.now(), nil, function(why) settle(nil, { code = "lost", message = why }) end
  inflight[t.id] = t
  msrt.after(0, function()
    local data, err
    if t.kind == "py" then -- an MCP tool: the CallToolResult's structured content
      data, err = msrt.request("review.py.review", { id = payload.id, path = payload.path },
        { timeout_ms = opts.timeout_ms, headers = { ["Timeout-Ms"] = tostring(opts.timeout_ms) } })
      if type(data) == "table" then data = data.structuredContent end
    else
      data, err = msrt.request("review." .. t.kind, payload, { timeout_ms = opts.timeout_ms })
    end
    if not settle(data, err) and type(data) == "table" and not data.crashed then tasks.late = tasks.late + 1 end
  end)
  return coroutine.yield()
end

local function run_task(t)
  local delay = RETRY.initial_ms
  local payload = { id = t.id, path = t.path }
  if t.kind == "c" then payload.cflags = flags_of[t.path] or generic end
  for attempt = 1, opts.attempts do
    t.attempts = attempt
    payload.attempt = attempt
    local data, err = try_once(t, payload)
    forget(t.id)
    local why
    if type(data) ~= "table" then why = "bad reply"
    elseif data.crashed then why = ("agent %s died (%s)"):format(tostring(data.agent), tostring(data.reason))
    elseif data.id ~= t.id then why = "reply for another task"
    elseif data.error then -- the tool could not run: no use trying again
      t.status, t.reason = "failed", "agent " .. tostring(data.agent) .. ": " .. tostring(data.error)
      return
    end
    if not data then
      why = err.code == "timeout" and ("timeout after " .. opts.timeout_ms .. " ms")
        or err.code == "lost" and err.message or tostring(err)
    end
    if not why then
      t.status, t.agent, t.ms, t.findings = "done", data.agent, data.ms, data.findings
      local a = agent(data.agent)
      if a then a.tasks = a.tasks + 1 end
      for _, f in ipairs(data.findings or {}) do
        findings[#findings + 1] = { file = t.file, line = f.line, severity = f.severity, tool = f.tool,
          message = f.message, agent = data.agent }
      end
      return
    end
    t.reasons[#t.reasons + 1] = why
    if attempt == opts.attempts then break end
    tasks.retried = tasks.retried + 1
    if attempt == 1 then tasks.retried_ids = tasks.retried_ids + 1 end
    sleep(math.floor(delay * (1 + RETRY.jitter * (2 * math.random() - 1))))
    delay = math.min(delay * RETRY.multiplier, RETRY.max_ms)
  end
  t.status, t.reason = "failed", ("%d attempts: %s"):format(t.attempts, t.reasons[#t.reasons])
end

---------------------------------------------------------------------------
-- The report.

local function count_by(list, key)
  local out = {}
  for _, f in ipairs(list) do out[f[key]] = (out[f[key]] or 0) + 1 end
  return out
end

local function sorted_pairs(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) if t[a] ~= t[b] then return t[a] > t[b] end return a < b end)
  local i = 0
  return function() i = i + 1 if keys[i] then return keys[i], t[keys[i]] end end
end

local state_report -- with --state: what the durable queues say

local function report(secs)
  table.sort(findings, function(a, b)
    if a.file ~= b.file then return a.file < b.file end
    if a.line ~= b.line then return a.line < b.line end
    return a.tool .. a.message < b.tool .. b.message
  end)
  -- every task id ends in exactly one of done and failed
  local done_ids, failed_list, reviewed = {}, {}, {}
  for _, t in ipairs(files) do
    if t.status == "done" then done_ids[#done_ids + 1] = t.id
      reviewed[#reviewed + 1] = { id = t.id, file = t.file, attempts = t.attempts, agent = t.agent,
        retried_because = #t.reasons > 0 and t.reasons or nil }
    else failed_list[#failed_list + 1] = { id = t.id, file = t.file, reason = t.reason or "not run", attempts = t.attempts } end
  end
  local agent_list, health, names = {}, msrt.metrics().health or {}, {}
  for name in pairs(agents) do names[#names + 1] = name end
  table.sort(names)
  local hosts = {} -- across hosts: tasks done by each host's agents
  for _, name in ipairs(names) do
    local a = agents[name]
    local pids = 0
    for _ in pairs(a.pids) do pids = pids + 1 end
    local h = health[name]
    agent_list[#agent_list + 1] = { name = a.name, kind = a.kind, tasks = a.tasks, heartbeats = a.heartbeats,
      crashes = a.crashes, unhealthy = a.unhealthy, processes = pids, health = h and h.state or "unknown" }
    local host = host_of(name)
    hosts[host] = (hosts[host] or 0) + a.tasks
  end
  return {
    state = state_report and state_report(),
    files = #files, reviewed = #done_ids, skipped = skipped, roots = opts.roots, chaos = opts.chaos, hang = opts.hang,
    findings = findings, by_severity = count_by(findings, "severity"), by_tool = count_by(findings, "tool"),
    restarts = restarts, agents = agent_list, hosts = opts.role and hosts or nil,
    killed_hosts = killed_hosts,
    tasks = { total = #files, done = #done_ids, retried = tasks.retried, retried_tasks = tasks.retried_ids,
      failed = #failed_list, failures = failed_list, late_replies_ignored = tasks.late,
      accounted = #done_ids + #failed_list == #files },
    results = reviewed,
    seconds = secs, tasks_per_s = #files / secs,
  }
end

local function summary(r)
  local out = {}
  local function say(fmt, ...) out[#out + 1] = fmt:format(...) end
  say("review_fleet: %d files reviewed of %d, %d findings, %d restarts, %.2f s, %.1f tasks/s%s",
    r.reviewed, r.files, #r.findings, r.restarts, r.seconds, r.tasks_per_s,
    r.chaos > 0 and (", chaos %g"):format(r.chaos) or "")
  local parts = {}
  for k, n in sorted_pairs(r.by_severity) do parts[#parts + 1] = ("%s %d"):format(k, n) end
  say("  by severity: %s", #parts > 0 and table.concat(parts, ", ") or "none")
  parts = {}
  for k, n in sorted_pairs(r.by_tool) do parts[#parts + 1] = ("%s %d"):format(k, n) end
  say("  by tool:     %s", #parts > 0 and table.concat(parts, ", ") or "none")
  parts = {}
  for _, a in ipairs(r.agents) do
    parts[#parts + 1] = ("%s %d tasks/%d crashes/%s%d beats/%s"):format(a.name, a.tasks, a.crashes,
      a.unhealthy > 0 and ("%d unhealthy/"):format(a.unhealthy) or "", a.heartbeats, a.health)
  end
  say("  agents:      %s", table.concat(parts, "; "))
  if r.hosts then
    parts = {}
    for h, n in sorted_pairs(r.hosts) do
      parts[#parts + 1] = ("%s %d tasks%s"):format(h, n, r.killed_hosts and r.killed_hosts[h] and " (SIGKILLed)" or "")
    end
    say("  hosts:       %s", table.concat(parts, "; "))
  end
  say("  tasks:       %d done, %d retries (%d tasks), %d failed; every task id accounted: %s",
    r.tasks.done, r.tasks.retried, r.tasks.retried_tasks, r.tasks.failed, tostring(r.tasks.accounted))
  for _, f in ipairs(r.tasks.failures) do say("  FAILED %s %s: %s", f.id, f.file, f.reason) end
  return table.concat(out, "\n")
end

-- Every finding, one a line as compilers print them (file:line: severity:
-- message [tool]), sorted by file and line: editors and CI jump to them.
local function listing(r)
  local out = {}
  for _, f in ipairs(r.findings) do
    out[#out + 1] = ("%s:%d: %s: %s [%s]"):format(f.file, f.line, f.severity, f.message, f.tool)
  end
  return table.concat(out, "\n")
end

---------------------------------------------------------------------------
-- Run.

if opts.hosts then -- the cluster and the agents hosts; this host dispatches
  fleet = dofile(here .. "/hosts.lua").start(opts, here, project)
  opts.nats, opts.role = fleet.url, "dispatcher"
end

local sup, err, bridge
if opts.role ~= "dispatcher" then
  sup, err = msrt.supervisor(SUPERVISOR)
  if not sup then die("cannot start the fleet: " .. tostring(err)) end
end
if opts.nats then
  bridge, err = msrt.nats{ url = opts.nats, name = opts.host_name or opts.role,
    export = opts.role == "agents" and { "agents.>" } or { "review.>", "review_fleet.>" } }
  if not bridge then die("cannot join NATS at " .. opts.nats .. ": " .. tostring(err)) end
end

if opts.role == "agents" then -- serve until the dispatcher is done
  msrt.subscribe("review_fleet.stop", function()
    sup:stop()
    msrt.stop()
  end)
  while bridge:info().state ~= "connected" do msrt.sleep(10) end
  bridge:flush()
  io.stderr:write(("review_fleet: agents host %s ready on %s\n"):format(opts.host_name or "?", opts.nats))
  return
end

if opts.role == "dispatcher" then -- until agents of each kind beat (bounded)
  local want_hosts = opts.hosts or 1
  local deadline = uv.now() + 60000
  repeat
    local kinds, hosts_seen, n = {}, {}, 0
    for name, a in pairs(agents) do
      if a.heartbeats > 0 then kinds[a.kind], hosts_seen[host_of(name)] = true, true end
    end
    for _ in pairs(hosts_seen) do n = n + 1 end
    if kinds.lua and kinds.c and n >= want_hosts then break end
    msrt.sleep(50)
  until uv.now() > deadline
end

-- Two requests in flight per agent (one at work, one waiting on its stdin),
-- a queue of files per kind.
local queues = { c = { next = 1 }, lua = { next = 1 }, py = { next = 1 } }
for _, t in ipairs(files) do local q = queues[t.kind] q[#q + 1] = t end
local running = 0

local function finish()
  local secs = (uv.hrtime() - started) / 1e9
  -- the restarts under way end first (bounded: a supervisor that gave
  -- up restarts nothing), so the report's restarts match its unhealthy
  local deadline = uv.now() + 5000
  while next(restarting) and uv.now() < deadline do msrt.sleep(10) end
  local r = report(secs)
  for _, s in ipairs(subs) do s.unsubscribe() end
  if sup then sup:stop() end
  if opts.role == "dispatcher" then
    msrt.publish("review_fleet.stop", true) -- the agents hosts end
    if bridge then bridge:flush() end
  end
  if fleet then fleet.stop() end
  if opts.json then
    local f, ferr = io.open(opts.json, "w")
    if not f then io.stderr:write("review_fleet: ", ferr, "\n")
    else
      f:write(json.encode(r, { indent = true, keyorder = { "files", "reviewed", "findings", "restarts", "tasks" } }), "\n")
      f:close()
    end
  end
  if #r.findings > 0 then print(listing(r)) end
  print(summary(r))
  msrt.stop("normal", r.tasks.failed == 0 and 0 or 1)
end

---------------------------------------------------------------------------
-- --state FILE: the tasks through a durable queue, the results stored.

-- FNV-1a over the file's bytes, two 32-bit lanes: the content half of a
-- task's Msg-Id (a changed file is a new task).
local function content_hash(path)
  local f = io.open(path, "rb")
  if not f then return "unreadable" end
  local text = f:read("*a")
  f:close()
  local bit = require "bit"
  local function fnv(h, prime_lo)
    for i = 1, #text do
      h = bit.bxor(h, text:byte(i))
      h = bit.tobit(bit.lshift(h, 24) + h * prime_lo) -- h * (2^24 + prime_lo) mod 2^32
    end
    return bit.tohex(h)
  end
  return fnv(0x811c9dc5, 403) .. fnv(0x050c5d1f, 403)
end

-- A result of this run or an earlier one: the task ends with it.
local function apply_result(t, rec)
  t.status, t.agent, t.ms, t.reason, t.attempts = rec.status, rec.agent, rec.ms, rec.reason, rec.attempts or 0
  if rec.status == "done" then
    local a = agent(rec.agent)
    if a then a.tasks = a.tasks + 1 end
    for _, f in ipairs(rec.findings or {}) do
      findings[#findings + 1] = { file = t.file, line = f.line, severity = f.severity, tool = f.tool,
        message = f.message, agent = rec.agent }
    end
  end
end

local FOREVER_MS = 10 * 365 * 86400 * 1000 -- a Msg-Id is a task's identity for good

local function run_durable()
  local tq = assert(msrt.queue { name = "review_tasks", subjects = "review.task.>",
    store = "sqlite:" .. opts.state, ack_wait_ms = 86400000, dedupe_window_ms = FOREVER_MS })
  local rq = assert(msrt.queue { name = "review_results", subjects = "review.result.>",
    store = "sqlite:" .. opts.state .. ".results", dedupe_window_ms = FOREVER_MS })
  local by_key, resumed, queued = {}, 0, 0
  for _, t in ipairs(files) do
    t.key = t.path .. ":" .. content_hash(t.path)
    by_key[t.key] = t
  end
  local after = 0
  repeat -- what earlier runs stored
    local list = assert(rq.messages(after, 1000))
    for _, m in ipairs(list) do
      local t = by_key[m.headers and m.headers["Msg-Id"]]
      if t and not t.status then apply_result(t, m.data) resumed = resumed + 1 end
      after = m.seq
    end
  until #list == 0
  state_report = function()
    local ts, rs = tq.stats(), rq.stats()
    return { file = opts.state, resumed = resumed, queued = queued, results_stored = rs.stored,
      tasks_left = ts.stored, redelivered = ts.redelivered }
  end
  finished = resumed
  progress()
  if finished == #files then return finish() end
  for _, t in ipairs(files) do
    if not t.status then -- queued once: a Msg-Id an earlier run queued is a duplicate
      local ack = assert(msrt.publish("review.task." .. t.kind, { key = t.key }, { durable = true,
        headers = { ["Msg-Id"] = t.key } }))
      if not ack.duplicate then queued = queued + 1 end
    end
  end
  msrt.consume("review_tasks", function(msg)
    local t = by_key[msg.data.key]
    if not t or t.status then return msg:ack() end -- a file since changed or gone; or its result is stored
    local ok, terr = pcall(run_task, t)
    if not ok then t.status, t.reason = "failed", "review_fleet: " .. tostring(terr) end
    -- the result is stored before the task is acked: a kill in between
    -- reviews it again, and the result's Msg-Id keeps it stored once
    local rec = { status = t.status, agent = t.agent, ms = t.ms, reason = t.reason, attempts = t.attempts,
      findings = t.findings }
    local stored, serr = msrt.publish("review.result." .. t.kind, rec, { durable = true,
      headers = { ["Msg-Id"] = t.key } })
    if not stored then
      msrt.log("error", "review_fleet: cannot store the result of " .. t.file .. ": " .. tostring(serr))
      t.status = nil
      return msg:nak(1000)
    end
    msg:ack()
    finished = finished + 1
    progress()
    if finished == #files then finish() end
  end, { max_ack_pending = 4 * opts.agents })
end

if opts.state then
  msrt.after(0, run_durable)
  return
end

for kind, q in pairs(queues) do
  for _ = 1, math.min(#q, 2 * opts.agents * (opts.hosts or 1)) do
    running = running + 1
    msrt.after(0, function()
      while q.next <= #q do
        local t = q[q.next]
        q.next = q.next + 1
        local ok, terr = pcall(run_task, t)
        if not ok then -- a bug here must not hold the run: the task fails, saying why
          t.status, t.reason = "failed", "review_fleet: " .. tostring(terr)
          msrt.log("error", t.reason)
        end
        finished = finished + 1
        progress()
      end
      running = running - 1
      if running == 0 then finish() end
    end)
  end
end
