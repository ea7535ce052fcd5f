--- NATS clients for the specs of the network face (nats_listen_spec.lua,
-- nats_auth_spec.lua, spec/security/): from a driven coroutine (S.drive).
local S = require "spec.support"
local msrt = require "msrt"
local uv = require "luv"

local M = {}

--- A raw TCP client speaking protocol lines: c.send(text),
-- c.wait_for(pattern, plain, within_ms) -> the text read so far once it
-- matches (false after within_ms, default 5000, or at EOF without it),
-- c.eof, c.close().
function M.raw(port)
  local c, buf = { tcp = uv.new_tcp() }, ""
  local co = coroutine.running()
  c.tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    c.tcp:read_start(function(_, chunk)
      if chunk then buf = buf .. chunk else c.eof = true end
    end)
    coroutine.resume(co)
  end)
  coroutine.yield()
  function c.send(text) c.tcp:write(text) end
  function c.wait_for(pat, plain, within_ms)
    S.wait_until(function() return buf:find(pat, 1, plain) ~= nil or c.eof end,
      within_ms or 5000)
    return buf:find(pat, 1, plain) ~= nil and buf
  end
  function c.text() return buf end
  function c.close() if not c.tcp:is_closing() then c.tcp:close() end end
  return c
end

--- Run spec/nats_clients/node_client.js's scenario against port (killed
-- after 30 s); transport "ws": with nats.ws over WebSocket. Returns its
-- checks by name ({ok, line}) and its output.
function M.node(port, scenario, transport)
  local out, co, done = "", coroutine.running(), false
  local stdout = uv.new_pipe()
  local args = { "spec/nats_clients/node_client.js", tostring(port), scenario }
  if transport == "ws" then
    table.insert(args, 1, "--no-warnings")
    table.insert(args, 1, "--experimental-websocket")
    args[#args + 1] = "ws"
  end
  local h = assert(uv.spawn("node", { args = args,
    stdio = { nil, stdout, 2 } }, function()
    done = true
    if co then coroutine.resume(co) end
  end), "node could not be started")
  stdout:read_start(function(_, chunk) if chunk then out = out .. chunk else stdout:close() end end)
  local t = msrt.after(30000, function() if not done then h:kill("sigkill") end end)
  if not done then coroutine.yield() end
  co = nil
  t:stop()
  h:close()
  S.wait_until(function() return stdout:is_closing() end, 2000)
  local checks = {}
  for line in out:gmatch("[^\n]+") do
    local name, ok = line:match('"check":"([^"]+)","ok":(%a+)')
    if name then checks[name] = { ok = ok == "true", line = line } end
  end
  return checks, out
end

local open = {}

--- msrt.listen(spec) that C.drive closes however the body ends (a
-- listener is not a luv handle: S.drive would not see it left open).
function M.listen(spec)
  local l, err = msrt.listen(spec)
  if l then open[#open + 1] = l end
  return l, err
end

--- S.drive(body, limit_ms), closing what C.listen opened when the body
-- ends, failing or not.
function M.drive(body, limit_ms)
  return S.drive(function()
    local ok, err = xpcall(body, debug.traceback)
    for _, l in ipairs(open) do l:close() end
    open = {}
    if not ok then error(err, 0) end
  end, limit_ms)
end

--- What the basic scenario talks to, on this host: the actor "upper"
-- (svc.upper), a process echoing requests (svc.proc), and a hub
-- subscription answering ask.lua with a Lua table and a string. From a
-- driven coroutine; returns a function that stops them.
function M.basic_fleet()
  local actor = assert(S.spawn { name = "upper", subscribe = "svc.upper",
    handle = function(ctx, msg) ctx:reply(msg, msg.data:upper()) end })
  -- the process responder is a supervised child
  local sup = assert(msrt.supervisor { name = "nats_spec_sup", strategy = "one_for_one",
    children = { { id = "echo_proc", process = { subscribe = "svc.proc",
      cmd = { "sed", "-u", [[s/^{"subject":"[^"]*","reply":"\([^"]*\)","data":\(.*\)}$/{"subject":"\1","data":\2}/]] } } } } })
  local asked = assert(msrt.subscribe("ask.lua", function()
    msrt.publish("from.lua.table", { n = 1 })
    msrt.publish("from.lua.string", "plain bytes")
  end))
  return function()
    asked:unsubscribe()
    sup:stop()
    sup:wait()
    return actor
  end
end

M.BASIC = { "connect", "star", "full", "queue", "actor_reply", "process_reply",
  "headers", "no_responders", "big", "lua_values", "done" }

--- The auth policy the "auth" scenario expects: ann/pw may publish and
-- subscribe news.> (and _INBOX.>), not admin.>; a token user.
M.AUTH_POLICY = [[
return {
  users = {
    { user = "ann", password = "pw",
      permissions = {
        publish = { allow = { "news.>", "_INBOX.>" }, deny = { "admin.>" } },
        subscribe = { allow = { "news.>", "_INBOX.>" } },
      },
      max_connections = 4 },
    { token = "s3cret" },
  },
}
]]

--- A fresh directory holding auth.lua with text: dir, the file's path.
function M.auth_dir(text)
  local dir = S.dir()
  return dir, S.write(dir .. "/auth.lua", text)
end

--- Assert that every named check came and passed.
function M.expect(checks, out, names)
  for _, n in ipairs(names) do
    assert(checks[n], ("no result for %s in:\n%s"):format(n, out))
    assert(checks[n].ok, checks[n].line)
  end
end

return M
