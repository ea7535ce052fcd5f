/* Subscription interest (bus/interest.h): the keys (distinct pattern and
 * queue group pairs) and which subscription belongs to which, kept beside
 * the router under one mutex. Subscribing is the control plane (an actor
 * or a child starting), so a mutex and two small chained hash tables are
 * enough; nothing here is on the publish path. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bus/internal.h"
#include "router/subject.h"

#define BUCKETS 1024u

typedef struct ikey {
  struct ikey *next;
  struct ikey *qnext, **qprev; /* the list of queue keys */
  uint32_t id;
  uint32_t subs, ready; /* subscriptions of the key, and the ready ones */
  bool on;
  char *queue;    /* NULL: plain */
  char pattern[]; /* then the queue's bytes, when there is one */
} ikey;

typedef struct isub {
  struct isub *next;
  uint64_t sub_id;
  ikey *key;
  bool ready;
} isub;

struct msrt_interest {
  pthread_mutex_t mu;
  ikey *keys[BUCKETS];
  isub *subs[BUCKETS];
  uint32_t next_id;
  ikey *qkeys;               /* keys with a queue group */
  _Atomic long ready_groups; /* queue keys with a ready member */
  msrt_interest_hook hook;
  bool hooked;
};

static uint32_t hash(const char *p, size_t n, const char *q, size_t qn) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  h = (h ^ 0xffu) * 16777619u;
  for (size_t i = 0; i < qn; i++) h = (h ^ (unsigned char)q[i]) * 16777619u;
  return h;
}

msrt_interest *msrt_interest_new(void) {
  msrt_interest *in = calloc(1, sizeof *in);
  if (!in) return NULL;
  pthread_mutex_init(&in->mu, NULL);
  in->next_id = 1;
  return in;
}

void msrt_interest_free(msrt_interest *in) {
  if (!in) return;
  for (unsigned b = 0; b < BUCKETS; b++) {
    for (ikey *k = in->keys[b], *n; k; k = n) n = k->next, free(k);
    for (isub *s = in->subs[b], *n; s; s = n) n = s->next, free(s);
  }
  pthread_mutex_destroy(&in->mu);
  free(in);
}

static bool same(const ikey *k, const char *p, size_t n, const char *q,
                 size_t qn) {
  if (strlen(k->pattern) != n || memcmp(k->pattern, p, n) != 0) return false;
  if (!q || !qn) return k->queue == NULL;
  return k->queue && strlen(k->queue) == qn && memcmp(k->queue, q, qn) == 0;
}

/* The key of (p, q), made (with no subscription yet) when new. */
static ikey *intern(msrt_interest *in, const char *p, size_t n, const char *q,
                    size_t qn) {
  if (!q) qn = 0;
  ikey **b = &in->keys[hash(p, n, q, qn) % BUCKETS];
  for (ikey *k = *b; k; k = k->next)
    if (same(k, p, n, q, qn)) return k;
  ikey *k = calloc(1, sizeof *k + n + 1 + (qn ? qn + 1 : 0));
  if (!k) return NULL;
  memcpy(k->pattern, p, n);
  if (qn) {
    k->queue = k->pattern + n + 1;
    memcpy(k->queue, q, qn);
  }
  if (qn) { /* on the list of queue keys */
    k->qnext = in->qkeys;
    if (in->qkeys) in->qkeys->qprev = &k->qnext;
    k->qprev = &in->qkeys;
    in->qkeys = k;
  }
  k->id = in->next_id++;
  if (!in->next_id) in->next_id = 1; /* 0 means "no key" */
  k->next = *b;
  *b = k;
  return k;
}

static void forget_key(msrt_interest *in, ikey *k) {
  size_t qn = k->queue ? strlen(k->queue) : 0;
  if (k->qprev) {
    *k->qprev = k->qnext;
    if (k->qnext) k->qnext->qprev = k->qprev;
  }
  ikey **b = &in->keys[hash(k->pattern, strlen(k->pattern), k->queue, qn) %
                       BUCKETS];
  for (; *b; b = &(*b)->next)
    if (*b == k) {
      *b = k->next;
      free(k);
      return;
    }
}

/* Tell the hook when k went on or off; forget k when it has no
 * subscription left. */
