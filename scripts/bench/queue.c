/* The ceilings msrt's durable queues are measured against
 * (docs/performance.md, scripts/bench/queue.lua):
 *
 *   bench_queue sqlite [N] [normal|full] [16|4096 (one size only)]
 *     a plain C loop doing the transactions a queue does (src/queue/
 *     store.c's, on its table), with nothing around them: WAL, one
 *     transaction per batch of 64 holding the batch's inserts (16 B and
 *     4 KiB payloads, a 20-byte header, stored as delivered once: a queue
 *     hands new messages to consumers with room in the same transaction),
 *     the deletes of the previous batch's acks (counted and deleted as
 *     one run of consecutive seqs), the Msg-Id window's prune and the two
 *     counters it keeps.
 *   bench_queue store [N] [normal|full] [16|4096]
 *     msrt's own store alone, no Lua (src/queue driven from C): the same
 *     batches of 64 published on the bus with a 20-byte header and a reply
 *     (a durable publish's), captured by the queue's endpoint, flushed with
 *     the previous batch's acks and the new ones stored as delivered once
 *     (msrt_queue_flush, what queue.lua's flush asks of it): the floor of
 *     msrt's durable path, between the plain loop and msrt-lua's.
 *   bench_queue js URL [N]
 *     JetStream's file store through libnats: a work-queue stream, 64
 *     async publishes in flight (js_PublishAsync), 1 and 4 pull consumers
 *     (threads, Fetch of 64, an ack per message); msgs/s from the first
 *     publish to the last ack, publish-to-ack p50. nats-server 2.9 has no
 *     sync_interval: a file store write is acknowledged before any fsync,
 *     which is what synchronous = NORMAL promises (a crash of the process,
 *     not a power loss).
 */
#include <nats/nats.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
#include "queue/queue.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Wall-clock ms: what the queue stores as a message's ts (the envelope's
 * wall-clock time) and prunes the Msg-Id window by. (The monotonic clock's
 * ms, which the loop stored until 12-06, is a 3-byte integer where the
 * queue's is 6: 64 rows then fit in one b-tree page where the queue's take
 * two, and the loop's commit wrote 3 WAL frames against the queue's 5.) */
static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ---- the plain SQLite loop ---------------------------------------------- */

#define BATCH 64

/* A failed statement ends the run: a loop that went on without its
 * deletes (two runs on one file: busy) measured less than the work. */
static void sql_fail(sqlite3 *db, const char *what) {
  fprintf(stderr, "sqlite %s: %s\n", what, sqlite3_errmsg(db));
  exit(1);
}

