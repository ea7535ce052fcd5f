/* The message bus: the publish path every thread uses (docs/architecture.md
 * "Threads and the path of a message"). A message is checked and made
 * (msrt_bus_make), routed through the router's routing table, matched
 * through its subscription index, and handed to every matched endpoint
 * (bus/endpoint.h: actor mailboxes, process stdin gates, hub callbacks,
 * time stamps, and whatever class comes next), one member per queue group;
 * full endpoints meet their overflow policy (dropped, refused, or waited
 * for by a blocked publish), drops are announced on msrt.dropped.<subject>,
 * and every copy's outcome is counted in its subject class (router/
 * account.h).
 *
 * The bus is an opaque handle each call gets as its context: nothing on
 * the path reads a global. It borrows a router and a hub inbox (hub/
 * inbox.h), which must outlive it.
 *
 * Accounting (router counters, msrt.metrics in init.lua): one accepted per
 * copy (per matched endpoint and per queue group with no ready member, or
 * one when nothing matched), each ending in exactly one of delivered,
 * dropped (drop_newest / drop_oldest / drop_not_ready / drop_closed /
 * drop_other), dead_lettered, refused or no_responders.
 *
 * Thread-safety: every function from any thread unless said otherwise.
 */
#ifndef MSRT_BUS_BUS_H
#define MSRT_BUS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/endpoint.h"
#include "core/clock.h"
#include "core/envelope.h"
#include "core/error.h"
#include "hub/inbox.h"
#include "router/index.h"

/* The kinds of items handed to the hub through its inbox
 * (msrt_inbox_item.kind): one numbering for the bus's and the binding's. */
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
  MSRT_IN_QUEUE,       /* durable queue `target` has intake to flush
                          (queue/queue.h), or a JetStream queue has
                          events (bridge/js.h); no env */
};

/* The limits every message is checked against (bytes). */
typedef struct {
  size_t max_payload; /* headers + payload, as NATS counts it */
  size_t max_subject; /* 0 = MSRT_SUBJECT_MAX_DEFAULT */
} msrt_bus_limits;

/* What a blocked publish still has to deliver: the envelope and the
 * endpoints that were full (one reference held on each); and, when full
 * `error` endpoints refused copies of the same publish, that refusal,
 * which the sender gets once the blocked copies are delivered. A zeroed
 * struct is an empty pending. */
typedef struct {
  msrt_envelope *env;
  msrt_endpoint *items;
  size_t n, cap;
  size_t delivered;
  size_t refused;     /* copies refused by `error` endpoints; 0 = none */
  msrt_error refusal; /* the error to return for them */
  /* the waker msrt_bus_pending_wait registered (on wait_ep), cancelled by
   * retry and clear so that it cannot fire for a pending that moved on;
   * unwait(waker_ud) runs when a cancel took it back before it fired */
  void (*waker)(void *);
  void (*unwait)(void *);
  void *waker_ud;
  msrt_endpoint wait_ep;
} msrt_bus_pending;

/* Make a bus over router and inbox (borrowed) with limits. Returns NULL
 * when out of memory. */
msrt_bus *msrt_bus_new(msrt_router *router, msrt_inbox *inbox,
                       const msrt_bus_limits *limits);

/* Free the bus (not the router or the inbox). No thread may use it during
 * or after the call; a thread's cached router reader stays the router's.
 * NULL is ignored. */
void msrt_bus_free(msrt_bus *bus);

/* The router the bus publishes through. */
msrt_router *msrt_bus_router(msrt_bus *bus);

/* Make an envelope after checking the subject (NATS rules, max_subject),
 * the priority (1..10; anything else is refused, never clamped: a caller
 * cannot turn a bad value into the highest priority) and the size of
 * headers + payload (max_payload, as NATS counts it; headers: NULL or hlen
 * bytes of "name\0value\0" pairs). Returns NULL with err filled
 * (invalid_subject, invalid_arg for the priority, payload_too_big, nomem).
 * A refusal is counted as accepted and refused (nomem is not counted:
 * nothing was accepted). payload NULL with plen > 0: the bytes are left
 * for the caller to write (msrt_env_payload_to_write, core/envelope.h)
 * before it publishes. A thread remembers the last four subjects it
 * found valid (up to 64 bytes each; bus.c VALID_MEMO), so a thread
 * publishing to a few subjects over and over checks each once. */
