/* The bridge's connection, interest and filters (bridge/bridge.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/internal.h"
#include "bus/interest.h"
#include "core/token.h"
#include "proc/codec.h"
#include "router/subject.h"

const char *msrt_bridge_state_name(msrt_bridge_state s) {
  static const char *const names[] = {"connecting", "connected",
                                      "disconnected", "closed"};
  return (unsigned)s < 4 ? names[s] : "unknown";
}

const char *msrt_bridge_stat_name(msrt_bridge_stat s) {
  static const char *const names[] = {
      "handed",     "exported",      "dropped_disconnected",
      "refused_by_server", "local_only", "unconvertible", "imported",
      "served_there", "dropped_at_close"};
  return (unsigned)s < MSRT_BRIDGE__COUNT ? names[s] : "unknown";
}

/* ---- patterns ---------------------------------------------------------- */

/* The next token of a pattern at *p (advanced past it and its dot). */
static size_t token(const char **p, const char **tok) {
  *tok = *p;
  const char *dot = strchr(*p, '.');
  size_t n = dot ? (size_t)(dot - *p) : strlen(*p);
  *p += n + (dot ? 1 : 0);
  return n;
}

/* Whether every subject pattern p matches, filter f matches too (NATS
 * wildcards: `*` one token, `>` the rest). */
static bool covers(const char *f, const char *p) {
  while (*f && *p) {
    const char *ft, *pt;
    size_t fn = token(&f, &ft), pn = token(&p, &pt);
    if (fn == 1 && *ft == '>') return true;
    if (pn == 1 && *pt == '>') return false;
    if (fn == 1 && *ft == '*') continue;
    if (fn != pn || memcmp(ft, pt, fn) != 0) return false;
  }
  return !*f && !*p;
}

static bool imported(msrt_bridge *b, const char *pattern) {
  if (strncmp(pattern, "msrt.", 5) == 0) return false; /* stays here */
  for (size_t i = 0; i < b->nimports; i++)
    if (covers(b->imports[i], pattern)) return true;
  return false;
}

/* Whether pattern p's first two tokens are literal (no wildcard). */
static bool literal2(const char *p) {
  for (int i = 0; i < 2; i++) {
    const char *t;
    size_t n = token(&p, &t);
    if (n == 0 || (n == 1 && (*t == '*' || *t == '>'))) return false;
  }
  return true;
}

bool msrt_bridge_names_reply(msrt_bridge *b, const char *subject) {
  bool yes = false;
  pthread_mutex_lock(&b->mu);
  for (int list = 0; list < 2 && !yes; list++)
    for (bkey *k = list ? b->retired : b->keys; k && !yes; k = k->next)
      yes = (list ? k->drained : k->sub) && literal2(k->pattern) &&
            covers(k->pattern, subject);
  pthread_mutex_unlock(&b->mu);
  return yes;
}

bool msrt_bridge_stored(msrt_bridge *b, const char *subject) {
  if (!atomic_load_explicit(&b->any_stored, memory_order_acquire))
    return false;
  bool yes = false;
  pthread_mutex_lock(&b->mu);
  for (size_t i = 0; i < b->nstored && !yes; i++)
    yes = covers(b->stored[i], subject);
  pthread_mutex_unlock(&b->mu);
  return yes;
}

/* Room for n more stored patterns (under mu): the array doubles, so a host
 * may hold as many JetStream queues as it declares. */
static int stored_room(msrt_bridge *b, size_t n) {
  if (b->nstored + n <= b->capstored) return 0;
  size_t cap = b->capstored ? b->capstored : 8;
  while (cap < b->nstored + n) cap *= 2;
  char **s = realloc(b->stored, cap * sizeof *s);
  if (!s) return -1;
  b->stored = s, b->capstored = cap;
  return 0;
}

static void unstore(msrt_bridge *b, const char *p) {
  for (size_t k = 0; k < b->nstored; k++)
    if (strcmp(b->stored[k], p) == 0) { /* one copy per queue */
      free(b->stored[k]);
      b->stored[k] = b->stored[--b->nstored];
      return;
    }
}

