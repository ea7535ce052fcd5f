/* A connection's permissions as its deliveries see them: the subscribe
 * deny list applied per message to wildcard subscriptions that overlap it
 * (nats/auth.h), with a small cache of the subjects already decided.
 *
 * Why per message: a deny pattern cannot refuse a wider wildcard SUB
 * (allow "a.>", deny "a.secret": SUB a.> is allowed), yet a message on
 * a.secret must not reach it. nats-server checks such deliveries against
 * the deny list and caches the answer per subject; so does this, in a
 * direct-mapped cache of DCACHE_SLOTS subjects per connection (made on
 * the first filtered delivery; a collision replaces the older subject),
 * dropped whenever the permissions change. */
#include <stdlib.h>
#include <string.h>

#include "nats/auth.h"
#include "nats/internal.h"

#define DCACHE_SLOTS 128 /* nats-server keeps up to 256 subjects */

typedef struct {
  size_t hash, len;
  char *subject; /* NULL: empty slot */
  bool denied;
} dslot;

struct nats_dcache {
  dslot slot[DCACHE_SLOTS];
};

static void dcache_free(struct nats_dcache *d) {
  if (!d) return;
  for (size_t i = 0; i < DCACHE_SLOTS; i++) free(d->slot[i].subject);
  free(d);
}

void msrt_nats_conn_set_perms(msrt_nats_conn *c, msrt_nats_perms *p) {
  pthread_mutex_lock(&c->mu);
  msrt_nats_perms *old = c->perms;
  struct nats_dcache *d = c->dcache;
  c->perms = p;
  c->dcache = NULL;
  pthread_mutex_unlock(&c->mu);
  dcache_free(d);
  msrt_nats_perms_unref(old);
}

void msrt_nats_sub_filter(nats_sub *s) {
  bool on = msrt_nats_perms_sub_overlaps_deny(s->conn->perms, s->subject,
                                              strlen(s->subject));
  atomic_store_explicit(&s->filtered, on, memory_order_relaxed);
}

/* Decide subject against c->perms through the cache (c->mu held). */
static bool denied_locked(msrt_nats_conn *c, const char *subject, size_t n) {
  size_t h = msrt_nats_hash(subject, n);
  if (!c->dcache) c->dcache = calloc(1, sizeof *c->dcache);
  dslot *sl = c->dcache ? &c->dcache->slot[h % DCACHE_SLOTS] : NULL;
  if (sl && sl->subject && sl->hash == h && sl->len == n &&
      memcmp(sl->subject, subject, n) == 0)
    return sl->denied;
  bool denied = msrt_nats_perms_sub_denied(c->perms, subject, n);
  char *copy = sl ? malloc(n) : NULL;
  if (copy) { /* without memory the answer is just not kept */
    memcpy(copy, subject, n);
    free(sl->subject);
    *sl = (dslot){h, n, copy, denied};
  }
  return denied;
}

bool msrt_nats_sub_denies(nats_sub *s, const char *subject, size_t n) {
  if (!atomic_load_explicit(&s->filtered, memory_order_relaxed)) return false;
  msrt_nats_conn *c = s->conn;
  pthread_mutex_lock(&c->mu);
  bool denied = denied_locked(c, subject, n);
  pthread_mutex_unlock(&c->mu);
  return denied;
}

void msrt_nats_deny_free(msrt_nats_conn *c) {
  dcache_free(c->dcache);
  c->dcache = NULL;
}
