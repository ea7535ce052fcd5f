/* Router concurrency: readers match without locks while a writer
 * subscribes, unsubscribes, flips readiness and swaps routing tables.
 * Run under -DMSRT_ASAN=ON (use-after-free) and -DMSRT_TSAN=ON (races). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "ctest.h"
#include "router/index.h"
#include "router/routes.h"

#if defined(__SANITIZE_THREAD__)
#define READS 100000 /* per reader; TSan is ~10-20x slower */
#elif defined(__SANITIZE_ADDRESS__)
#define READS 1000000
#else
#define READS 1000000
#endif

#define NREADERS 2
#define MAGIC 0x5eed

/* Endpoints: the stable subscriptions' are static; the writer's churning
 * subscriptions each get a heap one, freed through msrt_router_defer after
 * unsubscribe, and readers read it inside their critical section, so an
 * early free is a use-after-free under ASan. */
static msrt_router *R;
static int stable_ep = MAGIC, stable_q_ep = MAGIC;
static uint64_t stable_id, stable_wild_id, stable_q_id;
static atomic_int readers_done;
static atomic_long writer_changes;
static long reads; /* per reader in this run: READS, a quarter when wide */

typedef struct {
  long matches, lost, bad, queue_items, routed;
} reader_result;

static int known_ep(void *p) { return p && *(volatile int *)p == MAGIC; }

/* The items' count, or -1 when the match ran out of memory. */
static long match(msrt_reader *rd, const char *s, size_t len,
                  msrt_match_result *m) {
  if (msrt_router_match(rd, s, len, m, NULL, NULL) != MSRT_E_OK) return -1;
  return (long)m->len;
}

static void *reader_main(void *arg) {
  reader_result *res = arg;
  msrt_reader *rd = msrt_router_reader_new(R);
  msrt_match_result m;
  msrt_match_result_init(&m);
  char other[64], buf[256];
  uint64_t x = (uint64_t)(uintptr_t)arg | 1;
  for (long i = 0; i < reads; i++) {
    /* half the time one enter per 64 iterations, else one per iteration */
    bool batch = (i / 64) % 2 == 1;
    if (!batch || i % 64 == 0) msrt_router_reader_enter(rd);
    long n = match(rd, "agents.k1.id1.task", 18, &m);
    int seen = 0, seen_wild = 0, q = 0;
    for (long j = 0; j < n; j++) {
      msrt_match_item *it = &m.items[j];
      seen += it->sub_id == stable_id;
      seen_wild += it->sub_id == stable_wild_id;
      q += (it->flags & MSRT_MATCH_QUEUE) != 0;
      if (!known_ep(it->endpoint) || it->kind != 3) res->bad++;
    }
    if (n < 0 || seen != 1 || seen_wild != 1) res->lost++;
    if (q != 1) res->bad++; /* group "g" always has its stable member */
    res->queue_items += q;
    if (!batch) msrt_router_reader_leave(rd); /* next match enters itself */
    /* other subjects: fill (and race on) the match cache */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int len = snprintf(other, sizeof other, "agents.k%d.id%d.task",
                       (int)(x % 4), (int)((x >> 8) % 500));
    n = match(rd, other, (size_t)len, &m);
    for (long j = 0; j < n; j++) /* endpoints only read while inside */
      if (batch && !known_ep(m.items[j].endpoint)) res->bad++;
    if (n < 1) res->lost++; /* agents.*.*.task is stable */
    if (i % 16 == 0) {
      msrt_route_result rr;
      msrt_error e;
      if (msrt_router_route(rd, "legacy.a.task", 13, buf, sizeof buf, &rr,
                            &e) != MSRT_E_OK)
        res->bad++;
      else if (rr.rule >= 0 && strcmp(rr.subject, "tasks.a") != 0)
        res->bad++;
      res->routed++;
    }
    res->matches++;
    if (batch && i % 64 == 63) msrt_router_reader_leave(rd);
  }
  msrt_account_add(msrt_reader_shard(rd), 0, MSRT_STAT_DELIVERED,
                   (uint64_t)res->matches);
  msrt_match_result_free(&m);
  msrt_router_reader_free(rd);
  atomic_fetch_add(&readers_done, 1);
  return NULL;
}

