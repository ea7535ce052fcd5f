-- lua_reviewer: a review agent for Lua files, run with msrt-lua itself and
-- speaking JSON lines on stdin/stdout (the protocol of c_reviewer.py):
--   in:  {"subject", "reply": R, "data": {"id", "path"}}
--   out: {"subject": "<prefix>.progress", "data": {id, reply, agent, pid}} when a task is read,
--        {"subject": R, "data": {id, path, agent, pid, ms, findings = {{line, severity, tool, message}}}},
--        {"subject": "<prefix>.heartbeat", "data": {agent, pid, tasks}} every REVIEW_HEARTBEAT_MS.
-- Checks: `luajit -bl FILE /dev/null` (LuaJIT's own compiler: syntax errors
-- with their line), then the file's bytecode read in-process with jit.util
-- (nothing is run): every assignment to a global is a warning.
-- REVIEW_CHAOS=P: before each task, exit abruptly with probability P;
-- REVIEW_HANG=P: hang with probability P (no more work, no more heartbeats).
local uv = require "luv"
local json = require "dkjson"
local jutil = require "jit.util"
local bit = require "bit"

local NAME = os.getenv("REVIEWER_NAME") or "lua"
local PREFIX = os.getenv("REVIEW_PREFIX") or ("agents.reviewer." .. NAME)
local CHAOS = tonumber(os.getenv("REVIEW_CHAOS") or "") or 0
local HANG = tonumber(os.getenv("REVIEW_HANG") or "") or 0
local HEARTBEAT_MS = tonumber(os.getenv("REVIEW_HEARTBEAT_MS") or "") or 1000
local LUAJIT = os.getenv("REVIEW_LUAJIT") or "luajit"
local PID = uv.os_getpid()
math.randomseed(PID * 1000003 + uv.hrtime() % 1000003)

local function emit(subject, data)
  io.stdout:write(json.encode({ subject = subject, data = data }), "\n")
  io.stdout:flush()
end

-- Assignments to globals, from the bytecode (GSET's constant is the name).
local GSET
do
  local names = require("jit.vmdef").bcnames
  for op = 0, #names / 6 - 1 do
    if names:sub(op * 6 + 1, op * 6 + 6):match("^%S+") == "GSET" then GSET = op end
  end
end

local function globals_set(fn, out)
  for pc = 1, 1e9 do
    local ins = jutil.funcbc(fn, pc)
    if not ins then break end
    if bit.band(ins, 0xff) == GSET then
      local name = jutil.funck(fn, -bit.rshift(ins, 16) - 1)
      out[#out + 1] = { line = jutil.funcinfo(fn, pc).currentline or 0, severity = "warning",
        tool = "luajit", message = ("assignment to global '%s'"):format(tostring(name)) }
    end
  end
  if jutil.funcinfo(fn).children then
    for n = -1, -1e9, -1 do
      local k = jutil.funck(fn, n)
      if not k then break end
      if type(k) == "proto" then globals_set(k, out) end
    end
  end
  return out
end

-- `luajit -bl path /dev/null`: calls back with (findings) or (nil, why).
local function compile_check(path, cb)
  local errp = uv.new_pipe(false)
  local chunks = {}
  local handle, perr
  handle, perr = uv.spawn(LUAJIT, { args = { "-bl", path, "/dev/null" }, stdio = { nil, nil, errp } },
    function(code)
      handle:close()
      local function finish()
        local text = table.concat(chunks)
        if code == 0 then return cb({}) end
        -- "luajit: path:LINE: message"
        local line, msg = text:match(":(%d+): ([^\n]*)")
        if not line then return cb(nil, ("luajit exited %d: %s"):format(code, text:sub(1, 300))) end
        cb({ { line = tonumber(line), severity = "error", tool = "luajit -bl", message = msg } })
      end
      if errp:is_closing() then finish() else errp:close(finish) end
    end)
  if not handle then
    errp:close()
    return cb(nil, "cannot run " .. LUAJIT .. ": " .. tostring(perr))
  end
  errp:read_start(function(err, data)
    if data then chunks[#chunks + 1] = data
    else errp:read_stop(); if not errp:is_closing() then errp:close() end end
  end)
end

local queue, busy, done, eof = {}, false, 0, false
local heartbeat = uv.new_timer()

local function next_task()
  if busy then return end
  local msg = table.remove(queue, 1)
  if not msg then
    if eof then heartbeat:close() end
    return
  end
  if CHAOS > 0 and math.random() < CHAOS then
    io.stderr:write(("chaos: crashing with task %s\n"):format(tostring(msg.data.id)))
    os.exit(70, false)
  end
  if HANG > 0 and math.random() < HANG then
    io.stderr:write(("chaos: hanging with task %s\n"):format(tostring(msg.data.id)))
    heartbeat:stop()
    busy = true -- for good: nothing more is done
    return
  end
  busy = true
  local task, t0 = msg.data, uv.hrtime()
  compile_check(task.path, function(findings, why)
    local reply = { id = task.id, path = task.path, agent = NAME, pid = PID }
    if findings and #findings == 0 then -- compiles: look at its bytecode
      local fn = loadfile(task.path)
      findings = fn and globals_set(fn, {}) or findings
      table.sort(findings, function(a, b) return a.line < b.line end)
    end
    reply.findings, reply.error = findings, why
    reply.ms = math.floor((uv.hrtime() - t0) / 1e6)
    done = done + 1
    emit(msg.reply, reply)
    busy = false
    next_task()
  end)
end

local stdin = uv.new_pipe(false)
stdin:open(0)
local pending = ""
stdin:read_start(function(err, data)
  if not data then -- EOF (or an error): finish what was read, then exit
    stdin:close()
    eof = true
    return next_task()
  end
  pending = pending .. data
  while true do
    local line, rest = pending:match("^([^\n]*)\n(.*)$")
    if not line then break end
    pending = rest
    local msg = json.decode(line)
    if type(msg) == "table" and msg.reply and type(msg.data) == "table" then
      emit(PREFIX .. ".progress", { id = msg.data.id, reply = msg.reply, agent = NAME, pid = PID })
      queue[#queue + 1] = msg
    elseif line ~= "" then
      io.stderr:write("not a task: ", line:sub(1, 100), "\n")
    end
  end
  next_task()
end)

heartbeat:start(0, HEARTBEAT_MS, function()
  emit(PREFIX .. ".heartbeat", { agent = NAME, pid = PID, tasks = done, queued = #queue })
end)
