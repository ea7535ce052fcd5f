#include "lua/rt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "router/subject.h"

static msrt_rt *the_rt;
static __thread msrt_reader *tl_reader;
static __thread msrt_rt *tl_reader_rt;

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
static pthread_key_t space_key; /* frees a thread's tl_space when it exits */
static pthread_once_t space_once = PTHREAD_ONCE_INIT;
/* Set by push_dropped during a push that returned MSRT_E_OK without
 * delivering: drop_newest dropped the new message. */
static __thread int tl_push_dropped;

msrt_rt *msrt_rt_get(void) { return the_rt; }

msrt_reader *msrt_rt_reader(msrt_rt *rt) {
  if (tl_reader_rt != rt || !tl_reader) {
    tl_reader = msrt_router_reader_new(rt->router);
    tl_reader_rt = tl_reader ? rt : NULL;
  }
  return tl_reader;
}

/* Count on this thread's shard of the router's counters (no shared write),
 * in subject class cls (router/account.h); on the shared counters when
 * the thread has no reader (memory ran out making it). */
static void count(msrt_rt *rt, unsigned cls, msrt_stat s, uint64_t n) {
  if (!n) return;
  msrt_reader *rd = msrt_rt_reader(rt);
  if (rd) msrt_account_add(msrt_reader_shard(rd), cls, s, n);
  else msrt_account_add_shared(msrt_router_account(rt->router), cls, s, n);
}

unsigned msrt_rt_class(msrt_rt *rt, const char *subject, size_t len) {
  return msrt_account_class(msrt_router_account(rt->router), subject, len);
}

/* Publish "<reason>[ <who>]" on msrt.dropped.<subject>. A subject too long
 * for the notice (it must stay within max_subject) is cut to fit (at a
 * byte, trailing dots removed) and the body then ends with the subject's
 * full length: the drop is announced and counted whatever its length. */
static void notice(msrt_rt *rt, const char *subj, size_t slen, int priority,
                   uint64_t trace_id, const char *reason, const char *who) {
  static const char prefix[] = "msrt.dropped.";
  const size_t plen = sizeof prefix - 1;
  if (slen >= plen && memcmp(subj, prefix, plen) == 0) return;
  size_t max = rt->cfg.max_subject ? rt->cfg.max_subject
                                   : MSRT_SUBJECT_MAX_DEFAULT;
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
  msrt_rt_publish(rt, note, &delivered, NULL, NULL);
  msrt_env_unref(note);
}

void msrt_rt_drop_notice(msrt_rt *rt, const msrt_envelope *e,
                         const char *reason, const char *who) {
  notice(rt, e->subject, e->subject_len, e->priority, e->trace_id, reason,
         who);
}

void msrt_rt_undecodable(msrt_rt *rt, const char *subject, size_t len,
                         const char *reason, const char *who) {
  unsigned cls = msrt_rt_class(rt, subject, len);
  count(rt, cls, MSRT_STAT_DELIVERED, UINT64_MAX); /* modulo 2^64: -1 */
  count(rt, cls, MSRT_STAT_DROP_OTHER, 1);
  char why[160];
  snprintf(why, sizeof why, "undecodable (%s)", reason);
  notice(rt, subject, len, MSRT_PRIORITY_DEFAULT, 0, why, who);
}

/* A drop on the pushing thread by the endpoint `who`, counted in the
 * dropped message's class and announced. drop_newest: e is the new copy,
 * which fan_out must not count as delivered (tl_push_dropped). drop_oldest:
 * e is an older message, counted delivered when it went in, maybe on
 * another subject class; its count moves to the drop, and the new copy
 * is delivered. */
static void push_dropped(msrt_rt *rt, msrt_envelope *e, const char *reason,
                         const char *who) {
  bool oldest = strcmp(reason, "drop_oldest") == 0;
  if (oldest) msrt_rt_undeliver(rt, e, MSRT_STAT_DROP_OLDEST);
  else count(rt, msrt_rt_class(rt, e->subject, e->subject_len),
             MSRT_STAT_DROP_NEWEST, 1);
  msrt_rt_drop_notice(rt, e, reason, who);
  tl_push_dropped = !oldest; /* last: the notice's own pushes reset it */
}

