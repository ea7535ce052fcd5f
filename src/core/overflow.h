/* Overflow policies: what a bounded queue (an actor's mailbox, a process's
 * stdin gate, any endpoint of bus/endpoint.h) does with a message that
 * finds it full (docs/architecture.md "Threads and the path of a message";
 * the README's "Backpressure" section says what each means to a user).
 *
 * The names are stated here once: the Lua side reads them from msrt.core
 * (overflow_names), and every binding parses them through this table.
 *
 * Thread-safety: constants only.
 */
#ifndef MSRT_CORE_OVERFLOW_H
#define MSRT_CORE_OVERFLOW_H

#include "core/envelope.h"

typedef enum {
  MSRT_OVERFLOW_BLOCK,       /* "block": the sender waits for room */
  MSRT_OVERFLOW_DROP_OLDEST, /* "drop_oldest": evict the oldest queued */
  MSRT_OVERFLOW_DROP_NEWEST, /* "drop_newest": drop the arriving message */
  MSRT_OVERFLOW_ERROR,       /* "error": refuse it to the sender */
  MSRT_OVERFLOW_DEFAULT = -1 /* the queue's configured default */
} msrt_overflow;

/* The policies' names indexed by msrt_overflow (BLOCK..ERROR), then NULL:
 * the shape luaL_checkoption takes. */
extern const char *const msrt_overflow_names[];

/* Where a drop_oldest push hands the envelopes it evicts: fn(ud, old) on
 * the pushing thread, once per envelope, as it is evicted (old is valid for
 * the call; its reference stays the queue's). */
typedef struct {
  void (*fn)(void *ud, msrt_envelope *old);
  void *ud;
} msrt_evict_sink;

#endif
