/* A queue's life (open, references, close), its intake and its endpoint
 * class (queue/queue.h); writer.c has the flush in flight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bus/bus.h"
#include "queue/internal.h"

msrt_queue *msrt_queue_open(const msrt_queue_config *cfg, msrt_error *err) {
  if (!cfg || !cfg->path || !cfg->name) {
    msrt_error_set(err, MSRT_E_INVALID_ARG, "a queue needs a name and a path");
    return NULL;
  }
  /* (aligned: the writer's polled fields have a cache line of their own) */
  msrt_queue *q = aligned_alloc(_Alignof(msrt_queue), sizeof *q);
  if (q) memset(q, 0, sizeof *q);
  if (!q || !(q->name = strdup(cfg->name)) || !(q->path = strdup(cfg->path))) {
    if (q) free(q->name);
    free(q);
    msrt_error_set(err, MSRT_E_NOMEM, "no memory for queue \"%s\"", cfg->name);
    return NULL;
  }
  atomic_init(&q->refs, 1);
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->cv, NULL);
  pthread_mutex_init(&q->ck_lock, NULL);
  pthread_cond_init(&q->ck_cv, NULL);
  q->bus = cfg->bus;
  q->sync_full = cfg->sync_full;
  q->max_msgs = cfg->max_msgs, q->max_bytes = cfg->max_bytes;
  q->discard = cfg->discard, q->dedupe_window_ms = cfg->dedupe_window_ms;
  q->intake_max = cfg->intake_max ? cfg->intake_max : 65536;
  q->wake_id = cfg->wake_id;
  q->spin_ns = cfg->spin_ns;
  if (msrt_queue_db_open(q, err) != MSRT_E_OK) {
    msrt_queue_db_close(q);
    msrt_queue_unref(q);
    return NULL;
  }
  return q;
}

void msrt_queue_ref(msrt_queue *q) {
  atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
}

static void release_intake(msrt_queue *q) {
  for (size_t i = 0; i < q->nin; i++) msrt_env_unref(q->in[i]);
  free(q->in);
  q->in = NULL, q->nin = q->capin = 0;
  __atomic_store_n(&q->more, 0, __ATOMIC_RELEASE);
}

void msrt_queue_unref(msrt_queue *q) {
  if (!q || atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) != 1)
    return;
  release_intake(q);
  free(q->spare);
  free(q->ev);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->ck_cv);
  pthread_mutex_destroy(&q->ck_lock);
  free(q->name);
  free(q->path);
  free(q);
}

void msrt_queue_close(msrt_queue *q) {
  if (!q) return;
  pthread_mutex_lock(&q->lock);
  q->closed = 1;
  release_intake(q);
  pthread_mutex_unlock(&q->lock);
  msrt_queue_writer_idle(q);
  msrt_queue_writer_stop(q);
  msrt_queue_db_close(q);
  msrt_queue_unref(q);
}

int msrt_queue_take_intake(msrt_queue *q, msrt_queue_result **res, size_t *n) {
  size_t cap = 0;
  *res = NULL, *n = 0;
  return msrt_queue_take_more(q, res, n, &cap, 1);
}

int msrt_queue_take_more(msrt_queue *q, msrt_queue_result **res, size_t *n,
                         size_t *cap, int last) {
  /* the intake's array swapped with the spare one under lock, the rest
   * after: the publishers push meanwhile, and a push that finds the lock
   * taken sleeps (a futex wake-up is tens of us on a VM) */
  pthread_mutex_lock(&q->lock);
  msrt_envelope **in = q->in;
  size_t nin = q->nin, capin = q->capin;
  q->in = q->spare, q->capin = q->capspare, q->nin = 0;
  if (last) q->signalled = 0;
  if (q->more) __atomic_store_n(&q->more, 0, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&q->lock);
  q->spare = in, q->capspare = capin;
  if (!nin) return 0;
  if (*n + nin > *cap) {
    size_t c = *cap ? *cap : 64;
    while (c < *n + nin) c *= 2;
    msrt_queue_result *r = realloc(*res, c * sizeof *r);
    if (!r) { /* nothing accepted yet: these are refused */
      for (size_t i = 0; i < nin; i++) msrt_env_unref(in[i]);
      pthread_mutex_lock(&q->lock);
      q->st.refused += nin;
      pthread_mutex_unlock(&q->lock);
      return -1;
    }
    *res = r, *cap = c;
  }
  for (size_t i = 0; i < nin; i++)
    (*res)[*n + i] = (msrt_queue_result){.env = in[i], .code = MSRT_E_OK};
  *n += nin;
  return 0;
}

