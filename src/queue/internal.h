/* Inside the queue part: the queue's struct, shared by queue.c (open,
 * references, intake, endpoint class), store.c (SQLite) and writer.c (the
 * writer thread: a flush in flight). */
#ifndef MSRT_QUEUE_INTERNAL_H
#define MSRT_QUEUE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "queue/queue.h"

struct msrt_queue {
  atomic_uint refs;
  char *name, *path;
  int sync_full;
  uint64_t max_msgs, max_bytes, dedupe_window_ms, wake_id;
  msrt_queue_discard discard;
  /* the intake: any thread, under lock */
  pthread_mutex_t lock;
  msrt_envelope **in;
  size_t nin, capin, intake_max;
  msrt_envelope **spare; /* an empty array swapped with the intake's by
                            msrt_queue_take_more (whoever owns the store) */
  size_t capspare;
  int signalled; /* an MSRT_IN_QUEUE item is on its way to the hub */
  int closed;
  /* the store: the opening thread's, or the writer's while a flush is
   * in flight (busy); the hand-over is under lock */
  sqlite3 *db;
  sqlite3_stmt *stmt[16];
  msrt_queue_stats st; /* committed (under lock while a writer runs) */
  msrt_queue_stats tx; /* within the flush's transaction */
  uint64_t *ev;        /* seqs evicted within the transaction */
  size_t nev, capev;
  /* the writer thread (writer.c), started by the first flush_begin */
  msrt_bus *bus;       /* the completion's MSRT_IN_QUEUE item goes through it */
  pthread_t writer;
  int has_writer, stop;
  pthread_cond_t cv;   /* busy or stop changed (under lock) */
  /* busy, taken, done, stop and spinning are written under lock with
   * atomic stores, and read under lock or, spinning, with atomic loads */
  int busy;            /* a flush is in flight: the writer owns the store */
  int taken;           /* who runs it: 0 not begun, 1 the writer, 2 the hub */
  int done;            /* its outcome waits for msrt_queue_flush_end */
  int spinning;        /* the writer spins for the next flush */
  int rt;              /* the writer runs under a real-time policy (set
                          once by it, under lock; read with PEEK) */
  uint64_t spin_ns;    /* msrt_queue_config's */
  uint64_t ended_ns;   /* when the last flush ended (under lock) */
  int spin_next;       /* this flush began within spin_ns of the last one's
                          end: the writer spins after it (under lock) */
  /* what an open flush's writer polls (msrt_queue_await_more), on a
   * line of their own: the pushes write it once per MSRT_QUEUE_MORE
   * messages, not at each (nin's line bounced between the threads) */
  _Alignas(64) int sealed; /* the flush in flight may take the intake: at
                          once (flush_begin), or once msrt_queue_flush_seal
                          or any wait for it says so (flush_open); written
                          under lock, read with atomic loads */
  int more;            /* MSRT_QUEUE_MORE or more wait in the intake
                          (under lock, atomic stores; polled) */
  _Alignas(64) char after_more_;
  /* the checkpointer (checkpoint.c): a thread with a connection of its
   * own; the fields under ck_lock but frames and asked, the committing
   * thread's (the store's owner) */
  pthread_mutex_t ck_lock;
  pthread_cond_t ck_cv;
  pthread_t ck;
  int has_ck;          /* started (the store's owner reads it) */
  int ck_broken;       /* it could not start or open: the owner checkpoints */
  int ck_want, ck_running, ck_hold, ck_stop;
  int frames, asked;   /* the WAL's frames after the last commit; the
                          checkpointer was last asked at asked frames */
  int over;            /* past the bound: the writer copies the rest once
                          the checkpointer's pass over_pass ended */
  uint64_t over_pass;
  uint64_t ck_passes;  /* passes done (under ck_lock) */
  struct msrt_queue_job { /* the writer's while busy, then the hub's */
    uint64_t *seqs;    /* deliver, acks and dead, one allocation */
    msrt_queue_ops ops;
    int take;          /* the intake is the job's to take, once sealed */
    msrt_queue_result *res;
    size_t nres;
    uint64_t *ev;
    size_t nev;
    msrt_code code;
    msrt_error err;
  } job;
};

