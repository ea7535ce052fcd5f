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
 * Exit 2 on bad options, 1 when the threads cannot be pinned. */
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

int main(int argc, char **argv) {
  int a = 0, b = 1, samples = 1, every_ms = 1000;
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
    else {
      fprintf(stderr, "usage: %s [--cpus A,B] [--trips N] [--samples K] "
                      "[--every MS]\n", argv[0]);
      return 2;
    }
  }
  for (int k = 0; k < samples; k++) {
    if (k) {
      struct timespec ts = {every_ms / 1000, (every_ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
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
