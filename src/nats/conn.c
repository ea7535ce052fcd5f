/* A client connection (nats/conn.h): life, writing and flushing. The
 * commands a client sends are handled in cmd.c. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "nats/auth.h"
#include "nats/internal.h"

void msrt_nats_conn_ref(msrt_nats_conn *c) { atomic_fetch_add(&c->refs, 1); }

void msrt_nats_conn_unref(msrt_nats_conn *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  msrt_nats_server *s = c->srv;
  msrt_nats_parser_free(&c->parser);
  msrt_nats_connect_free(&c->opts);
  msrt_sid_free(&c->subs);
  msrt_sbuf_free(&c->scratch);
  msrt_sbuf_free(&c->hscratch);
  msrt_sbuf_free(&c->wbuf);
  msrt_sbuf_free(&c->out);
  msrt_nats_resp_free(c);
  msrt_nats_deny_free(c);
  pthread_mutex_destroy(&c->mu);
  free(c);
  msrt_nats_server_unref(s);
}

void msrt_nats_conn_release(msrt_nats_conn *c) { msrt_nats_conn_unref(c); }

void msrt_nats_conn_send(msrt_nats_conn *c, const char *buf, size_t len) {
  pthread_mutex_lock(&c->mu);
  msrt_sbuf_put(&c->out, buf, len);
  if (!c->dirty) {
    c->dirty = true;
    msrt_nats_server_mark(c->srv, c);
  }
  pthread_mutex_unlock(&c->mu);
}

/* INFO: what nats-server says of itself that clients read (server_id,
 * version, proto, headers, max_payload, auth_required). */
static void send_info(msrt_nats_conn *c) {
  msrt_nats_server *s = c->srv;
  char info[512];
  int n = snprintf(info, sizeof info,
                   "INFO {\"server_id\":\"%s\",\"server_name\":\"msrt\","
                   "\"version\":\"2.9.0\",\"proto\":1,\"go\":\"msrt\","
                   "\"host\":\"0.0.0.0\",\"port\":0,\"headers\":true,"
                   "\"max_payload\":%zu,\"client_id\":%llu%s}\r\n",
                   s->server_id, s->opts.max_payload,
                   (unsigned long long)c->id,
                   s->has_auth && s->auth.required ? ",\"auth_required\":true"
                                                   : "");
  msrt_nats_conn_send(c, info, (size_t)n);
}

static void link_conn(msrt_nats_server *s, msrt_nats_conn *c) {
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->stats.connections++;
}

static void unlink_conn(msrt_nats_server *s, msrt_nats_conn *c) {
  if (c->prev) c->prev->next = c->next;
  else if (s->conns == c) s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->stats.connections--;
}

msrt_nats_conn *msrt_nats_conn_new(msrt_nats_server *s,
                                   const msrt_nats_transport *tp, void *t) {
  msrt_nats_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  atomic_init(&c->refs, 1);
  atomic_init(&c->tp_queued, 0);
  pthread_mutex_init(&c->mu, NULL);
  c->srv = s;
  atomic_fetch_add(&s->refs, 1);
  c->tp = tp, c->t = t;
  c->id = ++s->next_id;
  c->last_ping_ns = msrt_now_ns();
  msrt_nats_parser_init(&c->parser, s->opts.max_control,
                        s->opts.max_payload);
  s->stats.accepted++;
  link_conn(s, c);
  if (s->closing ||
      (s->opts.max_conns && s->stats.connections > s->opts.max_conns)) {
    s->stats.refused++;
    msrt_nats_conn_close(c, MSRT_NATS_ERR_MAX_CONN);
    return c;
  }
  send_info(c);
  msrt_nats_conn_flush(c);
  return c;
}

/* Remove every subscription from the bus and the table. */
static void drop_subs(msrt_nats_conn *c) {
  sid_table *t = &c->subs;
  for (size_t i = 0; i < t->cap; i++) {
    nats_sub *sub = t->slot[i];
    if (!sub) continue;
    msrt_bus_unsubscribe(c->srv->bus, sub->bus_id);
    msrt_nats_sub_unref(sub);
  }
  msrt_sid_free(t);
}

