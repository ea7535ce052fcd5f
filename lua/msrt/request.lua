--- Request/reply, written once for both sides that ask: a hub coroutine
-- (`msrt.request`, lua/msrt/hub.lua) and an actor (`ctx:request`,
-- lua/msrt/actor_boot.lua). NATS' request semantics (docs/architecture.md
-- "Threads and the path of a message"): the request goes out with an
-- unguessable `_INBOX.` reply subject; nothing subscribed is
-- `no_responders` at once; the first reply is taken; a reply with NATS'
-- 503 status (the responder went away) is `no_responders` once each
-- endpoint that took the request sent one (each side counts them: a
-- bridge's NATS 503 must not beat a local responder), one with an
-- `Rpc-Error` header (a jsonrpc/lsp child's JSON-RPC error,
-- src/proc/proc.h) is `rpc_error`; no reply within the timeout is
-- `timeout`. Pure: each side says how it sends, waits and makes errors.
-- @module msrt.request
local M = {}

--- A request's timeout when opts.timeout_ms is absent (ms).
M.TIMEOUT_MS = 5000

--- Where a requester that gives up before its deadline says so: an empty
-- message on M.ABANDONED .. <reply subject> (README "MCP servers"). A
-- responder doing long work for the request (msrt.mcp: a tool
-- call) can subscribe to it and stop at once; NATS has no such notice,
-- so nothing else needs to listen.
M.ABANDONED = "msrt.abandoned."

--- How many 503s a request that n endpoints took lets pass (n: what
-- side.send returned): a 503 is `no_responders` only once every taker
-- has sent one, so the sides count them down with M.passes_503.
function M.passes(n) return n and n > 1 and n - 1 or 0 end

--- Whether a reply with headers h is a 503 the request waiting lets pass
-- (passes: what M.passes gave, less those passed): the side then waits
-- on, with one pass less.
function M.passes_503(h, passes) return passes > 0 and h ~= nil and h.Status == "503" end

--- The reply msg to a request on subject, read as NATS does.
-- @return data, msg | nil, err (no_responders, rpc_error)
function M.answer(side, subject, msg)
  local h = msg.headers
  if h and h.Status == "503" then -- NATS' no-responders status: the responder went away
    return nil, side.error("no_responders", ("no reply from \"%s\": %s"):format(subject, h.Description or "no responders"))
  end
  if h and h["Rpc-Error"] then -- a JSON-RPC error from a jsonrpc/lsp child (src/proc/proc.h)
    return nil, side.error("rpc_error", h.Description or "error", { rpc_code = tonumber(h["Rpc-Error"]), data = msg.data })
  end
  return msg.data, msg
end

--- Make a request through side, a table of:
--   `inbox()` -> a fresh reply subject | nil, err;
--   `send(subject, data, inbox, opts, timeout_ms)` -> how many took the
--     request (0: none) | nil, err (the side forgets the inbox unless
--     it returns more than 0);
--   `wait(inbox, timeout_ms)` -> true, reply msg | false when the timeout
--     passed (never early) | nil, err (the wait was cut short: the actor
--     stopping);
--   `error(code, message, fields)` -> an error object;
--   `abandon(subject)` -> publishes an empty message on subject (the
--     M.ABANDONED notice, when wait was cut short).
-- opts: timeout_ms (default M.TIMEOUT_MS), and what send reads.
-- sent(inbox), when given, is called once the request is out (someone
-- took it), with its reply subject.
-- @return data, msg | nil, err (no_responders, timeout, rpc_error, or
--   what the side returned)
function M.request(side, subject, data, opts, sent)
  local timeout = opts.timeout_ms or M.TIMEOUT_MS
  local inbox, ierr = side.inbox()
  if not inbox then return nil, ierr end
  local n, serr = side.send(subject, data, inbox, opts, timeout)
  if n == nil then return nil, serr end
  if n == 0 then return nil, side.error("no_responders", ("no responders for \"%s\""):format(subject)) end
  if sent then sent(inbox) end
  local got, msg = side.wait(inbox, timeout)
  if got then return M.answer(side, subject, msg) end
  if got == false then
    return nil, side.error("timeout", ("no reply from \"%s\" within %d ms"):format(subject, timeout))
  end
  side.abandon(M.ABANDONED .. inbox) -- the requester went away first
  return nil, msg
end

return M
