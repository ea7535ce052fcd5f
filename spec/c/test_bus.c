/* src/bus: the publish path over real parts (a router, a hub inbox on a
 * libuv loop, a scheduler's actor cells, process stdin gates), checking
 * for every outcome a copy can have that it is counted once as accepted
 * and once in exactly that outcome (router/account.h):
 *   accepted == delivered + dropped + dead_lettered + refused + no_responders
 * The actors' scheduler is made but not started unless a test says so, so
 * mailboxes fill up deterministically (nothing pops them). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <uv.h>

#include "bus/bus.h"
#include "bus/endpoints.h"
#include "bus/procs.h"
#include "ctest.h"
#include "router/routes.h"

/* ---- fixture ----------------------------------------------------------- */

typedef struct {
  char subject[128], body[256];
  uint64_t target;
} seen_item;

typedef struct {
  uv_loop_t loop;
  msrt_router *router;
  msrt_inbox *inbox;
  msrt_bus *bus;
  msrt_sched *sched;
  msrt_gate *gate; /* the one a test's MSRT_IN_PROC items give back to */
  seen_item seen[64];
  int nseen, nproc;
  uint64_t subs[16];
  int nsubs;
} fixture;

static fixture F;

/* The hub: hub callbacks are recorded, stdin lines "written" (their slot
 * given back). */
static void drain(msrt_inbox_item *items, size_t n, void *ud) {
  (void)ud;
  for (size_t i = 0; i < n; i++) {
    msrt_envelope *e = items[i].env;
    if (items[i].kind == MSRT_IN_PROC) {
      F.nproc++;
      if (F.gate) msrt_gate_give(F.gate, 1, msrt_env_size(e));
    } else if (items[i].kind == MSRT_IN_DELIVER && F.nseen < 64 && e) {
      seen_item *s = &F.seen[F.nseen++];
      snprintf(s->subject, sizeof s->subject, "%.*s", (int)e->subject_len,
               e->subject);
      snprintf(s->body, sizeof s->body, "%.*s", (int)e->payload_len,
               (const char *)e->payload);
      s->target = items[i].target;
    }
    msrt_env_unref(e);
  }
}

static msrt_run_result run_all(msrt_actor *a, int budget, void *ud, int w) {
  (void)ud, (void)w;
  msrt_envelope *e;
  while (budget-- > 0 && (e = msrt_actor_pop(a))) msrt_env_unref(e);
  return msrt_actor_closed(a) ? MSRT_RUN_STOPPED : MSRT_RUN_IDLE;
}

static void setup(int workers_started) {
  memset(&F, 0, sizeof F);
  CHECK(uv_loop_init(&F.loop) == 0);
  F.router = msrt_router_new(NULL);
  F.inbox = msrt_inbox_new(&F.loop, drain, NULL);
  msrt_bus_limits lim = {1024, 0};
  F.bus = msrt_bus_new(F.router, F.inbox, &lim);
  msrt_sched_config c = {.workers = 2, .run = run_all};
  msrt_error err;
  CHECK(msrt_sched_new(&c, &F.sched, &err) == MSRT_E_OK);
  if (workers_started) CHECK(msrt_sched_start(F.sched) == 0);
  CHECK(F.router && F.inbox && F.bus && F.sched);
}

static void teardown(void) {
  for (int i = 0; i < F.nsubs; i++)
    CHECK(msrt_bus_unsubscribe(F.bus, F.subs[i]) == MSRT_E_OK);
  msrt_sched_stop(F.sched);
  msrt_sched_free(F.sched);
  msrt_inbox_drain(F.inbox);
  msrt_inbox_close(F.inbox);
  uv_run(&F.loop, UV_RUN_DEFAULT); /* the inbox's handle closes */
  CHECK(uv_loop_close(&F.loop) == 0);
  msrt_bus_free(F.bus);
  msrt_inbox_free(F.inbox);
  msrt_router_free(F.router);
}

/* ---- helpers ----------------------------------------------------------- */

static msrt_router_stats totals(void) {
  msrt_router_stats st;
  msrt_account_read(msrt_router_account(F.router), &st);
  return st;
}

/* The identity, overall and in every class. */
static void check_identity(void) {
  msrt_class_stats cs[MSRT_CLASS_MAX];
  size_t n = msrt_account_classes(msrt_router_account(F.router), cs,
                                  MSRT_CLASS_MAX);
  msrt_router_stats t = totals();
  for (size_t i = 0; i <= n; i++) {
    const uint64_t *v = i < n ? cs[i].stats.v : t.v;
    uint64_t out = 0;
    for (int s = MSRT_STAT_DELIVERED; s < MSRT_STAT__COUNT; s++) out += v[s];
    CHECK(v[MSRT_STAT_ACCEPTED] == out);
    if (v[MSRT_STAT_ACCEPTED] != out)
      fprintf(stderr, "  class %s: accepted %llu, outcomes %llu\n",
              i < n ? cs[i].name : "(total)",
              (unsigned long long)v[MSRT_STAT_ACCEPTED],
              (unsigned long long)out);
  }
}