int msrt_bridge_store_patterns(msrt_bridge *b, const char *const *p, size_t n,
                               bool on) {
  int rc = 0;
  pthread_mutex_lock(&b->mu);
  if (on && stored_room(b, n) != 0) rc = -1;
  for (size_t i = 0; on && rc == 0 && i < n; i++) {
    char *c = strdup(p[i]);
    if (!c) { /* all or none: the ones added go again */
      for (size_t k = 0; k < i; k++) unstore(b, p[k]);
      rc = -1;
    } else b->stored[b->nstored++] = c;
  }
  for (size_t i = 0; !on && i < n; i++) unstore(b, p[i]);
  atomic_store_explicit(&b->any_stored, b->nstored, memory_order_release);
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* ---- interest ---------------------------------------------------------- */

static void key_free(bkey *k) {
  msrt_sbuf_free(&k->scratch_h);
  msrt_sbuf_free(&k->scratch_d);
  free(k);
}

static void note_error(msrt_bridge *b, const char *what, natsStatus s) {
  snprintf(b->last_error, sizeof b->last_error, "%s: %s", what,
           natsStatus_GetText(s));
}

/* A synchronous subscription for k: the hub takes its messages after each
 * read (msrt_bridge_pull). */
static natsStatus subscribe(msrt_bridge *b, bkey *k) {
  return k->queue ? natsConnection_QueueSubscribeSync(&k->sub, b->nc,
                                                      k->pattern, k->queue)
                  : natsConnection_SubscribeSync(&k->sub, b->nc, k->pattern);
}

/* What keys and subscriptions cover is about to change (b->mu held): the
 * hub's pairing of a subject and its key (msrt_bridge_parse_key) is
 * found again, under b->mu, so after the change. */
static void keys_changing(msrt_bridge *b) {
  atomic_fetch_add_explicit(&b->keys_version, 1, memory_order_release);
}

/* Subscribe k on NATS (b->mu held). */
static void key_subscribe(msrt_bridge *b, bkey *k) {
  keys_changing(b);
  natsStatus s = subscribe(b, k);
  if (s == NATS_OK) {
    atomic_fetch_add(&b->nats_subs, 1);
    natsSubscription_SetPendingLimits(k->sub, b->pending_msgs, -1);
  } else {
    k->sub = NULL;
    note_error(b, k->pattern, s);
  }
}

/* How long a drained subscription may take (bridge.h "Closing a NATS
 * subscription"): a round trip and the count of what is pending; past it
 * libnats closes the subscription anyway. */
#define DRAIN_MS 1000

/* Unsubscribe k from NATS and retire it for the hub to free once libnats
 * is done with the subscription (b->mu held): drained, so that what the
 * server sent before it took the UNSUB is still handed over and counted
 * (bridge.h "Closing a NATS subscription"); cut at once when libnats
 * refuses the drain. Returns whether k was retired (else the caller frees
 * it: it had none). */
static bool key_unsubscribe(msrt_bridge *b, bkey *k) {
  if (!k->sub) return false;
  keys_changing(b);
  natsSubscription *sub = k->sub;
  k->sub = NULL;
  atomic_fetch_sub(&b->nats_subs, 1);
  atomic_store(&k->gone, true);
  int64_t dropped = 0;
  natsSubscription_GetStats(sub, NULL, NULL, NULL, NULL, NULL, &dropped);
  atomic_fetch_add(&b->slow_dropped_gone, (uint64_t)dropped);
  k->drained = sub;
  if (natsSubscription_DrainTimeout(sub, DRAIN_MS) != NATS_OK)
    natsSubscription_Unsubscribe(sub);
  k->next = b->retired;
  b->retired = k;
  return true;
}

static bkey *key_new(msrt_bridge *b, uint32_t key, const char *pattern,
                     const char *queue) {
  size_t pn = strlen(pattern), qn = queue ? strlen(queue) + 1 : 0;
  bkey *k = calloc(1, sizeof *k + pn + 1 + qn);
  if (!k) return NULL;
  k->b = b;
  k->key = key;
  memcpy(k->pattern, pattern, pn + 1);
  size_t first = strcspn(pattern, ".");
  k->one_class = !(first == 1 && (*pattern == '*' || *pattern == '>'));
  if (queue) {
    k->queue = k->pattern + pn + 1;
    memcpy(k->queue, queue, qn);
  }
  return k;
}

/* The interest hook (bus/interest.h). */
static void changed(void *ud, uint32_t key, const char *pattern,
                    const char *queue, bool on) {
  msrt_bridge *b = ud;
  pthread_mutex_lock(&b->mu);
  keys_changing(b);
  if (on) {
    bkey *k = key_new(b, key, pattern, queue);
    if (k) {
      k->next = b->keys;
      b->keys = k;
      if (imported(b, pattern)) key_subscribe(b, k);
    }
  } else {
    for (bkey **at = &b->keys; *at; at = &(*at)->next)
      if ((*at)->key == key) {
        bkey *k = *at;
        *at = k->next;
        if (!key_unsubscribe(b, k)) key_free(k);
        break;
      }
  }
  pthread_mutex_unlock(&b->mu);
}

/* After the import patterns changed: subscribe what they now cover,
 * unsubscribe what they no longer do (b->mu held). A key handed to
 * libnats to free is replaced by a fresh copy. */
static void reconsider(msrt_bridge *b) {
  for (bkey **at = &b->keys; *at;) {
    bkey *k = *at;
    bool want = imported(b, k->pattern);
    if (want && !k->sub) key_subscribe(b, k);
    if (!want && k->sub) {
      bkey *copy = key_new(b, k->key, k->pattern, k->queue);
      if (!copy) { at = &k->next; continue; } /* keep it subscribed */
      copy->next = k->next;
      *at = copy;
      key_unsubscribe(b, k);
      k = copy;
    }
    at = &k->next;
  }
}

/* ---- the hub's imports (loop.c calls these after each read) ----------- */

/* The (key, subscription) pairs to take from into b->pulls (b->mu held):
 * the keys' not blocked, the retired ones' (what they still hold counts
 * dropped_at_close). Only the hub frees keys and destroys subscriptions,
 * so the pairs stay valid after b->mu is let go. Returns the count. */
static size_t snapshot(msrt_bridge *b, bool blocked, bool *all) {
  size_t n = 0;
  *all = true;
  for (int list = 0; list < 2; list++)
    for (bkey *k = list ? b->retired : b->keys; k; k = k->next) {
      natsSubscription *sub = list ? k->drained : k->sub;
      if (!sub || k->blocked != blocked) continue;
      if (n == b->cappulls) {
        size_t cap = n ? n * 2 : 16;
        bpull *v = realloc(b->pulls, cap * sizeof *v);
        if (!v) { /* the rest at the next read */
          *all = false;
          return n;
        }
        b->pulls = v, b->cappulls = cap;
      }
      b->pulls[n++] = (bpull){k, sub, list == 1};
    }
  return n;
}

/* The messages libnats holds for sub into the bus, until k blocks. A
 * timeout of 0 takes what is there and waits for nothing; a
 * slow-consumer notice (libnats dropped some: counted in its stats) is no
 * message and no reason to stop. A live key's queue is counted first and
 * that many taken: NextMsg on an empty queue writes libnats' error text
 * (~2,900 instructions, against ~130 for the count), and every read looks
 * at every key (one that arrives meanwhile waits for the next read, as
 * one arriving after the last NextMsg did). A retired key's is taken
 * until empty: the NextMsg that finds a draining queue empty completes
 * the drain. */
static void take(bkey *k, natsSubscription *sub, bool retired) {
  int n = 0;
  if (!retired && (natsSubscription_GetPending(sub, &n, NULL) != NATS_OK ||
                   n == 0))
    return;
  for (;;) {
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, sub, 0);
    if (s == NATS_SLOW_CONSUMER) continue;
    if (s == NATS_NO_RESPONDERS) { /* one on_parse (wire.c) could not rename
                                      (out of memory): lost in libnats */
      if (!retired && --n == 0) return;
      continue;
    }
    if (s != NATS_OK) return;
    msrt_bridge_import(k, m);
    msrt_bridge_msg_free(m);
    if (k->blocked || (!retired && --n == 0)) return;
  }
}

