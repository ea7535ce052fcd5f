/* The publish path (bus/bus.h): routing, matching, fan-out, overflow,
 * blocked publishes, drop notices and the per-class accounting. */
#include "bus/bus.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bus/internal.h"
#include "router/subject.h"

struct msrt_bus {
  msrt_router *router;
  msrt_inbox *inbox;
  size_t max_payload;
  size_t max_subject; /* never 0 */
  msrt_interest *interest; /* bus/interest.h */
  uint64_t serial; /* unique in the process: match_memo's, never reused */
};

static atomic_uint_fast64_t bus_serial;

msrt_inbox *msrt_bus_inbox(msrt_bus *bus) { return bus->inbox; }

static __thread msrt_reader *tl_reader;
static __thread msrt_bus *tl_reader_bus;
static __thread msrt_account_shard *tl_shard; /* tl_reader's, never NULL */

/* Working space of one publish on this thread. A publish can nest (a drop
 * notice is published from inside a push), so only the outermost one uses
 * the thread's cached space; a nested one gets its own. */
typedef struct {
  msrt_match_result m;
  char *buf; /* the routed subject, then the dead-letter subject */
  size_t cap;
} pub_space;

static __thread pub_space tl_space;
static __thread int tl_depth;
static __thread bool tl_space_keyed; /* space_key set to tl_space */
static pthread_key_t space_key; /* frees a thread's tl_space when it exits */
static pthread_once_t space_once = PTHREAD_ONCE_INIT;

msrt_bus *msrt_bus_new(msrt_router *router, msrt_inbox *inbox,
                       const msrt_bus_limits *limits) {
  msrt_bus *bus = malloc(sizeof *bus);
  if (!bus) return NULL;
  bus->interest = msrt_interest_new();
  if (!bus->interest) {
    free(bus);
    return NULL;
  }
  bus->router = router;
  bus->inbox = inbox;
  bus->max_payload = limits->max_payload;
  bus->serial = atomic_fetch_add(&bus_serial, 1) + 1;
  bus->max_subject = limits->max_subject ? limits->max_subject
                                         : MSRT_SUBJECT_MAX_DEFAULT;
  return bus;
}

void msrt_bus_free(msrt_bus *bus) {
  if (!bus) return;
  if (tl_reader_bus == bus) tl_reader_bus = NULL;
  msrt_interest_free(bus->interest);
  free(bus);
}

msrt_router *msrt_bus_router(msrt_bus *bus) { return bus->router; }

/* msrt_bus_reader, inline on the publish path. */
static inline msrt_reader *reader_of(msrt_bus *bus) {
  if (tl_reader_bus != bus || !tl_reader) {
    tl_reader = msrt_router_reader_new(bus->router);
    tl_reader_bus = tl_reader ? bus : NULL;
    if (tl_reader) tl_shard = msrt_reader_shard(tl_reader);
  }
  return tl_reader;
}

msrt_reader *msrt_bus_reader(msrt_bus *bus) { return reader_of(bus); }

void msrt_bus_count(msrt_bus *bus, unsigned cls, msrt_stat s, uint64_t n) {
  if (!n) return;
  msrt_reader *rd = reader_of(bus);
  if (rd) msrt_account_add(tl_shard, cls, s, n);
  else msrt_account_add_shared(msrt_router_account(bus->router), cls, s, n);
}

/* The calling thread's counters of class cls, for a publish that holds
 * this bus's reader (reader_of: tl_shard is its shard), taken before its
 * pushes (a nested publish on another bus would change tl_shard). */
static inline atomic_uint_least64_t *class_row(unsigned cls) {
  return msrt_account_row(tl_shard, cls);
}

/* msrt_bus_count, its common case inline: a publish counts two to five
 * outcomes, on the shard of the reader it already holds. */
static inline void count(msrt_bus *bus, unsigned cls, msrt_stat s,
                         uint64_t n) {
  if (!n) return;
  if (tl_reader_bus == bus) msrt_account_add(tl_shard, cls, s, n);
  else msrt_bus_count(bus, cls, s, n);
}

unsigned msrt_bus_class(msrt_bus *bus, const char *subject, size_t len) {
  return msrt_account_class(msrt_router_account(bus->router), subject, len);
}

/* The envelope this thread is handing to its endpoints and its class
 * (deliver_all; restored when it returns, so a publish made during a push
 * leaves no stale pointer behind). */
static _Thread_local struct {
  const msrt_envelope *e;
  unsigned cls;
} fanning;

unsigned msrt_bus_class_of(msrt_bus *bus, const msrt_envelope *e) {
  if (fanning.e == e) return fanning.cls;
  return msrt_bus_class(bus, e->subject, e->subject_len);
}

msrt_code msrt_bus_to_hub(msrt_bus *bus, msrt_inbox_item item) {
  msrt_code rc = msrt_inbox_push(bus->inbox, item);
  if (rc != MSRT_E_OK) msrt_env_unref(item.env);
  return rc;
}

msrt_code msrt_bus_to_hub_now(msrt_bus *bus, msrt_inbox_item item) {
  msrt_code rc = msrt_inbox_push_now(bus->inbox, item);
  if (rc != MSRT_E_OK) msrt_env_unref(item.env);
  return rc;
}

