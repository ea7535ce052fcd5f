--- msrt: the Lua face of the runtime (docs/architecture.md "The Lua surface").
-- Errors come back as `nil, err` (err: table with code, category,
-- severity, recovery, message; tostring reads well); wrong argument types
-- raise with the caller's file:line. Every function here is for the hub
-- (main) thread.
-- @module msrt
local core = require "msrt.core"
local profile = require "msrt.profile"
local hub = require "msrt.hub"
local actors = require "msrt.actors"
local routes = require "msrt.routes"
local reload = require "msrt.reload"
local process = require "msrt.process"
local supervisor = require "msrt.supervisor"
local uv = require "luv"

local M = {}

-- Modules holding servers or connections that shutdown must close are
-- reached through msrt.held, never package.loaded (see there why).
local held = require "msrt.held"

--- Make an error object: `msrt.error(code, message [, fields])`.
M.error = core.error
M.is_error = core.is_error

local started = false
local shutdown_hooks = {}

-- A profile given by name or file becomes reloadable (msrt.watch).
local function watch_profile(name)
  local path = name and name ~= "" and profile.find(name)
  if path then reload.register(path, "profile", profile.resolve, profile.reload_apply) end
end
watch_profile(core.options().profile or os.getenv("MSRT_PROFILE"))
if core.options().watch then -- msrt-lua --watch DIR
  local ok, err = reload.watch(core.options().watch)
  if not ok then error(tostring(err), 0) end
end

-- Raises at the caller's file:line (msrt.args), however deep the check.
local check_arg = require("msrt.args").check

--- Start the runtime. Optional: the first use of anything that needs it
-- starts it with the profile chosen on the command line (or the default).
-- @tparam[opt] table opts `{ profile = NAME|FILE|table, workers = n,
--   log_level = s, metrics = "HOST:PORT" (Prometheus /metrics), ctl =
--   PATH|"auto" (the control socket of `msrt-lua ctl`) }`
-- @return true (and a warning string when part of the profile needs a
--   restart), or nil and an error (`not_found`, `syntax`, `bad_profile`)
function M.start(opts)
  check_arg(opts == nil or type(opts) == "table", 1, "start", "table expected")
  opts = opts or {}
  local warning
  if opts.profile then
    local t, err
    if type(opts.profile) == "table" then
      local ok, verr = profile.validate(opts.profile)
      if not ok then return nil, verr end
      t = profile.resolve()
      for k, v in pairs(opts.profile) do t[k] = v end
    else
      t, err = profile.resolve(opts.profile)
      if not t then return nil, err end
      watch_profile(opts.profile)
    end
    if opts.workers then t.workers = opts.workers end
    local _, w = profile.apply(t)
    warning = w
  end
  if opts.log_level then core.set_log_level(opts.log_level) end
  if opts.metrics or opts.ctl then
    local ok, err = require("msrt.ops").start(opts.metrics, opts.ctl)
    if not ok then return nil, err end
  end
  if started and opts.profile and hub.started() then
    warning = (warning and warning .. "; " or "") .. "the runtime already runs: workers, batch and mailbox figures need a restart"
  end
  local ok, err = hub.start()
  if not ok then return nil, err end
  started = true
  if warning then M.log("warn", warning) end
  return true, warning
end

local function check_subject(subject, n, fname)
  if type(subject) == "string" then return end -- (no message made on every call)
  check_arg(false, n, fname, "subject string expected, got " .. type(subject))
end

-- The opts of a call that gave none: one table for all of them (a table
-- made per msrt.publish and msrt.request was garbage on every call), which
-- nothing below writes to, and which raises if something ever does.
local NO_OPTS = setmetatable({}, { __newindex = function() error("msrt: NO_OPTS is read-only", 2) end,
  __metatable = false })

local function check_opts(opts, n, fname)
  if opts == nil then return NO_OPTS end
  check_arg(type(opts) == "table", n, fname, "table expected")
  return opts
end

local queue = require "msrt.queue"

--- Publish data (any value string.buffer can encode) on subject.
-- opts: `priority` (1 highest .. 10 lowest, default 5), `reply` (subject),
-- `headers` (a table of name = value strings, NATS-style: names printable
-- ASCII without ':' or spaces, values without CR/LF; receivers see it as
-- msg.headers; headers and payload together count against max_payload).
-- A full mailbox (or process stdin, see msrt.process) with the `block`
-- policy makes the calling coroutine wait for room; with `error` it comes
-- back as mailbox_full (when both meet one publish, the `block` copies are
-- delivered first, then mailbox_full).
-- @return true | nil, err (invalid_subject, payload_too_big, mailbox_full,
--   invalid_arg for bad headers)
--
-- `durable = true`: the subject must be captured by a durable queue
-- (msrt.queue); the call waits (a coroutine: the main chunk or a hub
-- callback) until the queue's store has committed the message, and
-- returns its PubAck `{queue = name, seq = n, duplicate = true|nil}` (a
-- `Msg-Id` header seen within the queue's dedupe_window_ms is stored once:
-- the first one's seq, duplicate = true). Errors: no_responders (no queue
-- captures the subject), resource_exhausted (the store cannot be written,
-- or the queue is full with discard = "new": nothing was stored), timeout
-- (opts.timeout_ms, default 5000).
-- @return true (PubAck table when durable) | nil, err (invalid_subject,
--   payload_too_big, mailbox_full, invalid_arg for bad headers)
function M.publish(subject, data, opts)
  check_subject(subject, 1, "publish")
  opts = check_opts(opts, 3, "publish")
  if opts.durable then return queue.publish(subject, data, opts) end
  local n, err = hub.publish(subject, data, opts)
  if not n then return nil, err end
  return true
