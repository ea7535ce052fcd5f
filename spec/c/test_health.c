/* Health-check mechanics (src/health): Kubernetes probe thresholds, the
 * states healthy / degraded / unhealthy, startup gating, readiness, the
 * schedule. Times are given, never waited for. */
#include <string.h>

#include "ctest.h"
#include "health/health.h"

static msrt_probe_config cfg(int64_t delay, int64_t interval, uint32_t fail,
                             uint32_t succ) {
  msrt_probe_config c;
  msrt_probe_config_default(&c);
  c.initial_delay_ms = delay;
  c.interval_ms = interval;
  c.failure_threshold = fail;
  c.success_threshold = succ;
  return c;
}

/* One run of probe k at now with result ok; returns the events. */
static unsigned run(msrt_health *h, msrt_probe_kind k, int ok, int64_t now) {
  CHECK(msrt_health_begin(h, k, now));
  return msrt_health_record(h, k, ok, now);
}

static void test_defaults_and_checks(void) {
  msrt_probe_config c;
  msrt_probe_config_default(&c);
  CHECK(c.initial_delay_ms == 0 && c.interval_ms == 10000 &&
        c.timeout_ms == 1000 && c.failure_threshold == 3 &&
        c.success_threshold == 1);
  msrt_error err;
  CHECK(msrt_probe_config_check(MSRT_PROBE_LIVENESS, &c, &err) == MSRT_E_OK);
  c.success_threshold = 2;
  CHECK(msrt_probe_config_check(MSRT_PROBE_LIVENESS, &c, &err) ==
        MSRT_E_INVALID_ARG);
  CHECK(strstr(err.message, "liveness") && strstr(err.message, "success"));
  CHECK(msrt_probe_config_check(MSRT_PROBE_READINESS, &c, &err) == MSRT_E_OK);
  c = cfg(-1, 10, 1, 1);
  CHECK(msrt_probe_config_check(MSRT_PROBE_STARTUP, &c, &err) != MSRT_E_OK);
  c = cfg(0, 0, 1, 1);
  CHECK(msrt_probe_config_check(MSRT_PROBE_STARTUP, &c, NULL) != MSRT_E_OK);
  c = cfg(0, 10, 0, 1);
  CHECK(msrt_probe_config_check(MSRT_PROBE_READINESS, &c, &err) != MSRT_E_OK);
  CHECK(strstr(err.message, "failure_threshold") != NULL);
  c = cfg(0, 10, 1, 1);
  c.timeout_ms = 0;
  CHECK(msrt_probe_config_check(MSRT_PROBE_READINESS, &c, &err) != MSRT_E_OK);
}

static void test_liveness_thresholds(void) {
  msrt_probe_config l = cfg(0, 100, 3, 1);
  const msrt_probe_config *cs[3] = {NULL, &l, NULL};
  msrt_health h;
  msrt_health_init(&h, cs, 1000);
  CHECK(h.started && msrt_health_ready(&h));
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_UNKNOWN);
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 1, 1000) == MSRT_HEALTH_EV_CHANGED);
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_HEALTHY);
  /* failing, under the threshold: degraded, no restart */
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 0, 1100) == MSRT_HEALTH_EV_CHANGED);
  CHECK(h.p[MSRT_PROBE_LIVENESS].state == MSRT_HEALTH_DEGRADED);
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 0, 1200) == 0);
  /* a success in between resets the count */
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 1, 1300) == MSRT_HEALTH_EV_CHANGED);
  CHECK(h.p[MSRT_PROBE_LIVENESS].state == MSRT_HEALTH_HEALTHY);
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 0, 1400) == MSRT_HEALTH_EV_CHANGED);
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 0, 1500) == 0);
  unsigned ev = run(&h, MSRT_PROBE_LIVENESS, 0, 1600);
  CHECK(ev == (MSRT_HEALTH_EV_CHANGED | MSRT_HEALTH_EV_RESTART));
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_UNHEALTHY);
  /* restart is asked once, not at every further failure */
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 0, 1700) == 0);
  CHECK(h.p[MSRT_PROBE_LIVENESS].runs == 8 &&
        h.p[MSRT_PROBE_LIVENESS].fails == 6 &&
        h.p[MSRT_PROBE_LIVENESS].oks == 2);
  /* liveness never touches readiness */
  CHECK(msrt_health_ready(&h));
}

