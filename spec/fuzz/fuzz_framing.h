/* Helpers of the framing targets (jsonl, rpc): an event log of what a
 * framer handed out, compared between two ways of feeding the same bytes,
 * and the feeding in random chunk sizes.
 */
#ifndef MSRT_SPEC_FUZZ_FRAMING_H
#define MSRT_SPEC_FUZZ_FRAMING_H

#include "fuzz.h"
#include "proc/codec.h"
#include "proc/framer.h"

/* Events are logged as: tag ('L' line / 'B' bad), length, total, bytes. */
static inline void fz_log_event(msrt_sbuf *log, char tag, const char *p,
                                size_t n, size_t total) {
  msrt_sbuf_putc(log, tag);
  msrt_sbuf_put(log, &n, sizeof n);
  msrt_sbuf_put(log, &total, sizeof total);
  msrt_sbuf_put(log, p, n);
}

/* Feed s to f in chunks whose sizes come from seed (0 = all at once: 1
 * byte up to 4 KiB, empty reads included), then finish and free it. */
static inline void fz_feed_chunked(msrt_framer *f, const char *s, size_t n,
                                   uint64_t seed) {
  static const size_t biggest[] = {1, 2, 3, 7, 64, 4096};
  size_t most = biggest[seed % 6];
  for (size_t at = 0; at < n;) {
    size_t k = seed ? fz_next(&seed) % (most + 1) : n - at;
    if (k > n - at) k = n - at;
    FUZZ_ASSERT(msrt_framer_feed(f, s + at, k) == 0);
    at += k;
  }
  msrt_framer_finish(f);
  msrt_framer_free(f);
}

static inline void fz_same_log(const msrt_sbuf *a, const msrt_sbuf *b) {
  FUZZ_ASSERT(!a->oom && !b->oom);
  FUZZ_ASSERT(a->len == b->len);
  FUZZ_ASSERT(a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

#endif
