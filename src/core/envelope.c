#include "core/envelope.h"

#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/mem.h"

static atomic_uint_fast64_t next_id = 1;
static atomic_long live;

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
  msrt_envelope *e = msrt_mem_alloc(total);
  if (!e) return NULL;
  atomic_init(&e->refs, 1);
  if (priority < MSRT_PRIORITY_HIGHEST) priority = MSRT_PRIORITY_HIGHEST;
  if (priority > MSRT_PRIORITY_LOWEST) priority = MSRT_PRIORITY_LOWEST;
  e->priority = (uint8_t)priority;
  e->flags = flags;
  e->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
  e->trace_id = trace_id ? trace_id : e->id;
  e->ts_ns = msrt_wall_ns();

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
  if (plen) memcpy(p, payload, plen);
  atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
  return e;
}

void msrt_env_unref(msrt_envelope *e) {
  if (!e) return;
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
    atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    msrt_mem_free(e);
  }
}

long msrt_env_live(void) {
  return atomic_load_explicit(&live, memory_order_relaxed);
}
