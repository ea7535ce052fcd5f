/* The actor scheduler (docs/architecture.md "Threads and the path of a message").
 *
 * Pure C: knows nothing of Lua, uses only src/core, libc and pthreads.
 * An actor here is a C cell: a mailbox, scheduling state and a user pointer
 * (the Lua layer hangs its lua_State there). N worker threads run actors:
 * an actor with an eligible message is queued exactly once; a worker gives it
 * one turn (the run callback pops at most `batch` messages), then it goes
 * back to idle or to the back of a queue.
 *
 * MAILBOX. Three lanes per actor, each a lock-free MPSC queue (Vyukov's
 * linked queue; push = one XCHG + one store) of 16-byte nodes {next, env}
 * taken from a per-thread node cache (an envelope can sit in several
 * mailboxes, so it cannot carry the link itself):
 *   sys  : unbounded, never dropped, eligible even while the actor WAITs
 *          (replies, timers, wake-ups, stop);
 *   high : envelopes with priority 1..3;
 *   low  : envelopes with priority 4..10.
 * high and low together form the "normal mailbox", bounded by `capacity`
 * messages and by a byte bound (msrt_env_size of each message; one atomic
 * counter each). A message is admitted while fewer than `capacity`
 * messages and fewer than the byte bound's bytes are queued, so a mailbox
 * holds at most the byte bound plus one message (a message larger than
 * the bound still goes into an empty mailbox: nothing could ever make room
 * for it). Past either bound the actor's overflow policy applies:
 *   BLOCK       : push returns MSRT_E_MAILBOX_FULL and enqueues nothing;
 *                 the sender registers msrt_actor_wait_room() and retries
 *                 when woken;
 *   ERROR       : push returns MSRT_E_MAILBOX_FULL (nothing enqueued);
 *   DROP_NEWEST : push returns MSRT_E_OK, the new envelope is not enqueued,
 *                 and says so (MSRT_OFFER_DROPPED_NEWEST);
 *   DROP_OLDEST : the oldest low-lane message (or, when the low lane is
 *                 empty, the oldest high-lane message) is evicted and given
 *                 to the pusher's evict sink, again until
 *                 both bounds leave room (a large message can evict
 *                 several small ones); the new one is
 *                 enqueued. Actors with this policy take a tiny per-actor
 *                 spinlock on pop (the evicting producer becomes a consumer
 *                 for one pop); the other policies never lock.
 * The bound may be exceeded transiently by at most the number of pushes in
 * progress at the same instant (a reservation is taken, then given back).
 * Every drop and refusal is counted (msrt_sched_stats).
 * When a popped message frees its slot: for DROP_OLDEST, DROP_NEWEST and
 * ERROR at the pop; for
 * BLOCK at the end of the consumer's turn (one contended atomic per turn
 * instead of per message; measured 1->1 flood 6-18 M/s -> 14-15 M/s), so
 * a BLOCK mailbox counts the messages of the turn in progress and its room
 * waiters are woken when that turn ends.
 *
 * PRIORITY. msrt_actor_pop serves sys first, then high before low, but
 * after MSRT_SCHED_HIGH_BURST (8) high messages in a row while the low lane
 * is non-empty it serves one low message: low gets at least 1/9 of the
 * service under sustained high traffic, never starves. Within a lane and
 * per sender, order is FIFO. (Ordering between lanes is by priority, so a
 * sender mixing priorities sees them reordered, by design.)
 *
 * SCHEDULING. Actor state is one atomic word (scheduled / waiting / notified
 * / closed bits). A push links the node, then CASes idle->scheduled and
 * queues the actor (exactly once); if the actor is already scheduled or
 * running it only sets `notified` (one CAS, then plain loads while it stays
 * set). After a turn the worker, still owning the actor, re-checks the
 * lanes and CASes back to idle only if `notified` is clear, so a message
 * that arrives during the turn is never stranded.
 *
 * RUN QUEUES. Per-worker bounded ring (256) + a LIFO slot + one shared
 * injection queue (mutex) + stealing (half of a victim's ring). An actor
 * woken by a push made on a worker goes to that worker's LIFO slot and runs
 * next there, so a request and its reply stay on one CPU (no cross-CPU
 * wake-up: 51 us for park/wake vs ~0.15 us for a spinning hand-off,
 * docs/architecture.md "Figures behind the design"). At most 3 LIFO turns in a row when the ring is
 * non-empty; the shared queue is checked first every 61st turn. Pushes
 * from non-worker threads (hub) go to the shared queue. Measured on the
 * 2-vCPU box (scripts/bench/sched.c, 2 workers; table at the top of
 * sched.c): vs one shared queue, 64 ping-pong pairs 9.6 M vs 1.8 M round
 * trips/s, 1 pair p50 0.15 vs 0.25 us.
 *
 * DEFERRED. An actor made runnable by a push made during a turn on a
 * worker (the pusher's run callback) is held back by that worker, not
 * queued, until the turn ends; then the last one held goes to the LIFO
 * slot and the others to the ring, with one notify. One held with
 * others is queued earlier (to the ring, with a notify) once its normal
 * mailbox holds MSRT_SCHED_DEFER_DEPTH messages (or its capacity, if
 * smaller) after a push from that worker; and all are queued when the
 * worker already holds MSRT_SCHED_DEFER_MAX. So a sender feeding several
 * receivers hands them to the other workers in batches, one wake-up and
 * one steal per batch: before, every publish that found its receiver idle
 * queued it at once, the other worker stole it, and the receiver's turn
 * took 1-3 messages, so sender and receiver pulled the mailbox's and the
 * message's cache lines across the CPUs for nearly every message
 * (docs/performance.md, the two levels). One held alone stays for the turn, as
 * the LIFO slot's actor always did (a request and its reply, or a 1->1
 * stream, stay on one CPU). The cost is latency: a held actor with fewer
 * messages waits for the end of the sender's turn.
 *
 * GIVING WAY. A turn ends when its run callback returns, so an actor
 * sending in one long turn (a Lua handler publishing in a loop) kept its
 * worker until a receiver's mailbox was full. The actors behind it on
 * that worker, its own receivers among them when the other worker is far
 * and leaves a sending turn alone (hop.h), waited that long and then ran
 * through a backlog of up to their capacity (4 x 65,536 messages in the
 * queue-group benchmark), written and read out of cache: with one worker
 * 8.9-9.2 M msgs/s (runs 5.9-9.3), against 10.9-11.4 giving way
 * (docs/performance.md, "Giving way"). So msrt_actor_should_yield tells
 * the callback to end the turn and go on in a later one (YIELDED) once
 * the turn has sent a batch and others have waited on its worker (the
 * LIFO slot, the ring, the shared queue), the ring's head unmoved
 * (nobody took from it):
 *   - for a batch of its sends when no other worker is running a turn
 *     (they search or sleep: nobody will take them, as far apart);
 *     the waiting actors, its receivers among them, each take at most a
 *     batch a turn, so each gets about what it can take before the
 *     sender goes on, and their mailboxes stay shallow;
 *   - for steal_wait_us (the profile's, 1 ms by default) otherwise: the
 *     others are busy, as with its receivers near apart, and will come
 *     back for them; giving way there after a batch of sends cost
 *     fan-out near 5-14% (the sender is the pipeline's slowest part).
 * Actors the turn holds back (DEFERRED) do not count: they are its own
 * receivers, kept for it. Erlang's schedulers likewise end a process's
 * slice after its reductions, sends among them.
 *
 * PARKING. An idle worker searches (shared queue, steal) while spinning
 * spin_us, then parks on a futex. At most workers/2 (min 1) search at once.
 * New work wakes ONE parked worker, and only when no worker is searching.
 *
 * LIFETIME. A cell is reference counted: msrt_actor_new returns one
 * reference for the caller (drop it with msrt_actor_unref), the scheduler
 * keeps its own until the actor is released. cfg.release is called exactly
 * once per actor: after it STOPPED, or from msrt_sched_free. Pushing to a
 * released cell (still referenced) returns MSRT_E_CLOSED.
 */
