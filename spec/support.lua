--- Helpers for specs: run msrt-lua as a child and capture what it says.
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

return S
