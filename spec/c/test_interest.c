/* src/bus interest (bus/interest.h): keys per distinct pattern and queue
 * group, on and off as subscriptions come and go and readiness changes, a
 * hook installed late hearing what is on, a remote class making no
 * interest, publish_key reaching only its key's subscriptions (and one
 * ready member of its group), local_groups naming the ready groups a
 * subject reaches, and the accounting identity after each. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bus/bus.h"
#include "bus/interest.h"
#include "ctest.h"

/* The class msrt_bus_publish_key takes: the envelope's subject's. */
#define CLS(e) msrt_bus_class(bus, (e)->subject, (e)->subject_len)

/* A counting endpoint: each object is an int counter. */
static msrt_push_outcome count_push(void *ep, msrt_envelope *e,
                                    const msrt_evict_sink *ev, msrt_bus *b) {
  (void)e, (void)ev, (void)b;
  ++*(int *)ep;
  return MSRT_PUSH_DELIVERED;
}
static msrt_overflow count_policy(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_DROP_NEWEST;
}
static void count_name(void *ep, char *buf, size_t cap) {
  (void)ep;
  snprintf(buf, cap, "counter");
}
static const msrt_endpoint_class COUNT = {
    .class_name = "counter", .push = count_push, .policy = count_policy,
    .name = count_name};
static const msrt_endpoint_class REMOTE = {
    .class_name = "remote", .push = count_push, .policy = count_policy,
    .name = count_name, .remote = true};

typedef struct {
  int n;
  struct {
    uint32_t key;
    char pattern[32], queue[32];
    bool on;
  } ev[32];
} events;

static void changed(void *ud, uint32_t key, const char *pattern,
                    const char *queue, bool on) {
  events *e = ud;
  if (e->n == 32) return;
  e->ev[e->n].key = key;
  snprintf(e->ev[e->n].pattern, 32, "%s", pattern);
  snprintf(e->ev[e->n].queue, 32, "%s", queue ? queue : "");
  e->ev[e->n].on = on;
  e->n++;
}

static void no_drain(msrt_inbox_item *items, size_t n, void *ud) {
  (void)ud;
  for (size_t i = 0; i < n; i++) msrt_env_unref(items[i].env);
}

static uv_loop_t loop;
static msrt_router *router;
static msrt_inbox *inbox;
static msrt_bus *bus;

static void setup(void) {
  CHECK(uv_loop_init(&loop) == 0);
  router = msrt_router_new(NULL);
  inbox = msrt_inbox_new(&loop, no_drain, NULL);
  msrt_bus_limits lim = {1024, 0};
  bus = msrt_bus_new(router, inbox, &lim);
  CHECK(router && inbox && bus);
}

static void teardown(void) {
  msrt_bus_free(bus);
  msrt_inbox_close(inbox);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  msrt_inbox_free(inbox);
  msrt_router_free(router);
}

static uint64_t sub(const char *p, const char *q, int *counter,
                    const msrt_endpoint_class *cls) {
  uint64_t id = 0;
  msrt_error err;
  CHECK(msrt_bus_subscribe(bus, p, strlen(p), q, q ? strlen(q) : 0,
                           (msrt_endpoint){cls, counter}, &id,
                           &err) == MSRT_E_OK);
  return id;
}

static void identity_holds(void) {
  msrt_router_stats s;
  msrt_account_read(msrt_router_account(router), &s);
  CHECK(s.v[MSRT_STAT_ACCEPTED] ==
        s.v[MSRT_STAT_DELIVERED] + s.dropped + s.v[MSRT_STAT_DEAD_LETTERED] +
            s.v[MSRT_STAT_REFUSED] + s.v[MSRT_STAT_NO_RESPONDERS]);
}