#ifndef MSRT_SCHED_SCHED_H
#define MSRT_SCHED_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "core/envelope.h"
#include "core/error.h"
#include "core/overflow.h" /* msrt_overflow (DEFAULT: cfg.overflow) */
#include "core/waitlist.h" /* MSRT_WAIT_PENDING */

/* Priorities 1..MSRT_SCHED_HIGH_MAX_PRIORITY go to the high lane. */
#define MSRT_SCHED_HIGH_MAX_PRIORITY 3
/* High messages served in a row before one low one (when both wait). */
#define MSRT_SCHED_HIGH_BURST 8
/* Messages in its normal mailbox at which an actor held back by a turn
 * (DEFERRED in the top comment) is queued without waiting for the turn's
 * end. Each hand-over to another worker costs both CPUs a few cache-line
 * transfers (its state, counters, the mailbox's last node, the run
 * queue); at 64 a fan-out's receivers were handed over every 44 messages
 * or so and, with the two vCPUs far apart, those transfers held the
 * sender to 2.3-2.8 M publishes/s; at 512, 3.2-3.6 M (and 7.3 -> 8.4 M
 * near; bench_sched --only fanout, docs/performance.md). */
#define MSRT_SCHED_DEFER_DEPTH 512
/* Actors one turn holds back at most; one more queues them all. */
#define MSRT_SCHED_DEFER_MAX 8
#define MSRT_SCHED_DEFAULT_BATCH 64
#define MSRT_SCHED_DEFAULT_CAPACITY 1024
#define MSRT_SCHED_DEFAULT_BYTES ((size_t)64 << 20) /* 64 MiB */

