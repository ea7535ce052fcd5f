/* The overload watchdog (docs/architecture.md "Threads and the path of a
 * message"): each worker marks the actor whose turn it runs; a timer on
 * the hub loop, every slice_ms / 2 (at least 5 ms), reports each turn that
 * has lasted longer than slice_ms, once per turn, as an item in the hub's
 * inbox: {kind, actor id, NULL, (void *)(uintptr_t)ms the turn had run}.
 *
 * Thread-safety: msrt_watchdog_turn from any thread (one worker per slot);
 * the rest on the loop's thread. */
#ifndef MSRT_HUB_WATCHDOG_H
#define MSRT_HUB_WATCHDOG_H

#include <stdint.h>
#include <uv.h>

#include "hub/inbox.h"

/* The most workers a watchdog watches. */
#define MSRT_WATCHDOG_MAX 256

typedef struct msrt_watchdog msrt_watchdog;

/* A watchdog of workers (1..MSRT_WATCHDOG_MAX) on loop, reporting to inbox
 * (borrowed; must outlive it) with items of kind; its timer runs
 * unreferenced (it never keeps the loop alive) and is tagged
 * MSRT_HANDLE_MAGIC. slice_ms > 0. NULL when out of memory, workers is out
 * of range or libuv fails. */
msrt_watchdog *msrt_watchdog_new(uv_loop_t *loop, msrt_inbox *inbox, int kind,
                                 int workers, long slice_ms);

/* Worker `worker` begins a turn of actor actor_id now, or is idle
 * (actor_id 0). A worker outside 0..workers-1 is ignored. Any thread. */
void msrt_watchdog_turn(msrt_watchdog *w, int worker, uint64_t actor_id);

/* Check now, as the timer does. */
void msrt_watchdog_check(msrt_watchdog *w);

/* Stop the timer and free the watchdog (on the close callback). No worker
 * may mark a turn during or after the call. NULL is ignored. */
void msrt_watchdog_close(msrt_watchdog *w);

#endif
