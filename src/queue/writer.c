/* A queue's writer thread (queue/queue.h msrt_queue_flush_begin): it runs
 * one flush's transaction at a time off the hub thread, so that SQLite's
 * work overlaps the hub's. The store (the connection and its statements)
 * is the writer's while a flush is in flight (busy) and the hub's
 * otherwise; the hand-over in both directions is under the queue's lock,
 * and every hub-side use of the store waits for it (msrt_queue_writer_idle).
 * A flush the writer has not begun when the hub asks for its outcome is
 * the hub's to run (taken says who runs it): on a machine with no free
 * core the writer may wait a scheduler's turn to start, and the hub would
 * wait with it. One writer per queue, made by the first flush_begin.
 *
 * Waking a sleeping thread takes tens of microseconds on a VM (an IPI to
 * a halted vCPU), longer than the hub's work between one flush's outcome
 * and the next flush_begin, and longer than its hand-out of a flush's
 * messages: with both threads sleeping in between, the hub ran nearly
 * every commit itself (flush_run), never overlapping the writer. So the
 * writer, after a flush that came within spin_ns of the one before, spins
 * up to spin_ns for the next before it sleeps, and flush_run spins up to
 * spin_ns for a spinning writer to take the flush and to end it (the hub
 * would have run it in that time anyway). A queue flushed less often than
 * that never spins. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/clock.h"
#include "core/spin.h"
#include "queue/internal.h"

#define PEEK(f) __atomic_load_n(&q->f, __ATOMIC_ACQUIRE)
#define SET(f, v) __atomic_store_n(&q->f, (v), __ATOMIC_RELEASE)

/* What the writer spins for (a flush to take, or stop) and what
 * flush_run spins for (the writer took the flush; it ended); spin() waits
 * for one without the lock, at most q->spin_ns. Under a real-time policy
 * (q->rt) not at all while the checkpointer copies the WAL (checkpoint.c):
 * its fsync waits for kernel threads (the block layer's flush), which a
 * real-time hub and writer spinning on both vCPUs kept off the CPU (a
 * pass of ~5 ms took 30-200 under chrt -r 10); under the fair scheduler
 * such a thread preempts a spinner at once. */
static int job_waits(msrt_queue *q) {
  return PEEK(stop) || (PEEK(busy) && !PEEK(taken));
}
static int job_taken(msrt_queue *q) { return PEEK(taken) || !PEEK(busy); }
static int job_over(msrt_queue *q) { return !PEEK(busy); }
static int job_sealed(msrt_queue *q) { return PEEK(sealed); }
static int job_more(msrt_queue *q) { return PEEK(sealed) || PEEK(more); }
static void spin(msrt_queue *q, int (*ready)(msrt_queue *)) {
  uint64_t deadline = msrt_now_ns() + q->spin_ns;
  while (!ready(q) && msrt_now_ns() < deadline &&
         !(PEEK(rt) && PEEK(ck_running)))
    for (int i = 0; i < 16; i++) msrt_cpu_relax();
}

/* Run the job on the calling thread, which took it under lock (taken):
 * the writer's, or the hub's when it asked for the outcome first. */
static void run_job(msrt_queue *q) {
  struct msrt_queue_job *j = &q->job;
  j->code = msrt_queue_commit(q, &j->ops, &j->res, &j->nres, j->take, &j->ev,
                              &j->nev, &j->err);
  pthread_mutex_lock(&q->lock);
  SET(busy, 0), SET(taken, 0), SET(done, 1);
  q->ended_ns = msrt_now_ns();
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->lock);
}

