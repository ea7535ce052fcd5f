#include "core/envelope.h"

#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/envcache.h"

/* Per-message bookkeeping without a shared write per message: a counter
 * every thread bumps is a cache line bouncing between CPUs on each publish.
 * Ids come from the shared counter in blocks of ID_BLOCK per thread (unique,
 * increasing per thread, not across threads); the live count is a sum of
 * per-thread slots (a thread may free what another made: only the sum is
 * meaningful). */
#define ID_BLOCK 4096
#define LIVE_SLOTS 64

static atomic_uint_fast64_t next_block = 1;
static _Thread_local uint64_t tl_next, tl_end;

typedef struct {
  _Alignas(64) atomic_long n;
} live_slot;
static live_slot live[LIVE_SLOTS];
static atomic_uint next_slot;
static _Thread_local live_slot *tl_live;

static uint64_t new_id(void) {
  if (tl_next == tl_end) {
    tl_next = atomic_fetch_add_explicit(&next_block, ID_BLOCK,
                                        memory_order_relaxed);
    tl_end = tl_next + ID_BLOCK;
  }
  return tl_next++;
}

static void count_live(long d) {
  if (!tl_live) {
    unsigned i = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed);
    tl_live = &live[i % LIVE_SLOTS]; /* shared past LIVE_SLOTS threads */
  }
  atomic_fetch_add_explicit(&tl_live->n, d, memory_order_relaxed);
}

msrt_envelope *msrt_env_new(const char *subject, size_t slen,
                            const char *reply, size_t rlen,
                            const void *headers, size_t hlen,
                            const void *payload, size_t plen,
                            int priority, uint8_t flags, uint64_t trace_id) {
  if (slen > UINT32_MAX || rlen > UINT32_MAX || hlen > UINT32_MAX ||
      plen > UINT32_MAX)
    return NULL;
  size_t total = sizeof(msrt_envelope) + slen + 1 + (reply ? rlen + 1 : 0) +
                 hlen + plen;
  uint16_t home;
  msrt_envelope *e = msrt_envcache_alloc(total, &home);
  if (!e) return NULL;
  e->home = home;
  atomic_init(&e->refs, 1);
  if (priority < MSRT_PRIORITY_HIGHEST) priority = MSRT_PRIORITY_HIGHEST;
  if (priority > MSRT_PRIORITY_LOWEST) priority = MSRT_PRIORITY_LOWEST;
  e->priority = (uint8_t)priority;
  e->flags = flags;
  e->id = new_id();
  e->trace_id = trace_id ? trace_id : e->id;
  e->ts_ns = msrt_wall_ns();
  e->reply_deadline_ns = 0;

  unsigned char *p = e->data;
  memcpy(p, subject, slen);
  p[slen] = 0;
  e->subject = (const char *)p;
  e->subject_len = (uint32_t)slen;
  p += slen + 1;
  e->reply = NULL;
  e->reply_len = 0;
  if (reply) {
    memcpy(p, reply, rlen);
    p[rlen] = 0;
    e->reply = (const char *)p;
    e->reply_len = (uint32_t)rlen;
    p += rlen + 1;
  }
  e->headers = hlen ? p : NULL;
  e->headers_len = (uint32_t)hlen;
  if (hlen) memcpy(p, headers, hlen);
  p += hlen;
  e->payload = p;
  e->payload_len = (uint32_t)plen;
  if (plen && payload) memcpy(p, payload, plen);
  count_live(1);
  return e;
}

void msrt_env_unref(msrt_envelope *e) {
  if (!e) return;
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
    count_live(-1);
    msrt_envcache_free(e, e->home);
  }
}

long msrt_env_live(void) {
  long n = 0;
  for (int i = 0; i < LIVE_SLOTS; i++)
    n += atomic_load_explicit(&live[i].n, memory_order_relaxed);
  return n;
}
