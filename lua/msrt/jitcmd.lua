--- luajit's command-line options `-j`, `-O` and `-b`, as msrt-lua takes
-- them (README "msrt-lua"). Called by src/main.c, in the order the options
-- come among `-e` and `-l`, as luajit's own front end runs them:
--
-- * `-j CMD[=ARG,ARG...]` (or `-jCMD...`): `jit.on`, `jit.off`,
--   `jit.flush`, or else `require("jit." .. CMD).start(ARG, ...)` (`-jv`,
--   `-jdump=...`, `-jp`...).
-- * `-O[OPT,OPT...]`: `jit.opt.start(OPT, ...)` (`-O3`, `-Ohotloop=10`,
--   `-O-fold`).
-- * `-b ARG...`: `require("jit.bcsave").start(ARG, ...)`, every later
--   argument given to it; the host does not run.
--
-- Arguments are split at commas; an empty one is nil, as luajit passes it.
-- An unknown command raises "unknown luaJIT command or jit.* modules not
-- installed", luajit's message. Hub thread; errors are raised (the caller
-- reports them as a failing chunk).
local M = {}

local function split(s)
  local args, n = {}, 0
  if s == nil or s == "" then return args, 0 end
  for item in (s .. ","):gmatch("([^,]*),") do
    n = n + 1
    args[n] = item ~= "" and item or nil
  end
  return args, n
end

local function module_start(name)
  local ok, m = pcall(require, "jit." .. name)
  if not ok or type(m) ~= "table" or type(m.start) ~= "function" then
    error("unknown luaJIT command or jit.* modules not installed", 0)
  end
  return m.start
end

--- `-j` with its text after the `j` (`"v"`, `"dump=im,out.txt"`, `"off"`).
function M.j(cmd)
  local name, opt = cmd:match("^([^=]*)=?(.*)$")
  local fn = type(jit[name]) == "function" and jit[name] or module_start(name)
  local args, n = split(opt)
  return fn(unpack(args, 1, n))
end

--- `-O` with its text after the `O` (`"3"`, `"hotloop=10,-fold"`, `""`).
function M.O(opts)
  local args, n = split(opts)
  return require("jit.opt").start(unpack(args, 1, n))
end

--- `-b` and what follows it: `first` is the option itself (`"-b"`,
-- `"-bl"`), then every later argument, as luajit hands them to bcsave.
function M.b(first, ...)
  local start = module_start("bcsave")
  if #first > 2 then return start("-" .. first:sub(3), ...) end
  return start(...)
end

return M