msrt_envelope *msrt_bus_make(msrt_bus *bus, const char *subject, size_t slen,
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
 * notice is published from inside a publish).
 * *delivered gets how many endpoints took it (0: nobody subscribed; a
 * dead-lettered message counts the endpoints of the dead-letter subject; a
 * copy dropped by drop_newest counts too).
 * Returns MSRT_E_OK; MSRT_E_MAILBOX_FULL when an endpoint with the
 * `error` policy was full (the others got it); MSRT_E_RESOURCE_EXHAUSTED
 * when memory ran out making the thread's router reader (counted
 * accepted and refused); MSRT_E_LIMIT when the
 * routed subject would exceed max_subject; MSRT_E_NOMEM; or, when pend is
 * non-NULL and some `block` endpoints were full, MSRT_E_MAILBOX_FULL with
 * pend filled (the caller waits with msrt_bus_pending_wait and retries with
 * msrt_bus_pending_retry). With pend NULL a full `block` endpoint counts as
 * refused (error). A process's stdin is full when stdin_capacity of its
 * lines are on their way, queued or being written. */
msrt_code msrt_bus_publish(msrt_bus *bus, msrt_envelope *env,
                           size_t *delivered, msrt_bus_pending *pend,
                           msrt_error *err);

/* msrt_bus_make and msrt_bus_publish in one, without making an envelope
 * when every matched endpoint only borrows it (the NATS bridge's export,
 * bus/endpoint.h `borrows`): a message that only leaves the host is
 * written straight from the caller's bytes. Otherwise the envelope is
 * made after the match, as msrt_bus_make makes it (flags
 * MSRT_ENV_PAYLOAD_BUFFER, a new trace). reply_ttl_ms as
 * msrt_bus_reply_ttl. Returns msrt_bus_make's refusals (counted the
 * same) with *delivered 0, else as msrt_bus_publish; a blocked publish's
 * pend holds the envelope made. Any thread. */
msrt_code msrt_bus_send(msrt_bus *bus, const char *subject, size_t slen,
                        const char *reply, size_t rlen, const void *headers,
                        size_t hlen, const void *payload, size_t plen,
                        int priority, double reply_ttl_ms, size_t *delivered,
                        msrt_bus_pending *pend, msrt_error *err);

/* Whether a publisher may publish to subject (len bytes): its permission
 * on a subject the routing table carried its message to. */
typedef bool (*msrt_bus_permit)(void *ud, const char *subject, size_t len);

/* msrt_bus_publish for a publisher with permissions (a child process):
 * permissions apply after routing, so when a rewrite or split resolves the
 * subject to one that permit(permit_ud, ...) refuses, nothing is
 * delivered and MSRT_E_PERMISSION is returned ("publish to \"tools.admin\"
 * is not allowed (routed there from \"legacy.admin.x\" by rule 1)"),
 * counted accepted and refused in the resolved subject's class. A
 * dead-letter subject is not checked: it is a literal sink the table's
 * author names for what nobody takes, not one the publisher can choose.
 * permit NULL: msrt_bus_publish. */
msrt_code msrt_bus_publish_as(msrt_bus *bus, msrt_envelope *env,
                              msrt_bus_permit permit, void *permit_ud,
                              size_t *delivered, msrt_bus_pending *pend,
                              msrt_error *err);

/* Retry a blocked publish: returns MSRT_E_OK when everything is delivered
 * (pend emptied; an endpoint that closed meanwhile counts as drop_closed),
 * MSRT_E_MAILBOX_FULL when some endpoint is still full. Cancels the
 * waker msrt_bus_pending_wait registered, if it has not fired. */
msrt_code msrt_bus_pending_retry(msrt_bus *bus, msrt_bus_pending *pend);

/* After msrt_bus_pending_retry returned MSRT_E_OK: whether `error`
 * endpoints refused copies of that publish (then *err gets the
 * mailbox_full error the sender is owed, and the refusal is cleared so the
 * pending can be reused). Caller's thread. */
bool msrt_bus_pending_refused(msrt_bus_pending *pend, msrt_error *err);

