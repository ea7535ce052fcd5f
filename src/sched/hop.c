/* How far the other worker's CPU is; see hop.h. */
#include "sched/hop.h"

#include "core/clock.h"

void msrt_hop_scale_init(msrt_hop_scale *c) {
  *c = (msrt_hop_scale){.ticks0 = msrt_ticks(), .ns0 = msrt_now_ns()};
}

void msrt_hop_scale_update(msrt_hop_scale *c, uint64_t ticks, uint64_t ns,
                           int wait_us) {
  if (ns < c->ns0 + 1000000 || ticks <= c->ticks0) return;
  uint64_t tpus = (ticks - c->ticks0) * 1000 / (ns - c->ns0);
  if (!tpus) tpus = 1;
  c->tpus = tpus;
  c->near = tpus * MSRT_HOP_NEAR_NS / 1000;
  c->epoch = tpus * MSRT_HOP_EPOCH_US;
  c->stuck = tpus * (uint64_t)(wait_us > 0 ? wait_us : MSRT_HOP_STUCK_US);
  c->backoff = tpus * MSRT_HOP_BACKOFF_US;
}

/* One load timed in ticks. On x86 the fences keep the load between the two
 * counter reads (rdtscp waits for earlier loads to complete; the last
 * lfence keeps later work out); elsewhere msrt_now_ns brackets it. */
static unsigned timed_load(const atomic_uint *x, uint64_t *ticks) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned aux;
  _mm_lfence();
  uint64_t t0 = __rdtsc();
  _mm_lfence();
  unsigned v = atomic_load_explicit(x, memory_order_relaxed);
  uint64_t t1 = __rdtscp(&aux);
  _mm_lfence();
#else
  uint64_t t0 = msrt_now_ns();
  unsigned v = atomic_load_explicit(x, memory_order_relaxed);
  uint64_t t1 = msrt_now_ns();
#endif
  *ticks = t1 - t0;
  return v;
}

int msrt_hop_look(msrt_hop *p, const atomic_uint *word, uint64_t now,
                  const msrt_hop_scale *c) {
  int due = c->tpus && (p->set_n < MSRT_HOP_SAMPLES ||
                        now - p->set_start >= c->epoch);
  if (!due) return 0;
  if (p->set_n >= MSRT_HOP_SAMPLES) p->set_n = 0;
  if (p->set_n == 0) p->set_start = now;
  uint64_t t;
  unsigned v = timed_load(word, &t);
  if (v == p->word) return 0; /* not written since: a hit, not a hop */
  p->word = v;
  /* insertion keeps the set sorted: the median is in the middle */
  uint32_t x = t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
  unsigned i = p->set_n++;
  for (; i > 0 && p->set[i - 1] > x; i--) p->set[i] = p->set[i - 1];
  p->set[i] = x;
  if (p->set_n < MSRT_HOP_SAMPLES) return 0;
  uint32_t m = p->set[MSRT_HOP_SAMPLES / 2] ? p->set[MSRT_HOP_SAMPLES / 2] : 1;
  int near = m <= c->near;
  if ((p->hop && (p->hop <= c->near) == near) ||
      (p->cand && (p->cand <= c->near) == near)) {
    p->hop = m; /* the same verdict as the last, or twice in a row */
    p->cand = 0;
    return 1;
  }
  /* a new verdict counts once the next set, begun at once, agrees */
  p->cand = m;
  p->set_n = 0;
  return 0;
}

int msrt_hop_pays(msrt_hop *p, uint32_t cost, unsigned head, uint64_t now,
                  const msrt_hop_scale *c) {
  if (head != p->head || !p->head_at) p->head = head, p->head_at = now;
  if (msrt_hop_near(p, c)) return 1;
  /* far, or not known yet (taken as far: a cheap actor moved away from
   * its sender stays away while it has work, a mistake a wait repairs) */
  uint64_t hop = p->hop ? p->hop : 2 * c->near;
  if (!cost || cost > hop * MSRT_HOP_LINES) return 1;
  return now - p->head_at >= c->stuck;
}

uint64_t msrt_hop_ns(const msrt_hop *p, const msrt_hop_scale *c) {
  return c->tpus ? (uint64_t)p->hop * 1000 / c->tpus : 0;
}