msrt_code msrt_queue_db_open(msrt_queue *q, msrt_error *err);
void msrt_queue_db_close(msrt_queue *q);
msrt_code msrt_queue_sqlerr(msrt_queue *q, int rc, const char *what,
                            msrt_error *err);
/* One flush's transaction over (*res)[0..*n): msrt_queue_flush's
 * outcome, the committed counts put in q->st under lock. With take, the
 * intake is taken into *res and *n within the transaction, after ops are
 * applied: stored as it comes until the flush is sealed, and what came
 * until then (msrt_queue_await_more); without, *res and *n are the intake
 * taken already. Whichever thread owns the store. */
msrt_code msrt_queue_commit(msrt_queue *q, const msrt_queue_ops *ops,
                            msrt_queue_result **res, size_t *n, int take,
                            uint64_t **evicted, size_t *nevicted,
                            msrt_error *err);
/* Wait until the flush in flight is sealed (writer.c). */
void msrt_queue_await_seal(msrt_queue *q);
/* An open flush's writer takes the intake by this many messages or more
 * before the seal: one take a message made the writer's lock and the
 * publishers' pushes contend (the hub's PubAcks ~10% slower). */
#define MSRT_QUEUE_MORE 16
/* For an open flush (writer.c): 1 once it is sealed (the intake taken
 * then is its last), 0 when MSRT_QUEUE_MORE messages or more came before
 * (to take and store while the caller still publishes). Polls up to
 * spin_ns, then sleeps until the seal. */
int msrt_queue_await_more(msrt_queue *q);
/* Wait until no flush is in flight (the store is the caller's again); the
 * outcome of a finished one stays for msrt_queue_flush_end. Returns 1
 * when there is such an outcome. */
int msrt_queue_writer_idle(msrt_queue *q);
/* Stop and join the writer (after msrt_queue_writer_idle), and release
 * an outcome no one took. */
void msrt_queue_writer_stop(msrt_queue *q);
/* Move the intake into a new results array (each result's env taken):
 * msrt_queue_take_more into an empty one, as the flush's last take. -1
 * when out of memory: the intake is refused (counted). Whoever owns the
 * store. */
int msrt_queue_take_intake(msrt_queue *q, msrt_queue_result **res, size_t *n);
/* Append the intake to (*res)[0..*n) (capacity *cap, grown by realloc);
 * last (the flush is sealed): the next push signals the hub again. -1
 * when out of memory: that intake is refused (counted), *res kept. */
int msrt_queue_take_more(msrt_queue *q, msrt_queue_result **res, size_t *n,
                         size_t *cap, int last);
int msrt_queue_evict_push(msrt_queue *q, uint64_t seq);
void msrt_queue_evict_take(msrt_queue *q, uint64_t **ev, size_t *n);

/* The WAL's checkpoints (checkpoint.c), with synchronous NORMAL (FULL
 * keeps SQLite's). SQLite's own (every 1000 frames,
 * in the commit that passes them: two fsyncs on the committing thread)
 * are replaced: the store's connection asks a checkpointer thread, which
 * copies the WAL into the database (PASSIVE, on a connection of its own)
 * while the writer goes on; and since such a checkpoint beside a stream
 * of commits never leaves the whole WAL copied, the WAL would never start
 * again from the top: a commit that leaves it past MSRT_QUEUE_WAL_BOUND
 * frames waits for the checkpointer's pass in progress and copies the
 * rest itself, so the next transaction restarts the WAL (queue.h
 * MSRT_QUEUE_WAL_BOUND). Setup after the connection is open (the store's
 * owner); stop before it closes. */
void msrt_queue_ckpt_setup(msrt_queue *q);
void msrt_queue_ckpt_stop(msrt_queue *q);

#endif
