/* Durable work queues: a queue's store and its intake (docs/architecture.md
 * "Durable queues"; the README's "Durable work queues" says how to use them).
 *
 * A queue captures subjects: it is subscribed on the bus like any endpoint
 * (bus/endpoint.h, class "queue", msrt_ep_queue), and its push, on the
 * publishing thread, only appends the envelope to the queue's intake (a
 * bounded, mutex-protected vector) and, when the intake was empty, hands
 * the hub one MSRT_IN_QUEUE item (bus/bus.h) so that the hub flushes it.
 * Everything else happens on the hub thread, one transaction per flush:
 * msrt_queue_flush stores the intake (sequence numbers, Msg-Id dedupe,
 * max_msgs/max_bytes with discard old or new) together with the acks,
 * terminations and delivery counts the caller hands it, and commits them
 * at once. So commits are grouped: one per hub loop turn (or per period,
 * the caller's choice), never one per message.
 *
 * The store is an SQLite database (Debian's libsqlite3) in WAL mode
 * (https://www.sqlite.org/wal.html). What a committed flush survives
 * depends on the synchronous setting (https://www.sqlite.org/pragma.html
 * #pragma_synchronous): FULL fsyncs the WAL at every commit, so a flush
 * that returned MSRT_E_OK survives a power loss or an OS crash; NORMAL
 * fsyncs only at checkpoints, so a returned flush survives a crash of the
 * host process (SIGKILL included), but the last commits before a power
 * loss may roll back (never corrupting the database).
 *
 * A store that cannot be written (a full disk, RLIMIT_FSIZE, a read-only
 * file or directory, an I/O error) fails the whole flush with
 * resource_exhausted: nothing of it is kept, every intake message of it is
 * reported refused (never accepted and lost), and the caller's acks stay
 * the caller's to hand in again. A database that fails PRAGMA quick_check
 * at open (or is not a database) is refused with `io`, never truncated.
 *
 * A flush runs either on the calling thread (msrt_queue_flush) or on the
 * queue's writer thread (msrt_queue_flush_begin, then msrt_queue_flush_end
 * once the completion's MSRT_IN_QUEUE item came): one flush in flight at
 * a time, its transaction overlapping the caller's own work, while the
 * intake keeps filling for the next one; a flush the writer has not begun
 * when the caller asks for it (msrt_queue_flush_run, _end, any other use
 * of the store) runs on the caller's thread instead. Every other use of
 * the store (get, scan, purge, a plain flush, close) waits for the flush
 * in flight first; the hub never reads the store while it writes (one
 * connection).
 *
 * Thread-safety: push (through the endpoint class), msrt_queue_ref/unref
 * and msrt_queue_stats_get from any thread; everything else on one thread
 * (the hub's), the one that opened the queue.
 */
#ifndef MSRT_QUEUE_QUEUE_H
#define MSRT_QUEUE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "bus/endpoint.h"
#include "core/envelope.h"
#include "core/error.h"

typedef struct msrt_queue msrt_queue;

typedef enum {
  MSRT_QUEUE_DISCARD_OLD, /* at a limit, the oldest stored messages go */
  MSRT_QUEUE_DISCARD_NEW  /* at a limit, new messages are refused */
} msrt_queue_discard;

typedef struct {
  const char *path;          /* the database file (made when absent) */
  const char *name;          /* the queue's name, for messages */
  int sync_full;             /* 1: synchronous = FULL; 0: NORMAL */
  uint64_t max_msgs;         /* stored messages; 0 = no limit */
  uint64_t max_bytes;        /* headers + payload bytes stored; 0 = none */
  msrt_queue_discard discard;
  uint64_t dedupe_window_ms; /* Msg-Id window; 0 = no dedupe */
  size_t intake_max;         /* messages waiting for a flush; 0 = 65536 */
  uint64_t wake_id;          /* the MSRT_IN_QUEUE item's target */
  msrt_bus *bus;             /* where the writer's completion item goes
                                (NULL: none; msrt_queue_flush_state tells) */
  uint64_t spin_ns;          /* how long the writer, idle after a flush
                                that came soon after the one before, spins
                                for the next before it sleeps, and how long
                                msrt_queue_flush_run spins for the writer;
                                0: never (a sleeping thread's wake-up takes
                                tens of us on a VM, longer than the hub's
                                work between two flushes) */
} msrt_queue_config;