/* Whether libnats is done with retired key k: its subscription is closed
 * or its drain complete (one whose queue was empty when the drain began
 * completes without being closed: destroying it closes it). */
static bool key_finished(bkey *k) {
  return !natsSubscription_IsValid(k->drained) ||
         natsSubscription_DrainCompletionStatus(k->drained) !=
             NATS_ILLEGAL_STATE;
}

/* Free the retired keys libnats is done with (hub). */
static void reap(msrt_bridge *b) {
  pthread_mutex_lock(&b->mu);
  for (bkey **at = &b->retired; *at;) {
    bkey *k = *at;
    if (k->blocked || !key_finished(k)) {
      at = &k->next;
      continue;
    }
    *at = k->next;
    keys_changing(b);
    natsSubscription_Destroy(k->drained);
    key_free(k);
  }
  pthread_mutex_unlock(&b->mu);
}

void msrt_bridge_pull(msrt_bridge *b) {
  pthread_mutex_lock(&b->mu);
  bool all;
  size_t n = snapshot(b, false, &all);
  bool retired = b->retired != NULL;
  pthread_mutex_unlock(&b->mu);
  for (size_t i = 0; i < n; i++)
    take(b->pulls[i].k, b->pulls[i].sub, b->pulls[i].retired);
  /* every queue not blocked taken: imports at the parse keep the order */
  if (all) b->passed = false;
  if (retired) reap(b);
}

