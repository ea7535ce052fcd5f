--- `msrt-lua ctl SOCKET COMMAND [PATH]`: send one command to a running
-- host's control socket (msrt-lua --ctl) and print the answer (README
-- "Operator tools"). Exit status 0; 1 when the host cannot be reached or
-- answers with an error; 2 for bad usage. `msrt-lua ctl help` prints the
-- usage without a host.
-- @module msrt.ctl
local uv = require "luv"

local M = {}

--- Every state `tree` shows in its health column (src/health: the
-- child's overall state), one line each, as `help` and `tree` print them.
M.HEALTH = [[
health, as tree shows it:
  -               no probes
  starting        its startup probe has not passed yet
  unknown         no probe result yet (the child has just started or restarted)
  healthy         its probes pass
  degraded        a probe fails, under its failure_threshold
  unhealthy       a probe reached its failure_threshold (liveness: the supervisor acts)
]]

--- The usage, also the host's answer to `help`.
M.USAGE = [[
usage: msrt-lua ctl SOCKET COMMAND
  status          pid, uptime, profile, counts, router totals, reloads
  tree            the supervision trees: state, pid, uptime, restarts, health
  metrics         the Prometheus text of /metrics
  reload          reload every watched policy file (as SIGHUP)
  stop            graceful shutdown: the trees first, then the rest
  stop PATH       stop a child and keep its spec (OTP terminate_child)
  start PATH      start a stopped child again (OTP restart_child)
  restart PATH    stop a child, then start it again
  queues          each durable queue: stored, pending, ack_pending,
                  redelivered, dead_lettered, acked, consumers
  queue NAME peek N   the first N stored messages of a queue
  queue NAME purge    delete every stored message of a queue
  help            this text
PATH: the root supervisor's name, then child ids: fleet/workers/c-1
]] .. M.HEALTH

-- Commands and whether they take a PATH (true: needed; "optional").
local COMMANDS = { status = false, tree = false, metrics = false, reload = false, help = false,
  stop = "optional", start = true, restart = true, queues = false, queue = "queue" }

--- The client's bounds: an answer larger than MAX_ANSWER bytes, or one
-- that has not ended (the host closes after answering) within TIMEOUT_MS
-- (MSRT_CTL_TIMEOUT_MS overrides it), is an error, so a stuck or hostile
-- peer cannot make the client wait or grow without end.
M.MAX_ANSWER = 16 * 1024 * 1024
M.TIMEOUT_MS = tonumber(os.getenv("MSRT_CTL_TIMEOUT_MS")) or 10000

local function bad_usage(msg)
  io.stderr:write("msrt-lua ctl: ", msg, "\n", "usage: msrt-lua ctl SOCKET COMMAND [PATH] (msrt-lua ctl help)\n")
  os.exit(2)
end

--- The client: main(SOCKET, COMMAND [, PATH]) as given on the command line.
function M.main(sock, cmd, path, extra, n, more)
  if sock == "help" or sock == "--help" or sock == "-h" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(M.USAGE)
    return
  end
  if not sock then bad_usage("needs a control socket and a command") end
  if not cmd then bad_usage("needs a command after the socket") end
  local takes = COMMANDS[cmd]
  if takes == nil then bad_usage(("unknown command '%s'"):format(cmd)) end
  if takes == true and not path then bad_usage(cmd .. " needs a child PATH like fleet/workers/c-1") end
  local rest = ""
  if takes == "queue" then -- queue NAME purge | queue NAME peek N
    if not path or not (extra == "purge" and not n or extra == "peek" and tonumber(n)) or more then
      bad_usage("queue needs a NAME and purge, or peek and a number: queue tasks peek 10")
    end
    rest = " " .. extra .. (n and (" " .. n) or "")
  elseif (takes == false and path) or extra then bad_usage(("too many arguments to %s"):format(cmd)) end
  local pipe, failed = uv.new_pipe(false), nil
  local out, size = {}, 0
  local timer = uv.new_timer()
  local function finish(err)
    failed = failed or err
    if not pipe:is_closing() then pipe:close() end
    if not timer:is_closing() then timer:close() end
  end
  timer:start(M.TIMEOUT_MS, 0, function()
    finish(("no complete answer from %s within %d ms"):format(sock, M.TIMEOUT_MS))
  end)
  pipe:connect(sock, function(err)
    if err then return finish(("cannot reach %s: %s"):format(sock, err)) end
    pipe:write(cmd .. (path and (" " .. path) or "") .. rest .. "\n")
    pipe:read_start(function(rerr, chunk)
      if rerr then return finish(rerr) end
      if not chunk then return finish() end
      size = size + #chunk
      if size > M.MAX_ANSWER then
        return finish(("the answer from %s is larger than %d bytes"):format(sock, M.MAX_ANSWER))
      end
      out[#out + 1] = chunk
    end)
  end)
  uv.run()
  if failed then
    io.stderr:write("msrt-lua ctl: " .. failed .. "\n")
    os.exit(1)
  end
  local answer = table.concat(out)
  if answer:find("^error: ") then
    io.stderr:write("msrt-lua ctl: ", answer:sub(8))
    os.exit(1)
  end
  io.stdout:write(answer)
end

return M
