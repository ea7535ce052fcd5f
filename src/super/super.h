/* Supervision mechanics (docs/architecture.md "Supervision"), after
 * Erlang/OTP's supervisor: the child table, restart intensity, backoff
 * delays, the checking of a strategy's actions and the order they run in.
 *
 * This part only keeps books and decides orders: it starts and stops
 * nothing. It owns the child table (docs/architecture.md "Supervision":
 * one owner for each fact); lua/msrt/supervisor.lua keeps each child's
 * handle in a record that the binding hangs off the table's entry, runs
 * the strategy (a Lua function) and carries out what this part checked. Times
 * are milliseconds on a monotonic clock the caller supplies (now_ms), so
 * the rules can be tested without waiting.
 *
 * Thread-safety: an msrt_super belongs to one thread (the hub); nothing
 * here locks. The pure functions (msrt_backoff_delay) may run anywhere.
 */
#ifndef MSRT_SUPER_SUPER_H
#define MSRT_SUPER_SUPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* OTP restart types: permanent always restarts, transient only after an
 * abnormal exit, temporary never (its spec is dropped when it exits). */
typedef enum {
  MSRT_RESTART_PERMANENT, MSRT_RESTART_TRANSIENT, MSRT_RESTART_TEMPORARY
} msrt_restart_type;

/* Where a child is: not running (never started, stopped, or exited and not
 * restarted), running, being stopped by its supervisor, waiting for a
 * delayed restart, or started and not yet through its init (OTP's
 * start_link has not returned; the supervisor starts the next child then). */
typedef enum {
  MSRT_CHILD_STOPPED, MSRT_CHILD_RUNNING, MSRT_CHILD_STOPPING,
  MSRT_CHILD_RESTARTING, MSRT_CHILD_STARTING, MSRT_CHILD__COUNT
} msrt_child_state;

/* shutdown_ms special values: kill at once, or wait without limit. */
#define MSRT_SHUTDOWN_BRUTAL_KILL (-1)
#define MSRT_SHUTDOWN_INFINITY (-2)

/* Longest child id kept, terminator included; longer ids are refused. */
#define MSRT_CHILD_ID_MAX 128

/* Restart delays: initial_ms * multiplier^n capped at max_ms, then moved by
 * up to +/- jitter (a fraction, 0..1) of itself. initial_ms == 0: no delay
 * (OTP's immediate restart). */
typedef struct {
  double initial_ms, max_ms, multiplier, jitter;
} msrt_backoff;

/* A supervisor's flags: more than `intensity` restarts within `period_ms`
 * make it give up (OTP's MaxR/MaxT; defaults 1 in 5000 ms). */
typedef struct {
  int intensity;
  int64_t period_ms;
  msrt_backoff backoff;
} msrt_super_config;

/* What the table keeps of a child spec. is_supervisor: its type is
 * supervisor (for counting); significant: see OTP's auto_shutdown. */
typedef struct {
  const char *id;
  msrt_restart_type restart;
  int64_t shutdown_ms; /* >= 0, or MSRT_SHUTDOWN_BRUTAL_KILL / _INFINITY */
  int is_supervisor;
  int significant;
} msrt_child_spec;

/* A child as the table holds it (read through msrt_super_child). */
typedef struct {
  char id[MSRT_CHILD_ID_MAX];
  msrt_restart_type restart;
  int64_t shutdown_ms;
  int is_supervisor, significant;
  msrt_child_state state;
  unsigned attempts;  /* restarts since it last stayed up period_ms */
  int64_t started_ms; /* when it last began running */
} msrt_child;

typedef struct msrt_super msrt_super;

/* A new, empty supervisor table. Checks cfg: intensity >= 0, period_ms >
 * 0, backoff initial_ms >= 0, max_ms >= initial_ms, multiplier >= 1,
 * jitter in [0, 1]. Returns NULL with err filled (invalid_arg, nomem). */
msrt_super *msrt_super_new(const msrt_super_config *cfg, msrt_error *err);

/* Free the table; s may be NULL. */
void msrt_super_free(msrt_super *s);

/* Append a child at the end of the start order (state stopped). Refuses
 * (invalid_arg, the id named) an empty, too long or duplicate id, a
 * negative shutdown other than the two specials, and a significant
 * permanent child (OTP). Returns MSRT_E_OK with its position (0-based)
 * in *pos (may be NULL), or MSRT_E_INVALID_ARG or MSRT_E_NOMEM with err
 * (the table as it was). */
msrt_code msrt_super_add(msrt_super *s, const msrt_child_spec *spec,
                         size_t *pos, msrt_error *err);

/* A reload (OTP code_change): give the child spec->id the new restart
 * type, shutdown, type and significance, keeping its place, state and
 * attempts; they apply from its next event. Checks as msrt_super_add
 * (but the id must exist). Returns MSRT_E_OK with its position in *pos
 * (may be NULL), or MSRT_E_NOT_FOUND or MSRT_E_INVALID_ARG with err. */
msrt_code msrt_super_update(msrt_super *s, const msrt_child_spec *spec,
                            size_t *pos, msrt_error *err);

/* A reload: new flags (intensity, period_ms, backoff; checked as
 * msrt_super_new), keeping the most recent restarts that the new window
 * can hold. Returns MSRT_E_OK, or MSRT_E_INVALID_ARG or MSRT_E_NOMEM
 * with err and s as it was. */
