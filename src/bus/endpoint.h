/* The endpoint interface: what the bus (bus/bus.h) hands a message to.
 *
 * An endpoint is a pair: a class (a table of operations, one per kind of
 * endpoint, with no state of its own) and an object the operations act on
 * (an actor cell, a stdin gate, a hub subscription id, a time-stamp slot).
 * The bus never asks which kind an endpoint is: it calls the class. A new
 * kind of endpoint is a new class, in the part that owns the object
 * (libuv's base handle with per-type code, docs/architecture.md "The
 * house").
 *
 * The classes the runtime has (bus/endpoints.h): an actor's mailbox and its
 * sys lane, a process's stdin gate, a hub callback and a time stamp.
 *
 * Thread-safety: every operation may be called from any thread, on an
 * object the caller holds a reference on (the bus holds one per
 * subscription and per blocked publish).
 */
#ifndef MSRT_BUS_ENDPOINT_H
#define MSRT_BUS_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/envelope.h"
#include "core/overflow.h" /* msrt_overflow, msrt_evict_sink */
#include "core/waitlist.h" /* MSRT_WAIT_PENDING */

typedef struct msrt_bus msrt_bus;

/* What became of one copy handed to an endpoint's push. */
typedef enum {
  MSRT_PUSH_DELIVERED,      /* taken (the endpoint holds its own reference) */
  MSRT_PUSH_DROPPED_NEWEST, /* full, drop_newest: this copy was dropped */
  MSRT_PUSH_DROPPED_OLDEST, /* taken; older messages were evicted to make
                               room, each handed to the evict sink as it
                               went */
  MSRT_PUSH_FULL,           /* full, `error` or `block`: nothing taken */
  MSRT_PUSH_CLOSED,         /* the endpoint is closed or gone */
  MSRT_PUSH_FAILED          /* anything else (out of memory) */
} msrt_push_outcome;

/* What the sender did with a copy its endpoint answered MSRT_PUSH_FULL to:
 * for an endpoint's own statistics (msrt_endpoint_class.note). */
typedef enum {
  MSRT_FULL_BLOCKED, /* the sender waits for room (`block`) */
  MSRT_FULL_REFUSED  /* refused to the sender (`error`, or a blocked
                        publish given up) */
} msrt_full_note;

typedef struct msrt_endpoint_class {
  const char *class_name; /* "actor", "process", ...: for readers */
  /* Offer e (the caller keeps its reference). bus is the bus publishing,
   * for endpoints that hand messages on (bus/bus.h msrt_bus_to_hub).
   * evicted (core/overflow.h) gets each message evicted to make room, during
   * the call, only when it answers MSRT_PUSH_DROPPED_OLDEST. */
  msrt_push_outcome (*push)(void *ep, msrt_envelope *e,
                            const msrt_evict_sink *evicted, msrt_bus *bus);
  /* References on the object (NULL: it needs none). */
  void (*ref)(void *ep);
  void (*unref)(void *ep);
  /* The overflow policy push follows when full (never DEFAULT). */
  msrt_overflow (*policy)(void *ep);
  /* Whether push would meet a full endpoint now (a queue-group member to
   * skip when another can take the message). NULL: never full. */
  bool (*full)(void *ep);
  /* Whether the endpoint declines e by a rule of its own, as if its
   * subscription had not matched: the copy is neither made nor counted,
   * and a declining queue-group member gives its turn to another (NATS:
   * a client's subscribe deny list filtering a wildcard subscription, and
   * a client's own publish when it asked for no echo). Called on the
   * publishing thread, possibly more than once per message. NULL: never
   * declines. */
  bool (*declines)(void *ep, const msrt_envelope *e);
  /* A one-shot waker for room, as msrt_actor_wait_room: returns
   * MSRT_WAIT_PENDING, MSRT_E_OK (room now), MSRT_E_CLOSED or
   * MSRT_E_NOMEM. cancel_wait: true when the waker was removed (it will
   * not be called), false when it is not there (called already, being
   * called, never registered). NULL for an endpoint that is never full. */
  int (*wait_room)(void *ep, void (*waker)(void *), void *ud);
  bool (*cancel_wait)(void *ep, void (*waker)(void *), void *ud);
  /* Who the endpoint is, for drop notices ("42", "process reviewer"):
   * writes a NUL-terminated name of at most cap - 1 bytes into buf. */
  void (*name)(void *ep, char *buf, size_t cap);
  /* What the sender did after MSRT_PUSH_FULL. NULL: not kept. */
  void (*note)(void *ep, msrt_full_note what);
  /* The endpoint stands for other hosts (the NATS bridge's export): its
   * subscriptions make no interest of this host's (bus/interest.h), so
   * what it subscribes to is never asked back from the others. */
  bool remote;
  /* push is done with e when it returns: it takes no reference, keeps no
   * pointer into it, and never answers MSRT_PUSH_FULL. A publish whose
   * endpoints all borrow makes no envelope (bus/bus.h msrt_bus_send). */
  bool borrows;
} msrt_endpoint_class;

/* An endpoint: its class and its object. Passed by value. */
typedef struct {
  const msrt_endpoint_class *cls;
  void *ep;
} msrt_endpoint;

#endif