/* At most this many NATS subscriptions for imports at the parse (each
 * look walks them), and how many messages a stream of changing subjects
 * leaves to the pull between two looks. */
#define PARSE_KEYS_MAX 16
#define PARSE_REST 64

bkey *msrt_bridge_parse_key(msrt_bridge *b, const char *subject) {
  if (!pthread_equal(pthread_self(), b->hub)) return NULL;
  if (!subject || b->passed ||
      (*subject == '_' && strncmp(subject, "_INBOX.", 7) == 0))
    goto pass;
  uint64_t v = atomic_load_explicit(&b->keys_version, memory_order_acquire);
  if (!b->memo_set || v != b->memo_version ||
      strcmp(subject, b->memo_subject) != 0) {
    /* a look walks every key: only for a few, and not for every message
     * of a stream whose subject changes each time (two misses in a row:
     * the next 64 go to the pull unlooked at) */
    if (b->memo_rest) {
      b->memo_rest--;
      goto pass;
    }
    if (++b->memo_misses >= 2) b->memo_rest = PARSE_REST;
    size_t len = strlen(subject);
    if (len >= sizeof b->memo_subject ||
        atomic_load_explicit(&b->nats_subs, memory_order_relaxed) >
            PARSE_KEYS_MAX)
      goto pass;
    bkey *one = NULL;
    int n = 0;
    pthread_mutex_lock(&b->mu);
    for (int list = 0; list < 2 && n < 2; list++)
      for (bkey *k = list ? b->retired : b->keys; k && n < 2; k = k->next)
        if ((list ? k->drained : k->sub) && covers(k->pattern, subject)) {
          n++;
          one = list ? NULL : k;
        }
    b->memo_version =
        atomic_load_explicit(&b->keys_version, memory_order_relaxed);
    pthread_mutex_unlock(&b->mu);
    memcpy(b->memo_subject, subject, len + 1);
    b->memo_key = n == 1 ? one : NULL;
    b->memo_set = true;
  }
  else b->memo_misses = 0;
  if (b->memo_key && !b->memo_key->blocked) return b->memo_key;
pass:
  b->passed = true;
  return NULL;
}

void msrt_bridge_retry(msrt_bridge *b) {
  pthread_mutex_lock(&b->mu);
  bool all;
  size_t n = snapshot(b, true, &all);
  pthread_mutex_unlock(&b->mu);
  size_t moved = 0;
  bool closed = atomic_load(&b->state) == MSRT_BRIDGE_CLOSED;
  for (size_t i = 0; i < n; i++) {
    bkey *k = b->pulls[i].k;
    if (!closed && msrt_bus_pending_retry(b->bus, &k->pend) ==
                       MSRT_E_MAILBOX_FULL) {
      msrt_bridge_loop_wait(b->loop, &k->pend); /* retry cancelled it */
      continue;
    }
    msrt_bus_pending_clear(b->bus, &k->pend); /* what is left: refused */
    k->blocked = false;
    moved++;
  }
  if (moved == n) msrt_bridge_loop_retry_in(b->loop, false);
  if (moved) msrt_bridge_pull(b);
}

/* ---- connection events ------------------------------------------------- */

