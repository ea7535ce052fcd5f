-- Authorisation as NATS does it (README "Authorisation"): an auth policy
-- file of users or tokens with publish/subscribe allow and deny lists,
-- checked by --check, applied by msrt.listen, reloaded live (a connection
-- keeps only what it is still allowed), and the nats npm client seeing
-- NATS' own errors.
local S = require "spec.support"
local msrt = require "msrt"

assert(msrt.start())

local C = require "spec.nats_clients.clients"
local raw = C.raw
local POLICY, dir_with = C.AUTH_POLICY, C.auth_dir

describe("an auth policy file", function()
  it("passes --check, and a bad one fails with file:line and the user", function()
    local _, good = dir_with(POLICY)
    local r = S.run({ "--check", good })
    assert.are.equal(0, r.code, r.err)
    local _, bad = dir_with([[
return {
  users = {
    { user = "ann", password = "pw" },
    { user = "bob", password = "pw",
      permissions = { publish = { allow = { "a..b" } } } },
  },
}
]])
    r = S.run({ "--check", bad })
    assert.are.equal(1, r.code)
    assert.matches("auth.lua:4: user 2: permissions.publish.allow%[1%] \"a..b\"", r.err)
    local _, nouser = dir_with("return { users = { { password = 'x' } } }")
    r = S.run({ "--check", nouser })
    assert.are.equal(1, r.code)
    assert.matches("user 1: needs user and password, or token", r.err)
  end)

  it("lets the nats npm client in with credentials and refuses what is denied, in NATS' words", function()
    C.drive(function()
      local _, path = dir_with(POLICY)
      local l = assert(C.listen { nats = "127.0.0.1:0", auth = path })
      local checks, out = C.node(l:port(), "auth")
      C.expect(checks, out, { "bad_password", "credentials", "allowed", "denied_publish", "done" })
      l:close()
    end, 60000)
  end)

  -- eve may subscribe to a.> and b.> but a.secret is denied to her
  local DENY = [[
return {
  users = {
    { user = "eve", password = "pw",
      permissions = { subscribe = { allow = { "a.>", "b.>" }, deny = { "a.secret" } } } },
  },
}
]]

  it("keeps a denied subject from a wider wildcard subscription, as nats-server does (the nats npm client)", function()
    C.drive(function()
      local _, path = dir_with(DENY)
      local l = assert(C.listen { nats = "127.0.0.1:0", auth = path })
      local checks, out = C.node(l:port(), "deny_wildcard")
      C.expect(checks, out, { "deny_wildcard", "done" })
      l:close()
    end, 60000)
  end)

  it("filters a kept wildcard subscription by the deny list a reload brings, and stops when it goes", function()
    C.drive(function()
      local dir, path = dir_with(DENY)
      local w = assert(msrt.watch { dir })
      local l = assert(C.listen { nats = "127.0.0.1:0", auth = path })
      local c = raw(l:port())
      c.send('CONNECT {"user":"eve","pass":"pw"}\r\nSUB b.> 1\r\nPING\r\n')
      assert.truthy(c.wait_for("PONG"))
      local function round(n)
        -- one subscription's messages come in order: the marker after
        -- b.secret proves b.secret had its chance
        assert.is_true(msrt.publish("b.secret", "s" .. n))
        assert.is_true(msrt.publish("b.public", "p" .. n))
        return c.wait_for("MSG b.public 1 2\r\np" .. n, true)
      end
      assert.matches("MSG b.secret 1 2\r\ns1", assert(round(1)), 1, true)
      S.write(path, (DENY:gsub('deny = { "a.secret" }', 'deny = { "a.secret", "b.secret" }')))
      assert.is_true(msrt.reload(path))
      assert.is_nil(assert(round(2)):find("s2", 1, true))
      S.write(path, DENY) -- the deny goes, and with it what was cached
      assert.is_true(msrt.reload(path))
      assert.matches("MSG b.secret 1 2\r\ns3", assert(round(3)), 1, true)
      c.close()
      w.close()
      l:close()
    end)
  end)

  it("accepts a non-loopback address once it has an auth policy", function()
    C.drive(function()
      local _, path = dir_with(POLICY)
      local l = assert(C.listen { nats = "0.0.0.0:0", auth = path })
      assert.is_true(l:port() > 0)
      l:close()
    end)
  end)

  it("is reloaded live: a connection keeps only what it is still allowed", function()
    C.drive(function()
      local dir, path = dir_with(POLICY)
      local w = assert(msrt.watch { dir })
      local l = assert(C.listen { nats = "127.0.0.1:0", auth = path })
      local c = raw(l:port())
      c.send('CONNECT {"user":"ann","pass":"pw"}\r\nSUB news.> 1\r\nSUB _INBOX.> 2\r\nPING\r\n')
      assert.truthy(c.wait_for("PONG"))
      c.send("PUB admin.reset 0\r\n\r\n")
      assert.truthy(c.wait_for([[-ERR 'Permissions Violation for Publish to "admin.reset"']], true))
      local t = raw(l:port())
      t.send('CONNECT {"auth_token":"s3cret"}\r\nPING\r\n')
      assert.truthy(t.wait_for("PONG"))
      S.write(path, (POLICY:gsub('subscribe = { allow = { "news.>", "_INBOX.>" } }',
        'subscribe = { allow = { "_INBOX.>" } }'):gsub('{ token = "s3cret" },', '')))
      assert.is_true(msrt.reload(path))
      assert.truthy(c.wait_for([[-ERR 'Permissions Violation for Subscription to "news.>"']], true))
      assert.truthy(t.wait_for("-ERR 'Authorization Violation'", true))
      assert.is_true(S.wait_until(function() return t.eof end, 5000))
      -- ann's inbox subscription stays: a message there still arrives
      assert.is_true(msrt.publish("_INBOX.x", "still"))
      assert.truthy(c.wait_for("MSG _INBOX.x 2 5\r\nstill", true))
      -- a broken file changes nothing
      S.write(path, "return { users = { { user = 1 } } }")
      assert.is_nil(msrt.reload(path))
      c.send("PING\r\n")
      assert.truthy(c.wait_for("PONG\r\n.*PONG\r\n"))
      c.close()
      t.close()
      w.close()
      l:close()
    end)
  end)
end)
