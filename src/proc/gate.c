#include "proc/gate.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/waitlist.h"

#define SC memory_order_seq_cst
#define RLX memory_order_relaxed
#define MAX_CAPACITY (1u << 31)

struct msrt_gate {
  atomic_uint count; /* slots held, transient over-takes included */
  _Atomic uint64_t bytes; /* bytes of those slots, likewise */
  uint32_t cap;
  uint64_t max_bytes;
  uint8_t policy;
  atomic_bool closed;
  atomic_uint refs;
  msrt_waitlist waiters;
  uint64_t proc_id;
  atomic_ullong notes[3]; /* by msrt_gate_note_kind */
  char name[64];
};

msrt_gate *msrt_gate_new(size_t capacity, size_t max_bytes,
                         msrt_overflow policy, uint64_t proc_id,
                         const char *name) {
  msrt_gate *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  if (!capacity) capacity = 1024;
  g->cap = (uint32_t)(capacity > MAX_CAPACITY ? MAX_CAPACITY : capacity);
  g->max_bytes = max_bytes ? max_bytes : MSRT_GATE_DEFAULT_BYTES;
  atomic_init(&g->bytes, 0);
  g->policy = (uint8_t)policy;
  atomic_init(&g->count, 0);
  atomic_init(&g->closed, false);
  atomic_init(&g->refs, 1);
  msrt_waitlist_init(&g->waiters);
  for (int i = 0; i < 3; i++) atomic_init(&g->notes[i], 0);
  g->proc_id = proc_id;
  snprintf(g->name, sizeof g->name, "%s", name ? name : "");
  return g;
}

void msrt_gate_ref(msrt_gate *g) { atomic_fetch_add_explicit(&g->refs, 1, RLX); }

void msrt_gate_unref(msrt_gate *g) {
  if (!g || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
    return;
  msrt_waitlist_free(&g->waiters);
  free(g);
}

static int has_room(msrt_gate *g) {
  return atomic_load_explicit(&g->count, SC) < g->cap &&
         atomic_load_explicit(&g->bytes, SC) < g->max_bytes;
}

/* n slots (bytes) back; wake the waiters only when that left room: a
 * failed take's undo on a gate that stays full must not wake them, or two
 * blocked senders would wake each other forever. Room is read again after
 * both subtractions, so of gives that race, the last one sees the room. */
static void give(msrt_gate *g, unsigned n, uint64_t bytes) {
  atomic_fetch_sub_explicit(&g->bytes, bytes, SC);
  atomic_fetch_sub_explicit(&g->count, n, SC);
  if (msrt_waitlist_any(&g->waiters) && has_room(g))
    msrt_waitlist_wake(&g->waiters);
}

msrt_code msrt_gate_take(msrt_gate *g, size_t bytes) {
  if (atomic_load_explicit(&g->closed, memory_order_acquire))
    return MSRT_E_CLOSED;
  unsigned n = atomic_fetch_add_explicit(&g->count, 1, SC);
  uint64_t b = atomic_fetch_add_explicit(&g->bytes, bytes, SC);
  if ((n < g->cap && b < g->max_bytes) ||
      g->policy == MSRT_OVERFLOW_DROP_OLDEST)
    return MSRT_E_OK;
  give(g, 1, bytes);
  return MSRT_E_MAILBOX_FULL;
}

void msrt_gate_give(msrt_gate *g, size_t n, size_t bytes) {
  if (n || bytes) give(g, (unsigned)n, bytes);
}

void msrt_gate_recharge(msrt_gate *g, size_t was, size_t now) {
  if (now > was) atomic_fetch_add_explicit(&g->bytes, now - was, SC);
  else if (now < was) give(g, 0, was - now);
}

/* Room or closed, for msrt_waitlist_wait (seq_cst reads: its contract). */
static int room_state(void *obj) {
  msrt_gate *g = obj;
  if (atomic_load_explicit(&g->closed, SC)) return MSRT_E_CLOSED;
  return has_room(g) ? MSRT_E_OK : MSRT_WAIT_PENDING;
}

int msrt_gate_wait_room(msrt_gate *g, void (*waker)(void *), void *ud) {
  return msrt_waitlist_wait(&g->waiters, room_state, g, waker, ud);
}

bool msrt_gate_cancel_wait(msrt_gate *g, void (*waker)(void *), void *ud) {
  return msrt_waitlist_cancel(&g->waiters, waker, ud);
}

void msrt_gate_close(msrt_gate *g) {
  atomic_store_explicit(&g->closed, true, SC);
  msrt_waitlist_wake(&g->waiters);
}

void msrt_gate_note(msrt_gate *g, msrt_gate_note_kind kind) {
  atomic_fetch_add_explicit(&g->notes[kind], 1, RLX);
}

void msrt_gate_get_stats(const msrt_gate *g, msrt_gate_stats *st) {
  /* the counters are only ever added to: a relaxed read is a snapshot */
  msrt_gate *m = (msrt_gate *)g;
  st->dropped = atomic_load_explicit(&m->notes[MSRT_GATE_DROPPED], RLX);
  st->refused = atomic_load_explicit(&m->notes[MSRT_GATE_REFUSED], RLX);
  st->blocked = atomic_load_explicit(&m->notes[MSRT_GATE_BLOCKED], RLX);
}

msrt_overflow msrt_gate_policy(const msrt_gate *g) {
  return (msrt_overflow)g->policy;
}

size_t msrt_gate_capacity(const msrt_gate *g) { return g->cap; }
size_t msrt_gate_max_bytes(const msrt_gate *g) { return g->max_bytes; }
uint64_t msrt_gate_proc_id(const msrt_gate *g) { return g->proc_id; }
const char *msrt_gate_name(const msrt_gate *g) { return g->name; }

size_t msrt_gate_count(const msrt_gate *g) {
  return atomic_load_explicit(&((msrt_gate *)g)->count, RLX);
}

size_t msrt_gate_bytes(const msrt_gate *g) {
  return atomic_load_explicit(&((msrt_gate *)g)->bytes, RLX);
}

int msrt_gate_full(const msrt_gate *g) {
  return msrt_gate_count(g) >= g->cap || msrt_gate_bytes(g) >= g->max_bytes;
}