/* Publish "<reason>[ <who>]" on msrt.dropped.<subject>. A subject too long
 * for the notice (it must stay within max_subject) is cut to fit (at a
 * byte, trailing dots removed) and the body then ends with the subject's
 * full length: the drop is announced and counted whatever its length. */
static void notice(msrt_bus *bus, const char *subj, size_t slen, int priority,
                   uint64_t trace_id, const char *reason, const char *who) {
  static const char prefix[] = "msrt.dropped.";
  const size_t plen = sizeof prefix - 1;
  if (slen >= plen && memcmp(subj, prefix, plen) == 0) return;
  size_t max = bus->max_subject;
  size_t keep = slen;
  if (plen + keep > max) keep = max > plen ? max - plen : 0;
  while (keep && subj[keep - 1] == '.') keep--;
  if (!keep) return; /* max_subject shorter than the prefix */
  char *subject = malloc(plen + keep + 1);
  if (!subject) return;
  memcpy(subject, prefix, plen);
  memcpy(subject + plen, subj, keep);
  subject[plen + keep] = 0;
  char body[200];
  int blen = snprintf(body, sizeof body, "%s%s%s", reason, who ? " " : "",
                      who ? who : "");
  if (blen >= 0 && keep < slen && (size_t)blen < sizeof body)
    blen += snprintf(body + blen, sizeof body - (size_t)blen,
                     " (subject of %zu bytes cut)", slen);
  if (blen < 0) blen = 0;
  if ((size_t)blen >= sizeof body) blen = sizeof body - 1;
  msrt_envelope *note = msrt_env_new(subject, plen + keep, NULL, 0, NULL, 0,
                                     body, (size_t)blen, priority, 0, trace_id);
  free(subject);
  if (!note) return;
  size_t delivered;
  msrt_bus_publish(bus, note, &delivered, NULL, NULL);
  msrt_env_unref(note);
}

void msrt_bus_drop_notice(msrt_bus *bus, const msrt_envelope *e,
                          const char *reason, const char *who) {
  notice(bus, e->subject, e->subject_len, e->priority, e->trace_id, reason,
         who);
}

void msrt_bus_undecodable(msrt_bus *bus, const char *subject, size_t len,
                          const char *reason, const char *who) {
  unsigned cls = msrt_bus_class(bus, subject, len);
  count(bus, cls, MSRT_STAT_DELIVERED, UINT64_MAX); /* modulo 2^64: -1 */
  count(bus, cls, MSRT_STAT_DROP_OTHER, 1);
  char why[160];
  snprintf(why, sizeof why, "undecodable (%s)", reason);
  notice(bus, subject, len, MSRT_PRIORITY_DEFAULT, 0, why, who);
}

void msrt_bus_undeliver(msrt_bus *bus, const msrt_envelope *e,
                        msrt_stat outcome) {
  /* the shard counters are summed modulo 2^64: adding UINT64_MAX to
   * delivered takes one away */
  unsigned cls = msrt_bus_class(bus, e->subject, e->subject_len);
  count(bus, cls, MSRT_STAT_DELIVERED, UINT64_MAX);
  count(bus, cls, outcome, 1);
}

/* A copy refused outright: its only outcome. */
static void refuse(msrt_bus *bus, unsigned cls) {
  count(bus, cls, MSRT_STAT_ACCEPTED, 1);
  count(bus, cls, MSRT_STAT_REFUSED, 1);
}

/* Whether the n bytes at a and b are equal, for the memos' short subjects:
 * a word at a time (the last word overlapping the one before), inline,
 * where a call to memcmp costs as much again as the compare. */
static inline bool same_short(const char *a, const char *b, size_t n) {
  uint64_t x, y;
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8) {
      memcpy(&x, a + i, 8), memcpy(&y, b + i, 8);
      if (x != y) return false;
    }
    memcpy(&x, a + n - 8, 8), memcpy(&y, b + n - 8, 8);
    return x == y;
  }
  uint32_t u, v;
  if (n >= 4) {
    memcpy(&u, a, 4), memcpy(&v, b, 4);
    if (u != v) return false;
    memcpy(&u, a + n - 4, 4), memcpy(&v, b + n - 4, 4);
    return u == v;
  }
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return false;
  return true;
}

/* The last subjects this thread found valid, each with the max_subject
 * it was checked against: a publisher in a loop sends to a few subjects
 * (the crash storm's hub to two in turn, between agents' replies to
 * unique inboxes), and a check (~220 instructions for a short subject)
 * costs several times a byte compare. The entry last used (tl_cur) is
 * compared first, as the one subject of a publisher in a loop; an entry
 * is stamped with the thread's count when it stops being the one last
 * used, and a new subject takes the oldest stamp's place (least
 * recently used): a run of unique subjects leaves the ones in use. */
#define VALID_MEMO 4
static _Thread_local struct {
  uint32_t len, max;
  uint64_t left; /* tl_clock when it stopped being tl_cur */
  char s[64];
} tl_valid[VALID_MEMO];
static _Thread_local unsigned tl_cur;
static _Thread_local uint64_t tl_clock;

static inline bool memo_has(unsigned i, const msrt_bus *bus,
                            const char *subject, size_t slen) {
  /* the last byte first: unique subjects (inboxes) share their front */
  return slen == tl_valid[i].len && bus->max_subject == tl_valid[i].max &&
         slen && subject[slen - 1] == tl_valid[i].s[slen - 1] &&
         same_short(subject, tl_valid[i].s, slen);
}

