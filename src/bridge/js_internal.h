/* Shared by the files of a JetStream queue (bridge/js.h): js.c (life,
 * events, thread, acks) and js_pub.c (the endpoint and the PubAcks). */
#ifndef MSRT_BRIDGE_JS_INTERNAL_H
#define MSRT_BRIDGE_JS_INTERNAL_H

#include <stdatomic.h>

#include "bridge/internal.h"
#include "bridge/js.h"
#include "core/token.h"

/* A pull's longest wait (ms): also how long close may wait for it. */
#define MSRT_JSQ_PULL_MS 250

struct msrt_jsq {
  atomic_uint refs; /* the opener, each bus subscription, the ack inbox */
  msrt_bridge *b;
  msrt_bus *bus;
  msrt_jsq_config cfg; /* its pointers are not kept: the copies below */
  char *name;
  char **subjects;
  size_t nsubjects;
  int64_t *backoff;
  uint64_t wake_id;
  jsCtx *js;              /* the thread's until it is joined */
  natsSubscription *pull; /* the thread's until it is joined */
  natsSubscription *inbox_sub; /* PubAcks, on libnats' thread */
  char inbox[MSRT_TOKEN_LEN + 16]; /* "_INBOX.<token>" */
  _Atomic bool closed;
  _Atomic bool ended; /* the thread is about to return */
  pthread_t th;
  pthread_mutex_t mu; /* what follows */
  pthread_cond_t cv;  /* room, closing */
  bool closing;
  int64_t room;       /* messages the hub can take, set by it */
  size_t queued;      /* MSG events not taken yet */
  msrt_jsq_event *ev;
  size_t nev, capev;
  int signalled;      /* an MSRT_IN_QUEUE item is on its way */
  struct {
    _Atomic uint64_t published, accepted, duplicates, refused, pulled, pulls;
    _Atomic uint64_t stored, bytes, last_seq, pending, ack_pending_all;
  } st;
  int64_t info_at_ms; /* the thread's: when it last asked for the counts */
};

/* Append an event and, when it is the first since the hub last took
 * them, hand the hub an MSRT_IN_QUEUE item. -1: out of memory. */
int msrt_jsq_push_event(msrt_jsq *q, const msrt_jsq_event *ev);

/* The PubAck inbox: subscribe (js_pub.c), unsubscribe. */
msrt_code msrt_jsq_pub_open(msrt_jsq *q, msrt_error *err);
void msrt_jsq_pub_close(msrt_jsq *q);

void msrt_jsq_ref(msrt_jsq *q);
void msrt_jsq_unref(msrt_jsq *q);

#endif