msrt_code msrt_super_configure(msrt_super *s, const msrt_super_config *cfg,
                               msrt_error *err);

/* Remove a child that is not running (OTP delete_child). Returns
 * MSRT_E_OK, or with err MSRT_E_NOT_FOUND, or MSRT_E_INVALID_ARG when it
 * is running, stopping or restarting. */
msrt_code msrt_super_delete(msrt_super *s, const char *id, msrt_error *err);

/* The position of child id in the start order, or -1. */
int msrt_super_find(const msrt_super *s, const char *id);

/* Number of children in the table. */
size_t msrt_super_count(const msrt_super *s);

/* Child at position pos (0 .. count-1), or NULL. The pointer is valid
 * until the table next changes (add, delete). */
const msrt_child *msrt_super_child(const msrt_super *s, size_t pos);

/* The configuration the table was made with. */
const msrt_super_config *msrt_super_config_of(const msrt_super *s);

/* Set the state of the child at pos at now_ms. Entering running records
 * the start; leaving running after period_ms or more of it resets
 * attempts (the backoff starts afresh). Returns MSRT_E_OK, or
 * MSRT_E_INVALID_ARG when pos or state is out of range (nothing set). */
msrt_code msrt_super_set_state(msrt_super *s, size_t pos,
                               msrt_child_state state, int64_t now_ms);

/* Record one restart at now_ms (OTP add_restart: restarts older than
 * now_ms - period_ms are forgotten). Returns true while the restarts in
 * the window are at most intensity, false when the supervisor must give
 * up (an answer, not a failure). */
bool msrt_super_add_restart(msrt_super *s, int64_t now_ms);

/* Restarts recorded within the window ending at now_ms. */
size_t msrt_super_restarts(const msrt_super *s, int64_t now_ms);

/* The delay before restart number n (0 for the first) of a child:
 * min(initial_ms * multiplier^n, max_ms) * (1 + jitter * (2u - 1)), u a
 * uniform draw in [0, 1). 0 when b->initial_ms is 0. Pure. */
double msrt_backoff_delay(const msrt_backoff *b, unsigned n, double u);

/* The delay for the next restart of the child at pos (its attempts so
 * far; reset first when it is still marked running and has been for
 * period_ms at now_ms), counting the attempt. u as above. Returns
 * MSRT_E_OK with the delay in ms in *delay_ms, or MSRT_E_INVALID_ARG for
 * a pos out of range (nothing counted). */
msrt_code msrt_super_next_delay(msrt_super *s, size_t pos, int64_t now_ms,
                                double u, double *delay_ms);

/* Which children a failure of the child at pos affects, in start order,
 * written to out (room for msrt_super_count entries): one_for_one only
 * pos, rest_for_one pos and those after it, one_for_all every child. As in
 * OTP, a sibling not running (terminated with terminate_child) is in the
 * group too and is started again with it. Returns how many were written
 * (0 for a bad pos). */
typedef enum { MSRT_GROUP_ONE, MSRT_GROUP_REST, MSRT_GROUP_ALL } msrt_group;
size_t msrt_super_group(const msrt_super *s, msrt_group g, size_t pos,
                        size_t *out);

/* A strategy's action as it comes from Lua: op and child as given (child
 * NULL when absent), delay_ms (has_delay 0 when absent). */
typedef struct {
  const char *op;
  const char *child;
  double delay_ms;
  int has_delay;
} msrt_action_in;

typedef enum {
  MSRT_ACT_RESTART, MSRT_ACT_STOP, MSRT_ACT_ESCALATE, MSRT_ACT_IGNORE
} msrt_action_op;

/* A checked action; child is a position (-1 for escalate/ignore). */
typedef struct {
  msrt_action_op op;
  int child;
  double delay_ms;
} msrt_action;

/* What a checked action list comes to, in the order to carry it out:
 * escalate set (then nothing else is done, reason in the error), else
 * `stops` positions to stop in reverse start order (every restarted or
 * stopped child that is running), `starts` positions to start afterwards
 * in start order (the restarted ones), after delay_ms (the longest delay
 * asked). stops/starts need room for msrt_super_count entries. */
typedef struct {
  int escalate;
  size_t nstops, nstarts;
  size_t *stops, *starts;
  double delay_ms;
} msrt_plan;

/* Check a strategy's n actions against the table and order them into
 * plan. Nonsense (an unknown op, a restart or stop without a known child,
 * a negative or non-finite delay, a child named twice, a restart of a
 * temporary child) returns MSRT_E_INVALID_ARG with err naming the action
 * from 1 and why: the caller escalates with it; MSRT_E_NOMEM with err
 * when out of memory. delay_ms matters only for restarts. An escalate
 * action sets plan->escalate and returns MSRT_E_OK, as a checked plan
 * does. */
msrt_code msrt_super_plan(const msrt_super *s, const msrt_action_in *in,
                          size_t n, msrt_plan *plan, msrt_error *err);

/* Names: "permanent"..., "stopped"/"running"/"stopping"/"restarting".
 * Lookups return -1 for an unknown name. */
const char *msrt_restart_name(msrt_restart_type r);
int msrt_restart_from_name(const char *name);
const char *msrt_child_state_name(msrt_child_state st);

#endif
