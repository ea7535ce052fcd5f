/* What a listener's connections share (nats/conn.h): the flush wake-up,
 * the keep-alive sweep, the limits, the counters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/handle.h"
#include "nats/internal.h"

static void defaults(msrt_nats_opts *o) {
  if (!o->max_payload) o->max_payload = MSRT_NATS_MAX_PAYLOAD_DEFAULT;
  if (!o->max_control) o->max_control = MSRT_NATS_MAX_CONTROL_DEFAULT;
  if (!o->max_pending) o->max_pending = 64u * 1024 * 1024;
  if (!o->write_deadline_ms) o->write_deadline_ms = 10000;
  if (!o->ping_interval_ms) o->ping_interval_ms = 120000;
  if (o->max_pings_out <= 0) o->max_pings_out = 2;
}

/* The sweep runs often enough for the write deadline and the keep-alive:
 * a quarter of the shorter, within 10 ms .. 1 s. */
static uint64_t sweep_ms(const msrt_nats_opts *o) {
  uint64_t p = o->write_deadline_ms;
  if (o->ping_interval_ms < p) p = o->ping_interval_ms;
  p /= 4;
  return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

void msrt_nats_server_flush(msrt_nats_server *s) {
  for (;;) {
    pthread_mutex_lock(&s->mu);
    msrt_nats_conn **list = s->dirty;
    size_t n = s->ndirty;
    s->dirty = NULL, s->ndirty = s->capdirty = 0;
    pthread_mutex_unlock(&s->mu);
    if (!n) break;
    for (size_t i = 0; i < n; i++) {
      msrt_nats_conn_flush(list[i]);
      msrt_nats_conn_unref(list[i]);
    }
    free(list);
  }
}

static void on_wake(uv_async_t *h) { msrt_nats_server_flush(h->data); }

static void on_sweep(uv_timer_t *h) {
  msrt_nats_server *s = h->data;
  uint64_t now = msrt_now_ns();
  /* a sweep may close c (it leaves the list, its memory stays until its
   * transport releases it), never another */
  for (msrt_nats_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    msrt_nats_conn_sweep(c, now);
  }
}

msrt_nats_server *msrt_nats_server_new(uv_loop_t *loop, msrt_bus *bus,
                                       const msrt_nats_opts *opts,
                                       msrt_error *err) {
  msrt_nats_server *s = calloc(1, sizeof *s);
  if (!s) {
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  s->magic = MSRT_HANDLE_MAGIC;
  s->loop = loop, s->bus = bus;
  if (opts) s->opts = *opts;
  defaults(&s->opts);
  atomic_init(&s->max_pending, s->opts.max_pending);
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->mu, NULL);
  snprintf(s->server_id, sizeof s->server_id, "MSRT%016llx",
           (unsigned long long)msrt_now_ns());
  int rc = uv_async_init(loop, &s->wake, on_wake);
  if (rc == 0) {
    s->handles_open++;
    rc = uv_timer_init(loop, &s->sweep);
  }
  if (rc != 0) {
    msrt_error_set(err, MSRT_E_INTERNAL, "libuv: %s", uv_strerror(rc));
    if (s->handles_open) {
      s->wake.data = s;
      msrt_nats_server_close(s);
    } else {
      free(s);
    }
    return NULL;
  }
  s->handles_open++;
  s->wake.data = s->sweep.data = s;
  uv_unref((uv_handle_t *)&s->wake);
  uv_timer_start(&s->sweep, on_sweep, sweep_ms(&s->opts),
                 sweep_ms(&s->opts));
  uv_unref((uv_handle_t *)&s->sweep);
  return s;
}

void msrt_nats_server_tune(msrt_nats_server *s, const msrt_nats_opts *opts) {
  s->opts = *opts;
  defaults(&s->opts);
  atomic_store(&s->max_pending, s->opts.max_pending);
  uv_timer_set_repeat(&s->sweep, sweep_ms(&s->opts));
}

void msrt_nats_server_set_auth(msrt_nats_server *s, const msrt_nats_auth *a) {
  s->has_auth = a != NULL;
  if (a) s->auth = *a;
  else memset(&s->auth, 0, sizeof s->auth);
}

void msrt_nats_server_stats(msrt_nats_server *s, msrt_nats_stats *out) {
  *out = s->stats;
  out->out_msgs = atomic_load(&s->out_msgs);
  out->out_bytes = atomic_load(&s->out_bytes);
}

void msrt_nats_server_mark(msrt_nats_server *s, msrt_nats_conn *c) {
  msrt_nats_conn_ref(c);
  pthread_mutex_lock(&s->mu);
  if (s->ndirty == s->capdirty) {
    size_t cap = s->capdirty ? s->capdirty * 2 : 16;
    msrt_nats_conn **d = realloc(s->dirty, cap * sizeof *d);
    if (!d) { /* the flush waits for the next delivery or sweep */
      pthread_mutex_unlock(&s->mu);
      c->dirty = false;
      msrt_nats_conn_unref(c);
      return;
    }
    s->dirty = d, s->capdirty = cap;
  }
  s->dirty[s->ndirty++] = c;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->wake);
}

void msrt_nats_announce(msrt_nats_server *s, const char *subject,
                        const char *text) {
  msrt_sbuf p = {0};
  msrt_lua_put_string(&p, text, strlen(text));
  msrt_envelope *e =
      p.oom ? NULL
            : msrt_bus_make(s->bus, subject, strlen(subject), NULL, 0, NULL,
                            0, p.p, p.len, MSRT_PRIORITY_DEFAULT, 0, NULL);
  size_t delivered;
  if (e) msrt_bus_publish(s->bus, e, &delivered, NULL, NULL);
  msrt_env_unref(e);
  msrt_sbuf_free(&p);
}

static void free_server(msrt_nats_server *s) {
  pthread_mutex_destroy(&s->mu);
  free(s->dirty);
  free(s);
}

void msrt_nats_server_unref(msrt_nats_server *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1) free_server(s);
}

static void on_closed(uv_handle_t *h) {
  msrt_nats_server *s = h->data;
  if (--s->handles_open == 0) msrt_nats_server_unref(s);
}

void msrt_nats_server_close(msrt_nats_server *s) {
  s->closing = true;
  while (s->conns) msrt_nats_conn_close(s->conns, NULL);
  msrt_nats_server_flush(s); /* give back the dirty list's references */
  if (s->handles_open >= 1) uv_close((uv_handle_t *)&s->wake, on_closed);
  if (s->handles_open >= 2) uv_close((uv_handle_t *)&s->sweep, on_closed);
}
