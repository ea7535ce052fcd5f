--- An actor's durable publish (`ctx:publish` with `durable = true`,
-- README "Durable work queues"): a request whose reply is the capturing
-- queue's PubAck `{queue, seq, duplicate}` or `{error = {code, message}}`
-- (lua/msrt/queue.lua sends it once its store has committed, marked as
-- the queue's with the envelope flag only it can set, core/envelope.h
-- MSRT_ENV_PUBACK, and the actor's request takes no other answer:
-- actor_boot.lua's durable asker; the hub's own durable publishes get
-- theirs handed over directly, queue.lua M.publish). Pure.
-- @module msrt.puback
local M = {}

--- Publish durably through request(subject, data, opts) (msrt.request or
-- ctx:request); make_error(code, message) makes the side's errors.
-- @return the PubAck | nil, err (no_responders: no queue captures the
--   subject; the queue's refusal, e.g. resource_exhausted; timeout)
function M.publish(request, make_error, subject, data, opts)
  local o = {}
  for k, v in pairs(opts) do if k ~= "durable" then o[k] = v end end
  local ack, err = request(subject, data, o)
  if not ack then
    if err.code == "no_responders" then
      err = make_error("no_responders", ("no durable queue captures \"%s\""):format(subject))
    end
    return nil, err
  end
  if type(ack) ~= "table" then
    return nil, make_error("internal", ("unexpected answer to a durable publish on \"%s\""):format(subject))
  end
  if ack.error then return nil, make_error(ack.error.code, ack.error.message) end
  return ack
end

return M
