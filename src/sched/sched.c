/* The actor scheduler; see sched.h for the model.
 *
 * Run-queue choice, measured with build/bench_sched on the 2-vCPU box
 * (Intel Xeon, nproc 2), 2 workers, batch 64, spin 50 us, trivial C
 * callbacks, median of 3 (--mode default | shared | nolifo):
 *
 *                              rings+LIFO+steal  one shared queue  rings, no LIFO
 *   flood 1->1, shared env     21.7 M msg/s      5.0 M             4.6 M
 *   flood 1->1, fresh env       4.6 M msg/s      1.8 M             2.0 M
 *   ping-pong 1 pair            5.6 M RT/s       2.0 M             2.6 M
 *     p50 / p99 us              0.15 / 0.22      0.25 / 2.5        0.31 / 1.1
 *   ping-pong 8 pairs           8.5 M RT/s       2.9 M             8.9 M
 *     p50 / p99 us              0.37 / 2.8       2.1 / 9.9         1.1 / 1.4
 *   ping-pong 64 pairs          9.6 M RT/s       1.8 M             5.9 M
 *     p50 / p99 us              0.32 / 24        18 / 79           10 / 14
 *
 * So: per-worker rings + a LIFO slot + stealing. The shared queue pays a
 * mutex and a cross-CPU hand-off per scheduling; without the LIFO slot a
 * request and its reply bounce between the CPUs (160 k steals/s at 1
 * pair). The LIFO slot costs tail latency at many pairs (an actor waits a
 * ring cycle after its LIFO streak), which the no-LIFO variant avoids, but
 * its p50 and throughput are much better. The fresh-envelope flood is
 * bounded by msrt_env_new/unref (malloc + cross-thread free + clock read:
 * ~45% of cycles in perf), not by the scheduler.
 *
 * Memory-ordering notes (the parts that are easy to get wrong):
 * - Lost-wakeup freedom of the actor state: a producer does
 *   XCHG(tail) [seq_cst] then loads state [seq_cst]; the worker ending a
 *   turn clears NOTIFY with an RMW [seq_cst] then loads every lane's tail
 *   [seq_cst] and compares it with its head (tail != head also counts a
 *   message whose link store is still in flight). In the single total
 *   order either the worker sees the tail move, or the producer sees the
 *   state after the worker's RMW and CASes NOTIFY/SCHED itself (which makes
 *   the worker's final CAS fail, or schedules the actor anew).
 * - Parking: a notifier publishes work, then fence(seq_cst), then reads
 *   nsearching/nidle; a parker registers in the idle list, decrements
 *   nsearching, fence(seq_cst), then re-reads the queues. One of the two
 *   sees the other.
 * - Room waiters: the consumer's count decrement [seq_cst RMW] then a load
 *   of the waiter list [seq_cst]; the waiter's list store [seq_cst] then a
 *   load of count [seq_cst].
 */
#include "sched/sched.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "core/clock.h"
#include "core/spin.h"
#include "sched/hop.h"
#include "sched/mnode.h"

#define LANE_SYS 0
#define LANE_HIGH 1
#define LANE_LOW 2
#define NLANES 3

#define RQ_CAP 256u
#define RQ_MASK (RQ_CAP - 1)
#define LIFO_MAX 3        /* LIFO turns in a row while the ring waits */
#define GLOBAL_EVERY 61   /* check the shared queue first every N turns */
#define MAX_CAPACITY (1u << 31)

enum {
  ST_SCHED = 1u,   /* queued or running: whoever owns it will look again */
  ST_WAITING = 2u, /* only the sys lane is eligible */
  ST_NOTIFY = 4u,  /* something was pushed while SCHED */
  ST_CLOSED = 8u,  /* msrt_actor_stop / STOPPED: pushes refused */
  ST_DEAD = 16u    /* released: never scheduled again */
};

#define RLX memory_order_relaxed
#define ACQ memory_order_acquire
#define REL memory_order_release
#define SC memory_order_seq_cst

/* Full fence for the notify/park Dekker pattern. TSan does not model
 * atomic_thread_fence; under TSan both sides instead do a seq_cst RMW on one
 * shared word (RMWs on one location are totally ordered and the later one
 * synchronizes with the earlier, which gives the same guarantee). */
#if defined(__SANITIZE_THREAD__)
static atomic_uint tsan_fence_word;
#define FULL_FENCE() atomic_fetch_add_explicit(&tsan_fence_word, 0, SC)
#else
#define FULL_FENCE() atomic_thread_fence(SC)
#endif


/* Four cache lines, by who writes them (measured: with count and the tails
 * on one line and policy read by the consumer from the producers' line,
 * the 1->1 flood was ~20% slower). */
struct msrt_actor {
  /* L0, written by producers: the lane tails (XCHG); cap/policy read. */
  _Alignas(64) _Atomic(msrt_mnode *) tail[NLANES];
  atomic_uint high_water;
  uint32_t cap;
  uint8_t policy;
  uint64_t cap_bytes; /* the byte bound (msrt_actor_set_byte_bound) */
  /* the running worker's sums behind `cost` below (note_cost): room here,
   * written once a turn */
  uint64_t cost_ticks;
  uint32_t cost_msgs;
  /* L1, the consumer's (the worker running it; for drop_oldest also an
   * evicting producer, under poplock). */
  _Alignas(64) msrt_mnode *head[NLANES];
  uint32_t popped;
  uint32_t freed; /* normal pops not yet subtracted from count */
  uint64_t freed_bytes; /* and their bytes, not yet subtracted from bytes */
  uint8_t waiting, high_streak;
  uint8_t locked_pop; /* policy == DROP_OLDEST (read-only copy) */
  uint8_t lazy_room;  /* policy == BLOCK: settle `freed` once per turn */
  atomic_uchar poplock;
  /* senders waiting for room (BLOCK): read here by the consumer when it
   * frees room, written only by a sender that has to wait */
  msrt_waitlist waiters;
  /* L2, written by both sides once per message: the bound's counter; and
   * the initial dummies (touched once). */
  _Alignas(64) atomic_uint count; /* high + low, reservations included */
  msrt_mnode stub[NLANES];
  _Atomic uint64_t bytes; /* msrt_env_size of those messages, likewise */
  /* L3, control: state (CAS on schedule / end of turn), identity, links. */
  _Alignas(64) atomic_uint state;
  atomic_uint refs;
  uint32_t budget; /* the consumer's, set once per turn (no room in L1) */
  atomic_uint cost; /* ticks a message over its last ~4096 (0 = never
                       ran); written by the worker running it, read
                       by pushers (rq_slot) */
  uint64_t id;
  void *ud;
  msrt_sched *s;
  msrt_actor *rq_next; /* link in the shared queue */
  msrt_actor *reg_prev, *reg_next;
};

_Static_assert(sizeof(struct msrt_actor) == 256, "actor cell is 4 lines");

