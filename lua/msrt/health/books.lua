--- A child's probe books: src/health's state machine (health/health.h:
-- thresholds, states, startup gating), the one place Lua reaches it.
-- Through msrt.core (src/lua/lhealth.c) for making books and reading
-- them, and through the FFI for the hot path (a run begun, recorded, the
-- next one found: ten thousand times a second for a thousand children at
-- 100 ms), which LuaJIT compiles; msrt-lua exports those three symbols.
-- The FFI gets the books' msrt_health * from books:pointer() (valid while
-- the books are referenced: M.new keeps both), and the probe kinds, the
-- event bits and the defaults from msrt.core, as health.h states them.
-- Internal to msrt.health. Hub thread only.
-- @module msrt.health.books
local core = require "msrt.core"
local ffi = require "ffi"
local band = require("bit").band

local M = {}

pcall(ffi.cdef, [[
  bool msrt_health_begin(void *h, int kind, int64_t now_ms);
  int64_t msrt_health_next(const void *h, int64_t now_ms);
  unsigned msrt_health_record(void *h, int kind, int ok, int64_t now_ms);
]])
local C = ffi.C
local KIND, EV = core.health_kinds, core.health_events

--- A probe's Kubernetes defaults (ms, counts), from health/health.h.
M.DEFAULTS = core.health_defaults

--- New books from configs ({startup = cfg, liveness = cfg, readiness =
-- cfg}, each the Kubernetes fields) at now (ms, the loop's clock).
-- @return books {ud (msrt.core's userdata: state, ready, probe), ptr (its
--   msrt_health * for the FFI)} | nil, err (invalid_arg)
function M.new(configs, now)
  local ud, err = core.health_new(configs, now)
  if not ud then return nil, err end
  return { ud = ud, ptr = ffi.cast("void *", ud:pointer()) }
end

--- Whether a run of probe kind starts now (it is then in flight until
-- M.record).
function M.begin(b, kind, now)
  return C.msrt_health_begin(b.ptr, KIND[kind], now)
end

--- Record a run's result. @return changed (the probe's state), restart
-- (liveness or startup failed: restart the child), ready (true / false
-- when the child's readiness changed, else nil)
function M.record(b, kind, ok, now)
  local ev = C.msrt_health_record(b.ptr, KIND[kind], ok and 1 or 0, now)
  local ready
  if band(ev, EV.ready) ~= 0 then ready = true elseif band(ev, EV.unready) ~= 0 then ready = false end
  return band(ev, EV.changed) ~= 0, band(ev, EV.restart) ~= 0, ready
end

--- ms until the next due run at now, or a negative number when none waits
-- (every probe in flight).
function M.next(b, now)
  return tonumber(C.msrt_health_next(b.ptr, now))
end

return M
