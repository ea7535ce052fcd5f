/* Supervision mechanics (src/super): the child table, OTP's restart
 * intensity window, the backoff schedule, action checking and the stop /
 * restart orders. Times are given, never waited for. */
#include <math.h>
#include <string.h>

#include "ctest.h"
#include "super/super.h"

static msrt_super *make(int intensity, int64_t period_ms) {
  msrt_super_config cfg = {intensity, period_ms, {0, 0, 1, 0}};
  msrt_error err;
  msrt_super *s = msrt_super_new(&cfg, &err);
  CHECK(s != NULL);
  return s;
}

static int add(msrt_super *s, const char *id, msrt_restart_type r) {
  msrt_child_spec c = {id, r, 5000, 0, 0};
  size_t pos;
  return msrt_super_add(s, &c, &pos, NULL) == MSRT_E_OK ? (int)pos : -1;
}

/* The next delay of the child at pos, or -1 when next_delay refuses. */
static double next_delay(msrt_super *s, size_t pos, int64_t now_ms, double u) {
  double ms = 0;
  msrt_code rc = msrt_super_next_delay(s, pos, now_ms, u, &ms);
  return rc == MSRT_E_OK ? ms : rc == MSRT_E_INVALID_ARG ? -1 : -2;
}

/* a, b, c, d permanent and running (started at t = 0) */
static msrt_super *abcd(void) {
  msrt_super *s = make(3, 5000);
  const char *ids[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; i++) {
    CHECK(add(s, ids[i], MSRT_RESTART_PERMANENT) == i);
    msrt_super_set_state(s, (size_t)i, MSRT_CHILD_RUNNING, 0);
  }
  return s;
}

static void test_table(void) {
  msrt_super *s = make(1, 5000);
  msrt_error err;
  CHECK(add(s, "a", MSRT_RESTART_PERMANENT) == 0);
  CHECK(add(s, "b", MSRT_RESTART_TEMPORARY) == 1);
  msrt_child_spec dup = {"a", MSRT_RESTART_PERMANENT, 10, 0, 0};
  CHECK(msrt_super_add(s, &dup, NULL, &err) == MSRT_E_INVALID_ARG);
  CHECK(err.code == MSRT_E_INVALID_ARG && strstr(err.message, "duplicate"));
  msrt_child_spec sig = {"s", MSRT_RESTART_PERMANENT, 10, 0, 1};
  CHECK(msrt_super_add(s, &sig, NULL, &err) == MSRT_E_INVALID_ARG && strstr(err.message, "significant"));
  msrt_child_spec bad = {"x", MSRT_RESTART_PERMANENT, -7, 0, 0};
  CHECK(msrt_super_add(s, &bad, NULL, &err) == MSRT_E_INVALID_ARG);
  msrt_child_spec empty = {"", MSRT_RESTART_PERMANENT, 0, 0, 0};
  CHECK(msrt_super_add(s, &empty, NULL, &err) == MSRT_E_INVALID_ARG);
  msrt_child_spec inf = {"c", MSRT_RESTART_TRANSIENT, MSRT_SHUTDOWN_INFINITY, 1, 1};
  size_t pos = 0;
  CHECK(msrt_super_add(s, &inf, &pos, &err) == MSRT_E_OK && pos == 2);
  CHECK(msrt_super_count(s) == 3 && msrt_super_find(s, "c") == 2);
  CHECK(msrt_super_child(s, 2)->is_supervisor == 1);
  CHECK(msrt_super_child(s, 3) == NULL);
  CHECK(msrt_super_set_state(s, 0, MSRT_CHILD_RUNNING, 10) == MSRT_E_OK);
  CHECK(msrt_super_set_state(s, 9, MSRT_CHILD_RUNNING, 10) ==
        MSRT_E_INVALID_ARG);
  CHECK(msrt_super_delete(s, "a", &err) == MSRT_E_INVALID_ARG && strstr(err.message, "running"));
  CHECK(msrt_super_delete(s, "zz", &err) == MSRT_E_NOT_FOUND && err.code == MSRT_E_NOT_FOUND);
  CHECK(msrt_super_delete(s, "b", &err) == MSRT_E_OK);
  CHECK(msrt_super_find(s, "c") == 1 && msrt_super_find(s, "b") == -1);
  CHECK_STR(msrt_restart_name(MSRT_RESTART_TRANSIENT), "transient");
  CHECK(msrt_restart_from_name("temporary") == MSRT_RESTART_TEMPORARY);
  CHECK(msrt_restart_from_name("sometimes") == -1);
  CHECK_STR(msrt_child_state_name(MSRT_CHILD_RESTARTING), "restarting");
  CHECK_STR(msrt_child_state_name(MSRT_CHILD_STARTING), "starting");
  msrt_super_free(s);
}

