/* Shared by the files of the bridge (not part of its public face). */
#ifndef MSRT_BRIDGE_INTERNAL_H
#define MSRT_BRIDGE_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#include "bridge/bridge.h"
#include "bus/endpoint.h"
#include "proc/codec.h"

#define MSRT_BRIDGE_PATTERNS_MAX 64

/* One interest key of the bus (bus/interest.h) that is on: its NATS
 * subscription while an import pattern covers it, a synchronous one
 * whose messages the hub takes after each read (loop.c; a no-responders
 * status reaches it marked, msrt_bridge_hook_parse). A key that goes
 * off with a subscription is retired (its subscription drained or
 * unsubscribed) and freed by the hub once libnats is done with it
 * (msrt_bridge_pull); one without is freed at once. */
typedef struct bkey {
  struct bkey *next;
  msrt_bridge *b;
  uint32_t key;
  natsSubscription *sub; /* NULL: not covered, or subscribing failed */
  natsSubscription *drained; /* retired: destroyed when the hub frees k */
  _Atomic bool gone;     /* off (or the bridge closing): what libnats
                            still hands over counts dropped_at_close */
  bool one_class;        /* the pattern's first token is literal: every
                            subject it matches is of one subject class */
  unsigned cls1;         /* that class + 1 once a message told it; 0:
                            not yet (hub) */
  bool blocked;          /* pend holds a full `block` subscriber's copies:
                            its messages wait in libnats (hub only) */
  msrt_bus_pending pend; /* each import's (wire.c): empty (zeroed) unless
                            blocked */
  char *queue;           /* NULL: plain */
  /* what one imported message's headers and data are written into on
   * their way to an envelope, kept from one message to the next */
  msrt_sbuf scratch_h, scratch_d;
  char pattern[];
} bkey;

/* libnats' socket on the hub's loop (loop.c). */
typedef struct msrt_bridge_loop msrt_bridge_loop;

/* One subscription the hub takes messages from (a snapshot of b->keys
 * and b->retired, made under b->mu). */
typedef struct {
  bkey *k;
  natsSubscription *sub;
  bool retired; /* sub is k->drained */
} bpull;

/* The longest subject the hub remembers which key takes (msrt_bridge_
 * parse_key); a longer one is never imported at the parse. */
#define MSRT_BRIDGE_MEMO_SUBJECT 128

struct msrt_bridge {
  msrt_bus *bus;
  natsConnection *nc;
  char origin[64];
  size_t profile_max_payload;
  int pending_msgs;
  msrt_bridge_loop *loop;
  pthread_mutex_t mu; /* keys, retired, imports, exports, last_error */
  bkey *keys;
  bkey *retired; /* gone off with a subscription: freed by the hub */
  bpull *pulls;  /* the hub's snapshot (hub only) */
  size_t npulls, cappulls;
  char *imports[MSRT_BRIDGE_PATTERNS_MAX];
  size_t nimports;
  uint64_t export_subs[MSRT_BRIDGE_PATTERNS_MAX];
  size_t nexports;
  char last_error[200];
  char **stored; /* JetStream queues' patterns, one copy per queue */
  size_t nstored, capstored;
  _Atomic size_t any_stored;
  _Atomic int state;
  _Atomic uint64_t reconnects, slow_consumer, loops, nats_subs;
  _Atomic uint64_t slow_dropped_gone; /* of subscriptions closed */
  _Atomic int closed_cb; /* libnats' closed callback has run */
  _Atomic bool unwatched; /* the hub's loop could not watch a socket */
  _Atomic uint64_t stats[MSRT_CLASS_MAX][MSRT_BRIDGE__COUNT];
  /* imports at the parse (msrt_bridge_parse_key): keys_version moves
   * (under mu) before any change to what keys and subscriptions cover;
   * the rest is the hub's */
  pthread_t hub;
  _Atomic uint64_t keys_version;
  uint64_t memo_version;  /* keys_version when memo_key was found */
  bkey *memo_key;         /* the one live key covering memo_subject */
  bool memo_set;
  unsigned memo_misses;   /* memo misses in a row */
  unsigned memo_rest;     /* messages left to the pull without a look
                             (subjects that change from one message to
                             the next: each look walks the keys) */
  bool passed;            /* a message of this read went to libnats'
                             queues: none more at the parse until the
                             hub has taken them (ordering) */
  char memo_subject[MSRT_BRIDGE_MEMO_SUBJECT];
};

/* Count n in stat s of subject class cls (msrt_bus_class: looked up once
 * per message, which is counted more than once). */
static inline void msrt_bridge_add(msrt_bridge *b, unsigned cls,
                                   msrt_bridge_stat s, uint64_t n) {
  atomic_fetch_add_explicit(&b->stats[cls][s], n, memory_order_relaxed);
}

/* Destroy m, a message libnats delivered, on this thread (wire.c).
 * natsMsg_Destroy hands it to libnats' garbage-collector thread and wakes
 * that thread whenever it sleeps: with a message destroyed every ~1-2 us
 * and the thread on an idle vCPU, every few messages (perf: ~70 context
 * switches of it per 1,000 messages imported, 16 ms of its CPU per
 * 50,000, and as many futex wakes on the hub). Any thread. */
void msrt_bridge_msg_free(natsMsg *m);

/* The export endpoint's class (wire.c): the object is the bridge. */
extern const msrt_endpoint_class msrt_bridge_export_class;

/* A message from NATS for interest key k into the bus (wire.c), on the
 * hub, setting k->blocked when a full `block` subscriber holds copies of
 * it. */
