/* Mailbox nodes (internal to src/sched; not part of the public API).
 *
 * An envelope may sit in several mailboxes at once (one publish, N
 * subscribers), so it cannot carry the queue link itself: each enqueue takes
 * one 16-byte node {next, env}. A thread hands nodes out in address order
 * from its current slab (1 KiB, 62 nodes, aligned to its size), fetching
 * lines ahead of need (asked for writing: GCC's default x86-64 target
 * makes that a plain prefetcht0; a build with -mprfchw read the same,
 * docs/performance.md); a slab counts its nodes not yet freed
 * (one atomic decrement a free), and the thread that frees its last node
 * keeps it, empty, for its own allocations, giving batches of 16 to a
 * shared pool (one mutex a batch) past 32. Why slabs in address order:
 * in fan-out one thread allocates and another frees, and a free list made
 * on the receiver's CPU sent the sender's allocations chasing links
 * through lines that CPU wrote last (~200 ns each when the two vCPUs are
 * far apart; it was the sender's largest cost, docs/performance.md), and
 * gave each mailbox nodes scattered over memory, so its pops chased too.
 * Here the sender's next nodes are known without reading memory, and one
 * mailbox's nodes lie a few lines apart in the order they are popped.
 * Slabs are never returned to the OS; the pool is bounded by the peak
 * number of queued messages in the process, plus one slab per mailbox lane
 * whose last popped node (its dummy) pins a slab otherwise free.
 *
 * Thread-safety: any thread. A thread's slabs go to the shared pool when
 * it exits (pthread key destructor); what it never handed out of its
 * current slab counts as freed then.
 */
#ifndef MSRT_SCHED_MNODE_H
#define MSRT_SCHED_MNODE_H

#include <stdatomic.h>

#include "core/envelope.h"

typedef struct msrt_mnode {
  _Atomic(struct msrt_mnode *) next;
  msrt_envelope *env; /* while queued */
} msrt_mnode;

/* A node with unspecified contents, or NULL when out of memory. */
msrt_mnode *msrt_mnode_alloc(void);
/* Give a node back (its slab is reused once all its nodes are). */
void msrt_mnode_free(msrt_mnode *n);

#endif