static void test_failure_threshold_one(void) {
  msrt_probe_config l = cfg(0, 100, 1, 1);
  const msrt_probe_config *cs[3] = {NULL, &l, NULL};
  msrt_health h;
  msrt_health_init(&h, cs, 0);
  unsigned ev = run(&h, MSRT_PROBE_LIVENESS, 0, 0);
  CHECK(ev & MSRT_HEALTH_EV_RESTART);
  CHECK(h.p[MSRT_PROBE_LIVENESS].state == MSRT_HEALTH_UNHEALTHY);
}

static void test_readiness_success_threshold(void) {
  msrt_probe_config r = cfg(0, 100, 2, 3);
  const msrt_probe_config *cs[3] = {NULL, NULL, &r};
  msrt_health h;
  msrt_health_init(&h, cs, 0);
  /* Kubernetes: not ready until the probe has succeeded */
  CHECK(!msrt_health_ready(&h));
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 0) == 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 100) == 0);
  CHECK(!msrt_health_ready(&h));
  unsigned ev = run(&h, MSRT_PROBE_READINESS, 1, 200);
  CHECK(ev == (MSRT_HEALTH_EV_CHANGED | MSRT_HEALTH_EV_READY));
  CHECK(msrt_health_ready(&h));
  /* one failure: degraded, still ready */
  CHECK(run(&h, MSRT_PROBE_READINESS, 0, 300) == MSRT_HEALTH_EV_CHANGED);
  CHECK(msrt_health_ready(&h) &&
        msrt_health_overall(&h) == MSRT_HEALTH_DEGRADED);
  ev = run(&h, MSRT_PROBE_READINESS, 0, 400);
  CHECK(ev == (MSRT_HEALTH_EV_CHANGED | MSRT_HEALTH_EV_UNREADY));
  CHECK(!(ev & MSRT_HEALTH_EV_RESTART));
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_UNHEALTHY);
  /* back only after success_threshold successes in a row */
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 500) == 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 600) == 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 0, 700) == 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 800) == 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 900) == 0);
  CHECK(!msrt_health_ready(&h));
  ev = run(&h, MSRT_PROBE_READINESS, 1, 1000);
  CHECK(ev == (MSRT_HEALTH_EV_CHANGED | MSRT_HEALTH_EV_READY));
}

static void test_unknown_failing_is_degraded(void) {
  msrt_probe_config r = cfg(0, 100, 3, 1);
  const msrt_probe_config *cs[3] = {NULL, NULL, &r};
  msrt_health h;
  msrt_health_init(&h, cs, 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 0, 0) == MSRT_HEALTH_EV_CHANGED);
  CHECK(h.p[MSRT_PROBE_READINESS].state == MSRT_HEALTH_DEGRADED);
  CHECK(!msrt_health_ready(&h)); /* it never succeeded */
}

static void test_startup_gating(void) {
  msrt_probe_config s = cfg(0, 50, 5, 1), l = cfg(300, 100, 1, 1),
                    r = cfg(0, 100, 1, 1);
  const msrt_probe_config *cs[3] = {&s, &l, &r};
  msrt_health h;
  msrt_health_init(&h, cs, 0);
  CHECK(!h.started && !msrt_health_ready(&h));
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_STARTING);
  CHECK(msrt_health_active(&h, MSRT_PROBE_STARTUP));
  CHECK(!msrt_health_active(&h, MSRT_PROBE_LIVENESS));
  CHECK(!msrt_health_begin(&h, MSRT_PROBE_LIVENESS, 1000));
  CHECK(!msrt_health_begin(&h, MSRT_PROBE_READINESS, 1000));
  /* results of gated probes are ignored */
  CHECK(msrt_health_record(&h, MSRT_PROBE_LIVENESS, 0, 0) == 0);
  CHECK(msrt_health_next(&h, 0) == 0);
  CHECK(run(&h, MSRT_PROBE_STARTUP, 0, 0) == MSRT_HEALTH_EV_CHANGED);
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_STARTING);
  unsigned ev = run(&h, MSRT_PROBE_STARTUP, 1, 50);
  CHECK(ev & MSRT_HEALTH_EV_STARTED);
  CHECK(!(ev & MSRT_HEALTH_EV_READY)); /* readiness has not run yet */
  CHECK(h.started && !msrt_health_active(&h, MSRT_PROBE_STARTUP));
  CHECK(!msrt_health_begin(&h, MSRT_PROBE_STARTUP, 1000));
  /* readiness due at once; liveness at its delay from the child's start */
  CHECK(msrt_health_next(&h, 50) == 0);
  CHECK(!msrt_health_begin(&h, MSRT_PROBE_LIVENESS, 50));
  ev = run(&h, MSRT_PROBE_READINESS, 1, 50);
  CHECK(ev & MSRT_HEALTH_EV_READY);
  CHECK(msrt_health_next(&h, 50) == 100); /* readiness at 150 */
  CHECK(msrt_health_next(&h, 140) == 10);
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 150) == 0);
  CHECK(msrt_health_next(&h, 250) == 0);
  CHECK(run(&h, MSRT_PROBE_READINESS, 1, 250) == 0);
  CHECK(msrt_health_next(&h, 250) == 50); /* liveness at 300 */
  CHECK(run(&h, MSRT_PROBE_LIVENESS, 1, 300) == MSRT_HEALTH_EV_CHANGED);
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_HEALTHY);
}

