#include "hub/inbox.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/spin.h"
#include "hub/hub.h"

struct msrt_inbox {
  unsigned magic; /* MSRT_HANDLE_MAGIC, first: marks the handle as ours */
  uv_async_t async;
  /* The hub's own pushes (a process's reply, a publish from a hub
   * callback) start this instead of sending the async: an active idle
   * handle keeps the loop's next poll from blocking, and its callback
   * drains. An async send is a write(2) on libuv's eventfd and a read(2)
   * back, one pair per push that found no wake-up under way: about one
   * a process reply in the crash storm (75k writes/s on the hub). */
  uv_idle_t idle;
  pthread_mutex_t lock;
  msrt_inbox_item *items, *spare;
  size_t n, cap, spare_cap;
  msrt_inbox_node *over, *over_tail; /* nodes queued when items was full */
  pthread_t hub;  /* the thread that made the inbox: the hub's */
  size_t foreign; /* of the n items, those other threads pushed */
  int closed;
  /* A wake-up is under way: an async send not yet run, or the hub in a
   * drain that will look again before it returns (drain_round clears it
   * when it finds the inbox empty). Pushes meanwhile send nothing. */
  int wake_due;
  int draining; /* a drain callback that drains again must not recurse */
  /* Pacing's own record (hub only, see pace): what waited when the last
   * pause began (SIZE_MAX: the last round did not pause), the rounds
   * still to go without pausing, and the next such stretch's length. */
  size_t pace_waiting;
  unsigned pace_skip, pace_backoff;
  msrt_inbox_drain_fn fn;
  void *ud;
  /* Set by the push that brings the vector to PACE_BATCH items, cleared
   * by the round that takes them. In a line of its own: the hub's pause
   * (pace) reads it in a loop without taking the pushers' lines away. */
  _Alignas(64) atomic_int batch_ready;
};

static void drain(msrt_inbox *in, uint64_t budget_ns);
static void on_idle(uv_idle_t *i);

/* Pacing a stream. Left alone, a hub that handles an item faster than a
 * worker publishes one drains rounds of one to three items, and every
 * round takes the lock's and the vector's cache lines from the pushing
 * CPU, which then waits for them back at its next push: the sender, not
 * the hub, becomes the bottleneck (with the two CPUs far apart, ~400 ns a
 * line). So after a round of fewer than PACE_BATCH items that left more
 * waiting (a stream, not a lone reply), the hub pauses until PACE_BATCH
 * items wait or PACE_NS pass, reading only its clock and batch_ready. */
#define PACE_BATCH 64
#define PACE_NS 20000u

/* A pause pays when it gathers PACE_PAYS items or more (or fills the
 * batch). One that gathered
 * fewer (a closed loop: the pushers wait on what the hub has not yet
 * done, as the crash storm's workers on their requests; its pauses
 * gathered about two items and always spun the full PACE_NS) stops the
 * pausing for PACE_SKIP_MIN rounds, doubled each time the next pause
 * does not pay either, up to PACE_SKIP_MAX; a pause that pays resets it. */
#define PACE_PAYS 8u
#define PACE_SKIP_MIN 16u
#define PACE_SKIP_MAX 4096u

/* Drain rounds until the inbox is empty or DRAIN_BUDGET_NS have passed.
 * Under a sustained flood a drain-until-empty would keep the hub inside
 * this callback for good and starve request timeouts, restart timers and
 * probes; one round per wake-up would make the loop poll between small
 * batches (slower, and timers firing before replies already queued). When
 * the budget ends with items left the drain starts its idle handle, so
 * the loop comes back after its timers and I/O. */
#define DRAIN_BUDGET_NS 10000000u
static void on_async(uv_async_t *a) { drain(a->data, DRAIN_BUDGET_NS); }
static void on_idle(uv_idle_t *i) {
  uv_idle_stop(i);
  drain(i->data, DRAIN_BUDGET_NS);
}

void msrt_inbox_drain_some(msrt_inbox *in) { drain(in, DRAIN_BUDGET_NS); }

msrt_inbox *msrt_inbox_new(uv_loop_t *loop, msrt_inbox_drain_fn fn, void *ud) {
  /* aligned: batch_ready's line is its own */
  msrt_inbox *in = aligned_alloc(_Alignof(msrt_inbox), sizeof *in);
  if (!in) return NULL;
  memset(in, 0, sizeof *in);
  in->magic = MSRT_HANDLE_MAGIC;
  in->pace_waiting = SIZE_MAX;
  in->hub = pthread_self();
  in->fn = fn;
  in->ud = ud;
  if (uv_async_init(loop, &in->async, on_async) != 0) {
    free(in);
    return NULL;
  }
  in->async.data = in;
  uv_unref((uv_handle_t *)&in->async);
  uv_idle_init(loop, &in->idle); /* (cannot fail) */
  in->idle.data = in;
  uv_unref((uv_handle_t *)&in->idle);
  pthread_mutex_init(&in->lock, NULL);
  return in;
}

