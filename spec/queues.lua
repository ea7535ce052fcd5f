--- What the durable-queue specs share (queue_spec, queue_stores_spec,
-- queue_crash_spec): a fresh directory for stores, and a hub consumer
-- that records what it gets.
-- @module spec.queues
local S = require "spec.support"
local uv = require "luv"
local msrt = require "msrt"

local Q = {}

--- A new empty directory (mode 0700) under the temporary directory;
-- suffix (default ".qd") tells the specs' directories apart.
function Q.dir(suffix)
  local dir = S.file("", suffix or ".qd")
  os.remove(dir)
  assert(uv.fs_mkdir(dir, 448))
  return dir
end

--- A consumer of queue `name` (msrt.consume with opts) that records every
-- message it gets in r.msgs, then calls handle(m) when given; r.wait(n,
-- ms) waits (bounded) until it has n; r.consumer is msrt.consume's handle.
function Q.recorder(name, handle, opts)
  local r = { msgs = {} }
  r.consumer = assert(msrt.consume(name, function(m)
    r.msgs[#r.msgs + 1] = m
    if handle then handle(m) end
  end, opts))
  function r.wait(n, ms) return S.wait_until(function() return #r.msgs >= n end, ms) end
  return r
end

return Q
