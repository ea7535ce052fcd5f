/* The NATS bridge: one host's router joined to a NATS server or cluster
 * (docs/architecture.md "More than one host"), through Debian's libnats.
 *
 * Export. The bridge subscribes locally to each export pattern with an
 * endpoint of its own class (bus/endpoint.h, `remote`): a local publish
 * that matches is handed to it like to any endpoint, on the publishing
 * thread, and published to NATS (libnats buffers it; while disconnected,
 * into its reconnect buffer, bounded in bytes). Subjects under `msrt.`
 * (the runtime's own events) never cross: they stay on each host.
 *
 * Import. Interest follows subscriptions as a NATS leaf node's does: every
 * interest key of the bus (bus/interest.h: a pattern and queue group some
 * local endpoint subscribes to) that an import pattern covers becomes one
 * NATS subscription, with its queue group, and goes away when the key goes
 * off (its last subscription gone, or, for a queue group, its last ready
 * member). A message arriving on it is made into an envelope on the hub
 * as libnats parses it, or right after the read that brought it (see
 * "Threads"), and handed to that
 * key's local subscriptions only (msrt_bus_publish_key), as a worker
 * publishes: through the bus, no lock held, the endpoints' own batched
 * wake-ups; a full `block` subscriber holds that subscription's messages
 * until it has room (the hub retries when woken by the thread that made
 * it, or after 1 ms; libnats' pending queue, pending_msgs, takes what
 * comes meanwhile; past it libnats drops, counted as slow_dropped), the
 * other subscriptions going on. A message imported is never exported
 * again (the export endpoint is no key of the host), and the
 * server never sends the bridge its own publishes back (the connection is
 * no_echo), so nothing loops.
 *
 * On the wire. Subject, reply and headers as they are (NATS headers); the
 * priority, when not the default 5, as header `Msrt-Priority`; a message
 * that carries any header also names the exporting host in `Msrt-Origin`
 * (what a bridge receives with its own origin, relayed back by some other
 * client, is dropped, counted as a loop); one that needs none (a string,
 * the default priority, no headers, no queue group served here) goes as
 * a plain PUB, as any client's would, without libnats' header map on
 * either side (docs/performance.md). The data as NATS clients expect
 * it: a Lua string as its bytes, any other value as JSON text with
 * `Content-Type: application/json` (proc/codec.h, as at the process
 * edge); imported bytes become a Lua string unless so marked. The server's
 * 503 no-responders status arrives as headers Status = "503".
 *
 * Accounting. The bus counts a copy handed to the bridge as delivered;
 * each of those ends in exactly one of the bridge's outcomes, per subject
 * class (msrt_bridge_stats):
 *   handed == exported + dropped_disconnected + refused_by_server
 *             + local_only + unconvertible
 * and every drop is announced on msrt.dropped.<subject> like the bus's.
 * imported counts messages received from NATS; each then enters the bus's
 * own identity (accepted once per copy), except those of this host's own
 * origin (info.loops), served_there and dropped_at_close:
 *   imported == (entered the bus) + loops + served_there + dropped_at_close
 * and over every class, once the bridge is closed: the connection's
 * received (libnats' count of every message NATS sent it) == imported +
 * slow_dropped + what came in flight for a key already unsubscribed (see
 * below; none when every key went off by a drain, as every key does
 * while connected).
 *
 * Closing a NATS subscription. When the bridge closes, and when a key
 * goes off, its subscription is drained rather than cut (libnats' drain:
 * UNSUB, a round trip, then what is pending and what the server sent
 * before it took the UNSUB is handed over): each of those messages is
 * counted dropped_at_close without entering the bus (nobody here wants
 * it any more, or the host is closing), so none is lost uncounted, and
 * the drain is quick (no per-message work beyond the count; libnats runs
 * each drain's round trip on a short thread of its own). Only a drain
 * libnats refuses (the connection closed) cuts the subscription.
 *
 * Queue groups across hosts. A host that publishes on a subject for which
 * it has a ready member of a queue group serves the group itself, as a
 * NATS leaf node prefers its local queue subscribers: the exported copy
 * names those groups in header `Msrt-Served`, and a host receiving it for
 * one of them (NATS still picks one queue subscriber per group) drops it,
 * counted served_there. So each message reaches one member per group
 * across every host; a group is spread across hosts (NATS picks at
 * random) for what is published where it has no ready member.
 *
 * Threads. libnats' socket is read and written on the hub's loop (an event
 * loop adapter of the bridge's own, natsOptions_SetEventLoop: its handles
 * carry the tag of core/handle.h, which libnats' libuv adapter's do not).
 * An import subscription is a synchronous one whose messages the hub
 * takes after each read (or at the parse, skipping libnats' queue, when
 * one live key alone takes the subject and nothing of the read waits in
 * libnats before it), so nothing crosses a thread between the socket
 * and the bus, and a subscription is no thread: `_INBOX.` keys' too (a
 * reply reaches the requesting hub with no thread wake-up; the 503
 * no-responders status, which libnats' NextMsg would turn into an error
 * without the subject naming the waiting request, is renamed by a hook on
 * libnats' parse and restored by the import). A publish on any thread appends to
 * libnats' buffer; the hub writes it (a thread other than the hub wakes
 * it), so a hub that publishes in a loop without returning to it holds
 * everything in that buffer until it does; with send_asap the publishing
 * thread writes it at once instead. What waits on the server
 * (a flush, the close, a JetStream queue's last request) runs on another
 * thread while the hub reads for it. libnats' flusher, reconnect, timer
 * and callback threads remain.
 *
 * Thread-safety: msrt_bridge_open / close / set_filters / flush on one
 * thread at a time (the hub, whose loop opts.loop is); everything else
 * from any thread.
 */