void msrt_nats_conn_close(msrt_nats_conn *c, const char *err_text) {
  if (c->closed) return;
  if (err_text) {
    msrt_sbuf e = {0};
    msrt_nats_put_err(&e, err_text);
    msrt_nats_conn_send(c, e.p, e.len);
    msrt_sbuf_free(&e);
    msrt_nats_conn_flush(c);
  }
  c->closed = true;
  pthread_mutex_lock(&c->mu);
  c->shut = true;
  msrt_sbuf_free(&c->out);
  pthread_mutex_unlock(&c->mu);
  drop_subs(c);
  msrt_nats_conn_set_perms(c, NULL);
  unlink_conn(c->srv, c);
  c->tp->close(c->t);
}

/* A slow consumer: counted, announced, ended (conn.h). */
static void slow_consumer(msrt_nats_conn *c) {
  char who[160], peer[96] = "";
  c->tp->peer(c->t, peer, sizeof peer);
  snprintf(who, sizeof who, "client %llu %s%s%s",
           (unsigned long long)c->id, peer, c->opts.name ? " " : "",
           c->opts.name ? c->opts.name : "");
  c->srv->stats.slow_consumers++;
  /* what was pending is given up, so the error can still be read */
  pthread_mutex_lock(&c->mu);
  msrt_sbuf_reset(&c->out);
  c->slow = false; /* handled: the close's own flush must not see it */
  pthread_mutex_unlock(&c->mu);
  msrt_nats_conn_close(c, MSRT_NATS_ERR_SLOW);
  msrt_nats_announce(c->srv, "msrt.nats.slow_consumer", who);
}

/* Remove the subscriptions that have taken their max_msgs. */
static void reap_subs(msrt_nats_conn *c) {
  sid_table *t = &c->subs;
  for (size_t i = 0; i < t->cap;) {
    nats_sub *sub = t->slot[i];
    long long max = sub ? atomic_load(&sub->max) : -1;
    if (!sub || max < 0 || atomic_load(&sub->count) < max) {
      i++;
      continue;
    }
    msrt_sid_del(t, sub); /* may move another entry into slot i */
    msrt_bus_unsubscribe(c->srv->bus, sub->bus_id);
    msrt_nats_sub_unref(sub);
  }
}

void msrt_nats_conn_flush(msrt_nats_conn *c) {
  if (c->closed) return;
  pthread_mutex_lock(&c->mu);
  msrt_sbuf tmp = c->out;
  c->out = c->wbuf;
  c->wbuf = tmp;
  c->dirty = false;
  bool slow = c->slow, reap = c->reap;
  c->reap = false;
  pthread_mutex_unlock(&c->mu);
  if (reap) reap_subs(c);
  if (slow) {
    msrt_sbuf_reset(&c->wbuf);
    slow_consumer(c);
    return;
  }
  if (c->wbuf.len) {
    msrt_code rc = c->tp->write(c->t, c->wbuf.p, c->wbuf.len);
    c->srv->stats.out_bytes += c->wbuf.len;
    /* the transport has the bytes: an idle connection keeps no buffer */
    msrt_sbuf_free(&c->wbuf);
    if (rc != MSRT_E_OK) {
      msrt_nats_conn_close(c, NULL);
      return;
    }
  }
  size_t q = c->tp->queued ? c->tp->queued(c->t) : 0;
  atomic_store_explicit(&c->tp_queued, q, memory_order_relaxed);
  if (!q) c->stall_since_ns = 0;
  else if (!c->stall_since_ns) c->stall_since_ns = msrt_now_ns();
}

void msrt_nats_conn_writable(msrt_nats_conn *c) {
  if (c->closed) return;
  size_t q = c->tp->queued ? c->tp->queued(c->t) : 0;
  atomic_store_explicit(&c->tp_queued, q, memory_order_relaxed);
  if (!q) c->stall_since_ns = 0;
}

/* Keep-alive (a PING every ping_interval_ms, Stale Connection past
 * max_pings_out unanswered) and the write deadline. */
void msrt_nats_conn_sweep(msrt_nats_conn *c, uint64_t now) {
  const msrt_nats_opts *o = &c->srv->opts;
  msrt_nats_conn_writable(c);
  if (c->stall_since_ns &&
      now - c->stall_since_ns > o->write_deadline_ms * 1000000ull) {
    slow_consumer(c);
    return;
  }
  if (o->ping_interval_ms == UINT64_MAX ||
      now - c->last_ping_ns < o->ping_interval_ms * 1000000ull)
    return;
  if (c->pings_out + 1 > o->max_pings_out) {
    msrt_nats_conn_close(c, MSRT_NATS_ERR_STALE);
    return;
  }
  c->pings_out++;
  c->last_ping_ns = now;
  msrt_nats_conn_send(c, "PING\r\n", 6);
}
