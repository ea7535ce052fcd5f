/* A durable work queue in JetStream (bridge/js.h): its life, its events,
 * its thread (the stream, the consumer and the pulls) and its acks; the
 * endpoint and the PubAcks are in js_pub.c. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/js_internal.h"

/* ---- events ------------------------------------------------------------ */

int msrt_jsq_push_event(msrt_jsq *q, const msrt_jsq_event *ev) {
  pthread_mutex_lock(&q->mu);
  if (q->nev == q->capev) {
    size_t cap = q->capev ? q->capev * 2 : 64;
    msrt_jsq_event *v = realloc(q->ev, cap * sizeof *v);
    if (!v) {
      pthread_mutex_unlock(&q->mu);
      return -1;
    }
    q->ev = v, q->capev = cap;
  }
  q->ev[q->nev++] = *ev;
  if (ev->kind == MSRT_JSQ_MSG) q->queued++;
  int wake = !q->signalled;
  q->signalled = 1;
  pthread_mutex_unlock(&q->mu);
  if (wake) { /* one item per batch: the hub takes whatever came meanwhile */
    msrt_inbox_item it = {MSRT_IN_QUEUE, q->wake_id, NULL, NULL};
    msrt_bus_to_hub(q->bus, it);
  }
  return 0;
}

size_t msrt_jsq_take(msrt_jsq *q, msrt_jsq_event **ev) {
  pthread_mutex_lock(&q->mu);
  *ev = q->ev;
  size_t n = q->nev;
  q->ev = NULL, q->nev = q->capev = 0;
  q->room -= (int64_t)q->queued;
  q->queued = 0;
  q->signalled = 0;
  pthread_mutex_unlock(&q->mu);
  return n;
}

void msrt_jsq_events_free(msrt_jsq_event *ev, size_t n) {
  for (size_t i = 0; i < n; i++) {
    msrt_env_unref(ev[i].env);
    free(ev[i].ack);
    free(ev[i].reply);
  }
  free(ev);
}

