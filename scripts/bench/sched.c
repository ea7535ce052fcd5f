/* bench_sched: the C ceiling of the scheduler core (trivial C run callbacks,
 * no Lua). Prints the machine, the command line and, as the median of
 * --runs runs (default 3):
 *   flood     1 producer actor -> 1 consumer actor, 1,000,000 msgs (msgs/s),
 *             with one shared envelope (ref per push) and with a fresh
 *             envelope per message (msrt_env_new + unref);
 *   pingpong  1, 8, 64 pairs: round trips/s and p50/p99 round-trip us;
 *   fanout    1 producer -> 4 consumers, a fresh envelope per publish, the
 *             stream in one producer turn (published/s);
 *   create    msrt_actor_new rate (cells/s) and RSS bytes per idle cell,
 *             fresh and after one message through each cell.
 * Options: --workers N (2) --spin US (50) --batch N (64) --cap N (1024)
 *          --mode default|shared|nolifo|nodefer --runs N (3)
 *          --msgs N (1000000)
 *          --secs S (1.0: duration of each ping-pong run)
 *          --only flood|fanout|pingpong|create
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <malloc.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/envelope.h"
#include "sched/sched.h"

static int opt_workers = 2, opt_spin = 50, opt_batch = 64, opt_runs = 3;
static size_t opt_cap = 1024;
static long opt_msgs = 1000000;
static double opt_secs = 1.0;
static unsigned opt_flags = 0;
static const char *opt_mode = "default";
static const char *opt_only = ""; /* flood | pingpong | create | "" (all) */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* Every actor ud starts with its run function. */
typedef msrt_run_result (*fn_t)(void *self, msrt_actor *a, int budget);
static msrt_run_result run_cb(msrt_actor *a, int budget, void *ud, int w) {
  (void)w;
  return (*(fn_t *)ud)(ud, a, budget);
}

static msrt_sched *mk(void) {
  msrt_sched_config c = {0};
  c.workers = opt_workers;
  c.batch = opt_batch;
  c.spin_us = opt_spin;
  c.mailbox_capacity = opt_cap;
  c.overflow = MSRT_OVERFLOW_BLOCK;
  c.run = run_cb;
  c.flags = opt_flags;
  msrt_sched *s = NULL;
  if (msrt_sched_new(&c, &s, NULL) != MSRT_E_OK) abort();
  return s;
}

static msrt_envelope *env(void) {
  return msrt_env_new("b", 1, NULL, 0, NULL, 0, "x", 1, 5, 0, 0);
}

/* ---- flood ------------------------------------------------------------- */

typedef struct {
  fn_t fn;
  msrt_actor *self, *to;
  long left;
  int fresh;
  msrt_envelope *e;  /* shared envelope, or the wake-up token */
} producer_t;

typedef struct {
  _Alignas(64) fn_t fn; /* a line each: the consumers count on their CPU */
  atomic_long got;
  long want;
  atomic_uint_fast64_t done_ns;
} consumer_t;

static void producer_waker(void *ud) {
  producer_t *p = ud;
  msrt_actor_push_sys(p->self, p->e);
}

static msrt_run_result producer_fn(void *self, msrt_actor *a, int budget) {
  producer_t *p = self;
  msrt_envelope *x;
  while ((x = msrt_actor_pop(a))) msrt_env_unref(x); /* kicks / wake-ups */
  for (int i = 0; i < budget && p->left > 0; i++) {
    msrt_envelope *e = p->fresh ? env() : p->e;
    int r = msrt_actor_offer(p->to, e, NULL, NULL);
    if (p->fresh) msrt_env_unref(e);
    if (r == MSRT_E_MAILBOX_FULL) {
      r = msrt_actor_wait_room(p->to, producer_waker, p);
      if (r == MSRT_WAIT_PENDING) return MSRT_RUN_WAITING;
      continue;
    }
    if (r != MSRT_E_OK) abort();
    p->left--;
  }
  if (p->left > 0) msrt_actor_push_sys(a, p->e); /* continue next turn */
  return MSRT_RUN_IDLE;
}