/* Whether subject is valid (else err says why), through tl_valid. */
static bool subject_valid(msrt_bus *bus, const char *subject, size_t slen,
                          msrt_error *err) {
  if (memo_has(tl_cur, bus, subject, slen)) return true;
  unsigned old = tl_cur == 0 ? 1 : 0;
  for (unsigned i = 0; i < VALID_MEMO; i++) {
    if (i == tl_cur) continue;
    if (memo_has(i, bus, subject, slen)) {
      tl_valid[tl_cur].left = ++tl_clock;
      tl_cur = i;
      return true;
    }
    if (tl_valid[i].left < tl_valid[old].left) old = i;
  }
  if (msrt_subject_validate(subject, slen, bus->max_subject, err) != MSRT_E_OK)
    return false;
  if (slen <= sizeof tl_valid[old].s && bus->max_subject <= UINT32_MAX) {
    memcpy(tl_valid[old].s, subject, slen);
    tl_valid[old].len = (uint32_t)slen;
    tl_valid[old].max = (uint32_t)bus->max_subject;
    tl_valid[tl_cur].left = ++tl_clock;
    tl_cur = old;
  }
  return true;
}

/* The bounds check_parts and its inline form acceptable both apply. */
static inline bool priority_ok(int priority) {
  return priority >= MSRT_PRIORITY_HIGHEST && priority <= MSRT_PRIORITY_LOWEST;
}
static inline bool size_ok(const msrt_bus *bus, size_t hlen, size_t plen) {
  return plen + hlen <= bus->max_payload && plen + hlen <= UINT32_MAX;
}

/* Whether a message of these parts may be made (msrt_bus_make's checks):
 * MSRT_E_OK, or the refusal's code with err saying why, counted accepted
 * and refused (its only outcome). */
static msrt_code check_parts(msrt_bus *bus, const char *subject, size_t slen,
                             const char *reply, size_t rlen, size_t hlen,
                             size_t plen, int priority, msrt_error *err) {
  msrt_code rc = MSRT_E_OK;
  if (!subject_valid(bus, subject, slen, err) ||
      (reply && msrt_subject_validate(reply, rlen, bus->max_subject, err) !=
                    MSRT_E_OK))
    rc = MSRT_E_INVALID_SUBJECT;
  else if (!priority_ok(priority))
    rc = msrt_error_set(err, MSRT_E_INVALID_ARG,
                        "priority must be an integer 1..10 (got %d)",
                        priority);
  else if (!size_ok(bus, hlen, plen))
    rc = msrt_error_set(err, MSRT_E_PAYLOAD_TOO_BIG,
                        "payload of %zu bytes%s on \"%.*s\" exceeds "
                        "max_payload (%zu bytes)", plen + hlen,
                        hlen ? " with headers" : "",
                        (int)(slen > 200 ? 200 : slen), subject,
                        bus->max_payload);
  if (rc != MSRT_E_OK) refuse(bus, msrt_bus_class(bus, subject, slen));
  return rc;
}

/* check_parts, its common case inline: no reply subject, and the subject
 * the one this thread checked last. */
static inline msrt_code acceptable(msrt_bus *bus, const char *subject,
                                   size_t slen, const char *reply,
                                   size_t rlen, size_t hlen, size_t plen,
                                   int priority, msrt_error *err) {
  if (!reply && priority_ok(priority) && size_ok(bus, hlen, plen) &&
      memo_has(tl_cur, bus, subject, slen))
    return MSRT_E_OK;
  return check_parts(bus, subject, slen, reply, rlen, hlen, plen, priority,
                     err);
}

msrt_envelope *msrt_bus_make(msrt_bus *bus, const char *subject, size_t slen,
                             const char *reply, size_t rlen,
                             const void *headers, size_t hlen,
                             const void *payload, size_t plen, int priority,
                             uint64_t trace_id, msrt_error *err) {
  if (acceptable(bus, subject, slen, reply, rlen, hlen, plen, priority,
                 err) != MSRT_E_OK)
    return NULL;
  msrt_envelope *e = msrt_env_new(subject, slen, reply, rlen, headers, hlen,
                                  payload, plen, priority,
                                  MSRT_ENV_PAYLOAD_BUFFER, trace_id);
  if (!e) msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  return e;
}

/* The endpoint a match item holds: the router keeps the object as the
 * item's endpoint and the class as its ud (msrt_bus_subscribe). */
static msrt_endpoint item_ep(const msrt_match_item *m) {
  return (msrt_endpoint){m->ud, m->endpoint};
}

/* Whether the endpoint of m declines e (msrt_endpoint_class.declines). */
static bool declined(const msrt_match_item *m, const msrt_envelope *e) {
  const msrt_endpoint_class *cls = m->ud;
  return cls->declines && cls->declines(m->endpoint, e);
}

/* Queue-group members that decline the message (ud), or are full, are
 * skipped when another member can take it. */
static bool skip_full(const msrt_match_item *m, void *ud) {
  const msrt_endpoint_class *cls = m->ud;
  return declined(m, ud) || (cls->full && cls->full(m->endpoint));
}

/* Remove the items whose endpoint declines e: plain subscriptions, and a
 * queue group's fallback choice (MSRT_MATCH_FULL: its members were all
 * skipped, perhaps for declining). Returns the items left. */
