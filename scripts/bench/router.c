/* Router match rate and change cost (build/bench_router).
 *
 * 10,000 subscriptions in the subject convention of docs/architecture.md
 * agents.<kind>.<id>.<verb>: mostly literals, plus wildcards
 * (agents.*.*.status, agents.kind3.>, agents.*.id7.*, msrt.>, ...) and queue
 * groups. Subjects published: 90% existing agents.<kind>.<id>.<verb>, 5%
 * agents subjects nobody subscribed to exactly (wildcards only / none), 5%
 * msrt.* runtime events; drawn at random from 16,384 precomputed subjects
 * (about 8,500 distinct) held in one 512 KiB array.
 *
 * Prints the median of 3 runs of: matches/s on 1 thread and on 2 threads
 * (each with its own reader, one enter/leave per match), with the match cache
 * (default) and without (trie only); then subscribe+unsubscribe cycles/s
 * (2 snapshots each) with 10,000 subscriptions present; then the cost of
 * one wide trie node: N subscriptions many.1 .. many.N under one prefix (a
 * client's SUB flood), the mean time per subscribe for N = 1,000, 8,000 and
 * 32,000 (a change must not copy the whole node), and the same for N
 * subscriptions to one subject (nor its whole list of subscriptions).
 *
 * Usage: bench_router [matches_per_thread (default 5000000)]
 *                     [all|match|cache|trie|change|wide]
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "router/index.h"

#define NSUBJ 16384
#define STRIDE 32
#define NKIND 10
#define NID 246
static const char *const verbs[] = {"task", "result", "progress", "status"};

static char subjects[NSUBJ][STRIDE]; /* contiguous, 512 KiB */
static size_t subj_len[NSUBJ];
static long per_thread = 5000000;

static uint64_t xs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  xs ^= xs << 13;
  xs ^= xs >> 7;
  xs ^= xs << 17;
  return xs;
}

static void sub(msrt_router *r, const char *p, const char *q) {
  uint64_t id;
  msrt_error e;
  if (msrt_router_subscribe(r, p, strlen(p), q, q ? strlen(q) : 0, NULL, 1,
                            NULL, &id, &e) != MSRT_E_OK) {
    fprintf(stderr, "subscribe %s: %s\n", p, e.message);
    exit(1);
  }
}

static msrt_router *build(uint32_t cache_slots) {
  msrt_router_opts o = {0, cache_slots, 0};
  msrt_router *r = msrt_router_new(&o);
  char b[128];
  const char *wild[] = {"agents.*.*.status", "agents.kind3.>", "agents.*.id7.*",
                        "msrt.>", "agents.kind1.*.result", "agents.*.*.*.audit",
                        "msrt.supervisor.*.event", "agents.kind5.id9.>"};
  int n = 0;
  for (size_t i = 0; i < sizeof wild / sizeof *wild; i++, n++) sub(r, wild[i], NULL);
  for (int k = 0; k < NKIND; k++)
    for (int m = 0; m < 4; m++, n++) {
      snprintf(b, sizeof b, "agents.kind%d.*.task", k);
      sub(r, b, "workers");
    }
  for (int k = 0; k < NKIND && n < 10000; k++)
    for (int i = 0; i < NID && n < 10000; i++)
      for (int v = 0; v < 4 && n < 10000; v++, n++) {
        snprintf(b, sizeof b, "agents.kind%d.id%d.%s", k, i, verbs[v]);
        sub(r, b, NULL);
      }
  for (int i = 0; n < 10000; i++, n++) {
    snprintf(b, sizeof b, "tools.t%d.call", i);
    sub(r, b, NULL);
  }
  if (msrt_router_sub_count(r) != 10000) {
    fprintf(stderr, "expected 10000 subscriptions\n");
    exit(1);
  }
  return r;
}

static void make_subjects(void) {
  char b[128];
  for (int i = 0; i < NSUBJ; i++) {
    uint64_t x = rnd() % 100;
    int k = (int)(rnd() % NKIND), v = (int)(rnd() % 4);
    if (x < 90)
      snprintf(b, sizeof b, "agents.kind%d.id%d.%s", k, (int)(rnd() % NID), verbs[v]);
    else if (x < 95)
      snprintf(b, sizeof b, "agents.kind%d.id%d.%s", k, NID + (int)(rnd() % 50), verbs[v]);
    else
      snprintf(b, sizeof b, "msrt.supervisor.s%d.event", (int)(rnd() % 100));
    subj_len[i] = strlen(b);
    if (subj_len[i] >= STRIDE) exit(1);
    memcpy(subjects[i], b, subj_len[i] + 1);
  }
}