void msrt_queue_results_free(msrt_queue_result *res, size_t n) {
  for (size_t i = 0; i < n; i++) msrt_env_unref(res[i].env);
  free(res);
}

int msrt_queue_evict_push(msrt_queue *q, uint64_t seq) {
  if (q->nev == q->capev) {
    size_t cap = q->capev ? q->capev * 2 : 16;
    uint64_t *ev = realloc(q->ev, cap * sizeof *ev);
    if (!ev) return -1;
    q->ev = ev, q->capev = cap;
  }
  q->ev[q->nev++] = seq;
  return 0;
}

void msrt_queue_evict_take(msrt_queue *q, uint64_t **ev, size_t *n) {
  *ev = q->ev, *n = q->nev;
  q->ev = NULL, q->nev = q->capev = 0;
}

void msrt_queue_stats_get(msrt_queue *q, msrt_queue_stats *out) {
  pthread_mutex_lock(&q->lock); /* (the writer puts st under it) */
  *out = q->st;
  out->intake = q->nin;
  pthread_mutex_unlock(&q->lock);
}

const char *msrt_queue_header(const msrt_envelope *e, const char *name,
                              size_t *len) {
  const char *p = (const char *)e->headers, *end = p + e->headers_len;
  size_t nlen = strlen(name);
  while (p && p < end) {
    const char *k = p, *ke = memchr(k, 0, (size_t)(end - k));
    if (!ke) break;
    const char *v = ke + 1, *ve = v < end ? memchr(v, 0, (size_t)(end - v)) : NULL;
    if (!ve) break;
    if ((size_t)(ke - k) == nlen && strncasecmp(k, name, nlen) == 0) {
      *len = (size_t)(ve - v);
      return v;
    }
    p = ve + 1;
  }
  *len = 0;
  return NULL;
}

/* ---- the endpoint class ------------------------------------------------ */

static msrt_push_outcome queue_push(void *ep, msrt_envelope *e,
                                    const msrt_evict_sink *evicted,
                                    msrt_bus *bus) {
  (void)evicted;
  msrt_queue *q = ep;
  pthread_mutex_lock(&q->lock);
  if (q->closed) {
    pthread_mutex_unlock(&q->lock);
    return MSRT_PUSH_CLOSED;
  }
  if (q->nin == q->intake_max) {
    pthread_mutex_unlock(&q->lock);
    return MSRT_PUSH_FULL;
  }
  if (q->nin == q->capin) {
    size_t cap = q->capin ? q->capin * 2 : 64;
    msrt_envelope **in = realloc(q->in, cap * sizeof *in);
    if (!in) {
      pthread_mutex_unlock(&q->lock);
      return MSRT_PUSH_FAILED;
    }
    q->in = in, q->capin = cap;
  }
  q->in[q->nin++] = msrt_env_ref(e);
  if (q->nin >= MSRT_QUEUE_MORE && !q->more) /* (polled: await_more) */
    __atomic_store_n(&q->more, 1, __ATOMIC_RELEASE);
  int wake = !q->signalled;
  q->signalled = 1;
  pthread_mutex_unlock(&q->lock);
  /* one item per batch: the flush takes whatever came meanwhile */
  if (wake) {
    msrt_inbox_item it = {MSRT_IN_QUEUE, q->wake_id, NULL, NULL};
    msrt_bus_to_hub(bus, it);
  }
  return MSRT_PUSH_DELIVERED;
}

static bool queue_full(void *ep) {
  msrt_queue *q = ep;
  pthread_mutex_lock(&q->lock);
  bool full = q->nin >= q->intake_max;
  pthread_mutex_unlock(&q->lock);
  return full;
}

static msrt_overflow queue_policy(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_ERROR;
}

static void queue_ref(void *ep) { msrt_queue_ref(ep); }
static void queue_unref(void *ep) { msrt_queue_unref(ep); }

static void queue_name(void *ep, char *buf, size_t cap) {
  snprintf(buf, cap, "queue %s", ((msrt_queue *)ep)->name);
}

static const msrt_endpoint_class queue_class = {
  .class_name = "queue", .push = queue_push, .ref = queue_ref,
  .unref = queue_unref, .policy = queue_policy, .full = queue_full,
  .name = queue_name};

msrt_endpoint msrt_ep_queue(msrt_queue *q) {
  return (msrt_endpoint){&queue_class, q};
}