static void update(msrt_interest *in, ikey *k) {
  bool on = k->queue ? k->ready > 0 : k->subs > 0;
  if (on != k->on) {
    k->on = on;
    if (k->queue) atomic_fetch_add(&in->ready_groups, on ? 1 : -1);
    if (in->hooked) in->hook.changed(in->hook.ud, k->id, k->pattern, k->queue,
                                     on);
  }
  if (!k->subs) forget_key(in, k);
}

static isub **find_sub(msrt_interest *in, uint64_t sub_id) {
  isub **s = &in->subs[sub_id % BUCKETS];
  while (*s && (*s)->sub_id != sub_id) s = &(*s)->next;
  return s;
}

msrt_code msrt_interest_subscribe(msrt_interest *in, msrt_router *r,
                                  const char *p, size_t n, const char *q,
                                  size_t qn, msrt_endpoint ep, uint64_t *id,
                                  msrt_error *err) {
  if (ep.cls->remote) /* another host's stand-in: no interest of ours */
    return msrt_router_subscribe(r, p, n, q, qn, ep.ep, 0, (void *)ep.cls,
                                 id, err);
  pthread_mutex_lock(&in->mu);
  ikey *k = intern(in, p, n, q, qn);
  isub *s = k ? calloc(1, sizeof *s) : NULL;
  msrt_code rc = s ? msrt_router_subscribe(r, p, n, q, qn, ep.ep, k->id,
                                           (void *)ep.cls, id, err)
                   : msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  if (rc == MSRT_E_OK) {
    s->sub_id = *id;
    s->key = k;
    s->ready = true;
    isub **b = &in->subs[*id % BUCKETS];
    s->next = *b;
    *b = s;
    k->subs++;
    k->ready++;
  } else {
    free(s);
  }
  if (k) update(in, k);
  pthread_mutex_unlock(&in->mu);
  return rc;
}

msrt_code msrt_interest_unsubscribe(msrt_interest *in, msrt_router *r,
                                    uint64_t sub_id, void **obj, void **cls) {
  pthread_mutex_lock(&in->mu);
  msrt_code rc = msrt_router_unsubscribe_item(r, sub_id, obj, NULL, cls);
  isub **at = find_sub(in, sub_id);
  isub *s = *at;
  if (rc == MSRT_E_OK && s) {
    *at = s->next;
    s->key->subs--;
    if (s->ready) s->key->ready--;
    update(in, s->key);
    free(s);
  }
  pthread_mutex_unlock(&in->mu);
  return rc;
}

msrt_code msrt_interest_set_ready(msrt_interest *in, msrt_router *r,
                                  uint64_t sub_id, bool ready) {
  pthread_mutex_lock(&in->mu);
  msrt_code rc = msrt_router_set_ready(r, sub_id, ready);
  isub *s = *find_sub(in, sub_id);
  if (rc == MSRT_E_OK && s && s->ready != ready) {
    s->ready = ready;
    if (ready) s->key->ready++;
    else s->key->ready--;
    update(in, s->key);
  }
  pthread_mutex_unlock(&in->mu);
  return rc;
}

void msrt_interest_hook_set(msrt_interest *in, const msrt_interest_hook *h) {
  pthread_mutex_lock(&in->mu);
  in->hooked = h != NULL;
  if (h) {
    in->hook = *h;
    for (unsigned b = 0; b < BUCKETS; b++)
      for (ikey *k = in->keys[b]; k; k = k->next)
        if (k->on) h->changed(h->ud, k->id, k->pattern, k->queue, true);
  }
  pthread_mutex_unlock(&in->mu);
}

size_t msrt_interest_local_groups(msrt_interest *in, const char *subject,
                                  char *buf, size_t cap) {
  size_t n = 0;
  if (cap) buf[0] = 0;
  if (!cap || atomic_load_explicit(&in->ready_groups, memory_order_relaxed) == 0)
    return 0;
  pthread_mutex_lock(&in->mu);
  for (ikey *k = in->qkeys; k; k = k->qnext) {
    size_t qn = strlen(k->queue);
    if (!k->ready || !msrt_subject_matches(k->pattern, subject)) continue;
    if (n + qn + 2 > cap) continue;
    if (n) buf[n++] = ' ';
    memcpy(buf + n, k->queue, qn);
    n += qn;
    buf[n] = 0;
  }
  pthread_mutex_unlock(&in->mu);
  return n;
}
