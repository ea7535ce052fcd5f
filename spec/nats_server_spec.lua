-- spec/nats_server.lua, the helper every multi-host spec starts Debian's
-- nats-server with: a single server and a 3-node cluster on loopback,
-- ready when started (a client gets INFO), routes formed, a node killed,
-- every node stopped at the end and when the body fails.
local N = require "spec.nats_server"

-- The first line a client reads from url's server (its INFO), or "".
local function info(port)
  local p = io.popen(("timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; head -n 1 <&3' 2>/dev/null"):format(port))
  local line = p:read("*l") or ""
  p:close()
  return line
end

local function alive(pid) return require("spec.support").alive(pid) end

describe("spec.nats_server", function()
  it("starts one server on a loopback port, ready at once, and stops it", function()
    local s = N.start()
    assert.matches("^nats://127%.0%.0%.1:%d+$", s.url)
    assert.matches("^INFO {", info(s.nodes[1].port))
    local pid, dir = s.nodes[1].pid, s.dir
    s:stop()
    assert.is_false(alive(pid))
    assert.is_nil(io.open(dir .. "/n1.log"))
    s:stop() -- idempotent
  end)

  it("starts a 3-node cluster with routes between every node", function()
    N.with({ nodes = 3, max_payload = 4096 }, function(c)
      assert.are.equal(3, #c.urls)
      for i, node in ipairs(c.nodes) do
        local line = info(node.port)
        assert.matches('"max_payload":4096', line)
        assert.matches('"connect_urls"', line, "node " .. i .. " knows no cluster peers")
      end
      c:kill(2)
      assert.is_false(alive(c.nodes[2].pid))
      assert.matches("^INFO {", info(c.nodes[1].port))
    end)
  end)

  it("stops every node when the body fails", function()
    local pids
    local ok, err = pcall(N.with, { nodes = 2 }, function(c)
      pids = { c.nodes[1].pid, c.nodes[2].pid }
      error("body failed")
    end)
    assert.is_false(ok)
    assert.matches("body failed", err)
    for _, pid in ipairs(pids) do assert.is_false(alive(pid)) end
  end)
end)