/* A drop by the scheduler, inside msrt_actor_push. */
static void on_dropped(msrt_actor *a, msrt_envelope *e, const char *reason,
                       void *ud) {
  char who[24];
  snprintf(who, sizeof who, "%llu", (unsigned long long)msrt_actor_id(a));
  push_dropped(ud, e, reason, who);
}

msrt_code msrt_rt_start(msrt_hub *hub, const msrt_rt_config *cfg,
                        msrt_run_fn run,
                        void (*release)(msrt_actor *, void *),
                        void (*drain)(msrt_inbox_item *, size_t, void *),
                        void *drain_ud, msrt_error *err) {
  if (the_rt) return MSRT_E_OK;
  if (cfg->workers < 1 || cfg->workers > 256)
    return msrt_error_set(err, MSRT_E_INVALID_ARG, "workers must be 1..256");
  msrt_rt *rt = aligned_alloc(64, (sizeof *rt + 63) / 64 * 64); /* turn[] */
  if (!rt) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  memset(rt, 0, sizeof *rt);
  rt->cfg = *cfg;
  atomic_init(&rt->gc_pause, cfg->gc_pause);
  atomic_init(&rt->gc_stepmul, cfg->gc_stepmul);
  rt->hub = hub;
  rt->drain = drain;
  rt->drain_ud = drain_ud;
  msrt_router_opts ropts = {.max_subject = cfg->max_subject};
  rt->router = msrt_router_new(&ropts);
  rt->inbox = msrt_inbox_new(msrt_hub_loop(hub), drain, drain_ud);
  msrt_sched_config sc = {
    .workers = cfg->workers, .batch = cfg->batch, .spin_us = cfg->spin_us,
    .mailbox_capacity = cfg->mailbox_capacity,
    .mailbox_bytes = cfg->mailbox_bytes, .overflow = cfg->overflow,
    .run = run, .release = release, .dropped = on_dropped, .sched_ud = rt};
  msrt_code rc = MSRT_E_NOMEM;
  if (rt->router && rt->inbox) rc = msrt_sched_new(&sc, &rt->sched, err);
  if (rc == MSRT_E_OK) rc = msrt_sched_start(rt->sched);
  if (rc != MSRT_E_OK) {
    msrt_error_set(err, rc, "cannot start the runtime (%s)",
                   msrt_code_name(rc));
    /* partial start: leave what was made (process-lifetime objects) */
    return rc;
  }
  the_rt = rt;
  msrt_rt_reader(rt); /* the hub's, while there is memory (msrt_rt_turn) */
  return MSRT_E_OK;
}

int msrt_rt_stop(msrt_rt *rt) {
  if (rt->stopped) return 0;
  rt->stopped = 1;
  uint64_t deadline = msrt_now_ns() + (uint64_t)rt->cfg.shutdown_timeout_ms * 1000000u;
  msrt_sched_stats st;
  for (;;) {
    /* Exit records arriving meanwhile are delivered to the hub's Lua. */
    msrt_inbox_drain(rt->inbox);
    msrt_sched_stats_get(rt->sched, &st, NULL);
    if (st.actors == 0 || msrt_now_ns() >= deadline) break;
    struct timespec ts = {0, 500000};
    nanosleep(&ts, NULL);
  }
  uint64_t now = msrt_now_ns(); /* the loop above may end past the deadline */
  long left = now < deadline ? (long)((deadline - now) / 1000000u) : 0;
  if (msrt_sched_stop_timeout(rt->sched, left > 0 ? left : 0) != 0) {
    msrt_sched_abandon(rt->sched); /* the process exits without them */
    return -1;
  }
  msrt_inbox_drain(rt->inbox);
  msrt_inbox_close(rt->inbox);
  return 0;
}

