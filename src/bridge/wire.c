/* Messages across the wire (bridge/bridge.h "On the wire"): an envelope
 * into a NATS message on the exporting thread, a NATS message into an
 * envelope on the hub (loop.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge/internal.h"
#include "bus/interest.h"
#include "proc/codec.h"

#define JSON_TYPE "application/json"

/* ---- messages ---------------------------------------------------------- */

/* libnats 3.x's own free of a message (msg.c), exported but not in
 * nats.h: what its garbage-collector thread calls for each message. */
void natsMsg_free(void *object);

/* The head libnats 3.x gives a message (gc.h, msg.h: natsMsg begins with
 * natsGCItem), read only to check that m is what natsMsg_free frees. */
typedef struct {
  void *next;
  void (*free_cb)(void *);
} nats_gc_head;

void msrt_bridge_msg_free(natsMsg *m) {
  /* a message libnats would give its collector names natsMsg_free there;
   * anything else (another layout, another libnats) goes the usual way */
  if (m && ((const nats_gc_head *)(const void *)m)->free_cb == natsMsg_free)
    natsMsg_free(m);
  else
    natsMsg_Destroy(m);
}

/* libnats 3.x's hook on each message its reader parses, before the
 * message is queued for its subscription (conn.h, exported but not in
 * nats.h: libnats' own tests use it). */
typedef void (*natsMsgFilter)(natsConnection *nc, natsMsg **msg,
                              void *closure);
void natsConn_setFilterWithClosure(natsConnection *nc, natsMsgFilter f,
                                   void *closure);

/* What a no-responders status's Status header is renamed to until the
 * import reads it (a name no NATS client sends). */
#define KEPT_STATUS "Msrt-Kept-Status"

/* The hook: a no-responders status (no data, Status 503) for one of the
 * bridge's subscriptions kept as a message NextMsg hands over; one for
 * libnats' own (a JetStream request's) left as it is. A message that one
 * live key alone takes is imported here, on the hub, skipping libnats'
 * subscription queue (its lock and list, NextMsg: ~400 instructions a
 * message, docs/performance.md). */
static void on_parse(natsConnection *nc, natsMsg **msg, void *closure) {
  (void)nc;
  msrt_bridge *b = closure;
  natsMsg *m = *msg;
  const char *subject = natsMsg_GetSubject(m);
  if (natsMsg_GetDataLength(m) == 0 && natsMsg_IsNoResponders(m)) {
    if (msrt_bridge_names_reply(b, subject) &&
        natsMsgHeader_Set(m, KEPT_STATUS, "503") == NATS_OK)
      natsMsgHeader_Delete(m, "Status");
    msrt_bridge_parse_key(b, NULL); /* queued: the order kept */
    return;
  }
  bkey *k = msrt_bridge_parse_key(b, subject);
  if (!k) return;
  msrt_bridge_import(k, m);
  msrt_bridge_msg_free(m);
  *msg = NULL;
}

void msrt_bridge_hook_parse(msrt_bridge *b) {
  natsConn_setFilterWithClosure(b->nc, on_parse, b);
}

/* ---- export ------------------------------------------------------------ */

/* The data of e as NATS bytes at *p, *n: inside e's payload (a string or
 * JSON text, not copied: natsMsg_Create copies it), or in tmp when it had
 * to be written as JSON; sets *json when it is JSON text. Returns 0, or
 * -1 when the value cannot be written as JSON. */
static int export_data(const msrt_envelope *e, msrt_sbuf *tmp, const char **p,
                       size_t *n, bool *json) {
  *json = false;
  if (e->flags & MSRT_ENV_PAYLOAD_JSON) {
    *json = true;
    *p = (const char *)e->payload, *n = e->payload_len;
    return 0;
  }
  if (msrt_lua_get_string(e->payload, e->payload_len, p, n)) return 0;
  *json = true;
  if (msrt_lua_to_json(e->payload, e->payload_len, tmp, NULL) != MSRT_E_OK)
    return -1;
  *p = tmp->p, *n = tmp->len;
  return 0;
}

