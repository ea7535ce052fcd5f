/* The runtime behind the `msrt` module: one per process, made by the first
 * use (msrt.start or anything that needs workers). It ties the scheduler
 * (src/sched), the router (src/router) and the hub (src/hub) together and
 * owns the publish path every thread uses.
 *
 * Endpoints (router subscription kinds):
 *   MSRT_EP_ACTOR  an actor's normal mailbox (bounded, overflow policy)
 *   MSRT_EP_SYS    an actor's sys lane (its request inbox: replies)
 *   MSRT_EP_HUB    a hub callback: the envelope goes through the hub inbox
 *   MSRT_EP_PROC   a child process's stdin: the endpoint is the process's
 *                  stdin gate (proc/gate.h). The publishing thread takes
 *                  a slot of the gate, so a full stdin queue meets the
 *                  sender's policy on its own thread (drop_newest drops,
 *                  `error` refuses, `block` waits as for a mailbox); then
 *                  the envelope goes through the hub inbox (MSRT_IN_PROC,
 *                  target = the process id) and the hub writes it to the
 *                  pipe, giving the slot back once written
 *   MSRT_EP_STAMP  a time stamp: the publishing thread stores msrt_now_ns()
 *                  into the _Atomic uint64_t the subscription's ud points
 *                  to (heartbeat probes: nothing reaches the hub); the
 *                  subscriber frees the slot with msrt_router_defer after
 *                  unsubscribing
 *
 * Thread-safety: msrt_rt_publish and msrt_rt_make from the hub or any
 * worker; the rest on the hub thread unless said otherwise.
 */
#ifndef MSRT_LUA_RT_H
#define MSRT_LUA_RT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/envelope.h"
#include "core/error.h"
#include "hub/hub.h"
#include "hub/inbox.h"
#include "proc/gate.h"
#include "router/index.h"
#include "sched/sched.h"

enum { MSRT_EP_ACTOR = 1, MSRT_EP_SYS = 2, MSRT_EP_HUB = 3, MSRT_EP_PROC = 4,
       MSRT_EP_STAMP = 5 };

/* Items the workers hand to the hub (msrt_inbox_item.kind). */
enum {
  MSRT_IN_DELIVER = 1, /* env for hub subscription `target` */
  MSRT_IN_EXIT,        /* actor `target` exited; env holds the exit record,
                          or is NULL when memory ran out making it: then
                          ptr is 2 for a normal exit, 1 for another */
  MSRT_IN_TIMER,       /* actor cell `ptr` asks for a timer (env: spec) */
  MSRT_IN_WAKE,        /* a blocked hub publish `target` may retry */
  MSRT_IN_OVERLOAD,    /* actor `target` overran slice_ms */
  MSRT_IN_PROC,        /* env for the stdin of process `target`, with a
                          slot of its gate taken */
  MSRT_IN_STARTED,     /* actor `target`'s init has returned (asked for by
                          its spec: a supervisor waits for it) */
};

typedef struct {
  int workers, batch, spin_us;
  size_t mailbox_capacity, mailbox_bytes; /* messages, bytes */
  msrt_overflow overflow;
  size_t max_payload, max_subject;
  long slice_ms, shutdown_timeout_ms;
  int gc_pause, gc_stepmul;
} msrt_rt_config;

typedef struct msrt_rt msrt_rt;

/* A worker's current turn. One cache line each: every turn writes it, and
 * workers sharing a line would bounce it between CPUs on every turn. */
typedef struct {
  _Alignas(64) atomic_ullong start; /* ns when the turn began, 0 = idle */
  atomic_ullong actor;              /* id of the actor it runs */
} msrt_rt_turn_slot;

/* An endpoint a blocked publish waits for: an actor cell (MSRT_EP_ACTOR)
 * or a process's stdin gate (MSRT_EP_PROC), one reference held. */
typedef struct {
  void *ep;
  uint32_t kind;
} msrt_pending_item;

