-- cpu_bound: as many workers as CPUs (more would only preempt each other),
-- long batches so an actor keeps its cache warm, a longer spin before
-- parking, a generous blocking pool and big stacks (seed figures).
return function(machine)
  return {
    name = "cpu_bound",
    workers = machine.cpus,
    blocking_threads = 128,
    stack_size = 4 * 1024 * 1024,
    batch = 256,
    spin_us = 200,
    mailbox_capacity = 8192,
    gc = { pause = 200, stepmul = 400 },
    connections = { keepalive_ms = 10000, backlog = 511, max = 1024, nodelay = true },
  }
end
