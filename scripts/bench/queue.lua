-- Durable queues (README "Durable work queues", docs/performance.md): durable
-- publish + consume + ack through msrt.queue's SQLite store, 16 B and
-- 4 KiB payloads, 1 and 4 hub consumers; msgs/s from the first publish to
-- the last ack, and publish-to-ack p50 (from the msrt.publish call to the
-- consumer's msg:ack). 64 publisher coroutines each wait for their PubAck,
-- as a JetStream client with 64 async publishes in flight does
-- (scripts/bench/queue.c js).
--   msrt-lua scripts/bench/queue.lua [--msgs N] [--sync normal|full] [--dir DIR (a run's own directory is made in it)]
--     [--size BYTES] [--consumers N]   (one case only: for callgrind at two --msgs)
-- Each case runs twice: per message (msrt.publish and msrt.consume's
-- fn(msg)) and in batches of 64 (msrt.publish_batch, one coroutine, and
-- msrt.consume{batch = 64}'s fn(msgs) acking with msgs:ack()): the same
-- 64 messages in flight as the plain loop's transaction and JetStream's
-- async publish window (and its consumers' Fetch of 64). --batch 0 runs
-- the per-message rows only, --batch N the batch rows only.
-- With --memory 1 it measures the in-memory path instead (the same
-- publishes and hub subscriptions, no queue): the A/B of "unchanged".
-- With --js URL the queues are msrt's JetStream store (store =
-- "jetstream") on the NATS server at URL, beside JetStream raw
-- (scripts/bench/queue.c js) on the same server.
local B = dofile(arg[0]:match("^(.*)/") .. "/common.lua")
local opts = B.options({ msgs = 20000, sync = "normal", dir = "", memory = 0, js = "", size = 0, consumers = 0, batch = -1 },
  "msrt-lua scripts/bench/queue.lua [--msgs N] [--sync normal|full] [--dir DIR] [--memory 1] [--js URL] [--size BYTES] [--consumers N] [--batch N]")
local msrt = require "msrt"
local uv = require "luv"

-- (the in-memory run sets no queue field: it also runs on a build from
-- before durable queues, for the A/B)
assert(msrt.start(opts.memory == 0 and { profile = { queues = { synchronous = opts.sync, commit_ms = 0 } } } or nil))
B.header(opts.js ~= "" and ("msrt's jetstream store at %s, %d msgs per case"):format(opts.js, opts.msgs)
  or ("synchronous %s, %d msgs per case"):format(opts.sync, opts.msgs))
local bridge
if opts.js ~= "" then
  bridge = assert(msrt.nats { url = opts.js, import = {}, export = {} })
  for _ = 1, 500 do if bridge:info().state == "connected" then break end msrt.sleep(10) end
end
-- The databases go in a directory of the run's own, made inside --dir
-- (default the system's temporary directory) and removed at the end:
-- never --dir itself, which may hold anything (`--dir /tmp` once removed
-- every file of /tmp).
local parent = opts.dir ~= "" and opts.dir or (os.getenv("TMPDIR") or "/tmp")
local dir = assert(uv.fs_mkdtemp(parent .. "/msrt-queue-bench-XXXXXX"))

local PUBLISHERS = 64
local case_no = 0

local function run_case(size, consumers, batch)
  case_no = case_no + 1
  local name = "bench" .. case_no
  local q
  if opts.memory == 0 then
    q = assert(msrt.queue { name = name, subjects = name .. ".>", ack_wait_ms = 60000,
      store = bridge and "jetstream" or ("sqlite:%s/%s.db"):format(dir, name) })
  end
  local n, acked, lat = opts.msgs, 0, {}
  local body = ("x"):rep(size)
  local t0 = uv.hrtime()
  local done_co = coroutine.running()
  local function took(sent, now) -- now: the ack's time (a batch's, once for it)
    acked = acked + 1
    lat[acked] = ((now or uv.hrtime()) - sent) / 1e3
    if acked == n then uv.update_time() coroutine.resume(done_co) end
  end
  local cons = {}
  for _ = 1, consumers do
    if q then
      cons[#cons + 1] = assert(batch > 0 and msrt.consume(name, function(msgs)
        msgs:ack()
        local now = uv.hrtime()
        for i = 1, #msgs do took(tonumber(msgs[i].headers.T), now) end
      end, { max_ack_pending = 256, batch = batch }) or msrt.consume(name, function(m)
        m:ack()
        took(tonumber(m.headers.T))
      end, { max_ack_pending = 256 }))
    else
      cons[#cons + 1] = assert(msrt.subscribe(name .. ".x", function(m) took(tonumber(m.headers.T)) end,
        { queue = "workers" }))
    end
  end
  local sent = 0
  if batch > 0 then -- PUBLISHERS in flight: batches of `batch`
    for _ = 1, math.max(1, math.floor(PUBLISHERS / batch)) do
      msrt.after(0, function()
        while sent < n do
          local k = math.min(batch, n - sent)
          sent = sent + k
          local list = {}
          for i = 1, k do list[i] = body end
          assert(msrt.publish_batch(name .. ".x", list, { durable = q ~= nil,
            headers = { T = string.format("%.0f", uv.hrtime()) } }))
        end
      end)
    end
  else
    for _ = 1, PUBLISHERS do
      msrt.after(0, function()
        while sent < n do
          sent = sent + 1
          assert(msrt.publish(name .. ".x", body, { durable = q ~= nil,
            headers = { T = string.format("%.0f", uv.hrtime()) } }))
        end
      end)
    end
  end
  coroutine.yield()
  local secs = (uv.hrtime() - t0) / 1e9
  for _, c in ipairs(cons) do if c.stop then c.stop() else c.unsubscribe() end end
  -- the WAL's file before the close checkpoints and removes it: its size
  -- is the most it held (a restarted WAL is written from the top, not cut)
  local wal = q and not bridge and uv.fs_stat(("%s/%s.db-wal"):format(dir, name))
  if q then q.close() end
  table.sort(lat)
  print(("%-6s %5d B, %d consumer%s%s: %9.0f msgs/s, publish-to-ack p50 %8.1f us, p99 %8.1f us%s"):format(
    q and (bridge and "js-q" or "queue") or "memory", size, consumers, consumers > 1 and "s" or " ",
    batch > 0 and (", batch %d"):format(batch) or "", n / secs,
    lat[math.floor(#lat * 0.5) + 1], lat[math.floor(#lat * 0.99) + 1],
    wal and (", WAL %.1f MiB"):format(wal.size / 1048576) or ""))
end

for _, size in ipairs(opts.size > 0 and { opts.size } or { 16, 4096 }) do
  for _, c in ipairs(opts.consumers > 0 and { opts.consumers } or { 1, 4 }) do
    for _, b in ipairs(opts.batch >= 0 and { opts.batch } or opts.memory == 0 and { 0, 64 } or { 0 }) do run_case(size, c, b) end
  end
end
os.execute("rm -rf '" .. dir .. "'")
if bridge then bridge:close() end
msrt.stop()
