/* The subscription index: who gets a message published on a subject
 * (docs/architecture.md "Router semantics", "Threads and the path of a message").
 *
 * Structure. The subscriptions live in a token trie: each node has its
 * literal children (a linear array up to 8, compared by length and first 8
 * bytes; an open-addressing hash table up to `wide_after`, 256 by default;
 * past that a persistent hash array mapped trie of its own, router/wide.h),
 * a '*' child and a '>' child, and the subscriptions whose pattern ends
 * there: plain ones (stored as ready-made match items, or past
 * `wide_after` as their records in a HAMT of their own, keyed by id) and
 * queue-group members (together by group). A node is one 64-byte aligned
 * allocation (its HAMTs apart). The whole trie is an immutable snapshot
 * (the routing table sits behind its own atomic pointer, reclaimed the
 * same way). A change (subscribe, unsubscribe) runs under one writer
 * mutex, copies the nodes on the path from the root to the changed node
 * (path copying; in a wide node only the HAMT's path to the child or the
 * record, 256 bytes a level, so N subscriptions under one prefix or to one
 * subject cost O(N log N), not O(N^2); the rest is shared), and publishes
 * the new root with an atomic pointer swap. Readers never take a lock and
 * never see a half-made change. Still copied whole: a node's queue-group
 * members (N members on one subject cost O(N^2) bytes copied, 8 each; the
 * per-client caps of README "Limits" bound what one client makes).
 *
 * Match cache. Each snapshot has a bounded, lock-free cache from a subject
 * to its candidates (plain subscriptions and queue-group member lists; not
 * the queue-group choice, which is made per message). A reader creates it
 * after 32 misses on the snapshot (so a snapshot replaced at once never pays
 * for one); readers fill it with compare-and-swap into empty slots only,
 * probing 4 slots (an entry is never overwritten, so a reader can keep
 * using one it found; a subject whose slots are all taken stays uncached,
 * with nothing allocated); it holds at most `cache_slots` entries of at
 * most 64 candidates each, and dies with its snapshot: a swap invalidates
 * it naturally. Ready flags are read per match, so set_ready needs no new
 * snapshot. Subjects under `_INBOX.` (request reply subjects, each used
 * about once) are neither looked up in it nor added to it.
 *
 * Reclamation (epoch-based, per-thread reader registration). The router has
 * a global epoch G. Each thread that reads registers a msrt_reader (its slot:
 * one cache line holding the epoch it entered at, 0 when outside).
 *   enter: e = load(G); exchange(slot, e) (seq_cst);
 *   match: load(current snapshot), use it;   leave: store(slot, 0) (release).
 * A writer swaps the snapshot, tags everything it replaced (old snapshot and
 * its cache, path-copied nodes, an unsubscribed record, a queue name no
 * longer used, a replaced routing table) with t = load(G), sets
 * G = t + 1, and frees a tagged object once every registered slot is 0 or
 * > its tag; that check runs after each change (and msrt_router_reclaim).
 * A reader that could still see an object entered at an epoch <= its tag and
 * is still inside, so it holds the object back. The read path is two loads
 * and one exchange on the reader's own cache line per critical section, no
 * shared counter; msrt_router_match enters and leaves by itself unless the
 * caller already did, so a worker can enter once per batch. A thread that
 * stays inside forever stops reclamation (memory grows) but breaks nothing.
 *
 * Queue groups (nats-server sublist.go addNodeToResults): members of the
 * same queue name are one group for a message even when they subscribed
 * with different patterns that all match; each group yields exactly one
 * member, skipping members whose ready flag is cleared and members the
 * caller's skip predicate rejects (full mailboxes). The choice is round
 * robin from a counter per queue name *per reader* (started at a random
 * value, kept across snapshots): every reader spreads its messages evenly
 * over the members, so the sum is even too, and publishing writes no
 * shared cache line (a shared atomic counter would bounce between the
 * publishing threads on every message to the group). NATS itself picks at
 * random.
 */
#ifndef MSRT_ROUTER_INDEX_H
#define MSRT_ROUTER_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "router/account.h"
#include "router/routes.h"

typedef struct msrt_router msrt_router;
typedef struct msrt_reader msrt_reader;

typedef struct {
  size_t max_subject;   /* bytes; 0 = MSRT_SUBJECT_MAX_DEFAULT */
  uint32_t cache_slots; /* match cache slots per snapshot, rounded up to a
                           power of two; 0 = default (16384); UINT32_MAX =
                           no cache */
  uint32_t wide_after;  /* literal children past which a node keeps them in
                           a HAMT (router/wide.h) rather than a table copied
                           whole on each change; 0 = default (256); tests
                           and fuzzing set it low */
} msrt_router_opts;

/* Make a router. opts may be NULL (defaults). Returns NULL when out of
 * memory. */
msrt_router *msrt_router_new(const msrt_router_opts *opts);

