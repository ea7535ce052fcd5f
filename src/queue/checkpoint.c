/* A queue's WAL checkpoints on a thread of their own (internal.h
 * msrt_queue_ckpt_start). SQLite's default runs a checkpoint inside the
 * commit that takes the WAL past 1,000 pages: that commit copies the
 * WAL's pages into the database file and syncs both (synchronous NORMAL
 * syncs at checkpoints), a few ms every ~140 flushes of 64 messages at
 * 16 B, during which the hub waits for the flush in flight and no
 * publisher is answered. Here the commit only notes the WAL's size
 * (sqlite3_wal_hook, which replaces the automatic checkpoint), and a
 * thread with a connection of its own runs a PASSIVE checkpoint, which
 * never waits for or blocks the writer: commits go on appending to the
 * WAL meanwhile, and the writer restarts it from the top at its next
 * transaction once a checkpoint has copied all of it. What a commit
 * survives is unchanged: the WAL is synced before any page of it is
 * copied, with the queue's own synchronous setting; closing the queue
 * stops the thread first, so the store's connection is the last and
 * checkpoints everything as before. */
#include <stdlib.h>

#include "queue/internal.h"

/* SQLite's default wal_autocheckpoint */
#define CKPT_PAGES 1000

/* After each commit, on the committing thread (writer or hub): pages is
 * the WAL's size in frames. */
static int on_wal(void *ud, sqlite3 *db, const char *name, int pages) {
  (void)db, (void)name;
  msrt_queue *q = ud;
  if (pages < CKPT_PAGES) return SQLITE_OK;
  pthread_mutex_lock(&q->ckpt_lock);
  if (!q->ckpt_due) {
    q->ckpt_due = 1;
    pthread_cond_signal(&q->ckpt_cv);
  }
  pthread_mutex_unlock(&q->ckpt_lock);
  return SQLITE_OK;
}

static void *ckpt_main(void *arg) {
  msrt_queue *q = arg;
  sqlite3 *db = NULL;
  pthread_mutex_lock(&q->ckpt_lock);
  for (;;) {
    while (!q->ckpt_stop && !q->ckpt_due)
      pthread_cond_wait(&q->ckpt_cv, &q->ckpt_lock);
    if (q->ckpt_stop) break;
    q->ckpt_due = 0;
    pthread_mutex_unlock(&q->ckpt_lock);
    if (!db) { /* made at the first checkpoint; on failure tried again */
      if (sqlite3_open_v2(q->path, &db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                          NULL) != SQLITE_OK ||
          sqlite3_exec(db, q->sync_full ? "PRAGMA synchronous = FULL"
                                        : "PRAGMA synchronous = NORMAL",
                       NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL;
      }
    }
    /* an error (a full disk, the database busy) leaves the WAL as it is:
     * the next commit past the size asks again */
    if (db) sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                      NULL, NULL);
    pthread_mutex_lock(&q->ckpt_lock);
  }
  pthread_mutex_unlock(&q->ckpt_lock);
  sqlite3_close(db);
  return NULL;
}

void msrt_queue_ckpt_start(msrt_queue *q) {
  pthread_mutex_init(&q->ckpt_lock, NULL);
  pthread_cond_init(&q->ckpt_cv, NULL);
  q->ckpt_due = q->ckpt_stop = 0;
  if (pthread_create(&q->ckpt, NULL, ckpt_main, q) != 0) {
    /* no thread: SQLite's own checkpoints, inside the commits */
    pthread_cond_destroy(&q->ckpt_cv);
    pthread_mutex_destroy(&q->ckpt_lock);
    return;
  }
  q->has_ckpt = 1;
  sqlite3_wal_hook(q->db, on_wal, q);
}

void msrt_queue_ckpt_stop(msrt_queue *q) {
  if (!q->has_ckpt) return;
  sqlite3_wal_hook(q->db, NULL, NULL);
  pthread_mutex_lock(&q->ckpt_lock);
  q->ckpt_stop = 1;
  pthread_cond_signal(&q->ckpt_cv);
  pthread_mutex_unlock(&q->ckpt_lock);
  pthread_join(q->ckpt, NULL);
  pthread_cond_destroy(&q->ckpt_cv);
  pthread_mutex_destroy(&q->ckpt_lock);
  q->has_ckpt = 0;
}