void msrt_bridge_announce(msrt_bridge *b, msrt_bridge_state st) {
  char url[256] = "";
  const char *name = msrt_bridge_state_name(st);
  if (b->nc) natsConnection_GetConnectedUrl(b->nc, url, sizeof url);
  msrt_sbuf json = {0}, data = {0};
  msrt_sbuf_put(&json, "{\"state\":", 9);
  msrt_json_put_string(&json, name, strlen(name));
  msrt_sbuf_put(&json, ",\"url\":", 7);
  msrt_json_put_string(&json, url, strlen(url));
  const char *last = NULL;
  if (b->nc && natsConnection_GetLastError(b->nc, &last) != NATS_OK && last) {
    msrt_sbuf_put(&json, ",\"error\":", 9);
    msrt_json_put_string(&json, last, strlen(last));
  }
  msrt_sbuf_putc(&json, '}');
  cJSON *v = json.oom ? NULL : cJSON_ParseWithLength(json.p, json.len);
  char subject[64];
  int slen = snprintf(subject, sizeof subject, "msrt.nats.%s", name);
  msrt_error err;
  msrt_envelope *e = NULL;
  if (v && msrt_json_to_lua(v, &data) == MSRT_E_OK)
    e = msrt_bus_make(b->bus, subject, (size_t)slen, NULL, 0, NULL, 0, data.p,
                      data.len, MSRT_PRIORITY_DEFAULT, 0, &err);
  if (e) {
    size_t n;
    msrt_bus_publish(b->bus, e, &n, NULL, &err);
    msrt_env_unref(e);
  }
  cJSON_Delete(v);
  msrt_sbuf_free(&json);
  msrt_sbuf_free(&data);
}

static void set_state(msrt_bridge *b, msrt_bridge_state st) {
  atomic_store(&b->state, (int)st);
  msrt_bridge_announce(b, st);
}

static void on_connected(natsConnection *nc, void *ud) {
  (void)nc;
  set_state(ud, MSRT_BRIDGE_CONNECTED);
}

static void on_reconnected(natsConnection *nc, void *ud) {
  (void)nc;
  msrt_bridge *b = ud;
  atomic_fetch_add(&b->reconnects, 1);
  set_state(b, MSRT_BRIDGE_CONNECTED);
}

static void on_disconnected(natsConnection *nc, void *ud) {
  (void)nc;
  msrt_bridge *b = ud;
  if (atomic_load(&b->state) != MSRT_BRIDGE_CLOSED)
    set_state(b, MSRT_BRIDGE_DISCONNECTED);
}

static void on_closed(natsConnection *nc, void *ud) {
  (void)nc;
  atomic_store(&((msrt_bridge *)ud)->closed_cb, 1);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus s,
                     void *ud) {
  msrt_bridge *b = ud;
  const char *last = NULL;
  natsConnection_GetLastError(nc, &last);
  if (s == NATS_SLOW_CONSUMER ||
      (last && strstr(last, "Slow Consumer")))
    atomic_fetch_add(&b->slow_consumer, 1);
  pthread_mutex_lock(&b->mu);
  snprintf(b->last_error, sizeof b->last_error, "%s%s%s",
           natsStatus_GetText(s), last ? ": " : "", last ? last : "");
  pthread_mutex_unlock(&b->mu);
  (void)sub;
}

/* ---- open, filters, close ---------------------------------------------- */

static msrt_code options(msrt_bridge *b, const msrt_bridge_opts *o,
                         natsOptions **out, msrt_error *err) {
  natsOptions *no = NULL;
  natsStatus s = natsOptions_Create(&no);
  if (s == NATS_OK)
    s = natsOptions_SetServers(no, (const char **)o->servers,
                               (int)o->nservers);
  if (s != NATS_OK) {
    natsOptions_Destroy(no);
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "nats servers: %s",
                          natsStatus_GetText(s));
  }
  if (o->user) s = natsOptions_SetUserInfo(no, o->user, o->password);
  if (s == NATS_OK && o->token) s = natsOptions_SetToken(no, o->token);
  if (s == NATS_OK && o->creds)
    s = natsOptions_SetUserCredentialsFromFiles(no, o->creds, NULL);
  if (s == NATS_OK) s = natsOptions_SetName(no, b->origin);
  if (s == NATS_OK) s = natsOptions_SetNoEcho(no, true);
  if (s == NATS_OK && o->send_asap) s = natsOptions_SetSendAsap(no, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait(no, o->reconnect_wait_ms > 0
                                             ? o->reconnect_wait_ms : 250);
  if (s == NATS_OK)
    s = natsOptions_SetTimeout(no, o->connect_timeout_ms > 0
                                       ? o->connect_timeout_ms : 2000);
  if (s == NATS_OK && o->reconnect_buffer > 0)
    s = natsOptions_SetReconnectBufSize(no, (int)o->reconnect_buffer);
  if (s == NATS_OK)
    s = natsOptions_SetRetryOnFailedConnect(no, true, on_connected, b);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(no, on_reconnected, b);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(no, on_disconnected, b);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(no, on_error, b);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(no, on_closed, b);
  if (s == NATS_OK) s = msrt_bridge_loop_options(b->loop, no, o->send_asap);
  if (s != NATS_OK) {
    natsOptions_Destroy(no);
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "nats options: %s (%s)",
                          natsStatus_GetText(s), nats_GetLastError(NULL));
  }
  *out = no;
  return MSRT_E_OK;
}

