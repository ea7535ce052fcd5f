/* How far the other worker's CPU is, measured while running (internal to
 * src/sched; not part of the public API).
 *
 * Why: on the 2-vCPU VMs this project is measured on, the host places the
 * two vCPUs either on CPUs that share a cache (a line one writes is read
 * by the other in 20-50 ns) or far apart (130-160 ns), and moves them
 * from one placement to the other every few tens of seconds. Far apart,
 * an actor stolen from the worker that feeds it pays that trip on every
 * message it receives afterwards (the nodes and envelopes were written on
 * the sender's CPU), and the stealing worker takes it again each time it
 * drains: fan-out read 3.0 M published/s with stealing and 5.4-6.3 M with
 * none; near, stealing wins (7.2 M against 5.6-6.1; docs/performance.md,
 * "Steal when it pays"). So a thief measures the distance, and from a far
 * worker takes only actors whose messages each cost more than a few
 * trips, or anything once its queue has waited for the profile's
 * steal_wait_us (1 ms by default) behind one long turn that sends
 * nothing: a turn that keeps sending, like a fan-out sender's that fills
 * a mailbox, feeds the actors queued behind it, and taking them splits
 * sender and receivers for the rest of that turn (with a wait of 20 ms
 * and no such exception a queue group read 3.1-4.4 M msgs/s far, against
 * 4.9-6.0 stealing at once).
 * Linux's load balancer has the same shape: it leaves a cache-hot task
 * where it is unless balancing keeps failing (kernel/sched/fair.c,
 * task_hot and sysctl_sched_migration_cost).
 *
 * How: the thief reads the count of messages the other worker's turn in
 * progress has sent (written at each send, and zeroed as a turn begins)
 * between two reads of the cycle counter; when the value changed since
 * its previous read, the load had to fetch the line from the other CPU.
 * (The tail of its run queue was read first: a sender's receivers are
 * held back until its turn ends (sched.h DEFERRED), so the tail hardly
 * moved, the measure stayed unknown for whole runs, and near apart the
 * thief took nothing: a queue group read 4.9-8.5 M msgs/s against 10.7.)
 * The median of MSRT_HOP_SAMPLES such reads is the hop (an interrupt adds
 * time to one; a read of the line the thief made without telling
 * msrt_hop_seen takes it away from one); a new set of samples begins
 * every MSRT_HOP_EPOCH_US, so a new placement is seen within about that
 * long. A set that changes the verdict (near or far; the first set too)
 * counts only once the next set, begun at once, agrees: as a process
 * starts, its threads may share one CPU for a moment, and a first set
 * read "near" on a far pair, whose steals then split a sender from its
 * receivers for a whole run. Until the verdict is known the other worker
 * counts as far.
 *
 * Thread-safety: an msrt_hop and an msrt_hop_scale belong to one thread
 * (the thief); the counter it reads is any atomic another thread writes.
 */
#ifndef MSRT_SCHED_HOP_H
#define MSRT_SCHED_HOP_H

#include <stdatomic.h>
#include <stdint.h>

#define MSRT_HOP_SAMPLES 8
#define MSRT_HOP_EPOCH_US 10000 /* a new set of samples every 10 ms */
#define MSRT_HOP_NEAR_NS 100    /* a hop at most this long is near: steal */
#define MSRT_HOP_STUCK_US 1000  /* the default wait (steal_wait_us) */
#define MSRT_HOP_BACKOFF_US 50  /* a declined ring is left alone this long */
/* Lines a message brings across when its receiver runs on the other CPU
 * (its node, its envelope, the payload, the mailbox's counters): an actor
 * is worth moving far when a message costs it more than this many hops.
 * Its cost is measured where it last ran, so one that ran far away
 * already carries these crossings in its cost: with a factor of 1, queue
 * group members went back and forth, 3.6-4.1 M msgs/s against 4.9-5.9
 * stealing at once. */
#define MSRT_HOP_LINES 4
/* Past this many workers (a machine of many cores and sockets, whose
 * distances a per-domain rule like Linux's sched domains would need) the
 * thieves keep no msrt_hop (one per pair) and take whatever they find. */
#define MSRT_HOP_MAX_WORKERS 64

/* The thief's bounds in ticks (msrt_ticks), from the rate of the cycle
 * counter measured against msrt_now_ns. All 0 until that rate is known
 * (1 ms after msrt_hop_scale_init): then every steal pays. */
typedef struct {
  uint64_t ticks0, ns0;           /* the origin of the rate */
  uint64_t tpus;                  /* ticks per microsecond */
  uint64_t near, epoch, stuck, backoff;
} msrt_hop_scale;

/* What one thief knows of one other worker. Zero-initialise. */
typedef struct {
  uint32_t word;       /* the word msrt_hop_look reads, last seen */
  uint32_t head;       /* the word msrt_hop_pays watches, last seen */
  uint64_t head_at;    /* ticks: when it was last seen to change */
  uint64_t set_start;  /* ticks: when the set of samples in progress began */
  uint64_t skip_until; /* ticks: after a decline its ring is left alone */
  uint32_t hop;        /* ticks a fetch takes: the last full set's median;
                          0 = not measured yet */
  uint32_t cand;       /* a set's median that changed the verdict (near /
                          far), kept until the next set confirms it */
  uint32_t set_n, set[MSRT_HOP_SAMPLES];
} msrt_hop;

/* Record the origin of the rate (now). */
void msrt_hop_scale_init(msrt_hop_scale *c);

/* Measure the rate at (ticks, ns) if 1 ms has passed since the origin,
 * and derive the bounds; wait_us (> 0) is how long a queue must have
 * waited before anything is taken from a far worker. Cheap; call it now
 * and then (the searching worker does, once per search). */
void msrt_hop_scale_update(msrt_hop_scale *c, uint64_t ticks, uint64_t ns,
                           int wait_us);

/* When a sample is due at `now` (ticks), read `word` (one the other
 * worker writes often), timed; call it before anything else of that line
 * is read. Returns 1 when this read completed a set (p->hop is new), else
 * 0. */
int msrt_hop_look(msrt_hop *p, const atomic_uint *word, uint64_t now,
                  const msrt_hop_scale *c);

/* Tell p the word's value whenever the thief reads it otherwise: the next
 * sample counts only if the other worker wrote it since. */
static inline void msrt_hop_seen(msrt_hop *p, unsigned word) {
  p->word = word;
}

/* 1 when taking actors whose messages cost `cost` ticks each (a running
 * average; 0 = never ran) from the head of the other worker's queue pays
 * at `now`; `head` is a word that changes when that queue moves or the
 * turn in progress sends a message (a turn still sending feeds the actors
 * queued behind it, likely its receivers: moving them splits the two):
 * the scale is not known yet, the worker is near, the actors cost more
 * than MSRT_HOP_LINES hops (2 near bounds while the hop is not known) a
 * message or have never run, or that word has not changed for the wait. */
int msrt_hop_pays(msrt_hop *p, uint32_t cost, unsigned head, uint64_t now,
                  const msrt_hop_scale *c);

/* 1 when the other worker is known to be near (msrt_hop_pays would take
 * anything), or the scale is not known yet. */
static inline int msrt_hop_near(const msrt_hop *p, const msrt_hop_scale *c) {
  return !c->tpus || (p->hop && p->hop <= c->near);
}

/* The hop in nanoseconds (0 = not measured yet). */
uint64_t msrt_hop_ns(const msrt_hop *p, const msrt_hop_scale *c);

#endif
