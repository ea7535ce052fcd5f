/* The NATS listener over plain TCP (README "The network face"): accepts
 * on the hub's libuv loop and gives each peer a connection (nats/conn.h)
 * whose transport is its TCP stream.
 *
 * The TCP transport writes what it can at once (uv_try_write) and queues
 * a copy of the rest (uv_write); what it queues counts against the
 * server's max_pending and write deadline. It reads into one buffer per
 * listener (the hub is one thread and the parser points into the buffer
 * only during the feed). Closing after an error sends what is queued
 * first (uv_shutdown), unless the peer is not reading (a slow consumer):
 * then the socket closes at once.
 *
 * Addresses: only loopback ones (127.0.0.0/8, ::1) unless the server has
 * an auth policy (msrt_nats_server_set_auth): a fleet is not opened to
 * the network without one.
 *
 * Thread-safety: hub thread only.
 */
#ifndef MSRT_NATS_LISTEN_H
#define MSRT_NATS_LISTEN_H

#include "core/error.h"
#include "nats/conn.h"

typedef struct msrt_nats_listener msrt_nats_listener;

typedef struct {
  int backlog;  /* listen(2) backlog (connections.backlog; 0 = 511) */
  bool nodelay; /* TCP_NODELAY on each connection (connections.nodelay) */
} msrt_nats_listen_opts;

/* Listen on addr: "HOST:PORT" or "[V6HOST]:PORT" (numeric hosts;
 * "localhost" is 127.0.0.1; port 0: the kernel picks one, see
 * msrt_nats_listener_port). Returns the listener, or NULL with err:
 * invalid_arg (a malformed address), permission (a non-loopback address
 * and no auth policy), network (libuv's bind/listen failure: "address
 * already in use"...), nomem. */
msrt_nats_listener *msrt_nats_listen(msrt_nats_server *s, const char *addr,
                                     const msrt_nats_listen_opts *o,
                                     msrt_error *err);

/* The port it listens on. */
int msrt_nats_listener_port(const msrt_nats_listener *l);

/* Change backlog/nodelay for connections accepted from now on. */
void msrt_nats_listener_tune(msrt_nats_listener *l,
                             const msrt_nats_listen_opts *o);

/* Stop accepting (connections already open stay: the server closes
 * them). The memory goes when the handle has closed. */
void msrt_nats_listener_close(msrt_nats_listener *l);

#endif
