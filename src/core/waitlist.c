#include "core/waitlist.h"

#include <stdlib.h>

#include "core/error.h"
#include "core/spin.h"

struct msrt_waiter {
  msrt_waiter *next;
  void (*fn)(void *);
  void *ud;
};


void msrt_waitlist_init(msrt_waitlist *w) {
  atomic_init(&w->head, NULL);
  atomic_init(&w->lock, 0);
}

static int add(msrt_waitlist *w, void (*fn)(void *), void *ud) {
  msrt_waiter *n = malloc(sizeof *n);
  if (!n) return MSRT_E_NOMEM;
  n->fn = fn;
  n->ud = ud;
  msrt_spin_lock(&w->lock);
  n->next = atomic_load_explicit(&w->head, memory_order_relaxed);
  /* seq_cst: the store the freer's msrt_waitlist_any must see */
  atomic_store_explicit(&w->head, n, memory_order_seq_cst);
  msrt_spin_unlock(&w->lock);
  return 0;
}

int msrt_waitlist_wait(msrt_waitlist *w, int (*check)(void *), void *obj,
                       void (*fn)(void *), void *ud) {
  int r = check(obj);
  if (r != MSRT_WAIT_PENDING) return r;
  if (add(w, fn, ud) != 0) return MSRT_E_NOMEM;
  /* room made (or the queue closed) between the check and the add: the
   * freer may have looked at the list before the add was visible */
  r = check(obj);
  if (r != MSRT_WAIT_PENDING && msrt_waitlist_cancel(w, fn, ud)) return r;
  return MSRT_WAIT_PENDING;
}

bool msrt_waitlist_cancel(msrt_waitlist *w, void (*fn)(void *), void *ud) {
  msrt_waiter *found = NULL;
  msrt_spin_lock(&w->lock);
  msrt_waiter *prev = NULL, *n = atomic_load_explicit(&w->head, memory_order_relaxed);
  for (; n; prev = n, n = n->next) {
    if (n->fn == fn && n->ud == ud) {
      if (prev) prev->next = n->next;
      else atomic_store_explicit(&w->head, n->next, memory_order_relaxed);
      found = n;
      break;
    }
  }
  msrt_spin_unlock(&w->lock);
  free(found);
  return found != NULL;
}

/* Take the whole list out under the lock. */
static msrt_waiter *take_all(msrt_waitlist *w) {
  if (!msrt_waitlist_any(w)) return NULL;
  msrt_spin_lock(&w->lock);
  msrt_waiter *n = atomic_load_explicit(&w->head, memory_order_relaxed);
  atomic_store_explicit(&w->head, NULL, memory_order_relaxed);
  msrt_spin_unlock(&w->lock);
  return n;
}

void msrt_waitlist_wake(msrt_waitlist *w) {
  for (msrt_waiter *n = take_all(w), *next; n; n = next) {
    next = n->next;
    n->fn(n->ud);
    free(n);
  }
}

void msrt_waitlist_free(msrt_waitlist *w) {
  for (msrt_waiter *n = take_all(w), *next; n; n = next) {
    next = n->next;
    free(n);
  }
}