/* e's headers ("name\0value\0" pairs), priority, origin and the groups
 * served here (groups, "" when none) onto m; a message to be stored (a
 * JetStream queue's) carries no origin nor served groups, and its Msg-Id
 * becomes JetStream's Nats-Msg-Id. */
static natsStatus export_headers(msrt_bridge *b, const msrt_envelope *e,
                                 natsMsg *m, bool json, bool stored,
                                 const char *groups) {
  natsStatus s = stored ? NATS_OK : natsMsgHeader_Set(m, "Msrt-Origin",
                                                      b->origin);
  if (s == NATS_OK && e->priority != MSRT_PRIORITY_DEFAULT) {
    char p[4];
    snprintf(p, sizeof p, "%u", e->priority);
    s = natsMsgHeader_Set(m, "Msrt-Priority", p);
  }
  if (s == NATS_OK && json) s = natsMsgHeader_Set(m, "Content-Type", JSON_TYPE);
  if (s == NATS_OK && !stored && *groups)
    s = natsMsgHeader_Set(m, "Msrt-Served", groups);
  const char *h = (const char *)e->headers, *end = h + e->headers_len;
  while (s == NATS_OK && h && h < end) {
    const char *v = h + strlen(h) + 1;
    if (v >= end) break;
    s = natsMsgHeader_Set(m, stored && strcasecmp(h, "Msg-Id") == 0
                                 ? "Nats-Msg-Id" : h, v);
    h = v + strlen(v) + 1;
  }
  return s;
}

/* Count e's copy (of subject class cls) in stat st and, for a drop,
 * announce it. */
static void settle(msrt_bridge *b, msrt_bus *bus, const msrt_envelope *e,
                   unsigned cls, msrt_bridge_stat st, const char *reason) {
  msrt_bridge_add(b, cls, st, 1);
  if (reason) msrt_bus_drop_notice(bus, e, reason, "nats");
}

/* What an exported envelope becomes on the wire: its data (in e, or in
 * tmp when written as JSON) and the queue groups served here. */
typedef struct {
  msrt_sbuf tmp;
  const char *d;
  size_t dn;
  bool json;
  size_t served;    /* strlen(groups); 0: none (always for stored) */
  char groups[256]; /* space-separated (bridge.h "Queue groups...") */
} wire_data;

/* Fill w for e; returns 0, or -1 when the data cannot be written as JSON.
 * The caller frees w->tmp either way. */
static int wire_prepare(msrt_bridge *b, const msrt_envelope *e, bool stored,
                        wire_data *w) {
  w->tmp = (msrt_sbuf){0};
  w->d = NULL, w->dn = 0, w->served = 0, w->groups[0] = 0;
  if (export_data(e, &w->tmp, &w->d, &w->dn, &w->json) != 0) return -1;
  if (!w->d) w->d = "";
  if (!stored)
    w->served = msrt_bus_local_groups(b->bus, e->subject, w->groups,
                                      sizeof w->groups);
  return 0;
}

/* e as NATS message *out with reply (headers as bridge.h says). */
static natsStatus wire_msg(msrt_bridge *b, const msrt_envelope *e,
                           const char *reply, bool stored, const wire_data *w,
                           natsMsg **out) {
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, e->subject, reply, w->d, (int)w->dn);
  if (s == NATS_OK) s = export_headers(b, e, m, w->json, stored, w->groups);
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    m = NULL;
  }
  *out = m;
  return s;
}

int msrt_bridge_wire_out(msrt_bridge *b, const msrt_envelope *e,
                         const char *reply, bool stored, natsMsg **out,
                         natsStatus *st) {
  wire_data w;
  *out = NULL;
  int rc = wire_prepare(b, e, stored, &w);
  if (rc == 0) {
    *st = wire_msg(b, e, reply, stored, &w, out);
    rc = *st == NATS_OK ? 0 : 1;
  }
  msrt_sbuf_free(&w.tmp);
  return rc;
}

/* Publish e to NATS: a message that needs no header (a string, the
 * default priority, no headers, no group served here) as a plain PUB,
 * as any client's, without making a natsMsg; the rest as HPUB with
 * Msrt-Origin (bridge.h "On the wire"). Returns 0 with *st libnats'
 * answer, or -1 when the data cannot be written as JSON. */
