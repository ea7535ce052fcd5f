#include "sched/mnode.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* A slab: one aligned KiB, a header, then nodes handed out in address
 * order (mnode.h says why). */
#define SLAB_BYTES 1024
#define LOCAL_MAX 32 /* empty slabs a thread keeps before giving some back */
#define BATCH 16     /* empty slabs moved per shared-pool transfer */
#define AHEAD 16     /* nodes fetched ahead of the next alloc */
#define GROW 15      /* slabs made at once (one malloc, never freed) */

typedef struct slab {
  atomic_uint live;  /* nodes not freed yet, counting those not handed out */
  unsigned batch_n;  /* a batch's first slab: the batch's slabs */
  struct slab *next; /* in a free list or a batch */
  struct slab *batch_next; /* a batch's first slab: the next batch */
  void *pad;
  msrt_mnode nodes[];
} slab;

#define SLAB_NODES ((unsigned)((SLAB_BYTES - sizeof(slab)) / sizeof(msrt_mnode)))
_Static_assert(sizeof(slab) == 32 && sizeof(msrt_mnode) == 16,
               "a slab holds 62 nodes");

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static slab *pool_batches; /* batches of empty slabs, via batch_next */
static void *pool_raw;     /* every block of GROW slabs made (kept reachable) */

typedef struct {
  slab *cur;     /* the slab being handed out, or NULL */
  unsigned idx;  /* its next node */
  slab *free;    /* empty slabs, via next */
  unsigned nfree;
  int armed; /* the exit destructor is registered */
} tcache;

static _Thread_local tcache tl;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static inline slab *slab_of(msrt_mnode *n) {
  return (slab *)((uintptr_t)n & ~(uintptr_t)(SLAB_BYTES - 1));
}

/* The first n slabs of list *from, as a batch, to the shared pool. */
static void give_batch(slab **from, unsigned n) {
  slab *first = *from, *last = first;
  for (unsigned k = 1; k < n; k++) last = last->next;
  *from = last->next;
  last->next = NULL;
  first->batch_n = n;
  pthread_mutex_lock(&pool_mu);
  first->batch_next = pool_batches;
  pool_batches = first;
  pthread_mutex_unlock(&pool_mu);
}

static void tcache_exit(void *p);
static void make_key(void) { pthread_key_create(&tl_key, tcache_exit); }

/* Registers this thread's exit destructor, once. */
static void arm(tcache *c) {
  if (c->armed) return;
  pthread_once(&tl_once, make_key);
  pthread_setspecific(tl_key, c);
  c->armed = 1;
}

/* An empty slab into this thread's list; past LOCAL_MAX, BATCH of them go
 * to the shared pool (in fan-out the receivers' thread empties the slabs
 * the sender's fills). */
static void keep_empty(tcache *c, slab *s) {
  arm(c);
  s->next = c->free;
  c->free = s;
  if (++c->nfree < LOCAL_MAX) return;
  give_batch(&c->free, BATCH);
  c->nfree -= BATCH;
}

/* A node freed: the thread that frees a slab's last node owns the slab. */
static inline void put(tcache *c, slab *s, unsigned n) {
  if (atomic_fetch_sub_explicit(&s->live, n, memory_order_acq_rel) == n)
    keep_empty(c, s);
}

/* What this thread never handed out counts as freed; its empty slabs go
 * to the shared pool. */
static void tcache_exit(void *p) {
  tcache *c = p;
  if (c->cur && c->idx < SLAB_NODES) put(c, c->cur, SLAB_NODES - c->idx);
  c->cur = NULL;
  if (c->nfree) give_batch(&c->free, c->nfree);
  c->nfree = 0;
}

/* GROW new slabs: the first, the others into this thread's list. (Carved
 * from one malloc: aligned_alloc(1024, 1024) from libmimalloc 2.0 gave
 * blocks not so aligned in this process.) */
static slab *grow(tcache *c) {
  char *raw = malloc((GROW + 1) * SLAB_BYTES + sizeof(void *));
  if (!raw) return NULL;
  uintptr_t at = ((uintptr_t)raw + sizeof(void *) + SLAB_BYTES - 1) &
                 ~(uintptr_t)(SLAB_BYTES - 1);
  pthread_mutex_lock(&pool_mu);
  *(void **)raw = pool_raw;
  pool_raw = raw;
  pthread_mutex_unlock(&pool_mu);
  for (unsigned i = 1; i < GROW; i++) {
    slab *e = (slab *)(at + (uintptr_t)i * SLAB_BYTES);
    e->next = c->free;
    c->free = e;
    c->nfree++;
  }
  return (slab *)at;
}

/* The next slab to hand out: this thread's, the pool's, or a new one. */
static slab *next_slab(tcache *c) {
  arm(c);
  if (!c->free) {
    pthread_mutex_lock(&pool_mu);
    slab *b = pool_batches;
    if (b) pool_batches = b->batch_next;
    pthread_mutex_unlock(&pool_mu);
    if (b) {
      c->free = b;
      c->nfree = b->batch_n;
    }
  }
  slab *s = c->free;
  if (s) {
    c->free = s->next;
    c->nfree--;
  } else if (!(s = grow(c))) {
    return NULL;
  }
  /* Its nodes will be handed to other threads through lane pushes (a
   * release), so a relaxed store is seen before any of their frees. */
  atomic_store_explicit(&s->live, SLAB_NODES, memory_order_relaxed);
  for (unsigned i = 0; i <= AHEAD && i < SLAB_NODES; i += 4)
    __builtin_prefetch(&s->nodes[i], 1, 3);
  return s;
}

msrt_mnode *msrt_mnode_alloc(void) {
  tcache *c = &tl;
  slab *s = c->cur;
  if (!s || c->idx == SLAB_NODES) {
    if (s) c->cur = NULL; /* all handed out: its frees will recycle it */
    if (!(s = next_slab(c))) return NULL;
    c->cur = s;
    c->idx = 0;
  }
  msrt_mnode *n = &s->nodes[c->idx++];
  /* Most likely last read on another CPU (the receiver's): fetch a line
   * ahead of need (4 nodes a line; mnode.h on the write hint). */
  if ((c->idx & 3) == 0) {
    unsigned ahead = c->idx + AHEAD;
    if (ahead < SLAB_NODES)
      __builtin_prefetch(&s->nodes[ahead], 1, 3);
    else if (c->free) /* the next slab's, when it is this thread's */
      __builtin_prefetch(&c->free->nodes[ahead - SLAB_NODES], 1, 3);
  }
  return n;
}

void msrt_mnode_free(msrt_mnode *n) { put(&tl, slab_of(n), 1); }
