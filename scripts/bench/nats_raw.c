/* The baseline of scripts/bench/nats.lua: libnats clients with no msrt in
 * between, on the same server and payloads (README "Performance", "More
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

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define MAX_SUBS 16

static void stream(const char *url, long count, char *data, int size,
                   int members, int queue) {
  natsConnection *subs[MAX_SUBS];
  natsSubscription *s[MAX_SUBS];
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
  natsConnection *pub = conn(url);
  for (long i = 0; i < count; i++)
    natsConnection_Publish(pub, "bench.x", data, size);
  natsConnection_Flush(pub);
  double deadline = now_s() + 60;
  while (atomic_load(&got) < want && now_s() < deadline)
    nats_Sleep(1);
  double secs = atomic_load(&last_s) - atomic_load(&first_s);
  printf("msgs_per_s %.0f received %ld\n", (double)atomic_load(&got) / secs,
         atomic_load(&got));
  natsConnection_Destroy(pub);
  for (int i = 0; i < members; i++) {
    natsSubscription_Destroy(s[i]);
    natsConnection_Destroy(subs[i]);
  }
}

static void reqrep(const char *url, long count, char *data, int size) {
  natsOptions *o = NULL;
  natsConnection *rc = NULL, *qc = conn(url);
  natsOptions_Create(&o);
  natsOptions_SetURL(o, url);
  natsOptions_SetSendAsap(o, true); /* the reply out at once */
  if (natsConnection_Connect(&rc, o) != NATS_OK) exit(1);
  natsOptions_Destroy(o);
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
    fprintf(stderr, "usage: bench_nats_raw URL pubsub|queue|fanout|reqrep "
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
  else stream(argv[1], count, data, size, 1, 0);
  free(data);
  nats_Close();
  return 0;
}