static void test_config(void) {
  msrt_error err;
  msrt_super_config c = {-1, 5000, {0, 0, 1, 0}};
  CHECK(msrt_super_new(&c, &err) == NULL && strstr(err.message, "intensity"));
  c = (msrt_super_config){1, 0, {0, 0, 1, 0}};
  CHECK(msrt_super_new(&c, &err) == NULL && strstr(err.message, "period_ms"));
  c = (msrt_super_config){1, 10, {10, 5, 2, 0}};
  CHECK(msrt_super_new(&c, &err) == NULL && strstr(err.message, "max_ms"));
  c = (msrt_super_config){1, 10, {10, 50, 0.5, 0}};
  CHECK(msrt_super_new(&c, &err) == NULL && strstr(err.message, "multiplier"));
  c = (msrt_super_config){1, 10, {10, 50, 2, 1.5}};
  CHECK(msrt_super_new(&c, &err) == NULL && strstr(err.message, "jitter"));
  c = (msrt_super_config){1, 10, {10, 50, 2, 0.25}};
  msrt_super *s = msrt_super_new(&c, &err);
  CHECK(s != NULL && msrt_super_config_of(s)->backoff.jitter == 0.25);
  msrt_super_free(s);
  msrt_super_free(NULL);
}

/* OTP: intensity 1, period 5 s: one restart is fine, a second one within
 * the window is one too many; restarts older than the window are gone. */
static void test_intensity(void) {
  msrt_super *s = make(1, 5000);
  CHECK(msrt_super_add_restart(s, 1000));
  CHECK(msrt_super_restarts(s, 1000) == 1);
  CHECK(!msrt_super_add_restart(s, 6000)); /* 1000 >= 6000-5000: kept */
  msrt_super_free(s);
  s = make(1, 5000);
  CHECK(msrt_super_add_restart(s, 1000));
  CHECK(msrt_super_add_restart(s, 6001)); /* 1000 has left the window */
  CHECK(msrt_super_restarts(s, 6001) == 1);
  CHECK(msrt_super_restarts(s, 20000) == 0);
  msrt_super_free(s);
  s = make(0, 5000); /* intensity 0: no restart at all */
  CHECK(!msrt_super_add_restart(s, 1));
  msrt_super_free(s);
  s = make(3, 100);
  for (int t = 0; t < 3; t++) CHECK(msrt_super_add_restart(s, t));
  CHECK(!msrt_super_add_restart(s, 3));
  CHECK(msrt_super_restarts(s, 3) == 4);
  msrt_super_free(s);
}

static void test_backoff(void) {
  msrt_backoff b = {100, 1000, 2, 0};
  CHECK(msrt_backoff_delay(&b, 0, 0.5) == 100);
  CHECK(msrt_backoff_delay(&b, 1, 0.5) == 200);
  CHECK(msrt_backoff_delay(&b, 3, 0.5) == 800);
  CHECK(msrt_backoff_delay(&b, 4, 0.5) == 1000); /* capped */
  CHECK(msrt_backoff_delay(&b, 5000, 0.5) == 1000); /* no overflow */
  b.jitter = 0.2;
  CHECK(fabs(msrt_backoff_delay(&b, 0, 0.0) - 80) < 1e-9);
  CHECK(fabs(msrt_backoff_delay(&b, 0, 0.5) - 100) < 1e-9);
  CHECK(msrt_backoff_delay(&b, 4, 0.999999) < 1200);
  CHECK(msrt_backoff_delay(&b, 4, 0.999999) > 1199);
  msrt_backoff none = {0, 0, 1, 0};
  CHECK(msrt_backoff_delay(&none, 7, 0.3) == 0);
}

/* The per-child attempt count grows with each restart and starts afresh
 * once the child has stayed up period_ms. */