static msrt_run_result consumer_fn(void *self, msrt_actor *a, int budget) {
  (void)budget;
  consumer_t *c = self;
  msrt_envelope *e;
  long n = 0;
  while ((e = msrt_actor_pop(a))) {
    msrt_env_unref(e);
    n++;
  }
  if (atomic_fetch_add_explicit(&c->got, n, memory_order_relaxed) + n ==
      c->want)
    atomic_store(&c->done_ns, msrt_now_ns());
  return MSRT_RUN_IDLE;
}

static double flood_once(int fresh, msrt_sched_stats *st_out) {
  msrt_sched *s = mk();
  producer_t p = {producer_fn, NULL, NULL, opt_msgs, fresh, env()};
  consumer_t c = {consumer_fn, 0, opt_msgs, 0};
  msrt_actor *ca = msrt_actor_new(s, &c, 0, MSRT_OVERFLOW_DEFAULT);
  msrt_actor *pa = msrt_actor_new(s, &p, 0, MSRT_OVERFLOW_DEFAULT);
  p.self = pa;
  p.to = ca;
  msrt_sched_start(s);
  sleep_ms(20);
  uint64_t t0 = msrt_now_ns();
  msrt_actor_push_sys(pa, p.e);
  while (!atomic_load(&c.done_ns)) sleep_ms(1);
  double secs = (double)(atomic_load(&c.done_ns) - t0) / 1e9;
  msrt_sched_stats_get(s, st_out, NULL);
  msrt_sched_free(s);
  msrt_actor_unref(ca);
  msrt_actor_unref(pa);
  msrt_env_unref(p.e);
  return (double)opt_msgs / secs;
}

/* ---- fan-out ------------------------------------------------------------- */

/* One producer, a fresh envelope per publish offered to FAN consumers, the
 * whole stream in one turn (as actors.lua's sender, whose loop is one turn
 * of a Lua actor), waiting for room when a mailbox is full. */
#define FAN 4

typedef struct {
  _Alignas(64) fn_t fn; /* not on a consumer's line */
  msrt_actor *self, *to[FAN];
  long left;
  int k;                    /* the next consumer of cur */
  msrt_envelope *cur, *tok; /* the publish in progress; the wake-up token */
} fan_t;

static void fan_waker(void *ud) {
  fan_t *p = ud;
  msrt_actor_push_sys(p->self, p->tok);
}

static msrt_run_result fan_fn(void *self, msrt_actor *a, int budget) {
  (void)budget;
  fan_t *p = self;
  msrt_envelope *x;
  while ((x = msrt_actor_pop(a))) msrt_env_unref(x); /* kicks / wake-ups */
  while (p->left > 0) {
    if (!p->cur) {
      p->cur = env();
      p->k = 0;
    }
    while (p->k < FAN) {
      int r = msrt_actor_offer(p->to[p->k], p->cur, NULL, NULL);
      if (r == MSRT_E_MAILBOX_FULL) {
        if (msrt_actor_wait_room(p->to[p->k], fan_waker, p) ==
            MSRT_WAIT_PENDING)
          return MSRT_RUN_WAITING;
        continue;
      }
      if (r != MSRT_E_OK) abort();
      p->k++;
    }
    msrt_env_unref(p->cur);
    p->cur = NULL;
    p->left--;
  }
  return MSRT_RUN_IDLE;
}

static double fanout_once(msrt_sched_stats *st_out) {
  msrt_sched *s = mk();
  fan_t p = {fan_fn, NULL, {NULL}, opt_msgs, 0, NULL, env()};
  consumer_t c[FAN];
  for (int i = 0; i < FAN; i++) {
    c[i] = (consumer_t){consumer_fn, 0, opt_msgs, 0};
    p.to[i] = msrt_actor_new(s, &c[i], 0, MSRT_OVERFLOW_DEFAULT);
  }
  msrt_actor *pa = msrt_actor_new(s, &p, 0, MSRT_OVERFLOW_DEFAULT);
  p.self = pa;
  msrt_sched_start(s);
  sleep_ms(20);
  uint64_t t0 = msrt_now_ns(), t1 = 0;
  msrt_actor_push_sys(pa, p.tok);
  for (int i = 0; i < FAN; i++) {
    while (!atomic_load(&c[i].done_ns)) sleep_ms(1);
    if (atomic_load(&c[i].done_ns) > t1) t1 = atomic_load(&c[i].done_ns);
  }
  msrt_sched_stats_get(s, st_out, NULL);
  msrt_sched_free(s);
  for (int i = 0; i < FAN; i++) msrt_actor_unref(p.to[i]);
  msrt_actor_unref(pa);
  msrt_env_unref(p.tok);
  return (double)opt_msgs / ((double)(t1 - t0) / 1e9);
}