static inline size_t drop_declined(msrt_match_result *m,
                                   const msrt_envelope *e) {
  size_t kept = 0;
  for (size_t i = 0; i < m->len; i++) {
    const msrt_match_item *it = &m->items[i];
    bool vetted = (it->flags & (MSRT_MATCH_QUEUE | MSRT_MATCH_FULL)) ==
                  MSRT_MATCH_QUEUE; /* chosen past skip_full already */
    if (!vetted && declined(it, e)) continue;
    if (kept != i) m->items[kept] = *it;
    kept++;
  }
  return m->len = kept;
}

static void ep_ref(msrt_endpoint ep) {
  if (ep.cls->ref) ep.cls->ref(ep.ep);
}

static void ep_unref(msrt_endpoint ep) {
  if (ep.cls->unref) ep.cls->unref(ep.ep);
}

static void ep_note(msrt_endpoint ep, msrt_full_note what) {
  if (ep.cls->note) ep.cls->note(ep.ep, what);
}

static int pending_add(msrt_bus_pending *p, msrt_endpoint ep) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 4;
    msrt_endpoint *c = realloc(p->items, cap * sizeof *c);
    if (!c) return -1;
    p->items = c;
    p->cap = cap;
  }
  ep_ref(ep);
  p->items[p->n++] = ep;
  return 0;
}

/* A drop on the pushing thread by endpoint ep, counted in the dropped
 * message's class and announced. drop_newest: e is the new copy, not
 * delivered. drop_oldest: e is an older message, counted delivered when it
 * went in, maybe in another subject class; its count moves to the drop. */
static void dropped(msrt_bus *bus, msrt_endpoint ep, msrt_envelope *e,
                    bool oldest) {
  if (oldest) msrt_bus_undeliver(bus, e, MSRT_STAT_DROP_OLDEST);
  else count(bus, msrt_bus_class(bus, e->subject, e->subject_len),
             MSRT_STAT_DROP_NEWEST, 1);
  char who[80];
  ep.cls->name(ep.ep, who, sizeof who);
  msrt_bus_drop_notice(bus, e, oldest ? "drop_oldest" : "drop_newest", who);
}

/* The evict sink of one push: the endpoint's evictions, counted and
 * announced as they happen. */
typedef struct {
  msrt_bus *bus;
  const msrt_match_item *it; /* the endpoint pushed to */
} evict_ctx;

static void on_evicted(void *ud, msrt_envelope *old) {
  evict_ctx *c = ud;
  dropped(c->bus, item_ep(c->it), old, true);
}

/* How many copies of one publish ended in each way fan_out counts; taken:
 * the copies an endpoint took, delivered or dropped by it (*delivered). */
typedef struct {
  size_t ok, taken, refused, closed, other;
} tally;

/* Settle the outcome o of pushing e to ep, any but MSRT_PUSH_DELIVERED
 * (fan_out counts those itself): counted (in t, or at once for a drop),
 * or added to pend for a full `block` endpoint. Returns
 * MSRT_E_MAILBOX_FULL when the copy was refused or blocked, else
 * MSRT_E_OK. */
static __attribute__((noinline)) msrt_code
settle(msrt_bus *bus, msrt_endpoint ep, msrt_envelope *e, msrt_push_outcome o,
       msrt_bus_pending *pend, tally *t) {
  switch (o) {
  case MSRT_PUSH_DELIVERED:
    t->taken++;
    t->ok++;
    return MSRT_E_OK;
  case MSRT_PUSH_DROPPED_NEWEST:
    t->taken++; /* taken by the endpoint, which dropped it */
    dropped(bus, ep, e, false);
    return MSRT_E_OK;
  case MSRT_PUSH_DROPPED_OLDEST: /* the evictions went to on_evicted */
    t->taken++;
    t->ok++;
    return MSRT_E_OK;
  case MSRT_PUSH_FULL:
    if (pend && ep.cls->policy(ep.ep) == MSRT_OVERFLOW_BLOCK &&
        pending_add(pend, ep) == 0) {
      ep_note(ep, MSRT_FULL_BLOCKED);
    } else {
      ep_note(ep, MSRT_FULL_REFUSED);
      t->refused++;
    }
    return MSRT_E_MAILBOX_FULL;
  case MSRT_PUSH_CLOSED:
    t->closed++;
    return MSRT_E_OK;
  case MSRT_PUSH_FAILED:
    break;
  }
  t->other++;
  return MSRT_E_OK;
}

/* Hand e to every matched endpoint and count each copy's outcome. Full
 * `block` endpoints go to pend (when given) and are counted when the
 * pending publish ends. A copy delivered is the loop's whole work; every
 * other outcome goes through settle. */
