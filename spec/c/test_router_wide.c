/* Wide trie nodes (router/wide.h): a subscribe under a node with N
 * siblings copies O(log N), not the node; matching through wide nodes
 * agrees with the rules across churn; the HAMT's collision nodes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "router/index.h"
#include "router/subject.h"
#include "router/wide.h"

static uint64_t subscribe(msrt_router *r, const char *p, const char *q) {
  uint64_t id = 0;
  CHECK(msrt_router_subscribe(r, p, strlen(p), q, q ? strlen(q) : 0, NULL, 1,
                              NULL, &id, NULL) == MSRT_E_OK);
  return id;
}

static size_t count(msrt_reader *rd, msrt_match_result *m, const char *s) {
  CHECK(msrt_router_match(rd, s, strlen(s), m, NULL, NULL) == MSRT_E_OK);
  return m->len;
}

/* The copying work of one subscribe (the router's built bytes) at 16,384
 * siblings under one prefix is within 3x of that at 1,024: a node copied
 * whole costs 16x (the attack in spec/security/nats_clients_spec.lua, a
 * client's SUB many.1 .. many.N). The same for 16,384 subscriptions to one
 * subject (one node's list). */
static void test_copy_work(void) {
  msrt_router *r = msrt_router_new(NULL);
  char b[64];
  for (int same = 0; same < 2; same++) {
    uint64_t at1k = 0, at16k = 0;
    for (int i = 0; i < 16384; i++) {
      if (i == 960) at1k = msrt_router_built_bytes(r);
      if (i == 1024) at1k = msrt_router_built_bytes(r) - at1k;
      if (i == 16320) at16k = msrt_router_built_bytes(r);
      snprintf(b, sizeof b, same ? "one.x" : "many.%d", i);
      subscribe(r, b, NULL);
    }
    at16k = msrt_router_built_bytes(r) - at16k;
    printf("built bytes per subscribe %s: %.0f at 1,024, %.0f at 16,384\n",
           same ? "to one subject" : "under one prefix", at1k / 64.0,
           at16k / 64.0);
    CHECK(at1k > 0 && at16k < 3 * at1k);
  }
  msrt_reader *rd = msrt_router_reader_new(r);
  msrt_match_result m;
  msrt_match_result_init(&m);
  CHECK(count(rd, &m, "many.16383") == 1 && count(rd, &m, "many.16384") == 0);
  CHECK(count(rd, &m, "one.x") == 16384);
  msrt_match_result_free(&m);
  msrt_router_reader_free(rd);
  msrt_router_free(r);
}

/* Random churn of up to 3,000 siblings (a node goes narrow -> wide -> empty
 * -> wide), plain and queue-group members interleaved on the same nodes,
 * checked against msrt_subject_matches after each round. */
#define NAMES 3000
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

typedef struct {
  uint64_t id;
  char pat[32];
  int q;
} live;

static void check_round(msrt_reader *rd, msrt_match_result *m, live *subs,
                        int n) {
  char subj[32];
  for (int k = 0; k < 300; k++) {
    snprintf(subj, sizeof subj, "w.t%u%s", rnd(NAMES), rnd(2) ? ".x" : "");
    size_t want = 0;
    int groups[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
      if (!msrt_subject_matches(subs[i].pat, subj)) continue;
      if (subs[i].q) groups[subs[i].q] = 1;
      else want++;
    }
    want += (size_t)(groups[1] + groups[2]);
    if (count(rd, m, subj) != want) {
      fprintf(stderr, "wide churn: %s got %zu want %zu\n", subj, m->len, want);
      CHECK(0);
      return;
    }
  }
}