typedef struct worker {
  _Alignas(64) atomic_uint rq_head; /* CAS by owner and thieves */
  atomic_uint rq_tail;              /* written by the owner only */
  _Atomic(msrt_actor *) lifo;       /* owner only (atomic for stats) */
  _Alignas(64) _Atomic uintptr_t rq_buf[RQ_CAP]; /* rq_slot below */
  _Alignas(64) atomic_int park_word;
  struct worker *idle_next;
  int idle_listed;
  int index;
  int joined;
  msrt_sched *s;
  pthread_t th;
  uint32_t tick, rng;
  int lifo_streak;
  /* owner only: actors made runnable during the turn in progress and held
   * back until it ends or they pass a bound (sched.h DEFERRED) */
  int in_turn, ndefer;
  /* messages the turn in progress sent (note_cost); read by thieves (a
   * turn still sending is feeding the actors queued behind it) */
  atomic_uint pushes;
  /* owner only (msrt_actor_should_yield): whether others were seen
   * waiting in this turn, the ring's head then, and the turn's sends and
   * the time (ns) when they were first seen with that head */
  int gw_on;
  unsigned gw_head, gw_mark;
  uint64_t gw_since;
  msrt_actor *defer[MSRT_SCHED_DEFER_MAX];
  _Atomic uint64_t handled, turns, parks, wakes, steals, declined, hop_ns;
  _Atomic uint64_t gave_way;
  /* thief side (owner only): how far the others are (hop.h) */
  msrt_hop_scale hs;
  msrt_hop *peers; /* one per worker, indexed like s->w; NULL past
                      MSRT_HOP_MAX_WORKERS workers */
} worker;

struct msrt_sched {
  msrt_sched_config cfg;
  int nw;
  atomic_int batch;            /* these three change live: msrt_sched_tune */
  atomic_size_t capacity, bytes; /* defaults for new cells */
  atomic_uint_fast64_t spin_ns;
  atomic_int steal_wait_us;    /* and this: cfg.steal_wait_us */
  worker *w;
  atomic_int accepting, stopping;
  int started, all_joined;
  /* shared queue */
  _Alignas(64) pthread_mutex_t gq_mu;
  msrt_actor *gq_head, *gq_tail;
  atomic_size_t gq_len;
  /* parking */
  _Alignas(64) pthread_mutex_t idle_mu;
  worker *idle;
  atomic_int nidle, nsearching;
  /* registry */
  _Alignas(64) pthread_mutex_t reg_mu;
  msrt_actor *reg;
  atomic_size_t nactors;
  _Atomic uint64_t drops_oldest, drops_newest, refused_full;
};

static _Thread_local worker *tl_worker;
static atomic_uint_fast64_t next_actor_id = 1;

static inline void stat_inc(_Atomic uint64_t *p, uint64_t v) {
  /* single writer: no RMW needed */
  atomic_store_explicit(p, atomic_load_explicit(p, RLX) + v, RLX);
}


/* ---- parking primitive -------------------------------------------------- */

static void park_wait(worker *w) {
  while (atomic_load_explicit(&w->park_word, ACQ) == 0) {
#ifdef __linux__
    syscall(SYS_futex, (int *)&w->park_word, FUTEX_WAIT_PRIVATE, 0, NULL,
            NULL, 0);
#else
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
#endif
  }
  atomic_store_explicit(&w->park_word, 0, RLX);
}

static void unpark(worker *w) {
  atomic_store_explicit(&w->park_word, 1, REL);
#ifdef __linux__
  syscall(SYS_futex, (int *)&w->park_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
          0);
#endif
}

/* ---- lanes (Vyukov intrusive MPSC, node = {next, env}) ------------------ */

static inline void lane_init(msrt_actor *a, int l) {
  atomic_init(&a->stub[l].next, NULL);
  a->stub[l].env = NULL;
  a->head[l] = &a->stub[l];
  atomic_init(&a->tail[l], &a->stub[l]);
}

static inline void lane_push(msrt_actor *a, int l, msrt_mnode *n) {
  atomic_store_explicit(&n->next, NULL, RLX);
  msrt_mnode *prev = atomic_exchange_explicit(&a->tail[l], n, SC);
  atomic_store_explicit(&prev->next, n, REL);
}

static inline msrt_envelope *lane_pop(msrt_actor *a, int l) {
  msrt_mnode *h = a->head[l];
  msrt_mnode *n = atomic_load_explicit(&h->next, ACQ);
  if (!n) return NULL;
  msrt_envelope *e = n->env;
  a->head[l] = n; /* n is the new dummy */
  /* Fetch what the next pops read, most likely written on the sender's
   * CPU: the node after next (the next one was fetched by the pop before),
   * the lines after it (a sender hands one mailbox's nodes out a few
   * lines apart, mnode.h), and the next message's envelope, its first
   * line with a write hint (its count of references; mnode.h on what the
   * compiler makes of the hint), so a transfer between
   * far-apart CPUs (docs/performance.md, the two levels) overlaps this
   * message's turn. */
  msrt_mnode *n1 = atomic_load_explicit(&n->next, ACQ);
  if (n1) {
    msrt_mnode *n2 = atomic_load_explicit(&n1->next, ACQ);
    if (n2) {
      __builtin_prefetch(n2);
      __builtin_prefetch((const char *)n2 + 64);
      __builtin_prefetch((const char *)n2 + 128);
    }
    const char *e1 = (const char *)n1->env;
    __builtin_prefetch(e1, 1, 3);
    __builtin_prefetch(e1 + 64);
  }
  if (h != &a->stub[l]) msrt_mnode_free(h);
  return e;
}

/* Counts a message whose link is still in flight (see top comment). */
static inline int lane_nonempty(msrt_actor *a, int l) {
  return atomic_load_explicit(&a->tail[l], SC) != a->head[l];
}

static void lane_drain(msrt_actor *a, int l) {
  msrt_envelope *e;
  while ((e = lane_pop(a, l))) msrt_env_unref(e);
}

/* ---- room waiters ------------------------------------------------------- */

static void wake_waiters(msrt_actor *a) { msrt_waitlist_wake(&a->waiters); }

/* n slots (holding `bytes` bytes) of the normal mailbox are free again. */
static inline void room_freed_n(msrt_actor *a, unsigned n, uint64_t bytes) {
  atomic_fetch_sub_explicit(&a->bytes, bytes, SC);
  atomic_fetch_sub_explicit(&a->count, n, SC);
  if (msrt_waitlist_any(&a->waiters)) wake_waiters(a);
}
static inline void room_freed(msrt_actor *a, msrt_envelope *e) {
  room_freed_n(a, 1, msrt_env_size(e));
}

/* ---- run queues ---------------------------------------------------------- */

static void gq_push_chain(msrt_sched *s, msrt_actor *first, msrt_actor *last,
                          size_t n) {
  last->rq_next = NULL;
  pthread_mutex_lock(&s->gq_mu);
  if (s->gq_tail) s->gq_tail->rq_next = first;
  else s->gq_head = first;
  s->gq_tail = last;
  atomic_store_explicit(&s->gq_len,
                        atomic_load_explicit(&s->gq_len, RLX) + n, RLX);
  pthread_mutex_unlock(&s->gq_mu);
}

/* A ring slot holds the actor and, in the six low bits its alignment
 * leaves, the bit length of its cost (ticks a message) when it was
 * queued: a thief decides whether taking it pays (hop.h) before it owns
 * it, and must not read an actor it does not own (it may be released). */
#define SLOT_TAG ((uintptr_t)63)
_Static_assert(_Alignof(struct msrt_actor) > SLOT_TAG, "tag bits are free");
static inline uintptr_t rq_slot(msrt_actor *a) {
  uint32_t c = atomic_load_explicit(&a->cost, RLX);
  return (uintptr_t)a | (uintptr_t)(c ? 32 - __builtin_clz(c) : 0);
}
static inline msrt_actor *slot_actor(uintptr_t x) {
  return (msrt_actor *)(x & ~SLOT_TAG);
}
/* The middle of the slot's cost bucket; 0 = the actor never ran. */
static inline uint32_t slot_cost(uintptr_t x) {
  unsigned b = (unsigned)(x & SLOT_TAG);
  return b < 2 ? b : 3u << (b - 2);
}