/* Free the router, every subscription, every snapshot, the routing table and
 * every reader still registered (their handles become invalid). No thread
 * may use the router or its readers during or after the call. NULL is
 * ignored. */
void msrt_router_free(msrt_router *r);

/* ---- readers ---------------------------------------------------------- */

/* Register a reader for the calling thread. A reader is used by one thread
 * at a time (not thread-safe itself); make one per worker / hub. Takes the
 * writer mutex briefly. Returns NULL when out of memory. */
msrt_reader *msrt_router_reader_new(msrt_router *r);

/* Unregister and free a reader (must be outside a critical section). Its
 * statistics are folded into the router's. Takes the writer mutex. NULL is
 * ignored. */
void msrt_router_reader_free(msrt_reader *rd);

/* Enter / leave a read-side critical section. Nestable (a depth counter);
 * only the outermost pair touches the epoch. Between them, snapshots,
 * subscription records and the routing table the reader saw stay alive.
 * Wait-free: enter is a load and an exchange, leave one store. */
void msrt_router_reader_enter(msrt_reader *rd);
void msrt_router_reader_leave(msrt_reader *rd);

/* ---- subscriptions (writer side) -------------------------------------- */

#define MSRT_SUB_READY 0x1u /* member may be chosen in its queue group */

/* Subscribe.
 *   pattern, plen  subscription pattern (msrt_pattern_validate rules)
 *   queue, qlen    queue group name or NULL/0 for a plain subscription
 *                  (msrt_queue_validate rules)
 *   endpoint, kind, ud  opaque to the router; copied into match items
 *   sub_id         receives the new id (never 0, never reused)
 * The subscription starts ready. Returns MSRT_E_OK; MSRT_E_INVALID_SUBJECT
 * (bad pattern or queue name, message from subject.h); MSRT_E_NOMEM.
 * Visible to every match that starts after it returns. Thread-safe (writer
 * mutex); O(depth x min(fan-out, wide_after) + the changed node's
 * subscriptions) plus reclamation of older garbage. */
msrt_code msrt_router_subscribe(msrt_router *r, const char *pattern,
                                size_t plen, const char *queue, size_t qlen,
                                void *endpoint, uint32_t kind, void *ud,
                                uint64_t *sub_id, msrt_error *err);

/* Remove a subscription. Returns MSRT_E_OK, MSRT_E_NOT_FOUND (unknown id) or
 * MSRT_E_NOMEM (the new path could not be built; nothing changed). A match
 * that starts after it returns never yields the id; one already running may.
 * Thread-safe (writer mutex). */
msrt_code msrt_router_unsubscribe(msrt_router *r, uint64_t sub_id);

/* msrt_router_unsubscribe, also giving back the subscription's endpoint
 * and kind (*endpoint, *kind, each when not NULL; untouched on failure) so
 * that the caller can release the endpoint with msrt_router_defer as its
 * kind requires. */
msrt_code msrt_router_unsubscribe_endpoint(msrt_router *r, uint64_t sub_id,
                                           void **endpoint, uint32_t *kind);

/* msrt_router_unsubscribe_endpoint also giving back the subscription's ud
 * (*ud when not NULL): all three values subscribe was given. */
msrt_code msrt_router_unsubscribe_item(msrt_router *r, uint64_t sub_id,
                                       void **endpoint, uint32_t *kind,
                                       void **ud);

/* Call fn(p) once every reader that was inside a critical section when this
 * was called has left it (the same epochs as the router's own garbage):
 * for releasing what readers may still use after an unsubscribe, such as
 * an endpoint. fn runs, under the writer mutex, on whichever thread
 * reclaims first when that is safe: this call itself when no reader is
 * inside, else a later change, msrt_router_reclaim, a reader_free, or
 * msrt_router_free. fn must not call the router's writer side. Called from
 * inside a critical section, fn waits at least until that section ends.
 * Returns MSRT_E_OK, or MSRT_E_NOMEM (fn is then never called).
 * Thread-safe. */
msrt_code msrt_router_defer(msrt_router *r, void (*fn)(void *), void *p);

/* Set or clear a subscription's ready flag (readiness probes). Affects only
 * queue-group choice; a plain subscription is always delivered to. Returns
 * MSRT_E_OK or MSRT_E_NOT_FOUND. Thread-safe; no new snapshot. */
msrt_code msrt_router_set_ready(msrt_router *r, uint64_t sub_id, bool ready);

/* Number of subscriptions, and the version of the current snapshot (it
 * grows by one per change; read with acquire: a reader that entered after
 * a change's garbage was deferred sees the change's version, so a match
 * remembered under an unchanged version holds no freed endpoint).
 * Thread-safe. */
size_t msrt_router_sub_count(msrt_router *r);
uint64_t msrt_router_version(msrt_router *r);

/* Bytes the writer has allocated for the trie's nodes since the router was
 * made (cumulative; HAMT nodes of wide nodes included): the copying work of
 * the changes, which a test reads to check that one change copies
 * O(depth x log(fan-out)) and not the whole width of a node. Thread-safe
 * (writer mutex). */
