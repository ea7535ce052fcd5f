-- wordfreq: word frequencies over a text corpus with in-process Lua actors
-- under the cpu_bound profile: map through a queue group of actors (one per
-- worker thread), reduce in one, print the top 20.
--   msrt-lua examples/wordfreq.lua [FILE|DIR...] [--top N]
-- Default: /usr/share/common-licenses and the project's README.md.
-- A word is a run of ASCII letters, lowercased: the same as
-- `tr -cs A-Za-z '\n' | tr A-Z a-z | sort | uniq -c | sort -rn`.
-- The hub only plans: it cuts files into chunks of CHUNK bytes; a mapper
-- reads its chunk itself (a word cut at a chunk's start belongs to the
-- chunk before, which reads on to the word's end), counts, sends its
-- counts to the reducer, then answers the hub's request. Requests are
-- kept to two per mapper in flight; once every one is answered, every
-- partial count is already in the reducer's mailbox ahead of the hub's
-- final request for the result.
local uv = require "luv"
local msrt = require "msrt"

local ok, err = msrt.start{ profile = "cpu_bound" }
if not ok then io.stderr:write("wordfreq: ", tostring(err), "\n") os.exit(1) end

local CHUNK = 128 * 1024
local here = uv.fs_realpath((arg and arg[0] or "examples/wordfreq.lua"):match("^(.*)/[^/]*$") or ".")
local project = here:match("^(.*)/examples$") or uv.cwd()

local roots, top = {}, 20
do
  local a, i = { ... }, 1
  while i <= #a do
    if a[i] == "--top" then
      i = i + 1
      top = tonumber(a[i]) or error("--top needs a number", 0)
    else
      roots[#roots + 1] = a[i]
    end
    i = i + 1
  end
end
if #roots == 0 then roots = { "/usr/share/common-licenses", project .. "/README.md" } end

-- The files, in a stable order; chunks of each.
local files, chunks, bytes = {}, {}, 0
local function walk(path)
  local st = uv.fs_stat(path)
  if not st then io.stderr:write("wordfreq: cannot read ", path, "\n") return end
  if st.type == "directory" then
    local req, names = uv.fs_scandir(path), {}
    while req do
      local name = uv.fs_scandir_next(req)
      if not name then break end
      names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do walk(path .. "/" .. name) end
  elseif st.type == "file" then
    files[#files + 1] = path
    bytes = bytes + st.size
    for offset = 0, st.size - 1, CHUNK do
      chunks[#chunks + 1] = { path = path, offset = offset, length = math.min(CHUNK, st.size - offset) }
    end
  end
end
for _, r in ipairs(roots) do walk(r) end

-- Map: count one chunk, send the counts to the reducer, answer the hub.
-- (Handlers travel to the actor states as bytecode: no upvalues.)
local function map(ctx, msg)
  local t = msg.data
  local f, ferr = io.open(t.path, "rb")
  if not f then return ctx:reply(msg, { error = ferr }) end
  local from = t.offset > 0 and t.offset - 1 or 0
  f:seek("set", from)
  local s = f:read(t.length + (t.offset - from)) or ""
  -- a word running in from the chunk before is that chunk's
  if t.offset > 0 then s = s:gsub("^[A-Za-z]+", "", 1) end
  -- a word running on past the end is this chunk's: read on to its end
  if s:find("[A-Za-z]$") then
    while true do
      local more = f:read(256)
      if not more then break end
      local head = more:match("^[A-Za-z]*")
      s = s .. head
      if #head < #more then break end
    end
  end
  f:close()
  local counts, words = {}, 0
  for w in s:gmatch("[A-Za-z]+") do
    w = w:lower()
    counts[w] = (counts[w] or 0) + 1
    words = words + 1
  end
  ctx:publish("wordfreq.reduce", counts)
  ctx:reply(msg, { words = words })
end

-- Reduce: merge partial counts; on wordfreq.result answer with the top N.
-- Its state lives on ctx (one per actor).
local function reduce_init(ctx) ctx.totals = {} end
local function reduce(ctx, msg)
  local totals = ctx.totals
  if msg.subject == "wordfreq.reduce" then
    for w, n in pairs(msg.data) do totals[w] = (totals[w] or 0) + n end
    return
  end
  local list, words = {}, 0
  for w, n in pairs(totals) do
    list[#list + 1] = { w, n }
    words = words + n
  end
  table.sort(list, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  local out = {}
  for i = 1, math.min(msg.data.top, #list) do out[i] = list[i] end
  ctx:reply(msg, { top = out, words = words, distinct = #list })
end

local mappers = msrt.profile().workers
local started = uv.hrtime()
local map_h = assert(msrt.actor{ name = "wf_map", handle = map, instances = mappers,
  subscribe = "wordfreq.map", queue = "mappers" })
local reduce_h = assert(msrt.actor{ name = "wf_reduce", init = reduce_init, handle = reduce,
  subscribe = { "wordfreq.reduce", "wordfreq.result" } })

local next_chunk, running, failed = 1, 0, 0

local function finish()
  local r, rerr = msrt.request("wordfreq.result", { top = top }, { timeout_ms = 60000 })
  map_h:stop("normal")
  reduce_h:stop("normal")
  map_h:wait()
  reduce_h:wait()
  if not r then
    io.stderr:write("wordfreq: no result: ", tostring(rerr), "\n")
    return msrt.stop("failed", 1)
  end
  local secs = (uv.hrtime() - started) / 1e9
  print(("wordfreq: %d files, %.2f MiB, %d words, %d distinct, %d chunks over %d mappers, %.3f s (%.1f MiB/s), profile %s")
    :format(#files, bytes / 1048576, r.words, r.distinct, #chunks, mappers, secs,
      bytes / 1048576 / secs, msrt.profile().name))
  for _, e in ipairs(r.top) do print(("%7d %s"):format(e[2], e[1])) end
  msrt.stop(failed == 0 and "normal" or "failed", failed == 0 and 0 or 1)
end

for _ = 1, math.min(#chunks, 2 * mappers) do
  running = running + 1
  msrt.after(0, function()
    while next_chunk <= #chunks do
      local c = chunks[next_chunk]
      next_chunk = next_chunk + 1
      local r, rerr = msrt.request("wordfreq.map", c, { timeout_ms = 60000 })
      if not r or r.error then
        failed = failed + 1
        io.stderr:write(("wordfreq: %s@%d: %s\n"):format(c.path, c.offset, tostring(r and r.error or rerr)))
      end
    end
    running = running - 1
    if running == 0 then finish() end
  end)
end
if #chunks == 0 then msrt.after(0, finish) end
