/* Inside the web listener: the listener's fields, shared by web.c (the
 * socket, the loops) and http.c (what libwebsockets calls back). */
#ifndef MSRT_WEB_INTERNAL_H
#define MSRT_WEB_INTERNAL_H

#include <libwebsockets.h>

#include "web/web.h"

struct msrt_web {
  unsigned magic;           /* MSRT_HANDLE_MAGIC: the hub handles' data */
  uv_loop_t own;            /* libwebsockets' loop, driven from the hub */
  uv_poll_t backend;        /* hub: own's backend descriptor */
  uv_timer_t timer;         /* hub: own's next timeout */
  uv_poll_t listener;       /* hub: the listening socket */
  int fd, port, hub_open;
  int driving, closing;
  struct lws_context *ctx;
  struct lws_vhost *vh;
  msrt_web_config cfg;      /* strings point into `strings` */
  char *strings;
  int open;                 /* connections libwebsockets holds */
  unsigned long accepted, refused;
};

/* Per connection (libwebsockets' per-session data, zeroed at its start). */
typedef struct msrt_web_session {
  char *body;               /* an answer being written, or NULL */
  size_t len, off;
  int head;                 /* a HEAD request: headers only */
  int done;                 /* all written: close at the next writable */
} msrt_web_session;

/* libwebsockets' callback of every connection (http.c). */
int msrt_web_callback(struct lws *wsi, enum lws_callback_reasons reason,
                      void *user, void *in, size_t len);

/* Run the listener's own loop until it settles and close it (web.c). */
void msrt_web_drain(msrt_web *w);

#endif
