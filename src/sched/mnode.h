/* Mailbox nodes (internal to src/sched; not part of the public API).
 *
 * An envelope may sit in several mailboxes at once (one publish, N
 * subscribers), so it cannot carry the queue link itself: each enqueue takes
 * one 16-byte node {next, env}. Nodes come from a process-wide pool with a
 * per-thread cache, so the hot path is a pointer pop/push on thread-local
 * memory; whole batches of nodes move between threads through a mutex
 * (one lock per MSRT_MNODE_BATCH nodes). This matters because in the
 * one-way case the producer thread allocates and the consumer thread frees.
 * Slabs are never returned to the OS; the pool is bounded by the peak number
 * of queued messages in the process.
 *
 * Thread-safety: any thread. A thread's cache is handed back to the shared
 * pool when the thread exits (pthread key destructor).
 */
#ifndef MSRT_SCHED_MNODE_H
#define MSRT_SCHED_MNODE_H

#include <stdatomic.h>

#include "core/envelope.h"

typedef struct msrt_mnode {
  _Atomic(struct msrt_mnode *) next;
  union {
    msrt_envelope *env;             /* while queued */
    struct msrt_mnode *batch_next;  /* while in the shared pool */
  };
} msrt_mnode;

/* A node with unspecified contents, or NULL when out of memory. */
msrt_mnode *msrt_mnode_alloc(void);
/* Give a node back (to the calling thread's cache). */
void msrt_mnode_free(msrt_mnode *n);

#endif
