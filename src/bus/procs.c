#include "bus/procs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/internal.h"

/* A publish from a child waiting for room in `block` mailboxes: the
 * child's stdout is paused meanwhile (msrt_proc_pause_output). */
typedef struct {
  msrt_bus_pending pend;
} out_wait;

/* The thread that makes room asks the hub to retry: an MSRT_IN_PROC item
 * without an envelope (hub/inbox.h's waker). With no memory for the
 * waker, or room already, the item is queued now: the retry comes from
 * the inbox, not recursively. */
static void wait_room(msrt_bus *bus, msrt_proc *p, out_wait *w) {
  msrt_inbox_item it = {MSRT_IN_PROC, msrt_proc_id(p), NULL, NULL};
  void *waker = msrt_inbox_waker(msrt_bus_inbox(bus), it);
  if (waker && msrt_bus_pending_wait(&w->pend, msrt_inbox_wake,
                                     msrt_inbox_unwake, waker) ==
                   MSRT_WAIT_PENDING)
    return;
  if (waker) msrt_inbox_unwake(waker);
  msrt_bus_to_hub(bus, it);
}

msrt_code msrt_bus_proc_publish(msrt_bus *bus, msrt_proc *p, const char *s,
                                size_t sl, const char *r, size_t rl,
                                const void *h, size_t hl, const void *pl,
                                size_t plen, msrt_error *err) {
  out_wait *w = msrt_proc_ud(p);
  if (!w && !(w = calloc(1, sizeof *w)))
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  msrt_proc_set_ud(p, w);
  msrt_envelope *e = msrt_bus_make(bus, s, sl, r, rl, h, hl, pl, plen,
                                   MSRT_PRIORITY_DEFAULT, 0, err);
  if (!e) return err->code;
  size_t delivered;
  /* permissions apply after routing too (msrt_bus_publish_as) */
  msrt_code rc = msrt_bus_publish_as(bus, e, msrt_proc_permits, p, &delivered,
                                     &w->pend, err);
  msrt_env_unref(e);
  if (rc == MSRT_E_MAILBOX_FULL && w->pend.n) { /* full `block` mailboxes */
    msrt_proc_pause_output(p);
    wait_room(bus, p, w);
    return MSRT_E_OK;
  }
  if (rc == MSRT_E_OK && r && delivered == 0) /* a request nobody takes */
    return msrt_error_set(err, MSRT_E_NO_RESPONDERS, "no responders for "
                          "\"%.*s\"", (int)(sl > 200 ? 200 : sl), s);
  return rc;
}

/* The retry: deliver what is still pending, then read on. */
static void retry_output(msrt_bus *bus, msrt_proc *p) {
  out_wait *w = msrt_proc_ud(p);
  if (!w) return;
  if (msrt_bus_pending_retry(bus, &w->pend) == MSRT_E_MAILBOX_FULL) {
    wait_room(bus, p, w);
    return;
  }
  msrt_proc_resume_output(p);
}

msrt_code msrt_bus_proc_item(msrt_bus *bus, msrt_proc *p, msrt_envelope *e,
                             msrt_error *err) {
  if (!e) {
    if (p) retry_output(bus, p);
    return MSRT_E_OK;
  }
  /* a process not found was released: its gate is closed, the slot moot */
  msrt_code rc = p ? msrt_proc_send_env(p, e, true, err)
                   : msrt_error_set(err, MSRT_E_CLOSED, "the process is gone");
  if (rc != MSRT_E_OK && rc != MSRT_E_MAILBOX_FULL)
    msrt_bus_undeliver(bus, e, rc == MSRT_E_CLOSED ? MSRT_STAT_DROP_CLOSED
                                                   : MSRT_STAT_DROP_OTHER);
  msrt_env_unref(e);
  return rc;
}

void msrt_bus_proc_dropped(msrt_bus *bus, msrt_proc *p, const char *reason,
                           const msrt_envelope *e) {
  if (!e) return;
  msrt_bus_undeliver(bus, e, strcmp(reason, "drop_oldest") == 0
                                 ? MSRT_STAT_DROP_OLDEST
                                 : MSRT_STAT_DROP_NEWEST);
  char who[160];
  snprintf(who, sizeof who, "process %s", msrt_proc_name(p));
  msrt_bus_drop_notice(bus, e, reason, who);
}

void msrt_bus_proc_release(msrt_bus *bus, msrt_proc *p) {
  out_wait *w = msrt_proc_ud(p);
  if (!w) return;
  if (bus) msrt_bus_pending_clear(bus, &w->pend); /* undelivered: refused */
  free(w);
  msrt_proc_set_ud(p, NULL);
}
