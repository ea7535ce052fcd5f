/* Inside the queue part: the queue's struct, shared by queue.c (open,
 * references, intake, endpoint class) and store.c (SQLite). */
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
  int signalled; /* an MSRT_IN_QUEUE item is on its way to the hub */
  int closed;
  /* the store: the opening thread */
  sqlite3 *db;
  sqlite3_stmt *stmt[16];
  msrt_queue_stats st; /* committed */
  msrt_queue_stats tx; /* within the flush's transaction */
  uint64_t *ev;        /* seqs evicted within the transaction */
  size_t nev, capev;
};

msrt_code msrt_queue_db_open(msrt_queue *q, msrt_error *err);
void msrt_queue_db_close(msrt_queue *q);
msrt_code msrt_queue_sqlerr(msrt_queue *q, int rc, const char *what,
                            msrt_error *err);
/* Move the intake into a new results array (each result's env taken). */
int msrt_queue_take_intake(msrt_queue *q, msrt_queue_result **res, size_t *n);
int msrt_queue_evict_push(msrt_queue *q, uint64_t seq);
void msrt_queue_evict_take(msrt_queue *q, uint64_t **ev, size_t *n);

#endif
