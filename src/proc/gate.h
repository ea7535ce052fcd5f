/* A process's stdin gate: the bound of its stdin queue, shared by every
 * thread that publishes to it.
 *
 * A message routed to a process is written to its stdin by the hub, but
 * published on any thread (a worker running an actor, or the hub). So that
 * a full queue meets the sender's overflow policy where the sender is (an
 * `error` refusal it hears, a `block` wait it does), the publishing thread
 * takes a slot of the gate before handing the message to the hub; the slot
 * is held while the line travels through the hub inbox, waits in the stdin
 * queue and is written, and given back once the write completed (or the
 * line was dropped, or could not be written).
 *
 *   count     slots held (lines in transit, queued or in flight); a take
 *             is one seq_cst fetch_add, so the fast path is lock-free
 *   bytes     the bytes those lines hold (a take adds its own, one more
 *             fetch_add)
 *   capacity  the bounds (the process spec's stdin_capacity, in lines, and
 *             stdin_bytes, in bytes)
 *   policy    the overflow policy of the process's stdin:
 *               DROP_NEWEST / ERROR / BLOCK: a take fails while capacity
 *                 lines or stdin_bytes bytes are held (the caller drops,
 *                 refuses or waits); so the queue holds at most
 *                 stdin_bytes plus one line, and a line larger than the
 *                 bound still goes in when nothing else is held;
 *               DROP_OLDEST: a take always succeeds; the stdin queue evicts
 *                 its oldest lines while it is over either bound
 *   waiters   `block` senders waiting for room (core/waitlist.h)
 *   closed    once the process's stdin closed (exit, stop, release): takes
 *             fail with MSRT_E_CLOSED and waiters are woken
 *
 * Lifetime: reference counted. The process holds one (made by
 * msrt_gate_new); a router subscription of the process holds one, given
 * back after the router's readers have left (msrt_router_defer); a blocked
 * publish holds one while it waits. So a gate outlives its process for as
 * long as a publisher may still look at it, and a late publisher finds it
 * closed.
 *
 * Thread-safety: every function from any thread, except where said.
 */
#ifndef MSRT_PROC_GATE_H
#define MSRT_PROC_GATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/overflow.h"
#include "core/waitlist.h" /* MSRT_WAIT_PENDING */

typedef struct msrt_gate msrt_gate;

/* What a sender did on meeting a full gate (msrt_gate_note), kept for the
 * process's stats. */
typedef enum {
  MSRT_GATE_DROPPED, /* drop_newest on the publishing thread */
  MSRT_GATE_REFUSED, /* `error`: returned to the sender as mailbox_full */
  MSRT_GATE_BLOCKED  /* `block`: the sender waited for room */
} msrt_gate_note_kind;

typedef struct {
  uint64_t dropped, refused, blocked; /* msrt_gate_note counts */
} msrt_gate_stats;

/* Default byte bound of a gate (16 MiB). */
#define MSRT_GATE_DEFAULT_BYTES ((size_t)16 << 20)

/* A gate of capacity slots (1..2^31; 0 = 1024) and max_bytes bytes (0 =
 * MSRT_GATE_DEFAULT_BYTES) with policy (never MSRT_OVERFLOW_DEFAULT) for
 * process proc_id named name (copied, cut to 63 bytes; for drop notices).
 * Holds one reference for the caller. Returns NULL when out of memory. */
msrt_gate *msrt_gate_new(size_t capacity, size_t max_bytes,
                         msrt_overflow policy, uint64_t proc_id,
                         const char *name);

/* Reference counting; the last unref frees the gate and drops waiters
 * still registered without calling them. unref of NULL is ignored. */
void msrt_gate_ref(msrt_gate *g);
void msrt_gate_unref(msrt_gate *g);

/* Take one slot for a line of `bytes` bytes. Returns MSRT_E_OK (taken:
 * give it back with msrt_gate_give, with the same bytes, once the line is
 * written or lost), MSRT_E_MAILBOX_FULL (capacity slots or max_bytes
 * bytes are held; nothing taken; never for DROP_OLDEST) or MSRT_E_CLOSED.
 * Lock-free. */
msrt_code msrt_gate_take(msrt_gate *g, size_t bytes);

/* Give back n slots holding `bytes` bytes in all, and wake the waiters
 * when that left room. */
void msrt_gate_give(msrt_gate *g, size_t n, size_t bytes);

/* A held slot's line turned out to be `now` bytes instead of the `was`
 * it was taken with (the publisher counted the message, the hub built the
 * line): correct the count, whatever the bound (the line is there). */
void msrt_gate_recharge(msrt_gate *g, size_t was, size_t now);

/* Register a one-shot waker, called (on the thread that gives room back,
 * or closes the gate) once a slot is free or the gate closed. Returns
 * MSRT_WAIT_PENDING (registered), MSRT_E_OK (room now: take again),
 * MSRT_E_CLOSED, or MSRT_E_NOMEM. */
int msrt_gate_wait_room(msrt_gate *g, void (*waker)(void *ud), void *ud);

/* Cancel a registration (same waker and ud): true when it was removed (the
 * waker will not be called), false when it is not there (already called,
 * being called, or never registered). */
bool msrt_gate_cancel_wait(msrt_gate *g, void (*waker)(void *ud), void *ud);

/* Close: takes fail with MSRT_E_CLOSED from now on and the waiters are
 * woken (their retries meet the closed gate). Idempotent. */
void msrt_gate_close(msrt_gate *g);

/* Count one event of kind (relaxed; for stats). */
void msrt_gate_note(msrt_gate *g, msrt_gate_note_kind kind);

/* Snapshot of the notes. */
void msrt_gate_get_stats(const msrt_gate *g, msrt_gate_stats *st);

/* Constant for the gate's life. */
msrt_overflow msrt_gate_policy(const msrt_gate *g);
size_t msrt_gate_capacity(const msrt_gate *g);
size_t msrt_gate_max_bytes(const msrt_gate *g);
uint64_t msrt_gate_proc_id(const msrt_gate *g);
const char *msrt_gate_name(const msrt_gate *g);

/* Slots and bytes held now (snapshots), and whether either reaches its
 * bound (a queue-group member to skip when another can take the
 * message). */
size_t msrt_gate_count(const msrt_gate *g);
size_t msrt_gate_bytes(const msrt_gate *g);
int msrt_gate_full(const msrt_gate *g);

#endif
