/* The runtime behind the `msrt` module: one per process, made by the first
 * use (msrt.start or anything that needs workers). It ties the scheduler
 * (src/sched), the router (src/router), the hub (src/hub) and the bus
 * (src/bus: the publish path every thread uses, rt->bus) together.
 *
 * There is no global: the runtime is a handle its users are given (the
 * host keeps it, lua/host.h; an actor record holds it, lua/actor.h).
 *
 * Thread-safety: msrt_rt_tune and msrt_rt_turn from any thread; the rest
 * on the hub thread.
 */
#ifndef MSRT_LUA_RT_H
#define MSRT_LUA_RT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/bus.h"
#include "bus/endpoints.h"
#include "core/error.h"
#include "hub/hub.h"
#include "hub/alarm.h"
#include "hub/inbox.h"
#include "hub/watchdog.h"
#include "router/index.h"
#include "sched/sched.h"

typedef struct {
  int workers, batch, spin_us;
  size_t mailbox_capacity, mailbox_bytes; /* messages, bytes */
  msrt_overflow overflow;
  size_t max_payload, max_subject;
  size_t stack_size; /* bytes per worker thread; 0 = the system's */
  long slice_ms, shutdown_timeout_ms;
  int gc_pause, gc_stepmul;
  size_t actor_max_subs; /* subscriptions one actor may hold (its spec's,
                            its request inbox and ctx:subscribe's); 0 =
                            no limit */
  int steal_wait_us;     /* msrt_sched_config's; 0 = its default */
} msrt_rt_config;

typedef struct msrt_rt msrt_rt;

struct msrt_rt {
  msrt_rt_config cfg;
  msrt_hub *hub;
  msrt_sched *sched;
  msrt_router *router;
  msrt_inbox *inbox;
  msrt_bus *bus; /* the publish path, over router and inbox */
  void (*drain)(msrt_inbox_item *items, size_t n, void *ud); /* the binding's */
  void *drain_ud;
  msrt_watchdog *watchdog; /* overlong turns, reported as MSRT_IN_OVERLOAD */
  msrt_alarms *alarms;     /* actors' timers (the binding's: lrt.c) */
  atomic_int gc_pause, gc_stepmul; /* for actors made from now on (tune) */
  atomic_size_t actor_max_subs;    /* ctx:subscribe's bound (tune) */
  int stopped;
};

/* Change the figures a profile reload may change live (docs/architecture.md
 * "Hot reload"): batch, spin_us, mailbox_capacity, mailbox_bytes and
 * steal_wait_us as msrt_sched_tune; the LuaJIT GC pause/stepmul (percent)
 * of actor states made from now on; actor_max_subs for every
 * ctx:subscribe from now on.
 * A value <= 0 (spin_us < 0) leaves that figure as it is. Any thread. */
void msrt_rt_tune(msrt_rt *rt, const msrt_rt_config *cfg);

/* Start a runtime with cfg: scheduler (workers started), router, hub
 * inbox (drained by drain on the hub). run/release are the actor
 * binding's scheduler callbacks. Returns MSRT_E_OK with *out set, or an
 * error (invalid_arg for workers outside 1..256, nomem). */
msrt_code msrt_rt_start(msrt_hub *hub, const msrt_rt_config *cfg,
                        msrt_run_fn run,
                        void (*release)(msrt_actor *, void *),
                        void (*drain)(msrt_inbox_item *, size_t, void *),
                        void *drain_ud, msrt_rt **out, msrt_error *err);

/* Stop: waits up to cfg.shutdown_timeout_ms for live actors to finish
 * (their last turn runs terminate), then stops the workers and the
 * watchdog. Returns MSRT_E_OK, or MSRT_E_TIMEOUT when a worker is stuck
 * in an actor (the runtime is then left alone: the process is expected
 * to exit). */
msrt_code msrt_rt_stop(msrt_rt *rt);

/* A waker for a hub coroutine waiting for room (hub/inbox.h
 * msrt_inbox_waker: pass it msrt_inbox_wake and msrt_inbox_unwake): its
 * MSRT_IN_WAKE item's dispatch resumes coroutine wake_id
 * (lua/msrt/hub.lua). NULL when out of memory. */
void *msrt_rt_hub_waker(msrt_rt *rt, uint64_t wake_id);

/* Mark the calling worker's turn (actor id, 0 = idle) for the overload
 * watchdog (hub/watchdog.h). Worker threads. */
void msrt_rt_turn(msrt_rt *rt, int worker, uint64_t actor_id);

#endif
