/* libnats' socket on the hub's loop (bridge/bridge.h "Threads"): an event
 * loop adapter of our own (natsOptions_SetEventLoop; libnats' libuv
 * adapter tags its handles with a pointer luv's walk would take for its
 * own, core/handle.h), and the imports taken on the hub right after each
 * read: no delivery thread between the socket and the bus. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "bridge/internal.h"
#include "core/handle.h"

/* One socket's poll handle: libnats makes a new socket on each reconnect
 * (a new attach), and a closing handle is freed by its close callback. */
typedef struct bpoll {
  unsigned magic; /* MSRT_HANDLE_MAGIC: the handle's data points here */
  uv_poll_t h;
  msrt_bridge_loop *l;
} bpoll;

struct msrt_bridge_loop {
  unsigned magic; /* MSRT_HANDLE_MAGIC: async's and retry's data */
  msrt_bridge *b;
  uv_loop_t *uv;
  pthread_t hub;
  uv_async_t async; /* a change libnats asked for on another thread */
  uv_timer_t retry; /* imports held by a full `block` subscriber */
  /* references: async and retry until each is closed, and each room
   * waker registered and not yet run or taken back (any thread): the
   * last one frees l */
  _Atomic int refs;
  /* what libnats asked for last (any thread, under mu) */
  pthread_mutex_t mu;
  bool shut; /* async is closing: a waker sends it nothing (under mu) */
  natsConnection *nc;
  int fd, gen, want; /* want: UV_READABLE | UV_WRITABLE */
  bool detached;
  /* what the hub made of it (hub only) */
  bpoll *cur;
  int cur_gen, polling;
  bool closing;
  unsigned since_write; /* hub publishes since the last look at libnats'
                           buffer (msrt_bridge_loop_published) */
  bool asap;            /* send_asap: a publish is written at once */
  _Atomic bool room;    /* a blocked import's subscriber made room */
};

static void poll_closed(uv_handle_t *h) { free(h->data); }

static void unref(msrt_bridge_loop *l) {
  if (atomic_fetch_sub(&l->refs, 1) != 1) return;
  pthread_mutex_destroy(&l->mu);
  free(l);
}

static void loop_closed(uv_handle_t *h) { unref(h->data); }

static void on_poll(uv_poll_t *h, int status, int events);

/* The poll handle in step with what libnats asked for (hub). A new
 * socket's handle replaces the old one, closed first: libnats may have
 * closed the old socket already and been given the same number again. */
static void apply(msrt_bridge_loop *l) {
  pthread_mutex_lock(&l->mu);
  int fd = l->fd, gen = l->gen, want = l->want;
  bool detached = l->detached;
  pthread_mutex_unlock(&l->mu);
  if (l->cur && (gen != l->cur_gen || detached)) {
    uv_close((uv_handle_t *)&l->cur->h, poll_closed);
    l->cur = NULL;
  }
  if (!l->cur && !detached && fd >= 0 && gen != l->cur_gen) {
    l->cur_gen = gen, l->polling = 0;
    bpoll *p = malloc(sizeof *p);
    if (p && uv_poll_init_socket(l->uv, &p->h, fd) == 0) {
      p->magic = MSRT_HANDLE_MAGIC, p->l = l, p->h.data = p;
      uv_unref((uv_handle_t *)&p->h); /* as libnats' threads: no hold */
      l->cur = p;
    } else {
      free(p); /* said by bridge:info()'s last_error: b->mu is not taken
                  here, under libnats' lock (the hook takes them the other
                  way round) */
      atomic_store(&l->b->unwatched, true);
    }
  }
  if (l->cur && want != l->polling) {
    if (want) uv_poll_start(&l->cur->h, want, on_poll);
    else uv_poll_stop(&l->cur->h);
    l->polling = want;
  }
  if (detached && !l->closing) { /* libnats' last call: the handles go */
    l->closing = true;
    pthread_mutex_lock(&l->mu);
    l->shut = true;
    pthread_mutex_unlock(&l->mu);
    uv_close((uv_handle_t *)&l->async, loop_closed);
    uv_close((uv_handle_t *)&l->retry, loop_closed);
  }
}

/* libnats calls the adapter with its connection's lock held, on the hub
 * (a read, a hub publish) or any other thread (its flusher, reconnect
 * and timer threads, a worker's publish): the hub applies a change at
 * once, another thread wakes it to. */
static void request(msrt_bridge_loop *l) {
  if (pthread_equal(pthread_self(), l->hub)) apply(l);
  else uv_async_send(&l->async);
}

static void on_async(uv_async_t *a) {
  msrt_bridge_loop *l = a->data;
  apply(l);
  if (atomic_exchange(&l->room, false)) msrt_bridge_retry(l->b);
}

/* The bus's waker for a blocked import: the thread that made room (or
 * closed the endpoint) wakes the hub to retry at once. It may run as the
 * bridge closes: its reference keeps l, and mu orders its send before
 * async's close (after it, the hub has nothing left to retry). */
static void on_room(void *ud) {
  msrt_bridge_loop *l = ud;
  atomic_store(&l->room, true);
  pthread_mutex_lock(&l->mu);
  if (!l->shut) uv_async_send(&l->async);
  pthread_mutex_unlock(&l->mu);
  unref(l);
}

static void room_unwait(void *ud) { unref(ud); }

void msrt_bridge_loop_wait(msrt_bridge_loop *l, msrt_bus_pending *pend) {
  atomic_fetch_add(&l->refs, 1); /* the waker's: it may fire at once */
  if (msrt_bus_pending_wait(pend, on_room, room_unwait, l) !=
      MSRT_WAIT_PENDING)
    on_room(l); /* room already: retry at the next loop turn */
}

