-- The Lua half of the "receiver" fuzz target: spec/fuzz/fuzz_receiver.c
-- documents the input and the invariants. Runs once per input in a fresh
-- LuaJIT state; a finding is raised as "INVARIANT: ...".
local _, good, corrupted = ...
local buffer = require "string.buffer"
local pcall, type, tostring, error, pairs = pcall, type, tostring, error, pairs

-- The actor's decode (lua/msrt/actor_boot.lua, FFI pop): one buffer
-- reused for every message, set to the payload, decoded under pcall; a
-- failure is the receiver's per-message error with a string reason.
local rbuf = buffer.new()
local function receive(payload)
  local ok, v = pcall(rbuf.decode, rbuf:set(payload))
  if not ok then
    local why = tostring(v):gsub("^.-:%d+: ", "")
    if type(v) ~= "string" or why == "" then error("INVARIANT: a decode error without a reason") end
  end
  return ok, v
end

local function equal(a, b, depth)
  if a == b then return true end
  if a ~= a and b ~= b then return true end -- NaN
  if type(a) ~= "table" or type(b) ~= "table" or depth > 200 then return false end
  for k, v in pairs(a) do if not equal(v, b[k], depth + 1) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

for i = 1, #good do
  if corrupted[i] then receive(corrupted[i]) end -- may fail, never crash
  local ok, v = receive(good[i])
  if not ok then error("INVARIANT: message " .. i .. " from an accepted line does not decode: " .. tostring(v)) end
  local again_ok, again = pcall(buffer.decode, buffer.encode(v))
  if not again_ok or not equal(v, again, 0) then error("INVARIANT: message " .. i .. " is not a fixed point") end
end
