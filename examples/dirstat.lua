-- dirstat: walk directory trees on the hub with luv's asynchronous fs calls
-- (run on the blocking pool the tuning profile sizes) and summarise them:
-- files, bytes, and the largest file kinds by extension.
--   msrt-lua [--profile io_bound] examples/dirstat.lua [DIR...]
-- Default: /usr/share/common-licenses and /usr/include, which ship with the system.
local uv = require "luv"
local msrt = require "msrt"

local roots = { ... }
if #roots == 0 then roots = { "/usr/share/common-licenses", "/usr/include" } end

local stats = { files = 0, dirs = 0, bytes = 0, errors = 0, kinds = {} }
local pending, started = 0, uv.hrtime()
local tty = uv.guess_handle(2) == "tty"

local function progress()
  if tty then io.stderr:write(("\r%d files, %d dirs"):format(stats.files, stats.dirs)) end
end

local function done()
  pending = pending - 1
  if pending > 0 then return end
  if tty then io.stderr:write("\n") end
  local secs = (uv.hrtime() - started) / 1e9
  local kinds = {}
  for ext, k in pairs(stats.kinds) do kinds[#kinds + 1] = { ext = ext, n = k.n, bytes = k.bytes } end
  table.sort(kinds, function(a, b) return a.bytes > b.bytes end)
  print(("%d files in %d directories, %.1f MiB, %d unreadable, %.2f s (profile %s, %d blocking threads)")
    :format(stats.files, stats.dirs, stats.bytes / 1048576, stats.errors, secs,
      msrt.profile().name, msrt.profile().blocking_threads))
  for i = 1, math.min(10, #kinds) do
    local k = kinds[i]
    print(("  %-10s %7d files %10.1f KiB"):format(k.ext, k.n, k.bytes / 1024))
  end
end

local walk

local function visit(path)
  pending = pending + 1
  uv.fs_lstat(path, function(err, st)
    if err then stats.errors = stats.errors + 1 return done() end
    if st.type == "directory" then
      stats.dirs = stats.dirs + 1
      walk(path)
    elseif st.type == "file" then
      stats.files = stats.files + 1
      stats.bytes = stats.bytes + st.size
      local ext = path:match("%.([%w_]+)$") or "(none)"
      local k = stats.kinds[ext] or { n = 0, bytes = 0 }
      k.n, k.bytes = k.n + 1, k.bytes + st.size
      stats.kinds[ext] = k
      if stats.files % 1000 == 0 then progress() end
    end
    done()
  end)
end

function walk(dir)
  pending = pending + 1
  uv.fs_scandir(dir, function(err, req)
    if err then stats.errors = stats.errors + 1 return done() end
    while true do
      local name = uv.fs_scandir_next(req)
      if not name then break end
      visit(dir .. "/" .. name)
    end
    done()
  end)
end

for _, root in ipairs(roots) do visit(root) end
