/* Monotonic and wall clocks for timestamps and benchmarks.
 * Thread-safe (clock_gettime). */
#ifndef MSRT_CORE_CLOCK_H
#define MSRT_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds from CLOCK_MONOTONIC (arbitrary origin; for intervals). */
static inline uint64_t msrt_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME; for message timestamps). */
static inline uint64_t msrt_wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