static void *writer_main(void *arg) {
  msrt_queue *q = arg;
  pthread_mutex_lock(&q->lock);
  int pol = sched_getscheduler(0); /* the hub's too (inherited) */
  SET(rt, pol == SCHED_RR || pol == SCHED_FIFO);
  for (;;) {
    if (q->spin_next && !q->stop && !(q->busy && !q->taken)) {
      SET(spinning, 1);
      pthread_mutex_unlock(&q->lock);
      spin(q, job_waits);
      pthread_mutex_lock(&q->lock);
      SET(spinning, 0);
    }
    while (!q->stop && !(q->busy && !q->taken))
      pthread_cond_wait(&q->cv, &q->lock);
    if (q->stop) break;
    SET(taken, 1);
    pthread_mutex_unlock(&q->lock);
    run_job(q);
    /* the hub finds the outcome at its next MSRT_IN_QUEUE item; after the
     * unlock: the item may run msrt_queue_flush_end at once. A lone item
     * the hub takes at once, not one a drain pauses for (up to 20 us, in
     * about one flush of ten at 64 one-by-one publishers) */
    if (q->bus) {
      msrt_inbox_item it = {MSRT_IN_QUEUE, q->wake_id, NULL, NULL};
      msrt_bus_to_hub_now(q->bus, it);
    }
    pthread_mutex_lock(&q->lock);
  }
  pthread_mutex_unlock(&q->lock);
  return NULL;
}

/* The three lists of ops copied into the job (one allocation). */
static int copy_ops(struct msrt_queue_job *j, const msrt_queue_ops *ops) {
  memset(&j->ops, 0, sizeof j->ops);
  j->seqs = NULL;
  if (!ops) return 0;
  size_t n = ops->ndeliver + ops->nacks + ops->ndead;
  j->ops.deliver_new = ops->deliver_new;
  if (!n) return 0;
  uint64_t *v = malloc(n * sizeof *v);
  if (!v) return -1;
  j->seqs = v;
  if (ops->ndeliver) memcpy(v, ops->deliver, ops->ndeliver * sizeof *v);
  if (ops->nacks) memcpy(v + ops->ndeliver, ops->acks, ops->nacks * sizeof *v);
  if (ops->ndead)
    memcpy(v + ops->ndeliver + ops->nacks, ops->dead, ops->ndead * sizeof *v);
  j->ops.deliver = v, j->ops.ndeliver = ops->ndeliver;
  j->ops.acks = v + ops->ndeliver, j->ops.nacks = ops->nacks;
  j->ops.dead = v + ops->ndeliver + ops->nacks, j->ops.ndead = ops->ndead;
  return 0;
}

/* The flush in flight may take the intake now. Under lock. */
static void seal(msrt_queue *q) {
  if (q->sealed) return;
  SET(sealed, 1);
  pthread_cond_broadcast(&q->cv);
}

void msrt_queue_await_seal(msrt_queue *q) {
  if (PEEK(sealed)) return;
  if (q->spin_ns) spin(q, job_sealed);
  pthread_mutex_lock(&q->lock);
  while (!q->sealed) pthread_cond_wait(&q->cv, &q->lock);
  pthread_mutex_unlock(&q->lock);
}

int msrt_queue_await_more(msrt_queue *q) {
  if (PEEK(sealed)) return 1;
  if (PEEK(more)) return 0;
  if (q->spin_ns) {
    spin(q, job_more);
    if (PEEK(sealed)) return 1;
    if (PEEK(more)) return 0;
  }
  /* pushes do not signal cv: what comes meanwhile is taken at the seal */
  msrt_queue_await_seal(q);
  return 1;
}

void msrt_queue_flush_seal(msrt_queue *q) {
  pthread_mutex_lock(&q->lock);
  seal(q);
  pthread_mutex_unlock(&q->lock);
}

static msrt_code begin(msrt_queue *q, const msrt_queue_ops *ops, int open,
                       msrt_error *err) {
  if (msrt_queue_flush_state(q) != 0)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "queue \"%s\": a flush is "
                          "in flight already", q->name);
  struct msrt_queue_job *j = &q->job;
  if (copy_ops(j, ops) != 0)
    return msrt_error_set(err, MSRT_E_NOMEM, "queue \"%s\": no memory for a "
                          "flush", q->name);
  if (!q->has_writer) {
    if (pthread_create(&q->writer, NULL, writer_main, q) != 0) {
      free(j->seqs), j->seqs = NULL;
      return msrt_error_set(err, MSRT_E_RESOURCE_EXHAUSTED, "queue \"%s\": "
                            "cannot start its writer thread", q->name);
    }
    q->has_writer = 1;
  }
  j->res = NULL, j->nres = 0, j->ev = NULL, j->nev = 0;
  j->take = open;
  if (!open && msrt_queue_take_intake(q, &j->res, &j->nres) != 0) {
    free(j->seqs), j->seqs = NULL;
    return msrt_error_set(err, MSRT_E_NOMEM, "queue \"%s\": no memory for a "
                          "flush", q->name);
  }
  pthread_mutex_lock(&q->lock);
  SET(sealed, !open);
  SET(busy, 1), SET(done, 0);
  uint64_t now = msrt_now_ns(); /* soon after the last one: spin after it */
  q->spin_next = q->ended_ns && now - q->ended_ns <= q->spin_ns;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->lock);
  return MSRT_E_OK;
}