static void test_startup_failure_restarts(void) {
  msrt_probe_config s = cfg(0, 10, 2, 1), l = cfg(0, 10, 1, 1);
  const msrt_probe_config *cs[3] = {&s, &l, NULL};
  msrt_health h;
  msrt_health_init(&h, cs, 0);
  CHECK(run(&h, MSRT_PROBE_STARTUP, 0, 0) == MSRT_HEALTH_EV_CHANGED);
  unsigned ev = run(&h, MSRT_PROBE_STARTUP, 0, 10);
  CHECK(ev & MSRT_HEALTH_EV_RESTART);
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_UNHEALTHY);
  CHECK(!msrt_health_active(&h, MSRT_PROBE_LIVENESS));
}

static void test_schedule(void) {
  msrt_probe_config l = cfg(200, 100, 3, 1);
  const msrt_probe_config *cs[3] = {NULL, &l, NULL};
  msrt_health h;
  msrt_health_init(&h, cs, 1000);
  CHECK(msrt_health_next(&h, 1000) == 200);
  CHECK(!msrt_health_begin(&h, MSRT_PROBE_LIVENESS, 1199));
  CHECK(msrt_health_begin(&h, MSRT_PROBE_LIVENESS, 1205));
  /* in flight: no overlap, nothing waiting */
  CHECK(!msrt_health_begin(&h, MSRT_PROBE_LIVENESS, 1400));
  CHECK(msrt_health_next(&h, 1210) == -1);
  msrt_health_record(&h, MSRT_PROBE_LIVENESS, 1, 1250);
  /* the period runs from the due time (1200), not the late start */
  CHECK(msrt_health_next(&h, 1250) == 50);
  /* a run far behind its schedule starts a fresh period */
  CHECK(msrt_health_begin(&h, MSRT_PROBE_LIVENESS, 2000));
  msrt_health_record(&h, MSRT_PROBE_LIVENESS, 1, 2000);
  CHECK(msrt_health_next(&h, 2000) == 100);
  /* nothing at all */
  const msrt_probe_config *none[3] = {NULL, NULL, NULL};
  msrt_health_init(&h, none, 0);
  CHECK(msrt_health_next(&h, 0) == -1);
  CHECK(msrt_health_ready(&h));
  CHECK(msrt_health_overall(&h) == MSRT_HEALTH_UNKNOWN);
  CHECK(!msrt_health_begin(&h, (msrt_probe_kind)7, 0));
}

static void test_names(void) {
  CHECK_STR(msrt_probe_kind_name(MSRT_PROBE_READINESS), "readiness");
  CHECK(msrt_probe_kind_from_name("startup") == MSRT_PROBE_STARTUP);
  CHECK(msrt_probe_kind_from_name("liveness") == MSRT_PROBE_LIVENESS);
  CHECK(msrt_probe_kind_from_name("nope") == -1);
  CHECK_STR(msrt_health_state_name(MSRT_HEALTH_DEGRADED), "degraded");
  CHECK_STR(msrt_health_state_name(MSRT_HEALTH_STARTING), "starting");
  CHECK_STR(msrt_health_state_name((msrt_health_state)42), "unknown");
}

TEST_MAIN(test_defaults_and_checks, test_liveness_thresholds,
          test_failure_threshold_one, test_readiness_success_threshold,
          test_unknown_failing_is_degraded, test_startup_gating,
          test_startup_failure_restarts, test_schedule, test_names)
