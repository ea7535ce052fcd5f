#include "core/envcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/mem.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BURY(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define DIG(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BURY(p, n) ((void)(p), (void)(n))
#define DIG(p, n) ((void)(p), (void)(n))
#endif

#define UNIT 64
#define NCLS 8 /* 64 .. 512 bytes */
#define MAX_HOMES 1024
/* A tag: the home's number (bits 0-12, 0 = none) and the class (13-15),
 * so a free needs neither the size nor a division. */
#define TAG(idx, c) ((uint16_t)((idx) | (unsigned)(c) << 13))
_Static_assert(MAX_HOMES <= 1 << 13 && NCLS <= 8, "a tag is 16 bits");

/* A cached block's last bytes (the envelope's first ones, which a use
 * after the last unref would touch, stay poisoned under ASan). The first
 * block of a batch (a chain made by one freeing thread) also carries the
 * batch's tail and count. */
typedef struct blk {
  struct blk *next;       /* in a chain (block addresses, not headers) */
  struct blk *batch_next; /* a batch's first block: the next batch home */
  struct blk *tail;       /* a batch's first block: its last */
  uint32_t n;             /* a batch's first block: its blocks */
} blk;

#define SIZE(c) ((size_t)((c) + 1) * UNIT)
static inline blk *H(void *b, int c) {
  return (blk *)((char *)b + SIZE(c) - sizeof(blk));
}
/* Under ASan a cached block is poisoned but for its header. */
static inline void bury(void *b, int c) { BURY(b, SIZE(c) - sizeof(blk)); }

typedef struct home {
  /* written by every thread that sends a block home */
  _Alignas(64) _Atomic(blk *) remote[NCLS]; /* stacks of batches */
  atomic_uint queued[NCLS]; /* blocks in them (a bound, not exact) */
  /* the owner's */
  _Alignas(64) blk *free[NCLS];
  uint32_t nfree[NCLS];
  uint16_t idx;
  struct home *idle_next;
} home;

typedef struct {
  home *to;
  blk *head, *tail;
  uint32_t n;
} outbox;

typedef struct {
  home *h;      /* this thread's cache; NULL until its first alloc */
  int none;     /* no cache left for this thread: core/mem.h directly */
  int armed;    /* the exit destructor is registered */
  outbox out[NCLS];
} tstate;

static _Thread_local tstate tl;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(home *) homes[MAX_HOMES]; /* by tag; 0 unused */
static unsigned nhomes = 1;              /* under mu */
static home *idle;                       /* exited threads' caches, mu */

static void release_chain(blk *b, int c);

static void flush(outbox *o, int c) {
  if (atomic_load_explicit(&o->to->queued[c], memory_order_relaxed) + o->n >
      ENVCACHE_KEEP) {
    /* its owner is not taking them: do not let its cache grow */
    release_chain(o->head, c);
    o->head = o->tail = NULL;
    o->n = 0;
    return;
  }
  atomic_fetch_add_explicit(&o->to->queued[c], o->n, memory_order_relaxed);
  blk *first = o->head, *fh = H(first, c);
  fh->tail = o->tail;
  fh->n = o->n;
  blk *old = atomic_load_explicit(&o->to->remote[c], memory_order_relaxed);
  do {
    fh->batch_next = old;
  } while (!atomic_compare_exchange_weak_explicit(
      &o->to->remote[c], &old, first, memory_order_release,
      memory_order_relaxed));
  o->head = o->tail = NULL;
  o->n = 0;
}

static void release_chain(blk *b, int c) {
  while (b) {
    blk *next = H(b, c)->next;
    msrt_mem_free(b);
    b = next;
  }
}

static void thread_exit(void *p) {
  tstate *t = p;
  t->armed = 0;
  for (int c = 0; c < NCLS; c++)
    if (t->out[c].n) flush(&t->out[c], c);
  home *h = t->h;
  if (!h) return;
  for (int c = 0; c < NCLS; c++) {
    release_chain(h->free[c], c);
    h->free[c] = NULL;
    h->nfree[c] = 0;
  }
  t->h = NULL;
  pthread_mutex_lock(&mu);
  h->idle_next = idle;
  idle = h;
  pthread_mutex_unlock(&mu);
}

