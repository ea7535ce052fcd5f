/* The web listener (web.h): msrt's listening socket on the hub loop,
 * libwebsockets on a loop of its own that the hub drives. */
#include "web/web.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/handle.h"
#include "web/internal.h"

/* The hub's three handles of a listener: its own loop's backend
 * descriptor, its own loop's next timer, the listening socket. */
enum { HUB_HANDLES = 3 };

static void drive(msrt_web *w);
static void finish_close(msrt_web *w);
static void destroy_lws(msrt_web *w);

static void on_backend(uv_poll_t *p, int status, int events) {
  (void)status, (void)events;
  drive(p->data);
}

static void on_timer(uv_timer_t *t) { drive(t->data); }

/* Run what is ready on the listener's loop, without waiting, then arm the
 * hub timer for its next timeout (libuv's documented use of
 * uv_backend_fd with UV_RUN_NOWAIT). */
static void drive(msrt_web *w) {
  if (w->closing) return;
  w->driving = 1;
  int rounds = 0;
  do {
    w->kicked = 0;
    uv_run(&w->own, UV_RUN_NOWAIT);
  } while (w->kicked && !w->closing && ++rounds < 8);
  w->driving = 0;
  if (w->closing) { finish_close(w); return; }
  /* still kicked after 8 rounds: the hub's other work first, then more */
  int ms = w->kicked ? 0 : uv_backend_timeout(&w->own);
  if (ms >= 0) uv_timer_start(&w->timer, on_timer, (uint64_t)ms, 0);
  else uv_timer_stop(&w->timer);
}

/* Accept what is waiting (at most 64 a turn, so a flood of connections
 * does not hold the hub): over the cap closed at once, else handed to
 * libwebsockets with the read deadline. */
static void on_accept(uv_poll_t *p, int status, int events) {
  (void)status, (void)events;
  msrt_web *w = p->data;
  for (int i = 0; i < 64 && !w->closing; i++) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break; /* EAGAIN, or a client that gave up (ECONNABORTED) */
    if (w->open >= w->cfg.max_conns) {
      close(fd);
      w->refused++;
      continue;
    }
    if (w->cfg.nodelay) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct lws *wsi = lws_adopt_socket_vhost(w->vh, fd); /* closes fd on failure */
    if (!wsi) continue;
    w->accepted++;
    /* libwebsockets 4.1 exports timeouts in whole seconds only */
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)((w->cfg.read_timeout_ms + 999) / 1000));
  }
  drive(w);
}

/* A listening socket of our own: the kernel's errors, the profile's
 * backlog. -> fd | -1 with err set */
static int listen_on(msrt_web *w, msrt_error *err) {
  union { struct sockaddr_in v4; struct sockaddr_in6 v6; struct sockaddr sa; } a;
  memset(&a, 0, sizeof a);
  socklen_t len;
  if (inet_pton(AF_INET, w->cfg.ip, &a.v4.sin_addr) == 1) {
    a.v4.sin_family = AF_INET, a.v4.sin_port = htons((uint16_t)w->cfg.port);
    len = sizeof a.v4;
  } else if (inet_pton(AF_INET6, w->cfg.ip, &a.v6.sin6_addr) == 1) {
    a.v6.sin6_family = AF_INET6, a.v6.sin6_port = htons((uint16_t)w->cfg.port);
    len = sizeof a.v6;
  } else {
    msrt_error_set(err, MSRT_E_INVALID_ARG, "'%s' is not an IP address", w->cfg.ip);
    return -1;
  }
  const char *fmt = a.sa.sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d";
  char where[80];
  snprintf(where, sizeof where, fmt, w->cfg.ip, w->cfg.port);
  int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd >= 0 && a.sa.sa_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (fd < 0 || bind(fd, &a.sa, len) < 0 || listen(fd, w->cfg.backlog) < 0 ||
      getsockname(fd, &a.sa, &len) < 0) {
    char why[128];
    snprintf(why, sizeof why, "%s", strerror(errno));
    why[0] = (char)tolower((unsigned char)why[0]); /* as libuv words it */
    if (fd >= 0) close(fd);
    msrt_error_set(err, MSRT_E_NETWORK, "cannot listen on %s: %s", where, why);
    return -1;
  }
  w->port = ntohs(a.sa.sa_family == AF_INET6 ? a.v6.sin6_port : a.v4.sin_port);
  return fd;
}

/* rx_buffer_size: libwebsockets gives every WebSocket connection a
 * receive buffer of this many bytes (4 KiB when 0) and hands a frame's
 * payload over in pieces of at most that; a NATS connection takes bytes
 * in any split, so a small one costs only more callbacks for large frames
 * and saves 3 KiB per connection (docs/performance.md).
 * tx_packet_size: the most one send may carry (when 0, rx_buffer_size);
 * a whole frame, so that a frame is not cut into pieces libwebsockets
 * must keep a copy of. */
