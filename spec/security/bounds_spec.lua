-- Memory is bounded in bytes, not only in messages: a process that never
-- reads its stdin and an actor that never returns from its handler hold at
-- most their byte bound (the profile's stdin_bytes, mailbox_bytes) plus one
-- message, whatever their message bounds allow (1,024 lines and 4,096
-- messages of up to 1 MiB each held 1 GiB and 4 GiB before).
local msrt = require "msrt"
local S = require "spec.support"

local MiB = 1024 * 1024
-- a payload just under max_payload (1 MiB, its string.buffer header included)
local BIG = string.rep("x", MiB - 64)

local function identity(r)
  return r.accepted == r.delivered + r.dropped + r.dead_lettered + r.refused + r.no_responders
end

describe("byte bounds", function()
  it("the profile gives the defaults", function()
    local p = msrt.profile()
    assert.are.equal(64 * MiB, p.mailbox_bytes)
    assert.are.equal(16 * MiB, p.stdin_bytes)
  end)

  it("a process that never reads stdin holds at most stdin_bytes", function()
    S.drive(function()
      local p = assert(msrt.process{ name = "deaf_bytes", cmd = { "/bin/sh", "-c", "exec sleep 1000" },
        subscribe = "bytes.deaf" })
      local m0 = msrt.metrics().router
      for _ = 1, 40 do assert.is_true(msrt.publish("bytes.deaf", BIG)) end
      -- every copy reached the hub (queued, in flight or dropped)
      assert.is_true(S.wait_until(function()
        local st = p:stats()
        return st.stdin_queued + st.stdin_dropped + st.stdin_lines == 40
      end))
      local st = p:stats()
      assert.is_true(st.stdin_queued_bytes <= 16 * MiB + MiB,
        ("%d bytes queued"):format(st.stdin_queued_bytes))
      assert.is_true(st.stdin_queued < 40 and st.stdin_dropped > 0)
      local m1 = msrt.metrics().router
      assert.are.equal(st.stdin_dropped, m1.drop_newest - m0.drop_newest)
      p:stop(100)
      p:wait()
      assert.is_true(S.wait_until(function() return identity(msrt.metrics().router) end))
    end)
  end)

  it("a process's own stdin_bytes bounds its queue; drop_oldest evicts by bytes", function()
    S.drive(function()
      local p = assert(msrt.process{ name = "deaf_small", cmd = { "/bin/sh", "-c", "exec sleep 1000" },
        subscribe = "bytes.small", stdin_bytes = 4 * MiB, overflow = "drop_oldest" })
      for _ = 1, 20 do assert.is_true(msrt.publish("bytes.small", BIG)) end
      assert.is_true(S.wait_until(function()
        local st = p:stats()
        return st.stdin_queued + st.stdin_dropped + st.stdin_lines == 20
      end))
      local st = p:stats()
      assert.is_true(st.stdin_queued_bytes <= 5 * MiB, ("%d bytes queued"):format(st.stdin_queued_bytes))
      assert.is_true(st.stdin_dropped >= 14)
      p:stop(100)
      p:wait()
    end)
  end)

  it("a stalled actor holds at most mailbox_bytes; error refuses past it", function()
    S.drive(function()
      local release = S.collector("bytes.hold")
      local h = assert(S.spawn{ name = "stalled_bytes", subscribe = "bytes.actor", overflow = "error",
        handle = function(ctx, msg)
          if msg.data == "stall" then ctx:request("bytes.hold", 1, { timeout_ms = 60000 }) end
        end })
      assert.is_true(msrt.publish("bytes.actor", "stall"))
      assert.is_true(release.wait(1))
      local sent, refused = 0, 0
      for _ = 1, 100 do
        local ok, err = msrt.publish("bytes.actor", BIG)
        if ok then sent = sent + 1
        else
          assert.are.equal("mailbox_full", err.code)
          refused = refused + 1
        end
      end
      local depth, _, bytes = h:mailbox()
      assert.is_true(bytes <= 64 * MiB + MiB, ("%d bytes queued"):format(bytes))
      assert.are.equal(sent, depth)
      assert.is_true(refused >= 30, ("%d refused"):format(refused))
      for _, m in ipairs(release.msgs) do assert.is_true(msrt.publish(m.reply, true)) end
      assert.is_true(S.wait_until(function() return (h:mailbox()) == 0 end))
      h:stop("normal")
      h:wait()
      release.close()
      assert.is_true(S.wait_until(function() return identity(msrt.metrics().router) end))
    end)
  end)

  it("an actor's own mailbox_bytes is refused when it is not a positive integer", function()
    local h, err = msrt.actor{ name = "bad_bytes", handle = function() end, mailbox_bytes = 0 }
    assert.is_nil(h)
    assert.are.equal("invalid_arg", err.code)
    local p, perr = msrt.process{ name = "bad_bytes", cmd = { "/bin/true" }, stdin_bytes = "1M" }
    assert.is_nil(p)
    assert.are.equal("invalid_arg", perr.code)
  end)
end)
