/* NATS client connections: each one an endpoint of the bus (bus/
 * endpoint.h) like an actor or a process, speaking the NATS client
 * protocol (nats/proto.h) over any transport (README "The network face").
 *
 * A server (msrt_nats_server) holds what a listener's connections share:
 * the bus they publish to, the limits (from the tuning profile), the
 * keep-alive and write-deadline sweep, the wake-up that flushes what
 * other threads delivered, the authorisation hook and the counters. A
 * connection (msrt_nats_conn) is made by a transport for each peer: the
 * TCP listener (nats/listen.h) or any other (a WebSocket carries the same
 * connection: only the transport differs).
 *
 * The contract with a transport:
 *   - the transport makes the connection with msrt_nats_conn_new, giving
 *     its vtable (msrt_nats_transport) and its own object t; the
 *     connection writes INFO at once;
 *   - it hands every byte the peer sends to msrt_nats_conn_feed, in order,
 *     in any split (a WebSocket transport feeds each frame's payload);
 *   - the connection writes through tp->write (hub thread, in order) and
 *     closes through tp->close (once; no write or other call after it);
 *   - when the peer goes away (EOF, read error) the transport calls
 *     msrt_nats_conn_close(conn, NULL);
 *   - once the transport no longer calls the connection (its close is
 *     complete: for libuv, the handle's close callback) it calls
 *     msrt_nats_conn_release, giving back the reference conn_new gave it.
 *     The connection's memory goes when the last subscription that could
 *     still see it (a router reader on another thread) has let go too.
 *
 * Subscriptions are the bus's: a SUB subscribes an endpoint of class
 * "nats" (its object: the subscription, which knows its connection and
 * sid) with its queue group, so matching, queue groups, request/reply
 * through _INBOX. subjects and the accounting are exactly those of local
 * subscribers. A message delivered to a connection, from any thread, is
 * written as MSG (or HMSG, with headers, to a client that said headers:
 * true) into the connection's pending buffer and flushed on the hub.
 *
 * Payloads: msrt's messages carry LuaJIT string.buffer encodings
 * (core/envelope.h). A client's payload becomes a Lua string (a
 * subscriber's handler gets the bytes as a string); a message whose data
 * is a Lua string reaches a client as those bytes; any other value as
 * its JSON text (proc/codec.h's mapping). Headers map to msrt's header
 * table, NATS' status line to the headers Status and Description
 * (proto.h).
 *
 * No responders: a PUB with a reply subject that nothing takes gets, when
 * the client said headers and no_responders in CONNECT, an HMSG with
 * "NATS/1.0 503" on its own subscription matching that reply (as
 * nats-server answers it), counted no_responders like a local request.
 *
 * Slow consumers (as nats-server treats them): the bytes pending for a
 * connection (its buffer plus what its transport still holds) are bound
 * by max_pending; a delivery that would pass it is dropped (counted
 * drop_newest and announced on msrt.dropped.<subject>) and the
 * connection is ended with -ERR 'Slow Consumer'; so is one whose
 * transport has held unsent bytes for longer than write_deadline_ms.
 * Each is counted (msrt_nats_stats) and announced on
 * msrt.nats.slow_consumer (payload: the client's name).
 *
 * Thread-safety: the push path (the endpoint class) from any thread;
 * everything else here on the hub thread.
 */
#ifndef MSRT_NATS_CONN_H
#define MSRT_NATS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bus/bus.h"
#include "core/error.h"
#include "nats/proto.h"

typedef struct msrt_nats_server msrt_nats_server;
typedef struct msrt_nats_conn msrt_nats_conn;

/* What a transport gives a connection. Every function is called on the
 * hub thread. */
typedef struct msrt_nats_transport {
  /* Send len bytes to the peer after everything written before. The
   * transport sends them or keeps its own copy before returning. Returns
   * MSRT_E_OK, or MSRT_E_CLOSED when the peer is gone or the bytes could
   * not be kept (the connection then closes). */
  msrt_code (*write)(void *t, const char *buf, size_t len);
  /* Bytes written and not yet sent that the transport holds (0 when it
   * keeps none): counted against max_pending and the write deadline.
   * NULL: always 0. */
  size_t (*queued)(void *t);
  /* Close: send what was written if the peer still reads, then end the
   * peer. Called once; nothing is called on t after it, except that the
   * transport itself still calls msrt_nats_conn_release. */
  void (*close)(void *t);
  /* Who the peer is ("127.0.0.1:51334"), NUL-terminated, at most cap - 1
   * bytes. */
  void (*peer)(void *t, char *buf, size_t cap);
} msrt_nats_transport;

/* Authorisation (the auth policy, nats/auth.h): given a client's CONNECT
 * options, whether it may connect, and what it may do. */
typedef struct msrt_nats_perms msrt_nats_perms;