static natsStatus ev_attach(void **ud, void *loop, natsConnection *nc,
                            natsSock fd) {
  msrt_bridge_loop *l = loop;
  pthread_mutex_lock(&l->mu);
  l->nc = nc, l->fd = (int)fd, l->gen++, l->want = UV_READABLE;
  pthread_mutex_unlock(&l->mu);
  *ud = l;
  request(l);
  return NATS_OK;
}

static natsStatus interest(void *ud, int ev, bool add) {
  msrt_bridge_loop *l = ud;
  pthread_mutex_lock(&l->mu);
  l->want = add ? l->want | ev : l->want & ~ev;
  pthread_mutex_unlock(&l->mu);
  request(l);
  return NATS_OK;
}

static natsStatus ev_read(void *ud, bool add) {
  return interest(ud, UV_READABLE, add);
}

static natsStatus ev_write(void *ud, bool add) {
  return interest(ud, UV_WRITABLE, add);
}

static natsStatus ev_detach(void *ud) {
  msrt_bridge_loop *l = ud;
  pthread_mutex_lock(&l->mu);
  l->detached = true, l->fd = -1, l->want = 0;
  pthread_mutex_unlock(&l->mu);
  request(l);
  return NATS_OK;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  bpoll *p = h->data;
  msrt_bridge_loop *l = p->l;
  if (p != l->cur) return; /* an old socket's last batch */
  natsConnection *nc = l->nc; /* set before the handle was */
  if (status < 0 || (events & UV_READABLE))
    natsConnection_ProcessReadEvent(nc);
  if ((events & UV_WRITABLE) && p == l->cur)
    natsConnection_ProcessWriteEvent(nc);
  msrt_bridge_pull(l->b);
}

static void on_retry(uv_timer_t *t) {
  msrt_bridge_loop *l = t->data;
  msrt_bridge_retry(l->b);
}

msrt_bridge_loop *msrt_bridge_loop_new(msrt_bridge *b, void *uv) {
  msrt_bridge_loop *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->magic = MSRT_HANDLE_MAGIC, l->b = b, l->uv = uv;
  l->hub = pthread_self(), l->fd = -1;
  if (uv_async_init(uv, &l->async, on_async) != 0) {
    free(l);
    return NULL;
  }
  uv_timer_init(uv, &l->retry);
  l->async.data = l->retry.data = l;
  uv_unref((uv_handle_t *)&l->async);
  uv_unref((uv_handle_t *)&l->retry);
  atomic_init(&l->refs, 2);
  pthread_mutex_init(&l->mu, NULL);
  return l;
}

void msrt_bridge_loop_abandon(msrt_bridge_loop *l) {
  ev_detach(l); /* never attached: the connection was never made */
}

natsStatus msrt_bridge_loop_options(msrt_bridge_loop *l, natsOptions *no,
                                    bool asap) {
  l->asap = asap;
  return natsOptions_SetEventLoop(no, l, ev_attach, ev_read, ev_write,
                                  ev_detach);
}

void msrt_bridge_loop_retry_in(msrt_bridge_loop *l, bool on) {
  if (on && !uv_is_active((uv_handle_t *)&l->retry))
    uv_timer_start(&l->retry, on_retry, 1, 1);
  else if (!on) uv_timer_stop(&l->retry);
}

/* How often (hub publishes) and from what size (bytes) a hub that
 * publishes without returning to its loop writes libnats' buffer itself:
 * about what libnats' own flusher writes at once (its 32 KiB buffer). */
#define WRITE_EVERY 256
#define WRITE_FROM (64 * 1024)

void msrt_bridge_loop_published(msrt_bridge_loop *l) {
  /* send_asap: libnats asked the loop to write (it only appends, on an
   * event loop); written now, on the publishing thread, rather than at
   * the hub's next loop turn, after whatever it does first (a request's
   * bookkeeping, the rest of a callback: 20-30 us a message at the
   * median, docs/performance.md), or after a wake-up of the hub for
   * another thread's publish. libnats' lock orders this write with the
   * hub's; a write the socket does not take whole is left to the loop. */
  if (l->asap) {
    if (natsConnection_Buffered(l->b->nc) > 0)
      natsConnection_ProcessWriteEvent(l->b->nc);
    return;
  }
  if (!pthread_equal(pthread_self(), l->hub) ||
      ++l->since_write < WRITE_EVERY)
    return;
  l->since_write = 0;
  if (natsConnection_Buffered(l->b->nc) >= WRITE_FROM)
    natsConnection_ProcessWriteEvent(l->b->nc);
}

void msrt_bridge_pump(msrt_bridge *b, int ms) {
  msrt_bridge_loop *l = b->loop;
  apply(l); /* what other threads asked while the loop is not running */
  pthread_mutex_lock(&l->mu);
  struct pollfd p = {l->fd, 0, 0};
  if (l->want & UV_READABLE) p.events |= POLLIN;
  if (l->want & UV_WRITABLE) p.events |= POLLOUT;
  natsConnection *nc = l->nc;
  pthread_mutex_unlock(&l->mu);
  if (p.fd < 0 || !p.events)
    nanosleep(&(struct timespec){0, (long)ms * 1000000}, NULL);
  else if (poll(&p, 1, ms) > 0) {
    if (p.revents & (POLLIN | POLLERR | POLLHUP))
      natsConnection_ProcessReadEvent(nc);
    if (p.revents & POLLOUT) natsConnection_ProcessWriteEvent(nc);
  }
  msrt_bridge_pull(b);
  msrt_bridge_retry(b);
}