static int export_out(msrt_bridge *b, const msrt_envelope *e,
                      natsStatus *st) {
  wire_data w;
  int rc = wire_prepare(b, e, false, &w);
  bool plain = !w.json && !e->headers_len &&
               e->priority == MSRT_PRIORITY_DEFAULT && !w.served;
  if (rc == 0 && plain && e->reply_len)
    *st = natsConnection_PublishRequest(b->nc, e->subject, e->reply, w.d,
                                        (int)w.dn);
  else if (rc == 0 && plain)
    *st = natsConnection_Publish(b->nc, e->subject, w.d, (int)w.dn);
  else if (rc == 0) {
    natsMsg *m = NULL;
    *st = wire_msg(b, e, e->reply, false, &w, &m);
    if (*st == NATS_OK) *st = natsConnection_PublishMsg(b->nc, m);
    msrt_bridge_msg_free(m);
  }
  msrt_sbuf_free(&w.tmp);
  return rc;
}

static msrt_push_outcome export_push(void *ep, msrt_envelope *e,
                                     const msrt_evict_sink *evicted,
                                     msrt_bus *bus) {
  (void)evicted;
  msrt_bridge *b = ep;
  unsigned cls = msrt_bus_class_of(bus, e);
  msrt_bridge_add(b, cls, MSRT_BRIDGE_HANDED, 1);
  if ((e->subject_len >= 5 && memcmp(e->subject, "msrt.", 5) == 0) ||
      msrt_bridge_stored(b, e->subject)) { /* stays, or a queue stores it */
    settle(b, bus, e, cls, MSRT_BRIDGE_LOCAL_ONLY, NULL);
    return MSRT_PUSH_DELIVERED;
  }
  natsStatus s;
  if (export_out(b, e, &s) < 0) {
    settle(b, bus, e, cls, MSRT_BRIDGE_UNCONVERTIBLE, "unconvertible");
    return MSRT_PUSH_DELIVERED;
  }
  msrt_bridge_loop_published(b->loop);
  if (s == NATS_OK) settle(b, bus, e, cls, MSRT_BRIDGE_EXPORTED, NULL);
  else if (s == NATS_MAX_PAYLOAD || s == NATS_NOT_PERMITTED)
    settle(b, bus, e, cls, MSRT_BRIDGE_REFUSED_BY_SERVER, "refused_by_server");
  else settle(b, bus, e, cls, MSRT_BRIDGE_DROPPED_DISCONNECTED,
              "dropped_disconnected");
  return MSRT_PUSH_DELIVERED;
}

static void export_name(void *ep, char *buf, size_t cap) {
  (void)ep;
  snprintf(buf, cap, "nats");
}

static msrt_overflow export_policy(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_DROP_NEWEST;
}

const msrt_endpoint_class msrt_bridge_export_class = {
    .class_name = "nats",
    .push = export_push,
    .policy = export_policy,
    .name = export_name,
    .remote = true,
    .borrows = true, /* the bytes go to libnats' buffer during the push */
};

/* ---- import ------------------------------------------------------------ */

/* Append "name\0value\0" to h unless name is one the wire adds; JetStream's
 * Nats-Msg-Id is msrt's Msg-Id. */
static void put_header(msrt_sbuf *h, const char *name, const char *value) {
  if (strcmp(name, "Msrt-Priority") == 0 || strcmp(name, "Content-Type") == 0 ||
      strcmp(name, "Msrt-Served") == 0)
    return;
  if (strcmp(name, "Nats-Msg-Id") == 0) name = "Msg-Id";
  if (strpbrk(value, "\r\n")) return; /* not a valid msrt header value */
  msrt_sbuf_put(h, name, strlen(name) + 1);
  msrt_sbuf_put(h, value, strlen(value) + 1);
}

/* m's headers (its n keys; none: a plain message) into h; returns the
 * priority (Msrt-Priority or the default) and sets *json when the data
 * is marked JSON. */