void msrt_jsq_room(msrt_jsq *q, int64_t n) {
  pthread_mutex_lock(&q->mu);
  q->room = n;
  if (n > (int64_t)q->queued) pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

static void fail(msrt_jsq *q, msrt_code code, const char *what, natsStatus s,
                 jsErrCode jerr) {
  msrt_jsq_event ev = {.kind = MSRT_JSQ_FAILED, .code = code};
  const char *last = nats_GetLastError(NULL);
  char jcode[40] = "";
  if (jerr) snprintf(jcode, sizeof jcode, " (JetStream error %d)", (int)jerr);
  snprintf(ev.message, sizeof ev.message, "jetstream queue \"%s\": %s: %s%s",
           q->name, what, last && *last ? last : natsStatus_GetText(s), jcode);
  msrt_jsq_push_event(q, &ev);
}

/* ---- the stream and the consumer --------------------------------------- */

#define API_WAIT_MS 2000

static natsStatus make_stream(msrt_jsq *q, jsErrCode *jerr) {
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = q->name;
  sc.Subjects = (const char **)q->subjects;
  sc.SubjectsLen = (int)q->nsubjects;
  sc.Retention = js_WorkQueuePolicy;
  sc.Storage = js_FileStorage;
  if (q->cfg.max_msgs > 0) sc.MaxMsgs = q->cfg.max_msgs;
  if (q->cfg.max_bytes > 0) sc.MaxBytes = q->cfg.max_bytes;
  sc.Discard = q->cfg.discard_new ? js_DiscardNew : js_DiscardOld;
  sc.Duplicates = (q->cfg.dedupe_window_ms > 0 ? q->cfg.dedupe_window_ms
                                                 : 120000) * 1000000;
  natsStatus s = js_AddStream(NULL, q->js, &sc, NULL, jerr);
  /* nats-server 2.9 can answer a create racing another create of this
   * same stream (another host declaring the queue) with "subjects overlap"
   * (10065; 1 in ~20 rounds of 6 same-moment creates here): ask once more,
   * now that the stream is there. A real overlap fails again. */
  if (s != NATS_OK && *jerr == JSStreamSubjectOverlapErr)
    s = js_AddStream(NULL, q->js, &sc, NULL, jerr);
  if (s != NATS_OK && *jerr == JSStreamNameExistErr)
    s = js_UpdateStream(NULL, q->js, &sc, NULL, jerr);
  return s;
}

static natsStatus make_consumer(msrt_jsq *q, jsErrCode *jerr) {
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = q->name;
  cc.AckPolicy = js_AckExplicit;
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckWait = q->cfg.ack_wait_ms * 1000000;
  /* one delivery past max_deliver reaches a host, which dead-letters it;
   * JetStream wants more deliveries than backoff delays (the later ones
   * are never waited), and a bound with backoff: "no limit" is 2^31 - 1 */
  size_t nb = q->cfg.nbackoff < 64 ? q->cfg.nbackoff : 64;
  cc.MaxDeliver = q->cfg.max_deliver > 0 ? q->cfg.max_deliver + 1
                  : nb ? INT32_MAX : -1;
  if (nb >= (size_t)cc.MaxDeliver && cc.MaxDeliver > 0)
    nb = (size_t)cc.MaxDeliver - 1;
  int64_t backoff[64];
  for (size_t i = 0; i < nb; i++) backoff[i] = q->backoff[i] * 1000000;
  if (nb) cc.BackOff = backoff, cc.BackOffLen = (int)nb;
  cc.MaxAckPending = q->cfg.max_ack_pending > 0 ? q->cfg.max_ack_pending
                                                 : 1000;
  natsStatus s = js_AddConsumer(NULL, q->js, q->name, &cc, NULL, jerr);
  if (s != NATS_OK && (*jerr == JSConsumerNameExistErr || *jerr == 10148))
    s = js_UpdateConsumer(NULL, q->js, q->name, &cc, NULL, jerr);
  return s;
}

/* 0: ready; 1: try again (not connected yet, no answer); -1: failed. */
static int setup(msrt_jsq *q) {
  if (natsConnection_Status(q->b->nc) != NATS_CONN_STATUS_CONNECTED) return 1;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = API_WAIT_MS;
  jsErrCode jerr = 0;
  natsStatus s = q->js ? NATS_OK : natsConnection_JetStream(&q->js, q->b->nc,
                                                            &jo);
  if (s == NATS_OK) s = make_stream(q, &jerr);
  const char *what = "making its stream";
  if (s == NATS_OK) s = make_consumer(q, &jerr), what = "making its consumer";
  if (s == NATS_OK) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = q->name;
    so.Consumer = q->name;
    s = js_PullSubscribe(&q->pull, q->js, q->subjects[0], q->name, NULL, &so,
                         &jerr);
    what = "binding its consumer";
  }
  if (s == NATS_OK) return 0;
  if (s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED ||
      s == NATS_CONNECTION_DISCONNECTED)
    return 1;
  fail(q, s == NATS_NO_RESPONDERS ? MSRT_E_NO_RESPONDERS : MSRT_E_BAD_CONFIG,
       s == NATS_NO_RESPONDERS ? "JetStream does not answer (is the server "
                                 "run with -js?)" : what, s, jerr);
  return -1;
}

/* ---- the thread -------------------------------------------------------- */

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* JetStream's counts of the stream and the consumer, once a second. */
static void refresh_info(msrt_jsq *q) {
  int64_t t = now_ms();
  if (t - q->info_at_ms < 1000) return;
  q->info_at_ms = t;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = API_WAIT_MS;
  jsStreamInfo *si = NULL;
  jsConsumerInfo *ci = NULL;
  if (js_GetStreamInfo(&si, q->js, q->name, &jo, NULL) == NATS_OK) {
    atomic_store(&q->st.stored, si->State.Msgs);
    atomic_store(&q->st.bytes, si->State.Bytes);
    atomic_store(&q->st.last_seq, si->State.LastSeq);
    jsStreamInfo_Destroy(si);
  }
  if (js_GetConsumerInfo(&ci, q->js, q->name, q->name, &jo, NULL) == NATS_OK) {
    atomic_store(&q->st.pending, ci->NumPending);
    atomic_store(&q->st.ack_pending_all, (uint64_t)ci->NumAckPending);
    jsConsumerInfo_Destroy(ci);
  }
}

/* Wait on the queue's condition at most ms (q->mu held). */
static void wait_ms(msrt_jsq *q, int ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_nsec += (long)ms * 1000000;
  t.tv_sec += t.tv_nsec / 1000000000;
  t.tv_nsec %= 1000000000;
  pthread_cond_timedwait(&q->cv, &q->mu, &t);
}