static struct lws_protocols protocols[] = {
    {"http", msrt_web_callback, sizeof(msrt_web_session), MSRT_WEB_RX, 0,
     NULL, MSRT_WEB_FRAME + 16},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* libwebsockets on w->own, with no listener of its own (sockets are
 * adopted) and no log lines of its own (errors come back as err). */
static int start_lws(msrt_web *w, msrt_error *err) {
  struct lws_context_creation_info info;
  void *loops[1] = {&w->own};
  memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.foreign_loops = loops;
  info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  info.protocols = protocols;
  info.user = w;
  info.max_http_header_data = (unsigned short)w->cfg.header_max;
  info.keepalive_timeout = (int)((w->cfg.idle_timeout_ms + 999) / 1000);
  info.timeout_secs = info.keepalive_timeout;
  info.timeout_secs_ah_idle = (w->cfg.read_timeout_ms + 999) / 1000;
  lws_set_log_level(0, NULL);
  w->ctx = lws_create_context(&info);
  if (w->ctx) w->vh = lws_create_vhost(w->ctx, &info);
  if (!w->vh) {
    msrt_error_set(err, MSRT_E_INTERNAL, "libwebsockets did not start");
    return -1;
  }
  return 0;
}

static int check(const msrt_web_config *cfg, msrt_error *err) {
  if (!cfg->ip || cfg->port < 0 || cfg->port > 65535 || cfg->backlog < 1 ||
      cfg->max_conns < 1 || cfg->read_timeout_ms < 1 || cfg->idle_timeout_ms < 1 ||
      cfg->header_max < 256 || cfg->header_max > 65535) {
    msrt_error_set(err, MSRT_E_INVALID_ARG,
                   "web listener: an address, a port 0..65535, backlog, max "
                   "and timeouts >= 1, header_max 256..65535 are needed");
    return -1;
  }
  if (cfg->exchange && (!cfg->exchange_path || cfg->exchange_path[0] != '/' ||
                        cfg->body_max < 1 || strlen(cfg->exchange_path) >= 1024 ||
                        (cfg->exchange_header && strlen(cfg->exchange_header) > 60))) {
    msrt_error_set(err, MSRT_E_INVALID_ARG,
                   "web listener: an exchange needs a path \"/...\", body_max >= 1 "
                   "and a header name of at most 60 bytes");
    return -1;
  }
  for (int i = 0; i < MSRT_WEB_MOUNTS && cfg->mounts[i].prefix; i++) {
    size_t n = strlen(cfg->mounts[i].prefix);
    if (!cfg->mounts[i].dir || cfg->mounts[i].prefix[0] != '/' ||
        cfg->mounts[i].prefix[n - 1] != '/') {
      msrt_error_set(err, MSRT_E_INVALID_ARG,
                     "web listener: a mount is a prefix \"/.../\" and a directory");
      return -1;
    }
  }
  return 0;
}

/* The configuration with its strings copied into one block. */
static int copy_config(msrt_web *w, const msrt_web_config *cfg) {
  w->cfg = *cfg;
  size_t n = strlen(cfg->ip) + 1;
  if (cfg->exchange_path) n += strlen(cfg->exchange_path) + 1;
  if (cfg->exchange_header) n += strlen(cfg->exchange_header) + 1;
  for (int i = 0; i < MSRT_WEB_MOUNTS && cfg->mounts[i].prefix; i++)
    n += strlen(cfg->mounts[i].prefix) + strlen(cfg->mounts[i].dir) + 2;
  char *p = w->strings = malloc(n);
  if (!p) return -1;
#define COPY(field) (field = strcpy(p, field), p += strlen(p) + 1)
  COPY(w->cfg.ip);
  if (w->cfg.exchange_path) COPY(w->cfg.exchange_path);
  if (w->cfg.exchange_header) COPY(w->cfg.exchange_header);
  for (int i = 0; i < MSRT_WEB_MOUNTS && w->cfg.mounts[i].prefix; i++) {
    COPY(w->cfg.mounts[i].prefix);
    COPY(w->cfg.mounts[i].dir);
  }
#undef COPY
  return 0;
}

static int hub_handles(msrt_web *w, uv_loop_t *hub) {
  if (uv_poll_init(hub, &w->backend, uv_backend_fd(&w->own))) return -1;
  uv_timer_init(hub, &w->timer);
  if (uv_poll_init_socket(hub, &w->listener, w->fd)) {
    uv_close((uv_handle_t *)&w->timer, NULL);
    uv_close((uv_handle_t *)&w->backend, NULL);
    return -1;
  }
  uv_handle_t *hs[HUB_HANDLES] = {(uv_handle_t *)&w->backend, (uv_handle_t *)&w->timer,
                                  (uv_handle_t *)&w->listener};
  for (int i = 0; i < HUB_HANDLES; i++) {
    hs[i]->data = w; /* w starts with MSRT_HANDLE_MAGIC: not luv's */
    uv_unref(hs[i]); /* a listener never keeps the host alive */
  }
  w->hub_open = HUB_HANDLES;
  uv_poll_start(&w->backend, UV_READABLE, on_backend);
  uv_poll_start(&w->listener, UV_READABLE, on_accept);
  return 0;
}

msrt_web *msrt_web_listen(uv_loop_t *hub, const msrt_web_config *cfg, msrt_error *err) {
  if (check(cfg, err)) return NULL;
  msrt_web *w = calloc(1, sizeof *w);
  if (!w || copy_config(w, cfg)) {
    free(w);
    msrt_error_set(err, MSRT_E_NOMEM, "web listener: out of memory");
    return NULL;
  }
  w->magic = MSRT_HANDLE_MAGIC;
  w->fd = -1;
  if (cfg->nats && !(w->scratch = malloc(LWS_PRE + MSRT_WEB_FRAME))) {
    free(w->scratch), free(w->strings), free(w);
    msrt_error_set(err, MSRT_E_NOMEM, "web listener: out of memory");
    return NULL;
  }
  if (uv_loop_init(&w->own)) {
    free(w->scratch), free(w->strings), free(w);
    msrt_error_set(err, MSRT_E_INTERNAL, "web listener: no event loop");
    return NULL;
  }
  if ((w->fd = listen_on(w, err)) < 0 || start_lws(w, err)) goto fail;
  if (hub_handles(w, hub)) {
    msrt_error_set(err, MSRT_E_INTERNAL, "web listener: cannot poll on the hub loop");
    goto fail;
  }
  drive(w);
  return w;
fail:
  destroy_lws(w);
  if (w->fd >= 0) close(w->fd);
  msrt_web_drain(w);
  free(w->scratch), free(w->strings), free(w);
  return NULL;
}

void msrt_web_want_write(struct lws *wsi) {
  msrt_web *w = lws_context_user(lws_get_context(wsi));
  lws_callback_on_writable(wsi);
  w->kicked = 1;
  if (!w->driving && !w->closing) uv_timer_start(&w->timer, on_timer, 0, 0);
}

int msrt_web_port(const msrt_web *w) { return w->port; }
int msrt_web_open(const msrt_web *w) { return w->open; }
unsigned long msrt_web_accepted(const msrt_web *w) { return w->accepted; }
unsigned long msrt_web_refused(const msrt_web *w) { return w->refused; }

/* Run the listener's own loop until libwebsockets' handles have closed,
 * then close it; one that does not settle is left (never a crash). */
void msrt_web_drain(msrt_web *w) {
  for (int i = 0; i < 1000 && uv_run(&w->own, UV_RUN_NOWAIT); i++) {
  }
  uv_loop_close(&w->own);
}

static void on_hub_closed(uv_handle_t *h) {
  msrt_web *w = h->data;
  if (--w->hub_open == 0) {
    free(w->scratch);
    free(w->strings);
    free(w);
  }
}

/* libwebsockets 4.1 on a foreign loop ends a context in two calls: the
 * first closes its handles, the second (once the loop ran their close
 * callbacks) frees what is left. */
static void destroy_lws(msrt_web *w) {
  if (!w->ctx) return;
  lws_context_destroy(w->ctx);
  for (int i = 0; i < 1000 && uv_run(&w->own, UV_RUN_NOWAIT); i++) {
  }
  lws_context_destroy(w->ctx);
  w->ctx = NULL;
}

static void finish_close(msrt_web *w) {
  destroy_lws(w);
  msrt_web_drain(w);
  uv_handle_t *hs[HUB_HANDLES] = {(uv_handle_t *)&w->backend, (uv_handle_t *)&w->timer,
                                  (uv_handle_t *)&w->listener};
  int mine = 0;
  for (int i = 0; i < HUB_HANDLES; i++) {
    /* one the hub closed already (msrt_hub_close_all at exit, which runs
     * the loop until they are closed before anything else runs) is done */
    if (uv_is_closing(hs[i])) w->hub_open--;
    else uv_close(hs[i], on_hub_closed), mine++;
  }
  close(w->fd);
  if (!mine) {
    free(w->scratch);
    free(w->strings);
    free(w);
  }
}

void msrt_web_close(msrt_web *w) {
  if (!w || w->closing) return;
  w->closing = 1;
  if (!w->driving) finish_close(w);
}
