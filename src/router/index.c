#include "router/index.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "router/internal.h"
#include "router/subject.h"
#include "router/wide.h"

#define LINEAR_MAX 8        /* literal children kept in a plain array */
#define WIDE_AFTER 256      /* more literal children: a HAMT (router/wide.h);
                               msrt_router_opts.wide_after's default */
#define MASK_WIDE UINT32_MAX /* rt_node.mask of a node whose children are in
                                its HAMT */
#define CACHE_DEFAULT 16384 /* match cache slots per snapshot */
#define CACHE_MAX_CANDS 64  /* bigger candidate sets are not cached */
#define CACHE_PROBE 4       /* slots looked at per lookup / insert */
#define CACHE_AFTER_MISSES 32 /* a reader's misses on a snapshot before it
                                 makes the snapshot's cache */

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

/* ---- records ------------------------------------------------------------ */

typedef struct rt_qstate {
  uint32_t slot;          /* index of the readers' round-robin counters */
  struct rt_qstate *next; /* writer's list of queue names */
  uint32_t refs;          /* writer: subscriptions naming it */
  uint32_t len;
  char name[];
} rt_qstate;

typedef struct rt_sub {
  uint64_t id;
  void *endpoint;
  void *ud;
  uint32_t kind;
  atomic_uint flags; /* MSRT_SUB_READY */
  rt_qstate *q;      /* NULL = plain */
  uint32_t plen;
  char pattern[];
} rt_sub;

typedef struct rt_node rt_node;

/* A literal child. pre holds the token's first 8 bytes (zero-padded), so a
 * linear node compares tokens up to 8 bytes without hashing the subject's
 * token or touching the child; hash is used by hash-table nodes. */
typedef struct {
  uint64_t pre;
  uint64_t hash;
  uint32_t len;
  rt_node *child; /* NULL = empty slot (hash tables only) */
} rt_lit;

typedef struct {
  rt_qstate *q;
  uint32_t off, n; /* members[off .. off+n) */
} rt_group;

/* A node's HAMTs (router/wide.h): its literal children past wide_after
 * (mask MASK_WIDE), its plain subscriptions past wide_after (records,
 * nsubs of them; the node's inline items are then none). */
typedef struct {
  rt_wide *kids;
  rt_wide *subs;
  size_t nsubs;
} rt_side;

/* One allocation, 64-byte aligned: this header with the token right after
 * it (a short token shares the first cache line), then the literal
 * children, the plain subscriptions as ready-made match items (their fields
 * never change), the queue groups and their members, and the side (when
 * there is one). */
struct rt_node {
  rt_lit *lits; /* mask 0: a plain array of nlit entries, else a table */
  rt_node *star, *fwc;
  rt_side *side; /* NULL when neither children nor subscriptions are wide */
  uint32_t nlit, mask;
  uint32_t nsubs, ngroups, nmembers, toklen;
  char tok[]; /* NUL-terminated */
};

/* Inline literal slots (MASK_WIDE + 1u wraps to 0: a wide node has none). */
static inline size_t node_slots(const rt_node *n) {
  return n->mask ? (uint32_t)(n->mask + 1u) : n->nlit;
}
static inline msrt_match_item *node_items(const rt_node *n) {
  return (msrt_match_item *)(n->lits + node_slots(n));
}
static inline rt_group *node_groups(const rt_node *n) {
  return (rt_group *)(node_items(n) + n->nsubs);
}
static inline rt_sub **node_members(const rt_node *n) {
  return (rt_sub **)(node_groups(n) + n->ngroups);
}

/* Candidates for one subject: plain items (copied, they never change) and
 * queue groups with their member lists merged by queue name. */
typedef struct {
  rt_qstate *q;
  uint32_t off, n;
} rt_cgroup;

typedef struct {
  uint32_t nplain, ngroups, nmem;
  const msrt_match_item *plain;
  const rt_cgroup *groups;
  rt_sub *const *mem;
} rt_cand;

/* A cache entry: one allocation, the subject in the first cache line, then
 * the candidates (at most CACHE_MAX_CANDS, so 16-bit counts). */
typedef struct rt_entry {
  uint64_t hash;
  uint32_t slen;
  uint16_t nplain, ngroups, nmem;
  uint16_t cls; /* the subject's class: never changes once looked up */
  struct rt_entry *next; /* the cache's list, for freeing */
  char subj[];
} rt_entry;

#define ENTRY_PLAIN(e) ((const msrt_match_item *)((const char *)(e) + \
                        ALIGN8(sizeof(rt_entry) + (e)->slen)))
#define ENTRY_GROUPS(e) ((const rt_cgroup *)(ENTRY_PLAIN(e) + (e)->nplain))
#define ENTRY_MEM(e) ((rt_sub *const *)(ENTRY_GROUPS(e) + (e)->ngroups))

typedef struct {
  uint32_t mask;
  _Atomic uint32_t n;       /* entries (msrt_router_cached) */
  _Atomic(rt_entry *) head; /* every entry, pushed on insert */
  _Atomic(rt_entry *) slot[];
} rt_cache;

typedef struct {
  rt_node *root;
  uint64_t version;
  _Atomic(rt_cache *) cache;
} rt_snap;

typedef struct {
  uint64_t tag;
  void *p;
  void (*fn)(void *);
} rt_garb;

typedef struct {
  const char *p;
  uint32_t len;
  msrt_token_kind kind; /* router/subject.h */
  uint64_t pre;  /* first 8 bytes, zero-padded (rt_prefix) */
  uint64_t hash; /* rt_hash; 0 = not computed yet (reader side) */
} rt_tok;

/* The first min(n, 8) bytes of p as a little-endian word, zero-padded,
 * reading only p[0..n). */
static inline uint64_t rt_prefix(const char *p, size_t n) {
  uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n >= 8) {
    memcpy(&w, p, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    w = a | ((uint64_t)b << ((n - 4) * 8));
  } else if (n) {
    const unsigned char *u = (const unsigned char *)p;
    w = u[0] | ((uint64_t)u[n >> 1] << ((n >> 1) * 8)) |
        ((uint64_t)u[n - 1] << ((n - 1) * 8));
  }
#else
  for (size_t i = 0; i < n && i < 8; i++)
    w |= (uint64_t)(unsigned char)p[i] << (i * 8);
#endif
  return w;
}

typedef struct {
  const rt_node *n;
  size_t ti;
} rt_frame;

typedef struct {
  rt_qstate *q;
  rt_sub *const *m;
  uint32_t n;
} rt_span;

/* Writer-side description of a node being rebuilt: its literal children
 * in lits, or (is_wide) in the HAMT wide; its plain subscriptions in items,
 * or (subs_wide) nwsubs records in the HAMT wsubs. */
typedef struct {
  rt_lit *lits;
  size_t nlit, litcap;
  rt_wide *wide;
  bool is_wide, subs_wide;
  rt_wide *wsubs;
  size_t nwsubs;
  msrt_match_item *items;
  size_t nsubs, subcap;
  rt_sub **qsubs;
  size_t nq, qcap;
  rt_node *star, *fwc;
} rt_spec;

