/* Probe state machine (health.h): Kubernetes' prober results, kept per
 * child, with the gating of a startup probe. */
#include "health/health.h"

#include <string.h>

static const char *const KIND_NAMES[] = {"startup", "liveness", "readiness"};
static const char *const STATE_NAMES[] = {"unknown", "healthy", "degraded",
                                          "unhealthy", "starting"};

void msrt_probe_config_default(msrt_probe_config *c) {
  c->initial_delay_ms = 0;
  c->interval_ms = 10000;
  c->timeout_ms = 1000;
  c->failure_threshold = 3;
  c->success_threshold = 1;
}

msrt_code msrt_probe_config_check(msrt_probe_kind k,
                                  const msrt_probe_config *c,
                                  msrt_error *err) {
  const char *kn = msrt_probe_kind_name(k);
  if (c->initial_delay_ms < 0)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: initial_delay_ms must be >= 0", kn);
  if (c->interval_ms < 1)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: interval_ms must be >= 1", kn);
  if (c->timeout_ms < 1)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: timeout_ms must be >= 1", kn);
  if (c->failure_threshold < 1)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: failure_threshold must be >= 1", kn);
  if (c->success_threshold < 1)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: success_threshold must be >= 1", kn);
  /* Kubernetes refuses it too: one success is all a liveness or startup
   * outcome can mean. */
  if (k != MSRT_PROBE_READINESS && c->success_threshold != 1)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: success_threshold must be 1 "
                          "(only readiness may ask for more)", kn);
  return MSRT_E_OK;
}

void msrt_health_init(msrt_health *h,
                      const msrt_probe_config *const cfg[MSRT_PROBE__COUNT],
                      int64_t now_ms) {
  memset(h, 0, sizeof *h);
  h->since_ms = now_ms;
  for (int k = 0; k < MSRT_PROBE__COUNT; k++) {
    msrt_probe *p = &h->p[k];
    p->outcome = -1;
    p->state = MSRT_HEALTH_UNKNOWN;
    if (!cfg[k]) continue;
    p->present = 1;
    p->cfg = *cfg[k];
    p->next_ms = now_ms + p->cfg.initial_delay_ms;
  }
  h->started = !h->p[MSRT_PROBE_STARTUP].present;
}

static int valid_kind(msrt_probe_kind k) {
  return (int)k >= 0 && k < MSRT_PROBE__COUNT;
}

bool msrt_health_active(const msrt_health *h, msrt_probe_kind k) {
  if (!valid_kind(k) || !h->p[k].present) return false;
  if (k == MSRT_PROBE_STARTUP) return !h->started;
  return h->started;
}

bool msrt_health_begin(msrt_health *h, msrt_probe_kind k, int64_t now_ms) {
  if (!msrt_health_active(h, k)) return false;
  msrt_probe *p = &h->p[k];
  if (p->in_flight || now_ms < p->next_ms) return false;
  p->in_flight = 1;
  p->runs++;
  /* The period runs from the due time, so late timers do not make the
   * schedule drift; a run that was very late starts a fresh period. */
  p->next_ms += p->cfg.interval_ms;
  if (p->next_ms <= now_ms) p->next_ms = now_ms + p->cfg.interval_ms;
  return true;
}

int64_t msrt_health_next(const msrt_health *h, int64_t now_ms) {
  int64_t best = -1;
  for (int k = 0; k < MSRT_PROBE__COUNT; k++) {
    const msrt_probe *p = &h->p[k];
    if (!msrt_health_active(h, (msrt_probe_kind)k) || p->in_flight) continue;
    int64_t d = p->next_ms > now_ms ? p->next_ms - now_ms : 0;
    if (best < 0 || d < best) best = d;
  }
  return best;
}

/* The state that follows from a probe's outcome and counters. */
static msrt_health_state state_of(const msrt_probe *p) {
  if (p->outcome == 0) return MSRT_HEALTH_UNHEALTHY;
  if (p->failures > 0) return MSRT_HEALTH_DEGRADED;
  return p->outcome == 1 ? MSRT_HEALTH_HEALTHY : MSRT_HEALTH_UNKNOWN;
}