/* What a blocked publish still has to deliver: the envelope and the
 * endpoints that were full (mailboxes, stdin gates); and, when full
 * `error` endpoints refused copies of the same publish, that refusal,
 * which the sender gets once the blocked copies are delivered. A zeroed
 * struct is an empty pending. */
typedef struct {
  msrt_envelope *env;
  msrt_pending_item *items;
  size_t n, cap;
  size_t delivered;
  size_t refused;     /* copies refused by `error` endpoints; 0 = none */
  msrt_error refusal; /* the error to return for them */
  /* the waker msrt_rt_pending_wait registered (on wait_ep), cancelled by
   * retry and clear so that it cannot fire for a pending that moved on;
   * unwait(waker_ud) runs when a cancel took it back before it fired */
  void (*waker)(void *);
  void (*unwait)(void *);
  void *waker_ud;
  msrt_pending_item wait_ep;
} msrt_pending;

struct msrt_rt {
  msrt_rt_config cfg;
  msrt_hub *hub;
  msrt_sched *sched;
  msrt_router *router;
  msrt_inbox *inbox;
  void (*drain)(msrt_inbox_item *items, size_t n, void *ud); /* the binding's */
  void *drain_ud;
  msrt_rt_turn_slot turn[256]; /* per worker, for the overload watchdog */
  atomic_int gc_pause, gc_stepmul; /* for actors made from now on (tune) */
  int stopped;
};

/* Change the figures a profile reload may change live (docs/architecture.md
 * "Hot reload"): batch, spin_us, mailbox_capacity and mailbox_bytes as
 * msrt_sched_tune; the LuaJIT GC pause/stepmul (percent) of actor states
 * made from now on.
 * A value <= 0 (spin_us < 0) leaves that figure as it is. Any thread. */
void msrt_rt_tune(msrt_rt *rt, const msrt_rt_config *cfg);

/* The process's runtime, or NULL before msrt_rt_start. Any thread. */
msrt_rt *msrt_rt_get(void);

/* Start the runtime with cfg: scheduler (workers started), router, hub
 * inbox (drained by drain on the hub). run/release are the actor
 * binding's scheduler callbacks. Returns MSRT_E_OK or an error. */
msrt_code msrt_rt_start(msrt_hub *hub, const msrt_rt_config *cfg,
                        msrt_run_fn run,
                        void (*release)(msrt_actor *, void *),
                        void (*drain)(msrt_inbox_item *, size_t, void *),
                        void *drain_ud, msrt_error *err);

/* Stop: waits up to cfg.shutdown_timeout_ms for live actors to finish
 * (their last turn runs terminate), then stops the workers. Returns 0, or
 * -1 when a worker is stuck in an actor (the runtime is then left alone:
 * the process is expected to exit). */
int msrt_rt_stop(msrt_rt *rt);

/* Make an envelope after checking the subject (NATS rules, max_subject),
 * the priority (1..10; anything else is refused, never clamped: a caller
 * cannot turn a bad value into the highest priority) and the size of
 * headers + payload (max_payload, as NATS counts it; headers: NULL or hlen
 * bytes of "name\0value\0" pairs). Returns NULL with err filled
 * (invalid_subject, invalid_arg for the priority, payload_too_big, nomem). A refusal is counted as
 * accepted and refused (nomem is not counted: nothing was accepted). */
msrt_envelope *msrt_rt_make(msrt_rt *rt, const char *subject, size_t slen,
                            const char *reply, size_t rlen,
                            const void *headers, size_t hlen,
                            const void *payload, size_t plen, int priority,
                            uint64_t trace_id, msrt_error *err);