static inline unsigned rq_len(worker *w) {
  unsigned t = atomic_load_explicit(&w->rq_tail, RLX);
  unsigned h = atomic_load_explicit(&w->rq_head, RLX);
  return t - h <= RQ_CAP ? t - h : 0;
}

/* Owner only. Ring full: move half of it plus `a` to the shared queue.
 * Returns 0 when thieves moved the head meanwhile (the caller retries). */
static int rq_overflow(worker *w, msrt_actor *a, unsigned h) {
  msrt_actor *items[RQ_CAP / 2];
  const unsigned n = RQ_CAP / 2;
  for (unsigned i = 0; i < n; i++)
    items[i] = slot_actor(
        atomic_load_explicit(&w->rq_buf[(h + i) & RQ_MASK], RLX));
  if (!atomic_compare_exchange_strong_explicit(&w->rq_head, &h, h + n, ACQ,
                                               RLX))
    return 0;
  for (unsigned i = 0; i + 1 < n; i++) items[i]->rq_next = items[i + 1];
  items[n - 1]->rq_next = a;
  gq_push_chain(w->s, items[0], a, n + 1);
  return 1;
}

static void rq_push(worker *w, msrt_actor *a) {
  for (;;) {
    unsigned t = atomic_load_explicit(&w->rq_tail, RLX);
    unsigned h = atomic_load_explicit(&w->rq_head, ACQ);
    if (t - h < RQ_CAP) {
      atomic_store_explicit(&w->rq_buf[t & RQ_MASK], rq_slot(a), RLX);
      atomic_store_explicit(&w->rq_tail, t + 1, REL);
      return;
    }
    if (rq_overflow(w, a, h)) return;
  }
}

static msrt_actor *rq_pop(worker *w) {
  unsigned h = atomic_load_explicit(&w->rq_head, ACQ);
  for (;;) {
    unsigned t = atomic_load_explicit(&w->rq_tail, RLX);
    if (h == t) return NULL;
    uintptr_t x = atomic_load_explicit(&w->rq_buf[h & RQ_MASK], RLX);
    if (atomic_compare_exchange_weak_explicit(&w->rq_head, &h, h + 1, ACQ,
                                              ACQ))
      return slot_actor(x);
  }
}

/* Whether taking slots from the head of v's ring pays (hop.h), judged by
 * the first k (<= STEAL_JUDGE): else v's ring is left alone a while. */
#define STEAL_JUDGE 4
static int steal_pays(worker *thief, worker *v, const uintptr_t *items,
                      unsigned h, unsigned k, uint64_t now) {
  if (!thief->peers) return 1;
  msrt_hop *p = &thief->peers[v->index];
  /* near: no more reads of v's lines (its send count is written at every
   * send: reading it at every steal cost the sender a line back each
   * time, fan-out near -5%) */
  if (msrt_hop_near(p, &thief->hs)) return 1;
  uint64_t sum = 0;
  for (unsigned i = 0; i < k; i++) {
    uint32_t c = slot_cost(items[i]);
    if (!c) return 1;
    sum += c;
  }
  unsigned sent = atomic_load_explicit(&v->pushes, RLX);
  msrt_hop_seen(p, sent);
  unsigned busy = h ^ sent << 16;
  if (msrt_hop_pays(p, (uint32_t)(sum / k), busy, now, &thief->hs)) return 1;
  p->skip_until = now + thief->hs.backoff;
  stat_inc(&thief->declined, 1);
  return 0;
}

/* Thief takes half (rounded up, <= 128) of v's ring when that pays;
 * returns one, the rest go to the thief's own ring (which is empty:
 * thieves are searching). */
static msrt_actor *rq_steal(worker *thief, worker *v, uint64_t now) {
  uintptr_t items[RQ_CAP / 2];
  unsigned h = atomic_load_explicit(&v->rq_head, ACQ);
  for (int tries = 0; tries < 4; tries++) {
    unsigned t = atomic_load_explicit(&v->rq_tail, ACQ);
    unsigned n = t - h;
    if (n == 0 || n > RQ_CAP) return NULL;
    n -= n / 2;
    unsigned room = RQ_CAP - rq_len(thief);
    if (n > room) n = room;
    if (n > RQ_CAP / 2) n = RQ_CAP / 2;
    if (n == 0) return NULL;
    /* judge by the first few slots before reading the rest: a declined
     * look then costs the owner one line back, not up to 16 */
    unsigned k = n < STEAL_JUDGE ? n : STEAL_JUDGE, i = 0;
    for (; i < k; i++)
      items[i] = atomic_load_explicit(&v->rq_buf[(h + i) & RQ_MASK], RLX);
    if (tries == 0 && !steal_pays(thief, v, items, h, k, now)) return NULL;
    for (; i < n; i++)
      items[i] = atomic_load_explicit(&v->rq_buf[(h + i) & RQ_MASK], RLX);
    if (atomic_compare_exchange_strong_explicit(&v->rq_head, &h, h + n, ACQ,
                                                ACQ)) {
      for (unsigned i = 1; i < n; i++) rq_push(thief, slot_actor(items[i]));
      stat_inc(&thief->steals, 1);
      return slot_actor(items[0]);
    }
  }
  return NULL;
}

/* Take one actor from the shared queue, and a fair share more into w's
 * ring (fewer lock round trips when the hub injects many). */
static msrt_actor *gq_pop(worker *w) {
  msrt_sched *s = w->s;
  size_t len = atomic_load_explicit(&s->gq_len, RLX);
  if (!len) return NULL;
  size_t more = 0;
  if (!(s->cfg.flags & MSRT_SCHED_SHARED_QUEUE)) {
    more = len / (size_t)s->nw;
    size_t room = RQ_CAP - rq_len(w);
    if (more > room) more = room;
    if (more > RQ_CAP / 2) more = RQ_CAP / 2;
  }
  pthread_mutex_lock(&s->gq_mu);
  msrt_actor *a = s->gq_head, *first = NULL;
  size_t taken = 0;
  if (a) {
    s->gq_head = a->rq_next;
    taken = 1;
    first = s->gq_head;
    for (size_t i = 0; i < more && s->gq_head; i++) {
      s->gq_head = s->gq_head->rq_next;
      taken++;
    }
    if (!s->gq_head) s->gq_tail = NULL;
    atomic_store_explicit(&s->gq_len,
                          atomic_load_explicit(&s->gq_len, RLX) - taken, RLX);
  }
  pthread_mutex_unlock(&s->gq_mu);
  /* Read each link before publishing the actor: once in the ring it can be
   * stolen, run and re-queued (rewriting rq_next) by another worker. */
  msrt_actor *x = first;
  for (size_t i = 1; i < taken; i++) {
    msrt_actor *next = x->rq_next;
    rq_push(w, x);
    x = next;
  }
  return a;
}

static int work_visible(msrt_sched *s) {
  if (atomic_load_explicit(&s->gq_len, RLX)) return 1;
  for (int i = 0; i < s->nw; i++)
    if (rq_len(&s->w[i])) return 1;
  return 0;
}

/* Wake one parked worker if nobody is searching. Call after publishing
 * work. */
