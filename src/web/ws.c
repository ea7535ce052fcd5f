/* NATS clients over WebSocket (web.h): each upgraded connection carries
 * one NATS client connection (nats/conn.h), the framing nats.ws uses:
 * every frame's payload is protocol bytes, in order, in any split; what
 * the connection writes goes out as binary frames. */
#include <stdlib.h>
#include <string.h>

#include "web/internal.h"

/* The transport (nats/conn.h msrt_nats_transport): t is the session. */

static msrt_code t_write(void *t, const char *buf, size_t len) {
  msrt_web_session *s = t;
  if (s->gone) return MSRT_E_CLOSED;
  if (s->out_off && s->out_off == s->out_len) s->out_off = s->out_len = 0;
  if (s->out_len + len > s->out_cap) {
    size_t cap = s->out_cap ? s->out_cap : 1024;
    while (cap < s->out_len + len) cap *= 2;
    char *p = realloc(s->out, cap);
    if (!p) return MSRT_E_CLOSED;
    s->out = p, s->out_cap = cap;
  }
  memcpy(s->out + s->out_len, buf, len);
  s->out_len += len;
  msrt_web_want_write(s->wsi);
  return MSRT_E_OK;
}

static size_t t_queued(void *t) {
  msrt_web_session *s = t;
  return s->out_len - s->out_off;
}

static void t_close(void *t) {
  msrt_web_session *s = t;
  if (s->gone || s->ending) return;
  s->ending = 1;
  msrt_web_want_write(s->wsi);
}

static void t_peer(void *t, char *buf, size_t cap) {
  msrt_web_session *s = t;
  if (!s->gone) lws_get_peer_simple(s->wsi, buf, cap);
  else snprintf(buf, cap, "websocket");
}

static const msrt_nats_transport transport = {t_write, t_queued, t_close, t_peer};

/* One frame of what is waiting; the rest at the next writable callback
 * (libwebsockets gives one only once the frame before is on the wire).
 * -> 0 | -1 to close */
static int send_more(msrt_web_session *s) {
  size_t n = s->out_len - s->out_off;
  if (n == 0) {
    /* nothing is kept while idle: 10,000 quiet clients hold no buffer */
    free(s->out);
    s->out = NULL;
    s->out_len = s->out_off = s->out_cap = 0;
    if (s->ending) return -1;
    if (s->conn) msrt_nats_conn_writable(s->conn);
    return 0;
  }
  if (n > MSRT_WEB_FRAME) n = MSRT_WEB_FRAME;
  unsigned char *frame = s->web->scratch + LWS_PRE;
  memcpy(frame, s->out + s->out_off, n);
  if (lws_write(s->wsi, frame, n, LWS_WRITE_BINARY) < (int)n) return -1;
  s->out_off += n;
  msrt_web_want_write(s->wsi);
  return 0;
}

static int established(struct lws *wsi, msrt_web_session *s) {
  msrt_web *w = lws_context_user(lws_get_context(wsi));
  memset(s, 0, sizeof *s);
  s->wsi = wsi, s->web = w;
  lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0); /* NATS' PINGs keep it now */
  s->conn = msrt_nats_conn_new(w->cfg.nats, &transport, s);
  return s->conn ? 0 : -1;
}

static void closed(msrt_web_session *s) {
  if (s->gone) return;
  s->gone = 1;
  if (s->conn) {
    msrt_nats_conn_close(s->conn, NULL);
    msrt_nats_conn_release(s->conn);
    s->conn = NULL;
  }
  free(s->out);
  s->out = NULL;
}

int msrt_web_ws(struct lws *wsi, enum lws_callback_reasons reason,
                msrt_web_session *s, void *in, size_t len, int *handled) {
  *handled = 1;
  switch (reason) {
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
    msrt_web *w = lws_context_user(lws_get_context(wsi));
    return w->cfg.nats ? 0 : 1; /* WebSocket only where NATS is served */
  }
  case LWS_CALLBACK_ESTABLISHED:
    return established(wsi, s);
  case LWS_CALLBACK_RECEIVE:
    if (!s->conn || s->ending) return 0;
    msrt_nats_conn_feed(s->conn, in, len); /* an error ends it: t_close */
    return 0;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return s->gone ? -1 : send_more(s);
  case LWS_CALLBACK_CLOSED:
    closed(s);
    return 0;
  default:
    *handled = 0;
    return 0;
  }
}
