/* C-level spawn-and-reap of /bin/true through src/proc (no Lua): the
 * floor under scripts/bench/proc.lua's spawn figures.
 *   build/bench_proc [spawns] [runs]
 * For host RSS 50 MiB and 1 GiB (ballast allocated and touched), prints
 * the median processes/s one after another and 16 in flight, without
 * limits and with one set (both vfork+exec, each child in a cgroup of its
 * own where cgroup v2 is writable). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "proc/proc.h"

static int live, done_total;

static msrt_code on_pub(void *ud, msrt_proc *p, const char *s, size_t sl,
                        const char *r, size_t rl, const void *h, size_t hl,
                        const void *pl, size_t plen, msrt_error *err) {
  return MSRT_E_OK;
}

static void on_exit_(void *ud, msrt_proc *p, const msrt_proc_exit *x) {
  live--;
  done_total++;
  msrt_proc_release(p);
}

static const msrt_proc_events EV = {on_pub, NULL, NULL, NULL, NULL, on_exit_};

static long rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f && fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
  if (f) fclose(f);
  return res * 4096;
}

static double run(uv_loop_t *loop, msrt_procs *r, int n, int width, int limit) {
  static const char *argv[] = {"/bin/true"};
  msrt_proc_spec s = {0};
  s.name = "bt";
  s.argv = argv;
  s.argc = 1;
  s.publish_as = "agents.bt";
  s.limits = (msrt_proc_limits){limit ? 1024 : -1, -1, -1, -1};
  s.grace_ms = s.eof_wait_ms = -1;
  s.overflow = MSRT_OVERFLOW_DEFAULT;
  int started = 0;
  done_total = 0;
  uint64_t t0 = msrt_now_ns();
  while (done_total < n) {
    while (live < width && started < n) {
      msrt_error err;
      if (!msrt_proc_spawn(r, &s, &err)) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
      }
      live++;
      started++;
    }
    uv_run(loop, UV_RUN_ONCE);
  }
  return n / ((msrt_now_ns() - t0) / 1e9);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2000, runs = argc > 2 ? atoi(argv[2]) : 3;
  uv_loop_t loop;
  uv_loop_init(&loop);
  msrt_error err;
  msrt_procs *r = msrt_procs_new(&loop, &EV, NULL, &err);
  long sizes[] = {50l << 20, 1024l << 20};
  for (int si = 0; si < 2; si++) {
    long need = sizes[si] - rss();
    if (need > 0) memset(malloc((size_t)need), 1, (size_t)need); /* kept */
    for (int limit = 0; limit < 2; limit++)
      for (int width = 1; width <= 16; width += 15) {
        double v[16];
        for (int i = 0; i < runs && i < 16; i++) v[i] = run(&loop, r, n, width, limit);
        qsort(v, (size_t)runs, sizeof *v, cmp);
        printf("rss %4ld MiB %-12s %2d in flight: %.0f/s\n", rss() >> 20,
               limit ? "with a limit" : "no limits", width, v[runs / 2]);
      }
  }
  msrt_procs_free(r, 100);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}