static void notify_one(msrt_sched *s) {
  FULL_FENCE();
  if (atomic_load_explicit(&s->nsearching, RLX) > 0) return;
  if (atomic_load_explicit(&s->nidle, RLX) == 0) return;
  worker *w = NULL;
  pthread_mutex_lock(&s->idle_mu);
  if (atomic_load_explicit(&s->nsearching, RLX) == 0 && (w = s->idle)) {
    s->idle = w->idle_next;
    w->idle_listed = 0;
    atomic_fetch_sub_explicit(&s->nidle, 1, SC);
    atomic_fetch_add_explicit(&s->nsearching, 1, SC); /* on its behalf */
  }
  pthread_mutex_unlock(&s->idle_mu);
  if (w) unpark(w);
}

/* The deferred actors go to the ring, one notify for them all. */
static void defer_flush(worker *w) {
  if (!w->ndefer) return;
  for (int i = 0; i < w->ndefer; i++) rq_push(w, w->defer[i]);
  w->ndefer = 0;
  notify_one(w->s);
}

/* a passed its mailbox bound while held back by w with others: queue it
 * now. (Alone, it stays for the turn, as the LIFO slot's actor did.) */
static void defer_release(worker *w, msrt_actor *a) {
  for (int i = 0; i < w->ndefer; i++) {
    if (w->defer[i] != a) continue;
    memmove(&w->defer[i], &w->defer[i + 1],
            sizeof w->defer[0] * (size_t)(w->ndefer - i - 1));
    w->ndefer--;
    rq_push(w, a);
    notify_one(w->s);
    return;
  }
}

/* Put a in w's LIFO slot: returns the actor it displaces (NULL: none),
 * for the ring; a itself when the scheduler has no LIFO slot. */
static msrt_actor *lifo_swap(worker *w, msrt_actor *a) {
  if (w->s->cfg.flags & MSRT_SCHED_NO_LIFO) return a;
  msrt_actor *prev = atomic_load_explicit(&w->lifo, RLX);
  atomic_store_explicit(&w->lifo, a, RLX);
  return prev;
}

/* End of a turn: the last actor held back runs next here (the LIFO slot,
 * as an actor woken outside a turn would), the others go to the ring. */
static void defer_end_turn(worker *w) {
  w->in_turn = 0;
  if (!w->ndefer) return;
  msrt_actor *out = lifo_swap(w, w->defer[w->ndefer - 1]);
  if (out) w->defer[w->ndefer - 1] = out;
  else w->ndefer--;
  defer_flush(w);
}

/* a just became SCHED: queue it. */
static void schedule(msrt_sched *s, msrt_actor *a) {
  worker *w = tl_worker;
  if (w && w->s == s && !(s->cfg.flags & MSRT_SCHED_SHARED_QUEUE)) {
    if (w->in_turn && !(s->cfg.flags & MSRT_SCHED_NO_DEFER)) {
      if (w->ndefer == MSRT_SCHED_DEFER_MAX) defer_flush(w);
      w->defer[w->ndefer++] = a;
      return;
    }
    if (!(a = lifo_swap(w, a))) return;
    rq_push(w, a);
    notify_one(s);
    return;
  }
  gq_push_chain(s, a, a, 1);
  notify_one(s);
}

/* A message was linked into lane `sys ? sys : normal`: make a runnable. */
static void wake_actor(msrt_sched *s, msrt_actor *a, int sys) {
  unsigned st = atomic_load_explicit(&a->state, SC);
  for (;;) {
    unsigned nst;
    if (st & ST_DEAD) return;
    if (st & ST_SCHED) {
      if (st & ST_NOTIFY) return;
      nst = st | ST_NOTIFY;
    } else if ((st & ST_WAITING) && !sys) {
      return;
    } else {
      nst = st | ST_SCHED;
    }
    if (atomic_compare_exchange_weak_explicit(&a->state, &st, nst, SC, SC)) {
      if (!(st & ST_SCHED)) schedule(s, a);
      return;
    }
  }
}

/* ---- actor lifetime ------------------------------------------------------ */

static void actor_destroy(msrt_actor *a) {
  for (int l = 0; l < NLANES; l++) {
    lane_drain(a, l);
    if (a->head[l] != &a->stub[l]) msrt_mnode_free(a->head[l]);
  }
  msrt_waitlist_free(&a->waiters);
  free(a);
}

void msrt_actor_ref(msrt_actor *a) {
  atomic_fetch_add_explicit(&a->refs, 1, RLX);
}

void msrt_actor_unref(msrt_actor *a) {
  if (!a) return;
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
    actor_destroy(a);
}

/* The STOPPED path: close, drop the queue, wake senders, release. Called by
 * the owner (worker) or by msrt_sched_free with workers joined. */
static void finish(msrt_sched *s, msrt_actor *a) {
  atomic_fetch_or_explicit(&a->state, ST_CLOSED | ST_DEAD | ST_SCHED, SC);
  int locked = a->locked_pop;
  if (locked) msrt_spin_lock(&a->poplock);
  lane_drain(a, LANE_SYS);
  unsigned n = 0;
  uint64_t bytes = 0;
  msrt_envelope *e;
  while ((e = lane_pop(a, LANE_HIGH)) || (e = lane_pop(a, LANE_LOW))) {
    bytes += msrt_env_size(e);
    msrt_env_unref(e);
    n++;
  }
  atomic_fetch_sub_explicit(&a->bytes, bytes, SC);
  atomic_fetch_sub_explicit(&a->count, n, SC);
  if (locked) msrt_spin_unlock(&a->poplock);
  wake_waiters(a);
  if (s->cfg.release) s->cfg.release(a, a->ud);
  pthread_mutex_lock(&s->reg_mu);
  if (a->reg_prev) a->reg_prev->reg_next = a->reg_next;
  else s->reg = a->reg_next;
  if (a->reg_next) a->reg_next->reg_prev = a->reg_prev;
  a->reg_prev = a->reg_next = NULL;
  atomic_fetch_sub_explicit(&s->nactors, 1, RLX);
  pthread_mutex_unlock(&s->reg_mu);
  msrt_actor_unref(a);
}

msrt_actor *msrt_actor_new(msrt_sched *s, void *actor_ud, size_t capacity,
                           msrt_overflow policy) {
  if (!atomic_load_explicit(&s->accepting, ACQ)) return NULL;
  msrt_actor *a = aligned_alloc(64, sizeof *a);
  if (!a) return NULL;
  memset(a, 0, sizeof *a);
  for (int l = 0; l < NLANES; l++) lane_init(a, l);
  if (!capacity) capacity = atomic_load_explicit(&s->capacity, RLX);
  if (capacity > MAX_CAPACITY) capacity = MAX_CAPACITY;
  a->cap = (uint32_t)capacity;
  a->cap_bytes = atomic_load_explicit(&s->bytes, RLX);
  if (policy < MSRT_OVERFLOW_BLOCK || policy > MSRT_OVERFLOW_ERROR)
    policy = s->cfg.overflow;
  a->policy = (uint8_t)policy;
  a->locked_pop = policy == MSRT_OVERFLOW_DROP_OLDEST;
  a->lazy_room = policy == MSRT_OVERFLOW_BLOCK;
  atomic_init(&a->count, 0);
  atomic_init(&a->bytes, 0);
  atomic_init(&a->high_water, 0);
  msrt_waitlist_init(&a->waiters);
  atomic_init(&a->poplock, 0);
  atomic_init(&a->state, 0);
  atomic_init(&a->refs, 2); /* caller + scheduler */
  a->id = atomic_fetch_add_explicit(&next_actor_id, 1, RLX);
  a->ud = actor_ud;
  a->s = s;
  pthread_mutex_lock(&s->reg_mu);
  a->reg_next = s->reg;
  if (s->reg) s->reg->reg_prev = a;
  s->reg = a;
  atomic_fetch_add_explicit(&s->nactors, 1, RLX);
  pthread_mutex_unlock(&s->reg_mu);
  return a;
}

