/* Subscription interest: which distinct (pattern, queue group) pairs the
 * endpoints of this host subscribe to, for an endpoint that stands for
 * other hosts (the NATS bridge, src/bridge/bridge.h) and must ask them for
 * what is wanted here, as a NATS leaf node forwards the interest of its
 * subscriptions (docs/architecture.md "More than one host").
 *
 * Every subscription (msrt_bus_subscribe) of a class that is not `remote`
 * (bus/endpoint.h) belongs to the interest key of its pattern and queue
 * group: its id is stored as the subscription's router kind, so that a
 * message imported for one key reaches only that key's subscriptions
 * (msrt_bus_publish_key). A key is "on" while it has a subscription (plain
 * pattern) or a ready member (queue group: readiness probes clear it,
 * msrt_bus_set_ready), and the hook hears each change.
 *
 * Thread-safety: every function from any thread. The hook runs under the
 * bus's interest mutex, on the thread that subscribed, unsubscribed or
 * changed readiness (the hub or a worker): it must not subscribe,
 * unsubscribe or set readiness itself.
 */
#ifndef MSRT_BUS_INTEREST_H
#define MSRT_BUS_INTEREST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"

typedef struct {
  /* key (never 0) went on or off: pattern and queue (NULL: a plain
   * subscription) are NUL-terminated and valid during the call. */
  void (*changed)(void *ud, uint32_t key, const char *pattern,
                  const char *queue, bool on);
  void *ud;
} msrt_interest_hook;

/* Install hook (copied; NULL removes it). The new hook hears changed(on)
 * at once for every key that is on, under the same mutex as later
 * changes, so it misses none. One hook per bus. */
void msrt_bus_set_interest(msrt_bus *bus, const msrt_interest_hook *hook);

/* Set or clear a subscription's ready flag (msrt_router_set_ready) and
 * update its key's interest. Returns MSRT_E_OK or MSRT_E_NOT_FOUND. */
msrt_code msrt_bus_set_ready(msrt_bus *bus, uint64_t sub_id, bool ready);

/* Publish env (the caller keeps its reference; cls its subject's class,
 * msrt_bus_class, which the caller has looked up) to the subscriptions of
 * interest key `key` only: its plain subscriptions matching the subject,
 * and one ready member of its queue group (full members skipped as
 * msrt_bus_publish does). Full `block` endpoints go to pend as
 * msrt_bus_publish's do (the caller retries with msrt_bus_pending_retry);
 * with pend NULL they refuse. No routing table applies: the subject is the one
 * the other host published on. Counted as msrt_bus_publish counts (one
 * accepted per copy; a key with nothing matching any more: accepted and
 * no_responders, or drop_not_ready when a group had no ready member).
 * *delivered gets the copies handed over. Returns MSRT_E_OK,
 * MSRT_E_MAILBOX_FULL (an `error` endpoint was full, or `block` ones: pend
 * filled, or with pend NULL refused), MSRT_E_RESOURCE_EXHAUSTED or
 * MSRT_E_NOMEM. */
msrt_code msrt_bus_publish_key(msrt_bus *bus, msrt_envelope *env,
                               uint32_t key, unsigned cls, size_t *delivered,
                               msrt_bus_pending *pend, msrt_error *err);

/* The queue groups with a ready member on this host whose pattern matches
 * subject (a published subject): the groups the local router gives a
 * message on subject to. Their names, space-separated and NUL-terminated,
 * into buf (cap bytes; a name that does not fit is left out); returns the
 * length, 0 for none. One atomic load when no queue group has a ready
 * member, else the interest mutex. For the NATS bridge: an exported
 * message says which groups it was served to here, so that another host
 * does not serve the same group again. */
size_t msrt_bus_local_groups(msrt_bus *bus, const char *subject, char *buf,
                             size_t cap);

#endif