/* A copy refused outright: its only outcome. */
static void refuse(msrt_rt *rt, unsigned cls) {
  count(rt, cls, MSRT_STAT_ACCEPTED, 1);
  count(rt, cls, MSRT_STAT_REFUSED, 1);
}

msrt_envelope *msrt_rt_make(msrt_rt *rt, const char *subject, size_t slen,
                            const char *reply, size_t rlen,
                            const void *headers, size_t hlen,
                            const void *payload, size_t plen, int priority,
                            uint64_t trace_id, msrt_error *err) {
  /* A refusal here is the message's only outcome: accepted and refused. */
  if (msrt_subject_validate(subject, slen, rt->cfg.max_subject, err) !=
          MSRT_E_OK ||
      (reply && msrt_subject_validate(reply, rlen, rt->cfg.max_subject, err) !=
                    MSRT_E_OK)) {
    refuse(rt, msrt_rt_class(rt, subject, slen));
    return NULL;
  }
  if (priority < MSRT_PRIORITY_HIGHEST || priority > MSRT_PRIORITY_LOWEST) {
    refuse(rt, msrt_rt_class(rt, subject, slen));
    msrt_error_set(err, MSRT_E_INVALID_ARG,
                   "priority must be an integer 1..10 (got %d)", priority);
    return NULL;
  }
  if (plen + hlen > rt->cfg.max_payload) {
    refuse(rt, msrt_rt_class(rt, subject, slen));
    msrt_error_set(err, MSRT_E_PAYLOAD_TOO_BIG,
                   "payload of %zu bytes%s on \"%.*s\" exceeds max_payload "
                   "(%zu bytes)", plen + hlen, hlen ? " with headers" : "",
                   (int)(slen > 200 ? 200 : slen), subject,
                   rt->cfg.max_payload);
    return NULL;
  }
  msrt_envelope *e = msrt_env_new(subject, slen, reply, rlen, headers, hlen,
                                  payload, plen, priority,
                                  MSRT_ENV_PAYLOAD_BUFFER, trace_id);
  if (!e) msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  return e;
}

/* Queue-group members whose mailbox (or stdin) is full are skipped when
 * another member can take the message. */
static bool skip_full(const msrt_match_item *m, void *ud) {
  (void)ud;
  if (m->kind == MSRT_EP_PROC) return msrt_gate_full(m->endpoint);
  return m->kind == MSRT_EP_ACTOR && msrt_actor_full(m->endpoint);
}

/* References on the endpoints subscriptions and pendings hold, by kind. */
static void ep_ref(uint32_t kind, void *ep) {
  if (kind == MSRT_EP_PROC) msrt_gate_ref(ep);
  else msrt_actor_ref(ep);
}

static void ep_unref(uint32_t kind, void *ep) {
  if (kind == MSRT_EP_PROC) msrt_gate_unref(ep);
  else msrt_actor_unref(ep);
}

/* The overflow policy of a bounded endpoint (actor mailbox, stdin gate). */
static msrt_overflow ep_policy(uint32_t kind, void *ep) {
  return kind == MSRT_EP_PROC ? msrt_gate_policy(ep) : msrt_actor_policy(ep);
}

static int pending_add(msrt_pending *p, uint32_t kind, void *ep) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 4;
    msrt_pending_item *c = realloc(p->items, cap * sizeof *c);
    if (!c) return -1;
    p->items = c;
    p->cap = cap;
  }
  ep_ref(kind, ep);
  p->items[p->n++] = (msrt_pending_item){ep, kind};
  return 0;
}

/* A copy for a process's stdin, on the publishing thread: take a slot of
 * its gate here, so a full queue meets the sender's policy where the
 * sender is, then hand it to the hub, which writes it and gives the slot
 * back. drop_newest drops it here, like a mailbox: MSRT_E_OK. */
