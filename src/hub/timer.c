#include "hub/timer.h"

#include <math.h>

uint64_t msrt_timer_timeout(const uv_loop_t *loop, uint64_t due_ns) {
  /* the loop's time is a truncated reading of a clock no later than
   * uv_hrtime's, so a due time rounded up is reached only once due_ns is */
  uint64_t due_ms = due_ns / 1000000u + (due_ns % 1000000u != 0);
  uint64_t now = uv_now(loop);
  return due_ms > now ? due_ms - now : 0;
}

msrt_code msrt_timer_start_at(uv_timer_t *t, uv_timer_cb cb, uint64_t due_ns,
                              uint64_t repeat_ms) {
  return uv_timer_start(t, cb, msrt_timer_timeout(t->loop, due_ns), repeat_ms)
             ? MSRT_E_CLOSED
             : MSRT_E_OK;
}

uint64_t msrt_timer_due(double ms) {
  double ns = ms > 0 ? ceil(ms * 1e6) : 0;
  if (ns > 1e18) ns = 1e18; /* ~31 years: "never", without overflow */
  return uv_hrtime() + (uint64_t)ns;
}

msrt_code msrt_timer_start(uv_timer_t *t, uv_timer_cb cb, double ms,
                           uint64_t repeat_ms) {
  return msrt_timer_start_at(t, cb, msrt_timer_due(ms), repeat_ms);
}