static inline __attribute__((always_inline)) msrt_code
fan_out(msrt_bus *bus, unsigned cls, atomic_uint_least64_t *row,
        msrt_envelope *e, const msrt_match_result *m, size_t *delivered,
        msrt_bus_pending *pend, msrt_error *err) {
  tally t = {0, 0, 0, 0, 0};
  size_t ok = 0; /* MSRT_PUSH_DELIVERED, not in t */
  msrt_code rc = MSRT_E_OK;
  evict_ctx ctx = {bus, NULL};
  msrt_evict_sink sink = {on_evicted, &ctx};
  for (size_t i = 0; i < m->len; i++) {
    const msrt_match_item *it = ctx.it = &m->items[i];
    const msrt_endpoint_class *c = it->ud;
    msrt_push_outcome o = c->push(it->endpoint, e, &sink, bus);
    if (o == MSRT_PUSH_DELIVERED) ok++;
    else if (settle(bus, item_ep(it), e, o, pend, &t) != MSRT_E_OK)
      rc = MSRT_E_MAILBOX_FULL;
  }
  *delivered += ok + t.taken;
  if (pend && pend->n) {
    pend->env = msrt_env_ref(e);
    pend->delivered = *delivered;
  }
  msrt_account_bump(row, MSRT_STAT_DELIVERED, ok + t.ok);
  if (rc == MSRT_E_OK && !t.closed && !t.other) return rc;
  count(bus, cls, MSRT_STAT_REFUSED, t.refused);
  count(bus, cls, MSRT_STAT_DROP_CLOSED, t.closed);
  count(bus, cls, MSRT_STAT_DROP_OTHER, t.other);
  if (t.refused) {
    msrt_error_set(err, MSRT_E_MAILBOX_FULL,
                   "mailbox full on \"%s\" (%zu subscriber(s) refused it)",
                   e->subject, t.refused);
    if (pend && pend->n && err) { /* owed to the sender after the wait */
      pend->refused = t.refused;
      pend->refusal = *err;
    }
  }
  return rc;
}

/* A copy of e on another subject (same reply, payload, priority, trace). */
static msrt_code resubject(const msrt_envelope *e, const char *subject,
                           size_t len, msrt_envelope **out, msrt_error *err) {
  *out = msrt_env_new(subject, len, e->reply, e->reply_len, e->headers,
                      e->headers_len, e->payload, e->payload_len, e->priority,
                      e->flags, e->trace_id);
  if (!*out) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  (*out)->reply_deadline_ns = e->reply_deadline_ns;
  return MSRT_E_OK;
}

/* Whether every endpoint of m borrows what it is handed (a view will do). */
static bool all_borrow(const msrt_match_result *m) {
  for (size_t i = 0; i < m->len; i++)
    if (!((const msrt_endpoint_class *)m->items[i].ud)->borrows) return false;
  return true;
}

/* A match remembered by a thread (its items, at most MEMO_ITEMS) for one
 * bus, router version, subject and interest key: while the router's
 * version is the same the same subject matches the same subscriptions,
 * and a run of messages on one subject (an import's read, a publisher's
 * loop) is matched once (~300-370 instructions a message). Only matches
 * that do not depend on the moment are kept: no queue-group member chosen
 * among several (key_memo: none at all; send_memo: only members of
 * classes that borrow and are never full, the NATS bridge's export, whose
 * subscriptions all stand for the same endpoint), no group left without
 * a ready member, no endpoint that may decline. Its endpoints live while
 * the version is unchanged: a change's garbage is freed only after every
 * reader that entered before the change's version was visible has left
 * (msrt_router_version). A match that cannot be kept for a reason the
 * version fixes (a queue group of actors: the queue-group benchmark's
 * every publish) is remembered as such, so the next publish of the
 * subject only matches it, without trying to keep it again. */
#define MEMO_ITEMS 4
typedef struct {
  uint64_t serial, version; /* the bus's; serial 0: empty */
  uint32_t key, slen;
  bool keep; /* false: the subject's match is not kept (see above) */
  msrt_match_result res; /* the match; its items are the memo's own */
  char s[64];
  msrt_match_item items[MEMO_ITEMS];
} match_memo;

static _Thread_local match_memo key_memo, send_memo;

/* Whether the memos may be used: only by a thread's outermost publish,
 * which hands out a memo's items in place; a nested one (a drop notice
 * published during a push) would overwrite them under it. */
static inline bool memo_usable(void) { return tl_depth == 1; }

/* Whether m can be kept: grouped says whether it may hold queue-group
 * members of classes that borrow. */
static bool keepable(const msrt_match_result *m, bool grouped) {
  if (m->len == 0 || m->len > MEMO_ITEMS) return false;
  for (size_t i = 0; i < m->len; i++) {
    const msrt_endpoint_class *c = m->items[i].ud;
    bool member = m->items[i].flags & (MSRT_MATCH_QUEUE | MSRT_MATCH_FULL);
    if (c->declines || (member && !(grouped && c->borrows && !c->full)))
      return false;
  }
  return true;
}

/* Remember m (matched for e's subject and key under version) in mm: the
 * match when it can be kept, else that it cannot. A group left without a
 * ready member is of the moment: then mm is emptied. */
static void memo_put(match_memo *mm, msrt_bus *bus, uint64_t version,
                     uint32_t key, const msrt_envelope *e,
                     const msrt_match_result *m, bool grouped) {
  mm->serial = 0;
  if (m->unready_groups || e->subject_len > sizeof mm->s) return;
  mm->keep = keepable(m, grouped);
  if (mm->keep) {
    memcpy(mm->items, m->items, m->len * sizeof *m->items);
    mm->res = (msrt_match_result){mm->items, m->len, MEMO_ITEMS, 0, m->cls};
  }
  memcpy(mm->s, e->subject, e->subject_len);
  mm->slen = e->subject_len, mm->key = key;
  mm->version = version, mm->serial = bus->serial;
}

/* Whether mm is about e's subject and key under version (memo_usable):
 * then *kept is the match it holds (read only), or NULL when that match
 * is not kept (match it, and do not memo_put it again). */