typedef struct {
  msrt_router *r;
  atomic_int *go;
  unsigned seed;
  int batch; /* matches per enter/leave; 0 = match enters by itself */
  long items;
  double cpu_s;
} worker;

static double thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run_matches(void *arg) {
  worker *w = arg;
  msrt_reader *rd = msrt_router_reader_new(w->r);
  msrt_match_result m;
  msrt_match_result_init(&m);
  uint32_t idx = w->seed;
  long items = 0;
  while (!atomic_load(w->go)) {
  }
  double c0 = thread_cpu();
  for (long i = 0; i < per_thread; i++) {
    if (w->batch && i % w->batch == 0) {
      if (i) msrt_router_reader_leave(rd);
      msrt_router_reader_enter(rd);
    }
    idx = idx * 1664525u + 1013904223u;
    uint32_t k = idx >> 18;
    msrt_router_match(rd, subjects[k], subj_len[k], &m, NULL, NULL);
    items += (long)m.len;
  }
  if (w->batch) msrt_router_reader_leave(rd);
  w->cpu_s = thread_cpu() - c0;
  w->items = items;
  msrt_match_result_free(&m);
  msrt_router_reader_free(rd);
  return NULL;
}

/* Returns matches/s by the wall clock; *cpu_rate gets matches per CPU
 * second of the matching threads (less sensitive to other load). */
static double rate(msrt_router *r, int threads, int batch, double *cpu_rate) {
  pthread_t t[2];
  worker w[2];
  atomic_int go = 0;
  for (int i = 0; i < threads; i++) {
    w[i] = (worker){r, &go, 12345u + (unsigned)i * 7919u, batch, 0, 0};
    pthread_create(&t[i], NULL, run_matches, &w[i]);
  }
  usleep(10000);
  uint64_t t0 = msrt_now_ns();
  atomic_store(&go, 1);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double s = (double)(msrt_now_ns() - t0) / 1e9, cpu = 0;
  for (int i = 0; i < threads; i++) cpu += w[i].cpu_s;
  *cpu_rate = (double)per_thread * threads / cpu;
  return (double)per_thread * threads / s;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median3(double v[3]) {
  qsort(v, 3, sizeof *v, cmp);
  return v[1];
}

/* N subscriptions under one prefix (each its own literal child of the node
 * "many"), then N to one same subject (all in one node's list): the mean
 * time per subscribe, median of 3 runs. */
static void wide_node(void) {
  static const int sizes[] = {1000, 8000, 32000};
  for (int same = 0; same < 2; same++)
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
      int n = sizes[si];
      double v[3];
      for (int k = 0; k < 3; k++) {
        msrt_router *r = msrt_router_new(NULL);
        char b[64];
        uint64_t t0 = msrt_now_ns();
        for (int i = 1; i <= n; i++) {
          uint64_t id;
          int len = snprintf(b, sizeof b, "many.%d", same ? 1 : i);
          msrt_router_subscribe(r, b, (size_t)len, NULL, 0, NULL, 1, NULL,
                                &id, NULL);
        }
        v[k] = (double)(msrt_now_ns() - t0) / 1e3 / n;
        msrt_router_free(r);
      }
      double med = median3(v);
      printf("subscribe %d %s: %.2f us per subscribe "
             "(median of 3; runs %.2f %.2f %.2f)\n",
             n, same ? "to one subject" : "under one prefix", med, v[0], v[1],
             v[2]);
    }
}

