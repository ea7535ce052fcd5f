/* Wide trie nodes' literal children: the persistent HAMT (router/wide.h). */
#include "router/wide.h"

#include <stdlib.h>
#include <string.h>

#define SUB(p) ((void *)((uintptr_t)(p) | 1))
#define IS_SUB(v) (((uintptr_t)(v)) & 1)
#define UNTAG(v) ((void *)((uintptr_t)(v) - 1))

static bool log_push(void ***v, size_t *n, size_t *cap, void *p) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 32;
    void **q = realloc(*v, c * sizeof *q);
    if (!q) return false;
    *v = q;
    *cap = c;
  }
  (*v)[(*n)++] = p;
  return true;
}

/* size bytes, a copy of from (or zeroed), recorded as made. */
static void *made(rt_wide_log *log, size_t size, const void *from) {
  void *p = malloc(size);
  if (!p) return NULL;
  if (!log_push(&log->made, &log->nmade, &log->madecap, p)) {
    free(p);
    return NULL;
  }
  if (from) memcpy(p, from, size);
  else memset(p, 0, size);
  log->bytes += size;
  return p;
}

static bool retire(rt_wide_log *log, const void *p) {
  return log_push(&log->gone, &log->ngone, &log->gonecap, (void *)p);
}

/* A sub-node (tagged) holding two leaves of hashes ha != hb at this level
 * and below, or a collision node when the hashes are equal. */
static void *split(void *a, uint64_t ha, void *b, uint64_t hb,
                   unsigned shift, rt_wide_log *log) {
  if (shift >= 64) {
    rt_wide_coll *c = made(log, sizeof *c + 2 * sizeof(void *), NULL);
    if (!c) return NULL;
    c->n = 2;
    c->e[0] = a;
    c->e[1] = b;
    return SUB(c);
  }
  rt_wide *w = made(log, sizeof *w, NULL);
  if (!w) return NULL;
  unsigned ia = (ha >> shift) & 31, ib = (hb >> shift) & 31;
  if (ia != ib) {
    w->slot[ia] = a;
    w->slot[ib] = b;
  } else if (!(w->slot[ia] = split(a, ha, b, hb, shift + 5, log))) {
    return NULL;
  }
  return SUB(w);
}

static bool edit_coll(const rt_wide_coll *c, const void *old, void *nc,
                      void **out, rt_wide_log *log) {
  uint32_t i = 0;
  while (i < c->n && c->e[i] != old) i++;
  if (old ? i == c->n : !nc) {
    *out = SUB(c);
    return true;
  }
  uint32_t n = c->n + (!old ? 1 : !nc ? (uint32_t)-1 : 0);
  rt_wide_coll *d = NULL;
  if (n) {
    d = made(log, sizeof *d + n * sizeof(void *), NULL);
    if (!d) return false;
    uint32_t k = 0;
    for (uint32_t j = 0; j < c->n; j++)
      if (j != i || !old) d->e[k++] = c->e[j];
      else if (nc) d->e[k++] = nc;
    if (!old) d->e[k++] = nc;
    d->n = k;
  }
  *out = d ? SUB(d) : NULL;
  return retire(log, c);
}

static bool empty(const rt_wide *w) {
  for (unsigned i = 0; i < 32; i++)
    if (w->slot[i]) return false;
  return true;
}

/* The new value of the slot that held v (tagged as slots are). */
static bool edit(const rt_wide *w, unsigned shift, uint64_t h,
                 const void *old, void *nc, rt_wide **out,
                 rt_wide_log *log) {
  unsigned i = (h >> shift) & 31;
  void *v = w->slot[i], *nv;
  if (!v) {
    if (old || !nc) goto same;
    nv = nc;
  } else if (!IS_SUB(v)) {
    if (v == old) nv = nc;
    else if (old || !nc) goto same;
    else if (!(nv = split(v, log->hash_of(v), nc, h, shift + 5, log)))
      return false;
  } else if (shift + 5 >= 64) {
    if (!edit_coll(UNTAG(v), old, nc, &nv, log)) return false;
    if (nv == v) goto same;
  } else {
    rt_wide *sub;
    if (!edit(UNTAG(v), shift + 5, h, old, nc, &sub, log)) return false;
    if (sub == UNTAG(v)) goto same;
    nv = sub ? SUB(sub) : NULL;
  }
  rt_wide *c = made(log, sizeof *c, w);
  if (!c) return false;
  c->slot[i] = nv;
  if (!nv && empty(c)) { /* dropped again: never seen by anyone */
    free(log->made[--log->nmade]);
    log->bytes -= sizeof *c;
    c = NULL;
  }
  *out = c;
  return retire(log, w);
same:
  *out = (rt_wide *)w;
  return true;
}

bool rt_wide_edit(const rt_wide *root, uint64_t hash, const void *old,
                  void *nc, rt_wide **out, rt_wide_log *log) {
  if (!root) {
    *out = NULL;
    if (old || !nc) return true;
    rt_wide *w = made(log, sizeof *w, NULL);
    if (!w) return false;
    w->slot[hash & 31] = nc;
    *out = w;
    return true;
  }
  return edit(root, 0, hash, old, nc, out, log);
}

static void each(const rt_wide *w, unsigned shift,
                 void (*fn)(void *leaf, void *ud), void *ud) {
  for (unsigned i = 0; i < 32; i++) {
    void *v = w->slot[i];
    if (!v) continue;
    if (!IS_SUB(v)) {
      fn(v, ud);
    } else if (shift + 5 >= 64) {
      const rt_wide_coll *c = UNTAG(v);
      for (uint32_t k = 0; k < c->n; k++) fn(c->e[k], ud);
    } else {
      each(UNTAG(v), shift + 5, fn, ud);
    }
  }
}

void rt_wide_each(const rt_wide *root, void (*fn)(void *leaf, void *ud),
                  void *ud) {
  if (root) each(root, 0, fn, ud);
}

static void wfree(rt_wide *w, unsigned shift) {
  for (unsigned i = 0; i < 32; i++) {
    void *v = w->slot[i];
    if (!IS_SUB(v)) continue;
    if (shift + 5 >= 64) free(UNTAG(v));
    else wfree(UNTAG(v), shift + 5);
  }
  free(w);
}

void rt_wide_free(rt_wide *root) {
  if (root) wfree(root, 0);
}
