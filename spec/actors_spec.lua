-- Lua actors on worker threads (docs/architecture.md "Threads and the path of a
-- message").
--
-- Most specs drive the hub loop inside the `it` block: `drive(body)`
-- (S.drive, spec/support.lua) runs body as a hub coroutine (so
-- msrt.request and blocked publishes can yield), stops every actor the
-- spec spawned when body ends, and returns when the loop has nothing left.
-- The specs that need a profile of their own (2 workers for the flood, a
-- short shutdown timeout) run a child msrt-lua.
--
-- Actor functions run in their own Lua state and may not capture locals:
-- every function given to msrt.actor below uses only its arguments and
-- globals.
local S = require "spec.support"
local msrt = require "msrt"
local ffi = require "ffi"

-- Two workers when this file starts the runtime (if an earlier spec file
-- already started it, the figures it started with stay; nothing below
-- depends on the worker count except where it reads msrt.metrics()).
msrt.start { profile = { workers = 2 } }

local drive, spawn, wait_until, collector = S.drive, S.spawn, S.wait_until, S.collector

local function metrics() return msrt.metrics() end

-- The text of a drop notice (its data may be a string or a table).
local function note_text(data)
  if type(data) ~= "table" then return tostring(data) end
  local parts = {}
  for k, v in pairs(data) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
  table.sort(parts)
  return table.concat(parts, " ")
end

-- A directory of actor modules on package.path: modules{name = source}.
-- Returns a function that removes them and restores package.path.
local function modules(files)
  local dir = os.tmpname()
  os.remove(dir)
  local made = os.execute("mkdir " .. S.quote(dir))
  assert(made == 0 or made == true, "cannot make " .. dir)
  for name, source in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
    f:write(source)
    f:close()
  end
  local saved = package.path
  package.path = dir .. "/?.lua;" .. saved
  return function()
    package.path = saved
    for name in pairs(files) do os.remove(dir .. "/" .. name .. ".lua") end
    os.remove(dir)
  end
end

-- A mailbox that does not drain until the spec says so: the actor's
-- first message ("gate") makes it ctx:request args.gate and wait for the
-- reply (only its sys lane is served meanwhile); every other message is
-- kept, and {op="report"} (send it once the mailbox is empty) is answered
-- with the list kept.
local function gated(name, subject, capacity, overflow)
  local gate = collector("t.gate." .. name)
  local h = assert(spawn {
    name = name, subscribe = subject, capacity = capacity, overflow = overflow,
    args = { gate = "t.gate." .. name },
    init = function(ctx) ctx.got = {} end,
    handle = function(ctx, msg)
      if msg.data == "gate" then
        local ok, err = ctx:request(ctx.args.gate, ctx.id, { timeout_ms = 60000 })
        if not ok then error("gate: " .. tostring(err)) end
      elseif type(msg.data) == "table" and msg.data.op == "report" then
        ctx:reply(msg, ctx.got)
      else
        ctx.got[#ctx.got + 1] = msg.data
      end
    end,
  })
  assert(msrt.publish(subject, "gate"))
  assert(gate.wait(1), "the gated actor did not ask for its gate")
  local g = { handle = h }
  -- Let the actor consume again.
  function g.open()
    assert(msrt.publish(gate.msgs[1].reply, true))
    gate.close()
  end
  -- What it kept, asked once its mailbox is empty.
  function g.report()
    assert(wait_until(function() return (h:mailbox()) == 0 end), "the mailbox never drained")
    local got, err = msrt.request(subject, { op = "report" }, { timeout_ms = 10000 })
    assert(got, tostring(err))
    return got
  end
  return g
end

-- A child msrt-lua running script (with args), bounded by an outer
-- timeout so a hang shows as status 124 (or 137 after SIGKILL: msrt-lua
-- takes the first SIGTERM as a graceful stop) instead of a stuck suite.
local function child(script, args)
  local path = S.file(script)
  local argv = {}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = path
  local r = S.run(argv, { env = "timeout -k 5 60" })
  os.remove(path)
  return r
end

describe("msrt.actor", function()
  it("refuses an actor function with upvalues, naming them", function()
    local secret, other = 42, "x"
    local h, err = msrt.actor { name = "t_upv", handle = function() return secret, other end }
    assert.is_nil(h)
    assert.are.equal("invalid_arg", err.code)
    assert.matches("handle has 2 upvalue%(s%)", err.message)
    assert.matches("secret", err.message)
    assert.matches("other", err.message)
    assert.matches("cannot capture locals", tostring(err))
    h, err = msrt.actor { name = "t_upv", handle = function() end, init = function() return secret end }
    assert.is_nil(h)
    assert.matches("^init has 1 upvalue", err.message)
    h, err = msrt.actor { name = "t_upv", handle = function() end, terminate = function() return other end }
    assert.is_nil(h)
    assert.matches("^terminate has 1 upvalue", err.message)
  end)

  it("returns nil, err for a bad spec", function()
    local function nop() end
    local cases = {
      { { name = "t_bad" }, "invalid_arg", "module name or a handle function" },
      { { handle = nop }, "invalid_arg", "needs a name" },
      { { name = "t_bad", handle = nop, overflow = "sometimes" }, "invalid_arg", "overflow must be" },
      { { name = "t_bad", handle = nop, capacity = 0 }, "invalid_arg", "capacity" },
      { { name = "t_bad", handle = nop, capacity = -3 }, "invalid_arg", "capacity" },
      { { name = "t_bad", handle = nop, capacity = 2.5 }, "invalid_arg", "capacity" },
      { { name = "t_bad", handle = nop, capacity = "10" }, "invalid_arg", "capacity" },
      { { name = "t_bad", handle = nop, instances = 0 }, "invalid_arg", "instances" },
      { { name = "t_bad", handle = "not a function" }, "invalid_arg", "handle" },
      { { name = "t_bad", handle = nop, init = 3 }, "invalid_arg", "init must be a function" },
      { { name = "t.bad", handle = nop }, "invalid_arg", "one subject token" },
      { { name = "", handle = nop }, "invalid_arg", "1..63 characters" },
      { { name = "t_bad", module = "no.such.actor_module" }, "not_found", "no.such.actor_module" },
      { { name = "t_bad", handle = nop, args = { f = nop } }, "invalid_arg", "args cannot be sent" },
    }
    local cleanup = modules { t_syntax_mod = "return { handle = function( end }" }
    cases[#cases + 1] = { { name = "t_bad", module = "t_syntax_mod" }, "syntax", "t_syntax_mod.lua:1:" }
    local before = metrics().actors
    finally(cleanup)
    for i, c in ipairs(cases) do
      local h, err = msrt.actor(c[1])
      assert.is_nil(h, "case " .. i)
      assert.is_table(err, "case " .. i)
      assert.are.equal(c[2], err.code, "case " .. i)
      assert.matches(c[3], err.message, 1, true, "case " .. i)
    end
    assert.are.equal(before, metrics().actors)
    assert.has_error(function() msrt.actor("echo") end, "bad argument #1 to 'actor' (spec table expected)")
  end)
end)

describe("messages between actors and the hub", function()
  it("reach an actor made from a module, with its args and terminate", function()
    local cleanup = modules { t_echo_mod = [[
      local M = {}
      function M.init(ctx, args) ctx.greeting = args.greeting end
      function M.handle(ctx, msg) ctx:reply(msg, { ctx.greeting, msg.data, ctx.name }) end
      function M.terminate(ctx, reason) ctx:publish("t.mod.term", { ctx.id, reason }) end
      return M
    ]] }
    finally(cleanup)
    drive(function()
      local terms = collector("t.mod.term")
      local h = assert(spawn { name = "t_mod", module = "t_echo_mod", subscribe = "t.mod",
        queue = "mods", instances = 2, args = { greeting = "hello" } })
      for i = 1, 10 do
        local got = assert(msrt.request("t.mod", i, { timeout_ms = 10000 }))
        assert.are.same({ "hello", i, "t_mod" }, got)
      end
      h:stop()
      h:wait()
      assert.is_true(terms.wait(2))
      local ids = {}
      for _, m in ipairs(terms.msgs) do
        assert.are.equal("normal", m.data[2])
        ids[#ids + 1] = m.data[1]
      end
      table.sort(ids)
      assert.are.same(h.exits[1].id < h.exits[2].id and { h.exits[1].id, h.exits[2].id }
        or { h.exits[2].id, h.exits[1].id }, ids)
      terms.close()
    end)
  end)

  it("carry subject, reply, data, priority and id; ctx has name and id", function()
    drive(function()
      local h = assert(spawn {
        name = "t_fields", subscribe = { "t.fields", "t.fields.*" },
        handle = function(ctx, msg)
          if msg.reply then
            ctx:reply(msg, { subject = msg.subject, reply = msg.reply, data = msg.data,
              priority = msg.priority, id = msg.id, name = ctx.name, ctx_id = ctx.id,
              dtype = type(msg.data) })
          else
            ctx:publish("t.fields_seen", { subject = msg.subject, reply = msg.reply,
              data = msg.data, priority = msg.priority, id = msg.id })
          end
        end,
      })
      local actor_id = h:ids()[1]
      assert.is_number(actor_id)
      local values = {
        { nested = { list = { 1, 2, 3 }, flag = false, s = "a\0b" }, [1] = "one", [2.5] = true },
        42, -1.25, 2 ^ 53, "a string", "", true, false, {},
        ("x"):rep(10000),
      }
      local ids = {}
      for i, v in ipairs(values) do
        local got, msg = msrt.request("t.fields.v" .. i, v, { timeout_ms = 10000 })
        assert.is_table(got, "value " .. i .. ": " .. tostring(msg))
        assert.are.same(v, got.data, "value " .. i)
        assert.are.equal(type(v), got.dtype)
        assert.are.equal("t.fields.v" .. i, got.subject)
        assert.matches("^_INBOX%.", got.reply)
        assert.are.equal(got.reply, msg.subject) -- the reply came on the inbox
        assert.are.equal(5, got.priority) -- the default
        assert.are.equal("t_fields", got.name)
        assert.are.equal(actor_id, got.ctx_id)
        assert.is_number(got.id)
        assert.is_nil(ids[got.id], "message ids are distinct")
        ids[got.id] = true
      end
      -- nil data, a priority
      local got = assert(msrt.request("t.fields", nil, { priority = 2, timeout_ms = 10000 }))
      assert.is_nil(got.data)
      assert.are.equal("nil", got.dtype)
      assert.are.equal(2, got.priority)
      -- a plain publish: no reply subject, priority as given
      local seen = collector("t.fields_seen")
      assert.is_true(msrt.publish("t.fields.pub", { k = "v" }, { priority = 9 }))
      assert.is_true(seen.wait(1))
      local d = seen.msgs[1].data
      assert.are.same({ k = "v" }, d.data)
      assert.are.equal("t.fields.pub", d.subject)
      assert.is_nil(d.reply)
      assert.are.equal(9, d.priority)
      seen.close()
    end)
  end)

  -- After its first message an actor reads the commonest encodings (a
  -- number, a short string, a boolean) itself and reuses the last
  -- subject's string (actor_ctx.lua's data_of and pop): the values at
  -- their edges, each told apart from its neighbours.
  it("carry every value on the fast path as string.buffer decodes it", function()
    drive(function()
      -- (no upvalues: a handler crosses as bytecode)
      local function describe(v)
        local t = type(v)
        if t == "number" then
          if v ~= v then return "nan" end
          return ("%.17g"):format(v) .. (v == 0 and 1 / v < 0 and "-" or "")
        elseif t == "string" then return #v .. ":" .. v:sub(1, 2) .. v:sub(-1)
        elseif t == "table" then
          local n = 0
          for _ in pairs(v) do n = n + 1 end
          return "table:" .. n .. ":" .. tostring(v[1]) .. ":" .. tostring(v.k)
        end
        return t .. ":" .. tostring(v)
      end
      assert(spawn {
        name = "t_values", subscribe = { "t.values.*" }, args = { describe = string.dump(describe) },
        init = function(ctx, a) ctx.describe = loadstring(a.describe) end,
        handle = function(ctx, msg)
          ctx:publish("t.values_seen", { subject = msg.subject, desc = ctx.describe(msg.data) })
          ctx:publish("t.values_back", msg.data) -- (a number's encoding is written by hand too)
        end,
      })
      local big = {}
      for i = 1, 300 do big[i] = i end -- > 1 KiB encoded: decoded where it lies (bbuf:set)
      big.k = "v"
      local values = {
        "warm-up: the C path", 0, -0.0, 1, -1.5, 2 ^ 53, 2 ^ -1074, 1 / 0, -1 / 0, 0 / 0,
        "", "a", ("s"):rep(191), ("t"):rep(192), ("u"):rep(5000), ("v"):rep(8127), ("w"):rep(8128), "a\0b",
        true, false, msrt.null, { 1, k = "v" }, big, 7, "again",
      }
      local seen, back = collector("t.values_seen"), collector("t.values_back")
      for i, v in ipairs(values) do
        -- subjects repeat and change (t.values.a, a, b, a, ...)
        assert.is_true(msrt.publish(i % 3 == 0 and "t.values.b" or "t.values.a", v))
      end
      -- a NaN string.buffer never makes (all bits set): decode makes it
      -- LuaJIT's one NaN, which a NaN-tagged value must be
      assert.are.equal(1, require("msrt.core").publish("t.values.a", "\7" .. ("\255"):rep(8)))
      assert.is_true(msrt.publish("t.values.a", nil))
      assert.is_true(seen.wait(#values + 2, 10000))
      assert.is_true(back.wait(#values + 2, 10000))
      for i, v in ipairs(values) do
        local d = seen.msgs[i].data
        assert.are.equal(i % 3 == 0 and "t.values.b" or "t.values.a", d.subject, "value " .. i)
        assert.are.equal(describe(v), d.desc, "value " .. i)
        assert.are.equal(describe(v), describe(back.msgs[i].data), "value " .. i .. " back")
      end
      assert.are.equal("nan", seen.msgs[#values + 1].data.desc)
      assert.are.equal("nan", describe(back.msgs[#values + 1].data))
      assert.are.equal("nil:nil", seen.msgs[#values + 2].data.desc)
      assert.is_nil(back.msgs[#values + 2].data)
      seen.close(); back.close()
    end)
  end)


  it("carry headers both ways (hub -> actor -> hub), and refuse bad ones", function()
    drive(function()
      assert(spawn {
        name = "t_headers", subscribe = "t.headers",
        handle = function(ctx, msg)
          local bad_ok, bad_err = ctx:publish("t.headers_back", 1, { headers = { ["a b"] = "x" } })
          ctx:publish("t.headers_back", { seen = msg.headers, bad = bad_ok == nil and bad_err.code },
            { headers = { ["X-From"] = "actor", N = 7 } })
        end,
      })
      local back = collector("t.headers_back")
      assert.is_true(msrt.publish("t.headers", 0, { headers = { ["Trace-Id"] = "abc", Count = 3 } }))
      assert.is_true(msrt.publish("t.headers", 0))
      assert.is_true(back.wait(2))
      local first, second = back.msgs[1], back.msgs[2]
      assert.are.same({ ["Trace-Id"] = "abc", Count = "3" }, first.data.seen)
      assert.are.equal("invalid_arg", first.data.bad)
      assert.are.same({ ["X-From"] = "actor", N = "7" }, first.headers)
      assert.is_nil(second.data.seen) -- no headers: msg.headers is nil
      -- (a name seen valid before is not checked again: its values are)
      for _, bad in ipairs { { ["a:b"] = "x" }, { [""] = "x" }, { ok = "a\r\nb" }, { ok = {} },
          { ok = "a\rb" }, { ok = "a\nb" }, { ok = "a\0b" }, { ["Trace-Id"] = "a\nb" }, { ["a\0b"] = "x" } } do
        local ok, err = msrt.publish("t.headers", 0, { headers = bad })
        assert.is_nil(ok)
        assert.are.equal("invalid_arg", err.code)
      end
      back.close()
    end)
  end)
  -- Regression: a cdata payload as the first message, before the actor
  -- state has loaded the FFI (string.buffer needs it to decode cdata).
  it("carry cdata of plain types (int64, uint64), even as the first message", function()
    drive(function()
      assert(spawn { name = "t_cdata", subscribe = "t.cdata",
        handle = function(ctx, msg) ctx:reply(msg, { data = msg.data, dtype = type(msg.data) }) end })
      local got, err = msrt.request("t.cdata", ffi.new("int64_t", -5), { timeout_ms = 3000 })
      assert.is_table(got, tostring(err))
      assert.are.equal("cdata", got.dtype)
      assert.is_true(got.data == -5LL)
      got, err = msrt.request("t.cdata", ffi.new("uint64_t", 2 ^ 63), { timeout_ms = 3000 })
      assert.is_table(got, tostring(err))
      assert.is_true(got.data == 9223372036854775808ULL)
    end)
  end)

  it("fire ctx:after once and ctx:every until stopped", function()
    drive(function()
      local after = collector("t.timer.after")
      local every = collector("t.timer.every")
      local final = collector("t.timer.final")
      assert(spawn {
        name = "t_timer", subscribe = "t.timer",
        init = function(ctx)
          ctx.n = 0
          ctx:after(10, function(c) c:publish("t.timer.after", c.id) end)
          local ev
          ev = ctx:every(5, function(c)
            c.n = c.n + 1
            c:publish("t.timer.every", c.n)
            if c.n == 3 then
              ev:stop()
              -- if stop did not work, every(5) would fire again meanwhile
              c:after(60, function(c2) c2:publish("t.timer.final", c2.n) end)
            end
          end)
        end,
        handle = function() end,
      })
      assert.is_true(after.wait(1), "ctx:after did not fire")
      assert.is_true(final.wait(1), "ctx:every did not fire three times")
      assert.are.same({ 1, 2, 3 }, every.data())
      assert.are.same({ 3 }, final.data())
      assert.are.equal(1, #after.msgs)
      after.close() every.close() final.close()
    end)
  end)

  -- (lua/msrt/actor_boot.lua: ctx's rarely used functions are built on
  -- first use, from lua/msrt/actor_ctx.lua.)
  it("build the rest of ctx on first use: in init, through a kept stub, never over the actor's own field", function()
    drive(function()
      local done = collector("t.lazy.done")
      assert(spawn { name = "t_lazy_echo", subscribe = "t.lazy.echo",
                     handle = function(ctx, m) ctx:reply(m, m.data .. "!") end })
      assert(spawn {
        name = "t_lazy", subscribe = "t.lazy.go",
        init = function(ctx)
          local request = ctx.request -- the stub, kept before anything loaded the rest
          ctx.log = function() return "mine" end
          -- a bad argument at the first call raises at this line
          local ok, bad = pcall(function() local r = ctx:request("t.lazy.echo", 1, "opts") return r end)
          local data, err = request(ctx, "t.lazy.echo", "hi", { timeout_ms = 10000 })
          ctx.got = { ok = ok, bad = bad, data = data, err = err and err.code }
          assert(ctx:subscribe("t.lazy.more"))
          ctx:after(1, function(c) c:publish("t.lazy.done", "timer") end)
        end,
        handle = function(ctx, m)
          if m.subject == "t.lazy.more" then
            ctx.got.log = ctx:log("info", "kept")
            ctx:publish("t.lazy.done", ctx.got)
          end
        end,
      })
      assert.is_true(done.wait(1), "ctx:after in init did not fire")
      assert.are.equal("timer", done.data()[1])
      assert(msrt.publish("t.lazy.more", 1))
      assert.is_true(done.wait(2), "ctx:subscribe in init did not take")
      local got = done.data()[2]
      assert.is_false(got.ok)
      assert.matches("actors_spec.lua:%d+: bad argument #3 to 'request' %(table expected, got string%)", got.bad)
      assert.are.equal("hi!", got.data, tostring(got.err))
      assert.are.equal("mine", got.log)
      done.close()
    end)
  end)

  -- (src/lua/astate.h: table, io, os, math and bit are opened on first use)
  it("open an actor's libraries on first use: by global or require, the same table", function()
    drive(function()
      local done = collector("t.libs.done")
      assert(spawn {
        name = "t_libs", subscribe = "t.libs.go",
        init = function(ctx)
          local t = {}
          table.insert(t, "a")
          ctx.same = require("table") == table and require("math") == math and package.loaded.table == table
          ctx.text = table.concat(t, ",") .. "," .. math.floor(2.5) .. "," .. bit.band(6, 3) .. "," .. type(os.time()) .. "," .. type(io.write)
        end,
        handle = function(ctx) ctx:publish("t.libs.done", { same = ctx.same, text = ctx.text }) end,
      })
      assert(msrt.publish("t.libs.go", 1))
      assert.is_true(done.wait(1), "the actor did not answer")
      assert.are.same({ same = true, text = "a,2,2,number,function" }, done.data()[1])
      done.close()
    end)
  end)

  -- (lua/msrt/actor_boot.lua: string.buffer is dropped at the end of the
  -- first turn and required again by the next encode or decode)
  it("drop string.buffer after an actor's first turn and encode again after it", function()
    drive(function()
      local up, term = collector("t.buf.up"), collector("t.buf.term")
      local h = assert(spawn {
        name = "t_buf",
        init = function(ctx) ctx:publish("t.buf.up", package.loaded["string.buffer"] ~= nil) end,
        handle = function() end,
        terminate = function(ctx, reason)
          ctx:publish("t.buf.term", { kept = package.loaded["string.buffer"] ~= nil, reason = reason })
        end,
      })
      assert.is_true(up.wait(1), "the actor did not start")
      h:stop()
      local recs = h:wait()
      assert.is_true(term.wait(1), "terminate did not publish")
      assert.are.same({ true }, up.data())
      assert.are.same({ { kept = false, reason = "normal" } }, term.data())
      assert.are.equal("normal", recs[1].reason)
      up.close(); term.close()
    end)
  end)

  it("keep per-sender order: several actor senders and the hub to one receiver", function()
    local SENDERS, N = 4, 20000
    drive(function()
      local done = collector("t.order.done")
      assert(spawn {
        name = "t_order_recv", subscribe = "t.order", capacity = 16, overflow = "block",
        args = { total = (SENDERS + 1) * N },
        init = function(ctx) ctx.last, ctx.count, ctx.bad, ctx.nsenders = {}, 0, 0, 0 end,
        handle = function(ctx, msg)
          local from, seq = msg.data[1], msg.data[2]
          local last = ctx.last[from]
          if last == nil then ctx.nsenders = ctx.nsenders + 1 end
          -- strictly increasing per sender, no gap, no repeat
          if seq ~= (last or 0) + 1 then ctx.bad = ctx.bad + 1 end
          ctx.last[from] = seq
          ctx.count = ctx.count + 1
          if ctx.count == ctx.args.total then
            ctx:publish("t.order.done", { count = ctx.count, bad = ctx.bad, nsenders = ctx.nsenders, last = ctx.last })
          end
        end,
      })
      for i = 1, SENDERS do
        assert(spawn {
          name = "t_order_send", subscribe = "t.order.go",
          -- half the senders use the high lane, half the low one
          args = { n = N, prio = i % 2 == 0 and 2 or 7, tag = "a" .. i },
          handle = function(ctx)
            local a = ctx.args
            for s = 1, a.n do
              local ok, err = ctx:publish("t.order", { a.tag, s }, { priority = a.prio })
              if not ok then error(tostring(err)) end
            end
          end,
        })
      end
      assert(msrt.publish("t.order.go", true))
      for s = 1, N do assert(msrt.publish("t.order", { "hub", s })) end
      assert.is_true(done.wait(1, 60000), "the receiver did not get every message")
      local r = done.msgs[1].data
      assert.are.equal((SENDERS + 1) * N, r.count)
      assert.are.equal(0, r.bad)
      assert.are.equal(SENDERS + 1, r.nsenders)
      for i = 1, SENDERS do assert.are.equal(N, r.last["a" .. i]) end
      assert.are.equal(N, r.last.hub)
      done.close()
    end)
  end)
end)

describe("the flood", function()
  it("loses and duplicates nothing across 1,000,000 messages with 2 workers", function()
    local r = child([[
      local msrt = require "msrt"
      local N = 1000000
      local recv = assert(msrt.actor {
        name = "recv", subscribe = { "t.flood", "t.flood.count" }, capacity = 1024, overflow = "block",
        args = { total = N },
        init = function(ctx, args)
          local ffi = require "ffi"
          ctx.seen = ffi.new("uint8_t[?]", args.total)
          ctx.count, ctx.dup, ctx.bad, ctx.sum = 0, 0, 0, 0
        end,
        handle = function(ctx, msg)
          if msg.subject == "t.flood.count" then return ctx:reply(msg, ctx.count) end
          local n = msg.data
          if type(n) ~= "number" or n < 0 or n >= ctx.args.total or n % 1 ~= 0 then
            ctx.bad = ctx.bad + 1
          elseif ctx.seen[n] ~= 0 then
            ctx.dup = ctx.dup + 1
          else
            ctx.seen[n] = 1
            ctx.sum = ctx.sum + n
          end
          ctx.count = ctx.count + 1
          if ctx.count == ctx.args.total then
            local missing = 0
            for i = 0, ctx.args.total - 1 do if ctx.seen[i] == 0 then missing = missing + 1 end end
            ctx:publish("t.flood.done", { count = ctx.count, dup = ctx.dup, bad = ctx.bad, sum = ctx.sum, missing = missing })
          end
        end,
      })
      -- two senders, one half each
      local senders = {}
      for k = 0, 1 do
        senders[k + 1] = assert(msrt.actor {
          name = "send", subscribe = "t.flood.go", args = { from = k * N / 2, to = (k + 1) * N / 2 - 1 },
          handle = function(ctx)
            for i = ctx.args.from, ctx.args.to do
              local ok, err = ctx:publish("t.flood", i)
              if not ok then error(tostring(err)) end
            end
            ctx:stop()
          end,
        })
      end
      msrt.subscribe("t.flood.done", function(m)
        local d = m.data
        -- once both senders are gone, nothing more may have arrived
        for _, h in ipairs(senders) do h:wait() end
        local final = msrt.request("t.flood.count", nil, { timeout_ms = 30000 })
        d.dup = d.dup + (final - d.count)
        print(("count=%d dup=%d bad=%d missing=%d sum=%.0f workers=%d high=%d"):format(
          d.count, d.dup, d.bad, d.missing, d.sum, msrt.metrics().workers, select(2, recv:mailbox())))
        io.stdout:flush()
        recv:stop()
      end)
      assert(msrt.publish("t.flood.go", true))
    ]], { "--workers", "2" })
    local m = r.out:match("count=.*")
    assert.is_string(m, "no result line; status " .. tostring(r.code) .. "; stderr: " .. r.err)
    assert.are.equal("1000000", m:match("count=(%d+)"))
    assert.are.equal("0", m:match("dup=(%d+)"))
    assert.are.equal("0", m:match("bad=(%d+)"))
    assert.are.equal("0", m:match("missing=(%d+)"))
    assert.are.equal(("%.0f"):format(999999 * 1000000 / 2), m:match("sum=(%d+)"))
    assert.are.equal("2", m:match("workers=(%d+)"))
    assert.is_true(tonumber(m:match("high=(%d+)")) <= 1024, "block mailbox exceeded its capacity")
    assert.are.equal(0, r.code, r.err)
  end)
end)

describe("a long turn", function()
  -- One worker: an actor publishing in one long handler (a loop of
  -- 200,000 publishes to a sink with room for them all) gave the worker
  -- to nobody until its handler returned; the actor it woke on the way
  -- (the witness, held back behind the sink) ran only after the whole
  -- loop. Now the publisher gives way once others have waited on its
  -- worker for a batch of its sends (src/sched/sched.h
  -- msrt_actor_should_yield), and goes on where it was: the witness runs
  -- in the middle, and the sink still gets every message, in order.
  it("gives way to the actors waiting on its worker, losing and reordering nothing", function()
    local r = child([[
      local msrt = require "msrt"
      local N = 200000
      local order = {}
      msrt.subscribe("t.turn.witness", function() order[#order + 1] = "witness" end)
      msrt.subscribe("t.turn.loop", function() order[#order + 1] = "loop" end)
      local sink = assert(msrt.actor {
        name = "sink", subscribe = "t.turn.sink", capacity = N + 16, args = { n = N },
        init = function(ctx) ctx.next, ctx.bad = 1, 0 end,
        handle = function(ctx, msg)
          if msg.data ~= ctx.next then ctx.bad = ctx.bad + 1 end
          ctx.next = ctx.next + 1
          if ctx.next > ctx.args.n then ctx:publish("t.turn.sunk", { n = ctx.next - 1, bad = ctx.bad }) end
        end,
      })
      local witness = assert(msrt.actor {
        name = "witness", subscribe = "t.turn.go",
        handle = function(ctx) ctx:publish("t.turn.witness", true) end,
      })
      local loop = assert(msrt.actor {
        name = "loop", subscribe = "t.turn.start", args = { n = N },
        handle = function(ctx)
          for i = 1, ctx.args.n do
            assert(ctx:publish("t.turn.sink", i))
            if i == 100 then assert(ctx:publish("t.turn.go", true)) end
          end
          ctx:publish("t.turn.loop", true)
        end,
      })
      msrt.subscribe("t.turn.sunk", function(m)
        print(("sunk=%d bad=%d order=%s workers=%d gave_way=%d"):format(m.data.n, m.data.bad,
          table.concat(order, ","), msrt.metrics().workers, msrt.metrics().total.gave_way))
        io.stdout:flush()
        sink:stop(); witness:stop(); loop:stop()
      end)
      assert(msrt.publish("t.turn.start", true))
    ]], { "--workers", "1" })
    local m = r.out:match("sunk=.*")
    assert.is_string(m, "no result line; status " .. tostring(r.code) .. "; stderr: " .. r.err)
    assert.are.equal("1", m:match("workers=(%d+)"))
    assert.are.equal("200000", m:match("sunk=(%d+)"))
    assert.are.equal("0", m:match("bad=(%d+)"))
    assert.are.equal("witness,loop", m:match("order=(%S+)"))
    assert.is_true(tonumber(m:match("gave_way=(%d+)")) >= 1, m)
    assert.are.equal(0, r.code, r.err)
  end)
end)

describe("the hub under a flood", function()
  -- The hub drains its inbox in batches of at most 10 ms, so its timers
  -- run while actors publish to it faster than it handles the messages
  -- (draining until empty would run them only once the flood stopped).
  it("still runs its timers while actors publish to it faster than it handles", function()
    drive(function()
      local N, got, at_timer = 300000, 0, nil
      local sub = assert(msrt.subscribe("t.hubflood", function() got = got + 1 end))
      local senders = assert(spawn { name = "t_hubflood", instances = 2, subscribe = "t.hubflood.go", queue = "q",
        handle = function(ctx, msg) for i = 1, msg.data do ctx:publish("t.hubflood", i) end end })
      msrt.after(0, function()
        assert(msrt.publish("t.hubflood.go", N / 2))
        assert(msrt.publish("t.hubflood.go", N / 2))
        msrt.after(20, function() at_timer = got end)
      end)
      -- (the flood takes well under a second in a plain build and up to
      -- ~40 s under ThreadSanitizer on a loaded 2-core machine: the bound
      -- only tells a flood that arrives from one that never does)
      assert.is_true(wait_until(function() return got == N end, 150000), "the flood did not arrive: " .. got)
      assert.is_number(at_timer, "the timer never ran")
      assert.is_true(at_timer < N, "the timer waited for the whole flood (" .. at_timer .. " of " .. N .. ")")
      senders:stop()
      senders:wait()
      sub.unsubscribe()
    end, 180000)
  end)
end)

describe("request/reply", function()
  -- echo replies with what it got; silent never replies; slow replies
  -- data.tag after data.delay ms (from a timer).
  local function servers()
    assert(spawn { name = "t_rr_echo", subscribe = "t.rr.echo",
      handle = function(ctx, msg) ctx:reply(msg, msg.data) end })
    assert(spawn { name = "t_rr_silent", subscribe = "t.rr.silent", handle = function() end })
    assert(spawn { name = "t_rr_slow", subscribe = "t.rr.slow",
      handle = function(ctx, msg)
        ctx:after(msg.data.delay, function(c) c:reply(msg, msg.data.tag) end)
      end })
  end

  it("works between actors (ctx:request), with timeout, no_responders and late replies", function()
    drive(function()
      servers()
      local hub_asked = collector("t.rr.hub")
      assert(spawn {
        name = "t_rr_client", subscribe = "t.rr.client",
        handle = function(ctx, msg)
          local op, out = msg.data.op, {}
          if op == "echo" then
            local d, m = ctx:request("t.rr.echo", msg.data.payload, { timeout_ms = 10000 })
            out = { d = d, subject = m and m.subject }
          elseif op == "timeout" then
            local d, e = ctx:request("t.rr.silent", 1, { timeout_ms = 30 })
            out = { d = d, code = e and e.code, message = e and e.message }
          elseif op == "noresp" then
            -- a minute of timeout: no_responders must not wait for it
            local d, e = ctx:request("t.rr.nobody", 1, { timeout_ms = 60000 })
            out = { d = d, code = e and e.code }
          elseif op == "late" then
            -- the first reply comes after its request timed out, while the
            -- second request waits: it must not be taken for the second's
            local d1, e1 = ctx:request("t.rr.slow", { delay = 150, tag = "first" }, { timeout_ms = 20 })
            local d2, e2 = ctx:request("t.rr.slow", { delay = 400, tag = "second" }, { timeout_ms = 20000 })
            out = { d1 = d1, code1 = e1 and e1.code, d2 = d2, code2 = e2 and e2.code }
          elseif op == "hub" then
            local d, e = ctx:request("t.rr.hub", "ping", { timeout_ms = 10000 })
            out = { d = d, code = e and e.code }
          end
          ctx:reply(msg, out)
        end,
      })
      local function ask(data)
        local got, err = msrt.request("t.rr.client", data, { timeout_ms = 20000 })
        assert.is_table(got, tostring(err))
        return got
      end
      local r = ask { op = "echo", payload = { 1, "two", { three = 3 } } }
      assert.are.same({ 1, "two", { three = 3 } }, r.d)
      assert.matches("^_INBOX%.", r.subject)
      r = ask { op = "timeout" }
      assert.is_nil(r.d)
      assert.are.equal("timeout", r.code)
      assert.matches("t.rr.silent", r.message, 1, true)
      r = ask { op = "noresp" }
      assert.is_nil(r.d)
      assert.are.equal("no_responders", r.code)
      r = ask { op = "late" }
      assert.is_nil(r.d1)
      assert.are.equal("timeout", r.code1)
      assert.are.equal("second", r.d2)
      assert.is_nil(r.code2)
      -- an actor asking the hub: the hub replies from its callback
      local sub = assert(msrt.subscribe("t.rr.hub", function(m) msrt.publish(m.reply, m.data .. "/pong") end))
      r = ask { op = "hub" }
      assert.are.equal("ping/pong", r.d)
      sub:unsubscribe()
      hub_asked.close()
    end)
  end)

  it("works from the hub (msrt.request), with timeout and no_responders", function()
    drive(function()
      servers()
      local d, msg = msrt.request("t.rr.echo", { x = 1 }, { timeout_ms = 10000 })
      assert.are.same({ x = 1 }, d)
      assert.matches("^_INBOX%.", msg.subject)
      local err
      d, err = msrt.request("t.rr.silent", 1, { timeout_ms = 30 })
      assert.is_nil(d)
      assert.are.equal("timeout", err.code)
      assert.matches("timeout", tostring(err))
      -- a minute of timeout against a 30 s guard: no_responders comes at once
      d, err = msrt.request("t.rr.nobody", 1, { timeout_ms = 60000 })
      assert.is_nil(d)
      assert.are.equal("no_responders", err.code)
      -- a late reply to a timed-out request is not taken for the next one
      d, err = msrt.request("t.rr.slow", { delay = 150, tag = "first" }, { timeout_ms = 20 })
      assert.are.equal("timeout", err.code)
      d = msrt.request("t.rr.slow", { delay = 400, tag = "second" }, { timeout_ms = 20000 })
      assert.are.equal("second", d)
      -- many hub coroutines waiting at once each get their own reply
      local answers, left, me = {}, 50, coroutine.running()
      for i = 1, 50 do
        msrt.after(0, function()
          answers[i] = msrt.request("t.rr.echo", i, { timeout_ms = 10000 })
          left = left - 1
          if left == 0 then coroutine.resume(me) end
        end)
      end
      coroutine.yield()
      for i = 1, 50 do assert.are.equal(i, answers[i]) end
    end)
  end)
end)

describe("an actor crash", function()
  it("in handle stops that actor only, with a reason and traceback for wait, on_exit and msrt.actor.<name>.exit", function()
    drive(function()
      local exits = collector("msrt.actor.t_crashy.exit")
      local terms = collector("t.crash.term")
      local before = metrics().actors
      assert(spawn { name = "t_steady", subscribe = "t.crash.steady",
        handle = function(ctx, msg) ctx:reply(msg, msg.data) end })
      local h = assert(spawn {
        name = "t_crashy", subscribe = "t.crash", instances = 2,
        handle = function(ctx, msg)
          if msg.data == "boom" then error("boom from " .. ctx.id) end
          ctx:reply(msg, "alive")
        end,
        terminate = function(ctx, reason) ctx:publish("t.crash.term", { id = ctx.id, reason = reason }) end,
      })
      local ids = h:ids()
      assert.are.equal(2, #ids)
      local on_exit = {}
      h:on_exit(function(rec) on_exit[#on_exit + 1] = rec end)
      assert.are.equal(before + 3, metrics().actors)
      assert.are.equal("alive", msrt.request("t.crash", "hi", { timeout_ms = 10000 }))
      assert(msrt.publish("t.crash", "boom")) -- both instances get it
      local recs = h:wait()
      assert.are.equal(2, #recs)
      table.sort(recs, function(a, b) return a.id < b.id end)
      for i, rec in ipairs(recs) do
        assert.are.equal(ids[i], rec.id)
        assert.are.equal("t_crashy", rec.name)
        assert.is_false(rec.normal)
        assert.matches("boom from " .. rec.id, rec.reason, 1, true)
        assert.matches("stack traceback:", rec.reason, 1, true)
      end
      assert.are.equal(2, #on_exit)
      -- the exit records are published too
      assert.is_true(exits.wait(2), "no exit record on msrt.actor.t_crashy.exit")
      for _, m in ipairs(exits.msgs) do
        assert.is_false(m.data.normal)
        assert.matches("boom from " .. m.data.id, m.data.reason, 1, true)
        assert.matches("stack traceback:", m.data.reason, 1, true)
      end
      -- terminate heard the reason (as OTP's gen_server does)
      assert.is_true(terms.wait(2))
      for _, m in ipairs(terms.msgs) do assert.matches("boom from " .. m.data.id, m.data.reason, 1, true) end
      -- the other actor, and new ones, still run
      assert.are.equal(7, msrt.request("t.crash.steady", 7, { timeout_ms = 10000 }))
      assert.is_true(wait_until(function() return metrics().actors == before + 1 end), "the crashed actors are not released")
      assert(spawn { name = "t_after", subscribe = "t.crash.after",
        handle = function(ctx, msg) ctx:reply(msg, "new") end })
      assert.are.equal("new", msrt.request("t.crash.after", 1, { timeout_ms = 10000 }))
      assert.are.equal(8, msrt.request("t.crash.steady", 8, { timeout_ms = 10000 }))
      exits.close() terms.close()
    end)
  end)

  -- Regression: msrt_lactor_new used its record after _START, when a
  -- worker may already have run init, seen it fail and freed the record.
  it("in init is reported the same way", function()
    drive(function()
      local exits = collector("msrt.actor.t_badinit.exit")
      local h = assert(spawn {
        name = "t_badinit", subscribe = "t.badinit",
        init = function() error("bad init") end,
        handle = function() end,
      })
      local recs = h:wait()
      assert.are.equal(1, #recs)
      assert.is_false(recs[1].normal)
      assert.matches("bad init", recs[1].reason, 1, true)
      assert.matches("stack traceback:", recs[1].reason, 1, true)
      assert.is_true(exits.wait(1))
      assert.are.same(recs[1], exits.msgs[1].data)
      exits.close()
    end)
  end)

  -- A module without handle is only found when the actor boots, so
  -- msrt.actor returns a handle and the actor exits at once.
  it("from a module without handle exits at once, naming handle", function()
    local cleanup = modules { t_nohandle_mod = "return { init = function() end }" }
    finally(cleanup)
    drive(function()
      local h = assert(spawn { name = "t_nohandle", module = "t_nohandle_mod" })
      local recs = h:wait()
      assert.is_false(recs[1].normal)
      assert.matches("no handle(ctx, msg) function", recs[1].reason, 1, true)
    end)
  end)

  it("is distinct from a stop: ctx:stop() and handle:stop() exit normally after terminate", function()
    drive(function()
      local terms = collector("t.stop.term")
      local spec = {
        name = "t_stopper", subscribe = "t.stop",
        handle = function(ctx, msg) if msg.data == "quit" then ctx:stop() end end,
        terminate = function(ctx, reason) ctx:publish("t.stop.term", reason) end,
      }
      local a = assert(spawn(spec))
      assert(msrt.publish("t.stop", "quit"))
      local recs = a:wait()
      assert.are.equal("normal", recs[1].reason)
      assert.is_true(recs[1].normal)
      local b = assert(spawn(spec))
      b:stop("shutdown")
      recs = b:wait()
      assert.are.equal("shutdown", recs[1].reason)
      assert.is_true(recs[1].normal)
      assert.is_true(terms.wait(2))
      assert.are.same({ "normal", "shutdown" }, terms.data())
      terms.close()
    end)
  end)
end)

describe("overflow policies", function()
  it("block: the sender (hub or actor) waits for room, nothing is lost, workers keep running", function()
    drive(function()
      local CAP, N = 4, 30
      local g = gated("t_blk", "t.blk", CAP, "block")
      assert(spawn { name = "t_blk_echo", subscribe = "t.blk.echo",
        handle = function(ctx, msg) ctx:reply(msg, msg.data) end })
      -- more blocked actor senders than workers: if a blocked sender held
      -- its worker, nothing else could run
      local nsend = metrics().workers + 1
      local sent = collector("t.blk.sent")
      assert(spawn {
        name = "t_blk_send", subscribe = "t.blk.go", instances = nsend, args = { n = N },
        handle = function(ctx)
          for i = 1, ctx.args.n do
            local ok, err = ctx:publish("t.blk", { ctx.id, i })
            if not ok then error(tostring(err)) end
          end
          ctx:publish("t.blk.sent", ctx.id)
        end,
      })
      local hub_done = false
      msrt.after(0, function()
        for i = 1, N do assert(msrt.publish("t.blk", { "hub", i })) end
        hub_done = true
      end)
      assert(msrt.publish("t.blk.go", true))
      assert.is_true(wait_until(function() return (g.handle:mailbox()) >= CAP end), "the mailbox did not fill")
      -- while the receiver is gated, the senders wait and the rest runs
      assert.are.equal("still here", msrt.request("t.blk.echo", "still here", { timeout_ms = 10000 }))
      assert.is_false(hub_done)
      assert.are.equal(0, #sent.msgs)
      local depth = g.handle:mailbox()
      assert.is_true(depth <= CAP, "depth " .. depth .. " over capacity " .. CAP)
      g.open()
      assert.is_true(sent.wait(nsend, 30000), "the actor senders did not finish")
      assert.is_true(wait_until(function() return hub_done end), "the hub sender did not finish")
      local got = g.report()
      assert.are.equal((nsend + 1) * N, #got)
      local last = {}
      for _, v in ipairs(got) do
        assert.are.equal((last[v[1]] or 0) + 1, v[2])
        last[v[1]] = v[2]
      end
      local _, high = g.handle:mailbox()
      assert.is_true(high <= CAP, "high-water " .. high .. " over capacity " .. CAP)
      sent.close()
    end)
  end)

  for _, c in ipairs {
    { policy = "drop_oldest", other = "drop_newest", keeps = "the newest", name = "dro", kept = { 7, 8, 9, 10 } },
    { policy = "drop_newest", other = "drop_oldest", keeps = "the oldest", name = "drn", kept = { 1, 2, 3, 4 } },
  } do
    local subject = "t." .. c.name
    it(c.policy .. ": keeps " .. c.keeps .. ", counts the drops and publishes msrt.dropped.<subject>", function()
      drive(function()
        local notes = collector("msrt.dropped." .. subject)
        local m0 = metrics()
        local g = gated("t_" .. c.name, subject, 4, c.policy)
        for i = 1, 10 do assert.is_true(msrt.publish(subject, i)) end
        assert.is_true(notes.wait(6))
        g.open()
        assert.are.same(c.kept, g.report())
        local m1 = metrics()
        assert.are.equal(6, m1.drops[c.policy] - m0.drops[c.policy])
        assert.are.equal(6, m1.router[c.policy] - m0.router[c.policy])
        assert.are.equal(0, m1.drops[c.other] - m0.drops[c.other])
        local id = g.handle:ids()[1]
        for _, m in ipairs(notes.msgs) do
          assert.are.equal("msrt.dropped." .. subject, m.subject)
          assert.matches(c.policy, note_text(m.data), 1, true)
          assert.matches("%f[%d]" .. id .. "%f[%D]", note_text(m.data))
        end
        assert.are.equal(6, #notes.msgs)
        notes.close()
      end)
    end)
  end

  it("error: publish returns nil, err mailbox_full to the hub and to actors", function()
    drive(function()
      local m0 = metrics()
      local g = gated("t_err", "t.err", 4, "error")
      for i = 1, 4 do assert.is_true(msrt.publish("t.err", i)) end
      for i = 5, 7 do
        local ok, err = msrt.publish("t.err", i)
        assert.is_nil(ok)
        assert.are.equal("mailbox_full", err.code)
        assert.matches("t.err", err.message, 1, true)
      end
      -- from an actor
      assert(spawn {
        name = "t_err_push", subscribe = "t.err.push",
        handle = function(ctx, msg)
          local ok, err = ctx:publish("t.err", 100)
          ctx:reply(msg, { ok = ok, code = err and err.code })
        end,
      })
      local r = assert(msrt.request("t.err.push", nil, { timeout_ms = 10000 }))
      assert.is_nil(r.ok)
      assert.are.equal("mailbox_full", r.code)
      local m1 = metrics()
      assert.are.equal(4, m1.router.refused - m0.router.refused)
      assert.are.equal(4, m1.drops.refused_full - m0.drops.refused_full)
      g.open()
      assert.are.same({ 1, 2, 3, 4 }, g.report())
      -- room again
      assert.is_true(msrt.publish("t.err", 5))
      assert.are.same({ 1, 2, 3, 4, 5 }, g.report())
    end)
  end)
end)

describe("metrics", function()
  it("count workers, actors and handled messages", function()
    drive(function()
      local m0 = metrics()
      assert.is_true(m0.workers >= 1)
      assert.are.equal(m0.workers, #m0.per_worker)
      local h = assert(spawn { name = "t_metrics", subscribe = "t.metrics", instances = 3,
        handle = function(ctx, msg) if msg.reply then ctx:reply(msg, true) end end })
      assert.are.equal(m0.actors + 3, metrics().actors)
      for i = 1, 100 do assert(msrt.publish("t.metrics", i)) end
      assert(msrt.request("t.metrics", 0, { timeout_ms = 10000 })) -- 3 handle it
      assert.is_true(wait_until(function() return metrics().total.handled - m0.total.handled >= 303 end))
      local sum = 0
      for _, w in ipairs(metrics().per_worker) do
        sum = sum + w.handled
        -- steals not made, and the measured distance to another worker's
        -- CPU (0 until measured; a single worker never measures it)
        assert.is_true(w.declined >= 0 and w.hop_ns >= 0)
      end
      assert.are.equal(metrics().total.handled, sum)
      assert.is_true(metrics().router.delivered - m0.router.delivered >= 303)
      h:stop()
      h:wait()
    end)
  end)
end)

describe("actor cells", function()
  it("cross to Lua typed: another value raises, and a released cell raises instead of reaching freed memory", function()
    local core = require "msrt.core"
    assert.has_error(function() core.actor_mailbox({}) end, "bad argument #1 to 'actor_mailbox' (msrt.actor_cell expected, got table)")
    drive(function()
      local h = assert(spawn { name = "t_cell", subscribe = "t.cell", handle = function() end })
      local _, a = next(h.alive)
      local cell = a.cell
      assert.are.equal(0, (core.actor_mailbox(cell)))
      h:stop()
      h:wait() -- the hub's handle released the cell when the exit came
      assert.has_error(function() core.actor_mailbox(cell) end, "bad argument #1 to 'actor_mailbox' (the actor cell was released)")
    end)
  end)
end)

describe("shutdown", function()
  -- Regression: actors stopped just before msrt.stop() kept a cell the hub
  -- never released (a leak ASan reported in about 3 runs in 4).
  it("right after stopping busy actors leaves nothing allocated", function()
    local script = S.file([[
      local msrt = require "msrt"
      local m = msrt.actor{ name = "map", instances = 2, subscribe = "map", queue = "q",
        handle = function(ctx, msg) for _ = 1, 20000 do end ctx:publish("red", msg.data) end }
      local r = msrt.actor{ name = "red", subscribe = { "red", "red.result" }, init = function(ctx) ctx.n = 0 end,
        handle = function(ctx, msg)
          if msg.subject == "red.result" then ctx:reply(msg, ctx.n) else ctx.n = ctx.n + 1 end
        end }
      for i = 1, 200 do msrt.publish("map", i) end
      msrt.after(30, function()
        msrt.request("red.result", true)
        m:stop("normal"); r:stop("normal")
        msrt.stop()
      end)
    ]])
    for _ = 1, 8 do
      local r = S.run({ script })
      assert.are.equal(0, r.code, r.err)
      assert.is_nil(r.err:find("leak", 1, true), r.err)
    end
    os.remove(script)
  end)

  -- Senders blocked on a full `block` mailbox, stopped while room appears:
  -- the room waker may run on the consumer's worker as a sender ends, so
  -- the registration holds the sender's cell (a use-after-free or a leak
  -- here shows under ASan, which scripts/test runs this spec with).
  -- The window is made wide rather than hit by chance: the sink is held
  -- (capacity 1, waiting for its gate) while a sender blocks on it; the
  -- gate opens, the sink frees the room (its mailbox reads empty) and
  -- takes the sender's waker, which waits 200 ms (the test hook
  -- MSRT_TEST_ROOM_WAKER_DELAY_MS); the hub, once the mailbox reads empty,
  -- stops the sender, which ends and is released well within those
  -- 200 ms. (One sender: with several, a sender's own refused attempt
  -- wakes the others' wakers on its thread, out of this order.) Unfixed,
  -- a run misses only if the sender registered its waker too late or the
  -- stop overtook the sink's step from emptying its mailbox to taking the
  -- waker (the next lines of one C function): measured under ASan with
  -- the fix taken out, 49 runs of 50 caught it, so the 3 runs here miss
  -- together with odds of about 1 in 100,000.
  it("after stopping senders blocked on a full mailbox while room appears leaves nothing allocated", function()
    local script = S.file([[
      local msrt = require "msrt"
      local gate
      msrt.subscribe("sink.gate", function(m) gate = m.reply end)
      local sink = msrt.actor{ name = "sink", subscribe = "sink", capacity = 1, overflow = "block",
        handle = function(ctx, msg)
          if msg.data == "hold" then
            ctx:request("sink.gate", 1, { timeout_ms = 60000 })
            ctx:publish("sink.opened", true) -- then the turn ends and the room is freed
          end
        end }
      local blocked = 0
      msrt.subscribe("snd.blocking", function() blocked = blocked + 1 end)
      local senders = msrt.actor{ name = "snd", instances = 1, subscribe = "snd.go",
        handle = function(ctx)
          ctx:publish("snd.blocking", ctx.id) -- it blocks at its second copy
          for i = 1, 1000 do
            if not ctx:publish("sink", i) then return end
          end
        end }
      msrt.subscribe("sink.opened", function()
        -- the sink's next pop empties its mailbox, and the same call takes
        -- the wakers a moment later: stop the senders once it has
        local co = coroutine.running()
        local t = msrt.every(1, function()
          if (sink:mailbox()) == 0 then coroutine.resume(co) end
        end)
        coroutine.yield()
        t.stop()
        senders:stop("normal")
        senders:wait()
        -- the sender has ended and its cell been let go; its waker is
        -- still sleeping in the sink's worker
        print("senders ended")
        sink:stop("normal")
        sink:wait()
        msrt.stop()
      end)
      msrt.after(0, function()
        assert(msrt.publish("sink", "hold"))
        local co = coroutine.running()
        local t = msrt.every(1, function()
          if gate then coroutine.resume(co) end
        end)
        coroutine.yield()
        t.stop()
        assert(msrt.publish("snd.go", true))
        -- (a sender's first copy fills the sink's one slot; the next blocks)
        local t2 = msrt.every(1, function()
          if blocked == 1 and (sink:mailbox()) == 1 then coroutine.resume(co) end
        end)
        coroutine.yield()
        t2.stop()
        assert(msrt.publish(gate, true))
      end)
    ]])
    for _ = 1, 3 do
      -- 4 workers: the senders end on others while the sink's sleeps
      local r = S.run({ "--workers", "4", script }, { env = "MSRT_TEST_ROOM_WAKER_DELAY_MS=200 timeout -k 5 60" })
      assert.are.equal(0, r.code, r.err)
      assert.matches("senders ended", r.out)
      assert.is_nil(r.err:find("Sanitizer", 1, true), r.err)
      assert.is_nil(r.err:find("leak", 1, true), r.err)
    end
    os.remove(script)
  end)

  -- Regression: msrt_rt_stop computed the time left after the deadline
  -- as an unsigned underflow and waited for the stuck worker forever.
  it("with an actor stuck in its handler still exits after shutdown_timeout_ms", function()
    local r = child([[
      local msrt = require "msrt"
      assert(msrt.start { profile = { workers = 2, shutdown_timeout_ms = 300 } })
      assert(msrt.actor { name = "stuck", subscribe = "t.stuck",
        handle = function(ctx) ctx:publish("t.stuck.in", true) while true do end end })
      assert(msrt.actor { name = "fine", subscribe = "t.fine",
        handle = function(ctx, msg) ctx:reply(msg, "pong") end,
        terminate = function(ctx, reason) io.stdout:write("fine terminated ", reason, "\n") io.stdout:flush() end })
      msrt.subscribe("t.stuck.in", function()
        -- the stuck actor holds one worker; the other still serves
        print("fine says", (msrt.request("t.fine", 1, { timeout_ms = 10000 })))
        print("stopping")
        io.stdout:flush()
        msrt.stop()
      end)
      assert(msrt.publish("t.stuck", 1))
    ]])
    assert.is_true(r.code ~= 124 and r.code ~= 137, "msrt-lua did not exit: " .. r.err)
    assert.matches("fine says\tpong\nstopping\n", r.out)
    assert.matches("fine terminated shutdown\n", r.out, 1, true)
    assert.matches("did not finish within shutdown_timeout_ms", r.err, 1, true)
    assert.are.equal(1, r.code, r.err)
  end)

  it("without stuck actors calls terminate and exits 0", function()
    local r = child([[
      local msrt = require "msrt"
      -- each instance has run its init before the stop: one stopped
      -- before its first turn never started, and gets no terminate
      -- (src/lua/actor.c, msrt_lactor_release)
      local ready = 0
      msrt.subscribe("t.ready", function()
        ready = ready + 1
        if ready < 3 then return end
        print("fine says", (msrt.request("t.fine", 1, { timeout_ms = 10000 })))
        io.stdout:flush()
        msrt.stop()
      end)
      assert(msrt.actor { name = "fine", subscribe = "t.fine", instances = 3,
        init = function(ctx) ctx:publish("t.ready", true) end,
        handle = function(ctx, msg) ctx:reply(msg, "pong") end,
        terminate = function(ctx, reason) io.stdout:write("terminated ", reason, "\n") io.stdout:flush() end })
    ]])
    assert.matches("fine says\tpong\n", r.out, 1, true)
    local n = select(2, r.out:gsub("terminated shutdown\n", ""))
    assert.are.equal(3, n)
    assert.are.equal("", r.err)
    assert.are.equal(0, r.code)
  end)
end)