/* Counts of a queue (persistent ones survive a restart). */
typedef struct {
  uint64_t stored;        /* messages in the store now */
  uint64_t bytes;         /* their headers + payload bytes */
  uint64_t last_seq;      /* the last sequence given (persistent) */
  uint64_t acked;         /* acks taken (persistent) */
  uint64_t redelivered;   /* deliveries after the first (persistent) */
  uint64_t dead_lettered; /* terminated or past max_deliver (persistent) */
  uint64_t refused;       /* intake refused by flushes since open */
  uint64_t commits;       /* transactions committed since open */
  size_t intake;          /* messages waiting for a flush */
} msrt_queue_stats;

/* What a flush applies besides the intake, in this order: deliveries
 * (each seq's delivery count + 1), acks (deleted, counted acked), dead
 * (deleted, counted dead-lettered). A seq no longer stored is skipped.
 * deliver_new: the first deliver_new messages the flush stores are stored
 * as delivered once (handed to consumers as soon as the flush commits,
 * without waiting for another transaction). */
typedef struct {
  const uint64_t *deliver; size_t ndeliver;
  const uint64_t *acks; size_t nacks;
  const uint64_t *dead; size_t ndead;
  size_t deliver_new;
} msrt_queue_ops;

/* One intake message after a flush, in intake order. */
typedef struct {
  msrt_envelope *env; /* the message (reference: msrt_queue_results_free) */
  uint64_t seq;       /* its sequence; for a duplicate the first one's;
                         0 when refused */
  int duplicate;      /* 1: a Msg-Id seen within the window; not stored */
  msrt_code code;     /* MSRT_E_OK, or why it was refused:
                         resource_exhausted (store unwritable, or full with
                         discard new) */
} msrt_queue_result;

/* The WAL's checkpoints (queue/checkpoint.c), with synchronous NORMAL
 * (FULL keeps SQLite's own): a thread of the queue's
 * own copies the WAL into the database every MSRT_QUEUE_CKPT_PASS frames
 * (pages written) instead of the commit that passes them; past
 * MSRT_QUEUE_WAL_BOUND frames the committing thread copies the rest once
 * the checkpointer's next pass ended (at 2 x the bound at once), and the
 * WAL starts again from the top. So the WAL file stays within 2 x
 * MSRT_QUEUE_WAL_BOUND frames and one commit's (~33 MB at 4 KiB pages). */
#define MSRT_QUEUE_CKPT_PASS 1000
#define MSRT_QUEUE_WAL_BOUND 4000

/* Open (or make) the store of cfg (strings copied). Checks the database
 * (quick_check), puts it in WAL mode with cfg's synchronous setting and
 * reads its counts. Returns NULL with err: `io` (corrupt, not a database,
 * or quick_check failed), resource_exhausted (cannot be opened or
 * written), invalid_arg, nomem. The queue has one reference. */
msrt_queue *msrt_queue_open(const msrt_queue_config *cfg, msrt_error *err);

/* References: the bus's subscription holds one (the endpoint class); the
 * last unref closes the database (on the opening thread's side: call
 * msrt_queue_close first from it). Any thread. */
void msrt_queue_ref(msrt_queue *q);
void msrt_queue_unref(msrt_queue *q);

/* Close: later pushes answer MSRT_PUSH_CLOSED, the intake is released
 * (uncommitted messages were never acknowledged to anyone), a flush in
 * flight is waited for (committed; an outcome not taken is released: its
 * publishers get no PubAck), the writer stopped, the database closed, and
 * the caller's reference dropped. Opening thread. */
void msrt_queue_close(msrt_queue *q);

/* The queue's endpoint (class "queue"): subscribe it with msrt_bus_
 * subscribe. Its push never blocks; when intake_max messages wait it
 * answers full with the `error` policy (the publisher gets mailbox_full). */
msrt_endpoint msrt_ep_queue(msrt_queue *q);

/* One transaction: ops, then the intake taken at the call, committed
 * together. *res (malloc'd, *nres entries, NULL when the intake was empty)
 * says what became of each intake message; *evicted (malloc'd, *nevicted)
 * the seqs discard old removed. Returns MSRT_E_OK, or, with every result
 * refused and nothing of ops applied: resource_exhausted (the store cannot
 * be written), nomem, internal; err says why. */
