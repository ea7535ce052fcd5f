/* The actor mailbox and sys lane endpoint classes (bus/endpoints.h). */
#include <stdio.h>

#include "bus/endpoints.h"
#include "core/error.h"

static msrt_push_outcome outcome(int r) {
  if (r == MSRT_E_MAILBOX_FULL) return MSRT_PUSH_FULL;
  return r == MSRT_E_CLOSED ? MSRT_PUSH_CLOSED : MSRT_PUSH_FAILED;
}

static msrt_push_outcome mailbox_push(void *ep, msrt_envelope *e,
                                      const msrt_evict_sink *evicted,
                                      msrt_bus *bus) {
  (void)bus;
  msrt_offered what;
  int r = msrt_actor_offer(ep, e, evicted, &what);
  if (r != MSRT_E_OK) return outcome(r);
  if (what == MSRT_OFFER_DROPPED_NEWEST) return MSRT_PUSH_DROPPED_NEWEST;
  return what == MSRT_OFFER_EVICTED ? MSRT_PUSH_DROPPED_OLDEST
                                    : MSRT_PUSH_DELIVERED;
}

static msrt_push_outcome sys_push(void *ep, msrt_envelope *e,
                                  const msrt_evict_sink *evicted,
                                  msrt_bus *bus) {
  (void)evicted, (void)bus;
  int r = msrt_actor_push_sys(ep, e);
  return r == MSRT_E_OK ? MSRT_PUSH_DELIVERED : outcome(r);
}

static void cell_ref(void *ep) { msrt_actor_ref(ep); }
static void cell_unref(void *ep) { msrt_actor_unref(ep); }
static msrt_overflow cell_policy(void *ep) { return msrt_actor_policy(ep); }

static bool mailbox_full(void *ep) { return msrt_actor_full(ep); }

static int cell_wait_room(void *ep, void (*waker)(void *), void *ud) {
  return msrt_actor_wait_room(ep, waker, ud);
}

static bool cell_cancel_wait(void *ep, void (*waker)(void *), void *ud) {
  return msrt_actor_cancel_wait(ep, waker, ud);
}

static void cell_name(void *ep, char *buf, size_t cap) {
  snprintf(buf, cap, "%llu", (unsigned long long)msrt_actor_id(ep));
}

static const msrt_endpoint_class mailbox_class = {
  .class_name = "actor", .push = mailbox_push, .ref = cell_ref,
  .unref = cell_unref, .policy = cell_policy, .full = mailbox_full,
  .wait_room = cell_wait_room, .cancel_wait = cell_cancel_wait,
  .name = cell_name};

/* The sys lane is unbounded: never full, so never waited for. */
static const msrt_endpoint_class sys_class = {
  .class_name = "actor sys", .push = sys_push, .ref = cell_ref,
  .unref = cell_unref, .policy = cell_policy, .name = cell_name};

msrt_endpoint msrt_ep_actor(msrt_actor *cell) {
  return (msrt_endpoint){&mailbox_class, cell};
}

msrt_endpoint msrt_ep_sys(msrt_actor *cell) {
  return (msrt_endpoint){&sys_class, cell};
}
