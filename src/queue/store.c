/* A queue's SQLite store (queue/queue.h): open and check, the grouped
 * flush's transaction, reads, purge. The thread that owns the store: the
 * hub's, or the writer's (writer.c) while a flush is in flight. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "queue/internal.h"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS msgs(seq INTEGER PRIMARY KEY, subject TEXT "
    "NOT NULL, hdr BLOB, data BLOB NOT NULL, prio INTEGER NOT NULL, flags "
    "INTEGER NOT NULL, ts INTEGER NOT NULL, delivered INTEGER NOT NULL "
    "DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS dedupe(id BLOB PRIMARY KEY, seq INTEGER NOT "
    "NULL, at_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS dedupe_at ON dedupe(at_ms);"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);";

enum { S_INSERT, S_DELIVER, S_DELIVERED, S_DELETE, S_LEN, S_DUP_GET, S_DUP_PUT, S_DUP_PRUNE,
       S_META_PUT, S_OLDEST, S_GET, S_SCAN, S__COUNT };

static const char *const SQL[S__COUNT] = {
  [S_INSERT] = "INSERT INTO msgs(seq, subject, hdr, data, prio, flags, ts, "
               "delivered) VALUES(?,?,?,?,?,?,?,?)",
  /* no RETURNING: SQLite runs it through an ephemeral table opened per
   * execution (~28k instructions a row, callgrind), where a second lookup
   * by primary key costs ~1k */
  [S_DELIVER] = "UPDATE msgs SET delivered = delivered + 1 WHERE seq = ?",
  [S_DELIVERED] = "SELECT delivered FROM msgs WHERE seq = ?",
  /* a run of consecutive seqs at once: acks mostly come in such runs */
  [S_DELETE] = "DELETE FROM msgs WHERE seq BETWEEN ? AND ?",
  [S_LEN] = "SELECT count(*), ifnull(sum(length(data) + "
            "ifnull(length(hdr), 0)), 0) FROM msgs WHERE seq BETWEEN ? AND ?",
  [S_DUP_GET] = "SELECT seq FROM dedupe WHERE id = ? AND at_ms >= ?",
  [S_DUP_PUT] = "INSERT OR REPLACE INTO dedupe(id, seq, at_ms) VALUES(?,?,?)",
  [S_DUP_PRUNE] = "DELETE FROM dedupe WHERE at_ms < ?",
  [S_META_PUT] = "INSERT OR REPLACE INTO meta(k, v) VALUES(?, ?)",
  [S_OLDEST] = "SELECT seq FROM msgs ORDER BY seq LIMIT 1",
  [S_GET] = "SELECT subject, hdr, data, prio, flags, delivered FROM msgs "
            "WHERE seq = ?",
  [S_SCAN] = "SELECT seq, delivered FROM msgs WHERE seq > ? ORDER BY seq "
             "LIMIT ?",
};

/* An SQLite failure as one of ours: what cannot be written is
 * resource_exhausted, a damaged file io, the rest internal. */