static void hand_over(msrt_jsq *q, natsMsg *m) {
  msrt_jsq_event ev = {.kind = MSRT_JSQ_MSG};
  jsMsgMetaData *meta = NULL;
  msrt_error err;
  const char *ack = natsMsg_GetReply(m);
  if (ack && natsMsg_GetMetaData(&meta, m) == NATS_OK) {
    ev.seq = meta->Sequence.Stream;
    ev.delivered = meta->NumDelivered;
    jsMsgMetaData_Destroy(meta);
    ev.env = msrt_bridge_wire_in(q->b, m, NULL, &err);
    ev.ack = strdup(ack);
  }
  atomic_fetch_add(&q->st.pulled, 1);
  if (!ev.env || !ev.ack || msrt_jsq_push_event(q, &ev) != 0) {
    /* nothing the hub can hold: JetStream redelivers it after its wait */
    msrt_env_unref(ev.env);
    free(ev.ack);
  }
}

static void run_queue(msrt_jsq *q) {
  int rc = 1;
  pthread_mutex_lock(&q->mu);
  while (!q->closing && rc == 1) {
    pthread_mutex_unlock(&q->mu);
    rc = setup(q);
    pthread_mutex_lock(&q->mu);
    if (rc == 1 && !q->closing) wait_ms(q, 100);
  }
  pthread_mutex_unlock(&q->mu);
  if (rc != 0) return;
  msrt_jsq_event ready = {.kind = MSRT_JSQ_READY};
  msrt_jsq_push_event(q, &ready);
  for (;;) {
    refresh_info(q);
    pthread_mutex_lock(&q->mu);
    if (!q->closing && q->room <= (int64_t)q->queued) wait_ms(q, 1000);
    int64_t want = q->room - (int64_t)q->queued;
    bool closing = q->closing;
    pthread_mutex_unlock(&q->mu);
    if (closing) break;
    if (want <= 0) continue;
    natsMsgList list = {0};
    atomic_fetch_add(&q->st.pulls, 1);
    natsStatus s = natsSubscription_Fetch(&list, q->pull,
                                          want > 256 ? 256 : (int)want,
                                          MSRT_JSQ_PULL_MS, NULL);
    for (int i = 0; i < list.Count; i++) {
      hand_over(q, list.Msgs[i]);
    }
    natsMsgList_Destroy(&list);
    if (s != NATS_OK && s != NATS_TIMEOUT) { /* disconnected: after a pause */
      pthread_mutex_lock(&q->mu);
      if (!q->closing) wait_ms(q, MSRT_JSQ_PULL_MS);
      pthread_mutex_unlock(&q->mu);
    }
  }
}

static void *run(void *arg) {
  msrt_jsq *q = arg;
  run_queue(q);
  atomic_store(&q->ended, true);
  return NULL;
}

/* ---- life -------------------------------------------------------------- */