static void sqlite_case(const char *dir, int n, int size, const char *sync) {
  char path[512], sql[128];
  /* the pid: runs side by side (callgrind at two sizes) get a file each */
  snprintf(path, sizeof path, "%s/ceiling-%d-%d.db", dir, size, (int)getpid());
  unlink(path);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK) exit(1);
  snprintf(sql, sizeof sql, "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;", sync);
  sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_exec(db, "CREATE TABLE msgs(seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, hdr BLOB, "
                   "data BLOB NOT NULL, prio INTEGER NOT NULL, flags INTEGER NOT NULL, ts INTEGER "
                   "NOT NULL, delivered INTEGER NOT NULL DEFAULT 0);"
                   "CREATE TABLE dedupe(id BLOB PRIMARY KEY, seq INTEGER NOT NULL, at_ms INTEGER "
                   "NOT NULL); CREATE INDEX dedupe_at ON dedupe(at_ms);"
                   "CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL)", NULL, NULL, NULL);
  sqlite3_stmt *ins, *len, *del, *meta, *prune;
  sqlite3_prepare_v2(db, "INSERT INTO msgs(seq, subject, hdr, data, prio, flags, ts, delivered) "
                         "VALUES(?, 'bench.x', ?, ?, 5, 1, ?, 1)", -1, &ins, NULL);
  sqlite3_prepare_v2(db, "SELECT count(*), ifnull(sum(length(data) + ifnull(length(hdr), 0)), 0) "
                         "FROM msgs WHERE seq BETWEEN ? AND ?", -1, &len, NULL);
  sqlite3_prepare_v2(db, "DELETE FROM msgs WHERE seq BETWEEN ? AND ?", -1, &del, NULL);
  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(k, v) VALUES(?, ?)", -1, &meta, NULL);
  sqlite3_prepare_v2(db, "DELETE FROM dedupe WHERE at_ms < ?", -1, &prune, NULL);
  char *body = malloc((size_t)size);
  memset(body, 'x', (size_t)size);
  static const char hdr[] = "T\0001733400000000000\0"; /* as the Lua bench's */
  double t0 = now_us();
  for (int done = 0; done < n + BATCH; done += BATCH) {
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) sql_fail(db, "begin");
    if (done > 0) { /* the last batch acked */
      for (sqlite3_stmt *st = len; st; st = st == len ? del : NULL) {
        sqlite3_bind_int64(st, 1, done - BATCH + 1);
        sqlite3_bind_int64(st, 2, done < n ? done : n);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
        if (rc != SQLITE_DONE) sql_fail(db, "delete");
        sqlite3_reset(st);
      }
    }
    for (int i = done; i < done + BATCH && i < n; i++) { /* this batch in */
      sqlite3_bind_int64(ins, 1, i + 1);
      sqlite3_bind_blob(ins, 2, hdr, sizeof hdr - 1, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 3, body, size, SQLITE_STATIC);
      sqlite3_bind_int64(ins, 4, wall_ms());
      if (sqlite3_step(ins) != SQLITE_DONE) sql_fail(db, "insert");
      sqlite3_reset(ins);
    }
    sqlite3_bind_int64(prune, 1, wall_ms() - 120000); /* Msg-Id window */
    if (sqlite3_step(prune) != SQLITE_DONE) sql_fail(db, "prune");
    sqlite3_reset(prune);
    for (int k = 0; k < 2; k++) { /* last_seq, acked */
      sqlite3_bind_text(meta, 1, k ? "acked" : "last_seq", -1, SQLITE_STATIC);
      sqlite3_bind_int64(meta, 2, done);
      if (sqlite3_step(meta) != SQLITE_DONE) sql_fail(db, "counter");
      sqlite3_reset(meta);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) sql_fail(db, "commit");
  }
  double secs = (now_us() - t0) / 1e6;
  printf("sqlite %5d B, plain C loop : %9.0f msgs/s (synchronous %s, %d per transaction)\n", size,
         n / secs, sync, BATCH);
  sqlite3_finalize(ins), sqlite3_finalize(len), sqlite3_finalize(del), sqlite3_finalize(meta);
  sqlite3_finalize(prune);
  sqlite3_close(db);
  free(body);
  unlink(path);
}

/* ---- msrt's store alone (src/queue, no Lua) -------------------------------- */

static void drain_none(msrt_inbox_item *items, size_t n, void *ud) {
  (void)ud;
  for (size_t i = 0; i < n; i++) msrt_env_unref(items[i].env);
}