msrt_code msrt_bridge_open(msrt_bus *bus, const msrt_bridge_opts *o,
                           msrt_bridge **out, msrt_error *err) {
  if (!o->nservers)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "nats: no server given");
  msrt_bridge *b = calloc(1, sizeof *b);
  if (!b) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  b->bus = bus;
  b->profile_max_payload = o->max_payload;
  b->pending_msgs = o->pending_msgs > 0 ? o->pending_msgs : 65536;
  b->hub = pthread_self();
  pthread_mutex_init(&b->mu, NULL);
  if (o->name) snprintf(b->origin, sizeof b->origin, "%s", o->name);
  else {
    char tok[MSRT_TOKEN_LEN + 1] = "0000000000000000";
    if (msrt_token(tok) != 0) snprintf(tok, sizeof tok, "%ld", (long)getpid());
    snprintf(b->origin, sizeof b->origin, "msrt-%.16s", tok);
  }
  natsOptions *no = NULL;
  msrt_code rc = (b->loop = msrt_bridge_loop_new(b, o->loop))
                     ? options(b, o, &no, err)
                     : msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  if (rc != MSRT_E_OK) {
    if (b->loop) msrt_bridge_loop_abandon(b->loop);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return rc;
  }
  atomic_store(&b->state, MSRT_BRIDGE_CONNECTING);
  natsStatus s = natsConnection_Connect(&b->nc, no);
  natsOptions_Destroy(no);
  if (b->nc) msrt_bridge_hook_parse(b); /* before any subscription */
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    msrt_error_set(err, MSRT_E_INVALID_ARG, "nats connect: %s (%s)",
                   natsStatus_GetText(s), nats_GetLastError(NULL));
    natsConnection_Destroy(b->nc);
    msrt_bridge_loop_abandon(b->loop);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return err ? err->code : MSRT_E_INVALID_ARG;
  }
  if (s == NATS_OK) set_state(b, MSRT_BRIDGE_CONNECTED);
  msrt_interest_hook hook = {changed, b};
  msrt_bus_set_interest(bus, &hook);
  *out = b;
  return MSRT_E_OK;
}

/* The patterns given, `_INBOX.>` added, into dst (strdup'd); n gets the
 * count. Validates each (router/subject.h). */
static msrt_code copy_patterns(const char *const *src, size_t n, char **dst,
                               size_t *nout, msrt_error *err) {
  size_t k = 0;
  msrt_code rc = MSRT_E_OK;
  if (n + 1 > MSRT_BRIDGE_PATTERNS_MAX)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "nats: at most %d import or export patterns",
                          MSRT_BRIDGE_PATTERNS_MAX - 1);
  for (size_t i = 0; i <= n && rc == MSRT_E_OK; i++) {
    const char *p = i < n ? src[i] : "_INBOX.>";
    rc = msrt_pattern_validate(p, strlen(p), 0, err);
    if (rc == MSRT_E_OK && !(dst[k++] = strdup(p)))
      rc = msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  }
  if (rc != MSRT_E_OK)
    while (k) free(dst[--k]);
  *nout = k;
  return rc;
}

static void unexport(msrt_bridge *b) {
  for (size_t i = 0; i < b->nexports; i++)
    msrt_bus_unsubscribe(b->bus, b->export_subs[i]);
  b->nexports = 0;
}

