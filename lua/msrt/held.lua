--- The modules holding handles (servers, listeners, bridges, timers, control
-- sockets) that shutdown must close and a profile reload must retune
-- (docs/architecture.md "The Lua surface"). Such a module puts itself here
-- when it loads (`return held.keep("msrt.web", M)`), and every path that
-- reaches one from elsewhere asks here, never package.loaded: a test
-- runner's insulation (busted restores package.loaded after each spec
-- file) drops the module from package.loaded while its handles stay open,
-- and a later require loads a second copy with handles of its own. Every
-- copy is kept, newest first, so each copy's handles are closed.
--
-- The book lives in the Lua registry, so a second copy of this module
-- shares it. Hub state only.
local M = {}

local REG = "msrt.held"
local book = debug.getregistry()[REG] or {}
debug.getregistry()[REG] = book

--- Keep module m under name (each loaded copy once); returns m.
function M.keep(name, m)
  local copies = book[name] or {}
  book[name] = copies
  for _, c in ipairs(copies) do if c == m then return m end end
  table.insert(copies, 1, m)
  return m
end

--- Every kept copy of module name, newest first (an empty list when none
-- has loaded: nothing of it to close).
function M.copies(name)
  return book[name] or {}
end

--- Call fn_name(...) of every kept copy of module name, newest first.
function M.call(name, fn_name, ...)
  for _, m in ipairs(M.copies(name)) do m[fn_name](...) end
end

return M