static void test_keys_on_and_off(void) {
  setup();
  events ev = {0};
  int a = 0, b = 0, c = 0, r = 0;
  uint64_t s1 = sub("work.*", NULL, &a, &COUNT);
  sub("remote.>", NULL, &r, &REMOTE); /* no interest */
  msrt_interest_hook hook = {changed, &ev};
  msrt_bus_set_interest(bus, &hook); /* hears work.* at once */
  CHECK(ev.n == 1 && ev.ev[0].on && strcmp(ev.ev[0].pattern, "work.*") == 0);
  uint64_t s2 = sub("work.*", NULL, &b, &COUNT); /* same key: no event */
  CHECK(ev.n == 1);
  uint64_t q1 = sub("job.run", "g", &a, &COUNT);
  uint64_t q2 = sub("job.run", "g", &b, &COUNT);
  CHECK(ev.n == 2 && strcmp(ev.ev[1].queue, "g") == 0 && ev.ev[1].on);
  uint32_t qkey = ev.ev[1].key;
  CHECK(msrt_bus_set_ready(bus, q1, false) == MSRT_E_OK && ev.n == 2);
  CHECK(msrt_bus_set_ready(bus, q2, false) == MSRT_E_OK);
  CHECK(ev.n == 3 && ev.ev[2].key == qkey && !ev.ev[2].on); /* withdrawn */
  char groups[64];
  CHECK(msrt_bus_local_groups(bus, "job.run", groups, sizeof groups) == 0);
  CHECK(msrt_bus_set_ready(bus, q2, true) == MSRT_E_OK);
  CHECK(ev.n == 4 && ev.ev[3].on);
  CHECK(msrt_bus_local_groups(bus, "job.run", groups, sizeof groups) == 1 &&
        strcmp(groups, "g") == 0);
  CHECK(msrt_bus_local_groups(bus, "job.other", groups, sizeof groups) == 0);
  CHECK(msrt_bus_unsubscribe(bus, s1) == MSRT_E_OK && ev.n == 4);
  CHECK(msrt_bus_unsubscribe(bus, s2) == MSRT_E_OK);
  CHECK(ev.n == 5 && !ev.ev[4].on && strcmp(ev.ev[4].pattern, "work.*") == 0);
  msrt_bus_unsubscribe(bus, q1);
  msrt_bus_unsubscribe(bus, q2);
  CHECK(ev.n == 6 && !ev.ev[5].on);
  sub("late.x", NULL, &c, &COUNT);
  msrt_bus_set_interest(bus, NULL); /* no more events */
  CHECK(ev.n == 7);
  sub("later.x", NULL, &c, &COUNT);
  CHECK(ev.n == 7);
  teardown();
}

static void test_publish_key(void) {
  setup();
  events ev = {0};
  msrt_interest_hook hook = {changed, &ev};
  msrt_bus_set_interest(bus, &hook);
  int plain = 0, other = 0, m1 = 0, m2 = 0, r = 0;
  uint64_t splain = sub("work.>", NULL, &plain, &COUNT);
  uint32_t kplain = ev.ev[0].key;
  sub("work.a", NULL, &other, &COUNT);
  sub("work.a", "g", &m1, &COUNT);
  uint32_t kq = ev.ev[2].key;
  sub("work.a", "g", &m2, &COUNT);
  sub("work.>", NULL, &r, &REMOTE); /* the bridge's export: never a key */
  msrt_error err;
  size_t n;
  msrt_envelope *e = msrt_bus_make(bus, "work.a", 6, NULL, 0, NULL, 0, "x",
                                   1, 5, 0, &err);
  for (int i = 0; i < 10; i++)
    CHECK(msrt_bus_publish_key(bus, e, kplain, CLS(e), &n, NULL, &err) == MSRT_E_OK &&
          n == 1);
  for (int i = 0; i < 10; i++)
    CHECK(msrt_bus_publish_key(bus, e, kq, CLS(e), &n, NULL, &err) == MSRT_E_OK && n == 1);
  msrt_env_unref(e);
  /* the plain key's subscription only; one member of the group each time,
   * round robin; neither the other key's nor the remote one */
  CHECK(plain == 10 && other == 0 && r == 0);
  CHECK(m1 + m2 == 10 && m1 > 0 && m2 > 0);
  /* a match remembered for the plain key's run of messages follows its
   * subscriptions: a second one of the key is delivered to at once, and
   * once both are gone nothing is */
  int plain2 = 0;
  uint64_t s2 = sub("work.>", NULL, &plain2, &COUNT);
  e = msrt_bus_make(bus, "work.a", 6, NULL, 0, NULL, 0, "x", 1, 5, 0, &err);
  CHECK(msrt_bus_publish_key(bus, e, kplain, CLS(e), &n, NULL, &err) ==
            MSRT_E_OK && n == 2 && plain == 11 && plain2 == 1);
  CHECK(msrt_bus_unsubscribe(bus, splain) == MSRT_E_OK);
  CHECK(msrt_bus_publish_key(bus, e, kplain, CLS(e), &n, NULL, &err) ==
            MSRT_E_OK && n == 1 && plain == 11 && plain2 == 2);
  CHECK(msrt_bus_unsubscribe(bus, s2) == MSRT_E_OK);
  CHECK(msrt_bus_publish_key(bus, e, kplain, CLS(e), &n, NULL, &err) ==
            MSRT_E_OK && n == 0 && plain2 == 2);
  msrt_env_unref(e);
  /* a key with nothing matching any more: accepted and no_responders */
  e = msrt_bus_make(bus, "work.b", 6, NULL, 0, NULL, 0, "x",
                                   1, 5, 0, &err);
  CHECK(msrt_bus_publish_key(bus, e, kq, CLS(e), &n, NULL, &err) == MSRT_E_OK && n == 0);
  msrt_env_unref(e);
  identity_holds();
  teardown();
}

TEST_MAIN(test_keys_on_and_off, test_publish_key)