/* Room for one more item (the lock held): 0, or -1 when out of memory.
 * Behind queued nodes there is never room, so the order is kept. */
static int room(msrt_inbox *in) {
  if (in->over) return -1;
  if (in->n < in->cap) return 0;
  size_t cap = in->cap ? in->cap * 2 : 64;
  msrt_inbox_item *grown = realloc(in->items, cap * sizeof *grown);
  if (!grown) return -1;
  in->items = grown;
  in->cap = cap;
  return 0;
}

/* Queue item, or node when there is no room (node NULL: then fail). */
static msrt_code push(msrt_inbox *in, msrt_inbox_item item,
                      msrt_inbox_node *node) {
  bool mine = pthread_equal(pthread_self(), in->hub);
  pthread_mutex_lock(&in->lock);
  if (in->closed) {
    pthread_mutex_unlock(&in->lock);
    free(node);
    return MSRT_E_CLOSED;
  }
  /* Only a push that finds no wake-up under way sends one: while the hub
   * drains, a push costs the sender no syscall (the drain looks again
   * before it sleeps). */
  int first = !in->wake_due;
  in->wake_due = 1;
  if (room(in) == 0) {
    in->items[in->n++] = item;
    if (!mine) in->foreign++;
    if (in->n == PACE_BATCH)
      atomic_store_explicit(&in->batch_ready, 1, memory_order_relaxed);
    free(node);
  } else if (node) {
    node->item = item;
    node->next = NULL;
    if (in->over_tail) in->over_tail->next = node;
    else in->over = node;
    in->over_tail = node;
  } else {
    if (first) in->wake_due = 0; /* nothing queued, nothing sent */
    pthread_mutex_unlock(&in->lock);
    return MSRT_E_NOMEM;
  }
  pthread_mutex_unlock(&in->lock);
  /* One send per batch: later pushes find the drain already due. The
   * hub's own push needs no send: it is awake (see idle above). */
  if (first) {
    if (mine) uv_idle_start(&in->idle, on_idle);
    else uv_async_send(&in->async);
  }
  return MSRT_E_OK;
}

msrt_code msrt_inbox_push(msrt_inbox *in, msrt_inbox_item item) {
  return push(in, item, NULL);
}

msrt_code msrt_inbox_push_now(msrt_inbox *in, msrt_inbox_item item) {
  msrt_code rc = push(in, item, NULL);
  /* after the push: a round that began since cleared the flag and took
   * the item; one under way finds the flag and does not pause after it */
  if (rc == MSRT_E_OK)
    atomic_store_explicit(&in->batch_ready, 1, memory_order_relaxed);
  return rc;
}

msrt_inbox_node *msrt_inbox_node_new(void) {
  return calloc(1, sizeof(msrt_inbox_node));
}

void msrt_inbox_node_free(msrt_inbox_node *node) { free(node); }

msrt_code msrt_inbox_push_node(msrt_inbox *in, msrt_inbox_node *node) {
  return push(in, node->item, node);
}

typedef struct {
  msrt_inbox *in;
  msrt_inbox_item item;
} waker;

void *msrt_inbox_waker(msrt_inbox *in, msrt_inbox_item item) {
  waker *w = malloc(sizeof *w);
  if (w) *w = (waker){in, item};
  return w;
}

void msrt_inbox_wake(void *ud) {
  waker *w = ud;
  if (msrt_inbox_push(w->in, w->item) != 0) msrt_env_unref(w->item.env);
  free(w);
}

void msrt_inbox_unwake(void *ud) {
  waker *w = ud;
  msrt_env_unref(w->item.env);
  free(w);
}

void msrt_inbox_keep_alive(msrt_inbox *in, int on) {
  if (on) uv_ref((uv_handle_t *)&in->async);
  else uv_unref((uv_handle_t *)&in->async);
}

size_t msrt_inbox_depth(msrt_inbox *in) {
  pthread_mutex_lock(&in->lock);
  size_t n = in->n;
  pthread_mutex_unlock(&in->lock);
  return n;
}

/* Hand the items queued now to fn (draining set); returns how many
 * (nodes queued past a full vector count as a full batch). Finding none,
 * the hub is about to sleep: the next push must wake it. */
