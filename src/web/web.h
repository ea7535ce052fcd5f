/* The web listener: HTTP (static files and answers the caller computes)
 * and WebSocket upgrades on one TCP address, served by libwebsockets on the
 * hub thread with no thread of its own (docs/architecture.md "The network
 * face", which says why libwebsockets and how it rides the hub's loop).
 *
 * The listening socket is msrt's own (bind errors are the kernel's, the
 * backlog and TCP_NODELAY are the profile's, the connection cap is counted
 * at accept: a connection over it is closed at once); each accepted socket
 * is handed to libwebsockets, which runs on a libuv loop of the listener's
 * own whose backend descriptor the hub's loop polls. So libwebsockets'
 * handles never appear on the hub's loop (whose handles follow
 * MSRT_HANDLE_MAGIC) and the listener never keeps the hub alive.
 *
 * Requests: GET and HEAD only (405 otherwise; any method on
 * cfg.exchange_path, below); request headers bounded by
 * header_max bytes (431 past it: libwebsockets' own bound); a request must
 * arrive within read_timeout_ms of the connection and an idle keep-alive
 * connection goes after idle_timeout_ms (both rounded up to whole seconds:
 * libwebsockets 4.1 keeps its timeouts in seconds). A path is first offered to the
 * answer callback; when it declines, the longest mount prefix that starts
 * the path names a directory the rest of the path is read from (a path
 * with "..", "//", a backslash or a byte outside [A-Za-z0-9._/-] is 404;
 * "/" ends in index.html), and 404 when none.
 *
 * WebSocket (when cfg.nats is given; any path): each upgraded connection
 * is a NATS client connection of that server (nats/conn.h), in the
 * framing nats.ws uses: the payload of every frame the client sends is
 * protocol bytes, in order, whatever the frame boundaries; what the
 * connection writes goes to the client as binary frames of at most
 * 64 KiB. The bytes not yet sent count as the transport's queue (the
 * server's max_pending and write deadline: slow consumers). The read
 * deadline ends at the upgrade; NATS' PINGs keep the connection then.
 *
 * Thread-safety: hub (main) thread only.
 */
#ifndef MSRT_WEB_WEB_H
#define MSRT_WEB_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "core/error.h"
#include "nats/conn.h"

typedef struct msrt_web msrt_web;

/* What the answer callback fills for a path it answers. */
typedef struct msrt_web_reply {
  int status;       /* HTTP status, e.g. 200 */
  char type[64];    /* Content-Type */
  char *body;       /* malloc'd; the listener frees it (also on error) */
  size_t len;       /* bytes of body */
} msrt_web_reply;

/* answer(ud, path, out): path is the request's path (query string cut
 * off, at most 1 KiB). Returns true when it answered (out filled; the
 * connection closes after the answer is sent, as "Connection: close"
 * says), false to let the mounts serve it. Runs on the hub inside the
 * listener's event handling: it must not re-enter libuv or close this
 * listener (msrt_web_close defers itself when it does). */
typedef bool (*msrt_web_answer_fn)(void *ud, const char *path,
                                   msrt_web_reply *out);

/* An exchange: a request on cfg.exchange_path (any method) that the
 * caller answers later, when it likes, with msrt_web_respond (MCP's
 * streamable HTTP transport, README "MCP servers", answers a POST once its
 * tool calls are done). The listener gathers the request's body first (at
 * most cfg.body_max bytes: past it, 413 and the connection closes). Its
 * strings are valid during the exchange callback only. */
typedef struct msrt_web_exchange {
  unsigned long id;     /* names it to msrt_web_respond and gone */
  const char *method;   /* "GET", "HEAD", "POST", "DELETE", "PUT", "PATCH",
                           "OPTIONS" */
  const char *origin;   /* the Origin header, "" when absent */
  const char *accept;   /* the Accept header, "" when absent */
  const char *header;   /* the header cfg.exchange_header names, "" when
                           absent (each at most 255 bytes: longer is cut) */
  const char *body;     /* the request body (NUL-terminated), len bytes */
  size_t len;
} msrt_web_exchange;

/* exchange(ud, x): a whole request came; answer it with msrt_web_respond
 * (now or later). gone(ud, id): the connection of an exchange not yet
 * answered closed (the client went away); its id is dead. Both run on the
 * hub inside the listener's event handling, as the answer callback. */
typedef void (*msrt_web_exchange_fn)(void *ud, const msrt_web_exchange *x);
typedef void (*msrt_web_gone_fn)(void *ud, unsigned long id);

typedef struct msrt_web_mount {
  const char *prefix; /* URL path prefix ending in '/', e.g. "/vendor/" */
  const char *dir;    /* the directory it maps to */
} msrt_web_mount;

enum { MSRT_WEB_MOUNTS = 8 };

typedef struct msrt_web_config {
  const char *ip;              /* numeric IPv4 or IPv6 address */
  int port;                    /* 0: any free port (msrt_web_port says) */
  int backlog;                 /* listen(2) backlog */
  int max_conns;               /* open connections at once */
  int nodelay;                 /* TCP_NODELAY on accepted sockets */
  unsigned read_timeout_ms;    /* a request must arrive within this */
  unsigned idle_timeout_ms;    /* an idle keep-alive connection goes */
  unsigned header_max;         /* bytes of request headers (<= 65535) */
  msrt_web_mount mounts[MSRT_WEB_MOUNTS]; /* copied; unused ones NULL */
  msrt_web_answer_fn answer;   /* or NULL */
  void *ud;
  const char *exchange_path;   /* a path answered by exchange, or NULL */
  const char *exchange_header; /* a request header passed on to it
                                  ("Mcp-Session-Id"), or NULL */
  size_t body_max;             /* bytes of an exchange's body (> 0) */
  msrt_web_exchange_fn exchange;
  msrt_web_gone_fn gone;       /* or NULL */
  msrt_nats_server *nats;      /* NATS clients over WebSocket on this
                                  listener (borrowed: it must outlive the
                                  listener), or NULL: upgrades refused */
} msrt_web_config;

/* Bind, listen and start serving on the hub loop. Returns the listener, or
 * NULL with err set: invalid_arg (a bad address or setting), network
 * ("cannot listen on IP:PORT: <strerror>", e.g. address already in use),
 * nomem, internal (libwebsockets refused to start). */
msrt_web *msrt_web_listen(uv_loop_t *hub, const msrt_web_config *cfg,
                          msrt_error *err);

/* The port it listens on (the kernel's pick for port 0). */
int msrt_web_port(const msrt_web *w);

/* Connections open now (HTTP and WebSocket). */
int msrt_web_open(const msrt_web *w);

/* Connections accepted and refused at the cap since the start. */
unsigned long msrt_web_accepted(const msrt_web *w);
unsigned long msrt_web_refused(const msrt_web *w);

/* Answer exchange id: the status, Content-Type type, one more header
 * (hname: hvalue, e.g. "Mcp-Session-Id"; hname NULL for none) and body
 * (malloc'd or NULL when len is 0: taken, also on error); the connection
 * closes after it. Returns MSRT_E_OK, or MSRT_E_NOT_FOUND when no
 * exchange id waits (answered already, or its connection closed). */
msrt_code msrt_web_respond(msrt_web *w, unsigned long id, int status,
                           const char *type, const char *hname,
                           const char *hvalue, char *body, size_t len);

/* Stop listening, close every connection and free the listener; its own
 * loop is drained here, and the hub handles close on the hub's next turn.
 * From inside an answer callback the close happens once the callback has
 * returned. NULL is ignored. */
void msrt_web_close(msrt_web *w);

#endif
