-- An echo actor: replies with what it is sent, and counts.
local M = {}

function M.init(ctx, args)
  ctx.count = 0
  ctx.prefix = args and args.prefix or ""
end

function M.handle(ctx, msg)
  ctx.count = ctx.count + 1
  if msg.reply then ctx:reply(msg, ctx.prefix .. tostring(msg.data)) end
end

return M
