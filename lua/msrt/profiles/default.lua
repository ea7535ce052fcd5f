-- The default profile: one worker per CPU, libuv's usual blocking pool,
-- moderate batches. Every field is set here; other profiles override some.
return function(machine)
  return {
    name = "default",
    workers = machine.cpus,
    blocking_threads = 4,
    stack_size = 1024 * 1024,
    batch = 64,
    spin_us = 50,
    mailbox_capacity = 4096,
    mailbox_bytes = 64 * 1024 * 1024,
    stdin_bytes = 16 * 1024 * 1024,
    overflow = "block",
    slice_ms = 1000,
    shutdown_timeout_ms = 5000,
    max_payload = 1024 * 1024,
    max_subject = 1024,
    max_line_bytes = 16 * 1024 * 1024,
    gc = { pause = 200, stepmul = 200 },
    queues = { commit_ms = 0, synchronous = "full", spin_us = 300 },
    policy = { time_ms = 100, memory_bytes = 64 * 1024 * 1024, file_bytes = 1024 * 1024 },
    nats = { reconnect_buffer = 8 * 1024 * 1024, reconnect_wait_ms = 250, pending_msgs = 65536 },
    connections = { keepalive_ms = 60000, backlog = 511, max = 1024, nodelay = true,
      read_timeout_ms = 5000, idle_timeout_ms = 30000,
      max_pending = 64 * 1024 * 1024, write_deadline_ms = 10000, max_subscriptions = 1000 },
    max_subscriptions = 1000,
  }
end