/* Overwrite, then free: a reader that sees a freed endpoint fails the
 * MAGIC check even without ASan. */
static void scribble_free(void *p) {
  *(volatile int *)p = 0;
  free(p);
}

static const char *const churn_patterns[] = {
    "agents.k1.id1.task", "agents.k1.id1.*", "agents.k1.>", "agents.*.id1.task",
    "agents.k1.*.task",   "agents.>",        "agents.k2.id1.task", ">",
    "agents.k1.id2.task", "*.k1.id1.task",   "agents.k1.id1.task.x"};

static void *writer_main(void *arg) {
  (void)arg;
  uint64_t live[64];
  int n = 0;
  uint64_t x = 88172645463325252ull;
  long changes = 0;
  while (atomic_load(&readers_done) < NREADERS) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (n < 48 && (n < 8 || x % 2)) {
      const char *p = churn_patterns[x % (sizeof churn_patterns /
                                          sizeof *churn_patterns)];
      int queue = (x >> 20) % 3 == 0;
      uint64_t id;
      msrt_error e;
      int *ep = malloc(sizeof *ep);
      *ep = MAGIC;
      if (msrt_router_subscribe(R, p, strlen(p), queue ? "g" : NULL,
                                queue ? 1 : 0, ep, 3, NULL, &id,
                                &e) == MSRT_E_OK)
        live[n++] = id;
      else
        free(ep);
    } else {
      int k = (int)((x >> 16) % (uint64_t)n);
      void *ep = NULL;
      if (msrt_router_unsubscribe_endpoint(R, live[k], &ep, NULL) == MSRT_E_OK)
        msrt_router_defer(R, scribble_free, ep);
      live[k] = live[--n];
    }
    if (n && (x >> 30) % 4 == 0)
      msrt_router_set_ready(R, live[(x >> 32) % (uint64_t)n], (x >> 40) & 1);
    if ((x >> 24) % 64 == 0) {
      msrt_route_rule rule = {"legacy.*.task", "tasks.$1", NULL, 0, "dlq.x"};
      msrt_routes *t = NULL;
      msrt_routes_compile(&rule, (x >> 50) & 1, 0, &t, NULL);
      msrt_router_set_routes(R, t);
    }
    changes++;
  }
  while (n) {
    void *ep = NULL;
    msrt_router_unsubscribe_endpoint(R, live[--n], &ep, NULL);
    msrt_router_defer(R, scribble_free, ep);
  }
  atomic_store(&writer_changes, changes);
  return NULL;
}

/* wide: with wide_after 8, 40 more stable subscriptions
 * agents.k1.s<N>.task make the node agents.k1 wide (its children in a
 * HAMT, router/wide.h), and 12 more to agents.k1.id1.task its list of
 * subscriptions, which the writer's changes under agents.k1 edit while the
 * readers walk and collect them. */