static void make_key(void) { pthread_key_create(&tl_key, thread_exit); }

static void arm(tstate *t) {
  pthread_once(&tl_once, make_key);
  pthread_setspecific(tl_key, t);
  t->armed = 1;
}

/* This thread's cache: an exited thread's, or a new one. */
static home *adopt(tstate *t) {
  home *h = NULL;
  pthread_mutex_lock(&mu);
  if (idle) {
    h = idle;
    idle = h->idle_next;
  } else if (nhomes < MAX_HOMES) {
    h = msrt_mem_alloc(sizeof *h);
    if (h) {
      memset(h, 0, sizeof *h);
      h->idx = (uint16_t)nhomes;
      for (int c = 0; c < NCLS; c++) {
        atomic_init(&h->remote[c], NULL);
        atomic_init(&h->queued[c], 0);
      }
      atomic_store_explicit(&homes[nhomes++], h, memory_order_release);
    }
  }
  pthread_mutex_unlock(&mu);
  if (!h) {
    t->none = 1;
    return NULL;
  }
  if (!t->armed) arm(t);
  t->h = h;
  return h;
}

/* Take what came home for class c into the free list; a batch that would
 * pass ENVCACHE_KEEP goes back to core/mem.h. */
static blk *take_home(home *h, int c) {
  if (!atomic_load_explicit(&h->remote[c], memory_order_relaxed)) return NULL;
  blk *s = atomic_exchange_explicit(&h->remote[c], NULL, memory_order_acquire);
  uint32_t taken = 0;
  while (s) {
    blk *first = s, *fh = H(first, c);
    uint32_t n = fh->n;
    s = fh->batch_next;
    taken += n;
    if (h->nfree[c] + n > ENVCACHE_KEEP) {
      release_chain(first, c);
      continue;
    }
    H(fh->tail, c)->next = h->free[c];
    h->free[c] = first;
    h->nfree[c] += n;
  }
  atomic_fetch_sub_explicit(&h->queued[c], taken, memory_order_relaxed);
  return h->free[c];
}

void *msrt_envcache_alloc(size_t n, uint16_t *tag) {
  size_t c = n ? (n - 1) / UNIT : 0;
  *tag = 0;
  if (c >= NCLS) return msrt_mem_alloc(n);
  tstate *t = &tl;
  home *h = t->h;
  if (!h && (t->none || !(h = adopt(t)))) return msrt_mem_alloc(n);
  size_t size = SIZE(c);
  blk *b = h->free[c];
  if (!b) b = take_home(h, (int)c);
  *tag = TAG(h->idx, c);
  if (!b) return msrt_mem_alloc(size);
  blk *next = H(b, (int)c)->next;
  h->free[c] = next;
  h->nfree[c]--;
  DIG(b, size);
  /* The next block was most likely freed on another CPU: fetch its lines
   * now (write hint, envcache.h), while this publish goes on, not at the
   * next alloc. */
  if (next)
    for (size_t i = 0; i < size; i += 64)
      __builtin_prefetch((char *)next + i, 1, 3);
  return b;
}

void msrt_envcache_free(void *p, uint16_t tag) {
  if (!tag) {
    msrt_mem_free(p);
    return;
  }
  int c = tag >> 13;
  home *h = atomic_load_explicit(&homes[tag & 0x1fff], memory_order_acquire);
  tstate *t = &tl;
  if (h == t->h) {
    if (h->nfree[c] >= ENVCACHE_KEEP) {
      msrt_mem_free(p);
      return;
    }
    H(p, c)->next = h->free[c];
    h->free[c] = p;
    h->nfree[c]++;
    bury(p, c);
    return;
  }
  outbox *o = &t->out[c];
  if (o->to != h) {
    if (o->n) flush(o, c);
    o->to = h;
  }
  if (!t->armed) arm(t);
  H(p, c)->next = o->head;
  if (!o->head) o->tail = p;
  o->head = p;
  bury(p, c);
  if (++o->n == ENVCACHE_BATCH) flush(o, c);
}

size_t msrt_envcache_held(void) {
  size_t n = 0;
  if (tl.h)
    for (int c = 0; c < NCLS; c++) n += tl.h->nfree[c];
  return n;
}
