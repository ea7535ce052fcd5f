/* A JetStream queue's endpoint and its PubAcks (bridge/js.h
 * "Publishing"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/js_internal.h"
#include "proc/codec.h"

/* ---- PubAcks ----------------------------------------------------------- */

/* The server's answer: {"stream", "seq", "duplicate"} or {"error":
 * {"code", "err_code", "description"}} (JetStream's PubAck). */
static void read_ack(natsMsg *m, msrt_jsq_event *ev) {
  if (natsMsg_IsNoResponders(m)) {
    ev->code = MSRT_E_NO_RESPONDERS;
    snprintf(ev->message, sizeof ev->message,
             "no JetStream stream answered for \"%s\"", ev->reply ? ev->reply
                                                                   : "");
    return;
  }
  cJSON *v = cJSON_ParseWithLength(natsMsg_GetData(m),
                                   (size_t)natsMsg_GetDataLength(m));
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "error");
  const cJSON *seq = cJSON_GetObjectItemCaseSensitive(v, "seq");
  if (!e && cJSON_IsNumber(seq)) {
    ev->seq = (uint64_t)seq->valuedouble;
    ev->duplicate = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v,
                                                                  "duplicate"));
  } else {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "description");
    const char *text = cJSON_IsString(d) ? d->valuestring
                                         : "an answer that is not a PubAck";
    /* a limit with discard new ("maximum messages exceeded", "... bytes
     * exceeded"); anything else the store's failure */
    ev->code = strstr(text, "exceeded") || strstr(text, "limit")
                   ? MSRT_E_RESOURCE_EXHAUSTED : MSRT_E_IO;
    snprintf(ev->message, sizeof ev->message, "jetstream: %s", text);
  }
  cJSON_Delete(v);
}

static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                   void *closure) {
  (void)nc, (void)sub;
  msrt_jsq *q = closure;
  const char *subj = natsMsg_GetSubject(m);
  size_t n = strlen(q->inbox);
  msrt_jsq_event ev = {.kind = MSRT_JSQ_PUBACK, .code = MSRT_E_OK};
  if (strncmp(subj, q->inbox, n) == 0 && strncmp(subj + n, ".R.", 3) == 0)
    ev.reply = strdup(subj + n + 3);
  read_ack(m, &ev);
  msrt_bridge_msg_free(m); /* (internal.h: not through libnats' collector) */
  if (ev.code != MSRT_E_OK) atomic_fetch_add(&q->st.refused, 1);
  else if (ev.duplicate) atomic_fetch_add(&q->st.duplicates, 1);
  else atomic_fetch_add(&q->st.accepted, 1);
  if (!ev.reply || atomic_load(&q->closed) || msrt_jsq_push_event(q, &ev))
    free(ev.reply); /* no one waits for it */
}

static void inbox_done(void *closure) { msrt_jsq_unref(closure); }

msrt_code msrt_jsq_pub_open(msrt_jsq *q, msrt_error *err) {
  char tok[MSRT_TOKEN_LEN + 1];
  if (msrt_token(tok) != MSRT_E_OK)
    return msrt_error_set(err, MSRT_E_INTERNAL, "no random token");
  snprintf(q->inbox, sizeof q->inbox, "_INBOX.%s", tok);
  char pattern[sizeof q->inbox + 2];
  snprintf(pattern, sizeof pattern, "%s.>", q->inbox);
  natsStatus s = natsConnection_Subscribe(&q->inbox_sub, q->b->nc, pattern,
                                          on_ack, q);
  if (s != NATS_OK)
    return msrt_error_set(err, MSRT_E_NETWORK, "jetstream queue \"%s\": its "
                          "PubAck inbox: %s", q->name, natsStatus_GetText(s));
  natsSubscription_SetPendingLimits(q->inbox_sub, -1, -1);
  msrt_jsq_ref(q);
  natsSubscription_SetOnCompleteCB(q->inbox_sub, inbox_done, q);
  return MSRT_E_OK;
}

void msrt_jsq_pub_close(msrt_jsq *q) {
  if (!q->inbox_sub) return;
  natsSubscription_Unsubscribe(q->inbox_sub); /* then inbox_done */
  natsSubscription_Destroy(q->inbox_sub);
  q->inbox_sub = NULL;
}

/* ---- the endpoint ------------------------------------------------------ */

/* A publish that never reached JetStream: its publisher is told at once. */
static void refuse(msrt_jsq *q, const msrt_envelope *e, natsStatus s) {
  atomic_fetch_add(&q->st.refused, 1);
  if (!e->reply) return;
  msrt_jsq_event ev = {.kind = MSRT_JSQ_PUBACK,
                       .code = s == NATS_OK ? MSRT_E_INVALID_ARG
                                            : MSRT_E_NETWORK};
  ev.reply = strndup(e->reply, e->reply_len);
  snprintf(ev.message, sizeof ev.message, "jetstream queue \"%s\": %s",
           q->name, s == NATS_OK ? "the data cannot be sent as JSON"
                                 : natsStatus_GetText(s));
  if (!ev.reply || msrt_jsq_push_event(q, &ev)) free(ev.reply);
}

static msrt_push_outcome jsq_push(void *ep, msrt_envelope *e,
                                  const msrt_evict_sink *evicted,
                                  msrt_bus *bus) {
  (void)evicted, (void)bus;
  msrt_jsq *q = ep;
  if (atomic_load(&q->closed)) return MSRT_PUSH_CLOSED;
  /* the reply names the local reply: the PubAck finds its publisher
   * without any table (subjects' tokens are valid here as they are) */
  char *reply = malloc(strlen(q->inbox) + 4 + (e->reply ? e->reply_len : 0));
  if (!reply) return MSRT_PUSH_FAILED;
  if (e->reply)
    sprintf(reply, "%s.R.%.*s", q->inbox, (int)e->reply_len, e->reply);
  else sprintf(reply, "%s.N", q->inbox);
  natsMsg *m;
  natsStatus s = NATS_OK;
  int rc = msrt_bridge_wire_out(q->b, e, reply, true, &m, &s);
  free(reply);
  if (rc == 0) s = natsConnection_PublishMsg(q->b->nc, m);
  msrt_bridge_msg_free(m); /* (internal.h: not through libnats' collector) */
  if (rc == 0 && s == NATS_OK) atomic_fetch_add(&q->st.published, 1);
  else refuse(q, e, rc < 0 ? NATS_OK : s);
  return MSRT_PUSH_DELIVERED;
}

static void jsq_ref(void *ep) { msrt_jsq_ref(ep); }
static void jsq_unref(void *ep) { msrt_jsq_unref(ep); }

static msrt_overflow jsq_policy(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_ERROR;
}

static void jsq_name(void *ep, char *buf, size_t cap) {
  snprintf(buf, cap, "queue %s", ((msrt_jsq *)ep)->name);
}

static const msrt_endpoint_class jsq_class = {
    .class_name = "queue", .push = jsq_push, .ref = jsq_ref,
    .unref = jsq_unref, .policy = jsq_policy, .name = jsq_name,
    .remote = true};

msrt_endpoint msrt_ep_jsq(msrt_jsq *q) {
  return (msrt_endpoint){&jsq_class, q};
}