struct msrt_reader {
  /* The slot writers scan: its own cache line. */
  _Alignas(64) atomic_uint_least64_t epoch;
  unsigned depth;
  msrt_router *r;
  msrt_reader *next, *prev;
  uint64_t rng;
  msrt_account_shard *shard; /* accounting, written by the owner only */
  /* Scratch, owner only. */
  msrt_subject_token *split; /* the subject's tokens, then in toks */
  size_t splitcap;
  rt_tok *toks;
  size_t tokcap;
  rt_frame *stk;
  size_t stkcap;
  msrt_match_item *plain;
  size_t nplain, plaincap;
  rt_span *spans;
  size_t nspans, spancap;
  rt_cgroup *cg;
  size_t cgcap;
  rt_sub **mem;
  size_t memcap;
  uint32_t *idx;
  size_t idxcap;
  uint32_t *rr; /* round-robin counters by queue slot */
  size_t rrcap;
  const void *miss_snap; /* snapshot the misses below were counted on */
  uint32_t misses;
  rt_cand cand;
};

struct msrt_router {
  _Atomic(rt_snap *) current;
  _Atomic(msrt_routes *) routes;
  atomic_uint_least64_t epoch;
  size_t max_subject;
  uint32_t cache_slots; /* 0 = no cache */
  char pad[64];
  msrt_account *acct;
  atomic_size_t nsubs;
  atomic_uint_least64_t version;
  /* Everything below: writer mutex. */
  pthread_mutex_t mu;
  uint64_t next_id;
  rt_sub **map; /* open addressing by id */
  size_t mapcap, mapn;
  rt_qstate *queues;
  uint32_t *qfree; /* free counter slots */
  size_t nqfree, qfreecap;
  uint32_t qnext;
  msrt_reader *readers;
  rt_garb *garb;
  size_t ghead, glen, gcap;
  rt_garb *pend;
  size_t npend, pendcap;
  rt_tok *wtoks;
  size_t wtokcap;
  rt_node **path, **built;
  size_t pathcap, builtcap;
  rt_spec spec;
  uint32_t wide_after;
  rt_wide_log wlog; /* HAMT nodes made and replaced by the change */
  uint64_t built_bytes;
};

/* ---- small utilities ---------------------------------------------------- */

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap : 8;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * elem);
  if (!q) return false;
  *p = q;
  *cap = n;
  return true;
}
static inline void *cpy(void *dst, const void *src, size_t n) {
  if (n) memcpy(dst, src, n);
  return dst;
}

#define GROW(ptr, cap, need) grow((void **)&(ptr), &(cap), (need), sizeof *(ptr))

