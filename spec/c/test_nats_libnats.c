/* A client nobody here wrote: Debian's libnats against msrt's NATS
 * listener (src/nats/listen.h) over TCP. The listener runs on a loop of
 * its own thread (as on the hub); libnats runs its own threads. Checks
 * credentials, wildcards, a queue group, request/reply, headers, the
 * no-responders status and a denied publish in NATS' words. */
#include <nats/nats.h>
#include <pthread.h>
#include <stdlib.h>
#include <uv.h>

#include "bus/bus.h"
#include "ctest.h"
#include "nats/auth.h"
#include "nats/listen.h"

static struct {
  uv_loop_t loop;
  msrt_router *router;
  msrt_inbox *inbox;
  msrt_bus *bus;
  msrt_nats_server *srv;
  msrt_nats_listener *l;
  msrt_nats_policy *pol;
  uv_async_t stop;
  pthread_t hub;
  char url[64];
} H;

static void drain(msrt_inbox_item *items, size_t n, void *ud) {
  (void)ud;
  for (size_t i = 0; i < n; i++) msrt_env_unref(items[i].env);
}

static void on_stop(uv_async_t *a) {
  msrt_nats_listener_close(H.l);
  msrt_nats_server_close(H.srv);
  msrt_inbox_close(H.inbox);
  uv_close((uv_handle_t *)a, NULL);
}

static void *hub_main(void *arg) {
  (void)arg;
  uv_run(&H.loop, UV_RUN_DEFAULT);
  return NULL;
}

static void start_hub(void) {
  CHECK(uv_loop_init(&H.loop) == 0);
  H.router = msrt_router_new(NULL);
  H.inbox = msrt_inbox_new(&H.loop, drain, NULL);
  msrt_bus_limits lim = {1024 * 1024, 0};
  H.bus = msrt_bus_new(H.router, H.inbox, &lim);
  H.srv = msrt_nats_server_new(&H.loop, H.bus, NULL, NULL);
  const char *pub[] = {"t.>", "q.>", "svc.>", "h.>", "nobody", "_INBOX.>"};
  msrt_nats_user u = {.user = "ann", .password = "pw", .pub_allow = pub,
                      .n_pub_allow = 6, .allow_responses = true};
  H.pol = msrt_nats_policy_new(&u, 1, NULL);
  msrt_nats_auth au = msrt_nats_policy_auth(H.pol);
  msrt_nats_server_set_auth(H.srv, &au);
  msrt_error err;
  H.l = msrt_nats_listen(H.srv, "127.0.0.1:0", NULL, &err);
  CHECK(H.l != NULL);
  snprintf(H.url, sizeof H.url, "nats://ann:pw@127.0.0.1:%d",
           msrt_nats_listener_port(H.l));
  uv_async_init(&H.loop, &H.stop, on_stop);
  pthread_create(&H.hub, NULL, hub_main, NULL);
}

static void stop_hub(void) {
  uv_async_send(&H.stop);
  pthread_join(H.hub, NULL);
  CHECK(uv_loop_close(&H.loop) == 0);
  msrt_nats_policy_free(H.pol);
  msrt_bus_free(H.bus);
  msrt_inbox_free(H.inbox);
  msrt_router_free(H.router);
}

/* written by libnats' thread, read by the test's: under err_mu */
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_err[256];
static void last_error(char *out, size_t n) {
  pthread_mutex_lock(&err_mu);
  snprintf(out, n, "%s", last_err);
  pthread_mutex_unlock(&err_mu);
}
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus s,
                     void *ud) {
  (void)sub, (void)s, (void)ud;
  const char *text = NULL;
  natsConnection_GetLastError(nc, &text);
  pthread_mutex_lock(&err_mu);
  if (text) snprintf(last_err, sizeof last_err, "%s", text);
  pthread_mutex_unlock(&err_mu);
}

static natsConnection *connect_as(const char *url) {
  natsOptions *o = NULL;
  natsConnection *nc = NULL;
  natsOptions_Create(&o);
  natsOptions_SetURL(o, url);
  natsOptions_SetErrorHandler(o, on_error, NULL);
  natsOptions_SetMaxReconnect(o, 0);
  natsStatus s = natsConnection_Connect(&nc, o);
  natsOptions_Destroy(o);
  return s == NATS_OK ? nc : NULL;
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                       void *ud) {
  (void)sub, (void)ud;
  char out[64];
  snprintf(out, sizeof out, "re: %.*s", natsMsg_GetDataLength(m),
           natsMsg_GetData(m));
  natsConnection_PublishString(nc, natsMsg_GetReply(m), out);
  natsMsg_Destroy(m);
}