end

--- Publish each item of list (an array of any values msrt.publish takes)
-- on subject, in order, with the same opts. With `durable = true`
-- (JetStream's async publish: the messages in flight together, one wait)
-- it waits once, until the capturing queue has committed them all, and
-- returns their PubAcks in list's order, each `{queue, seq, duplicate}`
-- as msrt.publish's, or `{error = err}` for a message the queue refused
-- (resource_exhausted: the store cannot be written, or full with discard
-- "new"); a message that could not be published at all (no queue
-- captures the subject, a bad header, max_payload) ends the batch there:
-- it and those after it are `{error = err}` (nil, err when it is the
-- first). Errors of the whole call: timeout (opts.timeout_ms, default
-- 5000, for the batch; some may be stored: give them a Msg-Id and publish
-- again). A subject captured by more than one queue: each entry is one
-- of their PubAcks. Without `durable`, each is published as msrt.publish
-- would, stopping at the first error.
-- @return the list of PubAcks (durable) or true | nil, err
function M.publish_batch(subject, list, opts)
  check_subject(subject, 1, "publish_batch")
  check_arg(type(list) == "table", 2, "publish_batch", "list of messages expected")
  opts = check_opts(opts, 3, "publish_batch")
  if opts.durable then return queue.publish_batch(subject, list, opts) end
  if #list == 0 then return true end
  local hdr, herr = hub.encode_headers(opts.headers) -- once for the batch
  if hdr == nil then return nil, herr end
  for i = 1, #list do
    local n, err = hub.publish(subject, list[i], opts, nil, nil, hdr)
    if not n then return nil, err end
  end
  return true
end

--- Declare a durable work queue (README "Durable work queues"): spec (or
-- the path of a policy file returning one: sandboxed, `--check`-able, and
-- reloaded live for ack_wait_ms, max_deliver, backoff and dead_letter;
-- the other fields need a restart and are listed in msrt.reload.ok)
-- `name` (one subject token), `subjects` (patterns it captures: every
-- message published there is stored before any consumer sees it),
-- `store` ("sqlite:PATH"; default "sqlite:" = DATA_DIR/queues/NAME.db,
-- DATA_DIR the profile's queues.data_dir; or "jetstream": a stream and a
-- durable pull consumer on the NATS server of the bridge opened first
-- (msrt.nats), shared by every host declaring it; the call then waits,
-- at most 10 s, for them), `ack_wait_ms` (default 30000),
-- `max_deliver` (deliveries before the dead letter; 0 = no limit),
-- `backoff` (list of ms: the ack wait of the n-th delivery, JetStream's
-- BackOff), `dead_letter` (subject the terminated and max_deliver
-- messages go to, with a Msrt-Dead-Reason header), `max_msgs`,
-- `max_bytes` (0 = no limit), `discard` ("old" drops the oldest, "new"
-- refuses with resource_exhausted), `dedupe_window_ms` (Msg-Id window,
-- default 120000), `max_ack_pending` ("jetstream": the consumer's
-- bound across hosts, default 1000). Opening an existing store resumes
-- it: what was delivered and never acked is redelivered first.
-- @return the queue (.close(), .stats(), .messages(after, limit)) | nil, err (io: the store is
--   corrupt, refused; resource_exhausted: it cannot be opened or written;
--   "jetstream": bad_config (no bridge, or the server refused the stream
--   or consumer), no_responders (JetStream is not enabled), timeout)
function M.queue(spec)
  check_arg(type(spec) == "table" or type(spec) == "string", 1, "queue", "table or policy file path expected")
  local q, qerr
  if type(spec) == "string" then
    q, qerr = queue.declare_file(spec)
  else
    local ok, err = queue.check(spec)
    if not ok then return nil, err end
    q, qerr = queue.declare(spec)
  end
  if not q then return nil, qerr end
  local name = q.name
  return { name = name,
    close = function() return queue.close(name) end,
    --- Stored messages with seq > after (default 0), at most limit
    -- (default 1000), in order, without delivering them: {seq, subject,
    -- data, headers, delivered}. @return list | nil, err
    messages = function(after, limit) return queue.messages(name, after, limit) end,
    stats = function()
      for _, s in ipairs(queue.stats()) do if s.name == name then return s end end
    end }
end

--- Consume a durable queue on the hub: fn(msg) runs as a coroutine for
-- each message, with at most opts.max_ack_pending (default 1000) of this
-- consumer's unacknowledged at once. msg: seq, subject, data, headers,
-- delivered (the delivery count, 1 the first time), and msg:ack(),
-- msg:nak(delay_ms), msg:in_progress() (the ack wait starts again),
-- msg:term(reason) (never redelivered; to the dead letter). Each returns
-- true, or nil and not_found when the message is no longer this
-- consumer's (acked, or redelivered after its ack wait). A message not
-- acked within the queue's ack wait is redelivered; an error in fn naks
-- it at once. With opts.batch = N (JetStream's pull Fetch(batch)),
-- fn(msgs) runs as a coroutine per batch instead: msgs is an array of up
-- to N such messages (those one commit hands this consumer, still within
-- max_ack_pending), each with its own ack, nak, in_progress and term, and
-- msgs:ack() acknowledges every one it still holds (returning how many);
-- an error in fn naks the batch's messages it still holds.
-- @return a consumer with :stop() (its unacked messages are redelivered
--   at once) | nil, err (not_found: no such queue)
function M.consume(name, fn, opts)
  check_arg(type(name) == "string", 1, "consume", "queue name expected")
  check_arg(type(fn) == "function", 2, "consume", "function expected")
  opts = check_opts(opts, 3, "consume")
  check_arg(opts.max_ack_pending == nil or (type(opts.max_ack_pending) == "number"
    and opts.max_ack_pending >= 1), 3, "consume", "max_ack_pending must be a positive number")
  check_arg(opts.batch == nil or (type(opts.batch) == "number" and opts.batch >= 1
    and opts.batch % 1 == 0), 3, "consume", "batch must be a positive integer")
  return queue.consume(name, fn, opts)
end

--- Subscribe fn(msg) on the hub to a subject pattern (NATS wildcards `*`
-- and `>`). msg: subject, reply, data, id, priority, headers, and for a
-- request reply_ttl_ms (how long its requester still waits for the reply,
-- ms, at delivery; nil when it set no timeout). opts: `queue` (a
-- queue group: one member of each group gets each message).
-- @return a subscription with :unsubscribe() | nil, err
function M.subscribe(pattern, fn, opts)
  check_subject(pattern, 1, "subscribe")
  check_arg(type(fn) == "function", 2, "subscribe", "function expected")
  opts = check_opts(opts, 3, "subscribe")
  local sid, hub_id = hub.subscribe(pattern, fn, opts)
  if not sid then return nil, hub_id end
  return { id = sid, unsubscribe = function() return hub.unsubscribe(sid, hub_id) end }
end

--- Request/reply from a hub coroutine (the main chunk and callbacks are):
-- opts `timeout_ms` (default 5000), `priority`, `headers` (as publish).
-- @return data, msg | nil, err (no_responders at once, timeout)
function M.request(subject, data, opts)
  check_subject(subject, 1, "request")
  opts = check_opts(opts, 3, "request")
  return hub.request(subject, data, opts)
end

--- Start Lua actors on the worker threads.
-- spec: `name` (one subject token), `module` (a module name on
-- package.path returning {init, handle, terminate}) or the functions
-- `init(ctx, args)`, `handle(ctx, msg)`, `terminate(ctx, reason)` given
-- directly (no upvalues); `args` (copied to each instance), `instances`
-- (default 1), `subscribe` (pattern or list), `queue` (queue group for
-- those subscriptions), `capacity` (mailbox bound, messages; default the
-- profile's mailbox_capacity), `mailbox_bytes` (mailbox bound, bytes of
-- the messages queued; default the profile's mailbox_bytes; a message is
-- admitted while less is queued), `overflow` (block, drop_oldest,
-- drop_newest, error; default the profile's; it applies at either bound).
-- @return a handle (:stop(reason), :wait(), :on_exit(fn), :mailbox(),
--   :ids()) | nil, err
function M.actor(spec)
  check_arg(type(spec) == "table", 1, "actor", "spec table expected")
  return actors.new(spec)
end

--- Start an agent process: a child program speaking JSON lines (or text
-- lines, or raw bytes) on stdin/stdout, bridged to the router.
-- spec: `name` (one subject token), `cmd = {"prog", "arg", ...}` (no
-- shell; prog searched in the host's PATH), `env = {NAME = value}`,
-- `inherit_env` (false: the default, the child's environment is only
-- `env`; true: the host's whole environment; or a list of names),
-- `cwd`, `codec` ("json_lines" default, "lines", "raw"; "jsonrpc" and
-- "lsp": JSON-RPC 2.0 newline-delimited or behind Content-Length headers,
-- methods called by requests to `rpc` .. ".<method>", `rpc` defaulting to
-- "<name>.rpc", README "Processes"), `publish_as`
-- (subject prefix, default "agents.<name>"), `subscribe` (pattern or
-- list: matching messages are written to stdin, one JSON line each
-- {subject, reply, headers, data}), `queue` (queue group of those
-- subscriptions), `capacity` (stdin lines on their way to the child,
-- queued or being written while it does not read; default 1024),
-- `stdin_bytes` (the same lines' bytes; default the profile's
-- stdin_bytes; a line is admitted while less is queued) and
-- `overflow`, the same policies as an actor mailbox's (at either bound), decided on the
-- publisher's own thread: "drop_newest" (the default) drops the new copy,
-- "drop_oldest" the oldest queued line (each counted, and announced on
-- msrt.dropped.<subject>), "error" returns mailbox_full to the publisher
-- (msrt.publish, ctx:publish; the other subscribers still get it),
-- "block" makes the publishing coroutine or actor wait for room (nothing
-- lost; an exit releases it, the copy then counted as drop_closed);
-- p:send follows the policy too), `allow_publish` /
-- `deny_publish` (subject patterns; the child may always publish under
-- publish_as and, once each until the request's timeout, to the reply
-- subjects it was handed; deny wins; the `reply` a child names is checked
-- the same way, and so is the subject a routing rule rewrites its
-- message to), `limits = {nofile, as_bytes, cpu_s, nproc}` (setrlimit in the
-- child), `stop = {signal = "TERM", grace_ms = 5000}`, `max_line_bytes`
-- (default the profile's).
-- stdout (json_lines): an object with a `subject` (and optional `reply`,
-- `headers`, `data`) is published as that message; any other value on
-- "<publish_as>.out". A line that is too long, not UTF-8 or not JSON is
-- reported on `msrt.process.<name>.bad_output` {name, reason, detail,
-- head (first 200 bytes), bytes, count} and reading goes on; so is a
-- publish the permissions refuse (reason "permission"). A message that
-- meets a full `block` mailbox pauses reading the child's stdout until
-- there is room (nothing is lost). stderr lines go to the log as
-- "[name] line". JSON null arrives as `msrt.null`.
-- The child leads its own process group: stop and signals reach its
-- children too, and what is left of the group dies with it. Its exit
-- (final after the status and the last output) is published on
-- `msrt.process.<name>.exit` as {name, pid, code, signal, normal, stopped,
-- reason, stderr (last lines), error}; state changes (initializing, idle,
-- busy, stopping, terminated, failed) on `msrt.process.<name>.state`.
-- The start does not wait for the child to run: a program not found or
-- not executable, a bad cwd or a limit that cannot be set fail here, but
-- an exec the kernel refuses later (a file of no format it runs) ends the
-- process at once with code 127, `error` saying why ("exec: Exec format
-- error") and reason "spawn failed: <error>".
-- @return a handle (:pid(), :send(data), :signal(name), :stop([grace_ms]),
--   :close_stdin(), :state(), :stats(), :wait(), :on_exit(fn)) | nil, err
--   (invalid_arg, spawn_failed)
function M.process(spec)
  check_arg(type(spec) == "table", 1, "process", "spec table expected")
  return process.new(spec)
end

--- Start a supervisor (Erlang/OTP's supervisor, strategies in Lua).
-- spec: `name` (one subject token), `strategy` ("one_for_one" default,
-- "one_for_all", "rest_for_one", "simple_one_for_one", a function
-- `fn(event, view) -> actions`, a table `{decide = fn}`, a module name or
-- a path), `intensity` (default 1) restarts within `period_ms` (default
-- 5000) before it gives up, `backoff = {initial_ms, max_ms, multiplier,
-- jitter}` (restart delays initial_ms * multiplier^n capped at max_ms,
-- +/- jitter fraction, reset after a child stays up period_ms; none by
-- default), `auto_shutdown` ("never", "any_significant",
-- "all_significant"), `children` (child specs, started in order).
-- A child spec: `id` (unique), one of `actor = {...}`, `process = {...}`,
-- `supervisor = {...}` (their specs; name defaults to the id) or
-- `service = {start = fn(spec) -> handle, ...}` (a child living on the
-- hub, such as msrt.mcp.server's remote server: lua/msrt/supervisor.lua
-- says what its handle answers), `restart`
-- (permanent, transient, temporary), `shutdown` (ms, default 5000 for
-- workers, "brutal_kill", or "infinity", default for supervisors),
-- `type`, `significant`, `health` (probes, msrt.health), `start` ("init",
-- the default: an actor child has started when its init has returned in
-- every instance, a process when spawned; "ready": also once its startup
-- or readiness probe passes). As in OTP (start_link's infinity) a start
-- has no time limit of its own: an init that never returns, or readiness
-- that never passes, holds the next child back; a startup probe's
-- failure_threshold bounds it (its failure is a start failure).
-- Children start in order, each once the one before has started (OTP's
-- start_link); from a coroutine this call returns when all have (the main
-- chunk runs the hub loop meanwhile, callbacks yield). An error in an init
-- is a start failure. Restarts start children in the same way, and exits
-- that come meanwhile are handled after them, one at a time.
-- The strategy gets `event = {child, reason, normal, kind ("exit" or
-- "unhealthy"), restart, restarts = {count, intensity, period_ms,
-- attempts, delay_ms (the backoff's)}}` and a view (a copy: name,
-- children in start order, child[id], restarts, group(which, id)) and
-- returns actions `{op = "restart"|"stop"|"escalate"|"ignore", child =
-- id, delay_ms = n}`; src/super checks them (nonsense or an error
-- escalates) and orders them: stops in reverse start order, then restarts
-- in start order after the longest delay. More than intensity restarts
-- in period_ms stop every child (reverse order) and end the supervisor
-- with reason "shutdown" (a parent restarts it if permanent); a root
-- supervisor giving up ends msrt.run() with status 1 and the reason.
-- Every decision is published on `msrt.supervisor.<name>.event`
-- {supervisor, event, child, reason, normal, delay_ms, restarts} and logged.
-- spec may also be the path of a Lua file returning the spec: the file is
-- then reloaded (msrt.watch, msrt.reload) as OTP's code_change does, via
-- sup:update(spec): flags and strategy apply from the next event, children
-- already running get their new spec without a restart, new ids start,
-- removed ids keep running unless the spec says `stop_removed = true`. A
-- strategy given as a file path is reloaded the same way.
-- @return a supervisor (:start_child(spec), :terminate_child(id),
--   :restart_child(id), :delete_child(id), :which_children(),
--   :count_children(), :update(spec), :stop([reason]), :wait(),
--   :on_exit(fn)) | nil, err (invalid_arg, start_failed naming the child
--   and why; for a file not_found, syntax, bad_config)
function M.supervisor(spec)
  check_arg(type(spec) == "table" or type(spec) == "string", 1, "supervisor", "spec table or file path expected")
  if type(spec) == "table" then return supervisor.new(spec) end
  local path = spec
  local s, err = supervisor.load_file(path)
  if not s then return nil, err end
  local sup, serr = supervisor.new(s)
  if not sup then return nil, serr end
  -- once sup ends its file stops applying to it (a later msrt.supervisor
  -- of the same file registers the new tree)
  sup:on_exit(reload.register(path, "supervisor", supervisor.load_file, function(new) return sup:update(new) end))
  return sup
end

--- JSON null as processes' JSON reaches Lua (a NULL lightuserdata).
M.null = process.null

--- JSON encode/decode for Lua code, by the same rules as a process's JSON
-- lines (lua/msrt/json.lua): `msrt.json.encode(v)` -> text | nil, err;
-- `msrt.json.decode(text)` -> value | nil, err; `msrt.json.null` is
-- `msrt.null`.
M.json = require "msrt.json"
M.mcp = require "msrt.mcp"

--- Install a routing table: how published subjects are rewritten, split
-- and dead-lettered before subscribers are matched.
-- rules_or_path: a list of rules, or the path of a Lua file returning one
-- (run sandboxed and bounded: README "Policy files"). Rules are tried in order; the first whose `match`
-- pattern (NATS wildcards) matches the published subject decides, and its
-- result is final (not routed again):
--   `{ match = "legacy.*.task", rewrite = "tasks.$1" }`: the message goes
--     to the rewritten subject; `$N` is the Nth wildcard of `match`, a `>`
--     token the tail a final `>` matched;
--   `{ match = "canary.>", split = { {to = "v1.>", weight = 90},
--     {to = "v2.>", weight = 10} } }`: each message goes to one target,
--     chosen with probability weight / sum of weights;
--   `{ match = "tasks.>", dead_letter = "dlq.tasks" }` (alone or with
--     rewrite/split): when nothing subscribes to the resolved subject, the
--     message goes to the dead-letter subject instead (not routed again).
-- Subscribers see the resolved subject in msg.subject; reply, priority and
-- data are kept. A request that is dead-lettered waits for a reply from
-- the dead-letter subscriber (or its timeout) rather than failing with
-- no_responders. `msrt.routes({})` removes every rule.
-- The table is compiled whole before it replaces the old one, atomically
-- (publishers never wait); a bad table changes nothing.
-- @tparam table|string rules_or_path
-- @return true | nil, err: `bad_config` whose message names the rule by its
--   position in the list (from 1) and why, e.g. "rule 2: rewrite \"x.$3\"
--   refers to $3 but \"a.*.*\" has only 2 wildcards", with `err.rule` that
--   position; for a file also `not_found`, `syntax`, and `err.file`.
function M.routes(rules_or_path)
  local kind = type(rules_or_path)
  check_arg(kind == "table" or kind == "string", 1, "routes", "list of rules or file path expected, got " .. kind)
  local ok, err = hub.start()
  if not ok then return nil, err end
  return routes.set(rules_or_path)
end

--- Join this host to a NATS server or cluster (README "More than one
-- host"): the bridge exports local publishes matching `export` to NATS and
-- imports, for each local subscription an `import` pattern covers, a NATS
-- subscription of the same pattern and queue group (interest follows
-- subscriptions, as a leaf node's; a queue group with no ready member here
-- withdraws its NATS subscription). `_INBOX.>` always crosses both ways,
-- so requests and their replies (and NATS' 503 no-responders status, as
-- `no_responders`) work across hosts; subjects under `msrt.` never cross.
-- cfg: `url = "nats://HOST:PORT"` or `servers = {url, ...}` (a cluster's
-- seeds; the others are learnt from them), `user`+`password`, `token` or
-- `creds` (a .creds file), `name` (the host's name on the wire: the
-- connection's, and `Msrt-Origin` on messages that carry headers),
-- `import` (patterns, default `{">"}`), `export` (patterns, default
-- `{">"}`), `reconnect_buffer` (bytes kept while
-- disconnected; default the profile's `nats.reconnect_buffer`, 8 MiB),
-- `reconnect_wait_ms`, `pending_msgs`, `connect_timeout_ms`, `send_asap`
-- (write each message at once: lower request latency, one write per
-- message; default false, libnats coalesces writes). A string is a
-- policy file returning that table (sandboxed, `--check`-able, its import
-- and export reloaded live). Returns at once, connected or not: libnats
-- keeps trying, and publishes `msrt.nats.connected`, `.disconnected` and
-- `.closed` ({state, url, error}).
-- @tparam table|string cfg_or_path
-- @return the bridge (`:info()`, `:stats()`, `:ready()` a readiness probe,
--   `:set(import, export)`, `:close()`) | nil, err (`bad_config`,
--   `invalid_arg` for a server or credentials libnats refuses)
function M.nats(cfg_or_path)
  local kind = type(cfg_or_path)
  check_arg(kind == "table" or kind == "string", 1, "nats", "options table or file path expected, got " .. kind)
  local ok, err = hub.start()
  if not ok then return nil, err end
  return require("msrt.nats").open(cfg_or_path)
end

--- Open the network face (README "The network face"): a listener that
-- speaks the NATS client protocol over TCP, so that NATS clients (the
-- `nats` npm package, libnats, the nats CLI) publish, subscribe, join
-- queue groups and make requests on the router exactly as actors and
-- processes do. A client's payload reaches Lua as a string; a Lua string
-- reaches a client as its bytes, any other value as JSON. Its limits come
-- from the profile (max_payload, connections.*; they follow a profile
-- reload). Only loopback addresses are accepted unless an auth policy is
-- given. `http = ADDR` serves `/metrics`, `/healthz`, `/readyz` and the
-- dashboard (README "HTTP endpoints and the dashboard"); `websocket =
-- ADDR` serves the same on the address NATS clients reach over WebSocket.
-- @tparam table spec `{ nats = "HOST:PORT" | true (127.0.0.1:4222),
--   websocket = "HOST:PORT", http = "HOST:PORT", auth = FILE }` (at least
--   one address): FILE is an auth policy (README "Authorisation"),
--   reloaded when it changes under a watched directory
-- @return a listener with `:port([kind])` (kind "nats", "websocket" or
--   "http"; default the first of them given), `:address([kind])`,
--   `:stats()` and `:close()` | nil, err (`invalid_arg` for a malformed
--   address, `permission` for a non-loopback one without auth, `network`
--   when the port cannot be bound, the auth file's
--   `bad_config`/`syntax`/`not_found`); either every address asked for
--   is served or none
function M.listen(spec)
  check_arg(type(spec) == "table", 1, "listen", "table expected")
  for k in pairs(spec) do
    check_arg(k == "nats" or k == "websocket" or k == "http" or k == "auth", 1, "listen",
      ("unknown key '%s' (nats, websocket, http, auth)"):format(tostring(k)))
  end
  check_arg(spec.nats == nil or spec.nats == true or type(spec.nats) == "string", 1, "listen",
    "nats = \"HOST:PORT\" (or true) expected")
  for _, k in ipairs({ "websocket", "http" }) do
    check_arg(spec[k] == nil or type(spec[k]) == "string", 1, "listen", k .. " = \"HOST:PORT\" expected")
  end
  check_arg(spec.nats or spec.websocket or spec.http, 1, "listen",
    "nats, websocket or http = \"HOST:PORT\" expected")
  check_arg(spec.auth == nil or type(spec.auth) == "string", 1, "listen", "auth must be a file path")
  return require("msrt.listen").listen(spec)
end

--- Watch policy files for changes and reload them (docs/architecture.md "Hot
-- reload"): a file that is the source of a policy — a routing table given
-- to `msrt.routes(path)`, the profile given to `--profile` or
-- `msrt.start{profile = ...}` — is reloaded when it changes under a watched
-- directory (debounced 10 ms: an editor's write-rename-write is one
-- reload), on SIGHUP, or by `msrt.reload(path)`. A reload compiles the file
-- in a fresh sandbox within a time and memory budget (README "Policy
-- files"; a FIFO, a directory or an oversized file is refused) and
-- validates it like `msrt-lua --check`; on any error
-- the old policy stays and `msrt.reload.failed` {file, kind, error =
-- "file:line: message"} is published; on success `msrt.reload.ok` {file,
-- kind, version, needs_restart} (version only grows; needs_restart lists
-- profile fields that cannot change live: all but those in
-- msrt.profile's LIVE, e.g. batch, spin_us, steal_wait_us,
-- mailbox_capacity and gc). A policy table may export `migrate(old_state)`
-- whose result is kept as its state. Only files under watched directories
-- are reloaded; symlinks are resolved before that check. The watches do not
-- keep the hub alive.
-- @tparam string|table paths directories (or single files) to watch
-- @return a watcher with :close() (ends these watches) | nil, err
--   (not_found: a path that does not exist; nothing is watched then)
function M.watch(paths)
  check_arg(type(paths) == "string" or type(paths) == "table", 1, "watch", "path or list of paths expected")
  return reload.watch(paths)
end

--- Reload one policy file now (see msrt.watch).
-- @return true | nil, err (not_found; invalid_arg: not under a watched
--   directory; the load or validation error, as `file:line: message`)
function M.reload(path)
  check_arg(type(path) == "string", 1, "reload", "path expected")
  return reload.reload(path)
end

--- Counters of the runtime: workers, actors, runnable, parked, total and
-- per_worker {handled, turns, parks, wakes, steals, declined (steals not
-- made: src/sched/hop.h), hop_ns (the last measured time a cache line
-- written on another worker's CPU takes to read on this one; in total the
-- largest), gave_way (turns that ended with the actor giving way to
-- others waiting on its worker: src/sched/sched.h GIVING WAY)}, drops,
-- hub_inbox, and
-- `router`: subscriptions and the message accounting.
-- Router accounting counts copies: a published message is one copy per
-- endpoint it matched (per subscriber, and one per queue group), or one copy
-- when it matched none. `accepted` counts every copy the router was handed,
-- including publishes it refused outright (invalid subject, oversized
-- payload). Each copy ends in exactly one outcome, so, once no publish is
-- in flight and no `block` publish is waiting for room:
--   accepted == delivered + dropped + dead_lettered + refused + no_responders
-- where `delivered` = put into a mailbox, the hub's callback queue or a
-- process's stdin queue, and still counted there (a copy evicted later by
-- drop_oldest moves from delivered to drop_oldest; a stdin copy that the
-- hub cannot write after all, the process having exited, moves to
-- drop_closed, or to drop_other when its data cannot be written as JSON);
-- `dropped` = drop_newest + drop_oldest +
-- drop_not_ready (a queue group with no ready member) + drop_closed (the
-- endpoint had gone) + drop_other (also a copy its receiver could not
-- decode), each also published on `msrt.dropped.<subject>` (except
-- drop_closed, and drop_other other than an undecodable copy);
-- `dead_lettered` = sent to its rule's dead-letter subject (the copy there
-- is a new message, counted again as accepted); `refused` = returned to the
-- sender as an error (mailbox_full with `error`, invalid_subject,
-- payload_too_big, a routed subject over max_subject); `no_responders` =
-- matched nobody. Drop notices are messages too and count the same way.
-- `router.classes` holds the same counters per subject class, keyed by
-- class name: a subject's first token ("work" for work.review.c, "_INBOX"
-- for replies, "msrt" for the runtime's own events and drop notices), so
-- the identity above holds for each class too (a copy is counted in the
-- class of the subject it was delivered on: after a rewrite, the new one;
-- a dead-lettered copy in its own class, its copy on the dead-letter
-- subject in that subject's class). At most 64 classes: "_other" takes
-- subjects whose first token is empty, over 32 bytes or not printable
-- ASCII (or holds '"' or '\\'), and every new first token once 63 exist
-- (src/router/account.h). The totals are the classes' sum (one read).
-- Counters are summed from per-thread shards, so a read while messages
-- move is not one instant. `health`: by child id, each health-checked
-- child's state, readiness and probe counters (lua/msrt/health/).
function M.metrics()
  local m = core.metrics()
  m.health = require("msrt.health").metrics()
  for _, listen in ipairs(held.copies("msrt.listen")) do -- README "The network face"
    m.nats_clients = m.nats_clients or listen.stats()
  end
  return m
end

--- The resolved tuning profile in force (a copy; changing it changes nothing).
function M.profile()
  return profile.current()
end

local levels = { debug = 0, info = 1, warn = 2, error = 3 }

--- Log a line on stderr: `msrt.log(level, ...)`, level one of debug, info,
-- warn, error; below the --log-level threshold it is dropped. Never blocks
-- the hub on a slow reader of stderr: lines wait in a 1 MiB buffer, and
-- when that is full they are dropped and counted (a line says how many).
-- Text logs show control characters other than tab and newline as \xHH
-- (a child's stderr line cannot move the terminal's cursor or fake a
-- line); JSON logs escape them as JSON does.
function M.log(level, ...)
  check_arg(levels[level], 1, "log", "debug, info, warn or error expected")
  if levels[level] < levels[core.options().log_level] then return end
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  local text = table.concat(parts, " ")
  if core.options().log_format == "json" then -- one JSON object a line
    local esc = text:gsub('[%c"\\]', function(c) return ("\\u%04x"):format(c:byte()) end)
    local sec, usec = uv.gettimeofday()
    core.log_line(('{"ts":%.3f,"level":"%s","msg":"%s"}'):format(sec + usec / 1e6, level, esc))
    return
  end
  text = text:gsub("[%z\1-\8\11-\31\127]", function(c) return ("\\x%02x"):format(c:byte()) end)
  core.log_line(("%s %s"):format(level:upper(), text))
end
process.log = M.log
supervisor.log = M.log
require("msrt.health").log = M.log
M.mcp.log = M.log

local function timer(ms, repeat_ms, fn, fname)
  check_arg(type(ms) == "number" and ms >= 0, 1, fname, "non-negative number of ms expected")
  check_arg(type(fn) == "function", 2, fname, "function expected")
  local t = uv.new_timer()
  -- from the call, not from the loop's cached time (core.timeout_ms)
  t:start(core.timeout_ms(ms), repeat_ms, function()
    if repeat_ms == 0 then t:close() end
    fn()
  end)
  return {
    handle = t,
    --- Stop the timer; calling it twice is harmless.
    stop = function() if not t:is_closing() then t:close() end end,
  }
end

--- Run fn once after ms milliseconds, on the hub, as a coroutine.
-- @return a timer with `:stop()`
function M.after(ms, fn) return timer(ms, 0, fn, "after") end

--- Suspend the calling coroutine for ms milliseconds (measured from the
-- call) while the hub goes on: timers, callbacks, actors and processes
-- run meanwhile. For the main chunk, hub callbacks, a busted spec (it runs
-- in the main chunk) and coroutines of your own (whoever resumed one gets
-- control back meanwhile, with no values). An error after the wake-up is
-- an uncaught error, reported as the main chunk's would be.
-- Raises where the caller cannot yield (outside a coroutine, or inside a
-- C call such as a table.sort comparator).
function M.sleep(ms)
  check_arg(type(ms) == "number" and ms >= 0, 1, "sleep", "non-negative number of ms expected")
  local co = coroutine.running()
  if not co or not coroutine.isyieldable() then
    error("msrt.sleep: the caller cannot yield (call it from the main chunk, a hub callback or a coroutine)", 2)
  end
  local t = uv.new_timer()
  t:start(core.timeout_ms(ms), 0, function()
    t:close()
    core.resume(co)
  end)
  coroutine.yield()
end

--- Run fn every ms milliseconds (first after ms), on the hub, as a coroutine.
-- @return a timer with `:stop()`
function M.every(ms, fn)
  check_arg(type(ms) == "number" and ms > 0, 1, "every", "positive number of ms expected")
  return timer(ms, ms, fn, "every")
end

--- Call fn(reason) when shutdown begins (msrt.stop, SIGINT, SIGTERM).
function M.on_shutdown(fn)
  check_arg(type(fn) == "function", 1, "on_shutdown", "function expected")
  shutdown_hooks[#shutdown_hooks + 1] = fn
end

--- Begin a graceful shutdown: hooks run, the supervision trees stop
-- (newest root first, each top-down, children in reverse start order with
-- their shutdown budgets; the hub runs meanwhile), then what is outside
-- them; every handle closes and the host exits. reason nil, "normal" or "shutdown" exits 0, anything else 1,
-- unless status (an integer) is given.
function M.stop(reason, status)
  check_arg(reason == nil or type(reason) == "string", 1, "stop", "string expected")
  if status == nil then
    status = (reason == nil or reason == "normal" or reason == "shutdown") and 0 or 1
  end
  core.stop(reason or "normal", status)
end

--- Run the hub until msrt.stop, a signal, or nothing is left that can
-- produce work. Returns the exit status. From inside a hub callback (the
-- loop already running) it returns nil, err (invalid_arg) instead of
-- re-entering.
function M.run()
  return core.run()
end

-- What is left outside the supervision trees, once they have stopped.
local finished = false
local function finish_shutdown()
  if finished then return end
  finished = true
  -- NATS clients and listeners (also when the host closes at once: the
  -- hook's first half did not run then); closing twice is a no-op
  held.call("msrt.listen", "close_all")
  queue.close_all() -- the last turn's acks committed
  process.stop_all() -- children get their stop signal, then SIGKILL
  -- Actors finish their message and terminate; a stuck one does not hold
  -- the exit past the profile's shutdown_timeout_ms.
  actors.stop_all("shutdown")
  -- bridges close before the bus they publish on goes
  held.call("msrt.nats", "close_all")
  held.call("msrt.mcp_remote", "close_all") -- remote MCP servers' transfers (their DELETEs went with the trees)
  if not hub.stop() then
    core.report("shutdown", "an actor did not finish within shutdown_timeout_ms; exiting without it")
  else
    actors.release_all()
  end
end

-- Shutdown as OTP's application stop: the hooks run, then the supervision
-- trees stop first, one root after another (the newest first), each
-- top-down with its children in reverse start order and their shutdown
-- budgets, every stop logged and published (child_stopped); the hub loop
-- runs meanwhile (returning true tells the host so). Then whatever is left
-- outside any tree. reason nil: the host is closing, finish at once.
core.on_shutdown(function(reason)
  if reason == nil then return finish_shutdown() end
  for i = #shutdown_hooks, 1, -1 do
    local ok, err = pcall(shutdown_hooks[i], reason)
    if not ok then core.report("error in shutdown hook", tostring(err)) end
  end
  held.call("msrt.ops", "close")
  held.call("msrt.listen", "close_all")
  local hooked, ended = true, false
  supervisor.stop_trees(function()
    ended = true
    if hooked then return end
    finish_shutdown()
    core.shutdown_done()
  end)
  hooked = false
  if ended then finish_shutdown() end
  return not ended
end)

return M
