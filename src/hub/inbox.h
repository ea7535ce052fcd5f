/* The hub's inbox: how other threads hand work to the hub thread.
 *
 * Workers push items (an envelope for a hub subscription, a reply for a
 * hub coroutine, a timer request from an actor...) and the hub drains them
 * in a uv_async callback (what the hub pushes itself, in a uv_idle
 * callback: no syscall), one batch (what was queued when it ran) per loop
 * iteration so that timers and I/O run between batches under a sustained
 * flood. Sends coalesce: a push wakes the hub only when no wake-up is
 * under way (none sent and not yet run, and the hub not draining: a
 * drain looks again before it returns), so a worker pushing while the
 * hub drains pays no syscall. A round that took fewer than 64 items and
 * left more from other threads waiting (a stream) is followed by a pause of at most 20 us,
 * until 64 wait, so a worker publishing slower than the hub drains keeps
 * its cache lines instead of losing them to a round every item or two
 * (inbox.c, "Pacing a stream"): an item waits at most 20 us more, and
 * only behind a stream; an idle hub never pauses. The inbox is a mutex-protected vector
 * swapped out whole by the drain: the hub is the control plane, and one
 * lock round per batch is cheaper here than a lock-free queue per item.
 *
 * Thread-safety: msrt_inbox_push from any thread; everything else on the
 * hub thread.
 */
#ifndef MSRT_HUB_INBOX_H
#define MSRT_HUB_INBOX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/envelope.h"
#include "core/error.h"

typedef struct {
  int kind;          /* what the drain callback should do; caller-defined */
  uint64_t target;   /* e.g. a subscription or request id */
  msrt_envelope *env;/* reference owned by the item; may be NULL */
  void *ptr;         /* caller-defined */
} msrt_inbox_item;

typedef struct msrt_inbox msrt_inbox;

/* Called on the hub thread with every item pushed since the last drain,
 * in push order. The callback owns the items' envelope references. */
typedef void (*msrt_inbox_drain_fn)(msrt_inbox_item *items, size_t n,
                                    void *ud);

/* Make an inbox on loop; its async handle is unreferenced (an inbox alone
 * never keeps the loop alive) and tagged for the hub (MSRT_HANDLE_MAGIC).
 * Call it on the thread that runs loop: the pacing tells that thread's
 * own pushes (what the hub publishes to itself) from the workers'.
 * Returns NULL when out of memory or when libuv fails. */
msrt_inbox *msrt_inbox_new(uv_loop_t *loop, msrt_inbox_drain_fn fn, void *ud);

/* Queue one item and wake the hub. Returns MSRT_E_OK; MSRT_E_NOMEM, or
 * MSRT_E_CLOSED after msrt_inbox_close (the caller keeps its envelope
 * reference then). */
msrt_code msrt_inbox_push(msrt_inbox *in, msrt_inbox_item item);

/* msrt_inbox_push for a lone item the hub should take at once rather than
 * wait to batch with a stream's: a drain pausing after a round (inbox.c,
 * "Pacing a stream") stops pausing. For a completion another thread
 * hands the hub while it works (a queue writer's commit is done, which
 * the hub then took ~20 us late in about one flush of ten). Any thread;
 * returns as msrt_inbox_push. */
msrt_code msrt_inbox_push_now(msrt_inbox *in, msrt_inbox_item item);

/* An item with memory of its own, for what must reach the hub even when
 * memory has run out (an actor's exit, whose waiters would otherwise wait
 * forever): made ahead, while there is memory. */
typedef struct msrt_inbox_node {
  msrt_inbox_item item;
  struct msrt_inbox_node *next;
} msrt_inbox_node;

/* A node (zeroed), or NULL when out of memory; free one never pushed with
 * msrt_inbox_node_free (NULL is ignored). Any thread. */
msrt_inbox_node *msrt_inbox_node_new(void);
void msrt_inbox_node_free(msrt_inbox_node *node);

/* Queue node->item and wake the hub, as msrt_inbox_push, taking the node:
 * when the vector cannot grow the node itself is queued (after what is
 * queued already), so this never fails for memory. Returns MSRT_E_OK,
 * or MSRT_E_CLOSED after msrt_inbox_close (the node is freed, the caller
 * keeps its envelope reference). */
msrt_code msrt_inbox_push_node(msrt_inbox *in, msrt_inbox_node *node);

/* A one-shot waker that hands item to the hub: the waker and unwait pair
 * of a sender waiting for room (core/waitlist.h, bus/bus.h
 * msrt_bus_pending_wait), so that what wakes it needs no global to find
 * the hub. Returns the waker's ud, or NULL when out of memory; then
 * exactly one of msrt_inbox_wake(ud) (queues item as msrt_inbox_push
 * does, and frees ud) or msrt_inbox_unwake(ud) (frees ud, queues
 * nothing) must be called. The item's envelope reference, if any, goes
 * with it (released when it cannot be queued or is unwoken). The inbox
 * must outlive ud. Any thread. */
void *msrt_inbox_waker(msrt_inbox *in, msrt_inbox_item item);
void msrt_inbox_wake(void *ud);
void msrt_inbox_unwake(void *ud);

/* Whether the inbox keeps the loop alive (its handle referenced) or not
 * (the default). Hub thread. */
void msrt_inbox_keep_alive(msrt_inbox *in, int on);

/* Items pushed and not yet drained (approximate; for metrics). */
size_t msrt_inbox_depth(msrt_inbox *in);

/* Drain now until the inbox is empty (hub thread), without waiting for the
 * async callback. Does nothing inside a drain (a callback of this inbox). */
void msrt_inbox_drain(msrt_inbox *in);

/* Drain as the async callback does: batches until the inbox is empty or
 * 10 ms have passed (what is left runs after the loop's timers and I/O).
 * For a timer that must not act before work already queued (a request
 * timeout when its reply may be waiting here). Hub thread; does nothing
 * inside a drain. */
void msrt_inbox_drain_some(msrt_inbox *in);

/* Refuse further pushes, drop queued items (unref their envelopes), close
 * the handle. The inbox itself stays: other threads (a bridge's libnats
 * callbacks, an abandoned worker) may still hold it and push, and are
 * refused with MSRT_E_CLOSED; msrt_inbox_depth answers 0. Hub thread. */
void msrt_inbox_close(msrt_inbox *in);

/* Free a closed inbox once nothing else can reach it and its close
 * callback has run (the loop ran after msrt_inbox_close, e.g. in
 * msrt_hub_close_all). The runtime never frees its own: it lives for the
 * process. NULL is ignored. Hub thread. */
void msrt_inbox_free(msrt_inbox *in);

#endif
