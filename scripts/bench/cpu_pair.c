/* How far apart the machine's CPUs are (docs/performance.md, the two
 * levels of fan-out and queue-group throughput): two threads, pinned to
 * CPU A and CPU B, hand one cache line back and forth; prints the time of
 * a round trip (ns), which is what every message between a sender on one
 * worker and a receiver on the other pays a few times over. On a VM the
 * host may move the vCPUs: take it right before and after a benchmark.
 *   build/bench_cpu_pair [--cpus A,B (0,1)] [--trips N (200000)]
 *                        [--samples K (1)] [--every MS (1000)]
 * Prints one line per sample: "<unix time> <ns> ns per round trip".
 * Under load the other processes' time slices land in it too: run it as
 * the benchmark beside it runs (docs/performance.md: chrt -r 10).
 *   build/bench_cpu_pair --chase MB [--trips N] [--samples K] [--every MS]
 * instead walks a random cycle over MB MiB on CPU A (one dependent load a
 * step, N steps a sample) and prints "<unix time> <ns> ns per step": how
 * steady the machine's shared cache is, with no messaging in it (a few
 * MiB is what a fan-out's mailboxes and envelopes hold; scripts/bench/peers
 * --spread prints its spread beside msrt's and the peer's).
 * Exit 2 on bad options, 1 when the threads cannot be pinned or the
 * chase's memory cannot be had. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

static _Alignas(64) atomic_int ball;
static long trips = 200000;

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* The other side (its CPU checked by sample): give the ball back each
 * time it arrives. */
static void *returner(void *arg) {
  pin(*(int *)arg);
  for (long i = 0; i < trips + 1000; i++) {
    while (atomic_load_explicit(&ball, memory_order_acquire) != 1) {
    }
    atomic_store_explicit(&ball, 0, memory_order_release);
  }
  return NULL;
}

static void serve(void) {
  atomic_store_explicit(&ball, 1, memory_order_release);
  while (atomic_load_explicit(&ball, memory_order_acquire) != 0) {
  }
}

/* One sample: ns per round trip, or -1 when a thread cannot be pinned. */
static double sample(int a, int b) {
  pthread_t th;
  if (pin(b) || pin(a) || pthread_create(&th, NULL, returner, &b)) return -1;
  for (int i = 0; i < 1000; i++) serve(); /* warm up, both sides running */
  uint64_t t0 = msrt_now_ns();
  for (long i = 0; i < trips; i++) serve();
  uint64_t t1 = msrt_now_ns();
  pthread_join(th, NULL);
  return (double)(t1 - t0) / (double)trips;
}

/* The chase: a random single cycle over n slots (Sattolo's shuffle). */
static size_t *chase_make(size_t n) {
  size_t *next = malloc(n * sizeof *next);
  if (!next) return NULL;
  for (size_t i = 0; i < n; i++) next[i] = i;
  uint64_t x = 88172645463325252ull; /* xorshift64 */
  for (size_t i = n - 1; i > 0; i--) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t j = (size_t)(x % i), t = next[i];
    next[i] = next[j], next[j] = t;
  }
  return next;
}

static volatile size_t chase_at; /* where a walk ended: read, so kept */

/* One chase sample: ns per step. */
static double chase_sample(const size_t *next) {
  size_t p = chase_at;
  uint64_t t0 = msrt_now_ns();
  for (long i = 0; i < trips; i++) p = next[p];
  uint64_t t1 = msrt_now_ns();
  chase_at = p;
  return (double)(t1 - t0) / (double)trips;
}

int main(int argc, char **argv) {
  int a = 0, b = 1, samples = 1, every_ms = 1000, chase_mb = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v && !strcmp(argv[i], "--cpus") && sscanf(v, "%d,%d", &a, &b) == 2)
      i++;
    else if (v && !strcmp(argv[i], "--trips") && (trips = atol(v)) > 0)
      i++;
    else if (v && !strcmp(argv[i], "--samples") && (samples = atoi(v)) > 0)
      i++;
    else if (v && !strcmp(argv[i], "--every") && (every_ms = atoi(v)) >= 0)
      i++;
    else if (v && !strcmp(argv[i], "--chase") && (chase_mb = atoi(v)) > 0)
      i++;
    else {
      fprintf(stderr, "usage: %s [--cpus A,B] [--trips N] [--samples K] "
                      "[--every MS] [--chase MB]\n", argv[0]);
      return 2;
    }
  }
  size_t *next = NULL;
  if (chase_mb) {
    next = chase_make((size_t)chase_mb * 1048576 / sizeof *next);
    if (!next || pin(a)) {
      fprintf(stderr, "cannot chase %d MiB on CPU %d\n", chase_mb, a);
      return 1;
    }
  }
  for (int k = 0; k < samples; k++) {
    if (k) {
      struct timespec ts = {every_ms / 1000, (every_ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
    }
    if (next) {
      printf("%ld %.1f ns per step\n", (long)time(NULL), chase_sample(next));
      fflush(stdout);
      continue;
    }
    double ns = sample(a, b);
    if (ns < 0) {
      fprintf(stderr, "cannot pin to CPUs %d and %d\n", a, b);
      return 1;
    }
    printf("%ld %.0f ns per round trip\n", (long)time(NULL), ns);
    fflush(stdout);
  }
  return 0;
}
