/* A client's subscription as an endpoint of the bus (class "nats"), and
 * the connection's sid table. A delivery writes MSG/HMSG into the
 * connection's pending buffer under its lock, from whichever thread
 * publishes, and queues a flush on the hub. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats/internal.h"

/* The bytes a client gets for a message's payload: a Lua string as its
 * bytes, anything else as JSON (into js). Returns 0, or -1 when the
 * payload cannot be written as JSON. */
static int payload_view(const msrt_envelope *e, msrt_sbuf *js,
                        const char **p, size_t *n) {
  if (!(e->flags & MSRT_ENV_PAYLOAD_BUFFER) || e->payload_len == 0) {
    *p = (const char *)e->payload, *n = e->payload_len;
    return 0;
  }
  if (msrt_lua_get_string(e->payload, e->payload_len, p, n)) return 0;
  if (e->payload_len == 1 && e->payload[0] == 0) { /* nil: no bytes */
    *p = "", *n = 0;
    return 0;
  }
  const char *why;
  if (msrt_lua_to_json(e->payload, e->payload_len, js, &why) != MSRT_E_OK)
    return -1;
  *p = js->p, *n = js->len;
  return 0;
}

static size_t pending(msrt_nats_conn *c) {
  return c->out.len + atomic_load_explicit(&c->tp_queued,
                                           memory_order_relaxed);
}

/* Write one message for subscription s into c->out (c->mu held). */
static void write_msg(msrt_nats_conn *c, nats_sub *s, const msrt_envelope *e,
                      const char *p, size_t n, const msrt_sbuf *hdr) {
  if (hdr->len)
    msrt_nats_put_hmsg(&c->out, e->subject, e->subject_len, s->sid,
                       s->sid_len, e->reply, e->reply ? e->reply_len : 0,
                       hdr->p, hdr->len, p, n);
  else
    msrt_nats_put_msg(&c->out, e->subject, e->subject_len, s->sid,
                      s->sid_len, e->reply, e->reply ? e->reply_len : 0, p,
                      n);
}

static msrt_push_outcome sub_push(void *ep, msrt_envelope *e,
                                  const msrt_evict_sink *evicted,
                                  msrt_bus *bus) {
  (void)evicted, (void)bus;
  nats_sub *s = ep;
  msrt_nats_conn *c = s->conn;
  long long max = atomic_load(&s->max);
  long long nth = atomic_fetch_add(&s->count, 1) + 1;
  if (max >= 0 && nth > max) return MSRT_PUSH_CLOSED;
  msrt_sbuf js = {0}, hdr = {0};
  const char *p;
  size_t n;
  if (payload_view(e, &js, &p, &n) != 0) {
    msrt_sbuf_free(&js);
    return MSRT_PUSH_FAILED;
  }
  msrt_push_outcome out = MSRT_PUSH_DELIVERED;
  pthread_mutex_lock(&c->mu);
  if (c->headers && e->headers_len &&
      msrt_nats_hdr_from_pairs(&hdr, (const char *)e->headers,
                               e->headers_len) != MSRT_E_OK)
    msrt_sbuf_reset(&hdr);
  size_t need = n + hdr.len + e->subject_len + s->sid_len + 64 +
                (e->reply ? e->reply_len : 0);
  if (c->shut) {
    out = MSRT_PUSH_CLOSED;
  } else if (pending(c) + need > atomic_load_explicit(&c->srv->max_pending,
                                            memory_order_relaxed)) {
    c->slow = true; /* the hub ends it: -ERR 'Slow Consumer' */
    out = MSRT_PUSH_DROPPED_NEWEST;
  } else {
    write_msg(c, s, e, p, n, &hdr);
    if (e->reply) msrt_nats_resp_note(c, e->reply, e->reply_len);
    if (c->out.oom) out = MSRT_PUSH_FAILED, c->slow = true;
    if (max >= 0 && nth == max) c->reap = true;
  }
  if (out != MSRT_PUSH_CLOSED && !c->dirty) {
    c->dirty = true;
    msrt_nats_server_mark(c->srv, c);
  }
  pthread_mutex_unlock(&c->mu);
  if (out == MSRT_PUSH_DELIVERED) {
    atomic_fetch_add_explicit(&c->srv->out_msgs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->srv->out_bytes, n, memory_order_relaxed);
  }
  msrt_sbuf_free(&js);
  msrt_sbuf_free(&hdr);
  return out;
}

_Thread_local msrt_nats_conn *msrt_nats_publishing;

