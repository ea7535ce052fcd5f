/* Health-check mechanics (docs/architecture.md "Health checks"), with
 * Kubernetes probe semantics: the state machine of one child's probes.
 *
 * A child has up to three probes: startup, liveness and readiness. Each
 * has initial_delay_ms, interval_ms (Kubernetes periodSeconds: from the
 * start of one run to the start of the next), timeout_ms (a run that has
 * not answered by then is a failure), failure_threshold and
 * success_threshold (consecutive results needed to change the outcome).
 * A startup probe gates the other two: they do not run, and the child is
 * not ready, until it has succeeded; after that it never runs again.
 *
 * This part runs nothing: lua/msrt/health/ runs the probes on the hub
 * loop and reports each result here; the answers say what to do (restart
 * through the supervisor, take the child out of its queue groups or put it
 * back). Times are milliseconds on a clock the caller supplies, so the
 * rules can be tested without waiting.
 *
 * States of a probe: unknown (no outcome yet), healthy, degraded (failing,
 * but fewer than failure_threshold times in a row: the outcome has not
 * flipped) and unhealthy (failure_threshold failures in a row; it stays
 * so until success_threshold successes in a row).
 *
 * Thread-safety: an msrt_health belongs to one thread (the hub); nothing
 * here locks. The name functions are pure.
 */
#ifndef MSRT_HEALTH_HEALTH_H
#define MSRT_HEALTH_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef enum {
  MSRT_PROBE_STARTUP, MSRT_PROBE_LIVENESS, MSRT_PROBE_READINESS,
  MSRT_PROBE__COUNT
} msrt_probe_kind;

typedef enum {
  MSRT_HEALTH_UNKNOWN, MSRT_HEALTH_HEALTHY, MSRT_HEALTH_DEGRADED,
  MSRT_HEALTH_UNHEALTHY, MSRT_HEALTH_STARTING /* child only: startup runs */
} msrt_health_state;

/* A probe's timing and thresholds (milliseconds, counts). */
typedef struct {
  int64_t initial_delay_ms, interval_ms, timeout_ms;
  uint32_t failure_threshold, success_threshold;
} msrt_probe_config;

/* One probe's books (read them; change them only through the functions). */
typedef struct {
  msrt_probe_config cfg;
  int present;     /* the child has this probe */
  int in_flight;   /* a run has started and not been recorded */
  msrt_health_state state;
  int outcome;     /* Kubernetes' result: 1 success, 0 failure, -1 none yet */
  uint32_t successes, failures; /* consecutive */
  uint64_t runs, oks, fails;    /* totals */
  int64_t next_ms;              /* when the next run is due */
} msrt_probe;

/* A child's probes. started: the startup probe has succeeded (or there is
 * none). */
typedef struct {
  msrt_probe p[MSRT_PROBE__COUNT];
  int started;
  int64_t since_ms; /* when the child started (msrt_health_init) */
} msrt_health;

/* What a recorded result calls for (bits of msrt_health_record's answer). */
enum {
  MSRT_HEALTH_EV_CHANGED = 1u,  /* the probe's state changed */
  MSRT_HEALTH_EV_STARTED = 2u,  /* startup succeeded: the others begin */
  MSRT_HEALTH_EV_RESTART = 4u,  /* liveness (or startup) became unhealthy:
                                   restart the child through its supervisor */
  MSRT_HEALTH_EV_READY = 8u,    /* the child became ready */
  MSRT_HEALTH_EV_UNREADY = 16u  /* the child stopped being ready */
};

/* Fill c with the defaults: initial_delay_ms 0, interval_ms 10000,
 * timeout_ms 1000, failure_threshold 3, success_threshold 1. */
void msrt_probe_config_default(msrt_probe_config *c);

/* Check c for a probe of kind k as Kubernetes validates it: delay >= 0,
 * interval >= 1, timeout >= 1, thresholds >= 1, success_threshold 1 for
 * liveness and startup. Returns MSRT_E_OK, or MSRT_E_INVALID_ARG with err
 * (may be NULL) naming the field. Pure. */
msrt_code msrt_probe_config_check(msrt_probe_kind k,
                                  const msrt_probe_config *c,
                                  msrt_error *err);

/* Start books for a child that started at now_ms. cfg[k] is the config
 * of probe k or NULL when the child has none (configs already checked).
 * Every probe starts unknown, its first run due at now_ms +
 * initial_delay_ms; without a startup probe the child counts as started.
 * A child with a readiness probe is not ready until it succeeds. */
void msrt_health_init(msrt_health *h,
                      const msrt_probe_config *const cfg[MSRT_PROBE__COUNT],
                      int64_t now_ms);

/* Whether probe k runs at all now: present, and for liveness and
 * readiness the startup probe has passed; startup only until it has. */
bool msrt_health_active(const msrt_health *h, msrt_probe_kind k);

/* Whether a run of probe k should begin at now_ms: active, due, and no
 * run of it in flight (runs never overlap). When it returns true the run is
 * marked in flight and the next one scheduled interval_ms after now_ms
 * (or after when it was due, if that is still ahead: no drift). */
bool msrt_health_begin(msrt_health *h, msrt_probe_kind k, int64_t now_ms);

/* Milliseconds from now_ms to the earliest due run of an active probe
 * with none in flight (0 when one is overdue), or -1 when none is
 * waiting (every active probe in flight, or none active). */
int64_t msrt_health_next(const msrt_health *h, int64_t now_ms);

/* Record the result of probe k's run (ok nonzero for success; a timeout
 * is a failure) and clear its in-flight mark. Returns MSRT_HEALTH_EV_*
 * bits: CHANGED when its state changed; STARTED when startup passed
 * (liveness and readiness become due at once or at their initial delay
 * from the child's start, whichever is later); RESTART the first time
 * liveness or startup reaches unhealthy; READY / UNREADY when readiness
 * changes the child's readiness. A result for an inactive probe (gated,
 * absent, or startup already passed) is ignored (returns 0). */
unsigned msrt_health_record(msrt_health *h, msrt_probe_kind k, int ok,
                            int64_t now_ms);

/* The child's state: starting while the startup probe has not passed,
 * else the worst of its liveness and readiness states (unhealthy >
 * degraded > unknown > healthy); unknown when it has neither. */
msrt_health_state msrt_health_overall(const msrt_health *h);

/* Whether the child may take queue-group messages: started, and its
 * readiness probe (if any) has succeeded success_threshold times in a row
 * since it last reached failure_threshold (healthy, or degraded from
 * healthy). */
bool msrt_health_ready(const msrt_health *h);

/* Names: "startup", "liveness", "readiness"; "unknown", "healthy",
 * "degraded", "unhealthy", "starting". Lookups return -1 for an unknown
 * name. Pure. */
const char *msrt_probe_kind_name(msrt_probe_kind k);
int msrt_probe_kind_from_name(const char *name);
const char *msrt_health_state_name(msrt_health_state s);

#endif
