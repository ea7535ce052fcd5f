/* Timers on the hub loop that never fire early.
 *
 * libuv arms a timer from the loop's cached time (uv_now), which is read
 * once per loop iteration, truncated to whole milliseconds and, on Linux,
 * taken from CLOCK_MONOTONIC_COARSE when that ticks at 1 ms or finer. A callback that ran 30 ms since the
 * loop last looked at the clock and then starts a 50 ms timer gets it
 * after ~20 ms. These functions arm from CLOCK_MONOTONIC instead
 * (uv_hrtime): the due time is rounded up to the loop's next whole
 * millisecond, so the loop's time reaching it proves the delay passed.
 * The callback may run later (by up to a millisecond, plus whatever the
 * loop is busy with), never earlier. A repeating timer's k-th run comes
 * no earlier than its first due time plus (k-1) periods.
 *
 * Thread-safety: the loop's thread only, as for any libuv handle. */
#ifndef MSRT_HUB_TIMER_H
#define MSRT_HUB_TIMER_H

#include <stdint.h>
#include <uv.h>

#include "core/error.h"

/* The timeout to pass to uv_timer_start (ms, relative to t's loop's
 * cached time) for a callback due at due_ns on uv_hrtime's clock
 * (CLOCK_MONOTONIC, nanoseconds). 0 when due_ns has passed. */
uint64_t msrt_timer_timeout(const uv_loop_t *loop, uint64_t due_ns);

/* The uv_hrtime clock's time ms milliseconds from now (fractions count,
 * rounded up to a nanosecond; negative is now; capped at ~31 years). */
uint64_t msrt_timer_due(double ms);

/* uv_timer_start with cb due ms milliseconds (fractions count, rounded
 * up to a nanosecond) after this call, then every repeat_ms (0: once).
 * Returns MSRT_E_OK, or MSRT_E_CLOSED for a closing handle (libuv's
 * UV_EINVAL). */
msrt_code msrt_timer_start(uv_timer_t *t, uv_timer_cb cb, double ms,
                           uint64_t repeat_ms);

/* The same, due at due_ns on uv_hrtime's clock: for a delay measured from
 * a call made elsewhere (an actor's ctx:after, stamped on its worker). */
msrt_code msrt_timer_start_at(uv_timer_t *t, uv_timer_cb cb, uint64_t due_ns,
                              uint64_t repeat_ms);

#endif