msrt_code msrt_queue_flush(msrt_queue *q, const msrt_queue_ops *ops,
                           msrt_queue_result **res, size_t *nres,
                           uint64_t **evicted, size_t *nevicted,
                           msrt_error *err);

/* The same flush on the queue's writer thread (made on first use): ops
 * (copied) and the intake taken now, the transaction run there; when it
 * is done the writer hands cfg.bus an MSRT_IN_QUEUE item for wake_id (as
 * the intake does) and msrt_queue_flush_end takes its outcome. Returns
 * MSRT_E_OK (in flight), or, with nothing taken: invalid_arg (a flush is
 * in flight or its outcome not taken yet), nomem, resource_exhausted (no
 * thread). */
msrt_code msrt_queue_flush_begin(msrt_queue *q, const msrt_queue_ops *ops,
                                 msrt_error *err);

/* As msrt_queue_flush_begin, but the intake is taken later, within the
 * transaction: the writer begins it and applies ops at once, then stores
 * the intake as it comes (by 16 messages or more) until
 * msrt_queue_flush_seal is called (or any wait for the flush: flush_run,
 * flush_end, and every other use of the store, which seal it first), and
 * the intake as it is then last. For a caller whose next messages are
 * still on their way (the PubAcks it is about to send make its
 * publishers publish them): the transaction's statements overlap them
 * (the writer polls up to spin_ns at a time before it sleeps until the
 * seal). One transaction all the same: nothing of it is kept unless it
 * commits, and a flush that fails refuses all its intake.
 * Errors as msrt_queue_flush_begin's (nomem taking the intake fails the
 * flush). */
msrt_code msrt_queue_flush_open(msrt_queue *q, const msrt_queue_ops *ops,
                                msrt_error *err);

/* The flush in flight (msrt_queue_flush_open's) may take the intake now;
 * nothing when it may already. */
void msrt_queue_flush_seal(msrt_queue *q);

/* 0: no flush in flight; 1: one runs; 2: one is done, its outcome waits
 * for msrt_queue_flush_end. */
int msrt_queue_flush_state(msrt_queue *q);

/* As msrt_queue_flush_state, for a caller with nothing else to do until
 * the flush in flight is done: when the writer is spinning (spin_ns), up
 * to spin_ns for it to take the flush and again for it to end it; a flush
 * the writer has not begun then runs on the calling thread (then 2, and
 * no MSRT_IN_QUEUE item comes for it): on a machine with no free core the
 * writer may wait for a turn while the caller has nothing else to do. */
int msrt_queue_flush_run(msrt_queue *q);

/* The outcome of the flush in flight, as msrt_queue_flush's (waiting for
 * it when it still runs, running it when the writer has not begun it);
 * invalid_arg when there is none. */
msrt_code msrt_queue_flush_end(msrt_queue *q, msrt_queue_result **res,
                               size_t *nres, uint64_t **evicted,
                               size_t *nevicted, msrt_error *err);

/* Release the references of a flush's results and free the arrays. */
void msrt_queue_results_free(msrt_queue_result *res, size_t n);

/* Read message seq: a new envelope (no reply; the caller unrefs) and its
 * delivery count. MSRT_E_NOT_FOUND when it is not stored; io; nomem. */
msrt_code msrt_queue_get(msrt_queue *q, uint64_t seq, msrt_envelope **env,
                         uint32_t *delivered, msrt_error *err);

/* Stored messages with seq > after, in order, at most limit (0: all):
 * fn(ud, seq, delivered) for each; fn returning nonzero stops. */
msrt_code msrt_queue_scan(msrt_queue *q, uint64_t after, size_t limit,
                          int (*fn)(void *ud, uint64_t seq,
                                    uint32_t delivered),
                          void *ud, msrt_error *err);

/* Delete every stored message (counts stay). *purged gets how many. */
msrt_code msrt_queue_purge(msrt_queue *q, uint64_t *purged, msrt_error *err);

void msrt_queue_stats_get(msrt_queue *q, msrt_queue_stats *out);

/* The value of header name in an envelope's "name\0value\0" headers, or
 * NULL (*len gets its length). For Msg-Id; any thread. */
const char *msrt_queue_header(const msrt_envelope *e, const char *name,
                              size_t *len);

#endif
