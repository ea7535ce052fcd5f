/* Monotonic and wall clocks for timestamps and benchmarks.
 * Thread-safe (clock_gettime). */
#ifndef MSRT_CORE_CLOCK_H
#define MSRT_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

/* Nanoseconds on clock id (the three below). */
static inline uint64_t msrt_clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Nanoseconds from CLOCK_MONOTONIC (arbitrary origin; for intervals). */
static inline uint64_t msrt_now_ns(void) {
  return msrt_clock_ns(CLOCK_MONOTONIC);
}

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME; for message timestamps). */
static inline uint64_t msrt_wall_ns(void) {
  return msrt_clock_ns(CLOCK_REALTIME);
}

/* Nanoseconds since the Unix epoch to the kernel's tick (CLOCK_REALTIME_
 * COARSE: 4 ms on Debian's kernels), for a stamp on every message: 5 ns
 * a call where msrt_wall_ns takes 23 (this VM, clocksource tsc), and
 * msrt_wall_ns was 7% of fan-out's publishing CPU (docs/performance.md). */
static inline uint64_t msrt_wall_coarse_ns(void) {
  return msrt_clock_ns(CLOCK_REALTIME_COARSE);
}

/* A cycle counter for short intervals on one thread: the TSC on x86
 * (25 ticks a read in this VM, where msrt_now_ns takes ~20 ns), elsewhere
 * nanoseconds. Units differ by machine: compare ticks with ticks, or scale
 * by a rate measured against msrt_now_ns. Thread-safe. */
static inline uint64_t msrt_ticks(void) {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return msrt_now_ns();
#endif
}

#endif