static void run(uint32_t cache_slots, bool wide) {
  msrt_router_opts o = {0, cache_slots, wide ? 8 : 0};
  reads = wide ? READS / 4 : READS;
  R = msrt_router_new(&o);
  atomic_store(&readers_done, 0);
  msrt_error e;
  uint64_t wide_ids[52];
  char wb[64];
  for (int i = 0; wide && i < 52; i++) {
    int n = i < 40 ? snprintf(wb, sizeof wb, "agents.k1.s%d.task", i)
                    : snprintf(wb, sizeof wb, "agents.k1.id1.task");
    CHECK(msrt_router_subscribe(R, wb, (size_t)n, NULL, 0, &stable_ep, 3, NULL,
                                &wide_ids[i], &e) == MSRT_E_OK);
  }
  CHECK(msrt_router_subscribe(R, "agents.k1.id1.task", 18, NULL, 0, &stable_ep,
                              3, NULL, &stable_id, &e) == MSRT_E_OK);
  CHECK(msrt_router_subscribe(R, "agents.*.*.task", 15, NULL, 0, &stable_ep, 3,
                              NULL, &stable_wild_id, &e) == MSRT_E_OK);
  CHECK(msrt_router_subscribe(R, "agents.k1.id1.task", 18, "g", 1, &stable_q_ep,
                              3, NULL, &stable_q_id, &e) == MSRT_E_OK);
  pthread_t rt[NREADERS], wt;
  reader_result res[NREADERS];
  memset(res, 0, sizeof res);
  uint64_t t0 = msrt_now_ns();
  pthread_create(&wt, NULL, writer_main, NULL);
  for (int i = 0; i < NREADERS; i++)
    pthread_create(&rt[i], NULL, reader_main, &res[i]);
  for (int i = 0; i < NREADERS; i++) pthread_join(rt[i], NULL);
  pthread_join(wt, NULL);
  double s = (double)(msrt_now_ns() - t0) / 1e9;
  long total = 0;
  for (int i = 0; i < NREADERS; i++) {
    CHECK(res[i].matches == reads);
    CHECK(res[i].lost == 0);
    CHECK(res[i].bad == 0);
    CHECK(res[i].queue_items == reads);
    total += res[i].matches;
  }
  long ch = atomic_load(&writer_changes);
  printf("cache %s%s: %ld iterations (2 matches each) by %d readers, %ld writer changes, %.2f s\n",
         cache_slots == UINT32_MAX ? "off" : "on", wide ? ", wide node" : "", total, NREADERS, ch, s);
  CHECK(ch > 100);
  for (int i = 0; wide && i < 52; i++)
    CHECK(msrt_router_unsubscribe(R, wide_ids[i]) == MSRT_E_OK);
  CHECK(msrt_router_sub_count(R) == 3);
  CHECK(msrt_router_reclaim(R) == 0); /* no reader left: all garbage freed */
  msrt_router_stats st;
  msrt_account_read(msrt_router_account(R), &st);
  CHECK(st.v[MSRT_STAT_DELIVERED] == (uint64_t)total);
  msrt_router_free(R);
}

static void test_readers_vs_writer(void) { run(0, false); }
static void test_readers_vs_writer_nocache(void) { run(UINT32_MAX, false); }
static void test_readers_vs_writer_wide(void) { run(UINT32_MAX, true); }

/* Readers registering and leaving while the writer changes things. */
static void *flaky_reader(void *arg) {
  long *lost = arg; /* CHECK is not thread-safe: count, check in main */
  msrt_match_result m;
  msrt_match_result_init(&m);
  for (int i = 0; i < READS / 1000; i++) {
    msrt_reader *rd = msrt_router_reader_new(R);
    for (int k = 0; k < 50; k++) {
      long n = match(rd, "agents.k1.id1.task", 18, &m);
      int seen = 0;
      for (long j = 0; j < n; j++) seen += m.items[j].sub_id == stable_id;
      *lost += seen != 1;
    }
    msrt_router_reader_free(rd);
  }
  msrt_match_result_free(&m);
  atomic_fetch_add(&readers_done, 1);
  return NULL;
}

static void test_reader_registration(void) {
  R = msrt_router_new(NULL);
  atomic_store(&readers_done, 0);
  msrt_router_subscribe(R, "agents.k1.id1.task", 18, NULL, 0, &stable_ep, 3,
                        NULL, &stable_id, NULL);
  msrt_router_subscribe(R, "agents.*.*.task", 15, NULL, 0, &stable_ep, 3, NULL,
                        &stable_wild_id, NULL);
  msrt_router_subscribe(R, "agents.k1.id1.task", 18, "g", 1, &stable_q_ep, 3,
                        NULL, &stable_q_id, NULL);
  pthread_t rt[NREADERS], wt;
  long lost[NREADERS] = {0};
  pthread_create(&wt, NULL, writer_main, NULL);
  for (int i = 0; i < NREADERS; i++)
    pthread_create(&rt[i], NULL, flaky_reader, &lost[i]);
  for (int i = 0; i < NREADERS; i++) pthread_join(rt[i], NULL);
  pthread_join(wt, NULL);
  for (int i = 0; i < NREADERS; i++) CHECK(lost[i] == 0);
  CHECK(msrt_router_reclaim(R) == 0);
  msrt_router_free(R);
}

TEST_MAIN(test_readers_vs_writer, test_readers_vs_writer_nocache,
          test_readers_vs_writer_wide,
          test_reader_registration)