typedef struct msrt_sched msrt_sched;
typedef struct msrt_actor msrt_actor;

typedef enum {
  MSRT_RUN_IDLE,
  MSRT_RUN_WAITING,
  MSRT_RUN_STOPPED,
  MSRT_RUN_YIELDED
} msrt_run_result;

/* Called on a worker thread with the actor held exclusively (one actor runs
 * on at most one worker at a time; successive turns may be on different
 * workers, with happens-before between them). The callback pulls messages
 * with msrt_actor_pop() (at most `budget`, after which pop returns NULL)
 * and returns:
 *   IDLE    : done for now; rescheduled if an eligible message is queued;
 *   WAITING : suspended (awaiting a reply, or room in a full mailbox): only
 *             the sys lane is eligible until a turn returns IDLE again;
 *   STOPPED : finished; never run again; queued envelopes are dropped
 *             (unref'd) and cfg.release is called;
 *   YIELDED : gave way in the middle of its work (msrt_actor_should_yield
 *             said so): queued again at once, behind the actors waiting
 *             on this worker, whatever its mailbox holds.
 * worker_index is 0..workers-1. */
typedef msrt_run_result (*msrt_run_fn)(msrt_actor *a, int budget,
                                       void *actor_ud, int worker_index);

/* cfg.flags (for experiments and benchmarks; 0 = the default design). */
#define MSRT_SCHED_SHARED_QUEUE 0x1 /* every runnable actor goes to the one
                                       shared queue (no rings, no LIFO) */
#define MSRT_SCHED_NO_LIFO 0x2      /* local rings + stealing, no LIFO slot */
#define MSRT_SCHED_NO_DEFER 0x4     /* an actor made runnable in a turn is
                                       queued at once (see DEFERRED) */

typedef struct {
  int workers;             /* >= 1 */
  int batch;               /* max messages per turn; 0 = default (64) */
  int spin_us;             /* idle spin before parking, microseconds, >= 0 */
  size_t mailbox_capacity; /* default bound of the normal lanes; 0 = 1024 */
  size_t mailbox_bytes;    /* default byte bound of the normal lanes
                              (msrt_env_size); 0 = 64 MiB */
  msrt_overflow overflow;  /* default policy (DEFAULT means BLOCK) */
  msrt_run_fn run;         /* required */
  /* Called once per actor, after STOPPED (on the worker) or from
   * msrt_sched_free (on its thread). May be NULL. */
  void (*release)(msrt_actor *a, void *actor_ud);
  void *sched_ud;
  unsigned flags;          /* MSRT_SCHED_* above; 0 = default */
  size_t stack_size;       /* bytes of each worker thread's stack (the
                              profile's stack_size); 0 = the system's
                              default; below PTHREAD_STACK_MIN it is
                              raised to that */
  int steal_wait_us;       /* microseconds, >= 0; 0 = 1000. An idle worker
                              whose CPU is far from another worker's (a
                              cache line takes over 100 ns to cross,
                              measured while running: sched/hop.h) takes
                              actors queued there whose messages cost less
                              than 4 such crossings only once that queue
                              has waited this long behind a turn that
                              sends nothing; longer favours throughput,
                              shorter latency */
} msrt_sched_config;