/* ---- ping-pong ----------------------------------------------------------- */

#define MAX_SAMPLES 200000

typedef struct {
  fn_t fn;
  msrt_actor *peer;
  msrt_envelope *e;
  int initiator;
  uint64_t t0;
  long rts;
  double *samples;
  long nsamples, cap;
} pp_t;

static atomic_int pp_stop;

static msrt_run_result pp_fn(void *self, msrt_actor *a, int budget) {
  (void)budget;
  pp_t *p = self;
  msrt_envelope *e;
  while ((e = msrt_actor_pop(a))) {
    msrt_env_unref(e);
    if (p->initiator) {
      uint64_t now = msrt_now_ns();
      if (p->t0) {
        p->rts++;
        if (p->rts > 100 && p->nsamples < p->cap)
          p->samples[p->nsamples++] = (double)(now - p->t0) / 1000.0;
      }
      if (atomic_load_explicit(&pp_stop, memory_order_relaxed)) continue;
      p->t0 = msrt_now_ns();
    }
    if (msrt_actor_offer(p->peer, p->e, NULL, NULL) != MSRT_E_OK) abort();
  }
  return MSRT_RUN_IDLE;
}

static void pingpong_once(int pairs, double *rate, double *p50, double *p99,
                          msrt_sched_stats *st) {
  msrt_sched *s = mk();
  pp_t *pp = calloc((size_t)pairs * 2, sizeof *pp);
  msrt_actor **aa = calloc((size_t)pairs * 2, sizeof *aa);
  long cap = MAX_SAMPLES / pairs;
  double *samples = malloc(sizeof(double) * (size_t)cap * (size_t)pairs);
  for (int i = 0; i < 2 * pairs; i++) {
    pp[i].fn = pp_fn;
    pp[i].e = env();
    pp[i].initiator = (i % 2 == 0);
    if (pp[i].initiator) {
      pp[i].samples = samples + (size_t)(i / 2) * (size_t)cap;
      pp[i].cap = cap;
    }
    aa[i] = msrt_actor_new(s, &pp[i], 0, MSRT_OVERFLOW_DEFAULT);
  }
  for (int i = 0; i < 2 * pairs; i++) pp[i].peer = aa[i ^ 1];
  atomic_store(&pp_stop, 0);
  msrt_sched_start(s);
  sleep_ms(20);
  uint64_t t0 = msrt_now_ns();
  for (int i = 0; i < 2 * pairs; i += 2)
    msrt_actor_offer(aa[i], pp[i].e, NULL, NULL);
  sleep_ms((int)(opt_secs * 1000));
  atomic_store(&pp_stop, 1);
  uint64_t t1 = msrt_now_ns();
  sleep_ms(20);
  msrt_sched_stats_get(s, st, NULL);
  msrt_sched_free(s);
  long rts = 0, ns = 0;
  for (int i = 0; i < 2 * pairs; i += 2) {
    rts += pp[i].rts;
    /* compact samples */
    memmove(samples + ns, pp[i].samples, sizeof(double) * (size_t)pp[i].nsamples);
    ns += pp[i].nsamples;
  }
  *rate = (double)rts / ((double)(t1 - t0) / 1e9);
  qsort(samples, (size_t)ns, sizeof *samples, cmp_double);
  *p50 = ns ? samples[ns / 2] : 0;
  *p99 = ns ? samples[(long)(ns * 0.99)] : 0;
  for (int i = 0; i < 2 * pairs; i++) {
    msrt_actor_unref(aa[i]);
    msrt_env_unref(pp[i].e);
  }
  free(samples);
  free(aa);
  free(pp);
}

