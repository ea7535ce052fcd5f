/* Senders waiting for room in a bounded queue (an actor's mailbox, a
 * process's stdin gate): a list of one-shot wakers, each called once when
 * room appears or the queue closes.
 *
 * No lost wake-up, by this contract between the two sides:
 *   - whoever frees room does a seq_cst RMW on the queue's counter, then
 *     msrt_waitlist_any (a seq_cst load), and msrt_waitlist_wake when it
 *     says someone waits;
 *   - a waiter registers through msrt_waitlist_wait, which stores the
 *     registration seq_cst and then asks the queue again (its check must
 *     read the counter and the closed flag seq_cst).
 * In the single total order of seq_cst operations one side sees the other.
 *
 * The list itself is a small spinlock around a singly linked list: it is
 * touched only when a sender has to wait, never on the fast path (which is
 * the msrt_waitlist_any load).
 *
 * Thread-safety: every function from any thread.
 */
#ifndef MSRT_CORE_WAITLIST_H
#define MSRT_CORE_WAITLIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* msrt_waitlist_wait (and the queues' wait_room): registered, the waker
 * will be called. */
#define MSRT_WAIT_PENDING (-1)

typedef struct msrt_waiter msrt_waiter;

typedef struct {
  _Atomic(msrt_waiter *) head;
  atomic_uchar lock;
} msrt_waitlist;

/* An empty list (a zeroed one is empty too). */
void msrt_waitlist_init(msrt_waitlist *w);

/* Whether anyone waits (seq_cst load; see the contract above). */
static inline bool msrt_waitlist_any(msrt_waitlist *w) {
  return atomic_load_explicit(&w->head, memory_order_seq_cst) != NULL;
}

/* Register fn(ud), the queue being full: check(obj) is asked first and
 * again once the registration is visible, and returns MSRT_E_OK (room
 * now), MSRT_E_CLOSED, or MSRT_WAIT_PENDING (full and open). Returns what
 * check said when it was not MSRT_WAIT_PENDING (nothing stays registered),
 * MSRT_WAIT_PENDING (fn will be called exactly once, on the thread that
 * wakes the list, unless cancelled), or MSRT_E_NOMEM. fn must not wait on
 * the same list synchronously. */
int msrt_waitlist_wait(msrt_waitlist *w, int (*check)(void *obj), void *obj,
                       void (*fn)(void *ud), void *ud);

/* Remove the registration of fn(ud). Returns true when it was removed (fn
 * will not be called), false when it is not there (already called, being
 * called, or never registered): an answer, not a failure. */
bool msrt_waitlist_cancel(msrt_waitlist *w, void (*fn)(void *ud), void *ud);

/* Call every registered waker once (on this thread) and empty the list. */
void msrt_waitlist_wake(msrt_waitlist *w);

/* Drop every registration without calling it (the queue is being freed). */
void msrt_waitlist_free(msrt_waitlist *w);

#endif