static void store_case(const char *dir, int n, int size, const char *sync) {
  char path[512];
  snprintf(path, sizeof path, "%s/store-%d-%d.db", dir, size, (int)getpid());
  unlink(path);
  uv_loop_t loop;
  uv_loop_init(&loop);
  msrt_router *router = msrt_router_new(NULL);
  msrt_inbox *inbox = msrt_inbox_new(&loop, drain_none, NULL);
  msrt_bus_limits lim = {1 << 20, 0};
  msrt_bus *bus = msrt_bus_new(router, inbox, &lim);
  msrt_queue_config cfg = {.path = path, .name = "bench", .sync_full = strcmp(sync, "full") == 0,
                           .dedupe_window_ms = 120000, .wake_id = 1};
  msrt_error err;
  msrt_queue *q = msrt_queue_open(&cfg, &err);
  uint64_t sub;
  if (!q || msrt_bus_subscribe(bus, "bench.>", 7, NULL, 0, msrt_ep_queue(q), &sub, &err) != MSRT_E_OK) {
    fprintf(stderr, "store: %s\n", err.message);
    exit(1);
  }
  char *body = malloc((size_t)size);
  memset(body, 'x', (size_t)size);
  static const char hdr[] = "T\0001733400000000000\0"; /* as the Lua bench's */
  uint64_t acks[BATCH];
  size_t nacks = 0;
  double t0 = now_us();
  for (int done = 0; done < n + BATCH; done += BATCH) {
    for (int i = done; i < done + BATCH && i < n; i++) { /* this batch in */
      char reply[48];
      int rlen = snprintf(reply, sizeof reply, "_QPUB.AAAAAAAAAAAAAAAAAAAAAA.%d", i + 1);
      msrt_envelope *e = msrt_bus_make(bus, "bench.x", 7, reply, (size_t)rlen, hdr, sizeof hdr - 1,
                                       body, (size_t)size, 5, 0, &err);
      size_t got = 0;
      if (!e || msrt_bus_publish(bus, e, &got, NULL, &err) != MSRT_E_OK || got != 1) exit(1);
      msrt_env_unref(e);
    }
    msrt_queue_ops ops = {.acks = acks, .nacks = nacks, .deliver_new = BATCH};
    msrt_queue_result *res;
    uint64_t *ev;
    size_t nres, nev;
    if (msrt_queue_flush(q, &ops, &res, &nres, &ev, &nev, &err) != MSRT_E_OK) {
      fprintf(stderr, "flush: %s\n", err.message);
      exit(1);
    }
    nacks = 0; /* what was delivered is acked by the next flush */
    for (size_t i = 0; i < nres; i++) acks[nacks++] = res[i].seq;
    msrt_queue_results_free(res, nres);
    free(ev);
  }
  double secs = (now_us() - t0) / 1e6;
  printf("store  %5d B, msrt's store alone (C): %9.0f msgs/s (synchronous %s, %d per transaction)\n",
         size, n / secs, sync, BATCH);
  msrt_bus_unsubscribe(bus, sub);
  msrt_queue_close(q);
  msrt_inbox_drain(inbox);
  msrt_inbox_close(inbox);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  msrt_bus_free(bus);
  msrt_inbox_free(inbox);
  msrt_router_free(router);
  free(body);
  unlink(path);
}

/* ---- JetStream through libnats ------------------------------------------- */

typedef struct {
  jsCtx *js;
  natsSubscription *sub;
  atomic_int *acked;
  int n;
  double *lat;
  atomic_int *nlat;
} consumer;

static void *consume(void *arg) {
  consumer *c = arg;
  while (atomic_load(c->acked) < c->n) {
    natsMsgList list = {0};
    if (natsSubscription_Fetch(&list, c->sub, 64, 200, NULL) != NATS_OK) continue;
    for (int i = 0; i < list.Count; i++) {
      natsMsg *m = list.Msgs[i];
      const char *t = NULL;
      natsMsgHeader_Get(m, "T", &t);
      natsMsg_Ack(m, NULL);
      int k = atomic_fetch_add(c->nlat, 1);
      if (t && k < c->n) c->lat[k] = now_us() - atof(t);
      atomic_fetch_add(c->acked, 1);
    }
    natsMsgList_Destroy(&list);
  }
  return NULL;
}