static inline bool memo_get(const match_memo *mm, const msrt_bus *bus,
                            uint64_t version, uint32_t key,
                            const msrt_envelope *e,
                            const msrt_match_result **kept) {
  if (mm->serial != bus->serial || mm->version != version || mm->key != key ||
      mm->slen != e->subject_len || !same_short(mm->s, e->subject, mm->slen))
    return false;
  *kept = mm->keep ? &mm->res : NULL;
  return true;
}

/* Match e's subject (already routed) and deliver it. A view (e on the
 * sender's stack, msrt_bus_send) is made real first unless every matched
 * endpoint borrows it. Accounting: one
 * accepted per matched endpoint and per queue group with no ready member
 * (drop_not_ready), or one accepted for a message that matched nothing
 * (no_responders). When nothing matched and may_dead_letter is set, it
 * counts nothing and returns MSRT_E_NOT_FOUND: the caller dead-letters.
 * unrouted: no routing table was applied, the subject is the publisher's
 * (send_memo's). */
static inline __attribute__((always_inline)) msrt_code
deliver_all(msrt_bus *bus, msrt_reader *rd, pub_space *s, msrt_envelope *e,
            bool view, bool unrouted, bool may_dead_letter, size_t *delivered,
            msrt_bus_pending *pend, msrt_error *err) {
  bool memo_ok = unrouted && memo_usable();
  uint64_t version = memo_ok ? msrt_router_version(bus->router) : 0;
  const msrt_match_result *m = NULL;
  bool known = memo_ok && memo_get(&send_memo, bus, version, 0, e, &m);
  size_t n;
  if (m) {
    n = m->len; /* none declines (keepable) */
  } else {
    if (msrt_router_match(rd, e->subject, e->subject_len, &s->m, skip_full,
                          e) != MSRT_E_OK) {
      refuse(bus, msrt_bus_class(bus, e->subject, e->subject_len));
      return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    }
    if (memo_ok && !known)
      memo_put(&send_memo, bus, version, 0, e, &s->m, true);
    n = drop_declined(&s->m, e);
    m = &s->m;
  }
  unsigned cls = m->cls; /* looked up with the match, cached with it */
  uint32_t unready = m->unready_groups;
  if (n == 0 && unready == 0) {
    if (may_dead_letter) return MSRT_E_NOT_FOUND;
    count(bus, cls, MSRT_STAT_ACCEPTED, 1);
    count(bus, cls, MSRT_STAT_NO_RESPONDERS, 1);
    return MSRT_E_OK;
  }
  msrt_envelope *made = NULL; /* e made real: an endpoint keeps it */
  if (view && !all_borrow(m)) {
    if (!(made = msrt_env_copy(e)))
      return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    e = made;
  }
  atomic_uint_least64_t *row = class_row(cls);
  msrt_account_bump(row, MSRT_STAT_ACCEPTED, (uint64_t)n + unready);
  const msrt_envelope *outer = fanning.e;
  unsigned outer_cls = fanning.cls;
  fanning.e = e, fanning.cls = cls;
  msrt_code rc = fan_out(bus, cls, row, e, m, delivered, pend, err);
  fanning.e = outer, fanning.cls = outer_cls;
  if (unready) {
    count(bus, cls, MSRT_STAT_DROP_NOT_READY, unready);
    msrt_bus_drop_notice(bus, e, "drop_not_ready", NULL);
  }
  msrt_env_unref(made);
  return rc;
}

/* deliver_all for a routed subject: out of line, where publish has it
 * inline. */
static __attribute__((noinline)) msrt_code
deliver_routed(msrt_bus *bus, msrt_reader *rd, pub_space *s, msrt_envelope *e,
               bool view, bool may_dead_letter, size_t *delivered,
               msrt_bus_pending *pend, msrt_error *err) {
  return deliver_all(bus, rd, s, e, view, false, may_dead_letter, delivered,
                     pend, err);
}

/* Nobody subscribed to e's subject and its rule names a dead-letter
 * subject: e ends as dead_lettered, and its copy on that subject is a new
 * message (delivered there, or no_responders; never dead-lettered again,
 * so rules cannot loop). */
static msrt_code dead_letter(msrt_bus *bus, msrt_reader *rd, pub_space *s,
                             msrt_envelope *e, const char *dead, size_t dlen,
                             size_t *delivered, msrt_bus_pending *pend,
                             msrt_error *err) {
  msrt_envelope *d;
  msrt_code rc = resubject(e, dead, dlen, &d, err);
  unsigned cls = msrt_bus_class(bus, e->subject, e->subject_len);
  count(bus, cls, MSRT_STAT_ACCEPTED, 1);
  count(bus, cls,
        rc == MSRT_E_OK ? MSRT_STAT_DEAD_LETTERED : MSRT_STAT_REFUSED, 1);
  if (rc != MSRT_E_OK) return rc;
  rc = deliver_routed(bus, rd, s, d, false, false, delivered, pend, err);
  msrt_env_unref(d);
  return rc;
}

static void space_free(void *p) {
  pub_space *s = p;
  if (s == &tl_space) tl_space_keyed = false; /* exiting: any later use
                                                 registers it again */
  msrt_match_result_free(&s->m);
  free(s->buf);
  memset(s, 0, sizeof *s);
}

static void space_key_make(void) { pthread_key_create(&space_key, space_free); }

