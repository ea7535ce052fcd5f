--- The `msrt-lua -i` read-eval-print loop on the hub loop, as luvit's
-- (README "msrt-lua"): each line runs as a hub coroutine (so msrt.request
-- and msrt.sleep work in it), timers, callbacks and actors run between
-- lines and while a line waits, and the end of input (Ctrl-D) shuts the
-- host down gracefully, live actors and processes included. A line is
-- first tried as an expression (its values printed, as lua.c's `=`); an
-- incomplete chunk continues on the next line (prompt `>>`); an error is
-- printed with its traceback and the loop goes on (it does not change the
-- exit status, as in lua.c).
-- Internal: started by msrt-lua itself. Hub thread only.
-- @module msrt.repl
local core = require "msrt.core"
local uv = require "luv"

local M = {}

-- An expression's values are printed; select keeps a call from being a
-- tail call, which would take its caller's line from error messages.
local function compile(src)
  local fn = loadstring("return select(1, " .. src .. "\n)", "=stdin")
  if fn then return fn end
  return loadstring(src, "=stdin")
end

local function prompt(p)
  io.stdout:write(p)
  io.stdout:flush()
end

local function show(ok, ...)
  if not ok then
    io.stderr:write("msrt-lua: ", tostring((...)), "\n")
  elseif select("#", ...) > 0 then
    print(...)
  end
end

--- Start reading standard input. Reads go through libuv's thread pool
-- (uv.fs_read), which takes files, pipes and terminals alike; one pool
-- thread waits on the terminal meanwhile.
function M.start()
  local buf, pending, eof = "", "", false
  local step

  -- the next line on a later turn of the loop, so that timers and
  -- messages run between lines and lines never nest
  local function later()
    local t = uv.new_timer()
    t:start(0, 0, function() t:close() step() end)
  end

  local function run(src)
    local fn, err = compile(pending .. src)
    if not fn and err:sub(-7) == "'<eof>'" then -- incomplete, as lua.c tells
      pending = pending .. src .. "\n"
      prompt(">> ")
      return later()
    end
    pending = ""
    if not fn then
      io.stderr:write("msrt-lua: ", err, "\n")
    else
      show(xpcall(fn, debug.traceback))
    end
    prompt("> ")
    later()
  end

  function step()
    local line, rest = buf:match("^([^\n]*)\n(.*)$")
    if line then
      buf = rest
      -- a coroutine per line: one that waits (msrt.request) holds the
      -- next line back until it is done, not the loop
      local co = coroutine.create(run)
      return core.resume(co, "stdin", line)
    end
    if eof then
      if buf ~= "" then
        local last = buf
        buf = ""
        return core.resume(coroutine.create(run), "stdin", last)
      end
      io.stdout:write("\n")
      return core.stop("normal", 0)
    end
    uv.fs_read(0, 4096, -1, function(err, data)
      if err or not data or data == "" then eof = true else buf = buf .. data end
      step()
    end)
  end

  prompt("> ")
  step()
end

return M