uint64_t msrt_router_built_bytes(msrt_router *r);

/* Entries in the current snapshot's match cache (0 before it is made):
 * what a test reads to see which subjects are cached. Thread-safe (writer
 * mutex). */
size_t msrt_router_cached(msrt_router *r);

/* Free garbage no reader can reach any more (also done after each change).
 * Returns the number of objects still waiting. Thread-safe (writer mutex). */
size_t msrt_router_reclaim(msrt_router *r);

/* ---- matching (reader side, lock-free) -------------------------------- */

#define MSRT_MATCH_QUEUE 0x1u /* chosen as its queue group's one member */
#define MSRT_MATCH_FULL 0x2u  /* every ready member of the group was
                                 rejected by the skip predicate; this is the
                                 round-robin choice among the ready ones, for
                                 the caller's overflow policy */

typedef struct {
  uint64_t sub_id;
  void *endpoint;
  void *ud;
  uint32_t kind;
  uint32_t flags; /* MSRT_MATCH_* */
} msrt_match_item;

/* Caller-owned result buffer; match grows items with realloc as needed. */
typedef struct {
  msrt_match_item *items;
  size_t len, cap;
  uint32_t unready_groups; /* groups that matched with no ready member */
  unsigned cls; /* the subject's class (router/account.h) */
} msrt_match_result;

static inline void msrt_match_result_init(msrt_match_result *m) {
  m->items = NULL;
  m->len = m->cap = 0;
  m->unready_groups = 0;
  m->cls = 0;
}
void msrt_match_result_free(msrt_match_result *m);

/* Says whether a queue-group candidate must be skipped (e.g. its mailbox is
 * full and the overflow policy allows trying another member). Called on the
 * matching thread, only for ready members, possibly several times. */
typedef bool (*msrt_skip_fn)(const msrt_match_item *candidate, void *skip_ud);

/* Find the subscriptions for a published subject.
 *   rd             the calling thread's reader (enters/leaves by itself when
 *                  not already inside)
 *   subject, len   a published subject; assumed valid (validate it first
 *                  with msrt_subject_validate); not NUL-terminated necessarily
 *   out            receives the items (out->len reset first): every matching
 *                  plain subscription, then one member per matching queue
 *                  group (groups with no ready member are counted in
 *                  out->unready_groups and yield nothing), and in
 *                  out->cls the subject's class in the router's account
 *                  (msrt_account_class; a cached subject keeps it in its
 *                  cache entry, so it is looked up once per snapshot)
 *   skip, skip_ud  optional predicate for queue-group members (NULL = none)
 * Returns MSRT_E_OK with the items in out (their count out->len, 0 when
 * nothing matches), or MSRT_E_NOMEM when a buffer could not grow (out->len
 * is then 0). Items are copies, valid after leave; endpoint
 * lifetime is the caller's business. No lock and no shared write (except
 * filling the snapshot's match cache on a miss); the skip predicate runs
 * inside the critical section and must not free the reader. */
msrt_code msrt_router_match(msrt_reader *rd, const char *subject,
                            size_t len, msrt_match_result *out,
                            msrt_skip_fn skip, void *skip_ud);

/* ---- routing table ---------------------------------------------------- */

/* Install a compiled routing table (router/routes.h); on MSRT_E_OK the
 * router owns it. NULL removes routing. The old table is freed when no
 * reader can see it. Returns MSRT_E_OK, or MSRT_E_NOMEM (nothing changed,
 * the caller still owns table). Thread-safe (writer mutex); one atomic swap
 * for readers. */
msrt_code msrt_router_set_routes(msrt_router *r, msrt_routes *table);

/* Whether a routing table is installed: one relaxed load, so that a
 * publisher can skip msrt_router_route when there is none. A hint: a table
 * installed or removed meanwhile may or may not be seen. Thread-safe. */
bool msrt_router_has_routes(msrt_router *r);

/* Apply the current routing table to a subject (msrt_routes_apply with the
 * reader's PRNG). buf/cap receive the rewritten subject and, after it, a
 * copy of the dead-letter subject, so res stays valid after leave: cap of
 * 2 * (max_subject + 1) is always enough. Returns MSRT_E_OK or MSRT_E_LIMIT
 * (res->subject is then the input). Lock-free. */
msrt_code msrt_router_route(msrt_reader *rd, const char *subject, size_t len,
                            char *buf, size_t cap, msrt_route_result *res,
                            msrt_error *err);

/* ---- accounting (router/account.h) --------------------------------------- */

/* The router's account (message outcomes per subject class), and the
 * reader's shard of it (count on it from the reader's thread only). Both
 * live as long as the router / the reader. Thread-safe. */
msrt_account *msrt_router_account(msrt_router *r);
msrt_account_shard *msrt_reader_shard(msrt_reader *rd);

#endif