/* The working space of a publish starting on this thread (its match
 * result grows as the router needs; its buf is made by space_room). */
static inline pub_space *space_get(pub_space *local) {
  if (tl_depth++) { /* nested: the outer publish is using tl_space */
    memset(local, 0, sizeof *local);
    return local;
  }
  if (!tl_space_keyed) { /* frees tl_space's arrays when the thread exits */
    pthread_once(&space_once, space_key_make);
    pthread_setspecific(space_key, &tl_space);
    tl_space_keyed = true;
  }
  return &tl_space;
}

static inline void space_put(pub_space *s) {
  if (s != &tl_space) space_free(s); /* a nested publish's own */
  tl_depth--;
}

/* Whether s->buf has room for a routed subject and a dead-letter subject
 * (router/index.h msrt_router_route); false when out of memory. */
static bool space_room(msrt_bus *bus, pub_space *s) {
  size_t need = 2 * (bus->max_subject + 1);
  if (s->cap < need) {
    char *b = realloc(s->buf, need);
    if (!b) return false;
    s->buf = b;
    s->cap = need;
  }
  return true;
}

/* A rewrite or split carried e to a subject its publisher may not publish
 * to: refused there, counted accepted and refused in that subject's
 * class. */
static msrt_code forbidden(msrt_bus *bus, const msrt_envelope *e,
                           const msrt_route_result *res, msrt_error *err) {
  refuse(bus, msrt_bus_class(bus, res->subject, res->len));
  return msrt_error_set(err, MSRT_E_PERMISSION,
                        "publish to \"%.*s\" is not allowed (routed there "
                        "from \"%.*s\" by rule %d)",
                        (int)(res->len > 200 ? 200 : res->len), res->subject,
                        (int)(e->subject_len > 200 ? 200 : e->subject_len),
                        e->subject, res->rule + 1);
}

/* publish with a routing table: route e's subject through it (a routed
 * subject and the dead-letter subject land in s->buf), then deliver. */
static msrt_code publish_routed(msrt_bus *bus, msrt_reader *rd, pub_space *s,
                                msrt_envelope *e, bool view,
                                msrt_bus_permit permit, void *permit_ud,
                                size_t *delivered, msrt_bus_pending *pend,
                                msrt_error *err) {
  msrt_route_result res;
  msrt_code rc =
      space_room(bus, s)
          ? msrt_router_route(rd, e->subject, e->subject_len, s->buf, s->cap,
                              &res, err)
          : msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  msrt_envelope *to = e;
  if (rc == MSRT_E_OK && res.rewritten && permit &&
      !permit(permit_ud, res.subject, res.len)) {
    rc = forbidden(bus, e, &res, err);
  } else if (rc == MSRT_E_OK && res.rewritten) {
    rc = resubject(e, res.subject, res.len, &to, err);
    if (rc != MSRT_E_OK)
      refuse(bus, msrt_bus_class(bus, e->subject, e->subject_len));
  } else if (rc != MSRT_E_OK) { /* routing failed: the sender hears why */
    refuse(bus, msrt_bus_class(bus, e->subject, e->subject_len));
  }
  if (rc == MSRT_E_OK) {
    rc = deliver_routed(bus, rd, s, to, view && to == e,
                        res.dead_letter != NULL, delivered, pend, err);
    if (rc == MSRT_E_NOT_FOUND)
      rc = dead_letter(bus, rd, s, to, res.dead_letter, res.dead_letter_len,
                       delivered, pend, err);
  }
  if (to != e) msrt_env_unref(to);
  return rc;
}

/* msrt_bus_publish_as, e a view (msrt_bus_send) or not. Without a routing
 * table (the common case) the subject is matched as it is. Inline in each
 * of the three: the call would cost as much as this frame's own work. */
static inline __attribute__((always_inline)) msrt_code
publish(msrt_bus *bus, msrt_envelope *e, bool view, msrt_bus_permit permit,
        void *permit_ud, size_t *delivered, msrt_bus_pending *pend,
        msrt_error *err) {
  *delivered = 0;
  msrt_reader *rd = reader_of(bus);
  if (!rd) {
    refuse(bus, msrt_bus_class(bus, e->subject, e->subject_len));
    return msrt_error_set(err, MSRT_E_RESOURCE_EXHAUSTED, "out of memory "
                          "making this thread's router reader");
  }
  pub_space local;
  pub_space *s = space_get(&local);
  msrt_router_reader_enter(rd);
  msrt_code rc;
  if (!msrt_router_has_routes(bus->router))
    rc = deliver_all(bus, rd, s, e, view, true, false, delivered, pend, err);
  else
    rc = publish_routed(bus, rd, s, e, view, permit, permit_ud, delivered,
                        pend, err);
  msrt_router_reader_leave(rd);
  space_put(s);
  return rc;
}

msrt_code msrt_bus_publish_as(msrt_bus *bus, msrt_envelope *e,
                              msrt_bus_permit permit, void *permit_ud,
                              size_t *delivered, msrt_bus_pending *pend,
                              msrt_error *err) {
  return publish(bus, e, false, permit, permit_ud, delivered, pend, err);
}

msrt_code msrt_bus_publish(msrt_bus *bus, msrt_envelope *e, size_t *delivered,
                           msrt_bus_pending *pend, msrt_error *err) {
  return publish(bus, e, false, NULL, NULL, delivered, pend, err);
}

