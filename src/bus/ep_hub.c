/* The hub callback and time-stamp endpoint classes (bus/endpoints.h).
 * Neither is ever full nor holds a reference: a hub subscription is an id
 * the hub's Lua resolves, a stamp slot is freed by its subscriber after
 * the router's readers have left. */
#include <stdio.h>

#include "bus/bus.h"
#include "bus/endpoints.h"
#include "core/clock.h"

static msrt_push_outcome hub_push(void *ep, msrt_envelope *e,
                                  const msrt_evict_sink *evicted,
                                  msrt_bus *bus) {
  (void)evicted;
  msrt_inbox_item it = {MSRT_IN_DELIVER, (uint64_t)(uintptr_t)ep,
                        msrt_env_ref(e), NULL};
  return msrt_bus_to_hub(bus, it) == 0 ? MSRT_PUSH_DELIVERED
                                       : MSRT_PUSH_CLOSED;
}

/* A heartbeat: only when it came matters. */
static msrt_push_outcome stamp_push(void *ep, msrt_envelope *e,
                                    const msrt_evict_sink *evicted,
                                    msrt_bus *bus) {
  (void)e, (void)evicted, (void)bus;
  atomic_store_explicit((_Atomic uint64_t *)ep, msrt_now_ns(),
                        memory_order_relaxed);
  return MSRT_PUSH_DELIVERED;
}

static msrt_overflow never_full(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_DROP_NEWEST;
}

static void hub_name(void *ep, char *buf, size_t cap) {
  snprintf(buf, cap, "hub %llu", (unsigned long long)(uintptr_t)ep);
}

static void stamp_name(void *ep, char *buf, size_t cap) {
  snprintf(buf, cap, "stamp");
}

static const msrt_endpoint_class hub_class = {
  .class_name = "hub", .push = hub_push, .policy = never_full,
  .name = hub_name};

static const msrt_endpoint_class stamp_class = {
  .class_name = "stamp", .push = stamp_push, .policy = never_full,
  .name = stamp_name};

msrt_endpoint msrt_ep_hub(uint64_t hub_id) {
  return (msrt_endpoint){&hub_class, (void *)(uintptr_t)hub_id};
}

msrt_endpoint msrt_ep_stamp(_Atomic uint64_t *slot) {
  return (msrt_endpoint){&stamp_class, (void *)slot};
}
