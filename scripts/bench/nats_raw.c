/* The baseline of scripts/bench/nats.lua: libnats clients with no msrt in
 * between, on the same server and payloads (docs/performance.md; README "More
 * than one host").
 *   bench_nats_raw URL pubsub COUNT SIZE   1 publisher -> 1 subscriber
 *   bench_nats_raw URL queue COUNT SIZE [N]  1 publisher -> a queue group of
 *                                          N subscribers (N connections;
 *                                          default 2)
 *   bench_nats_raw URL fanout COUNT SIZE N  1 publisher -> N subscribers,
 *                                          each getting every message
 *                                          (msgs_per_s counts deliveries)
 *   bench_nats_raw URL reqrep COUNT SIZE   sequential requests to 1 responder
 *                                          (its connection SendAsap, as
 *                                          msrt's bridges in this run)
 *   bench_nats_raw URL sub COUNT SIZE      a subscriber alone: "ready" once
 *                                          subscribed, then as pubsub's,
 *                                          exiting 500 ms after it
 *   bench_nats_raw URL pub COUNT SIZE      a publisher alone (then a flush)
 *   bench_nats_raw URL rep COUNT SIZE      a responder alone (SendAsap):
 *                                          "ready", then COUNT answers
 *   bench_nats_raw URL req COUNT SIZE      a requester alone: COUNT
 *                                          sequential requests
 * (sub, pub, rep, req: one side per process, for scripts/bench/
 * nats_cost.sh)
 * Each side is its own connection. Prints one line: "msgs_per_s N" (from
 * the first message received to the last) or "p50_us N p99_us N". */
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static _Atomic long got;
static _Atomic double first_s, last_s;

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                   void *ud) {
  (void)nc, (void)sub, (void)ud;
  double t = now_s();
  if (atomic_fetch_add(&got, 1) == 0) atomic_store(&first_s, t);
  atomic_store(&last_s, t);
  natsMsg_Destroy(m);
}

static void on_req(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                   void *ud) {
  (void)sub, (void)ud;
  natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m),
                         natsMsg_GetDataLength(m));
  natsMsg_Destroy(m);
}

static natsConnection *conn(const char *url) {
  natsConnection *nc = NULL;
  if (natsConnection_ConnectTo(&nc, url) != NATS_OK) {
    fprintf(stderr, "bench_nats_raw: cannot connect to %s\n", url);
    exit(1);
  }
  return nc;
}

/* A connection that writes each message at once (SendAsap), as a
 * responder's (and msrt's bridges' in nats.lua's request runs). */
