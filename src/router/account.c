#include "router/account.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "router/internal.h"

#define SLOTS 128 /* class lookup table: twice MSRT_CLASS_MAX, power of 2 */
_Static_assert(SLOTS >= 2 * MSRT_CLASS_MAX && (SLOTS & (SLOTS - 1)) == 0,
               "class slots");

typedef atomic_uint_least64_t counters[MSRT_CLASS_MAX][MSRT_STAT__COUNT];

struct msrt_account_shard {
  _Alignas(64) counters v; /* owner writes, readers sum */
  atomic_uint_least64_t spare[MSRT_STAT__COUNT]; /* msrt_account_row's for
                                                    a class out of range */
  msrt_account *a;
  msrt_account_shard *next, *prev;
};

struct msrt_account {
  /* Lookup: slot -> class index (0 = empty; class 0 is never looked up).
   * A slot is stored (release) after its class's name and length. */
  _Atomic unsigned char slot[SLOTS];
  atomic_bool full;
  unsigned char len[MSRT_CLASS_MAX];
  char name[MSRT_CLASS_MAX][MSRT_CLASS_NAME_MAX + 1];
  counters shared; /* msrt_account_add_shared and freed shards */
  /* Below: mutex. */
  pthread_mutex_t mu;
  unsigned n; /* classes named, "_other" included */
  msrt_account_shard *shards;
};

static const char *const stat_names[] = {
    "accepted",    "delivered",   "dead_lettered",  "refused",
    "no_responders", "drop_newest", "drop_oldest", "drop_not_ready",
    "drop_closed", "drop_other"};
_Static_assert(sizeof stat_names / sizeof *stat_names == MSRT_STAT__COUNT,
               "stat names");

const char *msrt_stat_name(msrt_stat s) {
  return (unsigned)s < MSRT_STAT__COUNT ? stat_names[s] : "unknown";
}

msrt_account *msrt_account_new(void) {
  msrt_account *a = aligned_alloc(64, (sizeof *a + 63) & ~(size_t)63);
  if (!a) return NULL;
  memset(a, 0, sizeof *a); /* atomics: all-zero is their initial state */
  pthread_mutex_init(&a->mu, NULL);
  memcpy(a->name[0], "_other", 7);
  a->len[0] = 6;
  a->n = 1;
  return a;
}

void msrt_account_free(msrt_account *a) {
  if (!a) return;
  while (a->shards) {
    msrt_account_shard *s = a->shards;
    a->shards = s->next;
    free(s);
  }
  pthread_mutex_destroy(&a->mu);
  free(a);
}

msrt_account_shard *msrt_account_shard_new(msrt_account *a) {
  msrt_account_shard *s = aligned_alloc(64, (sizeof *s + 63) & ~(size_t)63);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->a = a;
  pthread_mutex_lock(&a->mu);
  s->next = a->shards;
  if (a->shards) a->shards->prev = s;
  a->shards = s;
  pthread_mutex_unlock(&a->mu);
  return s;
}

void msrt_account_shard_free(msrt_account_shard *s) {
  if (!s) return;
  msrt_account *a = s->a;
  pthread_mutex_lock(&a->mu);
  if (s->prev) s->prev->next = s->next;
  else a->shards = s->next;
  if (s->next) s->next->prev = s->prev;
  for (unsigned c = 0; c < a->n; c++)
    for (int i = 0; i < MSRT_STAT__COUNT; i++)
      atomic_fetch_add_explicit(
          &a->shared[c][i],
          atomic_load_explicit(&s->v[c][i], memory_order_relaxed),
          memory_order_relaxed);
  pthread_mutex_unlock(&a->mu);
  free(s);
}

