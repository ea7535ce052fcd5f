/* Inside the web listener: the listener's fields, shared by web.c (the
 * socket, the loops) and http.c (what libwebsockets calls back). */
#ifndef MSRT_WEB_INTERNAL_H
#define MSRT_WEB_INTERNAL_H

#include <libwebsockets.h>

#include "nats/conn.h"
#include "web/web.h"

struct msrt_web {
  unsigned magic;           /* MSRT_HANDLE_MAGIC: the hub handles' data */
  uv_loop_t own;            /* libwebsockets' loop, driven from the hub */
  uv_poll_t backend;        /* hub: own's backend descriptor */
  uv_timer_t timer;         /* hub: own's next timeout */
  uv_poll_t listener;       /* hub: the listening socket */
  int fd, port, hub_open;
  int driving, closing;
  int kicked;               /* a poll change is waiting for another run */
  struct lws_context *ctx;
  struct lws_vhost *vh;
  msrt_web_config cfg;      /* strings point into `strings` */
  char *strings;
  int open;                 /* connections libwebsockets holds */
  unsigned long accepted, refused;
  unsigned char *scratch;   /* LWS_PRE + MSRT_WEB_FRAME: a frame being sent */
  struct msrt_web_x *waiting; /* exchanges handed over, not yet answered */
  unsigned long next_xid;
};

/* An exchange in progress (exchange.c), hung on its connection's session:
 * its request gathered, then waiting for msrt_web_respond. */
typedef struct msrt_web_x msrt_web_x;

/* The largest WebSocket frame sent at once (what a NATS connection
 * writes is cut into frames of at most this). */
enum { MSRT_WEB_FRAME = 65536 };

/* The most of a received frame handed over at once (web.c's protocols). */
enum { MSRT_WEB_RX = 1024 };

/* Per connection (libwebsockets' per-session data, zeroed at its start).
 * An HTTP request uses body..done; a WebSocket carrying a NATS client
 * the rest. */
typedef struct msrt_web_session {
  char *body;               /* an answer being written, or NULL */
  size_t len, off;
  int head;                 /* a HEAD request: headers only */
  int done;                 /* all written: close at the next writable */
  struct lws *wsi;
  msrt_web *web;
  msrt_nats_conn *conn;     /* the NATS connection, or NULL */
  char *out;                /* bytes the connection wrote, not yet sent */
  size_t out_len, out_off, out_cap;
  int ending;               /* the connection closed: send out, then end */
  int gone;                 /* libwebsockets closed the socket */
  msrt_web_x *x;            /* an exchange on this connection, or NULL */
} msrt_web_session;

/* The exchange side of msrt_web_callback (exchange.c). begin: a request
 * on cfg.exchange_path came (its body, if any, follows). body: a piece of
 * it; done: all of it came. write: the connection is writable. end: the
 * connection closed. Each -> what the callback returns (-1: close). */
int msrt_web_x_begin(struct lws *wsi, msrt_web_session *s);
int msrt_web_x_body(struct lws *wsi, msrt_web_session *s, const void *in, size_t len);
int msrt_web_x_done(struct lws *wsi, msrt_web_session *s);
int msrt_web_x_write(struct lws *wsi, msrt_web_session *s);
void msrt_web_x_end(msrt_web_session *s);

/* The WebSocket side of msrt_web_callback (ws.c): -> what the callback
 * returns; 1 in *handled when reason was one of its own. */
int msrt_web_ws(struct lws *wsi, enum lws_callback_reasons reason,
                msrt_web_session *s, void *in, size_t len, int *handled);

/* Ask libwebsockets for a writable callback on wsi, and have the
 * listener's loop run again soon: libuv registers the poll change only
 * when its loop next polls, which the hub would not ask for by itself
 * (uv_backend_timeout does not count pending poll changes). From inside
 * or outside the listener's callbacks. */
void msrt_web_want_write(struct lws *wsi);

/* libwebsockets' callback of every connection (http.c). */
int msrt_web_callback(struct lws *wsi, enum lws_callback_reasons reason,
                      void *user, void *in, size_t len);

/* Run the listener's own loop until it settles and close it (web.c). */
void msrt_web_drain(msrt_web *w);

#endif
