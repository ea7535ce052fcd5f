#include "core/envelope.h"

#include <stdbool.h>
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

/* Fill v's header fields (id, trace) as a new message's; its time stamp
 * 0 (msrt_env_new reads the clock, msrt_env_copy a view's). */
static void stamp(msrt_envelope *v, int priority, uint8_t flags,
                  uint64_t trace_id) {
  atomic_init(&v->refs, 1);
  if (priority < MSRT_PRIORITY_HIGHEST) priority = MSRT_PRIORITY_HIGHEST;
  if (priority > MSRT_PRIORITY_LOWEST) priority = MSRT_PRIORITY_LOWEST;
  v->priority = (uint8_t)priority;
  v->flags = flags;
  v->id = new_id();
  v->trace_id = trace_id ? trace_id : v->id;
  v->ts_ns = 0;
  v->reply_deadline_ns = 0;
}

static bool too_long(size_t slen, size_t rlen, size_t hlen, size_t plen) {
  return slen > UINT32_MAX || rlen > UINT32_MAX || hlen > UINT32_MAX ||
         plen > UINT32_MAX;
}

/* An envelope's block for these parts, its bytes not yet written. */
static inline msrt_envelope *alloc_for(size_t slen, const char *reply, size_t rlen,
                                size_t hlen, size_t plen) {
  uint16_t home;
  msrt_envelope *e = msrt_envcache_alloc(sizeof(msrt_envelope) + slen + 1 +
                                             (reply ? rlen + 1 : 0) + hlen +
                                             plen,
                                         &home);
  if (e) e->home = home;
  return e;
}

/* Copy the parts into e's block (alloc_for's) and point its fields at
 * them; payload NULL leaves its plen bytes unwritten. Inlined into both
 * makers: one layout, no call on the publish path. */
static inline void lay_out(msrt_envelope *e, const char *subject, size_t slen,
                           const char *reply, size_t rlen,
                           const void *headers, size_t hlen,
                           const void *payload, size_t plen) {
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
}

void msrt_env_view(msrt_envelope *v, const char *subject, size_t slen,
                   const char *reply, size_t rlen, const void *headers,
                   size_t hlen, const void *payload, size_t plen, int priority,
                   uint8_t flags, uint64_t trace_id) {
  stamp(v, priority, flags, trace_id);
  v->home = 0;
  v->subject = subject;
  v->subject_len = (uint32_t)slen;
  v->reply = reply;
  v->reply_len = reply ? (uint32_t)rlen : 0;
  v->headers = hlen ? headers : NULL;
  v->headers_len = (uint32_t)hlen;
  v->payload = payload;
  v->payload_len = (uint32_t)plen;
}

msrt_envelope *msrt_env_copy(const msrt_envelope *v) {
  msrt_envelope *e =
      alloc_for(v->subject_len, v->reply, v->reply_len, v->headers_len,
                v->payload_len);
  if (!e) return NULL;
  uint16_t home = e->home;
  memcpy(e, v, sizeof *e); /* id, trace, priority, flags, time stamp,
                             reply deadline */
  e->home = home;
  atomic_init(&e->refs, 1);
  /* the clock read here, not in a view: a view that goes only to
   * borrowing endpoints never needs it (~40 instructions) */
  if (!e->ts_ns) e->ts_ns = msrt_wall_coarse_ns();
  lay_out(e, v->subject, v->subject_len, v->reply, v->reply_len, v->headers,
          v->headers_len, v->payload, v->payload_len);
  return e;
}

msrt_envelope *msrt_env_new(const char *subject, size_t slen,
                            const char *reply, size_t rlen,
                            const void *headers, size_t hlen,
                            const void *payload, size_t plen,
                            int priority, uint8_t flags, uint64_t trace_id) {
  if (too_long(slen, rlen, hlen, plen)) return NULL;
  msrt_envelope *e = alloc_for(slen, reply, rlen, hlen, plen);
  if (!e) return NULL;
  stamp(e, priority, flags, trace_id);
  e->ts_ns = msrt_wall_coarse_ns();
  lay_out(e, subject, slen, reply, rlen, headers, hlen, payload, plen);
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
