/* The TCP listener and transport (nats/listen.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/handle.h"
#include "nats/internal.h"
#include "nats/listen.h"

#define READ_BUF (64 * 1024)

struct msrt_nats_listener {
  unsigned magic; /* MSRT_HANDLE_MAGIC (hub/hub.h: the handle's data) */
  uv_tcp_t tcp;
  msrt_nats_server *srv;
  msrt_nats_listen_opts opts;
  int port;
  char *rbuf; /* the read buffer every connection of this listener uses:
                one read at a time on the hub, free again once the feed
                returns */
  unsigned live; /* connections still open, which read into rbuf */
  bool closing, closed; /* close asked; the handle's close is done */
};

typedef struct {
  unsigned magic;
  uv_tcp_t tcp;
  msrt_nats_listener *l;
  msrt_nats_conn *conn;
  bool closing;
} tcp_peer;

typedef struct {
  uv_write_t req;
  char data[];
} wreq;

static void free_listener(msrt_nats_listener *l) {
  free(l->rbuf);
  free(l);
}

/* ---- the transport ------------------------------------------------------ */

static void on_written(uv_write_t *req, int status) {
  tcp_peer *p = req->handle->data;
  free(req);
  if (status == 0 && !p->closing && p->conn) msrt_nats_conn_writable(p->conn);
}

static msrt_code t_write(void *t, const char *buf, size_t len) {
  tcp_peer *p = t;
  uv_stream_t *st = (uv_stream_t *)&p->tcp;
  if (uv_stream_get_write_queue_size(st) == 0) {
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int n = uv_try_write(st, &b, 1);
    if (n == (int)len) return MSRT_E_OK;
    if (n < 0 && n != UV_EAGAIN) return MSRT_E_CLOSED;
    if (n > 0) buf += n, len -= (size_t)n;
  }
  wreq *w = malloc(sizeof *w + len);
  if (!w) return MSRT_E_CLOSED;
  memcpy(w->data, buf, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, st, &b, 1, on_written) != 0) {
    free(w);
    return MSRT_E_CLOSED;
  }
  return MSRT_E_OK;
}

static size_t t_queued(void *t) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&((tcp_peer *)t)->tcp);
}

static void on_closed(uv_handle_t *h) {
  tcp_peer *p = h->data;
  msrt_nats_listener *l = p->l;
  if (p->conn) msrt_nats_conn_release(p->conn);
  free(p);
  if (--l->live == 0 && l->closed) free_listener(l);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  uv_close((uv_handle_t *)req->handle, on_closed);
  free(req);
}

static void t_close(void *t) {
  tcp_peer *p = t;
  if (p->closing) return;
  p->closing = true;
  uv_read_stop((uv_stream_t *)&p->tcp);
  uv_shutdown_t *req = NULL;
  /* a peer that reads nothing would hold the shutdown forever */
  if (t_queued(p) < 64 * 1024) req = malloc(sizeof *req);
  if (req && uv_shutdown(req, (uv_stream_t *)&p->tcp, on_shutdown) == 0)
    return;
  free(req);
  uv_close((uv_handle_t *)&p->tcp, on_closed);
}

static void t_peer(void *t, char *buf, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&((tcp_peer *)t)->tcp, (struct sockaddr *)&ss,
                         &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, host, sizeof host);
      port = ntohs(a->sin6_port);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      uv_ip4_name(a, host, sizeof host);
      port = ntohs(a->sin_port);
    }
  }
  snprintf(buf, cap, "%s:%d", host, port);
}

static const msrt_nats_transport tcp_transport = {t_write, t_queued, t_close,
                                                  t_peer};

/* ---- reading and accepting ---------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  *buf = uv_buf_init(((tcp_peer *)h->data)->l->rbuf, READ_BUF);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  tcp_peer *p = st->data;
  if (n > 0) msrt_nats_conn_feed(p->conn, buf->base, (size_t)n);
  else if (n < 0) msrt_nats_conn_close(p->conn, NULL); /* EOF, error */
}

static void on_connection(uv_stream_t *server, int status) {
  msrt_nats_listener *l = server->data;
  if (status != 0 || l->closing) return;
  tcp_peer *p = calloc(1, sizeof *p);
  if (!p) return;
  p->magic = MSRT_HANDLE_MAGIC;
  p->l = l;
  uv_tcp_init(server->loop, &p->tcp);
  p->tcp.data = p;
  l->live++;
  if (uv_accept(server, (uv_stream_t *)&p->tcp) != 0) {
    uv_close((uv_handle_t *)&p->tcp, on_closed);
    return;
  }
  if (l->opts.nodelay) uv_tcp_nodelay(&p->tcp, 1);
  p->conn = msrt_nats_conn_new(l->srv, &tcp_transport, p);
  if (!p->conn) {
    t_close(p);
    return;
  }
  if (!p->closing) uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
}

/* ---- the listener -------------------------------------------------------- */

static int parse_addr(const char *addr, struct sockaddr_storage *ss) {
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr) return -1;
  size_t hl = (size_t)(colon - addr);
  if (addr[0] == '[') {
    if (hl < 3 || addr[hl - 1] != ']') return -1;
    addr++, hl -= 2;
  }
  if (hl >= sizeof host) return -1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535) return -1;
  if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return -1;
}

static bool loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) ==
           127;
  const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
  return IN6_IS_ADDR_LOOPBACK(a);
}

static void on_listener_closed(uv_handle_t *h) {
  msrt_nats_listener *l = h->data;
  l->closed = true;
  if (l->live == 0) free_listener(l);
}

msrt_nats_listener *msrt_nats_listen(msrt_nats_server *s, const char *addr,
                                     const msrt_nats_listen_opts *o,
                                     msrt_error *err) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (parse_addr(addr, &ss) != 0) {
    msrt_error_set(err, MSRT_E_INVALID_ARG,
                   "listen address \"%s\": expected HOST:PORT or "
                   "[V6HOST]:PORT with a numeric host", addr);
    return NULL;
  }
  if (!loopback(&ss) && !s->has_auth) {
    msrt_error_set(err, MSRT_E_PERMISSION,
                   "listen address \"%s\" is not loopback: give the "
                   "listener an auth policy first (README \"Authorisation\")",
                   addr);
    return NULL;
  }
  msrt_nats_listener *l = calloc(1, sizeof *l);
  if (l) l->rbuf = malloc(READ_BUF);
  if (!l || !l->rbuf) {
    if (l) free(l);
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  l->magic = MSRT_HANDLE_MAGIC;
  l->srv = s;
  l->opts = o ? *o : (msrt_nats_listen_opts){0};
  if (l->opts.backlog <= 0) l->opts.backlog = 511;
  uv_tcp_init(s->loop, &l->tcp);
  l->tcp.data = l;
  int rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&l->tcp, l->opts.backlog, on_connection);
  if (rc != 0) {
    msrt_error_set(err, MSRT_E_NETWORK, "listen on \"%s\": %s", addr,
                   uv_strerror(rc));
    l->closing = true;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    return NULL;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen);
  l->port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&bound)->sin6_port
                      : ((struct sockaddr_in *)&bound)->sin_port);
  return l;
}

int msrt_nats_listener_port(const msrt_nats_listener *l) { return l->port; }

void msrt_nats_listener_tune(msrt_nats_listener *l,
                             const msrt_nats_listen_opts *o) {
  l->opts.nodelay = o->nodelay;
  if (o->backlog > 0) l->opts.backlog = o->backlog;
}

void msrt_nats_listener_close(msrt_nats_listener *l) {
  if (l->closing) return;
  l->closing = true;
  uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}