static int proc_push(msrt_rt *rt, msrt_gate *g, msrt_envelope *e) {
  int r = msrt_gate_take(g, msrt_env_size(e));
  if (r == MSRT_E_MAILBOX_FULL &&
      msrt_gate_policy(g) == MSRT_OVERFLOW_DROP_NEWEST) {
    msrt_gate_note(g, MSRT_GATE_DROPPED);
    char who[80];
    snprintf(who, sizeof who, "process %s", msrt_gate_name(g));
    push_dropped(rt, e, "drop_newest", who);
    return MSRT_E_OK;
  }
  if (r != MSRT_E_OK) return r;
  msrt_inbox_item it = {MSRT_IN_PROC, msrt_gate_proc_id(g), msrt_env_ref(e),
                        NULL};
  if (msrt_rt_to_hub(rt, it) == 0) return MSRT_E_OK;
  msrt_gate_give(g, 1, msrt_env_size(e));
  return MSRT_E_CLOSED;
}

/* Push to a bounded endpoint that a pending publish waits for. */
static int push_item(msrt_rt *rt, const msrt_pending_item *it,
                     msrt_envelope *e) {
  if (it->kind == MSRT_EP_PROC) return proc_push(rt, it->ep, e);
  return msrt_actor_push(it->ep, e);
}

/* Deliver to one endpoint; returns the push result. */
static int deliver(msrt_rt *rt, const msrt_match_item *m, msrt_envelope *e) {
  switch (m->kind) {
  case MSRT_EP_ACTOR: return msrt_actor_push(m->endpoint, e);
  case MSRT_EP_SYS: return msrt_actor_push_sys(m->endpoint, e);
  case MSRT_EP_HUB: {
    msrt_inbox_item it = {MSRT_IN_DELIVER, (uint64_t)(uintptr_t)m->ud,
                          msrt_env_ref(e), NULL};
    return msrt_rt_to_hub(rt, it) == 0 ? MSRT_E_OK : MSRT_E_CLOSED;
  }
  case MSRT_EP_STAMP: /* a heartbeat: only when it came matters */
    atomic_store_explicit((_Atomic uint64_t *)m->ud, msrt_now_ns(),
                          memory_order_relaxed);
    return MSRT_E_OK;
  case MSRT_EP_PROC: return proc_push(rt, m->endpoint, e);
  }
  return MSRT_E_INTERNAL;
}

/* Where a failed push ends: the endpoint was closed, or something else. */
static msrt_stat drop_stat(int r) {
  return r == MSRT_E_CLOSED ? MSRT_STAT_DROP_CLOSED : MSRT_STAT_DROP_OTHER;
}

/* Hand e to every matched endpoint and count each copy's outcome. Full
 * `block` endpoints (mailboxes, stdin gates) go to pend (when given) and
 * are counted when the pending publish ends. */