/* ---- create ---------------------------------------------------------------- */

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * sysconf(_SC_PAGESIZE);
}

static fn_t idle_fn_ptr;
static msrt_run_result idle_fn(void *self, msrt_actor *a, int budget) {
  (void)self;
  (void)budget;
  msrt_envelope *e;
  while ((e = msrt_actor_pop(a))) msrt_env_unref(e);
  return MSRT_RUN_IDLE;
}

static long heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return (long)(mi.uordblks + mi.hblkhd);
}

/* rss_*: RSS growth per cell (meaningful on the first run only: later runs
 * reuse the heap pages freed by the previous one); heap_*: bytes malloc
 * accounts for, per cell (includes malloc's per-chunk overhead). "used"
 * is after one message through the normal and the sys lane of each cell
 * (each used lane keeps one 16-byte node as its dummy; the node pool's
 * free nodes are included). */
static void create_once(double *rate, double *rss_fresh, double *heap_fresh,
                        double *heap_used) {
  enum { N = 100000 };
  msrt_sched *s = mk();
  msrt_actor **v = malloc(sizeof *v * N);
  idle_fn_ptr = idle_fn;
  long r0 = rss_bytes(), h0 = heap_bytes();
  uint64_t t0 = msrt_now_ns();
  for (int i = 0; i < N; i++)
    v[i] = msrt_actor_new(s, &idle_fn_ptr, 0, MSRT_OVERFLOW_DEFAULT);
  uint64_t t1 = msrt_now_ns();
  long r1 = rss_bytes(), h1 = heap_bytes();
  *rate = N / ((double)(t1 - t0) / 1e9);
  *rss_fresh = (double)(r1 - r0) / N;
  *heap_fresh = (double)(h1 - h0) / N;
  msrt_sched_start(s);
  msrt_envelope *e = env();
  for (int i = 0; i < N; i++) {
    msrt_actor_offer(v[i], e, NULL, NULL);
    msrt_actor_push_sys(v[i], e);
  }
  msrt_sched_stats st;
  do {
    sleep_ms(5);
    msrt_sched_stats_get(s, &st, NULL);
  } while (st.total.handled < 2u * N);
  *heap_used = (double)(heap_bytes() - h0) / N;
  msrt_sched_free(s);
  for (int i = 0; i < N; i++) msrt_actor_unref(v[i]);
  msrt_env_unref(e);
  free(v);
}

/* ---- main -------------------------------------------------------------------- */