static int next_data(natsSubscription *s, const char *want) {
  natsMsg *m = NULL;
  if (natsSubscription_NextMsg(&m, s, 5000) != NATS_OK) return 0;
  int ok = natsMsg_GetDataLength(m) == (int)strlen(want) &&
           !memcmp(natsMsg_GetData(m), want, strlen(want));
  natsMsg_Destroy(m);
  return ok;
}

static void test_libnats(void) {
  start_hub();
  /* credentials: a wrong password is refused */
  char bad[80];
  snprintf(bad, sizeof bad, "nats://ann:nope@%s", strchr(H.url, '@') + 1);
  CHECK(connect_as(bad) == NULL);
  natsConnection *nc = connect_as(H.url);
  CHECK(nc != NULL);
  if (!nc) {
    stop_hub();
    return;
  }
  /* wildcards */
  natsSubscription *star = NULL, *full = NULL;
  natsConnection_SubscribeSync(&star, nc, "t.*");
  natsConnection_SubscribeSync(&full, nc, "t.>");
  natsConnection_PublishString(nc, "t.a", "one");
  natsConnection_PublishString(nc, "t.a.b", "two");
  CHECK(next_data(star, "one"));
  CHECK(next_data(full, "one"));
  CHECK(next_data(full, "two"));
  /* a queue group of two: ten messages, ten deliveries */
  natsSubscription *q1 = NULL, *q2 = NULL;
  natsConnection_QueueSubscribeSync(&q1, nc, "q.x", "g");
  natsConnection_QueueSubscribeSync(&q2, nc, "q.x", "g");
  for (int i = 0; i < 10; i++) natsConnection_PublishString(nc, "q.x", "m");
  natsConnection_Flush(nc);
  int n = 0;
  natsMsg *m;
  while (natsSubscription_NextMsg(&m, q1, 200) == NATS_OK) n++, natsMsg_Destroy(m);
  while (natsSubscription_NextMsg(&m, q2, 200) == NATS_OK) n++, natsMsg_Destroy(m);
  CHECK(n == 10);
  /* request/reply, to a responder on another connection */
  natsConnection *rc = connect_as(H.url);
  natsSubscription *resp = NULL;
  natsConnection_Subscribe(&resp, rc, "svc.echo", on_request, NULL);
  natsConnection_Flush(rc);
  natsMsg *reply = NULL;
  CHECK(natsConnection_RequestString(&reply, nc, "svc.echo", "hi", 5000) ==
        NATS_OK);
  CHECK(reply && natsMsg_GetDataLength(reply) == 6 &&
        !memcmp(natsMsg_GetData(reply), "re: hi", 6));
  natsMsg_Destroy(reply);
  /* no responders: at once */
  reply = NULL;
  CHECK(natsConnection_RequestString(&reply, nc, "nobody", "?", 5000) ==
        NATS_NO_RESPONDERS);
  /* headers */
  natsSubscription *hs = NULL;
  natsConnection_SubscribeSync(&hs, nc, "h.x");
  natsMsg *hm = NULL;
  natsMsg_Create(&hm, "h.x", NULL, "body", 4);
  natsMsgHeader_Set(hm, "X-Trace", "42");
  natsConnection_PublishMsg(nc, hm);
  natsMsg_Destroy(hm);
  natsMsg *got = NULL;
  const char *v = NULL;
  CHECK(natsSubscription_NextMsg(&got, hs, 5000) == NATS_OK);
  CHECK(got && natsMsgHeader_Get(got, "X-Trace", &v) == NATS_OK && v &&
        !strcmp(v, "42"));
  natsMsg_Destroy(got);
  /* a denied publish: NATS' words through the error handler */
  natsConnection_PublishString(nc, "admin.reset", "x");
  natsConnection_Flush(nc);
  char err[256] = "";
  for (int i = 0; i < 500 && !err[0]; i++) {
    last_error(err, sizeof err);
    if (!err[0]) nats_Sleep(10);
  }
  CHECK(strstr(err, "Permissions Violation for Publish to \"admin.reset\"") != NULL);
  if (!strstr(err, "Permissions Violation")) fprintf(stderr, "  last error: %s\n", err);
  natsSubscription_Destroy(star), natsSubscription_Destroy(full);
  natsSubscription_Destroy(q1), natsSubscription_Destroy(q2);
  natsSubscription_Destroy(hs), natsSubscription_Destroy(resp);
  natsConnection_Destroy(rc);
  natsConnection_Destroy(nc);
  stop_hub();
  nats_Close();
}

TEST_MAIN(test_libnats)
