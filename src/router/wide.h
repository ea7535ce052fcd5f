/* Wide trie nodes' literal children and long subscription lists: a
 * persistent hash array mapped trie (HAMT, after Bagwell 2001). Private to
 * the router (index.c); not a public header.
 *
 * Why: a node's children are part of an immutable snapshot, and a change
 * copies what it edits (router/index.h "Structure"). A flat table copied
 * whole made each subscribe under a node with N siblings cost O(N), so N
 * subscriptions cost O(N^2): a client's SUB flood under one prefix. Here an
 * edit copies only the HAMT nodes on the path to the key, 256 bytes each,
 * about log32(N) of them (at most 14); the rest is shared with the old
 * version. The same structure keeps the plain subscriptions of a node that
 * has many (its leaves are the subscription records, keyed by id).
 *
 * A node is 32 slots indexed by 5 bits of the token's 64-bit hash (the low
 * bits first). A slot is empty (NULL), a child trie node (a leaf: its
 * address, 64-byte aligned, so bit 0 is clear) or a sub-node (its address
 * with bit 0 set). Slots are not compressed with a bitmap, so a lookup is a
 * shift, a mask and a load per level (no popcount, which plain x86-64 lacks).
 * A leaf sits at the first level where its slot is free, so the caller
 * compares the token with the leaf's own. Leaves are opaque pointers with
 * bit 0 clear (trie nodes are 64-byte aligned, records malloc'd). Past the 64 bits of the hash (two
 * tokens with equal hashes) the sub-node is a collision node: a plain list.
 *
 * Readers: rt_wide_find only reads; nodes never change once published.
 * Writers (under the router's writer mutex): rt_wide_edit records in a
 * rt_wide_log the nodes it made (freed if the change fails) and the nodes it
 * replaced (retired through the router's epochs once the change is
 * published, router/index.h "Reclamation"). */
#ifndef MSRT_ROUTER_WIDE_H
#define MSRT_ROUTER_WIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rt_wide {
  void *slot[32];
} rt_wide;

typedef struct {
  uint32_t n;
  void *e[];
} rt_wide_coll;

typedef struct {
  uint64_t (*hash_of)(const void *leaf); /* the leaf's hash (set by the
                                            caller before each edit) */
  void **made, **gone;
  size_t nmade, madecap, ngone, gonecap;
  uint64_t bytes; /* allocated by the edits, cumulative */
} rt_wide_log;

/* The candidates for hash h: *n leaves from the pointer returned (one, or
 * a collision node's list), or NULL. The caller compares keys. */
static inline void *const *rt_wide_find(const rt_wide *w, uint64_t h,
                                        uint32_t *n) {
  for (unsigned shift = 0; w; shift += 5) {
    void *const *s = &w->slot[(h >> shift) & 31];
    uintptr_t v = (uintptr_t)*s;
    if (!(v & 1)) {
      *n = 1;
      return v ? s : NULL;
    }
    if (shift + 5 >= 64) {
      const rt_wide_coll *c = (const rt_wide_coll *)(v - 1);
      *n = c->n;
      return c->e;
    }
    w = (const rt_wide *)(v - 1);
  }
  return NULL;
}

/* A new version of root where the leaf old (NULL to add) is replaced by
 * nc, or removed when nc is NULL; hash is their key's. Adding requires
 * that no leaf has nc's key. *out receives the new root (NULL when
 * empty). Returns false when out of memory (what was made is in
 * log->made). */
bool rt_wide_edit(const rt_wide *root, uint64_t hash, const void *old,
                  void *nc, rt_wide **out, rt_wide_log *log);

/* Call fn(leaf, ud) for each leaf of root. */
void rt_wide_each(const rt_wide *root, void (*fn)(void *leaf, void *ud),
                  void *ud);

/* Free every node of root (not the leaves it names). NULL is ignored. */
void rt_wide_free(rt_wide *root);

#endif
