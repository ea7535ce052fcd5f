-- websocket: many long-lived connections with steady small messages
-- (the seed's "high throughput"): 2 workers per CPU, a 768-thread blocking
-- pool, small batches for fairness, big connection limits, long keep-alive.
return function(machine)
  return {
    name = "websocket",
    workers = 2 * machine.cpus,
    blocking_threads = 768,
    stack_size = 512 * 1024,
    batch = 32,
    spin_us = 20,
    mailbox_capacity = 1024,
    overflow = "drop_oldest",
    gc = { pause = 150, stepmul = 300 },
    connections = { keepalive_ms = 300000, backlog = 8192, max = 100000, nodelay = true },
  }
end