msrt_code msrt_bridge_set_filters(msrt_bridge *b, const char *const *import,
                                  size_t nimport, const char *const *export_,
                                  size_t nexport, msrt_error *err) {
  char *imp[MSRT_BRIDGE_PATTERNS_MAX], *exp[MSRT_BRIDGE_PATTERNS_MAX];
  size_t ni, ne;
  msrt_code rc = copy_patterns(import, nimport, imp, &ni, err);
  if (rc != MSRT_E_OK) return rc;
  rc = copy_patterns(export_, nexport, exp, &ne, err);
  if (rc != MSRT_E_OK) {
    while (ni) free(imp[--ni]);
    return rc;
  }
  /* exports: the new subscriptions first, so nothing is missed meanwhile
   * (a message matching both is exported twice at most, never lost) */
  uint64_t subs[MSRT_BRIDGE_PATTERNS_MAX];
  size_t ns = 0;
  /* one queue group for every export pattern: patterns that overlap
   * (">" and the "_INBOX.>" always added, "work.>" and "work.a") still
   * hand each message to the bridge once (router/index.h: one member per
   * group even across patterns) */
  static const char group[] = "_msrt_bridge_export";
  msrt_endpoint ep = {&msrt_bridge_export_class, b};
  for (size_t i = 0; i < ne && rc == MSRT_E_OK; i++)
    if ((rc = msrt_bus_subscribe(b->bus, exp[i], strlen(exp[i]), group,
                                 sizeof group - 1, ep, &subs[ns], err)) ==
        MSRT_E_OK)
      ns++;
  for (size_t i = 0; i < ne; i++) free(exp[i]);
  if (rc != MSRT_E_OK) {
    while (ns) msrt_bus_unsubscribe(b->bus, subs[--ns]);
    while (ni) free(imp[--ni]);
    return rc;
  }
  unexport(b);
  memcpy(b->export_subs, subs, ns * sizeof *subs);
  b->nexports = ns;
  pthread_mutex_lock(&b->mu);
  for (size_t i = 0; i < b->nimports; i++) free(b->imports[i]);
  memcpy(b->imports, imp, ni * sizeof *imp);
  b->nimports = ni;
  reconsider(b);
  pthread_mutex_unlock(&b->mu);
  return MSRT_E_OK;
}