#ifndef MSRT_BRIDGE_BRIDGE_H
#define MSRT_BRIDGE_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/error.h"
#include "router/account.h"

typedef struct msrt_bridge msrt_bridge;

typedef struct {
  const char *const *servers; /* nats:// URLs (a cluster's seeds) */
  size_t nservers;
  const char *user, *password; /* NULL: none */
  const char *token;           /* NULL: none */
  const char *creds;           /* a .creds file (JWT + nkey seed); NULL */
  const char *name;            /* the host's name: connection name and
                                  Msrt-Origin; NULL: "msrt-<random>" */
  int64_t reconnect_buffer;    /* bytes libnats keeps while disconnected;
                                  what does not fit is dropped_disconnected.
                                  0: libnats' default (8 MiB) */
  int64_t reconnect_wait_ms;   /* between attempts on one server; 0: 250 */
  int64_t connect_timeout_ms;  /* 0: 2000 */
  int pending_msgs;            /* per NATS subscription before libnats
                                  calls it a slow consumer; 0: 65536 */
  size_t max_payload;          /* the profile's (bytes) */
  bool send_asap;              /* write each message at once (libnats'
                                  SendAsap): lower latency for a host
                                  that answers requests one at a time,
                                  one write per message; false: libnats
                                  coalesces writes (throughput) */
  void *loop;                  /* the hub's uv_loop_t, where libnats'
                                  socket is read and written ("Threads") */
} msrt_bridge_opts;

/* The bridge's connection states, also published on msrt.nats.<state>
 * (data {state, url, error}). */
typedef enum {
  MSRT_BRIDGE_CONNECTING,   /* not connected yet; retrying */
  MSRT_BRIDGE_CONNECTED,    /* connected (first time or again) */
  MSRT_BRIDGE_DISCONNECTED, /* lost; libnats reconnects */
  MSRT_BRIDGE_CLOSED        /* closed: msrt_bridge_close */
} msrt_bridge_state;

/* "connecting", "connected", "disconnected", "closed". */
const char *msrt_bridge_state_name(msrt_bridge_state s);

/* Per subject class (router/account.h's classes): see "Accounting". */
typedef enum {
  MSRT_BRIDGE_HANDED,
  MSRT_BRIDGE_EXPORTED,
  MSRT_BRIDGE_DROPPED_DISCONNECTED,
  MSRT_BRIDGE_REFUSED_BY_SERVER,
  MSRT_BRIDGE_LOCAL_ONLY,
  MSRT_BRIDGE_UNCONVERTIBLE,
  MSRT_BRIDGE_IMPORTED,
  MSRT_BRIDGE_SERVED_THERE,
  MSRT_BRIDGE_DROPPED_AT_CLOSE,
  MSRT_BRIDGE__COUNT
} msrt_bridge_stat;