msrt_code msrt_queue_sqlerr(msrt_queue *q, int rc, const char *what,
                            msrt_error *err) {
  msrt_code code = MSRT_E_INTERNAL;
  switch (rc & 0xff) {
  case SQLITE_FULL: case SQLITE_IOERR: case SQLITE_READONLY:
  case SQLITE_CANTOPEN: case SQLITE_BUSY: case SQLITE_LOCKED:
  case SQLITE_PERM: case SQLITE_TOOBIG:
    code = MSRT_E_RESOURCE_EXHAUSTED; break;
  case SQLITE_CORRUPT: case SQLITE_NOTADB:
    code = MSRT_E_IO; break;
  case SQLITE_NOMEM:
    code = MSRT_E_NOMEM; break;
  }
  return msrt_error_set(err, code, "queue \"%s\" (%s): %s: %s", q->name,
                        q->path, what,
                        q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
}

static int exec(msrt_queue *q, const char *sql) {
  return sqlite3_exec(q->db, sql, NULL, NULL, NULL);
}

static uint64_t meta_get(msrt_queue *q, const char *k) {
  sqlite3_stmt *st;
  uint64_t v = 0;
  if (sqlite3_prepare_v2(q->db, "SELECT v FROM meta WHERE k = ?", -1, &st,
                         NULL) != SQLITE_OK)
    return 0;
  sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW) v = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* quick_check's first row must be "ok"; a file that is not a database
 * fails the statement itself. */
static msrt_code check(msrt_queue *q, msrt_error *err) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(q->db, "PRAGMA quick_check", -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *r = (const char *)sqlite3_column_text(st, 0);
    if (r && strcmp(r, "ok") == 0) {
      sqlite3_finalize(st);
      return MSRT_E_OK;
    }
    msrt_error_set(err, MSRT_E_IO,
                   "queue \"%s\": %s is corrupt (quick_check: %s); refused, "
                   "not repaired",
                   q->name, q->path, r ? r : "?");
    sqlite3_finalize(st);
    return MSRT_E_IO;
  }
  sqlite3_finalize(st);
  if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
    return msrt_error_set(err, MSRT_E_IO,
                          "queue \"%s\": %s is corrupt or not a database "
                          "(%s); refused, not repaired",
                          q->name, q->path, sqlite3_errmsg(q->db));
  return msrt_queue_sqlerr(q, rc, "quick_check", err);
}

static msrt_code load_counts(msrt_queue *q, msrt_error *err) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(
      q->db, "SELECT count(*), ifnull(sum(length(data) + "
             "ifnull(length(hdr), 0)), 0), ifnull(max(seq), 0) FROM msgs",
      -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    q->st.stored = (uint64_t)sqlite3_column_int64(st, 0);
    q->st.bytes = (uint64_t)sqlite3_column_int64(st, 1);
    q->st.last_seq = (uint64_t)sqlite3_column_int64(st, 2);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK) return msrt_queue_sqlerr(q, rc, "reading counts", err);
  uint64_t last = meta_get(q, "last_seq");
  if (last > q->st.last_seq) q->st.last_seq = last;
  q->st.acked = meta_get(q, "acked");
  q->st.redelivered = meta_get(q, "redelivered");
  q->st.dead_lettered = meta_get(q, "dead_lettered");
  return MSRT_E_OK;
}

