#include "lua/rt.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

msrt_code msrt_rt_start(msrt_hub *hub, const msrt_rt_config *cfg,
                        msrt_run_fn run,
                        void (*release)(msrt_actor *, void *),
                        void (*drain)(msrt_inbox_item *, size_t, void *),
                        void *drain_ud, msrt_rt **out, msrt_error *err) {
  if (cfg->workers < 1 || cfg->workers > 256)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "workers must be 1..256");
  msrt_rt *rt = calloc(1, sizeof *rt);
  if (!rt) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  rt->cfg = *cfg;
  atomic_init(&rt->gc_pause, cfg->gc_pause);
  atomic_init(&rt->actor_max_subs, cfg->actor_max_subs);
  atomic_init(&rt->gc_stepmul, cfg->gc_stepmul);
  rt->hub = hub;
  rt->drain = drain;
  rt->drain_ud = drain_ud;
  msrt_router_opts ropts = {.max_subject = cfg->max_subject};
  rt->router = msrt_router_new(&ropts);
  rt->inbox = msrt_inbox_new(msrt_hub_loop(hub), drain, drain_ud);
  msrt_bus_limits lim = {cfg->max_payload, cfg->max_subject};
  if (rt->router && rt->inbox)
    rt->bus = msrt_bus_new(rt->router, rt->inbox, &lim);
  if (rt->inbox)
    rt->watchdog = msrt_watchdog_new(msrt_hub_loop(hub), rt->inbox,
                                     MSRT_IN_OVERLOAD, cfg->workers,
                                     cfg->slice_ms > 0 ? cfg->slice_ms : 1000);
  msrt_sched_config sc = {
    .workers = cfg->workers, .batch = cfg->batch, .spin_us = cfg->spin_us,
    .mailbox_capacity = cfg->mailbox_capacity,
    .mailbox_bytes = cfg->mailbox_bytes, .overflow = cfg->overflow,
    .run = run, .release = release, .sched_ud = rt,
    .stack_size = cfg->stack_size, .steal_wait_us = cfg->steal_wait_us};
  msrt_code rc = MSRT_E_NOMEM;
  if (rt->bus && rt->watchdog) rc = msrt_sched_new(&sc, &rt->sched, err);
  if (rc == MSRT_E_OK) rc = msrt_sched_start(rt->sched);
  if (rc != MSRT_E_OK) {
    msrt_error_set(err, rc, "cannot start the runtime (%s)",
                   msrt_code_name(rc));
    /* partial start: leave what was made (process-lifetime objects) */
    return rc;
  }
  *out = rt;
  msrt_bus_reader(rt->bus); /* the hub's, while there is memory */
  return MSRT_E_OK;
}

msrt_code msrt_rt_stop(msrt_rt *rt) {
  if (rt->stopped) return MSRT_E_OK;
  rt->stopped = 1;
  uint64_t deadline = msrt_now_ns() + (uint64_t)rt->cfg.shutdown_timeout_ms * 1000000u;
  msrt_sched_stats st;
  for (;;) {
    /* Exit records arriving meanwhile are delivered to the hub's Lua. */
    msrt_inbox_drain(rt->inbox);
    msrt_sched_stats_get(rt->sched, &st, NULL);
    if (st.actors == 0 || msrt_now_ns() >= deadline) break;
    struct timespec ts = {0, 500000};
    nanosleep(&ts, NULL);
  }
  uint64_t now = msrt_now_ns(); /* the loop above may end past the deadline */
  long left = now < deadline ? (long)((deadline - now) / 1000000u) : 0;
  if (msrt_sched_stop_timeout(rt->sched, left > 0 ? left : 0) != MSRT_E_OK) {
    msrt_sched_abandon(rt->sched); /* the process exits without them */
    return MSRT_E_TIMEOUT;
  }
  msrt_watchdog_close(rt->watchdog);
  msrt_inbox_drain(rt->inbox);
  msrt_inbox_close(rt->inbox);
  return MSRT_E_OK;
}

void *msrt_rt_hub_waker(msrt_rt *rt, uint64_t wake_id) {
  msrt_inbox_item it = {MSRT_IN_WAKE, wake_id, NULL, NULL};
  return msrt_inbox_waker(rt->inbox, it);
}

void msrt_rt_tune(msrt_rt *rt, const msrt_rt_config *cfg) {
  msrt_sched_tune(rt->sched, cfg->batch, cfg->spin_us, cfg->mailbox_capacity,
                  cfg->mailbox_bytes, cfg->steal_wait_us);
  if (cfg->gc_pause > 0) atomic_store(&rt->gc_pause, cfg->gc_pause);
  if (cfg->gc_stepmul > 0) atomic_store(&rt->gc_stepmul, cfg->gc_stepmul);
  if (cfg->actor_max_subs > 0)
    atomic_store(&rt->actor_max_subs, cfg->actor_max_subs);
}

void msrt_rt_turn(msrt_rt *rt, int worker, uint64_t actor_id) {
  /* the worker's reader, made at its first turn rather than at its first
   * publish, which may come when memory has run out */
  msrt_bus_reader(rt->bus);
  msrt_watchdog_turn(rt->watchdog, worker, actor_id);
}