void msrt_bridge_import(bkey *k, natsMsg *m);

/* The key a message on subject parsed on this thread is imported into
 * right at the parse, or NULL to leave it to libnats' queue and the
 * pull after the read (subject NULL: a message left there) (bridge.c):
 * on the hub only, not an `_INBOX.`
 * subject (libnats' own subscriptions are all there), exactly one
 * subscription of the bridge covering it (libnats does not tell the hook
 * which subscription a message is for) and that one a live key's, not
 * blocked, and nothing of this read left in libnats' queues before it
 * (b->passed). The pairing of subject and key is kept from one message
 * to the next while keys_version stands. */
bkey *msrt_bridge_parse_key(msrt_bridge *b, const char *subject);

/* Have libnats keep a no-responders status (the server's 503 to a
 * request nobody subscribes to) for the hub to take (wire.c): its
 * NextMsg destroys such a message and returns NATS_NO_RESPONDERS, which
 * no longer says which request it answers (the subject does). So a hook
 * libnats runs on each message it parses (on the thread that reads, the
 * hub), before it queues it, renames its Status header when
 * msrt_bridge_names_reply says the subject is one of the bridge's; the
 * import turns it back. The same hook imports at once a message that one
 * live key alone takes (msrt_bridge_parse_key), skipping libnats' queue.
 * Call once, on b->nc with no subscription yet. */
void msrt_bridge_hook_parse(msrt_bridge *b);

/* Whether a key with a NATS subscription (live or draining) covers
 * subject with a pattern whose first two tokens are literal (a
 * requester's `_INBOX.<token>.>`): a subject libnats' own request
 * inboxes (random tokens of its own) never match. b->mu taken: for the
 * rare no-responders status only (bridge.c). Any thread. */
bool msrt_bridge_names_reply(msrt_bridge *b, const char *subject);

/* The imports: every message libnats holds for a subscription of b that
 * is not blocked into the bus, then retired keys whose subscriptions
 * libnats closed freed (bridge.c). Hub, right after each read. */
void msrt_bridge_pull(msrt_bridge *b);

/* Retry the blocked keys' copies; a key whose copies are delivered (or
 * the bridge closed) is pulled again (bridge.c). Hub. */
void msrt_bridge_retry(msrt_bridge *b);

/* ---- loop.c ---- */

/* The adapter over the hub's uv_loop_t *uv, made on the hub thread (the
 * thread it takes for the hub), or NULL when out of memory. */
msrt_bridge_loop *msrt_bridge_loop_new(msrt_bridge *b, void *uv);

/* Give no the adapter's callbacks (natsOptions_SetEventLoop); asap: the
 * connection is send_asap (msrt_bridge_loop_published writes at once). */
natsStatus msrt_bridge_loop_options(msrt_bridge_loop *l, natsOptions *no,
                                    bool asap);

/* Close the adapter of a connection never made (hub). */
void msrt_bridge_loop_abandon(msrt_bridge_loop *l);

/* Have the hub retry pend (a blocked key's) as soon as its full
 * subscriber has room: the bus's waker (bus/bus.h) wakes the hub's loop
 * from the thread that made it. Hub. */
void msrt_bridge_loop_wait(msrt_bridge_loop *l, msrt_bus_pending *pend);

/* Start (on) or stop the 1 ms retry of blocked imports (hub): the
 * safety net under the waker. */
void msrt_bridge_loop_retry_in(msrt_bridge_loop *l, bool on);

/* After a publish to NATS (any thread): with send_asap, what libnats
 * buffered written at once on this thread; else on the hub, now and then,
 * what libnats buffered written at once when it is large, so that a hub
 * that publishes in a loop without returning to it neither grows libnats'
 * buffer without bound nor holds everything back until it returns. */
void msrt_bridge_loop_published(msrt_bridge_loop *l);

/* The socket's events for up to ms handled here, then the imports and
 * retries: the hub waiting outside its loop (close, flush, a JetStream
 * queue's close) still reads what it waits for. Hub. */
void msrt_bridge_pump(msrt_bridge *b, int ms);

/* e as a NATS message with reply (NULL: none) into *out (the caller
 * destroys it): its data and headers as on the wire (bridge.h); stored: a
 * JetStream queue's message (js.h). Returns 0; -1 when the data cannot be
 * written as JSON; 1 when libnats refused (*st says why). Any thread. */
int msrt_bridge_wire_out(msrt_bridge *b, const msrt_envelope *e,
                         const char *reply, bool stored, natsMsg **out,
                         natsStatus *st);

/* A NATS message as an envelope with reply (headers, priority, data as
 * on the wire), or NULL with err. Any thread. */
msrt_envelope *msrt_bridge_wire_in(msrt_bridge *b, natsMsg *m,
                                   const char *reply, msrt_error *err);

/* Whether a JetStream queue of b captures subject (js.h): the export
 * leaves it to the queue. Any thread. */
bool msrt_bridge_stored(msrt_bridge *b, const char *subject);

/* Add (on) or remove the patterns a JetStream queue captures; as many
 * queues as the host declares. Adds all n or none. Returns 0, or -1 when
 * out of memory (nothing added). Removing one copies what was added for
 * one queue (one copy of each pattern). Hub. */
int msrt_bridge_store_patterns(msrt_bridge *b, const char *const *p, size_t n,
                               bool on);

/* Publish "msrt.nats.<state>" with data {state, url, error} (bridge.c). */
void msrt_bridge_announce(msrt_bridge *b, msrt_bridge_state s);

#endif