msrt_code msrt_queue_db_open(msrt_queue *q, msrt_error *err) {
  int rc = sqlite3_open_v2(q->path, &q->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  if (rc != SQLITE_OK) return msrt_queue_sqlerr(q, rc, "open", err);
  sqlite3_extended_result_codes(q->db, 1);
  msrt_code c = check(q, err);
  if (c != MSRT_E_OK) return c;
  /* WAL: readers and the writer do not block each other, and a commit is
   * one append to the log (https://www.sqlite.org/wal.html) */
  sqlite3_stmt *st;
  rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int wal = rc == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
  sqlite3_finalize(st);
  if (!wal)
    return rc == SQLITE_ROW
               ? msrt_error_set(err, MSRT_E_RESOURCE_EXHAUSTED,
                                "queue \"%s\": %s cannot be put in WAL mode",
                                q->name, q->path)
               : msrt_queue_sqlerr(q, rc, "journal_mode", err);
  rc = exec(q, q->sync_full ? "PRAGMA synchronous = FULL"
                            : "PRAGMA synchronous = NORMAL");
  if (rc == SQLITE_OK) rc = exec(q, SCHEMA);
  if (rc != SQLITE_OK) return msrt_queue_sqlerr(q, rc, "schema", err);
  for (int i = 0; i < S__COUNT; i++) {
    rc = sqlite3_prepare_v3(q->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &q->stmt[i], NULL);
    if (rc != SQLITE_OK) return msrt_queue_sqlerr(q, rc, "prepare", err);
  }
  msrt_queue_ckpt_setup(q);
  return load_counts(q, err);
}

void msrt_queue_db_close(msrt_queue *q) {
  msrt_queue_ckpt_stop(q);
  for (int i = 0; i < S__COUNT; i++) sqlite3_finalize(q->stmt[i]);
  if (q->db) sqlite3_close(q->db);
  q->db = NULL;
}

/* Run a statement to its end; *out gets column 0 of the first row (when
 * there is one and out is non-NULL). Returns SQLITE_DONE/ROW or the error. */
static int run(sqlite3_stmt *st, int64_t *out, int *got) {
  int rc = sqlite3_step(st), any = 0;
  while (rc == SQLITE_ROW) {
    if (!any && out) *out = sqlite3_column_int64(st, 0);
    any = 1;
    rc = sqlite3_step(st);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (got) *got = any;
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Run statement i with seq bound; *out and *got as run's. */
static int run_seq(msrt_queue *q, int i, uint64_t seq, int64_t *out,
                   int *got) {
  sqlite3_bind_int64(q->stmt[i], 1, (int64_t)seq);
  return run(q->stmt[i], out, got);
}

/* Delete the stored messages with seqs lo..hi; *gone gets how many. */
static int delete_range(msrt_queue *q, uint64_t lo, uint64_t hi,
                        uint64_t *gone) {
  sqlite3_stmt *st = q->stmt[S_LEN];
  sqlite3_bind_int64(st, 1, (int64_t)lo);
  sqlite3_bind_int64(st, 2, (int64_t)hi);
  int rc = sqlite3_step(st);
  /* length() of a blob reads its size, not its bytes */
  int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  int64_t len = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return rc;
  *gone = (uint64_t)n;
  if (!n) return SQLITE_OK;
  st = q->stmt[S_DELETE];
  sqlite3_bind_int64(st, 1, (int64_t)lo);
  sqlite3_bind_int64(st, 2, (int64_t)hi);
  if ((rc = run(st, NULL, NULL)) != SQLITE_OK) return rc;
  q->tx.stored -= (uint64_t)n;
  q->tx.bytes -= (uint64_t)len;
  return SQLITE_OK;
}

static int cmp_seq(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Delete seqs[0..n) (any order, repeats allowed), by runs of consecutive
 * seqs; *gone gets how many were stored. */
static int delete_seqs(msrt_queue *q, const uint64_t *seqs, size_t n,
                       uint64_t *gone) {
  *gone = 0;
  if (!n) return SQLITE_OK;
  uint64_t *v = malloc(n * sizeof *v);
  if (!v) return SQLITE_NOMEM;
  memcpy(v, seqs, n * sizeof *v);
  qsort(v, n, sizeof *v, cmp_seq);
  int rc = SQLITE_OK;
  for (size_t i = 0; i < n && rc == SQLITE_OK;) {
    size_t j = i + 1;
    while (j < n && v[j] <= v[j - 1] + 1) j++;
    uint64_t k = 0;
    rc = delete_range(q, v[i], v[j - 1], &k);
    *gone += k;
    i = j;
  }
  free(v);
  return rc;
}

static int apply_ops(msrt_queue *q, const msrt_queue_ops *ops) {
  int rc = SQLITE_OK, got;
  for (size_t i = 0; ops && i < ops->ndeliver && rc == SQLITE_OK; i++) {
    int64_t d = 0; /* the count before this delivery */
    rc = run_seq(q, S_DELIVERED, ops->deliver[i], &d, &got);
    if (rc == SQLITE_OK && got)
      rc = run_seq(q, S_DELIVER, ops->deliver[i], NULL, NULL);
    if (got && d > 0) q->tx.redelivered++;
  }
  uint64_t gone = 0;
  if (ops && rc == SQLITE_OK) rc = delete_seqs(q, ops->acks, ops->nacks, &gone);
  q->tx.acked += gone;
  gone = 0;
  if (ops && rc == SQLITE_OK) rc = delete_seqs(q, ops->dead, ops->ndead, &gone);
  q->tx.dead_lettered += gone;
  return rc;
}

/* A Msg-Id seen within the window: *seq gets the first one's. */
static int dup_of(msrt_queue *q, const char *id, size_t len, uint64_t now,
                  uint64_t *seq) {
  sqlite3_stmt *st = q->stmt[S_DUP_GET];
  int64_t s = 0;
  int got;
  sqlite3_bind_blob(st, 1, id, (int)len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (int64_t)(now - q->dedupe_window_ms));
  int rc = run(st, &s, &got);
  *seq = got ? (uint64_t)s : 0;
  return rc;
}

/* make_room's answer when the policy refuses the message (not SQLite's) */
#define REFUSED (-1)

/* Room for one more message of len bytes, evicting the oldest when the
 * policy is discard old. Returns SQLITE_OK, REFUSED, or SQLite's error. */
static int make_room(msrt_queue *q, uint64_t len) {
  for (;;) {
    int over = (q->max_msgs && q->tx.stored + 1 > q->max_msgs) ||
               (q->max_bytes && q->tx.bytes + len > q->max_bytes);
    if (!over) return SQLITE_OK;
    if (q->discard == MSRT_QUEUE_DISCARD_NEW || q->tx.stored == 0 ||
        (q->max_bytes && len > q->max_bytes))
      return REFUSED;
    int64_t oldest = 0;
    uint64_t gone;
    int got, rc = run(q->stmt[S_OLDEST], &oldest, &got);
    if (rc != SQLITE_OK) return rc;
    if (!got) return REFUSED;
    rc = delete_range(q, (uint64_t)oldest, (uint64_t)oldest, &gone);
    if (rc != SQLITE_OK) return rc;
    if (msrt_queue_evict_push(q, (uint64_t)oldest) != 0) return SQLITE_NOMEM;
  }
}

static int store_one(msrt_queue *q, msrt_queue_result *r, uint64_t now,
                     size_t *deliver_new) {
  msrt_envelope *e = r->env;
  size_t idlen = 0;
  const char *id = q->dedupe_window_ms
                       ? msrt_queue_header(e, "Msg-Id", &idlen)
                       : NULL;
  int rc;
  if (id && idlen) {
    if ((rc = dup_of(q, id, idlen, now, &r->seq)) != SQLITE_OK) return rc;
    if (r->seq) {
      r->duplicate = 1;
      return SQLITE_OK;
    }
  }
  uint64_t len = (uint64_t)e->headers_len + e->payload_len;
  rc = make_room(q, len);
  if (rc == REFUSED) {
    r->code = MSRT_E_RESOURCE_EXHAUSTED; /* this one refused, not the flush */
    return SQLITE_OK;
  }
  if (rc != SQLITE_OK) return rc;
  uint64_t seq = q->tx.last_seq + 1;
  sqlite3_stmt *st = q->stmt[S_INSERT];
  sqlite3_bind_int64(st, 1, (int64_t)seq);
  sqlite3_bind_text(st, 2, e->subject, (int)e->subject_len, SQLITE_STATIC);
  if (e->headers_len)
    sqlite3_bind_blob(st, 3, e->headers, (int)e->headers_len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 3);
  sqlite3_bind_blob(st, 4, e->payload, (int)e->payload_len, SQLITE_STATIC);
  sqlite3_bind_int(st, 5, e->priority);
  sqlite3_bind_int(st, 6, e->flags);
  sqlite3_bind_int64(st, 7, (int64_t)(e->ts_ns / 1000000u));
  sqlite3_bind_int(st, 8, *deliver_new > 0);
  if ((rc = run(st, NULL, NULL)) != SQLITE_OK) return rc;
  if (*deliver_new > 0) (*deliver_new)--;
  if (id && idlen) {
    st = q->stmt[S_DUP_PUT];
    sqlite3_bind_blob(st, 1, id, (int)idlen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)seq);
    sqlite3_bind_int64(st, 3, (int64_t)now);
    if ((rc = run(st, NULL, NULL)) != SQLITE_OK) return rc;
  }
  q->tx.last_seq = seq;
  q->tx.stored++;
  q->tx.bytes += len;
  r->seq = seq;
  return SQLITE_OK;
}

static int put_meta(msrt_queue *q) {
  static const char *const keys[] = {"last_seq", "acked", "redelivered",
                                     "dead_lettered"};
  uint64_t vals[] = {q->tx.last_seq, q->tx.acked, q->tx.redelivered,
                     q->tx.dead_lettered};
  uint64_t old[] = {q->st.last_seq, q->st.acked, q->st.redelivered,
                    q->st.dead_lettered};
  int rc = SQLITE_OK;
  for (int i = 0; i < 4 && rc == SQLITE_OK; i++) {
    if (vals[i] == old[i]) continue;
    sqlite3_stmt *st = q->stmt[S_META_PUT];
    sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)vals[i]);
    rc = run(st, NULL, NULL);
  }
  return rc;
}

/* The transaction of one flush over (*res)[0..*n), the intake taken
 * after ops when take (msrt_queue_commit). */
static int transact(msrt_queue *q, const msrt_queue_ops *ops,
                    msrt_queue_result **res, size_t *n, int take,
                    const char **what) {
  q->tx = q->st;
  *what = "begin";
  int rc = exec(q, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK) {
    *what = "writing";
    rc = apply_ops(q, ops);
  }
  uint64_t now = msrt_wall_ns() / 1000000u;
  size_t deliver_new = ops ? ops->deliver_new : 0;
  if (take) {
    /* stored as it comes while the flush is open (the caller's PubAcks
     * resume publishers meanwhile), what came until the seal last; taken
     * even when the transaction failed: those messages are then refused
     * with it, as a flush's intake is */
    size_t cap = 0, done = 0;
    for (int last = 0; !last;) {
      last = msrt_queue_await_more(q);
      if (msrt_queue_take_more(q, res, n, &cap, last) != 0 && rc == SQLITE_OK)
        rc = SQLITE_NOMEM;
      for (; done < *n && rc == SQLITE_OK; done++)
        rc = store_one(q, &(*res)[done], now, &deliver_new);
    }
  }
  if (rc != SQLITE_OK) {
    if (!sqlite3_get_autocommit(q->db)) exec(q, "ROLLBACK");
    return rc;
  }
  for (size_t i = 0; !take && i < *n && rc == SQLITE_OK; i++)
    rc = store_one(q, &(*res)[i], now, &deliver_new);
  if (rc == SQLITE_OK && q->dedupe_window_ms && now > q->dedupe_window_ms) {
    sqlite3_stmt *st = q->stmt[S_DUP_PRUNE];
    sqlite3_bind_int64(st, 1, (int64_t)(now - q->dedupe_window_ms));
    rc = run(st, NULL, NULL);
  }
  if (rc == SQLITE_OK) rc = put_meta(q);
  if (rc == SQLITE_OK) {
    *what = "commit";
    rc = exec(q, "COMMIT");
  }
  if (rc != SQLITE_OK && !sqlite3_get_autocommit(q->db)) exec(q, "ROLLBACK");
  return rc;
}

msrt_code msrt_queue_commit(msrt_queue *q, const msrt_queue_ops *ops,
                            msrt_queue_result **resp, size_t *np, int take,
                            uint64_t **evicted, size_t *nevicted,
                            msrt_error *err) {
  const char *what;
  int rc = transact(q, ops, resp, np, take, &what);
  msrt_queue_result *res = *resp;
  size_t n = *np;
  msrt_queue_evict_take(q, evicted, nevicted);
  msrt_code c = MSRT_E_OK;
  if (rc != SQLITE_OK) {
    free(*evicted);
    *evicted = NULL, *nevicted = 0;
    c = msrt_queue_sqlerr(q, rc, what, err);
    for (size_t i = 0; i < n; i++)
      res[i].seq = 0, res[i].duplicate = 0, res[i].code = c;
  }
  /* the counts under lock: msrt_queue_stats_get reads them meanwhile */
  pthread_mutex_lock(&q->lock);
  if (c == MSRT_E_OK) {
    q->st.stored = q->tx.stored, q->st.bytes = q->tx.bytes;
    q->st.last_seq = q->tx.last_seq, q->st.acked = q->tx.acked;
    q->st.redelivered = q->tx.redelivered;
    q->st.dead_lettered = q->tx.dead_lettered;
    q->st.commits++;
  }
  for (size_t i = 0; i < n; i++)
    if (res[i].code != MSRT_E_OK) q->st.refused++;
  pthread_mutex_unlock(&q->lock);
  return c;
}

msrt_code msrt_queue_flush(msrt_queue *q, const msrt_queue_ops *ops,
                           msrt_queue_result **res, size_t *nres,
                           uint64_t **evicted, size_t *nevicted,
                           msrt_error *err) {
  *res = NULL, *nres = 0, *evicted = NULL, *nevicted = 0;
  msrt_queue_writer_idle(q);
  if (msrt_queue_take_intake(q, res, nres) != 0)
    return msrt_error_set(err, MSRT_E_NOMEM, "queue \"%s\": no memory for a "
                          "flush", q->name);
  return msrt_queue_commit(q, ops, res, nres, 0, evicted, nevicted, err);
}

msrt_code msrt_queue_get(msrt_queue *q, uint64_t seq, msrt_envelope **env,
                         uint32_t *delivered, msrt_error *err) {
  msrt_queue_writer_idle(q);
  sqlite3_stmt *st = q->stmt[S_GET];
  *env = NULL;
  sqlite3_bind_int64(st, 1, (int64_t)seq);
  int rc = sqlite3_step(st);
  msrt_code c = MSRT_E_OK;
  if (rc == SQLITE_ROW) {
    const char *s = (const char *)sqlite3_column_text(st, 0);
    size_t slen = (size_t)sqlite3_column_bytes(st, 0);
    const void *h = sqlite3_column_blob(st, 1);
    size_t hlen = (size_t)sqlite3_column_bytes(st, 1);
    const void *p = sqlite3_column_blob(st, 2);
    size_t plen = (size_t)sqlite3_column_bytes(st, 2);
    *env = msrt_env_new(s, slen, NULL, 0, hlen ? h : NULL, hlen, p, plen,
                        sqlite3_column_int(st, 3),
                        (uint8_t)sqlite3_column_int(st, 4), 0);
    if (delivered) *delivered = (uint32_t)sqlite3_column_int(st, 5);
    if (!*env) c = msrt_error_set(err, MSRT_E_NOMEM, "no memory");
  } else if (rc == SQLITE_DONE) {
    c = msrt_error_set(err, MSRT_E_NOT_FOUND, "queue \"%s\" has no message "
                       "%llu", q->name, (unsigned long long)seq);
  } else {
    c = msrt_queue_sqlerr(q, rc, "reading", err);
  }
  sqlite3_reset(st);
  return c;
}

msrt_code msrt_queue_scan(msrt_queue *q, uint64_t after, size_t limit,
                          int (*fn)(void *, uint64_t, uint32_t), void *ud,
                          msrt_error *err) {
  msrt_queue_writer_idle(q);
  sqlite3_stmt *st = q->stmt[S_SCAN];
  sqlite3_bind_int64(st, 1, (int64_t)after);
  sqlite3_bind_int64(st, 2, limit ? (int64_t)limit : -1);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    if (fn(ud, (uint64_t)sqlite3_column_int64(st, 0),
           (uint32_t)sqlite3_column_int(st, 1)))
      break;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return msrt_queue_sqlerr(q, rc, "scanning", err);
  return MSRT_E_OK;
}

msrt_code msrt_queue_purge(msrt_queue *q, uint64_t *purged, msrt_error *err) {
  msrt_queue_writer_idle(q);
  int rc = exec(q, "DELETE FROM msgs");
  if (rc != SQLITE_OK) return msrt_queue_sqlerr(q, rc, "purge", err);
  if (purged) *purged = (uint64_t)sqlite3_changes(q->db);
  pthread_mutex_lock(&q->lock);
  q->st.stored = 0, q->st.bytes = 0;
  pthread_mutex_unlock(&q->lock);
  return MSRT_E_OK;
}