static msrt_code fan_out(msrt_rt *rt, unsigned cls, msrt_envelope *e,
                         const msrt_match_result *m, size_t *delivered,
                         msrt_pending *pend, msrt_error *err) {
  size_t ok = 0, refused = 0, closed = 0, other = 0;
  msrt_code rc = MSRT_E_OK;
  for (size_t i = 0; i < m->len; i++) {
    const msrt_match_item *it = &m->items[i];
    tl_push_dropped = 0;
    int r = deliver(rt, it, e);
    if (r == MSRT_E_OK) {
      (*delivered)++;
      ok += !tl_push_dropped; /* counted by on_dropped or proc_push */
    } else if (r == MSRT_E_MAILBOX_FULL && pend &&
               ep_policy(it->kind, it->endpoint) == MSRT_OVERFLOW_BLOCK &&
               pending_add(pend, it->kind, it->endpoint) == 0) {
      if (it->kind == MSRT_EP_PROC)
        msrt_gate_note(it->endpoint, MSRT_GATE_BLOCKED);
      rc = MSRT_E_MAILBOX_FULL;
    } else if (r == MSRT_E_MAILBOX_FULL) {
      if (it->kind == MSRT_EP_PROC)
        msrt_gate_note(it->endpoint, MSRT_GATE_REFUSED);
      refused++;
      rc = MSRT_E_MAILBOX_FULL;
    } else if (r == MSRT_E_CLOSED) {
      closed++;
    } else {
      other++;
    }
  }
  if (pend && pend->n) {
    pend->env = msrt_env_ref(e);
    pend->delivered = *delivered;
  }
  count(rt, cls, MSRT_STAT_DELIVERED, ok);
  count(rt, cls, MSRT_STAT_REFUSED, refused);
  count(rt, cls, MSRT_STAT_DROP_CLOSED, closed);
  count(rt, cls, MSRT_STAT_DROP_OTHER, other);
  if (refused) {
    msrt_error_set(err, MSRT_E_MAILBOX_FULL,
                   "mailbox full on \"%s\" (%zu subscriber(s) refused it)",
                   e->subject, refused);
    if (pend && pend->n && err) { /* owed to the sender after the wait */
      pend->refused = refused;
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

/* Match e's subject (already routed) and deliver it. Accounting: one
 * accepted per matched endpoint and per queue group with no ready member
 * (drop_not_ready), or one accepted for a message that matched nothing
 * (no_responders). When nothing matched and may_dead_letter is set, it
 * counts nothing and returns MSRT_E_NOT_FOUND: the caller dead-letters. */
static msrt_code deliver_all(msrt_rt *rt, msrt_reader *rd, pub_space *s,
                             msrt_envelope *e, bool may_dead_letter,
                             size_t *delivered, msrt_pending *pend,
                             msrt_error *err) {
  unsigned cls = msrt_rt_class(rt, e->subject, e->subject_len);
  long n = msrt_router_match(rd, e->subject, e->subject_len, &s->m, skip_full,
                             NULL);
  if (n < 0) {
    refuse(rt, cls);
    return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  }
  uint32_t unready = s->m.unready_groups;
  if (n == 0 && unready == 0) {
    if (may_dead_letter) return MSRT_E_NOT_FOUND;
    count(rt, cls, MSRT_STAT_ACCEPTED, 1);
    count(rt, cls, MSRT_STAT_NO_RESPONDERS, 1);
    return MSRT_E_OK;
  }
  count(rt, cls, MSRT_STAT_ACCEPTED, (uint64_t)n + unready);
  msrt_code rc = fan_out(rt, cls, e, &s->m, delivered, pend, err);
  if (unready) {
    count(rt, cls, MSRT_STAT_DROP_NOT_READY, unready);
    msrt_rt_drop_notice(rt, e, "drop_not_ready", NULL);
  }
  return rc;
}

/* Nobody subscribed to e's subject and its rule names a dead-letter
 * subject: e ends as dead_lettered, and its copy on that subject is a new
 * message (delivered there, or no_responders; never dead-lettered again,
 * so rules cannot loop). */
static msrt_code dead_letter(msrt_rt *rt, msrt_reader *rd, pub_space *s,
                             msrt_envelope *e, const char *dead, size_t dlen,
                             size_t *delivered, msrt_pending *pend,
                             msrt_error *err) {
  msrt_envelope *d;
  msrt_code rc = resubject(e, dead, dlen, &d, err);
  unsigned cls = msrt_rt_class(rt, e->subject, e->subject_len);
  count(rt, cls, MSRT_STAT_ACCEPTED, 1);
  count(rt, cls, rc == MSRT_E_OK ? MSRT_STAT_DEAD_LETTERED : MSRT_STAT_REFUSED,
        1);
  if (rc != MSRT_E_OK) return rc;
  rc = deliver_all(rt, rd, s, d, false, delivered, pend, err);
  msrt_env_unref(d);
  return rc;
}

static void space_free(void *p) {
  pub_space *s = p;
  msrt_match_result_free(&s->m);
  free(s->buf);
  memset(s, 0, sizeof *s);
}

static void space_key_make(void) { pthread_key_create(&space_key, space_free); }

static pub_space *space_get(msrt_rt *rt, pub_space *local) {
  pub_space *s = &tl_space;
  if (tl_depth++) { /* nested: the outer publish is using tl_space */
    memset(local, 0, sizeof *local);
    s = local;
  }
  /* room for a routed subject and a dead-letter subject (router/index.h) */
  size_t max = rt->cfg.max_subject ? rt->cfg.max_subject
                                   : MSRT_SUBJECT_MAX_DEFAULT;
  size_t need = 2 * (max + 1);
  if (s->cap < need) {
    if (s == &tl_space && !s->buf) {
      pthread_once(&space_once, space_key_make);
      pthread_setspecific(space_key, s);
    }
    char *b = realloc(s->buf, need);
    if (b) { /* else s->buf stays as it was: NULL, the caller refuses */
      s->buf = b;
      s->cap = need;
    }
  }
  return s;
}

static void space_put(pub_space *s) {
  if (s != &tl_space) space_free(s); /* a nested publish's own */
  tl_depth--;
}

/* Route e's subject through the router's table into res (a routed subject
 * and the dead-letter subject land in s->buf). Without a table (the common
 * case) the subject passes unchanged without calling into the table. */
static msrt_code route(msrt_reader *rd, msrt_rt *rt, pub_space *s,
                       const msrt_envelope *e, msrt_route_result *res,
                       msrt_error *err) {
  if (!msrt_router_has_routes(rt->router)) {
    *res = (msrt_route_result){-1, -1, false, e->subject, e->subject_len,
                               NULL, 0};
    return MSRT_E_OK;
  }
  if (!s->buf) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  return msrt_router_route(rd, e->subject, e->subject_len, s->buf, s->cap,
                           res, err);
}

/* A rewrite or split carried e to a subject its publisher may not publish
 * to: refused there, counted accepted and refused in that subject's
 * class. */
static msrt_code forbidden(msrt_rt *rt, const msrt_envelope *e,
                           const msrt_route_result *res, msrt_error *err) {
  refuse(rt, msrt_rt_class(rt, res->subject, res->len));
  return msrt_error_set(err, MSRT_E_PERMISSION,
                        "publish to \"%.*s\" is not allowed (routed there "
                        "from \"%.*s\" by rule %d)",
                        (int)(res->len > 200 ? 200 : res->len), res->subject,
                        (int)(e->subject_len > 200 ? 200 : e->subject_len),
                        e->subject, res->rule + 1);
}

msrt_code msrt_rt_publish_as(msrt_rt *rt, msrt_envelope *e,
                             msrt_rt_permit permit, void *permit_ud,
                             size_t *delivered, msrt_pending *pend,
                             msrt_error *err) {
  *delivered = 0;
  pub_space local;
  pub_space *s = space_get(rt, &local);
  msrt_reader *rd = msrt_rt_reader(rt);
  if (!rd) {
    space_put(s);
    refuse(rt, msrt_rt_class(rt, e->subject, e->subject_len));
    return msrt_error_set(err, MSRT_E_RESOURCE_EXHAUSTED, "out of memory "
                          "making this thread's router reader");
  }
  msrt_router_reader_enter(rd);
  msrt_route_result res;
  msrt_code rc = route(rd, rt, s, e, &res, err);
  msrt_envelope *to = e;
  if (rc == MSRT_E_OK && res.rewritten && permit &&
      !permit(permit_ud, res.subject, res.len)) {
    rc = forbidden(rt, e, &res, err);
  } else if (rc == MSRT_E_OK && res.rewritten) {
    rc = resubject(e, res.subject, res.len, &to, err);
    if (rc != MSRT_E_OK) refuse(rt, msrt_rt_class(rt, e->subject, e->subject_len));
  } else if (rc != MSRT_E_OK) { /* routing failed: the sender hears why */
    refuse(rt, msrt_rt_class(rt, e->subject, e->subject_len));
  }
  if (rc == MSRT_E_OK) {
    rc = deliver_all(rt, rd, s, to, res.dead_letter != NULL, delivered, pend,
                     err);
    if (rc == MSRT_E_NOT_FOUND)
      rc = dead_letter(rt, rd, s, to, res.dead_letter, res.dead_letter_len,
                       delivered, pend, err);
  }
  msrt_router_reader_leave(rd);
  if (to != e) msrt_env_unref(to);
  space_put(s);
  return rc;
}

msrt_code msrt_rt_publish(msrt_rt *rt, msrt_envelope *e, size_t *delivered,
                          msrt_pending *pend, msrt_error *err) {
  return msrt_rt_publish_as(rt, e, NULL, NULL, delivered, pend, err);
}

/* Take back the waker msrt_rt_pending_wait registered, unless it fired
 * (then it cannot fire again: it was one-shot). */
static void pending_cancel_wait(msrt_pending *p) {
  if (!p->waker) return;
  msrt_pending_item *w = &p->wait_ep;
  int r = w->kind == MSRT_EP_PROC
              ? msrt_gate_cancel_wait(w->ep, p->waker, p->waker_ud)
              : msrt_actor_cancel_wait(w->ep, p->waker, p->waker_ud);
  if (r == 0 && p->unwait) p->unwait(p->waker_ud); /* it will not fire */
  p->waker = NULL;
}

msrt_code msrt_rt_pending_retry(msrt_rt *rt, msrt_pending *p) {
  size_t keep = 0;
  unsigned cls =
      p->env ? msrt_rt_class(rt, p->env->subject, p->env->subject_len) : 0;
  pending_cancel_wait(p);
  for (size_t i = 0; i < p->n; i++) {
    msrt_pending_item *it = &p->items[i];
    int r = push_item(rt, it, p->env); /* `block` endpoints: no drops */
    if (r == MSRT_E_MAILBOX_FULL) {
      p->items[keep++] = *it;
      continue;
    }
    if (r == MSRT_E_OK) p->delivered++;
    count(rt, cls, r == MSRT_E_OK ? MSRT_STAT_DELIVERED : drop_stat(r), 1);
    ep_unref(it->kind, it->ep);
  }
  p->n = keep;
  if (keep) return MSRT_E_MAILBOX_FULL;
  msrt_env_unref(p->env);
  p->env = NULL;
  return MSRT_E_OK;
}

bool msrt_rt_pending_refused(msrt_pending *p, msrt_error *err) {
  if (!p->refused) return false;
  *err = p->refusal;
  p->refused = 0;
  return true;
}

int msrt_rt_pending_wait(msrt_pending *p, void (*waker)(void *),
                         void (*unwait)(void *), void *ud) {
  if (!p->n) return MSRT_E_OK;
  pending_cancel_wait(p);
  msrt_pending_item *it = &p->items[0];
  int r = it->kind == MSRT_EP_PROC ? msrt_gate_wait_room(it->ep, waker, ud)
                                   : msrt_actor_wait_room(it->ep, waker, ud);
  if (r == MSRT_WAIT_PENDING) {
    p->waker = waker;
    p->unwait = unwait;
    p->waker_ud = ud;
    p->wait_ep = *it;
  }
  return r;
}

void msrt_rt_pending_clear(msrt_rt *rt, msrt_pending *p) {
  pending_cancel_wait(p);
  if (p->n)
    count(rt, msrt_rt_class(rt, p->env->subject, p->env->subject_len),
          MSRT_STAT_REFUSED, p->n);
  for (size_t i = 0; i < p->n; i++) {
    msrt_pending_item *it = &p->items[i];
    if (it->kind == MSRT_EP_PROC) /* its stats agree with the router's */
      msrt_gate_note(it->ep, MSRT_GATE_REFUSED);
    ep_unref(it->kind, it->ep);
  }
  free(p->items);
  msrt_env_unref(p->env);
  memset(p, 0, sizeof *p);
}

static void unref_cell(void *cell) { msrt_actor_unref(cell); }
static void unref_gate(void *gate) { msrt_gate_unref(gate); }

msrt_code msrt_rt_subscribe(msrt_rt *rt, const char *pattern, size_t plen,
                            const char *queue, size_t qlen, uint32_t kind,
                            void *endpoint, uint64_t ud, uint64_t *sub_id,
                            msrt_error *err) {
  if (endpoint) ep_ref(kind, endpoint);
  msrt_code rc = msrt_router_subscribe(rt->router, pattern, plen, queue, qlen,
                                       endpoint, kind, (void *)(uintptr_t)ud,
                                       sub_id, err);
  if (rc != MSRT_E_OK && endpoint) ep_unref(kind, endpoint);
  return rc;
}

msrt_code msrt_rt_unsubscribe(msrt_rt *rt, uint64_t sub_id) {
  void *endpoint = NULL;
  uint32_t kind = 0;
  msrt_code rc = msrt_router_unsubscribe_endpoint(rt->router, sub_id,
                                                  &endpoint, &kind);
  /* A reader may still be pushing to the endpoint: drop the subscription's
   * reference only after every reader that could have seen it has left. */
  if (rc == MSRT_E_OK && endpoint)
    msrt_router_defer(rt->router,
                      kind == MSRT_EP_PROC ? unref_gate : unref_cell,
                      endpoint);
  return rc;
}

void msrt_rt_undeliver(msrt_rt *rt, const msrt_envelope *e,
                       msrt_stat outcome) {
  /* the shard counters are summed modulo 2^64: adding UINT64_MAX to
   * delivered takes one away */
  unsigned cls = msrt_rt_class(rt, e->subject, e->subject_len);
  count(rt, cls, MSRT_STAT_DELIVERED, UINT64_MAX);
  count(rt, cls, outcome, 1);
}

void msrt_rt_hub_waker(void *ud) {
  msrt_rt *rt = msrt_rt_get();
  msrt_inbox_item it = {MSRT_IN_WAKE, (uint64_t)(uintptr_t)ud, NULL, NULL};
  if (rt) msrt_rt_to_hub(rt, it);
}

int msrt_rt_to_hub(msrt_rt *rt, msrt_inbox_item item) {
  if (msrt_inbox_push(rt->inbox, item) == 0) return 0;
  msrt_env_unref(item.env);
  return -1;
}

void msrt_rt_tune(msrt_rt *rt, const msrt_rt_config *cfg) {
  msrt_sched_tune(rt->sched, cfg->batch, cfg->spin_us, cfg->mailbox_capacity,
                  cfg->mailbox_bytes);
  if (cfg->gc_pause > 0) atomic_store(&rt->gc_pause, cfg->gc_pause);
  if (cfg->gc_stepmul > 0) atomic_store(&rt->gc_stepmul, cfg->gc_stepmul);
}

void msrt_rt_turn(msrt_rt *rt, int worker, uint64_t actor_id) {
  /* the worker's reader, made at its first turn rather than at its first
   * publish, which may come when memory has run out */
  if (tl_reader_rt != rt) msrt_rt_reader(rt);
  if (worker < 0 || worker >= 256) return;
  atomic_store_explicit(&rt->turn[worker].actor, actor_id, memory_order_relaxed);
  atomic_store_explicit(&rt->turn[worker].start, actor_id ? msrt_now_ns() : 0,
                        memory_order_relaxed);
}

void msrt_rt_watchdog(msrt_rt *rt) {
  uint64_t now = msrt_now_ns();
  uint64_t limit = (uint64_t)rt->cfg.slice_ms * 1000000u;
  for (int w = 0; w < rt->cfg.workers && w < 256; w++) {
    unsigned long long start = /* the atomic's own type, for the CAS */
        atomic_load_explicit(&rt->turn[w].start, memory_order_relaxed);
    if (!start || start >= now || now - start < limit) continue; /* a turn that began after now was read is young */
    uint64_t id = atomic_load_explicit(&rt->turn[w].actor, memory_order_relaxed);
    /* report once per turn: clear the start so the next check skips it */
    if (!atomic_compare_exchange_strong(&rt->turn[w].start, &start, 0)) continue;
    msrt_inbox_item it = {MSRT_IN_OVERLOAD, id, NULL,
                          (void *)(uintptr_t)((now - start) / 1000000u)};
    msrt_inbox_push(rt->inbox, it);
  }
}