/* Register waker(ud) for room in the first still-full endpoint (called
 * once, on the thread that makes room or closes the endpoint, possibly
 * after the pending moved on). Returns MSRT_WAIT_PENDING (waker will be
 * called, or, when retry or clear cancels the registration before it
 * fires, unwait(ud) instead: exactly one of the two, so a reference ud
 * holds can be released by either; unwait may be NULL) or MSRT_E_OK
 * (retry now; neither is called). Caller's thread; one registration per
 * pending at a time. */
int msrt_bus_pending_wait(msrt_bus_pending *pend, void (*waker)(void *),
                          void (*unwait)(void *), void *ud);

/* Drop what a pending publish holds (its refs, its waker's registration),
 * counting the undelivered endpoints as refused. */
void msrt_bus_pending_clear(msrt_bus *bus, msrt_bus_pending *pend);

/* Subscribe endpoint ep; see router/index.h for the pattern and queue
 * rules. The subscription holds a reference on ep (ep.cls->ref), released
 * on unsubscribe after every reader that could see it has left. */
msrt_code msrt_bus_subscribe(msrt_bus *bus, const char *pattern, size_t plen,
                             const char *queue, size_t qlen, msrt_endpoint ep,
                             uint64_t *sub_id, msrt_error *err);

/* Remove a subscription: MSRT_E_OK or MSRT_E_NOT_FOUND (or MSRT_E_NOMEM,
 * nothing changed). */
msrt_code msrt_bus_unsubscribe(msrt_bus *bus, uint64_t sub_id);

/* A copy of e that was counted delivered when it went to the hub (a
 * process's stdin line) ended otherwise: move it from delivered to
 * outcome (a MSRT_STAT_DROP_*) in e's subject class. */
void msrt_bus_undeliver(msrt_bus *bus, const msrt_envelope *e,
                        msrt_stat outcome);

/* e's reply is a request's inbox, valid for ttl_ms from now (its timeout):
 * sets e->reply_deadline_ns before e is published. ttl_ms <= 0 (or no
 * reply) leaves it without a deadline. */
static inline void msrt_bus_reply_ttl(msrt_envelope *e, double ttl_ms) {
  if (e->reply && ttl_ms > 0 && ttl_ms < 1e12)
    e->reply_deadline_ns = msrt_now_ns() + (uint64_t)(ttl_ms * 1e6);
}

/* Publish a drop notice for e on msrt.dropped.<subject>, payload
 * "<reason> <who>" (who may be NULL: just the reason), unless e is itself
 * a drop notice (drops never cascade). A subject too long for the notice
 * to stay within max_subject is cut (the body then says its length): a
 * drop is announced whatever its subject's length. */
void msrt_bus_drop_notice(msrt_bus *bus, const msrt_envelope *e,
                          const char *reason, const char *who);

/* A receiver (an actor, a hub callback) was handed a copy on subject that
 * it cannot decode (reason: the decoder's message, e.g. "duplicate table
 * key", "not enough memory"): the copy moves from delivered to drop_other
 * in the subject's class and a notice "undecodable (<reason>) <who>" is
 * published on msrt.dropped.<subject>. The receiver goes on with its next
 * message. */
void msrt_bus_undecodable(msrt_bus *bus, const char *subject, size_t len,
                          const char *reason, const char *who);

/* Hand an item to the hub. Returns MSRT_E_OK, or msrt_inbox_push's code
 * when the hub does not take it (closed, nomem: the item's envelope is
 * then released). */
msrt_code msrt_bus_to_hub(msrt_bus *bus, msrt_inbox_item item);

/* msrt_bus_to_hub for a lone item the hub should take at once, not batch
 * with a stream's (msrt_inbox_push_now): a queue writer's completion. */
msrt_code msrt_bus_to_hub_now(msrt_bus *bus, msrt_inbox_item item);

/* The calling thread's router reader (made on first use; NULL when memory
 * ran out making it, tried again on the next call). */
msrt_reader *msrt_bus_reader(msrt_bus *bus);

/* The subject class a subject's copies are counted in (its first token;
 * router/account.h msrt_account_class). */
unsigned msrt_bus_class(msrt_bus *bus, const char *subject, size_t len);

/* The class of e's subject, as msrt_bus_class: for an endpoint's push,
 * the one the bus looked up for the publish under way on this thread
 * (one compare), else looked up. */
unsigned msrt_bus_class_of(msrt_bus *bus, const msrt_envelope *e);

#endif
