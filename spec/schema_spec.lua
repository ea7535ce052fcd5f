-- One validation path for every spec (msrt.schema): an unknown field is
-- refused with the closest valid name, a map where a list is expected is
-- refused, a bad value says what was expected; the same for actor,
-- process, supervisor, child, health, backoff, routing rules and profiles.
local S = require "spec.support"
local msrt = require "msrt"
local profile = require "msrt.profile"

-- fn(...) must return nil and an error whose message matches each pattern.
local function refused(pattern, fn, ...)
  local ok, err = fn(...)
  assert.is_nil(ok, "accepted")
  assert.matches(pattern, tostring(err.message))
  return err
end

local function nop() end

describe("spec validation", function()
  it("names the closest valid field", function()
    refused("actor spec: unknown field 'instance' %(did you mean 'instances'%?%)", msrt.actor,
      { name = "v_a", handle = nop, instance = 2 })
    refused("actor spec: unknown field 'handler' %(did you mean 'handle'%?%)", msrt.actor, { name = "v_a", handler = nop })
    refused("process spec: unknown field 'capacty' %(did you mean 'capacity'%?%)", msrt.process,
      { name = "v_p", cmd = { "true" }, capacty = 4 })
    refused("process spec: limits: unknown field 'nofiles' %(did you mean 'nofile'%?%)", msrt.process,
      { name = "v_p", cmd = { "true" }, limits = { nofiles = 4 } })
    refused("process spec: stop: unknown field 'grace' %(did you mean 'grace_ms'%?%)", msrt.process,
      { name = "v_p", cmd = { "true" }, stop = { grace = 100 } })
    refused("supervisor spec: unknown field 'intensty' %(did you mean 'intensity'%?%)", msrt.supervisor, { intensty = 3 })
    refused("supervisor spec: unknown field 'backoff%.inital_ms' %(did you mean 'initial_ms'%?%)", msrt.supervisor,
      { backoff = { inital_ms = 10 } })
    refused("child \"c\": unknown field 'restrat' %(did you mean 'restart'%?%)", msrt.supervisor,
      { children = { { id = "c", actor = { handle = nop }, restrat = "temporary" } } })
    refused("health: unknown probe kind 'livenes' %(did you mean 'liveness'%?%)", msrt.supervisor,
      { children = { { id = "c", actor = { handle = nop }, health = { livenes = { alive = true } } } } })
    refused("health%.liveness: unknown field 'interval' %(did you mean 'interval_ms'%?%)", msrt.supervisor,
      { children = { { id = "c", actor = { handle = nop }, health = { liveness = { alive = true, interval = 5 } } } } })
    refused("rule 2: unknown field 'rewrit' %(did you mean 'rewrite'%?%)", msrt.routes,
      { { match = "a.>", rewrite = "b.$1" }, { match = "c.>", rewrit = "d" } })
    refused("rule 1: split target 1: unknown field 'wieght' %(did you mean 'weight'%?%)", msrt.routes,
      { { match = "a.>", split = { { to = "b.>", wieght = 1 } } } })
    local path = S.file("return { wrkers = 2 }\n")
    refused(":1: unknown field 'wrkers' %(did you mean 'workers'%?%)", profile.resolve, path)
    os.remove(path)
    -- nothing close: the known names
    refused("actor spec: unknown field 'colour' %(known: args, capacity, consume, handle, init", msrt.actor,
      { name = "v_a", handle = nop, colour = "red" })
  end)

  it("refuses a map where a list is expected", function()
    refused("supervisor spec: children must be a list {...}, not a table with key 'x'", msrt.supervisor,
      { children = { x = { id = "x", actor = { handle = nop } } } })
    refused("the routing table must be a list {...}, not a table with key 'legacy'", msrt.routes,
      { legacy = { match = "a.>", rewrite = "b" } })
    refused("actor spec: subscribe must be a string or a list of strings", msrt.actor,
      { name = "v_a", handle = nop, subscribe = { a = "x" } })
    refused("allow_publish must be a list {...}, not a table with key 'tools'", msrt.process,
      { name = "v_p", cmd = { "true" }, allow_publish = { tools = "tools.>" } })
  end)

  it("says what a value must be and what came", function()
    refused("child \"c\": restart must be one of permanent, transient, temporary, got 'always'", msrt.supervisor,
      { children = { { id = "c", actor = { handle = nop }, restart = "always" } } })
    refused("actor spec: capacity must be an integer >= 1 messages, got 0", msrt.actor,
      { name = "v_a", handle = nop, capacity = 0 })
    refused("supervisor spec: backoff%.jitter must be a number in 0%.%.1, got 2", msrt.supervisor,
      { backoff = { initial_ms = 1, jitter = 2 } })
  end)

  it("checks the values of process and health specs declaratively too", function()
    refused("process spec: capacity must be an integer >= 1 lines, got 0", msrt.process,
      { name = "v_p", cmd = { "true" }, capacity = 0 })
    refused("process spec: limits: nofile must be an integer >= 0, got %-1", msrt.process,
      { name = "v_p", cmd = { "true" }, limits = { nofile = -1 } })
    refused("process spec: stop: grace_ms must be a number >= 0 ms, got 'soon'", msrt.process,
      { name = "v_p", cmd = { "true" }, stop = { grace_ms = "soon" } })
    refused("process spec: max_ack_pending must be an integer >= 1, got 0", msrt.process,
      { name = "v_p", cmd = { "true" }, max_ack_pending = 0 })
    refused("health%.liveness: interval_ms must be an integer >= 0 ms, got %-5", msrt.supervisor,
      { children = { { id = "c", actor = { handle = nop }, health = { liveness = { alive = true, interval_ms = -5 } } } } })
    refused("health%.readiness: heartbeat must be a string, got 5", msrt.supervisor,
      { children = { { id = "c", actor = { handle = nop }, health = { readiness = { heartbeat = 5 } } } } })
  end)

  it("every spec kind takes the overflow names core states, and only them", function()
    local core = require "msrt.core"
    assert.same({ "block", "drop_oldest", "drop_newest", "error" }, core.overflow_names)
    local list = table.concat(core.overflow_names, ", ")
    refused("actor spec: overflow must be one of " .. list .. ", got 'sometimes'", msrt.actor,
      { name = "v_a", handle = nop, overflow = "sometimes" })
    refused("process spec: overflow must be one of " .. list .. ", got 'sometimes'", msrt.process,
      { name = "v_p", cmd = { "true" }, overflow = "sometimes" })
    local path = S.file("return { overflow = 'sometimes' }\n")
    refused(":1: overflow must be one of " .. list .. ", got 'sometimes'", profile.resolve, path)
    os.remove(path)
  end)

  it("an unknown strategy lists the built-in ones in one line", function()
    local err = refused("^unknown strategy 'one_for_al' %(built%-in: one_for_one, one_for_all, rest_for_one, simple_one_for_one",
      msrt.supervisor, { strategy = "one_for_al" })
    assert.is_nil(err.message:find("\n"), "a module path dump")
  end)
end)
