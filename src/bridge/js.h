/* A durable work queue stored in NATS JetStream, on a bridge's connection
 * (README "Durable work queues", docs/architecture.md "Durable queues"):
 * the `store = "jetstream"` of a queue declaration, so that every host
 * bridged to the same NATS server or cluster shares the queue.
 *
 * The stream. Opening makes (js_AddStream) or updates (js_UpdateStream)
 * a file-stored stream named after the queue with work-queue retention
 * (JetStream's WorkQueuePolicy: a message leaves the stream when acked
 * or terminated), the queue's subjects, max_msgs / max_bytes with discard
 * old or new, and the duplicate window (dedupe_window_ms). Then one
 * durable pull consumer (the queue's consumer group, named after the
 * queue, shared by every host: a work-queue stream allows one consumer
 * over its subjects) with explicit acks, ack_wait, backoff,
 * max_ack_pending and max_deliver + 1 deliveries (the one past
 * max_deliver reaches the host, which dead-letters and terminates it, as
 * the SQLite store does when the message is due again).
 *
 * Publishing. The queue's endpoint (bus/endpoint.h, class "queue",
 * remote: it makes no interest, so no bridge imports the queue's subjects
 * because of it) publishes each message it captures to JetStream on the
 * publishing thread, as the bridge's export does (headers, priority and
 * JSON data as on the wire, bridge/bridge.h; `Msg-Id` as JetStream's
 * `Nats-Msg-Id`). Its NATS reply is this queue's inbox naming the local
 * reply, so the PubAck (stream sequence, duplicate, or the server's
 * error) comes back on libnats' thread and is handed to the hub as an
 * event, never through the bus. The bridge exports none of the queue's
 * subjects plainly (the stream would store them twice).
 *
 * Consuming. A thread of the queue's own pulls (natsSubscription_Fetch)
 * at most `room` messages (msrt_jsq_room: what the host's consumers can
 * take now) and hands them to the hub as events; the hub acknowledges
 * each with msrt_jsq_ack, which publishes JetStream's ack protocol to the
 * message's reply subject (+ACK, -NAK with a delay, +WPI, +TERM). Nothing
 * of it blocks the hub: the JetStream API calls of opening and the pulls
 * run on that thread; the hub learns of each result through one
 * MSRT_IN_QUEUE item (bus/bus.h) per batch of events, with target
 * wake_id.
 *
 * Thread-safety: the endpoint's push (and ref/unref) from any thread;
 * everything else on the hub. Close every queue of a bridge before the
 * bridge.
 */
#ifndef MSRT_BRIDGE_JS_H
#define MSRT_BRIDGE_JS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/bridge.h"
#include "bus/endpoint.h"
#include "core/envelope.h"
#include "core/error.h"

typedef struct msrt_jsq msrt_jsq;

typedef struct {
  const char *name;              /* stream and durable consumer name */
  const char *const *subjects;   /* the patterns the stream captures */
  size_t nsubjects;
  int64_t max_msgs, max_bytes;   /* 0: no limit */
  bool discard_new;              /* at a limit refuse new (else drop old) */
  int64_t dedupe_window_ms;      /* Nats-Msg-Id window; 0: 120000 */
  int64_t ack_wait_ms;           /* > 0 */
  int64_t max_deliver;           /* 0: no limit */
  const int64_t *backoff_ms;     /* ack waits per delivery; may be NULL */
  size_t nbackoff;
  int64_t max_ack_pending;       /* across every host; 0: 1000 */
  uint64_t wake_id;              /* the MSRT_IN_QUEUE items' target */
} msrt_jsq_config;

typedef enum {
  MSRT_JSQ_READY,  /* stream and consumer are in place: pulls begin */
  MSRT_JSQ_FAILED, /* opening failed for good: code, message */
  MSRT_JSQ_PUBACK, /* a publish's answer: reply, seq, duplicate, or code */
  MSRT_JSQ_MSG     /* a message pulled: env, ack, seq, delivered */
} msrt_jsq_kind;