static size_t pow2_at_least(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

/* ---- trie nodes ---------------------------------------------------------- */

static inline bool lit_is(const rt_lit *l, const rt_tok *t) {
  return l->pre == t->pre && l->len == t->len &&
         (t->len <= 8 || rt_eq(l->child->tok + 8, t->p + 8, t->len - 8));
}

static inline bool tok_is(const rt_node *c, const rt_tok *t) {
  return c->toklen == t->len && rt_eq(c->tok, t->p, t->len);
}

/* The child of a wide node for token t (t->hash computed); kept out of
 * line, node_lit's other paths being the hot ones. */
static __attribute__((noinline)) rt_node *wide_lit(const rt_wide *w,
                                                   const rt_tok *t) {
  uint32_t k = 0;
  for (void *const *c = rt_wide_find(w, t->hash, &k); c && k--; c++)
    if (tok_is(*c, t)) return *c;
  return NULL;
}

/* The literal child for token t; computes t->hash on first need. */
static inline __attribute__((always_inline)) rt_node *node_lit(
    const rt_node *n, rt_tok *t) {
  const rt_lit *l = n->lits;
  if (n->mask == 0) {
    for (uint32_t i = 0; i < n->nlit; i++)
      if (lit_is(&l[i], t)) return l[i].child;
    return NULL;
  }
  if (!t->hash) t->hash = rt_hash(t->p, t->len);
  if (n->mask == MASK_WIDE) return wide_lit(n->side->kids, t);
  for (uint32_t i = (uint32_t)t->hash & n->mask;; i = (i + 1) & n->mask) {
    if (!l[i].child) return NULL;
    if (l[i].hash == t->hash && lit_is(&l[i], t)) return l[i].child;
  }
}

static rt_node *node_child(const rt_node *n, rt_tok *t) {
  if (!n) return NULL;
  if (t->kind == MSRT_TOKEN_PWC) return n->star;
  if (t->kind == MSRT_TOKEN_FWC) return n->fwc;
  return node_lit(n, t);
}

static void spec_clear(rt_spec *s) {
  s->nlit = s->nsubs = s->nq = 0;
  s->star = s->fwc = NULL;
  s->wide = s->wsubs = NULL;
  s->is_wide = s->subs_wide = false;
  s->nwsubs = 0;
}

static bool spec_load(rt_spec *s, const rt_node *n) {
  spec_clear(s);
  if (!n) return true;
  if (!GROW(s->lits, s->litcap, n->mask == MASK_WIDE ? 1 : n->nlit + 1) ||
      !GROW(s->items, s->subcap, n->nsubs + 1) ||
      !GROW(s->qsubs, s->qcap, n->nmembers + 1))
    return false;
  if (n->side && n->side->subs) { /* shared, edited by path copying */
    s->wsubs = n->side->subs;
    s->nwsubs = n->side->nsubs;
    s->subs_wide = true;
  }
  if (n->mask == MASK_WIDE) { /* shared, edited by path copying */
    s->wide = n->side->kids;
    s->is_wide = true;
    s->nlit = n->nlit;
  } else {
    size_t slots = node_slots(n);
    for (size_t i = 0; i < slots; i++)
      if (n->lits[i].child) s->lits[s->nlit++] = n->lits[i];
  }
  cpy(s->items, node_items(n), n->nsubs * sizeof *s->items);
  s->nsubs = n->nsubs;
  cpy(s->qsubs, node_members(n), n->nmembers * sizeof *s->qsubs);
  s->nq = n->nmembers;
  s->star = n->star;
  s->fwc = n->fwc;
  return true;
}

static bool spec_empty(const rt_spec *s) {
  return !s->nlit && !s->nsubs && !s->nwsubs && !s->nq && !s->star &&
         !s->fwc;
}

static uint64_t child_hash(const void *c) {
  return rt_hash(((const rt_node *)c)->tok, ((const rt_node *)c)->toklen);
}

/* Point a wide spec's child for token t at c (NULL removes it): the HAMT
 * path to t is copied, the rest shared. */
static bool wide_set_child(rt_spec *s, const rt_tok *t, rt_node *c,
                           rt_wide_log *log) {
  const rt_node *old = wide_lit(s->wide, t);
  if (!old && !c) return true;
  log->hash_of = child_hash;
  if (!rt_wide_edit(s->wide, t->hash, old, c, &s->wide, log)) return false;
  s->nlit += !old ? 1 : !c ? (size_t)-1 : 0;
  if (!s->nlit) s->is_wide = false;
  return true;
}

/* A spec past wide_after literal children moves them into a HAMT. */
static bool spec_widen(rt_spec *s, rt_wide_log *log) {
  rt_wide *w = NULL;
  log->hash_of = child_hash;
  for (size_t i = 0; i < s->nlit; i++)
    if (!rt_wide_edit(w, s->lits[i].hash, NULL, s->lits[i].child, &w, log))
      return false;
  s->wide = w;
  s->is_wide = true;
  return true;
}

/* Point the child for token t at c (NULL removes it); past wide_after
 * literal children the spec becomes wide. */
static bool spec_set_child(rt_spec *s, const rt_tok *t, rt_node *c,
                           uint32_t wide_after, rt_wide_log *log) {
  if (t->kind == MSRT_TOKEN_PWC) {
    s->star = c;
    return true;
  }
  if (t->kind == MSRT_TOKEN_FWC) {
    s->fwc = c;
    return true;
  }
  if (s->is_wide) return wide_set_child(s, t, c, log);
  for (size_t i = 0; i < s->nlit; i++) {
    rt_lit *l = &s->lits[i];
    if (lit_is(l, t)) {
      if (c) l->child = c;
      else s->lits[i] = s->lits[--s->nlit];
      return true;
    }
  }
  if (!c) return true;
  if (!GROW(s->lits, s->litcap, s->nlit + 1)) return false;
  s->lits[s->nlit++] = (rt_lit){t->pre, t->hash, t->len, c};
  return s->nlit <= wide_after || spec_widen(s, log);
}


/* A node of the spec (queue-group members in s->qsubs lie together by
 * group, as op_add keeps them); *bytes grows by its size. */
static rt_node *node_build(const rt_spec *s, const char *tok, uint32_t toklen,
                           uint64_t *bytes) {
  size_t nlit = s->nlit;
  uint32_t mask = 0;
  size_t slots = nlit;
  if (s->is_wide) {
    slots = 0;
    mask = MASK_WIDE;
  } else if (nlit > LINEAR_MAX) {
    slots = pow2_at_least(nlit * 2);
    mask = (uint32_t)slots - 1;
  }
  size_t ngroups = 0;
  for (size_t i = 0; i < s->nq; i++)
    if (i == 0 || s->qsubs[i]->q != s->qsubs[i - 1]->q) ngroups++;
  bool side = s->is_wide || s->subs_wide;
  size_t size = ALIGN8(sizeof(rt_node) + toklen + 1) + slots * sizeof(rt_lit) +
                s->nsubs * sizeof(msrt_match_item) +
                ngroups * sizeof(rt_group) + s->nq * sizeof(rt_sub *);
  size_t side_at = size;
  size += side ? sizeof(rt_side) : 0;
  size = (size + 63) & ~(size_t)63;
  rt_node *n = aligned_alloc(64, size);
  if (!n) return NULL;
  *bytes += size;
  n->lits = (rt_lit *)((char *)n + ALIGN8(sizeof(rt_node) + toklen + 1));
  n->side = NULL;
  if (side) {
    n->side = (rt_side *)((char *)n + side_at);
    *n->side = (rt_side){s->is_wide ? s->wide : NULL,
                         s->subs_wide ? s->wsubs : NULL, s->nwsubs};
  }
  n->star = s->star;
  n->fwc = s->fwc;
  n->nlit = (uint32_t)nlit;
  n->mask = mask;
  n->nsubs = (uint32_t)s->nsubs;
  n->ngroups = (uint32_t)ngroups;
  n->nmembers = (uint32_t)s->nq;
  n->toklen = toklen;
  if (toklen) memcpy(n->tok, tok, toklen);
  n->tok[toklen] = 0;
  if (mask && mask != MASK_WIDE) {
    memset(n->lits, 0, slots * sizeof(rt_lit));
    for (size_t i = 0; i < nlit; i++) {
      uint32_t k = (uint32_t)s->lits[i].hash & mask;
      while (n->lits[k].child) k = (k + 1) & mask;
      n->lits[k] = s->lits[i];
    }
  } else if (!mask) {
    cpy(n->lits, s->lits, nlit * sizeof(rt_lit));
  }
  cpy(node_items(n), s->items, s->nsubs * sizeof(msrt_match_item));
  rt_group *groups = node_groups(n);
  rt_sub **members = node_members(n);
  uint32_t g = 0, m = 0;
  for (size_t i = 0; i < s->nq; i++) {
    rt_qstate *q = s->qsubs[i]->q;
    if (i == 0 || q != s->qsubs[i - 1]->q) groups[g++] = (rt_group){q, m, 0};
    members[m++] = s->qsubs[i];
    groups[g - 1].n++;
  }
  return n;
}

/* ---- snapshots and garbage ------------------------------------------------ */

static void cache_free(rt_cache *c) {
  if (!c) return;
  rt_entry *e = atomic_load_explicit(&c->head, memory_order_relaxed);
  while (e) {
    rt_entry *n = e->next;
    free(e);
    e = n;
  }
  free(c);
}

static void snap_free(void *p) {
  rt_snap *s = p;
  cache_free(atomic_load_explicit(&s->cache, memory_order_relaxed));
  free(s);
}

static size_t reclaim_locked(msrt_router *r) {
  uint64_t min = UINT64_MAX;
  for (msrt_reader *rd = r->readers; rd; rd = rd->next) {
    uint64_t e = atomic_load_explicit(&rd->epoch, memory_order_seq_cst);
    if (e && e < min) min = e;
  }
  while (r->ghead < r->glen && r->garb[r->ghead].tag < min) {
    rt_garb *g = &r->garb[r->ghead++];
    g->fn(g->p);
  }
  if (r->ghead == r->glen) {
    r->ghead = r->glen = 0;
  } else if (r->ghead > r->glen / 2) {
    memmove(r->garb, r->garb + r->ghead,
            (r->glen - r->ghead) * sizeof *r->garb);
    r->glen -= r->ghead;
    r->ghead = 0;
  }
  return r->glen - r->ghead;
}

/* Publish a new root: swap the snapshot, tag the pending garbage (plus the
 * old snapshot) with the current epoch, advance the epoch, reclaim. The
 * pending list and garbage list were grown beforehand, so this cannot fail
 * after the swap. */
static void commit(msrt_router *r, rt_snap *ns) {
  rt_snap *old = atomic_load_explicit(&r->current, memory_order_relaxed);
  ns->version = old->version + 1;
  atomic_store_explicit(&ns->cache, NULL, memory_order_relaxed);
  r->pend[r->npend++] = (rt_garb){0, old, snap_free};
  atomic_exchange_explicit(&r->current, ns, memory_order_seq_cst);
  uint64_t t = atomic_load_explicit(&r->epoch, memory_order_seq_cst);
  for (size_t i = 0; i < r->npend; i++) {
    r->pend[i].tag = t;
    r->garb[r->glen++] = r->pend[i];
  }
  r->npend = 0;
  atomic_store_explicit(&r->epoch, t + 1, memory_order_seq_cst);
  atomic_store_explicit(&r->version, ns->version, memory_order_relaxed);
  reclaim_locked(r);
}

/* ---- id map --------------------------------------------------------------- */

static inline size_t id_slot(uint64_t id, size_t cap) {
  return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static rt_sub *map_get(msrt_router *r, uint64_t id) {
  if (!r->mapcap) return NULL;
  for (size_t i = id_slot(id, r->mapcap);; i = (i + 1) & (r->mapcap - 1)) {
    if (!r->map[i]) return NULL;
    if (r->map[i]->id == id) return r->map[i];
  }
}

static void map_put_nogrow(rt_sub **map, size_t cap, rt_sub *s) {
  size_t i = id_slot(s->id, cap);
  while (map[i]) i = (i + 1) & (cap - 1);
  map[i] = s;
}

static bool map_reserve(msrt_router *r) {
  if ((r->mapn + 1) * 2 <= r->mapcap) return true;
  size_t cap = r->mapcap ? r->mapcap * 2 : 64;
  rt_sub **m = calloc(cap, sizeof *m);
  if (!m) return false;
  for (size_t i = 0; i < r->mapcap; i++)
    if (r->map[i]) map_put_nogrow(m, cap, r->map[i]);
  free(r->map);
  r->map = m;
  r->mapcap = cap;
  return true;
}

static void map_del(msrt_router *r, uint64_t id) {
  size_t mask = r->mapcap - 1, i = id_slot(id, r->mapcap);
  while (r->map[i]->id != id) i = (i + 1) & mask;
  /* backward-shift deletion */
  for (size_t j = (i + 1) & mask; r->map[j]; j = (j + 1) & mask) {
    size_t home = id_slot(r->map[j]->id, r->mapcap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      r->map[i] = r->map[j];
      i = j;
    }
  }
  r->map[i] = NULL;
  r->mapn--;
}

/* ---- router -------------------------------------------------------------- */


msrt_router *msrt_router_new(const msrt_router_opts *opts) {
  msrt_router *r = aligned_alloc(64, (sizeof *r + 63) & ~(size_t)63);
  if (!r) return NULL;
  memset(r, 0, sizeof *r);
  r->max_subject = opts && opts->max_subject ? opts->max_subject
                                             : MSRT_SUBJECT_MAX_DEFAULT;
  uint32_t cs = opts ? opts->cache_slots : 0;
  if (cs == 0) cs = CACHE_DEFAULT;
  r->cache_slots = cs == UINT32_MAX ? 0 : (uint32_t)pow2_at_least(cs < 8 ? 8 : cs);
  if (r->cache_slots > (1u << 24)) r->cache_slots = 1u << 24;
  r->acct = msrt_account_new();
  pthread_mutex_init(&r->mu, NULL);
  r->next_id = 1;
  atomic_init(&r->epoch, 1);
  r->wide_after = opts && opts->wide_after ? opts->wide_after : WIDE_AFTER;
  rt_spec empty = {0};
  rt_snap *s = calloc(1, sizeof *s);
  rt_node *root = s && r->acct ? node_build(&empty, "", 0, &r->built_bytes)
                                : NULL;
  if (!root) {
    free(s);
    msrt_account_free(r->acct);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return NULL;
  }
  s->root = root;
  atomic_init(&s->cache, NULL);
  atomic_init(&r->current, s);
  atomic_init(&r->routes, NULL);
  return r;
}

static void reader_release(msrt_reader *rd) {
  free(rd->toks);
  free(rd->split);
  free(rd->stk);
  free(rd->plain);
  free(rd->spans);
  free(rd->cg);
  free(rd->mem);
  free(rd->idx);
  free(rd->rr);
  free(rd);
}

static void stack_child(void *child, void *ud) {
  rt_node ***top = ud;
  *(*top)++ = child;
}

static void trie_free(rt_node *root) {
  rt_node **stack = NULL;
  size_t n = 0, cap = 0;
  if (!GROW(stack, cap, 1)) return; /* leak rather than crash */
  stack[n++] = root;
  while (n) {
    rt_node *x = stack[--n];
    size_t slots = node_slots(x);
    if (!GROW(stack, cap, n + slots + x->nlit + 2)) break;
    for (size_t i = 0; i < slots; i++)
      if (x->lits[i].child) stack[n++] = x->lits[i].child;
    if (x->mask == MASK_WIDE) {
      rt_node **top = stack + n;
      rt_wide_each(x->side->kids, stack_child, &top);
      n = (size_t)(top - stack);
    }
    if (x->side) { /* the records are the id map's */
      rt_wide_free(x->side->kids);
      rt_wide_free(x->side->subs);
    }
    if (x->star) stack[n++] = x->star;
    if (x->fwc) stack[n++] = x->fwc;
    free(x);
  }
  free(stack);
}

void msrt_router_free(msrt_router *r) {
  if (!r) return;
  for (size_t i = r->ghead; i < r->glen; i++) r->garb[i].fn(r->garb[i].p);
  free(r->garb);
  free(r->pend);
  while (r->readers) {
    msrt_reader *rd = r->readers;
    r->readers = rd->next;
    reader_release(rd);
  }
  rt_snap *s = atomic_load_explicit(&r->current, memory_order_relaxed);
  trie_free(s->root);
  snap_free(s);
  for (size_t i = 0; i < r->mapcap; i++) free(r->map[i]);
  free(r->map);
  while (r->queues) {
    rt_qstate *q = r->queues;
    r->queues = q->next;
    free(q);
  }
  msrt_routes_free(atomic_load_explicit(&r->routes, memory_order_relaxed));
  free(r->qfree);
  free(r->wtoks);
  free(r->path);
  free(r->built);
  free(r->spec.lits);
  free(r->spec.items);
  free(r->spec.qsubs);
  free(r->wlog.made);
  free(r->wlog.gone);
  msrt_account_free(r->acct); /* and the shards of the readers above */
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* ---- readers ------------------------------------------------------------- */

static atomic_uint_least64_t rng_seq;

msrt_reader *msrt_router_reader_new(msrt_router *r) {
  msrt_reader *rd = aligned_alloc(64, (sizeof *rd + 63) & ~(size_t)63);
  if (!rd) return NULL;
  memset(rd, 0, sizeof *rd);
  atomic_init(&rd->epoch, 0);
  rd->shard = msrt_account_shard_new(r->acct);
  if (!rd->shard) {
    free(rd);
    return NULL;
  }
  rd->r = r;
  rd->rng = msrt_now_ns() ^ (uintptr_t)rd ^
            (atomic_fetch_add(&rng_seq, 1) * 0xd1b54a32d192ed03ull);
  pthread_mutex_lock(&r->mu);
  rd->next = r->readers;
  if (r->readers) r->readers->prev = rd;
  r->readers = rd;
  pthread_mutex_unlock(&r->mu);
  return rd;
}

void msrt_router_reader_free(msrt_reader *rd) {
  if (!rd) return;
  msrt_router *r = rd->r;
  atomic_store_explicit(&rd->epoch, 0, memory_order_release);
  pthread_mutex_lock(&r->mu);
  if (rd->prev) rd->prev->next = rd->next;
  else r->readers = rd->next;
  if (rd->next) rd->next->prev = rd->prev;
  reclaim_locked(r);
  pthread_mutex_unlock(&r->mu);
  msrt_account_shard_free(rd->shard); /* its counts fold into the account */
  reader_release(rd);
}

void msrt_router_reader_enter(msrt_reader *rd) {
  if (rd->depth++ == 0) {
    uint64_t e = atomic_load_explicit(&rd->r->epoch, memory_order_acquire);
    atomic_exchange_explicit(&rd->epoch, e, memory_order_seq_cst);
  }
}

void msrt_router_reader_leave(msrt_reader *rd) {
  if (--rd->depth == 0)
    atomic_store_explicit(&rd->epoch, 0, memory_order_release);
}

/* ---- subscribe / unsubscribe --------------------------------------------- */

static bool tokenize_w(msrt_router *r, const char *p, size_t len,
                       size_t *ntok) {
  size_t n = msrt_subject_tokens(p, len);
  if (!GROW(r->wtoks, r->wtokcap, n) || !GROW(r->path, r->pathcap, n + 1) ||
      !GROW(r->built, r->builtcap, n + 1))
    return false;
  size_t k = 0, at = 0;
  msrt_subject_token st;
  while (msrt_subject_next(p, len, &at, &st))
    r->wtoks[k++] = (rt_tok){st.p, st.len, st.kind, rt_prefix(st.p, st.len),
                             rt_hash(st.p, st.len)};
  *ntok = n;
  return true;
}

/* Rebuild the path for r->wtoks[0..nt) bottom-up. leaf_op edits the leaf's
 * spec. On success the new root is returned and the replaced nodes are on
 * the pending list; on failure nothing changed. */
typedef bool (*leaf_op)(msrt_router *r, rt_spec *s, rt_sub *sub);

static inline void item_of(msrt_match_item *it, const rt_sub *s,
                           uint32_t flags) {
  it->sub_id = s->id;
  it->endpoint = s->endpoint;
  it->ud = s->ud;
  it->kind = s->kind;
  it->flags = flags;
}

static uint64_t sub_hash(const void *sub) {
  return rt_mix(((const rt_sub *)sub)->id, 0x9e3779b97f4a7c15ull);
}

/* Add (nc) or remove (old) a record of a wide spec's plain subscriptions. */
static bool wsubs_edit(rt_spec *s, const rt_sub *old, rt_sub *nc,
                       rt_wide_log *log) {
  log->hash_of = sub_hash;
  if (!rt_wide_edit(s->wsubs, sub_hash(old ? old : nc), old, nc, &s->wsubs,
                    log))
    return false;
  s->nwsubs += nc ? 1 : (size_t)-1;
  if (!s->nwsubs) s->subs_wide = false;
  return true;
}

/* A spec past wide_after plain subscriptions moves their records (from the
 * id map) into a HAMT. */
static bool subs_widen(msrt_router *r, rt_spec *s) {
  s->subs_wide = true;
  for (size_t i = 0; i < s->nsubs; i++) {
    rt_sub *x = map_get(r, s->items[i].sub_id);
    if (!wsubs_edit(s, NULL, x, &r->wlog)) return false;
  }
  s->nsubs = 0;
  return true;
}

static bool op_add(msrt_router *r, rt_spec *s, rt_sub *sub) {
  if (sub->q) { /* after its group's last member: groups lie together */
    if (!GROW(s->qsubs, s->qcap, s->nq + 1)) return false;
    size_t at = s->nq;
    while (at > 0 && s->qsubs[at - 1]->q != sub->q) at--;
    if (at == 0) at = s->nq;
    memmove(s->qsubs + at + 1, s->qsubs + at,
            (s->nq - at) * sizeof *s->qsubs);
    s->qsubs[at] = sub;
    s->nq++;
  } else if (s->subs_wide) {
    return wsubs_edit(s, NULL, sub, &r->wlog);
  } else if (s->nsubs + 1 > r->wide_after) { /* sub is not in the map yet */
    return subs_widen(r, s) && wsubs_edit(s, NULL, sub, &r->wlog);
  } else {
    if (!GROW(s->items, s->subcap, s->nsubs + 1)) return false;
    item_of(&s->items[s->nsubs++], sub, 0);
  }
  return true;
}

static bool op_del(msrt_router *r, rt_spec *s, rt_sub *sub) {
  if (sub->q) {
    for (size_t i = 0; i < s->nq; i++)
      if (s->qsubs[i] == sub) {
        memmove(s->qsubs + i, s->qsubs + i + 1,
                (s->nq - i - 1) * sizeof *s->qsubs);
        s->nq--;
        break;
      }
  } else if (s->subs_wide) {
    return wsubs_edit(s, sub, NULL, &r->wlog);
  } else {
    for (size_t i = 0; i < s->nsubs; i++)
      if (s->items[i].sub_id == sub->id) {
        memmove(s->items + i, s->items + i + 1,
                (s->nsubs - i - 1) * sizeof *s->items);
        s->nsubs--;
        break;
      }
  }
  return true;
}

static rt_node *rebuild(msrt_router *r, size_t nt, leaf_op op, rt_sub *sub) {
  /* the writer's tokens carry their hash already */
  rt_snap *cur = atomic_load_explicit(&r->current, memory_order_relaxed);
  rt_node **path = r->path, **built = r->built;
  path[0] = cur->root;
  for (size_t i = 0; i < nt; i++) path[i + 1] = node_child(path[i], &r->wtoks[i]);
  size_t nb = 0;
  /* The pending list must be able to take every replaced node, the old
   * snapshot and up to two records, and the garbage list all of that. */
  if (!GROW(r->pend, r->pendcap, r->npend + nt + 4) ||
      !GROW(r->garb, r->gcap, r->glen + r->npend + nt + 4))
    return NULL;
  rt_spec *s = &r->spec;
  rt_wide_log *log = &r->wlog;
  log->nmade = log->ngone = 0;
  log->bytes = 0;
  rt_node *nn = NULL;
  for (size_t i = nt + 1; i-- > 0;) {
    if (!spec_load(s, path[i])) goto fail;
    if (i == nt) {
      if (!op(r, s, sub)) goto fail;
    } else if (!spec_set_child(s, &r->wtoks[i], nn, r->wide_after, log)) {
      goto fail;
    }
    if (i > 0 && spec_empty(s)) {
      nn = NULL;
    } else {
      const rt_tok *t = i ? &r->wtoks[i - 1] : NULL;
      nn = node_build(s, t ? t->p : "", t ? t->len : 0, &r->built_bytes);
      if (!nn) goto fail;
      built[nb++] = nn;
    }
  }
  /* Room for the replaced HAMT nodes too (commit must not fail). */
  if (!GROW(r->pend, r->pendcap, r->npend + nt + 4 + log->ngone) ||
      !GROW(r->garb, r->gcap, r->glen + r->npend + nt + 4 + log->ngone))
    goto fail;
  for (size_t i = 0; i <= nt; i++)
    if (path[i]) r->pend[r->npend++] = (rt_garb){0, path[i], free};
  for (size_t i = 0; i < log->ngone; i++)
    r->pend[r->npend++] = (rt_garb){0, log->gone[i], free};
  r->built_bytes += log->bytes;
  log->bytes = 0;
  return nn;
fail:
  while (nb) free(built[--nb]);
  while (log->nmade) free(log->made[--log->nmade]);
  log->ngone = 0;
  return NULL;
}

static rt_qstate *queue_get(msrt_router *r, const char *q, size_t len) {
  for (rt_qstate *s = r->queues; s; s = s->next)
    if (s->len == len && memcmp(s->name, q, len) == 0) return s;
  if (!GROW(r->qfree, r->qfreecap, r->nqfree + 1)) return NULL;
  rt_qstate *s = malloc(sizeof *s + len + 1);
  if (!s) return NULL;
  s->slot = r->nqfree ? r->qfree[--r->nqfree] : r->qnext++;
  s->refs = 0;
  s->len = (uint32_t)len;
  memcpy(s->name, q, len);
  s->name[len] = 0;
  s->next = r->queues;
  r->queues = s;
  return s;
}

/* Forget a queue name no subscription uses; the record itself is freed
 * by the caller (or retired). Its counter slot may be reused at once:
 * a reader still on an old snapshot then shares a counter, harmlessly. */
static void queue_unlink(msrt_router *r, rt_qstate *q) {
  r->qfree[r->nqfree++] = q->slot; /* room reserved in queue_get */
  for (rt_qstate **pp = &r->queues; *pp; pp = &(*pp)->next)
    if (*pp == q) {
      *pp = q->next;
      return;
    }
}

msrt_code msrt_router_subscribe(msrt_router *r, const char *pattern,
                                size_t plen, const char *queue, size_t qlen,
                                void *endpoint, uint32_t kind, void *ud,
                                uint64_t *sub_id, msrt_error *err) {
  msrt_code c = msrt_pattern_validate(pattern, plen, r->max_subject, err);
  if (c != MSRT_E_OK) return c;
  if (queue && qlen &&
      (c = msrt_queue_validate(queue, qlen, r->max_subject, err)) != MSRT_E_OK)
    return c;
  rt_sub *sub = malloc(sizeof *sub + plen + 1);
  rt_snap *ns = malloc(sizeof *ns);
  if (!sub || !ns) {
    free(sub);
    free(ns);
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  }
  memcpy(sub->pattern, pattern, plen);
  sub->pattern[plen] = 0;
  sub->plen = (uint32_t)plen;
  sub->endpoint = endpoint;
  sub->ud = ud;
  sub->kind = kind;
  sub->q = NULL;
  atomic_init(&sub->flags, MSRT_SUB_READY);

  pthread_mutex_lock(&r->mu);
  size_t nt;
  rt_qstate *q = NULL;
  if (!tokenize_w(r, sub->pattern, plen, &nt) || !map_reserve(r)) goto nomem;
  if (queue && qlen) {
    if (!(q = queue_get(r, queue, qlen))) goto nomem;
    q->refs++;
    sub->q = q;
  }
  sub->id = r->next_id;
  rt_node *root = rebuild(r, nt, op_add, sub);
  if (!root) goto nomem;
  r->next_id++;
  map_put_nogrow(r->map, r->mapcap, sub);
  r->mapn++;
  ns->root = root;
  commit(r, ns);
  atomic_fetch_add_explicit(&r->nsubs, 1, memory_order_relaxed);
  pthread_mutex_unlock(&r->mu);
  if (sub_id) *sub_id = sub->id;
  return MSRT_E_OK;
nomem:
  if (q && --q->refs == 0) {
    queue_unlink(r, q);
    free(q);
  }
  r->npend = 0;
  pthread_mutex_unlock(&r->mu);
  free(sub);
  free(ns);
  return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
}

msrt_code msrt_router_unsubscribe(msrt_router *r, uint64_t sub_id) {
  return msrt_router_unsubscribe_item(r, sub_id, NULL, NULL, NULL);
}

msrt_code msrt_router_unsubscribe_endpoint(msrt_router *r, uint64_t sub_id,
                                           void **endpoint, uint32_t *kind) {
  return msrt_router_unsubscribe_item(r, sub_id, endpoint, kind, NULL);
}

msrt_code msrt_router_unsubscribe_item(msrt_router *r, uint64_t sub_id,
                                       void **endpoint, uint32_t *kind,
                                       void **ud) {
  rt_snap *ns = malloc(sizeof *ns);
  if (!ns) return MSRT_E_NOMEM;
  pthread_mutex_lock(&r->mu);
  rt_sub *sub = map_get(r, sub_id);
  if (!sub) {
    pthread_mutex_unlock(&r->mu);
    free(ns);
    return MSRT_E_NOT_FOUND;
  }
  size_t nt;
  rt_node *root;
  if (!tokenize_w(r, sub->pattern, sub->plen, &nt) ||
      !(root = rebuild(r, nt, op_del, sub))) {
    r->npend = 0;
    pthread_mutex_unlock(&r->mu);
    free(ns);
    return MSRT_E_NOMEM;
  }
  map_del(r, sub_id);
  if (endpoint) *endpoint = sub->endpoint;
  if (kind) *kind = sub->kind;
  if (ud) *ud = sub->ud;
  r->pend[r->npend++] = (rt_garb){0, sub, free};
  if (sub->q && --sub->q->refs == 0) {
    queue_unlink(r, sub->q);
    r->pend[r->npend++] = (rt_garb){0, sub->q, free};
  }
  ns->root = root;
  commit(r, ns);
  atomic_fetch_sub_explicit(&r->nsubs, 1, memory_order_relaxed);
  pthread_mutex_unlock(&r->mu);
  return MSRT_E_OK;
}

msrt_code msrt_router_defer(msrt_router *r, void (*fn)(void *), void *p) {
  pthread_mutex_lock(&r->mu);
  if (!GROW(r->garb, r->gcap, r->glen + 1)) {
    pthread_mutex_unlock(&r->mu);
    return MSRT_E_NOMEM;
  }
  uint64_t t = atomic_load_explicit(&r->epoch, memory_order_seq_cst);
  r->garb[r->glen++] = (rt_garb){t, p, fn};
  atomic_store_explicit(&r->epoch, t + 1, memory_order_seq_cst);
  reclaim_locked(r);
  pthread_mutex_unlock(&r->mu);
  return MSRT_E_OK;
}

msrt_code msrt_router_set_ready(msrt_router *r, uint64_t sub_id, bool ready) {
  pthread_mutex_lock(&r->mu);
  rt_sub *sub = map_get(r, sub_id);
  if (sub) {
    if (ready)
      atomic_fetch_or_explicit(&sub->flags, MSRT_SUB_READY, memory_order_release);
    else
      atomic_fetch_and_explicit(&sub->flags, ~MSRT_SUB_READY,
                                memory_order_release);
  }
  pthread_mutex_unlock(&r->mu);
  return sub ? MSRT_E_OK : MSRT_E_NOT_FOUND;
}

size_t msrt_router_sub_count(msrt_router *r) {
  return atomic_load_explicit(&r->nsubs, memory_order_relaxed);
}

uint64_t msrt_router_version(msrt_router *r) {
  return atomic_load_explicit(&r->version, memory_order_acquire);
}

uint64_t msrt_router_built_bytes(msrt_router *r) {
  pthread_mutex_lock(&r->mu);
  uint64_t n = r->built_bytes;
  pthread_mutex_unlock(&r->mu);
  return n;
}

size_t msrt_router_cached(msrt_router *r) {
  pthread_mutex_lock(&r->mu); /* the current snapshot lives while it is held */
  rt_snap *s = atomic_load_explicit(&r->current, memory_order_acquire);
  rt_cache *c = atomic_load_explicit(&s->cache, memory_order_acquire);
  size_t n = c ? atomic_load_explicit(&c->n, memory_order_relaxed) : 0;
  pthread_mutex_unlock(&r->mu);
  return n;
}

size_t msrt_router_reclaim(msrt_router *r) {
  pthread_mutex_lock(&r->mu);
  size_t n = reclaim_locked(r);
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* ---- matching ------------------------------------------------------------- */

void msrt_match_result_free(msrt_match_result *m) {
  free(m->items);
  msrt_match_result_init(m);
}

static void collect_sub(void *sub, void *ud) {
  msrt_reader *rd = ud;
  item_of(&rd->plain[rd->nplain++], sub, 0);
}

/* A node's many plain subscriptions, from their records (out of line:
 * collect's usual path stays small). */
static __attribute__((noinline)) bool collect_wide(msrt_reader *rd,
                                                   const rt_side *side) {
  if (!GROW(rd->plain, rd->plaincap, rd->nplain + side->nsubs)) return false;
  rt_wide_each(side->subs, collect_sub, rd);
  return true;
}

static inline bool collect(msrt_reader *rd, const rt_node *n) {
  if (n->nsubs) {
    if (!GROW(rd->plain, rd->plaincap, rd->nplain + n->nsubs)) return false;
    memcpy(rd->plain + rd->nplain, node_items(n),
           n->nsubs * sizeof(msrt_match_item));
    rd->nplain += n->nsubs;
  }
  if (n->side && n->side->subs && !collect_wide(rd, n->side)) return false;
  if (n->ngroups) {
    if (!GROW(rd->spans, rd->spancap, rd->nspans + n->ngroups)) return false;
    const rt_group *g = node_groups(n);
    rt_sub *const *m = node_members(n);
    for (uint32_t i = 0; i < n->ngroups; i++)
      rd->spans[rd->nspans++] = (rt_span){g[i].q, m + g[i].off, g[i].n};
  }
  return true;
}

/* Walk the trie for the subject into rd's scratch and describe the result in
 * rd->cand. Returns NULL when scratch could not grow. */
static const rt_cand *walk(msrt_reader *rd, const rt_node *root,
                           const char *subj, size_t len) {
  if (!GROW(rd->toks, rd->tokcap, len + 1) ||
      !GROW(rd->split, rd->splitcap, len + 1))
    return NULL;
  size_t nt = msrt_subject_tokenize(subj, len, rd->split);
  for (size_t i = 0; i < nt; i++) {
    const msrt_subject_token *st = &rd->split[i];
    rd->toks[i] = (rt_tok){st->p, st->len, st->kind, rt_prefix(st->p, st->len), 0};
  }
  rd->nplain = rd->nspans = 0;
  size_t sp = 0;
  if (!GROW(rd->stk, rd->stkcap, 16)) return NULL;
  rd->stk[sp++] = (rt_frame){root, 0};
  while (sp) {
    rt_frame f = rd->stk[--sp];
    const rt_node *n = f.n;
    size_t ti = f.ti;
    for (;;) {
      if (ti == nt) {
        if (!collect(rd, n)) return NULL;
        break;
      }
      if (n->fwc && !collect(rd, n->fwc)) return NULL;
      if (n->star) {
        if (!GROW(rd->stk, rd->stkcap, sp + 1)) return NULL;
        rd->stk[sp++] = (rt_frame){n->star, ti + 1};
      }
      if (!n->nlit) break;
      const rt_node *c = node_lit(n, &rd->toks[ti]);
      if (!c) break;
      n = c;
      ti++;
    }
  }
  /* Merge spans into groups by queue name. */
  size_t ng = 0, nm = 0;
  if (!GROW(rd->cg, rd->cgcap, rd->nspans + 1)) return NULL;
  for (size_t i = 0; i < rd->nspans; i++) {
    size_t j = 0;
    while (j < ng && rd->cg[j].q != rd->spans[i].q) j++;
    if (j == ng) rd->cg[ng++] = (rt_cgroup){rd->spans[i].q, 0, 0};
    rd->cg[j].n += rd->spans[i].n;
    nm += rd->spans[i].n;
  }
  if (!GROW(rd->mem, rd->memcap, nm + 1)) return NULL;
  uint32_t off = 0;
  for (size_t j = 0; j < ng; j++) {
    rd->cg[j].off = off;
    for (size_t i = 0; i < rd->nspans; i++)
      if (rd->spans[i].q == rd->cg[j].q) {
        cpy(rd->mem + off, rd->spans[i].m, rd->spans[i].n * sizeof(rt_sub *));
        off += rd->spans[i].n;
      }
  }
  rt_cand *c = &rd->cand;
  c->nplain = (uint32_t)rd->nplain;
  c->ngroups = (uint32_t)ng;
  c->nmem = (uint32_t)nm;
  c->plain = rd->plain;
  c->groups = rd->cg;
  c->mem = rd->mem;
  return c;
}

static inline const rt_entry *cache_find(const rt_cache *c, uint64_t h,
                                         const char *s, size_t len) {
  for (uint32_t k = 0; k < CACHE_PROBE; k++) {
    const rt_entry *e = atomic_load_explicit(
        &c->slot[((uint32_t)h + k) & c->mask], memory_order_acquire);
    if (!e) return NULL;
    if (e->hash == h && e->slen == len && rt_eq(e->subj, s, len)) return e;
  }
  return NULL;
}

static void cache_insert(msrt_reader *rd, rt_snap *s, rt_cache *c,
                         uint64_t h, const char *subj, size_t len,
                         const rt_cand *src, unsigned cls) {
  msrt_router *r = rd->r;
  if (!c) {
    /* Make a snapshot's cache only once this reader has missed enough on
     * it: a snapshot replaced at once by the next change never pays. */
    if (rd->miss_snap != s) {
      rd->miss_snap = s;
      rd->misses = 0;
    }
    if (++rd->misses < CACHE_AFTER_MISSES) return;
    c = calloc(1, sizeof *c + (size_t)r->cache_slots * sizeof c->slot[0]);
    if (!c) return;
    c->mask = r->cache_slots - 1;
    rt_cache *expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(&s->cache, &expected, c,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
      free(c);
      c = expected;
    }
  }
  /* Past a full bucket the subject stays uncached: look before allocating
   * (a full cache would otherwise cost every miss a malloc and a free). */
  uint32_t k0 = 0;
  while (k0 < CACHE_PROBE &&
         atomic_load_explicit(&c->slot[((uint32_t)h + k0) & c->mask],
                              memory_order_relaxed))
    k0++;
  if (k0 == CACHE_PROBE) return;
  size_t off_plain = ALIGN8(sizeof(rt_entry) + len);
  size_t sz = off_plain + src->nplain * sizeof(msrt_match_item) +
              src->ngroups * sizeof(rt_cgroup) + src->nmem * sizeof(rt_sub *);
  rt_entry *e = malloc(sz);
  if (!e) return;
  e->hash = h;
  e->slen = (uint32_t)len;
  e->nplain = (uint16_t)src->nplain;
  e->ngroups = (uint16_t)src->ngroups;
  e->nmem = (uint16_t)src->nmem;
  e->cls = (uint16_t)cls;
  memcpy(e->subj, subj, len);
  cpy((void *)ENTRY_PLAIN(e), src->plain, src->nplain * sizeof(msrt_match_item));
  cpy((void *)ENTRY_GROUPS(e), src->groups, src->ngroups * sizeof(rt_cgroup));
  cpy((void *)ENTRY_MEM(e), src->mem, src->nmem * sizeof(rt_sub *));
  for (uint32_t k = k0; k < CACHE_PROBE; k++) {
    rt_entry *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(
            &c->slot[((uint32_t)h + k) & c->mask], &expected, e,
            memory_order_release, memory_order_relaxed)) {
      e->next = atomic_load_explicit(&c->head, memory_order_relaxed);
      while (!atomic_compare_exchange_weak_explicit(
          &c->head, &e->next, e, memory_order_release, memory_order_relaxed)) {
      }
      atomic_fetch_add_explicit(&c->n, 1, memory_order_relaxed);
      return;
    }
  }
  free(e); /* bucket full: stays uncached in this snapshot */
}

static inline bool is_ready(const rt_sub *s) {
  return atomic_load_explicit(&((rt_sub *)s)->flags, memory_order_acquire) &
         MSRT_SUB_READY;
}

static msrt_code select_items(msrt_reader *rd, const rt_cand *c,
                              msrt_match_result *out, msrt_skip_fn skip,
                              void *skip_ud) {
  size_t need = (size_t)c->nplain + c->ngroups;
  if (need > out->cap) {
    size_t cap = out->cap ? out->cap : 8;
    while (cap < need) cap *= 2;
    msrt_match_item *it = realloc(out->items, cap * sizeof *it);
    if (!it) return MSRT_E_NOMEM;
    out->items = it;
    out->cap = cap;
  }
  msrt_match_item *items = out->items;
  if (c->nplain) memcpy(items, c->plain, c->nplain * sizeof *items);
  size_t k = c->nplain;
  for (uint32_t g = 0; g < c->ngroups; g++) {
    const rt_cgroup *gr = &c->groups[g];
    rt_sub *const *m = c->mem + gr->off;
    uint32_t n = gr->n;
    uint32_t qs = gr->q->slot;
    if (qs >= rd->rrcap) {
      size_t old = rd->rrcap;
      if (!GROW(rd->rr, rd->rrcap, (size_t)qs + 1)) return MSRT_E_NOMEM;
      for (size_t i = old; i < rd->rrcap; i++) /* random start per reader */
        rd->rr[i] = (uint32_t)(rt_rand(&rd->rng) >> 32);
    }
    uint32_t ctr = rd->rr[qs]++;
    uint32_t start = ctr % n;
    msrt_match_item *it = &items[k];
    if (is_ready(m[start])) {
      item_of(it, m[start], MSRT_MATCH_QUEUE);
      if (!skip || !skip(it, skip_ud)) {
        k++;
        continue;
      }
    }
    /* Slow path: the round-robin pick is not eligible. Choose fairly among
     * the eligible members; if every ready one is full, fall back to the
     * first ready one after start and flag it. */
    if (!GROW(rd->idx, rd->idxcap, n)) return MSRT_E_NOMEM;
    uint32_t ne = 0, fallback = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
      uint32_t j = (start + i) % n;
      if (!is_ready(m[j])) continue;
      if (fallback == UINT32_MAX) fallback = j;
      if (j == start) continue; /* already rejected by skip */
      if (skip) {
        item_of(it, m[j], MSRT_MATCH_QUEUE);
        if (skip(it, skip_ud)) continue;
      }
      rd->idx[ne++] = j;
    }
    if (ne) {
      item_of(it, m[rd->idx[ctr % ne]], MSRT_MATCH_QUEUE);
      k++;
    } else if (fallback != UINT32_MAX) {
      item_of(it, m[fallback], MSRT_MATCH_QUEUE | MSRT_MATCH_FULL);
      k++;
    } else {
      out->unready_groups++;
    }
  }
  out->len = k;
  return MSRT_E_OK;
}

/* A reply subject under _INBOX. names one request and is matched about
 * once: looked up, it is a miss; cached, it fills the cache with entries
 * never used again (and, the cache full, every such miss would allocate
 * and free one). */
static inline bool single_use(const char *subject, size_t len) {
  return len > 7 && memcmp(subject, "_INBOX.", 7) == 0;
}

msrt_code msrt_router_match(msrt_reader *rd, const char *subject,
                            size_t len, msrt_match_result *out,
                            msrt_skip_fn skip, void *skip_ud) {
  msrt_router *r = rd->r;
  bool auto_enter = rd->depth == 0;
  msrt_code rc;
  if (auto_enter) msrt_router_reader_enter(rd);
  out->len = 0;
  out->unready_groups = 0;
  out->cls = 0; /* "_other": an empty first token */
  if (len == 0) { /* an empty subject has no token: matches nothing */
    rc = MSRT_E_OK;
    goto done;
  }
  rt_snap *s = atomic_load_explicit(&r->current, memory_order_seq_cst);
  const rt_cand *c = NULL;
  rt_cand view;
  rt_cache *cache = NULL;
  uint64_t h = 0;
  bool cached = r->cache_slots && !single_use(subject, len);
  if (cached) {
    h = rt_hash(subject, len);
    cache = atomic_load_explicit(&s->cache, memory_order_acquire);
    const rt_entry *e = cache ? cache_find(cache, h, subject, len) : NULL;
    if (e) {
      view.nplain = e->nplain;
      view.ngroups = e->ngroups;
      view.nmem = e->nmem;
      view.plain = ENTRY_PLAIN(e);
      view.groups = ENTRY_GROUPS(e);
      view.mem = ENTRY_MEM(e);
      c = &view;
      out->cls = e->cls;
    }
  }
  if (!c) {
    c = walk(rd, s->root, subject, len);
    if (!c) {
      rc = MSRT_E_NOMEM;
      goto done;
    }
    out->cls = msrt_account_class(r->acct, subject, len);
    if (cached && c->nplain + c->nmem <= CACHE_MAX_CANDS)
      cache_insert(rd, s, cache, h, subject, len, c, out->cls);
  }
  rc = select_items(rd, c, out, skip, skip_ud);
done:
  if (auto_enter) msrt_router_reader_leave(rd);
  return rc;
}

/* ---- routing table --------------------------------------------------------- */

static void routes_free_v(void *p) { msrt_routes_free(p); }

msrt_code msrt_router_set_routes(msrt_router *r, msrt_routes *table) {
  pthread_mutex_lock(&r->mu);
  if (!GROW(r->garb, r->gcap, r->glen + 1)) {
    pthread_mutex_unlock(&r->mu);
    return MSRT_E_NOMEM;
  }
  if (table && table == atomic_load_explicit(&r->routes, memory_order_relaxed)) {
    pthread_mutex_unlock(&r->mu); /* already installed: nothing to retire */
    return MSRT_E_OK;
  }
  msrt_routes *old =
      atomic_exchange_explicit(&r->routes, table, memory_order_seq_cst);
  uint64_t t = atomic_load_explicit(&r->epoch, memory_order_seq_cst);
  if (old) r->garb[r->glen++] = (rt_garb){t, old, routes_free_v};
  atomic_store_explicit(&r->epoch, t + 1, memory_order_seq_cst);
  reclaim_locked(r);
  pthread_mutex_unlock(&r->mu);
  return MSRT_E_OK;
}

bool msrt_router_has_routes(msrt_router *r) {
  return atomic_load_explicit(&r->routes, memory_order_relaxed) != NULL;
}

msrt_code msrt_router_route(msrt_reader *rd, const char *subject, size_t len,
                            char *buf, size_t cap, msrt_route_result *res,
                            msrt_error *err) {
  bool auto_enter = rd->depth == 0;
  if (auto_enter) msrt_router_reader_enter(rd);
  const msrt_routes *t =
      atomic_load_explicit(&rd->r->routes, memory_order_seq_cst);
  msrt_code c = msrt_routes_apply(t, subject, len, buf, cap, &rd->rng, res, err);
  if (res->dead_letter) {
    size_t used = res->rewritten ? res->len + 1 : 0;
    if (used + res->dead_letter_len + 1 > cap) {
      char q[RT_QUOTE_BUF];
      c = msrt_error_set(err, MSRT_E_LIMIT,
                         "no room for the dead-letter subject of %s in a "
                         "%zu-byte buffer",
                         rt_quote(q, subject, len, RT_QUOTE_MAX), cap);
      res->dead_letter = NULL;
      res->dead_letter_len = 0;
    } else {
      memcpy(buf + used, res->dead_letter, res->dead_letter_len);
      buf[used + res->dead_letter_len] = 0;
      res->dead_letter = buf + used;
    }
  }
  if (auto_enter) msrt_router_reader_leave(rd);
  return c;
}

/* ---- accounting ------------------------------------------------------------ */

msrt_account *msrt_router_account(msrt_router *r) { return r->acct; }

msrt_account_shard *msrt_reader_shard(msrt_reader *rd) { return rd->shard; }