static size_t drain_round(msrt_inbox *in) {
  pthread_mutex_lock(&in->lock);
  size_t n = in->n;
  if (n == 0 && !in->over) {
    in->wake_due = 0;
    pthread_mutex_unlock(&in->lock);
    return 0;
  }
  msrt_inbox_item *items = in->items;
  size_t cap = in->cap;
  msrt_inbox_node *over = in->over;
  in->items = in->spare;
  in->cap = in->spare_cap;
  in->n = in->foreign = 0;
  in->over = in->over_tail = NULL;
  atomic_store_explicit(&in->batch_ready, 0, memory_order_relaxed);
  pthread_mutex_unlock(&in->lock);
  if (n) in->fn(items, n, in->ud);
  in->spare = items; /* the drain runs only on the hub: no race on spare */
  in->spare_cap = cap;
  for (msrt_inbox_node *next; over; over = next) { /* queued after items */
    next = over->next;
    in->fn(&over->item, 1, in->ud);
    free(over);
    n = PACE_BATCH;
  }
  return n;
}

/* After a round of took items (see PACE_BATCH): pause while a stream
 * from other threads fills the next batch. A round that left nothing of
 * theirs waiting (a lone reply, the end of a burst, or only what the
 * hub's own callbacks published to the hub) does not pause. */
static void pace(msrt_inbox *in, size_t took) {
  if (took >= PACE_BATCH) return;
  if (in->pace_skip) {
    in->pace_skip--;
    return;
  }
  pthread_mutex_lock(&in->lock);
  size_t waiting = in->n, foreign = in->foreign;
  pthread_mutex_unlock(&in->lock);
  if (foreign == 0 || waiting >= PACE_BATCH) return;
  in->pace_waiting = waiting;
  uint64_t start = uv_hrtime();
  while (!atomic_load_explicit(&in->batch_ready, memory_order_relaxed) &&
         uv_hrtime() - start < PACE_NS)
    msrt_cpu_relax();
}

/* After the round of took items that followed a pause: whether the pause
 * paid (see PACE_PAYS). */
static void pace_judge(msrt_inbox *in, size_t took) {
  size_t waiting = in->pace_waiting;
  in->pace_waiting = SIZE_MAX;
  if (took >= PACE_BATCH || took >= waiting + PACE_PAYS) {
    in->pace_backoff = 0;
    return;
  }
  in->pace_backoff = in->pace_backoff == 0 ? PACE_SKIP_MIN
                     : in->pace_backoff >= PACE_SKIP_MAX / 2
                         ? PACE_SKIP_MAX
                         : in->pace_backoff * 2;
  in->pace_skip = in->pace_backoff;
}

/* Rounds until the inbox is empty or budget_ns passed (UINT64_MAX: no
 * bound); nothing inside a drain (a callback that drains again). */
static void drain(msrt_inbox *in, uint64_t budget_ns) {
  if (in->draining) return;
  in->draining = 1;
  uint64_t start = uv_hrtime();
  size_t took;
  bool more;
  for (;;) {
    took = drain_round(in);
    if (in->pace_waiting != SIZE_MAX) pace_judge(in, took);
    if (!(more = took > 0) || uv_hrtime() - start >= budget_ns) break;
    pace(in, took);
  }
  /* Out of budget: wake_due is still set, so no push will send; come back
   * after the loop's timers and I/O (the idle handle: the next turn polls
   * without blocking and then drains, after its timers). */
  if (more && !in->closed) uv_idle_start(&in->idle, on_idle);
  in->draining = 0;
}

void msrt_inbox_drain(msrt_inbox *in) { drain(in, UINT64_MAX); }

void msrt_inbox_free(msrt_inbox *in) {
  if (!in) return;
  pthread_mutex_destroy(&in->lock);
  free(in->items);
  free(in->spare);
  free(in);
}

void msrt_inbox_close(msrt_inbox *in) {
  pthread_mutex_lock(&in->lock);
  in->closed = 1;
  for (size_t i = 0; i < in->n; i++) msrt_env_unref(in->items[i].env);
  in->n = in->foreign = 0;
  for (msrt_inbox_node *next; in->over; in->over = next) {
    next = in->over->next;
    msrt_env_unref(in->over->item.env);
    free(in->over);
  }
  in->over_tail = NULL;
  pthread_mutex_unlock(&in->lock);
  uv_close((uv_handle_t *)&in->async, NULL);
  uv_close((uv_handle_t *)&in->idle, NULL);
}
