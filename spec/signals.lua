-- Helpers for specs that signal a running msrt-lua (or luajit) and read
-- what it printed: spec/dropin_spec.lua, spec/security/host_spec.lua.
-- Not a spec itself.
local S = require "spec.support"
local M = {}

--- Start script under exe in the background (its arg[1] is a file it
-- writes once ready), then run the shell steps (with $pid and $out, the
-- file its stdout and stderr go to). Returns its exit status and output.
-- Every wait is bounded (10 s).
function M.signalled(exe, script, steps)
  local path, ready = S.file(script), os.tmpname()
  os.remove(ready)
  local out = ready .. ".out"
  local cmd = table.concat({
    "exec 2>/dev/null", -- the shell's own job notices
    ("%s %s %s >%s 2>&1 & pid=$!; out=%s"):format(S.quote(exe), S.quote(path), S.quote(ready), S.quote(out), S.quote(out)),
    ("n=0; while [ ! -s %s ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done"):format(S.quote(ready)),
    steps,
    "wait $pid; echo $?",
  }, "\n")
  local p = io.popen(cmd)
  local code = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local f = io.open(out)
  local text = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(ready) os.remove(out) os.remove(path)
  return code, text
end

--- Shell: wait until the output holds n lines matching pattern.
function M.wait_lines(pattern, n)
  return ("m=0; while [ \"$(grep -c '%s' $out)\" -lt %d ] && [ $m -lt 1000 ]; do sleep 0.01; m=$((m+1)); done")
    :format(pattern, n)
end

--- The script line that writes arg[1] once the script is ready.
M.READY = [[local f = io.open(arg[1], "w") f:write("1") f:close()]]

return M