static int import_headers(natsMsg *m, const char **keys, int n, msrt_sbuf *h,
                          bool *json) {
  int priority = MSRT_PRIORITY_DEFAULT;
  const char *v = NULL;
  *json = false;
  if (n == 0) return priority; /* a plain message: no header to ask for */
  *json = natsMsgHeader_Get(m, "Content-Type", &v) == NATS_OK && v &&
          strncmp(v, JSON_TYPE, sizeof JSON_TYPE - 1) == 0;
  if (natsMsgHeader_Get(m, "Msrt-Priority", &v) == NATS_OK && v) {
    int p = atoi(v);
    if (p >= MSRT_PRIORITY_HIGHEST && p <= MSRT_PRIORITY_LOWEST) priority = p;
  }
  const char *kept = NULL;
  if (natsMsg_GetDataLength(m) == 0 &&
      ((natsMsgHeader_Get(m, KEPT_STATUS, &kept) == NATS_OK && kept) ||
       natsMsg_IsNoResponders(m))) { /* hub.lua reads Status 503 */
    put_header(h, "Status", "503");
    put_header(h, "Description", "No Responders");
    return priority;
  }
  for (int i = 0; i < n; i++)
    if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK && v)
      put_header(h, keys[i], v);
  return priority;
}

/* m's header keys (libnats': the caller frees *keys); 0 when it has no
 * header (a plain MSG, or libnats could not read them). */
static int header_keys(natsMsg *m, const char ***keys) {
  int n = 0;
  *keys = NULL;
  if (natsMsgHeader_Keys(m, keys, &n) != NATS_OK) n = 0;
  return n;
}

/* The data of m as a string.buffer serialization into out. */
static void import_data(natsMsg *m, bool json, msrt_sbuf *out) {
  const char *d = natsMsg_GetData(m);
  int n = natsMsg_GetDataLength(m);
  if (json) {
    const char *reason;
    char detail[8];
    cJSON *v = msrt_json_parse(d ? d : "", (size_t)n, &reason, detail,
                               sizeof detail);
    if (v && msrt_json_to_lua(v, out) == MSRT_E_OK) {
      cJSON_Delete(v);
      return;
    }
    cJSON_Delete(v);
    msrt_sbuf_reset(out); /* not JSON after all: the bytes as a string */
  }
  msrt_lua_put_string(out, d ? d : "", (size_t)n);
}