/* Publish env (the caller keeps its reference) to every matching endpoint.
 * The subject first goes through the router's routing table
 * (msrt_router_route): a rewrite or split makes one new envelope on the
 * resolved subject, shared by every endpoint; when nothing subscribes to
 * the resolved subject and the rule has a dead_letter, a copy goes to that
 * subject instead (matched, not routed again). Nesting is allowed (a drop
 * notice is published from inside a push).
 * *delivered gets how many endpoints took it (0: nobody subscribed; a
 * dead-lettered message counts the endpoints of the dead-letter subject).
 * Returns MSRT_E_OK; MSRT_E_MAILBOX_FULL when an endpoint with the
 * `error` policy was full (the others got it); MSRT_E_LIMIT when the
 * routed subject would exceed max_subject; MSRT_E_NOMEM; or, when pend is
 * non-NULL and some `block` endpoints were full, MSRT_E_MAILBOX_FULL with
 * pend filled (the caller waits with msrt_rt_pending_wait and retries with
 * msrt_rt_pending_retry). With pend NULL a full `block` endpoint counts as
 * refused (error). Endpoints are actor mailboxes and process stdin gates
 * alike: a process's stdin is full when stdin_capacity of its lines are
 * on their way, queued or being written.
 * Accounting (router counters, msrt.metrics in init.lua): one accepted per
 * copy (per matched endpoint and per queue group with no ready member, or
 * one when nothing matched), each ending in exactly one of delivered,
 * dropped (drop_newest / drop_oldest / drop_not_ready / drop_closed /
 * drop_other), dead_lettered, refused or no_responders. Any thread. */
msrt_code msrt_rt_publish(msrt_rt *rt, msrt_envelope *env, size_t *delivered,
                          msrt_pending *pend, msrt_error *err);

/* Whether a publisher may publish to subject (len bytes): its permission
 * on a subject the routing table carried its message to. */
typedef bool (*msrt_rt_permit)(void *ud, const char *subject, size_t len);

/* msrt_rt_publish for a publisher with permissions (a child process):
 * permissions apply after routing, so when a rewrite or split resolves the
 * subject to one that permit(permit_ud, ...) refuses, nothing is
 * delivered and MSRT_E_PERMISSION is returned ("publish to \"tools.admin\"
 * is not allowed (routed there from \"legacy.admin.x\" by rule 1)"),
 * counted accepted and refused in the resolved subject's class. A
 * dead-letter subject is not checked: it is a literal sink the table's
 * author names for what nobody takes, not one the publisher can choose.
 * permit NULL: msrt_rt_publish. Any thread. */
msrt_code msrt_rt_publish_as(msrt_rt *rt, msrt_envelope *env,
                             msrt_rt_permit permit, void *permit_ud,
                             size_t *delivered, msrt_pending *pend,
                             msrt_error *err);

/* Retry a blocked publish: returns MSRT_E_OK when everything is delivered
 * (pend emptied; an endpoint that closed meanwhile counts as drop_closed),
 * MSRT_E_MAILBOX_FULL when some endpoint is still full. Cancels the
 * waker msrt_rt_pending_wait registered, if it has not fired. */
msrt_code msrt_rt_pending_retry(msrt_rt *rt, msrt_pending *pend);

/* After msrt_rt_pending_retry returned MSRT_E_OK: whether `error`
 * mailboxes refused copies of that publish (then *err gets the
 * mailbox_full error the sender is owed, and the refusal is cleared so the
 * pending can be reused). Caller's thread. */
bool msrt_rt_pending_refused(msrt_pending *pend, msrt_error *err);

/* Register waker(ud) for room in the first still-full endpoint (called
 * once, on the thread that makes room or closes the endpoint, possibly
 * after the pending moved on). Returns MSRT_WAIT_PENDING (waker will be
 * called, or, when retry or clear cancels the registration before it
 * fires, unwait(ud) instead: exactly one of the two, so a reference ud
 * holds can be released by either; unwait may be NULL) or MSRT_E_OK
 * (retry now; neither is called). Caller's thread; one registration per
 * pending at a time. */
int msrt_rt_pending_wait(msrt_pending *pend, void (*waker)(void *),
                         void (*unwait)(void *), void *ud);

/* Drop what a pending publish holds (its refs, its waker's registration),
 * counting the undelivered endpoints as refused. */
void msrt_rt_pending_clear(msrt_rt *rt, msrt_pending *pend);