msrt_code msrt_queue_flush_begin(msrt_queue *q, const msrt_queue_ops *ops,
                                 msrt_error *err) {
  return begin(q, ops, 0, err);
}

msrt_code msrt_queue_flush_open(msrt_queue *q, const msrt_queue_ops *ops,
                                msrt_error *err) {
  return begin(q, ops, 1, err);
}

/* msrt_queue_flush_state's answer. Under lock. */
static int state_of(const msrt_queue *q) {
  return q->busy ? 1 : q->done ? 2 : 0;
}

int msrt_queue_flush_state(msrt_queue *q) {
  pthread_mutex_lock(&q->lock);
  int s = state_of(q);
  pthread_mutex_unlock(&q->lock);
  return s;
}

/* The flush in flight that the writer has not begun is the caller's to
 * run (a busy machine may not have run the writer yet: the caller would
 * wait for its turn doing nothing). Returns 1 when the caller ran it.
 * Under lock. */
static int take_job(msrt_queue *q) {
  seal(q); /* the caller waits for the flush: its intake is complete */
  if (!q->busy || q->taken) return 0;
  SET(taken, 2);
  pthread_mutex_unlock(&q->lock);
  run_job(q);
  pthread_mutex_lock(&q->lock);
  return 1;
}

int msrt_queue_flush_run(msrt_queue *q) {
  if (!PEEK(sealed)) msrt_queue_flush_seal(q);
  if (q->spin_ns && PEEK(busy) && !PEEK(taken) && PEEK(spinning))
    spin(q, job_taken);
  if (q->spin_ns && PEEK(taken) == 1) spin(q, job_over);
  pthread_mutex_lock(&q->lock);
  take_job(q);
  int s = state_of(q);
  pthread_mutex_unlock(&q->lock);
  return s;
}

int msrt_queue_writer_idle(msrt_queue *q) {
  pthread_mutex_lock(&q->lock);
  take_job(q);
  while (q->busy) pthread_cond_wait(&q->cv, &q->lock);
  int done = q->done;
  pthread_mutex_unlock(&q->lock);
  return done;
}

msrt_code msrt_queue_flush_end(msrt_queue *q, msrt_queue_result **res,
                               size_t *nres, uint64_t **evicted,
                               size_t *nevicted, msrt_error *err) {
  *res = NULL, *nres = 0, *evicted = NULL, *nevicted = 0;
  if (!msrt_queue_writer_idle(q))
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "queue \"%s\": no flush "
                          "in flight", q->name);
  struct msrt_queue_job *j = &q->job;
  pthread_mutex_lock(&q->lock); /* (the writer reads done while it waits) */
  SET(done, 0);
  pthread_mutex_unlock(&q->lock);
  *res = j->res, *nres = j->nres, *evicted = j->ev, *nevicted = j->nev;
  free(j->seqs);
  j->seqs = NULL, j->res = NULL, j->nres = 0, j->ev = NULL, j->nev = 0;
  if (j->code != MSRT_E_OK && err) *err = j->err;
  return j->code;
}

void msrt_queue_writer_stop(msrt_queue *q) {
  if (q->has_writer) {
    pthread_mutex_lock(&q->lock);
    SET(stop, 1);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->writer, NULL);
    q->has_writer = 0;
  }
  if (q->done) { /* an outcome no one took: its PubAcks are never sent */
    msrt_queue_result *res;
    uint64_t *ev;
    size_t n, nev;
    msrt_queue_flush_end(q, &res, &n, &ev, &nev, NULL);
    msrt_queue_results_free(res, n);
    free(ev);
  }
}