void *msrt_actor_ud(msrt_actor *a) { return a->ud; }
uint64_t msrt_actor_id(msrt_actor *a) { return a->id; }

int msrt_actor_closed(msrt_actor *a) {
  return (atomic_load_explicit(&a->state, ACQ) & ST_CLOSED) != 0;
}

size_t msrt_actor_depth(msrt_actor *a) {
  unsigned n = atomic_load_explicit(&a->count, RLX);
  return n > a->cap ? a->cap : n; /* hide transient reservations */
}

size_t msrt_actor_high_water(msrt_actor *a) {
  return atomic_load_explicit(&a->high_water, RLX);
}

size_t msrt_actor_capacity(msrt_actor *a) { return a->cap; }

void msrt_actor_set_byte_bound(msrt_actor *a, size_t bytes) {
  if (bytes) a->cap_bytes = bytes;
}

size_t msrt_actor_byte_bound(msrt_actor *a) { return (size_t)a->cap_bytes; }

size_t msrt_actor_bytes(msrt_actor *a) {
  return (size_t)atomic_load_explicit(&a->bytes, RLX);
}

int msrt_actor_full(msrt_actor *a) {
  return atomic_load_explicit(&a->count, RLX) >= a->cap ||
         atomic_load_explicit(&a->bytes, RLX) >= a->cap_bytes;
}
msrt_overflow msrt_actor_policy(msrt_actor *a) {
  return (msrt_overflow)a->policy;
}

/* ---- push / pop ---------------------------------------------------------- */

static msrt_envelope *evict_oldest(msrt_actor *a) {
  msrt_spin_lock(&a->poplock);
  msrt_envelope *e = lane_pop(a, LANE_LOW);
  if (!e) e = lane_pop(a, LANE_HIGH);
  msrt_spin_unlock(&a->poplock);
  return e;
}

/* drop_oldest: evict until what was queued before this push (reservation
 * `size`) is under both bounds, or nothing is left to evict; each evicted
 * envelope goes to sink. Returns how many were evicted. */
static size_t make_room(msrt_sched *s, msrt_actor *a, uint64_t size,
                        const msrt_evict_sink *sink) {
  size_t n = 0;
  while (atomic_load_explicit(&a->count, SC) - 1 >= a->cap ||
         atomic_load_explicit(&a->bytes, SC) - size >= a->cap_bytes) {
    msrt_envelope *old = evict_oldest(a);
    if (!old) break;
    room_freed_n(a, 1, msrt_env_size(old));
    atomic_fetch_add_explicit(&s->drops_oldest, 1, RLX);
    if (sink) sink->fn(sink->ud, old);
    msrt_env_unref(old);
    n++;
  }
  return n;
}

msrt_code msrt_actor_offer(msrt_actor *a, msrt_envelope *e,
                           const msrt_evict_sink *evicted,
                           msrt_offered *what) {
  msrt_offered unasked;
  if (!what) what = &unasked;
  *what = MSRT_OFFER_KEPT;
  if (atomic_load_explicit(&a->state, ACQ) & ST_CLOSED) return MSRT_E_CLOSED;
  msrt_sched *s = a->s;
  if (!atomic_load_explicit(&s->accepting, RLX)) return MSRT_E_CLOSED;
  uint64_t size = msrt_env_size(e);
  unsigned n = atomic_fetch_add_explicit(&a->count, 1, SC);
  uint64_t b = atomic_fetch_add_explicit(&a->bytes, size, SC);
  if (n >= a->cap || b >= a->cap_bytes) {
    switch (a->policy) {
    case MSRT_OVERFLOW_DROP_NEWEST:
      room_freed(a, e);
      atomic_fetch_add_explicit(&s->drops_newest, 1, RLX);
      *what = MSRT_OFFER_DROPPED_NEWEST;
      return MSRT_E_OK;
    case MSRT_OVERFLOW_DROP_OLDEST:
      if (make_room(s, a, size, evicted)) *what = MSRT_OFFER_EVICTED;
      break;
    default:
      room_freed(a, e);
      atomic_fetch_add_explicit(&s->refused_full, 1, RLX);
      return MSRT_E_MAILBOX_FULL;
    }
  } else {
    unsigned hw = atomic_load_explicit(&a->high_water, RLX);
    while (n + 1 > hw &&
           !atomic_compare_exchange_weak_explicit(&a->high_water, &hw, n + 1,
                                                  RLX, RLX)) {
    }
  }
  msrt_mnode *node = msrt_mnode_alloc();
  if (!node) {
    room_freed(a, e);
    return MSRT_E_NOMEM;
  }
  node->env = msrt_env_ref(e);
  lane_push(a, e->priority <= MSRT_SCHED_HIGH_MAX_PRIORITY ? LANE_HIGH
                                                           : LANE_LOW,
            node);
  wake_actor(s, a, 0);
  worker *w = tl_worker;
  if (w)
    atomic_store_explicit(&w->pushes,
                          atomic_load_explicit(&w->pushes, RLX) + 1, RLX);
  if (n + 1 >= MSRT_SCHED_DEFER_DEPTH || n + 1 >= a->cap) {
    if (w && w->ndefer > 1) defer_release(w, a);
  }
  return MSRT_E_OK;
}

msrt_code msrt_actor_push_sys(msrt_actor *a, msrt_envelope *e) {
  if (atomic_load_explicit(&a->state, ACQ) & ST_CLOSED) return MSRT_E_CLOSED;
  msrt_sched *s = a->s;
  if (!atomic_load_explicit(&s->accepting, RLX)) return MSRT_E_CLOSED;
  msrt_mnode *node = msrt_mnode_alloc();
  if (!node) return MSRT_E_NOMEM;
  node->env = msrt_env_ref(e);
  lane_push(a, LANE_SYS, node);
  wake_actor(s, a, 1);
  return MSRT_E_OK;
}

static msrt_envelope *pop_normal(msrt_actor *a) {
  msrt_envelope *e;
  if (a->high_streak < MSRT_SCHED_HIGH_BURST) {
    if ((e = lane_pop(a, LANE_HIGH))) {
      a->high_streak++;
      return e;
    }
    if ((e = lane_pop(a, LANE_LOW))) a->high_streak = 0;
    return e;
  }
  if ((e = lane_pop(a, LANE_LOW))) {
    a->high_streak = 0;
    return e;
  }
  return lane_pop(a, LANE_HIGH); /* streak stays at the limit */
}

msrt_envelope *msrt_actor_pop(msrt_actor *a) {
  if (a->popped >= a->budget) return NULL;
  msrt_envelope *e = lane_pop(a, LANE_SYS);
  if (e) {
    a->popped++;
    return e;
  }
  if (a->waiting) return NULL;
  if (a->locked_pop) {
    msrt_spin_lock(&a->poplock);
    e = pop_normal(a);
    msrt_spin_unlock(&a->poplock);
  } else {
    e = pop_normal(a);
  }
  if (e) {
    a->popped++;
    /* BLOCK: settled at the end of the turn, one contended RMW per turn
     * instead of per message (measured: 1->1 flood 6-18 M/s -> 14-15 M/s);
     * a blocked sender is only woken a little later. The other policies
     * settle now so that nothing is dropped or refused while fewer than
     * cap messages are really queued. */
    if (a->lazy_room) {
      a->freed++;
      a->freed_bytes += msrt_env_size(e);
    } else {
      room_freed(a, e);
    }
  }
  return e;
}

