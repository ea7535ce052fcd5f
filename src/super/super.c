/* Supervision mechanics: see super.h. */
#include "super/super.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Most restarts one window may hold: intensity is bounded so that the
 * window (intensity + 1 times) is a small fixed allocation. */
#define MAX_INTENSITY 100000

struct msrt_super {
  msrt_super_config cfg;
  msrt_child *kids;
  size_t n, cap;
  int64_t *times; /* restart times, newest last; at most intensity + 1 */
  size_t ntimes;
};

static const char *const RESTART_NAMES[] = {"permanent", "transient",
                                            "temporary"};
static const char *const STATE_NAMES[] = {"stopped",    "running",
                                          "stopping",   "restarting",
                                          "starting"};

const char *msrt_restart_name(msrt_restart_type r) {
  return (unsigned)r < 3 ? RESTART_NAMES[r] : "unknown";
}

int msrt_restart_from_name(const char *name) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(name, RESTART_NAMES[i])) return i;
  return -1;
}

const char *msrt_child_state_name(msrt_child_state st) {
  return (unsigned)st < MSRT_CHILD__COUNT ? STATE_NAMES[st] : "unknown";
}

static int check_backoff(const msrt_backoff *b, msrt_error *err) {
  if (!(b->initial_ms >= 0) || !isfinite(b->initial_ms))
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "backoff.initial_ms must be a number >= 0"), -1;
  if (b->initial_ms == 0) return 0; /* no backoff: the rest is unused */
  if (!(b->max_ms >= b->initial_ms))
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "backoff.max_ms must be >= initial_ms"), -1;
  if (!(b->multiplier >= 1) || !isfinite(b->multiplier))
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "backoff.multiplier must be a number >= 1"), -1;
  if (!(b->jitter >= 0 && b->jitter <= 1))
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "backoff.jitter must be a fraction in [0, 1]"), -1;
  return 0;
}

msrt_super *msrt_super_new(const msrt_super_config *cfg, msrt_error *err) {
  if (cfg->intensity < 0 || cfg->intensity > MAX_INTENSITY) {
    msrt_error_set(err, MSRT_E_INVALID_ARG,
                   "intensity must be an integer in [0, %d]", MAX_INTENSITY);
    return NULL;
  }
  if (cfg->period_ms <= 0) {
    msrt_error_set(err, MSRT_E_INVALID_ARG, "period_ms must be > 0");
    return NULL;
  }
  if (check_backoff(&cfg->backoff, err)) return NULL;
  msrt_super *s = calloc(1, sizeof *s);
  if (s) s->times = calloc((size_t)cfg->intensity + 1, sizeof *s->times);
  if (!s || !s->times) {
    free(s);
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory for a supervisor");
    return NULL;
  }
  s->cfg = *cfg;
  return s;
}

void msrt_super_free(msrt_super *s) {
  if (!s) return;
  free(s->kids);
  free(s->times);
  free(s);
}

int msrt_super_find(const msrt_super *s, const char *id) {
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->kids[i].id, id)) return (int)i;
  return -1;
}

size_t msrt_super_count(const msrt_super *s) { return s->n; }

const msrt_child *msrt_super_child(const msrt_super *s, size_t pos) {
  return pos < s->n ? &s->kids[pos] : NULL;
}

const msrt_super_config *msrt_super_config_of(const msrt_super *s) {
  return &s->cfg;
}

/* fresh: the id must not be in the table yet (an add, not an update). */
static msrt_code check_spec(const msrt_super *s, const msrt_child_spec *c,
                            int fresh, msrt_error *err) {
  size_t len = c->id ? strlen(c->id) : 0;
  if (len == 0 || len >= MSRT_CHILD_ID_MAX)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "child id must be a non-empty string of at most "
                          "%d bytes", MSRT_CHILD_ID_MAX - 1);
  if (fresh && msrt_super_find(s, c->id) >= 0)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "duplicate child id \"%s\"", c->id);
  if ((unsigned)c->restart > MSRT_RESTART_TEMPORARY)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "child \"%s\": bad restart type", c->id);
  if (c->shutdown_ms < 0 && c->shutdown_ms != MSRT_SHUTDOWN_BRUTAL_KILL &&
      c->shutdown_ms != MSRT_SHUTDOWN_INFINITY)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "child \"%s\": shutdown must be ms >= 0, "
                          "\"brutal_kill\" or \"infinity\"", c->id);
  if (c->significant && c->restart == MSRT_RESTART_PERMANENT)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "child \"%s\": a significant child must be "
                          "transient or temporary", c->id);
  return MSRT_E_OK;
}

msrt_code msrt_super_add(msrt_super *s, const msrt_child_spec *spec,
                         size_t *pos, msrt_error *err) {
  msrt_code rc = check_spec(s, spec, 1, err);
  if (rc != MSRT_E_OK) return rc;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    msrt_child *k = realloc(s->kids, cap * sizeof *k);
    if (!k) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    s->kids = k;
    s->cap = cap;
  }
  msrt_child *c = &s->kids[s->n];
  memset(c, 0, sizeof *c);
  memcpy(c->id, spec->id, strlen(spec->id) + 1);
  c->restart = spec->restart;
  c->shutdown_ms = spec->shutdown_ms;
  c->is_supervisor = spec->is_supervisor;
  c->significant = spec->significant;
  c->state = MSRT_CHILD_STOPPED;
  if (pos) *pos = s->n;
  s->n++;
  return MSRT_E_OK;
}

