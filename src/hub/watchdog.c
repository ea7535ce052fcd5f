#include "hub/watchdog.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "hub/hub.h"

/* A worker's current turn. One cache line each: every turn writes it, and
 * workers sharing a line would bounce it between CPUs on every turn. */
typedef struct {
  _Alignas(64) atomic_ullong start; /* ns when the turn began, 0 = idle */
  atomic_ullong actor;              /* id of the actor it runs */
} turn_slot;

struct msrt_watchdog {
  unsigned magic; /* MSRT_HANDLE_MAGIC: the timer's data, not luv's */
  uv_timer_t timer;
  msrt_inbox *inbox;
  int kind, workers;
  uint64_t limit_ns;
  turn_slot turn[];
};

static void on_timer(uv_timer_t *t) { msrt_watchdog_check(t->data); }

msrt_watchdog *msrt_watchdog_new(uv_loop_t *loop, msrt_inbox *inbox, int kind,
                                 int workers, long slice_ms) {
  if (workers < 1 || workers > MSRT_WATCHDOG_MAX || slice_ms <= 0) return NULL;
  size_t size = sizeof(msrt_watchdog) + (size_t)workers * sizeof(turn_slot);
  msrt_watchdog *w = aligned_alloc(64, (size + 63) / 64 * 64);
  if (!w) return NULL;
  memset(w, 0, size);
  w->magic = MSRT_HANDLE_MAGIC;
  w->inbox = inbox;
  w->kind = kind;
  w->workers = workers;
  w->limit_ns = (uint64_t)slice_ms * 1000000u;
  if (uv_timer_init(loop, &w->timer) != 0) {
    free(w);
    return NULL;
  }
  w->timer.data = w;
  uv_unref((uv_handle_t *)&w->timer);
  uint64_t every = slice_ms / 2 < 5 ? 5 : (uint64_t)slice_ms / 2;
  uv_timer_start(&w->timer, on_timer, every, every);
  return w;
}

void msrt_watchdog_turn(msrt_watchdog *w, int worker, uint64_t actor_id) {
  if (worker < 0 || worker >= w->workers) return;
  atomic_store_explicit(&w->turn[worker].actor, actor_id, memory_order_relaxed);
  atomic_store_explicit(&w->turn[worker].start, actor_id ? msrt_now_ns() : 0,
                        memory_order_relaxed);
}

void msrt_watchdog_check(msrt_watchdog *w) {
  uint64_t now = msrt_now_ns();
  for (int i = 0; i < w->workers; i++) {
    unsigned long long start = /* the atomic's own type, for the CAS */
        atomic_load_explicit(&w->turn[i].start, memory_order_relaxed);
    /* a turn that began after now was read is young */
    if (!start || start >= now || now - start < w->limit_ns) continue;
    uint64_t id = atomic_load_explicit(&w->turn[i].actor, memory_order_relaxed);
    /* report once per turn: clear the start so the next check skips it */
    if (!atomic_compare_exchange_strong(&w->turn[i].start, &start, 0)) continue;
    msrt_inbox_item it = {w->kind, id, NULL,
                          (void *)(uintptr_t)((now - start) / 1000000u)};
    msrt_inbox_push(w->inbox, it);
  }
}

static void on_close(uv_handle_t *h) { free(h->data); }

void msrt_watchdog_close(msrt_watchdog *w) {
  /* closed already by the hub's last sweep (msrt_hub_close_all): left */
  if (w && !uv_is_closing((uv_handle_t *)&w->timer))
    uv_close((uv_handle_t *)&w->timer, on_close);
}
