/* A queue's WAL checkpoints (queue/internal.h msrt_queue_ckpt_setup).
 *
 * SQLite's automatic checkpoint runs in the commit that leaves the WAL
 * past 1000 frames, on the committing thread: it syncs the WAL, copies
 * it into the database and syncs that (strace, 16 B one by one: 38
 * fdatasyncs per 100,000 messages, median 1.9 ms, up to 27 ms), and the
 * hub waits for that flush's outcome meanwhile. Here the commit only
 * notes the WAL's size (a WAL hook, which also turns SQLite's own
 * checkpoint off) and every MSRT_QUEUE_CKPT_PASS frames asks a thread of
 * the queue's own to copy the WAL with a connection of its own (a PASSIVE
 * checkpoint: it never blocks the writer, who appends meanwhile).
 *
 * Such a checkpoint beside a steady stream of commits never finds the
 * whole WAL copied when the writer begins, so the WAL never starts again
 * from the top (85dc71b, reverted: 350 MB after 1,000,000 messages). The
 * writer cooperates: a commit that leaves the WAL past
 * MSRT_QUEUE_WAL_BOUND frames waits for the checkpointer's pass in
 * progress (it sleeps: on a busy machine that gives the checkpointer its
 * CPU) and copies the rest itself, little by then; the next transaction
 * finds the WAL all copied and writes it from the top again. So the WAL
 * stays within the bound and one commit's frames.
 *
 * Under a real-time policy (chrt) the hub and the writer, which spin
 * between flushes, would keep a checkpointer of their priority off the
 * CPU until their round-robin slice ends (100 ms): it runs one step above
 * them. It sleeps in fsync most of the time. */
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "queue/internal.h"

/* under ck_lock */
static void wait_idle(msrt_queue *q) {
  while (q->ck_running) pthread_cond_wait(&q->ck_cv, &q->ck_lock);
}

static void *ckpt_main(void *arg) {
  msrt_queue *q = arg;
  int pol;
  struct sched_param sp;
  if (pthread_getschedparam(pthread_self(), &pol, &sp) == 0 &&
      (pol == SCHED_RR || pol == SCHED_FIFO) &&
      sp.sched_priority < sched_get_priority_max(pol)) {
    sp.sched_priority++;
    pthread_setschedparam(pthread_self(), pol, &sp); /* not allowed: as is */
  }
  sqlite3 *db = NULL;
  int ok = sqlite3_open_v2(q->path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           NULL) == SQLITE_OK &&
           /* its syncs are the store's (a checkpoint syncs the WAL before
            * copying it and the database after, unless OFF) */
           sqlite3_exec(db, q->sync_full ? "PRAGMA synchronous = FULL"
                                         : "PRAGMA synchronous = NORMAL",
                        NULL, NULL, NULL) == SQLITE_OK &&
           /* a read opens its WAL: a connection that has read nothing
            * checkpoints nothing (older SQLites) */
           sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL,
                        NULL) == SQLITE_OK;
  int fd = ok ? open(q->path, O_RDONLY | O_CLOEXEC) : -1;
  pthread_mutex_lock(&q->ck_lock);
  if (!ok) q->ck_broken = 1;
  while (ok) {
    while (!q->ck_stop && !(q->ck_want && !q->ck_hold))
      pthread_cond_wait(&q->ck_cv, &q->ck_lock);
    if (q->ck_stop) break;
    q->ck_want = 0;
    __atomic_store_n(&q->ck_running, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&q->ck_lock);
    /* a failure (a full disk) leaves the WAL as it is: the next pass, or
     * the writer at the bound, tries again */
    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    /* SQLite syncs the database only once a checkpoint copied the whole
     * WAL, so every page copied since the last restart would be synced
     * by the writer's last copy: synced here instead, pass by pass */
    if (fd >= 0) fdatasync(fd);
    pthread_mutex_lock(&q->ck_lock);
    __atomic_store_n(&q->ck_running, 0, __ATOMIC_RELEASE);
    q->ck_passes++;
    pthread_cond_broadcast(&q->ck_cv);
  }
  pthread_mutex_unlock(&q->ck_lock);
  if (fd >= 0) close(fd);
  sqlite3_close(db); /* not the last connection: no checkpoint of its own */
  return NULL;
}

/* Copy the rest of the WAL on the committing thread, the checkpointer
 * idle (under ck_lock, which it drops meanwhile). */
static void catch_up(msrt_queue *q, sqlite3 *db) {
  q->ck_hold = 1; /* no pass starts while the writer copies */
  wait_idle(q);
  pthread_mutex_unlock(&q->ck_lock);
  sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  pthread_mutex_lock(&q->ck_lock);
  q->ck_hold = 0, q->ck_want = 0;
  q->over = 0;
}

/* The committing thread's (the store's owner), after each commit. */
static int wal_hook(void *ud, sqlite3 *db, const char *name, int frames) {
  (void)name;
  msrt_queue *q = ud;
  if (frames < q->frames) q->asked = 0; /* the WAL started again */
  q->frames = frames;
  pthread_mutex_lock(&q->ck_lock);
  if (!q->has_ck && !q->ck_broken && frames >= MSRT_QUEUE_CKPT_PASS) {
    if (pthread_create(&q->ck, NULL, ckpt_main, q) == 0) q->has_ck = 1;
    else q->ck_broken = 1;
  }
  const int bound = MSRT_QUEUE_WAL_BOUND;
  if (q->ck_broken) { /* (or set by the thread when it cannot open) */
    if (frames >= MSRT_QUEUE_CKPT_PASS) catch_up(q, db); /* as SQLite would */
  } else if (frames >= 2 * bound) {
    catch_up(q, db); /* the checkpointer lags: wait for it */
  } else if (frames >= bound) {
    /* the last pass, begun past the bound, has copied nearly all: the
     * rest is a few commits' frames, its syncs short */
    if (!q->over) {
      q->over = 1;
      q->over_pass = q->ck_passes + (q->ck_running ? 2 : 1);
      q->ck_want = 1;
      pthread_cond_broadcast(&q->ck_cv);
    } else if (q->ck_passes >= q->over_pass && !q->ck_running) {
      catch_up(q, db);
    }
  } else if (frames - q->asked >= MSRT_QUEUE_CKPT_PASS) {
    q->asked = frames;
    q->ck_want = 1;
    pthread_cond_broadcast(&q->ck_cv);
  }
  pthread_mutex_unlock(&q->ck_lock);
  return SQLITE_OK;
}

void msrt_queue_ckpt_setup(msrt_queue *q) {
  /* synchronous = FULL syncs the WAL at every commit already, and with
   * the checkpointer it read 35k against 89k msgs/s over 50,000 messages
   * (16 B, one by one; on par over 200,000): likely each of those syncs
   * also writing the size of a WAL let grow to MSRT_QUEUE_WAL_BOUND.
   * SQLite's own checkpoint (every 1000 frames, in the commit) stays. */
  if (q->sync_full) return;
  sqlite3_wal_hook(q->db, wal_hook, q);
}

void msrt_queue_ckpt_stop(msrt_queue *q) {
  if (!q->has_ck) return;
  pthread_mutex_lock(&q->ck_lock);
  q->ck_stop = 1;
  pthread_cond_broadcast(&q->ck_cv);
  pthread_mutex_unlock(&q->ck_lock);
  pthread_join(q->ck, NULL);
  q->has_ck = 0;
}