/* A client's own publish when it said echo: false (only the hub, where
 * msrt_nats_publishing is set, reads no_echo), or a subject its deny list
 * refuses on a wildcard subscription (deny.c). */
static bool sub_declines(void *ep, const msrt_envelope *e) {
  nats_sub *s = ep;
  if (s->conn == msrt_nats_publishing && s->conn->no_echo) return true;
  return msrt_nats_sub_denies(s, e->subject, e->subject_len);
}

static void sub_ref(void *ep) {
  atomic_fetch_add(&((nats_sub *)ep)->refs, 1);
}

static void sub_unref(void *ep) { msrt_nats_sub_unref(ep); }

/* A client is never "full" in the mailbox sense: past max_pending it is
 * a slow consumer, and the copy is dropped (drop_newest). */
static msrt_overflow sub_policy(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_DROP_NEWEST;
}

static void sub_name(void *ep, char *buf, size_t cap) {
  nats_sub *s = ep;
  snprintf(buf, cap, "nats client %llu sid %.*s",
           (unsigned long long)s->conn->id, (int)s->sid_len, s->sid);
}

static const msrt_endpoint_class nats_class = {
    .class_name = "nats", .push = sub_push, .ref = sub_ref,
    .unref = sub_unref, .policy = sub_policy, .declines = sub_declines,
    .name = sub_name};

msrt_endpoint msrt_nats_ep(nats_sub *s) {
  return (msrt_endpoint){&nats_class, s};
}

nats_sub *msrt_nats_sub_new(msrt_nats_conn *c, const char *sid, size_t n,
                            const char *subject, size_t slen,
                            const char *queue, size_t qlen) {
  nats_sub *s = calloc(1, sizeof *s + n + 1);
  if (!s) return NULL;
  s->subject = strndup(subject, slen);
  s->queue = queue ? strndup(queue, qlen) : NULL;
  if (!s->subject || (queue && !s->queue)) {
    free(s->subject), free(s->queue), free(s);
    return NULL;
  }
  atomic_init(&s->refs, 1);
  atomic_init(&s->count, 0);
  atomic_init(&s->max, -1);
  atomic_init(&s->filtered, false);
  s->conn = c;
  msrt_nats_conn_ref(c);
  memcpy(s->sid, sid, n);
  s->sid_len = n;
  return s;
}

void msrt_nats_sub_unref(nats_sub *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  msrt_nats_conn_unref(s->conn);
  free(s->subject);
  free(s->queue);
  free(s);
}

/* FNV-1a: the sid table sees only the client's own sids, the deny cache
 * only subjects the client may subscribe to. */
size_t msrt_nats_hash(const char *s, size_t n) {
  size_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static bool same(const nats_sub *s, const char *sid, size_t n) {
  return s->sid_len == n && memcmp(s->sid, sid, n) == 0;
}

nats_sub *msrt_sid_get(sid_table *t, const char *sid, size_t n) {
  if (!t->cap) return NULL;
  for (size_t i = msrt_nats_hash(sid, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
    nats_sub *s = t->slot[i];
    if (!s) return NULL;
    if (same(s, sid, n)) return s;
  }
}

static void place(nats_sub **slot, size_t cap, nats_sub *s) {
  size_t i = msrt_nats_hash(s->sid, s->sid_len) & (cap - 1);
  while (slot[i]) i = (i + 1) & (cap - 1);
  slot[i] = s;
}

int msrt_sid_put(sid_table *t, nats_sub *s) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 8;
    nats_sub **slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < t->cap; i++)
      if (t->slot[i]) place(slot, cap, t->slot[i]);
    free(t->slot);
    t->slot = slot, t->cap = cap;
  }
  place(t->slot, t->cap, s);
  t->n++;
  return 0;
}

/* Remove s, moving back the entries of its run (linear probing). */
void msrt_sid_del(sid_table *t, nats_sub *s) {
  size_t m = t->cap - 1, i = msrt_nats_hash(s->sid, s->sid_len) & m;
  while (t->slot[i] != s) i = (i + 1) & m;
  t->slot[i] = NULL;
  t->n--;
  for (size_t j = (i + 1) & m; t->slot[j]; j = (j + 1) & m) {
    nats_sub *x = t->slot[j];
    t->slot[j] = NULL;
    place(t->slot, t->cap, x);
  }
}

void msrt_sid_free(sid_table *t) {
  free(t->slot);
  memset(t, 0, sizeof *t);
}