void msrt_actor_set_waiting(msrt_actor *a, int waiting) {
  a->waiting = waiting != 0;
}

int msrt_actor_should_yield(msrt_actor *a) {
  worker *w = tl_worker;
  if (!w || !w->in_turn || w->s != a->s) return 0;
  msrt_sched *s = a->s;
  unsigned sent = atomic_load_explicit(&w->pushes, RLX);
  unsigned batch = (unsigned)atomic_load_explicit(&s->batch, RLX);
  if (sent < batch) return 0;
  /* others waiting: LIFO slot, ring, shared queue (not the actors this
   * turn holds back); since gw_mark / gw_since with the ring's head
   * unmoved (sched.h GIVING WAY) */
  if (!atomic_load_explicit(&w->lifo, RLX) && !rq_len(w) &&
      !atomic_load_explicit(&s->gq_len, RLX)) {
    w->gw_on = 0;
    return 0;
  }
  unsigned h = atomic_load_explicit(&w->rq_head, RLX);
  if (!w->gw_on || h != w->gw_head) {
    w->gw_on = 1, w->gw_head = h, w->gw_mark = sent;
    w->gw_since = msrt_now_ns();
    return 0;
  }
  /* the clock only where the time counts: the others are busy */
  if (atomic_load_explicit(&s->nsearching, RLX) +
          atomic_load_explicit(&s->nidle, RLX) >= s->nw - 1) {
    if (sent - w->gw_mark < batch) return 0;
  } else if (msrt_now_ns() - w->gw_since <
             (uint64_t)atomic_load_explicit(&s->steal_wait_us, RLX) * 1000) {
    return 0;
  }
  return !(atomic_load_explicit(&a->state, ACQ) & ST_CLOSED);
}

/* Room or closed, for msrt_waitlist_wait (seq_cst reads: its contract). */
static int room_state(void *obj) {
  msrt_actor *a = obj;
  if (atomic_load_explicit(&a->state, SC) & ST_CLOSED) return MSRT_E_CLOSED;
  if (atomic_load_explicit(&a->count, SC) < a->cap &&
      atomic_load_explicit(&a->bytes, SC) < a->cap_bytes)
    return MSRT_E_OK;
  return MSRT_WAIT_PENDING;
}

int msrt_actor_wait_room(msrt_actor *a, void (*waker)(void *), void *ud) {
  return msrt_waitlist_wait(&a->waiters, room_state, a, waker, ud);
}

bool msrt_actor_cancel_wait(msrt_actor *a, void (*waker)(void *), void *ud) {
  return msrt_waitlist_cancel(&a->waiters, waker, ud);
}

void msrt_actor_stop(msrt_actor *a) {
  unsigned st = atomic_load_explicit(&a->state, SC);
  for (;;) {
    if (st & ST_CLOSED) return;
    unsigned nst = st | ST_CLOSED | ST_SCHED;
    if (st & ST_SCHED) nst |= ST_NOTIFY;
    if (atomic_compare_exchange_weak_explicit(&a->state, &st, nst, SC, SC))
      break;
  }
  if (!(st & ST_SCHED)) schedule(a->s, a);
  wake_waiters(a);
}

/* ---- workers ------------------------------------------------------------- */

static int any_eligible(msrt_actor *a, int waiting) {
  if (lane_nonempty(a, LANE_SYS)) return 1;
  if (waiting) return 0;
  int locked = a->locked_pop;
  if (locked) msrt_spin_lock(&a->poplock);
  int r = lane_nonempty(a, LANE_HIGH) || lane_nonempty(a, LANE_LOW);
  if (locked) msrt_spin_unlock(&a->poplock);
  return r;
}

static void requeue(worker *w, msrt_actor *a) {
  msrt_sched *s = w->s;
  if (s->cfg.flags & MSRT_SCHED_SHARED_QUEUE) gq_push_chain(s, a, a, 1);
  else rq_push(w, a);
  notify_one(s);
}

/* The actor's cost a message, for thieves (steal_pays): its turns' ticks
 * over the messages they popped and sent (a turn that did neither counts
 * as one), both summed over about its last 4096 messages. Sent ones
 * count: a sender's messages cross to the other CPU when it moves away
 * from its receivers just as a receiver's do. Summed, not averaged a turn
 * at a time: a sender that fills a mailbox in one long turn, then sends
 * one message a turn while room trickles back, looked dear by its short
 * turns and was taken from its receivers again and again. */
static void note_cost(msrt_actor *a, uint64_t ticks, uint32_t sent) {
  uint64_t n = (uint64_t)a->popped + sent;
  a->cost_ticks += ticks;
  a->cost_msgs += (uint32_t)(n ? n : 1);
  if (a->cost_msgs > 4096) a->cost_ticks /= 2, a->cost_msgs /= 2;
  uint64_t c = a->cost_ticks / a->cost_msgs;
  if (c > UINT32_MAX) c = UINT32_MAX;
  atomic_store_explicit(&a->cost, c ? (uint32_t)c : 1, RLX);
}

static void run_turn(worker *w, msrt_actor *a) {
  msrt_sched *s = w->s;
  unsigned st = atomic_load_explicit(&a->state, SC);
  int closing = (st & ST_CLOSED) != 0;
  a->waiting = (st & ST_WAITING) != 0;
  int batch = atomic_load_explicit(&s->batch, RLX);
  a->budget = (uint32_t)batch;
  a->popped = 0;
  w->in_turn = 1;
  uint64_t t0 = s->nw > 1 ? msrt_ticks() : 0;
  atomic_store_explicit(&w->pushes, 0, RLX);
  w->gw_on = 0; /* msrt_actor_should_yield: nothing seen waiting yet */
  msrt_run_result r = s->cfg.run(a, batch, a->ud, w->index);
  if (s->nw > 1)
    note_cost(a, msrt_ticks() - t0, atomic_load_explicit(&w->pushes, RLX));
  defer_end_turn(w);
  if (a->freed) {
    room_freed_n(a, a->freed, a->freed_bytes);
    a->freed = 0;
    a->freed_bytes = 0;
  }
  stat_inc(&w->handled, a->popped);
  stat_inc(&w->turns, 1);
  if (r == MSRT_RUN_YIELDED) stat_inc(&w->gave_way, 1);
  if (r == MSRT_RUN_STOPPED || closing) {
    finish(s, a);
    return;
  }
  unsigned want = r == MSRT_RUN_WAITING ? ST_WAITING : 0;
  st = atomic_load_explicit(&a->state, SC);
  for (;;) {
    if (st & ST_NOTIFY)
      st = atomic_fetch_and_explicit(&a->state, ~ST_NOTIFY, SC) & ~ST_NOTIFY;
    if ((st & ST_CLOSED) || r == MSRT_RUN_YIELDED ||
        any_eligible(a, want != 0)) {
      unsigned nst = (st & ~ST_WAITING) | want;
      if (nst != st &&
          !atomic_compare_exchange_weak_explicit(&a->state, &st, nst, SC, SC))
        continue;
      requeue(w, a);
      return;
    }
    unsigned nst = (st & ~(ST_SCHED | ST_WAITING)) | want;
    if (atomic_compare_exchange_weak_explicit(&a->state, &st, nst, SC, SC))
      return; /* a may now be owned by another worker: do not touch */
  }
}