/* ---- scheduler ---------------------------------------------------------- */

/* Make a scheduler (threads not started). cfg is copied.
 * Returns MSRT_E_OK and *out, or MSRT_E_INVALID_ARG (workers < 1, run NULL,
 * batch/spin_us/steal_wait_us < 0, bad overflow) / MSRT_E_NOMEM with *err
 * filled (err may be NULL). Any thread. */
msrt_code msrt_sched_new(const msrt_sched_config *cfg, msrt_sched **out,
                         msrt_error *err);

/* Start the worker threads. Returns MSRT_E_OK, MSRT_E_INVALID_ARG if already
 * started or stopped, MSRT_E_NOMEM / MSRT_E_INTERNAL if a thread could not
 * be created (then no worker is left running). Call once, not from a
 * worker. Actors may be created and pushed to before start. */
msrt_code msrt_sched_start(msrt_sched *s);

/* Stop: from now on pushes return MSRT_E_CLOSED and msrt_actor_new returns
 * NULL; each worker finishes the turn in progress (no new turn starts) and
 * exits; the call joins them. Actors are not released (msrt_sched_free
 * does that). Idempotent. Must not be called from a worker thread. */
void msrt_sched_stop(msrt_sched *s);

/* Change the live figures (a profile reload): batch (messages per turn,
 * > 0), spin_us (idle spin before parking, >= 0), the default mailbox
 * capacity (messages, > 0) and byte bound (bytes, > 0) for actors made
 * from now on, steal_wait_us (> 0, cfg.steal_wait_us); a value out of
 * range leaves that figure as it is. Turns and spins already under way
 * finish with the old figures. Any thread. */
void msrt_sched_tune(msrt_sched *s, int batch, int spin_us, size_t capacity,
                     size_t bytes, int steal_wait_us);

/* msrt_sched_stop with a bound: waits at most `ms` milliseconds (< 0 =
 * forever) for the workers to exit. Returns MSRT_E_OK when all joined,
 * MSRT_E_TIMEOUT when some worker is still inside a run callback at the
 * deadline; the scheduler must then NOT be freed (the caller is expected
 * to exit the process). May be called again to keep waiting. */
msrt_code msrt_sched_stop_timeout(msrt_sched *s, long ms);

/* After msrt_sched_stop_timeout returned MSRT_E_TIMEOUT and the caller gives up on the
 * stuck workers (the process is about to exit): detach them, so that one
 * that returns later is not left finished and unjoined (ThreadSanitizer
 * reports that as a thread leak). The scheduler must not be freed after
 * this. Same thread as msrt_sched_stop_timeout. */
void msrt_sched_abandon(msrt_sched *s);

/* Free the scheduler: stops it if needed (waiting forever), calls
 * cfg.release for every actor not yet released (on this thread), drops
 * every queued envelope, wakes every registered room waiter (so blocked
 * senders retry and get MSRT_E_CLOSED). Cells the caller still references
 * stay valid (closed) until msrt_actor_unref. NULL is ignored. */
void msrt_sched_free(msrt_sched *s);

/* Index of the calling worker thread of any scheduler (0..workers-1), or
 * -1 when the caller is not a worker. */
int msrt_sched_worker_index(void);

/* ---- actors ------------------------------------------------------------- */

/* New actor cell, idle with an empty mailbox, holding one reference for
 * the caller. capacity 0 = cfg.mailbox_capacity (clamped to 1..2^31);
 * the byte bound is cfg.mailbox_bytes (msrt_actor_set_byte_bound changes
 * it); policy MSRT_OVERFLOW_DEFAULT = cfg.overflow. Returns NULL when out of
 * memory or the scheduler is stopped. Any thread. Size: 256 bytes (64-byte
 * aligned); a lane that has been used also keeps one 16-byte node. */