/* Counter s of class name (0 when the class does not exist). */
static uint64_t stat_of(const char *name, msrt_stat s) {
  msrt_class_stats cs[MSRT_CLASS_MAX];
  size_t n = msrt_account_classes(msrt_router_account(F.router), cs,
                                  MSRT_CLASS_MAX);
  for (size_t i = 0; i < n && i < MSRT_CLASS_MAX; i++)
    if (strcmp(cs[i].name, name) == 0) return cs[i].stats.v[s];
  return 0;
}

static msrt_envelope *make(const char *subject) {
  msrt_error err;
  msrt_envelope *e = msrt_bus_make(F.bus, subject, strlen(subject), NULL, 0,
                                   NULL, 0, "x", 1, MSRT_PRIORITY_DEFAULT, 0,
                                   &err);
  CHECK(e != NULL);
  return e;
}

/* Publish a fresh message on subject; returns the code, *delivered. */
static msrt_code pub(const char *subject, size_t *delivered,
                     msrt_bus_pending *pend) {
  msrt_envelope *e = make(subject);
  msrt_error err;
  size_t d;
  msrt_code rc = msrt_bus_publish(F.bus, e, delivered ? delivered : &d, pend,
                                  &err);
  msrt_env_unref(e);
  return rc;
}

static msrt_actor *actor(size_t cap, msrt_overflow policy) {
  msrt_actor *a = msrt_actor_new(F.sched, NULL, cap, policy);
  CHECK(a != NULL);
  return a;
}

static uint64_t sub(const char *pattern, const char *queue,
                    msrt_endpoint ep) {
  uint64_t id = 0;
  msrt_error err;
  CHECK(msrt_bus_subscribe(F.bus, pattern, strlen(pattern), queue,
                           queue ? strlen(queue) : 0, ep, &id,
                           &err) == MSRT_E_OK);
  if (F.nsubs < 16) F.subs[F.nsubs++] = id;
  return id;
}

/* The hub's drop notices: a hub callback on msrt.dropped.> */
static void watch_drops(void) { sub("msrt.dropped.>", NULL, msrt_ep_hub(7)); }

static const seen_item *notice_on(const char *subject) {
  msrt_inbox_drain(F.inbox);
  for (int i = 0; i < F.nseen; i++)
    if (strcmp(F.seen[i].subject, subject) == 0) return &F.seen[i];
  return NULL;
}

/* ---- outcomes ---------------------------------------------------------- */