msrt_code msrt_bus_send(msrt_bus *bus, const char *subject, size_t slen,
                        const char *reply, size_t rlen, const void *headers,
                        size_t hlen, const void *payload, size_t plen,
                        int priority, double reply_ttl_ms, size_t *delivered,
                        msrt_bus_pending *pend, msrt_error *err) {
  *delivered = 0;
  msrt_code rc = acceptable(bus, subject, slen, reply, rlen, hlen, plen,
                            priority, err);
  if (rc != MSRT_E_OK) return rc;
  msrt_envelope v;
  msrt_env_view(&v, subject, slen, reply, rlen, headers, hlen, payload, plen,
                priority, MSRT_ENV_PAYLOAD_BUFFER, 0);
  msrt_bus_reply_ttl(&v, reply_ttl_ms);
  return publish(bus, &v, true, NULL, NULL, delivered, pend, err);
}

msrt_code msrt_bus_subscribe(msrt_bus *bus, const char *pattern, size_t plen,
                             const char *queue, size_t qlen, msrt_endpoint ep,
                             uint64_t *sub_id, msrt_error *err) {
  ep_ref(ep);
  msrt_code rc = msrt_interest_subscribe(bus->interest, bus->router, pattern,
                                         plen, queue, qlen, ep, sub_id, err);
  if (rc != MSRT_E_OK) ep_unref(ep);
  return rc;
}

msrt_code msrt_bus_unsubscribe(msrt_bus *bus, uint64_t sub_id) {
  void *obj = NULL, *cls = NULL;
  msrt_code rc = msrt_interest_unsubscribe(bus->interest, bus->router, sub_id,
                                           &obj, &cls);
  /* A reader may still be pushing to the endpoint: drop the subscription's
   * reference only after every reader that could have seen it has left. */
  const msrt_endpoint_class *c = cls;
  if (rc == MSRT_E_OK && c->unref)
    msrt_router_defer(bus->router, c->unref, obj);
  return rc;
}

msrt_code msrt_bus_set_ready(msrt_bus *bus, uint64_t sub_id, bool ready) {
  return msrt_interest_set_ready(bus->interest, bus->router, sub_id, ready);
}

void msrt_bus_set_interest(msrt_bus *bus, const msrt_interest_hook *hook) {
  msrt_interest_hook_set(bus->interest, hook);
}

size_t msrt_bus_local_groups(msrt_bus *bus, const char *subject, char *buf,
                             size_t cap) {
  return msrt_interest_local_groups(bus->interest, subject, buf, cap);
}

/* The key a message was imported for, and the message. */
typedef struct {
  uint32_t key;
  msrt_envelope *e;
} key_msg;

/* Queue-group members of another key are skipped, like full ones: the
 * group's one member comes from the key the message was imported for. */
static bool skip_other_key(const msrt_match_item *m, void *ud) {
  const key_msg *k = ud;
  return m->kind != k->key || skip_full(m, k->e);
}

msrt_code msrt_bus_publish_key(msrt_bus *bus, msrt_envelope *e, uint32_t key,
                               unsigned cls, size_t *delivered,
                               msrt_bus_pending *pend, msrt_error *err) {
  *delivered = 0;
  msrt_reader *rd = reader_of(bus);
  if (!rd) {
    refuse(bus, cls);
    return msrt_error_set(err, MSRT_E_RESOURCE_EXHAUSTED, "out of memory "
                          "making this thread's router reader");
  }
  pub_space local;
  pub_space *s = space_get(&local);
  msrt_router_reader_enter(rd);
  bool memo_ok = memo_usable();
  uint64_t version = memo_ok ? msrt_router_version(bus->router) : 0;
  msrt_code rc = MSRT_E_OK, mc = MSRT_E_OK;
  const msrt_match_result *m = NULL;
  size_t kept = 0;
  bool known = memo_ok && memo_get(&key_memo, bus, version, key, e, &m);
  if (m) {
    kept = m->len; /* none declines (keepable) */
  } else {
    key_msg km = {key, e};
    mc = msrt_router_match(rd, e->subject, e->subject_len, &s->m,
                           skip_other_key, &km);
    size_t own = 0;
    /* the key's own: plain ones and its member */
    for (size_t i = 0; i < s->m.len; i++)
      if (s->m.items[i].kind == key) s->m.items[own++] = s->m.items[i];
    s->m.len = own;
    if (mc == MSRT_E_OK && memo_ok && !known)
      memo_put(&key_memo, bus, version, key, e, &s->m, false);
    if (mc == MSRT_E_OK) kept = drop_declined(&s->m, e);
    m = &s->m;
  }
  if (mc != MSRT_E_OK) {
    refuse(bus, cls);
    rc = msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  } else if (kept == 0) {
    count(bus, cls, MSRT_STAT_ACCEPTED, 1);
    count(bus, cls, m->unready_groups ? MSRT_STAT_DROP_NOT_READY
                                      : MSRT_STAT_NO_RESPONDERS, 1);
  } else {
    atomic_uint_least64_t *row = class_row(cls);
    msrt_account_bump(row, MSRT_STAT_ACCEPTED, kept);
    rc = fan_out(bus, cls, row, e, m, delivered, pend, err);
  }
  msrt_router_reader_leave(rd);
  space_put(s);
  return rc;
}