typedef struct {
  /* Decide on CONNECT: returns MSRT_E_OK with *perms (NULL: everything
   * allowed; otherwise a reference the connection keeps and gives back
   * with unref), or MSRT_E_PERMISSION (-ERR 'Authorization Violation').
   * user is the connection's account name for limits ("" without one). */
  msrt_code (*authorize)(void *ud, const msrt_nats_connect *opts,
                   msrt_nats_perms **perms, char *user, size_t ucap);
  /* Whether a client must CONNECT before anything else (an auth policy
   * is in force): then the first command that is not CONNECT is an
   * Authorization Violation, as in nats-server. */
  bool required;
  void *ud;
} msrt_nats_auth;

/* The figures a server works by. 0 takes the default named. */
typedef struct {
  size_t max_payload;   /* bytes of headers + payload (profile's
                           max_payload; MSRT_NATS_MAX_PAYLOAD_DEFAULT) */
  size_t max_control;   /* bytes of a control line (4096) */
  size_t max_pending;   /* bytes pending per connection (64 MiB, as
                           nats-server's MAX_PENDING_SIZE) */
  uint64_t write_deadline_ms; /* how long a transport may hold unsent
                                 bytes (10000, as nats-server) */
  uint64_t ping_interval_ms;  /* keep-alive: a PING this often
                                 (connections.keepalive_ms; 120000, as
                                 nats-server); UINT64_MAX: none */
  int max_pings_out;    /* PINGs unanswered before -ERR 'Stale
                           Connection' (2, as nats-server) */
  size_t max_conns;     /* connections at once (connections.max; 0 =
                           no limit) */
  size_t max_subs;      /* subscriptions per connection (0 = no limit) */
} msrt_nats_opts;

/* Counters of a server (since it was made). */
typedef struct {
  uint64_t connections;    /* open now */
  uint64_t accepted;       /* made in all */
  uint64_t slow_consumers; /* ended as slow consumers */
  uint64_t refused;        /* refused: over max_conns or unauthorised */
  uint64_t in_msgs, out_msgs, in_bytes, out_bytes;
} msrt_nats_stats;

/* Make a server on loop (the hub's) over bus (borrowed; must outlive it).
 * Returns NULL with err filled (nomem, or libuv's failure). */
msrt_nats_server *msrt_nats_server_new(uv_loop_t *loop, msrt_bus *bus,
                                       const msrt_nats_opts *opts,
                                       msrt_error *err);

/* Change the figures (a profile reload): applies to every connection from
 * its next command or delivery; a parser's limits from its next
 * connection. */
void msrt_nats_server_tune(msrt_nats_server *s, const msrt_nats_opts *opts);

/* Set (or with NULL remove) the authorisation hook. Connections already
 * open keep their permissions until msrt_nats_server_reauthorize. */
void msrt_nats_server_set_auth(msrt_nats_server *s, const msrt_nats_auth *a);

/* Decide again for every open connection with the current hook (a policy
 * reload): one no longer allowed to connect is ended with -ERR
 * 'Authorization Violation'; the others get their new permissions, and
 * each subscription they are no longer allowed is removed with -ERR
 * 'Permissions Violation for Subscription to "<subject>"'. */
void msrt_nats_server_reauthorize(msrt_nats_server *s);

void msrt_nats_server_stats(msrt_nats_server *s, msrt_nats_stats *out);

/* End every connection and free the server once they are gone (its
 * handles close on the loop). No call on s after it. */
void msrt_nats_server_close(msrt_nats_server *s);

/* A connection for a new peer, over transport tp with object t. Writes
 * INFO. Over max_conns it writes -ERR 'maximum connections exceeded' and
 * closes at once (tp->close is called before this returns; the transport
 * still releases). Returns the connection (one reference, the
 * transport's), or NULL when out of memory (nothing was called on t). */
msrt_nats_conn *msrt_nats_conn_new(msrt_nats_server *s,
                                   const msrt_nats_transport *tp, void *t);

/* Bytes from the peer. Returns MSRT_E_OK, or MSRT_E_CLOSED when the
 * connection is closed (now or before: a protocol error ends it with
 * NATS' -ERR text, then tp->close). */
msrt_code msrt_nats_conn_feed(msrt_nats_conn *c, const char *buf, size_t len);

/* End the connection: with -ERR '<err_text>' first when err_text is not
 * NULL; unsubscribes everything, then tp->close. Idempotent. */
void msrt_nats_conn_close(msrt_nats_conn *c, const char *err_text);

/* The transport's reference (see the contract above). */
void msrt_nats_conn_release(msrt_nats_conn *c);

/* The transport's queue has drained (optional: the write deadline is
 * also checked on the server's sweep). */
void msrt_nats_conn_writable(msrt_nats_conn *c);

#endif