static void test_backoff_reset(void) {
  msrt_super_config cfg = {10, 1000, {10, 10000, 2, 0}};
  msrt_super *s = msrt_super_new(&cfg, NULL);
  add(s, "a", MSRT_RESTART_PERMANENT);
  /* exit, delay asked, restarted after the delay (a delay is not uptime) */
  int64_t t = 1;
  double want[] = {10, 20, 40, 80, 160};
  for (int i = 0; i < 5; i++) {
    msrt_super_set_state(s, 0, MSRT_CHILD_RUNNING, t);
    msrt_super_set_state(s, 0, MSRT_CHILD_RESTARTING, t + 5);
    CHECK(next_delay(s, 0, t + 5, 0.5) == want[i]);
    t += 5 + (int64_t)want[i];
  }
  CHECK(msrt_super_child(s, 0)->attempts == 5);
  msrt_super_set_state(s, 0, MSRT_CHILD_RUNNING, t);
  msrt_super_set_state(s, 0, MSRT_CHILD_RESTARTING, t + 1000); /* up 1 s */
  CHECK(next_delay(s, 0, t + 1000, 0.5) == 10);
  msrt_super_set_state(s, 0, MSRT_CHILD_RUNNING, t + 1010);
  CHECK(next_delay(s, 0, t + 1020, 0.5) == 20);
  CHECK(next_delay(s, 0, t + 2010, 0.5) == 10); /* still up */
  CHECK(next_delay(s, 9, 0, 0.5) == -1);
  msrt_super_free(s);
}

static void test_groups(void) {
  msrt_super *s = abcd();
  size_t out[4], n;
  msrt_super_set_state(s, 1, MSRT_CHILD_STOPPED, 5); /* b exited */
  n = msrt_super_group(s, MSRT_GROUP_ONE, 1, out);
  CHECK(n == 1 && out[0] == 1);
  n = msrt_super_group(s, MSRT_GROUP_REST, 1, out);
  CHECK(n == 3 && out[0] == 1 && out[1] == 2 && out[2] == 3);
  n = msrt_super_group(s, MSRT_GROUP_ALL, 1, out);
  CHECK(n == 4 && out[0] == 0 && out[3] == 3);
  msrt_super_set_state(s, 3, MSRT_CHILD_STOPPED, 5); /* d terminated */
  n = msrt_super_group(s, MSRT_GROUP_ALL, 1, out);
  CHECK(n == 4 && out[3] == 3);
  CHECK(msrt_super_group(s, MSRT_GROUP_ALL, 9, out) == 0);
  msrt_super_free(s);
}

/* one_for_all after b exits: stop d, c, a (reverse), start a, b, c, d. */
static void test_plan_order(void) {
  msrt_super *s = abcd();
  msrt_super_set_state(s, 1, MSRT_CHILD_STOPPED, 5);
  msrt_action_in in[] = {{"restart", "c", 0, 0}, {"restart", "a", 30, 1},
                         {"restart", "d", 10, 1}, {"restart", "b", 0, 0}};
  size_t stops[4], starts[4];
  msrt_plan p = {.stops = stops, .starts = starts};
  msrt_error err;
  CHECK(msrt_super_plan(s, in, 4, &p, &err) == MSRT_E_OK);
  CHECK(!p.escalate && p.delay_ms == 30);
  CHECK(p.nstops == 3 && stops[0] == 3 && stops[1] == 2 && stops[2] == 0);
  CHECK(p.nstarts == 4);
  for (size_t i = 0; i < 4; i++) CHECK(starts[i] == i);
  msrt_action_in mixed[] = {{"stop", "a", 0, 0}, {"ignore", NULL, 0, 0},
                            {"restart", "d", 0, 0}};
  CHECK(msrt_super_plan(s, mixed, 3, &p, &err) == MSRT_E_OK);
  CHECK(p.nstops == 2 && stops[0] == 3 && stops[1] == 0);
  CHECK(p.nstarts == 1 && starts[0] == 3);
  CHECK(msrt_super_plan(s, NULL, 0, &p, &err) == MSRT_E_OK && p.nstops == 0);
  msrt_action_in esc[] = {{"restart", "a", 0, 0}, {"escalate", NULL, 0, 0}};
  CHECK(msrt_super_plan(s, esc, 2, &p, &err) == MSRT_E_OK && p.escalate);
  CHECK(p.nstops == 0 && p.nstarts == 0);
  msrt_super_free(s);
}

static void expect_nonsense(msrt_super *s, msrt_action_in a,
                            const char *why) {
  size_t stops[8], starts[8];
  msrt_plan p = {.stops = stops, .starts = starts};
  msrt_error err = {0};
  msrt_action_in in[] = {{"ignore", NULL, 0, 0}, a};
  CHECK(msrt_super_plan(s, in, 2, &p, &err) == MSRT_E_INVALID_ARG);
  CHECK(err.code == MSRT_E_INVALID_ARG);
  CHECK(strstr(err.message, "action 2") != NULL);
  CHECK(strstr(err.message, why) != NULL);
}