msrt_actor *msrt_actor_new(msrt_sched *s, void *actor_ud, size_t capacity,
                           msrt_overflow policy);

/* Reference counting of the cell (not of the actor's life: that ends with
 * STOPPED or msrt_sched_free). Any thread. unref of the last reference
 * frees the cell and any envelope still queued in it. NULL is ignored. */
void msrt_actor_ref(msrt_actor *a);
void msrt_actor_unref(msrt_actor *a);

/* What msrt_actor_offer did with e when it returned MSRT_E_OK. */
typedef enum {
  MSRT_OFFER_KEPT,           /* enqueued, nothing lost */
  MSRT_OFFER_DROPPED_NEWEST, /* drop_newest: e itself was not enqueued */
  MSRT_OFFER_EVICTED         /* drop_oldest: e enqueued after one or more
                                older messages went to the evict sink */
} msrt_offered;

/* Push e to the normal mailbox (high lane if e->priority <= 3, else low):
 * the scheduler's one push path, whose drops are told to the pusher.
 * On MSRT_E_OK the mailbox holds its own new reference (the caller keeps
 * its own) - except for drop_newest, which returns MSRT_E_OK without
 * enqueueing. *what (what may be NULL) says what became of e
 * (MSRT_OFFER_KEPT unless it returns MSRT_E_OK); evicted (may be NULL:
 * evicted envelopes are then only counted) gets every envelope drop_oldest
 * evicts. Returns:
 *   MSRT_E_OK, MSRT_E_MAILBOX_FULL (policy ERROR or BLOCK; nothing
 *   enqueued; for BLOCK use msrt_actor_wait_room), MSRT_E_CLOSED (actor
 *   stopping/stopped or scheduler stopped), MSRT_E_NOMEM.
 * Any thread, including the actor's own run callback. Lock-free except the
 * drop_oldest eviction (per-actor spinlock); no syscalls except waking a
 * parked worker. */
msrt_code msrt_actor_offer(msrt_actor *a, msrt_envelope *e,
                           const msrt_evict_sink *evicted,
                           msrt_offered *what);

/* Push e to the sys lane: unbounded, never dropped, eligible even while
 * the actor is WAITING. Same returns as msrt_actor_offer (never FULL). */
msrt_code msrt_actor_push_sys(msrt_actor *a, msrt_envelope *e);

/* Only from the run callback of actor a: the next eligible message (sys
 * first; then high/low as described above; only sys while WAITING), or
 * NULL when none is visible or the turn's budget is spent. The caller owns
 * the returned reference. Frees room (for BLOCK actors at the end of the
 * turn) and wakes room waiters (their wakers run on this thread). */
msrt_envelope *msrt_actor_pop(msrt_actor *a);

/* Only from the run callback of a: change the turn's mode. waiting != 0
 * restricts msrt_actor_pop to the sys lane, 0 lifts that (e.g. the reply
 * arrived and the handler finished within this turn). The mode after the
 * turn is decided by the callback's return value. */
void msrt_actor_set_waiting(msrt_actor *a, int waiting);

/* Only from the run callback of a: 1 when a should give way now (end
 * its turn with YIELDED and go on in a later one), else 0: when its turn
 * has pushed at least the scheduler's batch of messages to actors'
 * mailboxes (msrt_sched_tune), others have waited on this worker as long
 * as GIVING WAY in the top comment says, and a is not closed. 0 off a
 * worker thread or outside a turn of a's scheduler. Cheap (the worker's
 * own lines, the shared queue's length, the idle counts, a clock read
 * when others are first seen waiting and while they wait on busy peers):
 * callers ask every few dozen sends. */
int msrt_actor_should_yield(msrt_actor *a);

/* Register a one-shot waker, called (on whichever thread frees room - for
 * BLOCK, the worker at the end of a's turn - or closes the actor) once a's
 * normal mailbox has room again or a is closed.
 * Returns MSRT_WAIT_PENDING (registered: waker will be called exactly once
 * unless cancelled), MSRT_E_OK (room is there now; not registered: retry
 * the push), MSRT_E_CLOSED (not registered), MSRT_E_NOMEM. All waiters are
 * woken together when room appears (each retries; losers re-register).
 * Any thread. The waker must not call msrt_actor_wait_room on a itself
 * synchronously (it may push). */