int main(int argc, char **argv) {
  if (argc > 1) per_thread = atol(argv[1]);
  const char *section = argc > 2 ? argv[2] : "all";
  bool all = strcmp(section, "all") == 0;
  bool do_match = all || strcmp(section, "match") == 0;
  bool do_cache = do_match || strcmp(section, "cache") == 0;
  bool do_trie = do_match || strcmp(section, "trie") == 0;
  bool do_change = all || strcmp(section, "change") == 0;
  bool do_wide = all || strcmp(section, "wide") == 0;
  char model[256] = "unknown";
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "model name", 10) == 0) {
        char *c = strchr(line, ':');
        if (c) {
          snprintf(model, sizeof model, "%s", c + 2);
          model[strcspn(model, "\n")] = 0;
        }
        break;
      }
    fclose(f);
  }
  printf("machine: nproc=%ld, cpu=%s\n", sysconf(_SC_NPROCESSORS_ONLN), model);
  printf("command:");
  for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
  printf("\n");
  make_subjects();
  printf("10000 subscriptions, %ld matches per thread, median of 3\n", per_thread);

  const struct {
    const char *name;
    uint32_t slots;
    int batch;
  } modes[] = {{"cache", 0, 0},
               {"cache, enter per 64", 0, 64},
               {"trie only (no cache)", UINT32_MAX, 0}};
  printf("%-21s threads  M matches/s (wall, median; runs)    M/s per CPU-s\n",
         "mode");
  for (size_t mi = 0; mi < 3; mi++) {
    if (!(modes[mi].slots == UINT32_MAX ? do_trie : do_cache)) continue;
    msrt_router *r = build(modes[mi].slots);
    for (int threads = 1; threads <= 2; threads++) {
      double v[3], c[3];
      for (int k = 0; k < 3; k++) v[k] = rate(r, threads, modes[mi].batch, &c[k]);
      double med = median3(v);
      printf("%-21s %d        %6.2f  (%.2f %.2f %.2f)          %6.2f\n",
             modes[mi].name, threads, med / 1e6, v[0] / 1e6, v[1] / 1e6,
             v[2] / 1e6, median3(c) / 1e6);
    }
    msrt_router_free(r);
  }

  if (!do_change) goto wide;
  /* Change cost: subscribe + unsubscribe of a literal next to 10,000 subs,
   * with a reader registered (idle) so reclamation scans it. */
  msrt_router *r = build(0);
  msrt_reader *rd = msrt_router_reader_new(r);
  msrt_match_result m;
  msrt_match_result_init(&m);
  double v[3];
  const int cycles = 50000;
  for (int k = 0; k < 3; k++) {
    char b[64];
    uint64_t t0 = msrt_now_ns();
    for (int i = 0; i < cycles; i++) {
      uint64_t id;
      int n = snprintf(b, sizeof b, "agents.kind%d.id%d.extra", i % NKIND, i % NID);
      msrt_router_subscribe(r, b, (size_t)n, NULL, 0, NULL, 1, NULL, &id, NULL);
      msrt_router_unsubscribe(r, id);
    }
    v[k] = 2.0 * cycles / ((double)(msrt_now_ns() - t0) / 1e9);
  }
  printf("subscribe/unsubscribe with 10000 subs: %.0f k snapshots/s "
         "(%.2f us per change)\n",
         median3(v) / 1e3, 1e6 / v[1]);
  /* The same with a match between changes (each snapshot's cache is made
   * and dropped). */
  for (int k = 0; k < 3; k++) {
    char b[64];
    uint64_t t0 = msrt_now_ns();
    for (int i = 0; i < cycles; i++) {
      uint64_t id;
      int n = snprintf(b, sizeof b, "agents.kind%d.id%d.extra", i % NKIND, i % NID);
      msrt_router_subscribe(r, b, (size_t)n, NULL, 0, NULL, 1, NULL, &id, NULL);
      msrt_router_match(rd, subjects[i % NSUBJ], subj_len[i % NSUBJ], &m, NULL, NULL);
      msrt_router_unsubscribe(r, id);
      msrt_router_match(rd, subjects[i % NSUBJ], subj_len[i % NSUBJ], &m, NULL, NULL);
    }
    v[k] = 2.0 * cycles / ((double)(msrt_now_ns() - t0) / 1e9);
  }
  printf("the same with a match after each change: %.0f k snapshots/s\n",
         median3(v) / 1e3);
  msrt_match_result_free(&m);
  msrt_router_reader_free(rd);
  msrt_router_free(r);
wide:
  if (do_wide) wide_node();
  return 0;
}