static void js_case(natsConnection *nc, jsCtx *js, int n, int size, int consumers, int no) {
  char stream[32], subj[32];
  snprintf(stream, sizeof stream, "BENCH%d", no);
  snprintf(subj, sizeof subj, "bench%d.>", no);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char *subjects[] = {subj};
  cfg.Name = stream, cfg.Subjects = subjects, cfg.SubjectsLen = 1;
  cfg.Retention = js_WorkQueuePolicy, cfg.Storage = js_FileStorage;
  jsErrCode jerr = 0;
  if (js_AddStream(NULL, js, &cfg, NULL, &jerr) != NATS_OK) {
    fprintf(stderr, "js_AddStream: %d\n", (int)jerr);
    exit(1);
  }
  atomic_int acked = 0, nlat = 0;
  double *lat = calloc((size_t)n, sizeof *lat);
  consumer cs[4];
  pthread_t th[4];
  snprintf(subj, sizeof subj, "bench%d.x", no);
  for (int i = 0; i < consumers; i++) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    cs[i] = (consumer){js, NULL, &acked, n, lat, &nlat};
    if (js_PullSubscribe(&cs[i].sub, js, subj, "workers", NULL, &so, &jerr) != NATS_OK) {
      fprintf(stderr, "js_PullSubscribe: %d\n", (int)jerr);
      exit(1);
    }
  }
  char *body = malloc((size_t)size);
  memset(body, 'x', (size_t)size);
  double t0 = now_us();
  for (int i = 0; i < consumers; i++) pthread_create(&th[i], NULL, consume, &cs[i]);
  for (int i = 0; i < n; i++) {
    natsMsg *m;
    natsMsg_Create(&m, subj, NULL, body, size);
    char t[32];
    snprintf(t, sizeof t, "%.0f", now_us());
    natsMsgHeader_Set(m, "T", t);
    if (js_PublishMsgAsync(js, &m, NULL) != NATS_OK) exit(1);
  }
  js_PublishAsyncComplete(js, NULL);
  for (int i = 0; i < consumers; i++) pthread_join(th[i], NULL);
  double secs = (now_us() - t0) / 1e6;
  int k = atomic_load(&nlat) < n ? atomic_load(&nlat) : n;
  qsort(lat, (size_t)k, sizeof *lat, cmp_double);
  printf("js     %5d B, %d consumer%s: %9.0f msgs/s, publish-to-ack p50 %8.1f us, p99 %8.1f us\n", size,
         consumers, consumers > 1 ? "s" : " ", n / secs, lat[k / 2], lat[(int)(k * 0.99)]);
  for (int i = 0; i < consumers; i++) natsSubscription_Destroy(cs[i].sub);
  js_DeleteStream(js, stream, NULL, NULL);
  free(lat), free(body);
  (void)nc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "sqlite") == 0) {
    int n = argc > 2 ? atoi(argv[2]) : 20000;
    const char *sync = argc > 3 ? argv[3] : "normal";
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int size = argc > 4 ? atoi(argv[4]) : 0; /* one size only (callgrind) */
    if (size != 4096) sqlite_case(dir, n, 16, sync);
    if (size != 16) sqlite_case(dir, n, 4096, sync);
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "store") == 0) {
    int n = argc > 2 ? atoi(argv[2]) : 20000;
    const char *sync = argc > 3 ? argv[3] : "normal";
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int size = argc > 4 ? atoi(argv[4]) : 0;
    if (size != 4096) store_case(dir, n, 16, sync);
    if (size != 16) store_case(dir, n, 4096, sync);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "js") == 0) {
    int n = argc > 3 ? atoi(argv[3]) : 20000;
    natsConnection *nc;
    jsCtx *js;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 64;
    if (natsConnection_ConnectTo(&nc, argv[2]) != NATS_OK || natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
      fprintf(stderr, "cannot reach %s\n", argv[2]);
      return 1;
    }
    int no = 0;
    for (int size = 16; size <= 4096; size *= 256)
      for (int c = 1; c <= 4; c *= 4) js_case(nc, js, n, size, c, ++no);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
  }
  fprintf(stderr, "usage: bench_queue sqlite|store [N] [normal|full] [16|4096] | bench_queue js URL [N]\n");
  return 2;
}