static natsConnection *conn_asap(const char *url) {
  natsOptions *o = NULL;
  natsConnection *nc = NULL;
  natsOptions_Create(&o);
  natsOptions_SetURL(o, url);
  natsOptions_SetSendAsap(o, true);
  if (natsConnection_Connect(&nc, o) != NATS_OK) exit(1);
  natsOptions_Destroy(o);
  return nc;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define MAX_SUBS 16

/* Publish count messages on pub and flush. */
static void publish(natsConnection *pub, long count, char *data, int size) {
  for (long i = 0; i < count; i++)
    natsConnection_Publish(pub, "bench.x", data, size);
  natsConnection_Flush(pub);
}

/* Members subscribers (a queue group when queue); with no publisher
 * (count < 0: -count wanted) "ready" first, the messages from another
 * process. */
static void stream(const char *url, long count, char *data, int size,
                   int members, int queue) {
  natsConnection *subs[MAX_SUBS];
  natsSubscription *s[MAX_SUBS];
  bool alone = count < 0;
  if (alone) count = -count;
  long want = queue ? count : count * members;
  for (int i = 0; i < members; i++) {
    subs[i] = conn(url);
    if (!queue)
      natsConnection_Subscribe(&s[i], subs[i], "bench.x", on_msg, NULL);
    else
      natsConnection_QueueSubscribe(&s[i], subs[i], "bench.x", "q", on_msg,
                                    NULL);
    natsSubscription_SetPendingLimits(s[i], -1, -1);
    natsConnection_Flush(subs[i]);
  }
  natsConnection *pub = alone ? NULL : conn(url);
  if (alone) printf("ready\n"), fflush(stdout);
  else publish(pub, count, data, size);
  double deadline = now_s() + 60;
  while (atomic_load(&got) < want && now_s() < deadline)
    nats_Sleep(1);
  double secs = atomic_load(&last_s) - atomic_load(&first_s);
  printf("msgs_per_s %.0f received %ld\n", (double)atomic_load(&got) / secs,
         atomic_load(&got));
  fflush(stdout);
  if (alone) nats_Sleep(500); /* nats_cost.sh reads /proc meanwhile */
  natsConnection_Destroy(pub);
  for (int i = 0; i < members; i++) {
    natsSubscription_Destroy(s[i]);
    natsConnection_Destroy(subs[i]);
  }
}

static _Atomic long answered;

static void on_rep(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                   void *ud) {
  on_req(nc, sub, m, ud);
  atomic_fetch_add(&answered, 1);
}

/* A responder alone (SendAsap): "ready", then count requests answered. */
static void responder(const char *url, long count) {
  natsConnection *rc = conn_asap(url);
  natsSubscription *s;
  natsConnection_Subscribe(&s, rc, "bench.rr", on_rep, NULL);
  natsConnection_Flush(rc);
  printf("ready\n"), fflush(stdout);
  double deadline = now_s() + 120;
  while (atomic_load(&answered) < count && now_s() < deadline) nats_Sleep(1);
  printf("answered %ld\n", atomic_load(&answered)), fflush(stdout);
  nats_Sleep(100);
  natsSubscription_Destroy(s);
  natsConnection_Destroy(rc);
}

/* count sequential requests (a requester alone). */
static void requester(const char *url, long count, char *data, int size) {
  natsConnection *qc = conn(url);
  for (long i = 0; i < count; i++) {
    natsMsg *reply = NULL;
    natsConnection_Request(&reply, qc, "bench.rr", data, size, 5000);
    natsMsg_Destroy(reply);
  }
  natsConnection_Destroy(qc);
}

static void reqrep(const char *url, long count, char *data, int size) {
  natsConnection *rc = conn_asap(url), *qc = conn(url);
  natsSubscription *s;
  natsConnection_Subscribe(&s, rc, "bench.rr", on_req, NULL);
  natsConnection_Flush(rc);
  double *lat = malloc((size_t)count * sizeof *lat);
  for (long i = 0; i < count; i++) {
    natsMsg *reply = NULL;
    double t0 = now_s();
    natsConnection_Request(&reply, qc, "bench.rr", data, size, 5000);
    lat[i] = (now_s() - t0) * 1e6;
    natsMsg_Destroy(reply);
  }
  qsort(lat, (size_t)count, sizeof *lat, cmp);
  printf("p50_us %.1f p99_us %.1f\n", lat[count / 2], lat[count * 99 / 100]);
  free(lat);
  natsSubscription_Destroy(s);
  natsConnection_Destroy(qc);
  natsConnection_Destroy(rc);
}

int main(int argc, char **argv) {
  int n = argc == 6 ? atoi(argv[5]) : 2;
  if ((argc != 5 && argc != 6) || n < 1 || n > MAX_SUBS) {
    fprintf(stderr, "usage: bench_nats_raw URL pubsub|queue|fanout|reqrep|sub|pub|req|rep "
                    "COUNT SIZE [N]\n");
    return 2;
  }
  long count = atol(argv[3]);
  int size = atoi(argv[4]);
  char *data = malloc((size_t)size + 1);
  memset(data, 'x', (size_t)size);
  if (strcmp(argv[2], "reqrep") == 0) reqrep(argv[1], count, data, size);
  else if (strcmp(argv[2], "queue") == 0)
    stream(argv[1], count, data, size, n, 1);
  else if (strcmp(argv[2], "fanout") == 0)
    stream(argv[1], count, data, size, n, 0);
  else if (strcmp(argv[2], "req") == 0) requester(argv[1], count, data, size);
  else if (strcmp(argv[2], "rep") == 0) responder(argv[1], count);
  else if (strcmp(argv[2], "sub") == 0)
    stream(argv[1], -count, data, size, 1, 0);
  else if (strcmp(argv[2], "pub") == 0) {
    natsConnection *pub = conn(argv[1]);
    publish(pub, count, data, size);
    natsConnection_Destroy(pub);
  }
  else stream(argv[1], count, data, size, 1, 0);
  free(data);
  nats_Close();
  return 0;
}