/* "handed", "exported", ..., "imported", "served_there",
 * "dropped_at_close". */
const char *msrt_bridge_stat_name(msrt_bridge_stat s);

typedef struct {
  msrt_bridge_state state;
  uint64_t reconnects;     /* times the connection came back */
  uint64_t slow_consumer;  /* slow-consumer errors (libnats' or the
                              server's: a server that cut the bridge off
                              as slow counts when it says so) */
  uint64_t slow_dropped;   /* messages libnats dropped for a slow
                              consumer: over the subscriptions now and
                              those closed */
  uint64_t loops;          /* imported messages of this host's origin */
  uint64_t nats_subs;      /* NATS subscriptions now (interest) */
  uint64_t received;       /* messages NATS sent this connection (libnats'
                              count: for any subscription, also one
                              already gone) */
  int64_t server_max_payload; /* the server's max_payload; 0 unknown */
  size_t max_payload;      /* min(server's, profile's): the largest
                              headers + payload that can cross */
  char url[256];           /* the server connected to; "" when none */
  char last_error[200];    /* the last error libnats reported; "" */
} msrt_bridge_info;

/* Open a bridge on bus (borrowed: it must outlive the bridge) and start
 * connecting: returns MSRT_E_OK at once even when no server answers yet
 * (state connecting; libnats keeps trying, msrt.nats.connected tells when
 * it is up). Errors: MSRT_E_INVALID_ARG (no server, a bad URL or
 * credentials file: err says which), MSRT_E_NOMEM. Attaches the bus's
 * interest hook (one bridge per bus). Hub thread. */
msrt_code msrt_bridge_open(msrt_bus *bus, const msrt_bridge_opts *opts,
                           msrt_bridge **out, msrt_error *err);

/* Set the import and export patterns (NATS subject patterns; `_INBOX.>`
 * is always both, so replies cross back). Export patterns become local
 * subscriptions of the bridge; import patterns decide which interest keys
 * become NATS subscriptions: both are replaced whole, the old ones going
 * as the new ones come (a reload). Returns MSRT_E_OK, or
 * MSRT_E_INVALID_SUBJECT naming the bad pattern (nothing changed), or
 * MSRT_E_NOMEM. Hub thread. */
msrt_code msrt_bridge_set_filters(msrt_bridge *b, const char *const *import,
                                  size_t nimport, const char *const *export_,
                                  size_t nexport, msrt_error *err);

/* What a bridge counted when it closed (msrt_bridge_close). */
typedef struct {
  msrt_bridge_info info;
  uint64_t stats[MSRT_CLASS_MAX][MSRT_BRIDGE__COUNT];
  size_t nclasses; /* as msrt_bridge_stats returns */
} msrt_bridge_last;

/* Remove the bridge's interest hook and exports, drain its NATS
 * subscriptions (what is pending is counted dropped_at_close, see
 * "Closing a NATS subscription"; bounded: 1 s), flush what was published
 * (within 1 s), close the connection, wait for libnats' threads to
 * finish (bounded: 5 s), and free. When last is not NULL it gets the
 * final counters. NULL b is ignored. Hub thread. */
void msrt_bridge_close(msrt_bridge *b, msrt_bridge_last *last);

/* Wait until the server has seen everything sent so far (its
 * subscriptions: a round trip, PING/PONG), at most timeout_ms. Returns
 * MSRT_E_OK, MSRT_E_TIMEOUT or MSRT_E_CLOSED (not connected). Blocks the
 * hub (which reads the answer meanwhile, and takes imports): for startup
 * and specs, not the hot path. Hub thread. */
msrt_code msrt_bridge_flush(msrt_bridge *b, int64_t timeout_ms,
                            msrt_error *err);

/* The state and counters now. Any thread. */
void msrt_bridge_info_get(msrt_bridge *b, msrt_bridge_info *out);

/* Per class: fills out[c][s] for the bus's classes 0 .. min(n, cap) and
 * returns n (names from msrt_account_classes on the bus's router). Any
 * thread; each counter read atomically. */
size_t msrt_bridge_stats(msrt_bridge *b, uint64_t (*out)[MSRT_BRIDGE__COUNT],
                         size_t cap);

#endif