static void test_delivered_and_no_responders(void) {
  setup(0);
  msrt_actor *a = actor(4, MSRT_OVERFLOW_ERROR);
  sub("work.>", NULL, msrt_ep_actor(a));
  sub("work.a", NULL, msrt_ep_hub(3));
  size_t d = 0;
  CHECK(pub("work.a", &d, NULL) == MSRT_E_OK && d == 2);
  CHECK(msrt_actor_depth(a) == 1);
  CHECK(pub("idle.x", &d, NULL) == MSRT_E_OK && d == 0);
  CHECK(stat_of("work", MSRT_STAT_DELIVERED) == 2);
  CHECK(stat_of("idle", MSRT_STAT_NO_RESPONDERS) == 1);
  CHECK(notice_on("work.a") && notice_on("work.a")->target == 3);
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

static void test_drop_newest(void) {
  setup(0);
  watch_drops();
  msrt_actor *a = actor(1, MSRT_OVERFLOW_DROP_NEWEST);
  sub("work.a", NULL, msrt_ep_actor(a));
  size_t d = 0;
  CHECK(pub("work.a", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(pub("work.a", &d, NULL) == MSRT_E_OK && d == 1); /* taken, dropped */
  CHECK(stat_of("work", MSRT_STAT_DELIVERED) == 1);
  CHECK(stat_of("work", MSRT_STAT_DROP_NEWEST) == 1);
  const seen_item *n = notice_on("msrt.dropped.work.a");
  char want[64];
  snprintf(want, sizeof want, "drop_newest %llu",
           (unsigned long long)msrt_actor_id(a));
  CHECK(n && strcmp(n->body, want) == 0);
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

/* The evicted message is counted in its own class, not the new one's. */
static void test_drop_oldest(void) {
  setup(0);
  watch_drops();
  msrt_actor *a = actor(1, MSRT_OVERFLOW_DROP_OLDEST);
  sub("a.x", NULL, msrt_ep_actor(a));
  sub("b.y", NULL, msrt_ep_actor(a));
  CHECK(pub("a.x", NULL, NULL) == MSRT_E_OK);
  CHECK(pub("b.y", NULL, NULL) == MSRT_E_OK);
  CHECK(msrt_actor_depth(a) == 1);
  CHECK(stat_of("a", MSRT_STAT_DELIVERED) == 0);
  CHECK(stat_of("a", MSRT_STAT_DROP_OLDEST) == 1);
  CHECK(stat_of("b", MSRT_STAT_DELIVERED) == 1);
  const seen_item *n = notice_on("msrt.dropped.a.x");
  CHECK(n && strncmp(n->body, "drop_oldest ", 12) == 0);
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

/* drop_oldest evicts as many older messages as the bounds need (here a
 * byte bound lowered under two queued messages: no other thread has the
 * cell), each counted and announced. */
static void test_drop_oldest_bytes(void) {
  setup(0);
  watch_drops();
  msrt_actor *a = actor(100, MSRT_OVERFLOW_DROP_OLDEST);
  char big[600];
  memset(big, 'b', sizeof big);
  msrt_error err;
  msrt_envelope *e = msrt_bus_make(F.bus, "big.x", 5, NULL, 0, NULL, 0, big,
                                   sizeof big, MSRT_PRIORITY_DEFAULT, 0, &err);
  CHECK(e != NULL);
  sub("a.*", NULL, msrt_ep_actor(a));
  sub("big.x", NULL, msrt_ep_actor(a));
  CHECK(pub("a.1", NULL, NULL) == MSRT_E_OK);
  CHECK(pub("a.2", NULL, NULL) == MSRT_E_OK);
  CHECK(msrt_actor_depth(a) == 2);
  msrt_actor_set_byte_bound(a, 1);
  size_t d;
  CHECK(msrt_bus_publish(F.bus, e, &d, NULL, &err) == MSRT_E_OK && d == 1);
  msrt_env_unref(e);
  CHECK(msrt_actor_depth(a) == 1);
  CHECK(stat_of("a", MSRT_STAT_DROP_OLDEST) == 2);
  CHECK(stat_of("a", MSRT_STAT_DELIVERED) == 0);
  CHECK(stat_of("big", MSRT_STAT_DELIVERED) == 1);
  CHECK(notice_on("msrt.dropped.a.1") && notice_on("msrt.dropped.a.2"));
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

static void test_refused_when_full(void) {
  setup(0);
  msrt_actor *a = actor(1, MSRT_OVERFLOW_ERROR);
  msrt_actor *b = actor(1, MSRT_OVERFLOW_BLOCK);
  sub("work.a", NULL, msrt_ep_actor(a));
  sub("work.a", NULL, msrt_ep_actor(b));
  size_t d;
  CHECK(pub("work.a", &d, NULL) == MSRT_E_OK && d == 2);
  /* `error` refuses; `block` without a pending counts as refused too */
  CHECK(pub("work.a", &d, NULL) == MSRT_E_MAILBOX_FULL && d == 0);
  CHECK(stat_of("work", MSRT_STAT_REFUSED) == 2);
  check_identity();
  msrt_actor_unref(a);
  msrt_actor_unref(b);
  teardown();
}

static void test_closed_and_not_ready(void) {
  setup(0);
  watch_drops();
  msrt_actor *a = actor(4, MSRT_OVERFLOW_ERROR);
  sub("work.a", NULL, msrt_ep_actor(a));
  uint64_t q = sub("work.a", "pool", msrt_ep_hub(9));
  CHECK(msrt_router_set_ready(F.router, q, false) == MSRT_E_OK);
  msrt_actor_stop(a);
  size_t d;
  CHECK(pub("work.a", &d, NULL) == MSRT_E_OK && d == 0);
  CHECK(stat_of("work", MSRT_STAT_ACCEPTED) == 2);
  CHECK(stat_of("work", MSRT_STAT_DROP_CLOSED) == 1);
  CHECK(stat_of("work", MSRT_STAT_DROP_NOT_READY) == 1);
  CHECK(notice_on("msrt.dropped.work.a") != NULL);
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

/* A blocked copy waits in a pending publish: delivered once room comes,
 * refused when the sender gives up, drop_closed when the endpoint closed
 * meanwhile. The `error` refusal of the same publish is owed afterwards. */
static void test_blocked(void) {
  setup(0);
  msrt_gate *g = msrt_gate_new(1, 0, MSRT_OVERFLOW_BLOCK, 5, "w");
  F.gate = g;
  msrt_actor *full = actor(1, MSRT_OVERFLOW_ERROR);
  sub("work.a", NULL, msrt_ep_gate(g));
  sub("work.a", NULL, msrt_ep_actor(full));
  msrt_bus_pending p = {0};
  CHECK(pub("work.a", NULL, &p) == MSRT_E_OK); /* both take one */
  CHECK(pub("work.a", NULL, &p) == MSRT_E_MAILBOX_FULL && p.n == 1);
  msrt_gate_stats gs;
  msrt_gate_get_stats(g, &gs);
  CHECK(gs.blocked == 1);
  msrt_bus_pending_clear(F.bus, &p); /* given up: refused */
  msrt_gate_get_stats(g, &gs);
  CHECK(gs.refused == 1 && p.n == 0 && p.env == NULL);
  CHECK(stat_of("work", MSRT_STAT_REFUSED) == 2);
  check_identity();

  CHECK(pub("work.a", NULL, &p) == MSRT_E_MAILBOX_FULL && p.n == 1);
  msrt_inbox_drain(F.inbox); /* the first line is written: room */
  CHECK(msrt_bus_pending_retry(F.bus, &p) == MSRT_E_OK && p.n == 0);
  msrt_error err;
  CHECK(msrt_bus_pending_refused(&p, &err) && err.code == MSRT_E_MAILBOX_FULL);
  CHECK(stat_of("work", MSRT_STAT_DELIVERED) == 3);
  check_identity();

  CHECK(pub("work.a", NULL, &p) == MSRT_E_MAILBOX_FULL && p.n == 1);
  msrt_gate_close(g);
  CHECK(msrt_bus_pending_retry(F.bus, &p) == MSRT_E_OK);
  CHECK(stat_of("work", MSRT_STAT_DROP_CLOSED) == 1);
  CHECK(msrt_bus_pending_refused(&p, &err));
  msrt_bus_pending_clear(F.bus, &p);
  check_identity();
  msrt_inbox_drain(F.inbox);
  F.gate = NULL;
  msrt_gate_unref(g);
  msrt_actor_unref(full);
  teardown();
}

static void wake(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }
static void unwait(void *ud) { atomic_fetch_add((atomic_int *)ud, 100); }

/* The waker is called once room comes, or unwait once a retry took the
 * registration back: exactly one of the two. */
static void test_wait_room(void) {
  setup(0);
  msrt_gate *g = msrt_gate_new(1, 0, MSRT_OVERFLOW_BLOCK, 5, "w");
  F.gate = g;
  sub("work.a", NULL, msrt_ep_gate(g));
  msrt_bus_pending p = {0};
  CHECK(pub("work.a", NULL, &p) == MSRT_E_OK);
  CHECK(pub("work.a", NULL, &p) == MSRT_E_MAILBOX_FULL);
  atomic_int w = 0;
  CHECK(msrt_bus_pending_wait(&p, wake, unwait, &w) == MSRT_WAIT_PENDING);
  msrt_inbox_drain(F.inbox); /* room: the waker fires */
  CHECK(atomic_load(&w) == 1);
  CHECK(msrt_bus_pending_retry(F.bus, &p) == MSRT_E_OK);
  CHECK(atomic_load(&w) == 1);
  CHECK(pub("work.a", NULL, &p) == MSRT_E_MAILBOX_FULL);
  CHECK(msrt_bus_pending_wait(&p, wake, unwait, &w) == MSRT_WAIT_PENDING);
  msrt_bus_pending_clear(F.bus, &p); /* taken back: unwait */
  CHECK(atomic_load(&w) == 101);
  check_identity();
  msrt_inbox_drain(F.inbox);
  F.gate = NULL;
  msrt_gate_unref(g);
  teardown();
}

/* A process's stdin: drop_newest drops on the publishing thread (and says
 * which process); `error` refuses; a line that went to the hub is
 * delivered. */
static void test_gate_outcomes(void) {
  setup(0);
  watch_drops();
  msrt_gate *dn = msrt_gate_new(1, 0, MSRT_OVERFLOW_DROP_NEWEST, 1, "dn");
  msrt_gate *er = msrt_gate_new(1, 0, MSRT_OVERFLOW_ERROR, 2, "er");
  sub("work.a", NULL, msrt_ep_gate(dn));
  sub("work.a", NULL, msrt_ep_gate(er));
  size_t d;
  CHECK(pub("work.a", &d, NULL) == MSRT_E_OK && d == 2);
  CHECK(pub("work.a", &d, NULL) == MSRT_E_MAILBOX_FULL && d == 1);
  CHECK(stat_of("work", MSRT_STAT_DELIVERED) == 2);
  CHECK(stat_of("work", MSRT_STAT_DROP_NEWEST) == 1);
  CHECK(stat_of("work", MSRT_STAT_REFUSED) == 1);
  const seen_item *n = notice_on("msrt.dropped.work.a");
  CHECK(n && strcmp(n->body, "drop_newest process dn") == 0);
  CHECK(F.nproc == 2);
  msrt_gate_stats gs;
  msrt_gate_get_stats(dn, &gs);
  CHECK(gs.dropped == 1);
  msrt_gate_get_stats(er, &gs);
  CHECK(gs.refused == 1);
  check_identity();
  msrt_gate_unref(dn);
  msrt_gate_unref(er);
  teardown();
}

/* Queue groups skip full members when another can take the message. */
static void test_queue_skips_full(void) {
  setup(0);
  msrt_actor *a = actor(1, MSRT_OVERFLOW_ERROR);
  msrt_actor *b = actor(1, MSRT_OVERFLOW_ERROR);
  sub("work.a", "pool", msrt_ep_actor(a));
  sub("work.a", "pool", msrt_ep_actor(b));
  CHECK(pub("work.a", NULL, NULL) == MSRT_E_OK);
  CHECK(pub("work.a", NULL, NULL) == MSRT_E_OK);
  CHECK(msrt_actor_depth(a) == 1 && msrt_actor_depth(b) == 1);
  CHECK(pub("work.a", NULL, NULL) == MSRT_E_MAILBOX_FULL); /* both full */
  check_identity();
  msrt_actor_unref(a);
  msrt_actor_unref(b);
  teardown();
}

/* An endpoint that declines subjects ending in ".no" and counts what it
 * takes (msrt_endpoint_class.declines). */
static msrt_push_outcome picky_push(void *ep, msrt_envelope *e,
                                    const msrt_evict_sink *ev, msrt_bus *b) {
  (void)e, (void)ev, (void)b;
  ++*(int *)ep;
  return MSRT_PUSH_DELIVERED;
}

static bool picky_declines(void *ep, const msrt_envelope *e) {
  (void)ep;
  return e->subject_len > 3 &&
         memcmp(e->subject + e->subject_len - 3, ".no", 3) == 0;
}

static msrt_overflow picky_policy(void *ep) {
  (void)ep;
  return MSRT_OVERFLOW_DROP_NEWEST;
}

static void picky_name(void *ep, char *buf, size_t cap) {
  (void)ep;
  snprintf(buf, cap, "picky");
}

static const msrt_endpoint_class picky_class = {
    .class_name = "picky", .push = picky_push, .policy = picky_policy,
    .declines = picky_declines, .name = picky_name};

/* A declined copy is neither made nor counted: a message only declined
 * has no responders, and a declining queue member gives its turn. */
static void test_declines(void) {
  setup(0);
  int took = 0;
  msrt_endpoint picky = {&picky_class, &took};
  sub("work.>", NULL, picky);
  sub("work.no", NULL, msrt_ep_hub(3));
  size_t d = 0;
  CHECK(pub("work.no", &d, NULL) == MSRT_E_OK && d == 1 && took == 0);
  CHECK(pub("work.yes", &d, NULL) == MSRT_E_OK && d == 1 && took == 1);
  CHECK(stat_of("work", MSRT_STAT_ACCEPTED) == 2);
  CHECK(pub("work.x.no", &d, NULL) == MSRT_E_OK && d == 0);
  CHECK(stat_of("work", MSRT_STAT_NO_RESPONDERS) == 1);
  msrt_actor *a = actor(8, MSRT_OVERFLOW_ERROR);
  sub("q.*", "pool", picky);
  sub("q.*", "pool", msrt_ep_actor(a));
  for (int i = 0; i < 4; i++) CHECK(pub("q.no", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(msrt_actor_depth(a) == 4 && took == 1);
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

/* Routing: a dead-lettered message, a rewrite its publisher may not
 * follow, and a subject refused at make. */
static bool deny_admin(void *ud, const char *s, size_t len) {
  (void)ud;
  return !(len >= 5 && memcmp(s, "admin", 5) == 0);
}

static void test_routed_outcomes(void) {
  setup(0);
  msrt_route_rule rules[] = {
    {.match = "old.*", .rewrite = "admin.$1"},
    {.match = "lost.>", .dead_letter = "dlq.lost"},
  };
  msrt_routes *t;
  msrt_error err;
  CHECK(msrt_routes_compile(rules, 2, 0, &t, &err) == MSRT_E_OK);
  CHECK(msrt_router_set_routes(F.router, t) == MSRT_E_OK);
  sub("dlq.lost", NULL, msrt_ep_hub(1));
  size_t d;
  CHECK(pub("lost.x", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(stat_of("lost", MSRT_STAT_DEAD_LETTERED) == 1);
  CHECK(stat_of("dlq", MSRT_STAT_DELIVERED) == 1);
  msrt_envelope *e = make("old.x");
  CHECK(msrt_bus_publish_as(F.bus, e, deny_admin, NULL, &d, NULL, &err) ==
        MSRT_E_PERMISSION);
  msrt_env_unref(e);
  CHECK(stat_of("admin", MSRT_STAT_REFUSED) == 1);
  CHECK(msrt_bus_make(F.bus, "bad..subject", 12, NULL, 0, NULL, 0, "x", 1,
                      MSRT_PRIORITY_DEFAULT, 0, &err) == NULL);
  CHECK(msrt_bus_make(F.bus, "big.x", 5, NULL, 0, NULL, 0, "x", 2000,
                      MSRT_PRIORITY_DEFAULT, 0, &err) == NULL &&
        err.code == MSRT_E_PAYLOAD_TOO_BIG);
  CHECK(stat_of("big", MSRT_STAT_REFUSED) == 1);
  check_identity();
  teardown();
}

/* Whether bus makes an envelope of subject s[0..n) (freed at once). */
static bool makes(msrt_bus *bus, const char *s, size_t n, msrt_error *err) {
  msrt_envelope *e = msrt_bus_make(bus, s, n, NULL, 0, NULL, 0, "x", 1,
                                   MSRT_PRIORITY_DEFAULT, 0, err);
  if (e) msrt_env_unref(e);
  return e != NULL;
}

/* The subjects a thread last found valid are not checked again, and no
 * other subject passes for it: one of the same length with an empty token, one
 * too long for another bus's max_subject. A payload made NULL is written
 * by its maker. */
static void test_make_checks(void) {
  setup(0);
  msrt_error err;
  CHECK(makes(F.bus, "memo.ab", 7, &err));
  CHECK(!makes(F.bus, "memo..b", 7, &err) &&
        err.code == MSRT_E_INVALID_SUBJECT);
  CHECK(!makes(F.bus, "memo.a ", 7, &err));
  msrt_envelope *e = msrt_bus_make(F.bus, "memo.ab", 7, NULL, 0, NULL, 0,
                                   NULL, 3, MSRT_PRIORITY_DEFAULT, 0, &err);
  CHECK(e != NULL && e->payload_len == 3);
  memcpy(msrt_env_payload_to_write(e), "abc", 3);
  CHECK(e && memcmp(e->payload, "abc", 3) == 0);
  msrt_env_unref(e);
  msrt_bus_limits lim = {1024, 5}; /* max_subject 5: "memo.ab" is too long */
  msrt_bus *small = msrt_bus_new(F.router, F.inbox, &lim);
  CHECK(small && !makes(small, "memo.ab", 7, &err) &&
        err.code == MSRT_E_INVALID_SUBJECT);
  msrt_bus_free(small);
  /* several subjects remembered at once, in turn, and a unique one among
   * them: each still made, and none lets a near miss through */
  static const char *const turn[] = {"memo.a", "memo.b", "memo.c",
                                     "memo.a", "memo.b", "memo.d",
                                     "memo.e", "memo.a", "memo.b"};
  for (int r = 0; r < 3; r++)
    for (size_t i = 0; i < sizeof turn / sizeof *turn; i++) {
      CHECK(makes(F.bus, turn[i], 6, &err));
      CHECK(!makes(F.bus, "memo.", 5, &err) &&
            err.code == MSRT_E_INVALID_SUBJECT);
      CHECK(!makes(F.bus, "memo.*", 6, &err));
    }
  check_identity();
  teardown();
}

/* msrt_bus_send from the caller's bytes: endpoints that keep messages get
 * a real envelope (a hub callback sees the body, stamped; a blocked
 * publish's pending holds one past the call), refusals are msrt_bus_make's
 * and counted the same, no envelope outlives a publish that went to no
 * one. */
static void test_send(void) {
  setup(0);
  msrt_actor *full = actor(1, MSRT_OVERFLOW_BLOCK);
  sub("send.a", NULL, msrt_ep_hub(4));
  sub("send.b", NULL, msrt_ep_actor(full));
  msrt_error err;
  size_t d = 9;
  char body[] = "hello";
  long live = msrt_env_live();
  CHECK(msrt_bus_send(F.bus, "send.a", 6, NULL, 0, NULL, 0, body, 5,
                      MSRT_PRIORITY_DEFAULT, 0, &d, NULL, &err) == MSRT_E_OK &&
        d == 1);
  memcpy(body, "xxxxx", 5); /* the hub's copy is its own */
  const seen_item *it = notice_on("send.a");
  CHECK(it && strcmp(it->body, "hello") == 0 && it->target == 4);
  CHECK(msrt_bus_send(F.bus, "nobody.x", 8, NULL, 0, NULL, 0, "x", 1,
                      MSRT_PRIORITY_DEFAULT, 0, &d, NULL, &err) == MSRT_E_OK &&
        d == 0);
  CHECK(msrt_env_live() == live);
  CHECK(stat_of("nobody", MSRT_STAT_NO_RESPONDERS) == 1);
  CHECK(msrt_bus_send(F.bus, "send..a", 7, NULL, 0, NULL, 0, "x", 1,
                      MSRT_PRIORITY_DEFAULT, 0, &d, NULL,
                      &err) == MSRT_E_INVALID_SUBJECT && d == 0);
  CHECK(msrt_bus_send(F.bus, "send.a", 6, NULL, 0, NULL, 0, "x", 1, 11, 0, &d,
                      NULL, &err) == MSRT_E_INVALID_ARG);
  CHECK(msrt_bus_send(F.bus, "send.a", 6, NULL, 0, NULL, 0, "x", 2000,
                      MSRT_PRIORITY_DEFAULT, 0, &d, NULL,
                      &err) == MSRT_E_PAYLOAD_TOO_BIG);
  CHECK(stat_of("send", MSRT_STAT_REFUSED) == 3);
  msrt_bus_pending p = {0};
  CHECK(msrt_bus_send(F.bus, "send.b", 6, "_INBOX.r", 8, NULL, 0, "1", 1,
                      MSRT_PRIORITY_DEFAULT, 5000, &d, &p, &err) == MSRT_E_OK);
  CHECK(msrt_bus_send(F.bus, "send.b", 6, "_INBOX.r", 8, NULL, 0, "2", 1,
                      MSRT_PRIORITY_DEFAULT, 5000, &d, &p,
                      &err) == MSRT_E_MAILBOX_FULL && p.n == 1);
  CHECK(p.env && p.env->payload_len == 1 && p.env->payload[0] == '2' &&
        p.env->reply_len == 8 && p.env->reply_deadline_ns > 0 &&
        p.env->ts_ns > 0 && p.env->id != 0);
  msrt_bus_pending_clear(F.bus, &p); /* given up: refused */
  check_identity();
  msrt_actor_unref(full);
  teardown();
}

/* A thread's remembered match follows the subscriptions (each change is a
 * new router version) and the groups' readiness: a group whose member was
 * not ready when the subject was matched is matched again. */
static void test_memo(void) {
  setup(0);
  uint64_t h1 = sub("memo.x", NULL, msrt_ep_hub(1));
  size_t d;
  msrt_error err;
  for (int i = 0; i < 3; i++)
    CHECK(msrt_bus_send(F.bus, "memo.x", 6, NULL, 0, NULL, 0, "x", 1,
                        MSRT_PRIORITY_DEFAULT, 0, &d, NULL, &err) ==
              MSRT_E_OK && d == 1);
  sub("memo.>", NULL, msrt_ep_hub(2));
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 2);
  CHECK(msrt_bus_unsubscribe(F.bus, h1) == MSRT_E_OK);
  F.subs[0] = F.subs[--F.nsubs]; /* h1 is gone */
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 1);
  uint64_t q = sub("memo.x", "pool", msrt_ep_hub(3));
  CHECK(msrt_router_set_ready(F.router, q, false) == MSRT_E_OK);
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(stat_of("memo", MSRT_STAT_DROP_NOT_READY) == 2);
  CHECK(msrt_router_set_ready(F.router, q, true) == MSRT_E_OK);
  /* a group of hub callbacks is not kept: each publish picks its member */
  for (int i = 0; i < 3; i++)
    CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 2);
  msrt_inbox_drain(F.inbox);
  int to3 = 0;
  for (int i = 0; i < F.nseen; i++) to3 += F.seen[i].target == 3;
  CHECK(to3 == 3);
  CHECK(msrt_bus_unsubscribe(F.bus, q) == MSRT_E_OK);
  F.nsubs--; /* q was the last */
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 1);
  CHECK(pub("memo.x", &d, NULL) == MSRT_E_OK && d == 1);
  check_identity();
  teardown();
}

/* A remembered match is handed out in place: the drop notices its pushes
 * publish (nested publishes, on another subject) leave it as it was, so
 * the endpoints after the full one get every copy. */
static void test_memo_nested(void) {
  setup(0);
  watch_drops();
  msrt_actor *a = actor(1, MSRT_OVERFLOW_DROP_NEWEST);
  sub("memo.d", NULL, msrt_ep_actor(a));
  sub("memo.d", NULL, msrt_ep_hub(1));
  sub("memo.d", NULL, msrt_ep_hub(2));
  size_t d;
  for (int i = 0; i < 3; i++)
    CHECK(pub("memo.d", &d, NULL) == MSRT_E_OK && d == 3);
  msrt_inbox_drain(F.inbox);
  int to[3] = {0, 0, 0}, notices = 0;
  for (int i = 0; i < F.nseen; i++) {
    if (strcmp(F.seen[i].subject, "memo.d") == 0 && F.seen[i].target < 3)
      to[F.seen[i].target]++;
    notices += strcmp(F.seen[i].subject, "msrt.dropped.memo.d") == 0;
  }
  CHECK(to[1] == 3 && to[2] == 3 && notices == 2);
  CHECK(stat_of("memo", MSRT_STAT_DELIVERED) == 7);
  CHECK(stat_of("memo", MSRT_STAT_DROP_NEWEST) == 2);
  check_identity();
  msrt_actor_unref(a);
  teardown();
}

/* A copy counted delivered that ended otherwise afterwards, and a time
 * stamp. */
static void test_undeliver_and_stamp(void) {
  setup(0);
  _Atomic uint64_t slot = 0;
  sub("beat.>", NULL, msrt_ep_stamp(&slot));
  CHECK(pub("beat.x", NULL, NULL) == MSRT_E_OK);
  CHECK(atomic_load(&slot) != 0);
  msrt_envelope *e = make("beat.x");
  msrt_bus_undeliver(F.bus, e, MSRT_STAT_DROP_OLDEST);
  msrt_env_unref(e);
  msrt_bus_undecodable(F.bus, "beat.x", 6, "bad", "me");
  CHECK(stat_of("beat", MSRT_STAT_DELIVERED) == UINT64_MAX); /* -1 */
  CHECK(pub("beat.x", NULL, NULL) == MSRT_E_OK);
  CHECK(stat_of("beat", MSRT_STAT_DELIVERED) == 0);
  CHECK(stat_of("beat", MSRT_STAT_DROP_OTHER) == 1);
  check_identity();
  teardown();
}

/* A stdin line the hub could not give its process (released meanwhile)
 * moves from delivered to drop_closed; room for a released process's
 * output is nothing to do. */
static void test_proc_item_closed(void) {
  setup(0);
  sub("p.>", NULL, msrt_ep_hub(1));
  CHECK(pub("p.x", NULL, NULL) == MSRT_E_OK);
  CHECK(stat_of("p", MSRT_STAT_DELIVERED) == 1);
  msrt_error err;
  CHECK(msrt_bus_proc_item(F.bus, NULL, make("p.x"), &err) == MSRT_E_CLOSED);
  CHECK(err.code == MSRT_E_CLOSED);
  CHECK(stat_of("p", MSRT_STAT_DELIVERED) == 0);
  CHECK(stat_of("p", MSRT_STAT_DROP_CLOSED) == 1);
  CHECK(msrt_bus_proc_item(F.bus, NULL, NULL, &err) == MSRT_E_OK);
  check_identity();
  teardown();
}

/* ---- threads (run under TSan by scripts/test) --------------------------- */

typedef struct {
  int id;
} pub_arg;

static atomic_int unmade; /* CHECK is for the main thread only */

static void *publisher(void *p) {
  int id = ((pub_arg *)p)->id;
  const char *subjects[] = {"t.new", "t.old", "t.err", "t.pool", "t.none"};
  for (int i = 0; i < 2000; i++) {
    const char *s = subjects[(i + id) % 5];
    size_t d;
    msrt_error err;
    msrt_envelope *e = msrt_bus_make(F.bus, s, strlen(s), NULL, 0, NULL, 0,
                                     "x", 1, MSRT_PRIORITY_DEFAULT, 0, &err);
    if (!e) {
      atomic_fetch_add(&unmade, 1);
      continue;
    }
    msrt_bus_publish(F.bus, e, &d, NULL, &err);
    msrt_env_unref(e);
  }
  return NULL;
}

static void test_threads(void) {
  setup(1);
  watch_drops();
  msrt_actor *a[4] = {actor(8, MSRT_OVERFLOW_DROP_NEWEST),
                      actor(8, MSRT_OVERFLOW_DROP_OLDEST),
                      actor(8, MSRT_OVERFLOW_ERROR),
                      actor(8, MSRT_OVERFLOW_ERROR)};
  sub("t.new", NULL, msrt_ep_actor(a[0]));
  sub("t.old", NULL, msrt_ep_actor(a[1]));
  sub("t.err", NULL, msrt_ep_actor(a[2]));
  sub("t.pool", "pool", msrt_ep_actor(a[2]));
  sub("t.pool", "pool", msrt_ep_actor(a[3]));
  pthread_t th[3];
  pub_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i].id = i;
    CHECK(pthread_create(&th[i], NULL, publisher, &args[i]) == 0);
  }
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  msrt_router_stats t = totals();
  CHECK(atomic_load(&unmade) == 0 && t.v[MSRT_STAT_ACCEPTED] >= 6000);
  check_identity();
  for (int i = 0; i < 4; i++) msrt_actor_stop(a[i]);
  for (int i = 0; i < 4; i++) msrt_actor_unref(a[i]);
  teardown();
}

TEST_MAIN(test_delivered_and_no_responders, test_drop_newest, test_drop_oldest,
          test_drop_oldest_bytes,
          test_refused_when_full, test_closed_and_not_ready, test_blocked,
          test_wait_room, test_gate_outcomes, test_queue_skips_full,
          test_declines,
          test_routed_outcomes, test_make_checks, test_send, test_memo,
          test_memo_nested,
          test_undeliver_and_stamp,
          test_proc_item_closed, test_threads)
