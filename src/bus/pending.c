/* Blocked publishes (bus/bus.h msrt_bus_pending_*): the copies a publish
 * could not hand to full `block` endpoints, retried when room comes. */
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "bus/internal.h"

/* Count n copies of e in outcome s, in e's subject class. */
static void count(msrt_bus *bus, const msrt_envelope *e, msrt_stat s,
                  uint64_t n) {
  msrt_bus_count(bus, msrt_bus_class(bus, e->subject, e->subject_len), s, n);
}

/* Take back the waker msrt_bus_pending_wait registered, unless it fired
 * (then it cannot fire again: it was one-shot). */
static void cancel_wait(msrt_bus_pending *p) {
  if (!p->waker) return;
  msrt_endpoint w = p->wait_ep;
  if (w.cls->cancel_wait(w.ep, p->waker, p->waker_ud) && p->unwait)
    p->unwait(p->waker_ud); /* it will not fire */
  p->waker = NULL;
}

/* The evict sink of a retry: only `block` endpoints are retried, and they
 * never evict. */
static void never(void *ud, msrt_envelope *old) { (void)ud, (void)old; }
static const msrt_evict_sink no_evictions = {never, NULL};

/* Where a retried copy ends (`block` endpoints never drop). */
static msrt_stat retried(msrt_push_outcome o) {
  if (o == MSRT_PUSH_DELIVERED) return MSRT_STAT_DELIVERED;
  return o == MSRT_PUSH_CLOSED ? MSRT_STAT_DROP_CLOSED : MSRT_STAT_DROP_OTHER;
}

msrt_code msrt_bus_pending_retry(msrt_bus *bus, msrt_bus_pending *p) {
  size_t keep = 0;
  cancel_wait(p);
  for (size_t i = 0; i < p->n; i++) {
    msrt_endpoint ep = p->items[i];
    msrt_push_outcome o = ep.cls->push(ep.ep, p->env, &no_evictions, bus);
    if (o == MSRT_PUSH_FULL) {
      p->items[keep++] = ep;
      continue;
    }
    if (o == MSRT_PUSH_DELIVERED) p->delivered++;
    count(bus, p->env, retried(o), 1);
    if (ep.cls->unref) ep.cls->unref(ep.ep);
  }
  p->n = keep;
  if (keep) return MSRT_E_MAILBOX_FULL;
  msrt_env_unref(p->env);
  p->env = NULL;
  return MSRT_E_OK;
}

bool msrt_bus_pending_refused(msrt_bus_pending *p, msrt_error *err) {
  if (!p->refused) return false;
  *err = p->refusal;
  p->refused = 0;
  return true;
}

int msrt_bus_pending_wait(msrt_bus_pending *p, void (*waker)(void *),
                          void (*unwait)(void *), void *ud) {
  if (!p->n) return MSRT_E_OK;
  cancel_wait(p);
  msrt_endpoint ep = p->items[0];
  int r = ep.cls->wait_room(ep.ep, waker, ud);
  if (r == MSRT_WAIT_PENDING) {
    p->waker = waker;
    p->unwait = unwait;
    p->waker_ud = ud;
    p->wait_ep = ep;
  }
  return r;
}

void msrt_bus_pending_clear(msrt_bus *bus, msrt_bus_pending *p) {
  cancel_wait(p);
  if (p->n) count(bus, p->env, MSRT_STAT_REFUSED, p->n);
  for (size_t i = 0; i < p->n; i++) {
    msrt_endpoint ep = p->items[i];
    if (ep.cls->note) ep.cls->note(ep.ep, MSRT_FULL_REFUSED);
    if (ep.cls->unref) ep.cls->unref(ep.ep);
  }
  free(p->items);
  msrt_env_unref(p->env);
  memset(p, 0, sizeof *p);
}
