-- The NATS bridge (README "More than one host"): msrt hosts as separate
-- msrt-lua processes joined through Debian's nats-server, started here
-- (spec/nats_server.lua). Request/reply with an _INBOX crossing back and
-- the 503 no-responders status; headers and priority; a queue group with
-- members on three hosts; interest following subscriptions and readiness;
-- no loops; max_payload; a NATS client that is not msrt (the `nats` npm
-- package) publishing to and answering msrt subjects; --check of a bridge
-- file.
local S = require "spec.support"
local N = require "spec.nats_server"
local json = require "dkjson"

local H = require "spec.hosts"
local host, await, finish, prelude = H.start, H.await, H.finish, H.prelude

describe("the NATS bridge across hosts", function()
  local nats
  setup(function() nats = N.start() end)
  teardown(function() if nats then nats:stop() end end)

  -- A script for the `nats` npm client: body runs connected (nc; sc a
  -- StringCodec; nats the package); returns its path.
  local function node_script(body)
    local node_dir = os.getenv("PWD") .. "/node_modules/nats"
    assert(io.open(node_dir .. "/package.json"), "the nats npm package is not installed (scripts/setup runs npm ci)")
    return S.file(([[
const nats = require(%q);
(async () => {
  const nc = await nats.connect({ servers: %q });
  const sc = nats.StringCodec();
]]):format(node_dir, nats.url) .. body .. "})();\n", ".js")
  end

  it("carries a request to another host and its reply back, with headers and priority, and no_responders", function()
    local b = host(prelude(nats.url, ', name = "B", send_asap = true') .. [[
msrt.subscribe("svc.echo", function(m)
  msrt.publish(m.reply, { got = m.data, prio = m.priority, x = m.headers and m.headers.X,
    origin = m.headers and m.headers["Msrt-Origin"] })
end)
assert(br:flush())
print("ready " .. br:info().nats_subs)
msrt.subscribe("test.stop", function() print("stopping") msrt.stop() end)
]])
    assert.are.equal("1", await(b, "ready (%d+)"))
    local a = host(prelude(nats.url, ', name = "A"') .. [[
local d, m = msrt.request("svc.echo", { n = 1, s = "é" }, { timeout_ms = 5000, priority = 2, headers = { X = "y" } })
print("reply " .. json.encode(d))
local d2, e2 = msrt.request("svc.none", "x", { timeout_ms = 5000 })
print("none " .. tostring(d2) .. " " .. e2.code)
for line in require("msrt.ops").metrics_text():gmatch("[^\n]+") do
  if line:find("^msrt_nats_bridge_") then print(line) end
end
msrt.publish("test.stop", true)
br:flush()
msrt.stop()
]])
    local out = finish(a)
    assert.are.same({ got = { n = 1, s = "é" }, prio = 2, x = "y", origin = "A" },
      json.decode(out:match("reply (%b{})")), out)
    assert.matches("none nil no_responders", out)
    -- /metrics: the bridge's state and accounting by class and outcome
    assert.matches('msrt_nats_bridge_connected{bridge="A"} 1', out, 1, true)
    assert.matches('msrt_nats_bridge_messages_total{bridge="A",class="svc",outcome="exported"} 2', out, 1, true)
    assert.matches('msrt_nats_bridge_messages_total{bridge="A",class="_INBOX",outcome="imported"} 2', out, 1, true)
    assert.matches("stopping", finish(b))
  end)

  it("answers a request from a local responder slower than NATS' 503 for it, from the hub and from an actor", function()
    -- the bridge exports the request too (export defaults to ">"); no
    -- other host has interest, and NATS does not echo B its own, so its
    -- 503 comes at once: a 503 ends a request only when every endpoint
    -- that took it has said so. A request only the bridge took still
    -- gets no_responders at once.
    local b = host(prelude(nats.url, ', name = "B"') .. [[
assert(msrt.actor { name = "slow", subscribe = "svc.slow",
  handle = function(ctx, m)
    local t = os.clock() while os.clock() - t < 0.2 do end -- slower than a round trip to NATS
    ctx:reply(m, m.data + 1)
  end })
assert(msrt.actor { name = "asker", subscribe = "svc.ask",
  handle = function(ctx, m)
    local d, e = ctx:request("svc.slow", m.data, { timeout_ms = 10000 })
    ctx:reply(m, { d = d, e = e and e.code })
  end })
assert(br:flush())
local d, e = msrt.request("svc.slow", 1, { timeout_ms = 10000 })
print("hub " .. tostring(d) .. " " .. tostring(e and e.code))
local r, re = msrt.request("svc.ask", 41, { timeout_ms = 20000 })
print("actor " .. tostring(r and r.d) .. " " .. tostring(r and r.e or re and re.code))
local _, e2 = msrt.request("svc.none", 1, { timeout_ms = 60000 })
print("none " .. tostring(e2 and e2.code))
msrt.stop()
]])
    local out = finish(b)
    assert.matches("hub 2 nil", out, 1, true)
    assert.matches("actor 42 nil", out, 1, true)
    assert.matches("none no_responders", out, 1, true)
  end)

  it("counts what one subscription imports in each message's subject class, however its pattern begins", function()
    -- B's "*.x" (its first token a wildcard) takes a.x and b.x; "c.>"
    -- only subjects of class c
    local b = host(prelude(nats.url, ', name = "B"') .. [[
local n = 0
local function got() n = n + 1 if n == 6 then
  local st = br:stats()
  print(("classes %d %d %d"):format(st.a.imported, st.b.imported, st.c.imported))
  msrt.stop()
end end
msrt.subscribe("*.x", got)
msrt.subscribe("c.>", got)
assert(br:flush())
print("ready")
]])
    await(b, "ready")
    local a = host(prelude(nats.url, ', name = "A"') .. [[
for _, s in ipairs { "a.x", "b.x", "a.x", "c.y", "c.z.w", "b.x" } do msrt.publish(s, "m") end
br:flush()
msrt.stop()
]])
    finish(a)
    assert.matches("classes 2 2 2", finish(b), 1, true)
  end)

  it("takes its imports on the hub: a NATS subscription adds no thread, and a block subscriber's backlog still arrives whole", function()
    -- libnats' asynchronous subscriptions have a delivery thread each; the
    -- bridge's (but `_INBOX.`'s) are read on the hub's loop instead
    -- (README "More than one host"). The 300 messages to a 2-message
    -- `block` mailbox wait in libnats while the hub retries, in order.
    local b = host(prelude(nats.url, ', name = "B"') .. [[
local pid = require("luv").os_getpid()
local function threads()
  local p = io.popen("ls /proc/" .. pid .. "/task")
  local n = select(2, p:read("*a"):gsub("%d+", ""))
  p:close()
  return n
end
local before, subs = threads(), br:info().nats_subs
for i = 1, 20 do msrt.subscribe("t" .. i .. ".x", function() end) end
assert(msrt.actor { name = "slow", subscribe = "t.slow", capacity = 2, overflow = "block",
  init = function(ctx) ctx.last = 0 end,
  handle = function(ctx, m)
    if m.data ~= ctx.last + 1 then ctx:publish("t.order", m.data) end
    ctx.last = m.data
    if ctx.last == 300 then ctx:publish("t.done", ctx.last) end
  end })
msrt.subscribe("t.order", function(m) print("out of order " .. m.data) end)
msrt.subscribe("t.done", function() print("done") msrt.stop() end)
assert(br:flush())
print(("subs %d threads %d"):format(br:info().nats_subs - subs, threads() - before))
]])
    assert.are.equal("subs 23 threads 0", await(b, "(subs %d+ threads %-?%d+)"))
    local a = host(prelude(nats.url, ', name = "A", export = { "t.>" }') ..
      'for i = 1, 300 do msrt.publish("t.slow", i) end\nassert(br:flush())\nmsrt.stop()\n')
    finish(a)
    local out = finish(b)
    assert.matches("done", out)
    assert.is_nil(out:find("out of order", 1, true), out)
  end)

  it("gives each message of a queue group with members on three hosts to one of them, spread across all three", function()
    local members = {}
    for i = 1, 3 do
      members[i] = host(prelude(nats.url, (', name = "M%d"'):format(i)) .. [[
local got = {}
msrt.subscribe("work.items", function(m) got[#got + 1] = m.data end, { queue = "workers" })
msrt.subscribe("work.stop", function()
  msrt.after(500, function() print("got " .. json.encode(got)) msrt.stop() end)
end)
assert(br:flush())
print("ready")
]])
    end
    for i = 1, 3 do await(members[i], "ready") end
    local d = host(prelude(nats.url, ', name = "D", export = { "work.>" }') .. [[
for i = 1, 300 do msrt.publish("work.items", i) end
br:flush()
msrt.publish("work.stop", true)
br:flush()
print("sent")
msrt.stop()
]])
    assert.matches("sent", finish(d))
    local seen, per = {}, {}
    for i = 1, 3 do
      local out = finish(members[i])
      local got = json.decode(out:match("got (%b[])") or "null")
      assert.is_table(got, out)
      per[i] = #got
      for _, n in ipairs(got) do
        assert.is_nil(seen[n], "message " .. n .. " delivered twice")
        seen[n] = i
      end
    end
    for n = 1, 300 do assert.is_not_nil(seen[n], "message " .. n .. " lost") end
    -- NATS picks a member at random: each host gets a fair share (a third
    -- is 100; below 50 is a 1-in-10^8 event for a fair pick)
    for i = 1, 3 do assert.is_true(per[i] >= 50, ("host %d got %d of 300"):format(i, per[i])) end
  end)

  it("gives a message published where its queue group has a ready member to that member only, never to another host's too", function()
    local members = {}
    for i = 1, 3 do
      members[i] = host(prelude(nats.url, (', name = "Q%d", export = { "work.>" }'):format(i)) .. [[
local got = {}
msrt.subscribe("work.items", function(m) got[#got + 1] = m.data end, { queue = "workers" })
msrt.subscribe("work.go", function()
  for i = 1, 100 do msrt.publish("work.items", i) end
  br:flush()
end)
msrt.subscribe("work.stop", function()
  msrt.after(500, function()
    local st = br:stats().work or {}
    print("got " .. json.encode(got) .. " served_there " .. (st.served_there or 0))
    msrt.stop()
  end)
end)
assert(br:flush())
print("ready")
]])
    end
    for i = 1, 3 do await(members[i], "ready") end
    local go = host(prelude(nats.url, ', name = "G", export = { "work.>" }') .. [[
msrt.publish("work.go", true)
br:flush()
msrt.sleep(1500)
msrt.publish("work.stop", true)
br:flush()
msrt.stop()
]])
    finish(go)
    -- each host published 1..100 and served them itself: 300 messages, 3
    -- copies of each number, one on each host, none served twice
    local served_there = 0
    for i = 1, 3 do
      local out = finish(members[i])
      local got = json.decode(out:match("got (%b[])") or "null")
      assert.is_table(got, out)
      assert.are.equal(100, #got, out)
      served_there = served_there + tonumber(out:match("served_there (%d+)"))
    end
    -- NATS picked another host's queue subscription for each exported copy
    assert.are.equal(300, served_there)
  end)

  it("withdraws a host's queue group from NATS while its readiness probe fails, and takes work again when it passes", function()
    local w = host(prelude(nats.url, ', name = "W"') .. [[
ready_flag = true
local got = 0
local sup = assert(msrt.supervisor { name = "w", strategy = "one_for_one", children = {
  { id = "worker", health = { readiness = { lua = function() return ready_flag end, interval_ms = 20,
      failure_threshold = 1, success_threshold = 1 } },
    actor = { name = "worker", subscribe = "job.run", queue = "workers",
      handle = function(ctx, msg) ctx:reply(msg, "done") end } } } })
local function subs() br:flush() return br:info().nats_subs end
local function wait_subs(n)
  for _ = 1, 500 do if subs() == n then return true end msrt.sleep(10) end
end
wait_subs(1)
print("ready " .. subs())
msrt.subscribe("ctl.unready", function() ready_flag = false end)
msrt.subscribe("ctl.ready", function() ready_flag = true end)
msrt.subscribe("ctl.stop", function() sup:stop() msrt.stop() end)
]])
    assert.are.equal("1", await(w, "ready (%d+)"))
    local c = host(prelude(nats.url, ', name = "C", export = { "job.>", "ctl.>" }') .. [[
print("a " .. tostring((msrt.request("job.run", 1, { timeout_ms = 3000 }))))
msrt.publish("ctl.unready", true)
-- the probe fails, the group goes: NATS answers no responders
local _, err
for _ = 1, 300 do
  _, err = msrt.request("job.run", 2, { timeout_ms = 3000 })
  if err and err.code == "no_responders" then break end
  msrt.sleep(10)
end
print("b " .. tostring(err and err.code))
msrt.publish("ctl.ready", true)
local d
for _ = 1, 300 do
  d = msrt.request("job.run", 3, { timeout_ms = 3000 })
  if d then break end
  msrt.sleep(10)
end
print("c " .. tostring(d))
msrt.publish("ctl.stop", true)
br:flush()
msrt.stop()
]])
    local out = finish(c)
    assert.matches("a done", out)
    assert.matches("b no_responders", out)
    assert.matches("c done", out)
    finish(w)
  end)

  it("takes a bridge file's import and export changes live (msrt.reload), keeping the old on a bad file", function()
    local dir = S.dir()
    local file = dir .. "/bridge.lua"
    S.write(file, ('return { url = %q, name = "R", import = { "a.>" }, export = {} }\n'):format(nats.url))
    local h = host(([[
io.stdout:setvbuf("line")
local msrt = require "msrt"
msrt.after(40000, function() msrt.stop("bound") end)
local br = assert(msrt.nats(%q))
for _ = 1, 3000 do if br:info().state == "connected" then break end msrt.sleep(10) end
local w = assert(msrt.watch { %q })
msrt.subscribe("a.x", function() end)
msrt.subscribe("b.x", function() end)
local function subs() br:flush() return br:info().nats_subs end
print("before " .. subs())
local function rewrite(text)
  local f = assert(io.open(%q, "w")) f:write(text) f:close()
  return msrt.reload(%q)
end
local ok = rewrite(([=[return { url = "%s", name = "R", import = { "a.>", "b.>" }, export = {} }]=]))
print("reloaded " .. tostring(ok) .. " " .. subs())
local bad, err = rewrite("return { url = 42 }")
print("bad " .. tostring(bad) .. " " .. subs() .. " " .. tostring(err and err.message))
w.close()
br:close()
msrt.stop()
]]):format(file, dir, file, file, nats.url))
    local out = finish(h)
    os.execute("rm -rf " .. S.quote(dir))
    assert.matches("before 1", out)
    assert.matches("reloaded true 2", out)
    assert.matches("bad nil 2 .*'url' must be a string", out)
  end)

  it("joins with msrt-lua --nats URL, and refuses a URL that is not nats://", function()
    local r = S.run({ "--nats", nats.url, "-e", [[
local msrt = require "msrt"
local b = require("msrt.nats").list()[1]
for _ = 1, 200 do if b:info().state == "connected" then break end msrt.sleep(10) end
print("state " .. b:info().state .. " " .. b:info().url)
msrt.stop()
]] })
    assert.are.equal(0, r.code, r.err)
    assert.matches("state connected " .. nats.url:gsub("%p", "%%%0"), r.out)
    r = S.run({ "--nats", "http://127.0.0.1:1", "-e", "print('ran')" })
    assert.are_not.equal(0, r.code)
    assert.matches("is not a nats:// URL", r.err)
  end)

  it("is counted in /metrics after package.loaded forgot msrt.nats (busted's insulation: lua/msrt/held.lua)", function()
    local r = S.run({ "-e", ([[
local msrt = require "msrt"
local b = assert(msrt.nats{ url = %q, name = "kept" })
package.loaded["msrt.nats"] = nil -- what busted's insulation does between files
assert(b:flush())
print(require("msrt.ops").metrics_text():match("msrt_nats_bridge_connected{[^\n]*"))
msrt.stop()
]]):format(nats.url) })
    assert.are.equal(0, r.code, r.err)
    assert.matches('msrt_nats_bridge_connected{bridge="kept"} 1', r.out, 1, true)
  end)

  it("refuses more import patterns than it takes, naming the limit, rather than dropping the rest", function()
    local r = S.run({ "-e", ([[
local pats = {}
for i = 1, 64 do pats[i] = "p" .. i .. ".>" end
local b, err = require("msrt").nats{ url = %q, import = pats }
print(b, err and err.code, err and err.message)
]]):format(nats.url) })
    assert.matches("nil%s+invalid_arg%s+nats: at most 63 import or export patterns", r.out, 1)
  end)

  it("asks NATS for what local subscriptions want, withdraws a queue group with no ready member, and never loops", function()
    local h = host(prelude(nats.url, ', name = "I", import = { "work.>" }') .. [[
local function subs() br:flush() return br:info().nats_subs end
local out = {}
out[#out + 1] = subs()                                   -- nothing wanted yet
local plain = msrt.subscribe("work.a", function() end)
local other = msrt.subscribe("jobs.a", function() end)   -- not imported
out[#out + 1] = subs()
local q1 = msrt.subscribe("work.q", function() end, { queue = "g" })
local q2 = msrt.subscribe("work.q", function() end, { queue = "g" })
out[#out + 1] = subs()                                   -- one key for both members
local core = require "msrt.core"
core.set_ready(q1.id, false)
out[#out + 1] = subs()
core.set_ready(q2.id, false)
out[#out + 1] = subs()                                   -- no ready member: withdrawn
core.set_ready(q2.id, true)
out[#out + 1] = subs()
plain.unsubscribe() q1.unsubscribe() q2.unsubscribe() other.unsubscribe()
out[#out + 1] = subs()
print("subs " .. table.concat(out, " "))
-- a message imported is not exported again
local n = 0
msrt.subscribe("work.echo", function() n = n + 1 end)
br:flush()
print("listening")
msrt.subscribe("work.stop", function()
  msrt.after(300, function()
    local st = br:stats().work or {}
    print("work " .. n .. " handed " .. (st.handed or 0) .. " imported " .. (st.imported or 0))
    msrt.stop()
  end)
end)
]])
    assert.are.equal("0 1 2 2 1 2 0", await(h, "subs ([%d ]+)\n"))
    await(h, "listening")
    local p = host(prelude(nats.url, ', name = "P", export = { "work.>" }') .. [[
msrt.publish("work.echo", 1)
msrt.publish("work.stop", true)
br:flush()
msrt.stop()
]])
    finish(p)
    assert.matches("work 1 handed 0 imported 2", finish(h))
  end)

  it("lets a NATS client that is not msrt publish to an msrt subject and answer an msrt request", function()
    local client = node_script([[
  const sub = nc.subscribe("tool.upper");
  (async () => { for await (const m of sub) m.respond(sc.encode(sc.decode(m.data).toUpperCase())); })();
  await nc.flush();
  console.log("ready");
  await new Promise(r => setTimeout(r, 300));
  nc.publish("news.plain", sc.encode("hello"));
  const h = nats.headers();
  h.set("Content-Type", "application/json");
  nc.publish("news.json", sc.encode('{"a":[1,2]}'), { headers: h });
  await nc.flush();
  await new Promise(r => setTimeout(r, 3000));
  await nc.close();
]])
    local m = host(prelude(nats.url, ', name = "M"') .. [[
local got = {}
msrt.subscribe("news.*", function(m) got[m.subject] = m.data end)
br:flush()
print("ready")
for _ = 1, 400 do if got["news.json"] and got["news.plain"] then break end msrt.sleep(10) end
print("news " .. json.encode(got))
local d, err = msrt.request("tool.upper", "shout", { timeout_ms = 5000 })
print("upper " .. tostring(d or err.code))
msrt.stop()
]])
    await(m, "ready")
    local p = io.popen("timeout 20 node " .. S.quote(client) .. " 2>&1")
    local out = finish(m)
    local nout = p:read("*a")
    p:close()
    os.remove(client)
    assert.are.same({ ["news.plain"] = "hello", ["news.json"] = { a = { 1, 2 } } },
      json.decode(out:match("news (%b{})") or "null"), out .. nout)
    assert.matches("upper SHOUT", out)
  end)

  it("sends a message that needs no header as a plain PUB, the rest with Msrt-Origin, and never hears its own back", function()
    -- the client reports each message's headers as NATS carried them, and
    -- once it has them all publishes loop.x itself: its copy reaching the
    -- host proves the host's own copies had their chance to come back
    local client = node_script([[
  const seen = {};
  const sub = nc.subscribe(">");
  await nc.flush();
  nc.publish("ctl.ready", sc.encode("1"));
  for await (const m of sub) {
    if (m.subject === "loop.x" && sc.decode(m.data) === "node") continue;
    if (!m.subject.startsWith("wire.") && m.subject !== "loop.x") continue;
    const h = m.headers ? Object.fromEntries([...m.headers.keys()].map(k => [k, m.headers.get(k)])) : "none";
    seen[m.subject + "." + sc.decode(m.data)] = h;
    if (Object.keys(seen).length === 5) break;
  }
  console.log("seen " + JSON.stringify(seen));
  nc.publish("loop.x", sc.encode("node"));
  await nc.flush();
  await nc.close();
]])
    local w = host(prelude(nats.url, ', name = "W", import = { "loop.>", "ctl.>" }, export = { "wire.>", "loop.>" }') .. [[
local got, ready = {}, false
msrt.subscribe("loop.x", function(m) got[#got + 1] = m.data end)
msrt.subscribe("ctl.ready", function() ready = true end)
assert(br:flush())
print("listening")
for _ = 1, 2000 do if ready then break end msrt.sleep(10) end
msrt.publish("wire.plain", "s")
msrt.publish("wire.hdr", "s", { headers = { X = "y" } })
msrt.publish("wire.prio", "s", { priority = 2 })
msrt.publish("wire.json", { a = 1 })
msrt.publish("loop.x", "own")
for _ = 1, 1000 do if got[#got] == "node" then break end msrt.sleep(10) end
print("loop " .. table.concat(got, " ") .. " loops " .. br:info().loops)
msrt.stop()
]])
    await(w, "listening")
    local p = io.popen("timeout 30 node " .. S.quote(client) .. " 2>&1")
    local nout = p:read("*a")
    local out = finish(w)
    p:close()
    os.remove(client)
    local seen = json.decode(nout:match("seen (%b{})") or "null")
    assert.are.same({
      ["wire.plain.s"] = "none", ["loop.x.own"] = "none",
      ["wire.hdr.s"] = { ["Msrt-Origin"] = "W", X = "y" },
      ["wire.prio.s"] = { ["Msrt-Origin"] = "W", ["Msrt-Priority"] = "2" },
      ["wire.json.{\"a\":1}"] = { ["Msrt-Origin"] = "W", ["Content-Type"] = "application/json" },
    }, seen, out .. nout)
    assert.matches("loop own node loops 0", out, 1, true)
  end)
end)

describe("a bridge file", function()
  it("is --check-able: a bad field is named, a good file passes", function()
    local good = S.file('return { url = "nats://127.0.0.1:4222", import = { "work.>" }, export = { "work.>" } }\n')
    local bad = S.file('return { url = "nats://127.0.0.1:4222", import = { "work.>" }, exports = { "x" } }\n')
    local r = S.run({ "--check", good })
    assert.are.equal(0, r.code, r.err)
    r = S.run({ "--check", bad })
    assert.are.equal(1, r.code)
    assert.matches("unknown field 'exports'", r.err)
    os.remove(good)
    os.remove(bad)
  end)

  it("refuses a configuration without a server, clearly", function()
    local r = S.run({ "-e", [[local b, err = require("msrt").nats{ import = {">"} } print(b, err.code, err.message)]] })
    assert.matches("nil%s+bad_config%s+msrt.nats: 'url' or 'servers' is required", r.out)
  end)
end)