/* Subscribe an endpoint; see router/index.h for the pattern and queue
 * rules. endpoint: the actor cell (MSRT_EP_ACTOR, MSRT_EP_SYS), the stdin
 * gate (MSRT_EP_PROC), else NULL; the subscription holds a reference on
 * it, released (after every reader that could see it has left) on
 * unsubscribe. ud: the hub subscription id (MSRT_EP_HUB), the slot
 * (MSRT_EP_STAMP). Any thread. */
msrt_code msrt_rt_subscribe(msrt_rt *rt, const char *pattern, size_t plen,
                            const char *queue, size_t qlen, uint32_t kind,
                            void *endpoint, uint64_t ud, uint64_t *sub_id,
                            msrt_error *err);
msrt_code msrt_rt_unsubscribe(msrt_rt *rt, uint64_t sub_id);

/* A copy of e that was counted delivered when it went to the hub (a
 * process's stdin line) ended otherwise: move it from delivered to
 * outcome (a MSRT_STAT_DROP_*) in e's subject class. Any thread. */
void msrt_rt_undeliver(msrt_rt *rt, const msrt_envelope *e, msrt_stat outcome);

/* e's reply is a request's inbox, valid for ttl_ms from now (its timeout):
 * sets e->reply_deadline_ns before e is published. ttl_ms <= 0 (or no
 * reply) leaves it without a deadline. */
static inline void msrt_rt_reply_ttl(msrt_envelope *e, double ttl_ms) {
  if (e->reply && ttl_ms > 0 && ttl_ms < 1e12)
    e->reply_deadline_ns = msrt_now_ns() + (uint64_t)(ttl_ms * 1e6);
}

/* Publish a drop notice for e on msrt.dropped.<subject>, payload
 * "<reason> <who>" (who may be NULL: just the reason), unless e is itself
 * a drop notice (drops never cascade). A subject too long for the notice
 * to stay within max_subject is cut (the body then says its length): a
 * drop is announced whatever its subject's length. Any thread. */
void msrt_rt_drop_notice(msrt_rt *rt, const msrt_envelope *e,
                         const char *reason, const char *who);

/* A receiver (an actor, a hub callback) was handed a copy on subject that
 * it cannot decode (reason: the decoder's message, e.g. "duplicate table
 * key", "not enough memory"): the copy moves from delivered to drop_other
 * in the subject's class and a notice "undecodable (<reason>) <who>" is
 * published on msrt.dropped.<subject>. The receiver goes on with its next
 * message. Any thread. */
void msrt_rt_undecodable(msrt_rt *rt, const char *subject, size_t len,
                         const char *reason, const char *who);

/* Hand an item to the hub. Any thread. Returns 0, or -1 when the hub no
 * longer takes items (the item's envelope is then released). */
int msrt_rt_to_hub(msrt_rt *rt, msrt_inbox_item item);

/* A waker for a hub coroutine waiting for room: ud is its wake id (an
 * integer); queues an MSRT_IN_WAKE item, whose dispatch resumes it
 * (lua/msrt/hub.lua). Any thread. */
void msrt_rt_hub_waker(void *ud);

/* Per-thread router reader (made on first use; NULL when memory ran out
 * making it, tried again on the next call). Any thread. */
msrt_reader *msrt_rt_reader(msrt_rt *rt);

/* The subject class a subject's copies are counted in (its first token;
 * router/account.h msrt_account_class). Any thread. */
unsigned msrt_rt_class(msrt_rt *rt, const char *subject, size_t len);

/* Mark the calling worker's turn (actor id, 0 = idle) for the overload
 * watchdog. Worker threads. */
void msrt_rt_turn(msrt_rt *rt, int worker, uint64_t actor_id);

/* Hub timer callback body: report each worker whose turn has lasted longer
 * than slice_ms (once per turn) to the hub as MSRT_IN_OVERLOAD. */
void msrt_rt_watchdog(msrt_rt *rt);

#endif
