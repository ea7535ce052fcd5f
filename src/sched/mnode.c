#include "sched/mnode.h"

#include <pthread.h>
#include <stdlib.h>

#define MSRT_MNODE_BATCH 128   /* nodes moved per shared-pool transfer */
#define MSRT_MNODE_LOCAL 512   /* a thread cache above this gives a batch back */
#define MSRT_MNODE_SLAB 255    /* nodes per slab (+ header: 4 KiB) */

typedef struct slab {
  struct slab *next;
  void *pad;
  msrt_mnode nodes[MSRT_MNODE_SLAB];
} slab;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static msrt_mnode *pool_batches; /* stack of batches, via batch_next */
static slab *pool_slabs;         /* every slab ever made (kept reachable) */

typedef struct {
  msrt_mnode *head;
  unsigned n;    /* approximate: exact except after taking a partial batch */
  int armed;     /* the exit destructor is registered */
} tcache;

static _Thread_local tcache tl;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static inline msrt_mnode *nx(msrt_mnode *n) {
  return atomic_load_explicit(&n->next, memory_order_relaxed);
}
static inline void set_nx(msrt_mnode *n, msrt_mnode *to) {
  atomic_store_explicit(&n->next, to, memory_order_relaxed);
}

static void give_batch(msrt_mnode *first) {
  pthread_mutex_lock(&pool_mu);
  first->batch_next = pool_batches;
  pool_batches = first;
  pthread_mutex_unlock(&pool_mu);
}

static void tcache_exit(void *p) {
  tcache *c = p;
  if (c->head) give_batch(c->head);
  c->head = NULL;
  c->n = 0;
}

static void make_key(void) { pthread_key_create(&tl_key, tcache_exit); }

static msrt_mnode *refill(tcache *c) {
  if (!c->armed) {
    pthread_once(&tl_once, make_key);
    pthread_setspecific(tl_key, c);
    c->armed = 1;
  }
  pthread_mutex_lock(&pool_mu);
  msrt_mnode *b = pool_batches;
  if (b) pool_batches = b->batch_next;
  pthread_mutex_unlock(&pool_mu);
  if (b) {
    c->head = nx(b);
    c->n = MSRT_MNODE_BATCH - 1;
    return b;
  }
  slab *sl = malloc(sizeof *sl);
  if (!sl) return NULL;
  for (int i = 1; i < MSRT_MNODE_SLAB - 1; i++)
    set_nx(&sl->nodes[i], &sl->nodes[i + 1]);
  set_nx(&sl->nodes[MSRT_MNODE_SLAB - 1], c->head);
  c->head = &sl->nodes[1];
  c->n += MSRT_MNODE_SLAB - 1;
  pthread_mutex_lock(&pool_mu);
  sl->next = pool_slabs;
  pool_slabs = sl;
  pthread_mutex_unlock(&pool_mu);
  return &sl->nodes[0];
}

msrt_mnode *msrt_mnode_alloc(void) {
  tcache *c = &tl;
  msrt_mnode *n = c->head;
  if (n) {
    c->head = nx(n);
    if (c->n) c->n--;
    /* The next node was most likely freed by another worker (the
     * receiver) and its line sits in that CPU's cache: fetch it for
     * writing now, while this publish goes on, not at the next alloc. */
    if (c->head) __builtin_prefetch(c->head, 1, 3);
    return n;
  }
  c->n = 0;
  return refill(c);
}

void msrt_mnode_free(msrt_mnode *n) {
  tcache *c = &tl;
  set_nx(n, c->head);
  c->head = n;
  if (++c->n < MSRT_MNODE_LOCAL) return;
  /* Hand the first BATCH nodes to the shared pool. */
  msrt_mnode *last = n;
  unsigned k = 1;
  while (k < MSRT_MNODE_BATCH && nx(last)) {
    last = nx(last);
    k++;
  }
  c->head = nx(last);
  c->n -= k;
  set_nx(last, NULL);
  if (!c->armed) {
    pthread_once(&tl_once, make_key);
    pthread_setspecific(tl_key, c);
    c->armed = 1;
  }
  give_batch(n);
}
