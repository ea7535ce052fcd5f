--- A book of deadlines on the hub: many waits watched by one luv timer,
-- armed for the earliest (msrt.request's timeouts, lua/msrt/hub.lua). A
-- timer per wait cost a luv handle made, started, stopped and closed for
-- every request. Deadlines are ms on core.now_ms's clock (uv_hrtime,
-- CLOCK_MONOTONIC); the timer is armed through core.timeout_ms, so a
-- deadline is never seen early (hub/timer.h). Internal; hub thread only.
-- @module msrt.deadlines
local core = require "msrt.core"
local uv = require "luv"

local M = {}
local Book = {}
Book.__index = Book

--- A book. live(key) says whether key still waits; expire(keys) is
-- called (in a luv timer callback, a hub coroutine) with the keys whose
-- deadline passed and that were live then, in deadline order.
function M.new(live, expire)
  return setmetatable({ at = {}, key = {}, n = 0, waiting = 0, live = live, expire = expire }, Book)
end

-- The heap: at[1..n] (a binary min-heap on at), key[i] beside at[i].
local function up(b, i)
  local at, key = b.at, b.key
  local a, k = at[i], key[i]
  while i > 1 do
    local p = (i - i % 2) / 2
    if at[p] <= a then break end
    at[i], key[i] = at[p], key[p]
    i = p
  end
  at[i], key[i] = a, k
end

local function down(b, i)
  local at, key, n = b.at, b.key, b.n
  local a, k = at[i], key[i]
  while true do
    local c = 2 * i
    if c > n then break end
    if c < n and at[c + 1] < at[c] then c = c + 1 end
    if a <= at[c] then break end
    at[i], key[i] = at[c], key[c]
    i = c
  end
  at[i], key[i] = a, k
end

local function pop(b)
  local at, key, n = b.at, b.key, b.n
  local k = key[1]
  at[1], key[1] = at[n], key[n]
  at[n], key[n] = nil, nil
  b.n = n - 1
  if b.n > 1 then down(b, 1) end
  return k
end

-- Keep only the live keys (a wait that ended otherwise leaves its entry
-- until it reaches the top: this bounds them), then heapify.
local function compact(b)
  local at, key, live, n = b.at, b.key, b.live, 0
  for i = 1, b.n do
    if live(key[i]) then
      n = n + 1
      at[n], key[n] = at[i], key[i]
    end
  end
  for i = n + 1, b.n do at[i], key[i] = nil, nil end
  b.n = n
  for i = math.floor(n / 2), 1, -1 do down(b, i) end
end

local arm

local function fire(b)
  b.armed = nil
  local now, due = core.now_ms(), nil
  while b.n > 0 and b.at[1] <= now do
    local k = pop(b)
    if b.live(k) then
      due = due or {}
      due[#due + 1] = k
    end
  end
  if due then b.expire(due) end
  arm(b)
end

-- Arm the timer for the earliest deadline, unless it is armed for it;
-- with no wait left, close it (an open handle would outlive the waits).
function arm(b)
  if b.waiting == 0 then
    if b.timer and not b.timer:is_closing() then b.timer:close() end
    b.timer, b.armed = nil, nil
    return
  end
  local at = b.at[1]
  if not at then return end
  if b.armed == at then return end
  if not b.timer or b.timer:is_closing() then b.timer = uv.new_timer() end
  b.armed = at
  b.timer:start(core.timeout_ms(at - core.now_ms()), 0, function() fire(b) end)
end

--- Watch key until its deadline at (ms, core.now_ms's clock).
function Book:add(key, at)
  self.waiting = self.waiting + 1
  if self.n >= 2 * self.waiting + 64 then compact(self) end
  self.n = self.n + 1
  self.at[self.n], self.key[self.n] = at, key
  up(self, self.n)
  if not self.armed or at < self.armed then arm(self) end
end

--- A wait ended (answered or expired): when none is left, the timer is
-- closed (a waiting request keeps the hub alive; an ended one does not).
-- Call it after resuming the waiter: a waiter that waits again at once
-- (a loop of requests) then keeps the timer.
function Book:done()
  self.waiting = self.waiting - 1
  if self.waiting == 0 then
    for i = 1, self.n do self.at[i], self.key[i] = nil, nil end
    self.n = 0
    arm(self)
  end
end

return M