static void jsq_free(msrt_jsq *q) {
  for (size_t i = 0; i < q->nsubjects; i++) free(q->subjects[i]);
  free(q->subjects);
  free(q->backoff);
  free(q->name);
  size_t n;
  msrt_jsq_event *ev;
  n = msrt_jsq_take(q, &ev);
  msrt_jsq_events_free(ev, n);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

void msrt_jsq_ref(msrt_jsq *q) { atomic_fetch_add(&q->refs, 1); }

void msrt_jsq_unref(msrt_jsq *q) {
  if (q && atomic_fetch_sub(&q->refs, 1) == 1) jsq_free(q);
}

static char *dup_or_fail(const char *s, bool *oom) {
  char *c = s ? strdup(s) : NULL;
  if (s && !c) *oom = true;
  return c;
}

/* Claim q's patterns on its bridge and start its thread; on failure
 * neither. */
static msrt_code start(msrt_jsq *q, msrt_error *err) {
  const char *const *p = (const char *const *)q->subjects;
  if (msrt_bridge_store_patterns(q->b, p, q->nsubjects, true) != 0)
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  int rc = pthread_create(&q->th, NULL, run, q);
  if (rc == 0) return MSRT_E_OK;
  msrt_bridge_store_patterns(q->b, p, q->nsubjects, false);
  return msrt_error_set(err, MSRT_E_NOMEM, "jetstream queue \"%s\": could "
                        "not start its thread: %s", q->name, strerror(rc));
}

msrt_code msrt_jsq_open(msrt_bridge *b, const msrt_jsq_config *c,
                        msrt_jsq **out, msrt_error *err) {
  if (!c->name || !*c->name || !c->nsubjects || c->ack_wait_ms <= 0)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "a jetstream queue needs "
                          "a name, subjects and a positive ack wait");
  msrt_jsq *q = calloc(1, sizeof *q);
  if (!q) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  bool oom = false;
  q->b = b, q->bus = b->bus, q->cfg = *c, q->wake_id = c->wake_id;
  atomic_init(&q->refs, 1);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  q->name = dup_or_fail(c->name, &oom);
  q->subjects = calloc(c->nsubjects, sizeof *q->subjects);
  q->backoff = calloc(c->nbackoff + 1, sizeof *q->backoff);
  oom |= !q->subjects || !q->backoff;
  for (size_t i = 0; !oom && i < c->nsubjects; i++, q->nsubjects++)
    q->subjects[i] = dup_or_fail(c->subjects[i], &oom);
  for (size_t i = 0; !oom && i < c->nbackoff; i++) q->backoff[i] = c->backoff_ms[i];
  if (oom || msrt_jsq_pub_open(q, err) != MSRT_E_OK) {
    if (oom) msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    jsq_free(q);
    return err ? err->code : MSRT_E_NOMEM;
  }
  if (start(q, err) != MSRT_E_OK) {
    msrt_jsq_pub_close(q);
    msrt_jsq_unref(q);
    return err ? err->code : MSRT_E_NOMEM;
  }
  *out = q;
  return MSRT_E_OK;
}

void msrt_jsq_close(msrt_jsq *q) {
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  q->closing = true;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  atomic_store(&q->closed, true);
  /* its last request or pull may wait for an answer the hub reads */
  while (!atomic_load(&q->ended)) msrt_bridge_pump(q->b, 1);
  pthread_join(q->th, NULL);
  msrt_bridge_store_patterns(q->b, (const char *const *)q->subjects,
                             q->nsubjects, false);
  if (q->pull) {
    natsSubscription_Unsubscribe(q->pull); /* bound: the consumer stays */
    natsSubscription_Destroy(q->pull);
  }
  jsCtx_Destroy(q->js);
  msrt_jsq_pub_close(q);
  msrt_jsq_unref(q);
}

/* ---- acks and counts --------------------------------------------------- */

msrt_code msrt_jsq_ack(msrt_jsq *q, const char *ack, msrt_jsq_op op,
                       int64_t delay_ms, msrt_error *err) {
  /* JetStream's ack protocol (docs.nats.io, "JetStream wire API
   * reference", acknowledging messages) */
  char body[64];
  switch (op) {
  case MSRT_JSQ_ACK: snprintf(body, sizeof body, "+ACK"); break;
  case MSRT_JSQ_WPI: snprintf(body, sizeof body, "+WPI"); break;
  case MSRT_JSQ_TERM: snprintf(body, sizeof body, "+TERM"); break;
  default:
    if (delay_ms > 0)
      snprintf(body, sizeof body, "-NAK {\"delay\": %lld}",
               (long long)delay_ms * 1000000);
    else snprintf(body, sizeof body, "-NAK");
  }
  natsStatus s = natsConnection_PublishString(q->b->nc, ack, body);
  if (s == NATS_OK) return MSRT_E_OK;
  return msrt_error_set(err, MSRT_E_NETWORK, "jetstream queue \"%s\": %s",
                        q->name, natsStatus_GetText(s));
}

void msrt_jsq_stats_get(msrt_jsq *q, msrt_jsq_stats *out) {
  out->published = atomic_load(&q->st.published);
  out->accepted = atomic_load(&q->st.accepted);
  out->stored = atomic_load(&q->st.stored);
  out->bytes = atomic_load(&q->st.bytes);
  out->last_seq = atomic_load(&q->st.last_seq);
  out->pending = atomic_load(&q->st.pending);
  out->ack_pending_all = atomic_load(&q->st.ack_pending_all);
  out->duplicates = atomic_load(&q->st.duplicates);
  out->refused = atomic_load(&q->st.refused);
  out->pulled = atomic_load(&q->st.pulled);
  out->pulls = atomic_load(&q->st.pulls);
}
