/* The process stdin endpoint class (bus/endpoints.h): a copy for a
 * process's stdin takes a slot of its gate on the publishing thread, so a
 * full queue meets the sender's policy where the sender is, then goes to
 * the hub, which writes it and gives the slot back. */
#include <stdio.h>

#include "bus/bus.h"
#include "bus/endpoints.h"
#include "core/error.h"

static msrt_push_outcome gate_push(void *ep, msrt_envelope *e,
                                   const msrt_evict_sink *evicted,
                                   msrt_bus *bus) {
  (void)evicted;
  msrt_gate *g = ep;
  int r = msrt_gate_take(g, msrt_env_size(e));
  if (r == MSRT_E_MAILBOX_FULL &&
      msrt_gate_policy(g) == MSRT_OVERFLOW_DROP_NEWEST) {
    msrt_gate_note(g, MSRT_GATE_DROPPED);
    return MSRT_PUSH_DROPPED_NEWEST;
  }
  if (r == MSRT_E_MAILBOX_FULL) return MSRT_PUSH_FULL;
  if (r != MSRT_E_OK)
    return r == MSRT_E_CLOSED ? MSRT_PUSH_CLOSED : MSRT_PUSH_FAILED;
  msrt_inbox_item it = {MSRT_IN_PROC, msrt_gate_proc_id(g), msrt_env_ref(e),
                        NULL};
  if (msrt_bus_to_hub(bus, it) == 0) return MSRT_PUSH_DELIVERED;
  msrt_gate_give(g, 1, msrt_env_size(e));
  return MSRT_PUSH_CLOSED;
}

static void gate_ref(void *ep) { msrt_gate_ref(ep); }
static void gate_unref(void *ep) { msrt_gate_unref(ep); }
static msrt_overflow gate_policy(void *ep) { return msrt_gate_policy(ep); }
static bool gate_full(void *ep) { return msrt_gate_full(ep); }

static int gate_wait_room(void *ep, void (*waker)(void *), void *ud) {
  return msrt_gate_wait_room(ep, waker, ud);
}

static bool gate_cancel_wait(void *ep, void (*waker)(void *), void *ud) {
  return msrt_gate_cancel_wait(ep, waker, ud);
}

static void gate_name(void *ep, char *buf, size_t cap) {
  snprintf(buf, cap, "process %s", msrt_gate_name(ep));
}

/* The process's stats agree with the router's: what became of each line
 * that met a full stdin. */
static void gate_note(void *ep, msrt_full_note what) {
  msrt_gate_note(ep, what == MSRT_FULL_BLOCKED ? MSRT_GATE_BLOCKED
                                               : MSRT_GATE_REFUSED);
}

static const msrt_endpoint_class gate_class = {
  .class_name = "process", .push = gate_push, .ref = gate_ref,
  .unref = gate_unref, .policy = gate_policy, .full = gate_full,
  .wait_room = gate_wait_room, .cancel_wait = gate_cancel_wait,
  .name = gate_name, .note = gate_note};

msrt_endpoint msrt_ep_gate(msrt_gate *gate) {
  return (msrt_endpoint){&gate_class, gate};
}