static msrt_actor *find_local(worker *w) {
  msrt_actor *a;
  if (++w->tick % GLOBAL_EVERY == 0 && (a = gq_pop(w))) return a;
  a = atomic_load_explicit(&w->lifo, RLX);
  if (a) {
    atomic_store_explicit(&w->lifo, NULL, RLX);
    if (w->lifo_streak < LIFO_MAX || rq_len(w) == 0) {
      w->lifo_streak++;
      return a;
    }
    rq_push(w, a); /* let the ring have a turn; no notify (Tokio does same) */
  }
  w->lifo_streak = 0;
  if ((a = rq_pop(w))) return a;
  return gq_pop(w);
}

static msrt_actor *find_remote(worker *w) {
  msrt_sched *s = w->s;
  msrt_actor *a = gq_pop(w);
  if (a || s->nw == 1 || (s->cfg.flags & MSRT_SCHED_SHARED_QUEUE)) return a;
  w->rng = w->rng * 1103515245u + 12345u;
  int start = (int)((w->rng >> 16) % (unsigned)s->nw);
  uint64_t now = msrt_ticks();
  for (int i = 0; i < s->nw; i++) {
    worker *v = &s->w[(start + i) % s->nw];
    if (v == w) continue;
    msrt_hop *p = w->peers ? &w->peers[v->index] : NULL;
    if (p && now < p->skip_until) continue;
    if (p && msrt_hop_look(p, &v->pushes, now, &w->hs))
      atomic_store_explicit(&w->hop_ns, msrt_hop_ns(p, &w->hs), RLX);
    if ((a = rq_steal(w, v, now))) return a;
  }
  return NULL;
}

/* Leaving the searching state having found work: if we were the last
 * searcher and more work is visible, get another worker searching. */
static void end_search(msrt_sched *s) {
  if (atomic_fetch_sub_explicit(&s->nsearching, 1, SC) == 1 &&
      work_visible(s))
    notify_one(s);
}

static msrt_actor *search(worker *w) {
  msrt_sched *s = w->s;
  int searching = 0;
  for (;;) {
    if (!searching) {
      int ns = atomic_load_explicit(&s->nsearching, RLX);
      if (2 * ns < s->nw || ns == 0) {
        atomic_fetch_add_explicit(&s->nsearching, 1, SC);
        searching = 1;
      }
    }
    uint64_t deadline = 0;
    if (searching) {
      uint64_t ns = msrt_now_ns();
      msrt_hop_scale_update(&w->hs, msrt_ticks(), ns,
                            atomic_load_explicit(&s->steal_wait_us, RLX));
      deadline = ns + atomic_load_explicit(&s->spin_ns, RLX);
    }
    for (;;) {
      msrt_actor *a = find_remote(w);
      if (a) {
        if (searching) end_search(s);
        return a;
      }
      if (atomic_load_explicit(&s->stopping, ACQ)) {
        if (searching) atomic_fetch_sub_explicit(&s->nsearching, 1, SC);
        return NULL;
      }
      if (!searching || msrt_now_ns() >= deadline) break;
      for (int i = 0; i < 16; i++) msrt_cpu_relax();
    }
    /* park */
    pthread_mutex_lock(&s->idle_mu);
    w->idle_next = s->idle;
    s->idle = w;
    w->idle_listed = 1;
    atomic_fetch_add_explicit(&s->nidle, 1, SC);
    pthread_mutex_unlock(&s->idle_mu);
    if (searching) {
      atomic_fetch_sub_explicit(&s->nsearching, 1, SC);
      searching = 0;
    }
    FULL_FENCE();
    if (work_visible(s) || atomic_load_explicit(&s->stopping, RLX)) {
      pthread_mutex_lock(&s->idle_mu);
      int mine = w->idle_listed;
      if (mine) {
        worker **pp = &s->idle;
        while (*pp != w) pp = &(*pp)->idle_next;
        *pp = w->idle_next;
        w->idle_listed = 0;
        atomic_fetch_sub_explicit(&s->nidle, 1, SC);
      }
      pthread_mutex_unlock(&s->idle_mu);
      if (mine) continue;
      /* A notifier already took us off the list: take its token. */
    } else {
      stat_inc(&w->parks, 1);
    }
    park_wait(w);
    if (!atomic_load_explicit(&s->stopping, RLX)) stat_inc(&w->wakes, 1);
    searching = 1; /* the notifier counted us as searching */
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  msrt_sched *s = w->s;
  tl_worker = w;
  msrt_hop_scale_init(&w->hs);
  for (;;) {
    if (atomic_load_explicit(&s->stopping, ACQ)) break;
    msrt_actor *a = find_local(w);
    if (!a && !(a = search(w))) break;
    if (atomic_load_explicit(&s->stopping, ACQ)) break;
    run_turn(w, a);
  }
  tl_worker = NULL;
  return NULL;
}

int msrt_sched_worker_index(void) { return tl_worker ? tl_worker->index : -1; }

/* ---- scheduler ----------------------------------------------------------- */

msrt_code msrt_sched_new(const msrt_sched_config *cfg, msrt_sched **out,
                   msrt_error *err) {
  *out = NULL;
  if (!cfg || cfg->workers < 1 || !cfg->run || cfg->batch < 0 ||
      cfg->spin_us < 0 || cfg->steal_wait_us < 0 || cfg->workers > 4096 ||
      (cfg->overflow != MSRT_OVERFLOW_DEFAULT &&
       (cfg->overflow < MSRT_OVERFLOW_BLOCK ||
        cfg->overflow > MSRT_OVERFLOW_ERROR)))
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "sched: bad config (workers >= 1, run required, "
                          "batch/spin_us/steal_wait_us >= 0, valid "
                          "overflow)");
  msrt_sched *s = aligned_alloc(64, sizeof *s);
  worker *w = aligned_alloc(64, sizeof *w * (size_t)cfg->workers);
  /* what each thief knows of each other worker; past MSRT_HOP_MAX_WORKERS
   * (n^2 records) thieves take whatever they find, as before hop.h */
  msrt_hop *peers = NULL;
  if (cfg->workers <= MSRT_HOP_MAX_WORKERS)
    peers = calloc((size_t)cfg->workers * (size_t)cfg->workers, sizeof *peers);
  if (!s || !w || (!peers && cfg->workers <= MSRT_HOP_MAX_WORKERS)) {
    free(s);
    free(w);
    free(peers);
    return msrt_error_set(err, MSRT_E_NOMEM, "sched: out of memory");
  }
  memset(s, 0, sizeof *s);
  memset(w, 0, sizeof *w * (size_t)cfg->workers);
  s->cfg = *cfg;
  if (s->cfg.overflow == MSRT_OVERFLOW_DEFAULT)
    s->cfg.overflow = MSRT_OVERFLOW_BLOCK;
  if (!s->cfg.mailbox_capacity)
    s->cfg.mailbox_capacity = MSRT_SCHED_DEFAULT_CAPACITY;
  s->nw = cfg->workers;
  atomic_init(&s->batch, cfg->batch ? cfg->batch : MSRT_SCHED_DEFAULT_BATCH);
  atomic_init(&s->spin_ns, (uint64_t)cfg->spin_us * 1000u);
  atomic_init(&s->steal_wait_us,
              cfg->steal_wait_us ? cfg->steal_wait_us : MSRT_HOP_STUCK_US);
  atomic_init(&s->capacity, s->cfg.mailbox_capacity);
  atomic_init(&s->bytes, s->cfg.mailbox_bytes ? s->cfg.mailbox_bytes
                                              : MSRT_SCHED_DEFAULT_BYTES);
  s->w = w;
  atomic_init(&s->accepting, 1);
  atomic_init(&s->stopping, 0);
  pthread_mutex_init(&s->gq_mu, NULL);
  pthread_mutex_init(&s->idle_mu, NULL);
  pthread_mutex_init(&s->reg_mu, NULL);
  atomic_init(&s->gq_len, 0);
  atomic_init(&s->nidle, 0);
  atomic_init(&s->nsearching, 0);
  atomic_init(&s->nactors, 0);
  atomic_init(&s->drops_oldest, 0);
  atomic_init(&s->drops_newest, 0);
  atomic_init(&s->refused_full, 0);
  for (int i = 0; i < s->nw; i++) {
    w[i].s = s;
    w[i].index = i;
    w[i].rng = 0x9e3779b9u * (unsigned)(i + 1);
    w[i].peers = peers ? peers + (size_t)i * (size_t)s->nw : NULL;
    atomic_init(&w[i].rq_head, 0);
    atomic_init(&w[i].rq_tail, 0);
    atomic_init(&w[i].lifo, NULL);
    atomic_init(&w[i].park_word, 0);
  }
  *out = s;
  return MSRT_E_OK;
}