int msrt_actor_wait_room(msrt_actor *a, void (*waker)(void *ud), void *ud);

/* Cancel a registration (same waker and ud). Returns true if it was
 * removed (the waker will not be called), false if it is not registered
 * (already called, being called, or never registered). Any thread. */
bool msrt_actor_cancel_wait(msrt_actor *a, void (*waker)(void *ud), void *ud);

/* Close a: pushes return MSRT_E_CLOSED from now on and room waiters are
 * woken. The actor gets one more turn starting after this call (in which
 * msrt_actor_closed() is true; it may pop what is queued); after that turn,
 * whatever it returns, it takes the STOPPED path. No-op if already closed.
 * Any thread (including its own run callback). If the scheduler is stopped
 * before that turn, msrt_sched_free releases it. */
void msrt_actor_stop(msrt_actor *a);

/* 1 once msrt_actor_stop was called or the actor STOPPED / was released,
 * else 0. Any thread. */
int msrt_actor_closed(msrt_actor *a);

void *msrt_actor_ud(msrt_actor *a);   /* the actor_ud given to new; any thread */
uint64_t msrt_actor_id(msrt_actor *a); /* unique in the process, nonzero */

/* Messages queued in the normal mailbox (high + low lanes; the sys lane is
 * not counted; for BLOCK actors, plus those popped by a turn in progress),
 * and the highest value it reached. Any thread; a snapshot. */
size_t msrt_actor_depth(msrt_actor *a);
size_t msrt_actor_high_water(msrt_actor *a);

/* The bound of a's normal mailbox (messages) and its overflow policy, as
 * resolved by msrt_actor_new (never MSRT_OVERFLOW_DEFAULT). Constant for
 * the cell's life; any thread. */
size_t msrt_actor_capacity(msrt_actor *a);
msrt_overflow msrt_actor_policy(msrt_actor *a);

/* The byte bound of a's normal mailbox (bytes of msrt_env_size; see
 * MAILBOX above). set: only before the cell is shared with another thread
 * (right after msrt_actor_new); 0 keeps the default. The others: any
 * thread. msrt_actor_bytes: the bytes queued now (a snapshot, reservations
 * of pushes in progress included). msrt_actor_full: 1 when a push now
 * would meet the overflow policy (either bound reached). */
void msrt_actor_set_byte_bound(msrt_actor *a, size_t bytes);
size_t msrt_actor_byte_bound(msrt_actor *a);
size_t msrt_actor_bytes(msrt_actor *a);
int msrt_actor_full(msrt_actor *a);

/* ---- metrics ------------------------------------------------------------ */

typedef struct {
  uint64_t handled; /* messages popped by run callbacks */
  uint64_t turns;   /* run callback invocations */
  uint64_t parks;   /* times the worker went to sleep */
  uint64_t wakes;   /* times it was woken by new work */
  uint64_t steals;  /* successful steals (each takes 1..128 actors) */
  uint64_t declined; /* steals not made: the other worker's CPU is far
                        (hop_ns over 100 ns, or not measured yet) and its
                        queued actors cost less than 4 hops a message
                        (src/sched/hop.h) */
  uint64_t hop_ns;  /* this worker's last measure of how long a cache line
                       written on another worker's CPU takes to read here,
                       ns (0 = not measured yet); in `total`, the largest */
  uint64_t gave_way; /* turns that ended giving way (YIELDED: GIVING WAY in
                        the top comment) */
} msrt_worker_stats;

typedef struct {
  size_t workers;
  msrt_worker_stats total;  /* sum over workers */
  size_t runnable;          /* actors queued (snapshot, approximate) */
  size_t actors;            /* actors not yet released */
  uint64_t drops_oldest, drops_newest;
  uint64_t refused_full;    /* MSRT_E_MAILBOX_FULL returned (error+block) */
  size_t parked;            /* workers parked now */
} msrt_sched_stats;

/* Snapshot of the counters (relaxed reads; may be a few events stale).
 * per_worker: array of cfg.workers entries, or NULL. Any thread. */
void msrt_sched_stats_get(msrt_sched *s, msrt_sched_stats *out,
                          msrt_worker_stats *per_worker);

#endif