static void bridge_free(void *p) {
  msrt_bridge *b = p;
  natsConnection_Destroy(b->nc);
  for (size_t i = 0; i < b->nimports; i++) free(b->imports[i]);
  for (size_t i = 0; i < b->nstored; i++) free(b->stored[i]);
  free(b->stored);
  free(b->pulls);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

/* Wait (the hub pumping libnats' socket, 1 ms at a time, at most ms)
 * until done(b). */
static void wait_for(msrt_bridge *b, bool (*done)(msrt_bridge *), int ms) {
  for (int i = 0; i < ms && !done(b); i++) msrt_bridge_pump(b, 1);
}

static bool subs_done(msrt_bridge *b) {
  pthread_mutex_lock(&b->mu);
  bool none = !b->retired;
  pthread_mutex_unlock(&b->mu);
  return none;
}

static bool closed_done(msrt_bridge *b) { return atomic_load(&b->closed_cb); }

static bool all_done(msrt_bridge *b) { return closed_done(b) && subs_done(b); }

/* A blocking libnats call made for the hub on another thread (flush: a
 * PONG; close: a last flush) while the hub pumps the socket it waits on. */
typedef struct {
  natsConnection *nc;
  int64_t ms; /* flush's timeout */
  bool close;
  natsStatus s;
  _Atomic bool done;
} hub_job;

static void *job_run(void *p) {
  hub_job *j = p;
  if (!j->close) j->s = natsConnection_FlushTimeout(j->nc, j->ms);
  else natsConnection_Close(j->nc);
  atomic_store(&j->done, true);
  return NULL;
}

/* Flush (within ms) or close b's connection from the hub. */
static natsStatus hub_job_run(msrt_bridge *b, int64_t ms, bool close) {
  hub_job j = {b->nc, ms, close, NATS_OK, false};
  pthread_t th;
  if (pthread_create(&th, NULL, job_run, &j) != 0) return NATS_NO_MEMORY;
  while (!atomic_load(&j.done)) msrt_bridge_pump(b, 1);
  pthread_join(th, NULL);
  msrt_bridge_pump(b, 0); /* what the job asked of the loop last */
  return j.s;
}

void msrt_bridge_close(msrt_bridge *b, msrt_bridge_last *last) {
  if (!b) return;
  msrt_bus_set_interest(b->bus, NULL); /* no hook call after this */
  unexport(b);
  atomic_store(&b->state, MSRT_BRIDGE_CLOSED);
  pthread_mutex_lock(&b->mu);
  keys_changing(b);
  for (bkey *k = b->keys, *n; k; k = n) {
    n = k->next;
    if (!key_unsubscribe(b, k)) key_free(k);
  }
  b->keys = NULL;
  pthread_mutex_unlock(&b->mu);
  hub_job_run(b, 1000, false); /* publishes and UNSUBs */
  /* the drains end as the hub takes what they hold (dropped_at_close) */
  wait_for(b, subs_done, DRAIN_MS + 500);
  hub_job_run(b, 0, true); /* its detach closes the loop's handles */
  msrt_bridge_retry(b);        /* closed: what was held counts refused */
  /* libnats' callbacks run on its threads after close: wait for what was
   * not drained to complete (the hub frees each key) and for the closed
   * callback, the connection's last */
  wait_for(b, all_done, 5000);
  if (last) {
    msrt_bridge_info_get(b, &last->info);
    last->nclasses = msrt_bridge_stats(b, last->stats, MSRT_CLASS_MAX);
  }
  msrt_bridge_announce(b, MSRT_BRIDGE_CLOSED);
  /* a publishing thread may still be in export_push (it matched the export
   * subscription before it went): free once every router reader has left;
   * a push meanwhile meets the closed connection (dropped_disconnected) */
  if (all_done(b))
    msrt_router_defer(msrt_bus_router(b->bus), bridge_free, b);
  /* else left allocated: a libnats callback may still run on it */
}

msrt_code msrt_bridge_flush(msrt_bridge *b, int64_t timeout_ms,
                            msrt_error *err) {
  natsStatus s = hub_job_run(b, timeout_ms, false);
  if (s == NATS_OK) return MSRT_E_OK;
  if (s == NATS_TIMEOUT)
    return msrt_error_set(err, MSRT_E_TIMEOUT, "nats flush: no answer from "
                          "the server within %lld ms", (long long)timeout_ms);
  return msrt_error_set(err, MSRT_E_CLOSED, "nats flush: %s",
                        natsStatus_GetText(s));
}

void msrt_bridge_info_get(msrt_bridge *b, msrt_bridge_info *out) {
  memset(out, 0, sizeof *out);
  out->state = (msrt_bridge_state)atomic_load(&b->state);
  out->reconnects = atomic_load(&b->reconnects);
  out->slow_consumer = atomic_load(&b->slow_consumer);
  out->loops = atomic_load(&b->loops);
  out->nats_subs = atomic_load(&b->nats_subs);
  out->slow_dropped = atomic_load(&b->slow_dropped_gone);
  natsStatistics *st = NULL;
  uint64_t in = 0;
  if (natsStatistics_Create(&st) == NATS_OK &&
      natsConnection_GetStats(b->nc, st) == NATS_OK)
    natsStatistics_GetCounts(st, &in, NULL, NULL, NULL, NULL);
  natsStatistics_Destroy(st);
  out->received = in;
  if (out->state == MSRT_BRIDGE_CONNECTED) {
    out->server_max_payload = natsConnection_GetMaxPayload(b->nc);
    natsConnection_GetConnectedUrl(b->nc, out->url, sizeof out->url);
  }
  out->max_payload = b->profile_max_payload;
  if (out->server_max_payload > 0 &&
      (size_t)out->server_max_payload < out->max_payload)
    out->max_payload = (size_t)out->server_max_payload;
  pthread_mutex_lock(&b->mu);
  if (atomic_load(&b->unwatched))
    snprintf(b->last_error, sizeof b->last_error,
             "the hub's loop could not watch the NATS socket");
  memcpy(out->last_error, b->last_error, sizeof out->last_error);
  for (bkey *k = b->keys; k; k = k->next) {
    int64_t d = 0;
    if (k->sub && natsSubscription_GetDropped(k->sub, &d) == NATS_OK)
      out->slow_dropped += (uint64_t)d;
  }
  pthread_mutex_unlock(&b->mu);
}

size_t msrt_bridge_stats(msrt_bridge *b, uint64_t (*out)[MSRT_BRIDGE__COUNT],
                         size_t cap) {
  size_t n = msrt_account_classes(msrt_router_account(msrt_bus_router(b->bus)),
                                  NULL, 0);
  for (size_t c = 0; c < n && c < cap && c < MSRT_CLASS_MAX; c++)
    for (int s = 0; s < MSRT_BRIDGE__COUNT; s++)
      out[c][s] = atomic_load_explicit(&b->stats[c][s], memory_order_relaxed);
  return n;
}