/* Count one result; the outcome flips only after threshold results in a
 * row (Kubernetes' prober worker). */
static void count(msrt_probe *p, int ok) {
  if (ok) {
    p->oks++;
    p->successes++;
    p->failures = 0;
    if (p->outcome != 1 && p->successes >= p->cfg.success_threshold)
      p->outcome = 1;
  } else {
    p->fails++;
    p->failures++;
    p->successes = 0;
    if (p->outcome != 0 && p->failures >= p->cfg.failure_threshold)
      p->outcome = 0;
  }
}

/* Startup passed: the gated probes begin, no earlier than their initial
 * delay from the child's start. */
static void release_gated(msrt_health *h, int64_t now_ms) {
  h->started = 1;
  for (int k = MSRT_PROBE_LIVENESS; k < MSRT_PROBE__COUNT; k++) {
    msrt_probe *p = &h->p[k];
    int64_t at = h->since_ms + p->cfg.initial_delay_ms;
    p->next_ms = at > now_ms ? at : now_ms;
  }
}

unsigned msrt_health_record(msrt_health *h, msrt_probe_kind k, int ok,
                            int64_t now_ms) {
  if (!msrt_health_active(h, k)) return 0;
  msrt_probe *p = &h->p[k];
  bool was_ready = msrt_health_ready(h);
  int was_outcome = p->outcome;
  msrt_health_state before = p->state;
  p->in_flight = 0;
  count(p, ok);
  p->state = state_of(p);
  unsigned ev = 0;
  if (p->state != before) ev |= MSRT_HEALTH_EV_CHANGED;
  int failed_now = p->outcome == 0 && was_outcome != 0;
  if (k != MSRT_PROBE_READINESS && failed_now) ev |= MSRT_HEALTH_EV_RESTART;
  if (k == MSRT_PROBE_STARTUP && p->outcome == 1) {
    release_gated(h, now_ms);
    ev |= MSRT_HEALTH_EV_STARTED;
  }
  bool ready = msrt_health_ready(h);
  if (ready && !was_ready) ev |= MSRT_HEALTH_EV_READY;
  if (!ready && was_ready) ev |= MSRT_HEALTH_EV_UNREADY;
  return ev;
}

/* Badness order for the overall state. */
static int rank(msrt_health_state s) {
  switch (s) {
    case MSRT_HEALTH_UNHEALTHY: return 3;
    case MSRT_HEALTH_DEGRADED: return 2;
    case MSRT_HEALTH_UNKNOWN: return 1;
    default: return 0;
  }
}

msrt_health_state msrt_health_overall(const msrt_health *h) {
  const msrt_probe *st = &h->p[MSRT_PROBE_STARTUP];
  if (!h->started)
    return st->outcome == 0 ? MSRT_HEALTH_UNHEALTHY : MSRT_HEALTH_STARTING;
  msrt_health_state worst = MSRT_HEALTH_HEALTHY;
  int any = 0;
  for (int k = MSRT_PROBE_LIVENESS; k < MSRT_PROBE__COUNT; k++) {
    if (!h->p[k].present) continue;
    any = 1;
    if (rank(h->p[k].state) > rank(worst)) worst = h->p[k].state;
  }
  if (!any) return st->present ? MSRT_HEALTH_HEALTHY : MSRT_HEALTH_UNKNOWN;
  return worst;
}

bool msrt_health_ready(const msrt_health *h) {
  if (!h->started) return false;
  const msrt_probe *r = &h->p[MSRT_PROBE_READINESS];
  return !r->present || r->outcome == 1;
}

const char *msrt_probe_kind_name(msrt_probe_kind k) {
  return valid_kind(k) ? KIND_NAMES[k] : "unknown";
}

int msrt_probe_kind_from_name(const char *name) {
  for (int k = 0; k < MSRT_PROBE__COUNT; k++)
    if (strcmp(name, KIND_NAMES[k]) == 0) return k;
  return -1;
}

const char *msrt_health_state_name(msrt_health_state s) {
  if ((int)s < 0 || (size_t)s >= sizeof STATE_NAMES / sizeof *STATE_NAMES)
    return "unknown";
  return STATE_NAMES[s];
}
