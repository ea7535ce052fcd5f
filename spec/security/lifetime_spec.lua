-- Children never outlive the host: a SIGKILLed host leaves no process of
-- its fleet (children, their children, grandchildren that called setsid);
-- p:stop() takes a setsid grandchild down with its child; limits that
-- cannot be applied are errors (limits.nproc as root, a setrlimit the
-- kernel refuses), never ignored.
local msrt = require "msrt"
local uv = require "luv"
local S = require "spec.support"

-- "gone": no such process, or a zombie (dead; reaping is its parent's, and
-- where pid 1 does not reap, an orphan's zombie stays)
local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return true end
  local stat = f:read("*l") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") == "Z"
end

local function read_lines(path)
  local out, f = {}, io.open(path)
  if not f then return out end
  for l in f:lines() do out[#out + 1] = l end
  f:close()
  return out
end

-- poll pred every 10 ms (blocking: no hub loop here) up to ms
local function poll(pred, ms)
  for _ = 1, ms / 10 do
    if pred() then return true end
    uv.sleep(10)
  end
  return pred()
end

local function in_cgroup(pid)
  local f = io.open("/proc/" .. pid .. "/cgroup")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return s:find("/msrt%-%d+/c%d+") ~= nil
end

describe("children never outlive the host", function()
  it("SIGKILL of the host leaves no process of its fleet", function()
    local pids = os.tmpname()
    -- three agents, each with a child in its group and a grandchild in a
    -- session of its own; each writes its pids, the host its own
    local script = S.file(([[
      local msrt = require "msrt"
      local F = %q
      for i = 1, 3 do
        assert(msrt.process{ name = "a" .. i, codec = "lines", cmd = { "/bin/sh", "-c",
          "echo $$ >> " .. F .. "; sleep 1000 & echo $! >> " .. F ..
          "; setsid -f sh -c 'echo $$ >> " .. F .. "; exec sleep 1000'; wait" } })
      end
      local f = io.open("/proc/self/stat"); local me = f:read("*l"):match("^%%d+"); f:close()
      f = io.open(F .. ".host", "w"); f:write(me, "\n"); f:close()
    ]]):format(pids))
    local p = io.popen(("%s %s >/dev/null 2>&1 &"):format(S.quote(S.exe), S.quote(script)))
    p:close()
    assert.is_true(poll(function() return #read_lines(pids) == 9 and #read_lines(pids .. ".host") == 1 end, 10000),
      "the fleet did not start")
    local host = read_lines(pids .. ".host")[1]
    local fleet = read_lines(pids)
    for _, pid in ipairs(fleet) do assert.is_false(gone(pid), pid .. " not running") end
    os.execute("kill -9 " .. host)
    assert.is_true(poll(function() return gone(host) end, 5000), "the host survived SIGKILL")
    local ok = poll(function()
      for _, pid in ipairs(fleet) do if not gone(pid) then return false end end
      return true
    end, 5000)
    local left = {}
    for _, pid in ipairs(fleet) do if not gone(pid) then left[#left + 1] = pid end end
    os.execute("kill -9 " .. table.concat(left, " ") .. " 2>/dev/null")
    os.remove(pids)
    os.remove(pids .. ".host")
    os.remove(script)
    assert.is_true(ok, "left running after the host's SIGKILL: " .. table.concat(left, " "))
  end)

  it("a setsid -f grandchild is gone after p:stop()", function()
    local gc_file = os.tmpname()
    S.drive(function()
      local p = assert(msrt.process{ name = "escaper", codec = "lines", cmd = { "/bin/sh", "-c",
        ("setsid -f sh -c 'echo $$ > %s; exec sleep 1000' >/dev/null 2>&1; exec sleep 1000"):format(gc_file) } })
      assert.is_true(S.wait_until(function() return #read_lines(gc_file) == 1 end))
      local gc = read_lines(gc_file)[1]
      if not in_cgroup(p:pid()) then
        os.execute("kill -9 " .. gc)
        p:stop(100)
        p:wait()
        pending("no cgroup v2 for children here (see the WARN line): a setsid grandchild outlives p:stop()")
        return
      end
      p:stop()
      p:wait()
      local ok = S.wait_until(function() return gone(gc) end, 5000)
      if not ok then os.execute("kill -9 " .. gc) end
      assert.is_true(ok, "the setsid grandchild " .. gc .. " outlived p:stop()")
    end)
    os.remove(gc_file)
  end)

  it("a limit setrlimit refuses is an error, not ignored", function()
    -- RLIMIT_NOFILE above fs.nr_open: refused even to root
    local p, err = msrt.process{ name = "toomany", cmd = { "/bin/true" }, limits = { nofile = 2 ^ 40 } }
    assert.is_nil(p)
    assert.are.equal("spawn_failed", err.code)
    assert.matches("Operation not permitted", err.message, 1, true)
  end)

  it("limits.nproc as root is applied by the cgroup, or refused saying why", function()
    local id = io.popen("id -u")
    local root = id:read("*l") == "0"
    id:close()
    if not root then
      pending("not root: RLIMIT_NPROC applies as it is")
      return
    end
    S.drive(function()
      local out = S.collector("agents.forks.out")
      local p, err = msrt.process{ name = "forks", codec = "lines", limits = { nproc = 4 },
        cmd = { "/bin/sh", "-c", "n=0; for i in 1 2 3 4 5 6 7 8; do sleep 5 & n=$((n+1)); done 2>/dev/null; " ..
          "echo $(jobs -p | wc -l); kill $(jobs -p) 2>/dev/null" } }
      if not p then
        assert.are.equal("spawn_failed", err.code)
        assert.matches("limits.nproc cannot be applied", err.message, 1, true)
        return
      end
      assert.is_true(out.wait(1))
      assert.is_true(tonumber(out.msgs[1].data) < 8, "nproc did not limit: " .. tostring(out.msgs[1].data))
      p:wait()
    end)
  end)
end)
