--- `msrt-lua ctl SOCKET COMMAND`: send one command (status, tree, metrics,
-- reload, stop) to a running host's control socket (msrt-lua --ctl) and
-- print the answer. Exit status 0, 1 when the host cannot be reached, 2
-- for bad usage.
-- @module msrt.ctl
local uv = require "luv"

local M = {}

local COMMANDS = { status = true, tree = true, metrics = true, reload = true, stop = true }

function M.main(sock, cmd)
  if not sock or not COMMANDS[cmd or ""] then
    io.stderr:write("usage: msrt-lua ctl SOCKET status|tree|metrics|reload|stop\n")
    os.exit(2)
  end
  local pipe, failed = uv.new_pipe(false), nil
  local out = {}
  pipe:connect(sock, function(err)
    if err then
      failed = ("cannot reach %s: %s"):format(sock, err)
      pipe:close()
      return
    end
    pipe:write(cmd .. "\n")
    pipe:read_start(function(rerr, chunk)
      if rerr then failed = rerr end
      if chunk then out[#out + 1] = chunk return end
      pipe:close()
    end)
  end)
  uv.run()
  if failed then
    io.stderr:write("msrt-lua ctl: " .. failed .. "\n")
    os.exit(1)
  end
  io.stdout:write(table.concat(out))
end

return M
