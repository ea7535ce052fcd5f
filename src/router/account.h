/* Router accounting: what became of every message copy, per subject class.
 *
 * Each copy the router is handed is counted once as accepted and once in
 * exactly one outcome (delivered, dead_lettered, refused, no_responders or
 * one of the drop reasons), so at rest, for every class and in total:
 *   accepted == delivered + dropped + dead_lettered + refused + no_responders
 * (lua/msrt/init.lua msrt.metrics documents which event lands where).
 *
 * Subject classes. A subject's class is its first token (the bytes before
 * the first '.': NATS subjects are hierarchies, so "work.review.c" is
 * "work" traffic, "_INBOX.x" replies, "msrt.dropped.x" the runtime's own).
 * The table is bounded: MSRT_CLASS_MAX classes, the first of which,
 * "_other", takes the subjects whose first token is empty, longer than
 * MSRT_CLASS_NAME_MAX bytes or holds a byte outside printable ASCII or '"'
 * or '\\' (so a class name is always a valid metric label), and every first
 * token seen after the table filled. Classes are never removed, so a flood
 * of distinct subjects cannot grow memory or metric cardinality.
 *
 * Counting is sharded: each thread that counts owns a shard (a cache-line
 * aligned block written only by its owner with a relaxed load + store), and
 * a read sums every shard, so the hot path writes no shared line. A freed
 * shard's counts fold into the account's shared counters.
 */
#ifndef MSRT_ROUTER_ACCOUNT_H
#define MSRT_ROUTER_ACCOUNT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MSRT_CLASS_MAX 64      /* classes, "_other" (index 0) included */
#define MSRT_CLASS_NAME_MAX 32 /* bytes of a class name */

typedef enum {
  MSRT_STAT_ACCEPTED,      /* publishes accepted by the router */
  MSRT_STAT_DELIVERED,     /* envelopes put into an endpoint */
  MSRT_STAT_DEAD_LETTERED, /* sent to a dead-letter subject */
  MSRT_STAT_REFUSED,       /* refused to the sender (overflow "error", bad
                              subject, oversized) */
  MSRT_STAT_NO_RESPONDERS, /* requests/publishes that matched nobody */
  MSRT_STAT_DROP_NEWEST,   /* dropped: mailbox full, drop_newest policy */
  MSRT_STAT_DROP_OLDEST,   /* dropped: evicted by drop_oldest */
  MSRT_STAT_DROP_NOT_READY,/* dropped: queue group had no ready member */
  MSRT_STAT_DROP_CLOSED,   /* dropped: endpoint closed or gone */
  MSRT_STAT_DROP_OTHER,    /* dropped: any other reason */
  MSRT_STAT__COUNT
} msrt_stat;

#define MSRT_STAT_DROP_FIRST MSRT_STAT_DROP_NEWEST

typedef struct {
  uint64_t v[MSRT_STAT__COUNT];
  uint64_t dropped; /* sum of the MSRT_STAT_DROP_* counters */
} msrt_router_stats;

typedef struct {
  char name[MSRT_CLASS_NAME_MAX + 1]; /* NUL-terminated */
  msrt_router_stats stats;
} msrt_class_stats;

typedef struct msrt_account msrt_account;
typedef struct msrt_account_shard msrt_account_shard;

/* "accepted", "delivered", "dead_lettered", "refused", "no_responders",
 * "drop_newest", "drop_oldest", "drop_not_ready", "drop_closed",
 * "drop_other"; "unknown" out of range. */
const char *msrt_stat_name(msrt_stat s);

/* Make / free an account (class "_other" only). new returns NULL when out
 * of memory; free also frees the shards still registered. Not thread-safe
 * against other calls on the same account. */
msrt_account *msrt_account_new(void);
void msrt_account_free(msrt_account *a);

/* Register a shard for the calling thread (NULL when out of memory), or
 * fold its counts into the account and free it. Thread-safe. */
msrt_account_shard *msrt_account_shard_new(msrt_account *a);
void msrt_account_shard_free(msrt_account_shard *s);

/* The class of a subject (see above): an index in [0, MSRT_CLASS_MAX).
 * Lock-free once the class exists (rt_hash of the first token and a
 * probe of a 128-slot table); a first token seen for the first time takes
 * the account's mutex once. Any bytes are accepted (invalid subjects are
 * classed too). Thread-safe. */
unsigned msrt_account_class(msrt_account *a, const char *subject, size_t len);

/* Add n to counter s of class cls. The shard version writes the shard's own
 * line (owner thread only: relaxed load + store); the account version is a
 * shared atomic add (any thread). Out-of-range s or cls is ignored. Adding
 * UINT64_MAX takes one away (sums are modulo 2^64). */
void msrt_account_add(msrt_account_shard *s, unsigned cls, msrt_stat st,
                      uint64_t n);
void msrt_account_add_shared(msrt_account *a, unsigned cls, msrt_stat st,
                             uint64_t n);

/* The counters of class cls in shard s, MSRT_STAT__COUNT of them indexed
 * by msrt_stat, for the owner thread to add several outcomes of one class
 * with msrt_account_bump, inline (a publish's accepted and delivered). An
 * out-of-range cls gets a row no read sums (msrt_account_add ignores
 * it too). Owner thread only. */
atomic_uint_least64_t *msrt_account_row(msrt_account_shard *s, unsigned cls);

/* msrt_account_add on a row of msrt_account_row: a relaxed load + store
 * (the owner is its only writer). st must be in range. */
static inline void msrt_account_bump(atomic_uint_least64_t *row, msrt_stat st,
                                     uint64_t n) {
  atomic_store_explicit(
      &row[st], atomic_load_explicit(&row[st], memory_order_relaxed) + n,
      memory_order_relaxed);
}

/* The totals over every class and shard into *out. Each counter is read
 * atomically; the set is not one instant. Thread-safe (takes the mutex). */
void msrt_account_read(msrt_account *a, msrt_router_stats *out);

/* Per class: fills out[0 .. min(n, cap)) with each class's name and counts
 * (class index order, "_other" first) and returns n, the number of classes.
 * Thread-safe (takes the mutex). */
size_t msrt_account_classes(msrt_account *a, msrt_class_stats *out,
                            size_t cap);

#endif
