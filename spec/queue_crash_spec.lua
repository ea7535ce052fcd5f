-- Durable queues against real crashes and a real file size limit
-- (README "Durable work queues"): a 10,000-task queue worked by a host
-- that is SIGKILLed at random points 20 times in a row and restarted each
-- time ends with every task acked exactly once, none lost, and every
-- redelivery explained by a kill; a host whose store hits RLIMIT_FSIZE
-- refuses durable publishes with resource_exhausted, loses nothing it
-- acknowledged, and works again when the room comes back.
local S = require "spec.support"
local Q = require "spec.queues"

-- The longer form (scripts/soak's spirit, minutes rather than seconds):
-- MSRT_QUEUE_TASKS=100000 MSRT_QUEUE_KILLS=200 msrt-lua /usr/bin/busted spec/queue_crash_spec.lua
local TASKS = tonumber(os.getenv("MSRT_QUEUE_TASKS")) or 10000
local KILLS = tonumber(os.getenv("MSRT_QUEUE_KILLS")) or 20
local HELD = 4

-- The worker host: consumes the queue, logging "seq delivered" (one
-- unbuffered O_APPEND write) before acking; slowed by a 2 ms sleep per
-- task so that a kill lands mid-run. mode "finish": no sleep, and it
-- stops once the queue is empty.
local WORKER = [[
local msrt = require "msrt"
local store, log, mode = ...
local q = assert(msrt.queue { name = "tasks", subjects = "tasks.>", store = "sqlite:" .. store,
  ack_wait_ms = 600000 })
if mode == "seed" then
  local pad = ("x"):rep(tonumber(os.getenv("PAD")) or 0) -- (a WAL of more frames)
  for i = 1, tonumber(os.getenv("TASKS")) - 1 do msrt.publish("tasks.t", i .. pad) end
  assert(msrt.publish("tasks.t", "last", { durable = true })) -- all before it committed too
  print("seeded")
  return
end
local f = assert(io.open(log, "a"))
f:setvbuf("no")
msrt.consume("tasks", function(m)
  f:write(m.seq .. " " .. m.delivered .. "\n") -- one string: one write(2)
  if mode ~= "finish" then msrt.sleep(2) end
  assert(m:ack())
end, { max_ack_pending = mode == "finish" and 256 or tonumber(os.getenv("HELD")) })
print("ready")
while true do
  msrt.sleep(20)
  if mode == "finish" and q.stats().stored == 0 then break end
end
msrt.stop()
]]

local function read_log(path)
  local by = {}
  for line in io.lines(path) do
    local seq, d = line:match("^(%d+) (%d+)$")
    assert(seq, "a torn log line: " .. line)
    seq, d = tonumber(seq), tonumber(d)
    by[seq] = by[seq] or {}
    table.insert(by[seq], d)
  end
  return by
end

local function run(args, env)
  return S.run(args, { env = env, limit_s = 120 })
end

-- Both durability settings: FULL (the default profile's), and NORMAL,
-- whose WAL a checkpointer thread copies beside the writer (src/queue/
-- checkpoint.c), its tasks padded to 2 KB so that the WAL passes the
-- checkpointer's thresholds (~6,000 frames): a kill may land in a pass
-- or a catch-up.
for _, sync in ipairs { "full", "normal" } do
describe("durable queues under SIGKILL (synchronous " .. sync .. ")", function()
  it("acks every one of 10,000 tasks exactly once across 20 kills of the host", function()
    local dir = Q.dir(".qc")
    local worker = S.write(dir .. "/worker.lua", WORKER)
    local prof = S.write(dir .. "/sync.lua", ("return { queues = { synchronous = %q } }\n"):format(sync))
    local store, log = dir .. "/tasks.db", dir .. "/log"
    local env = ("TASKS=%d HELD=%d PAD=%d"):format(TASKS, HELD, sync == "normal" and 2000 or 0)
    local r = run({ "--profile", prof, worker, store, log, "seed" }, env)
    assert.are.equal(0, r.code, r.err)
    math.randomseed(os.time())
    for _ = 1, KILLS do
      -- killed at a random point: starting, opening the store, or mid-work
      local ms = math.random(50, 400)
      local cmd = ("%s %s --profile %s %s %s %s work & p=$!; sleep %.3f; kill -9 $p; wait $p"):format(
        env, S.quote(S.exe), S.quote(prof), S.quote(worker), S.quote(store), S.quote(log), ms / 1000)
      local p = io.popen("sh -c " .. S.quote(cmd) .. " >/dev/null 2>&1; echo $?")
      p:read("*a")
      p:close()
    end
    r = run({ "--profile", prof, worker, store, log, "finish" }, env)
    assert.are.equal(0, r.code, r.err)
    -- none lost; delivery counts never reused; redeliveries only from kills
    local by = read_log(log)
    local redelivered_seen, seqs = 0, 0
    for seq = 1, TASKS do
      local ds = by[seq]
      assert.is_truthy(ds, "task " .. seq .. " was never delivered")
      -- increasing: a count committed just before a kill may never have
      -- reached the consumer (a gap), but none is ever given twice
      for i, d in ipairs(ds) do
        assert.is_true(d > (ds[i - 1] or 0), "task " .. seq .. "'s delivery counts: " .. table.concat(ds, ","))
      end
      if #ds > 1 then seqs = seqs + 1 end
      redelivered_seen = redelivered_seen + ds[#ds] - 1
    end
    local check = S.write(dir .. "/check.lua", ([[
local msrt = require "msrt"
local q = assert(msrt.queue { name = "tasks", subjects = "tasks.>", store = "sqlite:%s" })
local s = q.stats()
print(s.stored, s.acked, s.redelivered, s.last_seq)
]]):format(store))
    r = run({ check })
    local stored, acked, redelivered, last = r.out:match("^(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
    assert.are.equal(0, tonumber(stored))
    assert.are.equal(TASKS, tonumber(acked)) -- an ack of an acked task cannot count
    assert.are.equal(TASKS, tonumber(last))
    -- each kill leaves at most HELD deliveries unacked; each is redelivered once more
    assert.are.equal(redelivered_seen, tonumber(redelivered))
    assert.is_true(tonumber(redelivered) <= (KILLS + 1) * HELD, "redelivered " .. redelivered)
    assert.is_true(seqs <= (KILLS + 1) * HELD)
  end)
end)
end

describe("durable queues on a full file system", function()
  it("refuses durable publishes with resource_exhausted, keeps what it acknowledged, and works again when room comes back", function()
    local dir = Q.dir(".qf")
    local child = S.write(dir .. "/fill.lua", ([[
local ffi = require "ffi"
ffi.cdef [[
struct rlim { unsigned long cur, max; };
int setrlimit(int resource, const struct rlim *r);
int getrlimit(int resource, struct rlim *r);
typedef void (*sighandler_t)(int);
sighandler_t signal(int signum, sighandler_t handler);
]=]
local RLIMIT_FSIZE, SIGXFSZ = 1, 25
ffi.C.signal(SIGXFSZ, ffi.cast("sighandler_t", 1)) -- SIG_IGN: writes fail with EFBIG instead
local old = ffi.new("struct rlim")
ffi.C.getrlimit(RLIMIT_FSIZE, old)
local msrt = require "msrt"
local q = assert(msrt.queue { name = "fill", subjects = "fill.>", store = "sqlite:%s/fill.db" })
ffi.C.setrlimit(RLIMIT_FSIZE, ffi.new("struct rlim", 1024 * 1024, old.max))
local body, acked, err = ("x"):rep(4096), 0
for i = 1, 10000 do
  local ack
  ack, err = msrt.publish("fill.x", body .. i, { durable = true })
  if not ack then break end
  acked = acked + 1
end
print("refused", err and err.code, acked > 10)
ffi.C.setrlimit(RLIMIT_FSIZE, old) -- room again
assert(msrt.publish("fill.x", body .. (acked + 1), { durable = true }))
acked = acked + 1
local got = {}
msrt.consume("fill", function(m) got[#got + 1] = m.data m:ack() end)
while #got < acked do msrt.sleep(5) end
-- the last acks' commit (on the queue's writer thread), waited for
for _ = 1, 1000 do if q.stats().stored == 0 then break end msrt.sleep(5) end
local intact = #got == acked
for i, d in ipairs(got) do intact = intact and d == body .. i end
print("consumed", intact, q.stats().stored)
]]):gsub("%]=%]", "]]"):format(dir))
    local r = S.run({ child }, { limit_s = 120 })
    assert.are.equal(0, r.code, r.err)
    assert.matches("refused%s+resource_exhausted%s+true", r.out)
    assert.matches("consumed%s+true%s+0", r.out)
  end)
end)

describe("durable queues under SIGKILL of the agent processes", function()
  it("acks every one of 10,000 tasks exactly once while agents are killed 20 times and restarted", function()
    local dir = Q.dir(".qp")
    local agent = S.write(dir .. "/agent.py", [[
import json, sys
log = open(sys.argv[1], "a")
for line in sys.stdin:
    m = json.loads(line)
    log.write("%d %d\n" % (m["seq"], m["delivered"])); log.flush()
    sys.stdout.write(json.dumps({"ack": m["token"]}) + "\n"); sys.stdout.flush()
]])
    local host = S.write(dir .. "/host.lua", ([[
local msrt = require "msrt"
local TASKS, KILLS, HELD = %d, %d, %d
local q = assert(msrt.queue { name = "tasks", subjects = "tasks.>", store = "sqlite:%s/tasks.db",
  ack_wait_ms = 600000 })
for i = 1, TASKS - 1 do msrt.publish("tasks.t", i) end
assert(msrt.publish("tasks.t", TASKS, { durable = true }))
local children = {}
for i = 1, 2 do
  children[i] = { id = "agent" .. i, restart = "permanent",
    process = { name = "agent" .. i, cmd = { "python3", "%s", "%s/log" }, env = { PATH = os.getenv("PATH") },
      consume = "tasks", max_ack_pending = HELD } }
end
local sup = assert(msrt.supervisor { name = "agents", strategy = "one_for_one", intensity = 1000,
  period_ms = 1000, children = children })
math.randomseed(os.time())
for _ = 1, KILLS do -- SIGKILL an agent at a random point; its supervisor restarts it
  msrt.sleep(math.random(20, 120))
  local kids = sup:which_children()
  local k = kids[math.random(#kids)]
  local pid = k.handle and k.handle:pid()
  if pid then k.handle:signal("KILL") end
end
while q.stats().stored > 0 do msrt.sleep(20) end
local s = q.stats()
print(s.stored, s.acked, s.redelivered)
sup:stop()
msrt.stop()
]]):format(TASKS, KILLS, HELD, dir, agent, dir))
    local r = S.run({ host }, { limit_s = 240 })
    assert.are.equal(0, r.code, r.err)
    local stored, acked, redelivered = r.out:match("(%d+)%s+(%d+)%s+(%d+)")
    assert.are.equal(0, tonumber(stored))
    assert.are.equal(TASKS, tonumber(acked))
    local by = read_log(dir .. "/log")
    local seen_redeliveries = 0
    for seq = 1, TASKS do
      local ds = by[seq]
      assert.is_truthy(ds, "task " .. seq .. " was never delivered")
      for i, d in ipairs(ds) do assert.is_true(d > (ds[i - 1] or 0), "task " .. seq .. ": " .. table.concat(ds, ",")) end
      seen_redeliveries = seen_redeliveries + ds[#ds] - 1
    end
    -- a killed agent held at most HELD; each of those was redelivered once
    assert.is_true(tonumber(redelivered) >= seen_redeliveries)
    assert.is_true(tonumber(redelivered) <= KILLS * HELD, "redelivered " .. redelivered)
    assert.is_true(tonumber(redelivered) > 0, "no kill landed on a held task")
  end)
end)
