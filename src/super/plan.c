/* Checking a strategy's actions and ordering them (super.h,
 * msrt_super_plan). A strategy is user code: anything it returns is
 * checked here before the supervisor acts on it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "super/super.h"

static const char *const OPS[] = {"restart", "stop", "escalate", "ignore"};

static int op_of(const char *name) {
  for (int i = 0; i < 4; i++)
    if (name && !strcmp(name, OPS[i])) return i;
  return -1;
}

/* Check action i (from 0) into out; marks its child in seen. */
static msrt_code check_one(const msrt_super *s, const msrt_action_in *a,
                           size_t i, char *seen, msrt_action *out,
                           msrt_error *err) {
  int op = op_of(a->op);
  if (op < 0)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "action %zu: op must be restart, stop, escalate or "
                          "ignore, not \"%s\"", i + 1, a->op ? a->op : "nil");
  out->op = (msrt_action_op)op;
  out->child = -1;
  out->delay_ms = 0;
  if (a->has_delay && (!(a->delay_ms >= 0) || !isfinite(a->delay_ms)))
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "action %zu: delay_ms must be a number >= 0",
                          i + 1);
  if (op == MSRT_ACT_ESCALATE || op == MSRT_ACT_IGNORE) return MSRT_E_OK;
  int pos = a->child ? msrt_super_find(s, a->child) : -1;
  if (pos < 0)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "action %zu: %s of unknown child \"%s\"", i + 1,
                          OPS[op], a->child ? a->child : "nil");
  if (seen[pos])
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "action %zu: child \"%s\" named twice", i + 1,
                          a->child);
  if (op == MSRT_ACT_RESTART &&
      msrt_super_child(s, (size_t)pos)->restart == MSRT_RESTART_TEMPORARY)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "action %zu: child \"%s\" is temporary and is "
                          "never restarted", i + 1, a->child);
  seen[pos] = 1;
  out->child = pos;
  out->delay_ms = a->has_delay ? a->delay_ms : 0;
  return MSRT_E_OK;
}

/* Fill plan from checked actions: stops of live children (running, still
 * in their init, or already being stopped) in reverse start order, starts
 * in start order. marks[pos]: 1 stop, 2 restart. */
static void order(const msrt_super *s, const char *marks, msrt_plan *plan) {
  size_t n = msrt_super_count(s);
  for (size_t k = n; k-- > 0;) {
    msrt_child_state st = msrt_super_child(s, k)->state;
    if (marks[k] && (st == MSRT_CHILD_RUNNING || st == MSRT_CHILD_STOPPING ||
                     st == MSRT_CHILD_STARTING))
      plan->stops[plan->nstops++] = k;
  }
  for (size_t k = 0; k < n; k++)
    if (marks[k] == 2) plan->starts[plan->nstarts++] = k;
}

msrt_code msrt_super_plan(const msrt_super *s, const msrt_action_in *in,
                          size_t n, msrt_plan *plan, msrt_error *err) {
  size_t count = msrt_super_count(s);
  plan->escalate = 0;
  plan->nstops = plan->nstarts = 0;
  plan->delay_ms = 0;
  char *marks = calloc(count + 1, 1), *seen = calloc(count + 1, 1);
  msrt_code rc = MSRT_E_OK;
  if (!marks || !seen) rc = msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  for (size_t i = 0; rc == MSRT_E_OK && i < n; i++) {
    msrt_action a = {.child = -1};
    if ((rc = check_one(s, &in[i], i, seen, &a, err)) != MSRT_E_OK) break;
    if (a.op == MSRT_ACT_ESCALATE) plan->escalate = 1;
    else if (a.child >= 0) {
      marks[a.child] = a.op == MSRT_ACT_RESTART ? 2 : 1;
      if (a.op == MSRT_ACT_RESTART && a.delay_ms > plan->delay_ms)
        plan->delay_ms = a.delay_ms;
    }
  }
  /* an escalation ends the supervisor: nothing else in the list is done */
  if (rc == MSRT_E_OK && !plan->escalate) order(s, marks, plan);
  free(marks);
  free(seen);
  return rc;
}