msrt_code msrt_super_update(msrt_super *s, const msrt_child_spec *spec,
                            size_t *pos, msrt_error *err) {
  msrt_code rc = check_spec(s, spec, 0, err);
  if (rc != MSRT_E_OK) return rc;
  int at = msrt_super_find(s, spec->id);
  if (at < 0)
    return msrt_error_set(err, MSRT_E_NOT_FOUND, "no child \"%s\"",
                          spec->id);
  msrt_child *c = &s->kids[at];
  c->restart = spec->restart;
  c->shutdown_ms = spec->shutdown_ms;
  c->is_supervisor = spec->is_supervisor;
  c->significant = spec->significant;
  if (pos) *pos = (size_t)at;
  return MSRT_E_OK;
}

msrt_code msrt_super_configure(msrt_super *s, const msrt_super_config *cfg,
                               msrt_error *err) {
  msrt_error e;
  if (!err) err = &e; /* the code of msrt_super_new's refusal */
  msrt_super *fresh = msrt_super_new(cfg, err); /* checks cfg, sizes times */
  if (!fresh) return err->code;
  size_t keep = s->ntimes < (size_t)cfg->intensity + 1 ? s->ntimes
                                                       : (size_t)cfg->intensity + 1;
  memcpy(fresh->times, s->times + (s->ntimes - keep), keep * sizeof *s->times);
  free(s->times);
  s->times = fresh->times;
  s->ntimes = keep;
  s->cfg = *cfg;
  fresh->times = NULL;
  msrt_super_free(fresh);
  return MSRT_E_OK;
}

msrt_code msrt_super_delete(msrt_super *s, const char *id, msrt_error *err) {
  int pos = msrt_super_find(s, id);
  if (pos < 0)
    return msrt_error_set(err, MSRT_E_NOT_FOUND, "no child \"%s\"", id);
  if (s->kids[pos].state != MSRT_CHILD_STOPPED)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "child \"%s\" is %s: terminate it first", id,
                          msrt_child_state_name(s->kids[pos].state));
  memmove(&s->kids[pos], &s->kids[pos + 1],
          (s->n - (size_t)pos - 1) * sizeof *s->kids);
  s->n--;
  return MSRT_E_OK;
}

/* A running child up for a whole period starts its backoff afresh. */
static int stayed_up(const msrt_super *s, const msrt_child *c,
                     int64_t now_ms) {
  return c->state == MSRT_CHILD_RUNNING &&
         now_ms - c->started_ms >= s->cfg.period_ms;
}

msrt_code msrt_super_set_state(msrt_super *s, size_t pos,
                               msrt_child_state state, int64_t now_ms) {
  if (pos >= s->n || (unsigned)state >= MSRT_CHILD__COUNT)
    return MSRT_E_INVALID_ARG;
  msrt_child *c = &s->kids[pos];
  if (stayed_up(s, c, now_ms)) c->attempts = 0;
  if (state == MSRT_CHILD_RUNNING) c->started_ms = now_ms;
  c->state = state;
  return MSRT_E_OK;
}

/* Drop restarts older than the window [now - period, now] (OTP keeps
 * those with R >= Now - Period). */
static void expire(msrt_super *s, int64_t now_ms) {
  size_t keep = 0;
  for (size_t i = 0; i < s->ntimes; i++)
    if (s->times[i] >= now_ms - s->cfg.period_ms)
      s->times[keep++] = s->times[i];
  s->ntimes = keep;
}

bool msrt_super_add_restart(msrt_super *s, int64_t now_ms) {
  expire(s, now_ms);
  if (s->ntimes == (size_t)s->cfg.intensity + 1) { /* full: drop oldest */
    memmove(s->times, s->times + 1, (s->ntimes - 1) * sizeof *s->times);
    s->ntimes--;
  }
  s->times[s->ntimes++] = now_ms;
  return s->ntimes <= (size_t)s->cfg.intensity;
}

size_t msrt_super_restarts(const msrt_super *s, int64_t now_ms) {
  size_t n = 0;
  for (size_t i = 0; i < s->ntimes; i++)
    if (s->times[i] >= now_ms - s->cfg.period_ms) n++;
  return n;
}

double msrt_backoff_delay(const msrt_backoff *b, unsigned n, double u) {
  if (b->initial_ms <= 0) return 0;
  double d = b->initial_ms * pow(b->multiplier, (double)n);
  if (!(d <= b->max_ms)) d = b->max_ms; /* also catches overflow to inf */
  d *= 1 + b->jitter * (2 * u - 1);
  return d < 0 ? 0 : d;
}

msrt_code msrt_super_next_delay(msrt_super *s, size_t pos, int64_t now_ms,
                                double u, double *delay_ms) {
  if (pos >= s->n) return MSRT_E_INVALID_ARG;
  msrt_child *c = &s->kids[pos];
  if (stayed_up(s, c, now_ms)) c->attempts = 0;
  *delay_ms = msrt_backoff_delay(&s->cfg.backoff, c->attempts++, u);
  return MSRT_E_OK;
}

size_t msrt_super_group(const msrt_super *s, msrt_group g, size_t pos,
                        size_t *out) {
  if (pos >= s->n) return 0;
  if (g == MSRT_GROUP_ONE) {
    out[0] = pos;
    return 1;
  }
  size_t n = 0;
  for (size_t i = g == MSRT_GROUP_ALL ? 0 : pos; i < s->n; i++) out[n++] = i;
  return n;
}
