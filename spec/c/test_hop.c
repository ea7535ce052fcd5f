/* How far the other worker's CPU is (src/sched/hop.h): the steal rule on
 * set figures, and a measure of a line another thread really writes. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/clock.h"
#include "ctest.h"
#include "sched/hop.h"

/* A scale of 1 tick a nanosecond, as msrt_hop_scale_update would derive
 * it, with a wait of 1000 us. */
static msrt_hop_scale ns_scale(void) {
  msrt_hop_scale c = {.ticks0 = 0, .ns0 = 0};
  msrt_hop_scale_update(&c, 2000000, 2000000, 1000);
  return c;
}

static void test_scale(void) {
  msrt_hop_scale c;
  msrt_hop_scale_init(&c);
  /* less than 1 ms after the origin: no rate yet, every steal pays */
  msrt_hop_scale_update(&c, c.ticks0 + 10, c.ns0 + 1000, 1000);
  CHECK(c.tpus == 0);
  msrt_hop p = {.hop = 1000000};
  CHECK(msrt_hop_pays(&p, 1, 0, 0, &c) == 1);
  CHECK(msrt_hop_ns(&p, &c) == 0);
  msrt_hop_scale k = ns_scale();
  CHECK(k.tpus == 1000);
  CHECK(k.near == MSRT_HOP_NEAR_NS);
  CHECK(k.stuck == 1000000 && k.epoch == 1000ull * MSRT_HOP_EPOCH_US);
  CHECK(k.backoff == 1000ull * MSRT_HOP_BACKOFF_US);
  /* 2 ticks a ns; the default wait */
  msrt_hop_scale_update(&k, 4000000, 2000000, 0);
  CHECK(k.tpus == 2000 && k.stuck == 2000ull * MSRT_HOP_STUCK_US);
}

static void test_pays(void) {
  msrt_hop_scale c = ns_scale();
  msrt_hop far = {.hop = 300}, near = {.hop = 40}, none = {0};
  uint64_t t = 5000000;
  /* near: take anything; not measured yet: as far, with a hop of twice
   * the near bound */
  CHECK(msrt_hop_pays(&near, 10, 7, t, &c) == 1);
  CHECK(msrt_hop_pays(&none, 10, 7, t, &c) == 0);
  CHECK(msrt_hop_pays(&none, 801, 7, t, &c) == 1);
  CHECK(msrt_hop_pays(&none, 0, 7, t, &c) == 1);
  /* far: cheap actors stay, dear ones and new ones (never ran) move */
  CHECK(msrt_hop_pays(&far, 100, 7, t, &c) == 0);
  CHECK(msrt_hop_pays(&far, 1200, 7, t + 10, &c) == 0);
  CHECK(msrt_hop_pays(&far, 1201, 7, t + 10, &c) == 1);
  CHECK(msrt_hop_pays(&far, 0, 7, t + 20, &c) == 1);
  CHECK(msrt_hop_ns(&far, &c) == 300);
  /* the queue's head still at 7 a wait later: taken anyway */
  CHECK(msrt_hop_pays(&far, 100, 7, t + 999999, &c) == 0);
  CHECK(msrt_hop_pays(&far, 100, 7, t + 1000000, &c) == 1);
  /* the head moved: the wait starts again */
  CHECK(msrt_hop_pays(&far, 100, 8, t + 1000001, &c) == 0);
  CHECK(msrt_hop_pays(&far, 100, 8, t + 1500000, &c) == 0);
}

/* A real line: this thread reads a counter another thread keeps writing;
 * a set completes, and its median is a plausible fetch (under 100 us),
 * not zero. */
static atomic_uint line;
static atomic_int stop;

static void *writer(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&line, 1, memory_order_relaxed);
    for (volatile int i = 0; i < 100; i++) {
    }
  }
  return NULL;
}

static void test_look(void) {
  msrt_hop_scale c;
  msrt_hop_scale_init(&c);
  struct timespec ms = {0, 2000000};
  nanosleep(&ms, NULL);
  msrt_hop_scale_update(&c, msrt_ticks(), msrt_now_ns(), 0);
  CHECK(c.tpus > 0);
  pthread_t th;
  CHECK(pthread_create(&th, NULL, writer, NULL) == 0);
  msrt_hop p = {0};
  int sets = 0;
  uint64_t deadline = msrt_now_ns() + 5000000000ull;
  while (sets < 2 && msrt_now_ns() < deadline) {
    sets += msrt_hop_look(&p, &line, msrt_ticks(), &c);
    sched_yield(); /* one CPU: let the writer run between reads */
  }
  atomic_store(&stop, 1);
  pthread_join(th, NULL);
  CHECK(sets == 2);
  CHECK(p.hop > 0);
  CHECK(msrt_hop_ns(&p, &c) < 100000);
  printf("hop: %llu ns (median of %d reads of a line another thread "
         "writes)\n", (unsigned long long)msrt_hop_ns(&p, &c),
         MSRT_HOP_SAMPLES);
}

TEST_MAIN(test_scale, test_pays, test_look)