static void churn(uint32_t cache_slots, uint32_t wide_after) {
  msrt_router_opts o = {0, cache_slots, wide_after};
  msrt_router *r = msrt_router_new(&o);
  msrt_reader *rd = msrt_router_reader_new(r);
  msrt_match_result m;
  msrt_match_result_init(&m);
  static live subs[4000];
  int n = 0;
  for (int round = 0; round < 8; round++) {
    /* rounds 0-2 grow, 3 empties, 4-7 grow and shrink */
    int target = round == 3 ? 0 : 200 + (int)rnd(round < 3 ? 3500 : 1500);
    while (n > target || (n && rnd(4) == 0 && n > target / 2)) {
      int i = (int)rnd((uint32_t)n);
      CHECK(msrt_router_unsubscribe(r, subs[i].id) == MSRT_E_OK);
      subs[i] = subs[--n];
    }
    while (n < target) {
      live *s = &subs[n++];
      uint32_t x = rnd(100);
      snprintf(s->pat, sizeof s->pat, x < 80 ? "w.t%u" : x < 95 ? "w.t%u.x"
                                                         : "w.*.x", rnd(NAMES));
      s->q = rnd(6) == 0 ? 1 + (int)rnd(2) : 0;
      s->id = subscribe(r, s->pat, s->q == 1 ? "g1" : s->q == 2 ? "g2" : NULL);
    }
    check_round(rd, &m, subs, n);
  }
  while (n) CHECK(msrt_router_unsubscribe(r, subs[--n].id) == MSRT_E_OK);
  CHECK(count(rd, &m, "w.t1") == 0);
  msrt_match_result_free(&m);
  msrt_router_reader_free(rd);
  CHECK(msrt_router_reclaim(r) == 0);
  msrt_router_free(r);
}

static void test_churn(void) {
  churn(0, 0);          /* default cache */
  churn(UINT32_MAX, 0); /* no cache: every match walks the HAMT */
  churn(UINT32_MAX, 2); /* every node past 2 children wide */
}

/* The HAMT itself, with hashes chosen: equal hashes (collision nodes past
 * the 64 bits) and hashes sharing their low bits (deep paths). Children are
 * told apart by address only, so fake ones do: child k is (k << 6), its
 * hash H[k]. */
enum { NH = 400 };
static uint64_t H[2 * NH + 1];

static void *fake(int k) { return (void *)((uintptr_t)k << 6); }
static uint64_t fake_hash(const void *c) { return H[(uintptr_t)c >> 6]; }

static void drop_gone(rt_wide_log *log) {
  for (size_t i = 0; i < log->ngone; i++) free(log->gone[i]);
  log->ngone = log->nmade = 0;
}

static int holds(const rt_wide *w, int k) {
  uint32_t n = 0;
  for (void *const *c = rt_wide_find(w, H[k], &n); c && n--; c++)
    if (*c == fake(k)) return 1;
  return 0;
}

static void test_hamt_collisions(void) {
  for (int k = 1; k <= NH; k++) {
    if (k % 4 == 0) H[k] = 0xabcdull;                       /* all equal */
    else if (k % 4 == 1) H[k] = ((uint64_t)k << 55) | 7;    /* low bits shared */
    else H[k] = (uint64_t)k * 0x9e3779b97f4a7c15ull;
    H[k + NH] = H[k]; /* child k + NH replaces child k: the same token */
  }
  rt_wide_log log = {fake_hash, NULL, NULL, 0, 0, 0, 0, 0};
  rt_wide *w = NULL;
  for (int k = 1; k <= NH; k++) {
    CHECK(rt_wide_edit(w, H[k], NULL, fake(k), &w, &log));
    drop_gone(&log);
  }
  int ok = 1;
  for (int k = 1; k <= NH; k++) ok &= holds(w, k);
  CHECK(ok);
  H[0] = 0x1234;
  CHECK(!holds(w, 0) && !holds(w, NH + 4)); /* NH + 4: a collision, absent */
  for (int k = 1; k <= NH; k += 2) { /* drop the odd, replace the even */
    CHECK(rt_wide_edit(w, H[k], fake(k), NULL, &w, &log));
    drop_gone(&log);
    CHECK(rt_wide_edit(w, H[k + 1], fake(k + 1), fake(k + 1 + NH), &w, &log));
    drop_gone(&log);
  }
  ok = 1;
  for (int k = 1; k <= NH; k += 2)
    ok &= !holds(w, k) && !holds(w, k + 1) && holds(w, k + 1 + NH);
  CHECK(ok);
  for (int k = 2; k <= NH; k += 2) {
    CHECK(rt_wide_edit(w, H[k], fake(k + NH), NULL, &w, &log));
    drop_gone(&log);
  }
  CHECK(w == NULL); /* every node replaced and freed: ASan checks */
  free(log.made);
  free(log.gone);
}

TEST_MAIN(test_copy_work, test_churn, test_hamt_collisions)