typedef struct {
  msrt_jsq_kind kind;
  msrt_envelope *env; /* MSG: the message, its reply NULL (a reference) */
  char *ack;          /* MSG: the JetStream reply subject to ack to */
  char *reply;        /* PUBACK: the local reply it answers; NULL: none */
  uint64_t seq;       /* MSG, PUBACK: the stream sequence */
  uint64_t delivered; /* MSG: the delivery count (1 the first time) */
  bool duplicate;     /* PUBACK: a Nats-Msg-Id within the window */
  msrt_code code;     /* PUBACK, FAILED: MSRT_E_OK or why: unavailable
                         JetStream (no_responders), resource_exhausted
                         (a limit with discard new), network, io */
  char message[200];  /* PUBACK, FAILED: the server's words */
} msrt_jsq_event;

/* Counts since open, and JetStream's own counts of the stream and its
 * consumer as the queue's thread last asked for them (at most once a
 * second, between pulls). Any thread. */
typedef struct {
  uint64_t published;  /* handed to JetStream */
  uint64_t accepted;   /* PubAcks with a new sequence */
  uint64_t duplicates; /* PubAcks of a Nats-Msg-Id within the window */
  uint64_t refused;    /* publishes that failed (PubAck errors included) */
  uint64_t pulled;     /* messages pulled */
  uint64_t pulls;      /* pull requests made */
  uint64_t stored;     /* the stream's messages (JetStream's) */
  uint64_t bytes;      /* their bytes */
  uint64_t last_seq;   /* the stream's last sequence */
  uint64_t pending;    /* stored and not yet delivered (the consumer's) */
  uint64_t ack_pending_all; /* delivered, not acked, on every host */
} msrt_jsq_stats;

/* Open the queue on b (it must outlive the queue) and start its thread,
 * which makes the stream and the consumer (retrying while the bridge is
 * not connected) and says how that went with a READY or FAILED event.
 * Returns MSRT_E_OK at once; invalid_arg (no name or subject), network
 * (its PubAck inbox could not be subscribed), nomem (out of memory, or no
 * thread: the system's reason in the message). A bridge holds as many
 * queues as are declared, each one thread; hub. */
msrt_code msrt_jsq_open(msrt_bridge *b, const msrt_jsq_config *c,
                        msrt_jsq **out, msrt_error *err);

/* The queue's endpoint: subscribe it to the queue's subjects. */
msrt_endpoint msrt_ep_jsq(msrt_jsq *q);

/* Take every event waiting (a malloc'd array into *ev; free it with
 * msrt_jsq_events_free). The MSG events taken leave the room given. */
size_t msrt_jsq_take(msrt_jsq *q, msrt_jsq_event **ev);
void msrt_jsq_events_free(msrt_jsq_event *ev, size_t n);

/* How many more messages the hub's consumers can take now (their free
 * slots); the thread pulls at most that many. */
void msrt_jsq_room(msrt_jsq *q, int64_t n);

typedef enum { MSRT_JSQ_ACK, MSRT_JSQ_NAK, MSRT_JSQ_WPI, MSRT_JSQ_TERM }
    msrt_jsq_op;

/* Acknowledge a pulled message through its ack subject: +ACK, -NAK (with
 * {"delay": ns} when delay_ms > 0), +WPI (work in progress: the ack wait
 * starts again), +TERM (never redelivered). A publish: it does not wait
 * for the server. Returns MSRT_E_OK, or network (libnats refused it). */
msrt_code msrt_jsq_ack(msrt_jsq *q, const char *ack, msrt_jsq_op op,
                       int64_t delay_ms, msrt_error *err);

void msrt_jsq_stats_get(msrt_jsq *q, msrt_jsq_stats *out);

/* Stop the thread (within one pull's wait, 250 ms), refuse later pushes
 * (closed), drop the events not taken (their messages are redelivered by
 * JetStream after their ack wait) and drop the caller's reference. */
void msrt_jsq_close(msrt_jsq *q);

#endif