static void test_plan_nonsense(void) {
  msrt_super *s = abcd();
  add(s, "t", MSRT_RESTART_TEMPORARY);
  expect_nonsense(s, (msrt_action_in){"reboot", "a", 0, 0}, "op must be");
  expect_nonsense(s, (msrt_action_in){NULL, "a", 0, 0}, "not \"nil\"");
  expect_nonsense(s, (msrt_action_in){"restart", "zz", 0, 0}, "unknown child \"zz\"");
  expect_nonsense(s, (msrt_action_in){"stop", NULL, 0, 0}, "unknown child");
  expect_nonsense(s, (msrt_action_in){"restart", "a", -1, 1}, "delay_ms");
  expect_nonsense(s, (msrt_action_in){"restart", "a", NAN, 1}, "delay_ms");
  expect_nonsense(s, (msrt_action_in){"restart", "a", INFINITY, 1}, "delay_ms");
  expect_nonsense(s, (msrt_action_in){"restart", "t", 0, 0}, "temporary");
  size_t stops[8], starts[8];
  msrt_plan p = {.stops = stops, .starts = starts};
  msrt_error err;
  msrt_action_in twice[] = {{"restart", "a", 0, 0}, {"stop", "a", 0, 0}};
  CHECK(msrt_super_plan(s, twice, 2, &p, &err) == MSRT_E_INVALID_ARG);
  CHECK(strstr(err.message, "named twice") != NULL);
  msrt_super_free(s);
}

/* A reload (code_change): a child's spec changes in place, keeping its
 * position, state and attempts; new flags keep the restart window. */
static void test_reload(void) {
  msrt_super *s = abcd();
  msrt_error err;
  msrt_child_spec b = {"b", MSRT_RESTART_TRANSIENT, MSRT_SHUTDOWN_BRUTAL_KILL, 0, 0};
  size_t pos = 0;
  CHECK(msrt_super_update(s, &b, &pos, &err) == MSRT_E_OK && pos == 1);
  const msrt_child *c = msrt_super_child(s, 1);
  CHECK(c->restart == MSRT_RESTART_TRANSIENT);
  CHECK(c->shutdown_ms == MSRT_SHUTDOWN_BRUTAL_KILL);
  CHECK(c->state == MSRT_CHILD_RUNNING && c->started_ms == 0);
  msrt_child_spec none = {"zz", MSRT_RESTART_PERMANENT, 0, 0, 0};
  CHECK(msrt_super_update(s, &none, NULL, &err) == MSRT_E_NOT_FOUND && err.code == MSRT_E_NOT_FOUND);
  msrt_child_spec sig = {"c", MSRT_RESTART_PERMANENT, 0, 0, 1};
  CHECK(msrt_super_update(s, &sig, NULL, &err) == MSRT_E_INVALID_ARG && strstr(err.message, "significant"));
  CHECK(msrt_super_child(s, 2)->significant == 0); /* refused: unchanged */
  /* intensity 3: three restarts fit; lowering it to 1 keeps the newest
   * two, so the next one is over */
  CHECK(msrt_super_add_restart(s, 100));
  CHECK(msrt_super_add_restart(s, 200));
  CHECK(msrt_super_add_restart(s, 300));
  msrt_super_config one = {1, 5000, {0, 0, 1, 0}};
  CHECK(msrt_super_configure(s, &one, &err) == MSRT_E_OK);
  CHECK(msrt_super_config_of(s)->intensity == 1);
  CHECK(msrt_super_restarts(s, 300) == 2);
  CHECK(!msrt_super_add_restart(s, 400));
  msrt_super_config bad = {1, 0, {0, 0, 1, 0}};
  CHECK(msrt_super_configure(s, &bad, &err) == MSRT_E_INVALID_ARG && strstr(err.message, "period_ms"));
  CHECK(msrt_super_config_of(s)->period_ms == 5000); /* refused: unchanged */
  msrt_super_config wide = {10, 5000, {5, 50, 2, 0.1}};
  CHECK(msrt_super_configure(s, &wide, &err) == MSRT_E_OK);
  CHECK(msrt_super_restarts(s, 400) == 2); /* the window kept what it had */
  msrt_super_free(s);
}

TEST_MAIN(test_table, test_config, test_intensity, test_backoff,
          test_backoff_reset, test_groups, test_plan_order,
          test_plan_nonsense, test_reload)