/* A first token that can be a class name (see account.h). */
static bool nameable(const char *p, size_t n) {
  if (n == 0 || n > MSRT_CLASS_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

/* Probe for p/n from slot h; returns the class, or 0 with *at = the first
 * empty slot (SLOTS when none). */
static unsigned probe(msrt_account *a, const char *p, size_t n, uint64_t h,
                      unsigned *at) {
  for (unsigned i = 0; i < SLOTS; i++) {
    unsigned k = (unsigned)(h + i) & (SLOTS - 1);
    unsigned c = atomic_load_explicit(&a->slot[k], memory_order_acquire);
    if (c == 0) {
      *at = k;
      return 0;
    }
    if (a->len[c] == n && memcmp(a->name[c], p, n) == 0) return c;
  }
  *at = SLOTS;
  return 0;
}

/* A first sighting: name a new class under the mutex (another thread may
 * have named it meanwhile: probe again). */
static unsigned add_class(msrt_account *a, const char *p, size_t n,
                          uint64_t h) {
  pthread_mutex_lock(&a->mu);
  unsigned at, c = probe(a, p, n, h, &at);
  if (c == 0 && a->n < MSRT_CLASS_MAX && at < SLOTS) {
    c = a->n++;
    memcpy(a->name[c], p, n);
    a->name[c][n] = '\0';
    a->len[c] = (unsigned char)n;
    atomic_store_explicit(&a->slot[at], (unsigned char)c,
                          memory_order_release);
  }
  if (a->n == MSRT_CLASS_MAX)
    atomic_store_explicit(&a->full, true, memory_order_relaxed);
  pthread_mutex_unlock(&a->mu);
  return c;
}

unsigned msrt_account_class(msrt_account *a, const char *subject,
                            size_t len) {
  const char *dot = memchr(subject, '.', len);
  size_t n = dot ? (size_t)(dot - subject) : len;
  if (!nameable(subject, n)) return 0;
  uint64_t h = rt_hash(subject, n);
  unsigned at, c = probe(a, subject, n, h, &at);
  if (c || atomic_load_explicit(&a->full, memory_order_relaxed)) return c;
  return add_class(a, subject, n, h);
}

void msrt_account_add(msrt_account_shard *s, unsigned cls, msrt_stat st,
                      uint64_t n) {
  if (cls >= MSRT_CLASS_MAX || (unsigned)st >= MSRT_STAT__COUNT) return;
  atomic_uint_least64_t *v = &s->v[cls][st];
  atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

atomic_uint_least64_t *msrt_account_row(msrt_account_shard *s, unsigned cls) {
  return cls < MSRT_CLASS_MAX ? s->v[cls] : s->spare;
}

void msrt_account_add_shared(msrt_account *a, unsigned cls, msrt_stat st,
                             uint64_t n) {
  if (cls >= MSRT_CLASS_MAX || (unsigned)st >= MSRT_STAT__COUNT) return;
  atomic_fetch_add_explicit(&a->shared[cls][st], n, memory_order_relaxed);
}

/* Sum class c over the shared counters and every shard (mutex held). */
static void sum_class(msrt_account *a, unsigned c, msrt_router_stats *out) {
  for (int i = 0; i < MSRT_STAT__COUNT; i++) {
    uint64_t v = atomic_load_explicit(&a->shared[c][i], memory_order_relaxed);
    for (msrt_account_shard *s = a->shards; s; s = s->next)
      v += atomic_load_explicit(&s->v[c][i], memory_order_relaxed);
    out->v[i] += v;
    if (i >= MSRT_STAT_DROP_FIRST) out->dropped += v;
  }
}

void msrt_account_read(msrt_account *a, msrt_router_stats *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&a->mu);
  for (unsigned c = 0; c < a->n; c++) sum_class(a, c, out);
  pthread_mutex_unlock(&a->mu);
}

size_t msrt_account_classes(msrt_account *a, msrt_class_stats *out,
                            size_t cap) {
  pthread_mutex_lock(&a->mu);
  size_t n = a->n;
  for (size_t c = 0; c < n && c < cap; c++) {
    memcpy(out[c].name, a->name[c], sizeof out[c].name);
    memset(&out[c].stats, 0, sizeof out[c].stats);
    sum_class(a, (unsigned)c, &out[c].stats);
  }
  pthread_mutex_unlock(&a->mu);
  return n;
}