/* Whether the space-separated list names group q. */
static bool names(const char *list, const char *q) {
  size_t n = strlen(q);
  for (const char *p = list; (p = strstr(p, q)) != NULL; p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return true;
  return false;
}

/* m, a message with no header (a string with the default priority), as
 * an envelope with reply: its string's serialization written once,
 * straight into the envelope (written into a buffer and then copied, the
 * two copies cost ~250 instructions a 128-byte message). */
static msrt_envelope *plain_in(msrt_bridge *b, natsMsg *m, const char *subject,
                               const char *reply, msrt_error *err) {
  const char *d = natsMsg_GetData(m);
  int dn = natsMsg_GetDataLength(m);
  size_t n = d && dn > 0 ? (size_t)dn : 0;
  unsigned char head[5];
  size_t hn = msrt_lua_string_head(n, head);
  msrt_envelope *e = msrt_bus_make(
      b->bus, subject, strlen(subject), reply, reply ? strlen(reply) : 0, NULL,
      0, NULL, hn + n, MSRT_PRIORITY_DEFAULT, 0, err);
  if (e) {
    unsigned char *p = msrt_env_payload_to_write(e);
    memcpy(p, head, hn);
    if (n) memcpy(p + hn, d, n);
  }
  return e;
}

/* m (its n header keys) as an envelope with reply, its headers and data
 * written through h and data (reset here, kept allocated), or NULL with
 * err. */
static msrt_envelope *wire_in(msrt_bridge *b, natsMsg *m, const char **keys,
                              int n, const char *reply, msrt_sbuf *h,
                              msrt_sbuf *data, msrt_error *err) {
  const char *subject = natsMsg_GetSubject(m);
  bool json;
  if (n == 0) return plain_in(b, m, subject, reply, err);
  msrt_sbuf_reset(h);
  msrt_sbuf_reset(data);
  int priority = import_headers(m, keys, n, h, &json);
  import_data(m, json, data);
  if (h->oom || data->oom) {
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  return msrt_bus_make(b->bus, subject, strlen(subject), reply,
                       reply ? strlen(reply) : 0, h->len ? h->p : NULL,
                       h->len, data->p, data->len, priority, 0, err);
}

/* Whether m names this host as its origin (relayed back to it). */
static bool from_here(msrt_bridge *b, natsMsg *m) {
  const char *origin = NULL;
  return natsMsgHeader_Get(m, "Msrt-Origin", &origin) == NATS_OK && origin &&
         strcmp(origin, b->origin) == 0;
}

/* Whether m's host gave it to queue group `queue` already (Msrt-Served). */
static bool served_there(natsMsg *m, const char *queue) {
  const char *served = NULL;
  return natsMsgHeader_Get(m, "Msrt-Served", &served) == NATS_OK && served &&
         names(served, queue);
}

/* The subject class of subject, a message of k's: looked up once per key
 * whose pattern's first token is literal (the class is the first token's,
 * router/account.h), else per message. Hub. */
static unsigned key_class(bkey *k, const char *subject) {
  if (k->cls1) return k->cls1 - 1;
  unsigned cls = msrt_bus_class(k->b->bus, subject, strlen(subject));
  if (k->one_class) k->cls1 = cls + 1;
  return cls;
}

/* A full `block` subscriber holds the import, as it holds a local
 * publisher (README "Actors", overflow policies): the copies it has no
 * room for wait in k->pend and k's later messages in libnats' pending
 * queue (pending_msgs, then libnats' slow-consumer drops, counted) until
 * the hub retries them: woken by the thread that made room (the bus's
 * waker), or after a millisecond at most; they are delivered, or count as
 * refused when the bridge closes. */
static void block(bkey *k) {
  k->blocked = true;
  msrt_bridge_loop_retry_in(k->b->loop, true);
  msrt_bridge_loop_wait(k->b->loop, &k->pend);
}

void msrt_bridge_import(bkey *k, natsMsg *m) {
  msrt_bridge *b = k->b;
  const char *queue = k->queue;
  const char *subject = natsMsg_GetSubject(m), *reply = natsMsg_GetReply(m);
  unsigned cls = key_class(k, subject);
  msrt_bridge_add(b, cls, MSRT_BRIDGE_IMPORTED, 1);
  if (atomic_load_explicit(&k->gone, memory_order_relaxed) || /* drained */
      atomic_load_explicit(&b->state, memory_order_relaxed) ==
          MSRT_BRIDGE_CLOSED) {
    msrt_bridge_add(b, cls, MSRT_BRIDGE_DROPPED_AT_CLOSE, 1);
    return;
  }
  const char **keys;
  int n = header_keys(m, &keys);
  msrt_envelope *e = NULL;
  msrt_error err;
  if (n && from_here(b, m)) atomic_fetch_add(&b->loops, 1);
  else if (n && queue && served_there(m, queue))
    msrt_bridge_add(b, cls, MSRT_BRIDGE_SERVED_THERE, 1);
  else
    e = wire_in(b, m, keys, n, reply, &k->scratch_h, &k->scratch_d, &err);
  free((void *)keys);
  if (e) { /* a refusal is counted by the bus */
    size_t delivered;
    /* k->pend is empty here (a blocked key is not imported until its
     * retry cleared it, which zeroes it; only k's importing thread uses
     * it): a pending zeroed for each message cost ~80 instructions (it
     * holds an error's 512-byte text) */
    msrt_bus_pending *pend = &k->pend;
    if (msrt_bus_publish_key(b->bus, e, k->key, cls, &delivered, pend,
                             &err) == MSRT_E_MAILBOX_FULL && pend->n)
      block(k);
    msrt_env_unref(e);
  }
}

msrt_envelope *msrt_bridge_wire_in(msrt_bridge *b, natsMsg *m,
                                   const char *reply, msrt_error *err) {
  msrt_sbuf h = {0}, data = {0};
  const char **keys;
  int n = header_keys(m, &keys);
  msrt_envelope *e = wire_in(b, m, keys, n, reply, &h, &data, err);
  free((void *)keys);
  msrt_sbuf_free(&h);
  msrt_sbuf_free(&data);
  return e;
}