msrt_code msrt_sched_start(msrt_sched *s) {
  if (s->started || atomic_load(&s->stopping)) return MSRT_E_INVALID_ARG;
  s->started = 1;
  pthread_attr_t attr, *ap = NULL;
  if (s->cfg.stack_size && pthread_attr_init(&attr) == 0) {
    size_t min = (size_t)PTHREAD_STACK_MIN;
    size_t sz = s->cfg.stack_size < min ? min : s->cfg.stack_size;
    if (pthread_attr_setstacksize(&attr, sz) == 0) ap = &attr;
  }
  for (int i = 0; i < s->nw; i++) {
    int rc = pthread_create(&s->w[i].th, ap, worker_main, &s->w[i]);
    if (rc) {
      if (ap) pthread_attr_destroy(ap);
      for (int j = i; j < s->nw; j++) s->w[j].joined = 1;
      msrt_sched_stop(s);
      return rc == EAGAIN ? MSRT_E_NOMEM : MSRT_E_INTERNAL;
    }
#ifdef __linux__
    char name[16];
    snprintf(name, sizeof name, "msrt-w%d", i % 100000);
    pthread_setname_np(s->w[i].th, name);
#endif
  }
  if (ap) pthread_attr_destroy(ap);
  return MSRT_E_OK;
}

static void wake_all(msrt_sched *s) {
  pthread_mutex_lock(&s->idle_mu);
  while (s->idle) {
    worker *w = s->idle;
    s->idle = w->idle_next;
    w->idle_listed = 0;
    atomic_fetch_sub_explicit(&s->nidle, 1, SC);
    atomic_fetch_add_explicit(&s->nsearching, 1, SC);
    unpark(w);
  }
  pthread_mutex_unlock(&s->idle_mu);
}

msrt_code msrt_sched_stop_timeout(msrt_sched *s, long ms) {
  atomic_store_explicit(&s->accepting, 0, SC);
  atomic_store_explicit(&s->stopping, 1, SC);
  if (!s->started || s->all_joined) return MSRT_E_OK;
  wake_all(s);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  if (ms > 0) {
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000L;
    }
  }
  int stuck = 0;
  for (int i = 0; i < s->nw; i++) {
    worker *w = &s->w[i];
    if (w->joined) continue;
    int rc = ms < 0 ? pthread_join(w->th, NULL)
                    : pthread_timedjoin_np(w->th, NULL, &dl);
    /* past the deadline, a worker that has finished still gets joined */
    if (rc != 0 && ms >= 0) rc = pthread_tryjoin_np(w->th, NULL);
    if (rc == 0) w->joined = 1;
    else stuck = 1;
  }
  if (stuck) return MSRT_E_TIMEOUT;
  s->all_joined = 1;
  return MSRT_E_OK;
}

void msrt_sched_stop(msrt_sched *s) { msrt_sched_stop_timeout(s, -1); }

void msrt_sched_tune(msrt_sched *s, int batch, int spin_us, size_t capacity,
                     size_t bytes, int steal_wait_us) {
  if (steal_wait_us > 0)
    atomic_store_explicit(&s->steal_wait_us, steal_wait_us, RLX);
  if (batch > 0) atomic_store_explicit(&s->batch, batch, RLX);
  if (spin_us >= 0)
    atomic_store_explicit(&s->spin_ns, (uint64_t)spin_us * 1000u, RLX);
  if (capacity > 0) atomic_store_explicit(&s->capacity, capacity, RLX);
  if (bytes > 0) atomic_store_explicit(&s->bytes, bytes, RLX);
}

void msrt_sched_abandon(msrt_sched *s) {
  for (int i = 0; i < s->nw; i++) {
    worker *w = &s->w[i];
    if (w->joined) continue;
    w->joined = 1; /* detached: gone without a join when it ever returns */
    pthread_detach(w->th);
  }
}

void msrt_sched_free(msrt_sched *s) {
  if (!s) return;
  msrt_sched_stop(s);
  for (;;) {
    pthread_mutex_lock(&s->reg_mu);
    msrt_actor *a = s->reg;
    pthread_mutex_unlock(&s->reg_mu);
    if (!a) break;
    finish(s, a);
  }
  pthread_mutex_destroy(&s->gq_mu);
  pthread_mutex_destroy(&s->idle_mu);
  pthread_mutex_destroy(&s->reg_mu);
  free(s->w[0].peers);
  free(s->w);
  free(s);
}

void msrt_sched_stats_get(msrt_sched *s, msrt_sched_stats *out,
                          msrt_worker_stats *per_worker) {
  memset(out, 0, sizeof *out);
  out->workers = (size_t)s->nw;
  size_t runnable = atomic_load_explicit(&s->gq_len, RLX);
  for (int i = 0; i < s->nw; i++) {
    worker *w = &s->w[i];
    msrt_worker_stats ws = {
        atomic_load_explicit(&w->handled, RLX),
        atomic_load_explicit(&w->turns, RLX),
        atomic_load_explicit(&w->parks, RLX),
        atomic_load_explicit(&w->wakes, RLX),
        atomic_load_explicit(&w->steals, RLX),
        atomic_load_explicit(&w->declined, RLX),
        atomic_load_explicit(&w->hop_ns, RLX),
        atomic_load_explicit(&w->gave_way, RLX)};
    if (per_worker) per_worker[i] = ws;
    out->total.handled += ws.handled;
    out->total.turns += ws.turns;
    out->total.parks += ws.parks;
    out->total.wakes += ws.wakes;
    out->total.steals += ws.steals;
    out->total.declined += ws.declined;
    out->total.gave_way += ws.gave_way;
    if (ws.hop_ns > out->total.hop_ns) out->total.hop_ns = ws.hop_ns;
    runnable += rq_len(w) + (atomic_load_explicit(&w->lifo, RLX) != NULL);
  }
  out->runnable = runnable;
  out->actors = atomic_load_explicit(&s->nactors, RLX);
  out->drops_oldest = atomic_load_explicit(&s->drops_oldest, RLX);
  out->drops_newest = atomic_load_explicit(&s->drops_newest, RLX);
  out->refused_full = atomic_load_explicit(&s->refused_full, RLX);
  out->parked = (size_t)atomic_load_explicit(&s->nidle, RLX);
}