static void machine(int argc, char **argv) {
  char model[256] = "unknown";
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "model name", 10)) {
        char *p = strchr(line, ':');
        if (p) {
          p += 2;
          p[strcspn(p, "\n")] = 0;
          snprintf(model, sizeof model, "%s", p);
        }
        break;
      }
    }
    fclose(f);
  }
  printf("machine: nproc=%ld, cpu=%s\n", sysconf(_SC_NPROCESSORS_ONLN), model);
  printf("command:");
  for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
  printf("\nconfig: workers=%d batch=%d spin_us=%d cap=%zu mode=%s runs=%d "
         "(median reported)\n",
         opt_workers, opt_batch, opt_spin, opt_cap, opt_mode, opt_runs);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "0";
    if (!strcmp(a, "--workers")) opt_workers = atoi(v), i++;
    else if (!strcmp(a, "--spin")) opt_spin = atoi(v), i++;
    else if (!strcmp(a, "--batch")) opt_batch = atoi(v), i++;
    else if (!strcmp(a, "--cap")) opt_cap = (size_t)atol(v), i++;
    else if (!strcmp(a, "--runs")) opt_runs = atoi(v), i++;
    else if (!strcmp(a, "--msgs")) opt_msgs = atol(v), i++;
    else if (!strcmp(a, "--secs")) opt_secs = atof(v), i++;
    else if (!strcmp(a, "--only")) opt_only = v, i++;
    else if (!strcmp(a, "--mode")) {
      opt_mode = v;
      i++;
      if (!strcmp(v, "shared")) opt_flags = MSRT_SCHED_SHARED_QUEUE;
      else if (!strcmp(v, "nolifo")) opt_flags = MSRT_SCHED_NO_LIFO;
      else if (!strcmp(v, "nodefer")) opt_flags = MSRT_SCHED_NO_DEFER;
      else if (strcmp(v, "default")) {
        fprintf(stderr, "bad --mode %s\n", v);
        return 2;
      }
    } else {
      fprintf(stderr, "usage: %s [--workers N] [--spin US] [--batch N] "
                      "[--cap N] [--mode default|shared|nolifo|nodefer] "
                      "[--runs N] "
                      "[--msgs N] [--secs S]\n", argv[0]);
      return 2;
    }
  }
  if (opt_runs < 1) opt_runs = 1;
  if (opt_runs > 15) opt_runs = 15;
  machine(argc, argv);

  double v[15], w[15], x[15];
  msrt_sched_stats st;
  int all = !*opt_only;
  if (all || !strcmp(opt_only, "create")) {
    double y[15];
    for (int r = 0; r < opt_runs; r++) create_once(&v[r], &w[r], &x[r], &y[r]);
    double rss_first = w[0];
    printf("create: %.2f M cells/s; idle cell (sizeof 256): RSS %.0f B "
           "(first run, fresh heap), heap %.0f B fresh, %.0f B after one "
           "message on 2 lanes\n",
           median(v, opt_runs) / 1e6, rss_first, median(x, opt_runs),
           median(y, opt_runs));
  }
  for (int fresh = getenv("FLOOD_FRESH_ONLY") ? 1 : 0;
       fresh < 2 && (all || !strcmp(opt_only, "flood"));
       fresh++) {
    uint64_t wakes = 0, parks = 0, steals = 0;
    for (int r = 0; r < opt_runs; r++) {
      v[r] = flood_once(fresh, &st);
      wakes += st.total.wakes;
      parks += st.total.parks;
      steals += st.total.steals;
    }
    printf("flood 1->1 %ld msgs (%s envelope): %.2f M msgs/s  "
           "[per run: parks %llu wakes %llu steals %llu]\n",
           opt_msgs, fresh ? "fresh" : "shared", median(v, opt_runs) / 1e6,
           (unsigned long long)(parks / (uint64_t)opt_runs),
           (unsigned long long)(wakes / (uint64_t)opt_runs),
           (unsigned long long)(steals / (uint64_t)opt_runs));
  }
  if (all || !strcmp(opt_only, "fanout")) {
    uint64_t turns = 0, steals = 0;
    for (int r = 0; r < opt_runs; r++) {
      v[r] = fanout_once(&st);
      turns += st.total.turns;
      steals += st.total.steals;
    }
    double med = median(v, opt_runs); /* sorts v */
    printf("fanout 1->%d %ld msgs (fresh envelope): %.2f M published/s "
           "(%.2f-%.2f)  [per run: turns %llu steals %llu]\n",
           FAN, opt_msgs, med / 1e6, v[0] / 1e6, v[opt_runs - 1] / 1e6,
           (unsigned long long)(turns / (uint64_t)opt_runs),
           (unsigned long long)(steals / (uint64_t)opt_runs));
  }
  int pairs[] = {1, 8, 64};
  for (int k = 0; k < 3 && (all || !strcmp(opt_only, "pingpong")); k++) {
    uint64_t wakes = 0, parks = 0, steals = 0;
    for (int r = 0; r < opt_runs; r++) {
      pingpong_once(pairs[k], &v[r], &w[r], &x[r], &st);
      wakes += st.total.wakes;
      parks += st.total.parks;
      steals += st.total.steals;
    }
    printf("pingpong %2d pairs: %.2f M round trips/s, p50 %.2f us, "
           "p99 %.2f us  [per run: parks %llu wakes %llu steals %llu]\n",
           pairs[k], median(v, opt_runs) / 1e6, median(w, opt_runs),
           median(x, opt_runs), (unsigned long long)(parks / (uint64_t)opt_runs),
           (unsigned long long)(wakes / (uint64_t)opt_runs),
           (unsigned long long)(steals / (uint64_t)opt_runs));
  }
  return 0;
}
