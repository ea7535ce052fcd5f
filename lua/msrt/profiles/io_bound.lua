-- io_bound: many workers (4 per CPU) so actors waiting on replies do not
-- hold the machine idle, a large blocking pool for file and DNS work, short
-- batches for latency, a short spin (threads mostly wait), small stacks.
return function(machine)
  return {
    name = "io_bound",
    workers = 4 * machine.cpus,
    blocking_threads = 1024,
    stack_size = 1024 * 1024,
    batch = 16,
    spin_us = 10,
    mailbox_capacity = 16384,
    gc = { pause = 150, stepmul = 200 },
    connections = { keepalive_ms = 120000, backlog = 4096, max = 10000, nodelay = true },
  }
end
