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
 * subscription while an import pattern covers it. Freed by libnats'
 * on-complete callback once the subscription can call no more (or at
 * once when it never had one). */
typedef struct bkey {
  struct bkey *next;
  msrt_bridge *b;
  uint32_t key;
  natsSubscription *sub; /* NULL: not covered, or subscribing failed */
  natsSubscription *drained; /* being drained: destroyed by key_done */
  _Atomic bool gone;     /* off (or the bridge closing): what libnats
                            still hands over counts dropped_at_close */
  bool one_class;        /* the pattern's first token is literal: every
                            subject it matches is of one subject class */
  unsigned cls1;         /* that class + 1 once a message told it; 0:
                            not yet (libnats' delivery thread only) */
  char *queue;           /* NULL: plain */
  /* what one imported message's headers and data are written into on
   * their way to an envelope, kept from one message to the next (libnats
   * calls a subscription's handler for one message at a time) */
  msrt_sbuf scratch_h, scratch_d;
  char pattern[];
} bkey;

struct msrt_bridge {
  msrt_bus *bus;
  natsConnection *nc;
  char origin[64];
  size_t profile_max_payload;
  int pending_msgs;
  pthread_mutex_t mu; /* keys, imports, exports, last_error */
  bkey *keys;
  char *imports[MSRT_BRIDGE_PATTERNS_MAX];
  size_t nimports;
  uint64_t export_subs[MSRT_BRIDGE_PATTERNS_MAX];
  size_t nexports;
  char last_error[200];
  char *stored[MSRT_BRIDGE_PATTERNS_MAX]; /* JetStream queues' patterns */
  size_t nstored;
  _Atomic size_t any_stored;
  _Atomic int state;
  _Atomic uint64_t reconnects, slow_consumer, loops, nats_subs;
  _Atomic uint64_t slow_dropped_gone; /* of subscriptions closed */
  _Atomic long live_subs; /* NATS subscriptions not yet completed */
  _Atomic int closed_cb; /* libnats' closed callback has run */
  _Atomic uint64_t stats[MSRT_CLASS_MAX][MSRT_BRIDGE__COUNT];
};

/* Count n in stat s of subject class cls (msrt_bus_class: looked up once
 * per message, which is counted more than once). */
static inline void msrt_bridge_add(msrt_bridge *b, unsigned cls,
                                   msrt_bridge_stat s, uint64_t n) {
  atomic_fetch_add_explicit(&b->stats[cls][s], n, memory_order_relaxed);
}

/* The export endpoint's class (wire.c): the object is the bridge. */
extern const msrt_endpoint_class msrt_bridge_export_class;

/* A message from NATS for interest key k into the bus (wire.c); libnats'
 * delivery thread of k's subscription. */
void msrt_bridge_import(bkey *k, natsMsg *m);

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

/* Add (on) or remove the patterns a JetStream queue captures. Hub. */
int msrt_bridge_store_patterns(msrt_bridge *b, const char *const *p, size_t n,
                               bool on);

/* Publish "msrt.nats.<state>" with data {state, url, error} (bridge.c). */
void msrt_bridge_announce(msrt_bridge *b, msrt_bridge_state s);

#endif
